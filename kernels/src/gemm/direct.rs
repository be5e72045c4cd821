//! Implicit GEMM with B read in place: the micro-kernel reads the im2col
//! matrix's rows where they lie, and B is never packed.
//!
//! With stride 1, row (c, i, j) of an image's im2col matrix is a shifted
//! copy of the image: on the zero-padded image (Hp × Wp per channel), output
//! pixel (y, x) of tap (c, i, j) reads `padded[c·Hp·Wp + i·dh·Wp + j·dw +
//! y·Wp + x]`. Number the output pixels on a *wide* grid of Wp columns per
//! row, q = y·Wp + x, and every row of B is one contiguous run of the padded
//! image, `B[k, q] = padded[offsets[k] + q]`, read in place by
//! [`super::kernel::RowsKernelFn`]. The Wp − OW columns per row that fall
//! outside the output are computed and dropped (3-15 % extra work on the
//! usual layer sizes).
//!
//! Stride s > 1 becomes stride 1 on the s×s *phase planes* of the padded
//! image: plane (pi, pj) holds the pixels (y·s + pi, x·s + pj), and tap
//! (i, j) reads plane (i·dh mod s, j·dw mod s) shifted by (i·dh / s,
//! j·dw / s). The wide grid is then a plane's width, ⌈Wp / s⌉.
//!
//! Several images go through one product stacked into a tall image: image
//! n's phase-plane rows follow image n − 1's, each image padded to a whole
//! number of stride steps, and the output rows that straddle two images
//! are computed and dropped like the wide grid's extra columns.
//!
//! The work is split into bands of output rows. A band needs only its own
//! rows of the padded image (plus the kernel's reach), so each task builds
//! just that band, phase planes and padding, in a small per-thread buffer:
//! the route's extra memory is a few hundred KiB per thread, not a copy of
//! the image. With stride 1 and no padding the image itself is read.
//!
//! This pays where packing B costs as much as the product: few rows of A
//! (a convolution's filters), each packed B value feeding only M
//! multiply-adds. With many rows the packed route of [`super::blocked`]
//! stays; with few taps (K + 1 ≤ 2M, one KC block) and a band to build
//! anyway, [`super::im2col_bands`] builds the band's im2col matrix instead
//! and skips the wide grid's extra columns and copy.
//!
//! A band's product goes to a buffer of its own, then its output columns
//! are copied to C, the bias added — except where an output row is whole
//! vectors and at least NR wide: then the tiles lie within one output row
//! each (the last one narrower), skip the wide grid's extra columns, and
//! are stored straight into C, the bias added by the kernel as it stores
//! the last KC block's tiles. On the 7×7 ResNet layer's forward pass (112
//! columns: tiles of 48, 48 and 16) the copy had taken 18-19 % of the
//! time (`perf`, the Intel machine); alternated call by call, 1.13-1.17×
//! on one thread and on two. With 64 columns 1.01-1.04×; with 32, fewer
//! than NR, 0.97× (so not taken).
//!
//! Stride-1 products whose output is as wide as the image ("same"
//! padding across) skip the bands where the kernel has masked loads:
//! [`super::in_image`] reads the image itself and masks its padding.
//!
//! Results equal the packed route's bit for bit: the same micro-kernel body,
//! the same KC blocks in the same order (beta = 0 on the first, 1 after).

use super::gather::PADDING_LINE;
use super::kernel::MicroKernel;
use super::pack::{depth_blocks, pack_a_blocks};
use crate::slot::Slot;
use crate::{Element, Window2d};
use ndarray::{ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis};
use rayon::prelude::*;
use std::ops::Range;

/// Products with at most this many rows of A take the in-place route.
pub(crate) const MAX_ROWS: usize = 128;

/// Whether `C ← alpha·A·im2col + beta·C` with `m` rows over images of
/// geometry `geom` takes the in-place route: C only written (beta = 0),
/// and few rows — or somewhat more where [`super::in_image`] takes them
/// ([`super::in_image::takes_rows`]).
pub(crate) fn applies<T: Element>(m: usize, beta: T, geom: &Window2d) -> bool {
    beta == T::ZERO
        && (m <= MAX_ROWS || super::in_image::takes_rows(&super::kernel::selected_rows::<T>(m), m, geom))
}

