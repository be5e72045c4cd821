//! Affine (fully connected) layer.
//!
//! x (N, d1, …, dk) is read as N rows of D = d1·…·dk features; w is (D, M),
//! b is (M,):
//!
//! ```text
//! out = X·w + b                 (N, M)
//! dx  = dout·wᵀ  (reshaped to x's shape),   dw = Xᵀ·dout,   db = Σ_rows dout
//! ```
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::affine;
//! let x = array![[1.0f64, 2.0], [3.0, 4.0]].into_dyn();
//! let w = array![[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]];
//! let b = array![0.5, 0.5, 0.5];
//! let (out, cache) = affine::forward(x.view(), w.view(), b.view())?;
//! assert_eq!(out, array![[1.5, 2.5, 3.5], [3.5, 4.5, 7.5]]);
//! let grads = affine::backward(ndarray::Array2::ones((2, 3)).view(), &cache)?;
//! assert_eq!(grads.db, array![2.0, 2.0, 2.0]);
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::check;
use crate::{Element, Error, Result};
use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, ArrayViewD, Axis};
use patchwise_kernels::{checked_product, gemm};

/// What [`backward`] needs from [`forward`]: the input rows and the weights.
#[derive(Clone, Debug)]
pub struct AffineCache<T> {
    x_shape: Vec<usize>,
    x_rows: Array2<T>,
    w: Array2<T>,
}

/// Gradients of the affine layer, each of its input's shape.
#[derive(Clone, Debug)]
pub struct AffineGrads<T> {
    /// ∂L/∂x, shape of x.
    pub dx: ArrayD<T>,
    /// ∂L/∂w, (D, M).
    pub dw: Array2<T>,
    /// ∂L/∂b, (M,).
    pub db: Array1<T>,
}

/// Forward pass: `out = X·w + b`.
///
/// # Errors
/// [`Error::Shape`] if x has rank < 2, w does not have D rows, or b does not
/// have M elements.
pub fn forward<T: Element>(
    x: ArrayViewD<'_, T>,
    w: ArrayView2<'_, T>,
    b: ArrayView1<'_, T>,
) -> Result<(Array2<T>, AffineCache<T>)> {
    if x.ndim() < 2 {
        return Err(Error::shape("x", "[N, d1, ..., dk] (rank >= 2)", x.shape()));
    }
    let n = x.shape()[0];
    let d = checked_product("x features", &x.shape()[1..])?;
    let m = w.ncols();
    check::shape("w", w.shape(), &[d, m])?;
    check::shape("b", b.shape(), &[m])?;
    let x_rows = Array2::from_shape_vec((n, d), x.iter().copied().collect()).expect("N·D elements");
    // Start from b in every row and accumulate X·w onto it (beta = 1).
    let mut out = b.broadcast((n, m)).expect("b has M elements").to_owned();
    gemm(T::ONE, x_rows.view(), w, T::ONE, out.view_mut())?;
    let cache = AffineCache {
        x_shape: x.shape().to_vec(),
        x_rows,
        w: w.to_owned(),
    };
    Ok((out, cache))
}

/// Backward pass.
///
/// # Errors
/// [`Error::Shape`] if dout is not (N, M).
pub fn backward<T: Element>(dout: ArrayView2<'_, T>, cache: &AffineCache<T>) -> Result<AffineGrads<T>> {
    let (n, d) = cache.x_rows.dim();
    let m = cache.w.ncols();
    check::shape("dout", dout.shape(), &[n, m])?;
    let mut dx = Array2::zeros((n, d));
    gemm(T::ONE, dout, cache.w.t(), T::ZERO, dx.view_mut())?;
    let mut dw = Array2::zeros((d, m));
    gemm(T::ONE, cache.x_rows.t(), dout, T::ZERO, dw.view_mut())?;
    let db = dout.sum_axis(Axis(0));
    let dx = dx
        .into_shape_with_order(cache.x_shape.clone())
        .expect("N·D elements");
    Ok(AffineGrads { dx, dw, db })
}
