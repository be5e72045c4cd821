//! The micro-kernel contract, the kernels available for each element type
//! and instruction set, and the choice among them (once per process).
//!
//! A micro-kernel computes one MR×NR tile of C from a packed A micro-panel
//! (kc steps of MR values) and a packed B micro-panel (kc steps of NR
//! values):
//!
//! ```text
//! C[i, j] ← alpha · Σ_p a[p·MR + i] · b[p·NR + j]  +  beta · C[i, j]     i < rows, j < cols
//! ```
//!
//! The sum over p runs in order with one accumulator per element; the
//! update is `(alpha·acc) + (beta·c)`, two products and a sum, each rounded
//! (no fused multiply-add), the same in the vector and the scalar store
//! paths. When `beta` is 0, C is only written, never read. An element's
//! value therefore depends only on its row of A and column of B — not on
//! where its tile lies or which thread computes it.
//!
//! # Tile sizes
//! The register tile must hold MR×NR accumulators plus the NR/lanes B
//! vectors and one broadcast A value: AVX2 has 16 ymm registers (6×16 f32:
//! 12 accumulators), AVX-512 has 32 zmm (8×48 f32: 24 accumulators), so
//! that each loaded B vector feeds MR FMAs and the FMA units, not the loads,
//! bound the loop. KC is chosen so a B micro-panel (KC·NR) stays in the
//! 48 KiB L1, MC so an A block (MC·KC) stays in L2.

use super::gather::{AddFn, LinesFn};
use crate::isa::Isa;
use crate::Element;

/// One micro-kernel (see the module docs).
///
/// # Safety
/// `a` must point to `kc·mr` readable values, `b` to `kc·nr`, and `c` with
/// strides (`rsc`, `csc`) must address a writable `rows × cols` tile with
/// `rows ≤ mr`, `cols ≤ nr`, not aliasing `a` or `b`.
pub type KernelFn<T> = unsafe fn(
    kc: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
);

/// The micro-kernel with B read in place instead of packed: step p's NR
/// values start at `b + offsets[p]` (rows of a matrix in memory, in any
/// order and spacing). Same tile, sums and store as [`KernelFn`], so the
/// two give identical bits on the same values; then, where `bias` is not
/// null, `bias[i]` added to row i of the stored tile (a convolution's
/// bias, added after the sum as the other routes add it, bit for bit,
/// while the tile is in registers).
///
/// # Safety
/// As [`KernelFn`], with `offsets` pointing to `kc` offsets and NR readable
/// values at `b + offsets[p]` for every p < kc; `bias` null or pointing to
/// `rows` values.
pub type RowsKernelFn<T> = unsafe fn(
    kc: usize,
    a: *const T,
    b: *const T,
    offsets: *const isize,
    bias: *const T,
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
);

/// The micro-kernel with both A's and B's rows read in place: step p's
/// value of row i is `a_rows[i][p]` (as [`ARowsKernelFn`]), its NR values
/// of B start at `b + offsets[p]` (as [`RowsKernelFn`]). Same sums and
/// store as [`KernelFn`].
///
/// # Safety
/// As [`RowsKernelFn`], with `a_rows` pointing to MR row pointers, each to
/// `kc` readable values, in place of `a`.
pub type ABRowsKernelFn<T> = unsafe fn(
    kc: usize,
    a_rows: *const *const T,
    b: *const T,
    offsets: *const isize,
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
);

/// Which lanes of B's rows count in a [`MaskedRowsKernelFn`] or
/// [`ZeroingRowsKernelFn`]: at step p, tap t = (`first` + p) mod `taps`,
/// lane l of vector v (of the kernel's NR/lanes) counts when it is on
/// `table[t·NV + v]`, and as zero otherwise.
#[derive(Clone, Copy, Debug)]
pub struct LaneMasks {
    /// `taps`·NV masks.
    pub table: *const LaneVector,
    /// Taps the steps cycle through.
    pub taps: usize,
    /// Tap of step 0.
    pub first: usize,
}

/// One vector's lane mask, in 64 bytes (a 512-bit vector; a narrower
/// vector's in the first bytes): each lane of the element's size has all
/// its bits set (on) or clear (off), so an AND clears the lanes off it and
/// its sign bits make a masked load's mask.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, align(64))]
pub struct LaneVector(pub [u64; 8]);

