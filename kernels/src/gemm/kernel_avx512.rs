//! AVX-512F micro-kernels: f32 8×48 and f64 8×24 (24 zmm accumulators,
//! 3 B vectors, one A value broadcast from memory per row and step).
//! MR = 8 divides the filter counts of real networks (64, 128, ...), where
//! 12 would waste a third of the last A panel; measured ~20 % faster than
//! 12×32 on the ResNet convolutions here. Products with B read in place
//! whose row count 8 pads badly take 9×48 or 5×80 (f64: 9×24, 5×40)
//! instead: same sums, fewer padding rows.
//!
//! The packed-B kernels prefetch B 8 steps ahead (three cache lines per
//! step, streaming from L2): 1.02-1.04× on f32 GEMMs of 512-2048 and the
//! 7×7 ResNet convolution, alternated call by call in one process. The
//! AVX2 kernels leave it to the hardware: there it measured 0.97-1.09×.
//!
//! A last panel of at most half a vector of columns (the 7×7 ResNet
//! layer's 392 = 8·48 + 8 pixels, the 256 × 2304 × 196 GEMM's
//! 196 = 4·48 + 4) runs on 256-bit vectors (`*_half`): the same sums,
//! without FMAs on half a vector of padding; alternated call by call
//! 1.00-1.03× on that layer's forward pass and 1.01-1.03× on that GEMM on
//! one thread.
//!
//! Each rows kernel has a twin with masked B loads (`*_masked`), and one
//! reading B's vectors whole and clearing the lanes off the masks
//! (`*_zeroing`), for the in-image convolution route
//! ([`super::in_image`]).
//!
//! The kernels with A read in place (a convolution's dW, where A's rows are
//! taps and B's columns filters) are 12×32 or 14×32 f32 and 12×16 f64
//! instead: NR = 32 divides the filter counts where 48 would waste up to a
//! third.
//!
//! The dot-product kernels ([`super::dot_kernel`]) take 5 rows of A × 5
//! of B: 25 accumulators, five A vectors and one B vector.

#![cfg(target_arch = "x86_64")]

use super::kernel::LaneVector;
use std::arch::x86_64::*;

// The rows kernels with masked B loads (see
// [`super::kernel::MaskedRowsKernelFn`]) and their zeroing twins
// ([`super::kernel::ZeroingRowsKernelFn`]), one pair per tile of the rows
// kernels.
macro_rules! masked_rows {
    ($(#[$doc:meta])* $name:ident, $zeroing:ident, f32, $mr:literal, $nv:literal) => {
        super::simd_kernel_masked_rows!(
            $(#[$doc])* $name, $zeroing, "avx512f", f32, __m512, 16, $mr, $nv, load_masked_ps, load_cleared_ps,
            _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
        );
    };
    ($(#[$doc:meta])* $name:ident, $zeroing:ident, f64, $mr:literal, $nv:literal) => {
        super::simd_kernel_masked_rows!(
            $(#[$doc])* $name, $zeroing, "avx512f", f64, __m512d, 8, $mr, $nv, load_masked_pd, load_cleared_pd,
            _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd
        );
    };
}

/// The 16 f32 at `p` on `mask`'s lanes (its lanes' bits as a k-mask), the
/// others zero and never touched.
///
/// # Safety
/// The lanes on `mask` readable at `p`; `mask` valid; the CPU has
/// AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_masked_ps(p: *const f32, mask: *const LaneVector) -> __m512 {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe {
        let lanes = _mm512_load_si512(mask.cast());
        _mm512_maskz_loadu_ps(_mm512_test_epi32_mask(lanes, lanes), p)
    }
}

/// The 8 f64 at `p` on `mask`'s lanes, as [`load_masked_ps`].
///
/// # Safety
/// As [`load_masked_ps`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_masked_pd(p: *const f64, mask: *const LaneVector) -> __m512d {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe {
        let lanes = _mm512_load_si512(mask.cast());
        _mm512_maskz_loadu_pd(_mm512_test_epi64_mask(lanes, lanes), p)
    }
}

