//! Max pooling: forward with a compact arg-max, backward by scatter to it.

use super::phase::{interleave_phases, padded, BLOCK};
use super::{
    for_each_plane, is_2x2_stride2, is_3x3_stride2, plane_counts, Scratch, Slot, Spans, PARALLEL_MIN_ELEMENTS,
};
use crate::error::{check_len, Error, Result};
use crate::isa::multiversion;
use crate::{Element, Window2d};
use rayon::prelude::*;
use std::fmt::Debug;
use std::mem::MaybeUninit;
use std::ops::Range;

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
}

/// The type of a max-pooling arg-max: the position of a window's maximum
/// within the window, the tap `i·KW + j` (row i, column j of the KH×KW
/// window, padding included in the numbering). Implemented for `u8`
/// (windows of up to 256 taps: one byte per output), `u16` and `u32`.
pub trait ArgIndex: sealed::Sealed + Copy + Default + Debug + Ord + Send + Sync + 'static {
    /// The largest tap this type holds.
    const MAX_TAP: usize;
    /// The tap `t` (`t <= MAX_TAP`).
    #[doc(hidden)]
    fn from_tap(t: u32) -> Self;
    /// The tap as an index.
    #[doc(hidden)]
    fn tap(self) -> usize;
}

macro_rules! arg_index {
    ($($t:ty),*) => {$(
        impl ArgIndex for $t {
            const MAX_TAP: usize = <$t>::MAX as usize;
            #[inline(always)]
            fn from_tap(t: u32) -> Self {
                t as $t
            }
            #[inline(always)]
            fn tap(self) -> usize {
                self as usize
            }
        }
    )*};
}
arg_index!(u8, u16, u32);

/// Max-pooling forward pass: `out` gets each window's maximum and `argmax`
/// where in the window it lies (see [`ArgIndex`]).
///
/// `x` holds planes·H·W values; `out` and `argmax` planes·OH·OW.
///
/// # Errors
/// [`Error::Shape`] on wrong slice lengths; [`Error::Parameter`] if `geom` is
/// not a pooling geometry or `I` cannot number the window's taps.
///
/// ```
/// use patchwise_kernels::{max_pool2d_forward, Window2d};
/// let g = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// let (mut out, mut arg) = ([0.0f32], [0u8]);
/// max_pool2d_forward(&[1.0, 4.0, 3.0, 2.0], 1, &g, &mut out, &mut arg).unwrap();
/// assert_eq!((out, arg), ([4.0], [1])); // tap 1: row 0, column 1
/// ```
pub fn max_pool2d_forward<T: Element, I: ArgIndex>(
    x: &[T],
    planes: usize,
    geom: &Window2d,
    out: &mut [T],
    argmax: &mut [I],
) -> Result<()> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_taps::<I>(geom)?;
    check_len("x", x.len(), planes * in_len)?;
    check_len("out", out.len(), planes * out_len)?;
    check_len("argmax", argmax.len(), planes * out_len)?;
    let spans = Spans::new(geom);
    for_each_plane(
        (x, in_len),
        (out, argmax, out_len),
        || Scratch::new(geom, &spans),
        |scratch, x, out, arg| forward_plane(x, geom, &spans, scratch, out, arg),
    );
    Ok(())
}

/// [`max_pool2d_forward`] into new vectors (the maxima and their taps),
/// each plane made while in cache: no zero-filled arrays written to memory
/// first.
///
/// # Errors
/// As [`max_pool2d_forward`].
///
/// ```
/// use patchwise_kernels::{max_pool2d_forward_vec, Window2d};
/// let g = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// let (out, arg) = max_pool2d_forward_vec::<f32, u8>(&[1.0, 4.0, 3.0, 2.0], 1, &g).unwrap();
/// assert_eq!((out, arg), (vec![4.0], vec![1]));
/// ```
pub fn max_pool2d_forward_vec<T: Element, I: ArgIndex>(
    x: &[T],
    planes: usize,
    geom: &Window2d,
) -> Result<(Vec<T>, Vec<I>)> {
    let (in_len, out_len) = plane_counts(planes, geom)?;
    check_taps::<I>(geom)?;
    check_len("x", x.len(), planes * in_len)?;
    let spans = Spans::new(geom);
    let work = (planes, planes * (in_len + out_len));
    let plane =
        |scratch: &mut Scratch<T>, p: usize, out: &mut [MaybeUninit<T>], arg: &mut [MaybeUninit<I>]| {
            forward_plane::<T, I>(&x[p * in_len..][..in_len], geom, &spans, scratch, out, arg);
            Ok(())
        };
    // SAFETY: out_len > 0 (pooling), and every path writes every output and
    // tap of its plane (see `forward_plane`).
    unsafe { super::fresh_planes_written(work, (out_len, out_len), || Scratch::new(geom, &spans), plane) }
}