/// Whether [`im2col_product`] over a batch of images (several, so the
/// bands are built) takes [`super::im2col_bands`], which splits the batch
/// into bands of one image itself: one call over the whole batch then
/// packs A once instead of once per chunk of images.
pub(super) fn bands_take_batch<T: Element>((m, taps): (usize, usize), geom: &Window2d) -> bool {
    let kern = super::kernel::selected_rows::<T>(m);
    applies(m, T::ZERO, geom)
        && !super::in_image::applies(&kern, geom)
        && super::im2col_bands::applies(&kern, (m, taps), geom.output()[1])
}

/// Where the rows of B come from: `count` images, `image_stride` apart,
/// stacked into one tall image of `count · period` rows of phase planes
/// (each image's padded height rounded up to whole stride steps), whose
/// output row R is row R % period of image R / period — dropped when that
/// is OH or more.
pub(super) struct Source<'a, T> {
    images: &'a [T],
    count: usize,
    image_stride: usize,
    channels: usize,
    pub(super) geom: &'a Window2d,
    /// Wide-grid row length: the width of a phase plane.
    pub(super) wide: usize,
    /// Phase-plane rows (and output rows of the tall grid) per image.
    period: usize,
    /// Whether bands are built (padding, stride > 1 or several images);
    /// else the image is read as it is.
    copied: bool,
    /// Output rows per band.
    pub(super) band_rows: usize,
}

