//! # patchwise-kernels
//!
//! The low-level kernels of patchwise: im2col/col2im, GEMM and pooling, on
//! plain slices (callers manage their own memory) and, for GEMM, on strided
//! `ndarray` views. Everything is generic over the sealed [`Element`] trait
//! (`f32`, `f64`), returns a [`Result`] with a descriptive [`Error`] on bad
//! input, runs on the current rayon pool (set its size with
//! `RAYON_NUM_THREADS` or `ThreadPool::install`), and gives bit-identical
//! results whatever the number of threads.
//!
//! The layers built on these kernels are in `patchwise-layers`; the naive
//! versions they are tested against are in `patchwise-reference`.

#![warn(missing_docs)]

mod col2im_lines;
mod col2im_phases;
mod element;
mod error;
mod gemm;
mod geometry;
mod im2col;
mod isa;
mod pool;
pub mod probe;
mod slot;
pub mod spare;
mod threads;

pub use col2im_lines::Col2imLines;
pub use col2im_phases::{col2im_images, Col2imPhases, ImageSink};
pub use element::Element;
pub use error::{checked_product, Error, Result};
pub use gemm::{
    gemm, gemm_engine, gemm_im2col, gemm_im2col_batch, gemm_im2col_serial, gemm_im2col_stacked,
    gemm_im2col_stacked_serial, gemm_im2col_transposed, gemm_im2col_transposed_serial, gemm_serial,
};
pub use geometry::Window2d;
pub use im2col::{col2im, col2im_batch, col2im_rows, im2col, im2col_batch};
pub use isa::{selected as selected_isa, Isa};
pub use pool::{
    avg_pool2d_backward, avg_pool2d_backward_vec, avg_pool2d_forward, avg_pool2d_forward_vec,
    max_pool2d_backward, max_pool2d_backward_vec, max_pool2d_forward, max_pool2d_forward_vec, ArgIndex,
};
pub use threads::on_worker;
