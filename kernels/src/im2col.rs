//! im2col and its adjoint col2im, for one image or a batch in parallel.
//!
//! For an image (C, H, W) and a [`Window2d`] with kernel KH×KW and output
//! OH×OW, the column matrix is (C·KH·KW) × (OH·OW), row-major:
//! `cols[(c·KH + i)·KW + j][oh·OW + ow] = x[c][oh·sh + i·dh − ph][ow·sw + j·dw − pw]`,
//! zero where that reads padding.

use crate::error::{check_len, checked_product, Result};
use crate::gemm::gather::{LinesFn, PADDING_LINE};
use crate::{Element, Window2d};
use rayon::prelude::*;
use std::ops::Range;

/// Lengths of one image and of its column matrix.
fn sizes(channels: usize, geom: &Window2d) -> Result<(usize, usize)> {
    let image = checked_product("image elements", &[channels, geom.input_len()])?;
    let cols = checked_product(
        "im2col elements",
        &[channels, geom.kernel_len(), geom.output_len()],
    )?;
    Ok((image, cols))
}

/// Writes the im2col matrix of one image into `cols`.
///
/// `image` holds C·H·W values (NCHW order), `cols` C·KH·KW·OH·OW.
///
/// ```
/// use patchwise_kernels::{im2col, Window2d};
/// // A 1×2×2 image with a 1×1 kernel: the column matrix is the image.
/// let g = Window2d::new([2, 2], [1, 1], [1, 1], [0, 0], [1, 1]).unwrap();
/// let mut cols = [0.0f32; 4];
/// im2col(&[1.0, 2.0, 3.0, 4.0], 1, &g, &mut cols).unwrap();
/// assert_eq!(cols, [1.0, 2.0, 3.0, 4.0]);
/// ```
pub fn im2col<T: Element>(image: &[T], channels: usize, geom: &Window2d, cols: &mut [T]) -> Result<()> {
    let (image_len, cols_len) = sizes(channels, geom)?;
    check_len("image", image.len(), image_len)?;
    check_len("cols", cols.len(), cols_len)?;
    im2col_unchecked(image, channels, geom, cols);
    Ok(())
}

/// [`im2col`] without the length checks (the caller has made them).
pub(crate) fn im2col_unchecked<T: Element>(image: &[T], channels: usize, geom: &Window2d, cols: &mut [T]) {
    im2col_band(image, channels, geom, 0..geom.output()[0], cols);
}

/// The im2col matrix's columns of output rows `rows` (all their pixels):
/// `cols` holds C·KH·KW rows of `rows.len()`·OW values. Unchecked: `image`
/// must hold the C planes and `cols` those rows.
pub(crate) fn im2col_band<T: Element>(
    image: &[T],
    channels: usize,
    geom: &Window2d,
    rows: Range<usize>,
    cols: &mut [T],
) {
    let [kh, kw] = geom.kernel();
    let width = rows.len() * geom.output()[1];
    if width == 0 {
        return;
    }
    let plane = geom.input_len();
    let mut lines = KernelRowLines::new(geom);
    // Kernel row by kernel row, so that the channels share the lines'
    // starts.
    for i in 0..kh {
        for c in 0..channels {
            let out = &mut cols[(c * kh + i) * kw * width..][..kw * width];
            lines.write(&image[c * plane..][..plane], i, rows.clone(), out);
        }
    }
}

/// Writes the im2col rows of one kernel row at a time: its KW taps read
/// the same image lines, one offset each, in one call of the lines.
pub(crate) struct KernelRowLines<'g, T> {
    geom: &'g Window2d,
    offsets: Vec<isize>,
    /// Per kernel row, the output rows last written and their lines'
    /// starts in a channel's plane (the channels', and often the next
    /// image's, bands read the same lines).
    starts: Vec<(Option<Range<usize>>, Vec<usize>)>,
    lines: LinesFn<T>,
}

impl<'g, T: Element> KernelRowLines<'g, T> {
    pub(crate) fn new(geom: &'g Window2d) -> Self {
        let (dw, pw) = (geom.dilation()[1], geom.pad()[1]);
        // Output pixel (y, x) of tap (i, j) reads image pixel (y·sh + i·dh
        // − ph, x·sw + j·dw − pw) of its channel.
        let offsets = (0..geom.kernel()[1])
            .map(|j| (j * dw) as isize - pw as isize)
            .collect();
        let lines = crate::gemm::kernel::selected_lines::<T>();
        let starts = vec![(None, Vec::new()); geom.kernel()[0]];
        Self {
            geom,
            offsets,
            starts,
            lines,
        }
    }

