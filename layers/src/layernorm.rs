//! Layer normalisation on x (N, D): each row is normalised with its own mean
//! and biased variance, then `out = γ·x̂ + β` with γ, β of shape (D,). Train
//! and test behave the same. Rows are independent and run in parallel.
//!
//! ```text
//! x̂_ij = (x_ij − μ_i) / √(σ²_i + eps)
//! dx_i = ivar_i/D · (D·g_i − Σ_j g_ij − x̂_i·Σ_j g_ij·x̂_ij),   g = dout·γ
//! ```
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::layernorm;
//! let x = array![[1.0f64, 3.0], [10.0, 10.0]];
//! let (out, cache) = layernorm::forward(x.view(), array![1.0, 1.0].view(), array![0.0, 0.5].view(), 1e-5)?;
//! assert!((out[[0, 0]] + 1.0).abs() < 1e-4 && out[[1, 1]] == 0.5);
//! let grads = layernorm::backward(array![[1.0, 1.0], [1.0, 1.0]].view(), &cache)?;
//! assert_eq!(grads.dbeta, array![2.0, 2.0]); // (D,), not the seed's (1, D)
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::stats::{closed_form_dx, grad_sums, inv_std, moments};
use crate::{check, Element, Error, NormGrads, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};

/// What [`backward`] needs: x̂, 1/√(σ²+eps) per row, and γ.
#[derive(Clone, Debug)]
pub struct LayerNormCache<T> {
    xhat: Array2<T>,
    ivar: Array1<T>,
    gamma: Array1<T>,
}

/// Forward pass.
///
/// # Errors
/// [`Error::Shape`] if D = 0 or gamma/beta are not (D,);
/// [`Error::Parameter`] if eps is negative or not finite.
pub fn forward<T: Element>(
    x: ArrayView2<'_, T>,
    gamma: ArrayView1<'_, T>,
    beta: ArrayView1<'_, T>,
    eps: T,
) -> Result<(Array2<T>, LayerNormCache<T>)> {
    let (n, d) = x.dim();
    if d == 0 {
        return Err(Error::shape("x", "[N, D >= 1]", x.shape()));
    }
    check::shape("gamma", gamma.shape(), &[d])?;
    check::shape("beta", beta.shape(), &[d])?;
    check::non_negative("eps", eps)?;
    let mut xhat = Array2::zeros((n, d));
    let mut ivar = Array1::zeros(n);
    let mut out = Array2::zeros((n, d));
    Zip::from(x.rows())
        .and(xhat.rows_mut())
        .and(out.rows_mut())
        .and(&mut ivar)
        .par_for_each(|x, mut xh, mut o, iv| {
            let (mean, var) = moments(x.iter().copied(), d);
            *iv = inv_std(var, eps);
            for j in 0..d {
                xh[j] = (x[j] - mean) * *iv;
                o[j] = gamma[j] * xh[j] + beta[j];
            }
        });
    Ok((
        out,
        LayerNormCache {
            xhat,
            ivar,
            gamma: gamma.to_owned(),
        },
    ))
}

/// Backward pass; dgamma and dbeta have shape (D,).
///
/// # Errors
/// [`Error::Shape`] if dout is not x's shape.
pub fn backward<T: Element>(
    dout: ArrayView2<'_, T>,
    cache: &LayerNormCache<T>,
) -> Result<NormGrads<T, ndarray::Ix2>> {
    check::shape("dout", dout.shape(), cache.xhat.shape())?;
    let d = cache.xhat.ncols();
    let m = T::from_usize(d);
    let gamma = &cache.gamma;
    let mut dx = Array2::zeros(cache.xhat.raw_dim());
    Zip::from(dx.rows_mut())
        .and(dout.rows())
        .and(cache.xhat.rows())
        .and(&cache.ivar)
        .par_for_each(|mut dx, dout, xhat, &ivar| {
            let sums = grad_sums(dout.iter().zip(gamma).map(|(&d, &g)| d * g), xhat.iter().copied());
            for j in 0..d {
                dx[j] = closed_form_dx(dout[j] * gamma[j], xhat[j], ivar, m, sums);
            }
        });
    let dgamma = (&dout * &cache.xhat).sum_axis(Axis(0));
    let dbeta = dout.sum_axis(Axis(0));
    Ok(NormGrads { dx, dgamma, dbeta })
}
