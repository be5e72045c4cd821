//! Implicit GEMM reading the image itself, the padding masked: stride-1
//! convolutions whose output is as wide as the image (OW = W, "same"
//! padding across: 3×3 with padding 1, 1×1 without).
//!
//! Then output pixel q = y·W + x of tap (c, i, j) reads
//!
//! ```text
//! image[c·H·W + q + (i·dh − ph)·W + (j·dw − pw)]
//! ```
//!
//! so every row of B (of the im2col matrix) is the image itself, shifted,
//! and numbered like the output. Where the tap falls on padding that
//! address holds a neighbouring row's pixel, or lies outside the image:
//! per-tap lane masks ([`super::kernel::LaneMasks`], worked out per
//! geometry for each distinct set of a tile's masks) make those lanes count as
//! zero. Tiles whose every lane lies in the batch (all but those reaching
//! past its ends) read whole vectors and clear the lanes off the masks
//! with an AND ([`super::kernel::ZeroingRowsKernelFn`]); the others load
//! under the masks, never touching those lanes. Against
//! [`super::direct`]'s bands this copies nothing (no padded band built),
//! computes no column it then drops (no wide grid: 34 columns per 32 on a
//! 32-wide image) and stores the tiles straight into the output, the bias
//! added by the kernel as it stores a tile of the last KC block.
//!
//! The AND rather than masked loads: masked loads whose masks change every
//! step (a 3×3 kernel's taps cycle) ran an f32 8×48 tile at ~87 % of a
//! core, plain loads with an AND at ~94-96 %; alternated call by call
//! (two threads) the (50, 32, 32, 32) 3×3 layer's forward pass ran
//! 1.05×, ResNet's 3×3 at 56×56 1.06×, at 28×28 1.07×, the net's backward
//! pass 1.04× (its dx is such a product); the 1×1 layer (whole tiles)
//! 1.00×.
//!
//! Each band runs every A panel over every tile of NR pixels. Where the
//! band's image is small (3×3 layers: a KC block covers ~28 channels of a
//! few rows) the A panel stays in L1 while the tiles pass; where it is
//! large (a 1×1 layer's 256 channel planes: over [`TILES_OUTER_BYTES`])
//! the tiles are the outer loop, so each tile's rows come from memory once
//! and serve every A panel from cache (1.07× on the 256-channel 1×1
//! layer; 0.98-0.99× on the 3×3 ones).
//!
//! Measured against the bands on f32, alternated call by call in one
//! process (two threads): the (50, 32, 32, 32) 3×3 layer 1.18× forward,
//! 1.09× backward (its dx is such a product); ResNet's 3×3 at 28×28
//! 1.08× / 1.03×, at 56×56 1.05× / 1.02×.
//!
//! It needs masked vector loads (AVX-512, or AVX2's `vmaskmov`:
//! [`applies`]); elsewhere [`super::direct`] takes these products.
//! Results equal that route's (and the packed route's) bit for bit: the
//! same sums over the same KC blocks, the padding's zeros being masked or
//! cleared lanes, the bias added after the sum.

use super::kernel::{LaneMasks, LaneVector, MicroKernel};
use super::pack::{depth_blocks, pack_a_blocks};
use crate::slot::Slot;
use crate::{Element, Window2d};
use ndarray::{ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis};
use rayon::prelude::*;
use std::ops::Range;

/// Whether `C ← alpha·A·im2col` over images of geometry `geom` takes this
/// route: stride 1, the output as wide as the image, and a kernel with
/// masked loads. On 256-bit vectors (AVX2) against [`super::direct`]
/// (forced AVX2, f32, alternated call by call, two threads / one): the
/// 256-channel 1×1 layer 1.17×; the 3×3 layers' forward passes the net
/// 1.07-1.08× / 1.12×, 56×56 1.05× / 1.04×, 28×28 1.09× / 1.10×, 14×14
/// 1.00-1.01×, their backward passes 0.96-1.06× (the net 1.01-1.02×,
/// 56×56 0.96-1.01×, 28×28 1.05× / 1.06×); f64 (6×8) forward 1.00-1.06×,
/// backward 0.99-1.08× — once the AVX2 zeroing kernel took fewer
/// instructions a step (before, 0.97-1.03×: 3×3 took the bands).
pub(super) fn applies<T>(kern: &MicroKernel<T>, geom: &Window2d) -> bool {
    kern.masked.is_some() && geom.stride() == [1, 1] && geom.output()[1] == geom.input()[1]
}