/// The forward pass of one plane, by the fastest path for `geom`. Each
/// writes every output and tap of the plane once and reads none back, so
/// they may be fresh memory.
fn forward_plane<T: Element, I: ArgIndex>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    scratch: &mut Scratch<T>,
    out: &mut [impl Slot<T>],
    arg: &mut [impl Slot<I>],
) {
    if is_2x2_stride2(geom) {
        max_plane_2x2_stride2(x, geom.input()[1], geom.output()[1], out, arg);
    } else if is_3x3_stride2(geom) {
        max_plane_3x3_stride2(x, geom, spans, scratch, out, arg);
    } else {
        max_plane(x, geom, spans, scratch, out, arg);
    }
}

fn check_taps<I: ArgIndex>(geom: &Window2d) -> Result<()> {
    if geom.kernel_len() - 1 > I::MAX_TAP {
        return Err(Error::parameter(
            "argmax",
            format!("an index type numbering {} window taps", geom.kernel_len()),
            std::any::type_name::<I>(),
        ));
    }
    Ok(())
}

/// Whether `v` replaces `best` as the running maximum: it is larger, or it
/// is the first NaN (v > NaN is false, so a NaN best is never replaced).
/// Branch-free selects: random data would mispredict every other compare.
#[inline(always)]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // the NaN case is the point
fn takes_over<T: Element>(v: T, best: T) -> bool {
    // Not (v ≤ best): v is larger, or either is NaN; and best is no NaN.
    // Two compares; the plain form (v > best, or v NaN and best no NaN)
    // takes three: 3×3/2 forward 1.15-1.35× with this one.
    !(v <= best) & !best.is_nan()
}

/// The maximum of the window rows `y0..y0 + ny`, columns `x0..x0 + nx` of a
/// plane, and its tap: the first maximum in row-major order, or the first
/// NaN. `skip` = the padding taps above and left of `(y0, x0)`.
fn window_max<T: Element>(
    x: &[T],
    width: usize,
    kw: usize,
    (y0, ny): (usize, usize),
    (x0, nx): (usize, usize),
    skip: (usize, usize),
) -> (T, usize) {
    let (mut best_value, mut best) = (x[y0 * width + x0], (0, 0));
    for i in 0..ny {
        for (j, &v) in x[(y0 + i) * width + x0..][..nx].iter().enumerate() {
            let take = takes_over(v, best_value);
            best_value = if take { v } else { best_value };
            best = if take { (i, j) } else { best };
        }
    }
    (best_value, (skip.0 + best.0) * kw + skip.1 + best.1)
}

/// A window cut by padding (or otherwise outside the full ones): its
/// maximum and tap by [`window_max`], into output column `xo` of the row.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cut_window<T: Element, I: ArgIndex>(
    x: &[T],
    (width, kw): (usize, usize),
    spans: &Spans,
    (y0, ny, skip_y): (usize, usize, usize),
    xo: usize,
    out_row: &mut [impl Slot<T>],
    arg_row: &mut [impl Slot<I>],
) {
    let skip = (skip_y, spans.col_skip[xo]);
    let (value, tap) = window_max(x, width, kw, (y0, ny), spans.cols[xo], skip);
    out_row[xo].put(value);
    arg_row[xo].put(I::from_tap(tap as u32));
}

/// Stores the full windows' maxima and taps (`best`, `at`, in whole
/// blocks) into the row's output columns `full`.
#[inline(always)]
fn store_full<T: Element, I: ArgIndex>(
    full: Range<usize>,
    (best, at): (&[T], &[u32]),
    out_row: &mut [impl Slot<T>],
    arg_row: &mut [impl Slot<I>],
) {
    out_row[full.clone()]
        .iter_mut()
        .zip(best)
        .for_each(|(o, &v)| o.put(v));
    arg_row[full]
        .iter_mut()
        .zip(at)
        .for_each(|(a, &t)| a.put(I::from_tap(t)));
}

/// One tap of the full windows of an output row: `taps[k]` is the tap's
/// pixel in window k. A plain loop over a whole number of blocks, which the
/// compiler vectorises with no tail.
#[inline(always)]
fn max_update<T: Element>(best: &mut [T], at: &mut [u32], taps: &[T], tap: u32) {
    for ((b, a), &v) in best.iter_mut().zip(at.iter_mut()).zip(taps) {
        let take = takes_over(v, *b);
        *b = if take { v } else { *b };
        *a = if take { tap } else { *a };
    }
}

