//! Max pooling: forward with a compact arg-max, backward by scatter to it.

use super::phase::BLOCK;
use super::{for_each_plane, is_2x2_stride2, plane_counts, Scratch, Spans, PARALLEL_MIN_ELEMENTS};
use crate::error::{check_len, Error, Result};
use crate::isa::multiversion;
use crate::{Element, Window2d};
use rayon::prelude::*;
use std::fmt::Debug;
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
pub trait ArgIndex: sealed::Sealed + Copy + Default + Debug + Send + Sync + 'static {
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
    super::fresh_planes(
        (planes, planes * (in_len + out_len)),
        (out_len, T::ZERO),
        (out_len, I::from_tap(0)),
        || Scratch::new(geom, &spans),
        |scratch, p, out, arg| {
            forward_plane(&x[p * in_len..][..in_len], geom, &spans, scratch, out, arg);
            Ok(())
        },
    )
}

/// The forward pass of one plane, by the fastest path for `geom`.
fn forward_plane<T: Element, I: ArgIndex>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    scratch: &mut Scratch<T>,
    out: &mut [T],
    arg: &mut [I],
) {
    if is_2x2_stride2(geom) {
        max_plane_2x2_stride2(x, geom.input()[1], geom.output()[1], out, arg);
    } else if geom.kernel() == [3, 3] && geom.stride() == [2, 2] {
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
    out_row: &mut [T],
    arg_row: &mut [I],
) {
    let skip = (skip_y, spans.col_skip[xo]);
    let (value, tap) = window_max(x, width, kw, (y0, ny), spans.cols[xo], skip);
    out_row[xo] = value;
    arg_row[xo] = I::from_tap(tap as u32);
}

/// Stores the full windows' maxima and taps (`best`, `at`, in whole
/// blocks) into the row's output columns `full`.
#[inline(always)]
fn store_full<T: Element, I: ArgIndex>(
    full: Range<usize>,
    (best, at): (&[T], &[u32]),
    out_row: &mut [T],
    arg_row: &mut [I],
) {
    out_row[full.clone()].copy_from_slice(&best[..full.len()]);
    for (a, &t) in arg_row[full].iter_mut().zip(at) {
        *a = I::from_tap(t);
    }
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
fn max_plane<T: Element, I: ArgIndex>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    scratch: &mut Scratch<T>,
    out: &mut [T],
    argmax: &mut [I],
) {
    let (width, kw) = (geom.input()[1], geom.kernel()[1]);
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch { band, values: best, taps: at, .. } = scratch;
    let n = best.len();
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
        band.load(x, y0, ny);
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
/// top or bottom; windows cut at the left or right one by one. The tap
/// slices are found once per row: each costs a division by the stride,
/// which per block cost as much as the compares.
fn max_plane_3x3_stride2<T: Element, I: ArgIndex>(
    x: &[T],
    geom: &Window2d,
    spans: &Spans,
    scratch: &mut Scratch<T>,
    out: &mut [T],
    argmax: &mut [I],
) {
    let width = geom.input()[1];
    let ow = spans.cols.len();
    let full = spans.full.clone();
    let (left, right) = spans.border();
    let Scratch { band, values: best, taps: at, .. } = scratch;
    let n = best.len();
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
        if full.is_empty() {
            continue;
        }
        // Rows cut by padding (ny < 3) read their first tap again in place
        // of the missing ones: a repeat never takes over, so the loop keeps
        // its fixed nine taps.
        band.load(x, y0, ny);
        let x0 = spans.cols[full.start].0;
        let tap = |i: usize, j: usize| band.taps(if i < ny { i } else { 0 }, x0 + j, n);
        #[rustfmt::skip]
        let taps = [tap(0, 0), tap(0, 1), tap(0, 2), tap(1, 0), tap(1, 1), tap(1, 2), tap(2, 0), tap(2, 1), tap(2, 2)];
        let first = (3 * skip_y) as u32;
        // Block by block (fixed-size, so each block is a few vectors).
        for ((b, a), k) in best.chunks_exact_mut(BLOCK).zip(at.chunks_exact_mut(BLOCK)).zip((0..n).step_by(BLOCK)) {
            let block = |t: usize| -> &[T; BLOCK] { taps[t][k..k + BLOCK].try_into().expect("BLOCK taps") };
            let (mut value, mut tap) = (*block(0), [0u32; BLOCK]);
            for t in 1..9 {
                let pixels = block(t);
                for l in 0..BLOCK {
                    let take = takes_over(pixels[l], value[l]);
                    value[l] = if take { pixels[l] } else { value[l] };
                    tap[l] = if take { t as u32 } else { tap[l] };
                }
            }
            b.copy_from_slice(&value);
            a.iter_mut().zip(tap).for_each(|(a, t)| *a = first + t);
        }
        store_full(full.clone(), (best, at), out_row, arg_row);
    }
}
}

multiversion! {
/// Max pooling of one plane with 2×2 windows, stride 2, no padding — the
/// most common case: every window is full, so each output row is a plain
/// pass over two input rows that the compiler can vectorise.
fn max_plane_2x2_stride2<T: Element, I: ArgIndex>(x: &[T], width: usize, ow: usize, out: &mut [T], argmax: &mut [I]) {
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
            *o = best;
            *a = I::from_tap(tap);
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
    if dx.len() < PARALLEL_MIN_ELEMENTS || rayon::current_num_threads() == 1 {
        dx.chunks_mut(in_len)
            .enumerate()
            .try_for_each(|(p, dx)| backward.plane(p, (dx, false)))
    } else {
        dx.par_chunks_mut(in_len)
            .enumerate()
            .try_for_each(|(p, dx)| backward.plane(p, (dx, false)))
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
    let (dx, _) = super::fresh_planes(
        (planes, planes * in_len),
        (in_len, T::ZERO),
        (1, ()),
        || (),
        |_, p, dx, _| backward.plane(p, (dx, true)),
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
    /// The general pass's tables; None for 2×2 / stride 2.
    scatter: Option<Scatter>,
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
            // A branch-free scan the compiler vectorises; the search only when
            // it fails.
            if argmax.iter().fold(false, |bad, a| bad | (a.tap() >= 4)) {
                let bad = argmax.iter().find(|a| a.tap() >= 4).expect("found by the scan");
                return Err(bad_tap(geom, bad));
            }
        }
        Ok(Self {
            dout,
            argmax,
            geom,
            in_len,
            out_len,
            scatter: (!non_overlapping).then(|| Scatter::new(geom)),
        })
    }

    /// Overwrites plane `p` of dx (all zeros already if `zeroed`).
    fn plane(&self, p: usize, (dx, zeroed): (&mut [T], bool)) -> Result<()> {
        let n = self.out_len;
        let (dout, arg) = (&self.dout[p * n..][..n], &self.argmax[p * n..][..n]);
        match &self.scatter {
            None => {
                max_plane_backward_2x2_stride2(dout, arg, self.geom, dx);
                Ok(())
            }
            Some(scatter) => scatter.plane(dout, arg, self.geom, (dx, zeroed)),
        }
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
