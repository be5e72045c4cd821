//! AVX-512F micro-kernels: f32 12×32 and f64 12×16 (24 zmm accumulators,
//! 2 B vectors; the A broadcasts fold into the FMAs as memory operands).

#![cfg(target_arch = "x86_64")]

use std::arch::x86_64::*;

super::simd_kernel!(
    /// f32, MR = 12, NR = 32 (two 16-lane vectors).
    f32_12x32, "avx512f", f32, __m512, 16, 12, 2,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
);

super::simd_kernel!(
    /// f64, MR = 12, NR = 16 (two 8-lane vectors).
    f64_12x16, "avx512f", f64, __m512d, 8, 12, 2,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd
);
