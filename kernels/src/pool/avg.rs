//! Average pooling, forward and backward.

use super::{for_each_plane, is_2x2_stride2, plane_counts, Scratch, Spans};
use crate::error::{check_len, Result};
use crate::isa::multiversion;
use crate::{Element, Window2d};

/// The divisor of a window with `real` unpadded pixels: KH·KW when the
/// padding counts, else `real` (never 0 for a pooling geometry).
fn divisor<T: Element>(geom: &Window2d, real: usize, count_include_pad: bool) -> T {
    T::from_usize(if count_include_pad {
        geom.kernel_len()
    } else {
        real
    })
}

/// Average-pooling forward pass: each window's sum of real pixels divided by
/// KH·KW (`count_include_pad`) or by its number of real pixels.
///
/// # Errors
/// [`Error::Shape`](crate::Error::Shape) on wrong slice lengths;
/// [`Error::Parameter`](crate::Error::Parameter) if `geom` is not a pooling
/// geometry.
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
    if is_2x2_stride2(geom) {
        // Every window full: a straight pass over row pairs (vectorisable),
        // summing in the same order as the general path.
        let ow = geom.output()[1];
        for_each_plane(
            (x, in_len),
            (out, &mut no_aux, out_len),
            || (),
            |_, x, out, _| avg_plane_2x2_stride2(x, width, ow, out),
        );
        return Ok(());
    }
    let spans = Spans::new(geom);
    for_each_plane(
        (x, in_len),
        (out, &mut no_aux, out_len),
        || Scratch::new(geom, &spans),
        |scratch, x, out, _| avg_plane(x, geom, &spans, count_include_pad, scratch, out),
    );
    Ok(())
}

multiversion! {
/// Average pooling of one plane with 2×2 windows, stride 2, no padding.
fn avg_plane_2x2_stride2<T: Element>(x: &[T], width: usize, ow: usize, out: &mut [T]) {
    let quarter = T::from_usize(4);
    for (y, out_row) in out.chunks_exact_mut(ow).enumerate() {
        let top = x[2 * y * width..][..2 * ow].chunks_exact(2);
        let bottom = x[(2 * y + 1) * width..][..2 * ow].chunks_exact(2);
        for (o, (t, b)) in out_row.iter_mut().zip(top.zip(bottom)) {
            *o = (T::ZERO + t[0] + t[1] + b[0] + b[1]) / quarter;
        }
    }
}
}

multiversion! {
/// Average pooling of one plane: border windows one by one, the full windows
/// of each output row tap by tap over the row, summing every window in
/// row-major order from zero.
fn avg_plane<T: Element>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut Scratch<T>,
    out: &mut [T],
) {
    let (width, kw) = (geom.input()[1], geom.kernel()[1]);
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch { band, values: sums, .. } = scratch;
    let n = sums.len();
    for (&(y0, ny), out_row) in spans.rows.iter().zip(out.chunks_exact_mut(ow)) {
        for xo in left.clone().chain(right.clone()) {
            let (x0, nx) = spans.cols[xo];
            let mut sum = T::ZERO;
            for yy in y0..y0 + ny {
                for &v in &x[yy * width + x0..][..nx] {
                    sum += v;
                }
            }
            out_row[xo] = sum / divisor(geom, ny * nx, include);
        }
        if full.is_empty() {
            continue;
        }
        band.load(x, y0, ny);
        sums.fill(T::ZERO);
        let x0 = spans.cols[full.start].0;
        for i in 0..ny {
            for j in 0..kw {
                add_blocks(sums, band.taps(i, x0 + j, n));
            }
        }
        let d = divisor::<T>(geom, ny * kw, include);
        for (o, &s) in out_row[full.clone()].iter_mut().zip(sums.iter()) {
            *o = s / d;
        }
    }
}
}

/// `acc[k] += add[k]`: a plain loop over a whole number of blocks, which
/// the compiler vectorises with no tail.
#[inline(always)]
fn add_blocks<T: Element>(acc: &mut [T], add: &[T]) {
    for (a, &b) in acc.iter_mut().zip(add) {
        *a += b;
    }
}

