//! The BLIS loops around the micro-kernel.
//!
//! ```text
//! LOOP 5  jc: split n into NC-column blocks
//!   LOOP 4  pc: split k into KC-deep blocks        (never split across threads)
//!           pack B[pc.., jc..] into NR panels        (shared by all threads)
//!           pack A[.., pc..]   into MR panels        (shared by all threads)
//!     LOOP 3+2 (ic, jb) tasks, in parallel: MC rows × JB columns of C
//!       LOOP 2  ir: MR panels of the task's rows
//!         LOOP 1  jr: NR panels of the task's columns → micro-kernel
//! ```
//!
//! The first KC block applies the caller's beta, the following ones beta = 1.
//! Tiles sit on the global MR × NR grid whatever the task split, and every
//! element sums its k in order, so results do not depend on the threads.
//!
//! A product whose B is small and no wider than A is tall (a deep layer's
//! convolution: 512 filters × 4608 taps × 392 pixels) spends much of each
//! short KC block waiting for the other threads; it runs as row bands
//! instead ([`gemm_row_bands`]): one band of C's rows per thread through
//! the whole K loop, each reading its rows of A in place (or packing them,
//! where A's columns are not contiguous or its rows a multiple of 4 KiB
//! apart), B's KC blocks packed once each, just ahead of use, by the
//! first band to reach them.

use super::kernel::MicroKernel;
use super::pack::{aligned, depth_blocks, pack_a, PackB};
use crate::slot::Slot;
use crate::Element;
use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::{Mutex, OnceLock};

/// Splits `c` into a grid of `mc` × `jb` blocks (the last ones smaller),
/// each with its row and column offset.
pub(super) fn grid<T>(
    c: ArrayViewMut2<'_, T>,
    mc: usize,
    jb: usize,
) -> Vec<(usize, usize, ArrayViewMut2<'_, T>)> {
    let mut blocks = Vec::new();
    let mut rest = c;
    let mut row = 0;
    while rest.nrows() > 0 {
        let take = mc.min(rest.nrows());
        let (mut band, tail) = rest.split_at(Axis(0), take);
        rest = tail;
        let mut col = 0;
        while band.ncols() > 0 {
            let width = jb.min(band.ncols());
            let (block, right) = band.split_at(Axis(1), width);
            band = right;
            blocks.push((row, col, block));
            col += width;
        }
        row += take;
    }
    blocks
}

/// A block length near `target` (a multiple of `unit`) that splits `len`
/// into equal parts.
pub(super) fn balanced(len: usize, target: usize, unit: usize) -> usize {
    let parts = len.div_ceil(target.max(unit));
    len.div_ceil(parts).div_ceil(unit) * unit
}

/// Task block sizes (rows, columns) for an m × nc block of C: `mc` × the
/// kernel's JB, evened out, and halved (columns first) until there are
/// about four tasks per thread. The grid only distributes work: tiles stay
/// on the global MR × NR grid, so it never changes a result.
pub(super) fn task_blocks<T>(
    kern: &MicroKernel<T>,
    (m, mc): (usize, usize),
    nc: usize,
    threads: usize,
) -> (usize, usize) {
    let mut mc = balanced(m, mc, kern.mr);
    let mut jb = balanced(nc, kern.jb, kern.nr);
    let tasks = |mc: usize, jb: usize| m.div_ceil(mc) * nc.div_ceil(jb);
    while threads > 1 && tasks(mc, jb) < 4 * threads && (jb > kern.nr || mc > kern.mr) {
        if jb > kern.nr {
            jb = balanced(nc, jb / 2, kern.nr);
        } else {
            mc = balanced(m, mc / 2, kern.mr);
        }
    }
    (mc, jb)
}

