//! Argument checks shared by the layers.

use crate::{Element, Error, Result};

/// `actual` must equal `expected`.
pub(crate) fn shape(arg: &'static str, actual: &[usize], expected: &[usize]) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(Error::shape(arg, expected, actual))
    }
}

/// A finite hyper-parameter.
pub(crate) fn finite<T: Element>(arg: &'static str, v: T) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(Error::parameter(arg, "a finite number", v))
    }
}

/// A hyper-parameter in [0, 1) (momentum, decay rates).
pub(crate) fn in_unit_range<T: Element>(arg: &'static str, v: T) -> Result<()> {
    if v >= T::ZERO && v < T::ONE {
        Ok(())
    } else {
        Err(Error::parameter(arg, "a number in [0, 1)", v))
    }
}

/// A finite hyper-parameter ≥ 0 (eps, epsilon).
pub(crate) fn non_negative<T: Element>(arg: &'static str, v: T) -> Result<()> {
    if v.is_finite() && v >= T::ZERO {
        Ok(())
    } else {
        Err(Error::parameter(arg, "a finite number >= 0", v))
    }
}
