//! Rows of a plane split by column phase, so that strided windows read
//! contiguous memory.
//!
//! With a horizontal stride `s`, tap `j` of the full windows `lo..hi` of an
//! output row reads input columns `c, c + s, c + 2s, …` (`c` = the column of
//! tap `j` in window `lo`). Split each input row into its `s` phases
//! (`phase p = [x[p], x[p + s], x[p + 2s], …]`) and those columns become one
//! contiguous slice of phase `c % s`, starting at `c / s`: every tap is then
//! an element-wise pass over the output row.
//!
//! Passes run in whole blocks of [`BLOCK`] elements (one AVX-512 register
//! of f32), so the compiler vectorises them without a scalar tail: pooled
//! rows are short (56 outputs at ResNet's first pooling), and a scalar tail
//! would cost as much as the vector body. Each phase therefore carries
//! `BLOCK` elements of slack after its pixels, which taps may read but never
//! hold data. (The forward passes use it; the average backward pass spreads
//! each output row's shares over one row buffer instead.)
//!
//! Max pooling slides one band down each plane, splitting only the rows it
//! does not hold yet (3×3 stride-2 windows share a row between output
//! rows: 1.04-1.10× over splitting all three), and prefetches the rows
//! ahead ([`prefetch_row`]).

use super::Slot;
use crate::Element;

/// Elements per pass block.
pub(super) const BLOCK: usize = 16;

/// `n` rounded up to whole blocks.
pub(super) fn padded(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// A band of plane rows `y0..y0 + rows`, each split into its column phases.
pub(super) struct PhaseBand<T> {
    data: Vec<T>,
    width: usize,
    stride: usize,
    /// Pixels per phase: ⌈width / stride⌉.
    len: usize,
    /// Distance between phases: one lead element, `len` pixels, then
    /// [`BLOCK`] elements of slack. A phase's lead stands for the column
    /// one stride left of its first pixel (left padding) and holds a
    /// repeat of column 0 (see `max_plane_3x3_stride2`, which reads it as
    /// column −1).
    pitch: usize,
    /// The plane row each slot holds, if any. Plane row y lives in slot
    /// y mod (slots), so that consecutive rows never share a slot and a
    /// band sliding down the plane keeps the rows it already split.
    held: Vec<Option<usize>>,
    /// The plane row of band row 0.
    first: usize,
}

impl<T: Element> PhaseBand<T> {
    /// Room for `rows` rows of `width` pixels, split for `stride`.
    pub(super) fn new(width: usize, stride: usize, rows: usize) -> Self {
        let len = width.div_ceil(stride);
        let pitch = 1 + len + BLOCK;
        Self {
            data: vec![T::ZERO; rows * stride * pitch],
            width,
            stride,
            len,
            pitch,
            held: vec![None; rows],
            first: 0,
        }
    }

    /// Splits rows `y0..y0 + rows` of `plane` into the band.
    #[inline(always)]
    pub(super) fn load(&mut self, plane: &[T], y0: usize, rows: usize) {
        self.forget();
        self.slide(plane, y0, rows);
    }

    /// Forgets the rows held: the next [`slide`](Self::slide) is on
    /// another plane.
    pub(super) fn forget(&mut self) {
        self.held.fill(None);
    }

    /// Rows `y0..y0 + rows` of `plane` as the band, splitting only those
    /// not already held since the last [`forget`](Self::forget) — with
    /// stride-2 3×3 windows, two of each output row's three rows.
    #[inline(always)]
    pub(super) fn slide(&mut self, plane: &[T], y0: usize, rows: usize) {
        let (s, len, pitch, slots) = (self.stride, self.len, self.pitch, self.held.len());
        self.first = y0;
        for y in y0..y0 + rows {
            let slot = y % slots;
            if self.held[slot] == Some(y) {
                continue;
            }
            self.held[slot] = Some(y);
            prefetch_row(plane, y + slots, self.width);
            let row = &plane[y * self.width..][..self.width];
            let phases = &mut self.data[slot * s * pitch..][..s * pitch];
            if s == 2 {
                // The common stride, as one pass over pixel pairs.
                let (even, odd) = phases.split_at_mut(pitch);
                (even[0], odd[0]) = (row[0], row[0]);
                let (even, odd) = (&mut even[1..], &mut odd[1..]);
                let pairs = row.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    even[len - 1] = *last;
                }
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                    *e = pair[0];
                    *o = pair[1];
                }
            } else {
                for p in 0..s {
                    phases[p * pitch] = row[0];
                }
                for (k, pixels) in row.chunks(s).enumerate() {
                    for (p, &v) in pixels.iter().enumerate() {
                        phases[p * pitch + 1 + k] = v;
                    }
                }
            }
        }
    }

    /// The `n` pixels of band row `i` at columns `c, c + s, …, c + (n−1)s`;
    /// `n` may run up to `BLOCK − 1` past the row's end, into the slack.
    #[inline(always)]
    pub(super) fn taps(&self, i: usize, c: usize, n: usize) -> &[T] {
        let (s, pitch) = (self.stride, self.pitch);
        let slot = (self.first + i) % self.held.len();
        &self.data[(slot * s + c % s) * pitch..][..pitch][1 + c / s..][..n]
    }

    /// Band row `i`'s phases, one after another `pitch` apart (the second
    /// value), each a lead element, the phase's pixels and the slack:
    /// for passes that take many taps of a row, without working out its
    /// slot and phase (divisions by run-time values) once per tap.
    #[inline(always)]
    pub(super) fn phases(&self, i: usize) -> (&[T], usize) {
        let (s, pitch) = (self.stride, self.pitch);
        let slot = (self.first + i) % self.held.len();
        (&self.data[slot * s * pitch..][..s * pitch], pitch)
    }
}

