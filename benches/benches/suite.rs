//! Criterion benches: groups `gemm`, `im2col`, `conv2d_forward`,
//! `conv2d_backward`, `max_pool2d_*`, `avg_pool2d_*`, each with a `naive`
//! and a `fast` function per shape (plus `matrixmultiply` for GEMM), f32.
//! The same suite as the dashboard; naive runs on a slice of large shapes
//! (see each runner's note: their times are for the slice, not scaled).
//!
//! `cargo bench -p patchwise-benches -- conv2d_forward/fast` runs one group's
//! fast functions; `PATCHWISE_BENCH_QUICK=1` uses the small shapes.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use patchwise_benches::suite;
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let quick = std::env::var_os("PATCHWISE_BENCH_QUICK").is_some();
    for spec in suite(quick) {
        let bench = spec.build();
        let mut group = c.benchmark_group(bench.op);
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        for mut runner in bench.runners {
            let label = match &runner.note {
                Some(note) => format!("{} [{note}]", bench.shape),
                None => bench.shape.clone(),
            };
            group.bench_function(BenchmarkId::new(runner.imp, label), |b| b.iter(&mut runner.run));
        }
        group.finish();
    }
}

criterion_group!(suite_benches, benches);
criterion_main!(suite_benches);
