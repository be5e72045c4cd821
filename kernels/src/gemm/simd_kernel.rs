//! The one body of every SIMD micro-kernel, written once and instantiated
//! per instruction set and element type (as matrixmultiply does): the ISA
//! files only name the vector type and intrinsics.
//!
//! Each instantiation makes two kernels that differ only in where step p's
//! NR values of B come from: a packed micro-panel (`b + p·NR`, the
//! [`super::kernel::KernelFn`] contract) or a row of a matrix read in place
//! (`b + offsets[p]`, the [`super::kernel::RowsKernelFn`] contract).

/// Defines `unsafe fn $name` ([`super::kernel::KernelFn`]) and
/// `unsafe fn $rows_name` ([`super::kernel::RowsKernelFn`]), compiled with
/// `#[target_feature(enable = $feature)]`: an `$mr` × (`$nv` vectors of
/// `$lanes`) register tile.
macro_rules! simd_kernel {
    (
        $(#[$doc:meta])* $name:ident, $rows_name:ident, $feature:literal, $t:ty, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident
    ) => {
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            /// B: a packed micro-panel.
            $name, (b: *const $t), |p, kc| b.add(p * $lanes * $nv), {},
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            /// B: rows read in place, step p's at `b + offsets[p]`.
            $rows_name, (b: *const $t, offsets: *const isize), |p, kc| b.offset(*offsets.add(p)),
            {
                // Rows read in place may lie far apart (a 1×1
                // convolution's: one image plane per step), more streams
                // than the hardware prefetchers follow: fetch the row
                // PREFETCH steps ahead, and the line past its end (the next
                // panel's start). Measured 1.4× on a 256-channel 1×1
                // convolution, neutral on 3×3 ones.
                const PREFETCH: usize = 8;
                let next = b.offset(*offsets.add((p + PREFETCH).min(kc - 1))) as *const i8;
                let mut byte = 0;
                while byte < $lanes * $nv * std::mem::size_of::<$t>() + 63 {
                    std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(next.add(byte));
                    byte += 64;
                }
            },
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
    };
    (@body
        $(#[$doc:meta])* $name:ident, ($($b:ident: $bt:ty),*), |$p:ident, $kc:ident| $b_step:expr, $prefetch:block,
        $feature:literal, $t:ty, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident
    ) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// As the kernel type's contract, and the CPU must support the
        /// target features.
        #[target_feature(enable = $feature)]
        #[allow(clippy::too_many_arguments)]
        pub(crate) unsafe fn $name(
            $kc: usize,
            a: *const $t,
            $($b: $bt,)*
            c: *mut $t,
            rsc: isize,
            csc: isize,
            rows: usize,
            cols: usize,
            alpha: $t,
            beta: $t,
        ) {
            const NR: usize = $lanes * $nv;
            let mut acc: [[$vec; $nv]; $mr] = [[$zero(); $nv]; $mr];
            for $p in 0..$kc {
                // SAFETY: p < kc, and the caller guarantees kc·MR values at
                // `a` and NR readable values at step p's B address.
                unsafe {
                    let ap = a.add($p * $mr);
                    let bp = $b_step;
                    $prefetch
                    let mut bv: [$vec; $nv] = [$zero(); $nv];
                    for (v, slot) in bv.iter_mut().enumerate() {
                        *slot = $load(bp.add(v * $lanes));
                    }
                    for (i, row) in acc.iter_mut().enumerate() {
                        let ai = $set1(*ap.add(i));
                        for (v, slot) in row.iter_mut().enumerate() {
                            *slot = $fmadd(ai, bv[v], *slot);
                        }
                    }
                }
            }
            let alpha_v = $set1(alpha);
            let beta_v = $set1(beta);
            if rows == $mr && cols == NR && csc == 1 {
                for (i, row) in acc.iter().enumerate() {
                    for (v, &value) in row.iter().enumerate() {
                        // SAFETY: a full tile with unit column stride: row i,
                        // lanes v·L .. (v+1)·L are inside it.
                        unsafe {
                            let p = c.offset(i as isize * rsc).add(v * $lanes);
                            let ab = $mul(alpha_v, value);
                            let out = if beta == 0.0 { ab } else { $add(ab, $mul(beta_v, $load(p))) };
                            $store(p, out);
                        }
                    }
                }
            } else {
                let mut tile = [0.0 as $t; $mr * NR];
                for (i, row) in acc.iter().enumerate() {
                    for (v, &value) in row.iter().enumerate() {
                        // SAFETY: tile holds MR·NR values; i·NR + v·L + L ≤ MR·NR.
                        unsafe { $store(tile.as_mut_ptr().add(i * NR + v * $lanes), value) };
                    }
                }
                for i in 0..rows {
                    let values = &tile[i * NR..i * NR + cols];
                    if csc == 1 {
                        // SAFETY: row i of the tile, `cols` contiguous values.
                        let out = unsafe { std::slice::from_raw_parts_mut(c.offset(i as isize * rsc), cols) };
                        if beta == 0.0 {
                            out.iter_mut().zip(values).for_each(|(o, &v)| *o = alpha * v);
                        } else {
                            out.iter_mut().zip(values).for_each(|(o, &v)| *o = alpha * v + beta * *o);
                        }
                        continue;
                    }
                    for (j, &v) in values.iter().enumerate() {
                        // SAFETY: (i, j) lies in the caller's rows × cols tile.
                        unsafe {
                            let p = c.offset(i as isize * rsc + j as isize * csc);
                            let ab = alpha * v;
                            *p = if beta == 0.0 { ab } else { ab + beta * *p };
                        }
                    }
                }
            }
        }
    };
}

pub(crate) use simd_kernel;
