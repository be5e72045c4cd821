//! Max pooling: forward with arg-max, backward by scatter to the arg-max.

use super::phase::{padded, PhaseBand};
use super::{for_each_plane, plane_counts, Spans, PARALLEL_MIN_ELEMENTS};
use crate::error::{check_len, Error, Result};
use crate::isa::multiversion;
use crate::{Element, Window2d};
use rayon::prelude::*;

/// Max-pooling forward pass: `out` gets each window's maximum and `argmax`
/// its position within the plane (`y·W + x`).
///
/// `x` holds planes·H·W values; `out` and `argmax` planes·OH·OW.
///
/// # Errors
/// [`Error::Shape`] on wrong slice lengths; [`Error::Overflow`] if a plane has
/// more than `u32::MAX` pixels.
///
/// ```
/// use patchwise_kernels::{max_pool2d_forward, Window2d};
/// let g = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// let (mut out, mut arg) = ([0.0f32], [0u32]);
/// max_pool2d_forward(&[1.0, 4.0, 3.0, 2.0], 1, &g, &mut out, &mut arg).unwrap();
/// assert_eq!((out, arg), ([4.0], [1]));
/// ```
pub fn max_pool2d_forward<T: Element>(
    x: &[T],
    planes: usize,
    geom: &Window2d,
    out: &mut [T],
    argmax: &mut [u32],
) -> Result<()> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    if u32::try_from(in_len).is_err() {
        return Err(Error::Overflow {
            what: "pixels per plane (max pooling indexes them with u32)",
        });
    }
    check_len("x", x.len(), planes * in_len)?;
    check_len("out", out.len(), planes * out_len)?;
    check_len("argmax", argmax.len(), planes * out_len)?;
    if geom.kernel() == [2, 2] && geom.stride() == [2, 2] && geom.pad() == [0, 0] {
        let (width, ow) = (geom.input()[1], geom.output()[1]);
        for_each_plane(x, in_len, out, argmax, out_len, |x, out, arg| {
            max_plane_2x2_stride2(x, width, ow, out, arg)
        });
        return Ok(());
    }
    let spans = Spans::new(geom);
    for_each_plane(x, in_len, out, argmax, out_len, |x, out, arg| {
        max_plane(x, geom, &spans, out, arg)
    });
    Ok(())
}

/// Whether `v` replaces `best` as the running maximum: it is larger, or it
/// is the first NaN (v > NaN is false, so a NaN best is never replaced).
/// Branch-free selects: random data would mispredict every other compare.
#[inline(always)]
fn takes_over<T: Element>(v: T, best: T) -> bool {
    (v > best) | (v.is_nan() & !best.is_nan())
}

/// The maximum of the window rows `y0..y0 + ny`, columns `x0..x0 + nx` of a
/// plane, and its index: the first maximum in row-major order, or the first
/// NaN.
fn window_max<T: Element>(
    x: &[T],
    width: usize,
    (y0, ny): (usize, usize),
    (x0, nx): (usize, usize),
) -> (T, usize) {
    let mut best = y0 * width + x0;
    let mut best_value = x[best];
    for yy in y0..y0 + ny {
        let line = &x[yy * width + x0..yy * width + x0 + nx];
        for (xx, &v) in line.iter().enumerate() {
            let take = takes_over(v, best_value);
            best_value = if take { v } else { best_value };
            best = if take { yy * width + x0 + xx } else { best };
        }
    }
    (best_value, best)
}

/// One tap of the full windows of an output row: `taps[k]` is the tap's
/// pixel in window k, at plane index `first + k·step`. A plain loop over a
/// whole number of blocks, which the compiler vectorises with no tail.
#[inline(always)]
fn max_update<T: Element>(best: &mut [T], at: &mut [u32], taps: &[T], first: u32, step: u32) {
    let mut index = first;
    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(taps) {
        let take = takes_over(v, *b);
        *b = if take { v } else { *b };
        *a = if take { index } else { *a };
        index = index.wrapping_add(step);
    }
}