/// Most rows of A this route takes beyond [`super::direct::MAX_ROWS`].
const MAX_ROWS: usize = 256;

/// Whether a product with `m` rows of A over images of geometry `geom`
/// takes this route even with more rows than [`super::direct::MAX_ROWS`]
/// (where the packed route takes the rest): up to [`MAX_ROWS`], over images
/// of at least two bands' pixels (2·JB). Measured with 256 filters against
/// the packed route, alternated call by call: 1×1 at 56×56 1.06×, 3×3
/// at 56×56 1.03×, 28×28 1.04×, 24×24 1.03×; but 20×20 0.95×, 14×14
/// 0.93× (a last partial tile per image, no images stacked), and 512
/// filters at 28×28 1.00×.
pub(super) fn takes_rows<T>(kern: &MicroKernel<T>, m: usize, geom: &Window2d) -> bool {
    m <= MAX_ROWS && applies(kern, geom) && geom.output_len() >= 2 * kern.jb
}

/// `Cₙ ← alpha·A·im2col(xₙ) (+ bias[r] on row r)` for the `count` images
/// of `batch` (`images`, count, image stride), C being (count, M, OH·OW);
/// shapes checked by the caller, and [`applies`]. C's first KC block is
/// only written (the bias added as the last block's tiles are stored), so
/// it may be fresh memory ([`Slot`]).
#[allow(clippy::too_many_arguments)]
pub(super) fn im2col_product<T: Element, S: Slot<T>>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    (images, count, image_stride): (&[T], usize, usize),
    channels: usize,
    geom: &Window2d,
    (bias, c): (Option<&[T]>, ArrayViewMut3<'_, S>),
    parallel: bool,
) {
    let (m, k) = a.dim();
    let (mr, nr, lanes) = (kern.mr, kern.nr, kern.lanes);
    let per_tile = geom.kernel_len() * (nr / lanes);
    let pixels = geom.output_len();
    let m_pad = m.div_ceil(mr) * mr;
    let depth = depth_blocks(k, kern.depth_block(k));
    let offsets = offsets(channels, geom);
    let taps = geom.kernel_len();
    let per_image = bands_per_image(kern, pixels, count, parallel);
    // The tiles not whole whose every lane of every tap lies in the batch
    // go to the zeroing kernels (where the CPU has them): the reach of the
    // offsets either way.
    let use_zeroing = kern.zeroing.is_some();
    let (lowest, highest) = (
        offsets.iter().copied().min().unwrap_or(0),
        offsets.iter().copied().max().unwrap_or(0),
    );
    // Every image's tiles lie at the same pixels (bands split whole tiles
    // off each image): their masks, worked out once (kept for the next
    // call on this thread: a worker repeats a geometry chunk after chunk,
    // and worked out per call they cost the net's 3×3 forward pass 3-5 %
    // on two threads, 3 % on one, its backward pass 2.5 %).
    let masks = TileMasks::cached(geom, nr, lanes, std::mem::size_of::<T>());
    let masks: &TileMasks = &masks;
    let last_step = depth.len() - 1;
    super::kernel::with_pack_buffers(parallel, |a_buf, _| {
        let a_pack = pack_a_blocks(a, (mr, kern.pack_a), &depth, a_buf, parallel);
        // One band: output pixels `q` of image n, into `out` (M × q.len()).
        let task = |(n, q, mut out): (usize, Range<usize>, ArrayViewMut2<'_, S>)| {
            let image = n * image_stride;
            let tiles: Vec<Range<usize>> = q.clone().step_by(nr).map(|j| j..(j + nr).min(q.end)).collect();
            // How each tile reads B, and the set of its masks.
            let reads: Vec<(Reads, usize)> = tiles
                .iter()
                .map(|tile| {
                    let set = masks.set_of[tile.start / nr];
                    let start = (image + tile.start) as isize;
                    let read = if masks.whole[set] {
                        Reads::Whole
                    } else if use_zeroing
                        && start + lowest >= 0
                        && start + highest + nr as isize <= images.len() as isize
                    {
                        Reads::Zeroing
                    } else {
                        Reads::Masked
                    };
                    (read, set * per_tile)
                })
                .collect();
            let (rsc, csc) = (out.strides()[0], out.strides()[1]);
            // A slot has T's layout (`Slot`'s contract).
            let base = out.as_mut_ptr().cast::<T>();
            for (step, d) in depth.iter().enumerate() {
                let kc = d.len();
                let beta = if step == 0 { T::ZERO } else { T::ONE };
                let offsets = &offsets[d.clone()];
                // Calls in order: (A panel, tile) pairs.
                let panels = (0..m).step_by(mr);
                let order: Vec<(usize, usize)> = if band_bytes::<T>(geom, kc, q.len()) > TILES_OUTER_BYTES {
                    (0..tiles.len())
                        .flat_map(|t| panels.clone().map(move |i| (i, t)))
                        .collect()
                } else {
                    panels
                        .flat_map(|i| (0..tiles.len()).map(move |t| (i, t)))
                        .collect()
                };
                for (i, t) in order {
                    let a_panel = a_pack[m_pad * d.start + i * kc..][..mr * kc].as_ptr();
                    let tile = &tiles[t];
                    let (rows, cols) = (mr.min(m - i), tile.len());
                    // Derived from the whole batch: the zeroing kernels
                    // read lanes outside the image (inside the batch).
                    let from = images.as_ptr().wrapping_add(image + tile.start);
                    let offsets = offsets.as_ptr();
                    // SAFETY: (i, tile − q.start) .. + (rows, cols) lies
                    // inside `out`, this task's own part of C, which
                    // aliases neither A's panels nor the image; a fresh
                    // tile is only written (beta = 0 on the first KC
                    // block, after which it holds values).
                    let c = unsafe { base.offset(i as isize * rsc + (tile.start - q.start) as isize * csc) };
                    // The bias goes in with the last KC block's store.
                    let row_bias = match bias {
                        Some(bias) if step == last_step => bias[i..].as_ptr(),
                        _ => std::ptr::null(),
                    };
                    let (read, at) = reads[t];
                    if let Reads::Whole = read {
                        // SAFETY: every lane of the tile's taps lies in
                        // the image (its masks are whole): step p's NR
                        // values at from + offsets[p] are readable; the A
                        // panel holds kc·MR values; `row_bias` is null or
                        // holds `rows` values; the kernel's ISA is
                        // supported.
                        unsafe {
                            (kern.rows_for_cols(cols))(
                                kc, a_panel, from, offsets, row_bias, c, rsc, csc, rows, cols, alpha, beta,
                            )
                        };
                        continue;
                    }
                    let lane_masks = LaneMasks {
                        table: masks.vectors[at..].as_ptr(),
                        taps,
                        first: d.start % taps,
                    };
                    let kernel = match read {
                        Reads::Zeroing => kern.zeroing_for_cols(cols).expect("checked: use_zeroing"),
                        _ => kern.masked_for_cols(cols).expect("a kernel with masked loads"),
                    };
                    // SAFETY: zeroing: every lane of every tap lies in the
                    // batch (`lowest`, `highest`), readable; masked: the
                    // lanes on step p's masks are those whose pixel lies
                    // in the image (`tile_masks`), read at from +
                    // offsets[p]. Either way the tile's set holds taps ×
                    // NV masks; the A panel holds kc·MR values; `row_bias`
                    // is null or holds `rows` values; the kernel's ISA is
                    // supported.
                    unsafe {
                        kernel(
                            kc,
                            a_panel,
                            from,
                            offsets,
                            &lane_masks,
                            row_bias,
                            c,
                            rsc,
                            csc,
                            rows,
                            cols,
                            alpha,
                            beta,
                        )
                    };
                }
            }
        };
        let parts = bands(c, nr, per_image);
        if parallel && parts.len() > 1 {
            parts.into_par_iter().for_each(task);
        } else {
            parts.into_iter().for_each(task);
        }
    });
}

