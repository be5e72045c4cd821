//! Every backward pass of the reference against centred finite differences in
//! f64 (the CS231n gradient check), on shapes that exercise each parameter.

use ndarray::{Array, Array1, Array2, Array4, ArrayD, Dimension, IxDyn, ShapeBuilder};
use patchwise_reference::*;

/// Deterministic pseudo-random values in [-1, 1) (SplitMix64), so that tests
/// need no random-number crate and fail reproducibly.
fn random<Sh: ShapeBuilder>(shape: Sh, seed: u64) -> Array<f64, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    let mut i = 0u64;
    Array::from_shape_simple_fn(shape, || {
        i += 1;
        2.0 * dropout_uniform(seed, i) - 1.0
    })
}

/// Finite-difference step: balances truncation (O(h²)) against round-off (O(ε/h)).
const H: f64 = 1e-5;

fn assert_close<D: Dimension>(name: &str, analytic: &Array<f64, D>, numeric: &Array<f64, D>, tol: f64) {
    let err = rel_error(analytic.view(), numeric.view());
    assert!(err <= tol, "{name}: rel_error {err:e} > {tol:e}");
}

#[test]
fn affine_gradients() {
    for (shape, m, seed) in [
        (vec![2, 3, 4], 5, 1),
        (vec![1, 6], 3, 2),
        (vec![4, 2, 2, 3], 2, 3),
    ] {
        let x = random(IxDyn(&shape), seed);
        let d: usize = shape[1..].iter().product();
        let w = random((d, m), seed + 10);
        let b = random(m, seed + 20);
        let dout = random((shape[0], m), seed + 30);
        let (dx, dw, db) = affine_backward(dout.view(), x.view(), w.view());
        let ndx =
            eval_numerical_gradient_array(|x| affine_forward(x.view(), w.view(), b.view()), &x, &dout, H);
        let ndw =
            eval_numerical_gradient_array(|w| affine_forward(x.view(), w.view(), b.view()), &w, &dout, H);
        let ndb =
            eval_numerical_gradient_array(|b| affine_forward(x.view(), w.view(), b.view()), &b, &dout, H);
        assert_close("dx", &dx, &ndx, 1e-7);
        assert_close("dw", &dw, &ndw, 1e-7);
        assert_close("db", &db, &ndb, 1e-7);
    }
}

#[test]
fn relu_and_sigmoid_gradients() {
    // Scaled away from 0 so no finite difference straddles ReLU's kink.
    let x: ArrayD<f64> = random(IxDyn(&[3, 4, 5]), 4).mapv(|v| if v.abs() < 1e-3 { 0.5 } else { 3.0 * v });
    let dout = random(IxDyn(&[3, 4, 5]), 5);
    let dx = relu_backward(dout.view(), x.view());
    let ndx = eval_numerical_gradient_array(|x| relu_forward(x.view()), &x, &dout, H);
    assert_close("relu dx", &dx, &ndx, 1e-7);
    let dx = sigmoid_backward(dout.view(), x.view());
    let ndx = eval_numerical_gradient_array(|x| sigmoid_forward(x.view()), &x, &dout, H);
    assert_close("sigmoid dx", &dx, &ndx, 1e-7);
}

