//! CS231n's gradient-check helpers (`gradient_check.py`), in f64.

use ndarray::{Array, ArrayView, Dimension, Zip};

/// Numerical gradient of a scalar function f at x by centred differences:
/// `grad[i] = (f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h`.
pub fn eval_numerical_gradient<D: Dimension>(
    mut f: impl FnMut(&Array<f64, D>) -> f64,
    x: &Array<f64, D>,
    h: f64,
) -> Array<f64, D> {
    let mut x = x.as_standard_layout().into_owned();
    let mut grad = Array::zeros(x.raw_dim());
    for k in 0..x.len() {
        let old = x.as_slice().expect("standard layout")[k];
        x.as_slice_mut().expect("standard layout")[k] = old + h;
        let plus = f(&x);
        x.as_slice_mut().expect("standard layout")[k] = old - h;
        let minus = f(&x);
        x.as_slice_mut().expect("standard layout")[k] = old;
        grad.as_slice_mut().expect("fresh array")[k] = (plus - minus) / (2.0 * h);
    }
    grad
}

/// Numerical gradient of an array function f at x, contracted with the
/// upstream gradient df: `grad[i] = Σ_j (f(x + h·eᵢ)_j − f(x − h·eᵢ)_j) · df_j / 2h`.
///
/// # Panics
/// If f's output does not have df's shape.
pub fn eval_numerical_gradient_array<D: Dimension, E: Dimension>(
    mut f: impl FnMut(&Array<f64, D>) -> Array<f64, E>,
    x: &Array<f64, D>,
    df: &Array<f64, E>,
    h: f64,
) -> Array<f64, D> {
    eval_numerical_gradient(
        |x| {
            let out = f(x);
            assert_eq!(
                out.shape(),
                df.shape(),
                "df: expected f's output shape {:?}, got {:?}",
                out.shape(),
                df.shape()
            );
            Zip::from(&out).and(df).fold(0.0, |acc, &o, &d| acc + o * d)
        },
        x,
        h,
    )
}

/// CS231n's relative error: `max_i |a_i − b_i| / max(1e-8, |a_i| + |b_i|)`.
///
/// # Panics
/// If the shapes differ.
pub fn rel_error<D: Dimension>(a: ArrayView<'_, f64, D>, b: ArrayView<'_, f64, D>) -> f64 {
    assert_eq!(
        a.shape(),
        b.shape(),
        "b: expected a's shape {:?}, got {:?}",
        a.shape(),
        b.shape()
    );
    Zip::from(&a).and(&b).fold(0.0, |acc: f64, &x, &y| {
        acc.max((x - y).abs() / (x.abs() + y.abs()).max(1e-8))
    })
}