/// The lane masks of an image's tiles of `nr` output pixels, each distinct
/// set of a tile's masks kept once: tiles at the same place in their
/// rows, away from the image's top and bottom, have the same ones (a
/// handful of sets per geometry, whatever the image's size).
struct TileMasks {
    /// Per tile, its set.
    set_of: Vec<usize>,
    /// Per set, whether the tile is whole and every tap's lane lies in
    /// the image.
    whole: Vec<bool>,
    /// Per set, taps × NR/lanes masks (as [`tile_masks`]), as vectors of
    /// lanes of `lane_bytes`.
    vectors: Vec<LaneVector>,
}

thread_local! {
    /// The tile masks last worked out on this thread, and for what: a
    /// layer's calls (one per chunk of its batch, one per training step)
    /// repeat one geometry.
    static LAST_MASKS: std::cell::RefCell<Option<(MasksKey, std::rc::Rc<TileMasks>)>> = const { std::cell::RefCell::new(None) };
}

/// What tile masks depend on: the geometry, NR, lanes per vector, bytes
/// per lane.
type MasksKey = (Window2d, usize, usize, usize);

impl TileMasks {
    /// [`Self::new`], or the masks this thread last worked out, if for the
    /// same.
    fn cached(geom: &Window2d, nr: usize, lanes: usize, lane_bytes: usize) -> std::rc::Rc<Self> {
        let key = (*geom, nr, lanes, lane_bytes);
        LAST_MASKS.with_borrow_mut(|last| match last {
            Some((k, masks)) if *k == key => masks.clone(),
            _ => {
                let masks = std::rc::Rc::new(Self::new(geom, nr, lanes, lane_bytes));
                *last = Some((key, masks.clone()));
                masks
            }
        })
    }

