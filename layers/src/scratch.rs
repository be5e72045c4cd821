//! Per-thread spare vectors for a layer's large temporaries, reused across
//! calls. The flipped filters of a stride-1 backward pass (9 MB on ResNet's
//! 7×7 layer) allocated anew each call were page-faulted in and handed back
//! to the system every time — with the weight gradient's 9 MB, about 4800
//! page faults and a third of that layer's backward pass.

use crate::Element;
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
pub(crate) fn take<T: Element>(len: usize) -> Vec<T> {
    let mut v = take_spare().unwrap_or_default();
    if v.len() < len {
        v.resize(len, T::ZERO);
    } else {
        v.truncate(len);
    }
    v
}

/// Keeps `v` as the calling thread's spare vector of `T` for the next
/// [`take`] (the larger one where the thread already has a spare).
pub(crate) fn give_back<T: Element>(v: Vec<T>) {
    let keep = match take_spare::<T>() {
        Some(other) if other.capacity() > v.capacity() => other,
        _ => v,
    };
    SPARES.with(|spares| spares.borrow_mut().push(Box::new(keep)));
}

#[cfg(test)]
mod tests {
    use super::{give_back, take};

    #[test]
    fn spares_are_reused_per_type() {
        let v = take::<f32>(1000);
        assert_eq!(v, vec![0.0; 1000]);
        let ptr = v.as_ptr();
        give_back(v);
        // Shorter: the same memory.
        let w = take::<f32>(500);
        assert_eq!((w.len(), w.as_ptr()), (500, ptr));
        give_back(w);
        // Longer again: still that vector (its capacity kept).
        let w = take::<f32>(1000);
        assert_eq!((w.len(), w.as_ptr()), (1000, ptr));
        // Another type has its own spare; two spares of one type keep the larger.
        let x = take::<f64>(10);
        assert_eq!(x, vec![0.0; 10]);
        give_back(x);
        give_back(take::<f32>(10));
        give_back(w);
        let kept = take::<f32>(1000);
        assert_eq!(kept.as_ptr(), ptr);
        assert_eq!(take::<f64>(10).len(), 10);
    }
}
