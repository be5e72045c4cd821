//! Max and average pooling, forward and backward, parallel over planes.
//!
//! Data is a stack of `planes` independent H×W planes (the N·C planes of an
//! NCHW tensor); the window geometry is a [`Window2d`] built with
//! [`Window2d::pooling`], so every window holds at least one real pixel.
//!
//! Max pooling records, for each output, the index (within its plane) of the
//! window's arg-max: the first maximum in row-major window order, or the
//! first NaN if the window holds one (NaN propagates). The backward pass
//! sends each upstream gradient there. Each plane is handled by one task, so
//! results do not depend on the thread count.

use crate::error::{check_len, checked_product, Error, Result};
use crate::{Element, Window2d};
use rayon::prelude::*;

/// Planes whose total work is below this many elements run on one thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 14;

/// For each output position along one axis, the real (unpadded) input
/// coordinates its window covers: `start..start + len` (pooling windows are
/// dense, so these are consecutive). Computed once per call, shared by all
/// planes, so the inner loops need no bounds logic.
fn window_spans(geom: &Window2d, axis: usize) -> Vec<(usize, usize)> {
    let outputs = geom.output()[axis];
    (0..outputs)
        .map(|o| {
            let taps = (0..geom.kernel()[axis]).filter_map(|t| geom.source(axis, o, t));
            let (mut first, mut len) = (0, 0);
            for (k, pos) in taps.enumerate() {
                if k == 0 {
                    first = pos;
                }
                len += 1;
            }
            (first, len)
        })
        .collect()
}

fn plane_counts(planes: usize, geom: &Window2d) -> Result<(usize, usize)> {
    checked_product("pool input elements", &[planes, geom.input_len()])?;
    checked_product("pool output elements", &[planes, geom.output_len()])?;
    Ok((geom.input_len(), geom.output_len()))
}

/// Runs `f(input_plane, output_plane, aux_plane)` for every plane, in
/// parallel when the work is large enough. `aux` is a second output with the
/// output's plane length (the arg-max of max pooling); passes with a single
/// output give a `[()]` slice, which costs nothing.
fn for_each_plane<A: Sync, B: Send, C: Send>(
    input: &[A],
    in_len: usize,
    out: &mut [B],
    aux: &mut [C],
    out_len: usize,
    f: impl Fn(&[A], &mut [B], &mut [C]) + Sync + Send,
) {
    if in_len == 0 || out_len == 0 {
        return;
    }
    let work = input.len() + out.len();
    let chunks = input
        .chunks(in_len)
        .zip(out.chunks_mut(out_len))
        .zip(aux.chunks_mut(out_len));
    if work < PARALLEL_MIN_ELEMENTS || rayon::current_num_threads() == 1 {
        chunks.for_each(|((i, o), a)| f(i, o, a));
    } else {
        input
            .par_chunks(in_len)
            .zip(out.par_chunks_mut(out_len))
            .zip(aux.par_chunks_mut(out_len))
            .for_each(|((i, o), a)| f(i, o, a));
    }
}

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
    let width = geom.input()[1];
    if geom.kernel() == [2, 2] && geom.stride() == [2, 2] && geom.pad() == [0, 0] {
        let ow = geom.output()[1];
        for_each_plane(x, in_len, out, argmax, out_len, |x, out, arg| {
            max_plane_2x2_stride2(x, width, ow, out, arg)
        });
        return Ok(());
    }
    let (rows, cols) = (window_spans(geom, 0), window_spans(geom, 1));
    let plane = match geom.kernel() {
        [2, 2] => max_plane::<T, 2, 2>,
        [3, 3] => max_plane::<T, 3, 3>,
        _ => max_plane::<T, 0, 0>,
    };
    for_each_plane(x, in_len, out, argmax, out_len, |x, out, arg| {
        plane(x, width, &rows, &cols, out, arg)
    });
    Ok(())
}

/// The maximum of the window rows `y0..y0 + ny`, columns `x0..x0 + nx` of a
/// plane, and its index: the first maximum in row-major order, or the first
/// NaN (v > NaN is false, so a NaN best is never replaced). Branch-free, as
/// random data would mispredict every other comparison.
#[inline(always)]
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
            let take = (v > best_value) | (v.is_nan() & !best_value.is_nan());
            best_value = if take { v } else { best_value };
            best = if take { yy * width + x0 + xx } else { best };
        }
    }
    (best_value, best)
}