impl<'a, T: Element> Source<'a, T> {
    pub(super) fn new(
        (images, count, image_stride): (&'a [T], usize, usize),
        channels: usize,
        geom: &'a Window2d,
    ) -> Self {
        let ([h, w], [ph, pw], [sh, sw]) = (geom.input(), geom.pad(), geom.stride());
        Source {
            images,
            count,
            image_stride,
            channels,
            geom,
            wide: (w + 2 * pw).div_ceil(sw),
            period: (h + 2 * ph).div_ceil(sh),
            copied: ph > 0 || pw > 0 || geom.stride() != [1, 1] || count > 1,
            band_rows: 1,
        }
    }

    /// Rows of the tall output grid: every image's period, but only the
    /// last image's OH.
    fn tall_rows(&self) -> usize {
        (self.count - 1) * self.period + self.geom.output()[0]
    }

    /// Rows of each phase plane one band reads.
    fn band_height(&self) -> usize {
        self.band_rows + self.geom.dilation()[0] * (self.geom.kernel()[0] - 1) / self.geom.stride()[0]
    }

    /// The distance between two channels in the buffer B is read from.
    fn channel_stride(&self) -> usize {
        if self.copied {
            self.band_height() * self.wide
        } else {
            self.geom.input_len()
        }
    }

    /// Offset of each row of B, (c, i, j) in order: tap (i, j) of channel c
    /// reads phase plane (i·dh mod sh, j·dw mod sw) of channel c, shifted
    /// by (i·dh / sh, j·dw / sw). The planes lie in the order (phase row,
    /// channel, phase column).
    pub(super) fn offsets(&self) -> Vec<isize> {
        let ([kh, kw], [dh, dw], [sh, sw]) = (self.geom.kernel(), self.geom.dilation(), self.geom.stride());
        let (plane, wide, channels) = (self.channel_stride(), self.wide, self.channels);
        let tap = move |ch: usize, i: usize, j: usize| {
            let (y, x) = (i * dh, j * dw);
            (((y % sh) * channels + ch) * sw + x % sw) * plane + y / sh * wide + x / sw
        };
        (0..channels)
            .flat_map(|ch| (0..kh).flat_map(move |i| (0..kw).map(move |j| tap(ch, i, j) as isize)))
            .collect()
    }

    /// The buffer holding the rows of B for output rows `rows`, and the wide
    /// column its offsets count from. Built bands hold, per phase row pi,
    /// channel and phase column pj, the band's rows of the phase plane:
    /// row r, column x of plane (pi, pj) is padded pixel ((rows.start +
    /// r)·sh + pi, x·sw + pj), zero outside the image; `slack` zeros
    /// follow. A channel's sw planes of one phase row come from the same
    /// image lines: one call of the lines builds them all.
    pub(super) fn band<'b>(
        &'b self,
        rows: Range<usize>,
        slack: usize,
        band: &'b mut Vec<T>,
    ) -> (&'b [T], usize)
    where
        'a: 'b,
    {
        if !self.copied {
            return (self.images, 0);
        }
        let ([h, w], [ph, pw], [sh, sw]) = (self.geom.input(), self.geom.pad(), self.geom.stride());
        let (height, wide) = (self.band_height(), self.wide);
        let plane = height * wide;
        band.resize(sh * sw * self.channels * plane + slack, T::ZERO);
        let planes = band.chunks_exact_mut(sw * plane).take(sh * self.channels);
        let lines = super::kernel::selected_lines::<T>();
        let mut starts = Vec::with_capacity(height);
        // Plane column x of phase column pj is padded column x·sw + pj,
        // image column x·sw + pj − pw.
        let columns: Vec<isize> = (0..sw).map(|pj| pj as isize - pw as isize).collect();
        for (index, values) in planes.enumerate() {
            let (pi, ch) = (index / self.channels, index % self.channels);
            // Line r is tall plane row rows.start + r: image n, its row
            // within the period counted along (no division per line).
            starts.clear();
            let (mut n, mut row) = (rows.start / self.period, rows.start % self.period);
            for _ in 0..height {
                let source = (row * sh + pi)
                    .checked_sub(ph)
                    .filter(|&y| y < h && n < self.count);
                starts.push(match source {
                    Some(y) => n * self.image_stride + (ch * h + y) * w,
                    None => PADDING_LINE,
                });
                row += 1;
                if row == self.period {
                    (n, row) = (n + 1, 0);
                }
            }
            // SAFETY: the lines were chosen for an instruction set this CPU
            // supports.
            unsafe { lines(self.images, &starts, w, &columns, sw, values) };
        }
        (band, rows.start * wide)
    }
}

/// `Cₙ ← alpha·A·im2col(xₙ) (+ bias[r] on row r)` (Cₙ = `c[n]`) for
/// `count` images `image_stride` apart (see the module docs), C being
/// (count, M, OH·OW); shapes already checked by the caller. The bias is
/// added as the tiles are scattered to C. C is only written, so it may be
/// fresh memory ([`Slot`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_product<T: Element, S: Slot<T>>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    batch: (&[T], usize, usize),
    channels: usize,
    geom: &Window2d,
    (bias, c): (Option<&[T]>, ArrayViewMut3<'_, S>),
    parallel: bool,
) {
    if super::in_image::applies(kern, geom) {
        super::in_image::im2col_product(kern, alpha, a, batch, channels, geom, (bias, c), parallel);
        return;
    }
    let [oh, ow] = geom.output();
    let mut source = Source::new(batch, channels, geom);
    if source.copied && super::im2col_bands::applies(kern, a.dim(), ow) {
        super::im2col_bands::im2col_product(kern, alpha, a, batch, channels, geom, (bias, c), parallel);
        return;
    }
    let (wide, tall) = (source.wide, source.tall_rows());
    source.band_rows = band_rows(kern, tall, ow, wide, parallel);
    let (m, k) = a.dim();
    let (mr, nr) = (kern.mr, kern.nr);
    let m_pad = m.div_ceil(mr) * mr;
    let depth = depth_blocks(k, kern.depth_block(k));
    let offsets = source.offsets();
    // Largest offset per KC block: a run of NR from column q is inside the
    // buffer for every row of the block when limit + q + NR ≤ its length.
    let limits: Vec<usize> = depth
        .iter()
        .map(|d| offsets[d.clone()].iter().copied().max().unwrap_or(0) as usize)
        .collect();
    // Every wide column is an output column of one image and nothing to
    // add: write C directly.
    let direct = wide == ow && source.count == 1 && bias.is_none();
    // Else, where an output row is whole vectors and at least NR wide,
    // tiles within one output row each (see the module docs).
    let by_rows = !direct && source.copied && ow >= nr && ow.is_multiple_of(kern.lanes);
    super::kernel::with_pack_buffers(parallel, |a_buf, _| {
        let a_pack = pack_a_blocks(a, (mr, kern.pack_a), &depth, a_buf, parallel);
        // One band: output rows `rows`, wide columns q, into `pieces` (the
        // band's output columns of each image it covers, in order).
        let task = |(rows, mut pieces): (Range<usize>, Vec<ArrayViewMut2<'_, S>>),
                    (band, local): &mut (Vec<T>, Vec<T>)| {
            let q = rows.start * wide..(rows.end - 1) * wide + ow;
            let width = q.len();
            let (data, base) = source.band(rows.clone(), nr, band);
            // The runs of wide columns stored, and where their tiles go.
            let (runs, rsc, csc) = if direct || by_rows {
                // (A band may hold no output row: only rows dropped
                // between two images.)
                let strides = pieces
                    .first()
                    .map_or([0, 0], |p| [p.strides()[0], p.strides()[1]]);
                // A slot has T's layout (`Slot`'s contract).
                let bases: Vec<*mut T> = pieces.iter_mut().map(|p| p.as_mut_ptr().cast::<T>()).collect();
                let runs = if direct {
                    vec![Run::new(q.start, width, bases[0])]
                } else {
                    by_rows_runs(rows.clone(), (source.period, oh), (wide, ow), &bases)
                };
                (runs, strides[0], strides[1])
            } else {
                local.resize(m * width, T::ZERO);
                (
                    vec![Run::new(q.start, width, local.as_mut_ptr())],
                    width as isize,
                    1,
                )
            };
            let last_step = depth.len() - 1;
            let mut panel = Vec::new();
            for (step, d) in depth.iter().enumerate() {
                let kc = d.len();
                let beta = if step == 0 { T::ZERO } else { T::ONE };
                let offsets = &offsets[d.clone()];
                for i in (0..m).step_by(mr) {
                    let a_panel = &a_pack[m_pad * d.start + i * kc..][..mr * kc];
                    // Stored by row runs, the bias goes in with the last
                    // KC block's tiles.
                    let row_bias = match bias {
                        Some(bias) if by_rows && step == last_step => &bias[i..],
                        _ => &[],
                    };
                    for (j, cols, tile) in run_tiles(&runs, nr, (i as isize * rsc, csc)) {
                        let rows = mr.min(m - i);
                        let from = j - base;
                        // The tile, rows i .. i + rows of its run's columns
                        // j .. j + cols, lies inside the task's block (its
                        // own output rows of C, or `local`, m × width), which
                        // aliases neither A's panels nor B; a fresh tile is
                        // only written (beta = 0 on the first KC block, after
                        // which it holds values).
                        if limits[step] + from + nr <= data.len() {
                            // SAFETY: the tile as above; the A panel holds
                            // kc·MR values; every row p of the block has NR
                            // values at data + from + offsets[p] (checked just
                            // above); `row_bias` is empty or holds the tile's
                            // rows' biases; the kernel's ISA is supported.
                            unsafe {
                                (kern.rows_for_cols(cols))(
                                    kc,
                                    a_panel.as_ptr(),
                                    data.as_ptr().add(from),
                                    offsets.as_ptr(),
                                    if row_bias.is_empty() {
                                        std::ptr::null()
                                    } else {
                                        row_bias.as_ptr()
                                    },
                                    tile,
                                    rsc,
                                    csc,
                                    rows,
                                    cols,
                                    alpha,
                                    beta,
                                );
                            }
                        } else {
                            // Near the end of an image read in place: pack
                            // this panel.
                            panel.clear();
                            panel.resize(kc * nr, T::ZERO);
                            for (values, &o) in panel.chunks_exact_mut(nr).zip(offsets) {
                                let o = o as usize + from;
                                values[..cols].copy_from_slice(&data[o..o + cols]);
                            }
                            // SAFETY: as above, with the packed panel (kc·NR values).
                            unsafe {
                                (kern.for_cols(cols))(
                                    kc,
                                    a_panel.as_ptr(),
                                    panel.as_ptr(),
                                    tile,
                                    rsc,
                                    csc,
                                    rows,
                                    cols,
                                    alpha,
                                    beta,
                                );
                            }
                            // The packed kernel adds no bias: added after
                            // the store, as the rows kernel adds it.
                            for (r, &b) in row_bias.iter().take(rows).enumerate() {
                                for col in 0..cols {
                                    // SAFETY: (r, col) lies in the tile just stored.
                                    unsafe { *tile.offset(r as isize * rsc + col as isize * csc) += b };
                                }
                            }
                        }
                    }
                }
            }
            if !direct && !by_rows {
                scatter(local, (q, wide, ow), (source.period, oh), bias, &mut pieces);
            }
        };
        let parts = band_pieces(c, &source, ow);
        if parallel && parts.len() > 1 {
            parts
                .into_par_iter()
                .for_each_init(Default::default, |scratch, part| task(part, scratch));
        } else {
            let mut scratch = Default::default();
            parts.into_iter().for_each(|part| task(part, &mut scratch));
        }
    });
}

/// A run of a band's wide columns stored side by side: wide columns
/// `start .. start + len` go to columns `column ..` of the matrix at `base`.
#[derive(Clone, Copy)]
struct Run<T> {
    start: usize,
    len: usize,
    base: *mut T,
    column: usize,
}

impl<T> Run<T> {
    /// Wide columns `start .. start + len` to columns `0 .. len` at `base`.
    fn new(start: usize, len: usize, base: *mut T) -> Self {
        Run {
            start,
            len,
            base,
            column: 0,
        }
    }
}

/// The runs of a band's tall rows `rows` that are output rows (those
/// below `oh` within their image's `period`): the row's `ow` wide columns
/// to its columns in its image's piece (among `bases`; pieces follow the
/// images the band covers, in order, as [`band_pieces`] splits them).
fn by_rows_runs<T>(
    rows: Range<usize>,
    (period, oh): (usize, usize),
    (wide, ow): (usize, usize),
    bases: &[*mut T],
) -> Vec<Run<T>> {
    let mut runs = Vec::with_capacity(rows.len());
    let (mut piece, mut column, mut image) = (0, 0, None);
    for r in rows {
        let (n, row) = (r / period, r % period);
        if row >= oh {
            continue;
        }
        if image.is_some_and(|i| i != n) {
            (piece, column) = (piece + 1, 0);
        }
        image = Some(n);
        runs.push(Run {
            start: r * wide,
            len: ow,
            base: bases[piece],
            column,
        });
        column += ow;
    }
    runs
}

/// The tiles of `runs`, NR columns at a time: each tile's first wide
/// column, its columns and where it is stored (its run's base, offset by
/// `offset` and the tile's column times `csc`).
fn run_tiles<T>(
    runs: &[Run<T>],
    nr: usize,
    (offset, csc): (isize, isize),
) -> impl Iterator<Item = (usize, usize, *mut T)> + '_ {
    runs.iter().flat_map(move |run| {
        let end = run.start + run.len;
        (run.start..end).step_by(nr).map(move |j| {
            let at = offset + (run.column + j - run.start) as isize * csc;
            (j, nr.min(end - j), run.base.wrapping_offset(at))
        })
    })
}

/// Output rows per band: up to about twice the kernel's JB wide columns
/// (and few enough for four bands per thread), choosing the count whose
/// band width wastes least of its last NR-wide panel — a partial panel
/// costs a whole micro-kernel call and a slow edge store.
fn band_rows<T>(kern: &MicroKernel<T>, tall: usize, ow: usize, wide: usize, parallel: bool) -> usize {
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let mut most = 2 * kern.jb / wide;
    if threads > 1 {
        most = most.min(tall / (4 * threads));
    }
    let most = most.clamp(1, tall);
    let waste = |rows: usize| {
        let width = (rows - 1) * wide + ow;
        // Unused panel columns per used one, in parts per thousand.
        (width.div_ceil(kern.nr) * kern.nr - width) * 1000 / width
    };
    // Least waste; among equals, the widest band.
    (1..=most).rev().min_by_key(|&rows| waste(rows)).unwrap_or(1)
}

/// Splits C (count, M, OH·OW) into the bands of `source`: per band, its
/// tall rows and, for each image it covers, that image's output columns
/// of the band's real rows (those below the image's OH), in image order.
#[allow(clippy::type_complexity)]
fn band_pieces<'c, T: Element, S>(
    c: ArrayViewMut3<'c, S>,
    source: &Source<'_, T>,
    ow: usize,
) -> Vec<(Range<usize>, Vec<ArrayViewMut2<'c, S>>)> {
    let (tall, period, oh) = (source.tall_rows(), source.period, source.geom.output()[0]);
    let mut images = Vec::with_capacity(c.len_of(Axis(0)));
    let mut rest = c;
    while rest.len_of(Axis(0)) > 0 {
        let (image, tail) = rest.split_at(Axis(0), 1);
        images.push(image.index_axis_move(Axis(0), 0));
        rest = tail;
    }
    let mut images = images.into_iter();
    let mut current = images.next();
    let mut parts = Vec::new();
    for start in (0..tall).step_by(source.band_rows) {
        let rows = start..(start + source.band_rows).min(tall);
        let mut pieces = Vec::new();
        for n in rows.start / period..=(rows.end - 1) / period {
            // This image's real rows among the band's.
            let within = |r: usize| r.clamp(n * period, (n + 1) * period).min(n * period + oh);
            let real = within(rows.end) - within(rows.start);
            if real == 0 {
                continue;
            }
            let image = current.take().expect("an image's columns left for its real rows");
            let (piece, rest) = image.split_at(Axis(1), real * ow);
            pieces.push(piece);
            current = if rest.is_empty() {
                images.next()
            } else {
                Some(rest)
            };
        }
        parts.push((rows, pieces));
    }
    parts
}