#[test]
fn batchnorm_gradients_and_alt_agree() {
    for (n, d, seed) in [(4, 5, 6), (1, 3, 7), (7, 2, 8)] {
        let x = random((n, d), seed).mapv(|v| 4.0 * v + 10.0);
        let gamma = random(d, seed + 1).mapv(|v| v + 2.0);
        let beta = random(d, seed + 2);
        let dout = random((n, d), seed + 3);
        let eps = 1e-5;
        let params = BatchNormParams {
            mode: Mode::Train,
            eps,
            momentum: 0.9,
        };
        let zeros = Array1::zeros(d);
        let fx = |x: &Array2<f64>| {
            batchnorm_forward(
                x.view(),
                gamma.view(),
                beta.view(),
                &params,
                zeros.view(),
                zeros.view(),
            )
            .0
        };
        let (dx, dgamma, dbeta) = batchnorm_backward(dout.view(), x.view(), gamma.view(), eps);
        let (dx2, dgamma2, dbeta2) = batchnorm_backward_alt(dout.view(), x.view(), gamma.view(), eps);
        if n > 1 {
            // With N = 1 every x̂ is 0 and dx is exactly 0: the relative error
            // of two round-off-sized numbers means nothing, so that case is
            // checked absolutely below.
            assert_close(
                "bn dx",
                &dx,
                &eval_numerical_gradient_array(fx, &x, &dout, H),
                1e-7,
            );
        } else {
            assert!(
                dx.iter().chain(dx2.iter()).all(|v| v.abs() < 1e-12),
                "N = 1: dx must vanish"
            );
        }
        let fg = |g: &Array1<f64>| {
            batchnorm_forward(
                x.view(),
                g.view(),
                beta.view(),
                &params,
                zeros.view(),
                zeros.view(),
            )
            .0
        };
        let fb = |b: &Array1<f64>| {
            batchnorm_forward(
                x.view(),
                gamma.view(),
                b.view(),
                &params,
                zeros.view(),
                zeros.view(),
            )
            .0
        };
        assert_close(
            "bn dgamma",
            &dgamma,
            &eval_numerical_gradient_array(fg, &gamma, &dout, H),
            1e-7,
        );
        assert_close(
            "bn dbeta",
            &dbeta,
            &eval_numerical_gradient_array(fb, &beta, &dout, H),
            1e-7,
        );
        let diff = dx
            .iter()
            .zip(dx2.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(diff <= 1e-10, "graph and alt dx differ by {diff:e}");
        assert!(rel_error(dgamma.view(), dgamma2.view()) <= 1e-12);
        assert_eq!(dbeta, dbeta2);
    }
}

#[test]
fn layernorm_gradients() {
    for (n, d, seed) in [(4, 5, 9), (1, 6, 10), (3, 3, 11)] {
        let x = random((n, d), seed).mapv(|v| 3.0 * v - 1.0);
        let gamma = random(d, seed + 1);
        let beta = random(d, seed + 2);
        let dout = random((n, d), seed + 3);
        let eps = 1e-5;
        let (dx, dgamma, dbeta) = layernorm_backward(dout.view(), x.view(), gamma.view(), eps);
        let f = |x: &Array2<f64>| layernorm_forward(x.view(), gamma.view(), beta.view(), eps);
        assert_close(
            "ln dx",
            &dx,
            &eval_numerical_gradient_array(f, &x, &dout, H),
            1e-7,
        );
        let fg = |g: &Array1<f64>| layernorm_forward(x.view(), g.view(), beta.view(), eps);
        let fb = |b: &Array1<f64>| layernorm_forward(x.view(), gamma.view(), b.view(), eps);
        assert_close(
            "ln dgamma",
            &dgamma,
            &eval_numerical_gradient_array(fg, &gamma, &dout, H),
            1e-7,
        );
        assert_close(
            "ln dbeta",
            &dbeta,
            &eval_numerical_gradient_array(fb, &beta, &dout, H),
            1e-7,
        );
        assert_eq!(dgamma.shape(), &[d], "dgamma is (D,), not the seed's (1, D)");
    }
}

#[test]
fn spatial_norm_gradients() {
    for ((n, c, h, w), groups, seed) in [
        ((2, 4, 3, 5), 2, 12),
        ((1, 6, 2, 2), 3, 13),
        ((3, 2, 1, 4), 1, 14),
    ] {
        let x = random((n, c, h, w), seed).mapv(|v| 2.0 * v + 0.5);
        let gamma = random(c, seed + 1);
        let beta = random(c, seed + 2);
        let dout = random((n, c, h, w), seed + 3);
        let eps = 1e-5;
        let params = BatchNormParams {
            mode: Mode::Train,
            eps,
            momentum: 0.9,
        };
        let zeros = Array1::zeros(c);
        let (dx, dgamma, dbeta) = spatial_batchnorm_backward(dout.view(), x.view(), gamma.view(), eps);
        let f = |x: &Array4<f64>| {
            spatial_batchnorm_forward(
                x.view(),
                gamma.view(),
                beta.view(),
                &params,
                zeros.view(),
                zeros.view(),
            )
            .0
        };
        assert_close(
            "sbn dx",
            &dx,
            &eval_numerical_gradient_array(f, &x, &dout, H),
            1e-7,
        );
        let fg = |g: &Array1<f64>| {
            spatial_batchnorm_forward(
                x.view(),
                g.view(),
                beta.view(),
                &params,
                zeros.view(),
                zeros.view(),
            )
            .0
        };
        let fb = |b: &Array1<f64>| {
            spatial_batchnorm_forward(
                x.view(),
                gamma.view(),
                b.view(),
                &params,
                zeros.view(),
                zeros.view(),
            )
            .0
        };
        assert_close(
            "sbn dgamma",
            &dgamma,
            &eval_numerical_gradient_array(fg, &gamma, &dout, H),
            1e-7,
        );
        assert_close(
            "sbn dbeta",
            &dbeta,
            &eval_numerical_gradient_array(fb, &beta, &dout, H),
            1e-7,
        );

        let (dx, dgamma, dbeta) =
            spatial_groupnorm_backward(dout.view(), x.view(), gamma.view(), groups, eps);
        let f = |x: &Array4<f64>| spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), groups, eps);
        assert_close(
            "gn dx",
            &dx,
            &eval_numerical_gradient_array(f, &x, &dout, H),
            1e-7,
        );
        let fg = |g: &Array1<f64>| spatial_groupnorm_forward(x.view(), g.view(), beta.view(), groups, eps);
        let fb = |b: &Array1<f64>| spatial_groupnorm_forward(x.view(), gamma.view(), b.view(), groups, eps);
        assert_close(
            "gn dgamma",
            &dgamma,
            &eval_numerical_gradient_array(fg, &gamma, &dout, H),
            1e-7,
        );
        assert_close(
            "gn dbeta",
            &dbeta,
            &eval_numerical_gradient_array(fb, &beta, &dout, H),
            1e-7,
        );
    }
}

