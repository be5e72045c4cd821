//! AVX2 + FMA micro-kernels: f32 6×16 and f64 6×8 (12 ymm accumulators,
//! 2 B vectors, 1 broadcast: 15 of the 16 registers), each in the four
//! flavors of `simd_kernel!` (A and B each packed or read in place).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

super::simd_kernel!(
    /// f32, MR = 6, NR = 16 (two 8-lane vectors).
    f32_6x16, f32_6x16_rows, f32_6x16_a_rows, f32_6x16_ab_rows, b_ahead = 0, a_ahead = 0, "avx2,fma", f32, __m256, 8, 6, 2,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps
);

super::simd_kernel!(
    /// f64, MR = 6, NR = 8 (two 4-lane vectors).
    f64_6x8, f64_6x8_rows, f64_6x8_a_rows, f64_6x8_ab_rows, b_ahead = 0, a_ahead = 0, "avx2,fma", f64, __m256d, 4, 6, 2,
    _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_mul_pd, _mm256_add_pd
);
