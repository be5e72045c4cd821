use ndarray::Array4;
use patchwise_layers::pool;
use std::time::Instant;

fn main() {
    let which: Vec<String> = std::env::args().skip(1).collect();
    let reps = 30;
    let (n, c, h, w) = (8, 64, 112, 112);
    let x = Array4::from_shape_fn((n, c, h, w), |(a, b, i, j)| {
        (((a * 7 + b * 13 + i * 31 + j * 17) % 101) as f32) - 50.0
    });
    for (name, k, s, p) in [("2x2", 2, 2, 0), ("3x3", 3, 2, 1)] {
        let params = pool::PoolParams::new(k, k, s).with_pad(p, p);
        let (out, mcache) = pool::max_forward(x.view(), &params).unwrap();
        let (_, acache) = pool::avg_forward(x.view(), &params).unwrap();
        let dout = out.mapv(|v| v * 0.5);
        let xb = (x.len() * 4) as f64;
        let ob = (out.len() * 4) as f64;
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, f64, Box<dyn Fn()>)> = vec![
            (
                "max_fwd",
                xb + ob + out.len() as f64,
                Box::new(|| {
                    drop(std::hint::black_box(
                        pool::max_forward(x.view(), &params).unwrap(),
                    ))
                }),
            ),
            (
                "max_bwd",
                xb + ob + out.len() as f64,
                Box::new(|| {
                    drop(std::hint::black_box(
                        pool::max_backward(dout.view(), &mcache).unwrap(),
                    ))
                }),
            ),
            (
                "avg_fwd",
                xb + ob,
                Box::new(|| {
                    drop(std::hint::black_box(
                        pool::avg_forward(x.view(), &params).unwrap(),
                    ))
                }),
            ),
            (
                "avg_bwd",
                xb + ob,
                Box::new(|| {
                    drop(std::hint::black_box(
                        pool::avg_backward(dout.view(), &acache).unwrap(),
                    ))
                }),
            ),
        ];
        for (op, bytes, f) in cases {
            if !which.is_empty() && !which.iter().any(|q| format!("{op}_{name}").contains(q.as_str())) {
                continue;
            }
            let mut t = Vec::new();
            for i in 0..reps + 2 {
                let s = Instant::now();
                f();
                if i >= 2 {
                    t.push(s.elapsed().as_secs_f64());
                }
            }
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{op}_{name}: med {:.3} ms ({:.1} GB/s) best {:.3} ms ({:.1} GB/s)",
                t[reps / 2] * 1e3,
                bytes / t[reps / 2] / 1e9,
                t[0] * 1e3,
                bytes / t[0] / 1e9
            );
        }
    }
}
