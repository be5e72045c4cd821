//! Convolution products with few im2col rows through explicit im2col
//! bands, the tiles written straight into the output.
//!
//! With K = C·KH·KW small (one KC block: the 3-channel first layers), a
//! band of output rows' im2col matrix costs little to build next to the
//! product, and then each row of B runs over the band's output pixels in
//! output order: the micro-kernel reads the rows in place
//! ([`super::kernel::RowsKernelFn`]) and stores its tiles straight into
//! the output. [`super::direct`]'s wide grid would compute columns that
//! fall outside the output (a seventeenth per row of the CS231n layer) and
//! copy every tile to its place afterwards; here nothing is dropped or
//! copied. The kernel adds the bias to each tile as it stores it, so it
//! costs no pass either (it had been one more step of the sum, a row of
//! ones in B: CS231n's layer 1.02–1.04× without it).
//!
//! A kernel row that reads, a few output rows later, the image rows an
//! earlier kernel row reads (the third row of a 3×3/2 window, every row
//! but the first with stride 1) is not built again: its taps' rows point
//! into the earlier row's, built over those few more output rows
//! ([`SharedRows`]). Against building every tap's row,
//! alternated: CS231n's layer 1.12–1.14× on two threads, 1.11× on one;
//! MNIST's 5×5/1 1.24×; CIFAR's 3×3/1 with 64 filters 0.99–1.00×.
//!
//! Bands stay within one image (the tiles' columns are then contiguous in
//! the output) and live in a per-thread buffer of at most K rows of the band's
//! pixels, at most 32 KiB, so that B stays in L1 while every A panel
//! passes over it.
//!
//! Measured against the wide grid, alternated call by call: CS231n's
//! (100, 3, 31, 31) 3×3/2 layer with 25 filters 1.4×, with 8 filters
//! 1.5×, CIFAR's (32, 3, 32, 32) 3×3/1 with 64 filters 1.46×, MNIST's
//! (64, 1, 28, 28) 5×5/1 with 32 filters 1.39× — but with 8 filters 0.89×
//! and a 5×5/2 layer of 16 filters over 3 channels 0.96×: the band costs
//! up to K writes per output pixel, the wide grid's copy M writes and its
//! dropped columns, so the route takes products with K ≤ 2M. The
//! 7×7/2 ResNet layer (K = 147) measured 0.8×: its band outgrows L1.
//!
//! Results equal the other routes' bit for bit: one KC block summed in
//! order from beta = 0, then the bias added to `alpha · sum`, as the other
//! routes add it.

use super::kernel::MicroKernel;
use super::pack::{aligned, pack_a};
use crate::im2col::KernelRowLines;
use crate::slot::Slot;
use crate::{Element, Window2d};
use ndarray::{ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis};
use rayon::prelude::*;
use std::ops::Range;