/// The 16 f32 at `p`, the lanes off `mask` cleared.
///
/// # Safety
/// 16 values readable at `p`; `mask` valid; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_cleared_ps(p: *const f32, mask: *const LaneVector) -> __m512 {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe {
        let lanes = _mm512_load_si512(mask.cast());
        _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(_mm512_loadu_ps(p)), lanes))
    }
}

/// The 8 f64 at `p`, the lanes off `mask` cleared.
///
/// # Safety
/// 8 values readable at `p`; `mask` valid; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_cleared_pd(p: *const f64, mask: *const LaneVector) -> __m512d {
    // SAFETY: as the caller's; a LaneVector is 64 aligned bytes.
    unsafe {
        let lanes = _mm512_load_si512(mask.cast());
        _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(_mm512_loadu_pd(p)), lanes))
    }
}

masked_rows!(
    /// f32, MR = 8, NR = 48, B's lanes masked (or cleared).
    f32_8x48_masked, f32_8x48_zeroing, f32, 8, 3
);
masked_rows!(
    /// f32, MR = 9, NR = 48, B's lanes masked (or cleared).
    f32_9x48_masked, f32_9x48_zeroing, f32, 9, 3
);
masked_rows!(
    /// f32, MR = 5, NR = 80, B's lanes masked (or cleared).
    f32_5x80_masked, f32_5x80_zeroing, f32, 5, 5
);
masked_rows!(
    /// f64, MR = 8, NR = 24, B's lanes masked (or cleared).
    f64_8x24_masked, f64_8x24_zeroing, f64, 8, 3
);
masked_rows!(
    /// f64, MR = 9, NR = 24, B's lanes masked (or cleared).
    f64_9x24_masked, f64_9x24_zeroing, f64, 9, 3
);
masked_rows!(
    /// f64, MR = 5, NR = 40, B's lanes masked (or cleared).
    f64_5x40_masked, f64_5x40_zeroing, f64, 5, 5
);

super::simd_kernel!(
    /// f64, MR = 8, NR = 24 (three 8-lane vectors).
    f64_8x24, f64_8x24_rows, f64_8x24_a_rows, f64_8x24_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f", f64, __m512d, 8, 8, 3,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd
);

super::simd_kernel!(
    /// f32, MR = 8, NR = 48 (three 16-lane vectors).
    f32_8x48, f32_8x48_rows, f32_8x48_a_rows, f32_8x48_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f", f32, __m512, 16, 8, 3,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
);

super::simd_kernel!(
    /// f32, MR = 8, NR = 48 read as six 8-lane vectors: `::<1>` computes
    /// the first 8 columns of a last panel of at most 8 (same sums as
    /// [`f32_8x48`], no FMAs on 8 padding lanes).
    f32_8x48_half, f32_8x48_half_rows, f32_8x48_half_a_rows, f32_8x48_half_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f,avx2,fma", f32, __m256, 8, 8, 6,
    _mm256_setzero_ps, _mm256_set1_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_add_ps
);

super::simd_kernel!(
    /// f64, MR = 8, NR = 24 read as six 4-lane vectors: as
    /// [`f32_8x48_half`], for f64.
    f64_8x24_half, f64_8x24_half_rows, f64_8x24_half_a_rows, f64_8x24_half_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f,avx2,fma", f64, __m256d, 4, 8, 6,
    _mm256_setzero_pd, _mm256_set1_pd, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_fmadd_pd, _mm256_mul_pd, _mm256_add_pd
);

super::simd_kernel!(
    /// f64, MR = 9, NR = 24: 27 accumulators, three B vectors and the
    /// broadcast fill 31 of the 32 registers. For the products with B read
    /// in place whose rows it pads least (see
    /// [`super::kernel::HasKernels::rows_kernel`]).
    f64_9x24, f64_9x24_rows, f64_9x24_a_rows, f64_9x24_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f", f64, __m512d, 8, 9, 3,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd
);