/// Average-pooling backward pass: overwrites `dx` with each `dout` divided as
/// in the forward pass and added to every real pixel of its window.
///
/// # Errors
/// [`Error::Shape`](crate::Error::Shape) on wrong slice lengths;
/// [`Error::Parameter`](crate::Error::Parameter) if `geom` is not a pooling
/// geometry.
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
    if in_len == 0 || out_len == 0 {
        dx.fill(T::ZERO);
        return Ok(());
    }
    let mut no_aux = vec![(); dx.len()];
    if is_2x2_stride2(geom) {
        for_each_plane(
            (dout, out_len),
            (dx, &mut no_aux, in_len),
            || (),
            |_, dout, dx, _| avg_plane_backward_2x2_stride2(dout, geom, dx),
        );
        return Ok(());
    }
    let spans = Spans::new(geom);
    // Parallel over planes of dx (the output of this pass).
    for_each_plane(
        (dout, out_len),
        (dx, &mut no_aux, in_len),
        || Scratch::new(geom, &spans),
        |scratch, dout, dx, _| avg_plane_backward(dout, geom, &spans, count_include_pad, scratch, dx),
    );
    Ok(())
}

multiversion! {
/// Average-pooling backward of one plane. Every pixel receives its windows'
/// shares in window order (output rows, then columns): border windows
/// scatter one by one; the full windows of an output row add tap by tap in
/// descending tap column, which for any one pixel is ascending window order.
fn avg_plane_backward<T: Element>(
    dout: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut Scratch<T>,
    dx: &mut [T],
) {
    let (width, kw) = (geom.input()[1], geom.kernel()[1]);
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch {
        band,
        values: full_shares,
        row: shares,
        ..
    } = scratch;
    // The full windows' shares in whole blocks, padded with −0: adding −0
    // leaves every value unchanged (even −0), so the slack changes nothing.
    full_shares[full.len()..].fill(-T::ZERO);
    dx.fill(T::ZERO);
    for (&(y0, ny), dout_row) in spans.rows.iter().zip(dout.chunks_exact(ow)) {
        for ((share, &d), &(_, nx)) in shares.iter_mut().zip(dout_row).zip(&spans.cols) {
            *share = d / divisor(geom, ny * nx, include);
        }
        full_shares[..full.len()].copy_from_slice(&shares[full.clone()]);
        let scatter = |dx: &mut [T], xo: usize| {
            let (x0, nx) = spans.cols[xo];
            for yy in y0..y0 + ny {
                for v in &mut dx[yy * width + x0..][..nx] {
                    *v += shares[xo];
                }
            }
        };
        left.clone().for_each(|xo| scatter(dx, xo));
        if !full.is_empty() {
            band.load(dx, y0, ny);
            let x0 = spans.cols[full.start].0;
            for i in 0..ny {
                for j in (0..kw).rev() {
                    add_blocks(band.taps_mut(i, x0 + j, full_shares.len()), full_shares);
                }
            }
            band.store(dx, y0, ny);
        }
        right.clone().for_each(|xo| scatter(dx, xo));
    }
}
}

multiversion! {
/// Backward of one plane of 2×2 / stride-2 / unpadded windows: they do not
/// overlap, so each pixel is written once, in one pass with no zero fill
/// first: `0 + share`, the same bits as the general path's fill and add.
fn avg_plane_backward_2x2_stride2<T: Element>(dout: &[T], geom: &Window2d, dx: &mut [T]) {
    let ([oh, ow], width) = (geom.output(), geom.input()[1]);
    let quarter = T::from_usize(4);
    for (y, row) in dx.chunks_exact_mut(width).enumerate() {
        if y >= 2 * oh {
            row.fill(T::ZERO);
            continue;
        }
        let (pairs, rest) = row.split_at_mut(2 * ow);
        for (pair, &d) in pairs.chunks_exact_mut(2).zip(&dout[y / 2 * ow..][..ow]) {
            let share = T::ZERO + d / quarter;
            pair[0] = share;
            pair[1] = share;
        }
        rest.fill(T::ZERO);
    }
}
}