/// Max pooling of one plane. `KH × KW` > 0 names the window size at compile
/// time, so full (interior) windows get fully unrolled loops; 0 × 0 is the
/// general path.
fn max_plane<T: Element, const KH: usize, const KW: usize>(
    x: &[T],
    width: usize,
    rows: &[(usize, usize)],
    cols: &[(usize, usize)],
    out: &mut [T],
    argmax: &mut [u32],
) {
    // The output columns whose windows are full: a contiguous middle range.
    let full = |&(_, nx): &(usize, usize)| KH > 0 && nx == KW;
    let lo = cols.iter().position(full).unwrap_or(cols.len());
    let hi = cols.iter().rposition(full).map_or(lo, |i| i + 1);
    let ow = cols.len();
    for ((&(y0, ny), out_row), arg_row) in rows
        .iter()
        .zip(out.chunks_exact_mut(ow))
        .zip(argmax.chunks_exact_mut(ow))
    {
        for (xo, &(x0, nx)) in cols.iter().enumerate() {
            if KH > 0 && ny == KH && (lo..hi).contains(&xo) {
                continue; // done below, without per-window bounds logic
            }
            let (value, index) = window_max(x, width, (y0, ny), (x0, nx));
            out_row[xo] = value;
            arg_row[xo] = index as u32;
        }
        if KH > 0 && ny == KH && lo < hi {
            let band = &x[y0 * width..(y0 + KH) * width];
            for (xo, (o, a)) in out_row[lo..hi].iter_mut().zip(&mut arg_row[lo..hi]).enumerate() {
                let x0 = cols[lo + xo].0;
                let (mut best, mut at) = (band[x0], x0);
                for i in 0..KH {
                    for j in 0..KW {
                        let v = band[i * width + x0 + j];
                        let take = (v > best) | (v.is_nan() & !best.is_nan());
                        best = if take { v } else { best };
                        at = if take { i * width + x0 + j } else { at };
                    }
                }
                *o = best;
                *a = (y0 * width + at) as u32;
            }
        }
    }
}

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
                let take = (v > best) | (v.is_nan() & !best.is_nan());
                best = if take { v } else { best };
                offset = if take { at } else { offset };
            }
            *o = best;
            *a = base + 2 * k as u32 + offset;
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
    dx.fill(T::ZERO);
    if in_len == 0 || out_len == 0 {
        return Ok(());
    }
    let run = |(dx, (dout, arg)): (&mut [T], (&[T], &[u32]))| {
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

/// The divisor of a window with `real` unpadded pixels: KH·KW when the
/// padding counts, else `real` (never 0 for a pooling geometry).
fn divisor(geom: &Window2d, real: usize, count_include_pad: bool) -> usize {
    if count_include_pad {
        geom.kernel_len()
    } else {
        real
    }
}

/// Average-pooling forward pass: each window's sum of real pixels divided by
/// KH·KW (`count_include_pad`) or by its number of real pixels.
///
/// # Errors
/// [`Error::Shape`] on wrong slice lengths.
pub fn avg_pool2d_forward<T: Element>(
    x: &[T],
    planes: usize,
    geom: &Window2d,
    count_include_pad: bool,
    out: &mut [T],
) -> Result<()> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_len("x", x.len(), planes * in_len)?;
    check_len("out", out.len(), planes * out_len)?;
    let width = geom.input()[1];
    let mut no_aux = vec![(); out.len()];
    if geom.kernel() == [2, 2] && geom.stride() == [2, 2] && geom.pad() == [0, 0] {
        // Every window full: a straight pass over row pairs (vectorisable),
        // summing in the same order as the general path.
        let (ow, quarter) = (geom.output()[1], T::from_usize(4));
        for_each_plane(x, in_len, out, &mut no_aux, out_len, |x, out, _| {
            for (y, out_row) in out.chunks_exact_mut(ow).enumerate() {
                let top = x[2 * y * width..][..2 * ow].chunks_exact(2);
                let bottom = x[(2 * y + 1) * width..][..2 * ow].chunks_exact(2);
                for (o, (t, b)) in out_row.iter_mut().zip(top.zip(bottom)) {
                    *o = (T::ZERO + t[0] + t[1] + b[0] + b[1]) / quarter;
                }
            }
        });
        return Ok(());
    }
    let (rows, cols) = (window_spans(geom, 0), window_spans(geom, 1));
    for_each_plane(x, in_len, out, &mut no_aux, out_len, |x, out, _| {
        let mut k = 0;
        for &(y0, ny) in &rows {
            for &(x0, nx) in &cols {
                let mut sum = T::ZERO;
                for yy in y0..y0 + ny {
                    for &v in &x[yy * width + x0..yy * width + x0 + nx] {
                        sum += v;
                    }
                }
                out[k] = sum / T::from_usize(divisor(geom, ny * nx, count_include_pad));
                k += 1;
            }
        }
    });
    Ok(())
}

/// Average-pooling backward pass: overwrites `dx` with each `dout` divided as
/// in the forward pass and added to every real pixel of its window.
///
/// # Errors
/// [`Error::Shape`] on wrong slice lengths.
pub fn avg_pool2d_backward<T: Element>(
    dout: &[T],
    planes: usize,
    geom: &Window2d,
    count_include_pad: bool,
    dx: &mut [T],
) -> Result<()> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_len("dout", dout.len(), planes * out_len)?;
    check_len("dx", dx.len(), planes * in_len)?;
    dx.fill(T::ZERO);
    let (rows, cols) = (window_spans(geom, 0), window_spans(geom, 1));
    let width = geom.input()[1];
    let mut no_aux = vec![(); dx.len()];
    // Parallel over planes of dx (the output of this pass).
    for_each_plane(dout, out_len, dx, &mut no_aux, in_len, |dout, dx, _| {
        let mut k = 0;
        for &(y0, ny) in &rows {
            for &(x0, nx) in &cols {
                let share = dout[k] / T::from_usize(divisor(geom, ny * nx, count_include_pad));
                for yy in y0..y0 + ny {
                    for v in &mut dx[yy * width + x0..yy * width + x0 + nx] {
                        *v += share;
                    }
                }
                k += 1;
            }
        }
    });
    Ok(())
}