/// `Cₙ ← alpha·A·im2col(xₙ) (+ bias[r] on row r)` for the `count` images
/// of `batch` (`images`, count, image stride), C being (count, M, OH·OW);
/// shapes checked by the caller, and [`applies`]. C is only written, so it
/// may be fresh memory ([`Slot`]).
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
    let [oh, ow] = geom.output();
    let (m, k) = a.dim();
    let (mr, nr) = (kern.mr, kern.nr);
    let band_rows = band_rows(k * ow * std::mem::size_of::<T>(), oh, count, parallel);
    let shared = SharedRows::new(geom, band_rows);
    let image_len = channels * geom.input_len();
    super::kernel::with_pack_buffers(parallel, |a_buf, b_buf| {
        let m_pad = m.div_ceil(mr) * mr;
        let a_pack = aligned(a_buf, m_pad * k);
        pack_a(a, (mr, kern.pack_a), a_pack, parallel);
        let a_pack = &*a_pack;
        let task =
            |(n, rows, mut out): (usize, Range<usize>, ArrayViewMut2<'_, S>),
             band: &mut Vec<T>,
             (lines, offsets, offsets_rows): &mut (KernelRowLines<'_, T>, Vec<isize>, usize)| {
                let width = rows.len() * ow;
                let taps = shared.len(channels, rows.len());
                // NR values past the last row: a partial last panel reads a
                // whole vector or panel from where its row starts.
                let len = taps + nr;
                if band.len() < len {
                    band.resize(len, T::ZERO);
                }
                let band = &mut band[..len];
                if *offsets_rows != rows.len() {
                    shared.offsets(channels, rows.len(), offsets);
                    *offsets_rows = rows.len();
                }
                let image = &images[n * image_stride..][..image_len];
                shared.build(image, channels, rows, lines, &mut band[..taps]);
                let (rsc, csc) = (out.strides()[0], out.strides()[1]);
                // A slot has T's layout (`Slot`'s contract).
                let base = out.as_mut_ptr().cast::<T>();
                for i in (0..m).step_by(mr) {
                    let a_panel = &a_pack[i * k..][..mr * k];
                    for j in (0..width).step_by(nr) {
                        let (rows, cols) = (mr.min(m - i), nr.min(width - j));
                        // SAFETY: the A panel holds k·MR values; row p of B
                        // has NR values from band + j + offsets[p], inside the
                        // band (every row lies in it, and NR values follow the
                        // last one); (i, j) .. (i + rows, j + cols) lies inside
                        // `out`, this task's own part of C, which aliases
                        // neither A's panels nor the band; fresh slots are
                        // only written (beta = 0); the bias, if any, has
                        // m − i ≥ rows values from row i; the kernel's ISA is
                        // supported.
                        unsafe {
                            (kern.rows_for_cols(cols))(
                                k,
                                a_panel.as_ptr(),
                                band.as_ptr().add(j),
                                offsets.as_ptr(),
                                bias.map_or(std::ptr::null(), |b| b[i..].as_ptr()),
                                base.offset(i as isize * rsc + j as isize * csc),
                                rsc,
                                csc,
                                rows,
                                cols,
                                alpha,
                                T::ZERO,
                            );
                        }
                    }
                }
            };
        let parts = bands(c, oh, ow, band_rows);
        let aux = || (KernelRowLines::new(geom), Vec::new(), usize::MAX);
        if parallel && parts.len() > 1 {
            parts
                .into_par_iter()
                .for_each_init(|| (Vec::new(), aux()), |(band, aux), part| task(part, band, aux));
        } else {
            let mut aux = aux();
            parts.into_iter().for_each(|part| task(part, b_buf, &mut aux));
        }
    });
}

/// A band's im2col rows, kernel rows sharing their lines: at output row
/// y, kernel row i + P (P = sh / gcd(sh, dh)) reads the image row that
/// kernel row i reads at output row y + S (S = dh / gcd(sh, dh)), so only
/// kernel rows i < P are built, over S more output rows for each further
/// kernel row in their chain, and the others point into them. A 3×3/2
/// window builds two kernel rows' taps over 17 and 16 output rows in
/// place of three over 16: 0.71× the writes; a 3×3/1 one, one row over
/// the band's rows + 2 in place of three over its rows.
///
/// Layout: per channel c, per chain b < P, KW blocks (one per tap
/// column) of the chain's rows · OW values.
struct SharedRows<'g> {
    geom: &'g Window2d,
    /// P: kernel rows b and b + P share lines (KH where nothing is shared).
    period: usize,
    /// S: output rows between them.
    shift: usize,
}

impl<'g> SharedRows<'g> {
    /// Shares where kernel rows repeat (P < KH) and the S extra rows per
    /// chain link are fewer than a band's `band_rows`.
    fn new(geom: &'g Window2d, band_rows: usize) -> Self {
        let (kh, sh, dh) = (geom.kernel()[0], geom.stride()[0], geom.dilation()[0]);
        let g = gcd(sh, dh);
        let (period, shift) = (sh / g, dh / g);
        if period < kh && shift < band_rows {
            Self { geom, period, shift }
        } else {
            Self {
                geom,
                period: kh,
                shift: 0,
            }
        }
    }

    /// Output rows that chain `b` builds for a band of `rows`.
    fn chain_rows(&self, b: usize, rows: usize) -> usize {
        let kh = self.geom.kernel()[0];
        rows + (kh - 1 - b) / self.period * self.shift
    }

