//! The dot-product micro-kernel ([`super::kernel::DotKernelFn`]): FB rows
//! of A against TB rows of B, every pair's products summed lane by lane
//! into one vector accumulator — no value broadcast, nothing packed. It
//! suits products whose both operands lie with the summed index
//! contiguous and whose result is small: a convolution's weight gradient
//! with few taps, `dW[f, t] = Σ_pixels dout[f, pixel] · im2col[t, pixel]`,
//! where dout's rows and the taps' rows (in a band of phase planes) are
//! read where they lie, an output row at a time.
//!
//! `simd_dot_kernel!` writes the SIMD body once; the ISA files name the
//! vector type and intrinsics. [`dot_generic`] is the portable one (one
//! lane per accumulator).

use crate::Element;

macro_rules! simd_dot_kernel {
    (
        $(#[$doc:meta])* $name:ident, $feature:literal, $t:ty, $vec:ty, $lanes:literal, $fb:literal, $tb:literal,
        $mask:ty, $tail_mask:ident, $load_tail:ident, $zero:ident, $load:ident, $store:ident, $fmadd:ident
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As [`super::kernel::DotKernelFn`], and the CPU must support the
        /// target features.
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name(
            rows: usize,
            width: usize,
            a: *const *const $t,
            a_stride: usize,
            b: *const *const $t,
            b_stride: usize,
            acc: *mut $t,
            init: bool,
        ) {
            // SAFETY: the caller passes FB and TB row pointers, each with
            // `rows` rows of `width` readable values `stride` apart, and
            // FB·TB·LANES accumulator values at `acc`; the tail's loads
            // touch only its `width % LANES` lanes.
            unsafe {
                let a: [*const $t; $fb] = std::array::from_fn(|f| *a.add(f));
                let b: [*const $t; $tb] = std::array::from_fn(|t| *b.add(t));
                let mut sums = [[$zero(); $tb]; $fb];
                if !init {
                    for (f, row) in sums.iter_mut().enumerate() {
                        for (t, sum) in row.iter_mut().enumerate() {
                            *sum = $load(acc.add((f * $tb + t) * $lanes));
                        }
                    }
                }
                let (full, tail) = (width / $lanes, width % $lanes);
                let mask: $mask = $tail_mask(tail);
                for y in 0..rows {
                    let (ay, by) = (y * a_stride, y * b_stride);
                    for x in (0..full).map(|chunk| chunk * $lanes) {
                        let av: [$vec; $fb] = std::array::from_fn(|f| $load(a[f].add(ay + x)));
                        for (t, &bt) in b.iter().enumerate() {
                            let bv = $load(bt.add(by + x));
                            for (f, row) in sums.iter_mut().enumerate() {
                                row[t] = $fmadd(av[f], bv, row[t]);
                            }
                        }
                    }
                    if tail > 0 {
                        let x = full * $lanes;
                        let av: [$vec; $fb] = std::array::from_fn(|f| $load_tail(a[f].add(ay + x), mask));
                        for (t, &bt) in b.iter().enumerate() {
                            let bv = $load_tail(bt.add(by + x), mask);
                            for (f, row) in sums.iter_mut().enumerate() {
                                row[t] = $fmadd(av[f], bv, row[t]);
                            }
                        }
                    }
                }
                for (f, row) in sums.iter().enumerate() {
                    for (t, &sum) in row.iter().enumerate() {
                        $store(acc.add((f * $tb + t) * $lanes), sum);
                    }
                }
            }
        }
    };
}

pub(crate) use simd_dot_kernel;

/// The portable [`super::kernel::DotKernelFn`]: one lane, FB × TB
/// accumulators.
///
/// # Safety
/// As [`super::kernel::DotKernelFn`].
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn dot_generic<T: Element, const FB: usize, const TB: usize>(
    rows: usize,
    width: usize,
    a: *const *const T,
    a_stride: usize,
    b: *const *const T,
    b_stride: usize,
    acc: *mut T,
    init: bool,
) {
    // SAFETY: the caller passes FB and TB row pointers and FB·TB
    // accumulators at `acc`.
    let (a, b, acc) = unsafe {
        (
            std::slice::from_raw_parts(a, FB),
            std::slice::from_raw_parts(b, TB),
            std::slice::from_raw_parts_mut(acc, FB * TB),
        )
    };
    if init {
        acc.fill(T::ZERO);
    }
    for y in 0..rows {
        // SAFETY: every row pointer has `rows` rows of `width` values,
        // `stride` apart.
        let a_rows: [&[T]; FB] =
            std::array::from_fn(|f| unsafe { std::slice::from_raw_parts(a[f].add(y * a_stride), width) });
        // SAFETY: as above.
        let b_rows: [&[T]; TB] =
            std::array::from_fn(|t| unsafe { std::slice::from_raw_parts(b[t].add(y * b_stride), width) });
        for (f, a_row) in a_rows.iter().enumerate() {
            for (t, b_row) in b_rows.iter().enumerate() {
                let sum = &mut acc[f * TB + t];
                *sum = a_row.iter().zip(*b_row).fold(*sum, |s, (&x, &w)| x.mul_add(w, s));
            }
        }
    }
}
