//! Output slots: kernels that only write their outputs serve both
//! initialised memory and fresh memory (`MaybeUninit`) through one generic
//! body, so an output array need not be zero-filled before the kernel
//! overwrites it.

use crate::isa::multiversion;
use ndarray::{ArrayViewMut, Dimension};
use std::mem::MaybeUninit;

/// Where a kernel writes an output value: an element of initialised
/// memory, or of fresh memory that the kernel fills.
///
/// # Safety
/// Implemented only for `T` itself and `MaybeUninit<T>`: both have `T`'s
/// layout, so a kernel may write a `T` through a pointer to a slot cast to
/// `*mut T`. It may read a slot only after writing it, unless `INIT`.
pub(crate) unsafe trait Slot<T>: Send {
    /// Whether the slot holds a value before the kernel writes it (a
    /// product with beta ≠ 0 may read it).
    const INIT: bool;

    /// Writes `v` here.
    fn put(&mut self, v: T);

    /// Writes `src` into `dst` (as fast as `copy_from_slice`).
    ///
    /// # Panics
    /// If the lengths differ (an internal error).
    #[inline(always)]
    fn put_slice(dst: &mut [Self], src: &[T])
    where
        Self: Sized,
        T: Copy,
    {
        assert_eq!(dst.len(), src.len(), "slots for every value");
        // SAFETY: `dst` holds `src.len()` slots, each with T's layout (the
        // trait's contract); a `&mut` and a `&` never overlap; the values
        // written are initialised.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<T>(), src.len()) }
    }
}

// SAFETY: `T` has its own layout and is always initialised.
unsafe impl<T: Copy + Send> Slot<T> for T {
    const INIT: bool = true;

    #[inline(always)]
    fn put(&mut self, v: T) {
        *self = v;
    }
}

// SAFETY: `MaybeUninit<T>` has `T`'s layout.
unsafe impl<T: Copy + Send> Slot<T> for MaybeUninit<T> {
    const INIT: bool = false;

    #[inline(always)]
    fn put(&mut self, v: T) {
        self.write(v);
    }
}

multiversion! {
/// Fills a slice of fresh values with `zero` (whole-vector stores).
pub(crate) fn fill_uninit<A: Copy>(values: &mut [MaybeUninit<A>], zero: A) {
    values.iter_mut().for_each(|v| {
        v.write(zero);
    });
}
}

/// Zeroes a slice of fresh values and returns it initialised.
pub(crate) fn zeroed<A: Copy>(values: &mut [MaybeUninit<A>], zero: A) -> &mut [A] {
    fill_uninit(values, zero);
    // SAFETY: every element was initialised just above, and a
    // `MaybeUninit<A>` has `A`'s layout.
    unsafe { std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<A>(), values.len()) }
}

/// Zeroes a view of fresh values and returns it initialised.
pub(crate) fn zeroed_view<A: Copy, D: Dimension>(
    mut values: ArrayViewMut<'_, MaybeUninit<A>, D>,
    zero: A,
) -> ArrayViewMut<'_, A, D> {
    values.fill(MaybeUninit::new(zero));
    // SAFETY: every element was initialised just above.
    unsafe { values.assume_init() }
}
