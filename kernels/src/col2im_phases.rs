//! col2im for strided windows with contiguous adds: the image's columns
//! split by their phase modulo the stride.
//!
//! With a column stride s > 1, a column-matrix row adds its values to every
//! s-th pixel of an image line: a strided read-modify-write the compiler
//! cannot vectorise well (15 % of the ResNet first layer's backward pass).
//! Here each image line is held as s phase lines — phase φ holds columns
//! φ, φ + s, φ + 2s, ... — so every row adds to one contiguous run of one
//! phase line; the lines are interleaved back once, at the end. The adds
//! are those of [`crate::col2im_rows`], in the same order, so the bits are
//! the same.

use crate::error::{check_len, checked_product, Result};
use crate::gemm::gather::AddShape;
use crate::im2col::check_band;
use crate::slot::Slot;
use crate::Col2imLines;
use crate::{Element, Window2d};
use ndarray::Array1;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;

/// A col2im in progress over one image of `channels` channels, fed band by
/// band of output rows ([`Self::add_rows`], like [`crate::col2im_rows`]
/// on a zeroed image) and written out by [`Self::finish`].
///
/// ```
/// use patchwise_kernels::{col2im_rows, Col2imPhases, Window2d};
/// // 1×1×5 image, 1×3 kernel, stride 2: two windows overlapping at pixel 2.
/// let g = Window2d::new([1, 5], [1, 3], [2, 2], [0, 0], [1, 1]).unwrap();
/// let cols = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 taps × 2 windows
/// let mut phases = Col2imPhases::new(1, &g).unwrap();
/// phases.add_rows(&cols, 0..1).unwrap();
/// let mut image = [f32::NAN; 5];
/// phases.finish(&mut image).unwrap();
/// assert_eq!(image, [1.0, 3.0, 5.0 + 2.0, 4.0, 6.0]);
/// let mut expected = [0.0f32; 5];
/// col2im_rows(&cols, 1, &g, 0..1, &mut expected).unwrap();
/// assert_eq!(image, expected);
/// ```
#[derive(Clone, Debug)]
pub struct Col2imPhases<T> {
    channels: usize,
    geom: Window2d,
    /// Per channel and image row, its W values as the phase lines back to
    /// back: phase φ's ⌈(W − φ)/s⌉ values start at `starts[φ]`.
    lines: Vec<T>,
    starts: Vec<usize>,
}

impl<T: Element> Col2imPhases<T> {
    /// A zeroed col2im of `channels` channels through `geom`.
    ///
    /// # Errors
    /// [`crate::Error::Overflow`] if the image's size overflows.
    pub fn new(channels: usize, geom: &Window2d) -> Result<Self> {
        let len = checked_product("image elements", &[channels, geom.input_len()])?;
        let (w, s) = (geom.input()[1], geom.stride()[1]);
        let mut starts = Vec::with_capacity(s);
        let mut start = 0;
        for phase in 0..s {
            starts.push(start);
            start += w.saturating_sub(phase).div_ceil(s);
        }
        Ok(Col2imPhases {
            channels,
            geom: *geom,
            lines: vec![T::ZERO; len],
            starts,
        })
    }

    /// Zeroes the sums, for another image of the same shape.
    pub fn reset(&mut self) {
        self.lines.fill(T::ZERO);
    }

    /// Adds the scatter of `cols`, the column matrix restricted to output
    /// rows `rows` (C·KH·KW × `rows.len()`·OW, row-major), as
    /// [`crate::col2im_rows`] does.
    ///
    /// # Errors
    /// As [`crate::col2im_rows`] (the image is held here).
    pub fn add_rows(&mut self, cols: &[T], rows: Range<usize>) -> Result<()> {
        let geom = self.geom;
        check_band(cols, self.channels, &geom, &rows)?;
        let [h, w] = geom.input();
        let [kh, kw] = geom.kernel();
        let (ow, sw) = (geom.output()[1], geom.stride()[1]);
        let band = rows.len() * ow;
        if band == 0 {
            return Ok(());
        }
        let add = crate::gemm::kernel::selected_add::<T>();
        let (sh, dh, ph) = (geom.stride()[0], geom.dilation()[0], geom.pad()[0]);
        for (row, col_row) in cols.chunks_exact(band).enumerate() {
            let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
            let xs = geom.valid_outputs(1, j);
            let valid_ys = geom.valid_outputs(0, i);
            let ys = rows.start.max(valid_ys.start)..rows.end.min(valid_ys.end);
            if xs.is_empty() || ys.is_empty() {
                continue;
            }
            // Image column of the first valid output, then its phase line
            // and place there: the rest follow one by one; each next output
            // row lands `sh` image rows further down.
            let first = xs.start * sw + j * geom.dilation()[1] - geom.pad()[1];
            let at = self.starts[first % sw] + first / sw;
            let first_y = ys.start * sh + i * dh - ph;
            let plane = &mut self.lines[c * h * w..(c + 1) * h * w];
            let shape = AddShape {
                len: xs.len(),
                lines: ys.len(),
                dst_stride: sh * w,
                src_stride: ow,
            };
            let src = &col_row[(ys.start - rows.start) * ow + xs.start..];
            // SAFETY: the add was chosen for an instruction set this CPU
            // supports.
            unsafe { add(&mut plane[first_y * w + at..], src, shape) };
        }
        Ok(())
    }

