//! GEMM with B read in place: for few rows of A (see [`applies`]) and B
//! with contiguous rows, the micro-kernel reads B's rows where they lie
//! ([`super::kernel::RowsKernelFn`]) instead of from packed panels.
//!
//! Packing B costs a pass over B per KC block whose values then feed only
//! M multiply-adds each: with M = 64 (a convolution's filters), packing
//! the (64 × 12544) B of the ResNet first layer's im2col product took 30 %
//! of the product. Only A is packed here (once, shared by all threads),
//! and not even A where B has few columns ([`reads_a_in_place`]): the
//! kernel then broadcasts A's values from its rows where they lie
//! ([`super::kernel::ABRowsKernelFn`]). The last, partial NR panel of B's
//! columns is copied (and read as rows NR apart), so nothing past B is
//! ever read.
//!
//! Results equal the packed route's bit for bit: the same micro-kernel
//! body on the same values, the same KC blocks in the same order (beta on
//! the first, 1 after), tiles on the same NR grid.

use super::blocked::{even_shares, grid, task_blocks};
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

/// With A packed, products with up to this many rows take it too (f32,
/// in-process A/B against the packed route; one thread gains 1.00-1.05x
/// on all of these):
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
///
/// With A read in place too ([`reads_a_in_place`]) every product of up to
/// this many rows takes it: against the packed route, two threads / one,
/// f32 256 × 4096 × 96 1.17x / 1.10x, 256 × 4608 × 64 1.10x / 1.17x,
/// 256 × 2304 × 48 1.66x / 1.19x, 200 × 4096 × 150 1.12x / 1.05x (f64
/// alike).
const MAX_ROWS_PACKED_A: usize = 256;

/// Bytes of B one kernel step reads (NR values) at or below which only
/// products of up to [`MAX_ROWS`] take the route (the AVX2 kernels and the
/// portable ones): the AVX2 f32 6×16 and f64 6×8 kernels read one line of B
/// per step for 6 rows of A, where the AVX-512 8×48 kernel reads three for
/// 8, and with B's rows in place (their lines crowd a few L1 sets) they
/// wait on L2. Against the packed route, forced AVX2 on the Zen 4 machine,
/// alternated call by call, two threads / one: 256³ 1.24x / 1.23x, 256 ×
/// 2304 × 196 1.16x / 0.96x, 200 × 1000 × 3000 1.12x / 1.16x, 240³ 1.05x /
/// 0.99x, 512 × 4608 × 49 1.29x / 0.81x, 1024 × 1024 × 192 1.00x / 0.99x;
/// at 128 rows and fewer in place stays ahead (128³ 1.28x / 1.06x, 64 × 576
/// × 3136 1.12x / 0.98x, 32 × 288 × 51200 1.06x / 1.01x; but 128 × 1152 ×
/// 784 0.93x / 0.91x). f64 (6×8): 256³ 0.97x / 1.62x, 256 × 2304 × 196
/// 1.33x / 1.17x, 200 × 1000 × 3000 1.15x / 1.24x.
///
/// Where 512-bit FMAs run at twice the rate of 256-bit ones
/// ([`crate::isa::wide_fma512`]: the Intel Xeon machine), the 8×48 step
/// takes half the cycles and waits on those lines as long: there too only
/// products of up to [`MAX_ROWS`] take the route. Against the rules above
/// (alternated call by call, two runs, one thread / two): 256³
/// 1.19-1.27x / 0.91-1.26x, 200 × 1000 × 3000 1.12-1.13x / 1.01-1.06x,
/// 300 × 300 × 150 1.17-1.24x / 0.99-1.11x, 1024 × 1024 × 192
/// 1.01-1.06x / 1.21-1.26x, 256 × 1152 × 384 1.01-1.25x / 1.02-1.04x;
/// mixed on 256 × 2304 × 196 (0.95-0.96x / 1.05-1.10x), 160 × 300 × 300
/// (0.94-1.17x / 1.03-1.16x) and 512 × 4608 × 49 (0.89-1.11x /
/// 0.90-1.08x).
const ONE_LINE_STEP: usize = 64;

