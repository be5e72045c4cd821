use ndarray::{Array1, Array4};
use patchwise_benches::conv_shapes;
use patchwise_layers::conv;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = args[0].split(',').collect();
    let configs: Vec<String> = args[1..].to_vec();
    let bwd = std::env::var("BWD").is_ok();
    let rounds = 8;
    for c in conv_shapes(false).into_iter().filter(|c| names.contains(&c.name)) {
        let [n, ch, h, w] = c.nchw;
        let fill = |len: usize, seed: usize| -> Vec<f32> {
            (0..len)
                .map(|i| (((i * 7919 + seed * 104729) % 2001) as f32 / 1000.0) - 1.0)
                .collect()
        };
        let x = Array4::from_shape_vec((n, ch, h, w), fill(n * ch * h * w, 1)).unwrap();
        let wt = Array4::from_shape_vec((c.f, ch, c.k, c.k), fill(c.f * ch * c.k * c.k, 2)).unwrap();
        let b = Array1::from_vec(fill(c.f, 3));
        let params = conv::ConvParams::new(c.stride, c.pad);
        let (out, cache) = conv::forward(x.view(), wt.view(), b.view(), &params).unwrap();
        let dout = Array4::from_shape_vec(out.raw_dim(), fill(out.len(), 4)).unwrap();
        let mut times = vec![Vec::new(); configs.len()];
        for _ in 0..rounds {
            for (ci, cfg) in configs.iter().enumerate() {
                for kv in cfg.split(';') {
                    if let Some((k, v)) = kv.split_once('=') {
                        if v == "-" {
                            unsafe { std::env::remove_var(k) }
                        } else {
                            unsafe { std::env::set_var(k, v) }
                        }
                    }
                }
                for rep in 0..4 {
                    let t = Instant::now();
                    if bwd {
                        std::hint::black_box(conv::backward(dout.view(), &cache).unwrap());
                    } else {
                        std::hint::black_box(conv::forward(x.view(), wt.view(), b.view(), &params).unwrap());
                    }
                    if rep > 0 {
                        times[ci].push(t.elapsed().as_secs_f64());
                    }
                }
            }
        }
        let flops = c.forward_flops() * if bwd { 2.0 } else { 1.0 };
        for (cfg, t) in configs.iter().zip(times.iter_mut()) {
            t.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{:14} {cfg:16} med {:6.1} GF/s best {:6.1} GF/s",
                c.name,
                flops / t[t.len() / 2] / 1e9,
                flops / t[0] / 1e9
            );
        }
    }
}
