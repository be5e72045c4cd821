//! General matrix multiply `C ← alpha·A·B + beta·C` on strided views.
//!
//! The engine is patchwise's own BLIS-style blocked GEMM ([`blocked`]):
//! packed A and B panels, SIMD micro-kernels chosen once per process
//! ([`kernel`]; AVX-512, AVX2+FMA or portable), parallel over blocks of C
//! on the current rayon pool. Every element of C is computed by the same
//! sequence of operations whichever block or thread computes it, so results
//! are bit-identical for any number of threads, and [`gemm_serial`] equals
//! [`gemm`].
//!
//! The implicit-GEMM convolutions ([`gemm_im2col`], [`gemm_im2col_stacked`])
//! with at most 128 rows of A and beta = 0 skip packing B altogether: the
//! micro-kernel reads the im2col matrix's rows in place ([`direct`]) — or,
//! with few taps (a first layer's 3 channels), from explicit im2col bands
//! of a few output rows, its tiles stored straight into the output
//! ([`im2col_bands`]); so does the transposed product of a weight gradient
//! ([`gemm_im2col_transposed`], [`direct_transposed`]), with a micro-kernel
//! that broadcasts its A values from MR row pointers — or, with few taps,
//! as dot products of A's rows with the taps' rows, nothing packed
//! ([`direct_dot`], [`dot_kernel`]). A plain product with
//! beta = 0, contiguous rows of B and at most 128 rows of A (256 where B is
//! as wide as A is tall, or at least two NR panels wide with a packed A of
//! at most 3 MiB) reads B in place too ([`in_place`]).
//! [`gemm_im2col_batch`] runs a grouped convolution's products over a
//! batch into a new array that is never zero-filled ([`batch`]).
//!
//! The packed panels live in per-thread buffers that grow to the largest
//! product seen and are then reused, so steady-state calls do not allocate.
//!
//! `matrixmultiply` stays as a second backend (`PATCHWISE_GEMM=matrixmultiply`),
//! called single-threaded inside fixed column blocks, and as the baseline of
//! the benchmarks.

mod batch;
mod blocked;
mod direct;
mod direct_dot;
mod direct_transposed;
mod dot_kernel;
pub(crate) mod gather;
mod gather_avx2;
mod im2col_bands;
mod in_image;
mod in_place;
pub(crate) mod kernel;
mod kernel_avx2;
mod kernel_avx512;
mod kernel_generic;
mod pack;
mod simd_kernel;
mod transpose;

pub use batch::gemm_im2col_batch;
use dot_kernel::simd_dot_kernel;
use simd_kernel::{simd_kernel, simd_kernel_a_rows, simd_kernel_masked_rows};
use std::sync::OnceLock;

use crate::error::{check_len, checked_product, Error, Result};
use crate::slot::zeroed_view;
use crate::spare;
use crate::{Element, Window2d};
use ndarray::{s, Array2, ArrayView2, ArrayView3, ArrayViewMut2, ArrayViewMut3, Axis};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Products with fewer multiply-adds than this stay on the calling thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;
/// Width (in columns of C, or rows when C is tall and narrow) of one
/// matrixmultiply task.
const BLOCK: usize = 128;

fn check_shapes<T: Element>(
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    c: &ArrayViewMut2<'_, T>,
) -> Result<()> {
    let (m, k) = a.dim();
    if b.nrows() != k {
        return Err(Error::Shape {
            arg: "b",
            expected: format!("[{k}, _] (rows = a's columns)"),
            actual: format!("{:?}", b.shape()),
        });
    }
    if c.dim() != (m, b.ncols()) {
        return Err(Error::shape("c", [m, b.ncols()], c.shape()));
    }
    Ok(())
}

fn check_scalars<T: Element>(alpha: T, beta: T) -> Result<()> {
    if !alpha.is_finite() {
        return Err(Error::parameter("alpha", "a finite number", alpha));
    }
    if !beta.is_finite() {
        return Err(Error::parameter("beta", "a finite number", beta));
    }
    Ok(())
}

/// `C ← alpha·A·B + beta·C` with A (M, K), B (K, N), C (M, N), any strides
/// (including negative ones and non-contiguous views), in parallel on the
/// current rayon pool when the product is large enough.
///
/// As in BLAS, when `beta` is 0, C is only written, never read (a NaN in C
/// does not propagate). With K = 0 the result is `beta·C`.
///
/// # Errors
/// [`Error::Shape`] if the shapes do not chain, [`Error::Parameter`] if
/// alpha or beta is not finite.
///
/// ```
/// use ndarray::array;
/// let a = array![[1.0f32, 2.0], [3.0, 4.0]];
/// let b = array![[5.0f32, 6.0], [7.0, 8.0]];
/// let mut c = array![[1.0f32, 1.0], [1.0, 1.0]];
/// patchwise_kernels::gemm(2.0, a.view(), b.view(), -1.0, c.view_mut()).unwrap();
/// assert_eq!(c, array![[37.0, 43.0], [85.0, 99.0]]);
/// ```
pub fn gemm<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    checked_gemm(alpha, a, b, beta, c, true)
}

/// [`gemm`] on the calling thread only: for callers that are already
/// parallel (one task per image), so that threads are never nested. Gives
/// bit-identical results to [`gemm`].
///
/// # Errors
/// As [`gemm`].
pub fn gemm_serial<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    checked_gemm(alpha, a, b, beta, c, false)
}

