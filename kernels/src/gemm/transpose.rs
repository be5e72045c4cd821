//! Rows transposed into the packed-B layout of the in-place-A kernels
//! ([`super::kernel::ARowsKernel`]): step p of a panel holds value p of
//! each of up to NR rows, `dst[p·NR + j] = rows[j][p]`. The weight
//! gradient packs dout this way (filters become the tile's columns), one
//! output row at a time.
//!
//! Written element by element that is one strided store per value — as
//! slow as the product it feeds on small layers. The SIMD versions
//! transpose W×W blocks in registers (AVX-512: 16×16 f32, 8×8 f64; AVX2:
//! 8×8 f32, 4×4 f64): whole-vector loads from the rows (masked in the
//! last block) and whole-vector stores of the steps.

use crate::Element;

/// `dst[p·nr + j] = rows[j][p]` for p < `len` and j < `nr`, with zeros for
/// j ≥ `rows.len()`. Panics unless `rows.len() <= nr`, every row holds
/// `len` values and `dst` `len·nr`.
///
/// # Safety
/// The instruction set the function was compiled for must be supported.
pub type PanelFn<T> = unsafe fn(rows: &[&[T]], len: usize, nr: usize, dst: &mut [T]);

fn check<T>(rows: &[&[T]], len: usize, nr: usize, dst: &[T]) {
    assert!(
        rows.len() <= nr && dst.len() >= len * nr && rows.iter().all(|r| r.len() >= len),
        "transposed panel: {} rows of {len} values into NR = {nr}, {} values",
        rows.len(),
        dst.len()
    );
}