    fn new(geom: &Window2d, nr: usize, lanes: usize, lane_bytes: usize) -> Self {
        let (pixels, per_tile) = (geom.output_len(), geom.kernel_len() * (nr / lanes));
        let mut masks = Self {
            set_of: Vec::new(),
            whole: Vec::new(),
            vectors: Vec::new(),
        };
        let mut sets: std::collections::HashMap<Vec<u16>, usize> = std::collections::HashMap::new();
        let (mut rows, mut columns) = (Vec::new(), Vec::new());
        let mut table = vec![0; per_tile];
        for j in (0..pixels).step_by(nr) {
            let tile = j..(j + nr).min(pixels);
            let whole = tile_masks(geom, tile.clone(), lanes, (&mut rows, &mut columns), &mut table)
                && tile.len() == nr;
            let set = match sets.get(&table[..]) {
                Some(&set) => set,
                None => {
                    masks.whole.push(whole);
                    masks
                        .vectors
                        .extend(table.iter().map(|&mask| lane_vector(mask, lane_bytes)));
                    sets.insert(table.clone(), masks.whole.len() - 1);
                    masks.whole.len() - 1
                }
            };
            masks.set_of.push(set);
        }
        masks
    }
}

/// How a tile of a band reads its rows of B.
#[derive(Clone, Copy)]
enum Reads {
    /// Whole (every lane of every tap in the image): the rows kernel.
    Whole,
    /// Whole vectors, the lanes off the masks cleared: the zeroing kernel.
    Zeroing,
    /// Only the lanes on the masks: the masked kernel (tiles whose taps
    /// reach past the batch's ends).
    Masked,
}

/// A vector's mask (bit l for lane l) as a [`LaneVector`] of lanes of
/// `lane_bytes` (4 or 8), each with all bits set where its bit is.
fn lane_vector(mask: u16, lane_bytes: usize) -> LaneVector {
    // Lanes per 64-bit word, and each pattern of their bits as a word.
    let per_word = 8 / lane_bytes;
    let words: [u64; 4] = match per_word {
        1 => [0, u64::MAX, 0, 0],
        _ => [0, u64::MAX >> 32, u64::MAX << 32, u64::MAX],
    };
    let mut vector = LaneVector::default();
    for (w, word) in vector.0.iter_mut().enumerate() {
        *word = words[usize::from(mask >> (w * per_word)) & ((1 << per_word) - 1)];
    }
    vector
}

