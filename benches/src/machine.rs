//! What the machine can do: its peak f32 FLOP rate (an FMA loop on every
//! thread of the pool) and its memory copy bandwidth.

use patchwise_kernels::probe::{fma_flops, Isa};
use rayon::prelude::*;
use std::time::Instant;

/// The machine's measured limits.
#[derive(Clone, Debug)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Threads of the rayon pool the suite runs on.
    pub threads: usize,
    /// Widest FMA instruction set found.
    pub isa: Isa,
    /// Peak f32 GFLOP/s on all threads with `isa`: the best reading of
    /// [`Self::measure`] and every [`Self::probe_peak_again`].
    pub peak_gflops: f64,
    /// Peak f32 GFLOP/s on all threads with 256-bit AVX2 FMA (if present).
    pub avx2_peak_gflops: Option<f64>,
    /// Copy bandwidth (bytes read + written) on all threads, GB/s.
    pub copy_gbps: f64,
}

/// The CPU model from /proc/cpuinfo, or "unknown".
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Best of five: all pool threads run the FMA loop at once.
fn peak(isa: Isa) -> f64 {
    let iterations = 20_000_000;
    (0..5)
        .map(|_| {
            let start = Instant::now();
            let flops: f64 = rayon::broadcast(|_| fma_flops(isa, iterations)).iter().sum();
            flops / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

/// Best of five parallel copies of a 256 MiB buffer (far beyond the caches).
fn copy_bandwidth() -> f64 {
    let len = 64 << 20; // f32s
    let src = vec![1.0f32; len];
    let mut dst = vec![0.0f32; len];
    let chunk = len / (rayon::current_num_threads() * 4);
    (0..5)
        .map(|_| {
            let start = Instant::now();
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
            std::hint::black_box(&dst);
            (2 * 4 * len) as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .fold(0.0, f64::max)
}

impl Machine {
    /// Measures the current rayon pool's machine.
    pub fn measure() -> Self {
        let isa = Isa::detect();
        let peak_gflops = peak(isa);
        let avx2_peak_gflops = match isa {
            Isa::Avx512 => Some(peak(Isa::Avx2Fma)),
            Isa::Avx2Fma => Some(peak_gflops),
            Isa::Scalar => None,
        };
        Self {
            cpu: cpu_name(),
            threads: rayon::current_num_threads(),
            isa,
            peak_gflops,
            avx2_peak_gflops,
            copy_gbps: copy_bandwidth(),
        }
    }

    /// Measures the peak again and keeps the better reading, returning
    /// this one. The machine's speed drifts (a shared VM): one reading at
    /// the start of a run can catch a slow phase and flatter every kernel
    /// measured later, so the dashboard probes once per round.
    pub fn probe_peak_again(&mut self) -> f64 {
        let reading = peak(self.isa);
        self.peak_gflops = self.peak_gflops.max(reading);
        reading
    }
}