multiversion! {
/// Max pooling of one plane: border windows one by one, the full windows of
/// each output row tap by tap over the row (see [`PhaseBand`](super::phase::PhaseBand)), in the same
/// row-major tap order.
fn max_plane<T: Element, I: ArgIndex, OT: Slot<T>, OI: Slot<I>>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    scratch: &mut Scratch<T>,
    out: &mut [OT],
    argmax: &mut [OI],
) {
    let (width, kw) = (geom.input()[1], geom.kernel()[1]);
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch { band, values: best, taps: at, .. } = scratch;
    let n = padded(full.len());
    let (best, at) = (&mut best[..n], &mut at[..n]);
    band.forget();
    for (((&(y0, ny), &skip_y), out_row), arg_row) in spans
        .rows
        .iter()
        .zip(&spans.row_skip)
        .zip(out.chunks_exact_mut(ow))
        .zip(argmax.chunks_exact_mut(ow))
    {
        for xo in left.clone().chain(right.clone()) {
            cut_window(x, (width, kw), spans, (y0, ny, skip_y), xo, out_row, arg_row);
        }
        if full.is_empty() {
            continue;
        }
        band.slide(x, y0, ny);
        let x0 = spans.cols[full.start].0;
        for i in 0..ny {
            for j in 0..kw {
                let taps = band.taps(i, x0 + j, n);
                // Fits: the caller checked the taps against I (<= u32).
                let tap = ((skip_y + i) * kw + j) as u32;
                if i == 0 && j == 0 {
                    best.copy_from_slice(taps);
                    at.fill(tap);
                } else {
                    max_update(best, at, taps, tap);
                }
            }
        }
        store_full(full.clone(), (best, at), out_row, arg_row);
    }
}
}

multiversion! {
/// Max pooling of one plane with 3×3 windows and stride 2 (ResNet's
/// pooling, any padding): the full windows of each output row in one pass
/// over their nine taps, read as contiguous runs of the column-phase-split
/// rows ([`PhaseBand`](super::phase::PhaseBand)) and scanned in row-major
/// order per window — also in the rows whose windows padding cuts at the
/// top or bottom, and in the first window when one column of padding cuts
/// it; other windows cut at the left or right one by one. The nine tap
/// slices are found once per output row, from the three band rows'
/// phases with the stride known to be 2: a band lookup per tap (divisions
/// by run-time values) took a fifth of the pass (`perf`); 1.08-1.09×,
/// alternated call by call. Writes every output and
/// tap once, reading none (so they may be fresh memory:
/// [`super::fresh_planes_written`]).
fn max_plane_3x3_stride2<T: Element, I: ArgIndex, OT: Slot<T>, OI: Slot<I>>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    scratch: &mut Scratch<T>,
    out: &mut [OT],
    argmax: &mut [OI],
) {
    let width = geom.input()[1];
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch { band, values: best, taps: at, .. } = scratch;
    // With one column of left padding, window 0 joins the vector pass:
    // its tap 0 (column −1) reads a repeat of column 0 (the lead of the
    // band row's odd phase), scanned just before column 0
    // itself. Equal values never take over, and a NaN best is never
    // replaced, so the repeat takes over exactly when column 0 would have
    // and column 0 then does not: the same maximum, its tap found one
    // column early — (i, 0) for (i, 1), mended after the pass.
    // (1.06-1.15× on ResNet's 3×3/2 pooling, alternated call by call.)
    let lead = full.start == 1 && spans.cols[0] == (0, 2) && spans.col_skip[0] == 1;
    let vector = if lead { 0..full.end } else { full.clone() };
    let left = if lead { 0..0 } else { left };
    let n = padded(vector.len());
    let (best, at) = (&mut best[..n], &mut at[..n]);
    band.forget();
    for (((&(y0, ny), &skip_y), out_row), arg_row) in spans
        .rows
        .iter()
        .zip(&spans.row_skip)
        .zip(out.chunks_exact_mut(ow))
        .zip(argmax.chunks_exact_mut(ow))
    {
        for xo in left.clone().chain(right.clone()) {
            cut_window(x, (width, 3), spans, (y0, ny, skip_y), xo, out_row, arg_row);
        }
        if vector.is_empty() {
            continue;
        }
        // Rows cut by padding (ny < 3) read their first tap again in place
        // of the missing ones: a repeat never takes over, so the loop keeps
        // its fixed nine taps.
        band.slide(x, y0, ny);
        let x0 = spans.cols[vector.start].0;
        let rows: [(&[T], usize); 3] = std::array::from_fn(|i| band.phases(if i < ny { i } else { 0 }));
        // Tap j of the windows reads columns c, c + 2, … with c = x0 + j:
        // phase c mod 2 from index c / 2 past its lead. With the lead
        // window the columns are j − 1, j + 1, …: phase (j + 1) mod 2 from
        // index (j + 1) / 2 counting the lead (tap 0 starts on the odd
        // phase's lead, column −1).
        let (first_column, past_lead) = if lead { (1, 0) } else { (x0, 1) };
        let tap = |i: usize, j: usize| -> &[T] {
            let ((row, pitch), c) = (rows[i], first_column + j);
            &row[(c % 2) * pitch..][..pitch][past_lead + c / 2..][..n]
        };
        #[rustfmt::skip]
        let taps = [tap(0, 0), tap(0, 1), tap(0, 2), tap(1, 0), tap(1, 1), tap(1, 2), tap(2, 0), tap(2, 1), tap(2, 2)];
        let first = (3 * skip_y) as u32;
        // Block by block (fixed-size, so each block is a few vectors).
        for ((b, a), k) in best.chunks_exact_mut(BLOCK).zip(at.chunks_exact_mut(BLOCK)).zip((0..n).step_by(BLOCK)) {
            let block = |t: usize| -> &[T; BLOCK] { taps[t][k..k + BLOCK].try_into().expect("BLOCK taps") };
            // Without NaNs "takes over" is "larger": the value a max and
            // the tap an unsigned max (taps rise with t), where blends
            // cost more (AVX2 on the Intel machine: 3×3/2 forward
            // 1.27-1.30×, AVX-512 1.03×, alternated call by call). A lane
            // whose nine pixels sum to NaN (a NaN among them, or
            // infinities of both signs) has the block scanned again under
            // the NaN rules of `takes_over`.
            let (mut value, mut tap, mut sum) = (*block(0), [0u32; BLOCK], *block(0));
            for t in 1..9 {
                let pixels = block(t);
                for l in 0..BLOCK {
                    let larger = pixels[l] > value[l];
                    value[l] = if larger { pixels[l] } else { value[l] };
                    tap[l] = tap[l].max(if larger { t as u32 } else { 0 });
                    sum[l] += pixels[l];
                }
            }
            if sum.iter().any(|s| s.is_nan()) {
                (value, tap) = (*block(0), [0u32; BLOCK]);
                for t in 1..9 {
                    let pixels = block(t);
                    for l in 0..BLOCK {
                        let take = takes_over(pixels[l], value[l]);
                        value[l] = if take { pixels[l] } else { value[l] };
                        tap[l] = if take { t as u32 } else { tap[l] };
                    }
                }
            }
            b.copy_from_slice(&value);
            a.iter_mut().zip(tap).for_each(|(a, t)| *a = first + t);
        }
        if lead && at[0] % 3 == 0 {
            at[0] += 1;
        }
        store_full(vector.clone(), (best, at), out_row, arg_row);
    }
}
}

