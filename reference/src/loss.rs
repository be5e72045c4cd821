//! Classification losses on scores x (N, C) and labels y (N,), 0 ≤ y\[i\] < C.
//! Both return `(loss, dx)`, the loss averaged over the N examples.

use crate::Real;
use ndarray::{Array2, ArrayView2};

fn check_labels<T: Real>(x: &ArrayView2<'_, T>, y: &[usize]) {
    let (n, c) = x.dim();
    assert!(
        n > 0,
        "x: expected at least one example, got shape {:?}",
        x.shape()
    );
    assert_eq!(y.len(), n, "y: expected {n} labels, got {}", y.len());
    for (i, &label) in y.iter().enumerate() {
        assert!(label < c, "y[{i}]: expected a class < {c}, got {label}");
    }
}

/// Softmax (cross-entropy) loss:
/// `loss = (1/N) Σ_i [log Σ_j e^(x_ij − m_i) − (x_{i,y_i} − m_i)]` with the row
/// maximum m_i subtracted first, so scores of any finite size are safe (the
/// seed does not: its defect 4). `dx = (softmax(x) − onehot(y)) / N`.
///
/// # Panics
/// If N = 0, `y` has not N labels, or a label is ≥ C.
pub fn softmax_loss<T: Real>(x: ArrayView2<'_, T>, y: &[usize]) -> (T, Array2<T>) {
    check_labels(&x, y);
    let (n, c) = x.dim();
    let nn = T::from_usize(n);
    let mut loss = T::ZERO;
    let mut dx = Array2::from_elem((n, c), T::ZERO);
    for i in 0..n {
        let mut m = x[[i, 0]];
        for j in 1..c {
            if x[[i, j]] > m {
                m = x[[i, j]];
            }
        }
        let mut sum = T::ZERO;
        for j in 0..c {
            sum += (x[[i, j]] - m).exp();
        }
        loss += sum.ln() - (x[[i, y[i]]] - m);
        for j in 0..c {
            dx[[i, j]] = (x[[i, j]] - m).exp() / sum / nn;
        }
        dx[[i, y[i]]] -= T::ONE / nn;
    }
    (loss / nn, dx)
}

/// Multiclass SVM (hinge) loss with margin 1:
/// `loss = (1/N) Σ_i Σ_{j≠y_i} max(0, x_ij − x_{i,y_i} + 1)`.
/// `dx_ij = 1/N` for each j ≠ y_i with a positive margin, and
/// `dx_{i,y_i} = −(number of positive margins)/N`. A row holding NaN adds
/// NaN to the loss and gets a NaN gradient row (a NaN margin would otherwise
/// compare false and vanish).
///
/// # Panics
/// If N = 0, `y` has not N labels, or a label is ≥ C.
pub fn svm_loss<T: Real>(x: ArrayView2<'_, T>, y: &[usize]) -> (T, Array2<T>) {
    check_labels(&x, y);
    let (n, c) = x.dim();
    let nn = T::from_usize(n);
    let mut loss = T::ZERO;
    let mut dx = Array2::from_elem((n, c), T::ZERO);
    for i in 0..n {
        if x.row(i).iter().any(|v| v.is_nan()) {
            // A NaN margin would compare false and vanish: propagate instead.
            loss += T::from_f64(f64::NAN);
            dx.row_mut(i).fill(T::from_f64(f64::NAN));
            continue;
        }
        let correct = x[[i, y[i]]];
        for j in 0..c {
            if j == y[i] {
                continue;
            }
            let margin = x[[i, j]] - correct + T::ONE;
            if margin > T::ZERO {
                loss += margin;
                dx[[i, j]] += T::ONE / nn;
                dx[[i, y[i]]] -= T::ONE / nn;
            }
        }
    }
    (loss / nn, dx)
}
