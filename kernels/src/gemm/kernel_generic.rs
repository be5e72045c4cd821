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
    let (a, offsets) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * MR),
            std::slice::from_raw_parts(offsets, kc),
        )
    };
    let steps = a.chunks_exact(MR).zip(offsets.iter().map(|&o| {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(b.offset(o), NR) }
    }));
    let acc = accumulate::<T, MR, NR>(steps);
    // SAFETY: forwarded from the caller.
    unsafe { store(&acc, c, rsc, csc, rows, cols, alpha, beta) };
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
    let (a_rows, b) = unsafe {
        (
            std::slice::from_raw_parts(a_rows, MR),
            std::slice::from_raw_parts(b, kc * NR),
        )
    };
    // SAFETY: as above.
    let a_rows: [&[T]; MR] = std::array::from_fn(|i| unsafe { std::slice::from_raw_parts(a_rows[i], kc) });
    let steps = (0..kc).map(|p| std::array::from_fn::<T, MR, _>(|i| a_rows[i][p]));
    let acc = accumulate::<T, MR, NR>(steps.zip(b.chunks_exact(NR)));
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
    let (a_rows, offsets) = unsafe {
        (
            std::slice::from_raw_parts(a_rows, MR),
            std::slice::from_raw_parts(offsets, kc),
        )
    };
    // SAFETY: as above.
    let a_rows: [&[T]; MR] = std::array::from_fn(|i| unsafe { std::slice::from_raw_parts(a_rows[i], kc) });
    let steps = (0..kc).map(|p| std::array::from_fn::<T, MR, _>(|i| a_rows[i][p]));
    let b_rows = offsets.iter().map(|&o| {
        // SAFETY: as above.
        unsafe { std::slice::from_raw_parts(b.offset(o), NR) }
    });
    let acc = accumulate::<T, MR, NR>(steps.zip(b_rows));
    // SAFETY: forwarded from the caller.
    unsafe { store(&acc, c, rsc, csc, rows, cols, alpha, beta) };
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