multiversion! {
/// Max pooling of one plane with 2×2 windows, stride 2, no padding — the
/// most common case: every window is full, so each output row is a plain
/// pass over two input rows that the compiler can vectorise.
fn max_plane_2x2_stride2<T: Element, I: ArgIndex, OT: Slot<T>, OI: Slot<I>>(
    x: &[T],
    width: usize,
    ow: usize,
    out: &mut [OT],
    argmax: &mut [OI],
) {
    for (y, (out_row, arg_row)) in out
        .chunks_exact_mut(ow)
        .zip(argmax.chunks_exact_mut(ow))
        .enumerate()
    {
        let top = x[2 * y * width..][..2 * ow].chunks_exact(2);
        let bottom = x[(2 * y + 1) * width..][..2 * ow].chunks_exact(2);
        for ((o, a), (t, b)) in out_row.iter_mut().zip(arg_row.iter_mut()).zip(top.zip(bottom)) {
            let (mut best, mut tap) = (t[0], 0);
            for (v, at) in [(t[1], 1), (b[0], 2), (b[1], 3)] {
                let take = takes_over(v, best);
                best = if take { v } else { best };
                tap = if take { at } else { tap };
            }
            o.put(best);
            a.put(I::from_tap(tap));
        }
    }
}
}

/// Max-pooling backward pass: overwrites `dx` (planes·H·W) with zeros plus
/// each `dout` added at its window's recorded arg-max.
///
/// # Errors
/// [`Error::Shape`] on wrong slice lengths; [`Error::Parameter`] if `geom`
/// is not a pooling geometry or an arg-max names no real pixel of its window.
pub fn max_pool2d_backward<T: Element, I: ArgIndex>(
    dout: &[T],
    argmax: &[I],
    planes: usize,
    geom: &Window2d,
    dx: &mut [T],
) -> Result<()> {
    let backward = Backward::new(dout, argmax, planes, geom)?;
    let in_len = backward.in_len;
    check_len("dx", dx.len(), planes * in_len)?;
    if planes == 0 || in_len == 0 {
        return Ok(());
    }
    let plane = |scratch: &mut Vec<T>, (p, dx): (usize, &mut [T])| backward.plane(scratch, p, (dx, false));
    if dx.len() < PARALLEL_MIN_ELEMENTS || rayon::current_num_threads() == 1 {
        let mut scratch = backward.scratch();
        dx.chunks_mut(in_len)
            .enumerate()
            .try_for_each(|part| plane(&mut scratch, part))
    } else {
        crate::threads::on_worker(|| {
            dx.par_chunks_mut(in_len)
                .enumerate()
                .try_for_each_init(|| backward.scratch(), plane)
        })
    }
}