/// Above this many bytes of image per band and KC block, the tiles run
/// in the outer loop, A's panels inside.
const TILES_OUTER_BYTES: usize = 256 * 1024;

/// The image bytes a band of `pixels` output pixels reads for `rows` rows
/// of B: about rows / taps channels, each over the band's pixels and the
/// kernel's reach.
fn band_bytes<T>(geom: &Window2d, rows: usize, pixels: usize) -> usize {
    let ([_, w], [kh, kw], [dh, dw]) = (geom.input(), geom.kernel(), geom.dilation());
    let channels = rows.div_ceil(kh * kw);
    channels * (pixels + (kh - 1) * dh * w + (kw - 1) * dw) * std::mem::size_of::<T>()
}

/// Offset of each row of B, (c, i, j) in order, from an output pixel's
/// own index: `c·H·W + (i·dh − ph)·W + (j·dw − pw)`.
fn offsets(channels: usize, geom: &Window2d) -> Vec<isize> {
    let ([h, w], [kh, kw], [dh, dw], [ph, pw]) = (geom.input(), geom.kernel(), geom.dilation(), geom.pad());
    let (w, plane) = (w as isize, (h * w) as isize);
    (0..channels as isize)
        .flat_map(|c| {
            (0..kh as isize).flat_map(move |i| {
                (0..kw as isize).map(move |j| {
                    c * plane + (i * dh as isize - ph as isize) * w + j * dw as isize - pw as isize
                })
            })
        })
        .collect()
}

/// Fills `table` (taps × vectors of `lanes`) with the lane masks of the
/// output pixels `tile` (at most 128): bit l of tap t's vector v is set
/// when pixel `tile.start + v·lanes + l` is in the tile and its tap t
/// lies in the image (not on padding). Returns whether every bit of the
/// tile's pixels is set.
fn tile_masks(
    geom: &Window2d,
    tile: Range<usize>,
    lanes: usize,
    (rows, columns): (&mut Vec<u128>, &mut Vec<u128>),
    table: &mut [u16],
) -> bool {
    let ([h, w], [kh, kw], [dh, dw], [ph, pw]) = (geom.input(), geom.kernel(), geom.dilation(), geom.pad());
    let vectors = table.len() / (kh * kw);
    // Per kernel row i, the pixels whose tap row lies in the image (image
    // rows y with 0 ≤ y + i·dh − ph < h); per kernel column j, those whose
    // tap column does (0 ≤ x + j·dw − pw < w): ranges of pixels, as bits.
    let (h, w, len) = (h as isize, w as isize, tile.len() as isize);
    let start = tile.start as isize;
    let bits = |lo: isize, hi: isize| -> u128 {
        let (lo, hi) = ((lo - start).clamp(0, len), (hi - start).clamp(0, len));
        let below = |n: isize| if n >= 128 { u128::MAX } else { (1u128 << n) - 1 };
        below(hi) & !below(lo)
    };
    rows.clear();
    rows.extend((0..kh as isize).map(|i| {
        let shift = i * dh as isize - ph as isize;
        bits((-shift) * w, (h - shift) * w)
    }));
    columns.clear();
    columns.extend((0..kw as isize).map(|j| {
        let shift = j * dw as isize - pw as isize;
        let (lo, hi) = ((-shift).max(0), (w - shift).min(w));
        (start / w..=(start + len - 1) / w).fold(0, |acc, y| acc | bits(y * w + lo, y * w + hi))
    }));
    let all = u128::MAX >> (128 - tile.len());
    let lane_bits = (1u128 << lanes) - 1;
    let mut whole = true;
    for (tap, masks) in table.chunks_exact_mut(vectors).enumerate() {
        let valid = rows[tap / kw] & columns[tap % kw];
        whole &= valid == all;
        for (v, mask) in masks.iter_mut().enumerate() {
            *mask = ((valid >> (v * lanes)) & lane_bits) as u16;
        }
    }
    whole
}

