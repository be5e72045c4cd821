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
    for_each_plane(x, in_len, out, argmax, out_len, |x, out, arg| {
        max_plane(x, geom, out, arg)
    });
    Ok(())
}

fn max_plane<T: Element>(x: &[T], geom: &Window2d, out: &mut [T], argmax: &mut [u32]) {
    let [_, w] = geom.input();
    let [kh, kw] = geom.kernel();
    let [oh, ow] = geom.output();
    for y in 0..oh {
        for xo in 0..ow {
            let mut best = usize::MAX;
            let mut best_value = T::ZERO;
            for i in 0..kh {
                let Some(sy) = geom.source(0, y, i) else { continue };
                for j in 0..kw {
                    let Some(sx) = geom.source(1, xo, j) else { continue };
                    let idx = sy * w + sx;
                    let v = x[idx];
                    // First maximum wins ties; the first NaN beats everything.
                    if best == usize::MAX || (!best_value.is_nan() && (v > best_value || v.is_nan())) {
                        best = idx;
                        best_value = v;
                    }
                }
            }
            out[y * ow + xo] = best_value;
            argmax[y * ow + xo] = best as u32;
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

/// The divisor of window (y, x): KH·KW when the padding counts, else the
/// number of real pixels in it (never 0 for a pooling geometry).
fn divisor(geom: &Window2d, y: usize, x: usize, count_include_pad: bool) -> usize {
    if count_include_pad {
        return geom.kernel_len();
    }
    let rows = (0..geom.kernel()[0])
        .filter(|&i| geom.source(0, y, i).is_some())
        .count();
    let cols = (0..geom.kernel()[1])
        .filter(|&j| geom.source(1, x, j).is_some())
        .count();
    rows * cols
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
    let [_, w] = geom.input();
    let [oh, ow] = geom.output();
    let [kh, kw] = geom.kernel();
    let mut no_aux = vec![(); out.len()];
    for_each_plane(x, in_len, out, &mut no_aux, out_len, |x, out, _| {
        for y in 0..oh {
            for xo in 0..ow {
                let mut sum = T::ZERO;
                for i in 0..kh {
                    let Some(sy) = geom.source(0, y, i) else { continue };
                    for j in 0..kw {
                        if let Some(sx) = geom.source(1, xo, j) {
                            sum += x[sy * w + sx];
                        }
                    }
                }
                out[y * ow + xo] = sum / T::from_usize(divisor(geom, y, xo, count_include_pad));
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
    let [_, w] = geom.input();
    let [oh, ow] = geom.output();
    let [kh, kw] = geom.kernel();
    let mut no_aux = vec![(); dx.len()];
    // Parallel over planes of dx (the output of this pass).
    for_each_plane(dout, out_len, dx, &mut no_aux, in_len, |dout, dx, _| {
        for y in 0..oh {
            for xo in 0..ow {
                let share = dout[y * ow + xo] / T::from_usize(divisor(geom, y, xo, count_include_pad));
                for i in 0..kh {
                    let Some(sy) = geom.source(0, y, i) else { continue };
                    for j in 0..kw {
                        if let Some(sx) = geom.source(1, xo, j) {
                            dx[sy * w + sx] += share;
                        }
                    }
                }
            }
        }
    });
    Ok(())
}
