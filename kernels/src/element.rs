//! The element types patchwise computes in: `f32` and `f64`.

use ndarray::NdFloat;
use std::iter::Sum;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element: implemented for `f32` and `f64` only (the trait
/// is sealed). `f64` is for gradient checks, `f32` for speed.
///
/// Its arithmetic and maths (`exp`, `sqrt`, `abs`, `is_nan`, ...) come from
/// `ndarray::NdFloat` (through `num_traits::Float`).
pub trait Element: sealed::Sealed + NdFloat + Sum + crate::gemm::kernel::HasKernels {
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64(v: f64) -> Self;
    /// Converts a count (rounding above 2^24 for `f32`).
    fn from_usize(v: usize) -> Self {
        Self::from_f64(v as f64)
    }
    /// Widens to `f64`.
    fn to_f64(self) -> f64;

    /// matrixmultiply's GEMM for this type (`sgemm` / `dgemm`).
    ///
    /// # Safety
    /// As `matrixmultiply::sgemm`: the pointers and strides must describe
    /// valid m×k, k×n and m×n matrices, C must not alias A or B.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn matrixmultiply_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! impl_element {
    ($t:ty, $gemm:path) => {
        impl Element for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn to_f64(self) -> f64 {
                self as f64
            }
            unsafe fn matrixmultiply_gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                beta: Self,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: forwarded verbatim; the caller upholds the contract.
                unsafe { $gemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
            }
        }
    };
}

impl_element!(f32, matrixmultiply::sgemm);
impl_element!(f64, matrixmultiply::dgemm);
