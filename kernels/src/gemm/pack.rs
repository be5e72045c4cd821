//! Packing: copying blocks of A and B into the micro-panel layouts the
//! micro-kernels read contiguously, zero-padded to whole panels.
//!
//! * A (m × kc) → ⌈m/MR⌉ panels; panel r holds rows r·MR.., step p at
//!   `[p·MR + i]`.
//! * B (kc × nc) → ⌈nc/NR⌉ panels; panel s holds columns s·NR.., step p at
//!   `[p·NR + j]`.
//!
//! Reads go through ndarray views, so any strides work; the `unsafe`
//! blocks skip a bounds check the loop bounds already guarantee and call
//! instruction-set-specific helpers: the register-transposing packers
//! (8×8 blocks for A: 1.09-1.14× on the 256 × 2304 × 196 GEMM, whose A
//! packing took 14 % of its time value by value) and the padded lines
//! that build B's rows from an image.
//!
//! A B block with contiguous rows packed on one thread goes row by row
//! into all its panels ([`pack_rows_into_panels`]): one-thread GEMM
//! 256 × 2304 × 196 1.05×, 512² 1.03×, 1024² 1.01× (and 1.05× on two
//! threads for the first, then on the row bands, where one thread packs
//! each KC block of B), alternated call by call; packed in parallel,
//! panel by panel as before (row by row in one group of panels per thread
//! measured 0.86-0.97× there).

use super::gather::PADDING_LINE;
use super::transpose::PanelFn;
use crate::{Element, Window2d};
use ndarray::{ArrayView2, Axis};
use rayon::prelude::*;
use std::ops::Range;

/// The widest panel (MR or NR) the gather path handles.
const MAX_PANEL: usize = 32;

/// Panels at most this large (in elements) are packed on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;

/// A buffer of at least `len` elements starting on a 64-byte boundary.
pub(crate) fn aligned<T: Element>(buf: &mut Vec<T>, len: usize) -> &mut [T] {
    let slack = 64 / std::mem::size_of::<T>();
    if buf.len() < len + slack {
        buf.resize(len + slack, T::ZERO);
    }
    let offset = buf.as_ptr().align_offset(64).min(slack);
    &mut buf[offset..offset + len]
}

/// Writes `src` to every `stride`-th element of `dst` (a strided scatter).
fn scatter<'a, T: Element>(dst: &mut [T], stride: usize, src: impl Iterator<Item = &'a T>) {
    for (d, &v) in dst.iter_mut().step_by(stride).zip(src) {
        *d = v;
    }
}

/// Packs one panel of `block` (at most `width` lines along `axis` 0 of the
/// panel's own orientation): `dst[p·width + i] = line_i[p]`, zeros past the
/// last line. `lines` are the rows of an A block or the columns of a B block.
fn pack_panel<T: Element>(lines: ArrayView2<'_, T>, width: usize, dst: &mut [T]) {
    let (count, depth) = lines.dim();
    if lines.strides()[0] == 1 && count > 1 {
        // The lines are interleaved in memory: copy one step p at a time
        // (`copy_run`, not a `memmove` call a step: packing took 17 % of
        // a two-thread AVX-512 512³ GEMM's samples, now 10 %; alternated
        // call by call on 512³-2048³ and 1024 × 256 × 3136, AVX-512
        // 0.94-1.07x, AVX2 0.91-1.53x, most 1.00-1.03x).
        for (p, step) in lines.axis_iter(Axis(1)).enumerate() {
            let out = &mut dst[p * width..(p + 1) * width];
            match step.as_slice() {
                Some(src) => copy_run(&mut out[..count], src),
                None => out.iter_mut().zip(step.iter()).for_each(|(d, &v)| *d = v),
            }
            out[count..].fill(T::ZERO);
        }
    } else if count <= MAX_PANEL && lines.strides()[1] == 1 {
        // Contiguous lines: gather step p from each line, write contiguously.
        let mut src: [&[T]; MAX_PANEL] = [&[]; MAX_PANEL];
        for (slot, line) in src.iter_mut().zip(lines.axis_iter(Axis(0))) {
            *slot = line.to_slice().expect("unit stride");
        }
        let src = &src[..count];
        for (p, out) in dst.chunks_exact_mut(width).enumerate().take(depth) {
            for (o, line) in out.iter_mut().zip(src) {
                // SAFETY: every line is a row of `lines`, `depth` long, and
                // p < depth.
                *o = unsafe { *line.get_unchecked(p) };
            }
            out[count..].fill(T::ZERO);
        }
    } else {
        for (i, line) in lines.axis_iter(Axis(0)).enumerate() {
            scatter(&mut dst[i..], width, line.iter());
        }
        for i in count..width {
            for p in 0..depth {
                dst[p * width + i] = T::ZERO;
            }
        }
    }
}

