//! Implicit GEMM with B read in place, for stride-1 convolutions.
//!
//! With stride 1, row (c, i, j) of an image's im2col matrix is a shifted
//! copy of the image: on the zero-padded image (Hp × Wp per channel), output
//! pixel (y, x) of tap (c, i, j) reads `padded[c·Hp·Wp + i·dh·Wp + j·dw +
//! y·Wp + x]`. Number the output pixels on a *wide* grid of Wp columns per
//! row, q = y·Wp + x, and every row of B is one contiguous run of the padded
//! image, `B[k, q] = padded[offsets[k] + q]`. The micro-kernel then reads B
//! where it lies ([`super::kernel::RowsKernelFn`]) and B is never packed;
//! the Wp − OW columns per row that fall outside the output are computed
//! and dropped (3-15 % extra work on the usual layer sizes).
//!
//! The work is split into bands of output rows. A band needs only its own
//! rows of the padded image (plus the KH − 1 below), so each task pads just
//! that band into a small per-thread buffer: the route's extra memory is a
//! few hundred KiB per thread, not a padded copy of the image. Without
//! padding the image itself is read.
//!
//! This pays where packing B costs as much as the product: few rows of A
//! (a convolution's filters), each packed B value feeding only M
//! multiply-adds. With many rows the packed route of [`super::blocked`]
//! stays.
//!
//! Results equal the packed route's bit for bit: the same micro-kernel body,
//! the same KC blocks in the same order (beta = 0 on the first, 1 after).

use super::kernel::MicroKernel;
use super::pack::{aligned, pack_a};
use crate::{Element, Window2d};
use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::ops::Range;

/// Products with at most this many rows of A take the in-place route.
pub(crate) const MAX_ROWS: usize = 128;

/// Whether `C ← alpha·A·im2col + beta·C` with `m` rows takes the in-place
/// route: stride 1, C only written (beta = 0), few rows.
pub(crate) fn applies<T: Element>(m: usize, geom: &Window2d, beta: T) -> bool {
    beta == T::ZERO && geom.stride() == [1, 1] && m <= MAX_ROWS
}

/// Where the rows of B come from.
struct Source<'a, T> {
    image: &'a [T],
    channels: usize,
    geom: &'a Window2d,
    /// Wide-grid row length: the padded width.
    wide: usize,
    /// Whether the image needs padding (else it is read as it is).
    padded: bool,
    /// Output rows per band.
    band_rows: usize,
}

impl<T: Element> Source<'_, T> {
    /// Rows of the (padded) image one band reads.
    fn band_height(&self) -> usize {
        self.band_rows + self.geom.dilation()[0] * (self.geom.kernel()[0] - 1)
    }

    /// The distance between two channels in the buffer B is read from.
    fn channel_stride(&self) -> usize {
        if self.padded {
            self.band_height() * self.wide
        } else {
            self.geom.input_len()
        }
    }

    /// Offset of each row of B, (c, i, j) in order.
    fn offsets(&self) -> Vec<isize> {
        let ([kh, kw], [dh, dw]) = (self.geom.kernel(), self.geom.dilation());
        let (plane, wide) = (self.channel_stride(), self.wide);
        (0..self.channels)
            .flat_map(|ch| {
                (0..kh)
                    .flat_map(move |i| (0..kw).map(move |j| (ch * plane + i * dh * wide + j * dw) as isize))
            })
            .collect()
    }

    /// The buffer holding the rows of B for output rows `rows`, and the wide
    /// column its offsets count from. Padded bands are built in `band` with
    /// `slack` zeros after them.
    fn band<'b>(&'b self, rows: Range<usize>, slack: usize, band: &'b mut Vec<T>) -> (&'b [T], usize) {
        if !self.padded {
            return (self.image, 0);
        }
        let ([h, w], [ph, pw]) = (self.geom.input(), self.geom.pad());
        let (height, wide) = (self.band_height(), self.wide);
        band.resize(self.channels * height * wide + slack, T::ZERO);
        for (ch, plane) in band
            .chunks_exact_mut(height * wide)
            .take(self.channels)
            .enumerate()
        {
            for (r, line) in plane.chunks_exact_mut(wide).enumerate() {
                // Padded row rows.start + r is image row y = that − ph.
                match (rows.start + r).checked_sub(ph).filter(|&y| y < h) {
                    Some(y) => {
                        line[..pw].fill(T::ZERO);
                        line[pw..pw + w].copy_from_slice(&self.image[(ch * h + y) * w..][..w]);
                        line[pw + w..].fill(T::ZERO);
                    }
                    None => line.fill(T::ZERO),
                }
            }
        }
        (band, rows.start * wide)
    }
}