/// Columns per task (a multiple of `nr`, at most `jb`) that share the
/// tasks of an m × `nc` block of C, in rows of `mc`, evenly among
/// `threads`: rayon hands out whole tasks, so 11 equal ones on two threads
/// leave one thread 6 to do while the other does 5. Picks the widest whose
/// busiest thread (tasks dealt largest first to the least busy) has at
/// most 1 % more to do than with the best width: the 64 × 576 × 3136
/// product on two threads takes 22 tasks of 3 panels, not 11 of 6
/// (1.05-1.10x, alternated call by call; 17 of 4, 2 % over the best,
/// 1.02-1.06x); 64 × 147 × 12544 keeps 44 tasks of 6 panels, 512³ its 8
/// of 6 and 4⅔.
pub(super) fn even_shares(jb: usize, nr: usize, (m, mc): (usize, usize), nc: usize, threads: usize) -> usize {
    if threads < 2 {
        return jb;
    }
    let busiest = |width: usize| {
        let mut tasks: Vec<usize> = (0..m)
            .step_by(mc)
            .flat_map(|r| {
                (0..nc)
                    .step_by(width)
                    .map(move |c| mc.min(m - r) * width.min(nc - c))
            })
            .collect();
        tasks.sort_unstable_by(|x, y| y.cmp(x));
        let mut load = vec![0; threads];
        for task in tasks {
            let least = load.iter_mut().min().expect("threads > 1");
            *least += task;
        }
        load.into_iter().max().unwrap_or(0)
    };
    let widest = (jb / nr).max(1);
    let fewest = (1..=widest).map(|q| busiest(q * nr)).min().unwrap_or(0);
    let good_enough = |&q: &usize| busiest(q * nr) <= fewest + fewest / 100;
    (1..=widest).rev().find(good_enough).unwrap_or(widest) * nr
}

/// `C ← alpha·A·B + beta·C` with m, n, k > 0 (checked by the caller). C
/// may be fresh memory ([`Slot`]) when beta is 0: it is then only written.
pub(crate) fn gemm_blocked<T: Element, S: Slot<T>>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    b: &impl PackB<T>,
    beta: T,
    mut c: ArrayViewMut2<'_, S>,
    parallel: bool,
) {
    debug_assert!(S::INIT || beta == T::ZERO, "fresh C is only written");
    let (m, k) = a.dim();
    let n = b.dim().1;
    let kern = &MicroKernel {
        kc: kern.depth_block(k),
        ..*kern
    };
    let (mr, nr) = (kern.mr, kern.nr);
    let kc_max = kern.kc.min(k);
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    if row_bands_apply(kern, (m, n, k), std::mem::size_of::<T>(), threads) {
        return gemm_row_bands(kern, alpha, a, b, beta, c, threads);
    }
    super::kernel::with_pack_buffers(parallel, |a_buf, b_buf| {
        let a_pack = aligned(a_buf, m.div_ceil(mr) * mr * kc_max);
        let b_pack = aligned(b_buf, kern.nc.min(n).div_ceil(nr) * nr * kc_max);
        for jc in (0..n).step_by(kern.nc) {
            let nc = kern.nc.min(n - jc);
            let (mc, jb) = task_blocks(kern, (m, kern.mc), nc, threads);
            let jb = even_shares(jb, nr, (m, mc), nc, threads);
            for pc in (0..k).step_by(kern.kc) {
                let kc = kern.kc.min(k - pc);
                let a_pack = &mut a_pack[..m.div_ceil(mr) * mr * kc];
                let b_pack = &mut b_pack[..nc.div_ceil(nr) * nr * kc];
                // Both packings in one parallel step (one wait, not two).
                let a_block = a.slice(s![.., pc..pc + kc]);
                let mut pack_b_block = || b.pack(pc..pc + kc, jc..jc + nc, nr, b_pack, parallel);
                let mut pack_a_block = || pack_a(a_block, (mr, kern.pack_a), a_pack, parallel);
                if parallel {
                    rayon::join(pack_b_block, pack_a_block);
                } else {
                    pack_b_block();
                    pack_a_block();
                }
                let (a_pack, b_pack) = (&*a_pack, &*b_pack);
                let beta = if pc == 0 { beta } else { T::ONE };
                let task =
                    |block| multiply_block(kern, kc, (alpha, beta), (APanels::Packed(a_pack), b_pack), block);
                let blocks = grid(c.slice_mut(s![.., jc..jc + nc]), mc, jb);
                if parallel && blocks.len() > 1 {
                    blocks.into_par_iter().for_each(task);
                } else {
                    blocks.into_iter().for_each(task);
                }
            }
        }
    });
}