/// The micro-kernel reading B in place ([`RowsKernelFn`]) with B's lanes
/// masked ([`LaneMasks`]): lanes off the mask are never touched and count
/// as zero, so rows may run off their buffer (a padded image read where it
/// lies, the padding masked). Same sums and store as [`KernelFn`] on the
/// masked values; then, where `bias` is not null, `bias[i]` added to row
/// i of the stored tile (a convolution's bias, added after the sum as the
/// other routes add it, bit for bit, on the tile while it is in
/// registers).
///
/// # Safety
/// As [`RowsKernelFn`], except that only the lanes on the mask of step p
/// (at `b + offsets[p]`) need be readable; `masks` must point to masks
/// whose table holds `taps`·NV values, `first < taps`; `bias` must be null
/// or point to `rows` values.
pub type MaskedRowsKernelFn<T> = unsafe fn(
    kc: usize,
    a: *const T,
    b: *const T,
    offsets: *const isize,
    masks: *const LaneMasks,
    bias: *const T,
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
);

/// [`MaskedRowsKernelFn`] reading every lane and clearing those off the
/// masks (one AND per vector): the same values, so the
/// same sums and bits, without per-step mask registers — masked loads
/// whose masks change every step ran at ~87 % of a core where plain loads
/// run at ~96 % (an f32 8×48 tile over a 32×32 image, in L1).
///
/// # Safety
/// As [`RowsKernelFn`] (every lane at `b + offsets[p]` readable: the lanes
/// off the masks too); `masks` must point to masks whose table holds
/// `taps`·NV masks, `first < taps`; `bias` must be null or point to
/// `rows` values.
pub type ZeroingRowsKernelFn<T> = unsafe fn(
    kc: usize,
    a: *const T,
    b: *const T,
    offsets: *const isize,
    masks: *const LaneMasks,
    bias: *const T,
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
);

/// The micro-kernel with A's rows read in place and B packed: step p's
/// value of row i is `a_rows[i][p]` (the rows may lie anywhere), B as in
/// [`KernelFn`]. Same sums and store as [`KernelFn`].
///
/// # Safety
/// As [`KernelFn`], with `a_rows` pointing to MR row pointers, each to `kc`
/// readable values.
pub type ARowsKernelFn<T> = unsafe fn(
    kc: usize,
    a_rows: *const *const T,
    b: *const T,
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
);

/// The dot-product micro-kernel ([`super::dot_kernel`]): accumulator
/// vector `acc[f·TB + t]` (LANES values) adds, lane by lane, the products
/// of FB rows of A with TB rows of B over a `rows` × `width` block:
///
/// ```text
/// acc[f·TB + t][l] += Σ_{y < rows} Σ_{x < width, x mod LANES = l} a[f][y·a_stride + x] · b[t][y·b_stride + x]
/// ```
///
/// each lane's terms in order of y then x, one fused multiply-add each;
/// with `init` the sums start from zero (`acc` only written). Values past
/// `width` in a row are never read (the last vector's loads are masked),
/// so the rows may end anywhere.
///
/// # Safety
/// `a` must point to FB row pointers and `b` to TB, each addressing `rows`
/// rows of `width` readable values (`a_stride` or `b_stride` apart), and
/// `acc` to FB·TB·LANES writable values aliasing neither.
pub type DotKernelFn<T> = unsafe fn(
    rows: usize,
    width: usize,
    a: *const *const T,
    a_stride: usize,
    b: *const *const T,
    b_stride: usize,
    acc: *mut T,
    init: bool,
);

/// A [`DotKernelFn`] with its tile.
#[derive(Clone, Copy)]
pub struct DotKernel<T> {
    /// Rows of A per call.
    pub fb: usize,
    /// Rows of B per call.
    pub tb: usize,
    /// Lanes of each accumulator.
    pub lanes: usize,
    /// The kernel.
    pub run: DotKernelFn<T>,
}

/// A micro-kernel reading A in place ([`ARowsKernelFn`]) with its tile.
#[derive(Clone, Copy)]
pub struct ARowsKernel<T> {
    /// Rows of the register tile (row pointers per call).
    pub mr: usize,
    /// Columns of the register tile (the packed B panel's width).
    pub nr: usize,
    /// Steps per call, so that a B micro-panel (KC·NR) stays in L1.
    pub kc: usize,
    /// The kernel.
    pub run: ARowsKernelFn<T>,
    /// Packs rows transposed into its B panels (compiled for the same
    /// instruction set).
    pub pack: super::transpose::PanelFn<T>,
}

