//! # patchwise-fuzz-checks
//!
//! The properties the cargo-fuzz targets in `fuzz/` check, as plain
//! functions of the fuzzer's bytes, so that the checked-in corpus also runs
//! as ordinary tests on stable Rust (`tests/corpus.rs`).
//!
//! Each check decodes small shapes, parameters and data from the bytes (the
//! total element count is capped by the decoder's ranges), calls the public
//! API, and asserts: the documented error exactly when the input breaks a
//! documented rule, and otherwise an answer equal to `patchwise-reference`'s
//! within the property tests' tolerances. A panic anywhere is a finding.

#![warn(missing_docs)]

mod bytes;

pub use bytes::Bytes;

use ndarray::{Array, Array1, Array2, Array4, Dimension};
use patchwise_kernels::{Element, Error, Window2d};
use patchwise_layers::{batchnorm, conv, layernorm, loss, pool, spatial, Mode};
use patchwise_reference as reference;
use reference::tolerance::{assert_close_scaled, assert_close_to_scale, assert_within_sum_bound};

/// The element types checked.
pub trait Real: Element + reference::Real {}
impl<T: Element + reference::Real> Real for T {}

fn array<T: Real, D: Dimension>(shape: D, values: &[f64]) -> Array<T, D> {
    let mut k = 0;
    Array::from_shape_simple_fn(shape, || {
        k += 1;
        <T as Element>::from_f64(values.get(k - 1).copied().unwrap_or(0.5))
    })
}

fn abs<T: Real, D: Dimension>(a: &Array<T, D>) -> Array<T, D> {
    a.mapv(<T as reference::Real>::abs)
}

fn flat<T: Copy, D: Dimension>(a: &Array<T, D>) -> Vec<T> {
    a.iter().copied().collect()
}

/// Element-wise equality where NaN equals NaN.
fn assert_identical<T: Real>(what: &str, a: &[T], b: &[T]) {
    let same = |x: &T, y: &T| x == y || (reference::Real::is_nan(*x) && reference::Real::is_nan(*y));
    assert!(
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
        "{what}: {a:?} != {b:?}"
    );
}

fn sum_bound<T: Real, D: Dimension>(
    what: &str,
    fast: &Array<T, D>,
    expected: &Array<T, D>,
    bound: &Array<T, D>,
    terms: usize,
) {
    assert_eq!(fast.shape(), expected.shape(), "{what}: shape");
    assert_within_sum_bound(what, &flat(fast), &flat(expected), &flat(bound), terms);
}

fn scaled<T: Real, D: Dimension>(what: &str, fast: &Array<T, D>, expected: &Array<T, D>) {
    assert_eq!(fast.shape(), expected.shape(), "{what}: shape");
    assert_close_scaled(what, &flat(fast), &flat(expected));
}

/// Runs `check::<f32>` or `check::<f64>`, as the first byte says.
fn either(data: &[u8], f32_check: fn(&mut Bytes<'_>), f64_check: fn(&mut Bytes<'_>)) {
    let mut bytes = Bytes::new(data);
    if bytes.flag() {
        f64_check(&mut bytes)
    } else {
        f32_check(&mut bytes)
    }
}

/// A decoded window geometry, possibly invalid.
#[derive(Debug)]
struct Geometry {
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

impl Geometry {
    fn decode(b: &mut Bytes<'_>, max_input: usize) -> Self {
        let mut two = |lo, hi| [b.range(lo, hi), b.range(lo, hi)];
        Self {
            input: two(0, max_input),
            kernel: two(0, 4),
            stride: two(0, 3),
            pad: two(0, 6),
            dilation: two(0, 3),
        }
    }

    /// The documented rules of [`Window2d::new`].
    fn valid(&self) -> bool {
        (0..2).all(|a| {
            self.stride[a] > 0
                && self.dilation[a] > 0
                && self.kernel[a] > 0
                && self.pad[a] <= self.input[a].max(self.kernel[a])
                && self.dilation[a] * (self.kernel[a] - 1) < self.input[a] + 2 * self.pad[a]
        })
    }