/// See [`MAX_ROWS_PACKED_A`].
const MAX_PACKED_A_BYTES: usize = 3 << 20;

/// Products with more rows than [`MAX_ROWS_PACKED_A`] and A read in place
/// take the route when B has at most this many NR panels and at most half
/// as many columns as A has rows. Against the packed route, f32, two
/// threads / one: 512 × 2304 × 196 1.14x / 1.06x, 512 × 4608 × 49 1.39x /
/// 1.15x, 1024 × 1024 × 192 1.10x / 1.04x, 300 × 300 × 150 1.10x / 1.03x,
/// 640 × 640 × 320 1.03x / 1.02x, 2048 × 512 × 256 1.04x / 1.00x; mixed
/// at 1024 × 4096 × 256 (0.97x / 1.02x) and where B is wider (768³ 1.08x
/// / 0.99x, 512³ 0.95x / 1.01x, 1024 × 256 × 512 0.95x / 0.98x).
const TALL_A_MAX_PANELS: usize = 8;

/// Products with B at most this many NR panels wide read A in place
/// ([`reads_a_in_place`]).
const A_IN_PLACE_MAX_PANELS: usize = 32;

/// Whether the route reads A's rows in place instead of packing them: A's
/// columns contiguous and B at most [`A_IN_PLACE_MAX_PANELS`] panels wide.
/// Packing A costs a pass over A that feeds only n/NR tiles per A panel;
/// f32, in-process A/B against packed A, two threads / one thread:
/// 256 × 2304 × 196 1.05-1.06x / 1.04-1.06x, 256 × 1152 × 384 1.33-1.39x
/// / 1.02-1.05x, 256 × 1152 × 768 1.15x / 1.05x, 64 × 576 × 196 1.30x /
/// 1.03x, 64 × 4096 × 96 1.48x / 1.08x, 128³ 1.33x / 1.04x, 256 × 1024 ×
/// 192 (rows 4 KiB apart) 1.06x / 1.04x, 256³ 1.03-1.05x / 1.01-1.04x
/// (f64 alike: 128³ 1.61x / 1.03x, 256³ 1.06x / 1.01x); at 32 panels
/// (256 × 1152 × 1536) 1.01x; wider, nothing to gain (64 × 576 × 3136
/// 1.00x) or a little to lose (64 × 147 × 12576 0.99x).
fn reads_a_in_place<T>(a: &ArrayView2<'_, T>, n: usize, nr: usize) -> bool {
    a.strides()[1] == 1 && n <= A_IN_PLACE_MAX_PANELS * nr
}

