//! How close a fast implementation must come to the reference: the
//! tolerances of patchwise's property tests (and fuzz targets), in one place.
//!
//! * Sums of products (GEMM, convolution, pooling sums): per element,
//!   `|fast − reference| ≤ tol(k) · Σ|terms|`, where `Σ|terms|` is the
//!   reference evaluated on the absolute values of its inputs and k is the
//!   number of terms. `tol(k) = 2·(k + 2)·ε` for f32 (the classic GEMM error
//!   bound, for two independent roundings) and 1e-9 for f64 (a relative
//!   error far above f64 round-off, far below any real bug).
//! * Everything else (normalisation, losses, optimizers): per element,
//!   `|fast − reference| ≤ tol · scale`, with tol 1e-9 for f64 and 1e-4 for
//!   f32. The scale is the size of the terms the value is computed from: by
//!   default the array's largest magnitude; for a normalisation's dx, whose
//!   terms cancel (exactly, for a set of one), `max|dout|·max|γ|·max 1/σ`.
//!   A whole-array scale keeps elements that cancel to ~0 from demanding an
//!   impossible relative accuracy.

use crate::Real;

/// Allowed error per unit of `Σ|terms|` for a sum of `terms` products.
pub fn sum_tolerance<T: Real>(terms: usize) -> f64 {
    if T::is_f64() {
        1e-9
    } else {
        2.0 * (terms as f64 + 2.0) * f32::EPSILON as f64
    }
}

/// Allowed error per unit of the array's largest magnitude.
pub fn scaled_tolerance<T: Real>() -> f64 {
    if T::is_f64() {
        1e-9
    } else {
        1e-4
    }
}

/// Panics unless `|fast − expected| ≤ sum_tolerance(terms) · bound`
/// element-wise (`bound` = the reference on absolute values).
pub fn assert_within_sum_bound<T: Real>(what: &str, fast: &[T], expected: &[T], bound: &[T], terms: usize) {
    assert_eq!(
        fast.len(),
        expected.len(),
        "{what}: expected {} elements, got {}",
        expected.len(),
        fast.len()
    );
    assert_eq!(
        bound.len(),
        expected.len(),
        "{what}: bound has {} elements",
        bound.len()
    );
    let tol = sum_tolerance::<T>(terms);
    for (i, ((&f, &e), &b)) in fast.iter().zip(expected).zip(bound).enumerate() {
        let (f, e, b) = (f.to_f64(), e.to_f64(), b.to_f64());
        let allowed = tol * b + f64::MIN_POSITIVE;
        let same = f == e || (f.is_nan() && e.is_nan());
        assert!(
            same || (f - e).abs() <= allowed,
            "{what}[{i}]: fast {f} vs reference {e} (allowed ±{allowed:e})"
        );
    }
}

/// Panics unless `|fast − expected| ≤ scaled_tolerance · max|expected|`
/// element-wise (NaN must meet NaN).
pub fn assert_close_scaled<T: Real>(what: &str, fast: &[T], expected: &[T]) {
    let scale = expected
        .iter()
        .map(|v| v.to_f64().abs())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    assert_close_to_scale(what, fast, expected, scale);
}

/// Panics unless `|fast − expected| ≤ scaled_tolerance · scale` element-wise
/// (NaN must meet NaN).
pub fn assert_close_to_scale<T: Real>(what: &str, fast: &[T], expected: &[T], scale: f64) {
    assert_eq!(
        fast.len(),
        expected.len(),
        "{what}: expected {} elements, got {}",
        expected.len(),
        fast.len()
    );
    let allowed = scaled_tolerance::<T>() * scale + f64::MIN_POSITIVE;
    for (i, (&f, &e)) in fast.iter().zip(expected).enumerate() {
        let (f, e) = (f.to_f64(), e.to_f64());
        let same = (f.is_nan() && e.is_nan()) || f == e;
        assert!(
            same || (f - e).abs() <= allowed,
            "{what}[{i}]: fast {f} vs reference {e} (allowed ±{allowed:e})"
        );
    }
}