#[test]
fn dropout_gradient_uses_the_forward_mask() {
    let x = random(IxDyn(&[5, 7]), 15);
    let dout = random(IxDyn(&[5, 7]), 16);
    for train in [true, false] {
        let dx = dropout_backward(dout.view(), 0.6, train, 42);
        let ndx = eval_numerical_gradient_array(|x| dropout_forward(x.view(), 0.6, train, 42), &x, &dout, H);
        assert_close("dropout dx", &dx, &ndx, 1e-7);
    }
}

/// (x shape, w shape, params): non-square kernels, stride ≠ kernel, pad 0,
/// different H/W stride and padding, dilation, groups, batch 1, pad ≥ kernel,
/// a kernel as large as the padded input.
type Shape4 = (usize, usize, usize, usize);

fn conv_cases() -> Vec<(Shape4, Shape4, ConvParams)> {
    vec![
        ((2, 3, 5, 6), (4, 3, 3, 2), ConvParams::new(1, 1)),
        (
            (1, 2, 7, 5),
            (3, 2, 2, 3),
            ConvParams {
                stride: [2, 1],
                pad: [0, 2],
                ..Default::default()
            },
        ),
        (
            (2, 2, 6, 7),
            (2, 2, 3, 3),
            ConvParams {
                stride: [1, 2],
                pad: [1, 0],
                dilation: [2, 1],
                groups: 1,
            },
        ),
        (
            (1, 4, 5, 5),
            (6, 2, 2, 2),
            ConvParams {
                stride: [1, 1],
                pad: [1, 1],
                dilation: [1, 2],
                groups: 2,
            },
        ),
        (
            (2, 1, 3, 4),
            (2, 1, 1, 1),
            ConvParams {
                stride: [3, 2],
                pad: [2, 1],
                ..Default::default()
            },
        ),
        ((1, 2, 3, 2), (2, 2, 5, 4), ConvParams::new(1, 1)),
    ]
}

