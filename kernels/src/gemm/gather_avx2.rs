//! The AVX2 padded strided lines ([`LinesFn`](super::gather::LinesFn)):
//! loads through `vmaskmov` (lanes outside the source line are never read
//! and come out zero), a step-2 line's even lanes picked from two vectors
//! by a shuffle and a permute, whole vectors stored, only a line's last
//! partial one through a mask. The portable lines had taken a quarter of
//! CS231n's forward pass with AVX2 (a scalar strided copy); alternated
//! call by call (forced AVX2, the Intel machine): its im2col of one image
//! 1.76×, its forward pass 1.12-1.13× on one thread, 1.10-1.16× on two.
//! Step-2 offsets o and o + 1 (neighbouring taps of a kernel row) share
//! their loads: the even lanes are offset o's values, the odd ones o + 1's
//! (against a pair of loads each, alternated call by call in both orders:
//! the im2col of one image 1.14×, CS231n's forward pass 1.03× on one
//! thread and 1.02-1.03× on two, the 7×7/2 ResNet layer's 1.09-1.10× and
//! 1.08-1.11×; the AVX-512 lines share them too: 1.02× on the im2col,
//! the forward passes unchanged).
//!
//! (An AVX2 2-D add, the portable loop compiled for AVX2, measured
//! 0.96-0.98× on CS231n's backward pass: col2im keeps the portable one.)

#![cfg(target_arch = "x86_64")]

use super::gather::{lanes_inside, vector_lines_shape, PADDING_LINE};
use std::arch::x86_64::*;

/// The lanes of `bits` (lane l = bit l) as an 8 × 32-bit mask vector.
#[target_feature(enable = "avx2")]
fn mask_f32(bits: u32) -> __m256i {
    let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    _mm256_cmpeq_epi32(
        _mm256_and_si256(_mm256_set1_epi32(bits as i32), lane_bits),
        lane_bits,
    )
}

/// The lanes of `bits` (lane l = bit l) as a 4 × 64-bit mask vector.
#[target_feature(enable = "avx2")]
fn mask_f64(bits: u32) -> __m256i {
    let lane_bits = _mm256_setr_epi64x(1, 2, 4, 8);
    _mm256_cmpeq_epi64(
        _mm256_and_si256(_mm256_set1_epi64x(bits as i64), lane_bits),
        lane_bits,
    )
}

/// The even lanes of `a` then of `b`: a0 a2 a4 a6 b0 b2 b4 b6.
#[target_feature(enable = "avx2")]
fn evens_f32(a: __m256, b: __m256) -> __m256 {
    // Per 128-bit half: a0 a2 b0 b2 | a4 a6 b4 b6; then the 64-bit pairs
    // in the order 0, 2, 1, 3.
    let pairs = _mm256_castps_pd(_mm256_shuffle_ps::<0b10_00_10_00>(a, b));
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(pairs))
}

/// The even lanes of `a` then of `b`: a0 a2 b0 b2.
#[target_feature(enable = "avx2")]
fn evens_f64(a: __m256d, b: __m256d) -> __m256d {
    // a0 b0 a2 b2, then the lanes in the order 0, 2, 1, 3.
    _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_unpacklo_pd(a, b))
}

/// The odd lanes of `a` then of `b`: a1 a3 a5 a7 b1 b3 b5 b7.
#[target_feature(enable = "avx2")]
fn odds_f32(a: __m256, b: __m256) -> __m256 {
    // As `evens_f32`, from lanes 1 and 3 of each half's quarters.
    let pairs = _mm256_castps_pd(_mm256_shuffle_ps::<0b11_01_11_01>(a, b));
    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(pairs))
}

/// The odd lanes of `a` then of `b`: a1 a3 b1 b3.
#[target_feature(enable = "avx2")]
fn odds_f64(a: __m256d, b: __m256d) -> __m256d {
    _mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_unpackhi_pd(a, b))
}

/// One output vector's masks: the lanes of its first and second load that
/// lie inside the source line, and those of its store inside the line
/// (`whole`: all of them, stored without a mask).
#[derive(Clone, Copy)]
struct Masks {
    first: __m256i,
    second: __m256i,
    store: __m256i,
    whole: bool,
}