/// The checks both entry points make, then the product.
fn checked_gemm<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    c: ArrayViewMut2<'_, T>,
    parallel: bool,
) -> Result<()> {
    check_shapes(&a, &b, &c)?;
    check_scalars(alpha, beta)?;
    product(alpha, a, b, beta, c, parallel);
    Ok(())
}

/// The GEMM engine in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// patchwise's blocked GEMM with the selected micro-kernels.
    Patchwise,
    /// `matrixmultiply`, in fixed-size column blocks.
    MatrixMultiply,
}

/// The backend, chosen once per process from `PATCHWISE_GEMM`.
fn backend() -> Backend {
    static BACKEND: OnceLock<Backend> = OnceLock::new();
    *BACKEND.get_or_init(|| match std::env::var("PATCHWISE_GEMM").as_deref() {
        Ok("matrixmultiply") => Backend::MatrixMultiply,
        Ok("patchwise") | Err(_) => Backend::Patchwise,
        Ok(other) => {
            eprintln!(
                "patchwise: PATCHWISE_GEMM={other:?} is not 'patchwise' or 'matrixmultiply'; using patchwise"
            );
            Backend::Patchwise
        }
    })
}

/// Names the engine and micro-kernel in use, e.g. `patchwise avx512 8x48`.
pub fn gemm_engine<T: Element>() -> String {
    match backend() {
        Backend::MatrixMultiply => "matrixmultiply".into(),
        Backend::Patchwise => {
            let k = kernel::selected::<T>();
            format!("patchwise {} {}x{}", k.isa.name(), k.mr, k.nr)
        }
    }
}

/// Handles the products with nothing to multiply (m, n or k = 0); true if
/// it did.
fn trivial<T: Element>(m: usize, n: usize, k: usize, beta: T, c: &mut ArrayViewMut2<'_, T>) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    if k == 0 {
        if beta == T::ZERO {
            c.fill(T::ZERO);
        } else {
            c.mapv_inplace(|v| beta * v);
        }
        return true;
    }
    false
}

/// Whether a product of this size is worth the pool.
fn worth_parallel(m: usize, n: usize, k: usize, parallel: bool) -> bool {
    let flops = m.saturating_mul(n).saturating_mul(k);
    parallel && flops >= PARALLEL_MIN_FLOPS && rayon::current_num_threads() > 1
}

/// The product on checked shapes; `parallel` allows the current pool.
fn product<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    b: ArrayView2<'_, T>,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
    parallel: bool,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if trivial(m, n, k, beta, &mut c) {
        return;
    }
    let parallel = worth_parallel(m, n, k, parallel);
    match backend() {
        Backend::Patchwise if in_place::applies(&a, beta, &b) => {
            in_place::gemm_b_in_place(&in_place::kernel::<T>(m), alpha, a, b, c, parallel)
        }
        Backend::Patchwise => {
            blocked::gemm_blocked(&kernel::selected::<T>(), alpha, a, &b, beta, c, parallel)
        }
        Backend::MatrixMultiply if !parallel => matrixmultiply_product(alpha, &a, &b, beta, &mut c),
        Backend::MatrixMultiply if n >= m => {
            c.axis_chunks_iter_mut(Axis(1), BLOCK)
                .into_par_iter()
                .enumerate()
                .for_each(|(j, mut c)| {
                    let b = b.slice(s![.., j * BLOCK..j * BLOCK + c.ncols()]);
                    matrixmultiply_product(alpha, &a, &b, beta, &mut c);
                });
        }
        Backend::MatrixMultiply => {
            c.axis_chunks_iter_mut(Axis(0), BLOCK)
                .into_par_iter()
                .enumerate()
                .for_each(|(i, mut c)| {
                    let a = a.slice(s![i * BLOCK..i * BLOCK + c.nrows(), ..]);
                    matrixmultiply_product(alpha, &a, &b, beta, &mut c);
                });
        }
    }
}

/// `C ← alpha·A·im2col(image) + beta·C` (implicit GEMM): the B operand is
/// the im2col matrix of one image (C·KH·KW × OH·OW, see [`crate::im2col()`]),
/// which is never built — the packing routine gathers its panels straight
/// from the image, or, with beta = 0 and at most 128 rows of A, the
/// micro-kernel reads the rows of B in place from zero-padded, stride-phase
/// split bands of the image (no packing of B at all). Equal, bit for bit, to [`gemm`] on
/// the explicit im2col matrix. Parallel on the current pool when large
/// enough.
///
/// # Errors
/// [`Error::Shape`] if `image` is not `channels`·H·W long, A is not
/// (M, C·KH·KW) or C is not (M, OH·OW); [`Error::Parameter`] for a
/// non-finite alpha or beta.
#[allow(clippy::too_many_arguments)]
pub fn gemm_im2col<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    image: &[T],
    channels: usize,
    geom: &Window2d,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    im2col_product(alpha, a, image, channels, geom, beta, c, true)
}

/// [`gemm_im2col`] on the calling thread only (for callers that are already
/// parallel); bit-identical to it.
///
/// # Errors
/// As [`gemm_im2col`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_im2col_serial<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    image: &[T],
    channels: usize,
    geom: &Window2d,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    im2col_product(alpha, a, image, channels, geom, beta, c, false)
}