/// Largest packed B (in bytes) that [`gemm_row_bands`] packs whole (kept
/// in the thread's packing buffer for the next product). Raised from
/// 8 MiB: against the KC-block loop, alternated call by call on two
/// threads, f32 2048³ (16 MiB) 1.05-1.06x, 1536³ (9 MiB) 1.03-1.09x, f64
/// 2048³ (32 MiB) 1.01-1.02x.
const ROW_BANDS_MAX_B_BYTES: usize = 32 << 20;

/// Whether [`gemm_row_bands`] takes the product: several threads and KC
/// blocks (else there is no wait per block to save), B one NC block that
/// packs into at most [`ROW_BANDS_MAX_B_BYTES`], and B no wider than A is
/// tall (every band reads all of packed B; with few rows the column split
/// of the KC-block loop reads it once: 0.97x on a 64 × 576 × 3136
/// product) with at least MR rows per thread.
fn row_bands_apply<T>(
    kern: &MicroKernel<T>,
    (m, n, k): (usize, usize, usize),
    elem: usize,
    threads: usize,
) -> bool {
    let packed_b = n.div_ceil(kern.nr) * kern.nr * k * elem;
    threads > 1
        && k > kern.kc
        && n <= kern.nc.min(m)
        && m >= threads * kern.mr
        && packed_b <= ROW_BANDS_MAX_B_BYTES
}

/// The product as one parallel step, for a B of one NC block: one task per
/// thread owns a band of C's rows through the whole K loop, packing its own
/// rows of A — no wait per KC block (measured when introduced: a 2-thread
/// 256 × 2304 × 196 product 1.12x, which now reads B in place; the 7×7
/// ResNet layer's forward 1.03-1.05x; squares ±1 %). B's
/// KC blocks are packed once, each by the first band to reach it
/// ([`PackedBlocks`]), one block ahead of the band's own work. Packing
/// all of B first, in parallel, wrote it out to L3 before any band read
/// it (`perf`: its packing took twice the share it takes on one thread);
/// against that, alternated call by call on two threads: the 7×7 layer's
/// forward 1.04-1.06x, backward 1.01x, GEMM 512 × 4608 × 392
/// 1.02-1.06x, 768³ 1.04-1.09x, 1024³ 1.01-1.02x. Where A's columns are
/// contiguous (and its rows not a multiple of 4 KiB apart) its rows are
/// read in place, not packed: each band's A panel feeds only n/NR tiles
/// (against packing, call by call on two threads: the 7×7 layer's
/// forward 1.02-1.04x, backward 1.01x, GEMM 512 × 4608 × 392
/// 1.04-1.05x, f64 1.06x, 768³ 1.01x). The tiles and the order of their
/// sums are the KC-block loop's: so are the results, bit for bit.
fn gemm_row_bands<T: Element, S: Slot<T>>(
    kern: &MicroKernel<T>,
    alpha: T,
    a: ArrayView2<'_, T>,
    b: &impl PackB<T>,
    beta: T,
    mut c: ArrayViewMut2<'_, S>,
    threads: usize,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    let (mr, nr) = (kern.mr, kern.nr);
    let kc_max = kern.kc.min(k);
    let depth = depth_blocks(k, kc_max);
    let n_pad = n.div_ceil(nr) * nr;
    let band_rows = balanced(m, m.div_ceil(threads), mr);
    let jb = balanced(n, kern.jb, nr);
    // Rows a multiple of 4 KiB apart all fall in the same L1 sets: packed
    // (2048³: 1.05x packed against 1.03x in place, over the KC-block loop).
    let row_bytes = a.strides()[0].unsigned_abs() * std::mem::size_of::<T>();
    let a_in_place = a.strides()[1] == 1 && !row_bytes.is_multiple_of(4096);
    super::kernel::with_pack_buffers(true, |a_buf, b_buf| {
        let b_blocks = PackedBlocks::new(aligned(b_buf, n_pad * k), &depth, n_pad);
        let pack_block = |i: usize| b_blocks.pack(i, |d, dst| b.pack(d, 0..n, nr, dst, false));
        // Room for each band's packed A, none where A is read in place.
        let room = if a_in_place { 0 } else { band_rows * kc_max };
        let a_pack = aligned(a_buf, m.div_ceil(band_rows) * room);
        let mut rooms = a_pack.chunks_mut(room.max(1));
        let bands: Vec<_> = c
            .axis_chunks_iter_mut(Axis(0), band_rows)
            .map(|band| (band, rooms.next().unwrap_or_default()))
            .enumerate()
            .collect();
        bands.into_par_iter().for_each(|(i, (mut band, a_pack))| {
            let rows = i * band_rows..i * band_rows + band.nrows();
            for (step, d) in depth.iter().enumerate() {
                pack_block(step);
                if step + 1 < depth.len() {
                    pack_block(step + 1);
                }
                let kc = d.len();
                let a_block = a.slice(s![rows.clone(), d.clone()]);
                let a_panels = if a_in_place {
                    APanels::Rows(a_block)
                } else {
                    let a_pack = &mut a_pack[..band.nrows().div_ceil(mr) * mr * kc];
                    pack_a(a_block, (mr, kern.pack_a), a_pack, false);
                    APanels::Packed(a_pack)
                };
                let beta = if d.start == 0 { beta } else { T::ONE };
                let b_block = b_blocks.wait(step);
                for col in (0..n).step_by(jb) {
                    let block = band.slice_mut(s![.., col..(col + jb).min(n)]);
                    multiply_block(kern, kc, (alpha, beta), (a_panels, b_block), (0, col, block));
                }
            }
        });
    });
}

