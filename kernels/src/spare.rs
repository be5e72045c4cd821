//! Per-thread spare vectors for large temporaries, reused across calls.
//!
//! A temporary of a few MB allocated anew on every call (the flipped
//! filters of a convolution's backward pass: 9 MB on ResNet's 7×7 layer;
//! the images' products side by side before they are put back) is often
//! page-faulted in and handed back to the system each time: the allocator
//! returns large freed blocks. On the 7×7 layer's backward pass that was
//! about 4800 page faults per call and a third of its time. A spare vector
//! stays with its thread instead (one per element type, the largest one
//! kept), so steady-state calls neither allocate nor fault.
//!
//! ```
//! use patchwise_kernels::spare;
//! let mut scratch = spare::take::<f32>(1000)?; // 1000 values, to overwrite
//! scratch.fill(1.5);
//! spare::give_back(scratch); // the next take on this thread reuses it
//! # Ok::<(), patchwise_kernels::Error>(())
//! ```

use crate::{checked_product, Element, Error, Result};
use std::any::Any;
use std::cell::RefCell;

thread_local! {
    /// At most one spare vector per element type used on this thread.
    static SPARES: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Removes and returns the calling thread's spare vector of `T`, if any.
fn take_spare<T: Element>() -> Option<Vec<T>> {
    SPARES.with(|spares| {
        let mut spares = spares.borrow_mut();
        let i = spares.iter().position(|s| s.is::<Vec<T>>())?;
        spares.swap_remove(i).downcast::<Vec<T>>().ok().map(|v| *v)
    })
}

/// A vector of `len` values that the caller overwrites (they are whatever
/// an earlier user left, or zeros): the calling thread's spare vector of
/// `T`, grown if needed, or a new one.
///
/// # Errors
/// [`Error::Overflow`] if `len` values of `T` exceed `isize::MAX` bytes
/// (more than any allocation can hold).
pub fn take<T: Element>(len: usize) -> Result<Vec<T>> {
    let what = "spare vector bytes";
    match checked_product(what, &[len, std::mem::size_of::<T>()]) {
        Ok(bytes) if isize::try_from(bytes).is_ok() => {}
        _ => return Err(Error::Overflow { what }),
    }
    let mut v = take_spare().unwrap_or_default();
    if v.len() < len {
        v.resize(len, T::ZERO);
    } else {
        v.truncate(len);
    }
    Ok(v)
}

/// Keeps `v` as the calling thread's spare vector of `T` for the next
/// [`take`] (the larger one where the thread already has a spare).
pub fn give_back<T: Element>(v: Vec<T>) {
    let keep = match take_spare::<T>() {
        Some(other) if other.capacity() > v.capacity() => other,
        _ => v,
    };
    SPARES.with(|spares| spares.borrow_mut().push(Box::new(keep)));
}

#[cfg(test)]
mod tests {
    use super::{give_back, take};
    use crate::Error;

    #[test]
    fn spares_are_reused_per_type() {
        let v = take::<f32>(1000).unwrap();
        assert_eq!(v, vec![0.0; 1000]);
        let ptr = v.as_ptr();
        give_back(v);
        // Shorter: the same memory.
        let w = take::<f32>(500).unwrap();
        assert_eq!((w.len(), w.as_ptr()), (500, ptr));
        give_back(w);
        // Longer again: still that vector (its capacity kept).
        let w = take::<f32>(1000).unwrap();
        assert_eq!((w.len(), w.as_ptr()), (1000, ptr));
        // Another type has its own spare; two spares of one type keep the larger.
        let x = take::<f64>(10).unwrap();
        assert_eq!(x, vec![0.0; 10]);
        give_back(x);
        give_back(take::<f32>(10).unwrap());
        give_back(w);
        let kept = take::<f32>(1000).unwrap();
        assert_eq!(kept.as_ptr(), ptr);
        assert_eq!(take::<f64>(10).unwrap().len(), 10);
    }

    fn overflow<T>(r: crate::Result<Vec<T>>) -> bool {
        matches!(
            r,
            Err(Error::Overflow {
                what: "spare vector bytes"
            })
        )
    }

    #[test]
    fn too_large_a_spare_is_an_error() {
        // More than isize::MAX bytes; more bytes than usize counts.
        assert!(overflow(take::<f32>(usize::MAX / 4)));
        assert!(overflow(take::<f64>(usize::MAX)));
        // A refused take leaves the thread's spare alone.
        let v = take::<f64>(3).unwrap();
        let ptr = v.as_ptr();
        give_back(v);
        assert!(overflow(take::<f64>(usize::MAX / 8 + 1)));
        let kept = take::<f64>(2).unwrap();
        assert_eq!(kept.as_ptr(), ptr);
    }
}
