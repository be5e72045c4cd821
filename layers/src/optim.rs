//! First-order update rules (CS231n's `optim.py`), updating the weights in
//! place. Each optimizer value holds the state of **one** parameter array
//! (created as zeros on the first update); use one per parameter.
//!
//! ```text
//! SGD:      w ← w − lr·dw
//! Momentum: v ← μ·v − lr·dw;  w ← w + v
//! RMSProp:  c ← ρ·c + (1−ρ)·dw²;  w ← w − lr·dw/(√c + eps)
//! Adam:     t ← t+1;  m ← β1·m + (1−β1)·dw;  v ← β2·v + (1−β2)·dw²
//!           w ← w − lr·(m/(1−β1^t)) / (√(v/(1−β2^t)) + eps)
//! ```
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::optim::{Adam, Optimizer};
//! let mut w = array![1.0f64, 2.0];
//! let mut adam = Adam::default(); // lr 1e-3, β1 0.9, β2 0.999, eps 1e-8
//! adam.update(w.view_mut(), array![0.5, -0.5].view())?;
//! assert!((w[0] - 0.999).abs() < 1e-9 && (w[1] - 2.001).abs() < 1e-9);
//! assert_eq!(adam.t, 1);
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::{check, Element, Error, Result};
use ndarray::{ArrayD, ArrayView, ArrayViewMut, Dimension, Zip};

/// An update rule for one parameter array.
pub trait Optimizer<T: Element> {
    /// Updates `w` in place from its gradient `dw`.
    ///
    /// # Errors
    /// [`Error::Shape`] if dw is not w's shape, or w's shape differs from the
    /// one the state was created for; [`Error::Parameter`] for a
    /// hyper-parameter outside its domain.
    fn update<D: Dimension>(&mut self, w: ArrayViewMut<'_, T, D>, dw: ArrayView<'_, T, D>) -> Result<()>;
}

fn check_grad<T: Element, D: Dimension>(w: &ArrayViewMut<'_, T, D>, dw: &ArrayView<'_, T, D>) -> Result<()> {
    check::shape("dw", dw.shape(), w.shape())
}

/// The state array for `w`: created as zeros, then required to keep w's shape.
fn state<'a, T: Element>(
    slot: &'a mut Option<ArrayD<T>>,
    arg: &'static str,
    shape: &[usize],
) -> Result<&'a mut ArrayD<T>> {
    if let Some(s) = slot {
        if s.shape() != shape {
            return Err(Error::Shape {
                arg,
                expected: format!("{:?} (the shape the optimizer state was created for)", s.shape()),
                actual: format!("{shape:?}"),
            });
        }
    }
    Ok(slot.get_or_insert_with(|| ArrayD::zeros(shape)))
}

/// Vanilla SGD.
#[derive(Clone, Debug)]
pub struct Sgd<T> {
    /// Step size (default 1e-2).
    pub learning_rate: T,
}

impl<T: Element> Default for Sgd<T> {
    fn default() -> Self {
        Self {
            learning_rate: T::from_f64(1e-2),
        }
    }
}

impl<T: Element> Optimizer<T> for Sgd<T> {
    fn update<D: Dimension>(&mut self, mut w: ArrayViewMut<'_, T, D>, dw: ArrayView<'_, T, D>) -> Result<()> {
        check::finite("learning_rate", self.learning_rate)?;
        check_grad(&w, &dw)?;
        let lr = self.learning_rate;
        Zip::from(&mut w).and(&dw).par_for_each(|w, &g| *w -= lr * g);
        Ok(())
    }
}

/// SGD with momentum.
#[derive(Clone, Debug)]
pub struct SgdMomentum<T> {
    /// Step size (default 1e-2).
    pub learning_rate: T,
    /// Velocity decay μ in [0, 1) (default 0.9).
    pub momentum: T,
    /// The velocity, w's shape; zeros before the first update.
    pub velocity: Option<ArrayD<T>>,
}

impl<T: Element> Default for SgdMomentum<T> {
    fn default() -> Self {
        Self {
            learning_rate: T::from_f64(1e-2),
            momentum: T::from_f64(0.9),
            velocity: None,
        }
    }
}

impl<T: Element> Optimizer<T> for SgdMomentum<T> {
    fn update<D: Dimension>(&mut self, mut w: ArrayViewMut<'_, T, D>, dw: ArrayView<'_, T, D>) -> Result<()> {
        check::finite("learning_rate", self.learning_rate)?;
        check::in_unit_range("momentum", self.momentum)?;
        check_grad(&w, &dw)?;
        let (lr, mu) = (self.learning_rate, self.momentum);
        let v = state(&mut self.velocity, "w", w.shape())?;
        let v = v.view_mut().into_dimensionality::<D>().expect("same shape as w");
        Zip::from(&mut w).and(v).and(&dw).par_for_each(|w, v, &g| {
            *v = mu * *v - lr * g;
            *w += *v;
        });
        Ok(())
    }
}

