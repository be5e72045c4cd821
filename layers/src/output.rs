//! Fresh output arrays. Every layer output is a new array that the kernels
//! then overwrite; a large one is zero-filled (and page-faulted) by all
//! threads at once instead of by one `memset`, which alone took a quarter
//! of a pooling backward pass.

use crate::Element;
use ndarray::{Array, Dimension, IntoDimension};
use rayon::prelude::*;

/// Arrays with fewer elements are filled on the calling thread.
const PARALLEL_MIN: usize = 1 << 18;

/// A zero-filled array of `shape` (standard layout).
pub(crate) fn zeros<T: Element, Sh: IntoDimension>(shape: Sh) -> Array<T, Sh::Dim> {
    let dim = shape.into_dimension();
    let len = dim.size();
    let values = if len < PARALLEL_MIN {
        vec![T::ZERO; len]
    } else {
        let mut values = Vec::with_capacity(len);
        values.par_extend(rayon::iter::repeat_n(T::ZERO, len));
        values
    };
    Array::from_shape_vec(dim, values).expect("as many values as the shape has elements")
}