#[allow(clippy::too_many_arguments)]
fn im2col_product<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    image: &[T],
    channels: usize,
    geom: &Window2d,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
    parallel: bool,
) -> Result<()> {
    let k = checked_product("im2col rows", &[channels, geom.kernel_len()])?;
    check_len(
        "image",
        image.len(),
        checked_product("image elements", &[channels, geom.input_len()])?,
    )?;
    if a.ncols() != k {
        return Err(Error::Shape {
            arg: "a",
            expected: format!("[_, {k}] (C·KH·KW columns)"),
            actual: format!("{:?}", a.shape()),
        });
    }
    if c.dim() != (a.nrows(), geom.output_len()) {
        return Err(Error::shape("c", [a.nrows(), geom.output_len()], c.shape()));
    }
    check_scalars(alpha, beta)?;
    let (m, n) = c.dim();
    if trivial(m, n, k, beta, &mut c) {
        return Ok(());
    }
    let parallel = worth_parallel(m, n, k, parallel);
    match backend() {
        Backend::Patchwise if direct::applies(m, beta, geom) => {
            direct::im2col_product(
                &kernel::selected_rows::<T>(m),
                alpha,
                a,
                (image, 1, image.len()),
                channels,
                geom,
                (None, c.insert_axis(Axis(0))),
                parallel,
            );
        }
        Backend::Patchwise => {
            let b = pack::Im2colB {
                images: image,
                image_stride: image.len(),
                count: 1,
                channels,
                geom,
            };
            blocked::gemm_blocked(&kernel::selected::<T>(), alpha, a, &b, beta, c, parallel);
        }
        Backend::MatrixMultiply => {
            let mut cols = vec![T::ZERO; k * n];
            crate::im2col(image, channels, geom, &mut cols)?;
            let b = ArrayView2::from_shape((k, n), &cols[..]).expect("K·N elements");
            product(alpha, a, b, beta, c, parallel);
        }
    }
    Ok(())
}

/// Checks a batch of `count` images `image_stride` apart (each `channels`
/// planes of the geometry's input) against the slice holding them; returns
/// the im2col rows (C·KH·KW) and the batch's output pixels (count·OH·OW).
fn check_batch<T>(
    (images, count, image_stride, channels): (&[T], usize, usize, usize),
    geom: &Window2d,
) -> Result<(usize, usize)> {
    let taps = checked_product("im2col rows", &[channels, geom.kernel_len()])?;
    let image_len = checked_product("image elements", &[channels, geom.input_len()])?;
    let pixels = checked_product("stacked output pixels", &[count, geom.output_len()])?;
    check_images(images, count, image_stride, (image_len, "channels·H·W"))?;
    Ok((taps, pixels))
}

/// That `count` images of `image_len` values (`what`, for the message),
/// `image_stride` apart, fit in `images` without overlapping.
fn check_images<T>(
    images: &[T],
    count: usize,
    image_stride: usize,
    (image_len, what): (usize, &str),
) -> Result<()> {
    if image_stride < image_len {
        return Err(Error::parameter(
            "image_stride",
            format!(">= {what} = {image_len}"),
            image_stride,
        ));
    }
    if count > 0 {
        let needed = (count - 1)
            .checked_mul(image_stride)
            .and_then(|v| v.checked_add(image_len))
            .ok_or(Error::Overflow { what: "image batch" })?;
        if images.len() < needed {
            return Err(Error::Shape {
                arg: "images",
                expected: format!(">= {needed} elements ({count} images {image_stride} apart)"),
                actual: format!("{}", images.len()),
            });
        }
    }
    Ok(())
}

/// `Cₙ ← alpha·A·im2col(xₙ) + beta·Cₙ (+ bias)` for n < `count`:
/// [`gemm_im2col`] on `count` images at once, C being (count, M, OH·OW) —
/// e.g. a slice of a convolution's (N, F, OH·OW) output — so small images
/// share one product (one packing of A, whole panels: where [`gemm_im2col`]
/// reads B in place, the images are stacked into one tall image; otherwise
/// their im2col matrices are side by side). Image n holds the
/// `channels`·H·W values starting at `images[n·image_stride]`. With `bias`
/// (M values), `bias[r]` is added to row r of every Cₙ after the product
/// — a convolution's bias — as the tiles are copied to C where they go
/// through a buffer (the in-place route, several images on the packed
/// one), in a pass over C otherwise. Without it, Cₙ = `c[n]` equals, bit
/// for bit, [`gemm_im2col`] on image n alone.
///
/// # Errors
/// As [`gemm_im2col_transposed`], with C (count, M, OH·OW) and A
/// (M, C·KH·KW); [`Error::Shape`] if `bias` is not M long.
///
/// ```
/// use ndarray::{array, Array3};
/// use patchwise_kernels::{gemm_im2col_stacked, Window2d};
/// // Two 1-channel 1×2 images, one 1×2 filter summing its window, bias 0.5.
/// let g = Window2d::new([1, 2], [1, 2], [1, 1], [0, 0], [1, 1]).unwrap();
/// let mut c = Array3::zeros((2, 1, 1));
/// let (a, images) = (array![[1.0f32, 1.0]], [1.0, 2.0, 3.0, 4.0]);
/// gemm_im2col_stacked(1.0, a.view(), &images, 2, 2, 1, &g, 0.0, Some(&[0.5]), c.view_mut()).unwrap();
/// assert_eq!(c, array![[[3.5]], [[7.5]]]);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_im2col_stacked<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    images: &[T],
    count: usize,
    image_stride: usize,
    channels: usize,
    geom: &Window2d,
    beta: T,
    bias: Option<&[T]>,
    c: ArrayViewMut3<'_, T>,
) -> Result<()> {
    let batch = (images, count, image_stride, channels);
    im2col_stacked_product(alpha, a, batch, geom, (beta, bias), c, true)
}