multiversion! {
/// Max pooling of one plane: border windows one by one, the full windows of
/// each output row tap by tap over the row (see [`PhaseBand`]), in the same
/// row-major tap order.
fn max_plane<T: Element>(x: &[T], geom: &Window2d, spans: &Spans, out: &mut [T], argmax: &mut [u32]) {
    let (width, kw, stride) = (geom.input()[1], geom.kernel()[1], geom.stride()[1]);
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let mut band = PhaseBand::new(width, stride, geom.kernel()[0]);
    let n = padded(full.len());
    let (mut best, mut at) = (vec![T::ZERO; n], vec![0u32; n]);
    for ((&(y0, ny), out_row), arg_row) in spans
        .rows
        .iter()
        .zip(out.chunks_exact_mut(ow))
        .zip(argmax.chunks_exact_mut(ow))
    {
        for xo in left.clone().chain(right.clone()) {
            let (value, index) = window_max(x, width, (y0, ny), spans.cols[xo]);
            out_row[xo] = value;
            arg_row[xo] = index as u32;
        }
        if full.is_empty() {
            continue;
        }
        band.load(x, y0, ny);
        let x0 = spans.cols[full.start].0;
        for i in 0..ny {
            for j in 0..kw {
                let taps = band.taps(i, x0 + j, n);
                // Plane indices fit u32 (checked by the caller); the slack
                // lanes may wrap, harmlessly.
                let first = ((y0 + i) * width + x0 + j) as u32;
                if i == 0 && j == 0 {
                    best.copy_from_slice(taps);
                    let mut index = first;
                    for a in at.iter_mut() {
                        *a = index;
                        index = index.wrapping_add(stride as u32);
                    }
                } else {
                    max_update(&mut best, &mut at, taps, first, stride as u32);
                }
            }
        }
        out_row[full.clone()].copy_from_slice(&best[..full.len()]);
        arg_row[full.clone()].copy_from_slice(&at[..full.len()]);
    }
}
}

multiversion! {
/// Max pooling of one plane with 2×2 windows, stride 2, no padding — the
/// most common case: every window is full, so each output row is a plain
/// pass over two input rows that the compiler can vectorise.
fn max_plane_2x2_stride2<T: Element>(x: &[T], width: usize, ow: usize, out: &mut [T], argmax: &mut [u32]) {
    let below = width as u32;
    for (y, (out_row, arg_row)) in out
        .chunks_exact_mut(ow)
        .zip(argmax.chunks_exact_mut(ow))
        .enumerate()
    {
        let top = &x[2 * y * width..][..2 * ow];
        let bottom = &x[(2 * y + 1) * width..][..2 * ow];
        // Plane sizes fit u32 (checked by the caller).
        let base = (2 * y * width) as u32;
        let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
        for (k, ((o, a), (t, b))) in out_row
            .iter_mut()
            .zip(arg_row.iter_mut())
            .zip(windows)
            .enumerate()
        {
            let (mut best, mut offset) = (t[0], 0);
            for (v, at) in [(t[1], 1), (b[0], below), (b[1], below + 1)] {
                let take = takes_over(v, best);
                best = if take { v } else { best };
                offset = if take { at } else { offset };
            }
            *o = best;
            *a = base + 2 * k as u32 + offset;
        }
    }
}
}

/// Max-pooling backward pass: overwrites `dx` (planes·H·W) with zeros plus
/// each `dout` added at its window's recorded arg-max.
///
/// # Errors
/// [`Error::Shape`] on wrong slice lengths, [`Error::Parameter`] if an
/// arg-max index lies outside its plane.
pub fn max_pool2d_backward<T: Element>(
    dout: &[T],
    argmax: &[u32],
    planes: usize,
    geom: &Window2d,
    dx: &mut [T],
) -> Result<()> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_len("dout", dout.len(), planes * out_len)?;
    check_len("argmax", argmax.len(), planes * out_len)?;
    check_len("dx", dx.len(), planes * in_len)?;
    if let Some(&bad) = argmax.iter().find(|&&a| a as usize >= in_len) {
        return Err(Error::parameter(
            "argmax",
            format!("indices < {in_len} (pixels per plane)"),
            bad,
        ));
    }
    if in_len == 0 || out_len == 0 {
        dx.fill(T::ZERO);
        return Ok(());
    }
    // Each task zeroes its own plane, so the fill is parallel and the plane
    // is still in cache for the scatter.
    let run = |(dx, (dout, arg)): (&mut [T], (&[T], &[u32]))| {
        dx.fill(T::ZERO);
        for (&d, &a) in dout.iter().zip(arg) {
            dx[a as usize] += d;
        }
    };
    if dx.len() < PARALLEL_MIN_ELEMENTS || rayon::current_num_threads() == 1 {
        dx.chunks_mut(in_len)
            .zip(dout.chunks(out_len).zip(argmax.chunks(out_len)))
            .for_each(run);
    } else {
        dx.par_chunks_mut(in_len)
            .zip(dout.par_chunks(out_len).zip(argmax.par_chunks(out_len)))
            .for_each(run);
    }
    Ok(())
}