    /// Values of one channel's chains (`chains` of them, from the first).
    fn chains_len(&self, chains: usize, rows: usize) -> usize {
        let [_, kw] = self.geom.kernel();
        let ow = self.geom.output()[1];
        (0..chains).map(|b| kw * self.chain_rows(b, rows) * ow).sum()
    }

    /// Values of a band of `rows` output rows.
    fn len(&self, channels: usize, rows: usize) -> usize {
        let kh = self.geom.kernel()[0];
        channels * self.chains_len(self.period.min(kh), rows)
    }

    /// Writes the band of output rows `rows` of `image` into `band` (of
    /// [`Self::len`] values), chain by chain so that the channels share
    /// the lines' starts.
    fn build<T: Element>(
        &self,
        image: &[T],
        channels: usize,
        rows: Range<usize>,
        lines: &mut KernelRowLines<'_, T>,
        band: &mut [T],
    ) {
        let [kh, kw] = self.geom.kernel();
        let (ow, plane) = (self.geom.output()[1], self.geom.input_len());
        let chains = self.period.min(kh);
        let per_channel = self.chains_len(chains, rows.len());
        for b in 0..chains {
            let chain_rows = self.chain_rows(b, rows.len());
            let at = self.chains_len(b, rows.len());
            for c in 0..channels {
                let out = &mut band[c * per_channel + at..][..kw * chain_rows * ow];
                lines.write(
                    &image[c * plane..][..plane],
                    b,
                    rows.start..rows.start + chain_rows,
                    out,
                );
            }
        }
    }

    /// Where each tap's row starts in a band of `rows` output rows, into
    /// `offsets`.
    fn offsets(&self, channels: usize, rows: usize, offsets: &mut Vec<isize>) {
        let [kh, kw] = self.geom.kernel();
        let ow = self.geom.output()[1];
        let per_channel = self.chains_len(self.period.min(kh), rows);
        offsets.clear();
        for c in 0..channels {
            for i in 0..kh {
                let (b, q) = (i % self.period, i / self.period);
                let chain = c * per_channel + self.chains_len(b, rows);
                let block = self.chain_rows(b, rows) * ow;
                offsets.extend((0..kw).map(|j| (chain + j * block + q * self.shift * ow) as isize));
            }
        }
    }
}

/// Greatest common divisor.
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A band's buffer stays within this many bytes, so that the rows of B
/// stay in L1 while the kernel reads them once per A panel.
const BAND_BYTES: usize = 32 * 1024;

/// Whether a product with `m` rows of A and `k` taps over images of `ow`
/// output columns takes this route (see the module docs): the taps fit
/// one KC block and at most 2M, and their part for one output row fits
/// [`BAND_BYTES`].
pub(super) fn applies<T: Element>(kern: &MicroKernel<T>, (m, k): (usize, usize), ow: usize) -> bool {
    k <= kern.kc.min(2 * m) && k * ow * std::mem::size_of::<T>() <= BAND_BYTES
}

/// Output rows per band for `count` images of `oh` rows of `row_bytes`
/// each in the band: as many as fit [`BAND_BYTES`], the image's bands
/// evened out; in parallel, at least four bands per thread over the batch.
fn band_rows(row_bytes: usize, oh: usize, count: usize, parallel: bool) -> usize {
    let most = (BAND_BYTES / row_bytes).clamp(1, oh);
    let mut bands = oh.div_ceil(most);
    if parallel {
        bands = bands
            .max((4 * rayon::current_num_threads()).div_ceil(count))
            .min(oh);
    }
    oh.div_ceil(bands)
}