/// One tile's micro-kernels, one for each place A and B are read from:
/// the same sums, so the same bits.
pub struct Flavors<T> {
    /// A and B from packed micro-panels.
    pub packed: KernelFn<T>,
    /// A packed, B's rows read in place.
    pub b_rows: RowsKernelFn<T>,
    /// A's rows read in place, B packed.
    pub a_rows: ARowsKernelFn<T>,
    /// Both A's and B's rows read in place.
    pub ab_rows: ABRowsKernelFn<T>,
}

// Copy whatever T is (derive would ask T: Copy): the fields are pointers.
impl<T> Clone for Flavors<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Flavors<T> {}

/// A micro-kernel with its tile and cache-block sizes.
#[derive(Clone, Copy)]
pub struct MicroKernel<T> {
    /// Instruction set it needs.
    pub isa: Isa,
    /// Rows of the register tile.
    pub mr: usize,
    /// Columns of the register tile.
    pub nr: usize,
    /// Depth of a packed block (the KC loop).
    pub kc: usize,
    /// Rows of A per task (a multiple of `mr`).
    pub mc: usize,
    /// Columns of C per task (a multiple of `nr`).
    pub jb: usize,
    /// Columns of B packed at once (a multiple of `jb`).
    pub nc: usize,
    /// The kernels of the full tile.
    pub full: Flavors<T>,
    /// Columns per vector of the tile.
    pub lanes: usize,
    /// Kernels for a narrow last panel: `narrow[v]` computes only the
    /// first (v + 1)·`lanes` columns (same sums, no FMAs on padding), with
    /// B's steps still NR apart; the full kernel where NR is narrower.
    pub narrow: [Flavors<T>; 2],
    /// Kernels for a last panel of at most `lanes / 2` columns, on vectors
    /// half as wide (same sums), where there are some.
    pub half: Option<Flavors<T>>,
    /// Packs MR rows of A read in place (unit column stride) into an A
    /// panel by register transposes, where one fits MR (compiled for an
    /// instruction set the kernel's implies); else A is packed value by
    /// value.
    pub pack_a: Option<super::transpose::PanelFn<T>>,
    /// The rows kernel with masked B loads, for 1, 2 and NR/lanes vectors
    /// of columns (as `narrow`), where the instruction set has masked loads.
    pub masked: Option<[MaskedRowsKernelFn<T>; 3]>,
    /// Its twin reading every lane and clearing those off the masks, where
    /// there is a `masked`.
    pub zeroing: Option<[ZeroingRowsKernelFn<T>; 3]>,
}

/// Tallest tile (MR) of any [`MicroKernel`]: room for the row pointers of
/// the kernels reading A in place.
pub(crate) const MAX_MR: usize = 16;

/// Deepest row of A (bytes: 512 f32, 256 f64) that a product takes in one
/// KC block, whatever its KC: an A micro-panel of up to 9 such rows still
/// fits L1 (32 KB) with room for B's lines.
const ONE_BLOCK_ROW_BYTES: usize = 2048;

impl<T> MicroKernel<T> {
    /// Depth of the KC blocks of a product `k` deep: all of it where a row
    /// of A is at most [`ONE_BLOCK_ROW_BYTES`], which saves reading and
    /// writing C once more (the net's 3×3 forward, 288 deep: 1.02-1.03x;
    /// the 7×7 ResNet layer's weight-gradient product, 392 deep: 1.03x;
    /// 512² 1.01-1.02x); else KC.
    /// Every route, whatever its kernel's height, blocks by it: they agree
    /// bit for bit.
    pub fn depth_block(&self, k: usize) -> usize {
        if k * std::mem::size_of::<T>() <= ONE_BLOCK_ROW_BYTES {
            k.max(1)
        } else {
            self.kc
        }
    }

    /// The kernel for a tile of `cols` ≤ NR columns: the narrowest that
    /// covers them.
    pub fn for_cols(&self, cols: usize) -> KernelFn<T> {
        self.pick(cols).packed
    }