#[test]
fn conv_gradients() {
    for (seed, (xs, ws, p)) in conv_cases().into_iter().enumerate() {
        let seed = 100 + 10 * seed as u64;
        let x = random(xs, seed);
        let w = random(ws, seed + 1);
        let b = random(ws.0, seed + 2);
        let out = conv_forward(x.view(), w.view(), b.view(), &p);
        let dout = random(out.raw_dim(), seed + 3);
        let (dx, dw, db) = conv_backward(dout.view(), x.view(), w.view(), &p);
        let fx = |x: &Array4<f64>| conv_forward(x.view(), w.view(), b.view(), &p);
        let fw = |w: &Array4<f64>| conv_forward(x.view(), w.view(), b.view(), &p);
        let fb = |b: &Array1<f64>| conv_forward(x.view(), w.view(), b.view(), &p);
        assert_close(
            "conv dx",
            &dx,
            &eval_numerical_gradient_array(fx, &x, &dout, H),
            1e-7,
        );
        assert_close(
            "conv dw",
            &dw,
            &eval_numerical_gradient_array(fw, &w, &dout, H),
            1e-7,
        );
        assert_close(
            "conv db",
            &db,
            &eval_numerical_gradient_array(fb, &b, &dout, H),
            1e-7,
        );
    }
}

fn pool_cases() -> Vec<((usize, usize, usize, usize), PoolParams)> {
    vec![
        ((2, 3, 4, 4), PoolParams::new(2, 2, 2)),
        ((1, 2, 7, 7), PoolParams::new(3, 3, 2)),
        (
            (2, 1, 5, 8),
            PoolParams {
                kernel: [3, 2],
                stride: [1, 3],
                pad: [1, 0],
            },
        ),
        (
            (1, 2, 6, 5),
            PoolParams {
                kernel: [2, 4],
                stride: [2, 1],
                pad: [1, 2],
            },
        ),
        ((1, 1, 1, 1), PoolParams::new(1, 1, 1)),
    ]
}

#[test]
fn pool_gradients() {
    for (seed, (xs, p)) in pool_cases().into_iter().enumerate() {
        let seed = 200 + 10 * seed as u64;
        let x = random(xs, seed);
        let out = max_pool_forward(x.view(), &p);
        let dout = random(out.raw_dim(), seed + 1);
        let dx = max_pool_backward(dout.view(), x.view(), &p);
        let f = |x: &Array4<f64>| max_pool_forward(x.view(), &p);
        assert_close(
            "max pool dx",
            &dx,
            &eval_numerical_gradient_array(f, &x, &dout, H),
            1e-7,
        );
        for include in [true, false] {
            let dx = avg_pool_backward(dout.view(), [xs.0, xs.1, xs.2, xs.3], &p, include);
            let f = |x: &Array4<f64>| avg_pool_forward(x.view(), &p, include);
            assert_close(
                "avg pool dx",
                &dx,
                &eval_numerical_gradient_array(f, &x, &dout, H),
                1e-7,
            );
        }
    }
}

#[test]
fn loss_gradients() {
    for (n, c, seed) in [(5, 4, 300), (1, 3, 301), (8, 10, 302)] {
        let x = random((n, c), seed).mapv(|v| 3.0 * v);
        let y: Vec<usize> = (0..n).map(|i| (i * 7 + 1) % c).collect();
        let (_, dx) = softmax_loss(x.view(), &y);
        let ndx = eval_numerical_gradient(|x: &Array2<f64>| softmax_loss(x.view(), &y).0, &x, H);
        assert_close("softmax dx", &dx, &ndx, 1e-7);
        let (_, dx) = svm_loss(x.view(), &y);
        let ndx = eval_numerical_gradient(|x: &Array2<f64>| svm_loss(x.view(), &y).0, &x, H);
        assert_close("svm dx", &dx, &ndx, 1e-7);
    }
}
