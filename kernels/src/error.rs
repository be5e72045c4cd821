//! The error type of every fallible patchwise function.

use std::fmt;

/// What was wrong with the input. Every variant names the offending argument
/// and gives the expected and the actual value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An array argument has the wrong shape or length.
    Shape {
        /// The argument, e.g. `"w"` or `"dout"`.
        arg: &'static str,
        /// The shape it should have had.
        expected: String,
        /// The shape it had.
        actual: String,
    },
    /// A scalar parameter is outside its domain (zero stride, `p` outside
    /// (0, 1], a non-finite learning rate, groups not dividing C, ...).
    Parameter {
        /// The parameter, e.g. `"stride_h"` or `"p"`.
        arg: &'static str,
        /// The domain it must lie in.
        expected: String,
        /// The value it had.
        actual: String,
    },
    /// A (dilated) window is larger than the padded input along one axis.
    WindowTooLarge {
        /// `"height"` or `"width"`.
        axis: &'static str,
        /// The window's extent `dilation · (kernel − 1) + 1`.
        window: usize,
        /// The padded input's length `input + 2 · pad`.
        padded_input: usize,
    },
    /// A class label is not below the number of classes.
    Label {
        /// The example whose label is wrong.
        index: usize,
        /// The number of classes C (labels must be < C).
        classes: usize,
        /// The label given.
        label: usize,
    },
    /// A size computed from the arguments does not fit in `usize`.
    Overflow {
        /// What was being computed, e.g. `"output elements"`.
        what: &'static str,
    },
    /// A cache was used with a backward pass it does not belong to (for
    /// instance the backward of a test-mode forward where none exists).
    Cache {
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape {
                arg,
                expected,
                actual,
            } => write!(f, "{arg}: expected shape {expected}, got {actual}"),
            Error::Parameter {
                arg,
                expected,
                actual,
            } => write!(f, "{arg}: expected {expected}, got {actual}"),
            Error::WindowTooLarge {
                axis,
                window,
                padded_input,
            } => write!(
                f,
                "window ({axis}): expected an extent <= the padded input's {padded_input}, got {window}"
            ),
            Error::Label {
                index,
                classes,
                label,
            } => {
                write!(f, "y[{index}]: expected a class label < {classes}, got {label}")
            }
            Error::Overflow { what } => write!(f, "{what}: the size overflows usize"),
            Error::Cache { reason } => write!(f, "cache: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// `Result` with patchwise's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A [`Error::Shape`] from anything printable.
    pub fn shape(arg: &'static str, expected: impl fmt::Debug, actual: impl fmt::Debug) -> Self {
        Error::Shape {
            arg,
            expected: format!("{expected:?}"),
            actual: format!("{actual:?}"),
        }
    }

    /// A [`Error::Parameter`] from a description of the domain and the value.
    pub fn parameter(arg: &'static str, expected: impl Into<String>, actual: impl fmt::Display) -> Self {
        Error::Parameter {
            arg,
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }
}

/// Checks that a slice argument has exactly `expected` elements.
pub(crate) fn check_len(arg: &'static str, len: usize, expected: usize) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            arg,
            expected: format!("[{expected}] elements"),
            actual: format!("[{len}] elements"),
        })
    }
}

/// The product of `dims`, or [`Error::Overflow`].
pub fn checked_product(what: &'static str, dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or(Error::Overflow { what })
}
