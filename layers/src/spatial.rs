//! Normalisation of images x (N, C, H, W) with per-channel γ, β of shape (C,).
//!
//! * Spatial batch norm: batch norm with each channel a feature, its
//!   statistics taken over (N, H, W); train/test and running averages as in
//!   [`crate::batchnorm`].
//! * Spatial group norm: the C channels are split into G contiguous groups;
//!   each (sample, group) set of C/G·H·W values is normalised on its own.
//!   Same in train and test.
//!
//! Statistics are computed per set in parallel, each in a fixed order, so the
//! results do not depend on the thread count.
//!
//! ```
//! use ndarray::{Array1, Array4};
//! use patchwise_layers::spatial;
//! let x = Array4::from_shape_fn((2, 4, 3, 3), |(n, c, h, w)| (n + 2 * c + h * w) as f32);
//! let (gamma, beta) = (Array1::ones(4), Array1::zeros(4));
//! let (out, cache) = spatial::groupnorm_forward(x.view(), gamma.view(), beta.view(), 2, 1e-5)?;
//! // Each (sample, group) set now has mean 0.
//! assert!(out.slice(ndarray::s![0, 0..2, .., ..]).sum().abs() < 1e-4);
//! let grads = spatial::groupnorm_backward(Array4::ones((2, 4, 3, 3)).view(), &cache)?;
//! assert_eq!(grads.dbeta, Array1::from_elem(4, 18.0));
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::batchnorm::BatchNormState;
use crate::stats::{closed_form_dx, grad_sums, inv_std, moments};
use crate::{check, Element, Error, Mode, NormGrads, Result};
use ndarray::{Array1, Array4, ArrayView1, ArrayView4};
use rayon::prelude::*;

/// What the spatial backward passes need: x̂, one 1/√(σ²+eps) per set, γ,
/// the set layout and the mode.
#[derive(Clone, Debug)]
pub struct SpatialNormCache<T> {
    xhat: Array4<T>,
    ivar: Vec<T>,
    gamma: Array1<T>,
    /// Groups for group norm; `None` for batch norm.
    groups: Option<usize>,
    mode: Mode,
}

fn image_dims<T>(x: &ArrayView4<'_, T>) -> (usize, usize, usize) {
    let (n, c, h, w) = x.dim();
    (n, c, h * w)
}

/// `Σ f(k)` over the flat indices k of channel `c`'s N planes, in (n, pixel)
/// order.
fn channel_sum<T: Element>(n: usize, c: usize, channels: usize, plane: usize, f: impl Fn(usize) -> T) -> T {
    let mut sum = T::ZERO;
    for ni in 0..n {
        let base = (ni * channels + c) * plane;
        for k in base..base + plane {
            sum += f(k);
        }
    }
    sum
}

/// `dgamma[c] = Σ dout·x̂`, `dbeta[c] = Σ dout` over (N, H, W).
fn parameter_grads<T: Element>(
    dout: &[T],
    xhat: &[T],
    n: usize,
    c: usize,
    plane: usize,
) -> (Array1<T>, Array1<T>) {
    let pairs: Vec<(T, T)> = (0..c)
        .into_par_iter()
        .map(|ci| {
            (
                channel_sum(n, ci, c, plane, |k| dout[k] * xhat[k]),
                channel_sum(n, ci, c, plane, |k| dout[k]),
            )
        })
        .collect();
    (
        pairs.iter().map(|p| p.0).collect(),
        pairs.iter().map(|p| p.1).collect(),
    )
}

