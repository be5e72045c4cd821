//! Peak memory of one convolution forward pass beyond its inputs, for the
//! memory target of the fast path (extra memory ≤ 25 % of the output).
//!
//! ```text
//! cargo build --release -p patchwise-benches --bin conv_memory
//! /usr/bin/time -v target/release/conv_memory resnet3x3_56                # inputs + forward
//! /usr/bin/time -v target/release/conv_memory resnet3x3_56 --inputs-only  # inputs alone
//! ```
//!
//! The difference of the two "Maximum resident set size" figures is the
//! forward pass's peak growth; minus the output's size it is the extra
//! memory. On Linux the binary also reports the same from its own
//! `VmHWM` (peak resident set), read before and after the pass.

use ndarray::{Array1, Array4};
use patchwise_benches::conv_shapes;
use patchwise_layers::conv::{self, ConvParams};
use std::process::ExitCode;

/// Peak resident set size in bytes (Linux), if readable.
fn peak_rss() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let shapes = conv_shapes(false);
    let names: Vec<&str> = shapes.iter().map(|s| s.name).collect();
    let Some(shape) = args.first().and_then(|a| shapes.iter().find(|s| s.name == a)) else {
        eprintln!("usage: conv_memory SHAPE [--inputs-only]; SHAPE one of {names:?}");
        return ExitCode::FAILURE;
    };
    let inputs_only = args.iter().any(|a| a == "--inputs-only");
    let [n, c, h, w] = shape.nchw;
    let x = Array4::from_shape_fn((n, c, h, w), |(a, b, y, z)| {
        ((a + 3 * b + 5 * y + 7 * z) % 13) as f32 - 6.0
    });
    let wt = Array4::from_shape_fn((shape.f, c, shape.k, shape.k), |(a, b, y, z)| {
        ((a + b + y + z) % 5) as f32 * 0.1
    });
    let b = Array1::<f32>::zeros(shape.f);
    let before = peak_rss();
    if inputs_only {
        println!("{}: inputs only", shape.name);
        return ExitCode::SUCCESS;
    }
    let params = ConvParams::new(shape.stride, shape.pad);
    let (out, cache) = match conv::forward(x.view(), wt.view(), b.view(), &params) {
        Ok(result) => result,
        Err(e) => {
            eprintln!("conv_memory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let after = peak_rss();
    let out_bytes = (out.len() * std::mem::size_of::<f32>()) as f64;
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    print!("{}: output {:.1} MiB", shape.name, mib(out_bytes));
    if let (Some(before), Some(after)) = (before, after) {
        let extra = after - before - out_bytes;
        print!(
            "; peak RSS growth {:.1} MiB, extra {:.1} MiB = {:.0} % of the output",
            mib(after - before),
            mib(extra),
            100.0 * extra / out_bytes
        );
    }
    println!();
    std::hint::black_box((out, cache));
    ExitCode::SUCCESS
}
