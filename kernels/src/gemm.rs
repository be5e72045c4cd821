//! General matrix multiply `C ← alpha·A·B + beta·C` on strided views.
//!
//! The engine behind it is `matrixmultiply`, called single-threaded inside
//! each rayon task: [`gemm`] splits C into column (or row) blocks whose
//! boundaries depend only on the shape, never on the thread count, and each
//! element of C is computed by the same sequence of operations whichever
//! block it lands in, so the result is bit-identical for any number of
//! threads, and equal to [`gemm_serial`]'s.

use crate::error::{Error, Result};
use crate::Element;
use ndarray::{s, ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

/// Products with fewer multiply-adds than this stay on the calling thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 18;
/// Width (in columns of C, or rows when C is tall and narrow) of one task.
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
    mut c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    check_shapes(&a, &b, &c)?;
    check_scalars(alpha, beta)?;
    let (m, k) = a.dim();
    let n = b.ncols();
    let flops = m.saturating_mul(n).saturating_mul(k);
    if flops < PARALLEL_MIN_FLOPS || rayon::current_num_threads() == 1 {
        kernel(alpha, &a, &b, beta, &mut c);
    } else if n >= m {
        c.axis_chunks_iter_mut(Axis(1), BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(j, mut c)| {
                let b = b.slice(s![.., j * BLOCK..j * BLOCK + c.ncols()]);
                kernel(alpha, &a, &b, beta, &mut c);
            });
    } else {
        c.axis_chunks_iter_mut(Axis(0), BLOCK)
            .into_par_iter()
            .enumerate()
            .for_each(|(i, mut c)| {
                let a = a.slice(s![i * BLOCK..i * BLOCK + c.nrows(), ..]);
                kernel(alpha, &a, &b, beta, &mut c);
            });
    }
    Ok(())
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
    mut c: ArrayViewMut2<'_, T>,
) -> Result<()> {
    check_shapes(&a, &b, &c)?;
    check_scalars(alpha, beta)?;
    kernel(alpha, &a, &b, beta, &mut c);
    Ok(())
}

/// The single-threaded product on checked shapes.
fn kernel<T: Element>(
    alpha: T,
    a: &ArrayView2<'_, T>,
    b: &ArrayView2<'_, T>,
    beta: T,
    c: &mut ArrayViewMut2<'_, T>,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if beta == T::ZERO {
            c.fill(T::ZERO);
        } else {
            c.mapv_inplace(|v| beta * v);
        }
        return;
    }
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
