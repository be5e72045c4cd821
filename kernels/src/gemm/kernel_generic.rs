//! The portable micro-kernel: plain Rust over an MR×NR array of
//! accumulators. The fallback on every target, and the path
//! `PATCHWISE_FORCE_ISA=scalar` tests.

use crate::Element;

/// See [`super::kernel::KernelFn`].
///
/// # Safety
/// As [`super::kernel::KernelFn`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel<T: Element, const MR: usize, const NR: usize>(
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
) {
    // SAFETY: the caller guarantees kc·MR values at `a` and kc·NR at `b`.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let acc = accumulate::<T, MR, NR>(a.chunks_exact(MR).zip(b.chunks_exact(NR)));
    // SAFETY: forwarded from the caller.
    unsafe { store(&acc, c, rsc, csc, rows, cols, alpha, beta) };
}

/// See [`super::kernel::RowsKernelFn`].
///
/// # Safety
/// As [`super::kernel::RowsKernelFn`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_rows<T: Element, const MR: usize, const NR: usize>(
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
) {
    // SAFETY: the caller guarantees kc·MR values at `a`, kc offsets, and NR
    // values at `b + offsets[p]` for every p < kc.
    let (a, b_rows) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            b_rows::<T, NR>(b, offsets, kc),
        )
    };
    let acc = accumulate::<T, MR, NR>(a.chunks_exact(MR).zip(b_rows));
    // SAFETY: forwarded from the caller.
    unsafe { store(&acc, c, rsc, csc, rows, cols, alpha, beta) };
    if !bias.is_null() {
        for i in 0..rows {
            for j in 0..cols {
                // SAFETY: (i, j) lies in the caller's tile; bias holds
                // `rows` values (the caller's).
                unsafe { *c.offset(i as isize * rsc + j as isize * csc) += *bias.add(i) };
            }
        }
    }
}

/// See [`super::kernel::ARowsKernelFn`].
///
/// # Safety
/// As [`super::kernel::ARowsKernelFn`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_a_rows<T: Element, const MR: usize, const NR: usize>(
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
) {
    // SAFETY: the caller guarantees MR row pointers, kc values at each, and
    // kc·NR values at `b`.
    let (a_steps, b) = unsafe {
        (
            a_steps::<T, MR>(a_rows, kc),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    let acc = accumulate::<T, MR, NR>(a_steps.zip(b.chunks_exact(NR)));
    // SAFETY: forwarded from the caller.
    unsafe { store(&acc, c, rsc, csc, rows, cols, alpha, beta) };
}

/// See [`super::kernel::ABRowsKernelFn`].
///
/// # Safety
/// As [`super::kernel::ABRowsKernelFn`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn kernel_ab_rows<T: Element, const MR: usize, const NR: usize>(
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
) {
    // SAFETY: the caller guarantees MR row pointers with kc values each, kc
    // offsets, and NR values at `b + offsets[p]` for every p < kc.
    let (a_steps, b_rows) = unsafe { (a_steps::<T, MR>(a_rows, kc), b_rows::<T, NR>(b, offsets, kc)) };
    let acc = accumulate::<T, MR, NR>(a_steps.zip(b_rows));
    // SAFETY: forwarded from the caller.
    unsafe { store(&acc, c, rsc, csc, rows, cols, alpha, beta) };
}

/// Step p's MR values of A, `a_rows[i][p]`, for p < kc.
///
/// # Safety
/// `a_rows` must point to MR row pointers, each to `kc` readable values,
/// for as long as the steps are read.
unsafe fn a_steps<'a, T: Element + 'a, const MR: usize>(
    a_rows: *const *const T,
    kc: usize,
) -> impl Iterator<Item = [T; MR]> + 'a {
    // SAFETY: as the caller guarantees.
    let rows: [&[T]; MR] = std::array::from_fn(|i| unsafe { std::slice::from_raw_parts(*a_rows.add(i), kc) });
    (0..kc).map(move |p| std::array::from_fn(|i| rows[i][p]))
}

/// Step p's NR values of B, at `b + offsets[p]`, for p < kc.
///
/// # Safety
/// `offsets` must point to `kc` offsets and `b + offsets[p]` to NR
/// readable values for every p < kc, for as long as the steps are read.
unsafe fn b_rows<'a, T: Element + 'a, const NR: usize>(
    b: *const T,
    offsets: *const isize,
    kc: usize,
) -> impl Iterator<Item = &'a [T]> + 'a {
    // SAFETY: as the caller guarantees.
    let offsets = unsafe { std::slice::from_raw_parts(offsets, kc) };
    // SAFETY: as the caller guarantees.
    offsets
        .iter()
        .map(move |&o| unsafe { std::slice::from_raw_parts(b.offset(o), NR) })
}

/// The MR×NR sums of `a[i]·b[j]` over the steps, in order.
fn accumulate<'a, T: Element, const MR: usize, const NR: usize>(
    steps: impl Iterator<Item = (impl AsRef<[T]>, &'a [T])>,
) -> [[T; NR]; MR] {
    let mut acc = [[T::ZERO; NR]; MR];
    for (ap, bp) in steps {
        for (row, &ai) in acc.iter_mut().zip(ap.as_ref()) {
            for (v, &bj) in row.iter_mut().zip(bp) {
                *v = ai.mul_add(bj, *v);
            }
        }
    }
    acc
}

/// `C ← alpha·acc + beta·C` on the rows × cols tile (C not read when beta
/// is 0).
///
/// # Safety
/// `c` with strides (`rsc`, `csc`) must address a writable rows × cols tile.
#[allow(clippy::too_many_arguments)]
unsafe fn store<T: Element, const MR: usize, const NR: usize>(
    acc: &[[T; NR]; MR],
    c: *mut T,
    rsc: isize,
    csc: isize,
    rows: usize,
    cols: usize,
    alpha: T,
    beta: T,
) {
    for (i, row) in acc.iter().enumerate().take(rows) {
        for (j, &v) in row.iter().enumerate().take(cols) {
            // SAFETY: (i, j) lies in the caller's rows × cols tile.
            unsafe {
                let p = c.offset(i as isize * rsc + j as isize * csc);
                *p = if beta == T::ZERO {
                    alpha * v
                } else {
                    alpha * v + beta * *p
                };
            }
        }
    }
}
