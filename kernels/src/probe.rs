//! A probe of the machine's peak floating-point rate: a loop of independent
//! fused multiply-adds with the widest vectors the CPU has, so that the
//! benchmark dashboard can say what fraction of the peak a kernel reaches.

/// Independent accumulators: enough to cover FMA latency × throughput
/// (4 cycles × 2 units) on current x86 cores.
const ACCUMULATORS: usize = 12;

pub use crate::isa::Isa;

/// Runs `iterations` rounds of 12 independent f32 FMAs on
/// vectors of `isa` and returns the number of floating-point operations done
/// (2 per lane per FMA). Time it to get the single-thread peak. An `isa` the
/// CPU lacks runs (and counts) the scalar loop instead.
pub fn fma_flops(isa: Isa, iterations: usize) -> f64 {
    let (checksum, lanes) = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if is_x86_feature_detected!("avx512f") => {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            (unsafe { x86::fma_loop_avx512(iterations) }, 16)
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") => {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            (unsafe { x86::fma_loop_avx2(iterations) }, 8)
        }
        _ => (scalar_loop(iterations), 1),
    };
    // Keep the result observable so the loop is not optimised away.
    std::hint::black_box(checksum);
    (iterations * ACCUMULATORS * lanes * 2) as f64
}

fn scalar_loop(iterations: usize) -> f32 {
    let mut acc = [0.0f32; ACCUMULATORS];
    let (a, b) = (std::hint::black_box(0.999_999f32), std::hint::black_box(1e-7f32));
    for _ in 0..iterations {
        for v in &mut acc {
            *v = v.mul_add(a, b);
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::ACCUMULATORS;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn fma_loop_avx2(iterations: usize) -> f32 {
        let a = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_setzero_ps(); ACCUMULATORS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm256_fmadd_ps(*v, a, b);
            }
        }
        let mut lanes = [0.0f32; 8];
        let sum = acc.iter().fold(_mm256_setzero_ps(), |s, &v| _mm256_add_ps(s, v));
        // SAFETY: `lanes` holds 8 f32, the width of a 256-bit vector.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sum) };
        lanes.iter().sum()
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fma_loop_avx512(iterations: usize) -> f32 {
        let a = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let b = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_setzero_ps(); ACCUMULATORS];
        for _ in 0..iterations {
            for v in &mut acc {
                *v = _mm512_fmadd_ps(*v, a, b);
            }
        }
        let sum = acc.iter().fold(_mm512_setzero_ps(), |s, &v| _mm512_add_ps(s, v));
        _mm512_reduce_add_ps(sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_isa_counts_its_flops() {
        let widest = Isa::detect();
        for isa in [Isa::Scalar, Isa::Avx2Fma, Isa::Avx512] {
            if isa.f32_lanes() <= widest.f32_lanes() {
                assert_eq!(
                    fma_flops(isa, 10),
                    (10 * ACCUMULATORS * isa.f32_lanes() * 2) as f64
                );
            }
        }
    }
}