/// Copies the product of the wide columns `q` (rows of `q.len()` values in
/// `src`; q starts on a tall row) to their output columns in `pieces` (one
/// per image the columns cover, in order), adding `bias[i]` to row i if
/// given: wide column t is tall row t / wide, column t % wide; it is
/// dropped when that column is `width` or more, or that row is `oh` or
/// more within its image's `period`.
fn scatter<T: Element, S: Slot<T>>(
    src: &[T],
    (q, wide, width): (Range<usize>, usize, usize),
    (period, oh): (usize, usize),
    bias: Option<&[T]>,
    pieces: &mut [ArrayViewMut2<'_, S>],
) {
    // The band's lines that are output rows (their row within the period
    // counted along, no division per line), in order, then each piece's
    // share of them.
    let first_row = q.start / wide;
    let lines = q.len().div_ceil(wide);
    let real: Vec<usize> = (0..lines)
        .zip((0..period).cycle().skip(first_row % period))
        .filter(|&(_, row)| row < oh)
        .map(|(line, _)| line * wide)
        .collect();
    let mut shares = Vec::with_capacity(pieces.len());
    let mut taken = 0;
    for piece in pieces.iter() {
        let count = piece.ncols() / width;
        shares.push(&real[taken..taken + count]);
        taken += count;
    }
    for (i, src_row) in src.chunks_exact(q.len()).enumerate() {
        let add = bias.map(|b| b[i]);
        for (piece, starts) in pieces.iter_mut().zip(&shares) {
            let mut dst_row = piece.row_mut(i);
            match (dst_row.as_slice_mut(), add) {
                (Some(dst_row), None) => {
                    for (part, &start) in dst_row.chunks_exact_mut(width).zip(*starts) {
                        S::put_slice(part, &src_row[start..start + width]);
                    }
                }
                (Some(dst_row), Some(b)) => {
                    for (part, &start) in dst_row.chunks_exact_mut(width).zip(*starts) {
                        let values = &src_row[start..start + width];
                        part.iter_mut().zip(values).for_each(|(d, &v)| d.put(v + b));
                    }
                }
                (None, add) => {
                    let b = add.unwrap_or(T::ZERO);
                    let mut out = dst_row.iter_mut();
                    for &start in *starts {
                        // Values first: `zip` pulls from its first
                        // iterator before it finds the second one done,
                        // and would drop an output slot per line.
                        let values = &src_row[start..start + width];
                        values
                            .iter()
                            .zip(out.by_ref())
                            .for_each(|(&v, d)| d.put(if add.is_some() { v + b } else { v }));
                    }
                }
            }
        }
    }
}