/// A KC block's rows of B and the room its packed panels go to.
type BlockRoom<'a, T> = (Range<usize>, &'a mut [T]);

/// A packed B split into its KC blocks, each packed once by whichever
/// thread claims it first and then read by all. A thread waits only for a
/// block another thread is packing at that moment (it took the block and
/// packs it without waiting on anything), so the bands never deadlock,
/// whether they run on one thread or several.
struct PackedBlocks<'a, T> {
    /// Each block's rows of B and room until a thread claims it to pack.
    unpacked: Vec<Mutex<Option<BlockRoom<'a, T>>>>,
    /// Each block once packed.
    packed: Vec<OnceLock<&'a [T]>>,
}

impl<'a, T: Send + Sync> PackedBlocks<'a, T> {
    /// The blocks `depth` of a B `n_pad` wide, in `room` (n_pad · K values).
    fn new(mut room: &'a mut [T], depth: &[Range<usize>], n_pad: usize) -> Self {
        let unpacked = depth
            .iter()
            .map(|d| {
                let (block, rest) = std::mem::take(&mut room).split_at_mut(n_pad * d.len());
                room = rest;
                Mutex::new(Some((d.clone(), block)))
            })
            .collect();
        let packed = depth.iter().map(|_| OnceLock::new()).collect();
        PackedBlocks { unpacked, packed }
    }

    /// Packs block `i` with `pack` (its rows of B, its room) unless a
    /// thread has claimed it already. The claim's lock is held while
    /// packing, so that a panic there poisons it and the waiting threads
    /// panic too rather than wait for ever.
    fn pack(&self, i: usize, pack: impl FnOnce(Range<usize>, &mut [T])) {
        // Err: another thread holds the lock, claiming or packing the block.
        if let Ok(mut claim) = self.unpacked[i].try_lock() {
            if let Some((rows, room)) = claim.take() {
                pack(rows, room);
                let block: &'a [T] = room;
                if self.packed[i].set(block).is_err() {
                    unreachable!("a block is packed once");
                }
            }
        }
    }