/// The portable version.
pub fn panel_generic<T: Element>(rows: &[&[T]], len: usize, nr: usize, dst: &mut [T]) {
    check(rows, len, nr, dst);
    for j in 0..nr {
        let row = rows.get(j);
        for p in 0..len {
            dst[p * nr + j] = row.map_or(T::ZERO, |row| row[p]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub use x86::{panel_f32_avx2, panel_f32_avx512, panel_f64_avx2, panel_f64_avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::check;
    use std::arch::x86_64::*;

    /// A panel function over W×W register transposes: `nr` must be a
    /// multiple of W; the steps past the last whole block are one more
    /// block, its rows loaded through a mask (`$tail`) and only its real
    /// steps stored.
    macro_rules! panel {
        ($(#[$doc:meta])* $name:ident, $feature:literal, $t:ty, $w:literal,
         $zero:ident, $load:ident, $tail:ident, $store:ident, $transpose:ident) => {
            $(#[$doc])*
            ///
            /// # Safety
            #[doc = concat!("The CPU must support ", $feature, ".")]
            #[target_feature(enable = $feature)]
            pub unsafe fn $name(rows: &[&[$t]], len: usize, nr: usize, dst: &mut [$t]) {
                check(rows, len, nr, dst);
                assert!(nr.is_multiple_of($w), "NR = {nr} is not a multiple of {}", $w);
                let zeros = [0.0 as $t; $w];
                for j0 in (0..nr).step_by($w) {
                    // Rows of this block; missing ones read W zeros at every step.
                    let mut from = [zeros.as_ptr(); $w];
                    let mut step = [0usize; $w];
                    for q in 0..$w {
                        if let Some(row) = rows.get(j0 + q) {
                            (from[q], step[q]) = (row.as_ptr(), 1);
                        }
                    }
                    for p in (0..len).step_by($w) {
                        let steps = $w.min(len - p);
                        let mut r = [$zero(); $w];
                        for q in 0..$w {
                            let at = from[q].wrapping_add(p * step[q]);
                            // SAFETY: a real row holds len ≥ p + steps
                            // values (checked), a missing one W zeros at
                            // offset 0; the tail load reads `steps` lanes.
                            r[q] = unsafe { if steps == $w { $load(at) } else { $tail(at, steps) } };
                        }
                        for (q, &v) in $transpose(r).iter().take(steps).enumerate() {
                            // SAFETY: (p + q)·nr + j0 + W ≤ len·nr ≤ dst.len().
                            unsafe { $store(dst.as_mut_ptr().add((p + q) * nr + j0), v) };
                        }
                    }
                }
            }
        };
    }

    /// The first `n` (< 16) f32s at `at`, zeros after; nothing past them read.
    ///
    /// # Safety
    /// `n` values readable at `at`; AVX-512F supported.
    #[target_feature(enable = "avx512f")]
    unsafe fn tail_f32_avx512(at: *const f32, n: usize) -> __m512 {
        // SAFETY: masked-off lanes are not read (no fault past the n values).
        unsafe { _mm512_maskz_loadu_ps(((1u32 << n) - 1) as u16, at) }
    }

    /// The first `n` (< 8) f64s at `at`, zeros after; nothing past them read.
    ///
    /// # Safety
    /// `n` values readable at `at`; AVX-512F supported.
    #[target_feature(enable = "avx512f")]
    unsafe fn tail_f64_avx512(at: *const f64, n: usize) -> __m512d {
        // SAFETY: masked-off lanes are not read (no fault past the n values).
        unsafe { _mm512_maskz_loadu_pd(((1u32 << n) - 1) as u8, at) }
    }

    /// The first `n` (< 8) f32s at `at`, zeros after; nothing past them read.
    ///
    /// # Safety
    /// `n` values readable at `at`; AVX2 supported.
    #[target_feature(enable = "avx2")]
    unsafe fn tail_f32_avx2(at: *const f32, n: usize) -> __m256 {
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        // SAFETY: masked-off lanes are not read (no fault past the n values).
        unsafe { _mm256_maskload_ps(at, mask) }
    }

    /// The first `n` (< 4) f64s at `at`, zeros after; nothing past them read.
    ///
    /// # Safety
    /// `n` values readable at `at`; AVX2 supported.
    #[target_feature(enable = "avx2")]
    unsafe fn tail_f64_avx2(at: *const f64, n: usize) -> __m256d {
        let mask = _mm256_cmpgt_epi64(_mm256_set1_epi64x(n as i64), _mm256_setr_epi64x(0, 1, 2, 3));
        // SAFETY: masked-off lanes are not read (no fault past the n values).
        unsafe { _mm256_maskload_pd(at, mask) }
    }

    panel!(
        /// f32 with AVX-512F: 16×16 blocks.
        panel_f32_avx512, "avx512f", f32, 16, _mm512_setzero_ps, _mm512_loadu_ps, tail_f32_avx512, _mm512_storeu_ps, transpose_16x16
    );
    panel!(
        /// f64 with AVX-512F: 8×8 blocks.
        panel_f64_avx512, "avx512f", f64, 8, _mm512_setzero_pd, _mm512_loadu_pd, tail_f64_avx512, _mm512_storeu_pd, transpose_8x8_pd
    );
    panel!(
        /// f32 with AVX2: 8×8 blocks.
        panel_f32_avx2, "avx2", f32, 8, _mm256_setzero_ps, _mm256_loadu_ps, tail_f32_avx2, _mm256_storeu_ps, transpose_8x8_ps
    );
    panel!(
        /// f64 with AVX2: 4×4 blocks.
        panel_f64_avx2, "avx2", f64, 4, _mm256_setzero_pd, _mm256_loadu_pd, tail_f64_avx2, _mm256_storeu_pd, transpose_4x4
    );

    /// Rows r[0..16] in, columns out.
    #[target_feature(enable = "avx512f")]
    fn transpose_16x16(r: [__m512; 16]) -> [__m512; 16] {
        // Interleave 32-bit pairs, then 64-bit pairs: u[4b + c], lane L,
        // holds rows 4b..4b+3 of column 4L + c.
        let mut t = [_mm512_setzero_ps(); 16];
        for b in 0..8 {
            t[2 * b] = _mm512_unpacklo_ps(r[2 * b], r[2 * b + 1]);
            t[2 * b + 1] = _mm512_unpackhi_ps(r[2 * b], r[2 * b + 1]);
        }
        let mut u = [_mm512_setzero_ps(); 16];
        for b in 0..4 {
            let (e, o) = (_mm512_castps_pd(t[4 * b]), _mm512_castps_pd(t[4 * b + 2]));
            let (e1, o1) = (_mm512_castps_pd(t[4 * b + 1]), _mm512_castps_pd(t[4 * b + 3]));
            u[4 * b] = _mm512_castpd_ps(_mm512_unpacklo_pd(e, o));
            u[4 * b + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(e, o));
            u[4 * b + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(e1, o1));
            u[4 * b + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(e1, o1));
        }
        // Gather the four 128-bit lanes of each column.
        let mut col = [_mm512_setzero_ps(); 16];
        for c in 0..4 {
            let (a, b, e, d) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
            let (lo_ab, hi_ab) = (
                _mm512_shuffle_f32x4::<0x88>(a, b),
                _mm512_shuffle_f32x4::<0xdd>(a, b),
            );
            let (lo_ed, hi_ed) = (
                _mm512_shuffle_f32x4::<0x88>(e, d),
                _mm512_shuffle_f32x4::<0xdd>(e, d),
            );
            col[c] = _mm512_shuffle_f32x4::<0x88>(lo_ab, lo_ed);
            col[c + 8] = _mm512_shuffle_f32x4::<0xdd>(lo_ab, lo_ed);
            col[c + 4] = _mm512_shuffle_f32x4::<0x88>(hi_ab, hi_ed);
            col[c + 12] = _mm512_shuffle_f32x4::<0xdd>(hi_ab, hi_ed);
        }
        col
    }

    /// Rows r[0..8] in, columns out.
    #[target_feature(enable = "avx512f")]
    fn transpose_8x8_pd(r: [__m512d; 8]) -> [__m512d; 8] {
        // t[2b + c], lane L, holds rows 2b, 2b + 1 of column 2L + c.
        let mut t = [_mm512_setzero_pd(); 8];
        for b in 0..4 {
            t[2 * b] = _mm512_unpacklo_pd(r[2 * b], r[2 * b + 1]);
            t[2 * b + 1] = _mm512_unpackhi_pd(r[2 * b], r[2 * b + 1]);
        }
        let mut col = [_mm512_setzero_pd(); 8];
        for c in 0..2 {
            let (a, b, e, d) = (t[c], t[2 + c], t[4 + c], t[6 + c]);
            let (lo_ab, hi_ab) = (
                _mm512_shuffle_f64x2::<0x88>(a, b),
                _mm512_shuffle_f64x2::<0xdd>(a, b),
            );
            let (lo_ed, hi_ed) = (
                _mm512_shuffle_f64x2::<0x88>(e, d),
                _mm512_shuffle_f64x2::<0xdd>(e, d),
            );
            col[c] = _mm512_shuffle_f64x2::<0x88>(lo_ab, lo_ed);
            col[c + 4] = _mm512_shuffle_f64x2::<0xdd>(lo_ab, lo_ed);
            col[c + 2] = _mm512_shuffle_f64x2::<0x88>(hi_ab, hi_ed);
            col[c + 6] = _mm512_shuffle_f64x2::<0xdd>(hi_ab, hi_ed);
        }
        col
    }

    /// Rows r[0..8] in, columns out.
    #[target_feature(enable = "avx2")]
    fn transpose_8x8_ps(r: [__m256; 8]) -> [__m256; 8] {
        // u[4h + c], 128-bit half L, holds rows 4h..4h+3 of column 4L + c.
        let mut u = [_mm256_setzero_ps(); 8];
        for h in 0..2 {
            let t0 = _mm256_unpacklo_ps(r[4 * h], r[4 * h + 1]);
            let t1 = _mm256_unpackhi_ps(r[4 * h], r[4 * h + 1]);
            let t2 = _mm256_unpacklo_ps(r[4 * h + 2], r[4 * h + 3]);
            let t3 = _mm256_unpackhi_ps(r[4 * h + 2], r[4 * h + 3]);
            u[4 * h] = _mm256_shuffle_ps::<0x44>(t0, t2);
            u[4 * h + 1] = _mm256_shuffle_ps::<0xee>(t0, t2);
            u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(t1, t3);
            u[4 * h + 3] = _mm256_shuffle_ps::<0xee>(t1, t3);
        }
        let mut col = [_mm256_setzero_ps(); 8];
        for c in 0..4 {
            col[c] = _mm256_permute2f128_ps::<0x20>(u[c], u[4 + c]);
            col[c + 4] = _mm256_permute2f128_ps::<0x31>(u[c], u[4 + c]);
        }
        col
    }

    /// Rows r[0..4] in, columns out.
    #[target_feature(enable = "avx2")]
    fn transpose_4x4(r: [__m256d; 4]) -> [__m256d; 4] {
        let t0 = _mm256_unpacklo_pd(r[0], r[1]);
        let t1 = _mm256_unpackhi_pd(r[0], r[1]);
        let t2 = _mm256_unpacklo_pd(r[2], r[3]);
        let t3 = _mm256_unpackhi_pd(r[2], r[3]);
        [
            _mm256_permute2f128_pd::<0x20>(t0, t2),
            _mm256_permute2f128_pd::<0x20>(t1, t3),
            _mm256_permute2f128_pd::<0x31>(t0, t2),
            _mm256_permute2f128_pd::<0x31>(t1, t3),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every panel function this CPU supports against the definition, for
    /// row counts and lengths around the block sizes; `dst` starts dirty,
    /// so unused lanes must be written as zeros.
    fn check_all<T: Element>(functions: &[(usize, PanelFn<T>)]) {
        for &(nr, pack) in functions {
            for count in [0, 1, nr / 2 + 1, nr - 1, nr] {
                for len in [0, 1, 7, 8, 15, 16, 17, 33, 56] {
                    let rows: Vec<Vec<T>> = (0..count)
                        .map(|j| (0..len).map(|p| T::from_f64((j * 100 + p) as f64)).collect())
                        .collect();
                    let refs: Vec<&[T]> = rows.iter().map(Vec::as_slice).collect();
                    let mut dst = vec![T::from_f64(-1.0); len * nr];
                    // SAFETY: only functions of supported instruction sets are listed.
                    unsafe { pack(&refs, len, nr, &mut dst) };
                    for p in 0..len {
                        for j in 0..nr {
                            let expected = if j < count { rows[j][p] } else { T::ZERO };
                            assert_eq!(
                                dst[p * nr + j],
                                expected,
                                "nr {nr} count {count} len {len} p {p} j {j}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn panels_match_the_definition() {
        let mut f32s: Vec<(usize, PanelFn<f32>)> =
            vec![(8, panel_generic::<f32>), (32, panel_generic::<f32>)];
        let mut f64s: Vec<(usize, PanelFn<f64>)> =
            vec![(4, panel_generic::<f64>), (16, panel_generic::<f64>)];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            f32s.extend([(16, panel_f32_avx512 as PanelFn<f32>), (32, panel_f32_avx512)]);
            f64s.extend([(8, panel_f64_avx512 as PanelFn<f64>), (16, panel_f64_avx512)]);
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            f32s.extend([(8, panel_f32_avx2 as PanelFn<f32>), (16, panel_f32_avx2)]);
            f64s.extend([(4, panel_f64_avx2 as PanelFn<f64>), (8, panel_f64_avx2)]);
        }
        check_all(&f32s);
        check_all(&f64s);
    }
}
