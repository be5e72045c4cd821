//! Padded strided lines (im2col rows, phase-plane lines, B panels packed
//! from an image) and the 2-D adds of a col2im: one function per element
//! type and instruction set, chosen once ([`super::kernel::HasKernels`]);
//! the AVX-512 ones use masked loads and stores, so padding is never read
//! (the AVX2 lines, through `vmaskmov`, are in [`super::gather_avx2`]).

use crate::Element;

/// Padded strided lines of one length `n` = `out.len() / (offsets.len() ·
/// starts.len())`, a block of lines per offset: line l of block o is
/// `out[(o·L + l)·n..][..n]` (L = `starts.len()`), with its value x =
/// `src[starts[l] + offsets[o] + x·step]` where `offsets[o] + x·step` lies
/// in `0..width` (inside the source line of `width` values starting at
/// `starts[l]`), zero elsewhere — the padding around an image row; a start
/// of [`PADDING_LINE`] makes the whole line zero. One tap's rows of an
/// im2col matrix per offset (the taps of one kernel row: the same source
/// lines), or a phase plane's lines.
///
/// # Safety
/// The CPU must support the function's instruction set.
pub type LinesFn<T> =
    unsafe fn(src: &[T], starts: &[usize], width: usize, offsets: &[isize], step: usize, out: &mut [T]);

/// Marks a line of [`LinesFn`] that lies wholly on padding.
pub(crate) const PADDING_LINE: usize = usize::MAX;

/// The portable lines: zeros, a strided copy of the part inside the
/// source line, zeros.
pub(crate) fn lines_generic<T: Element>(
    src: &[T],
    starts: &[usize],
    width: usize,
    offsets: &[isize],
    step: usize,
    out: &mut [T],
) {
    let Some(block) = out.len().checked_div(offsets.len()) else {
        return;
    };
    for (&offset, out) in offsets.iter().zip(out.chunks_exact_mut(block.max(1))) {
        one_offset_generic(src, starts, width, offset, step, out);
    }
}

/// [`lines_generic`] for one offset.
fn one_offset_generic<T: Element>(
    src: &[T],
    starts: &[usize],
    width: usize,
    offset: isize,
    step: usize,
    out: &mut [T],
) {
    let Some(n) = out.len().checked_div(starts.len()) else {
        return;
    };
    // First x with offset + x·step ≥ 0, and first with it ≥ width.
    let inside = |start: isize| -> usize {
        if start <= 0 {
            0
        } else {
            (start as usize).div_ceil(step).min(n)
        }
    };
    let lo = inside(-offset);
    let hi = inside(width as isize - offset).max(lo);
    for (line, &start) in out.chunks_exact_mut(n).zip(starts) {
        if start == PADDING_LINE || lo == hi {
            line.fill(T::ZERO);
            continue;
        }
        line[..lo].fill(T::ZERO);
        line[hi..].fill(T::ZERO);
        let first = start + (offset + (lo * step) as isize) as usize;
        crate::im2col::copy_strided(&mut line[lo..hi], &src[first..], step);
    }
}

/// The lanes `l` of a vector of `lanes` values starting at position `pos`
/// whose position `pos + l` lies in `0..len`, as a bit mask.
#[inline(always)]
pub(crate) fn lanes_inside(pos: isize, len: usize, lanes: usize) -> u32 {
    let lo = (-pos).clamp(0, lanes as isize) as u32;
    let hi = (len as isize).saturating_sub(pos).clamp(0, lanes as isize) as u32;
    let below = |bits: u32| ((1u64 << bits) - 1) as u32;
    below(hi) & !below(lo)
}

/// Whether every line of `width` values from a start in `starts` (other
/// than [`PADDING_LINE`]) lies inside a source of `len` values. One pass
/// that the compiler vectorises (the padding marker wraps to 0, below
/// every start + 1): on CS231n's 16 lines a call the early-exit loop took
/// a quarter of the lines' time (its im2col, one image in L1, alternated
/// against that loop: 1.11-1.21x).
#[cfg(target_arch = "x86_64")]
fn lines_inside(starts: &[usize], width: usize, len: usize) -> bool {
    let last = starts.iter().fold(0, |most, &s| most.max(s.wrapping_add(1)));
    last == 0 || (last - 1).checked_add(width).is_some_and(|end| end <= len)
}