/// Packs the rows of `a` (m × kc) into MR-row panels in `out`
/// (⌈m/MR⌉·MR·kc elements), by `transpose` when A's rows are contiguous
/// and one is given (see [`super::kernel::MicroKernel::pack_a`]).
pub(crate) fn pack_a<T: Element>(
    a: ArrayView2<'_, T>,
    (mr, transpose): (usize, Option<PanelFn<T>>),
    out: &mut [T],
    parallel: bool,
) {
    let kc = a.ncols();
    let transpose = transpose.filter(|_| mr <= MAX_PANEL && (a.strides()[1] == 1 || kc == 1));
    let panel = |(r, dst): (usize, &mut [T])| {
        let rows = a.slice(ndarray::s![r * mr..((r + 1) * mr).min(a.nrows()), ..]);
        match transpose {
            Some(transpose) => {
                let mut lines: [&[T]; MAX_PANEL] = [&[]; MAX_PANEL];
                for (line, row) in lines.iter_mut().zip(rows.axis_iter(Axis(0))) {
                    *line = row.to_slice().expect("unit stride");
                }
                // SAFETY: the kernel's transposer needs an instruction set
                // its kernel's implies, which this CPU supports.
                unsafe { transpose(&lines[..rows.nrows()], kc, mr, dst) };
            }
            None => pack_panel(rows, mr, dst),
        }
    };
    if parallel && out.len() > PARALLEL_MIN {
        out.par_chunks_mut(mr * kc).enumerate().for_each(panel);
    } else {
        out.chunks_mut(mr * kc).enumerate().for_each(panel);
    }
}

/// A's KC blocks: `k` columns in blocks of `kc` (the last one shorter).
pub(crate) fn depth_blocks(k: usize, kc: usize) -> Vec<Range<usize>> {
    (0..k).step_by(kc).map(|p| p..(p + kc).min(k)).collect()
}

/// Packs A (M × K) into MR-row panels ([`pack_a`]) block by block of
/// `depth` (its KC blocks), into `buf`: block d's panels start at
/// m_pad·d.start, m_pad being M rounded up to MR.
pub(crate) fn pack_a_blocks<'b, T: Element>(
    a: ArrayView2<'_, T>,
    (mr, transpose): (usize, Option<PanelFn<T>>),
    depth: &[Range<usize>],
    buf: &'b mut Vec<T>,
    parallel: bool,
) -> &'b [T] {
    let m_pad = a.nrows().div_ceil(mr) * mr;
    let packed = aligned(buf, m_pad * a.ncols());
    for d in depth {
        pack_a(
            a.slice(ndarray::s![.., d.clone()]),
            (mr, transpose),
            &mut packed[m_pad * d.start..][..m_pad * d.len()],
            parallel,
        );
    }
    packed
}

/// Packs the columns of `b` (kc × nc) into NR-column panels in `out`
/// (⌈nc/NR⌉·NR·kc elements).
pub(crate) fn pack_b<T: Element>(b: ArrayView2<'_, T>, nr: usize, out: &mut [T], parallel: bool) {
    let kc = b.nrows();
    let parallel = parallel && out.len() > PARALLEL_MIN;
    if b.strides()[1] == 1 && !parallel {
        pack_rows_into_panels(b, nr, out);
        return;
    }
    let panel = |(s, dst): (usize, &mut [T])| {
        let cols = b.slice(ndarray::s![.., s * nr..((s + 1) * nr).min(b.ncols())]);
        pack_panel(cols.reversed_axes(), nr, dst);
    };
    if parallel {
        out.par_chunks_mut(nr * kc).enumerate().for_each(panel);
    } else {
        out.chunks_mut(nr * kc).enumerate().for_each(panel);
    }
}