/// Spatial batch-norm forward pass; updates `state`'s running averages (C,)
/// in train mode.
///
/// # Errors
/// [`Error::Shape`] if gamma, beta or the running averages are not (C,), or
/// N·H·W = 0 in train mode; [`Error::Parameter`] for a bad eps or momentum.
pub fn batchnorm_forward<T: Element>(
    x: ArrayView4<'_, T>,
    gamma: ArrayView1<'_, T>,
    beta: ArrayView1<'_, T>,
    state: &mut BatchNormState<T>,
) -> Result<(Array4<T>, SpatialNormCache<T>)> {
    let (n, c, plane) = image_dims(&x);
    check::shape("gamma", gamma.shape(), &[c])?;
    check::shape("beta", beta.shape(), &[c])?;
    state.validate(c)?;
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout");
    let (mean, var): (Vec<T>, Vec<T>) = match state.mode {
        Mode::Train => {
            if n * plane == 0 {
                return Err(Error::shape(
                    "x",
                    "[N, C, H, W] with N·H·W >= 1 in train mode",
                    x.shape(),
                ));
            }
            (0..c)
                .into_par_iter()
                .map(|ci| {
                    let values = (0..n).flat_map(|ni| data[(ni * c + ci) * plane..][..plane].iter().copied());
                    moments(values, n * plane)
                })
                .unzip()
        }
        Mode::Test => (state.running_mean.to_vec(), state.running_var.to_vec()),
    };
    let ivar: Vec<T> = var.iter().map(|&v| inv_std(v, state.eps)).collect();
    let mut xhat = Array4::zeros(x.raw_dim());
    let mut out = Array4::zeros(x.raw_dim());
    if plane > 0 {
        let xh = xhat.as_slice_mut().expect("fresh array");
        let o = out.as_slice_mut().expect("fresh array");
        xh.par_chunks_mut(plane)
            .zip(o.par_chunks_mut(plane))
            .zip(data.par_chunks(plane))
            .enumerate()
            .for_each(|(p, ((xh, o), x))| {
                let ci = p % c;
                for k in 0..plane {
                    xh[k] = (x[k] - mean[ci]) * ivar[ci];
                    o[k] = gamma[ci] * xh[k] + beta[ci];
                }
            });
    }
    if state.mode == Mode::Train {
        let keep = state.momentum;
        for ci in 0..c {
            state.running_mean[ci] = keep * state.running_mean[ci] + (T::ONE - keep) * mean[ci];
            state.running_var[ci] = keep * state.running_var[ci] + (T::ONE - keep) * var[ci];
        }
    }
    let cache = SpatialNormCache {
        xhat,
        ivar,
        gamma: gamma.to_owned(),
        groups: None,
        mode: state.mode,
    };
    Ok((out, cache))
}

/// Spatial batch-norm backward pass.
///
/// # Errors
/// [`Error::Shape`] if dout is not x's shape; [`Error::Cache`] if the cache
/// is a group-norm cache.
pub fn batchnorm_backward<T: Element>(
    dout: ArrayView4<'_, T>,
    cache: &SpatialNormCache<T>,
) -> Result<NormGrads<T, ndarray::Ix4>> {
    if cache.groups.is_some() {
        return Err(Error::Cache {
            reason: "a group-norm cache passed to spatial batchnorm_backward",
        });
    }
    check::shape("dout", dout.shape(), cache.xhat.shape())?;
    let (n, c, plane) = image_dims(&dout);
    let dout = dout.as_standard_layout();
    let dout = dout.as_slice().expect("standard layout");
    let xhat = cache.xhat.as_slice().expect("owned standard layout");
    let gamma = &cache.gamma;
    let (dgamma, dbeta) = parameter_grads(dout, xhat, n, c, plane);
    let m = T::from_usize(n * plane);
    // Closed form per channel: Σg = γ·dbeta, Σg·x̂ = γ·dgamma.
    let mut dx = Array4::zeros(cache.xhat.raw_dim());
    if plane > 0 {
        let d = dx.as_slice_mut().expect("fresh array");
        d.par_chunks_mut(plane).enumerate().for_each(|(p, dx)| {
            let ci = p % c;
            let (g, iv) = (gamma[ci], cache.ivar[ci]);
            let sums = (g * dbeta[ci], g * dgamma[ci]);
            for (k, dx) in dx.iter_mut().enumerate() {
                let i = p * plane + k;
                *dx = match cache.mode {
                    Mode::Train => closed_form_dx(dout[i] * g, xhat[i], iv, m, sums),
                    Mode::Test => dout[i] * g * iv,
                };
            }
        });
    }
    Ok(NormGrads { dx, dgamma, dbeta })
}

