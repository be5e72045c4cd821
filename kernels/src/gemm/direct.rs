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
    c: ArrayViewMut2<'_, T>,
    parallel: bool,
) {
    let ([h, w], [ph, pw]) = (geom.input(), geom.pad());
    let ([kh, kw], [dh, dw]) = (geom.kernel(), geom.dilation());
    let [oh, ow] = geom.output();
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    let offsets: Vec<isize> = (0..channels)
        .flat_map(|ch| {
            (0..kh).flat_map(move |i| (0..kw).map(move |j| (ch * hp * wp + i * dh * wp + j * dw) as isize))
        })
        .collect();
    let layout = Wide { wide: wp, width: ow };
    let n = (oh - 1) * wp + ow;
    T::with_pack_buffers(|a_buf, b_buf| {
        let data = if ph == 0 && pw == 0 {
            image
        } else {
            pad_image(image, channels, geom, kern.nr, b_buf)
        };
        let b = RowsB {
            data,
            offsets: &offsets,
            n,
        };
        gemm_rows(kern, alpha, a, &b, layout, c, parallel, a_buf);
    });
}

/// The image zero-padded to Hp × Wp per channel in `buf`, followed by `slack`
/// zeros (so that whole NR-wide runs from the last rows stay inside).
fn pad_image<'b, T: Element>(
    image: &[T],
    channels: usize,
    geom: &Window2d,
    slack: usize,
    buf: &'b mut Vec<T>,
) -> &'b [T] {
    let ([h, w], [ph, pw]) = (geom.input(), geom.pad());
    let (hp, wp) = (h + 2 * ph, w + 2 * pw);
    buf.clear();
    buf.resize(channels * hp * wp + slack, T::ZERO);
    if h * w == 0 {
        return buf; // all padding
    }
    for (src, dst) in image.chunks_exact(h * w).zip(buf.chunks_exact_mut(hp * wp)) {
        for (row, padded) in src.chunks_exact(w).zip(dst[ph * wp..].chunks_exact_mut(wp)) {
            padded[pw..pw + w].copy_from_slice(row);
        }
    }
    buf
}

/// A K × N matrix whose rows lie in one buffer: `B[k, q] = data[offsets[k] + q]`.
/// `data` must hold `max(offsets) + n` values.
struct RowsB<'a, T> {
    data: &'a [T],
    offsets: &'a [isize],
    n: usize,
}

/// Where the product's columns go: column q of the wide grid (rows of
/// `wide` columns) is output column (q / wide)·width + q % wide when
/// q % wide < width, and is dropped otherwise. `wide == width` maps every
/// column to itself.
#[derive(Clone, Copy)]
struct Wide {
    wide: usize,
    width: usize,
}

impl Wide {
    /// Output columns before wide column q.
    fn output_column(self, q: usize) -> usize {
        q / self.wide * self.width + (q % self.wide).min(self.width)
    }

    /// Copies the wide block `src` (rows of `q.len()` columns, wide columns
    /// `q`) to its output columns in `dst` (starting at the output column of
    /// `q.start`).
    fn scatter<T: Element>(self, src: &[T], q: Range<usize>, mut dst: ArrayViewMut2<'_, T>) {
        // The runs of output columns: (first wide column, length), relative
        // to the block.
        let mut runs = Vec::new();
        let mut t = q.start;
        while t < q.end {
            let row_start = t - t % self.wide;
            let end = (row_start + self.width).min(q.end);
            if t < end {
                runs.push((t - q.start, end - t));
            }
            t = row_start + self.wide;
        }
        for (src_row, mut dst_row) in src.chunks_exact(q.len()).zip(dst.axis_iter_mut(Axis(0))) {
            let mut out = 0;
            for &(from, len) in &runs {
                let values = &src_row[from..from + len];
                let mut part = dst_row.slice_mut(s![out..out + len]);
                match part.as_slice_mut() {
                    Some(part) => part.copy_from_slice(values),
                    None => part.iter_mut().zip(values).for_each(|(d, &v)| *d = v),
                }
                out += len;
            }
        }
    }
}