/// Whether `C ← alpha·A·B + beta·C` reads B in place: C only written
/// (beta = 0), few rows of A (above; fewer with the 256-bit kernels and
/// with wide 512-bit FMAs, [`ONE_LINE_STEP`]), B's rows contiguous and
/// apart by a positive stride that is not a multiple of 4 KiB — such rows all fall
/// in one set of the L1 cache, which then holds only a dozen of a panel's
/// rows (64 × 512 × 8192: 0.96x in place, against 1.16x at 8000 columns).
pub(crate) fn applies<T: Element>(a: &ArrayView2<'_, T>, beta: T, b: &ArrayView2<'_, T>) -> bool {
    let [row, column] = [b.strides()[0], b.strides()[1]];
    let elem = std::mem::size_of::<T>();
    let row_bytes = row.unsigned_abs() * elem;
    let (m, (k, n)) = (a.nrows(), b.dim());
    let nr = kernel::<T>(m).nr;
    let few_rows = if nr * elem <= ONE_LINE_STEP || crate::isa::wide_fma512() {
        m <= MAX_ROWS
    } else if reads_a_in_place(a, n, nr) {
        m <= MAX_ROWS_PACKED_A || (n <= TALL_A_MAX_PANELS * nr && 2 * n <= m)
    } else {
        m <= MAX_ROWS
            || (m <= MAX_ROWS_PACKED_A && (n >= m || (n >= 2 * nr && m * k * elem <= MAX_PACKED_A_BYTES)))
    };
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
    // B's rows, then the copied last panel's rows, NR apart (one vector).
    let all_offsets: Vec<isize> = (0..k as isize)
        .map(|p| p * row_stride)
        .chain((0..depth[0].len() as isize).map(|p| p * nr as isize))
        .collect();
    let (offsets, panel_offsets) = all_offsets.split_at(k);
    let a_in_place = reads_a_in_place(&a, n, nr);
    super::kernel::with_pack_buffers(parallel, |a_buf, b_buf| {
        let a_pack: &[T] = if a_in_place {
            &[]
        } else {
            pack_a_blocks(a, (mr, kern.pack_a), &depth, a_buf, parallel)
        };
        // One task: `block`, the part of C from row `top` and column `first`.
        // `panel`: the thread's buffer for the copied last panel.
        let task = |(top, first, mut block): (usize, usize, ArrayViewMut2<'_, S>), panel: &mut Vec<T>| {
            let (rsc, csc) = (block.strides()[0], block.strides()[1]);
            // A slot has T's layout (`Slot`'s contract).
            let base = block.as_mut_ptr().cast::<T>();
            let (height, width) = block.dim();
            let mut a_rows = [std::ptr::null::<T>(); super::kernel::MAX_MR];
            for (step, d) in depth.iter().enumerate() {
                let kc = d.len();
                let beta = if step == 0 { T::ZERO } else { T::ONE };
                // Each NR panel of B once, feeding every MR panel of A while
                // it is in L1 (measured 1.2-1.3x over A-panel-outer here).
                for j in (0..width).step_by(nr) {
                    let (column, cols) = (first + j, nr.min(width - j));
                    let (b_panel, b_offsets) = if column + nr <= n {
                        // B's columns are contiguous (`applies`).
                        (b.as_ptr().wrapping_add(column), &offsets[d.clone()])
                    } else {
                        // The last, partial panel: copied, zero-padded.
                        panel.clear();
                        panel.resize(kc * nr, T::ZERO);
                        let rows = b.slice(s![d.clone(), column..]);
                        for (values, row) in panel.chunks_exact_mut(nr).zip(rows.axis_iter(Axis(0))) {
                            values[..cols].copy_from_slice(row.as_slice().expect("contiguous rows"));
                        }
                        (panel.as_ptr(), &panel_offsets[..kc])
                    };
                    for i in (0..height).step_by(mr) {
                        let rows = mr.min(height - i);
                        // SAFETY: (i, j) .. + (rows, cols) lies inside `block`,
                        // this task's own part of C, which aliases neither A
                        // nor B nor the copied panel; a fresh tile is only
                        // written (beta = 0 on the first KC block, after
                        // which it holds values).
                        let tile = unsafe { base.offset(i as isize * rsc + j as isize * csc) };
                        if a_in_place {
                            // Rows past C's repeat its last row (their sums
                            // are computed, never stored).
                            for (r, row) in a_rows[..mr].iter_mut().enumerate() {
                                *row = &a[[top + i + r.min(rows - 1), d.start]];
                            }
                            // SAFETY: MR row pointers, each to kc values of a
                            // row of A (unit column stride); NR values of B
                            // at b_panel + b_offsets[p] for p < kc (a row of
                            // B from column `column` ≤ n − NR, or of the
                            // copied kc × NR panel); the kernel's ISA is
                            // supported.
                            unsafe {
                                (kern.ab_rows_for_cols(cols))(
                                    kc,
                                    a_rows.as_ptr(),
                                    b_panel,
                                    b_offsets.as_ptr(),
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
                            let a_panel = &a_pack[m_pad * d.start + (top + i) * kc..][..mr * kc];
                            // SAFETY: the A panel holds kc·MR values; B as
                            // above.
                            unsafe {
                                (kern.rows_for_cols(cols))(
                                    kc,
                                    a_panel.as_ptr(),
                                    b_panel,
                                    b_offsets.as_ptr(),
                                    std::ptr::null(),
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
        let jb = even_shares(jb, nr, (m, row_block), n, threads);
        let blocks = grid(c, row_block, jb);
        if parallel && blocks.len() > 1 {
            blocks
                .into_par_iter()
                .for_each_init(Vec::new, |panel, block| task(block, panel));
        } else {
            blocks.into_iter().for_each(|block| task(block, b_buf));
        }
    });
}
