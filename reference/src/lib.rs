//! # patchwise-reference
//!
//! The ground truth of patchwise: every op of the CS231n assignment-2 layer
//! set (`layers.py`, plus `optim.py`'s update rules) as plain loops that a
//! reader can check line by line against the formula in each doc comment.
//!
//! The semantics are the seed document's, with its defects fixed (each fix is
//! named where it applies). Everything here is a pure function of its inputs:
//! no caches, no threads, no SIMD, no `unsafe`. Functions are generic over
//! [`Real`] (`f32` and `f64`); the gradient-check helpers work in `f64`.
//!
//! This crate is a test oracle: invalid input **panics** with a message that
//! names the argument and the expected and actual values (the fast crates
//! return errors instead).
//!
//! ```
//! use ndarray::array;
//! use patchwise_reference::{conv_forward, ConvParams};
//!
//! // A 1×1×3×3 image and a 2×2 filter of ones: each output sums a 2×2 window.
//! let x = array![[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]];
//! let w = array![[[[1.0, 1.0], [1.0, 1.0]]]];
//! let b = array![0.5];
//! let out = conv_forward(x.view(), w.view(), b.view(), &ConvParams::new(1, 0));
//! assert_eq!(out, array![[[[12.5, 16.5], [24.5, 28.5]]]]);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod activation;
mod affine;
mod conv;
mod dropout;
mod gemm;
mod gradcheck;
mod loss;
mod norm;
pub mod notebook;
mod optim;
mod pool;
mod real;
pub mod tolerance;

pub use activation::{relu_backward, relu_forward, sigmoid, sigmoid_backward, sigmoid_forward};
pub use affine::{affine_backward, affine_forward};
pub use conv::{col2im, conv_backward, conv_forward, im2col, output_len, ConvParams};
pub use dropout::{dropout_backward, dropout_forward, dropout_keep, dropout_uniform};
pub use gemm::gemm;
pub use gradcheck::{eval_numerical_gradient, eval_numerical_gradient_array, rel_error};
pub use loss::{softmax_loss, svm_loss};
pub use norm::{
    batchnorm_backward, batchnorm_backward_alt, batchnorm_forward, layernorm_backward, layernorm_forward,
    spatial_batchnorm_backward, spatial_batchnorm_forward, spatial_groupnorm_backward,
    spatial_groupnorm_forward, BatchNormParams, Mode,
};
pub use optim::{adam, rmsprop, sgd, sgd_momentum, AdamConfig, RmsPropConfig};
pub use pool::{avg_pool_backward, avg_pool_forward, max_pool_backward, max_pool_forward, PoolParams};
pub use real::Real;