    fn conv_params(&self, groups: usize) -> reference::ConvParams {
        reference::ConvParams {
            stride: self.stride,
            pad: self.pad,
            dilation: self.dilation,
            groups,
        }
    }
}

/// Errors are only allowed for invalid input, and required for it.
fn expect_error_iff<R>(valid: bool, result: &Result<R, Error>, what: &str) {
    match result {
        Ok(_) => assert!(valid, "{what}: invalid input accepted"),
        Err(e) => assert!(!valid, "{what}: valid input rejected: {e}"),
    }
}

fn conv2d_typed<T: Real>(b: &mut Bytes<'_>) {
    let (n, groups, cg, fg) = (b.range(0, 2), b.range(0, 3), b.range(0, 3), b.range(0, 3));
    let g = Geometry::decode(b, 7);
    let c = groups.max(1) * cg;
    let f = groups.max(1) * fg;
    let ([h, w], [kh, kw]) = (g.input, g.kernel);
    let x = array::<T, _>(ndarray::Ix4(n, c, h, w), &b.values(n * c * h * w, true));
    let wt = array::<T, _>(ndarray::Ix4(f, cg, kh, kw), &b.values(f * cg * kh * kw, true));
    let bias = array::<T, _>(ndarray::Ix1(f), &b.values(f, true));
    let params = conv::ConvParams {
        stride: g.stride,
        pad: g.pad,
        dilation: g.dilation,
        groups,
    };
    let valid = groups > 0 && g.valid();
    let result = conv::forward(x.view(), wt.view(), bias.view(), &params);
    expect_error_iff(valid, &result, "conv2d forward");
    let Ok((out, cache)) = result else { return };
    let rp = g.conv_params(groups);
    let expected = reference::conv_forward(x.view(), wt.view(), bias.view(), &rp);
    let bound = reference::conv_forward(abs(&x).view(), abs(&wt).view(), abs(&bias).view(), &rp);
    sum_bound("conv2d out", &out, &expected, &bound, cg * kh * kw + 1);
    let dout = array::<T, _>(out.raw_dim(), &b.values(out.len(), true));
    let grads = conv::backward(dout.view(), &cache).expect("dout has the output's shape");
    let (dx, dw, db) = reference::conv_backward(dout.view(), x.view(), wt.view(), &rp);
    let (bx, bw, bb) = reference::conv_backward(abs(&dout).view(), abs(&x).view(), abs(&wt).view(), &rp);
    let pixels = out.len() / f.max(1);
    sum_bound("conv2d dx", &grads.dx, &dx, &bx, fg * kh * kw);
    sum_bound("conv2d dw", &grads.dw, &dw, &bw, pixels);
    sum_bound("conv2d db", &grads.db, &db, &bb, pixels);
    // A dout of the wrong shape is an error, never a panic.
    let wrong = Array4::<T>::zeros((n + 1, f, 1, 1));
    assert!(conv::backward(wrong.view(), &cache).is_err());
}

/// Convolution forward and backward with arbitrary shapes, stride, padding,
/// dilation and groups.
pub fn conv2d(data: &[u8]) {
    either(data, conv2d_typed::<f32>, conv2d_typed::<f64>)
}

fn pool2d_typed<T: Real>(b: &mut Bytes<'_>) {
    let (n, c) = (b.range(0, 2), b.range(0, 3));
    let mut g = Geometry::decode(b, 9);
    g.pad = [b.range(0, 3), b.range(0, 3)];
    g.dilation = [1, 1];
    let include = b.flag();
    let [h, w] = g.input;
    let x = array::<T, _>(ndarray::Ix4(n, c, h, w), &b.values(n * c * h * w, true));
    let params = pool::PoolParams {
        kernel: g.kernel,
        stride: g.stride,
        pad: g.pad,
        count_include_pad: include,
    };
    let valid = g.valid() && (0..2).all(|a| g.input[a] > 0 && 2 * g.pad[a] <= g.kernel[a]);
    let rp = reference::PoolParams {
        kernel: g.kernel,
        stride: g.stride,
        pad: g.pad,
    };
    let kk = g.kernel[0] * g.kernel[1];

    let result = pool::max_forward(x.view(), &params);
    expect_error_iff(valid, &result, "max pool forward");
    let Ok((out, cache)) = result else { return };
    assert_eq!(flat(&out).len(), out.len());
    let expected = reference::max_pool_forward(x.view(), &rp);
    sum_bound("max pool out", &out, &expected, &abs(&expected), 1);
    let dout = array::<T, _>(out.raw_dim(), &b.values(out.len(), true));
    let dx = pool::max_backward(dout.view(), &cache).expect("matching dout");
    let bound = reference::max_pool_backward(abs(&dout).view(), x.view(), &rp);
    sum_bound(
        "max pool dx",
        &dx,
        &reference::max_pool_backward(dout.view(), x.view(), &rp),
        &bound,
        kk,
    );

    let (out, cache) = pool::avg_forward(x.view(), &params).expect("valid");
    let bound = reference::avg_pool_forward(abs(&x).view(), &rp, include);
    sum_bound(
        "avg pool out",
        &out,
        &reference::avg_pool_forward(x.view(), &rp, include),
        &bound,
        kk,
    );
    let dx = pool::avg_backward(dout.view(), &cache).expect("matching dout");
    let shape = [n, c, h, w];
    let bound = reference::avg_pool_backward(abs(&dout).view(), shape, &rp, include);
    sum_bound(
        "avg pool dx",
        &dx,
        &reference::avg_pool_backward(dout.view(), shape, &rp, include),
        &bound,
        kk,
    );
}

/// Max and average pooling, forward and backward.
pub fn pool2d(data: &[u8]) {
    either(data, pool2d_typed::<f32>, pool2d_typed::<f64>)
}

fn im2col_typed<T: Real>(b: &mut Bytes<'_>) {
    let c = b.range(0, 3);
    let g = Geometry::decode(b, 8);
    let result = Window2d::new(g.input, g.kernel, g.stride, g.pad, g.dilation);
    expect_error_iff(g.valid(), &result, "Window2d::new");
    let Ok(geom) = result else { return };
    let [h, w] = g.input;
    let x = array::<T, _>(ndarray::Ix3(c, h, w), &b.values(c * h * w, true));
    let rp = g.conv_params(1);
    let expected = reference::im2col(x.view(), g.kernel, &rp);
    let mut cols = vec![<T as Element>::from_f64(9.0); expected.len()];
    patchwise_kernels::im2col(x.as_slice().expect("fresh"), c, &geom, &mut cols).expect("sized");
    assert_identical("im2col", &cols, &flat(&expected));
    // The batched versions agree with one image at a time.
    let mut batch = vec![<T as Element>::ZERO; 2 * cols.len()];
    let two = [flat(&x), flat(&x)].concat();
    patchwise_kernels::im2col_batch(&two, 2, c, &geom, &mut batch).expect("sized");
    assert_identical("im2col_batch", &batch, &[cols.clone(), cols.clone()].concat());

    let y = array::<T, _>(expected.raw_dim(), &b.values(expected.len(), true));
    let expected = reference::col2im(y.view(), [c, h, w], g.kernel, &rp);
    let bound = reference::col2im(abs(&y).view(), [c, h, w], g.kernel, &rp);
    let mut image = vec![<T as Element>::from_f64(9.0); c * h * w];
    patchwise_kernels::col2im(y.as_slice().expect("fresh"), c, &geom, &mut image).expect("sized");
    let image = Array::from_shape_vec(expected.raw_dim(), image).expect("sized");
    sum_bound("col2im", &image, &expected, &bound, g.kernel[0] * g.kernel[1]);
    // A buffer of the wrong length is an error (two images for one).
    if c * h * w > 0 {
        assert!(patchwise_kernels::im2col(&two, c, &geom, &mut cols).is_err());
    }
}

/// im2col / col2im (single and batched) with arbitrary geometry.
pub fn im2col_col2im(data: &[u8]) {
    either(data, im2col_typed::<f32>, im2col_typed::<f64>)
}

fn gemm_typed<T: Real>(b: &mut Bytes<'_>) {
    let (m, k, n) = (b.range(0, 13), b.range(0, 13), b.range(0, 40));
    let t = [b.flag(), b.flag(), b.flag()];
    let alpha = b.pick(&[1.0, -0.5, 0.0, 2.0, f64::NAN, f64::INFINITY]);
    let beta = b.pick(&[0.0, 1.0, -1.5, f64::NAN]);
    let mut make = |rows: usize, cols: usize, transposed: bool| -> Array2<T> {
        let values = b.values(rows * cols, true);
        if transposed {
            array::<T, _>(ndarray::Ix2(cols, rows), &values).reversed_axes()
        } else {
            array::<T, _>(ndarray::Ix2(rows, cols), &values)
        }
    };
    let (a, bm, c0) = (make(m, k, t[0]), make(k, n, t[1]), make(m, n, t[2]));
    let (alpha, beta) = (<T as Element>::from_f64(alpha), <T as Element>::from_f64(beta));
    let valid = alpha.is_finite() && beta.is_finite();
    for parallel in [false, true] {
        let mut c = c0.clone();
        let result = if parallel {
            patchwise_kernels::gemm(alpha, a.view(), bm.view(), beta, c.view_mut())
        } else {
            patchwise_kernels::gemm_serial(alpha, a.view(), bm.view(), beta, c.view_mut())
        };
        expect_error_iff(valid, &result, "gemm");
        if result.is_err() {
            continue;
        }
        let expected = reference::gemm(alpha, a.view(), bm.view(), beta, c0.view());
        let bound = reference::gemm(
            reference::Real::abs(alpha),
            abs(&a).view(),
            abs(&bm).view(),
            reference::Real::abs(beta),
            abs(&c0).view(),
        );
        sum_bound("gemm", &c, &expected, &bound, k);
    }
    // Shapes that do not chain are errors.
    let mut wrong = Array2::<T>::zeros((m + 1, n));
    assert!(patchwise_kernels::gemm(alpha, a.view(), bm.view(), beta, wrong.view_mut()).is_err());
}

/// GEMM with any shapes (including zero-sized), strides, alpha and beta.
pub fn gemm(data: &[u8]) {
    either(data, gemm_typed::<f32>, gemm_typed::<f64>)
}

fn norms_typed<T: Real>(b: &mut Bytes<'_>) {
    let (n, groups, cg, h, w) = (
        b.range(0, 3),
        b.range(0, 3),
        b.range(1, 3),
        b.range(0, 3),
        b.range(0, 3),
    );
    let c = groups.max(1) * cg;
    let eps = b.pick(&[1e-5, 1e-3, 0.0, -1.0, f64::NAN]);
    let momentum = b.pick(&[0.9, 0.0, 0.5, 1.0, -0.1]);
    let train = b.flag();
    let x = array::<T, _>(ndarray::Ix4(n, c, h, w), &b.values(n * c * h * w, false));
    let gamma = array::<T, _>(ndarray::Ix1(c), &b.values(c, false));
    let beta = array::<T, _>(ndarray::Ix1(c), &b.values(c, false));
    let dout = array::<T, _>(x.raw_dim(), &b.values(x.len(), false));
    let eps_t = <T as Element>::from_f64(eps);
    let params_ok = eps >= 0.0 && (0.0..1.0).contains(&momentum);
    let mode = if train { Mode::Train } else { Mode::Test };
    let rmode = if train {
        reference::Mode::Train
    } else {
        reference::Mode::Test
    };
    let rparams = reference::BatchNormParams {
        mode: rmode,
        eps: eps_t,
        momentum: <T as Element>::from_f64(momentum),
    };
    let running_var = Array1::from_elem(c, <T as Element>::from_f64(0.5));
    let new_state = |features: usize| {
        let mut s = batchnorm::BatchNormState::<T>::new(features);
        s.mode = mode;
        s.eps = eps_t;
        s.momentum = <T as Element>::from_f64(momentum);
        s.running_var = Array1::from_elem(features, <T as Element>::from_f64(0.5));
        s
    };
    let norm_scale = |dout: &[T], gamma: &[T], eps: f64| {
        let m = |v: &[T]| {
            v.iter()
                .map(|x| reference::Real::to_f64(*x).abs())
                .fold(0.0, f64::max)
        };
        m(dout) * m(gamma) / eps.max(1e-12).sqrt()
    };

    // Batch norm on the (N·C, H·W) matrix.
    let rows = x.clone().into_shape_with_order((n * c, h * w)).expect("sized");
    let g2 = Array1::from_elem(h * w, <T as Element>::from_f64(1.5));
    let mut state = new_state(h * w);
    let result = batchnorm::forward(rows.view(), g2.view(), g2.view(), &mut state);
    expect_error_iff(params_ok && (!train || n * c > 0), &result, "batchnorm");
    if let Ok((out, cache)) = result {
        let rv = Array1::from_elem(h * w, <T as Element>::from_f64(0.5));
        let rm = Array1::zeros(h * w);
        let (eo, _, ev) =
            reference::batchnorm_forward(rows.view(), g2.view(), g2.view(), &rparams, rm.view(), rv.view());
        scaled("batchnorm out", &out, &eo);
        scaled("batchnorm running_var", &state.running_var, &ev);
        if train {
            let d2 = dout.clone().into_shape_with_order((n * c, h * w)).expect("sized");
            let (dx, _, _) = reference::batchnorm_backward(d2.view(), rows.view(), g2.view(), eps_t);
            let g = batchnorm::backward_alt(d2.view(), &cache).expect("matching dout");
            let scale = norm_scale(d2.as_slice().expect("std"), g2.as_slice().expect("std"), eps);
            assert_close_to_scale("batchnorm dx", &flat(&g.dx), &flat(&dx), scale);
        }
    }

    // Layer norm on the same matrix.
    let result = layernorm::forward(rows.view(), g2.view(), g2.view(), eps_t);
    expect_error_iff(eps >= 0.0 && h * w > 0, &result, "layernorm");
    if let Ok((out, _)) = result {
        scaled(
            "layernorm out",
            &out,
            &reference::layernorm_forward(rows.view(), g2.view(), g2.view(), eps_t),
        );
    }

    // Spatial batch norm and group norm.
    let mut state = new_state(c);
    let result = spatial::batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state);
    expect_error_iff(
        params_ok && (!train || n * h * w > 0),
        &result,
        "spatial batchnorm",
    );
    if let Ok((out, _)) = result {
        let rm = Array1::zeros(c);
        let (eo, _, _) = reference::spatial_batchnorm_forward(
            x.view(),
            gamma.view(),
            beta.view(),
            &rparams,
            rm.view(),
            running_var.view(),
        );
        scaled("spatial batchnorm out", &out, &eo);
    }
    let result = spatial::groupnorm_forward(x.view(), gamma.view(), beta.view(), groups, eps_t);
    expect_error_iff(eps >= 0.0 && groups > 0 && h * w > 0, &result, "groupnorm");
    if let Ok((out, cache)) = result {
        let eo = reference::spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), groups, eps_t);
        scaled("groupnorm out", &out, &eo);
        let g = spatial::groupnorm_backward(dout.view(), &cache).expect("matching dout");
        let (dx, dg, _) =
            reference::spatial_groupnorm_backward(dout.view(), x.view(), gamma.view(), groups, eps_t);
        let scale = norm_scale(dout.as_slice().expect("std"), gamma.as_slice().expect("std"), eps);
        assert_close_to_scale("groupnorm dx", &flat(&g.dx), &flat(&dx), scale);
        scaled("groupnorm dgamma", &g.dgamma, &dg);
    }
}