/// [`max_pool2d_backward`] into a new vector (planes·H·W), each plane made
/// while in cache: no zero-filled array written to memory first.
///
/// # Errors
/// As [`max_pool2d_backward`].
///
/// ```
/// use patchwise_kernels::{max_pool2d_backward_vec, Window2d};
/// let g = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
/// // One window, its maximum at tap 3 (bottom right).
/// let dx = max_pool2d_backward_vec(&[5.0f32], &[3u8], 1, &g).unwrap();
/// assert_eq!(dx, [0.0, 0.0, 0.0, 5.0]);
/// ```
pub fn max_pool2d_backward_vec<T: Element, I: ArgIndex>(
    dout: &[T],
    argmax: &[I],
    planes: usize,
    geom: &Window2d,
) -> Result<Vec<T>> {
    let backward = Backward::new(dout, argmax, planes, geom)?;
    let in_len = backward.in_len;
    if let BackwardPass::Gather3x3(scatter) = &backward.pass {
        let n = backward.out_len;
        let plane =
            |scratch: &mut Vec<T>, p: usize, dx: &mut [MaybeUninit<T>], unit: &mut [MaybeUninit<()>]| {
                unit[0].write(());
                let (dout, arg) = (&dout[p * n..][..n], &argmax[p * n..][..n]);
                scatter.check(arg, geom)?;
                max_plane_backward_3x3_stride2(dout, arg, geom, scratch, dx);
                Ok(())
            };
        // SAFETY: in_len > 0 (pooling), and the gather writes every pixel
        // of its plane (see its docs) whenever `plane` returns Ok.
        return unsafe {
            super::fresh_planes_written(
                (planes, planes * in_len),
                (in_len, 1),
                || backward.scratch(),
                plane,
            )
            .map(|(dx, _)| dx)
        };
    }
    let (dx, _) = super::fresh_planes(
        (planes, planes * in_len),
        (in_len, T::ZERO),
        (1, ()),
        || backward.scratch(),
        |scratch, p, dx, _| backward.plane(scratch, p, (dx, true)),
    )?;
    Ok(dx)
}

/// A checked max-pooling backward pass, plane by plane.
struct Backward<'a, T, I> {
    dout: &'a [T],
    argmax: &'a [I],
    geom: &'a Window2d,
    /// Pixels per plane of dx and of dout.
    in_len: usize,
    out_len: usize,
    /// The pass for the geometry.
    pass: BackwardPass,
}

/// How a max-pooling backward pass handles a plane.
enum BackwardPass {
    /// 2×2 / stride 2 / unpadded: one write per pixel (taps checked up front).
    NonOverlapping,
    /// 3×3 / stride 2: per dx row, the windows that can pick each pixel,
    /// vectorised (see [`max_plane_backward_3x3_stride2`]).
    Gather3x3(Scatter),
    /// Any other: each `dout` added at its tap.
    Scatter(Scatter),
}

impl<'a, T: Element, I: ArgIndex> Backward<'a, T, I> {
    /// Checks the lengths (and for 2×2 / stride 2, the taps: the general
    /// pass checks them as it goes).
    fn new(dout: &'a [T], argmax: &'a [I], planes: usize, geom: &'a Window2d) -> Result<Self> {
        let (in_len, out_len) = plane_counts(planes, geom)?;
        check_len("dout", dout.len(), planes * out_len)?;
        check_len("argmax", argmax.len(), planes * out_len)?;
        let non_overlapping = is_2x2_stride2(geom);
        if non_overlapping {
            check_below(argmax, 4, geom)?;
        }
        let pass = if non_overlapping {
            BackwardPass::NonOverlapping
        } else if is_3x3_stride2(geom) {
            BackwardPass::Gather3x3(Scatter::new(geom))
        } else {
            BackwardPass::Scatter(Scatter::new(geom))
        };
        Ok(Self {
            dout,
            argmax,
            geom,
            in_len,
            out_len,
            pass,
        })
    }

    /// Per-task scratch of [`Self::plane`].
    fn scratch(&self) -> Vec<T> {
        match self.pass {
            BackwardPass::Gather3x3(_) => vec![T::ZERO; 2 * gather_len(self.geom)],
            _ => Vec::new(),
        }
    }