    /// [`Self::for_cols`] reading B in place.
    pub fn rows_for_cols(&self, cols: usize) -> RowsKernelFn<T> {
        self.pick(cols).b_rows
    }

    /// [`Self::for_cols`] reading A in place.
    pub fn a_rows_for_cols(&self, cols: usize) -> ARowsKernelFn<T> {
        self.pick(cols).a_rows
    }

    /// [`Self::for_cols`] reading both A and B in place.
    pub fn ab_rows_for_cols(&self, cols: usize) -> ABRowsKernelFn<T> {
        self.pick(cols).ab_rows
    }

    /// The masked rows kernel for a tile of `cols` ≤ NR columns, if any.
    pub fn masked_for_cols(&self, cols: usize) -> Option<MaskedRowsKernelFn<T>> {
        self.masked.map(|kernels| self.by_vectors(kernels, cols))
    }

    /// The zeroing rows kernel for a tile of `cols` ≤ NR columns, if any.
    pub fn zeroing_for_cols(&self, cols: usize) -> Option<ZeroingRowsKernelFn<T>> {
        self.zeroing.map(|kernels| self.by_vectors(kernels, cols))
    }

    /// Of kernels for 1, 2 and NR/lanes vectors, the one for `cols`.
    fn by_vectors<K>(&self, [one, two, full]: [K; 3], cols: usize) -> K {
        match cols.div_ceil(self.lanes) {
            0 | 1 => one,
            2 => two,
            _ => full,
        }
    }

    fn pick(&self, cols: usize) -> Flavors<T> {
        if let Some(half) = self.half.filter(|_| 2 * cols <= self.lanes) {
            return half;
        }
        self.by_vectors([self.narrow[0], self.narrow[1], self.full], cols)
    }
}

/// Picks the micro-kernel of an element type for an instruction set.
pub trait HasKernels: Sized {
    /// The best kernel usable with `isa` (falling back to narrower ones).
    fn kernel(isa: Isa) -> MicroKernel<Self>;

    /// The best kernel usable with `isa` for a product with B read in
    /// place and `m` rows of A: [`Self::kernel`], or one of another height
    /// where that pads fewer rows (the CS231n layer's 25 filters in 5-row
    /// panels, its 27 taps in 9-row ones, not 8-row ones). Its sums are
    /// those of [`Self::kernel`], bit for bit (a tile's shape does not
    /// change an element's sum).
    fn rows_kernel(isa: Isa, m: usize) -> MicroKernel<Self>;

    /// The best kernel reading A in place usable with `isa`, for a
    /// product over `taps` rows of A.
    fn a_rows_kernel(isa: Isa, taps: usize) -> ARowsKernel<Self>;

    /// The best dot-product kernel usable with `isa`.
    fn dot_kernel(isa: Isa) -> DotKernel<Self>;

    /// The best padded strided lines usable with `isa`.
    fn lines(isa: Isa) -> LinesFn<Self>;

    /// The best transposer into panels usable with `isa` (W×W register
    /// blocks of its vector width: any panel width that width divides,
    /// which every kernel's NR is).
    fn transposer(isa: Isa) -> super::transpose::PanelFn<Self>;

    /// The best slice add usable with `isa`.
    fn slice_add(isa: Isa) -> AddFn<Self>;

    /// The col2im line sums usable with `isa`, if it has them.
    fn col2im_lines(isa: Isa) -> Option<crate::col2im_lines::LineSumsFn<Self>>;

    /// Runs `f` with this thread's two packing buffers (see
    /// [`with_thread_buffers`]).
    fn with_pack_buffers<R>(f: impl FnOnce(&mut Vec<Self>, &mut Vec<Self>) -> R) -> R;
}

/// Runs a product's body `f` with packing buffers: when `parallel`, on a
/// pool worker with that worker's buffers ([`crate::threads::on_worker`]:
/// the body's parallel regions then start from inside the pool), else on
/// the calling thread with its own.
pub(crate) fn with_pack_buffers<T: HasKernels, R: Send>(
    parallel: bool,
    f: impl FnOnce(&mut Vec<T>, &mut Vec<T>) -> R + Send,
) -> R {
    if parallel {
        crate::threads::on_worker(|| T::with_pack_buffers(f))
    } else {
        T::with_pack_buffers(f)
    }
}