/// The line length and block length (lines · length) of a [`LinesFn`]
/// call for the vector lines to write; `None` where nothing is left to
/// do: no lines, or the call went through [`lines_generic`] (steps above
/// 2, or lines reaching outside `src`).
#[cfg(target_arch = "x86_64")]
pub(crate) fn vector_lines_shape<T: Element>(
    src: &[T],
    starts: &[usize],
    width: usize,
    offsets: &[isize],
    step: usize,
    out: &mut [T],
) -> Option<(usize, usize)> {
    let n = out.len().checked_div(offsets.len() * starts.len())?;
    if step > 2 || !lines_inside(starts, width, src.len()) {
        lines_generic(src, starts, width, offsets, step, out);
        return None;
    }
    let block = starts.len() * n;
    (block > 0).then_some((n, block))
}

/// Defines an AVX-512F [`LinesFn`]: masked loads (lanes outside the
/// source line are never read and come out zero), for step 2 two
/// vectors' even lanes picked by one permute (and the odd ones, for the
/// next offset, by another), a masked store for the last vector; other
/// steps through [`lines_generic`].
macro_rules! lines_avx512 {
    ($name:ident, $t:ty, $lanes:literal, $mask:ty, $load:ident, $permute:ident, $store:ident, $evens:expr, $odds:expr) => {
        /// See [`LinesFn`].
        ///
        /// # Safety
        /// The CPU must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        pub(crate) unsafe fn $name(
            src: &[$t],
            starts: &[usize],
            width: usize,
            offsets: &[isize],
            step: usize,
            out: &mut [$t],
        ) {
            use std::arch::x86_64::*;
            let Some((n, block)) = vector_lines_shape(src, starts, width, offsets, step, out) else {
                return;
            };
            let (evens, odds) = ($evens, $odds);
            // Each vector's masks (first and second load, store), worked
            // out once for every line; past MASKED vectors (long lines,
            // whose middle vectors are whole) as they come.
            const MASKED: usize = 16;
            // Lines of at most this many vectors are short.
            const SHORT: usize = 2;
            // Most offsets whose short lines go together.
            const TAPS: usize = 8;
            let masks_at = |offset: isize, x: usize| {
                let pos = offset + (x * step) as isize;
                (
                    lanes_inside(pos, width, $lanes) as $mask,
                    lanes_inside(pos + $lanes, width, $lanes) as $mask,
                    lanes_inside(0, n - x, $lanes) as $mask,
                )
            };
            // The values at `pos` of the line from `from`, zero outside it.
            // SAFETY (of each use): each load reads only the lanes of its
            // mask, whose positions lie inside the source line, itself
            // inside `src` (checked above; the pointer is only formed
            // outside it).
            macro_rules! values {
                ($from:expr, $pos:expr, $first:expr, $second:expr) => {{
                    let low = $load($first, $from.wrapping_offset($pos));
                    if step == 1 {
                        low
                    } else {
                        $permute(
                            low,
                            evens,
                            $load($second, $from.wrapping_offset($pos + $lanes)),
                        )
                    }
                }};
            }
            // Offsets o and o + 1 of a step-2 line read the even and the
            // odd lanes of the same two vectors: one pair of loads for
            // both (the load masks of offset o cover o + 1's positions
            // too). CS231n's taps −1, 0, 1 load 4 vectors where they
            // loaded 6.
            let pairs = |o: usize| step == 2 && o + 1 < offsets.len() && offsets[o + 1] == offsets[o] + 1;
            // Offset o's values at `pos` to `at` (evens) and offset
            // o + 1's to `next` (odds), the lanes of `store`. SAFETY (of
            // each use): as `values!`, and the stores write only lanes
            // below n − x of their lines.
            macro_rules! pair {
                ($at:expr, $next:expr, $from:expr, $pos:expr, ($first:expr, $second:expr, $store_mask:expr)) => {{
                    let low = $load($first, $from.wrapping_offset($pos));
                    let high = $load($second, $from.wrapping_offset($pos + $lanes));
                    $store($at, $store_mask, $permute(low, evens, high));
                    $store($next, $store_mask, $permute(low, odds, high));
                }};
            }
            if n <= SHORT * $lanes && offsets.len() <= TAPS {
                // Short lines: vector by vector, its masks worked out once,
                // over every line and offset (1.05-1.1x on CS231n's
                // 16-wide lines; the three offsets of a kernel row in one
                // call, against a call each, alternated: its im2col of one
                // image 1.36-1.42x, its forward pass 1.03-1.05x on two
                // threads, 1.04-1.11x on one).
                let mut masks = [(0, 0, 0); TAPS];
                for x in (0..n).step_by($lanes) {
                    for (m, &offset) in masks.iter_mut().zip(offsets) {
                        *m = masks_at(offset, x);
                    }
                    for (l, &start) in starts.iter().enumerate() {
                        let line = out.as_mut_ptr().wrapping_add(l * n + x);
                        // SAFETY: see `values!`; the stores write only lanes
                        // below n − x of line l of each offset's block.
                        unsafe {
                            if start == PADDING_LINE {
                                for (o, &(_, _, store)) in masks[..offsets.len()].iter().enumerate() {
                                    $store(line.add(o * block), store, $load(0, src.as_ptr()));
                                }
                            } else {
                                let from = src.as_ptr().add(start);
                                let mut o = 0;
                                while o < offsets.len() {
                                    let (first, second, store) = masks[o];
                                    let pos = offsets[o] + (x * step) as isize;
                                    if pairs(o) {
                                        pair!(line.add(o * block), line.add((o + 1) * block), from, pos, (first, second, store));
                                        o += 2;
                                    } else {
                                        $store(line.add(o * block), store, values!(from, pos, first, second));
                                        o += 1;
                                    }
                                }
                            }
                        }
                    }
                }
                return;
            }
            // Longer lines one by one (or pair by pair), so that each
            // line's stores fill whole cache lines in turn (vector by
            // vector over all the lines measured 0.35-0.7x on the im2col
            // of 56- to 224-wide images).
            let mut o = 0;
            while o < offsets.len() {
                let offset = offsets[o];
                let paired = pairs(o);
                let mut masks = [(0, 0, 0); MASKED];
                for (v, m) in masks.iter_mut().enumerate().take(n.div_ceil($lanes)) {
                    *m = masks_at(offset, v * $lanes);
                }
                for (l, &start) in starts.iter().enumerate() {
                    let line = out.as_mut_ptr().wrapping_add(o * block + l * n);
                    let from = src.as_ptr().wrapping_add(start);
                    for (v, x) in (0..n).step_by($lanes).enumerate() {
                        let (first, second, store) = if v < MASKED {
                            masks[v]
                        } else {
                            masks_at(offset, x)
                        };
                        let pos = offset + (x * step) as isize;
                        // SAFETY: see `values!` and `pair!`; the stores
                        // write only lanes below n − x of line l of block
                        // o (and o + 1 when paired), inside `out`.
                        unsafe {
                            if start == PADDING_LINE {
                                let zero = $load(0, src.as_ptr());
                                $store(line.add(x), store, zero);
                                if paired {
                                    $store(line.add(block + x), store, zero);
                                }
                            } else if paired {
                                pair!(line.add(x), line.add(block + x), from, pos, (first, second, store));
                            } else {
                                $store(line.add(x), store, values!(from, pos, first, second));
                            }
                        }
                    }
                }
                o += 1 + paired as usize;
            }
        }
    };
}