/// `C ← alpha·A·im2col(image)` for a stride-1 geometry (see the module
/// docs); shapes already checked by the caller.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_product<T: Element>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    image: &[T],
    channels: usize,
    geom: &Window2d,
    mut c: ArrayViewMut2<'_, T>,
    parallel: bool,
) {
    let ([ph, pw], [oh, ow]) = (geom.pad(), geom.output());
    let wide = geom.input()[1] + 2 * pw;
    let band_rows = band_rows(kern, oh, ow, wide, parallel);
    let source = Source {
        image,
        channels,
        geom,
        wide,
        padded: ph > 0 || pw > 0,
        band_rows,
    };
    let (m, k) = a.dim();
    let (mr, nr) = (kern.mr, kern.nr);
    let m_pad = m.div_ceil(mr) * mr;
    let depth: Vec<Range<usize>> = (0..k).step_by(kern.kc).map(|p| p..(p + kern.kc).min(k)).collect();
    let offsets = source.offsets();
    // Largest offset per KC block: a run of NR from column q is inside the
    // buffer for every row of the block when limit + q + NR ≤ its length.
    let limits: Vec<usize> = depth
        .iter()
        .map(|d| offsets[d.clone()].iter().copied().max().unwrap_or(0) as usize)
        .collect();
    let direct = wide == ow;
    T::with_pack_buffers(|a_buf, _| {
        let a_pack = aligned(a_buf, m_pad * k);
        for d in &depth {
            pack_a(
                a.slice(s![.., d.clone()]),
                mr,
                &mut a_pack[m_pad * d.start..][..m_pad * d.len()],
                parallel,
            );
        }
        let a_pack = &*a_pack;
        // One band: output rows `rows`, wide columns q, into `out` (its
        // output columns).
        let task = |(rows, mut out): (Range<usize>, ArrayViewMut2<'_, T>),
                    (band, local): &mut (Vec<T>, Vec<T>)| {
            let q = rows.start * wide..(rows.end - 1) * wide + ow;
            let width = q.len();
            let (data, base) = source.band(rows, nr, band);
            let (tile_base, rsc, csc) = if direct {
                (out.as_mut_ptr(), out.strides()[0], out.strides()[1])
            } else {
                local.resize(m * width, T::ZERO);
                (local.as_mut_ptr(), width as isize, 1)
            };
            let mut panel = Vec::new();
            for (step, d) in depth.iter().enumerate() {
                let kc = d.len();
                let beta = if step == 0 { T::ZERO } else { T::ONE };
                let offsets = &offsets[d.clone()];
                for i in (0..m).step_by(mr) {
                    let a_panel = &a_pack[m_pad * d.start + i * kc..][..mr * kc];
                    for j in (q.start..q.end).step_by(nr) {
                        let (rows, cols) = (mr.min(m - i), nr.min(q.end - j));
                        let from = j - base;
                        // SAFETY: (i, j − q.start) .. + (rows, cols) lies inside
                        // the task's block (its own part of C, or `local`, m ×
                        // width), which aliases neither A's panels nor B.
                        let tile =
                            unsafe { tile_base.offset(i as isize * rsc + (j - q.start) as isize * csc) };
                        if limits[step] + from + nr <= data.len() {
                            // SAFETY: the A panel holds kc·MR values; every row
                            // p of the block has NR values at data + from +
                            // offsets[p] (checked just above); the kernel's ISA
                            // is supported.
                            unsafe {
                                (kern.run_rows)(
                                    kc,
                                    a_panel.as_ptr(),
                                    data.as_ptr().add(from),
                                    offsets.as_ptr(),
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
                                (kern.run)(
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
                        }
                    }
                }
            }
            if !direct {
                scatter(local, (q, wide, ow), out);
            }
        };
        let parts: Vec<_> = (0..oh)
            .step_by(band_rows)
            .map(|r| r..(r + band_rows).min(oh))
            .zip(c.axis_chunks_iter_mut(Axis(1), band_rows * ow))
            .collect();
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

/// Output rows per band: up to about twice the kernel's JB wide columns
/// (and few enough for four bands per thread), choosing the count whose
/// band width wastes least of its last NR-wide panel — a partial panel
/// costs a whole micro-kernel call and a slow edge store.
fn band_rows<T>(kern: &MicroKernel<T>, oh: usize, ow: usize, wide: usize, parallel: bool) -> usize {
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let mut most = 2 * kern.jb / wide;
    if threads > 1 {
        most = most.min(oh / (4 * threads));
    }
    let most = most.clamp(1, oh);
    let waste = |rows: usize| {
        let width = (rows - 1) * wide + ow;
        // Unused panel columns per used one, in parts per thousand.
        (width.div_ceil(kern.nr) * kern.nr - width) * 1000 / width
    };
    // Least waste; among equals, the widest band.
    (1..=most).rev().min_by_key(|&rows| waste(rows)).unwrap_or(1)
}

/// Copies the product of the wide columns `q` (rows of `q.len()` values in
/// `src`) to their output columns in `dst`: wide column t is output row
/// t / wide, column t % wide, dropped when that is `width` or more.
fn scatter<T: Element>(
    src: &[T],
    (q, wide, width): (Range<usize>, usize, usize),
    mut dst: ArrayViewMut2<'_, T>,
) {
    for (src_row, mut dst_row) in src.chunks_exact(q.len()).zip(dst.axis_iter_mut(Axis(0))) {
        // q starts on a wide row: output row r's values are at r·wide.
        for (r, values) in src_row.chunks(wide).enumerate() {
            let values = &values[..width];
            let mut part = dst_row.slice_mut(s![r * width..(r + 1) * width]);
            match part.as_slice_mut() {
                Some(part) => part.copy_from_slice(values),
                None => part.iter_mut().zip(values).for_each(|(d, &v)| *d = v),
            }
        }
    }
}
