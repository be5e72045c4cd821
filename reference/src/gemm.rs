//! Matrix product, the ground truth of the kernels crate's GEMM.

use crate::Real;
use ndarray::{Array2, ArrayView2};

/// `alpha · A · B + beta · C` by the triple loop, with A (M, K), B (K, N),
/// C (M, N). As in BLAS, when `beta` is 0 C is not read (a NaN in C does not
/// propagate).
///
/// # Panics
/// If the inner dimensions or C's shape disagree.
pub fn gemm<T: Real>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    c: ArrayView2<'_, T>,
) -> Array2<T> {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert_eq!(
        b.nrows(),
        k,
        "b: expected {k} rows (A's columns), got {}",
        b.nrows()
    );
    assert_eq!(
        c.dim(),
        (m, n),
        "c: expected shape {:?}, got {:?}",
        (m, n),
        c.dim()
    );
    Array2::from_shape_fn((m, n), |(i, j)| {
        let mut acc = T::ZERO;
        for p in 0..k {
            acc += a[[i, p]] * b[[p, j]];
        }
        if beta == T::ZERO {
            alpha * acc
        } else {
            alpha * acc + beta * c[[i, j]]
        }
    })
}
