//! The transposed implicit GEMM by dot products (a convolution's weight
//! gradient with few taps, `C = A · [im2col(x₀) … im2col(x_{N−1})]ᵀ`):
//! nothing packed, nothing transposed.
//!
//! `C[f, t] = Σₙ Σ_pixels Aₙ[f, pixel] · im2col(xₙ)[t, pixel]` is a dot
//! product of two rows that both run along the output pixels: A's row f
//! (one output row after another, as dout lies) and tap t's row, which on
//! the wide grid of [`super::direct`] is a run of a band of phase planes
//! for every output row. The dot-product micro-kernel
//! ([`super::kernel::DotKernelFn`]) takes FB rows of A and TB taps an
//! output row at a time, one vector of pixels after another, and keeps
//! FB·TB vector sums; the lanes are added up only at the end. Where the
//! route with A packed ([`super::direct_transposed`]) spends as long
//! transposing A into panels as multiplying (CS231n's 27 taps: every
//! packed value feeds only 27 FMAs), this one only builds the bands.
//!
//! Work goes by units of one band of output rows of one image, the units
//! in a fixed number of groups (from the shape only), each group's sums
//! in vectors of its own; at the end the groups' vectors are added in
//! group order and then each vector's lanes pairwise, halving (a fixed
//! order). Every element's sum
//! runs over the same terms in the same order whatever the thread count:
//! results are bit-identical for any number of threads, and serial equals
//! parallel.

use super::direct::Source;
use super::kernel::DotKernel;
use crate::{Element, Window2d};
use ndarray::{ArrayView3, ArrayViewMut2};
use rayon::prelude::*;
use std::ops::Range;

/// Most taps (columns of C) the route takes: beyond them the packed-A
/// route's transposes are spread over enough taps. Against that route
/// (f32 weight gradients alone, two threads, alternated call by call):
/// 27 taps (CS231n) 1.43×, 72 taps 1.04×, 144 0.93×, 147 (ResNet's
/// 7×7/2) 0.88×, 288 0.85×, 576 0.63×.
const MAX_TAPS: usize = 96;
/// Groups to aim for: enough to balance a few threads (a fixed number, so
/// that the sums' order never depends on the thread count).
const TASKS: usize = 8;
/// Output pixels per band, about: a band's phase planes and A's rows for
/// it stay in L1 and L2 while every tile passes over them.
const BAND_PIXELS: usize = 1024;

/// Whether the route applies: C only written (beta = 0), few taps, A's
/// pixels contiguous.
pub(crate) fn applies<T: Element>(beta: T, taps: usize, a: &ArrayView3<'_, T>) -> bool {
    beta == T::ZERO
        && taps <= MAX_TAPS
        && (a.dim().2 <= 1 || a.strides()[2] == 1)
        && a.strides().iter().all(|&s| s >= 0)
}

