//! Max and average pooling over (KH, KW) windows with per-axis stride and
//! padding, on x (N, C, H, W); output (N, C, OH, OW) with
//! `OH = (H + 2·pad_h − KH) / stride_h + 1` (floor), likewise OW.
//!
//! Window (oh, ow) covers rows `oh·s_h − p_h ..+ KH` and columns
//! `ow·s_w − p_w ..+ KW` (the seed places it at `oh·KH`: its defect 1).
//! Padding is at most half the window (`2·pad ≤ kernel`, as in PyTorch), so
//! every window holds at least one real pixel.

use crate::conv::output_len;
use crate::Real;
use ndarray::{Array4, ArrayView4};

/// The seed's `pool_param` (pool_height, pool_width, stride), extended with
/// per-axis stride and padding. Axis order is [height, width].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Window size [KH, KW]; each > 0.
    pub kernel: [usize; 2],
    /// Step between windows; each > 0.
    pub stride: [usize; 2],
    /// Padding on each side; `2·pad ≤ kernel`. Max pooling pads with −∞,
    /// average pooling with zeros (see `count_include_pad`).
    pub pad: [usize; 2],
}

impl PoolParams {
    /// The seed's parameters: a `pool_height` × `pool_width` window, the same
    /// stride on both axes, no padding.
    pub fn new(pool_height: usize, pool_width: usize, stride: usize) -> Self {
        Self {
            kernel: [pool_height, pool_width],
            stride: [stride; 2],
            pad: [0, 0],
        }
    }
}

/// Output size, after checking the parameters.
fn pool_dims(h: usize, w: usize, p: &PoolParams) -> (usize, usize) {
    for (axis, k, pad) in [
        ("height", p.kernel[0], p.pad[0]),
        ("width", p.kernel[1], p.pad[1]),
    ] {
        assert!(
            2 * pad <= k,
            "pad ({axis}): expected <= kernel/2 = {}, got {pad}",
            k / 2
        );
    }
    (
        output_len("height", h, p.kernel[0], p.stride[0], p.pad[0], 1),
        output_len("width", w, p.kernel[1], p.stride[1], p.pad[1], 1),
    )
}

/// The real (unpadded) pixels of window (oh, ow), in row-major window order.
fn window(oh: usize, ow: usize, h: usize, w: usize, p: &PoolParams) -> Vec<(usize, usize)> {
    let mut cells = Vec::new();
    for i in 0..p.kernel[0] {
        for j in 0..p.kernel[1] {
            let y = (oh * p.stride[0] + i).checked_sub(p.pad[0]);
            let x = (ow * p.stride[1] + j).checked_sub(p.pad[1]);
            if let (Some(y), Some(x)) = (y, x) {
                if y < h && x < w {
                    cells.push((y, x));
                }
            }
        }
    }
    cells
}

/// The arg-max of a window's values: the first maximum in window order, or
/// the first NaN if there is one. Padding (−∞) never wins, since each window
/// holds a real pixel.
fn argmax<T: Real>(values: impl Iterator<Item = T>) -> usize {
    let mut best: Option<(usize, T)> = None;
    for (k, v) in values.enumerate() {
        best = match best {
            None => Some((k, v)),
            Some((_, b)) if b.is_nan() => best,
            Some(_) if v.is_nan() => Some((k, v)),
            Some((_, b)) if v > b => Some((k, v)),
            _ => best,
        };
    }
    best.map_or(0, |(k, _)| k)
}

/// Max-pooling forward pass: the maximum of each window (NaN if it holds NaN).
///
/// # Panics
/// If a stride or kernel size is 0, `2·pad > kernel`, or the window is larger
/// than the padded input.
pub fn max_pool_forward<T: Real>(x: ArrayView4<'_, T>, p: &PoolParams) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = pool_dims(h, w, p);
    Array4::from_shape_fn((n, c, oh, ow), |(ni, ci, y, xo)| {
        let cells = window(y, xo, h, w, p);
        let k = argmax(cells.iter().map(|&(a, b)| x[[ni, ci, a, b]]));
        let (a, b) = cells[k];
        x[[ni, ci, a, b]]
    })
}

/// Max-pooling backward pass: each `dout` goes to its window's arg-max
/// (first maximum in row-major window order, or first NaN); overlapping
/// windows add up.
///
/// # Panics
/// As [`max_pool_forward`], or if `dout` is not (N, C, OH, OW).
pub fn max_pool_backward<T: Real>(
    dout: ArrayView4<'_, T>,
    x: ArrayView4<'_, T>,
    p: &PoolParams,
) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = pool_dims(h, w, p);
    assert_eq!(
        dout.dim(),
        (n, c, oh, ow),
        "dout: expected shape {:?}, got {:?}",
        (n, c, oh, ow),
        dout.dim()
    );
    let mut dx = Array4::from_elem((n, c, h, w), T::ZERO);
    for ((ni, ci, y, xo), &d) in dout.indexed_iter() {
        let cells = window(y, xo, h, w, p);
        let (a, b) = cells[argmax(cells.iter().map(|&(a, b)| x[[ni, ci, a, b]]))];
        dx[[ni, ci, a, b]] += d;
    }
    dx
}

/// The divisor of an average window with `real` unpadded pixels.
fn divisor<T: Real>(real: usize, p: &PoolParams, count_include_pad: bool) -> T {
    T::from_usize(if count_include_pad {
        p.kernel[0] * p.kernel[1]
    } else {
        real
    })
}

/// Average-pooling forward pass: the sum of each window's real pixels divided
/// by KH·KW (`count_include_pad`, zeros in the padding) or by the number of
/// real pixels.
///
/// # Panics
/// As [`max_pool_forward`].
pub fn avg_pool_forward<T: Real>(x: ArrayView4<'_, T>, p: &PoolParams, count_include_pad: bool) -> Array4<T> {
    let (n, c, h, w) = x.dim();
    let (oh, ow) = pool_dims(h, w, p);
    Array4::from_shape_fn((n, c, oh, ow), |(ni, ci, y, xo)| {
        let cells = window(y, xo, h, w, p);
        let mut sum = T::ZERO;
        for &(a, b) in &cells {
            sum += x[[ni, ci, a, b]];
        }
        sum / divisor(cells.len(), p, count_include_pad)
    })
}

/// Average-pooling backward pass: each `dout` is divided as in the forward
/// pass and added to every real pixel of its window. `input` is x's shape
/// [N, C, H, W].
///
/// # Panics
/// As [`max_pool_forward`], or if `dout` is not (N, C, OH, OW).
pub fn avg_pool_backward<T: Real>(
    dout: ArrayView4<'_, T>,
    input: [usize; 4],
    p: &PoolParams,
    count_include_pad: bool,
) -> Array4<T> {
    let [n, c, h, w] = input;
    let (oh, ow) = pool_dims(h, w, p);
    assert_eq!(
        dout.dim(),
        (n, c, oh, ow),
        "dout: expected shape {:?}, got {:?}",
        (n, c, oh, ow),
        dout.dim()
    );
    let mut dx = Array4::from_elem((n, c, h, w), T::ZERO);
    for ((ni, ci, y, xo), &d) in dout.indexed_iter() {
        let cells = window(y, xo, h, w, p);
        let share = d / divisor::<T>(cells.len(), p, count_include_pad);
        for (a, b) in cells {
            dx[[ni, ci, a, b]] += share;
        }
    }
    dx
}