/// Packs a B block with contiguous rows into its NR-column panels row by
/// row: each row read once, front to back, its runs of NR values written
/// to the panels' step p (zeros past the last column). Panel by panel,
/// the rows' cache lines straddling two panels were read twice, and each
/// panel's reads jumped a row's length apart.
fn pack_rows_into_panels<T: Element>(b: ArrayView2<'_, T>, nr: usize, out: &mut [T]) {
    let (kc, n) = b.dim();
    let panel_len = nr * kc;
    debug_assert!(out.len() >= n.div_ceil(nr) * panel_len, "room for every panel");
    for (p, row) in b.outer_iter().enumerate() {
        let row = row.to_slice().expect("unit column stride");
        write_step(row, (p, nr, panel_len), out);
    }
}

/// Writes `row`, one step of consecutive NR panels, as step `p` of the
/// panels of `panel_len` values each in `out` (zeros past its end).
#[inline(always)]
fn write_step<T: Element>(row: &[T], (p, nr, panel_len): (usize, usize, usize), out: &mut [T]) {
    for (run, panel) in row.chunks(nr).zip(out.chunks_exact_mut(panel_len)) {
        let step = &mut panel[p * nr..][..nr];
        if run.len() == nr {
            copy_run(step, run);
        } else {
            step[..run.len()].copy_from_slice(run);
            step[run.len()..].fill(T::ZERO);
        }
    }
}

/// `dst.copy_from_slice(src)` for one step of a panel: in fixed blocks of
/// 16, which compile to a few vector moves rather than a `memmove` call
/// per step.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let mut blocks = dst.chunks_exact_mut(16);
    let mut sources = src.chunks_exact(16);
    for (d, s) in (&mut blocks).zip(&mut sources) {
        let d: &mut [T; 16] = d.try_into().expect("16");
        *d = *<&[T; 16]>::try_from(s).expect("16");
    }
    for (d, &s) in blocks.into_remainder().iter_mut().zip(sources.remainder()) {
        *d = s;
    }
}

/// Where a GEMM's B operand (K × N) comes from: anything that can pack a
/// block of it into the NR-column panels of [`pack_b`]. A matrix in memory
/// is one; the im2col matrix of an image, gathered straight from the image
/// (implicit GEMM), is another.
pub(crate) trait PackB<T>: Sync {
    /// (K, N).
    fn dim(&self) -> (usize, usize);
    /// Packs the block `rows` × `cols` into `out` (⌈cols/NR⌉·NR·rows
    /// elements).
    fn pack(&self, rows: Range<usize>, cols: Range<usize>, nr: usize, out: &mut [T], parallel: bool);
}

impl<T: Element> PackB<T> for ArrayView2<'_, T> {
    fn dim(&self) -> (usize, usize) {
        ArrayView2::dim(self)
    }
    fn pack(&self, rows: Range<usize>, cols: Range<usize>, nr: usize, out: &mut [T], parallel: bool) {
        pack_b(self.slice(ndarray::s![rows, cols]), nr, out, parallel);
    }
}

/// The im2col matrix of one image (C·KH·KW × OH·OW, see [`crate::im2col()`]),
/// never built: packing reads the pixels directly.
/// Several images' matrices side by side: column `n·OH·OW + p` is output
/// pixel p of image n, image n starting at `images[n·image_stride]`.
pub(crate) struct Im2colB<'a, T> {
    pub images: &'a [T],
    pub image_stride: usize,
    pub count: usize,
    pub channels: usize,
    pub geom: &'a Window2d,
}

