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
    let mut acc = [[T::ZERO; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (v, &bj) in row.iter_mut().zip(bp) {
                *v = ai.mul_add(bj, *v);
            }
        }
    }
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
