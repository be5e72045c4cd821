//! Max and average pooling, forward and backward, parallel over planes.
//!
//! Data is a stack of `planes` independent H×W planes (the N·C planes of an
//! NCHW tensor); the window geometry is a [`Window2d`] built with
//! [`Window2d::pooling`], so every window holds at least one real pixel.
//!
//! Max pooling records, for each output, where in its window the maximum
//! lies (the tap `i·KW + j`, an [`ArgIndex`]: one byte per output for
//! windows up to 16×16): the first maximum in row-major window order, or the
//! first NaN if the window holds one (NaN propagates). The backward pass
//! sends each upstream gradient there. Each plane is handled by one task, so
//! results do not depend on the thread count.
//!
//! **Fast paths.** The output columns whose windows lie fully inside the
//! image (all but a border of at most ⌈pad / stride⌉ columns) are computed
//! tap by tap over whole output rows, reading the input split by column
//! phase ([`phase`]), so every pass is contiguous and vectorised; the border
//! windows take a per-window loop. Average pooling is separable: forward,
//! per output row the column sums of its window rows, then each window's
//! columns (from zero, left to right); backward, per output row its shares
//! spread over one row, then added into the window rows. The ubiquitous
//! 2×2 / stride-2 / unpadded windows have dedicated single-pass kernels,
//! forward and backward; 3×3 / stride-2 max pooling (ResNet's) scans the
//! nine taps of a block of full windows in one pass, not tap by tap through
//! a scratch row, and its backward pass gathers: each dx row from the one
//! or two window rows that can pick its pixels, by whole-row selects (its
//! taps checked apart), not one scattered add per window. Every path of an operation sums a window's pixels
//! in the same order (max: row-major; average: as above), so all give the
//! same bits. The per-plane passes are compiled once per instruction set
//! and run in the copy [`crate::selected_isa`] picks.
//!
//! **Fresh outputs.** Every pass also comes as a `_vec` function
//! ([`max_pool2d_forward_vec`], [`avg_pool2d_forward_vec`],
//! [`max_pool2d_backward_vec`], [`avg_pool2d_backward_vec`]) returning its
//! output in new vectors made plane by plane — each plane zeroed and
//! written while in cache — instead of overwriting a caller's array that
//! was zero-filled first (a write of all of it to memory). Alternated call
//! by call on the ResNet shapes: backward 1.1-1.4×, forward 1.02-1.09×.
//! A pass that writes every value of its plane and reads none back (every
//! forward pass, and the 3×3 / stride-2 backward passes) skips even the
//! in-cache zero fill: it writes through [`Slot`]s straight into the fresh
//! memory ([`fresh_planes_written`]): another 1.3× backward, 1.1× forward
//! (3×3 / stride 2; average pooling's 1.10-1.13× at 3×3 / stride 2 and
//! 2×2 max and average 1.08-1.26× on two threads, alternated call by
//! call — max 2×2 on one thread 0.95-0.97×).

mod avg;
mod max;
mod phase;

pub use avg::{avg_pool2d_backward, avg_pool2d_backward_vec, avg_pool2d_forward, avg_pool2d_forward_vec};
pub use max::{
    max_pool2d_backward, max_pool2d_backward_vec, max_pool2d_forward, max_pool2d_forward_vec, ArgIndex,
};

use crate::error::{checked_product, Error, Result};
use crate::slot::{zeroed, Slot};
use crate::{Element, Window2d};
use phase::{padded, PhaseBand};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Planes whose total work is below this many elements run on one thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 14;

/// For each output position along one axis, the real (unpadded) input
/// coordinates its window covers, `start..start + len` (pooling windows are
/// dense, so these are consecutive), and `skip`, the number of the window's
/// taps before `start` that fall on padding.
fn window_spans(geom: &Window2d, axis: usize) -> (Vec<(usize, usize)>, Vec<usize>) {
    (0..geom.output()[axis])
        .map(|o| {
            let mut taps = (0..geom.kernel()[axis]).filter_map(|t| geom.source(axis, o, t).map(|p| (t, p)));
            let (skip, start) = taps.next().expect("a pooling window holds a real pixel");
            ((start, 1 + taps.count()), skip)
        })
        .unzip()
}

