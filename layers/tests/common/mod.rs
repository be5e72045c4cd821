//! Helpers shared by the layers' test files.
#![allow(dead_code)]

use ndarray::{Array, Dimension, ShapeBuilder};
use patchwise_layers::Element;
pub use patchwise_reference as reference;
use proptest::test_runner::Config;

/// The element types under test: both a fast-crate and a reference element.
pub trait Real: Element + reference::Real {}
impl<T: Element + reference::Real> Real for T {}

/// `v` in the element type.
pub fn val<T: Element>(v: f64) -> T {
    <T as Element>::from_f64(v)
}

/// An array of `shape` filled from `raw` (cycled, starting at `offset`).
pub fn arr<T: Element, Sh: ShapeBuilder>(shape: Sh, raw: &[f64], offset: usize) -> Array<T, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    let mut k = offset;
    Array::from_shape_simple_fn(shape, || {
        k += 1;
        val(raw[k % raw.len()])
    })
}

/// Element-wise |a|.
pub fn abs<T: Real, D: Dimension>(a: &Array<T, D>) -> Array<T, D> {
    a.mapv(<T as reference::Real>::abs)
}

/// The elements in logical (row-major) order.
pub fn flat<T: Copy, D: Dimension>(a: &Array<T, D>) -> Vec<T> {
    a.iter().copied().collect()
}

/// Asserts the sum-of-products bound (see `reference::tolerance`).
pub fn assert_sum<T: Real, D: Dimension>(
    what: &str,
    fast: &Array<T, D>,
    expected: &Array<T, D>,
    bound: &Array<T, D>,
    terms: usize,
) {
    assert_eq!(fast.shape(), expected.shape(), "{what}: shape");
    reference::tolerance::assert_within_sum_bound(what, &flat(fast), &flat(expected), &flat(bound), terms);
}

/// Asserts the scaled tolerance (see `reference::tolerance`).
pub fn assert_scaled<T: Real, D: Dimension>(what: &str, fast: &Array<T, D>, expected: &Array<T, D>) {
    assert_eq!(fast.shape(), expected.shape(), "{what}: shape");
    reference::tolerance::assert_close_scaled(what, &flat(fast), &flat(expected));
}

/// `PROPTEST_CASES` when set, else `default`.
pub fn config(default: u32) -> Config {
    let mut c = Config::default();
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = default;
    }
    c
}

/// Runs `f` in rayon pools of 1, 2, 3 and 8 threads and asserts that all
/// results are identical (compare bit patterns: see [`Bits`]).
pub fn assert_deterministic<R: PartialEq + std::fmt::Debug + Send>(what: &str, f: impl Fn() -> R + Sync) {
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(&f)
    };
    let first = run(1);
    for threads in [2, 3, 8] {
        assert!(
            run(threads) == first,
            "{what}: {threads} threads differ from 1 thread"
        );
    }
}

/// Bit patterns of an array, so that comparisons are exact (NaN == NaN).
pub fn bits<D: Dimension>(a: &Array<f32, D>) -> Vec<u32> {
    a.iter().map(|v| v.to_bits()).collect()
}

/// Asserts the scaled tolerance with an explicit scale.
pub fn assert_to_scale<T: Real, D: Dimension>(
    what: &str,
    fast: &Array<T, D>,
    expected: &Array<T, D>,
    scale: f64,
) {
    assert_eq!(fast.shape(), expected.shape(), "{what}: shape");
    reference::tolerance::assert_close_to_scale(what, &flat(fast), &flat(expected), scale);
}

/// The scale of a normalisation's dx: `max|dout| · max|γ| · max_set 1/√(σ²+eps)`,
/// with the variance of each set of values computed in f64.
pub fn norm_dx_scale<T: Real, D: Dimension, E: Dimension>(
    dout: &Array<T, D>,
    gamma: &Array<T, E>,
    sets: &[Vec<T>],
    eps: f64,
) -> f64 {
    let max_abs = |it: &mut dyn Iterator<Item = f64>| it.map(f64::abs).fold(0.0, f64::max);
    let ivar = sets
        .iter()
        .map(|set| {
            let v: Vec<f64> = set.iter().map(|&x| <T as reference::Real>::to_f64(x)).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
            1.0 / (var + eps).sqrt()
        })
        .fold(0.0, f64::max);
    max_abs(&mut dout.iter().map(|&x| <T as reference::Real>::to_f64(x)))
        * max_abs(&mut gamma.iter().map(|&x| <T as reference::Real>::to_f64(x)))
        * ivar
}

/// The scale of a normalisation's dγ and dβ, sums over the rows of
/// `dout·x̂` and `dout` that may cancel: `max_d Σ_n |dout[n, d]|·(|x̂[n, d]| + 1)`,
/// with x̂ normalised per column (batch norm) or per row (layer norm), in f64.
pub fn norm_param_scale<T: Real>(
    dout: &ndarray::Array2<T>,
    x: &ndarray::Array2<T>,
    per_column: bool,
    eps: f64,
) -> f64 {
    let to = |a: &ndarray::Array2<T>| a.mapv(<T as reference::Real>::to_f64);
    let (dout, x) = (to(dout), to(x));
    let axis = ndarray::Axis(if per_column { 0 } else { 1 });
    let mut xhat = x.clone();
    for mut set in xhat.lanes_mut(axis) {
        let len = set.len().max(1) as f64;
        let mean = set.sum() / len;
        let var = set.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len;
        set.mapv_inplace(|v| (v - mean) / (var + eps).sqrt());
    }
    (&dout.mapv(f64::abs) * &xhat.mapv(|v| v.abs() + 1.0))
        .sum_axis(ndarray::Axis(0))
        .fold(0.0, |m: f64, &v| m.max(v))
}
