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
//!
//! **Fast paths.** The output columns whose windows lie fully inside the
//! image (all but a border of at most ⌈pad / stride⌉ columns) are computed
//! tap by tap over whole output rows, reading the input split by column
//! phase ([`phase`]), so every pass is contiguous and vectorised; the border
//! windows take a per-window loop. The ubiquitous 2×2 / stride-2 / unpadded
//! windows have dedicated single-pass forward kernels. Every path visits a
//! window's pixels in the same row-major order, so all give the same bits.

mod avg;
mod max;
mod phase;

pub use avg::{avg_pool2d_backward, avg_pool2d_forward};
pub use max::{max_pool2d_backward, max_pool2d_forward};

use crate::error::{checked_product, Result};
use crate::Window2d;
use rayon::prelude::*;
use std::ops::Range;

/// Planes whose total work is below this many elements run on one thread.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 14;

/// For each output position along one axis, the real (unpadded) input
/// coordinates its window covers: `start..start + len` (pooling windows are
/// dense, so these are consecutive).
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

/// The window spans of a geometry along both axes, computed once per call
/// and shared by all planes, and the output columns whose windows are full
/// (a contiguous range: padding only cuts windows at the borders).
struct Spans {
    rows: Vec<(usize, usize)>,
    cols: Vec<(usize, usize)>,
    full: Range<usize>,
}

impl Spans {
    fn new(geom: &Window2d) -> Self {
        let (rows, cols) = (window_spans(geom, 0), window_spans(geom, 1));
        let kw = geom.kernel()[1];
        let lo = cols.iter().position(|&(_, n)| n == kw).unwrap_or(cols.len());
        let hi = cols.iter().rposition(|&(_, n)| n == kw).map_or(lo, |i| i + 1);
        Self {
            rows,
            cols,
            full: lo..hi,
        }
    }

    /// The output columns outside [`full`](Self::full), in order: left
    /// border, then right border.
    fn border(&self) -> (Range<usize>, Range<usize>) {
        (0..self.full.start, self.full.end..self.cols.len())
    }
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
