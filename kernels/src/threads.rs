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
//!
//! That one entry still cost 25-40 µs, calls back to back, where the
//! caller slept until woken: the wake-up of a sleeping thread is the slow
//! part on a virtual machine (an empty job handed to a worker while the
//! caller spun: 1.2 µs). So the caller hands the work to a worker and,
//! instead of sleeping, waits yielding its CPU ([`std::thread::yield_now`],
//! so the workers keep the cores), up to [`YIELD_WAIT`]; only a longer
//! product puts it to sleep. CS231n's forward pass 1.06x and backward
//! 1.04-1.10x (two threads, called from outside the pool, alternated
//! call by call); products of 8-20 ms unchanged (0.97-1.02x).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a caller outside the pool waits awake for its product: past
/// this, the wake-up the caller then needs costs under 2 % of the call.
const YIELD_WAIT: Duration = Duration::from_millis(2);

/// Runs `f` on a worker of the current pool: directly when the caller is
/// one already (or the pool has one thread), else through one cold entry,
/// the caller waiting awake (see the module's notes). Which thread runs
/// `f` never changes its result. A caller with several parallel steps in
/// a row (a layer's backward pass: bias, weight and input gradients)
/// enters the pool once through it instead of once per step. A panic in
/// `f` reaches the caller.
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
        return f();
    }
    let done = AtomicBool::new(false);
    let mut out = None;
    rayon::in_place_scope(|scope| {
        let (done, out) = (&done, &mut out);
        scope.spawn(move |_| {
            // Set however `f` ends, so the wait below ends too (a panic
            // then reaches the caller through the scope).
            let _done = SetOnDrop(done);
            *out = Some(f());
        });
        let start = Instant::now();
        while !done.load(Ordering::Acquire) && start.elapsed() < YIELD_WAIT {
            std::thread::yield_now();
        }
        // The scope's end waits for the job (asleep, if it still runs).
    });
    out.expect("the scope ran the job to its end")
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// From outside the pool (this test's thread): the result comes back,
    /// computed on a worker of the global pool where it has several; a
    /// panic in `f` reaches the caller instead of leaving it waiting.
    #[test]
    fn results_and_panics_reach_the_caller() {
        assert_eq!(rayon::current_thread_index(), None);
        let index = on_worker(rayon::current_thread_index);
        assert_eq!(
            index.is_some(),
            rayon::current_num_threads() > 1,
            "ran on {index:?}"
        );
        let panicked = std::panic::catch_unwind(|| on_worker(|| panic!("in the job")));
        assert!(panicked.is_err());
        assert_eq!(on_worker(|| 7), 7);
    }
}
