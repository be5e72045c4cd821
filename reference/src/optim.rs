//! First-order update rules of CS231n's `optim.py`, as pure functions: each
//! takes the weights w, their gradient dw and the rule's state, and returns
//! the next weights and state. All operations are element-wise.

use crate::Real;
use ndarray::{ArrayD, ArrayViewD, Zip};

fn check_like<T: Real>(name: &str, a: &ArrayViewD<'_, T>, w: &ArrayViewD<'_, T>) {
    assert_eq!(
        a.shape(),
        w.shape(),
        "{name}: expected w's shape {:?}, got {:?}",
        w.shape(),
        a.shape()
    );
}

/// Vanilla SGD: `w ← w − lr · dw` (CS231n default lr 1e-2).
///
/// # Panics
/// If `dw` is not w's shape.
pub fn sgd<T: Real>(w: ArrayViewD<'_, T>, dw: ArrayViewD<'_, T>, learning_rate: T) -> ArrayD<T> {
    check_like("dw", &dw, &w);
    Zip::from(&w).and(&dw).map_collect(|&w, &g| w - learning_rate * g)
}

/// SGD with momentum (defaults lr 1e-2, momentum 0.9):
/// `v ← μ·v − lr·dw; w ← w + v`. Returns `(next_w, next_v)`.
///
/// # Panics
/// If `dw` or `velocity` is not w's shape.
pub fn sgd_momentum<T: Real>(
    w: ArrayViewD<'_, T>,
    dw: ArrayViewD<'_, T>,
    velocity: ArrayViewD<'_, T>,
    learning_rate: T,
    momentum: T,
) -> (ArrayD<T>, ArrayD<T>) {
    check_like("dw", &dw, &w);
    check_like("velocity", &velocity, &w);
    let v = Zip::from(&velocity)
        .and(&dw)
        .map_collect(|&v, &g| momentum * v - learning_rate * g);
    let next_w = Zip::from(&w).and(&v).map_collect(|&w, &v| w + v);
    (next_w, v)
}

/// RMSProp hyper-parameters (CS231n defaults: lr 1e-2, decay 0.99, eps 1e-8).
#[derive(Clone, Copy, Debug)]
pub struct RmsPropConfig<T> {
    /// Step size.
    pub learning_rate: T,
    /// Decay of the squared-gradient average.
    pub decay_rate: T,
    /// Added to the root before dividing.
    pub epsilon: T,
}

impl<T: Real> Default for RmsPropConfig<T> {
    fn default() -> Self {
        Self {
            learning_rate: T::from_f64(1e-2),
            decay_rate: T::from_f64(0.99),
            epsilon: T::from_f64(1e-8),
        }
    }
}

/// RMSProp: `cache ← ρ·cache + (1−ρ)·dw²; w ← w − lr·dw / (√cache + eps)`.
/// Returns `(next_w, next_cache)`.
///
/// # Panics
/// If `dw` or `cache` is not w's shape.
pub fn rmsprop<T: Real>(
    w: ArrayViewD<'_, T>,
    dw: ArrayViewD<'_, T>,
    cache: ArrayViewD<'_, T>,
    config: &RmsPropConfig<T>,
) -> (ArrayD<T>, ArrayD<T>) {
    check_like("dw", &dw, &w);
    check_like("cache", &cache, &w);
    let rho = config.decay_rate;
    let next_cache = Zip::from(&cache)
        .and(&dw)
        .map_collect(|&c, &g| rho * c + (T::ONE - rho) * g * g);
    let next_w = Zip::from(&w)
        .and(&dw)
        .and(&next_cache)
        .map_collect(|&w, &g, &c| w - config.learning_rate * g / (c.sqrt() + config.epsilon));
    (next_w, next_cache)
}

/// Adam hyper-parameters (CS231n defaults: lr 1e-3, β1 0.9, β2 0.999, eps 1e-8).
#[derive(Clone, Copy, Debug)]
pub struct AdamConfig<T> {
    /// Step size.
    pub learning_rate: T,
    /// Decay of the first-moment average.
    pub beta1: T,
    /// Decay of the second-moment average.
    pub beta2: T,
    /// Added to the root before dividing.
    pub epsilon: T,
}

impl<T: Real> Default for AdamConfig<T> {
    fn default() -> Self {
        Self {
            learning_rate: T::from_f64(1e-3),
            beta1: T::from_f64(0.9),
            beta2: T::from_f64(0.999),
            epsilon: T::from_f64(1e-8),
        }
    }
}

/// Adam, with t incremented *before* the bias correction:
///
/// ```text
/// t ← t + 1
/// m ← β1·m + (1−β1)·dw          v ← β2·v + (1−β2)·dw²
/// m̂ = m / (1 − β1^t)            v̂ = v / (1 − β2^t)
/// w ← w − lr · m̂ / (√v̂ + eps)
/// ```
///
/// Returns `(next_w, next_m, next_v, next_t)`.
///
/// # Panics
/// If `dw`, `m` or `v` is not w's shape.
pub fn adam<T: Real>(
    w: ArrayViewD<'_, T>,
    dw: ArrayViewD<'_, T>,
    m: ArrayViewD<'_, T>,
    v: ArrayViewD<'_, T>,
    t: u64,
    config: &AdamConfig<T>,
) -> (ArrayD<T>, ArrayD<T>, ArrayD<T>, u64) {
    check_like("dw", &dw, &w);
    check_like("m", &m, &w);
    check_like("v", &v, &w);
    let t = t + 1;
    let (b1, b2) = (config.beta1, config.beta2);
    let next_m = Zip::from(&m)
        .and(&dw)
        .map_collect(|&m, &g| b1 * m + (T::ONE - b1) * g);
    let next_v = Zip::from(&v)
        .and(&dw)
        .map_collect(|&v, &g| b2 * v + (T::ONE - b2) * g * g);
    let t_exp = i32::try_from(t).unwrap_or(i32::MAX);
    let c1 = T::ONE - T::from_f64(b1.to_f64().powi(t_exp));
    let c2 = T::ONE - T::from_f64(b2.to_f64().powi(t_exp));
    let next_w = Zip::from(&w)
        .and(&next_m)
        .and(&next_v)
        .map_collect(|&w, &m, &v| w - config.learning_rate * (m / c1) / ((v / c2).sqrt() + config.epsilon));
    (next_w, next_m, next_v, t)
}