/// Batch, layer, spatial batch and group normalisation.
pub fn norms(data: &[u8]) {
    either(data, norms_typed::<f32>, norms_typed::<f64>)
}

fn losses_typed<T: Real>(b: &mut Bytes<'_>) {
    let (n, c) = (b.range(0, 6), b.range(0, 6));
    let scale = b.pick(&[1.0, 100.0, 1e4]);
    let labels: Vec<usize> = (0..n + b.range(0, 1)).map(|_| b.range(0, 7)).collect();
    let x = array::<T, _>(ndarray::Ix2(n, c), &b.values(n * c, false))
        .mapv(|v| v * <T as Element>::from_f64(scale));
    let valid = n > 0 && c > 0 && labels.len() == n && labels.iter().all(|&l| l < c);
    let label_error = n > 0 && c > 0 && labels.len() == n && !valid;
    for softmax in [true, false] {
        let result = if softmax {
            loss::softmax_loss(x.view(), &labels)
        } else {
            loss::svm_loss(x.view(), &labels)
        };
        expect_error_iff(valid, &result, "loss");
        match result {
            Err(e) => assert_eq!(matches!(e, Error::Label { .. }), label_error, "{e}"),
            Ok((l, dx)) => {
                let (el, edx) = if softmax {
                    reference::softmax_loss(x.view(), &labels)
                } else {
                    reference::svm_loss(x.view(), &labels)
                };
                assert!(
                    reference::Real::to_f64(l).is_finite(),
                    "loss is finite for finite scores"
                );
                assert_close_scaled("loss", &[l], &[el]);
                assert_close_to_scale("loss dx", &flat(&dx), &flat(&edx), 1.0 / n as f64);
            }
        }
    }
    // NaN scores give a NaN loss, never a panic.
    if valid {
        let mut bad = x.clone();
        bad[[0, 0]] = <T as Element>::from_f64(f64::NAN);
        let (l, _) = loss::softmax_loss(bad.view(), &labels).expect("valid shapes");
        assert!(reference::Real::is_nan(l));
    }
}

/// Softmax and SVM losses, labels in and out of range.
pub fn losses(data: &[u8]) {
    either(data, losses_typed::<f32>, losses_typed::<f64>)
}

/// A check: panics on a finding.
pub type Check = fn(&[u8]);

/// Every check, by target name.
pub const TARGETS: [(&str, Check); 6] = [
    ("conv2d", conv2d),
    ("pool2d", pool2d),
    ("im2col_col2im", im2col_col2im),
    ("gemm", gemm),
    ("norms", norms),
    ("losses", losses),
];