impl<'a, T: Element> Im2colB<'a, T> {
    /// The source of a stacked product's batch: `count` images of
    /// `channels` planes, `image_stride` apart in `images`.
    pub(crate) fn new(
        (images, count, image_stride, channels): (&'a [T], usize, usize, usize),
        geom: &'a Window2d,
    ) -> Self {
        Im2colB {
            images,
            image_stride,
            count,
            channels,
            geom,
        }
    }

    /// Row `r` of the side-by-side matrices, columns `first..first + out.len()`.
    fn row(&self, r: usize, first: usize, out: &mut [T]) {
        let (pixels, image_len) = (self.geom.output_len(), self.channels * self.geom.input_len());
        let mut t = 0;
        while t < out.len() {
            let (n, p) = ((first + t) / pixels, (first + t) % pixels);
            let len = (pixels - p).min(out.len() - t);
            let image = &self.images[n * self.image_stride..][..image_len];
            im2col_row(image, self.geom, r, p, &mut out[t..t + len]);
            t += len;
        }
    }
}

/// Columns of the im2col matrix gathered per call when packing: the
/// per-row set-up (tap, source rows, valid range) is paid once per this many
/// columns, not once per NR-wide panel.
const GATHER_COLUMNS: usize = 512;

impl<T: Element> PackB<T> for Im2colB<'_, T> {
    fn dim(&self) -> (usize, usize) {
        (
            self.channels * self.geom.kernel_len(),
            self.count * self.geom.output_len(),
        )
    }

    fn pack(&self, rows: Range<usize>, cols: Range<usize>, nr: usize, out: &mut [T], parallel: bool) {
        let (k0, kc, n0, nc) = (rows.start, rows.len(), cols.start, cols.len());
        // Each task packs a group of whole panels (at most GATHER_COLUMNS
        // columns); in parallel, at least one group per thread (one
        // 512-column group left the other thread idle: 1.1× on the 7×7
        // ResNet convolution).
        let panels = nc.div_ceil(nr);
        let threads = if parallel { rayon::current_num_threads() } else { 1 };
        let tasks = panels
            .div_ceil((GATHER_COLUMNS / nr).max(1))
            .max(threads)
            .min(panels);
        let group = panels.div_ceil(tasks);
        // Short or strided runs of an image row (small images, stride > 1):
        // through the padded lines, one call per im2col row (against an
        // indexed gather per panel step: 1.03–1.11× on the 14×14 ResNet
        // layer, 1.04–1.06× on the 7×7, 1.05–1.17× with stride 2,
        // alternated call by call); long contiguous runs: row by row,
        // copying whole runs (1.01–1.04× over the lines on 56-wide rows).
        let [sw, ow] = [self.geom.stride()[1], self.geom.output()[1]];
        let by_lines = sw > 1 || ow < SHORT_RUN;
        let group_of = |s: usize| {
            let first = n0 + s * group * nr;
            first..first + (group * nr).min(n0 + nc - first)
        };
        let pack_group = |(starts, line): &mut (Vec<usize>, Vec<T>), (s, dst): (usize, &mut [T])| {
            let columns = group_of(s);
            if by_lines {
                self.pack_by_lines(k0..k0 + kc, columns, nr, (starts, line), dst);
            } else {
                self.pack_by_row(k0..k0 + kc, columns, nr, dst);
            }
        };
        if parallel && out.len() > PARALLEL_MIN {
            out.par_chunks_mut(group * nr * kc)
                .enumerate()
                .for_each_init(Default::default, pack_group);
        } else {
            let mut scratch = Default::default();
            out.chunks_mut(group * nr * kc)
                .enumerate()
                .for_each(|part| pack_group(&mut scratch, part));
        }
    }
}

/// Output rows narrower than this pack through the padded lines (see
/// [`Im2colB::pack`]).
const SHORT_RUN: usize = 24;