    /// The rows of kernel row `i` (KW blocks of `rows.len()`·OW values)
    /// over output rows `rows`, which may run past the output's last row
    /// (they read further image rows, or padding), from one channel's
    /// `plane` (H·W values).
    pub(crate) fn write(&mut self, plane: &[T], i: usize, rows: Range<usize>, out: &mut [T]) {
        let [h, w] = self.geom.input();
        debug_assert_eq!(plane.len(), h * w);
        let (of, starts) = &mut self.starts[i];
        if of.as_ref() != Some(&rows) {
            *of = Some(rows.clone());
            starts.clear();
            starts.extend(rows.map(|y| match self.geom.source(0, y, i) {
                Some(src_y) => src_y * w,
                None => PADDING_LINE,
            }));
        }
        // SAFETY: the lines were chosen for an instruction set this CPU
        // supports.
        unsafe { (self.lines)(plane, starts, w, &self.offsets, self.geom.stride()[1], out) };
    }
}

/// `dst[k] = src[k·step]` for every k of `dst` (`src` must reach
/// `(dst.len() − 1)·step`): a plain copy for step 1, a pass over whole
/// pixel pairs (which the compiler vectorises) plus at most one last pixel
/// for step 2, the indexed loop otherwise.
pub(crate) fn copy_strided<T: Element>(dst: &mut [T], src: &[T], step: usize) {
    match step {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            let pairs = (src.len() / 2).min(dst.len());
            for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            if let Some(last) = dst.get_mut(pairs) {
                *last = src[2 * pairs];
            }
        }
        _ => {
            for (k, d) in dst.iter_mut().enumerate() {
                *d = src[k * step];
            }
        }
    }
}

/// col2im, the adjoint of [`im2col`]: overwrites `image` (C·H·W) with the
/// scatter-add of `cols` back to the pixels they were read from (padding
/// entries are dropped). Sums run in a fixed order, so results are
/// reproducible.
pub fn col2im<T: Element>(cols: &[T], channels: usize, geom: &Window2d, image: &mut [T]) -> Result<()> {
    let (image_len, cols_len) = sizes(channels, geom)?;
    check_len("cols", cols.len(), cols_len)?;
    check_len("image", image.len(), image_len)?;
    col2im_unchecked(cols, channels, geom, image);
    Ok(())
}

/// col2im of a band of output rows: adds to `image` (C·H·W, not cleared)
/// the scatter of `cols`, the column matrix restricted to output rows
/// `rows` (C·KH·KW × `rows.len()`·OW, row-major). Calling it on the bands
/// of a partition of 0..OH, in order, on a zeroed image gives a col2im
/// whose column matrix never exists whole (each band can be produced
/// while the previous one is still in cache); the sums then run band by
/// band, in a fixed order.
///
/// # Errors
/// [`crate::Error::Parameter`] if `rows` is not within 0..OH;
/// [`crate::Error::Shape`] if `cols` or `image` has the wrong length.
///
/// ```
/// use patchwise_kernels::{col2im_rows, Window2d};
/// // 1×3×1 image, 2×1 kernel: output rows 0 and 1 both read pixel 1.
/// let g = Window2d::new([3, 1], [2, 1], [1, 1], [0, 0], [1, 1]).unwrap();
/// let mut image = [0.0f32; 3];
/// col2im_rows(&[1.0, 2.0], 1, &g, 0..1, &mut image).unwrap(); // row 0: taps (0, 0) and (1, 0)
/// col2im_rows(&[3.0, 4.0], 1, &g, 1..2, &mut image).unwrap();
/// assert_eq!(image, [1.0, 2.0 + 3.0, 4.0]);
/// ```
pub fn col2im_rows<T: Element>(
    cols: &[T],
    channels: usize,
    geom: &Window2d,
    rows: std::ops::Range<usize>,
    image: &mut [T],
) -> Result<()> {
    let (image_len, _) = sizes(channels, geom)?;
    check_band(cols, channels, geom, &rows)?;
    check_len("image", image.len(), image_len)?;
    col2im_rows_unchecked(cols, channels, geom, rows, image);
    Ok(())
}

