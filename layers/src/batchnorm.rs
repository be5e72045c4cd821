//! Batch normalisation on x (N, D).
//!
//! Train: each feature (column) j is normalised with its batch mean μ_j and
//! biased variance σ²_j, then scaled and shifted; the running averages are
//! updated with momentum. Test: the running averages are used instead.
//!
//! ```text
//! x̂ = (x − μ) / √(σ² + eps)        out = γ·x̂ + β
//! running_mean ← momentum·running_mean + (1 − momentum)·μ      (likewise var)
//! ```
//!
//! [`backward`] propagates through the computation graph node by node;
//! [`backward_alt`] uses the simplified closed form
//! `dx = γ/(N·√(σ²+eps)) · (N·dout − Σdout − x̂·Σdout·x̂)`. Both agree.
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::batchnorm::{self, BatchNormState};
//! let x = array![[1.0f64, 10.0], [3.0, 30.0]];
//! let mut state = BatchNormState::new(2); // train mode, eps 1e-5, momentum 0.9
//! let (out, cache) = batchnorm::forward(x.view(), array![1.0, 1.0].view(), array![0.0, 0.0].view(), &mut state)?;
//! assert!((out[[0, 0]] + 1.0).abs() < 1e-4 && (out[[1, 1]] - 1.0).abs() < 1e-4);
//! assert!((state.running_mean[0] - 0.2).abs() < 1e-12); // 0.9·0 + 0.1·2
//! let grads = batchnorm::backward(array![[1.0, 0.0], [0.0, 0.0]].view(), &cache)?;
//! assert_eq!(grads.dbeta, array![1.0, 0.0]);
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::stats::{closed_form_dx, grad_sums, inv_std, moments};
use crate::{check, Element, Mode, NormGrads, Result};
use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis, Zip};

/// The seed's `bn_param`: mode, hyper-parameters and running averages.
#[derive(Clone, Debug)]
pub struct BatchNormState<T> {
    /// Train (batch statistics, update the averages) or test (use them).
    pub mode: Mode,
    /// Added to the variance (default 1e-5).
    pub eps: T,
    /// Decay of the running averages (default 0.9).
    pub momentum: T,
    /// Running mean, (D,), starts at 0.
    pub running_mean: Array1<T>,
    /// Running (biased) variance, (D,), starts at 0 as in the seed.
    pub running_var: Array1<T>,
}

impl<T: Element> BatchNormState<T> {
    /// Train mode with the seed's defaults for `features` features.
    pub fn new(features: usize) -> Self {
        Self {
            mode: Mode::Train,
            eps: T::from_f64(1e-5),
            momentum: T::from_f64(0.9),
            running_mean: Array1::zeros(features),
            running_var: Array1::zeros(features),
        }
    }

    /// Checks the state against `features` features.
    pub(crate) fn validate(&self, features: usize) -> Result<()> {
        check::non_negative("eps", self.eps)?;
        check::in_unit_range("momentum", self.momentum)?;
        check::shape("running_mean", self.running_mean.shape(), &[features])?;
        check::shape("running_var", self.running_var.shape(), &[features])
    }
}

/// What the backward passes need: x̂, 1/√(σ²+eps) per feature, γ and the mode.
#[derive(Clone, Debug)]
pub struct BatchNormCache<T> {
    pub(crate) xhat: Array2<T>,
    pub(crate) ivar: Array1<T>,
    pub(crate) gamma: Array1<T>,
    pub(crate) mode: Mode,
}

/// Forward pass on x (N, D) with γ, β of shape (D,); updates the running
/// averages in `state` in train mode.
///
/// # Errors
/// [`crate::Error::Shape`] if gamma, beta or the running averages are not
/// (D,), or N = 0 in train mode; [`crate::Error::Parameter`] if eps is
/// negative or not finite, or momentum is outside [0, 1).
pub fn forward<T: Element>(
    x: ArrayView2<'_, T>,
    gamma: ArrayView1<'_, T>,
    beta: ArrayView1<'_, T>,
    state: &mut BatchNormState<T>,
) -> Result<(Array2<T>, BatchNormCache<T>)> {
    let (n, d) = x.dim();
    check::shape("gamma", gamma.shape(), &[d])?;
    check::shape("beta", beta.shape(), &[d])?;
    state.validate(d)?;
    let (mean, var) = match state.mode {
        Mode::Train => {
            if n == 0 {
                return Err(crate::Error::shape("x", "[N >= 1, D] in train mode", x.shape()));
            }
            column_moments(&x)
        }
        Mode::Test => (state.running_mean.clone(), state.running_var.clone()),
    };
    let ivar = var.mapv(|v| inv_std(v, state.eps));
    let mut xhat = Array2::zeros((n, d));
    Zip::from(xhat.rows_mut())
        .and(x.rows())
        .par_for_each(|mut xh, x| {
            Zip::from(&mut xh)
                .and(&x)
                .and(&mean)
                .and(&ivar)
                .for_each(|o, &x, &m, &iv| *o = (x - m) * iv);
        });
    let mut out = Array2::zeros((n, d));
    Zip::from(out.rows_mut())
        .and(xhat.rows())
        .par_for_each(|mut o, xh| {
            Zip::from(&mut o)
                .and(&xh)
                .and(&gamma)
                .and(&beta)
                .for_each(|o, &xh, &g, &b| *o = g * xh + b);
        });
    if state.mode == Mode::Train {
        let keep = state.momentum;
        Zip::from(&mut state.running_mean)
            .and(&mean)
            .for_each(|r, &m| *r = keep * *r + (T::ONE - keep) * m);
        Zip::from(&mut state.running_var)
            .and(&var)
            .for_each(|r, &v| *r = keep * *r + (T::ONE - keep) * v);
    }
    Ok((
        out,
        BatchNormCache {
            xhat,
            ivar,
            gamma: gamma.to_owned(),
            mode: state.mode,
        },
    ))
}

