use ndarray::Array2;
use std::time::Instant;
fn med(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[reps / 2]
}
fn main() {
    let shapes = [
        (256, 256, 256),
        (1024, 1024, 1024),
        (64, 576, 3136),
        (256, 2304, 196),
        (64, 147, 12544),
    ];
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    println!("engine {}", patchwise_kernels::gemm_engine::<f32>());
    for (m, k, n) in shapes {
        let a = Array2::<f32>::from_shape_fn((m, k), |(i, j)| ((i * 7 + j * 3) % 13) as f32 - 6.0);
        let b = Array2::<f32>::from_shape_fn((k, n), |(i, j)| ((i * 5 + j * 11) % 17) as f32 - 8.0);
        let mut c = Array2::<f32>::zeros((m, n));
        let fl = 2.0 * (m * k * n) as f64 / 1e9;
        let reps = if fl > 1.0 { 5 } else { 21 };
        let ours1 = one.install(|| {
            med(
                || patchwise_kernels::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap(),
                reps,
            )
        });
        let ours2 = med(
            || patchwise_kernels::gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap(),
            reps,
        );
        let mm = med(
            || ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut c),
            reps,
        );
        println!(
            "{m}x{k}x{n}: ours 1t {:.1} GF/s, ours 2t {:.1} GF/s, mm 1t {:.1} GF/s",
            fl / ours1,
            fl / ours2,
            fl / mm
        );
    }
}