    /// Overwrites plane `p` of dx (all zeros already if `zeroed`), with
    /// the task's [`Self::scratch`].
    fn plane(&self, scratch: &mut [T], p: usize, (dx, zeroed): (&mut [T], bool)) -> Result<()> {
        let n = self.out_len;
        let (dout, arg) = (&self.dout[p * n..][..n], &self.argmax[p * n..][..n]);
        match &self.pass {
            BackwardPass::NonOverlapping => {
                max_plane_backward_2x2_stride2(dout, arg, self.geom, dx);
                Ok(())
            }
            BackwardPass::Gather3x3(scatter) => {
                scatter.check(arg, self.geom)?;
                max_plane_backward_3x3_stride2(dout, arg, self.geom, scratch, dx);
                Ok(())
            }
            BackwardPass::Scatter(scatter) => scatter.plane(dout, arg, self.geom, (dx, zeroed)),
        }
    }
}

/// Checks that every tap is below `taps`: a branch-free scan in the
/// taps' own type, which the compiler vectorises; the search only when it
/// fails.
fn check_below<I: ArgIndex>(argmax: &[I], taps: usize, geom: &Window2d) -> Result<()> {
    if taps > I::MAX_TAP {
        return Ok(()); // every value of I is a tap below `taps`
    }
    if any_at_least(argmax, I::from_tap(taps as u32)) {
        let bad = argmax
            .iter()
            .find(|a| a.tap() >= taps)
            .expect("found by the scan");
        return Err(bad_tap(geom, bad));
    }
    Ok(())
}

multiversion! {
/// Whether any tap is `limit` or more: the largest against `limit` (a
/// running maximum vectorises to one max per vector; or-ing the compares
/// kept a mask bit per tap, a twentieth of the 3×3 / stride-2 backward:
/// 1.03-1.05× on it, alternated call by call).
fn any_at_least<I: ArgIndex>(argmax: &[I], limit: I) -> bool {
    argmax.iter().fold(I::default(), |m, &a| if a > m { a } else { m }) >= limit
}
}

fn bad_tap<I: ArgIndex>(geom: &Window2d, tap: &I) -> Error {
    let [kh, kw] = geom.kernel();
    Error::parameter(
        "argmax",
        format!(
            "taps < {} that fall on a real pixel of their {kh}×{kw} window",
            kh * kw
        ),
        tap.tap(),
    )
}

/// What the general backward pass shares between planes: the window spans
/// and, per tap, its row and column in the window (no division per output).
/// The 3×3 / stride-2 gather uses it to check the taps.
struct Scatter {
    spans: Spans,
    rows_of: Vec<usize>,
    cols_of: Vec<usize>,
}

impl Scatter {
    fn new(geom: &Window2d) -> Self {
        let kw = geom.kernel()[1];
        Self {
            spans: Spans::new(geom),
            rows_of: (0..geom.kernel_len()).map(|t| t / kw).collect(),
            cols_of: (0..geom.kernel_len()).map(|t| t % kw).collect(),
        }
    }

    /// Checks that every tap of a plane's arg-max names a real pixel of its
    /// window: all below KH·KW in one vectorised scan, then the windows
    /// cut by padding one by one.
    fn check<I: ArgIndex>(&self, argmax: &[I], geom: &Window2d) -> Result<()> {
        check_below(argmax, self.rows_of.len(), geom)?;
        let (spans, kh) = (&self.spans, geom.kernel()[0]);
        let ow = spans.cols.len();
        let (left, right) = spans.border();
        for ((&(_, ny), &skip_y), arg_row) in spans
            .rows
            .iter()
            .zip(&spans.row_skip)
            .zip(argmax.chunks_exact(ow))
        {
            // A row cut by padding: all its windows; else the border ones.
            let (cut, rest) = if ny < kh {
                (0..ow, 0..0)
            } else {
                (left.clone(), right.clone())
            };
            for xo in cut.chain(rest) {
                let tap = arg_row[xo].tap();
                let (i, j) = (self.rows_of[tap], self.cols_of[tap]);
                if i.wrapping_sub(skip_y) >= ny || j.wrapping_sub(spans.col_skip[xo]) >= spans.cols[xo].1 {
                    return Err(bad_tap(geom, &arg_row[xo]));
                }
            }
        }
        Ok(())
    }