/// Defines an AVX2 [`LinesFn`](super::gather::LinesFn); steps above 2
/// and lines reaching outside `src` go through the portable lines
/// ([`vector_lines_shape`]).
macro_rules! lines_avx2 {
    ($name:ident, $t:ty, $lanes:literal, $mask:ident, $zero:ident, $load:ident, $storeu:ident,
     $maskstore:ident, $evens:ident, $odds:ident) => {
        /// See [`LinesFn`](super::gather::LinesFn).
        ///
        /// # Safety
        /// The CPU must support AVX2.
        #[target_feature(enable = "avx2")]
        pub(crate) unsafe fn $name(
            src: &[$t],
            starts: &[usize],
            width: usize,
            offsets: &[isize],
            step: usize,
            out: &mut [$t],
        ) {
            let Some((n, block)) = vector_lines_shape(src, starts, width, offsets, step, out) else {
                return;
            };
            // Vectors whose masks are worked out once per offset (longer
            // lines' middle vectors are whole; past these, as they come).
            const MASKED: usize = 16;
            // Lines of at most this many vectors are short (32 f32s or
            // 16 f64s: the AVX-512 lines' two vectors).
            const SHORT: usize = 4;
            // Most offsets whose short lines go together.
            const TAPS: usize = 8;
            let masks_at = |offset: isize, x: usize| {
                let pos = offset + (x * step) as isize;
                Masks {
                    first: $mask(lanes_inside(pos, width, $lanes)),
                    second: $mask(lanes_inside(pos + $lanes, width, $lanes)),
                    store: $mask(lanes_inside(0, n - x, $lanes)),
                    whole: x + $lanes <= n,
                }
            };
            // The values at `pos` of the line from `from`, zero outside it.
            // SAFETY (of each use): each load reads only the lanes of its
            // mask, whose positions lie inside the source line, itself
            // inside `src` (checked above; the pointer is only formed
            // outside it).
            macro_rules! values {
                ($from:expr, $pos:expr, $m:expr) => {{
                    let low = $load($from.wrapping_offset($pos), $m.first);
                    if step == 1 {
                        low
                    } else {
                        $evens(low, $load($from.wrapping_offset($pos + $lanes), $m.second))
                    }
                }};
            }
            // Stores `v` at `at`: the whole vector or the lanes of the
            // store mask. SAFETY (of each use): `at` is position x of a
            // line of n values inside `out`, and the lanes written lie
            // below n − x.
            macro_rules! put {
                ($at:expr, $m:expr, $v:expr) => {
                    if $m.whole {
                        $storeu($at, $v)
                    } else {
                        $maskstore($at, $m.store, $v)
                    }
                };
            }
            // Offsets o and o + 1 of a step-2 line read the even and the
            // odd lanes of the same two vectors: one pair of loads for
            // both (the load masks of offset o cover o + 1's positions
            // too). CS231n's taps −1, 0, 1 load 4 vectors where they
            // loaded 6.
            let pairs = |o: usize| step == 2 && o + 1 < offsets.len() && offsets[o + 1] == offsets[o] + 1;
            // Offset o's values at `pos` to `at` (evens) and offset
            // o + 1's to `next` (odds). SAFETY (of each use): as `values!`
            // and `put!` for both.
            macro_rules! pair {
                ($at:expr, $next:expr, $from:expr, $pos:expr, $m:expr) => {{
                    let low = $load($from.wrapping_offset($pos), $m.first);
                    let high = $load($from.wrapping_offset($pos + $lanes), $m.second);
                    put!($at, $m, $evens(low, high));
                    put!($next, $m, $odds(low, high));
                }};
            }
            if n <= SHORT * $lanes && offsets.len() <= TAPS {
                // Short lines: vector by vector, its masks worked out once,
                // over every line and offset (as the AVX-512 lines).
                let mut masks = [masks_at(0, 0); TAPS];
                for x in (0..n).step_by($lanes) {
                    for (m, &offset) in masks.iter_mut().zip(offsets) {
                        *m = masks_at(offset, x);
                    }
                    for (l, &start) in starts.iter().enumerate() {
                        let line = out.as_mut_ptr().wrapping_add(l * n + x);
                        // SAFETY: see `values!` and `put!`; line l of each
                        // offset's block lies inside `out`.
                        unsafe {
                            if start == PADDING_LINE {
                                for (o, m) in masks[..offsets.len()].iter().enumerate() {
                                    put!(line.add(o * block), m, $zero());
                                }
                            } else {
                                let from = src.as_ptr().add(start);
                                let mut o = 0;
                                while o < offsets.len() {
                                    let (m, pos) = (&masks[o], offsets[o] + (x * step) as isize);
                                    if pairs(o) {
                                        pair!(line.add(o * block), line.add((o + 1) * block), from, pos, m);
                                        o += 2;
                                    } else {
                                        put!(line.add(o * block), m, values!(from, pos, m));
                                        o += 1;
                                    }
                                }
                            }
                        }
                    }
                }
                return;
            }
            // Longer lines one by one (or pair by pair), so that each
            // line's stores fill whole cache lines in turn.
            let mut o = 0;
            while o < offsets.len() {
                let offset = offsets[o];
                let paired = pairs(o);
                let mut masks = [masks_at(0, 0); MASKED];
                for (v, m) in masks.iter_mut().enumerate().take(n.div_ceil($lanes)) {
                    *m = masks_at(offset, v * $lanes);
                }
                for (l, &start) in starts.iter().enumerate() {
                    let line = out.as_mut_ptr().wrapping_add(o * block + l * n);
                    let from = src.as_ptr().wrapping_add(start);
                    for (v, x) in (0..n).step_by($lanes).enumerate() {
                        let m = if v < MASKED {
                            masks[v]
                        } else {
                            masks_at(offset, x)
                        };
                        let pos = offset + (x * step) as isize;
                        // SAFETY: see `values!`, `put!` and `pair!`; line l
                        // of block o (and o + 1 when paired) lies inside
                        // `out`.
                        unsafe {
                            if start == PADDING_LINE {
                                put!(line.add(x), m, $zero());
                                if paired {
                                    put!(line.add(block + x), m, $zero());
                                }
                            } else if paired {
                                pair!(line.add(x), line.add(block + x), from, pos, m);
                            } else {
                                put!(line.add(x), m, values!(from, pos, m));
                            }
                        }
                    }
                }
                o += 1 + paired as usize;
            }
        }
    };
}

lines_avx2!(
    lines_f32_avx2,
    f32,
    8,
    mask_f32,
    _mm256_setzero_ps,
    _mm256_maskload_ps,
    _mm256_storeu_ps,
    _mm256_maskstore_ps,
    evens_f32,
    odds_f32
);
lines_avx2!(
    lines_f64_avx2,
    f64,
    4,
    mask_f64,
    _mm256_setzero_pd,
    _mm256_maskload_pd,
    _mm256_storeu_pd,
    _mm256_maskstore_pd,
    evens_f64,
    odds_f64
);