/// `C ← alpha·Σₙ Aₙ·im2col(xₙ)ᵀ` (A is (count, M, OH·OW), C is
/// (M, C·KH·KW), only written); shapes checked, [`applies`] true, every
/// size positive.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_dot_product<T: Element>(
    kern: &DotKernel<T>,
    alpha: T,
    a: ArrayView3<'_, T>,
    (images, image_stride): (&[T], usize),
    channels: usize,
    geom: &Window2d,
    mut c: ArrayViewMut2<'_, T>,
    parallel: bool,
) {
    let (count, m, _) = a.dim();
    let taps = channels * geom.kernel_len();
    let [oh, ow] = geom.output();
    let band_rows = BAND_PIXELS.div_ceil(ow).clamp(1, oh);
    let units: Vec<(usize, Range<usize>)> = (0..count)
        .flat_map(|n| {
            (0..oh)
                .step_by(band_rows)
                .map(move |r| (n, r..(r + band_rows).min(oh)))
        })
        .collect();
    let groups = units.len().min(TASKS);
    let (fb, tb, lanes) = (kern.fb, kern.tb, kern.lanes);
    assert!(
        fb <= 16 && tb <= 16,
        "dot kernel tile {fb}×{tb}: at most 16 row pointers each"
    );
    let (tiles_f, tiles_t) = (m.div_ceil(fb), taps.div_ceil(tb));
    let tile_len = fb * tb * lanes;
    let group_len = tiles_f * tiles_t * tile_len;
    // Every unit calls every tile, the group's first with `init`: all
    // sums written before they are read.
    let mut partials = match crate::spare::take::<T>(groups * group_len) {
        Ok(v) => v,
        Err(_) => vec![T::ZERO; groups * group_len],
    };

    let [s0, s1, _] = a.strides().try_into().expect("three axes");
    let (s0, s1) = (s0 as usize, s1 as usize);
    let source = |n: usize| {
        let mut source = Source::new((&images[n * image_stride..], 1, image_stride), channels, geom);
        source.band_rows = band_rows;
        source
    };
    // The taps' offsets in a band: the same for every unit (one band
    // height).
    let offsets = source(0).offsets();
    // One group: its units' products into its sums.
    let group = |(g, sums): (usize, &mut [T]), band: &mut Vec<T>| {
        let a_base = a.as_ptr();
        let mine = &units[g * units.len() / groups..(g + 1) * units.len() / groups];
        for (u, (n, rows)) in mine.iter().enumerate() {
            let source = source(*n);
            let wide = source.wide;
            let (data, base) = source.band(rows.clone(), 0, band);
            let first = rows.start * wide - base;
            let mut a_rows = [a_base; 16];
            let mut b_rows = [data.as_ptr(); 16];
            for fi in 0..tiles_f {
                for (k, ptr) in a_rows.iter_mut().take(fb).enumerate() {
                    let f = (fi * fb + k).min(m - 1);
                    // Row f of Aₙ from output row rows.start on: within A
                    // (strides non-negative, indices in range).
                    *ptr = a_base.wrapping_add(n * s0 + f * s1 + rows.start * ow);
                }
                for ti in 0..tiles_t {
                    for (k, ptr) in b_rows.iter_mut().take(tb).enumerate() {
                        let t = (ti * tb + k).min(taps - 1);
                        *ptr = data[offsets[t] as usize + first..].as_ptr();
                    }
                    let acc = &mut sums[(fi * tiles_t + ti) * tile_len..][..tile_len];
                    // SAFETY: FB row pointers into A, each with the band's
                    // rows of OW pixels OW apart; TB tap runs of the band,
                    // each with its rows of OW values `wide` apart inside
                    // the band (the wide grid's rows hold every tap's
                    // columns of an output row); FB·TB·LANES sums.
                    unsafe {
                        (kern.run)(
                            rows.len(),
                            ow,
                            a_rows.as_ptr(),
                            ow,
                            b_rows.as_ptr(),
                            wide,
                            acc.as_mut_ptr(),
                            u == 0,
                        )
                    };
                }
            }
        }
    };
    let parts = partials.chunks_exact_mut(group_len).enumerate();
    if parallel && groups > 1 {
        parts
            .collect::<Vec<_>>()
            .into_par_iter()
            .for_each_init(Vec::new, |band, part| group(part, band));
    } else {
        let mut band = Vec::new();
        parts.for_each(|part| group(part, &mut band));
    }

    // The groups' sums in group order, then each sum's lanes pairwise:
    // lane l plus lane l + half, halving (a fixed order).
    let (total, rest) = partials.split_at_mut(group_len);
    for part in rest.chunks_exact(group_len) {
        total.iter_mut().zip(part).for_each(|(s, &v)| *s += v);
    }
    match lanes {
        16 => halve_lanes::<T, 16>(total),
        8 => halve_lanes::<T, 8>(total),
        4 => halve_lanes::<T, 4>(total),
        2 => halve_lanes::<T, 2>(total),
        _ => assert_eq!(lanes, 1, "lanes a power of two up to 16"),
    }
    for (f, mut row) in c.outer_iter_mut().enumerate() {
        let (fi, k) = (f / fb, f % fb);
        for (t, out) in row.iter_mut().enumerate() {
            let (ti, j) = (t / tb, t % tb);
            *out = alpha * total[(fi * tiles_t + ti) * tile_len + (k * tb + j) * lanes];
        }
    }
    crate::spare::give_back(partials);
}

/// Adds up each run of `L` values in `sums` into its first: lane l plus
/// lane l + L/2, then halving again (a fixed order; arrays of a fixed
/// size, so the halves are added as vectors).
fn halve_lanes<T: Element, const L: usize>(sums: &mut [T]) {
    for sum in sums.chunks_exact_mut(L) {
        let sum: &mut [T; L] = sum.try_into().expect("L values");
        let mut width = L;
        while width > 1 {
            width /= 2;
            for l in 0..width {
                sum[l] += sum[l + width];
            }
        }
    }
}