/// [`gemm_im2col_stacked`] on the calling thread only; bit-identical to it.
///
/// # Errors
/// As [`gemm_im2col_stacked`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_im2col_stacked_serial<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    images: &[T],
    count: usize,
    image_stride: usize,
    channels: usize,
    geom: &Window2d,
    beta: T,
    bias: Option<&[T]>,
    c: ArrayViewMut3<'_, T>,
) -> Result<()> {
    let batch = (images, count, image_stride, channels);
    im2col_stacked_product(alpha, a, batch, geom, (beta, bias), c, false)
}

/// Adds `bias[r]` to row r of every matrix in `c`.
fn add_bias<T: Element>(bias: Option<&[T]>, c: &mut ArrayViewMut3<'_, T>) {
    if let Some(bias) = bias {
        for mut image in c.outer_iter_mut() {
            for (mut row, &b) in image.outer_iter_mut().zip(bias) {
                row.mapv_inplace(|v| v + b);
            }
        }
    }
}

/// The checks of a stacked product (C of shape `c_shape`): returns its
/// taps (C·KH·KW) and stacked output pixels.
fn check_stacked<T: Element>(
    a: &ArrayView2<'_, T>,
    batch: (&[T], usize, usize, usize),
    geom: &Window2d,
    bias: Option<&[T]>,
    c_shape: &[usize],
) -> Result<(usize, usize)> {
    let (taps, pixels) = check_batch(batch, geom)?;
    if a.ncols() != taps {
        return Err(Error::Shape {
            arg: "a",
            expected: format!("[_, {taps}] (C·KH·KW columns)"),
            actual: format!("{:?}", a.shape()),
        });
    }
    let (m, p) = (a.nrows(), geom.output_len());
    if c_shape != [batch.1, m, p] {
        return Err(Error::shape("c", [batch.1, m, p], c_shape));
    }
    if let Some(bias) = bias {
        check_len("bias", bias.len(), m)?;
    }
    Ok((taps, pixels))
}

/// [`im2col_stacked_product`] with beta = 0 into fresh memory, written
/// straight by the routes that only write C (the in-place route, or the
/// packed one on one image); other routes get C zeroed first. Every
/// element of C is written when it returns `Ok`.
pub(super) fn im2col_stacked_fresh<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    batch: (&[T], usize, usize, usize),
    geom: &Window2d,
    bias: Option<&[T]>,
    mut c: ArrayViewMut3<'_, MaybeUninit<T>>,
    parallel: bool,
) -> Result<()> {
    let (taps, pixels) = check_stacked(&a, batch, geom, bias, c.shape())?;
    check_scalars(alpha, T::ZERO)?;
    let (images, count, image_stride, channels) = batch;
    let m = a.nrows();
    if matches!(backend(), Backend::Patchwise) && m > 0 && pixels > 0 && taps > 0 {
        let parallel = worth_parallel(m, pixels, taps, parallel);
        if direct::applies(m, T::ZERO, geom) {
            let batch = (images, count, image_stride);
            let kern = kernel::selected_rows::<T>(m);
            direct::im2col_product(&kern, alpha, a, batch, channels, geom, (bias, c), parallel);
            return Ok(());
        }
        if count == 1 {
            let kern = kernel::selected::<T>();
            let b = pack::Im2colB::new(batch, geom);
            blocked::gemm_blocked(
                &kern,
                alpha,
                a,
                &b,
                T::ZERO,
                c.index_axis_mut(Axis(0), 0),
                parallel,
            );
            if bias.is_some() {
                // SAFETY: the product (m, n, k > 0, beta = 0) wrote every
                // element of C.
                add_bias(bias, &mut unsafe { c.assume_init() });
            }
            return Ok(());
        }
    }
    let c = zeroed_view(c, T::ZERO);
    im2col_stacked_product(alpha, a, batch, geom, (T::ZERO, bias), c, parallel)
}

