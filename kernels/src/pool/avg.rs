//! Average pooling, forward and backward.

use super::phase::{interleave_phases, padded, prefetch_row};
use super::{for_each_plane, is_2x2_stride2, is_3x3_stride2, plane_counts, Scratch, Slot, Spans};
use crate::error::{check_len, Result};
use crate::isa::multiversion;
use crate::{Element, Window2d};
use std::mem::MaybeUninit;

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
    let mut no_aux = vec![(); out.len()];
    let spans = Spans::new(geom);
    for_each_plane(
        (x, in_len),
        (out, &mut no_aux, out_len),
        || Scratch::new(geom, &spans),
        |scratch, x, out, _| forward_plane(x, geom, &spans, count_include_pad, scratch, out),
    );
    Ok(())
}

/// [`avg_pool2d_forward`] into a new vector, each plane made while in
/// cache: no zero-filled array written to memory first.
///
/// # Errors
/// As [`avg_pool2d_forward`].
///
/// ```
/// use patchwise_kernels::{avg_pool2d_forward_vec, Window2d};
/// let g = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// let out = avg_pool2d_forward_vec(&[1.0f32, 4.0, 3.0, 2.0], 1, &g, true).unwrap();
/// assert_eq!(out, [2.5]);
/// ```
pub fn avg_pool2d_forward_vec<T: Element>(
    x: &[T],
    planes: usize,
    geom: &Window2d,
    count_include_pad: bool,
) -> Result<Vec<T>> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_len("x", x.len(), planes * in_len)?;
    let spans = Spans::new(geom);
    let plane =
        |scratch: &mut Scratch<T>, p: usize, out: &mut [MaybeUninit<T>], _: &mut [MaybeUninit<()>]| {
            forward_plane(
                &x[p * in_len..][..in_len],
                geom,
                &spans,
                count_include_pad,
                scratch,
                out,
            );
            Ok(())
        };
    // SAFETY: out_len > 0 (pooling), and the passes write every output of
    // their plane (see `forward_plane`).
    let (out, _) = unsafe {
        super::fresh_planes_written(
            (planes, planes * (in_len + out_len)),
            (out_len, 1),
            || Scratch::new(geom, &spans),
            plane,
        )
    }?;
    Ok(out)
}

/// The forward pass of one plane, by the fastest path for `geom`: 2×2 /
/// stride 2 (every window full) in a straight pass over row pairs
/// (vectorisable), summing in the same order as the general path (column
/// sums, then the columns from zero). Either writes every output of the
/// plane and reads none back, so `out` may be fresh memory.
fn forward_plane<T: Element>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut Scratch<T>,
    out: &mut [impl Slot<T>],
) {
    if is_2x2_stride2(geom) {
        avg_plane_2x2_stride2(x, geom.input()[1], geom.output()[1], out);
    } else {
        avg_plane(x, geom, spans, include, scratch, out);
    }
}

multiversion! {
/// Average pooling of one plane with 2×2 windows, stride 2, no padding.
fn avg_plane_2x2_stride2<T: Element, O: Slot<T>>(x: &[T], width: usize, ow: usize, out: &mut [O]) {
    let quarter = T::from_usize(4);
    for (y, out_row) in out.chunks_exact_mut(ow).enumerate() {
        let top = x[2 * y * width..][..2 * ow].chunks_exact(2);
        let bottom = x[(2 * y + 1) * width..][..2 * ow].chunks_exact(2);
        for (o, (t, b)) in out_row.iter_mut().zip(top.zip(bottom)) {
            o.put((T::ZERO + (t[0] + b[0]) + (t[1] + b[1])) / quarter);
        }
    }
}
}

