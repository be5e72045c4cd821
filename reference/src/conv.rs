//! 2-D convolution (cross-correlation, as in CS231n) and im2col / col2im.
//!
//! Shapes: x (N, C, H, W), w (F, C/G, KH, KW), b (F,), out (N, F, OH, OW) with
//! `OH = (H + 2·pad_h − dil_h·(KH − 1) − 1) / stride_h + 1` (floor), likewise
//! OW, and
//!
//! ```text
//! out[n, f, oh, ow] = b[f] + Σ_{c', i, j} w[f, c', i, j] · x̃[n, g·C/G + c', oh·s_h + i·d_h − p_h, ow·s_w + j·d_w − p_w]
//! ```
//!
//! where g = f / (F/G) is the group of filter f and x̃ is x with zeros outside
//! its bounds.

use crate::Real;
use ndarray::{Array1, Array2, Array3, Array4, ArrayView1, ArrayView2, ArrayView3, ArrayView4};

/// The seed's `conv_param` (stride, pad), extended with per-axis values,
/// dilation and groups. Axis order is [height, width].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Step between windows, [height, width]; must be > 0.
    pub stride: [usize; 2],
    /// Zero padding on each side, [height, width].
    pub pad: [usize; 2],
    /// Spacing between kernel taps, [height, width]; 1 is a dense kernel.
    pub dilation: [usize; 2],
    /// Number of groups G: C and F must be divisible by G.
    pub groups: usize,
}

impl Default for ConvParams {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl ConvParams {
    /// The seed's parameters: the same stride and padding on both axes.
    pub fn new(stride: usize, pad: usize) -> Self {
        Self {
            stride: [stride; 2],
            pad: [pad; 2],
            ..Self::default()
        }
    }
}

/// Output length along one axis:
/// `(len + 2·pad − dilation·(kernel − 1) − 1) / stride + 1`.
///
/// # Panics
/// If stride, dilation or kernel is 0, or the dilated kernel is longer than
/// the padded input. `axis` names the axis in the message.
pub fn output_len(
    axis: &str,
    len: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
) -> usize {
    assert!(stride > 0, "stride ({axis}): expected > 0, got 0");
    assert!(dilation > 0, "dilation ({axis}): expected > 0, got 0");
    assert!(kernel > 0, "kernel ({axis}): expected > 0, got 0");
    let span = dilation * (kernel - 1) + 1;
    let padded = len + 2 * pad;
    assert!(
        span <= padded,
        "kernel ({axis}): expected a dilated extent <= padded input {padded}, got {span}"
    );
    (padded - span) / stride + 1
}

/// The input coordinate that tap `tap` of output position `o` reads, or
/// `None` when it falls in the zero padding.
fn source(o: usize, tap: usize, stride: usize, pad: usize, dilation: usize, len: usize) -> Option<usize> {
    let pos = (o * stride + tap * dilation).checked_sub(pad)?;
    (pos < len).then_some(pos)
}

/// x̃: the pixel, or an explicit zero in the padding. The zero takes part in
/// the arithmetic (0 · ∞ = NaN, as IEEE evaluation of the formula gives), so
/// that an infinite weight meets the padding exactly as in im2col + GEMM.
fn padded<T: Real>(x: &ArrayView4<'_, T>, [n, c]: [usize; 2], hy: Option<usize>, wx: Option<usize>) -> T {
    match (hy, wx) {
        (Some(hy), Some(wx)) => x[[n, c, hy, wx]],
        _ => T::ZERO,
    }
}

fn out_dims(h: usize, w: usize, kh: usize, kw: usize, p: &ConvParams) -> (usize, usize) {
    (
        output_len("height", h, kh, p.stride[0], p.pad[0], p.dilation[0]),
        output_len("width", w, kw, p.stride[1], p.pad[1], p.dilation[1]),
    )
}

fn check_conv(
    x: (usize, usize, usize, usize),
    w: (usize, usize, usize, usize),
    p: &ConvParams,
) -> (usize, usize) {
    let (_, c, h, wd) = x;
    let (f, cg, kh, kw) = w;
    let g = p.groups;
    assert!(g > 0, "groups: expected > 0, got 0");
    assert!(c % g == 0, "groups: expected a divisor of C = {c}, got {g}");
    assert!(f % g == 0, "groups: expected a divisor of F = {f}, got {g}");
    assert_eq!(
        cg,
        c / g,
        "w: expected C/G = {} input channels (axis 1), got {cg}",
        c / g
    );
    out_dims(h, wd, kh, kw, p)
}

/// Convolution forward pass (see the module docs).
///
/// # Panics
/// If the shapes disagree (w's axis 1 must be C/G, b must have F elements),
/// groups does not divide C and F, a stride or dilation is 0, or the kernel
/// does not fit in the padded input.
pub fn conv_forward<T: Real>(
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    b: ArrayView1<'_, T>,
    p: &ConvParams,
) -> Array4<T> {
    let (n, _, h, wd) = x.dim();
    let (f, cg, kh, kw) = w.dim();
    let (oh, ow) = check_conv(x.dim(), w.dim(), p);
    assert_eq!(b.len(), f, "b: expected {f} elements, got {}", b.len());
    let fg = f / p.groups;
    let mut out = Array4::from_elem((n, f, oh, ow), T::ZERO);
    for ni in 0..n {
        for fi in 0..f {
            let c0 = (fi / fg) * cg;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = T::ZERO;
                    for ci in 0..cg {
                        for i in 0..kh {
                            let hy = source(y, i, p.stride[0], p.pad[0], p.dilation[0], h);
                            for j in 0..kw {
                                let wx = source(xo, j, p.stride[1], p.pad[1], p.dilation[1], wd);
                                acc += w[[fi, ci, i, j]] * padded(&x, [ni, c0 + ci], hy, wx);
                            }
                        }
                    }
                    out[[ni, fi, y, xo]] = acc + b[fi];
                }
            }
        }
    }
    out
}