/// Mean and biased variance of each column of x.
pub(crate) fn column_moments<T: Element>(x: &ArrayView2<'_, T>) -> (Array1<T>, Array1<T>) {
    let n = x.nrows();
    let pairs: Vec<(T, T)> = x
        .columns()
        .into_iter()
        .map(|c| moments(c.iter().copied(), n))
        .collect();
    (
        pairs.iter().map(|p| p.0).collect(),
        pairs.iter().map(|p| p.1).collect(),
    )
}

/// `dgamma = Σ dout·x̂`, `dbeta = Σ dout` over the rows.
fn parameter_grads<T: Element>(dout: &ArrayView2<'_, T>, xhat: &Array2<T>) -> (Array1<T>, Array1<T>) {
    let dgamma = (dout * xhat).sum_axis(Axis(0));
    (dgamma, dout.sum_axis(Axis(0)))
}

fn check_dout<T: Element>(dout: &ArrayView2<'_, T>, cache: &BatchNormCache<T>) -> Result<()> {
    check::shape("dout", dout.shape(), cache.xhat.shape())
}

/// In test mode the layer is affine in x: `dx = dout·γ/√(running_var+eps)`.
fn test_mode_dx<T: Element>(dout: &ArrayView2<'_, T>, cache: &BatchNormCache<T>) -> Array2<T> {
    let scale = &cache.gamma * &cache.ivar;
    dout * &scale
}

/// Backward pass through the computation graph
/// `μ → x−μ → σ² → √(σ²+eps) → x̂ → γx̂+β`:
///
/// ```text
/// dx̂ = dout·γ
/// dσ² = −½·ivar³·Σ dx̂·(x−μ)
/// dμ = −ivar·Σ dx̂ − 2·dσ²·Σ(x−μ)/N
/// dx = dx̂·ivar + 2·dσ²·(x−μ)/N + dμ/N
/// ```
///
/// # Errors
/// [`crate::Error::Shape`] if dout is not x's shape.
pub fn backward<T: Element>(
    dout: ArrayView2<'_, T>,
    cache: &BatchNormCache<T>,
) -> Result<NormGrads<T, ndarray::Ix2>> {
    check_dout(&dout, cache)?;
    let (dgamma, dbeta) = parameter_grads(&dout, &cache.xhat);
    if cache.mode == Mode::Test {
        return Ok(NormGrads {
            dx: test_mode_dx(&dout, cache),
            dgamma,
            dbeta,
        });
    }
    let (n, d) = dout.dim();
    let nn = T::from_usize(n);
    let two = T::from_f64(2.0);
    let half = T::from_f64(0.5);
    let mut dx = Array2::zeros((n, d));
    for j in 0..d {
        let (ivar, gamma) = (cache.ivar[j], cache.gamma[j]);
        let xhat = cache.xhat.column(j);
        let xmu = |i: usize| xhat[i] / ivar;
        let dxhat = |i: usize| dout[[i, j]] * gamma;
        let mut sum_dxhat_xmu = T::ZERO;
        let mut sum_dxhat = T::ZERO;
        let mut sum_xmu = T::ZERO;
        for i in 0..n {
            sum_dxhat_xmu += dxhat(i) * xmu(i);
            sum_dxhat += dxhat(i);
            sum_xmu += xmu(i);
        }
        let dvar = -half * ivar * ivar * ivar * sum_dxhat_xmu;
        let dmean = -ivar * sum_dxhat - two * dvar * sum_xmu / nn;
        for i in 0..n {
            dx[[i, j]] = dxhat(i) * ivar + two * dvar * xmu(i) / nn + dmean / nn;
        }
    }
    Ok(NormGrads { dx, dgamma, dbeta })
}

/// Backward pass in the simplified closed form (see the module docs).
///
/// # Errors
/// [`crate::Error::Shape`] if dout is not x's shape.
pub fn backward_alt<T: Element>(
    dout: ArrayView2<'_, T>,
    cache: &BatchNormCache<T>,
) -> Result<NormGrads<T, ndarray::Ix2>> {
    check_dout(&dout, cache)?;
    let (dgamma, dbeta) = parameter_grads(&dout, &cache.xhat);
    if cache.mode == Mode::Test {
        return Ok(NormGrads {
            dx: test_mode_dx(&dout, cache),
            dgamma,
            dbeta,
        });
    }
    let (n, d) = dout.dim();
    let m = T::from_usize(n);
    let mut dx = Array2::zeros((n, d));
    for j in 0..d {
        let (ivar, gamma) = (cache.ivar[j], cache.gamma[j]);
        let (xhat, dcol) = (cache.xhat.column(j), dout.column(j));
        let sums = grad_sums(dcol.iter().map(|&v| v * gamma), xhat.iter().copied());
        for i in 0..n {
            dx[[i, j]] = closed_form_dx(dcol[i] * gamma, xhat[i], ivar, m, sums);
        }
    }
    Ok(NormGrads { dx, dgamma, dbeta })
}