/// Asks for the cache lines of row `y` (`width` pixels) counted from the
/// start of `plane`: a hint, with no effect on results. Pooling reads each
/// plane once, so the rows a few steps ahead are still in memory; the
/// hardware prefetcher alone left 3×3/2 max pooling waiting on them
/// (prefetching three rows ahead: 1.05-1.11×, alternated call by call).
/// Rows past the plane's end are asked for too: planes lie one after
/// another, so near its end they are the next plane's first rows
/// (1.03-1.04× more; the addresses past the whole array are never read).
#[inline(always)]
pub(super) fn prefetch_row<T>(plane: &[T], y: usize, width: usize) {
    let line = (64 / std::mem::size_of::<T>()).max(1);
    let row = plane.as_ptr().wrapping_add(y * width);
    for k in (0..width).step_by(line) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch is a hint that never faults, whatever the
        // address (it reads nothing the program sees).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(row.wrapping_add(k).cast())
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = row.wrapping_add(k);
    }
}

/// The inverse of a stride-2 phase split, into a row of `row.len()`
/// pixels: with r = x + `pad` (0 or 1), pixel x takes `even[r / 2]` for
/// even r, `odd[r / 2]` for odd r. Each phase must hold a value for every
/// such pixel (⌈W/2⌉ + 1 suffices).
#[inline(always)]
pub(super) fn interleave_phases<T: Copy, O: Slot<T>>(row: &mut [O], (even, odd): (&[T], &[T]), pad: usize) {
    let (first, second) = if pad == 0 { (even, odd) } else { (odd, &even[1..]) };
    let width = row.len();
    let pairs = row.chunks_exact_mut(2);
    let last = pairs.len();
    for ((pair, &f), &s) in pairs.zip(first).zip(second) {
        pair[0].put(f);
        pair[1].put(s);
    }
    if width % 2 == 1 {
        row[width - 1].put(first[last]);
    }
}

#[cfg(test)]
mod tests {
    use super::{padded, PhaseBand};

    #[test]
    fn load_then_taps() {
        let plane: Vec<f64> = (0..35).map(f64::from).collect(); // 5 rows of 7
        for stride in 1..=4 {
            let mut band = PhaseBand::new(7, stride, 3);
            band.load(&plane, 1, 3);
            // Row 2 of the plane (band row 1), columns 1, 1+s, 1+2s.
            let n = (7 - 1 - 1) / stride + 1;
            let expected: Vec<f64> = (0..n).map(|k| (14 + 1 + k * stride) as f64).collect();
            assert_eq!(&band.taps(1, 1, padded(n))[..n], expected, "stride {stride}");
        }
    }

    #[test]
    fn phases_lead_with_column_zero() {
        let plane: Vec<f64> = (0..35).map(f64::from).collect(); // 5 rows of 7
        for stride in 1..=3 {
            let mut band = PhaseBand::new(7, stride, 2);
            band.load(&plane, 2, 2);
            for i in 0..2 {
                let (phases, pitch) = band.phases(i);
                let row = &plane[(2 + i) * 7..][..7];
                assert_eq!(phases.len(), stride * pitch, "stride {stride}");
                for p in 0..stride {
                    let phase = &phases[p * pitch..][..pitch];
                    let pixels: Vec<f64> = row.iter().copied().skip(p).step_by(stride).collect();
                    assert_eq!(phase[0], row[0], "stride {stride} row {i} phase {p}: the lead");
                    assert_eq!(
                        &phase[1..][..pixels.len()],
                        pixels,
                        "stride {stride} row {i} phase {p}"
                    );
                }
            }
        }
    }

    #[test]
    fn sliding_matches_loading() {
        // Two 9×7 planes; bands of 1-3 rows slid down the first by 1-3 rows
        // per step (overlapping, adjacent and skipping), then up the second
        // from the same rows (where only `forget` tells the planes apart).
        let planes: Vec<f64> = (0..126).map(f64::from).collect();
        for stride in 1..=3 {
            for rows in 1..=3 {
                for step in 1..=3 {
                    let (mut sliding, mut fresh) =
                        (PhaseBand::new(7, stride, rows), PhaseBand::new(7, stride, rows));
                    let starts: Vec<usize> = (0..=9 - rows).step_by(step).collect();
                    for (p, plane) in planes.chunks_exact(63).enumerate() {
                        sliding.forget();
                        let order: Vec<usize> = if p == 0 {
                            starts.clone()
                        } else {
                            starts.iter().rev().copied().collect()
                        };
                        for y0 in order {
                            sliding.slide(plane, y0, rows);
                            fresh.load(plane, y0, rows);
                            for i in 0..rows {
                                for c in 0..7 {
                                    let n = (7 - 1 - c) / stride + 1;
                                    let case = format!(
                                        "stride {stride} rows {rows} step {step} y0 {y0} i {i} c {c}"
                                    );
                                    assert_eq!(sliding.taps(i, c, n), fresh.taps(i, c, n), "{case}");
                                    let expected = plane[(y0 + i) * 7 + c];
                                    assert_eq!(sliding.taps(i, c, n)[0], expected, "{case}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
