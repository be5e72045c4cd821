//! Indexed gathers for packing B from an image:
//! `out[l] = src[sources[l]]`, zero where the index is past the end of
//! `src` (a tap on padding, marked by an out-of-range index). One function
//! per element type and instruction set; the AVX-512 ones use the
//! hardware gather, masked by the range check, so padding is never read.

use crate::Element;

/// See the module docs; `out` and `sources` have the same length.
///
/// # Safety
/// The CPU must support the function's instruction set.
pub type GatherFn<T> = unsafe fn(src: &[T], sources: &[usize], out: &mut [T]);

/// The portable gather.
pub(crate) fn gather_generic<T: Element>(src: &[T], sources: &[usize], out: &mut [T]) {
    for (o, &s) in out.iter_mut().zip(sources) {
        *o = src.get(s).copied().unwrap_or(T::ZERO);
    }
}

/// Defines an AVX-512F gather of 8 values per step (64-bit indices), the
/// tail through [`gather_generic`].
macro_rules! gather_avx512 {
    ($name:ident, $t:ty, $zero:ident, $gather:ident, $store:ident, $scale:literal) => {
        /// See the module docs.
        ///
        /// # Safety
        /// The CPU must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        pub(crate) unsafe fn $name(src: &[$t], sources: &[usize], out: &mut [$t]) {
            use std::arch::x86_64::*;
            let n = out.len().min(sources.len());
            let len = _mm512_set1_epi64(src.len() as i64);
            let mut l = 0;
            while l + 8 <= n {
                // SAFETY: l + 8 ≤ n, so 8 indices are readable and 8 values
                // writable at l; the gather reads only lanes whose index is
                // below src.len() (the mask), i.e. inside `src`.
                unsafe {
                    let index = _mm512_loadu_si512(sources.as_ptr().add(l).cast());
                    let inside = _mm512_cmplt_epu64_mask(index, len);
                    let values = $gather::<$scale>($zero(), inside, index, src.as_ptr().cast());
                    $store(out.as_mut_ptr().add(l), values);
                }
                l += 8;
            }
            gather_generic(src, &sources[l..n], &mut out[l..n]);
        }
    };
}

gather_avx512!(
    gather_f32_avx512,
    f32,
    _mm256_setzero_ps,
    _mm512_mask_i64gather_ps,
    _mm256_storeu_ps,
    4
);
gather_avx512!(
    gather_f64_avx512,
    f64,
    _mm512_setzero_pd,
    _mm512_mask_i64gather_pd,
    _mm512_storeu_pd,
    8
);
