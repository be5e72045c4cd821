//! The geometry of a sliding 2-D window, shared by convolution and pooling:
//! the only place the output-size formula lives.

use crate::error::{checked_product, Error, Result};

/// A validated 2-D window geometry: input size, kernel, per-axis stride,
/// padding and dilation, and the output size they give. Arrays are
/// `[height, width]`.
///
/// Output length per axis:
/// `out = (input + 2·pad − (dilation·(kernel − 1) + 1)) / stride + 1` (floor).
///
/// Padding may reach the larger of the input and the kernel size per axis,
/// no further: beyond that it only adds outputs that see nothing but zeros,
/// and a claimed padding could make the output arbitrarily large. With that
/// rule the output is at most 3× the larger of input and kernel per axis, so
/// its size is bounded by the real arrays', never by a number merely claimed.
/// Output position `o` with kernel tap `t` reads input coordinate
/// `o·stride + t·dilation − pad` (padding when outside `0..input`).
///
/// ```
/// use patchwise_kernels::Window2d;
/// // ResNet's first layer: 224×224, 7×7 window, stride 2, pad 3 → 112×112.
/// let g = Window2d::new([224, 224], [7, 7], [2, 2], [3, 3], [1, 1]).unwrap();
/// assert_eq!(g.output(), [112, 112]);
/// assert!(Window2d::new([4, 4], [2, 2], [0, 1], [0, 0], [1, 1]).is_err()); // zero stride
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
    output: [usize; 2],
}

const AXES: [&str; 2] = ["height", "width"];

fn positive(arg: &'static str, v: usize) -> Result<()> {
    if v == 0 {
        Err(Error::parameter(arg, "> 0", v))
    } else {
        Ok(())
    }
}

impl Window2d {
    /// Validates a geometry: stride, dilation and kernel > 0, padding at most
    /// `max(input, kernel)` per axis, the dilated kernel no larger than the
    /// padded input, and every size (padded input, output, output·kernel
    /// elements) representable in `usize`.
    pub fn new(
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self> {
        let mut output = [0; 2];
        for axis in 0..2 {
            positive(["stride_h", "stride_w"][axis], stride[axis])?;
            positive(["dilation_h", "dilation_w"][axis], dilation[axis])?;
            positive(["kernel_h", "kernel_w"][axis], kernel[axis])?;
            let pad_limit = input[axis].max(kernel[axis]);
            if pad[axis] > pad_limit {
                return Err(Error::parameter(
                    ["pad_h", "pad_w"][axis],
                    format!("<= max(input, kernel) = {pad_limit}"),
                    pad[axis],
                ));
            }
            let overflow = Error::Overflow {
                what: "window extent",
            };
            let window = dilation[axis]
                .checked_mul(kernel[axis] - 1)
                .and_then(|v| v.checked_add(1))
                .ok_or(overflow.clone())?;
            let padded = pad[axis]
                .checked_mul(2)
                .and_then(|p| p.checked_add(input[axis]))
                .ok_or(overflow)?;
            if window > padded {
                return Err(Error::WindowTooLarge {
                    axis: AXES[axis],
                    window,
                    padded_input: padded,
                });
            }
            output[axis] = (padded - window) / stride[axis] + 1;
        }
        // Sizes every user of the geometry multiplies together.
        checked_product(
            "output elements × kernel",
            &[output[0], output[1], kernel[0], kernel[1]],
        )?;
        checked_product("input elements", &input)?;
        Ok(Self {
            input,
            kernel,
            stride,
            pad,
            dilation,
            output,
        })
    }

    /// A pooling window: no dilation, an input of at least 1×1, and padding
    /// of at most half the window (`2·pad ≤ kernel`, as PyTorch), so that
    /// every window holds at least one real pixel.
    pub fn pooling(
        input: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        pad: [usize; 2],
    ) -> Result<Self> {
        for axis in 0..2 {
            positive(["input_h", "input_w"][axis], input[axis])?;
            if pad[axis] > kernel[axis] / 2 {
                return Err(Error::parameter(
                    ["pad_h", "pad_w"][axis],
                    format!("<= kernel/2 = {}", kernel[axis] / 2),
                    pad[axis],
                ));
            }
        }
        Self::new(input, kernel, stride, pad, [1, 1])
    }

    /// Input size [H, W].
    pub fn input(&self) -> [usize; 2] {
        self.input
    }
    /// Kernel size [KH, KW].
    pub fn kernel(&self) -> [usize; 2] {
        self.kernel
    }
    /// Stride [sh, sw].
    pub fn stride(&self) -> [usize; 2] {
        self.stride
    }
    /// Padding [ph, pw] on each side.
    pub fn pad(&self) -> [usize; 2] {
        self.pad
    }
    /// Dilation [dh, dw].
    pub fn dilation(&self) -> [usize; 2] {
        self.dilation
    }
    /// Output size [OH, OW].
    pub fn output(&self) -> [usize; 2] {
        self.output
    }
    /// H·W.
    pub fn input_len(&self) -> usize {
        self.input[0] * self.input[1]
    }
    /// OH·OW.
    pub fn output_len(&self) -> usize {
        self.output[0] * self.output[1]
    }
    /// KH·KW.
    pub fn kernel_len(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// The input coordinate along `axis` (0 = height) read by output position
    /// `o` and kernel tap `tap`, or `None` in the padding.
    #[inline]
    pub fn source(&self, axis: usize, o: usize, tap: usize) -> Option<usize> {
        let pos = (o * self.stride[axis] + tap * self.dilation[axis]).checked_sub(self.pad[axis])?;
        (pos < self.input[axis]).then_some(pos)
    }

    /// The output positions `lo..hi` along `axis` for which tap `tap` reads
    /// a real input coordinate (not padding); empty if there are none.
    #[inline]
    pub fn valid_outputs(&self, axis: usize, tap: usize) -> std::ops::Range<usize> {
        let (s, p, n) = (self.stride[axis], self.pad[axis], self.input[axis]);
        let offset = tap * self.dilation[axis]; // input = o·s + offset − p
                                                // Smallest o with o·s + offset ≥ p.
        let lo = p.saturating_sub(offset).div_ceil(s);
        // Smallest o with o·s + offset ≥ p + n (the first one past the end).
        let hi = (p + n).saturating_sub(offset).div_ceil(s);
        let out = self.output[axis];
        lo.min(out)..hi.min(out).max(lo.min(out))
    }

    /// True for the 1×1, stride-1, unpadded window, whose im2col is the
    /// image itself.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pad == [0, 0]
    }
}