/// The window spans of a geometry along both axes, computed once per call
/// and shared by all planes, and the output columns whose windows are full
/// (a contiguous range: padding only cuts windows at the borders).
struct Spans {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    /// Padding taps above each output row's windows.
    row_skip: Vec<usize>,
    /// Padding taps left of each output column's window.
    col_skip: Vec<usize>,
    full: Range<usize>,
}

impl Spans {
    fn new(geom: &Window2d) -> Self {
        let ((rows, row_skip), (cols, col_skip)) = (window_spans(geom, 0), window_spans(geom, 1));
        let kw = geom.kernel()[1];
        let lo = cols.iter().position(|&(_, n)| n == kw).unwrap_or(cols.len());
        let hi = cols.iter().rposition(|&(_, n)| n == kw).map_or(lo, |i| i + 1);
        Self {
            rows,
            cols,
            row_skip,
            col_skip,
            full: lo..hi,
        }
    }

    /// The output columns outside [`full`](Self::full), in order: left
    /// border, then right border.
    fn border(&self) -> (Range<usize>, Range<usize>) {
        (0..self.full.start, self.full.end..self.cols.len())
    }
}

/// Whether `geom` has 2×2 windows, stride 2 and no padding: the common case
/// with dedicated passes (every window full, no two overlapping).
fn is_2x2_stride2(geom: &Window2d) -> bool {
    geom.kernel() == [2, 2] && geom.stride() == [2, 2] && geom.pad() == [0, 0]
}

/// Whether `geom` has 3×3 windows and stride 2 (ResNet's pooling; any
/// padding, which for 3×3 pooling windows is 0 or 1).
fn is_3x3_stride2(geom: &Window2d) -> bool {
    geom.kernel() == [3, 3] && geom.stride() == [2, 2]
}

/// Checks that `geom` is a pooling geometry (what [`Window2d::pooling`]
/// builds: every window holds a real pixel, no dilation) and that the sizes
/// fit `usize`; returns the input and output pixels per plane.
fn plane_counts(planes: usize, geom: &Window2d) -> Result<(usize, usize)> {
    let pooling = Window2d::pooling(geom.input(), geom.kernel(), geom.stride(), geom.pad());
    if pooling.as_ref() != Ok(geom) {
        return Err(Error::parameter(
            "geom",
            "a pooling geometry (Window2d::pooling: 2·pad <= kernel, no dilation, input >= 1×1)",
            format!("{geom:?}"),
        ));
    }
    checked_product("pool input elements", &[planes, geom.input_len()])?;
    checked_product("pool output elements", &[planes, geom.output_len()])?;
    Ok((geom.input_len(), geom.output_len()))
}

/// Per-task buffers of the tap-by-tap passes, reused from plane to plane.
struct Scratch<T> {
    band: PhaseBand<T>,
    /// One value per full window of a row (and one more: see
    /// `max_plane_3x3_stride2`), in whole blocks.
    values: Vec<T>,
    /// One tap per window of `values`.
    taps: Vec<u32>,
    /// One value per input column (average pooling's column sums).
    column: Vec<T>,
}

impl<T: Element> Scratch<T> {
    fn new(geom: &Window2d, spans: &Spans) -> Self {
        let n = padded(spans.full.len() + 1);
        Self {
            band: PhaseBand::new(geom.input()[1], geom.stride()[1], geom.kernel()[0]),
            values: vec![T::ZERO; n],
            taps: vec![0; n],
            column: vec![T::ZERO; geom.input()[1]],
        }
    }
}

