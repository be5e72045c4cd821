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
use crate::{Element, Window2d};
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
        check_len("image", image.len(), self.lines.len())?;
        let w = self.geom.input()[1];
        if w == 0 {
            return Ok(());
        }
        match self.starts[..] {
            [_] => image.copy_from_slice(&self.lines),
            [_, odd] => {
                for (dst, src) in image.chunks_exact_mut(w).zip(self.lines.chunks_exact(w)) {
                    let (even, odd) = src.split_at(odd);
                    for (pair, (&e, &o)) in dst.chunks_exact_mut(2).zip(even.iter().zip(odd)) {
                        pair[0] = e;
                        pair[1] = o;
                    }
                    if w % 2 == 1 {
                        dst[w - 1] = even[w / 2];
                    }
                }
            }
            _ => {
                let s = self.starts.len();
                for (dst, src) in image.chunks_exact_mut(w).zip(self.lines.chunks_exact(w)) {
                    for (x, d) in dst.iter_mut().enumerate() {
                        *d = src[self.starts[x % s] + x / s];
                    }
                }
            }
        }
        Ok(())
    }
}