/// Spatial group-norm forward pass with `groups` groups of C/G channels.
///
/// # Errors
/// [`Error::Parameter`] if `groups` is 0 or does not divide C, or eps is
/// negative or not finite; [`Error::Shape`] if gamma/beta are not (C,) or
/// H·W = 0.
pub fn groupnorm_forward<T: Element>(
    x: ArrayView4<'_, T>,
    gamma: ArrayView1<'_, T>,
    beta: ArrayView1<'_, T>,
    groups: usize,
    eps: T,
) -> Result<(Array4<T>, SpatialNormCache<T>)> {
    let (_, c, plane) = image_dims(&x);
    if groups == 0 || c % groups != 0 {
        return Err(Error::parameter(
            "groups",
            format!("a divisor of C = {c}"),
            groups,
        ));
    }
    if plane == 0 {
        return Err(Error::shape("x", "[N, C, H, W] with H·W >= 1", x.shape()));
    }
    check::shape("gamma", gamma.shape(), &[c])?;
    check::shape("beta", beta.shape(), &[c])?;
    check::non_negative("eps", eps)?;
    let set = c / groups * plane;
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout");
    let mut xhat = Array4::zeros(x.raw_dim());
    let mut out = Array4::zeros(x.raw_dim());
    let mut ivar = vec![T::ZERO; data.len() / set.max(1)];
    if set > 0 {
        let xh = xhat.as_slice_mut().expect("fresh array");
        let o = out.as_slice_mut().expect("fresh array");
        xh.par_chunks_mut(set)
            .zip(o.par_chunks_mut(set))
            .zip(data.par_chunks(set))
            .zip(ivar.par_iter_mut())
            .enumerate()
            .for_each(|(s, (((xh, o), x), iv))| {
                let first_channel = (s % groups) * (c / groups);
                let (mean, var) = moments(x.iter().copied(), set);
                *iv = inv_std(var, eps);
                for k in 0..set {
                    let ci = first_channel + k / plane;
                    xh[k] = (x[k] - mean) * *iv;
                    o[k] = gamma[ci] * xh[k] + beta[ci];
                }
            });
    }
    let cache = SpatialNormCache {
        xhat,
        ivar,
        gamma: gamma.to_owned(),
        groups: Some(groups),
        mode: Mode::Train,
    };
    Ok((out, cache))
}

/// Spatial group-norm backward pass; dgamma and dbeta are (C,).
///
/// # Errors
/// [`Error::Shape`] if dout is not x's shape; [`Error::Cache`] if the cache
/// is a batch-norm cache.
pub fn groupnorm_backward<T: Element>(
    dout: ArrayView4<'_, T>,
    cache: &SpatialNormCache<T>,
) -> Result<NormGrads<T, ndarray::Ix4>> {
    let Some(groups) = cache.groups else {
        return Err(Error::Cache {
            reason: "a batch-norm cache passed to groupnorm_backward",
        });
    };
    check::shape("dout", dout.shape(), cache.xhat.shape())?;
    let (n, c, plane) = image_dims(&dout);
    let dout = dout.as_standard_layout();
    let dout = dout.as_slice().expect("standard layout");
    let xhat = cache.xhat.as_slice().expect("owned standard layout");
    let gamma = &cache.gamma;
    let set = c / groups * plane;
    let m = T::from_usize(set);
    let mut dx = Array4::zeros(cache.xhat.raw_dim());
    if set > 0 {
        let d = dx.as_slice_mut().expect("fresh array");
        d.par_chunks_mut(set)
            .zip(dout.par_chunks(set))
            .zip(xhat.par_chunks(set))
            .zip(cache.ivar.par_iter())
            .enumerate()
            .for_each(|(s, (((dx, dout), xhat), &iv))| {
                let first_channel = (s % groups) * (c / groups);
                let g = |k: usize| dout[k] * gamma[first_channel + k / plane];
                let sums = grad_sums((0..set).map(g), xhat.iter().copied());
                for k in 0..set {
                    dx[k] = closed_form_dx(g(k), xhat[k], iv, m, sums);
                }
            });
    }
    let (dgamma, dbeta) = parameter_grads(dout, xhat, n, c, plane);
    Ok(NormGrads { dx, dgamma, dbeta })
}
