use ndarray::{Array2, Array3};
use patchwise_benches::conv_shapes;
use patchwise_kernels::{gemm_im2col_transposed, Window2d};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = &args[0];
    let configs: Vec<String> = args[1..].to_vec();
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let c = conv_shapes(false).into_iter().find(|c| c.name == name).unwrap();
    let [n, ch, h, w] = c.nchw;
    let g = Window2d::new([h, w], [c.k, c.k], [c.stride; 2], [c.pad; 2], [1, 1]).unwrap();
    let fill = |len: usize, seed: usize| -> Vec<f32> {
        (0..len)
            .map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0) - 1.0)
            .collect()
    };
    let x = fill(n * ch * h * w, 1);
    let p = g.output_len();
    let a = Array3::from_shape_vec((n, c.f, p), fill(n * c.f * p, 2)).unwrap();
    let mut out = Array2::<f32>::zeros((c.f, ch * c.k * c.k));
    let flops = 2.0 * (n * p * c.f * ch * c.k * c.k) as f64;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    for _ in 0..rounds {
        for (ci, cfg) in configs.iter().enumerate() {
            for kv in cfg.split(',') {
                let (k, v) = kv.split_once('=').unwrap();
                unsafe { std::env::set_var(k, v) };
            }
            for rep in 0..4 {
                let t = Instant::now();
                gemm_im2col_transposed(1.0, a.view(), &x, ch * h * w, ch, &g, 0.0, out.view_mut()).unwrap();
                if rep > 0 {
                    times[ci].push(t.elapsed().as_secs_f64());
                }
            }
        }
    }
    for (cfg, t) in configs.iter().zip(times.iter_mut()) {
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!(
            "{name} {cfg:20} med {:7.3} ms ({:6.1} GF/s) best {:7.3} ms ({:6.1} GF/s)",
            t[t.len() / 2] * 1e3,
            flops / t[t.len() / 2] / 1e9,
            t[0] * 1e3,
            flops / t[0] / 1e9
        );
    }
}