super::simd_kernel!(
    /// f32, MR = 9, NR = 48: as [`f64_9x24`], for f32.
    f32_9x48, f32_9x48_rows, f32_9x48_a_rows, f32_9x48_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f", f32, __m512, 16, 9, 3,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
);

super::simd_kernel!(
    /// f64, MR = 5, NR = 40: 25 accumulators and five B vectors, for the
    /// products with B read in place whose rows it pads least.
    f64_5x40, f64_5x40_rows, f64_5x40_a_rows, f64_5x40_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f", f64, __m512d, 8, 5, 5,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd
);

super::simd_kernel!(
    /// f32, MR = 5, NR = 80: as [`f64_5x40`], for f32.
    f32_5x80, f32_5x80_rows, f32_5x80_a_rows, f32_5x80_ab_rows, b_ahead = 8, a_ahead = 64, "avx512f", f32, __m512, 16, 5, 5,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
);

super::simd_kernel_a_rows!(
    /// f32, MR = 12, NR = 32 (two 16-lane vectors), A read in place.
    f32_12x32_a_rows, a_ahead = 64, "avx512f", f32, __m512, 16, 12, 2,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
);

super::simd_kernel_a_rows!(
    /// f32, MR = 14, NR = 32 (two 16-lane vectors), A read in place: 28
    /// accumulators, two B vectors and the broadcast fill 31 of the 32
    /// registers. Taken where it pads fewer taps than 12 rows: CS231n's
    /// 27 in two panels, not three, 1.02-1.09× on its backward pass
    /// (alternated call by call); on 576 and 256 taps 0.97-0.99×.
    f32_14x32_a_rows, a_ahead = 64, "avx512f", f32, __m512, 16, 14, 2,
    _mm512_setzero_ps, _mm512_set1_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_mul_ps, _mm512_add_ps
);

super::simd_kernel_a_rows!(
    /// f64, MR = 12, NR = 16 (two 8-lane vectors), A read in place.
    f64_12x16_a_rows, a_ahead = 64, "avx512f", f64, __m512d, 8, 12, 2,
    _mm512_setzero_pd, _mm512_set1_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd, _mm512_mul_pd, _mm512_add_pd
);

/// The mask of a vector's first `n` lanes (n < 16).
#[inline(always)]
fn first_lanes_16(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

/// The mask of a vector's first `n` lanes (n < 8).
#[inline(always)]
fn first_lanes_8(n: usize) -> __mmask8 {
    ((1u32 << n) - 1) as __mmask8
}

/// The f32 at `p` on `mask`'s lanes, the others zero and never touched.
///
/// # Safety
/// The lanes on `mask` readable at `p`; the CPU has AVX-512F.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_first_ps(p: *const f32, mask: __mmask16) -> __m512 {
    // SAFETY: as the caller's.
    unsafe { _mm512_maskz_loadu_ps(mask, p) }
}

/// The f64 at `p` on `mask`'s lanes, as [`load_first_ps`].
///
/// # Safety
/// As [`load_first_ps`].
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load_first_pd(p: *const f64, mask: __mmask8) -> __m512d {
    // SAFETY: as the caller's.
    unsafe { _mm512_maskz_loadu_pd(mask, p) }
}

super::simd_dot_kernel!(
    /// f32 dot-product kernel, 5 rows of A × 5 rows of B: 25 zmm
    /// accumulators, five A vectors and one B vector.
    f32_dot_5x5, "avx512f", f32, __m512, 16, 5, 5, __mmask16, first_lanes_16, load_first_ps,
    _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps
);

super::simd_dot_kernel!(
    /// f64 dot-product kernel, 5 rows of A × 5 rows of B.
    f64_dot_5x5, "avx512f", f64, __m512d, 8, 5, 5, __mmask8, first_lanes_8, load_first_pd,
    _mm512_setzero_pd, _mm512_loadu_pd, _mm512_storeu_pd, _mm512_fmadd_pd
);