    /// Writes the sums into `image` (C·H·W values, overwritten).
    ///
    /// # Errors
    /// [`crate::Error::Shape`] if `image` has the wrong length.
    pub fn finish(&self, image: &mut [T]) -> Result<()> {
        self.finish_slots(image)
    }

    /// [`Self::finish`] into slots of initialised or fresh memory.
    fn finish_slots<S: Slot<T>>(&self, image: &mut [S]) -> Result<()> {
        check_len("image", image.len(), self.lines.len())?;
        let w = self.geom.input()[1];
        if w == 0 {
            return Ok(());
        }
        match self.starts[..] {
            [_] => S::put_slice(image, &self.lines),
            [_, odd] => {
                for (dst, src) in image.chunks_exact_mut(w).zip(self.lines.chunks_exact(w)) {
                    let (even, odd) = src.split_at(odd);
                    for (pair, (&e, &o)) in dst.chunks_exact_mut(2).zip(even.iter().zip(odd)) {
                        pair[0].put(e);
                        pair[1].put(o);
                    }
                    if w % 2 == 1 {
                        dst[w - 1].put(even[w / 2]);
                    }
                }
            }
            _ => {
                let s = self.starts.len();
                for (dst, src) in image.chunks_exact_mut(w).zip(self.lines.chunks_exact(w)) {
                    for (x, d) in dst.iter_mut().enumerate() {
                        d.put(src[self.starts[x % s] + x / s]);
                    }
                }
            }
        }
        Ok(())
    }
}

/// One image of [`col2im_images`]'s fresh output, written part by part.
pub struct ImageSink<'a, T> {
    slots: &'a mut [MaybeUninit<T>],
    written: usize,
}

impl<T: Element> ImageSink<'_, T> {
    /// Writes the sums of `phases` (its C·H·W values) as the image's next
    /// values.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] if fewer values than that are left.
    pub fn finish(&mut self, phases: &Col2imPhases<T>) -> Result<()> {
        let len = phases.lines.len();
        phases.finish_slots(self.next("phases", len)?)?;
        self.written += len;
        Ok(())
    }

    /// Writes the col2im of `cols` by `lines` (its C·H·W values) as the
    /// image's next values.
    ///
    /// # Errors
    /// [`crate::Error::Shape`] if fewer values than that are left or
    /// `cols` has the wrong length.
    pub fn write_lines(&mut self, lines: &Col2imLines<T>, cols: &[T]) -> Result<()> {
        let len = lines.image_len();
        lines.write_slots(cols, self.next("lines", len)?)?;
        self.written += len;
        Ok(())
    }

    /// The image's next `len` slots (`arg` names what writes them, for the
    /// error).
    fn next(&mut self, arg: &'static str, len: usize) -> Result<&mut [MaybeUninit<T>]> {
        let left = self.slots.len() - self.written;
        if len > left {
            return Err(crate::Error::Shape {
                arg,
                expected: format!("at most {left} values (what is left of the image)"),
                actual: format!("{len} values"),
            });
        }
        Ok(&mut self.slots[self.written..][..len])
    }
}

