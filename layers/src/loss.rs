//! Classification losses on scores x (N, C) and labels y (N,), 0 ≤ y\[i\] < C.
//! Both return the mean loss over the N examples and ∂loss/∂x.
//!
//! ```text
//! softmax: loss = (1/N) Σ_i [log Σ_j e^(x_ij − m_i) − (x_{i,y_i} − m_i)],  m_i = max_j x_ij
//!          dx = (softmax(x) − onehot(y)) / N
//! svm:     loss = (1/N) Σ_i Σ_{j≠y_i} max(0, x_ij − x_{i,y_i} + 1)
//!          dx_ij = [margin_ij > 0]/N,   dx_{i,y_i} = −(number of positive margins)/N
//! ```
//!
//! Subtracting the row maximum keeps softmax finite for any finite scores.
//! A NaN score makes its row's loss term (so the loss) and gradient row NaN,
//! in both losses.
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::loss;
//! let (l, dx) = loss::softmax_loss(array![[0.0f64, 0.0]].view(), &[0])?;
//! assert!((l - 2f64.ln()).abs() < 1e-15);
//! assert_eq!(dx, array![[-0.5, 0.5]]);
//! let (l, _) = loss::svm_loss(array![[1.0f64, 2.0, 3.0]].view(), &[0])?;
//! assert_eq!(l, 5.0);
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::{Element, Error, Result};
use ndarray::{Array2, ArrayView2, Zip};

fn check_labels<T: Element>(x: &ArrayView2<'_, T>, y: &[usize]) -> Result<()> {
    let (n, c) = x.dim();
    if n == 0 || c == 0 {
        return Err(Error::shape("x", "[N >= 1, C >= 1]", x.shape()));
    }
    if y.len() != n {
        return Err(Error::shape("y", [n], [y.len()]));
    }
    match y.iter().enumerate().find(|(_, &label)| label >= c) {
        Some((index, &label)) => Err(Error::Label {
            index,
            classes: c,
            label,
        }),
        None => Ok(()),
    }
}

/// Per-row losses in parallel, then summed in row order (deterministic).
fn mean_of_rows<T: Element>(
    x: &ArrayView2<'_, T>,
    y: &[usize],
    row: impl Fn(ndarray::ArrayView1<'_, T>, usize, ndarray::ArrayViewMut1<'_, T>) -> T + Sync,
) -> (T, Array2<T>) {
    let n = T::from_usize(x.nrows());
    let mut dx = Array2::zeros(x.raw_dim());
    let mut losses = vec![T::ZERO; x.nrows()];
    Zip::from(x.rows())
        .and(dx.rows_mut())
        .and(&mut ndarray::ArrayViewMut1::from(&mut losses[..]))
        .and(&ndarray::ArrayView1::from(y))
        .par_for_each(|x, dx, loss, &label| *loss = row(x, label, dx));
    let total: T = losses.iter().copied().sum();
    dx.mapv_inplace(|v| v / n);
    (total / n, dx)
}

/// Softmax (cross-entropy) loss.
///
/// # Errors
/// [`Error::Shape`] if N or C is 0 or y has not N labels; [`Error::Label`]
/// for a label ≥ C.
pub fn softmax_loss<T: Element>(x: ArrayView2<'_, T>, y: &[usize]) -> Result<(T, Array2<T>)> {
    check_labels(&x, y)?;
    Ok(mean_of_rows(&x, y, |x, label, mut dx| {
        let m = x.iter().copied().fold(x[0], |m, v| if v > m { v } else { m });
        let sum: T = x.iter().map(|&v| (v - m).exp()).sum();
        for (d, &v) in dx.iter_mut().zip(&x) {
            *d = (v - m).exp() / sum;
        }
        dx[label] -= T::ONE;
        sum.ln() - (x[label] - m)
    }))
}

/// Multiclass SVM (hinge) loss with margin 1.
///
/// # Errors
/// As [`softmax_loss`].
pub fn svm_loss<T: Element>(x: ArrayView2<'_, T>, y: &[usize]) -> Result<(T, Array2<T>)> {
    check_labels(&x, y)?;
    Ok(mean_of_rows(&x, y, |x, label, mut dx| {
        if x.iter().any(|v| v.is_nan()) {
            // A NaN margin would compare false and vanish: propagate instead.
            dx.fill(T::nan());
            return T::nan();
        }
        let correct = x[label];
        let mut loss = T::ZERO;
        let mut positive = T::ZERO;
        for (j, &v) in x.iter().enumerate() {
            let margin = v - correct + T::ONE;
            if j != label && margin > T::ZERO {
                loss += margin;
                dx[j] = T::ONE;
                positive += T::ONE;
            }
        }
        dx[label] = -positive;
        loss
    }))
}
