//! Inverted dropout: `p` is the probability of **keeping** a unit, kept units
//! are scaled by 1/p, and test mode is the identity.
//!
//! The mask is a pure function of (seed, element index i in row-major
//! order): `keep[i] = u(seed, i) < p` with u the (i+1)-th output of
//! SplitMix64 started at `seed`, top 53 bits as a number in [0, 1) — the
//! formula `patchwise-reference` documents. Any thread computes any element's
//! mask on its own, so results are identical for every thread count, and the
//! mask never needs storing: the backward pass recomputes it.
//!
//! ```
//! use ndarray::ArrayD;
//! use patchwise_layers::{dropout, Mode};
//! let x = ArrayD::<f32>::ones(ndarray::IxDyn(&[4, 250]));
//! let params = dropout::DropoutParams { p: 0.5, mode: Mode::Train, seed: 7 };
//! let (out, cache) = dropout::forward(x.view(), &params)?;
//! assert!(out.iter().all(|&v| v == 0.0 || v == 2.0)); // kept units scaled by 1/p
//! let dx = dropout::backward(x.view(), &cache)?;
//! assert_eq!(dx, out); // the same mask
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::{check, Element, Error, Mode, Result};
use ndarray::{ArrayD, ArrayViewD};
use rayon::prelude::*;

/// The seed's `dropout_param`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DropoutParams<T> {
    /// Probability of keeping a unit, in (0, 1].
    pub p: T,
    /// Train (drop) or test (identity).
    pub mode: Mode,
    /// Seed of the mask.
    pub seed: u64,
}

/// What [`backward`] needs: the parameters and the input's shape.
#[derive(Clone, Debug)]
pub struct DropoutCache<T> {
    params: DropoutParams<T>,
    shape: Vec<usize>,
}

/// SplitMix64's increment.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Elements per parallel task (fixed, so the split never depends on threads).
const CHUNK: usize = 1 << 14;

/// The uniform number u(seed, i) ∈ [0, 1) of the mask.
#[inline]
pub fn uniform(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn validate<T: Element>(params: &DropoutParams<T>) -> Result<()> {
    if params.p > T::ZERO && params.p <= T::ONE {
        Ok(())
    } else {
        Err(Error::parameter("p", "a keep probability in (0, 1]", params.p))
    }
}

/// `v · keep[i] / p` for every element, in parallel.
fn apply_mask<T: Element>(v: ArrayViewD<'_, T>, params: &DropoutParams<T>) -> ArrayD<T> {
    let mut out = v.as_standard_layout().into_owned();
    if params.mode == Mode::Test {
        return out;
    }
    let p = params.p;
    let p64 = p.to_f64();
    out.as_slice_mut()
        .expect("standard layout")
        .par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(chunk, values)| {
            for (k, v) in values.iter_mut().enumerate() {
                let i = (chunk * CHUNK + k) as u64;
                *v = if uniform(params.seed, i) < p64 {
                    *v / p
                } else {
                    T::ZERO
                };
            }
        });
    out
}

/// Forward pass.
///
/// # Errors
/// [`Error::Parameter`] if p is not in (0, 1].
pub fn forward<T: Element>(
    x: ArrayViewD<'_, T>,
    params: &DropoutParams<T>,
) -> Result<(ArrayD<T>, DropoutCache<T>)> {
    validate(params)?;
    let out = apply_mask(x.view(), params);
    Ok((
        out,
        DropoutCache {
            params: *params,
            shape: x.shape().to_vec(),
        },
    ))
}

/// Backward pass: `dout · keep / p` (train), `dout` (test).
///
/// # Errors
/// [`Error::Shape`] if dout is not x's shape.
pub fn backward<T: Element>(dout: ArrayViewD<'_, T>, cache: &DropoutCache<T>) -> Result<ArrayD<T>> {
    check::shape("dout", dout.shape(), &cache.shape)?;
    Ok(apply_mask(dout, &cache.params))
}