fn im2col_stacked_product<T: Element>(
    alpha: T,
    a: ArrayView2<'_, T>,
    batch: (&[T], usize, usize, usize),
    geom: &Window2d,
    (beta, bias): (T, Option<&[T]>),
    mut c: ArrayViewMut3<'_, T>,
    parallel: bool,
) -> Result<()> {
    let (taps, pixels) = check_stacked(&a, batch, geom, bias, c.shape())?;
    let (images, count, image_stride, channels) = batch;
    let (m, p) = (a.nrows(), geom.output_len());
    check_scalars(alpha, beta)?;
    if m == 0 || pixels == 0 {
        return Ok(());
    }
    if taps == 0 {
        for mut image in c.outer_iter_mut() {
            trivial(m, p, taps, beta, &mut image);
        }
        add_bias(bias, &mut c);
        return Ok(());
    }
    match backend() {
        Backend::Patchwise if direct::applies(m, beta, geom) => {
            let parallel = worth_parallel(m, pixels, taps, parallel);
            let batch = (images, count, image_stride);
            direct::im2col_product(
                &kernel::selected_rows::<T>(m),
                alpha,
                a,
                batch,
                channels,
                geom,
                (bias, c),
                parallel,
            );
        }
        Backend::Patchwise => {
            let b = pack::Im2colB::new(batch, geom);
            let (kern, parallel) = (kernel::selected::<T>(), worth_parallel(m, pixels, taps, parallel));
            if count == 1 {
                // One image: C itself is the (M, P) product.
                blocked::gemm_blocked(&kern, alpha, a, &b, beta, c.index_axis_mut(Axis(0), 0), parallel);
                add_bias(bias, &mut c);
                return Ok(());
            }
            // The images' im2col matrices side by side: C as (M, count·P),
            // gathered (when read) and put back, the bias added on the way.
            // Every value is assigned (beta ≠ 0) or only written (beta = 0).
            let mut wide = Array2::from_shape_vec((m, pixels), spare::take(m * pixels)?).expect("M·P values");
            if beta != T::ZERO {
                for (n, image) in c.outer_iter().enumerate() {
                    wide.slice_mut(s![.., n * p..(n + 1) * p]).assign(&image);
                }
            }
            blocked::gemm_blocked(&kern, alpha, a, &b, beta, wide.view_mut(), parallel);
            for (n, mut image) in c.outer_iter_mut().enumerate() {
                let product = wide.slice(s![.., n * p..(n + 1) * p]);
                match bias {
                    None => image.assign(&product),
                    Some(bias) => {
                        for ((mut row, values), &b) in
                            image.outer_iter_mut().zip(product.outer_iter()).zip(bias)
                        {
                            row.zip_mut_with(&values, |d, &v| *d = v + b);
                        }
                    }
                }
            }
            spare::give_back(wide.into_raw_vec_and_offset().0);
        }
        Backend::MatrixMultiply => {
            let image_len = channels * geom.input_len();
            for (n, c) in c.outer_iter_mut().enumerate() {
                let image = &images[n * image_stride..][..image_len];
                im2col_product(alpha, a, image, channels, geom, beta, c, parallel)?;
            }
            add_bias(bias, &mut c);
        }
    }
    Ok(())
}

/// `C ← alpha·Σₙ Aₙ·im2col(xₙ)ᵀ + beta·C`: a convolution's whole weight
/// gradient, dW = Σₙ doutₙ · im2col(xₙ)ᵀ, as one product over the batch's
/// output pixels. A is (count, M, OH·OW) — image n's block Aₙ, e.g. dout
/// of image n with its pixels flattened — and C is (M, C·KH·KW). Image n
/// holds the `channels`·H·W values starting at `images[n·image_stride]` (a
/// stride larger than one image selects a channel group of wider images).
/// No column matrix is built: with beta = 0 and at most 96 taps
/// (C·KH·KW) every element is a sum of dot products of A's rows with the
/// taps' rows, both read where they lie (nothing packed); with beta = 0,
/// finite images and rows not too narrow (at most 10 % extra work on the
/// padded width) the taps' rows are read in place by a micro-kernel that
/// broadcasts them from where they lie (only A is packed); otherwise B
/// panels are gathered straight from the images. Parallel on the current pool when
/// large enough; bit-identical for any number of threads.
///
/// # Errors
/// [`Error::Shape`] if `images` is too short, `image_stride` is less than
/// one image, A is not (_, M, OH·OW) or C is not (M, C·KH·KW);
/// [`Error::Parameter`] for a non-finite alpha or beta.
///
/// ```
/// use ndarray::{array, Array2};
/// use patchwise_kernels::{gemm_im2col_transposed, Window2d};
/// // Two 1-channel 2×2 images, 1×1 taps: the product is A₀·x₀ᵀ + A₁·x₁ᵀ.
/// let g = Window2d::new([2, 2], [1, 1], [1, 1], [0, 0], [1, 1]).unwrap();
/// let a = array![[[1.0f64, 1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0, 2.0]]];
/// let mut c = Array2::zeros((1, 1));
/// gemm_im2col_transposed(1.0, a.view(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 4, 1, &g, 0.0, c.view_mut()).unwrap();
/// assert_eq!(c[[0, 0]], 1.0 + 2.0 + 3.0 + 4.0 + 2.0 * 8.0);
/// ```
#[allow(clippy::too_many_arguments)]
pub fn gemm_im2col_transposed<T: Element>(
    alpha: T,
    a: ArrayView3<'_, T>,
    images: &[T],
    image_stride: usize,
    channels: usize,
    geom: &Window2d,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    im2col_transposed_product(alpha, a, (images, image_stride, channels), geom, beta, c, true)
}

/// [`gemm_im2col_transposed`] on the calling thread only (for callers that
/// are already parallel); bit-identical to it.
///
/// # Errors
/// As [`gemm_im2col_transposed`].
#[allow(clippy::too_many_arguments)]
pub fn gemm_im2col_transposed_serial<T: Element>(
    alpha: T,
    a: ArrayView3<'_, T>,
    images: &[T],
    image_stride: usize,
    channels: usize,
    geom: &Window2d,
    beta: T,
    c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    im2col_transposed_product(alpha, a, (images, image_stride, channels), geom, beta, c, false)
}

