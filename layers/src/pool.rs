//! Max and average pooling on x (N, C, H, W), through the kernels crate
//! (parallel over the N·C planes).
//!
//! Window (oh, ow) covers rows `oh·stride_h − pad_h ..+ KH` and columns
//! `ow·stride_w − pad_w ..+ KW`; `OH = (H + 2·pad_h − KH) / stride_h + 1`.
//! Max pooling: ties go to the first maximum in row-major window order, NaN
//! propagates (and takes the gradient), padding never wins. Average pooling
//! divides by KH·KW (`count_include_pad`) or by the real pixels in the window.
//!
//! ```
//! use ndarray::array;
//! use patchwise_layers::pool::{self, PoolParams};
//! let x = array![[[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]];
//! let params = PoolParams::new(2, 2, 1); // 2×2 windows, stride 1
//! let (out, cache) = pool::max_forward(x.view(), &params)?;
//! assert_eq!(out, array![[[[5.0, 6.0], [8.0, 9.0]]]]);
//! let dx = pool::max_backward(array![[[[1.0, 1.0], [1.0, 1.0]]]].view(), &cache)?;
//! assert_eq!(dx[[0, 0, 2, 2]], 1.0);
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::{check, Element, Result};
use ndarray::{Array4, ArrayView4};
use patchwise_kernels::{
    avg_pool2d_backward_vec, avg_pool2d_forward_vec, checked_product, max_pool2d_backward_vec,
    max_pool2d_forward_vec, Window2d,
};

/// The seed's `pool_param` (pool_height, pool_width, stride), extended with
/// per-axis stride, padding and the average-pooling divisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    /// Window size [KH, KW].
    pub kernel: [usize; 2],
    /// Stride [sh, sw].
    pub stride: [usize; 2],
    /// Padding [ph, pw] on each side; at most half the window.
    pub pad: [usize; 2],
    /// Average pooling: divide by KH·KW (true, the default) or by the
    /// number of real pixels in the window (false).
    pub count_include_pad: bool,
}

impl PoolParams {
    /// The seed's parameters: a `pool_height` × `pool_width` window, one
    /// stride for both axes, no padding.
    pub fn new(pool_height: usize, pool_width: usize, stride: usize) -> Self {
        Self {
            kernel: [pool_height, pool_width],
            stride: [stride; 2],
            pad: [0, 0],
            count_include_pad: true,
        }
    }
    /// Separate strides for height and width.
    pub fn with_stride(self, stride_h: usize, stride_w: usize) -> Self {
        Self {
            stride: [stride_h, stride_w],
            ..self
        }
    }
    /// Padding for height and width.
    pub fn with_pad(self, pad_h: usize, pad_w: usize) -> Self {
        Self {
            pad: [pad_h, pad_w],
            ..self
        }
    }
    /// The average-pooling divisor (see the field).
    pub fn with_count_include_pad(self, count_include_pad: bool) -> Self {
        Self {
            count_include_pad,
            ..self
        }
    }
    fn geometry(&self, h: usize, w: usize) -> Result<Window2d> {
        Window2d::pooling([h, w], self.kernel, self.stride, self.pad)
    }
}

/// What max pooling's backward pass needs: the arg-max of every window.
#[derive(Clone, Debug)]
pub struct MaxPoolCache {
    argmax: ArgMax,
    input: [usize; 4],
    geom: Window2d,
}

/// The arg-max taps in the narrowest type that numbers the window's taps:
/// one byte per output for windows up to 16×16.
#[derive(Clone, Debug)]
enum ArgMax {
    Byte(Vec<u8>),
    Short(Vec<u16>),
    Word(Vec<u32>),
}

impl ArgMax {
    /// Max-pools `x` into a new vector, recording the arg-max.
    fn forward<T: Element>(x: &[T], planes: usize, geom: &Window2d) -> Result<(Vec<T>, Self)> {
        let taps = geom.kernel_len();
        Ok(if taps <= 1 << 8 {
            let (out, arg) = max_pool2d_forward_vec(x, planes, geom)?;
            (out, ArgMax::Byte(arg))
        } else if taps <= 1 << 16 {
            let (out, arg) = max_pool2d_forward_vec(x, planes, geom)?;
            (out, ArgMax::Short(arg))
        } else {
            let (out, arg) = max_pool2d_forward_vec(x, planes, geom)?;
            (out, ArgMax::Word(arg))
        })
    }

