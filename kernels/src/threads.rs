//! Entering the rayon pool once per parallel product.
//!
//! A parallel region started from a thread outside the pool (the program's
//! main thread, typically) is injected into the pool and the caller sleeps
//! until a worker wakes it: two thread wake-ups per region. A GEMM has two
//! regions per KC block (the packing `join`, then the tiles), so a product
//! started from outside pays that toll tens of times. Started from a
//! worker, the regions after the first find the other workers still
//! spinning and cost next to nothing. [`on_worker`] therefore moves a
//! whole multi-region product onto a worker first: one cold entry per call.
//! (Measured on a 2-vCPU KVM guest: a cold `join` of two empty closures
//! 18 µs; ten in a row 180 µs from outside, 17 µs from inside the pool.)

/// Runs `f` on a worker of the current pool: directly when the caller is
/// one already (or the pool has one thread), else through one cold entry.
/// Which thread runs `f` never changes its result. A caller with several
/// parallel steps in a row (a layer's backward pass: bias, weight and
/// input gradients) enters the pool once through it instead of once per
/// step.
///
/// ```
/// let sum: u64 = patchwise_kernels::on_worker(|| {
///     use rayon::prelude::*;
///     (1..=100u64).into_par_iter().sum()
/// });
/// assert_eq!(sum, 5050);
/// ```
pub fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() || rayon::current_num_threads() == 1 {
        f()
    } else {
        rayon::scope(|_| f())
    }
}