fn im2col_transposed_product<T: Element>(
    alpha: T,
    a: ArrayView3<'_, T>,
    (images, image_stride, channels): (&[T], usize, usize),
    geom: &Window2d,
    beta: T,
    mut c: ArrayViewMut2<'_, T>,
    parallel: bool,
) -> Result<()> {
    let (count, m, p) = a.dim();
    let (taps, pixels) = check_batch((images, count, image_stride, channels), geom)?;
    if p != geom.output_len() {
        return Err(Error::Shape {
            arg: "a",
            expected: format!("[_, _, {}] (OH·OW pixels per image)", geom.output_len()),
            actual: format!("{:?}", a.shape()),
        });
    }
    if c.dim() != (m, taps) {
        return Err(Error::shape("c", [m, taps], c.shape()));
    }
    check_scalars(alpha, beta)?;
    if trivial(m, taps, pixels, beta, &mut c) {
        return Ok(());
    }
    let parallel = worth_parallel(m, taps, pixels, parallel);
    let image_len = channels * geom.input_len();
    let backend = backend();
    if backend == Backend::Patchwise && direct_dot::applies(beta, taps, &a) {
        let kern = kernel::selected_dot::<T>();
        direct_dot::im2col_dot_product(
            &kern,
            alpha,
            a,
            (images, image_stride),
            channels,
            geom,
            c,
            parallel,
        );
        return Ok(());
    }
    if backend == Backend::Patchwise
        && direct_transposed::applies(beta, geom)
        && direct_transposed::im2col_transposed_product(
            &kernel::selected_a_rows::<T>(taps),
            alpha,
            a,
            (images, image_stride),
            channels,
            geom,
            c.view_mut(),
            parallel,
        )
    {
        return Ok(());
    }
    // A as one M × count·OH·OW matrix: a view of one image's block, a copy
    // of several (into a spare vector, every value assigned).
    let stacked = if count > 1 {
        let mut s = Array2::from_shape_vec((m, pixels), spare::take(m * pixels)?).expect("M·P values");
        for (n, a_n) in a.outer_iter().enumerate() {
            s.slice_mut(s![.., n * p..(n + 1) * p]).assign(&a_n);
        }
        Some(s)
    } else {
        None
    };
    let a2 = match &stacked {
        Some(s) => s.view(),
        None => a.index_axis(Axis(0), 0),
    };
    match backend {
        Backend::Patchwise => {
            let b = pack::Im2colTransposedB(pack::Im2colB {
                images,
                image_stride,
                count,
                channels,
                geom,
            });
            blocked::gemm_blocked(&kernel::selected::<T>(), alpha, a2, &b, beta, c, parallel);
        }
        Backend::MatrixMultiply => {
            let mut cols = vec![T::ZERO; taps * pixels];
            for n in 0..count {
                let mut one = vec![T::ZERO; taps * p];
                crate::im2col(&images[n * image_stride..][..image_len], channels, geom, &mut one)?;
                for (dst, src) in cols.chunks_exact_mut(pixels).zip(one.chunks_exact(p)) {
                    dst[n * p..(n + 1) * p].copy_from_slice(src);
                }
            }
            let b = ArrayView2::from_shape((taps, pixels), &cols[..]).expect("K·N elements");
            product(alpha, a2, b.t(), beta, c, parallel);
        }
    }
    if let Some(stacked) = stacked {
        spare::give_back(stacked.into_raw_vec_and_offset().0);
    }
    Ok(())
}

/// matrixmultiply's single-threaded product on checked shapes with
/// m, n, k > 0 (the callers handle the trivial ones first).
fn matrixmultiply_product<T: Element>(
    alpha: T,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    beta: T,
    c: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    let (sa, sb) = (a.strides(), b.strides());
    let sc = [c.strides()[0], c.strides()[1]];
    // SAFETY: the views come from ndarray, so each pointer with its strides
    // addresses exactly the m×k, k×n and m×n elements checked above; `c` is a
    // unique borrow, so it cannot alias `a` or `b`. `as_ptr` of a view points
    // at its logical element [0, 0], which is what matrixmultiply expects
    // for any (also negative) strides.
    unsafe {
        T::matrixmultiply_gemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            sa[0],
            sa[1],
            b.as_ptr(),
            sb[0],
            sb[1],
            beta,
            c.as_mut_ptr(),
            sc[0],
            sc[1],
        );
    }
}

#[cfg(test)]
mod tests {
    //! Every micro-kernel this CPU supports, whatever `PATCHWISE_FORCE_ISA`
    //! says, against the reference: edge tiles, several KC blocks, strided
    //! and transposed operands, alpha and beta.

    use super::blocked::gemm_blocked;
    use super::in_place;
    use super::kernel::{HasKernels, MicroKernel};
    use crate::{Element, Isa};
    use ndarray::{Array2, ShapeBuilder};
    use patchwise_reference as reference;
    use proptest::prelude::*;

