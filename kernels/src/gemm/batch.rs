//! A convolution-shaped product over a whole batch, written into a new
//! array that is never zero-filled first.
//!
//! A convolution's output (or the dx of a stride-1 one) is fresh memory
//! that the products overwrite: zero-filling it first pushes every value
//! through memory once more — 10 % of the ResNet first layer's forward
//! pass, 4 % of the 1×1 layer's. Here the array is allocated
//! uninitialised and each product writes its part straight into it; the
//! `unsafe` that hands the array out initialised sits in one place, after
//! every part reported written.

use super::{check_images, im2col_stacked_fresh};
use crate::error::{check_len, checked_product, Error, Result};
use crate::{Element, Window2d};
use ndarray::{s, Array3, ArrayView2, ArrayViewMut3, Axis};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// Output pixels per product worth aiming for: images with fewer go
/// several to a product (whole panels, A packed once per chunk). Products
/// through explicit im2col bands take the whole batch in one call
/// ([`super::direct::bands_take_batch`]: they split it into one-image
/// bands themselves); CS231n's layer 1.11–1.15× over chunks of four
/// images, MNIST's 5×5/1 1.05–1.08×.
const STACK_PIXELS: usize = 1024;

/// Images per chunk of a batch of `n` images of `pixels` output pixels:
/// about [`STACK_PIXELS`] pixels per chunk, the chunks evened out. Depends
/// on the shape only, never on the thread count, so the order of every sum
/// is fixed.
fn images_per_chunk(n: usize, pixels: usize) -> usize {
    let chunks = (n * pixels).div_ceil(STACK_PIXELS).clamp(1, n);
    n.div_ceil(chunks)
}

/// A grouped convolution's products over a batch, into a new array:
///
/// ```text
/// out[n, g·M + r, ·] = (A_g · im2col(image n, group g))[r, ·]  (+ bias[g·M + r])
/// ```
///
/// for every image n < `count` and group g < `a.len()`, out being
/// (count, groups·M, OH·OW). Image n holds `groups·channels`·H·W values
/// starting at `images[n·image_stride]`, group g's `channels` channels
/// after the first g·`channels`; A_g is (M, `channels`·KH·KW). Forward
/// convolution is A_g = the group's filters; the dx of a stride-1
/// convolution is A_g = its flipped filters over dout.
///
/// The array is never zero-filled: every product writes its values
/// straight into it. The images go in chunks of about 1024 output pixels
/// (fixed by the shape), each chunk through one stacked product per group
/// ([`super::gemm_im2col_stacked`]'s routes, bit for bit); with at least
/// as many chunks as threads the chunks run in parallel with one-thread
/// products, otherwise one after another with parallel products — the
/// same bits for every thread count.
///
/// # Errors
/// [`Error::Parameter`] if `a` is empty or `image_stride` is less than
/// one image; [`Error::Shape`] if the groups' matrices differ in shape or
/// have not `channels`·KH·KW columns, `images` is too short or `bias` is
/// not groups·M long; [`Error::Overflow`] if a size overflows.
///
/// ```
/// use ndarray::{array, Array3};
/// use patchwise_kernels::{gemm_im2col_batch, Window2d};
/// // Two 2-channel 1×2 images, 1×2 windows, two groups of one channel:
/// // group 0 sums its window, group 1 takes its difference.
/// let g = Window2d::new([1, 2], [1, 2], [1, 1], [0, 0], [1, 1]).unwrap();
/// let (a0, a1) = (array![[1.0f32, 1.0]], array![[1.0f32, -1.0]]);
/// let images = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 50.0];
/// let out = gemm_im2col_batch(&[a0.view(), a1.view()], &images, 2, 4, 1, &g, Some(&[0.5, 0.0])).unwrap();
/// assert_eq!(out, array![[[3.5], [-2.0]], [[30.5], [-20.0]]]);
/// ```
pub fn gemm_im2col_batch<T: Element>(
    a: &[ArrayView2<'_, T>],
    images: &[T],
    count: usize,
    image_stride: usize,
    channels: usize,
    geom: &Window2d,
    bias: Option<&[T]>,
) -> Result<Array3<T>> {
    let Some(first) = a.first() else {
        return Err(Error::parameter("a", "one matrix per group, at least one", 0));
    };
    let (m, taps) = first.dim();
    if let Some(other) = a.iter().find(|a_g| a_g.dim() != (m, taps)) {
        return Err(Error::Shape {
            arg: "a",
            expected: format!("every group's matrix {:?} (the first one's shape)", [m, taps]),
            actual: format!("{:?}", other.shape()),
        });
    }
    let groups = a.len();
    let group_len = checked_product("group elements", &[channels, geom.input_len()])?;
    let image_len = checked_product("image elements", &[groups, group_len])?;
    check_images(images, count, image_stride, (image_len, "groups·channels·H·W"))?;
    let rows = checked_product("output rows", &[groups, m])?;
    if let Some(bias) = bias {
        check_len("bias", bias.len(), rows)?;
    }
    let pixels = geom.output_len();
    checked_product("output elements", &[count, rows, pixels])?;

    let mut out = Array3::<T>::uninit((count, rows, pixels));
    if out.is_empty() {
        // SAFETY: there is no element to initialise.
        return Ok(unsafe { out.assume_init() });
    }
    let whole = matches!(super::backend(), super::Backend::Patchwise)
        && super::direct::bands_take_batch::<T>((m, taps), geom);
    let per_chunk = if whole {
        count
    } else {
        images_per_chunk(count, pixels)
    };
    let chunks: Vec<_> = out.axis_chunks_iter_mut(Axis(0), per_chunk).enumerate().collect();
    let run = |(i, mut chunk): (usize, ArrayViewMut3<'_, MaybeUninit<T>>), parallel: bool| {
        let n = chunk.len_of(Axis(0));
        let first_image = i * per_chunk * image_stride;
        for (g, a_g) in a.iter().enumerate() {
            let batch = (&images[first_image + g * group_len..], n, image_stride, channels);
            let bias_g = bias.map(|b| &b[g * m..(g + 1) * m]);
            let piece = chunk.slice_mut(s![.., g * m..(g + 1) * m, ..]);
            im2col_stacked_fresh(T::ONE, a_g.view(), batch, geom, bias_g, piece, parallel)?;
        }
        Ok(())
    };
    if rayon::current_num_threads() <= chunks.len() {
        chunks.into_par_iter().try_for_each(|chunk| run(chunk, false))?;
    } else {
        chunks.into_iter().try_for_each(|chunk| run(chunk, true))?;
    }
    // SAFETY: the chunks cover every image and the groups every row of
    // each; every product returned `Ok` (else we returned above), having
    // written every element of its piece.
    Ok(unsafe { out.assume_init() })
}

#[cfg(test)]
mod tests {
    use super::images_per_chunk;

    #[test]
    fn chunks_even_out_and_cover_the_batch() {
        // 8 images of 196 pixels: two chunks of four.
        assert_eq!(images_per_chunk(8, 196), 4);
        // Large images go one per chunk, tiny ones all in one.
        assert_eq!(images_per_chunk(8, 3136), 1);
        assert_eq!(images_per_chunk(3, 10), 3);
    }
}