    /// dx (planes·H·W) from `dout`, made plane by plane.
    fn backward<T: Element>(&self, dout: &[T], planes: usize, geom: &Window2d) -> Result<Vec<T>> {
        match self {
            ArgMax::Byte(a) => max_pool2d_backward_vec(dout, a, planes, geom),
            ArgMax::Short(a) => max_pool2d_backward_vec(dout, a, planes, geom),
            ArgMax::Word(a) => max_pool2d_backward_vec(dout, a, planes, geom),
        }
    }
}

/// What average pooling's backward pass needs.
#[derive(Clone, Debug)]
pub struct AvgPoolCache {
    input: [usize; 4],
    geom: Window2d,
    count_include_pad: bool,
}

fn setup<T: Element>(x: &ArrayView4<'_, T>, params: &PoolParams) -> Result<(Window2d, usize, [usize; 4])> {
    let (n, c, h, w) = x.dim();
    let geom = params.geometry(h, w)?;
    let planes = checked_product("N·C planes", &[n, c])?;
    checked_product("output elements", &[planes, geom.output_len()])?;
    let [oh, ow] = geom.output();
    Ok((geom, planes, [n, c, oh, ow]))
}

/// Max-pooling forward pass.
///
/// # Errors
/// [`crate::Error::Parameter`] for a zero stride or kernel, or padding beyond
/// half the window; [`crate::Error::WindowTooLarge`] if the window does not
/// fit the padded input.
pub fn max_forward<T: Element>(
    x: ArrayView4<'_, T>,
    params: &PoolParams,
) -> Result<(Array4<T>, MaxPoolCache)> {
    let (geom, planes, shape) = setup(&x, params)?;
    let x_std = x.as_standard_layout();
    let (values, argmax) = ArgMax::forward(x_std.as_slice().expect("standard layout"), planes, &geom)?;
    let out = Array4::from_shape_vec(shape, values).expect("N·C·OH·OW values");
    let (n, c, h, w) = x.dim();
    Ok((
        out,
        MaxPoolCache {
            argmax,
            input: [n, c, h, w],
            geom,
        },
    ))
}

fn output_shape(input: [usize; 4], geom: &Window2d) -> [usize; 4] {
    [input[0], input[1], geom.output()[0], geom.output()[1]]
}

/// Max-pooling backward pass: each dout goes to its window's arg-max.
///
/// # Errors
/// [`crate::Error::Shape`] if dout is not the forward output's shape.
pub fn max_backward<T: Element>(dout: ArrayView4<'_, T>, cache: &MaxPoolCache) -> Result<Array4<T>> {
    check::shape("dout", dout.shape(), &output_shape(cache.input, &cache.geom))?;
    let dout = dout.as_standard_layout();
    let planes = cache.input[0] * cache.input[1];
    let dx = cache
        .argmax
        .backward(dout.as_slice().expect("standard layout"), planes, &cache.geom)?;
    Ok(Array4::from_shape_vec(cache.input, dx).expect("N·C·H·W values"))
}

/// Average-pooling forward pass.
///
/// # Errors
/// As [`max_forward`].
pub fn avg_forward<T: Element>(
    x: ArrayView4<'_, T>,
    params: &PoolParams,
) -> Result<(Array4<T>, AvgPoolCache)> {
    let (geom, planes, shape) = setup(&x, params)?;
    let x_std = x.as_standard_layout();
    let values = avg_pool2d_forward_vec(
        x_std.as_slice().expect("standard layout"),
        planes,
        &geom,
        params.count_include_pad,
    )?;
    let out = Array4::from_shape_vec(shape, values).expect("N·C·OH·OW values");
    let (n, c, h, w) = x.dim();
    Ok((
        out,
        AvgPoolCache {
            input: [n, c, h, w],
            geom,
            count_include_pad: params.count_include_pad,
        },
    ))
}

/// Average-pooling backward pass.
///
/// # Errors
/// [`crate::Error::Shape`] if dout is not the forward output's shape.
pub fn avg_backward<T: Element>(dout: ArrayView4<'_, T>, cache: &AvgPoolCache) -> Result<Array4<T>> {
    check::shape("dout", dout.shape(), &output_shape(cache.input, &cache.geom))?;
    let dout = dout.as_standard_layout();
    let dx = avg_pool2d_backward_vec(
        dout.as_slice().expect("standard layout"),
        cache.input[0] * cache.input[1],
        &cache.geom,
        cache.count_include_pad,
    )?;
    Ok(Array4::from_shape_vec(cache.input, dx).expect("N·C·H·W values"))
}
