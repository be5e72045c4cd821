//! Affine (fully connected) layer: `out = reshape(x, (N, D)) · w + b`.

use crate::Real;
use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, ArrayViewD, IxDyn};

/// Number of features per example of `x` (the product of its trailing axes).
fn features(x: &ArrayViewD<'_, impl Real>) -> usize {
    x.shape()[1..].iter().product()
}

fn check_affine_shapes<T: Real>(x: &ArrayViewD<'_, T>, w: &ArrayView2<'_, T>) {
    assert!(
        x.ndim() >= 2,
        "x: expected rank >= 2 (N, d1, ..., dk), got shape {:?}",
        x.shape()
    );
    let d = features(x);
    assert_eq!(
        w.nrows(),
        d,
        "w: expected {d} rows (the product of x's trailing axes), got shape {:?}",
        w.shape()
    );
}

/// Affine forward pass.
///
/// `x` has shape (N, d1, ..., dk) and is read as N rows of D = d1·…·dk
/// features; `w` is (D, M), `b` is (M,). Returns (N, M) with
/// `out[i, j] = Σ_d x[i, d] · w[d, j] + b[j]`.
///
/// # Panics
/// If `x` has rank < 2, `w` does not have D rows, or `b` does not have M
/// elements.
pub fn affine_forward<T: Real>(
    x: ArrayViewD<'_, T>,
    w: ArrayView2<'_, T>,
    b: ArrayView1<'_, T>,
) -> Array2<T> {
    check_affine_shapes(&x, &w);
    let (n, d, m) = (x.shape()[0], w.nrows(), w.ncols());
    assert_eq!(b.len(), m, "b: expected {m} elements, got {}", b.len());
    let rows: Vec<T> = x.iter().copied().collect();
    let mut out = Array2::from_elem((n, m), T::ZERO);
    for i in 0..n {
        for j in 0..m {
            let mut acc = T::ZERO;
            for k in 0..d {
                acc += rows[i * d + k] * w[[k, j]];
            }
            out[[i, j]] = acc + b[j];
        }
    }
    out
}

/// Affine backward pass: returns `(dx, dw, db)`.
///
/// `dx = dout · wᵀ` reshaped to x's shape, `dw = xᵀ · dout` (x as N×D),
/// `db[j] = Σ_i dout[i, j]`.
///
/// # Panics
/// If the shapes are not those of [`affine_forward`], or `dout` is not (N, M).
pub fn affine_backward<T: Real>(
    dout: ArrayView2<'_, T>,
    x: ArrayViewD<'_, T>,
    w: ArrayView2<'_, T>,
) -> (ArrayD<T>, Array2<T>, Array1<T>) {
    check_affine_shapes(&x, &w);
    let (n, d, m) = (x.shape()[0], w.nrows(), w.ncols());
    assert_eq!(
        dout.shape(),
        &[n, m],
        "dout: expected shape [{n}, {m}], got {:?}",
        dout.shape()
    );
    let rows: Vec<T> = x.iter().copied().collect();
    let mut dx = vec![T::ZERO; n * d];
    let mut dw = Array2::from_elem((d, m), T::ZERO);
    let mut db = Array1::from_elem(m, T::ZERO);
    for i in 0..n {
        for k in 0..d {
            let mut acc = T::ZERO;
            for j in 0..m {
                acc += dout[[i, j]] * w[[k, j]];
            }
            dx[i * d + k] = acc;
        }
    }
    for k in 0..d {
        for j in 0..m {
            let mut acc = T::ZERO;
            for i in 0..n {
                acc += rows[i * d + k] * dout[[i, j]];
            }
            dw[[k, j]] = acc;
        }
    }
    for j in 0..m {
        for i in 0..n {
            db[j] += dout[[i, j]];
        }
    }
    let dx = ArrayD::from_shape_vec(IxDyn(x.shape()), dx).expect("dx has x's element count");
    (dx, dw, db)
}