    /// The reference product and its error bound (the same product on
    /// absolute values).
    fn expected_and_bound<T: Element + reference::Real>(
        alpha: T,
        a: &Array2<T>,
        b: &Array2<T>,
        beta: T,
        c0: &Array2<T>,
    ) -> (Array2<T>, Array2<T>) {
        let abs = |x: &Array2<T>| x.mapv(|v| reference::Real::abs(v));
        let expected = reference::gemm(alpha, a.view(), b.view(), beta, c0.view());
        let bound = reference::gemm(
            reference::Real::abs(alpha),
            abs(a).view(),
            abs(b).view(),
            reference::Real::abs(beta),
            abs(c0).view(),
        );
        (expected, bound)
    }

    fn check<T: Element + reference::Real>(
        isa: Isa,
        (m, k, n): (usize, usize, usize),
        t: [bool; 3],
        alpha: f64,
        beta: f64,
        parallel: bool,
    ) {
        let make = |rows: usize, cols: usize, seed: u64, transposed: bool| -> Array2<T> {
            let shape = (rows, cols).set_f(transposed);
            let mut i = 0;
            Array2::from_shape_simple_fn(shape, || {
                i += 1;
                <T as Element>::from_f64(reference::dropout_uniform(seed, i) - 0.5)
            })
        };
        let (a, b, c0) = (make(m, k, 1, t[0]), make(k, n, 2, t[1]), make(m, n, 3, t[2]));
        let (alpha, beta) = (<T as Element>::from_f64(alpha), <T as Element>::from_f64(beta));
        let (expected, bound) = expected_and_bound(alpha, &a, &b, beta, &c0);
        let mut c = c0.clone();
        gemm_blocked(
            &T::kernel(isa),
            alpha,
            a.view(),
            &b.view(),
            beta,
            c.view_mut(),
            parallel,
        );
        let flat = |x: &Array2<T>| x.iter().copied().collect::<Vec<T>>();
        reference::tolerance::assert_within_sum_bound(
            &format!("{isa:?}"),
            &flat(&c),
            &flat(&expected),
            &flat(&bound),
            k,
        );
        // The kernels of other heights for B in place (18, 25 and 64 rows
        // pick 9, 5 and 8 on AVX-512, 25 picks 5 on AVX2), packed and
        // (where it applies) in place: the same bits.
        for rows_of_a in [18, 25, 64] {
            let kern = T::rows_kernel(isa, rows_of_a);
            let label = format!("{isa:?} {}x{}", kern.mr, kern.nr);
            assert!(
                kern.mr <= super::kernel::MAX_MR,
                "{label}: room for its row pointers"
            );
            let mut packed = c0.clone();
            gemm_blocked(
                &kern,
                alpha,
                a.view(),
                &b.view(),
                beta,
                packed.view_mut(),
                parallel,
            );
            assert_eq!(flat(&packed), flat(&c), "{label} packed");
            if in_place::applies(&a.view(), beta, &b.view()) {
                let mut read_in_place = c0.clone();
                in_place::gemm_b_in_place(
                    &kern,
                    alpha,
                    a.view(),
                    b.view(),
                    read_in_place.view_mut(),
                    parallel,
                );
                assert_eq!(flat(&read_in_place), flat(&c), "{label} in place");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_kernel_matches_the_reference(
            m in 1usize..40, k in 1usize..300, n in 1usize..180,
            t in [any::<bool>(), any::<bool>(), any::<bool>()],
            alpha in prop::sample::select(vec![1.0, -0.75]),
            beta in prop::sample::select(vec![0.0, 1.0, 0.5]),
            parallel in any::<bool>(),
        ) {
            for isa in Isa::supported() {
                check::<f32>(isa, (m, k, n), t, alpha, beta, parallel);
                check::<f64>(isa, (m, k, n), t, alpha, beta, parallel);
            }
        }
    }

    /// One call of a B-in-place kernel on a rows × cols tile with a bias
    /// equals the call without one, then bias[i] added to row i's values,
    /// bit for bit: full and partial tiles, C with unit or wide column
    /// stride.
    fn check_rows_bias<T: Element + reference::Real>(
        kern: &MicroKernel<T>,
        (rows, cols, kc): (usize, usize, usize),
        (beta, unit_columns): (f64, bool),
    ) {
        let isa = kern.isa;
        let (rows, cols) = (rows.min(kern.mr), cols.min(kern.nr));
        let value =
            |seed: u64, i: usize| <T as Element>::from_f64(reference::dropout_uniform(seed, i as u64) - 0.5);
        let a_packed: Vec<T> = (0..kc * kern.mr).map(|i| value(1, i)).collect();
        // B's step p at (kc − 1 − p)·(NR + 3): reversed, with gaps.
        let store: Vec<T> = (0..kc * (kern.nr + 3)).map(|i| value(2, i)).collect();
        let offsets: Vec<isize> = (0..kc).map(|p| ((kc - 1 - p) * (kern.nr + 3)) as isize).collect();
        let bias: Vec<T> = (0..rows).map(|i| value(4, i)).collect();
        let (rsc, csc) = if unit_columns {
            (cols + 2, 1)
        } else {
            (1, rows + 1)
        };
        let c0: Vec<T> = (0..(rows + 1) * (cols + 2)).map(|i| value(3, i)).collect();
        let (alpha, beta) = (<T as Element>::from_f64(-0.75), <T as Element>::from_f64(beta));
        let run = |bias: *const T| {
            let mut c = c0.clone();
            // SAFETY: kc·MR values of A; NR values at every offset; a rows
            // × cols tile of `c` at strides (rsc, csc); `bias` null or
            // `rows` values.
            unsafe {
                (kern.rows_for_cols(cols))(
                    kc,
                    a_packed.as_ptr(),
                    store.as_ptr(),
                    offsets.as_ptr(),
                    bias,
                    c.as_mut_ptr(),
                    rsc as isize,
                    csc as isize,
                    rows,
                    cols,
                    alpha,
                    beta,
                );
            }
            c
        };
        let mut expected = run(std::ptr::null());
        for i in 0..rows {
            for j in 0..cols {
                expected[i * rsc + j * csc] += bias[i];
            }
        }
        let got = run(bias.as_ptr());
        let bits = |x: &[T]| {
            x.iter()
                .map(|v| Element::to_f64(*v).to_bits())
                .collect::<Vec<u64>>()
        };
        assert_eq!(bits(&got), bits(&expected), "{isa:?} {rows}×{cols}, kc {kc}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn every_rows_kernel_adds_its_bias_after_the_sum(
            rows in 1usize..10, cols in 1usize..50, kc in 1usize..40,
            beta in prop::sample::select(vec![0.0, 1.0, 0.5]),
            unit_columns in any::<bool>(),
        ) {
            // Each set's GEMM kernel and its other heights (see `check`).
            for isa in Isa::supported() {
                for kern in [f32::kernel(isa), f32::rows_kernel(isa, 18), f32::rows_kernel(isa, 25)] {
                    check_rows_bias(&kern, (rows, cols, kc), (beta, unit_columns));
                }
                for kern in [f64::kernel(isa), f64::rows_kernel(isa, 18), f64::rows_kernel(isa, 25)] {
                    check_rows_bias(&kern, (rows, cols, kc), (beta, unit_columns));
                }
            }
        }
    }

    /// One call of an A-in-place kernel on a rows × cols tile: A's rows at
    /// scattered places (reversed order, gaps), B packed, C with unit or
    /// wide column stride.
    fn check_a_rows<T: Element + reference::Real>(
        (isa, taps): (Isa, usize),
        (rows, cols, kc): (usize, usize, usize),
        (beta, unit_columns): (f64, bool),
    ) {
        let kern = T::a_rows_kernel(isa, taps);
        let (rows, cols) = (rows.min(kern.mr), cols.min(kern.nr));
        let value =
            |seed: u64, i: usize| <T as Element>::from_f64(reference::dropout_uniform(seed, i as u64) - 0.5);
        // Row i of A starts at (mr − 1 − i)·(kc + 3) + 1.
        let start = |i: usize| (kern.mr - 1 - i) * (kc + 3) + 1;
        let store: Vec<T> = (0..kern.mr * (kc + 3) + 1).map(|i| value(1, i)).collect();
        let a = Array2::from_shape_fn((rows, kc), |(i, p)| store[start(i) + p]);
        let b_packed: Vec<T> = (0..kc * kern.nr).map(|i| value(2, i)).collect();
        let b = Array2::from_shape_fn((kc, cols), |(p, j)| b_packed[p * kern.nr + j]);
        let c0 = Array2::from_shape_fn((rows, cols), |(i, j)| value(3, i * cols + j));
        let (alpha, beta) = (<T as Element>::from_f64(-0.75), <T as Element>::from_f64(beta));
        let (expected, bound) = expected_and_bound(alpha, &a, &b, beta, &c0);
        let (rsc, csc) = if unit_columns {
            (cols + 2, 1)
        } else {
            (1, rows + 1)
        };
        let mut c = vec![<T as Element>::ZERO; (rows + 1) * (cols + 2)];
        for ((i, j), &v) in c0.indexed_iter() {
            c[i * rsc + j * csc] = v;
        }
        let row_ptrs: Vec<*const T> = (0..kern.mr)
            .map(|i| store[start(i.min(rows.saturating_sub(1)))..].as_ptr())
            .collect();
        // SAFETY: MR row pointers with kc values each, kc·NR values of B,
        // and a rows × cols tile of `c` at strides (rsc, csc).
        unsafe {
            (kern.run)(
                kc,
                row_ptrs.as_ptr(),
                b_packed.as_ptr(),
                c.as_mut_ptr(),
                rsc as isize,
                csc as isize,
                rows,
                cols,
                alpha,
                beta,
            );
        }
        let got: Vec<T> = c0
            .indexed_iter()
            .map(|((i, j), _)| c[i * rsc + j * csc])
            .collect();
        reference::tolerance::assert_within_sum_bound(
            &format!("{isa:?} a-rows"),
            &got,
            &expected.iter().copied().collect::<Vec<T>>(),
            &bound.iter().copied().collect::<Vec<T>>(),
            kc,
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn every_a_rows_kernel_matches_the_reference(
            rows in 1usize..15, cols in 1usize..33, kc in 1usize..300,
            beta in prop::sample::select(vec![0.0, 1.0, 0.5]),
            unit_columns in any::<bool>(),
        ) {
            // 27 taps pick the 14-row AVX-512 f32 kernel, 24 the 12-row one.
            for (isa, taps) in Isa::supported().into_iter().flat_map(|isa| [(isa, 24), (isa, 27)]) {
                check_a_rows::<f32>((isa, taps), (rows, cols, kc), (beta, unit_columns));
                check_a_rows::<f64>((isa, taps), (rows, cols, kc), (beta, unit_columns));
            }
        }
    }
}