/// RMSProp.
#[derive(Clone, Debug)]
pub struct RmsProp<T> {
    /// Step size (default 1e-2).
    pub learning_rate: T,
    /// Decay ρ of the squared-gradient average, in [0, 1) (default 0.99).
    pub decay_rate: T,
    /// Added to the root (default 1e-8).
    pub epsilon: T,
    /// The squared-gradient average, w's shape; zeros before the first update.
    pub cache: Option<ArrayD<T>>,
}

impl<T: Element> Default for RmsProp<T> {
    fn default() -> Self {
        Self {
            learning_rate: T::from_f64(1e-2),
            decay_rate: T::from_f64(0.99),
            epsilon: T::from_f64(1e-8),
            cache: None,
        }
    }
}

impl<T: Element> Optimizer<T> for RmsProp<T> {
    fn update<D: Dimension>(&mut self, mut w: ArrayViewMut<'_, T, D>, dw: ArrayView<'_, T, D>) -> Result<()> {
        check::finite("learning_rate", self.learning_rate)?;
        check::in_unit_range("decay_rate", self.decay_rate)?;
        check::non_negative("epsilon", self.epsilon)?;
        check_grad(&w, &dw)?;
        let (lr, rho, eps) = (self.learning_rate, self.decay_rate, self.epsilon);
        let c = state(&mut self.cache, "w", w.shape())?;
        let c = c.view_mut().into_dimensionality::<D>().expect("same shape as w");
        Zip::from(&mut w).and(c).and(&dw).par_for_each(|w, c, &g| {
            *c = rho * *c + (T::ONE - rho) * g * g;
            *w -= lr * g / (c.sqrt() + eps);
        });
        Ok(())
    }
}

/// Adam, with t incremented before the bias correction.
#[derive(Clone, Debug)]
pub struct Adam<T> {
    /// Step size (default 1e-3).
    pub learning_rate: T,
    /// First-moment decay β1 in [0, 1) (default 0.9).
    pub beta1: T,
    /// Second-moment decay β2 in [0, 1) (default 0.999).
    pub beta2: T,
    /// Added to the root (default 1e-8).
    pub epsilon: T,
    /// First moment, w's shape; zeros before the first update.
    pub m: Option<ArrayD<T>>,
    /// Second moment, w's shape; zeros before the first update.
    pub v: Option<ArrayD<T>>,
    /// Number of updates made so far.
    pub t: u64,
}

impl<T: Element> Default for Adam<T> {
    fn default() -> Self {
        Self {
            learning_rate: T::from_f64(1e-3),
            beta1: T::from_f64(0.9),
            beta2: T::from_f64(0.999),
            epsilon: T::from_f64(1e-8),
            m: None,
            v: None,
            t: 0,
        }
    }
}

impl<T: Element> Optimizer<T> for Adam<T> {
    fn update<D: Dimension>(&mut self, mut w: ArrayViewMut<'_, T, D>, dw: ArrayView<'_, T, D>) -> Result<()> {
        check::finite("learning_rate", self.learning_rate)?;
        check::in_unit_range("beta1", self.beta1)?;
        check::in_unit_range("beta2", self.beta2)?;
        check::non_negative("epsilon", self.epsilon)?;
        check_grad(&w, &dw)?;
        let (lr, b1, b2, eps) = (self.learning_rate, self.beta1, self.beta2, self.epsilon);
        let shape = w.shape().to_vec();
        state(&mut self.m, "w", &shape)?;
        state(&mut self.v, "w", &shape)?;
        let t = self.t + 1;
        let t_exp = i32::try_from(t).unwrap_or(i32::MAX);
        let c1 = T::ONE - T::from_f64(b1.to_f64().powi(t_exp));
        let c2 = T::ONE - T::from_f64(b2.to_f64().powi(t_exp));
        let m = self
            .m
            .as_mut()
            .expect("created above")
            .view_mut()
            .into_dimensionality::<D>()
            .expect("w's shape");
        let v = self
            .v
            .as_mut()
            .expect("created above")
            .view_mut()
            .into_dimensionality::<D>()
            .expect("w's shape");
        Zip::from(&mut w)
            .and(m)
            .and(v)
            .and(&dw)
            .par_for_each(|w, m, v, &g| {
                *m = b1 * *m + (T::ONE - b1) * g;
                *v = b2 * *v + (T::ONE - b2) * g * g;
                *w -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
            });
        self.t = t;
        Ok(())
    }
}
