//! # patchwise-layers
//!
//! The CS231n assignment-2 layer set, forward and backward, built on
//! `patchwise-kernels`: affine, ReLU, sigmoid, batch norm (graph and
//! simplified backward), layer norm, inverted dropout, convolution, max and
//! average pooling, spatial batch norm, spatial group norm, the softmax and
//! SVM losses, and the SGD, SGD+momentum, RMSProp and Adam optimizers.
//!
//! Conventions, as in the seed: NCHW layout; `forward(..)` returns
//! `(out, cache)`, `backward(dout, &cache)` returns the gradients with the
//! inputs' shapes. Inputs are `ndarray` views (any strides), outputs owned
//! arrays. Every function that can be given bad input returns a [`Result`]
//! whose [`Error`] names the argument and the expected and actual values.
//! Work runs on the current rayon pool, and every result is bit-identical
//! whatever its number of threads. Calls are independent: many threads may
//! call any function concurrently on shared inputs.
//!
//! **Non-finite values** are data, not errors: NaN propagates through every
//! op to the outputs it touches (a max-pool window holding NaN yields NaN and
//! takes the gradient; a NaN score makes the loss NaN; a NaN in a
//! normalisation set makes that set's outputs NaN; a NaN gradient makes the
//! updated weight NaN), ±∞ follows IEEE arithmetic (zero padding included:
//! 0 · ∞ is NaN), and ReLU passes NaN forward with a zero gradient.
//! Hyper-parameters, by contrast, must be finite and are checked.
//!
//! **Zero-sized dimensions** work where the result is well defined: a batch of
//! 0, 0 channels or 0 filters give empty (or bias-only) outputs; what needs
//! statistics of an empty set (batch norm in train mode with N·H·W = 0,
//! layer norm with D = 0, losses with N = 0, pooling of an empty image) is an
//! error.
//!
//! ```
//! use ndarray::{Array1, Array4};
//! use patchwise_layers::{conv, pool};
//! let x = Array4::<f32>::ones((2, 3, 8, 8));
//! let w = Array4::<f32>::ones((4, 3, 3, 3));
//! let (y, _) = conv::forward(x.view(), w.view(), Array1::zeros(4).view(), &conv::ConvParams::new(1, 1))?;
//! let (z, _) = pool::max_forward(y.view(), &pool::PoolParams::new(2, 2, 2))?;
//! assert_eq!(z.dim(), (2, 4, 4, 4));
//! assert_eq!(z[[0, 0, 1, 1]], 27.0); // an interior 3×3×3 window of ones
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

#![warn(missing_docs)]

pub mod activation;
pub mod affine;
pub mod batchnorm;
mod check;
pub mod conv;
pub mod dropout;
pub mod layernorm;
pub mod loss;
pub mod optim;
mod output;
pub mod pool;
pub mod spatial;
mod stats;

pub use patchwise_kernels::{Element, Error, Result};

use ndarray::{Array, Array1, Dimension};

/// Train or test behaviour (batch norm, dropout).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: batch statistics, dropout active.
    Train,
    /// Inference: running statistics, dropout the identity.
    Test,
}

/// Gradients of a normalisation layer.
#[derive(Clone, Debug)]
pub struct NormGrads<T, D: Dimension> {
    /// ∂L/∂x, x's shape.
    pub dx: Array<T, D>,
    /// ∂L/∂γ, one per feature or channel.
    pub dgamma: Array1<T>,
    /// ∂L/∂β, one per feature or channel.
    pub dbeta: Array1<T>,
}