multiversion! {
/// Average pooling of one plane, separably: per output row, the column sums
/// of its window rows (one contiguous pass per row), then each window's
/// columns added — border windows one by one, the full windows tap column
/// by tap column over the phase-split row of column sums.
fn avg_plane<T: Element, O: Slot<T>>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut Scratch<T>,
    out: &mut [O],
) {
    let (width, kw) = (geom.input()[1], geom.kernel()[1]);
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch { band, values: sums, column, .. } = scratch;
    let n = padded(full.len());
    let sums = &mut sums[..n];
    let (kh, sy) = (geom.kernel()[0], geom.stride()[0]);
    for (&(y0, ny), out_row) in spans.rows.iter().zip(out.chunks_exact_mut(ow)) {
        // The rows the output row after next starts reading (one output
        // row ahead: 1.04-1.12× on 3×3 / stride 2; two ahead no better).
        for r in 0..sy {
            prefetch_row(x, y0 + kh + sy + r, width);
        }
        column.copy_from_slice(&x[y0 * width..][..width]);
        for yy in y0 + 1..y0 + ny {
            column.iter_mut().zip(&x[yy * width..][..width]).for_each(|(c, &v)| *c += v);
        }
        for xo in left.clone().chain(right.clone()) {
            let (x0, nx) = spans.cols[xo];
            let sum = column[x0..x0 + nx].iter().fold(T::ZERO, |acc, &v| acc + v);
            out_row[xo].put(sum / divisor(geom, ny * nx, include));
        }
        if full.is_empty() {
            continue;
        }
        band.load(column, 0, 1);
        sums.fill(T::ZERO);
        let x0 = spans.cols[full.start].0;
        for j in 0..kw {
            add_blocks(sums, band.taps(0, x0 + j, n));
        }
        let d = divisor::<T>(geom, ny * kw, include);
        for (o, &s) in out_row[full.clone()].iter_mut().zip(sums.iter()) {
            o.put(s / d);
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
    let spans = Spans::new(geom);
    // Parallel over planes of dx (the output of this pass).
    for_each_plane(
        (dout, out_len),
        (dx, &mut no_aux, in_len),
        || backward_scratch(geom, &spans),
        |scratch, dout, dx, _| backward_plane(dout, geom, &spans, count_include_pad, scratch, dx),
    );
    Ok(())
}

/// The backward pass's per-task buffers: one share per output column, one
/// spread row.
fn backward_scratch<T: Element>(geom: &Window2d, spans: &Spans) -> (Vec<T>, Vec<T>) {
    // A spread row, then room for three pairs of phases (see
    // `spread_phases`): the general pass uses one, the 3×3 / stride-2 pass
    // two window rows' and their sum.
    let width = geom.input()[1];
    (
        vec![T::ZERO; spans.cols.len()],
        vec![T::ZERO; width + 6 * phase_len(geom)],
    )
}

/// Values per phase of [`spread_phases`]: one per window column and one
/// more, and at least half a row and one more.
fn phase_len(geom: &Window2d) -> usize {
    (geom.output()[1] + 1).max(geom.input()[1].div_ceil(2) + 1)
}

/// The backward pass of one plane (overwriting `dx`), by the fastest path
/// for `geom`.
fn backward_plane<T: Element>(
    dout: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut (Vec<T>, Vec<T>),
    dx: &mut [T],
) {
    if is_2x2_stride2(geom) {
        avg_plane_backward_2x2_stride2(dout, geom, dx);
    } else if is_3x3_stride2(geom) {
        avg_plane_backward_3x3_stride2(dout, geom, spans, include, scratch, dx);
    } else {
        avg_plane_backward(dout, geom, spans, include, scratch, dx);
    }
}

/// [`avg_pool2d_backward`] into a new vector (planes·H·W), each plane made
/// while in cache: no zero-filled array written to memory first.
///
/// # Errors
/// As [`avg_pool2d_backward`].
///
/// ```
/// use patchwise_kernels::{avg_pool2d_backward_vec, Window2d};
/// let g = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// let dx = avg_pool2d_backward_vec(&[4.0f32], 1, &g, true).unwrap();
/// assert_eq!(dx, [1.0; 4]);
/// ```
pub fn avg_pool2d_backward_vec<T: Element>(
    dout: &[T],
    planes: usize,
    geom: &Window2d,
    count_include_pad: bool,
) -> Result<Vec<T>> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_len("dout", dout.len(), planes * out_len)?;
    let spans = Spans::new(geom);
    let work = (planes, planes * (in_len + out_len));
    if is_3x3_stride2(geom) {
        let plane = |scratch: &mut (Vec<T>, Vec<T>),
                     p: usize,
                     dx: &mut [MaybeUninit<T>],
                     unit: &mut [MaybeUninit<()>]| {
            unit[0].write(());
            let dout = &dout[p * out_len..][..out_len];
            avg_plane_backward_3x3_stride2(dout, geom, &spans, count_include_pad, scratch, dx);
            Ok(())
        };
        // SAFETY: in_len > 0 (pooling), and the pass writes every pixel of
        // its plane (see its docs).
        return unsafe {
            super::fresh_planes_written(work, (in_len, 1), || backward_scratch(geom, &spans), plane)
                .map(|(dx, _)| dx)
        };
    }
    let (dx, _) = super::fresh_planes(
        work,
        (in_len, T::ZERO),
        (1, ()),
        || backward_scratch(geom, &spans),
        |scratch, p, dx, _| {
            let dout = &dout[p * out_len..][..out_len];
            backward_plane(dout, geom, &spans, count_include_pad, scratch, dx);
            Ok(())
        },
    )?;
    Ok(dx)
}

multiversion! {
/// Average-pooling backward of one plane, separably: per output row, its
/// windows' shares spread over their columns (a column's windows added in
/// column order; for windows 3 wide at stride 2, in two contiguous phases,
/// 1.2-1.3× the strided passes) into `spread`, then that row copied into
/// the window rows of dx that no earlier output row reached and added to
/// the others. Every
/// pixel is written once or more, no zero fill first (rows no window
/// covers are zeroed); a pixel's sum is its windows' shares grouped by
/// output row, the rows in order.
fn avg_plane_backward<T: Element>(
    dout: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut (Vec<T>, Vec<T>),
    dx: &mut [T],
) {
    let (shares, spread) = scratch;
    let (width, kw, stride) = (geom.input()[1], geom.kernel()[1], geom.stride()[1]);
    let len = phase_len(geom);
    let ow = spans.cols.len();
    // Rows of dx written so far.
    let mut written = 0;
    for (&(y0, ny), dout_row) in spans.rows.iter().zip(dout.chunks_exact(ow)) {
        // The divisions first, in a loop of their own (vectorised).
        for ((share, &d), &(_, nx)) in shares.iter_mut().zip(dout_row).zip(&spans.cols) {
            *share = d / divisor(geom, ny * nx, include);
        }
        let (spread, phases) = spread.split_at_mut(width);
        if kw == 3 && stride == 2 {
            let (even, odd) = phases[..2 * len].split_at_mut(len);
            spread_phases(shares, (even, odd));
            interleave_phases(spread, (even, odd), geom.pad()[1]);
        } else {
            spread_row(shares, spans, (kw, stride), spread);
        }
        let spread = &*spread;
        if y0 > written {
            dx[written * width..y0 * width].fill(T::ZERO);
        }
        for (y, row) in dx[y0 * width..(y0 + ny) * width].chunks_exact_mut(width).enumerate() {
            if y0 + y < written {
                row.iter_mut().zip(spread.iter()).for_each(|(v, &s)| *v += s);
            } else {
                row.copy_from_slice(spread);
            }
        }
        written = written.max(y0 + ny);
    }
    dx[written * width..].fill(T::ZERO);
}
}

multiversion! {
/// Average-pooling backward of one plane of 3×3 / stride-2 windows, dx
/// row by row: with q = y + pad, row y lies in window rows q/2 − 1 and q/2
/// for even q, in (q − 1)/2 for odd q; each window row's shares spread
/// once ([`spread_phases`], two rows kept), and row y is the first
/// spread, plus the second — the general pass's sums (a row copied, then
/// the next window row added) — interleaved straight into dx. Writes every
/// pixel once, reading none (so `dx` may be fresh memory:
/// [`super::fresh_planes_written`]).
fn avg_plane_backward_3x3_stride2<T: Element, O: Slot<T>>(
    dout: &[T],
    geom: &Window2d,
    spans: &Spans,
    include: bool,
    scratch: &mut (Vec<T>, Vec<T>),
    dx: &mut [O],
) {
    let (shares, spreads) = scratch;
    let [oh, ow] = geom.output();
    let (width, pad_y, pad_x) = (geom.input()[1], geom.pad()[0], geom.pad()[1]);
    let len = phase_len(geom);
    let (slots, sum) = spreads[..6 * len].split_at_mut(4 * len);
    let (sum_even, sum_odd) = sum.split_at_mut(len);
    // The window row each of the two slots' phases hold.
    let mut held = [usize::MAX; 2];
    for (y, row) in dx.chunks_exact_mut(width).enumerate() {
        let q = y + pad_y;
        let windows = if q % 2 == 0 { [(q / 2).checked_sub(1), Some(q / 2)] } else { [Some((q - 1) / 2), None] };
        let mut windows = windows.into_iter().flatten().filter(|&yo| yo < oh);
        let (first, second) = (windows.next(), windows.next());
        for yo in [first, second].into_iter().flatten() {
            if held[yo % 2] != yo {
                let ny = spans.rows[yo].1;
                let dout_row = &dout[yo * ow..][..ow];
                for ((share, &d), &(_, nx)) in shares.iter_mut().zip(dout_row).zip(&spans.cols) {
                    *share = d / divisor(geom, ny * nx, include);
                }
                spread_phases(shares, slots[yo % 2 * 2 * len..][..2 * len].split_at_mut(len));
                held[yo % 2] = yo;
            }
        }
        let phases = |yo: usize| slots[yo % 2 * 2 * len..][..2 * len].split_at(len);
        match (first, second) {
            (Some(a), Some(b)) => {
                let ((even_a, odd_a), (even_b, odd_b)) = (phases(a), phases(b));
                sum_even.iter_mut().zip(even_a.iter().zip(even_b)).for_each(|(s, (&a, &b))| *s = a + b);
                sum_odd.iter_mut().zip(odd_a.iter().zip(odd_b)).for_each(|(s, (&a, &b))| *s = a + b);
                interleave_phases(row, (sum_even, sum_odd), pad_x);
            }
            (Some(a), None) => interleave_phases(row, phases(a), pad_x),
            _ => row.iter_mut().for_each(|o| o.put(T::ZERO)),
        }
    }
}
}

/// An output row's shares spread over its columns (`spread`, one row):
/// border windows one by one; the full ones tap column by tap column,
/// descending, which for any one pixel is ascending window order (and no
/// add waits for the one before).
#[inline(always)]
fn spread_row<T: Element>(shares: &[T], spans: &Spans, (kw, stride): (usize, usize), spread: &mut [T]) {
    spread.fill(T::ZERO);
    let scatter = |spread: &mut [T], xo: usize| {
        let (x0, nx) = spans.cols[xo];
        spread[x0..x0 + nx].iter_mut().for_each(|v| *v += shares[xo]);
    };
    let (left, right) = spans.border();
    left.for_each(|xo| scatter(spread, xo));
    let full = spans.full.clone();
    if !full.is_empty() {
        let x0 = spans.cols[full.start].0;
        for j in (0..kw).rev() {
            let columns = spread[x0 + j..].iter_mut().step_by(stride);
            columns.zip(&shares[full.clone()]).for_each(|(v, &s)| *v += s);
        }
    }
    right.for_each(|xo| scatter(spread, xo));
}

/// An output row's shares spread over its columns for windows 3 wide at
/// stride 2 (padding 0 or 1), as two contiguous phases instead of strided
/// passes: with r = x + pad, a pixel of even r lies in windows r/2 − 1 and
/// r/2, one of odd r in (r − 1)/2; so `even[t]` is
/// `(0 + share[t − 1]) + share[t]`, `odd[t]` is `0 + share[t]` — the
/// general path's sums (from zero, windows in order). Values past the
/// windows (`even[ow + 1..]`, `odd[ow..]`) are left as they are (zeros).
/// [`interleave_phases`] makes the row.
#[inline(always)]
fn spread_phases<T: Element>(shares: &[T], (even, odd): (&mut [T], &mut [T])) {
    let ow = shares.len();
    even[0] = T::ZERO + shares[0];
    let inner = even[1..ow].iter_mut().zip(shares).zip(&shares[1..]);
    inner.for_each(|((e, &left), &right)| *e = (T::ZERO + left) + right);
    even[ow] = T::ZERO + shares[ow - 1];
    odd[..ow]
        .iter_mut()
        .zip(shares)
        .for_each(|(o, &s)| *o = T::ZERO + s);
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

#[cfg(test)]
mod tests {
    use super::super::tests::{bits, forward_cases, PLANES};
    use super::*;

    /// Every forward path into fresh memory writes every output: its
    /// vector (over memory the unit-test build poisons) equals the in-place
    /// pass's over NaNs, bit for bit.
    #[test]
    fn fresh_forward_writes_every_output() {
        for (g, x) in forward_cases() {
            for include in [false, true] {
                let fresh = avg_pool2d_forward_vec(&x, PLANES, &g, include).unwrap();
                let mut out = vec![f32::NAN; PLANES * g.output_len()];
                avg_pool2d_forward(&x, PLANES, &g, include, &mut out).unwrap();
                assert_eq!(bits(&fresh), bits(&out), "{g:?} include {include}");
                assert!(out.iter().all(|v| v.is_finite()), "{g:?} include {include}");
            }
        }
    }

    /// The 3×3 / stride-2 backward pass into fresh memory writes every
    /// pixel: its output (over memory the unit-test build poisons) equals
    /// the in-place pass's over a NaN-filled dx, bit for bit.
    #[test]
    fn fresh_backward_writes_every_pixel() {
        for (h, w, pad) in [
            (7, 7, 1),
            (8, 9, 1),
            (9, 8, 0),
            (5, 6, 0),
            (3, 3, 1),
            (4, 11, 1),
            (10, 4, 0),
        ] {
            let g = Window2d::pooling([h, w], [3, 3], [2, 2], [pad, pad]).unwrap();
            let planes = 3;
            let dout: Vec<f32> = (0..planes * g.output_len()).map(|i| i as f32 + 0.5).collect();
            for include in [false, true] {
                let fresh = avg_pool2d_backward_vec(&dout, planes, &g, include).unwrap();
                let mut dx = vec![f32::NAN; planes * h * w];
                avg_pool2d_backward(&dout, planes, &g, include, &mut dx).unwrap();
                assert_eq!(bits(&fresh), bits(&dx), "{h}x{w} pad {pad}");
                assert!(dx.iter().all(|v| v.is_finite()), "{h}x{w} pad {pad}");
            }
        }
    }
}