/// Bands per image: about twice the kernel's JB pixels each (the B rows a
/// band reads stay in L2 while every A panel passes over them); in
/// parallel, at least four bands per thread over the batch.
fn bands_per_image<T>(kern: &MicroKernel<T>, pixels: usize, count: usize, parallel: bool) -> usize {
    let mut bands = pixels.div_ceil(2 * kern.jb);
    if parallel {
        bands = bands.max((4 * rayon::current_num_threads()).div_ceil(count));
    }
    bands.clamp(1, pixels.div_ceil(kern.nr))
}

/// Splits C (count, M, P) into `per_image` bands of each image, whole
/// tiles of `nr` pixels each, evened out (their tile counts differ by
/// one at most; a last band of the remainder left one image's 56×56
/// layer on two threads 1.04-1.08× slower): (image, its pixels, their
/// columns of C).
fn bands<S>(
    c: ArrayViewMut3<'_, S>,
    nr: usize,
    per_image: usize,
) -> Vec<(usize, Range<usize>, ArrayViewMut2<'_, S>)> {
    let pixels = c.len_of(Axis(2));
    let tiles = pixels.div_ceil(nr);
    let mut parts = Vec::new();
    let (mut rest, mut n) = (c, 0);
    while rest.len_of(Axis(0)) > 0 {
        let (first, tail) = rest.split_at(Axis(0), 1);
        rest = tail;
        let mut image = first.index_axis_move(Axis(0), 0);
        for b in 0..per_image {
            let (start, end) = (
                b * tiles / per_image * nr,
                ((b + 1) * tiles / per_image * nr).min(pixels),
            );
            let (piece, rest) = image.split_at(Axis(1), end - start);
            parts.push((n, start..end, piece));
            image = rest;
        }
        n += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::tile_masks;
    use crate::Window2d;

    /// The masks worked out from ranges of pixels equal a pixel-by-pixel
    /// check of every tap, for tiles starting anywhere (across row ends,
    /// the image's top and bottom rows, the output's last pixel), tile
    /// widths of 1 to 5 vectors of 8 or 16 lanes, dilated kernels and
    /// padding down of 0 to 3.
    #[test]
    fn tile_masks_match_a_pixel_by_pixel_check() {
        let shapes = [
            ([5, 7], [3, 3], [1, 1], [1, 1]),
            ([9, 4], [2, 3], [0, 2], [2, 2]),
            ([3, 20], [5, 1], [3, 0], [1, 1]),
            ([12, 33], [1, 5], [2, 2], [1, 1]),
            ([1, 1], [1, 1], [0, 0], [1, 1]),
        ];
        let (mut rows, mut columns) = (Vec::new(), Vec::new());
        for (input, kernel, pad, dilation) in shapes {
            let geom = Window2d::new(input, kernel, [1, 1], pad, dilation).unwrap();
            assert_eq!(geom.output()[1], input[1], "same width");
            let ([h, w], [kh, kw]) = (input, kernel);
            let pixels = geom.output_len();
            for (lanes, vectors) in [(8, 1), (8, 3), (16, 2), (16, 3), (16, 5)] {
                let nr = lanes * vectors;
                for start in 0..pixels {
                    let tile = start..(start + nr).min(pixels);
                    let mut table = vec![0u16; kh * kw * vectors];
                    let whole = tile_masks(&geom, tile.clone(), lanes, (&mut rows, &mut columns), &mut table);
                    let mut expected = vec![0u16; kh * kw * vectors];
                    let mut all = true;
                    for (l, q) in tile.enumerate() {
                        let (y, x) = ((q / w) as isize, (q % w) as isize);
                        for (i, j) in (0..kh).flat_map(|i| (0..kw).map(move |j| (i, j))) {
                            let r = y + (i * dilation[0]) as isize - pad[0] as isize;
                            let c = x + (j * dilation[1]) as isize - pad[1] as isize;
                            if (0..h as isize).contains(&r) && (0..w as isize).contains(&c) {
                                expected[(i * kw + j) * vectors + l / lanes] |= 1 << (l % lanes);
                            } else {
                                all = false;
                            }
                        }
                    }
                    assert_eq!(table, expected, "{input:?} {kernel:?} pad {pad:?} dil {dilation:?}, tile from {start}, {lanes}×{vectors}");
                    assert_eq!(whole, all);
                }
            }
        }
    }
}