/// That `rows` lies within 0..OH and `cols` is the column matrix of those
/// output rows (C·KH·KW × `rows.len()`·OW).
pub(crate) fn check_band<T>(cols: &[T], channels: usize, geom: &Window2d, rows: &Range<usize>) -> Result<()> {
    let oh = geom.output()[0];
    if rows.start > rows.end || rows.end > oh {
        return Err(crate::Error::parameter(
            "rows",
            format!("a range within 0..{oh} (OH)"),
            format!("{rows:?}"),
        ));
    }
    let cols_len = checked_product(
        "band elements",
        &[channels, geom.kernel_len(), rows.len(), geom.output()[1]],
    )?;
    check_len("cols", cols.len(), cols_len)
}

/// [`col2im`] without the length checks.
pub(crate) fn col2im_unchecked<T: Element>(cols: &[T], channels: usize, geom: &Window2d, image: &mut [T]) {
    image.fill(T::ZERO);
    col2im_rows_unchecked(cols, channels, geom, 0..geom.output()[0], image);
}

/// [`col2im_rows`] without the checks.
fn col2im_rows_unchecked<T: Element>(
    cols: &[T],
    channels: usize,
    geom: &Window2d,
    rows: std::ops::Range<usize>,
    image: &mut [T],
) {
    let [h, w] = geom.input();
    let [kh, kw] = geom.kernel();
    let ow = geom.output()[1];
    let sw = geom.stride()[1];
    let band = rows.len() * ow;
    if band == 0 {
        return;
    }
    for (row, col_row) in cols.chunks_exact(band).enumerate().take(channels * kh * kw) {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let plane = &mut image[c * h * w..(c + 1) * h * w];
        let xs = geom.valid_outputs(1, j);
        if xs.is_empty() {
            continue;
        }
        let first = xs.start * sw + j * geom.dilation()[1] - geom.pad()[1];
        for (y, src) in rows.clone().zip(col_row.chunks_exact(ow)) {
            let Some(dst_y) = geom.source(0, y, i) else {
                continue;
            };
            let line = &mut plane[dst_y * w..(dst_y + 1) * w][first..];
            let src = &src[xs.clone()];
            match sw {
                // Contiguous, or whole pixel pairs and at most one last
                // pixel: passes the compiler vectorises.
                1 => line.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
                2 => {
                    let pairs = (line.len() / 2).min(src.len());
                    for (pair, &v) in line.chunks_exact_mut(2).zip(src) {
                        pair[0] += v;
                    }
                    if let Some(&v) = src.get(pairs) {
                        line[2 * pairs] += v;
                    }
                }
                _ => {
                    for (k, &v) in src.iter().enumerate() {
                        line[k * sw] += v;
                    }
                }
            }
        }
    }
}

/// [`im2col`] of `batch` images (N·C·H·W values) into `cols`
/// (N·C·KH·KW·OH·OW values, one column matrix per image), parallel over images.
pub fn im2col_batch<T: Element>(
    images: &[T],
    batch: usize,
    channels: usize,
    geom: &Window2d,
    cols: &mut [T],
) -> Result<()> {
    let (image_len, cols_len) = sizes(channels, geom)?;
    check_len(
        "images",
        images.len(),
        checked_product("images elements", &[batch, image_len])?,
    )?;
    check_len(
        "cols",
        cols.len(),
        checked_product("cols elements", &[batch, cols_len])?,
    )?;
    if image_len == 0 || cols_len == 0 {
        cols.fill(T::ZERO);
        return Ok(());
    }
    images
        .par_chunks(image_len)
        .zip(cols.par_chunks_mut(cols_len))
        .for_each(|(image, cols)| im2col_unchecked(image, channels, geom, cols));
    Ok(())
}

/// [`col2im`] of `batch` column matrices into `batch` images, parallel over
/// images (each image is written by one task, so the result does not depend
/// on the thread count).
pub fn col2im_batch<T: Element>(
    cols: &[T],
    batch: usize,
    channels: usize,
    geom: &Window2d,
    images: &mut [T],
) -> Result<()> {
    let (image_len, cols_len) = sizes(channels, geom)?;
    check_len(
        "cols",
        cols.len(),
        checked_product("cols elements", &[batch, cols_len])?,
    )?;
    check_len(
        "images",
        images.len(),
        checked_product("images elements", &[batch, image_len])?,
    )?;
    if image_len == 0 || cols_len == 0 {
        images.fill(T::ZERO);
        return Ok(());
    }
    cols.par_chunks(cols_len)
        .zip(images.par_chunks_mut(image_len))
        .for_each(|(cols, image)| col2im_unchecked(cols, channels, geom, image));
    Ok(())
}