/// Lends `f` the calling thread's packing buffers, so that a GEMM allocates
/// (and page-faults) its packed panels once per thread, not once per call.
/// A re-entrant call (a rayon worker that steals another GEMM while it waits
/// inside one) finds the buffers in use and gets fresh ones.
fn with_thread_buffers<T, R>(
    key: &'static std::thread::LocalKey<std::cell::RefCell<(Vec<T>, Vec<T>)>>,
    f: impl FnOnce(&mut Vec<T>, &mut Vec<T>) -> R,
) -> R {
    key.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buffers) => {
            let (a, b) = &mut *buffers;
            f(a, b)
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

thread_local! {
    static F32_BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    static F64_BUFFERS: std::cell::RefCell<(Vec<f64>, Vec<f64>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

macro_rules! generic {
    (flavors $t:ty, $mr:literal, $nr:literal) => {
        Flavors {
            packed: super::kernel_generic::kernel::<$t, $mr, $nr>,
            b_rows: super::kernel_generic::kernel_rows::<$t, $mr, $nr>,
            a_rows: super::kernel_generic::kernel_a_rows::<$t, $mr, $nr>,
            ab_rows: super::kernel_generic::kernel_ab_rows::<$t, $mr, $nr>,
        }
    };
    ($t:ty, $mr:literal, $nr:literal) => {
        MicroKernel {
            isa: Isa::Scalar,
            mr: $mr,
            nr: $nr,
            kc: 256,
            mc: 64,
            jb: 128,
            nc: 4096,
            full: generic!(flavors $t, $mr, $nr),
            lanes: $nr,
            narrow: [generic!(flavors $t, $mr, $nr); 2],
            pack_a: None,
            masked: None,
            zeroing: None,
            half: None,
        }
    };
}

/// The [`Flavors`] of a SIMD kernel `$used` vectors wide, from the
/// kernels `simd_kernel!` made in `$module`.
macro_rules! flavors {
    ($module:ident::{$kernel:ident, $rows:ident, $a_rows:ident, $ab_rows:ident}, $used:literal) => {
        Flavors {
            packed: super::$module::$kernel::<$used>,
            b_rows: super::$module::$rows::<$used>,
            a_rows: super::$module::$a_rows::<$used>,
            ab_rows: super::$module::$ab_rows::<$used>,
        }
    };
}

/// A SIMD [`MicroKernel`] from the kernels `simd_kernel!` made in
/// `$module` (B read packed, B read in place, A read in place, both read
/// in place), `$nv` vectors of `$lanes` per step (`$nv` ≥ 2).
macro_rules! simd {
    ($isa:expr, mr: $mr:literal, nv: $nv:literal, lanes: $lanes:literal, [$mc:literal, $jb:literal, $nc:literal], $module:ident::{$kernel:ident, $rows:ident, $a_rows:ident, $ab_rows:ident, $masked:ident, $zeroing:ident}, pack_a: $pack_a:expr) => {
        MicroKernel {
            masked: Some([
                super::$module::$masked::<1>,
                super::$module::$masked::<2>,
                super::$module::$masked::<$nv>,
            ]),
            zeroing: Some([
                super::$module::$zeroing::<1>,
                super::$module::$zeroing::<2>,
                super::$module::$zeroing::<$nv>,
            ]),
            ..simd!($isa, mr: $mr, nv: $nv, lanes: $lanes, [$mc, $jb, $nc], $module::{$kernel, $rows, $a_rows, $ab_rows}, pack_a: $pack_a)
        }
    };
    ($isa:expr, mr: $mr:literal, nv: $nv:literal, lanes: $lanes:literal, [$mc:literal, $jb:literal, $nc:literal], $module:ident::{$kernel:ident, $rows:ident, $a_rows:ident, $ab_rows:ident}, pack_a: $pack_a:expr) => {
        MicroKernel {
            isa: $isa,
            mr: $mr,
            nr: $nv * $lanes,
            kc: 256,
            mc: $mc,
            jb: $jb,
            nc: $nc,
            full: flavors!($module::{$kernel, $rows, $a_rows, $ab_rows}, $nv),
            lanes: $lanes,
            narrow: [
                flavors!($module::{$kernel, $rows, $a_rows, $ab_rows}, 1),
                flavors!($module::{$kernel, $rows, $a_rows, $ab_rows}, 2),
            ],
            pack_a: $pack_a,
            masked: None,
            zeroing: None,
            half: None,
        }
    };
}

macro_rules! a_rows {
    ($mr:literal, $nr:literal, $run:expr, $pack:expr) => {
        ARowsKernel {
            mr: $mr,
            nr: $nr,
            kc: 256,
            run: $run,
            pack: $pack,
        }
    };
}

impl HasKernels for f32 {
    fn dot_kernel(isa: Isa) -> DotKernel<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => DotKernel {
                fb: 5,
                tb: 5,
                lanes: 16,
                run: super::kernel_avx512::f32_dot_5x5,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => DotKernel {
                fb: 3,
                tb: 3,
                lanes: 8,
                run: super::kernel_avx2::f32_dot_3x3,
            },
            _ => DotKernel {
                fb: 4,
                tb: 4,
                lanes: 1,
                run: super::dot_kernel::dot_generic::<f32, 4, 4>,
            },
        }
    }

    fn slice_add(isa: Isa) -> AddFn<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::gather::add_f32_avx512,
            _ => super::gather::add_generic::<f32>,
        }
    }

    fn col2im_lines(isa: Isa) -> Option<crate::col2im_lines::LineSumsFn<f32>> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(crate::col2im_lines::line_sums_f32_avx512),
            _ => None,
        }
    }

    fn transposer(isa: Isa) -> super::transpose::PanelFn<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::transpose::panel_f32_avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => super::transpose::panel_f32_avx2,
            _ => super::transpose::panel_generic::<f32>,
        }
    }

    fn lines(isa: Isa) -> LinesFn<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::gather::lines_f32_avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => super::gather_avx2::lines_f32_avx2,
            _ => super::gather::lines_generic::<f32>,
        }
    }

    fn a_rows_kernel(isa: Isa, taps: usize) -> ARowsKernel<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                // 14 rows where they pad fewer taps than 12 (CS231n's 27:
                // two panels, not three; 1.02-1.09x on its backward pass),
                // else 12 (0.97-0.99x with 14 on 576 and 256 taps).
                if pads_less(14, 12, taps) {
                    a_rows!(
                        14,
                        32,
                        super::kernel_avx512::f32_14x32_a_rows::<2>,
                        super::transpose::panel_f32_avx512
                    )
                } else {
                    a_rows!(
                        12,
                        32,
                        super::kernel_avx512::f32_12x32_a_rows::<2>,
                        super::transpose::panel_f32_avx512
                    )
                }
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => a_rows!(
                6,
                16,
                super::kernel_avx2::f32_6x16_a_rows::<2>,
                super::transpose::panel_f32_avx2
            ),
            _ => a_rows!(
                4,
                8,
                super::kernel_generic::kernel_a_rows::<f32, 4, 8>,
                super::transpose::panel_generic::<f32>
            ),
        }
    }

    fn with_pack_buffers<R>(f: impl FnOnce(&mut Vec<f32>, &mut Vec<f32>) -> R) -> R {
        with_thread_buffers(&F32_BUFFERS, f)
    }

    fn rows_kernel(isa: Isa, m: usize) -> MicroKernel<f32> {
        match (isa, least_padding(m)) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 9) => {
                simd!(isa, mr: 9, nv: 3, lanes: 16, [144, 288, 4608], kernel_avx512::{f32_9x48, f32_9x48_rows, f32_9x48_a_rows, f32_9x48_ab_rows, f32_9x48_masked, f32_9x48_zeroing}, pack_a: None)
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 5) => {
                simd!(isa, mr: 5, nv: 5, lanes: 16, [145, 320, 4480], kernel_avx512::{f32_5x80, f32_5x80_rows, f32_5x80_a_rows, f32_5x80_ab_rows, f32_5x80_masked, f32_5x80_zeroing}, pack_a: None)
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2Fma, _) if avx2_five_rows(m) => {
                simd!(isa, mr: 5, nv: 2, lanes: 8, [120, 256, 4096], kernel_avx2::{f32_5x16, f32_5x16_rows, f32_5x16_a_rows, f32_5x16_ab_rows, f32_5x16_masked, f32_5x16_zeroing}, pack_a: None)
            }
            _ => Self::kernel(isa),
        }
    }

    fn kernel(isa: Isa) -> MicroKernel<f32> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => MicroKernel {
                half: Some(
                    flavors!(kernel_avx512::{f32_8x48_half, f32_8x48_half_rows, f32_8x48_half_a_rows, f32_8x48_half_ab_rows}, 1),
                ),
                ..simd!(isa, mr: 8, nv: 3, lanes: 16, [144, 288, 4608], kernel_avx512::{f32_8x48, f32_8x48_rows, f32_8x48_a_rows, f32_8x48_ab_rows, f32_8x48_masked, f32_8x48_zeroing}, pack_a: Some(super::transpose::panel_f32_avx2))
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                simd!(isa, mr: 6, nv: 2, lanes: 8, [120, 256, 4096], kernel_avx2::{f32_6x16, f32_6x16_rows, f32_6x16_a_rows, f32_6x16_ab_rows, f32_6x16_masked, f32_6x16_zeroing}, pack_a: None)
            }
            _ => generic!(f32, 4, 8),
        }
    }
}