    /// Backward of one plane: zero it (unless it arrives `zeroed`), then add
    /// each `dout` at its arg-max (the plane stays in cache between the
    /// two).
    fn plane<T: Element, I: ArgIndex>(
        &self,
        dout: &[T],
        argmax: &[I],
        geom: &Window2d,
        (dx, zeroed): (&mut [T], bool),
    ) -> Result<()> {
        if !zeroed {
            dx.fill(T::ZERO);
        }
        let (width, spans) = (geom.input()[1], &self.spans);
        let ow = spans.cols.len();
        for (((&(y0, ny), &skip_y), dout_row), arg_row) in spans
            .rows
            .iter()
            .zip(&spans.row_skip)
            .zip(dout.chunks_exact(ow))
            .zip(argmax.chunks_exact(ow))
        {
            for (((&d, &a), &(x0, nx)), &skip_x) in
                dout_row.iter().zip(arg_row).zip(&spans.cols).zip(&spans.col_skip)
            {
                let tap = a.tap();
                let (Some(&i), Some(&j)) = (self.rows_of.get(tap), self.cols_of.get(tap)) else {
                    return Err(bad_tap(geom, &a));
                };
                // Wrapping: a tap on padding becomes a huge index, caught below.
                let (y, x) = (i.wrapping_sub(skip_y), j.wrapping_sub(skip_x));
                if y >= ny || x >= nx {
                    return Err(bad_tap(geom, &a));
                }
                dx[(y0 + y) * width + x0 + x] += d;
            }
        }
        Ok(())
    }
}

/// Values per phase of a [`max_plane_backward_3x3_stride2`] row: one per
/// window column and one more, and at least half a row.
fn gather_len(geom: &Window2d) -> usize {
    (geom.output()[1] + 1).max(geom.input()[1].div_ceil(2)) + 1
}

/// Adds window row `yo`'s `dout` at its taps in tap row `i` into a dx
/// row's phases (see [`max_plane_backward_3x3_stride2`]), or sets them
/// (from zero) if `FIRST`.
#[inline(always)]
fn add_window_row<T: Element, I: ArgIndex, const FIRST: bool>(
    (yo, i): (usize, usize),
    (dout, argmax, ow): (&[T], &[I], usize),
    (even, odd): (&mut [T], &mut [T]),
) {
    let (d, a) = (&dout[yo * ow..][..ow], &argmax[yo * ow..][..ow]);
    // Taps compared as `I` (bytes, mostly). Compared as indices, AVX2
    // widened them to 64-bit lanes: this way the 3×3/2 backward pass
    // 1.11-1.12× with AVX2, 0.98× with AVX-512 (alternated call by call,
    // the Intel machine; as u32, 0.96-0.97× and 1.02-1.03×).
    let [left, middle, right] = [0, 1, 2].map(|j| I::from_tap((3 * i + j) as u32));
    let pick = |d: T, a: I, tap: I| if a == tap { d } else { T::ZERO };
    let sum = |e: T| if FIRST { T::ZERO } else { e };
    // Even phase: window t − 1, then window t.
    even[0] = sum(even[0]) + pick(d[0], a[0], left);
    let inner = even[1..ow]
        .iter_mut()
        .zip(d.iter().zip(a))
        .zip(d[1..].iter().zip(&a[1..]));
    inner.for_each(|((e, (&d0, &a0)), (&d1, &a1))| *e = (sum(*e) + pick(d0, a0, right)) + pick(d1, a1, left));
    even[ow] = sum(even[ow]) + pick(d[ow - 1], a[ow - 1], right);
    odd[..ow]
        .iter_mut()
        .zip(d.iter().zip(a))
        .for_each(|(e, (&d, &a))| *e = sum(*e) + pick(d, a, middle));
}

multiversion! {
/// Backward of one plane of 3×3 / stride-2 windows (taps checked), dx
/// row by row by gathering instead of scattering. With q = y + pad, dx row
/// y lies in window row q/2 − 1 (as its tap row 2) and q/2 (tap row 0) for
/// even q, in (q − 1)/2 (tap row 1) for odd q; columns likewise. So each
/// pixel of the row's even-r phase (r = x + pad) takes, in order, window
/// t − 1's `dout` if its tap is (i, 2) and window t's if (i, 0); each of
/// the odd-r phase window t's if (i, 1) — whole-row selects and adds, then
/// the phases interleaved into the row. Sums start at zero and add the
/// windows in row-major order, as the scatter does: the same bits. Writes
/// every pixel of the plane once, reading none (so `dx` may be fresh
/// memory: [`super::fresh_planes_written`]).
fn max_plane_backward_3x3_stride2<T: Element, I: ArgIndex, O: Slot<T>>(
    dout: &[T],
    argmax: &[I],
    geom: &Window2d,
    scratch: &mut [T],
    dx: &mut [O],
) {
    let [oh, ow] = geom.output();
    let [pad_y, pad_x] = geom.pad();
    let width = geom.input()[1];
    // Values past the windows' (even[ow + 1..], odd[ow..]) stay zero.
    let (even, odd) = scratch.split_at_mut(scratch.len() / 2);
    for (y, row) in dx.chunks_exact_mut(width).enumerate() {
        let q = y + pad_y;
        let windows = if q % 2 == 0 { [(q / 2).checked_sub(1).map(|yo| (yo, 2)), Some((q / 2, 0))] } else { [Some(((q - 1) / 2, 1)), None] };
        let mut windows = windows.into_iter().flatten().filter(|&(yo, _)| yo < oh);
        match windows.next() {
            // The first window row sets the sums (from zero, not reading
            // them back: a vector read one element off the stores of a
            // fill would miss store forwarding), the second adds to them.
            Some(top) => {
                add_window_row::<T, I, true>(top, (dout, argmax, ow), (even, odd));
                if let Some(bottom) = windows.next() {
                    add_window_row::<T, I, false>(bottom, (dout, argmax, ow), (even, odd));
                }
            }
            None => {
                even[..=ow].fill(T::ZERO);
                odd[..ow].fill(T::ZERO);
            }
        }
        interleave_phases(row, (even, odd), pad_x);
    }
}
}