impl<T: Element> Im2colB<'_, T> {
    /// Packs rows `rows` × columns `cols` into whole NR panels in `dst`, row
    /// by row: each im2col row is gathered once over the columns (runs of
    /// image rows, copied whole) and split into the panels.
    fn pack_by_row(&self, rows: Range<usize>, cols: Range<usize>, nr: usize, dst: &mut [T]) {
        let kc = rows.len();
        let mut line = [T::ZERO; GATHER_COLUMNS];
        let line = &mut line[..cols.len()];
        for (p, r) in rows.enumerate() {
            self.row(r, cols.start, line);
            write_step(line, (p, nr, kc * nr), dst);
        }
    }

    /// Packs rows `rows` × columns `cols` into whole NR panels in `dst`, row
    /// by row: each im2col row over the output rows the columns touch is
    /// built by [`Self::lines_row`] into `line`, then split into the
    /// panels.
    fn pack_by_lines(
        &self,
        rows: Range<usize>,
        cols: Range<usize>,
        nr: usize,
        (starts, line): (&mut Vec<usize>, &mut Vec<T>),
        dst: &mut [T],
    ) {
        let kc = rows.len();
        let (span, skip) = self.output_rows(&cols);
        line.resize(span.len() * self.geom.output()[1], T::ZERO);
        let mut lines_of = None;
        for (p, r) in rows.enumerate() {
            self.lines_row(r, span.clone(), (starts, &mut lines_of), line);
            write_step(&line[skip..][..cols.len()], (p, nr, kc * nr), dst);
        }
    }

    /// The output rows (of every image, one after another) that hold
    /// columns `cols`, and where `cols.start` lies in the first of them.
    fn output_rows(&self, cols: &Range<usize>) -> (Range<usize>, usize) {
        let ow = self.geom.output()[1];
        let first = cols.start / ow;
        (first..cols.end.div_ceil(ow), cols.start - first * ow)
    }

    /// Row `r` of the side-by-side matrices over the whole output rows
    /// `span` (`out`: their OW values each), by one call of the padded
    /// lines ([`super::gather::LinesFn`]). `starts` holds the source lines
    /// of the channel and kernel row `lines_of` (the same for every kernel
    /// column), recomputed when `r`'s differ.
    fn lines_row(
        &self,
        r: usize,
        span: Range<usize>,
        (starts, lines_of): (&mut Vec<usize>, &mut Option<(usize, usize)>),
        out: &mut [T],
    ) {
        let g = self.geom;
        let ([_, w], [kh, kw], oh) = (g.input(), g.kernel(), g.output()[0]);
        let (sw, dw, pw) = (g.stride()[1], g.dilation()[1], g.pad()[1]);
        let (c, i, j) = (r / (kh * kw), (r / kw) % kh, r % kw);
        if *lines_of != Some((c, i)) {
            *lines_of = Some((c, i));
            starts.clear();
            starts.extend(span.map(|tall| match g.source(0, tall % oh, i) {
                Some(y) => (tall / oh) * self.image_stride + (c * g.input()[0] + y) * w,
                None => PADDING_LINE,
            }));
        }
        let lines = super::kernel::selected_lines::<T>();
        let offset = (j * dw) as isize - pw as isize;
        // SAFETY: the lines were chosen for an instruction set this CPU
        // supports.
        unsafe { lines(self.images, starts, w, &[offset], sw, out) };
    }
}

/// Row `r` of an image's im2col matrix (tap (c, i, j) = (r / (KH·KW),
/// r / KW % KH, r % KW)), columns `first..first + out.len()`: runs of one
/// image row each, zeros where the tap falls on padding.
fn im2col_row<T: Element>(image: &[T], g: &Window2d, r: usize, first: usize, out: &mut [T]) {
    let [kh, kw] = g.kernel();
    let ([_, w], ow) = (g.input(), g.output()[1]);
    let plane = g.input_len();
    let (sw, dw, pw) = (g.stride()[1], g.dilation()[1], g.pad()[1]);
    let (c, i, j) = (r / (kh * kw), (r / kw) % kh, r % kw);
    let image = &image[c * plane..(c + 1) * plane];
    // Output columns whose tap j reads a real pixel.
    let valid = g.valid_outputs(1, j);
    let width = out.len();
    // One output row (oh) at a time.
    let mut t = 0;
    while t < width {
        let (oh, ow0) = ((first + t) / ow, (first + t) % ow);
        let len = (ow - ow0).min(width - t);
        let out = &mut out[t..t + len];
        t += len;
        let Some(y) = g.source(0, oh, i) else {
            out.fill(T::ZERO);
            continue;
        };
        let line = &image[y * w..(y + 1) * w];
        let lo = valid.start.clamp(ow0, ow0 + len);
        let hi = valid.end.clamp(lo, ow0 + len);
        out[..lo - ow0].fill(T::ZERO);
        out[hi - ow0..].fill(T::ZERO);
        if lo < hi {
            let x0 = lo * sw + j * dw - pw;
            let dst = &mut out[lo - ow0..hi - ow0];
            crate::im2col::copy_strided(dst, &line[x0..], sw);
        }
    }
}

