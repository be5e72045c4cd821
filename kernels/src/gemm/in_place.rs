//! GEMM with B read in place: for few rows of A (see [`applies`]) and B
//! with contiguous rows, the micro-kernel reads B's rows where they lie
//! ([`super::kernel::RowsKernelFn`]) instead of from packed panels.
//!
//! Packing B costs a pass over B per KC block whose values then feed only
//! M multiply-adds each: with M = 64 (a convolution's filters), packing
//! the (64 × 12544) B of the ResNet first layer's im2col product took 30 %
//! of the product. Only A is packed here (once, shared by all threads);
//! the last, partial NR panel of B's columns is copied, so nothing past B
//! is ever read.
//!
//! Results equal the packed route's bit for bit: the same micro-kernel
//! body on the same values, the same KC blocks in the same order (beta on
//! the first, 1 after), tiles on the same NR grid.

use super::blocked::{grid, task_blocks};
use super::kernel::MicroKernel;
use super::pack::{depth_blocks, pack_a_blocks};
use crate::slot::Slot;
use crate::Element;
use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Products with at most this many rows of A take this route (measured:
/// 1.1-1.3x at 32-64 rows, even at 128-160, where the packing costs
/// little per multiply-add).
const MAX_ROWS: usize = 128;

/// Products with up to this many rows take it too (f32, in-process A/B
/// against the packed route; one thread gains 1.00-1.05x on all of these):
/// - when B is at least as wide as A is tall: on two threads 256³ 1.13x,
///   240³ 1.03x, 160 × 300 × 300 1.16-1.20x, 200 × 1000 × 3000
///   1.08-1.19x;
/// - when B is narrower but has at least two NR panels and the packed A
///   ([`pack_a_blocks`] packs all of it before the tiles) is at most
///   [`MAX_PACKED_A_BYTES`]: on two threads 256 × 2304 × 196 1.06-1.11x,
///   256 × 1152 × 196 1.08-1.09x, 200 × 1000 × 150 1.07-1.13x, against
///   the packed route's row bands as they were then (all of B packed
///   first, in parallel). With 4096-deep A (4 MiB packed) 0.90-0.95x on
///   one thread with 96 columns, and with one panel (64 columns)
///   0.90-0.93x on two.
const MAX_ROWS_PACKED_A: usize = 256;

/// See [`MAX_ROWS_PACKED_A`].
const MAX_PACKED_A_BYTES: usize = 3 << 20;

/// Whether `C ← alpha·A·B + beta·C` (A with `m` rows) reads B in place:
/// C only written (beta = 0), few rows (above), B's rows contiguous and
/// apart by a positive stride that is not a multiple of 4 KiB — such rows
/// all fall in one set of the L1 cache, which then holds only a dozen of a
/// panel's rows (64 × 512 × 8192: 0.96x in place, against 1.16x at 8000
/// columns).
pub(crate) fn applies<T: Element>(m: usize, beta: T, b: &ArrayView2<'_, T>) -> bool {
    let [row, column] = [b.strides()[0], b.strides()[1]];
    let elem = std::mem::size_of::<T>();
    let row_bytes = row.unsigned_abs() * elem;
    let (k, n) = b.dim();
    let few_rows = m <= MAX_ROWS
        || (m <= MAX_ROWS_PACKED_A
            && (n >= m || (n >= 2 * kernel::<T>(m).nr && m * k * elem <= MAX_PACKED_A_BYTES)));
    beta == T::ZERO && few_rows && column == 1 && row > 0 && !row_bytes.is_multiple_of(4096)
}

/// The micro-kernel for this route and `m` rows of A: up to [`MAX_ROWS`]
/// the height that pads A's rows least ([`super::kernel::selected_rows`]),
/// above it the main kernel (250 rows would take 5×80: 0.93-0.97x).
pub(crate) fn kernel<T: Element>(m: usize) -> MicroKernel<T> {
    if m <= MAX_ROWS {
        super::kernel::selected_rows(m)
    } else {
        super::kernel::selected()
    }
}

/// `C ← alpha·A·B` with m, n, k > 0 and [`applies`] true (checked by the
/// caller). C may be fresh memory ([`Slot`]): it is only written.
pub(crate) fn gemm_b_in_place<T: Element, S: Slot<T>>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    c: ArrayViewMut2<'_, S>,
    parallel: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (mr, nr) = (kern.mr, kern.nr);
    let m_pad = m.div_ceil(mr) * mr;
    let depth = depth_blocks(k, kern.depth_block(k));
    let row_stride = b.strides()[0];
    let offsets: Vec<isize> = (0..k as isize).map(|p| p * row_stride).collect();
    super::kernel::with_pack_buffers(parallel, |a_buf, _| {
        let a_pack = pack_a_blocks(a, (mr, kern.pack_a), &depth, a_buf, parallel);
        // One task: `block`, the part of C from row `top` and column `first`.
        let task = |(top, first, mut block): (usize, usize, ArrayViewMut2<'_, S>)| {
            let (rsc, csc) = (block.strides()[0], block.strides()[1]);
            // A slot has T's layout (`Slot`'s contract).
            let base = block.as_mut_ptr().cast::<T>();
            let (height, width) = block.dim();
            let mut panel = Vec::new();
            for (step, d) in depth.iter().enumerate() {
                let kc = d.len();
                let beta = if step == 0 { T::ZERO } else { T::ONE };
                let offsets = &offsets[d.clone()];
                // Each NR panel of B once, feeding every MR panel of A while
                // it is in L1 (measured 1.2-1.3x over A-panel-outer here).
                for j in (0..width).step_by(nr) {
                    let (column, cols) = (first + j, nr.min(width - j));
                    let in_place = column + nr <= n;
                    if !in_place {
                        // The last, partial panel: copied, zero-padded.
                        panel.clear();
                        panel.resize(kc * nr, T::ZERO);
                        let rows = b.slice(s![d.clone(), column..]);
                        for (values, row) in panel.chunks_exact_mut(nr).zip(rows.axis_iter(Axis(0))) {
                            values[..cols].copy_from_slice(row.as_slice().expect("contiguous rows"));
                        }
                    }
                    for i in (0..height).step_by(mr) {
                        let a_panel = &a_pack[m_pad * d.start + (top + i) * kc..][..mr * kc];
                        let rows = mr.min(height - i);
                        // SAFETY: (i, j) .. + (rows, cols) lies inside `block`,
                        // this task's own part of C, which aliases neither the
                        // packed A nor B; a fresh tile is only written (beta =
                        // 0 on the first KC block, after which it holds values).
                        let tile = unsafe { base.offset(i as isize * rsc + j as isize * csc) };
                        if in_place {
                            // SAFETY: the A panel holds kc·MR values; row p of B
                            // (p in d) has NR values from column `column` at b +
                            // offsets[p] + column (column + NR ≤ n); the
                            // kernel's ISA is supported.
                            unsafe {
                                (kern.rows_for_cols(cols))(
                                    kc,
                                    a_panel.as_ptr(),
                                    b.as_ptr().add(column),
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
                            // SAFETY: as above, with the copied panel (kc·NR
                            // values).
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
                        }
                    }
                }
            }
        };
        // A task takes all of A's rows (each NR panel of B then feeds
        // every A panel) but where the column blocks are too few to share
        // out and A has more than MAX_ROWS rows (240³ 1.3-1.4x with 5
        // column blocks on two threads; with fewer rows splitting them
        // measured 0.83-0.95x).
        let threads = if parallel { rayon::current_num_threads() } else { 1 };
        let (row_block, jb) = task_blocks(kern, (m, m), n, threads);
        let row_block = if m <= MAX_ROWS { m } else { row_block };
        let blocks = grid(c, row_block, jb);
        if parallel && blocks.len() > 1 {
            blocks.into_par_iter().for_each(task);
        } else {
            blocks.into_iter().for_each(task);
        }
    });
}
