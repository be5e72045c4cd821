use ndarray::{Array1, Array4};
use patchwise_benches::conv_shapes;
use patchwise_layers::conv;
use std::time::Instant;

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).collect();
    let reps: usize = std::env::var("REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let fwd = std::env::var("FWD").is_ok();
    for c in conv_shapes(false) {
        if !filter.is_empty() && !filter.iter().any(|f| c.name.contains(f.as_str())) {
            continue;
        }
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
        let mut times = Vec::new();
        for i in 0..reps + 2 {
            let t = Instant::now();
            if fwd {
                std::hint::black_box(conv::forward(x.view(), wt.view(), b.view(), &params).unwrap());
            } else {
                std::hint::black_box(conv::backward(dout.view(), &cache).unwrap());
            }
            if i >= 2 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let flops = c.forward_flops() * if fwd { 1.0 } else { 2.0 };
        let med = times[times.len() / 2];
        println!(
            "{:14} {} med {:8.3} ms ({:6.1} GF/s) best {:8.3} ms ({:6.1} GF/s)",
            c.name,
            if fwd { "fwd" } else { "bwd" },
            med * 1e3,
            flops / med / 1e9,
            times[0] * 1e3,
            flops / times[0] / 1e9
        );
    }
}