/// The widest panel of B (NR) the transposed packing handles (every
/// kernel's NR is at most 80).
const MAX_NR: usize = 128;

/// Pixels per lines-then-transpose step of [`Im2colTransposedB`]'s packing.
const TRANSPOSED_PIXELS: usize = 256;

/// The transposed im2col matrices of a batch of images, stacked: row
/// `n·OH·OW + p` is output pixel p of image n, column `(c, i, j)` a tap —
/// the B operand of a convolution's weight gradient, dW = dout · colsᵀ,
/// with the whole batch along the product's inner dimension. Never built:
/// packing builds each of a panel's taps over [`TRANSPOSED_PIXELS`] pixels
/// at a time (padded lines) and transposes them into the panel's steps.
pub(crate) struct Im2colTransposedB<'a, T>(pub Im2colB<'a, T>);

impl<T: Element> PackB<T> for Im2colTransposedB<'_, T> {
    fn dim(&self) -> (usize, usize) {
        let (taps, pixels) = self.0.dim();
        (pixels, taps)
    }

    fn pack(&self, rows: Range<usize>, cols: Range<usize>, nr: usize, out: &mut [T], parallel: bool) {
        let kc = rows.len();
        let ow = self.0.geom.output()[1];
        let transpose = super::kernel::selected_transposer::<T>();
        // Per panel, TRANSPOSED_PIXELS pixels at a time: each tap's run of
        // pixels built by the padded lines (over whole output rows), then
        // the panel's steps (pixel p: the taps across) written by register
        // transposes (against per-run copies and a value-by-value
        // transpose: 7×7 ResNet backward 1.08-1.12×, a 64-channel 7×7
        // layer 1.29×, alternated call by call).
        let panel = |(starts, lines): &mut (Vec<usize>, Vec<T>), (s, dst): (usize, &mut [T])| {
            let first = cols.start + s * nr;
            let width = nr.min(cols.end - first);
            for p0 in (0..kc).step_by(TRANSPOSED_PIXELS) {
                let len = TRANSPOSED_PIXELS.min(kc - p0);
                let pixels = rows.start + p0..rows.start + p0 + len;
                let (span, skip) = self.0.output_rows(&pixels);
                let line_len = span.len() * ow;
                lines.resize(width * line_len, T::ZERO);
                let mut lines_of = None;
                for (jj, line) in lines.chunks_exact_mut(line_len).enumerate() {
                    self.0
                        .lines_row(first + jj, span.clone(), (starts, &mut lines_of), line);
                }
                let mut taps: [&[T]; MAX_NR] = [&[]; MAX_NR];
                for (tap, line) in taps.iter_mut().zip(lines.chunks_exact(line_len)) {
                    *tap = &line[skip..][..len];
                }
                // SAFETY: the transposer belongs to an instruction set this
                // CPU supports.
                unsafe { transpose(&taps[..width], len, nr, &mut dst[p0 * nr..][..len * nr]) };
            }
        };
        if parallel && out.len() > PARALLEL_MIN {
            out.par_chunks_mut(nr * kc)
                .enumerate()
                .for_each_init(Default::default, panel);
        } else {
            let mut scratch = Default::default();
            out.chunks_mut(nr * kc)
                .enumerate()
                .for_each(|part| panel(&mut scratch, part));
        }
    }
}