multiversion! {
/// Backward of one plane of 2×2 / stride-2 / unpadded windows: they do not
/// overlap, so each pixel is written once (its window's `dout` if it is the
/// recorded tap, else 0) in one vectorisable pass, with no zero fill first.
/// Taps were checked (< 4) by the caller.
fn max_plane_backward_2x2_stride2<T: Element, I: ArgIndex>(dout: &[T], argmax: &[I], geom: &Window2d, dx: &mut [T]) {
    let [oh, ow] = geom.output();
    let width = geom.input()[1];
    for (y, row) in dx.chunks_exact_mut(width).enumerate() {
        if y >= 2 * oh {
            row.fill(T::ZERO);
            continue;
        }
        let (d, a) = (&dout[y / 2 * ow..][..ow], &argmax[y / 2 * ow..][..ow]);
        let first = (2 * (y % 2)) as u32; // tap of the window's pixel in this row, column 0
        let (pairs, rest) = row.split_at_mut(2 * ow);
        for ((pair, &d), &a) in pairs.chunks_exact_mut(2).zip(d).zip(a) {
            let tap = a.tap() as u32;
            pair[0] = if tap == first { d } else { T::ZERO };
            pair[1] = if tap == first + 1 { d } else { T::ZERO };
        }
        rest.fill(T::ZERO);
    }
}
}

#[cfg(test)]
mod tests {
    use super::super::tests::{bits, forward_cases, PLANES};
    use super::*;

    /// Every forward path into fresh memory writes every output and tap:
    /// its vectors (over memory the unit-test build poisons) equal the
    /// in-place pass's over NaNs and tap 255.
    #[test]
    fn fresh_forward_writes_every_output() {
        for (g, x) in forward_cases() {
            let (fresh, fresh_arg) = max_pool2d_forward_vec::<f32, u8>(&x, PLANES, &g).unwrap();
            let n = PLANES * g.output_len();
            let (mut out, mut arg) = (vec![f32::NAN; n], vec![255u8; n]);
            max_pool2d_forward(&x, PLANES, &g, &mut out, &mut arg).unwrap();
            assert_eq!((bits(&fresh), &fresh_arg), (bits(&out), &arg), "{g:?}");
            assert!(
                out.iter().all(|v| v.is_finite()) && arg.iter().all(|&t| (t as usize) < g.kernel_len()),
                "{g:?}"
            );
        }
    }

    /// The backward passes into fresh memory write every pixel: their
    /// output (over memory the unit-test build poisons) equals the
    /// in-place pass's over a NaN-filled dx, bit for bit.
    #[test]
    fn fresh_backward_writes_every_pixel() {
        for (h, w, pad) in [(7, 7, 1), (8, 9, 1), (9, 8, 0), (5, 6, 0), (3, 3, 1), (4, 11, 1)] {
            let g = Window2d::pooling([h, w], [3, 3], [2, 2], [pad, pad]).unwrap();
            let planes = 3;
            let x: Vec<f32> = (0..planes * h * w)
                .map(|i| ((i * 37) % 23) as f32 - 11.0)
                .collect();
            let (_, arg) = max_pool2d_forward_vec::<f32, u8>(&x, planes, &g).unwrap();
            let dout: Vec<f32> = (0..arg.len()).map(|i| i as f32 + 0.5).collect();
            let fresh = max_pool2d_backward_vec(&dout, &arg, planes, &g).unwrap();
            let mut dx = vec![f32::NAN; x.len()];
            max_pool2d_backward(&dout, &arg, planes, &g, &mut dx).unwrap();
            assert_eq!(bits(&fresh), bits(&dx), "{h}x{w} pad {pad}");
            assert!(dx.iter().all(|v| v.is_finite()), "{h}x{w} pad {pad}");
        }
    }
}