lines_avx512!(
    lines_f32_avx512,
    f32,
    16,
    u16,
    _mm512_maskz_loadu_ps,
    _mm512_permutex2var_ps,
    _mm512_mask_storeu_ps,
    _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30),
    _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
);
lines_avx512!(
    lines_f64_avx512,
    f64,
    8,
    u8,
    _mm512_maskz_loadu_pd,
    _mm512_permutex2var_pd,
    _mm512_mask_storeu_pd,
    _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0),
    _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1)
);

/// The shape of a 2-D add ([`AddFn`]): `lines` lines of `len` values,
/// line l at `l·dst_stride` in the destination and `l·src_stride` in the
/// source.
#[derive(Clone, Copy, Debug)]
pub struct AddShape {
    /// Values per line.
    pub len: usize,
    /// Lines.
    pub lines: usize,
    /// Step from one line to the next in the destination.
    pub dst_stride: usize,
    /// Step from one line to the next in the source.
    pub src_stride: usize,
}

/// `dst[l·dst_stride + x] += src[l·src_stride + x]` for x < len, l <
/// lines: one column-matrix row's scatter-add into a col2im's phase lines,
/// in one call (one call per line cost more than the adds on short lines).
/// Panics if a line leaves its slice.
///
/// # Safety
/// The CPU must support the function's instruction set.
pub type AddFn<T> = unsafe fn(dst: &mut [T], src: &[T], shape: AddShape);