/// Splits C (count, M, OH·OW) into bands of `band_rows` output rows of
/// one image each: (image, its output rows, their columns of C).
fn bands<S>(
    c: ArrayViewMut3<'_, S>,
    oh: usize,
    ow: usize,
    band_rows: usize,
) -> Vec<(usize, Range<usize>, ArrayViewMut2<'_, S>)> {
    let mut parts = Vec::new();
    let mut rest = c;
    let mut n = 0;
    while rest.len_of(Axis(0)) > 0 {
        let (first, tail) = rest.split_at(Axis(0), 1);
        rest = tail;
        let mut image = first.index_axis_move(Axis(0), 0);
        for start in (0..oh).step_by(band_rows) {
            let rows = start..(start + band_rows).min(oh);
            let (band, rest) = image.split_at(Axis(1), rows.len() * ow);
            parts.push((n, rows, band));
            image = rest;
        }
        n += 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every tap's row of a shared band, read at its offset, holds the
    /// image pixels that tap reads (zero on the padding), for windows that
    /// share kernel rows (3×3 stride 2, 5×5 stride 1, 5×2 stride 2 dilated
    /// 2, 4×3 stride 2 dilated 3) and one that does not (2×2 stride 3),
    /// bands of every length and start.
    #[test]
    fn shared_band_rows_hold_each_taps_pixels() {
        let shapes = [
            ([11, 9], [3, 3], [2, 2], [1, 1], [1, 1]),
            ([10, 7], [5, 5], [1, 1], [2, 0], [1, 1]),
            ([17, 6], [5, 2], [2, 1], [3, 1], [2, 1]),
            ([19, 5], [4, 3], [2, 3], [2, 1], [3, 1]),
            ([6, 6], [2, 2], [3, 2], [0, 0], [1, 1]),
        ];
        let channels = 2;
        for (input, kernel, stride, pad, dilation) in shapes {
            let geom = Window2d::new(input, kernel, stride, pad, dilation).unwrap();
            let ([h, w], [kh, kw], [oh, ow]) = (input, kernel, geom.output());
            let image: Vec<f64> = (0..channels * h * w).map(|v| v as f64 + 1.0).collect();
            // One set of lines and offsets for all the bands, as a thread's
            // bands share them.
            let (mut lines, mut offsets) = (KernelRowLines::new(&geom), Vec::new());
            for band_rows in 1..=oh {
                let shared = SharedRows::new(&geom, band_rows);
                for start in (0..oh).step_by(band_rows) {
                    let rows = start..(start + band_rows).min(oh);
                    let mut band = vec![f64::NAN; shared.len(channels, rows.len())];
                    shared.build(&image, channels, rows.clone(), &mut lines, &mut band);
                    shared.offsets(channels, rows.len(), &mut offsets);
                    assert_eq!(offsets.len(), channels * kh * kw);
                    let taps = (0..channels)
                        .flat_map(|c| (0..kh).flat_map(move |i| (0..kw).map(move |j| (c, i, j))));
                    for ((c, i, j), &offset) in taps.zip(&offsets) {
                        let row = &band[offset as usize..][..rows.len() * ow];
                        for (q, &value) in row.iter().enumerate() {
                            let (y, x) = (rows.start + q / ow, q % ow);
                            let expected = match (geom.source(0, y, i), geom.source(1, x, j)) {
                                (Some(r), Some(s)) => image[(c * h + r) * w + s],
                                _ => 0.0,
                            };
                            assert_eq!(
                                value, expected,
                                "{geom:?} rows {rows:?} tap ({c}, {i}, {j}) pixel {q}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Kernel rows are shared where they repeat: 3×3/2 builds two of three
    /// (over one more output row for the first), 5×5/1 one of five; a
    /// 2×2/3 window shares nothing.
    #[test]
    fn shared_band_builds_fewer_rows() {
        let cs231n = Window2d::new([31, 31], [3, 3], [2, 2], [1, 1], [1, 1]).unwrap();
        assert_eq!(SharedRows::new(&cs231n, 16).len(1, 16), 3 * (17 + 16) * 16);
        let mnist = Window2d::new([28, 28], [5, 5], [1, 1], [0, 0], [1, 1]).unwrap();
        assert_eq!(SharedRows::new(&mnist, 8).len(1, 8), 5 * (8 + 4) * 24);
        let apart = Window2d::new([6, 6], [2, 2], [3, 3], [0, 0], [1, 1]).unwrap();
        assert_eq!(SharedRows::new(&apart, 2).len(1, 2), 2 * 2 * 2 * 2);
    }
}
