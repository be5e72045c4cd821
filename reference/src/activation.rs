//! Element-wise activations: ReLU and the logistic sigmoid.

use crate::Real;
use ndarray::{ArrayD, ArrayViewD, Zip};

fn check_same_shape<T: Real>(dout: &ArrayViewD<'_, T>, x: &ArrayViewD<'_, T>) {
    assert_eq!(
        dout.shape(),
        x.shape(),
        "dout: expected x's shape {:?}, got {:?}",
        x.shape(),
        dout.shape()
    );
}

/// ReLU forward: `out = max(x, 0)` element-wise (NaN stays NaN).
pub fn relu_forward<T: Real>(x: ArrayViewD<'_, T>) -> ArrayD<T> {
    x.mapv(|v| if v < T::ZERO { T::ZERO } else { v })
}

/// ReLU backward: `dx = dout` where `x > 0`, else 0 (the gradient at 0 is 0).
///
/// # Panics
/// If `dout` and `x` differ in shape.
pub fn relu_backward<T: Real>(dout: ArrayViewD<'_, T>, x: ArrayViewD<'_, T>) -> ArrayD<T> {
    check_same_shape(&dout, &x);
    Zip::from(&dout)
        .and(&x)
        .map_collect(|&d, &v| if v > T::ZERO { d } else { T::ZERO })
}

/// The logistic function σ(v) = 1 / (1 + e^(−v)), evaluated without overflow:
/// for v < 0 it uses the equal form e^v / (1 + e^v).
pub fn sigmoid<T: Real>(v: T) -> T {
    if v >= T::ZERO {
        T::ONE / (T::ONE + (-v).exp())
    } else {
        let e = v.exp();
        e / (T::ONE + e)
    }
}

/// Sigmoid forward: `out = σ(x)` element-wise, finite for any finite x.
pub fn sigmoid_forward<T: Real>(x: ArrayViewD<'_, T>) -> ArrayD<T> {
    x.mapv(sigmoid)
}

/// Sigmoid backward: `dx = dout · σ(x) · (1 − σ(x))`.
///
/// # Panics
/// If `dout` and `x` differ in shape.
pub fn sigmoid_backward<T: Real>(dout: ArrayViewD<'_, T>, x: ArrayViewD<'_, T>) -> ArrayD<T> {
    check_same_shape(&dout, &x);
    Zip::from(&dout).and(&x).map_collect(|&d, &v| {
        let s = sigmoid(v);
        d * s * (T::ONE - s)
    })
}