/// A fresh batch of `count` images of `image_len` values, never
/// zero-filled: image n is written by `image(scratch, n, sink)` through
/// [`ImageSink::finish`] (one col2im after another: a grouped
/// convolution's groups), its values past the last one written set to zero.
/// Returns the values and each image's result. With `parallel`, images
/// go in parallel on the current pool, each task with a `scratch` of its
/// own (`S::default()`, reused across its images); results are in image
/// order either way.
///
/// # Errors
/// The first error of `image`, or [`crate::Error::Overflow`] if the
/// batch's size overflows.
///
/// ```
/// use patchwise_kernels::{col2im_images, Col2imPhases, Window2d};
/// // Two 1×1×3 images, 1×1 kernel, stride 1: each image's one column row.
/// let g = Window2d::new([1, 3], [1, 1], [1, 1], [0, 0], [1, 1]).unwrap();
/// let (values, sums) = col2im_images(2, 3, false, |_: &mut (), n, sink| {
///     let mut phases = Col2imPhases::new(1, &g)?;
///     let cols: Vec<f32> = (0..3).map(|x| (10 * n + x) as f32).collect();
///     phases.add_rows(&cols, 0..1)?;
///     sink.finish(&phases)?;
///     Ok(cols.iter().sum::<f32>())
/// })
/// .unwrap();
/// assert_eq!(values, [0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
/// assert_eq!(sums, [3.0, 33.0]);
/// ```
pub fn col2im_images<T: Element, S: Default, R: Send>(
    count: usize,
    image_len: usize,
    parallel: bool,
    image: impl Fn(&mut S, usize, &mut ImageSink<'_, T>) -> Result<R> + Sync,
) -> Result<(Vec<T>, Vec<R>)> {
    let len = checked_product("batch elements", &[count, image_len])?;
    let mut values = Array1::<T>::uninit(len);
    let slots = values.as_slice_mut().expect("a fresh array");
    let run = |scratch: &mut S, (n, slots): (usize, &mut [MaybeUninit<T>])| {
        let mut sink = ImageSink { slots, written: 0 };
        let result = image(scratch, n, &mut sink)?;
        let written = sink.written;
        crate::slot::fill_uninit(&mut sink.slots[written..], T::ZERO);
        Ok(result)
    };
    let results: Result<Vec<R>> = if image_len == 0 {
        (0..count).map(|n| run(&mut S::default(), (n, &mut []))).collect()
    } else if parallel {
        slots
            .par_chunks_mut(image_len)
            .enumerate()
            .map_init(S::default, run)
            .collect()
    } else {
        let mut scratch = S::default();
        slots
            .chunks_mut(image_len)
            .enumerate()
            .map(|part| run(&mut scratch, part))
            .collect()
    };
    let results = results?;
    // SAFETY: every image's slots were written (by its sink, the rest
    // zero-filled) — `image` returned `Ok` for every image, else we
    // returned above.
    let values = unsafe { values.assume_init() };
    Ok((values.into_raw_vec_and_offset().0, results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// Three images of two parts (groups) of 2 channels, 3×3/2 windows on
    /// 7×5 images: each part is `col2im` of its columns, in parallel as
    /// serially; the per-image results come back in image order.
    #[test]
    fn images_are_their_parts_col2im() {
        let g = Window2d::new([7, 5], [3, 3], [2, 2], [1, 1], [1, 1]).unwrap();
        let (channels, parts, count) = (2, 2, 3);
        let part_len = channels * g.input_len();
        let cols_len = channels * g.kernel_len() * g.output_len();
        let cols = |n: usize, part: usize| -> Vec<f64> {
            (0..cols_len)
                .map(|i| ((i * 7 + n * 13 + part * 29) % 17) as f64 - 8.0)
                .collect()
        };
        let run = |parallel: bool| {
            col2im_images(
                count,
                parts * part_len,
                parallel,
                |scratch: &mut Option<Col2imPhases<f64>>, n, sink| {
                    for part in 0..parts {
                        let phases = scratch.get_or_insert_with(|| Col2imPhases::new(channels, &g).unwrap());
                        phases.reset();
                        phases.add_rows(&cols(n, part), 0..g.output()[0])?;
                        sink.finish(phases)?;
                    }
                    Ok(n * 10)
                },
            )
            .unwrap()
        };
        let (values, results) = run(true);
        assert_eq!(results, [0, 10, 20]);
        assert_eq!(run(false).0, values);
        for n in 0..count {
            for part in 0..parts {
                let mut expected = vec![0.0; part_len];
                crate::col2im(&cols(n, part), channels, &g, &mut expected).unwrap();
                let at = (n * parts + part) * part_len;
                assert_eq!(values[at..at + part_len], expected[..], "image {n}, part {part}");
            }
        }
    }

    /// Values past the last part written are zero; a part larger than
    /// what is left is an error, as is the closure's own.
    #[test]
    fn unwritten_values_are_zero_and_overflows_errors() {
        let g = Window2d::new([2, 2], [1, 1], [1, 1], [0, 0], [1, 1]).unwrap();
        let mut phases = Col2imPhases::new(1, &g).unwrap();
        phases.add_rows(&[1.0f32, 2.0, 3.0, 4.0], 0..2).unwrap();
        let (values, _) = col2im_images(2, 6, true, |_: &mut (), _, sink| sink.finish(&phases)).unwrap();
        assert_eq!(
            values,
            [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0]
        );
        let too_long = col2im_images(1, 3, false, |_: &mut (), _, sink| sink.finish(&phases));
        assert!(
            matches!(too_long, Err(Error::Shape { arg: "phases", .. })),
            "{too_long:?}"
        );
        let failed = col2im_images::<f32, (), ()>(2, 1, true, |_, n, _| {
            if n == 1 {
                Err(Error::parameter("n", "0", 1))
            } else {
                Ok(())
            }
        });
        assert!(
            matches!(failed, Err(Error::Parameter { arg: "n", .. })),
            "{failed:?}"
        );
    }
}