/// The portable add.
pub(crate) fn add_generic<T: Element>(dst: &mut [T], src: &[T], shape: AddShape) {
    for l in 0..shape.lines {
        let d = &mut dst[l * shape.dst_stride..][..shape.len];
        let v = &src[l * shape.src_stride..][..shape.len];
        d.iter_mut().zip(v).for_each(|(d, &v)| *d += v);
    }
}

/// Defines an AVX-512F [`AddFn`]: per line whole vectors, then one
/// masked vector for the rest.
macro_rules! add_avx512 {
    ($name:ident, $t:ty, $lanes:literal, $mask:ty, $load:ident, $add:ident, $store:ident) => {
        /// See [`AddFn`].
        ///
        /// # Safety
        /// The CPU must support AVX-512F.
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        pub(crate) unsafe fn $name(dst: &mut [$t], src: &[$t], shape: AddShape) {
            use std::arch::x86_64::*;
            let n = shape.len;
            let tail = lanes_inside(0, n % $lanes, $lanes) as $mask;
            for l in 0..shape.lines {
                let d = dst[l * shape.dst_stride..][..n].as_mut_ptr();
                let v = src[l * shape.src_stride..][..n].as_ptr();
                for x in (0..n).step_by($lanes) {
                    let mask = if x + $lanes <= n { <$mask>::MAX } else { tail };
                    // SAFETY: the mask's lanes are below n − x: inside
                    // both lines (slices of n values) from x.
                    unsafe {
                        let sum = $add($load(mask, d.add(x)), $load(mask, v.add(x)));
                        $store(d.add(x), mask, sum);
                    }
                }
            }
        }
    };
}

