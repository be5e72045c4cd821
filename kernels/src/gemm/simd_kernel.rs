//! The one body of every SIMD micro-kernel, written once and instantiated
//! per instruction set and element type (as matrixmultiply does): the ISA
//! files only name the vector type and intrinsics.
//!
//! `simd_kernel!` makes four kernels that differ only in where step p's
//! values come from: B from a packed micro-panel (`b + p·NR`) or from a
//! row of a matrix read in place (`b + offsets[p]`), A from a packed
//! micro-panel (`a + p·MR`) or from its rows read in place (row i at
//! `a_rows[i] + p`: the A values are broadcast one at a time, so they
//! need not lie side by side) — the [`super::kernel::KernelFn`],
//! [`super::kernel::RowsKernelFn`], [`super::kernel::ARowsKernelFn`] and
//! [`super::kernel::ABRowsKernelFn`] contracts. `simd_kernel_a_rows!`
//! makes the third alone, for tiles of their own.
//! `simd_kernel_masked_rows!` makes the rows kernel whose B loads go under
//! per-tap lane masks (the [`super::kernel::MaskedRowsKernelFn`] contract:
//! rows read where they lie in a padded image, the padding masked), and
//! its twin reading whole vectors and clearing the lanes off the masks
//! with an AND (the [`super::kernel::ZeroingRowsKernelFn`] contract).

