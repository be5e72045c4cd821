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
    /// Distance between phases: `len` plus [`BLOCK`] elements of slack.
    pitch: usize,
}

impl<T: Element> PhaseBand<T> {
    /// Room for `rows` rows of `width` pixels, split for `stride`.
    pub(super) fn new(width: usize, stride: usize, rows: usize) -> Self {
        let len = width.div_ceil(stride);
        let pitch = len + BLOCK;
        Self {
            data: vec![T::ZERO; rows * stride * pitch],
            width,
            stride,
            len,
            pitch,
        }
    }

    /// Splits rows `y0..y0 + rows` of `plane` into the band.
    #[inline(always)]
    pub(super) fn load(&mut self, plane: &[T], y0: usize, rows: usize) {
        let (s, len, pitch) = (self.stride, self.len, self.pitch);
        let lines = plane[y0 * self.width..][..rows * self.width].chunks_exact(self.width);
        for (row, phases) in lines.zip(self.data.chunks_exact_mut(s * pitch)) {
            if s == 2 {
                // The common stride, as one pass over pixel pairs.
                let (even, odd) = phases.split_at_mut(pitch);
                let pairs = row.chunks_exact(2);
                if let [last] = pairs.remainder() {
                    even[len - 1] = *last;
                }
                for ((e, o), pair) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
                    *e = pair[0];
                    *o = pair[1];
                }
            } else {
                for (k, pixels) in row.chunks(s).enumerate() {
                    for (p, &v) in pixels.iter().enumerate() {
                        phases[p * pitch + k] = v;
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
        &self.data[(i * s + c % s) * pitch..][..pitch][c / s..][..n]
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
}