add_avx512!(
    add_f32_avx512,
    f32,
    16,
    u16,
    _mm512_maskz_loadu_ps,
    _mm512_add_ps,
    _mm512_mask_storeu_ps
);
add_avx512!(
    add_f64_avx512,
    f64,
    8,
    u8,
    _mm512_maskz_loadu_pd,
    _mm512_add_pd,
    _mm512_mask_storeu_pd
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isa::Isa;

    /// Every lines function this CPU supports against the definition: line
    /// lengths around the vector widths, offsets from well before the source
    /// line to past its end, steps 1-3, source lines ending at the end of
    /// `src` (nothing readable past them), padding lines; `out` starts
    /// dirty, so padding must be written as zeros.
    fn check_all<T: Element>() {
        let functions: Vec<LinesFn<T>> = Isa::supported().into_iter().map(T::lines).collect();
        let src: Vec<T> = (0..100).map(|v| T::from_f64(v as f64 + 1.0)).collect();
        for lines in functions {
            for width in [1, 5, 16, 33] {
                // Source lines: the start, the middle, flush with the end.
                let starts = [0, 40, PADDING_LINE, src.len() - width];
                for n in [1, 7, 8, 16, 17, 40, 300] {
                    for step in 1..=3 {
                        for offset in [-40, -17, -3, -1, 0, 1, 2, 15, 32, 70] {
                            let mut out = vec![T::from_f64(-1.0); starts.len() * n];
                            // SAFETY: only functions of supported instruction sets are listed.
                            unsafe { lines(&src, &starts, width, &[offset], step, &mut out) };
                            for (l, &start) in starts.iter().enumerate() {
                                for x in 0..n {
                                    let position = offset + (x * step) as isize;
                                    let inside =
                                        start != PADDING_LINE && (0..width as isize).contains(&position);
                                    let expected = if inside {
                                        src[start + position as usize]
                                    } else {
                                        T::ZERO
                                    };
                                    assert_eq!(
                                        out[l * n + x],
                                        expected,
                                        "width {width} n {n} step {step} offset {offset} line {l} x {x}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every add this CPU supports against the scalar sum: lengths around
    /// the vector widths, one and several lines, strides longer than the
    /// lines; values between the lines are left as they are.
    fn check_adds<T: Element>() {
        for add in Isa::supported().into_iter().map(T::slice_add) {
            for len in [0, 1, 7, 8, 15, 16, 17, 33] {
                for lines in [1, 3] {
                    let shape = AddShape {
                        len,
                        lines,
                        dst_stride: len + 5,
                        src_stride: len + 2,
                    };
                    let src: Vec<T> = (0..lines * (len + 2))
                        .map(|v| T::from_f64(v as f64 * 0.5))
                        .collect();
                    let dirty = |v: usize| T::from_f64(100.0 - v as f64);
                    let mut dst: Vec<T> = (0..lines * (len + 5)).map(dirty).collect();
                    // SAFETY: only functions of supported instruction sets are listed.
                    unsafe { add(&mut dst, &src, shape) };
                    for (i, &d) in dst.iter().enumerate() {
                        let (l, x) = (i / (len + 5), i % (len + 5));
                        let added = if x < len { src[l * (len + 2) + x] } else { T::ZERO };
                        assert_eq!(d, dirty(i) + added, "len {len} lines {lines} line {l} x {x}");
                    }
                }
            }
        }
    }

    #[test]
    fn adds_match_the_definition() {
        check_adds::<f32>();
        check_adds::<f64>();
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn lines_inside_checks_the_last_start() {
        assert!(lines_inside(&[], 5, 0));
        assert!(lines_inside(&[PADDING_LINE, PADDING_LINE], 5, 0));
        assert!(lines_inside(&[0, 10, PADDING_LINE, 3], 5, 15));
        assert!(!lines_inside(&[0, 11, PADDING_LINE, 3], 5, 15));
        assert!(!lines_inside(&[PADDING_LINE, 0, 11], 5, 15));
        assert!(!lines_inside(&[usize::MAX - 1], 5, usize::MAX));
    }

    /// Several offsets in one call (short lines go together for up to 8
    /// offsets, longer lines and more offsets block by block, also past
    /// the vectors whose masks are worked out once; neighbouring
    /// offsets of step 2 share their loads, also where the source line or
    /// the padding ends between them) give each offset's lines as a call
    /// of its own does.
    fn check_offsets<T: Element>() {
        let functions: Vec<LinesFn<T>> = Isa::supported().into_iter().map(T::lines).collect();
        let src: Vec<T> = (0..100).map(|v| T::from_f64(v as f64 + 1.0)).collect();
        let starts = [0, PADDING_LINE, 33, 100 - 31];
        let spread = |taps: usize| (0..taps).map(|j| 2 * j as isize - 3).collect::<Vec<_>>();
        let neighbours = |taps: usize| (0..taps).map(|j| j as isize - 3).collect::<Vec<_>>();
        let sets = [1, 3, 8, 9]
            .into_iter()
            .flat_map(|taps| [spread(taps), neighbours(taps)])
            .chain([
                vec![-2, -1, 4, 30, 31, 32],
                vec![-1, 0, 1, 5, 6, 7, 29, 30, 31],
                vec![-5, -4, 31, 32],
            ]);
        for lines in functions {
            for n in [1, 16, 17, 40, 300] {
                for step in 1..=3 {
                    for offsets in sets.clone() {
                        let taps = offsets.len();
                        let block = starts.len() * n;
                        let mut together = vec![T::from_f64(-1.0); taps * block];
                        // SAFETY: only functions of supported instruction sets are listed.
                        unsafe { lines(&src, &starts, 31, &offsets, step, &mut together) };
                        for (o, offset) in offsets.iter().enumerate() {
                            let mut alone = vec![T::from_f64(-2.0); block];
                            // SAFETY: as above.
                            unsafe {
                                lines(&src, &starts, 31, std::slice::from_ref(offset), step, &mut alone)
                            };
                            assert!(
                                together[o * block..][..block] == alone[..],
                                "n {n}, step {step}, offset {o} of {taps}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn lines_with_several_offsets_match_one_offset_each() {
        check_offsets::<f32>();
        check_offsets::<f64>();
    }

    #[test]
    fn lines_match_the_definition() {
        check_all::<f32>();
        check_all::<f64>();
    }
}