impl HasKernels for f64 {
    fn dot_kernel(isa: Isa) -> DotKernel<f64> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => DotKernel {
                fb: 5,
                tb: 5,
                lanes: 8,
                run: super::kernel_avx512::f64_dot_5x5,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => DotKernel {
                fb: 3,
                tb: 3,
                lanes: 4,
                run: super::kernel_avx2::f64_dot_3x3,
            },
            _ => DotKernel {
                fb: 4,
                tb: 4,
                lanes: 1,
                run: super::dot_kernel::dot_generic::<f64, 4, 4>,
            },
        }
    }

    fn slice_add(isa: Isa) -> AddFn<f64> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::gather::add_f64_avx512,
            _ => super::gather::add_generic::<f64>,
        }
    }

    fn col2im_lines(isa: Isa) -> Option<crate::col2im_lines::LineSumsFn<f64>> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(crate::col2im_lines::line_sums_f64_avx512),
            _ => None,
        }
    }

    fn transposer(isa: Isa) -> super::transpose::PanelFn<f64> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::transpose::panel_f64_avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => super::transpose::panel_f64_avx2,
            _ => super::transpose::panel_generic::<f64>,
        }
    }

    fn lines(isa: Isa) -> LinesFn<f64> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => super::gather::lines_f64_avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => super::gather_avx2::lines_f64_avx2,
            _ => super::gather::lines_generic::<f64>,
        }
    }

    fn a_rows_kernel(isa: Isa, _taps: usize) -> ARowsKernel<f64> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => a_rows!(
                12,
                16,
                super::kernel_avx512::f64_12x16_a_rows::<2>,
                super::transpose::panel_f64_avx512
            ),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => a_rows!(
                6,
                8,
                super::kernel_avx2::f64_6x8_a_rows::<2>,
                super::transpose::panel_f64_avx2
            ),
            _ => a_rows!(
                4,
                4,
                super::kernel_generic::kernel_a_rows::<f64, 4, 4>,
                super::transpose::panel_generic::<f64>
            ),
        }
    }

    fn with_pack_buffers<R>(f: impl FnOnce(&mut Vec<f64>, &mut Vec<f64>) -> R) -> R {
        with_thread_buffers(&F64_BUFFERS, f)
    }

    fn rows_kernel(isa: Isa, m: usize) -> MicroKernel<f64> {
        match (isa, least_padding(m)) {
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 9) => {
                simd!(isa, mr: 9, nv: 3, lanes: 8, [144, 288, 4608], kernel_avx512::{f64_9x24, f64_9x24_rows, f64_9x24_a_rows, f64_9x24_ab_rows, f64_9x24_masked, f64_9x24_zeroing}, pack_a: None)
            }
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx512, 5) => {
                simd!(isa, mr: 5, nv: 5, lanes: 8, [145, 320, 4480], kernel_avx512::{f64_5x40, f64_5x40_rows, f64_5x40_a_rows, f64_5x40_ab_rows, f64_5x40_masked, f64_5x40_zeroing}, pack_a: None)
            }
            _ => Self::kernel(isa),
        }
    }

    fn kernel(isa: Isa) -> MicroKernel<f64> {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => MicroKernel {
                half: Some(
                    flavors!(kernel_avx512::{f64_8x24_half, f64_8x24_half_rows, f64_8x24_half_a_rows, f64_8x24_half_ab_rows}, 1),
                ),
                ..simd!(isa, mr: 8, nv: 3, lanes: 8, [144, 288, 4608], kernel_avx512::{f64_8x24, f64_8x24_rows, f64_8x24_a_rows, f64_8x24_ab_rows, f64_8x24_masked, f64_8x24_zeroing}, pack_a: Some(super::transpose::panel_f64_avx512))
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                simd!(isa, mr: 6, nv: 2, lanes: 4, [120, 256, 4096], kernel_avx2::{f64_6x8, f64_6x8_rows, f64_6x8_a_rows, f64_6x8_ab_rows, f64_6x8_masked, f64_6x8_zeroing}, pack_a: None)
            }
            _ => generic!(f64, 4, 4),
        }
    }
}