    /// Block `i`, once packed (by this thread's earlier [`Self::pack`] or
    /// the thread that claimed it).
    fn wait(&self, i: usize) -> &'a [T] {
        let mut spins = 0u32;
        loop {
            if let Some(&block) = self.packed[i].get() {
                return block;
            }
            assert!(!self.unpacked[i].is_poisoned(), "packing B block {i} panicked");
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(64) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Where a block's values of A come from.
#[derive(Clone, Copy)]
enum APanels<'a, T> {
    /// MR-row panels packed from A's rows.
    Packed(&'a [T]),
    /// A's rows (their KC block) read in place, unit column stride.
    Rows(ArrayView2<'a, T>),
}

/// Runs the micro-kernel over one block of C at (`row`, `col`): its MR
/// panels of rows (from row `row` of A's [`APanels`]) against its NR panels
/// of columns (B panels of `b_pack` from panel `col / nr`).
fn multiply_block<T: Element, S: Slot<T>>(
    kern: &MicroKernel<T>,
    kc: usize,
    (alpha, beta): (T, T),
    (a, b_pack): (APanels<'_, T>, &[T]),
    (row, col, mut block): (usize, usize, ArrayViewMut2<'_, S>),
) {
    let (mr, nr) = (kern.mr, kern.nr);
    let (rsc, csc) = (block.strides()[0], block.strides()[1]);
    // A slot has T's layout (`Slot`'s contract).
    let base = block.as_mut_ptr().cast::<T>();
    let mut a_rows = [std::ptr::null::<T>(); super::kernel::MAX_MR];
    // A micro-panel (MR·KC) stays in L1 while B micro-panels stream from
    // L2: measured faster here than the reverse.
    for i in (0..block.nrows()).step_by(mr) {
        let rows = mr.min(block.nrows() - i);
        if let APanels::Rows(a) = a {
            // Rows past C's repeat its last row (their sums are computed,
            // never stored).
            for (r, ptr) in a_rows[..mr].iter_mut().enumerate() {
                *ptr = &a[[row + i + r.min(rows - 1), 0]];
            }
        }
        for j in (0..block.ncols()).step_by(nr) {
            let b_panel = &b_pack[(col + j) / nr * nr * kc..][..nr * kc];
            let cols = nr.min(block.ncols() - j);
            // SAFETY: (i, j) .. (i + rows, j + cols) lies inside `block`, a
            // unique borrow of C that aliases neither A nor the packed B;
            // fresh slots are only written (beta = 0 on the first KC block,
            // after which the tile holds values); the B panel holds kc·NR
            // values; the kernel was chosen for an instruction set this CPU
            // supports.
            unsafe {
                let tile = base.offset(i as isize * rsc + j as isize * csc);
                match a {
                    // SAFETY: the A panel holds kc·MR values.
                    APanels::Packed(a_pack) => (kern.for_cols(cols))(
                        kc,
                        a_pack[(row + i) / mr * mr * kc..][..mr * kc].as_ptr(),
                        b_panel.as_ptr(),
                        tile,
                        rsc,
                        csc,
                        rows,
                        cols,
                        alpha,
                        beta,
                    ),
                    // SAFETY: MR pointers to rows of A's block, kc values
                    // each (unit column stride).
                    APanels::Rows(_) => (kern.a_rows_for_cols(cols))(
                        kc,
                        a_rows.as_ptr(),
                        b_panel.as_ptr(),
                        tile,
                        rsc,
                        csc,
                        rows,
                        cols,
                        alpha,
                        beta,
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::even_shares;

    #[test]
    fn task_widths_share_evenly() {
        // 11 tasks of 6 panels on two threads: 22 of 3 instead (the last
        // of 2⅓).
        assert_eq!(even_shares(288, 48, (64, 64), 3136, 2), 144);
        // Already even: 44 tasks, or 8 of 6 and 4⅔ panels.
        assert_eq!(even_shares(288, 48, (64, 64), 12544, 2), 288);
        assert_eq!(even_shares(288, 48, (512, 128), 512, 2), 288);
        // One thread: unchanged.
        assert_eq!(even_shares(288, 48, (64, 64), 3136, 1), 288);
        // Three threads, 7 equal tasks: 21 of a third the width.
        assert_eq!(even_shares(144, 48, (8, 8), 7 * 144, 3), 48);
    }
}
