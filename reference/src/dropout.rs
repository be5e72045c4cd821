//! Inverted dropout with a counter-based, seedable mask.
//!
//! `p` is the probability of **keeping** a unit (as in the seed). Element i of
//! x (row-major order, i = 0, 1, …) is kept when `u(seed, i) < p`, and kept
//! units are scaled by 1/p so that the expected output equals the input:
//!
//! ```text
//! z      = seed + (i + 1) · 0x9E3779B97F4A7C15            (wrapping u64)
//! z      = (z ^ (z >> 30)) · 0xBF58476D1CE4E5B9           (wrapping)
//! z      = (z ^ (z >> 27)) · 0x94D049BB133111EB           (wrapping)
//! z      =  z ^ (z >> 31)
//! u(seed, i) = (z >> 11) · 2⁻⁵³                           ∈ [0, 1)
//! keep[i]    = u(seed, i) < p        (compared in f64)
//! out[i]     = keep[i] ? x[i] / p : 0        (train);   out = x (test)
//! ```
//!
//! u(seed, i) is the (i+1)-th output of SplitMix64 started at `seed`, so the
//! mask is a pure function of (seed, i): any implementation can compute any
//! part of it, in any order, on any number of threads, and agree bit for bit.
//! (The seed document seeds numpy's global generator instead, its defect 7.)

use crate::Real;
use ndarray::{ArrayD, ArrayViewD};

/// SplitMix64's increment (2⁶⁴ / φ).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The uniform number `u(seed, i)` ∈ [0, 1) of the module docs.
pub fn dropout_uniform(seed: u64, index: u64) -> f64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Whether element `index` is kept: `u(seed, index) < p`.
pub fn dropout_keep(seed: u64, index: u64, p: f64) -> bool {
    dropout_uniform(seed, index) < p
}

fn check_p(p: f64) {
    assert!(
        p > 0.0 && p <= 1.0,
        "p: expected a keep probability in (0, 1], got {p}"
    );
}

/// Dropout forward pass. `train = false` is the identity.
///
/// # Panics
/// If `p` is not in (0, 1].
pub fn dropout_forward<T: Real>(x: ArrayViewD<'_, T>, p: T, train: bool, seed: u64) -> ArrayD<T> {
    check_p(p.to_f64());
    if !train {
        return x.to_owned();
    }
    let mut out = x.to_owned();
    // Iterating an owned standard-layout array visits the elements in
    // row-major order, so the enumeration index is the element index i.
    for (i, v) in out.iter_mut().enumerate() {
        *v = if dropout_keep(seed, i as u64, p.to_f64()) {
            *v / p
        } else {
            T::ZERO
        };
    }
    out
}

/// Dropout backward pass: `dx = dout · keep / p` in train mode (the same mask
/// as the forward pass with the same seed), `dx = dout` in test mode.
///
/// # Panics
/// If `p` is not in (0, 1].
pub fn dropout_backward<T: Real>(dout: ArrayViewD<'_, T>, p: T, train: bool, seed: u64) -> ArrayD<T> {
    // d(x·keep/p)/dx = keep/p: the forward pass applied to dout.
    dropout_forward(dout, p, train, seed)
}