/// Whether `m` rows in panels of `tall` rows pad fewer rows than in
/// panels of `short` rows.
fn pads_less(tall: usize, short: usize, m: usize) -> bool {
    m.div_ceil(tall) * tall < m.div_ceil(short) * short
}

/// The AVX-512 tile height (8, 9 or 5) that pads `m` rows least, 8 where
/// it ties. Measured against 8×48 on f32 convolutions (alternated call by
/// call): 5×80 1.04-1.39× where it pads fewer rows (10-30 filters), but
/// 0.86× on 40 filters, where both pad none; on CS231n's 25 filters 5×80
/// beat 9×48 by 1.07-1.11×; the CS231n forward pass 1.09-1.11×, its
/// backward 1.01-1.04× (dx's 27 taps in 9-row panels). In f64 (5×40,
/// 9×24 against 8×24): CS231n forward 1.12×, backward 1.04-1.11×, 20
/// filters on the 64-channel layer 1.15×.
fn least_padding(m: usize) -> usize {
    [8, 9, 5]
        .into_iter()
        .fold(8, |best, mr| if pads_less(mr, best, m) { mr } else { best })
}

/// Whether AVX2's 5×16 tiles beat its 6×16 ones on `m` rows of A: where
/// they compute at least a 20th fewer rows. Alternated call by call
/// (forced AVX2, the Intel machine): CS231n's forward pass (25 filters:
/// 25 rows against 30) 1.12-1.15× on one thread, 1.21-1.29× on two; where
/// both pad alike 5×16 is slower (64 filters 0.97×, 32 filters
/// 0.96-0.98×, one thread: 10 FMAs a step against 12).
fn avx2_five_rows(m: usize) -> bool {
    20 * m.div_ceil(5) * 5 <= 19 * m.div_ceil(6) * 6
}