/// Two new vectors of `planes` planes (`a_len` and `b_len` values per
/// plane) for passes that write every value of their planes and read none
/// back: each plane written by `fill(scratch, plane index, a plane,
/// b plane)` straight into fresh memory — no zero fill first
/// (measured 1.3× on the 3×3 / stride-2 backward passes, whose zero fill
/// pushed each plane through the cache once more). A pass with one output
/// passes `1` as `b_len` and gets `()` slots. In parallel when `work`
/// (elements read and written) is large enough, with one `init()` scratch
/// per task, like [`for_each_plane`]; stops at the first error.
///
/// # Safety
/// `a_len` and `b_len` must be positive, and whenever `fill` returns `Ok`,
/// it must have written every element of the two planes it was given.
unsafe fn fresh_planes_written<S, A: Copy + Send + Sync, B: Copy + Send + Sync>(
    (planes, work): (usize, usize),
    (a_len, b_len): (usize, usize),
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [MaybeUninit<A>], &mut [MaybeUninit<B>]) -> Result<()> + Sync + Send,
) -> Result<(Vec<A>, Vec<B>)> {
    let (a_total, b_total) = (planes * a_len, planes * b_len);
    let (mut a, mut b) = (Vec::with_capacity(a_total), Vec::with_capacity(b_total));
    if planes > 0 {
        let (a_spare, b_spare) = (
            &mut a.spare_capacity_mut()[..a_total],
            &mut b.spare_capacity_mut()[..b_total],
        );
        // Unit tests poison the memory, so that a value a pass fails to
        // write shows (fresh pages would read as zeros, a likely result).
        #[cfg(test)]
        {
            // SAFETY: any bytes may be written into `MaybeUninit` values.
            a_spare
                .iter_mut()
                .for_each(|v| unsafe { std::ptr::write_bytes(v.as_mut_ptr(), 0xA5, 1) });
            b_spare
                .iter_mut()
                .for_each(|v| unsafe { std::ptr::write_bytes(v.as_mut_ptr(), 0xA5, 1) });
        }
        let plane = |scratch: &mut S, (index, (a, b)): FreshPlane<'_, A, B>| fill(scratch, index, a, b);
        if work < PARALLEL_MIN_ELEMENTS || rayon::current_num_threads() == 1 {
            let mut scratch = init();
            a_spare
                .chunks_mut(a_len)
                .zip(b_spare.chunks_mut(b_len))
                .enumerate()
                .try_for_each(|part| plane(&mut scratch, part))?;
        } else {
            crate::threads::on_worker(|| {
                a_spare
                    .par_chunks_mut(a_len)
                    .zip(b_spare.par_chunks_mut(b_len))
                    .enumerate()
                    .try_for_each_init(init, plane)
            })?;
        }
    }
    // SAFETY: the capacities are at least the totals; with positive plane
    // lengths every element lies in a plane, and every plane returned Ok
    // (or we returned above), so by the caller's guarantee all were
    // written.
    unsafe {
        a.set_len(a_total);
        b.set_len(b_total);
    }
    Ok((a, b))
}

/// A plane of [`fresh_planes`]' two vectors, not yet written, and its index.
type FreshPlane<'a, A, B> = (usize, (&'a mut [MaybeUninit<A>], &'a mut [MaybeUninit<B>]));