/// Convolution backward pass; returns `(dx, dw, db)`, each of its input's
/// shape. Every tap of the forward sum sends `dout · w` to x and `dout · x̃`
/// to w; taps in the padding send nothing to x (the seed's defects 2 and 3
/// do not apply: the window width is KW, and nothing is cropped).
///
/// # Panics
/// As [`conv_forward`], or if `dout` is not (N, F, OH, OW).
pub fn conv_backward<T: Real>(
    dout: ArrayView4<'_, T>,
    x: ArrayView4<'_, T>,
    w: ArrayView4<'_, T>,
    p: &ConvParams,
) -> (Array4<T>, Array4<T>, Array1<T>) {
    let (n, _, h, wd) = x.dim();
    let (f, cg, kh, kw) = w.dim();
    let (oh, ow) = check_conv(x.dim(), w.dim(), p);
    assert_eq!(
        dout.dim(),
        (n, f, oh, ow),
        "dout: expected shape {:?}, got {:?}",
        (n, f, oh, ow),
        dout.dim()
    );
    let fg = f / p.groups;
    let mut dx = Array4::from_elem(x.dim(), T::ZERO);
    let mut dw = Array4::from_elem(w.dim(), T::ZERO);
    let mut db = Array1::from_elem(f, T::ZERO);
    for ni in 0..n {
        for fi in 0..f {
            let c0 = (fi / fg) * cg;
            for y in 0..oh {
                for xo in 0..ow {
                    let d = dout[[ni, fi, y, xo]];
                    db[fi] += d;
                    for ci in 0..cg {
                        for i in 0..kh {
                            let hy = source(y, i, p.stride[0], p.pad[0], p.dilation[0], h);
                            for j in 0..kw {
                                let wx = source(xo, j, p.stride[1], p.pad[1], p.dilation[1], wd);
                                dw[[fi, ci, i, j]] += d * padded(&x, [ni, c0 + ci], hy, wx);
                                if let (Some(hy), Some(wx)) = (hy, wx) {
                                    dx[[ni, c0 + ci, hy, wx]] += d * w[[fi, ci, i, j]];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}

/// im2col of one image x (C, H, W) for a `kernel` = [KH, KW] window: the
/// (C·KH·KW, OH·OW) matrix with
/// `cols[(c·KH + i)·KW + j, oh·OW + ow] = x̃[c, oh·s_h + i·d_h − p_h, ow·s_w + j·d_w − p_w]`
/// (zero in the padding). `p.groups` is ignored.
///
/// # Panics
/// If a stride or dilation is 0 or the window does not fit the padded input.
pub fn im2col<T: Real>(x: ArrayView3<'_, T>, kernel: [usize; 2], p: &ConvParams) -> Array2<T> {
    let (c, h, w) = x.dim();
    let [kh, kw] = kernel;
    let (oh, ow) = out_dims(h, w, kh, kw, p);
    let mut cols = Array2::from_elem((c * kh * kw, oh * ow), T::ZERO);
    for ci in 0..c {
        for i in 0..kh {
            for j in 0..kw {
                let row = (ci * kh + i) * kw + j;
                for y in 0..oh {
                    for xo in 0..ow {
                        if let (Some(hy), Some(wx)) = (
                            source(y, i, p.stride[0], p.pad[0], p.dilation[0], h),
                            source(xo, j, p.stride[1], p.pad[1], p.dilation[1], w),
                        ) {
                            cols[[row, y * ow + xo]] = x[[ci, hy, wx]];
                        }
                    }
                }
            }
        }
    }
    cols
}

/// col2im, the adjoint of [`im2col`]: scatter-adds each column entry back to
/// the pixel it was read from (padding entries are dropped), giving an image
/// of shape `image` = [C, H, W].
///
/// # Panics
/// If `cols` is not (C·KH·KW, OH·OW), or as [`im2col`].
pub fn col2im<T: Real>(
    cols: ArrayView2<'_, T>,
    image: [usize; 3],
    kernel: [usize; 2],
    p: &ConvParams,
) -> Array3<T> {
    let [c, h, w] = image;
    let [kh, kw] = kernel;
    let (oh, ow) = out_dims(h, w, kh, kw, p);
    assert_eq!(
        cols.dim(),
        (c * kh * kw, oh * ow),
        "cols: expected shape {:?}, got {:?}",
        (c * kh * kw, oh * ow),
        cols.dim()
    );
    let mut x = Array3::from_elem((c, h, w), T::ZERO);
    for ci in 0..c {
        for i in 0..kh {
            for j in 0..kw {
                let row = (ci * kh + i) * kw + j;
                for y in 0..oh {
                    for xo in 0..ow {
                        if let (Some(hy), Some(wx)) = (
                            source(y, i, p.stride[0], p.pad[0], p.dilation[0], h),
                            source(xo, j, p.stride[1], p.pad[1], p.dilation[1], w),
                        ) {
                            x[[ci, hy, wx]] += cols[[row, y * ow + xo]];
                        }
                    }
                }
            }
        }
    }
    x
}
