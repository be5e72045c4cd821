//! Element-wise activations: ReLU and the logistic sigmoid.
//!
//! ```text
//! relu(x)    = max(x, 0)                 d/dx = 1 if x > 0 else 0
//! sigmoid(x) = 1 / (1 + e^(−x))          d/dx = σ(x)·(1 − σ(x))
//! ```
//!
//! Both work on arrays of any shape, in parallel over elements (element-wise
//! work cannot depend on the thread count).
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::activation::{relu_backward, relu_forward, sigmoid_forward};
//! let x = array![-1.0f32, 0.0, 2.0].into_dyn();
//! let (out, cache) = relu_forward(x.view());
//! assert_eq!(out, array![0.0, 0.0, 2.0].into_dyn());
//! let dx = relu_backward(array![5.0, 5.0, 5.0].into_dyn().view(), &cache)?;
//! assert_eq!(dx, array![0.0, 0.0, 5.0].into_dyn());
//! let (s, _) = sigmoid_forward(array![-1000.0f32, 0.0, 1000.0].into_dyn().view());
//! assert_eq!(s, array![0.0, 0.5, 1.0].into_dyn()); // no overflow
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::check;
use crate::{Element, Result};
use ndarray::{ArrayD, ArrayViewD, Zip};

/// ReLU's cache: its input.
#[derive(Clone, Debug)]
pub struct ReluCache<T> {
    x: ArrayD<T>,
}

/// ReLU forward: `max(x, 0)` (NaN stays NaN).
pub fn relu_forward<T: Element>(x: ArrayViewD<'_, T>) -> (ArrayD<T>, ReluCache<T>) {
    let out = Zip::from(&x).par_map_collect(|&v| if v < T::ZERO { T::ZERO } else { v });
    (out, ReluCache { x: x.to_owned() })
}

/// ReLU backward: `dout` where x > 0, else 0.
///
/// # Errors
/// [`crate::Error::Shape`] if dout's shape is not x's.
pub fn relu_backward<T: Element>(dout: ArrayViewD<'_, T>, cache: &ReluCache<T>) -> Result<ArrayD<T>> {
    check::shape("dout", dout.shape(), cache.x.shape())?;
    Ok(Zip::from(&dout)
        .and(&cache.x)
        .par_map_collect(|&d, &v| if v > T::ZERO { d } else { T::ZERO }))
}

/// Sigmoid's cache: its output σ(x).
#[derive(Clone, Debug)]
pub struct SigmoidCache<T> {
    out: ArrayD<T>,
}

/// σ(v), computed without overflow: `e^v / (1 + e^v)` for v < 0.
#[inline]
pub fn sigmoid<T: Element>(v: T) -> T {
    if v >= T::ZERO {
        T::ONE / (T::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::ONE + e)
    }
}

/// Sigmoid forward: σ(x) element-wise, finite for every finite x.
pub fn sigmoid_forward<T: Element>(x: ArrayViewD<'_, T>) -> (ArrayD<T>, SigmoidCache<T>) {
    let out = Zip::from(&x).par_map_collect(|&v| sigmoid(v));
    (out.clone(), SigmoidCache { out })
}

/// Sigmoid backward: `dout · σ(x) · (1 − σ(x))`.
///
/// # Errors
/// [`crate::Error::Shape`] if dout's shape is not x's.
pub fn sigmoid_backward<T: Element>(dout: ArrayViewD<'_, T>, cache: &SigmoidCache<T>) -> Result<ArrayD<T>> {
    check::shape("dout", dout.shape(), cache.out.shape())?;
    Ok(Zip::from(&dout)
        .and(&cache.out)
        .par_map_collect(|&d, &s| d * s * (T::ONE - s)))
}