/// Two new vectors of `planes` planes (`a_len` and `b_len` values per
/// plane), made plane by plane: each plane zero-filled (`a_zero`,
/// `b_zero`), then `fill(scratch, plane index, a plane, b plane)` while it
/// is in cache — no pass over the whole vectors before (a zero-filled
/// output array costs a write of all of it to memory). A pass with one
/// output passes `(1, ())` as the second. The zero-filling case of
/// [`fresh_planes_written`] (in parallel, stopping at the first error,
/// the same way).
fn fresh_planes<S, A: Copy + Send + Sync, B: Copy + Send + Sync>(
    work: (usize, usize),
    (a_len, a_zero): (usize, A),
    (b_len, b_zero): (usize, B),
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, usize, &mut [A], &mut [B]) -> Result<()> + Sync + Send,
) -> Result<(Vec<A>, Vec<B>)> {
    let planes = work.0;
    if a_len == 0 || b_len == 0 {
        return Ok((vec![a_zero; planes * a_len], vec![b_zero; planes * b_len]));
    }
    let zeroed_fill = |scratch: &mut S, index, a: &mut [MaybeUninit<A>], b: &mut [MaybeUninit<B>]| {
        fill(scratch, index, zeroed(a, a_zero), zeroed(b, b_zero))
    };
    // SAFETY: the lengths are positive, and every element of both planes
    // is written (zeroed) before `fill` sees them.
    unsafe { fresh_planes_written(work, (a_len, b_len), init, zeroed_fill) }
}

/// Runs `f(scratch, input_plane, output_plane, aux_plane)` for every plane,
/// in parallel when the work is large enough, with one `init()` scratch per
/// task. `aux` is a second output with the output's plane length (the
/// arg-max of max pooling); passes with a single output give a `[()]`
/// slice, which costs nothing.
fn for_each_plane<S, A: Sync, B: Send, C: Send>(
    (input, in_len): (&[A], usize),
    (out, aux, out_len): (&mut [B], &mut [C], usize),
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, &[A], &mut [B], &mut [C]) + Sync + Send,
) {
    if in_len == 0 || out_len == 0 {
        return;
    }
    let work = input.len() + out.len();
    if work < PARALLEL_MIN_ELEMENTS || rayon::current_num_threads() == 1 {
        let mut scratch = init();
        let chunks = input
            .chunks(in_len)
            .zip(out.chunks_mut(out_len))
            .zip(aux.chunks_mut(out_len));
        chunks.for_each(|((i, o), a)| f(&mut scratch, i, o, a));
    } else {
        // Entered through `on_worker`, whose caller waits awake: CS231n's
        // 2×2 max pooling 1.22x, ResNet's 1.01-1.05x (alternated against
        // rayon's own entry, which puts the caller to sleep).
        crate::threads::on_worker(|| {
            input
                .par_chunks(in_len)
                .zip(out.par_chunks_mut(out_len))
                .zip(aux.par_chunks_mut(out_len))
                .for_each_init(init, |scratch, ((i, o), a)| f(scratch, i, o, a))
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::Window2d;

    /// The bit patterns of `v` (NaNs and signed zeros compared exactly).
    pub(super) fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|f| f.to_bits()).collect()
    }

    /// Planes of each [`forward_cases`] input.
    pub(super) const PLANES: usize = 3;

    /// Geometries of every forward path — 3×3 / stride 2 (padded or not),
    /// 2×2 / stride 2, and the general passes (windows wider and narrower
    /// than the stride, with and without padding, cut at the borders) —
    /// each with an input of [`PLANES`] planes of small integers (exact
    /// sums, ties included).
    pub(super) fn forward_cases() -> Vec<(Window2d, Vec<f32>)> {
        let input = |g: &Window2d| {
            (0..PLANES * g.input_len())
                .map(|i| ((i * 37) % 23) as f32 - 11.0)
                .collect()
        };
        let mut geometries = Vec::new();
        for (h, w) in [(7, 7), (8, 9), (9, 8), (5, 6), (3, 3), (4, 40), (40, 3)] {
            for (k, s, p) in [
                (3, 2, 1),
                (3, 2, 0),
                (2, 2, 0),
                (2, 1, 0),
                (3, 1, 1),
                (3, 3, 0),
                (4, 3, 2),
                (5, 2, 2),
                (1, 1, 0),
            ] {
                if let Ok(g) = Window2d::pooling([h, w], [k, k], [s, s], [p, p]) {
                    geometries.push(g);
                }
            }
        }
        geometries.into_iter().map(|g| (g, input(&g))).collect()
    }
}
