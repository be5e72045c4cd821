//! The arithmetic all normalisation layers share: moments of a set of values
//! and the closed-form gradient of `x̂ = (x − μ) / √(σ² + eps)`.

use crate::Element;

/// Mean and biased variance of `values` (two passes, in order).
pub(crate) fn moments<T: Element>(values: impl Iterator<Item = T> + Clone, count: usize) -> (T, T) {
    let m = T::from_usize(count);
    let mut sum = T::ZERO;
    for v in values.clone() {
        sum += v;
    }
    let mean = sum / m;
    let mut sq = T::ZERO;
    for v in values {
        sq += (v - mean) * (v - mean);
    }
    (mean, sq / m)
}

/// The sum of a slice in a fixed order the compiler can vectorise: 16
/// running sums over the elements i ≡ l (mod 16) of the whole 16-wide
/// chunks, added in lane order, then the tail in order. Same bits on every
/// machine and thread count.
pub(crate) fn lane_sum<T: Element>(values: &[T]) -> T {
    let mut lanes = [T::ZERO; 16];
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(l, &v)| *l += v);
    }
    lanes.iter().chain(tail).fold(T::ZERO, |acc, &v| acc + v)
}

/// `1 / √(var + eps)`.
pub(crate) fn inv_std<T: Element>(var: T, eps: T) -> T {
    T::ONE / (var + eps).sqrt()
}

/// The sums the closed-form backward needs over one set: `(Σ g, Σ g·x̂)`.
pub(crate) fn grad_sums<T: Element>(g: impl Iterator<Item = T>, xhat: impl Iterator<Item = T>) -> (T, T) {
    let mut sum_g = T::ZERO;
    let mut sum_gx = T::ZERO;
    for (g, x) in g.zip(xhat) {
        sum_g += g;
        sum_gx += g * x;
    }
    (sum_g, sum_gx)
}

/// One element of the closed-form gradient of a set of `m` values:
/// `dx = ivar / m · (m·g − Σg − x̂·Σg·x̂)` with `g = ∂L/∂x̂`.
#[inline]
pub(crate) fn closed_form_dx<T: Element>(g: T, xhat: T, ivar: T, m: T, (sum_g, sum_gx): (T, T)) -> T {
    ivar / m * (m * g - sum_g - xhat * sum_gx)
}