macro_rules! simd_kernel {
    (
        $(#[$doc:meta])* $name:ident, $rows_name:ident, $a_rows_name:ident, $ab_rows_name:ident, b_ahead = $b_ahead:literal, a_ahead = $a_ahead:literal, $feature:literal, $t:ty, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident
    ) => {
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            /// B: a packed micro-panel.
            $name, (a: *const $t, b: *const $t), {}, |p, i| *a.add(p * $mr + i), |p, kc| b.add(p * $lanes * $nv),
            {
                // The packed B micro-panel streams from L2: fetch the step
                // `b_ahead` steps on (0: leave it to the hardware), into the
                // next tile's panel in the last steps.
                if $b_ahead > 0 {
                    $crate::gemm::simd_kernel::prefetch_lines(
                        b.wrapping_add((p + $b_ahead) * $lanes * $nv),
                        $lanes * USED * std::mem::size_of::<$t>(),
                    );
                }
            },
            |bp, v| $load(bp.add(v * $lanes)), bias = std::ptr::null::<$t>(),
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            /// B: rows read in place, step p's at `b + offsets[p]`.
            $rows_name, (a: *const $t, b: *const $t, offsets: *const isize, row_bias: *const $t), {}, |p, i| *a.add(p * $mr + i),
            |p, kc| b.offset(*offsets.add(p)),
            {
                if !LAST_STEPS {
                    $crate::gemm::simd_kernel::prefetch_row(b, offsets, p, $lanes * USED * std::mem::size_of::<$t>());
                }
            },
            |bp, v| $load(bp.add(v * $lanes)), bias = row_bias,
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
        $crate::gemm::simd_kernel::simd_kernel_a_rows!(
            $(#[$doc])* $a_rows_name, a_ahead = $a_ahead, $feature, $t, $vec, $lanes, $mr, $nv,
            $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            /// A: MR rows read in place, row i's step p at `a_rows[i] + p`;
            /// B: rows read in place, step p's at `b + offsets[p]`.
            $ab_rows_name, (a_rows: *const *const $t, b: *const $t, offsets: *const isize),
            {
                // SAFETY: the caller passes MR row pointers.
                let rows_a: [*const $t; $mr] = std::array::from_fn(|i| unsafe { *a_rows.add(i) });
            },
            |p, i| *rows_a[i].add(p),
            |p, kc| b.offset(*offsets.add(p)),
            {
                // B as the rows kernel's; A's rows stream in sequentially,
                // each line feeding many steps: the hardware prefetchers
                // keep up (fetching them ahead measured 0.99-1.01x).
                if !LAST_STEPS {
                    $crate::gemm::simd_kernel::prefetch_row(b, offsets, p, $lanes * USED * std::mem::size_of::<$t>());
                }
            },
            |bp, v| $load(bp.add(v * $lanes)), bias = std::ptr::null::<$t>(),
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
    };
    // Steps `$range` of a kernel's loop; `LAST_STEPS` tells the prefetch
    // block whether rows PREFETCH steps on exist.
    (@steps $range:expr, last = $last:literal, $acc:ident, |$p:ident| $b_step:expr, $prefetch:block, |$bp:ident, $v:ident| $b_load:expr,
        |$ap:ident, $i:ident| $a_value:expr, $vec:ty, $used:ident, $zero:ident, $set1:ident, $fmadd:ident
    ) => {
        for $p in $range {
            #[allow(dead_code)] // read by the rows kernels only
            const LAST_STEPS: bool = $last;
            // SAFETY: p < kc, and the caller guarantees step p's MR values
            // of A and NR values of B readable where the kernel's contract
            // says.
            unsafe {
                let $bp = $b_step;
                $prefetch
                let mut bv: [$vec; $used] = [$zero(); $used];
                for ($v, slot) in bv.iter_mut().enumerate() {
                    *slot = $b_load;
                }
                for ($i, row) in $acc.iter_mut().enumerate() {
                    let ai = $set1($a_value);
                    for (v, slot) in row.iter_mut().enumerate() {
                        *slot = $fmadd(ai, bv[v], *slot);
                    }
                }
            }
        }
    };
    (@body
        $(#[$doc:meta])* $name:ident, ($($arg:ident: $argt:ty),*), {$($setup:tt)*}, |$ap:ident, $i:ident| $a_value:expr,
        |$p:ident, $kc:ident| $b_step:expr, $prefetch:block, |$bp:ident, $v:ident| $b_load:expr, bias = $bias:expr,
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
        pub(crate) unsafe fn $name<const USED: usize>(
            $kc: usize,
            $($arg: $argt,)*
            c: *mut $t,
            rsc: isize,
            csc: isize,
            rows: usize,
            cols: usize,
            alpha: $t,
            beta: $t,
        ) {
            // USED < NR/lanes: a narrow last panel, of which only the first
            // USED vectors are read and computed — the full kernel's sums
            // for those columns, without the FMAs on padding.
            const NR: usize = $lanes * $nv;
            const { assert!(USED >= 1 && USED <= $nv) };
            let mut acc: [[$vec; USED]; $mr] = [[$zero(); USED]; $mr];
            // alpha and beta wait in memory (read back volatile after the
            // loop), not in a register: AVX2's loop needs all 16 (12
            // accumulators, 2 B vectors, the broadcast), and with alpha held
            // LLVM shuffled an accumulator through two moves a step.
            let scalars = [alpha, beta];
            $($setup)*
            // The last PREFETCH steps in a loop of their own, where the
            // rows kernels fetch nothing ahead (`LAST_STEPS`): no clamp on
            // the step to fetch. AVX2's 12 FMAs a step (6 cycles) leave
            // little room for other instructions: with the moves above and
            // the clamp gone (34 → 28 instructions a step; the zeroing
            // kernel's 36 → 31 with its mask pointer) its rows kernel runs
            // at 0.90-0.92x the packed kernel's rate on rows in L1 (0.87-0.88x
            // before), and forced AVX2 gained 1.03-1.38x on the im2col
            // GEMMs and 3×3, 1×1 and 7×7 forward passes on two threads
            // (1.00-1.13x on one; AVX-512 0.97-1.19x, within the noise).
            // The steps before them in groups of UNROLL: one loop counter
            // and one pointer update a group (the last PREFETCH to
            // PREFETCH + UNROLL − 1 steps go to the second loop). On Intel
            // cores the loop's own instructions share the FMAs' ports;
            // forced AVX2 on the Intel machine, alternated call by call in
            // both orders: GEMM 1024³ 1.03x on one thread, 1.02-1.03x on
            // two, the 3×3/56 forward 0.99-1.03x, backward 1.03-1.06x;
            // AVX-512 1024³ 0.96-1.02x.
            const UNROLL: usize = 4;
            let ahead = $kc.saturating_sub($crate::gemm::simd_kernel::PREFETCH) / UNROLL * UNROLL;
            let mut group = 0;
            while group < ahead {
                $crate::gemm::simd_kernel::simd_kernel!(@steps group..group + UNROLL, last = false, acc, |$p| $b_step, $prefetch, |$bp, $v| $b_load,
                    |$ap, $i| $a_value, $vec, USED, $zero, $set1, $fmadd);
                group += UNROLL;
            }
            $crate::gemm::simd_kernel::simd_kernel!(@steps ahead..$kc, last = true, acc, |$p| $b_step, $prefetch, |$bp, $v| $b_load,
                |$ap, $i| $a_value, $vec, USED, $zero, $set1, $fmadd);
            // SAFETY: a local array.
            let [alpha, beta] = unsafe { std::ptr::read_volatile(&scalars) };
            let alpha_v = $set1(alpha);
            let beta_v = $set1(beta);
            // Null, or the tile's MR row biases, added after the sum.
            let bias: *const $t = $bias;
            if rows == $mr && cols == USED * $lanes && csc == 1 {
                for (i, row) in acc.iter().enumerate() {
                    for (v, &value) in row.iter().enumerate() {
                        // SAFETY: a full tile with unit column stride: row i,
                        // lanes v·L .. (v+1)·L are inside it.
                        unsafe {
                            let p = c.offset(i as isize * rsc).add(v * $lanes);
                            let ab = $mul(alpha_v, value);
                            let mut out = if beta == 0.0 { ab } else { $add(ab, $mul(beta_v, $load(p))) };
                            if !bias.is_null() {
                                out = $add(out, $set1(*bias.add(i)));
                            }
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
                    // SAFETY: i < rows ≤ MR values where bias is not null.
                    let add = if bias.is_null() { 0.0 } else { unsafe { *bias.add(i) } };
                    if csc == 1 {
                        // SAFETY: row i of the tile, `cols` contiguous values.
                        let out = unsafe { std::slice::from_raw_parts_mut(c.offset(i as isize * rsc), cols) };
                        if beta == 0.0 {
                            out.iter_mut().zip(values).for_each(|(o, &v)| *o = alpha * v);
                        } else {
                            out.iter_mut().zip(values).for_each(|(o, &v)| *o = alpha * v + beta * *o);
                        }
                        if !bias.is_null() {
                            out.iter_mut().for_each(|o| *o += add);
                        }
                        continue;
                    }
                    for (j, &v) in values.iter().enumerate() {
                        // SAFETY: (i, j) lies in the caller's rows × cols tile.
                        unsafe {
                            let p = c.offset(i as isize * rsc + j as isize * csc);
                            let ab = alpha * v;
                            *p = if beta == 0.0 { ab } else { ab + beta * *p };
                            if !bias.is_null() {
                                *p += add;
                            }
                        }
                    }
                }
            }
        }
    };
}

/// Defines `unsafe fn $name` ([`super::kernel::ARowsKernelFn`]) compiled
/// with `#[target_feature(enable = $feature)]`: an `$mr` × (`$nv` vectors
/// of `$lanes`) register tile whose A rows are read in place and B is a
/// packed micro-panel.
macro_rules! simd_kernel_a_rows {
    (
        $(#[$doc:meta])* $name:ident, a_ahead = $a_ahead:literal, $feature:literal, $t:ty, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident
    ) => {
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            /// A: MR rows read in place, row i's step p at `a_rows[i] + p`;
            /// B: a packed micro-panel.
            $name, (a_rows: *const *const $t, b: *const $t),
            {
                // SAFETY: the caller passes MR row pointers.
                let rows_a: [*const $t; $mr] = std::array::from_fn(|i| unsafe { *a_rows.add(i) });
            },
            |p, i| *rows_a[i].add(p),
            |p, kc| b.add(p * $lanes * $nv),
            {
                // Twelve or fourteen rows stream in at once, more than the
                // hardware prefetchers follow: once per cache line of steps,
                // fetch every row's line `a_ahead` steps on (0: leave it to
                // the hardware — on AVX2's 16 registers the branch made
                // LLVM keep an accumulator on the stack, halving the
                // kernel's speed).
                const LINE: usize = 64 / std::mem::size_of::<$t>();
                if $a_ahead > 0 && p % LINE == 0 {
                    for row in rows_a.iter() {
                        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                            row.wrapping_add(p + $a_ahead) as *const i8,
                        );
                    }
                }
            },
            |bp, v| $load(bp.add(v * $lanes)), bias = std::ptr::null::<$t>(),
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
    };
}

/// Defines `unsafe fn $name` ([`super::kernel::MaskedRowsKernelFn`]) and
/// `unsafe fn $zeroing` ([`super::kernel::ZeroingRowsKernelFn`]) compiled
/// with `#[target_feature(enable = $feature)]`: the rows kernel of
/// [`simd_kernel!`] whose B vectors load under their lane masks
/// (`$masked_load`: lanes off the mask read as zero and never touched), or
/// load whole and have the lanes off the mask cleared (`$cleared_load`);
/// the masks of step p those of tap (first + p) mod taps.
macro_rules! simd_kernel_masked_rows {
    (
        $(#[$doc:meta])* $name:ident, $zeroing:ident, $feature:literal, $t:ty, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
        $masked_load:ident, $cleared_load:ident,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident
    ) => {
        $crate::gemm::simd_kernel::simd_kernel_masked_rows!(@one
            $(#[$doc])*
            /// B: rows read in place, step p's at `b + offsets[p]`, only
            /// the lanes on its tap's masks.
            $name, |bp, masks| $masked_load(bp, masks), $feature, $t, $vec, $lanes, $mr, $nv,
            $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
        $crate::gemm::simd_kernel::simd_kernel_masked_rows!(@one
            $(#[$doc])*
            /// B: rows read in place, step p's at `b + offsets[p]`, the
            /// lanes off its tap's masks cleared.
            $zeroing, |bp, masks| $cleared_load(bp, masks), $feature, $t, $vec, $lanes, $mr, $nv,
            $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
    };
    (@one
        $(#[$doc:meta])* $name:ident, |$bp:ident, $masks:ident| $b_load:expr, $feature:literal, $t:ty, $vec:ty, $lanes:literal, $mr:literal, $nv:literal,
        $zero:ident, $set1:ident, $load:ident, $store:ident, $fmadd:ident, $mul:ident, $add:ident
    ) => {
        $crate::gemm::simd_kernel::simd_kernel!(@body
            $(#[$doc])*
            $name, (a: *const $t, b: *const $t, offsets: *const isize, masks: *const $crate::gemm::kernel::LaneMasks, row_bias: *const $t),
            {
                // SAFETY: the caller passes valid masks.
                let masks = unsafe { &*masks };
                // The masks cycle through the table: a pointer, wrapped
                // at its end (fewer instructions per step than an index).
                let table_end = masks.table.wrapping_add(masks.taps * $nv);
                let mut next_masks = masks.table.wrapping_add(masks.first * $nv);
                let mut step_masks: *const $crate::gemm::kernel::LaneVector;
            },
            |p, i| *a.add(p * $mr + i),
            |p, kc| {
                step_masks = next_masks;
                next_masks = next_masks.wrapping_add($nv);
                if next_masks == table_end {
                    next_masks = masks.table;
                }
                b.wrapping_offset(*offsets.add(p))
            },
            {
                // As the rows kernel's (a hint: it never faults, wherever
                // the row lies): 1.01-1.02x on 3x3 layers with masked
                // loads, alternated call by call against none.
                if !LAST_STEPS {
                    $crate::gemm::simd_kernel::prefetch_row(b, offsets, p, $lanes * USED * std::mem::size_of::<$t>());
                }
            },
            |bp, v| {
                let ($bp, $masks) = (bp.wrapping_add(v * $lanes), step_masks.add(v));
                $b_load
            }, bias = row_bias,
            $feature, $t, $vec, $lanes, $mr, $nv, $zero, $set1, $load, $store, $fmadd, $mul, $add
        );
    };
}

/// Steps ahead that [`prefetch_row`] fetches.
pub(crate) const PREFETCH: usize = 16;

/// Rows read in place may lie far apart (a 1×1 convolution's: one image
/// plane per step), more streams than the hardware prefetchers follow:
/// fetches the `bytes` of B's row [`PREFETCH`] steps after step `p`, and
/// the line past them (the next panel's start). Measured 1.4× on a
/// 256-channel 1×1 convolution, neutral on 3×3 ones. 16 steps ahead rather
/// than 8 (alternated call by call, two threads / one): GEMM 64 × 576 ×
/// 3136 1.01-1.02x / 1.03-1.04x, 64 × 147 × 12544 1.01-1.02x /
/// 1.01-1.03x, the net's, 1×1 and 3×3/56 forward passes 1.00x (12, 20, 24
/// and 32 steps measured no better; 32 0.95x on the second GEMM). The
/// kernels' last PREFETCH steps fetch nothing.
///
/// # Safety
/// `offsets` must point to more than `p` + PREFETCH offsets. The row need
/// not be readable: a prefetch is a hint and never faults.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn prefetch_row<T>(b: *const T, offsets: *const isize, p: usize, bytes: usize) {
    // SAFETY: p + PREFETCH < the caller's offsets.
    let next = b.wrapping_offset(unsafe { *offsets.add(p + PREFETCH) });
    prefetch_lines(next, bytes + 63);
}

/// Fetches the cache lines of the `bytes` from `from` into L1 (a hint:
/// no address faults).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn prefetch_lines<T>(from: *const T, bytes: usize) {
    let from = from as *const i8;
    let mut byte = 0;
    while byte < bytes {
        // SAFETY: a prefetch only hints; no address it is given faults.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(from.wrapping_add(byte))
        };
        byte += 64;
    }
}

pub(crate) use simd_kernel;
pub(crate) use simd_kernel_a_rows;
pub(crate) use simd_kernel_masked_rows;
