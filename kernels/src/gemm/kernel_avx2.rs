//! AVX2 + FMA micro-kernels: f32 6×16 and f64 6×8 (12 ymm accumulators,
//! 2 B vectors, 1 broadcast: 15 of the 16 registers), and f32 5×16 for
//! products with B read in place whose rows of A it pads less
//! (`avx2_five_rows` in [`super::kernel`]), each in the four
//! flavors of `simd_kernel!` (A and B each packed or read in place), and
//! the rows kernels' twins with B's lanes masked (`vmaskmov` loads) or
//! cleared (an AND), for the in-image convolution route
//! ([`super::in_image`]); the dot-product kernels
//! ([`super::dot_kernel`]), 3 rows of A × 3 of B.

#![cfg(target_arch = "x86_64")]

use super::kernel::LaneVector;
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

super::simd_kernel!(
    /// f32, MR = 5, NR = 16 (two 8-lane vectors).
    f32_5x16, f32_5x16_rows, f32_5x16_a_rows, f32_5x16_ab_rows, b_ahead = 0, a_ahead = 0, "avx2,fma", f32, __m256, 8, 5, 2,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps
);

super::simd_kernel_masked_rows!(
    /// f32, MR = 5, NR = 16, B's lanes masked (or cleared).
    f32_5x16_masked, f32_5x16_zeroing, "avx2,fma", f32, __m256, 8, 5, 2, load_masked_ps, load_cleared_ps,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps
);

super::simd_kernel_masked_rows!(
    /// f32, MR = 6, NR = 16, B's lanes masked (or cleared).
    f32_6x16_masked, f32_6x16_zeroing, "avx2,fma", f32, __m256, 8, 6, 2, load_masked_ps, load_cleared_ps,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps
);

super::simd_kernel_masked_rows!(
    /// f64, MR = 6, NR = 8, B's lanes masked (or cleared).
    f64_6x8_masked, f64_6x8_zeroing, "avx2,fma", f64, __m256d, 4, 6, 2, load_masked_pd, load_cleared_pd,
    _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_mul_pd, _mm256_add_pd
);

/// The 8 f32 at `p` on `mask`'s lanes (the first 32 bytes' sign bits),
/// the others zero and never touched (`vmaskmovps` suppresses their
/// faults).
///
/// # Safety
/// The lanes on `mask` readable at `p`; `mask` valid; the CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_masked_ps(p: *const f32, mask: *const LaneVector) -> __m256 {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe { _mm256_maskload_ps(p, _mm256_load_si256(mask.cast())) }
}

/// The 4 f64 at `p` on `mask`'s lanes, as [`load_masked_ps`].
///
/// # Safety
/// As [`load_masked_ps`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_masked_pd(p: *const f64, mask: *const LaneVector) -> __m256d {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe { _mm256_maskload_pd(p, _mm256_load_si256(mask.cast())) }
}

/// The 8 f32 at `p`, the lanes off `mask` (its first 32 bytes) cleared.
///
/// # Safety
/// 8 values readable at `p`; `mask` valid; the CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_cleared_ps(p: *const f32, mask: *const LaneVector) -> __m256 {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe { _mm256_and_ps(_mm256_loadu_ps(p), _mm256_load_ps(mask.cast())) }
}

/// The 4 f64 at `p`, the lanes off `mask` (its first 32 bytes) cleared.
///
/// # Safety
/// 4 values readable at `p`; `mask` valid; the CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_cleared_pd(p: *const f64, mask: *const LaneVector) -> __m256d {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe { _mm256_and_pd(_mm256_loadu_pd(p), _mm256_load_pd(mask.cast())) }
}

/// The lane mask of a vector's first `n` of 8 32-bit lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn first_lanes_ps(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// The lane mask of a vector's first `n` of 4 64-bit lanes.
#[target_feature(enable = "avx2")]
#[inline]
fn first_lanes_pd(n: usize) -> __m256i {
    _mm256_cmpgt_epi64(_mm256_set1_epi64x(n as i64), _mm256_setr_epi64x(0, 1, 2, 3))
}

/// The f32 at `p` on `mask`'s lanes, the others zero and never touched.
///
/// # Safety
/// The lanes on `mask` readable at `p`; the CPU has AVX2.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_first_ps(p: *const f32, mask: __m256i) -> __m256 {
    // SAFETY: as the caller's.
    unsafe { _mm256_maskload_ps(p, mask) }
}

/// The f64 at `p` on `mask`'s lanes, as [`load_first_ps`].
///
/// # Safety
/// As [`load_first_ps`].
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn load_first_pd(p: *const f64, mask: __m256i) -> __m256d {
    // SAFETY: as the caller's.
    unsafe { _mm256_maskload_pd(p, mask) }
}

super::simd_dot_kernel!(
    /// f32 dot-product kernel, 3 rows of A × 3 rows of B: 9 ymm
    /// accumulators, three A vectors and one B vector.
    f32_dot_3x3, "avx2,fma", f32, __m256, 8, 3, 3, __m256i, first_lanes_ps, load_first_ps,
    _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps
);

super::simd_dot_kernel!(
    /// f64 dot-product kernel, 3 rows of A × 3 rows of B.
    f64_dot_3x3, "avx2,fma", f64, __m256d, 4, 3, 3, __m256i, first_lanes_pd, load_first_pd,
    _mm256_setzero_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd
);
