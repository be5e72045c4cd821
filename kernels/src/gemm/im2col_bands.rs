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
//! copied. The bias rides along as one more step of the sum — a row of
//! ones in B, the bias as A's last column — so it costs no pass either.
//!
//! Bands stay within one image (the tiles' columns are then contiguous in
//! the output) and live in a per-thread buffer of K + 1 rows of the band's
//! pixels, at most 32 KiB, so that B stays in L1 while every A panel
//! passes over it.
//!
//! Measured against the wide grid, alternated call by call: CS231n's
//! (100, 3, 31, 31) 3×3/2 layer with 25 filters 1.4×, with 8 filters
//! 1.5×, CIFAR's (32, 3, 32, 32) 3×3/1 with 64 filters 1.46×, MNIST's
//! (64, 1, 28, 28) 5×5/1 with 32 filters 1.39× — but with 8 filters 0.89×
//! and a 5×5/2 layer of 16 filters over 3 channels 0.96×: the band costs
//! K + 1 writes per output pixel, the wide grid's copy M writes and its
//! dropped columns, so the route takes products with K + 1 ≤ 2M. The
//! 7×7/2 ResNet layer (K = 147) measured 0.8×: its band outgrows L1.
//!
//! Results equal the other routes' bit for bit: one KC block summed in
//! order from beta = 0, and the bias step adds `bias · 1` to the sum with
//! one rounding — the sum plus the bias, as the other routes add it after
//! `alpha · sum` with alpha = 1 (the only alpha this route takes with a
//! bias).

use super::kernel::MicroKernel;
use super::pack::{aligned, pack_a};
use crate::im2col::im2col_band;
use crate::slot::Slot;
use crate::{Element, Window2d};
use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis};
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
    // B's rows: the taps, then a row of ones for the bias.
    let depth = k + usize::from(bias.is_some());
    let a = match bias {
        Some(bias) => {
            let mut with_bias = Array2::zeros((m, depth));
            with_bias.slice_mut(s![.., ..k]).assign(&a);
            with_bias.column_mut(k).assign(&ArrayView1::from(bias));
            with_bias.into()
        }
        None => ndarray::CowArray::from(a),
    };
    let band_rows = band_rows(depth * ow * std::mem::size_of::<T>(), oh, count, parallel);
    let image_len = channels * geom.input_len();
    super::kernel::with_pack_buffers(parallel, |a_buf, b_buf| {
        let m_pad = m.div_ceil(mr) * mr;
        let a_pack = aligned(a_buf, m_pad * depth);
        pack_a(a.view(), (mr, kern.pack_a), a_pack, parallel);
        let a_pack = &*a_pack;
        let task = |(n, rows, mut out): (usize, Range<usize>, ArrayViewMut2<'_, S>), band: &mut Vec<T>| {
            let width = rows.len() * ow;
            // NR values past the last row: a partial last panel reads a
            // whole vector or panel from where its row starts.
            let len = depth * width + nr;
            if band.len() < len {
                band.resize(len, T::ZERO);
            }
            let band = &mut band[..len];
            let image = &images[n * image_stride..][..image_len];
            im2col_band(image, channels, geom, rows, &mut band[..k * width]);
            if bias.is_some() {
                band[k * width..depth * width].fill(T::ONE);
            }
            let offsets: Vec<isize> = (0..depth).map(|p| (p * width) as isize).collect();
            let (rsc, csc) = (out.strides()[0], out.strides()[1]);
            // A slot has T's layout (`Slot`'s contract).
            let base = out.as_mut_ptr().cast::<T>();
            for i in (0..m).step_by(mr) {
                let a_panel = &a_pack[i * depth..][..mr * depth];
                for j in (0..width).step_by(nr) {
                    let (rows, cols) = (mr.min(m - i), nr.min(width - j));
                    // SAFETY: the A panel holds depth·MR values; row p of B
                    // has NR values from band + j + p·width, inside the band
                    // (its last row is followed by NR values); (i, j) ..
                    // (i + rows, j + cols) lies inside `out`, this task's
                    // own part of C, which aliases neither A's panels nor
                    // the band; fresh slots are only written (beta = 0);
                    // the kernel's ISA is supported.
                    unsafe {
                        (kern.rows_for_cols(cols))(
                            depth,
                            a_panel.as_ptr(),
                            band.as_ptr().add(j),
                            offsets.as_ptr(),
                            std::ptr::null(),
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
        if parallel && parts.len() > 1 {
            parts
                .into_par_iter()
                .for_each_init(Vec::new, |band, part| task(part, band));
        } else {
            parts.into_iter().for_each(|part| task(part, b_buf));
        }
    });
}

/// A band's buffer stays within this many bytes, so that the rows of B
/// stay in L1 while the kernel reads them once per A panel.
const BAND_BYTES: usize = 32 * 1024;

/// Whether a product with `m` rows of A and `k` taps over images of `ow`
/// output columns takes this route (see the module docs): the taps plus
/// one row for a bias fit one KC block and at most 2M, and their part for
/// one output row fits [`BAND_BYTES`]; a bias comes with alpha = 1.
pub(super) fn applies<T: Element>(
    kern: &MicroKernel<T>,
    (m, k): (usize, usize),
    ow: usize,
    alpha: T,
    bias: bool,
) -> bool {
    let depth = k + usize::from(bias);
    depth <= kern.kc.min(2 * m)
        && depth * ow * std::mem::size_of::<T>() <= BAND_BYTES
        && (!bias || alpha == T::ONE)
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