/// Column blocks of about the kernel's JB columns (multiples of NR), cut
/// further until each thread has about four.
fn column_blocks<T>(kern: &MicroKernel<T>, n: usize, parallel: bool) -> Vec<Range<usize>> {
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let mut jb = super::blocked::balanced(n, kern.jb, kern.nr);
    while threads > 1 && n.div_ceil(jb) < 4 * threads && jb > kern.nr {
        jb = super::blocked::balanced(n, jb / 2, kern.nr);
    }
    (0..n).step_by(jb).map(|q| q..(q + jb).min(n)).collect()
}

/// `C ← alpha·A·B` with B read in place and the columns laid out by
/// `layout` (C is M × the output columns of B's N wide ones). A is packed
/// whole into `a_buf`, then column blocks run as tasks: each computes its
/// M × block product, KC block by KC block, and (if the layout drops
/// columns) copies it to C.
#[allow(clippy::too_many_arguments)]
fn gemm_rows<T: Element>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    b: &RowsB<'_, T>,
    layout: Wide,
    c: ArrayViewMut2<'_, T>,
    parallel: bool,
    a_buf: &mut Vec<T>,
) {
    let (m, k) = a.dim();
    let (mr, nr) = (kern.mr, kern.nr);
    let m_pad = m.div_ceil(mr) * mr;
    let depth: Vec<Range<usize>> = (0..k).step_by(kern.kc).map(|p| p..(p + kern.kc).min(k)).collect();
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
    // Largest offset per KC block: a run of NR from column q is inside
    // `data` for every row of the block when limit + q + NR ≤ len.
    let limits: Vec<usize> = depth
        .iter()
        .map(|d| b.offsets[d.clone()].iter().copied().max().unwrap_or(0) as usize)
        .collect();
    let direct = layout.wide == layout.width;
    let task = |(q, mut out): (Range<usize>, ArrayViewMut2<'_, T>), local: &mut Vec<T>| {
        let width = q.len();
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
            let offsets = &b.offsets[d.clone()];
            for i in (0..m).step_by(mr) {
                let a_panel = &a_pack[m_pad * d.start + i * kc..][..mr * kc];
                for j in (q.start..q.end).step_by(nr) {
                    let (rows, cols) = (mr.min(m - i), nr.min(q.end - j));
                    // SAFETY: (i, j − q.start) .. + (rows, cols) lies inside
                    // the task's block (its own part of C, or `local`, m ×
                    // width), which aliases neither A's panels nor B.
                    let tile = unsafe { tile_base.offset(i as isize * rsc + (j - q.start) as isize * csc) };
                    if limits[step] + j + nr <= b.data.len() {
                        // SAFETY: the A panel holds kc·MR values; every row
                        // p of the block has NR values at data + j +
                        // offsets[p] (checked just above); the kernel's ISA
                        // is supported.
                        unsafe {
                            (kern.run_rows)(
                                kc,
                                a_panel.as_ptr(),
                                b.data.as_ptr().add(j),
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
                        // Near the end of `data`: pack this panel.
                        panel.clear();
                        panel.resize(kc * nr, T::ZERO);
                        for (step_values, &o) in panel.chunks_exact_mut(nr).zip(offsets) {
                            let o = o as usize + j;
                            step_values[..cols].copy_from_slice(&b.data[o..o + cols]);
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
            layout.scatter(local, q, out);
        }
    };
    // Split C into the output columns of each block.
    let blocks = column_blocks(kern, b.n, parallel);
    let mut parts = Vec::with_capacity(blocks.len());
    let mut rest = c;
    for q in blocks {
        let cols = layout.output_column(q.end) - layout.output_column(q.start);
        let (part, tail) = rest.split_at(Axis(1), cols);
        rest = tail;
        parts.push((q, part));
    }
    if parallel && parts.len() > 1 {
        parts
            .into_par_iter()
            .for_each_init(Vec::new, |local, part| task(part, local));
    } else {
        let mut local = Vec::new();
        parts.into_iter().for_each(|part| task(part, &mut local));
    }
}