/// The kernel for a product with B read in place and `m` rows of A
/// ([`HasKernels::rows_kernel`]), of the same instruction set.
pub(crate) fn selected_rows<T: Element>(m: usize) -> MicroKernel<T> {
    T::rows_kernel(crate::isa::selected(), m)
}

/// The kernel the GEMM uses for `T`: the process-wide choice of
/// [`crate::isa::selected`].
pub(crate) fn selected<T: Element>() -> MicroKernel<T> {
    T::kernel(crate::isa::selected())
}

/// The transposer into panels for `T`, of the same instruction set.
pub(crate) fn selected_transposer<T: Element>() -> super::transpose::PanelFn<T> {
    T::transposer(crate::isa::selected())
}

/// The padded strided lines for `T`, of the same instruction set.
pub(crate) fn selected_lines<T: Element>() -> LinesFn<T> {
    T::lines(crate::isa::selected())
}

/// The slice add for `T`, of the same instruction set.
pub(crate) fn selected_add<T: Element>() -> AddFn<T> {
    T::slice_add(crate::isa::selected())
}

/// The kernel reading A in place for `T` over `taps` rows of A, of the
/// same instruction set.
pub(crate) fn selected_a_rows<T: Element>(taps: usize) -> ARowsKernel<T> {
    T::a_rows_kernel(crate::isa::selected(), taps)
}

/// The dot-product kernel for `T`, of the same instruction set.
pub(crate) fn selected_dot<T: Element>() -> DotKernel<T> {
    T::dot_kernel(crate::isa::selected())
}
