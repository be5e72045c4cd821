//! im2col and its adjoint col2im, for one image or a batch in parallel.
//!
//! For an image (C, H, W) and a [`Window2d`] with kernel KH×KW and output
//! OH×OW, the column matrix is (C·KH·KW) × (OH·OW), row-major:
//! `cols[(c·KH + i)·KW + j][oh·OW + ow] = x[c][oh·sh + i·dh − ph][ow·sw + j·dw − pw]`,
//! zero where that reads padding.

use crate::error::{check_len, checked_product, Result};
use crate::{Element, Window2d};
use rayon::prelude::*;

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
    let [h, w] = geom.input();
    let [kh, kw] = geom.kernel();
    let [oh, ow] = geom.output();
    let sw = geom.stride()[1];
    if oh * ow == 0 {
        return;
    }
    for (row, out_row) in cols
        .chunks_exact_mut(oh * ow)
        .enumerate()
        .take(channels * kh * kw)
    {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let plane = &image[c * h * w..(c + 1) * h * w];
        let xs = geom.valid_outputs(1, j);
        for (y, out) in out_row.chunks_exact_mut(ow).enumerate() {
            let Some(src_y) = geom.source(0, y, i) else {
                out.fill(T::ZERO);
                continue;
            };
            let line = &plane[src_y * w..(src_y + 1) * w];
            out[..xs.start].fill(T::ZERO);
            out[xs.end..].fill(T::ZERO);
            if xs.is_empty() {
                continue;
            }
            let first = xs.start * sw + j * geom.dilation()[1] - geom.pad()[1];
            copy_strided(&mut out[xs.clone()], &line[first..], sw);
        }
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

/// [`col2im`] without the length checks.
pub(crate) fn col2im_unchecked<T: Element>(cols: &[T], channels: usize, geom: &Window2d, image: &mut [T]) {
    image.fill(T::ZERO);
    let [h, w] = geom.input();
    let [kh, kw] = geom.kernel();
    let [oh, ow] = geom.output();
    let sw = geom.stride()[1];
    if oh * ow == 0 {
        return;
    }
    for (row, col_row) in cols.chunks_exact(oh * ow).enumerate().take(channels * kh * kw) {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let plane = &mut image[c * h * w..(c + 1) * h * w];
        let xs = geom.valid_outputs(1, j);
        if xs.is_empty() {
            continue;
        }
        let first = xs.start * sw + j * geom.dilation()[1] - geom.pad()[1];
        for (y, src) in col_row.chunks_exact(ow).enumerate() {
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
