//! The layers as a user sees them: the CS231n notebooks' numbers, identical
//! results for every thread count, and clear errors for bad input.

mod common;

use common::*;
use ndarray::{array, Array, Array1, Array2, Array4, ArrayD, IxDyn};
use patchwise_layers::optim::Optimizer;
use patchwise_layers::*;
use reference::notebook;

#[test]
fn notebook_numbers() {
    let (x, w, b, p, expected) = notebook::conv_forward();
    let params = conv::ConvParams {
        stride: p.stride,
        pad: p.pad,
        dilation: p.dilation,
        groups: p.groups,
    };
    let (out, _) = conv::forward(x.view(), w.view(), b.view(), &params).unwrap();
    notebook::assert_printed("conv", &out, &expected);

    let (x, w, b, expected) = notebook::affine_forward();
    let (out, _) = affine::forward(x.view(), w.view(), b.view()).unwrap();
    notebook::assert_printed("affine", &out, &expected);

    let (x, p, expected) = notebook::max_pool_forward();
    let (out, _) = pool::max_forward(
        x.view(),
        &pool::PoolParams::new(p.kernel[0], p.kernel[1], p.stride[0]),
    )
    .unwrap();
    notebook::assert_printed("max pool", &out, &expected);

    let (w0, dw, a, b) = notebook::optim_inputs();
    let mut w = w0.clone();
    let mut opt = optim::SgdMomentum {
        learning_rate: 1e-3,
        velocity: Some(a.clone()),
        ..Default::default()
    };
    opt.update(w.view_mut(), dw.view()).unwrap();
    let (ew, ev) = notebook::sgd_momentum_expected();
    notebook::assert_printed("momentum w", &w, &ew);
    notebook::assert_printed("momentum v", opt.velocity.as_ref().unwrap(), &ev);

    let mut w = w0.clone();
    let mut opt = optim::RmsProp {
        learning_rate: 1e-2,
        cache: Some(a.clone()),
        ..Default::default()
    };
    opt.update(w.view_mut(), dw.view()).unwrap();
    let (ew, ec) = notebook::rmsprop_expected();
    notebook::assert_printed("rmsprop w", &w, &ew);
    notebook::assert_printed("rmsprop cache", opt.cache.as_ref().unwrap(), &ec);

    let mut w = w0;
    let mut opt = optim::Adam {
        learning_rate: 1e-2,
        m: Some(a),
        v: Some(b),
        t: 5,
        ..Default::default()
    };
    opt.update(w.view_mut(), dw.view()).unwrap();
    let (ew, em, ev) = notebook::adam_expected();
    assert_eq!(opt.t, 6);
    notebook::assert_printed("adam w", &w, &ew);
    notebook::assert_printed("adam m", opt.m.as_ref().unwrap(), &em);
    notebook::assert_printed("adam v", opt.v.as_ref().unwrap(), &ev);
}

#[test]
fn batchnorm_test_mode_backward_matches_finite_differences() {
    // In test mode the layer is affine in x, γ and β; the reference has no
    // such backward, so check it against the numerical gradient.
    let raw: Vec<f64> = (0..97).map(|i| ((i * 29 % 97) as f64) / 48.0 - 1.0).collect();
    let x: Array2<f64> = arr((5, 3), &raw, 0);
    let gamma: Array1<f64> = arr(3, &raw, 10);
    let beta: Array1<f64> = arr(3, &raw, 20);
    let dout: Array2<f64> = arr((5, 3), &raw, 30);
    let mut state = batchnorm::BatchNormState::new(3);
    state.mode = Mode::Test;
    state.running_mean = array![0.1, -0.2, 0.3];
    state.running_var = array![0.5, 1.5, 0.25];
    let run = |x: &Array2<f64>, g: &Array1<f64>, b: &Array1<f64>| {
        batchnorm::forward(x.view(), g.view(), b.view(), &mut state.clone())
            .unwrap()
            .0
    };
    let (_, cache) = batchnorm::forward(x.view(), gamma.view(), beta.view(), &mut state.clone()).unwrap();
    for g in [
        batchnorm::backward(dout.view(), &cache).unwrap(),
        batchnorm::backward_alt(dout.view(), &cache).unwrap(),
    ] {
        let ndx = reference::eval_numerical_gradient_array(|x| run(x, &gamma, &beta), &x, &dout, 1e-5);
        let ndg = reference::eval_numerical_gradient_array(|gm| run(&x, gm, &beta), &gamma, &dout, 1e-5);
        let ndb = reference::eval_numerical_gradient_array(|bt| run(&x, &gamma, bt), &beta, &dout, 1e-5);
        assert!(reference::rel_error(g.dx.view(), ndx.view()) < 1e-8);
        assert!(reference::rel_error(g.dgamma.view(), ndg.view()) < 1e-8);
        assert!(reference::rel_error(g.dbeta.view(), ndb.view()) < 1e-8);
    }
}

fn raw(n: usize, seed: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (((i + seed) * 7919 % 10007) as f64) / 5003.0 - 1.0)
        .collect()
}

#[test]
fn every_op_is_deterministic_across_thread_counts() {
    let r = raw(10007, 1);
    // Convolution: batch 2 takes the per-image path on 1–2 threads and the
    // parallel-GEMM path on 3 and 8; batch 9 of 32×32 images sums dW in
    // several groups of bands.
    for (n, h, w) in [(2, 20, 17), (9, 32, 32)] {
        let x: Array4<f32> = arr((n, 6, h, w), &r, 0);
        let w: Array4<f32> = arr((12, 3, 3, 3), &r, 5);
        let b: Array1<f32> = arr(12, &r, 9);
        let params = conv::ConvParams::new(1, 1).with_groups(2).with_stride(2, 1);
        assert_deterministic("conv", || {
            let (out, cache) = conv::forward(x.view(), w.view(), b.view(), &params).unwrap();
            let g = conv::backward(out.view(), &cache).unwrap();
            (bits(&out), bits(&g.dx), bits(&g.dw), bits(&g.db))
        });
        let w1: Array4<f32> = arr((8, 6, 1, 1), &r, 3);
        assert_deterministic("conv 1x1", || {
            let (out, cache) = conv::forward(
                x.view(),
                w1.view(),
                b.slice(ndarray::s![..8]),
                &Default::default(),
            )
            .unwrap();
            let g = conv::backward(out.view(), &cache).unwrap();
            (bits(&out), bits(&g.dx), bits(&g.dw))
        });
    }
    let x: Array4<f32> = arr((4, 16, 30, 30), &r, 2);
    assert_deterministic("pooling", || {
        let p = pool::PoolParams::new(3, 3, 2).with_pad(1, 1);
        let (m, mc) = pool::max_forward(x.view(), &p).unwrap();
        let (a, ac) = pool::avg_forward(x.view(), &p.with_count_include_pad(false)).unwrap();
        (
            bits(&m),
            bits(&pool::max_backward(a.view(), &mc).unwrap()),
            bits(&pool::avg_backward(m.view(), &ac).unwrap()),
        )
    });
    let gamma: Array1<f32> = arr(16, &r, 4);
    let beta: Array1<f32> = arr(16, &r, 6);
    assert_deterministic("spatial norms", || {
        let mut state = batchnorm::BatchNormState::new(16);
        let (o1, c1) = spatial::batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state).unwrap();
        let (o2, c2) = spatial::groupnorm_forward(x.view(), gamma.view(), beta.view(), 4, 1e-5).unwrap();
        let g1 = spatial::batchnorm_backward(o2.view(), &c1).unwrap();
        let g2 = spatial::groupnorm_backward(o1.view(), &c2).unwrap();
        (
            bits(&o1),
            bits(&o2),
            bits(&g1.dx),
            bits(&g1.dgamma),
            bits(&g2.dx),
            bits(&g2.dgamma),
            bits(&state.running_var),
        )
    });
    let m: Array2<f32> = arr((300, 70), &r, 8);
    let labels: Vec<usize> = (0..300).map(|i| i * 13 % 70).collect();
    assert_deterministic("dense layers", || {
        let (ln, lc) = layernorm::forward(
            m.view(),
            gamma.slice(ndarray::s![..1]).broadcast(70).unwrap(),
            m.row(0),
            1e-5,
        )
        .unwrap();
        let mut state = batchnorm::BatchNormState::new(70);
        let (bn, bc) = batchnorm::forward(m.view(), m.row(1), m.row(2), &mut state).unwrap();
        let (sl, sdx) = loss::softmax_loss(m.view(), &labels).unwrap();
        let (vl, vdx) = loss::svm_loss(m.view(), &labels).unwrap();
        let d = dropout::DropoutParams {
            p: 0.7,
            mode: Mode::Train,
            seed: 11,
        };
        let (dr, _) = dropout::forward(m.view().into_dyn(), &d).unwrap();
        let (af, ac) = affine::forward(
            m.view().into_dyn(),
            m.t().slice(ndarray::s![.., ..40]),
            m.row(3).slice(ndarray::s![..40]),
        )
        .unwrap();
        (
            bits(&ln),
            bits(&layernorm::backward(bn.view(), &lc).unwrap().dx),
            bits(&bn),
            bits(&batchnorm::backward(ln.view(), &bc).unwrap().dx),
            sl.to_bits(),
            vl.to_bits(),
            bits(&sdx),
            bits(&vdx),
            bits(&dr),
            bits(&af),
            bits(&affine::backward(af.view(), &ac).unwrap().dw),
        )
    });
}

#[test]
fn views_with_any_strides_are_accepted() {
    // A transposed (non-contiguous) view gives the same result as its copy.
    let r = raw(2000, 3);
    let x: Array4<f64> = arr((3, 2, 5, 6), &r, 0);
    let xt = x.clone().permuted_axes([0, 1, 3, 2]); // (3, 2, 6, 5), not contiguous
    let w: Array4<f64> = arr((4, 2, 2, 3), &r, 1);
    let b: Array1<f64> = arr(4, &r, 2);
    let p = conv::ConvParams::new(1, 1);
    let (a, _) = conv::forward(xt.view(), w.view(), b.view(), &p).unwrap();
    let (c, _) = conv::forward(xt.as_standard_layout().view(), w.view(), b.view(), &p).unwrap();
    assert_eq!(a, c);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let x4 = Array4::<f32>::zeros((2, 3, 5, 5));
    let w4 = Array4::<f32>::zeros((4, 3, 3, 3));
    let b = Array1::<f32>::zeros(4);
    let p = conv::ConvParams::new(1, 0);

    // Convolution.
    let e = conv::forward(x4.view(), Array4::zeros((4, 2, 3, 3)).view(), b.view(), &p).unwrap_err();
    assert_eq!(e.to_string(), "w: expected shape [4, 3, 3, 3], got [4, 2, 3, 3]");
    let e = conv::forward(x4.view(), w4.view(), Array1::zeros(3).view(), &p).unwrap_err();
    assert_eq!(e.to_string(), "b: expected shape [4], got [3]");
    let e = conv::forward(x4.view(), w4.view(), b.view(), &conv::ConvParams::new(0, 0)).unwrap_err();
    assert_eq!(e.to_string(), "stride_h: expected > 0, got 0");
    let e = conv::forward(x4.view(), Array4::zeros((4, 3, 8, 3)).view(), b.view(), &p).unwrap_err();
    assert_eq!(
        e,
        Error::WindowTooLarge {
            axis: "height",
            window: 8,
            padded_input: 5
        }
    );
    let e = conv::forward(x4.view(), w4.view(), b.view(), &p.with_groups(2)).unwrap_err();
    assert!(matches!(e, Error::Parameter { arg: "groups", .. }), "{e}");
    let e = conv::forward(x4.view(), w4.view(), b.view(), &p.with_dilation(1, 0)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Parameter {
                arg: "dilation_w",
                ..
            }
        ),
        "{e}"
    );
    let e = conv::forward(
        x4.view(),
        w4.view(),
        b.view(),
        &conv::ConvParams::new(1, usize::MAX / 2),
    )
    .unwrap_err();
    // A claimed padding far beyond the image cannot inflate the output.
    assert!(matches!(e, Error::Parameter { arg: "pad_h", .. }), "{e}");
    let (_, cache) = conv::forward(x4.view(), w4.view(), b.view(), &p).unwrap();
    let e = conv::backward(Array4::zeros((2, 4, 3, 4)).view(), &cache).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dout: expected shape [2, 4, 3, 3], got [2, 4, 3, 4]"
    );

    // Pooling.
    let e = pool::max_forward(x4.view(), &pool::PoolParams::new(2, 2, 0)).unwrap_err();
    assert!(matches!(e, Error::Parameter { arg: "stride_h", .. }), "{e}");
    let e = pool::avg_forward(x4.view(), &pool::PoolParams::new(6, 2, 1)).unwrap_err();
    assert!(matches!(e, Error::WindowTooLarge { axis: "height", .. }), "{e}");
    let e = pool::max_forward(x4.view(), &pool::PoolParams::new(2, 2, 1).with_pad(0, 2)).unwrap_err();
    assert!(matches!(e, Error::Parameter { arg: "pad_w", .. }), "{e}");
    let (_, mc) = pool::max_forward(x4.view(), &pool::PoolParams::new(2, 2, 2)).unwrap();
    assert!(matches!(
        pool::max_backward(x4.view(), &mc),
        Err(Error::Shape { arg: "dout", .. })
    ));
    let (_, ac) = pool::avg_forward(x4.view(), &pool::PoolParams::new(2, 2, 2)).unwrap();
    assert!(matches!(
        pool::avg_backward(x4.view(), &ac),
        Err(Error::Shape { arg: "dout", .. })
    ));

    // Affine.
    let x2 = Array2::<f32>::zeros((2, 6));
    let e = affine::forward(
        x2.view().into_dyn(),
        Array2::zeros((5, 3)).view(),
        Array1::zeros(3).view(),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "w: expected shape [6, 3], got [5, 3]");
    let e = affine::forward(
        Array1::<f32>::zeros(3).view().into_dyn(),
        Array2::zeros((3, 1)).view(),
        Array1::zeros(1).view(),
    );
    assert!(matches!(e, Err(Error::Shape { arg: "x", .. })));
    let (_, ac) = affine::forward(
        x2.view().into_dyn(),
        Array2::zeros((6, 3)).view(),
        Array1::zeros(3).view(),
    )
    .unwrap();
    assert!(matches!(
        affine::backward(Array2::zeros((2, 4)).view(), &ac),
        Err(Error::Shape { arg: "dout", .. })
    ));

    // Activations and dropout.
    let xd = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
    let (_, rc) = activation::relu_forward(xd.view());
    assert!(matches!(
        activation::relu_backward(ArrayD::zeros(IxDyn(&[3, 2])).view(), &rc),
        Err(Error::Shape { .. })
    ));
    let (_, sc) = activation::sigmoid_forward(xd.view());
    assert!(matches!(
        activation::sigmoid_backward(ArrayD::zeros(IxDyn(&[6])).view(), &sc),
        Err(Error::Shape { .. })
    ));
    for p in [0.0, -0.5, 1.5, f32::NAN] {
        let d = dropout::DropoutParams {
            p,
            mode: Mode::Train,
            seed: 0,
        };
        let e = dropout::forward(xd.view(), &d).unwrap_err();
        assert!(matches!(e, Error::Parameter { arg: "p", .. }), "{e}");
    }
    let (_, dc) = dropout::forward(
        xd.view(),
        &dropout::DropoutParams {
            p: 0.5,
            mode: Mode::Train,
            seed: 0,
        },
    )
    .unwrap();
    assert!(matches!(
        dropout::backward(ArrayD::zeros(IxDyn(&[2, 2])).view(), &dc),
        Err(Error::Shape { .. })
    ));

    // Normalisation.
    let (g3, g2) = (Array1::<f32>::ones(3), Array1::<f32>::ones(2));
    let mut state = batchnorm::BatchNormState::<f32>::new(6);
    assert!(matches!(
        batchnorm::forward(x2.view(), g3.view(), g3.view(), &mut state),
        Err(Error::Shape { arg: "gamma", .. })
    ));
    let mut short = batchnorm::BatchNormState::<f32>::new(5);
    let g6 = Array1::<f32>::ones(6);
    assert!(matches!(
        batchnorm::forward(x2.view(), g6.view(), g6.view(), &mut short),
        Err(Error::Shape {
            arg: "running_mean",
            ..
        })
    ));
    state.momentum = 1.5;
    assert!(matches!(
        batchnorm::forward(x2.view(), g6.view(), g6.view(), &mut state),
        Err(Error::Parameter { arg: "momentum", .. })
    ));
    state.momentum = 0.9;
    state.eps = f32::NAN;
    assert!(matches!(
        batchnorm::forward(x2.view(), g6.view(), g6.view(), &mut state),
        Err(Error::Parameter { arg: "eps", .. })
    ));
    state.eps = 1e-5;
    let empty = Array2::<f32>::zeros((0, 6));
    assert!(matches!(
        batchnorm::forward(empty.view(), g6.view(), g6.view(), &mut state),
        Err(Error::Shape { arg: "x", .. })
    ));
    let (_, bc) = batchnorm::forward(x2.view(), g6.view(), g6.view(), &mut state).unwrap();
    assert!(matches!(
        batchnorm::backward_alt(Array2::zeros((6, 2)).view(), &bc),
        Err(Error::Shape { arg: "dout", .. })
    ));
    assert!(matches!(
        layernorm::forward(x2.view(), g2.view(), g6.view(), 1e-5),
        Err(Error::Shape { arg: "gamma", .. })
    ));
    assert!(matches!(
        layernorm::forward(x2.view(), g6.view(), g6.view(), -1.0),
        Err(Error::Parameter { arg: "eps", .. })
    ));
    let e = spatial::groupnorm_forward(x4.view(), g3.view(), g3.view(), 2, 1e-5).unwrap_err();
    assert_eq!(e.to_string(), "groups: expected a divisor of C = 3, got 2");
    assert!(matches!(
        spatial::groupnorm_forward(x4.view(), g3.view(), g3.view(), 0, 1e-5),
        Err(Error::Parameter { .. })
    ));
    let mut s3 = batchnorm::BatchNormState::<f32>::new(3);
    let (_, sbc) = spatial::batchnorm_forward(x4.view(), g3.view(), g3.view(), &mut s3).unwrap();
    let e = spatial::groupnorm_backward(x4.view(), &sbc).unwrap_err();
    assert!(matches!(e, Error::Cache { .. }), "{e}");

    // Losses.
    let scores = Array2::<f64>::zeros((3, 4));
    let e = loss::softmax_loss(scores.view(), &[0, 4, 1]).unwrap_err();
    assert_eq!(
        e,
        Error::Label {
            index: 1,
            classes: 4,
            label: 4
        }
    );
    assert_eq!(e.to_string(), "y[1]: expected a class label < 4, got 4");
    assert!(matches!(
        loss::svm_loss(scores.view(), &[0, 1]),
        Err(Error::Shape { arg: "y", .. })
    ));
    assert!(matches!(
        loss::svm_loss(Array2::<f64>::zeros((0, 4)).view(), &[]),
        Err(Error::Shape { arg: "x", .. })
    ));

    // Optimizers.
    let mut w = Array::<f64, _>::zeros((2, 3));
    let e = optim::Sgd::default()
        .update(w.view_mut(), Array2::zeros((3, 2)).view())
        .unwrap_err();
    assert_eq!(e.to_string(), "dw: expected shape [2, 3], got [3, 2]");
    let mut adam = optim::Adam::default();
    adam.update(w.view_mut(), Array2::zeros((2, 3)).view()).unwrap();
    let mut other = Array2::<f64>::zeros((3, 3));
    assert!(matches!(
        adam.update(other.view_mut(), Array2::zeros((3, 3)).view()),
        Err(Error::Shape { arg: "w", .. })
    ));
    let mut bad = optim::SgdMomentum {
        momentum: 1.0,
        ..Default::default()
    };
    assert!(matches!(
        bad.update(w.view_mut(), Array2::zeros((2, 3)).view()),
        Err(Error::Parameter { arg: "momentum", .. })
    ));
    let mut bad = optim::RmsProp {
        learning_rate: f64::INFINITY,
        ..Default::default()
    };
    assert!(matches!(
        bad.update(w.view_mut(), Array2::zeros((2, 3)).view()),
        Err(Error::Parameter {
            arg: "learning_rate",
            ..
        })
    ));
}

#[test]
fn softmax_is_finite_for_huge_scores() {
    let x = array![[1e4f32, -1e4, 0.0], [-1e4, 1e4, 3e4]];
    let (loss, dx) = loss::softmax_loss(x.view(), &[0, 0]).unwrap();
    assert!(loss.is_finite() && dx.iter().all(|v| v.is_finite()));
    assert_eq!(loss, 2e4); // (0 + (3e4 − (−1e4)))/2
}

#[test]
fn non_finite_values_follow_the_policy() {
    // Max pool: NaN wins its window and takes the gradient.
    let mut x = Array4::<f32>::zeros((1, 1, 4, 4));
    x[[0, 0, 1, 1]] = f32::NAN;
    x[[0, 0, 0, 0]] = 5.0;
    let (out, cache) = pool::max_forward(x.view(), &pool::PoolParams::new(2, 2, 2)).unwrap();
    assert!(out[[0, 0, 0, 0]].is_nan() && out[[0, 0, 1, 1]] == 0.0);
    let dx = pool::max_backward(Array4::ones((1, 1, 2, 2)).view(), &cache).unwrap();
    assert_eq!((dx[[0, 0, 1, 1]], dx[[0, 0, 0, 0]]), (1.0, 0.0));
    let (avg, _) = pool::avg_forward(x.view(), &pool::PoolParams::new(2, 2, 2)).unwrap();
    assert!(avg[[0, 0, 0, 0]].is_nan() && avg[[0, 0, 0, 1]] == 0.0);

    // Losses: a NaN score makes the loss and its gradient row NaN.
    let scores = array![[1.0f64, f64::NAN, 0.0], [0.5, 0.2, 0.1]];
    for (l, dx) in [
        loss::softmax_loss(scores.view(), &[0, 1]).unwrap(),
        loss::svm_loss(scores.view(), &[0, 1]).unwrap(),
    ] {
        assert!(l.is_nan());
        assert!(dx.row(0).iter().all(|v| v.is_nan()) && dx.row(1).iter().all(|v| v.is_finite()));
    }

    // Norms: a NaN poisons its own set only.
    let mut m = Array2::<f64>::from_shape_fn((3, 2), |(i, j)| (i + 2 * j) as f64);
    m[[0, 0]] = f64::NAN;
    let (ln, _) =
        layernorm::forward(m.view(), Array1::ones(2).view(), Array1::zeros(2).view(), 1e-5).unwrap();
    assert!(ln.row(0).iter().all(|v| v.is_nan()) && ln.row(1).iter().all(|v| v.is_finite()));
    let mut state = batchnorm::BatchNormState::new(2);
    let (bn, _) = batchnorm::forward(
        m.view(),
        Array1::ones(2).view(),
        Array1::zeros(2).view(),
        &mut state,
    )
    .unwrap();
    assert!(bn.column(0).iter().all(|v| v.is_nan()) && bn.column(1).iter().all(|v| v.is_finite()));

    // Convolution: an infinite weight meets the zero padding as IEEE says.
    let x = Array4::<f32>::ones((1, 1, 2, 2));
    let w = Array4::from_elem((1, 1, 2, 2), f32::INFINITY);
    let (out, _) = conv::forward(
        x.view(),
        w.view(),
        Array1::zeros(1).view(),
        &conv::ConvParams::new(1, 1),
    )
    .unwrap();
    assert!(out.iter().all(|v| v.is_nan() || *v == f32::INFINITY));
    assert!(out[[0, 0, 1, 1]] == f32::INFINITY); // the window without padding

    // Backward with an infinite weight (in the weights' last part, in the
    // last tile of the flip that checks them): dx has the reference's
    // infinities and no NaN (the padding's zeros never meet the weight).
    let x = Array::from_shape_fn((1, 64, 6, 6), |(_, c, i, j)| {
        ((c * 7 + i * 3 + j) % 11) as f64 - 5.0
    });
    let mut w = Array::from_shape_fn((128, 64, 3, 3), |(f, c, i, j)| {
        ((f + c * 5 + i + j * 2) % 13) as f64 * 0.1 - 0.6
    });
    w[[127, 63, 2, 2]] = f64::INFINITY;
    let params = conv::ConvParams::new(1, 1);
    let (out, cache) = conv::forward(x.view(), w.view(), Array1::zeros(128).view(), &params).unwrap();
    let dout = Array::from_shape_fn(out.raw_dim(), |(_, f, i, j)| ((f + i * 2 + j) % 5) as f64 + 1.0);
    let dx = conv::backward(dout.view(), &cache).unwrap().dx;
    let (expected, _, _) =
        reference::conv_backward(dout.view(), x.view(), w.view(), &reference::ConvParams::new(1, 1));
    assert!(expected.iter().any(|v| v.is_infinite()));
    for (&got, &want) in dx.iter().zip(&expected) {
        if want.is_finite() {
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "dx {got} vs {want}"
            );
        } else {
            assert_eq!(got, want, "dx: a non-finite value differs");
        }
    }

    // Optimizers: a NaN gradient makes the weight NaN, nothing else.
    let mut wt = array![1.0f32, 2.0];
    optim::Adam::default()
        .update(wt.view_mut(), array![f32::NAN, 0.5].view())
        .unwrap();
    assert!(wt[0].is_nan() && wt[1].is_finite());

    // ReLU: NaN passes forward, with a zero gradient.
    let xd = array![f32::NAN, -1.0, 2.0].into_dyn();
    let (out, cache) = activation::relu_forward(xd.view());
    assert!(out[0].is_nan());
    assert_eq!(
        activation::relu_backward(ArrayD::ones(IxDyn(&[3])).view(), &cache).unwrap()[0],
        0.0
    );
}

#[test]
fn zero_sized_dimensions() {
    let p = conv::ConvParams::new(1, 1);
    // No images, no channels, no filters.
    let (x, w) = (Array4::<f32>::zeros((0, 2, 3, 3)), Array4::zeros((4, 2, 3, 3)));
    let (out, cache) = conv::forward(x.view(), w.view(), Array1::zeros(4).view(), &p).unwrap();
    assert_eq!(out.dim(), (0, 4, 3, 3));
    let g = conv::backward(out.view(), &cache).unwrap();
    assert_eq!((g.dx.dim(), g.dw.dim()), ((0, 2, 3, 3), (4, 2, 3, 3)));
    assert!(g.dw.iter().all(|&v| v == 0.0));
    let b = array![1.5f32, -2.0];
    let (out, _) = conv::forward(
        Array4::<f32>::zeros((1, 0, 3, 3)).view(),
        Array4::zeros((2, 0, 3, 3)).view(),
        b.view(),
        &p,
    )
    .unwrap();
    assert!(
        out.index_axis(ndarray::Axis(1), 0).iter().all(|&v| v == 1.5),
        "no channels: the bias"
    );
    let (out, _) = conv::forward(
        Array4::<f32>::zeros((1, 2, 3, 3)).view(),
        Array4::zeros((0, 2, 3, 3)).view(),
        Array1::zeros(0).view(),
        &p,
    )
    .unwrap();
    assert_eq!(out.dim(), (1, 0, 3, 3));
    // Pooling: an empty batch is fine, an empty image is an error.
    let (out, _) = pool::max_forward(
        Array4::<f32>::zeros((0, 3, 4, 4)).view(),
        &pool::PoolParams::new(2, 2, 2),
    )
    .unwrap();
    assert_eq!(out.dim(), (0, 3, 2, 2));
    assert!(pool::max_forward(
        Array4::<f32>::zeros((1, 1, 0, 4)).view(),
        &pool::PoolParams::new(1, 1, 1)
    )
    .is_err());
    // Affine with no examples or no features.
    let (out, _) = affine::forward(
        ArrayD::<f64>::zeros(IxDyn(&[0, 3])).view(),
        Array2::zeros((3, 2)).view(),
        array![1.0, 2.0].view(),
    )
    .unwrap();
    assert_eq!(out.dim(), (0, 2));
    let (out, _) = affine::forward(
        ArrayD::<f64>::zeros(IxDyn(&[2, 0])).view(),
        Array2::zeros((0, 2)).view(),
        array![1.0, 2.0].view(),
    )
    .unwrap();
    assert_eq!(out, array![[1.0, 2.0], [1.0, 2.0]]);
    // Statistics of nothing are errors.
    let mut state = batchnorm::BatchNormState::<f64>::new(3);
    let empty = Array2::<f64>::zeros((0, 3));
    assert!(batchnorm::forward(
        empty.view(),
        Array1::ones(3).view(),
        Array1::zeros(3).view(),
        &mut state
    )
    .is_err());
    state.mode = Mode::Test;
    assert_eq!(
        batchnorm::forward(
            empty.view(),
            Array1::ones(3).view(),
            Array1::zeros(3).view(),
            &mut state
        )
        .unwrap()
        .0
        .dim(),
        (0, 3)
    );
    assert!(loss::softmax_loss(Array2::<f64>::zeros((0, 3)).view(), &[]).is_err());
}

#[test]
fn concurrent_calls_on_shared_inputs() {
    let r = raw(5000, 7);
    let x: Array4<f32> = arr((3, 4, 12, 12), &r, 0);
    let w: Array4<f32> = arr((6, 4, 3, 3), &r, 1);
    let b: Array1<f32> = arr(6, &r, 2);
    let p = conv::ConvParams::new(1, 1);
    let run = || {
        let (out, cache) = conv::forward(x.view(), w.view(), b.view(), &p).unwrap();
        let g = conv::backward(out.view(), &cache).unwrap();
        let (pooled, _) = pool::max_forward(out.view(), &pool::PoolParams::new(2, 2, 2)).unwrap();
        (bits(&out), bits(&g.dw), bits(&pooled))
    };
    let expected = run();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..6).map(|_| s.spawn(run)).collect();
        for h in handles {
            assert!(h.join().expect("no panic") == expected);
        }
    });
}

/// Windows beyond 256 taps record their arg-max in wider index types
/// (u16 here: a 20×17 window), with the same results as the reference.
#[test]
fn max_pool_with_large_windows() {
    let x = Array4::from_shape_vec((2, 3, 23, 17), raw(2 * 3 * 23 * 17, 5)).unwrap();
    let params = pool::PoolParams::new(20, 17, 3);
    let (out, cache) = pool::max_forward(x.view(), &params).unwrap();
    let rp = reference::PoolParams {
        kernel: [20, 17],
        stride: [3, 3],
        pad: [0, 0],
    };
    assert_eq!(out, reference::max_pool_forward(x.view(), &rp));
    let dout = Array4::from_shape_vec(out.raw_dim(), raw(out.len(), 6)).unwrap();
    let dx = pool::max_backward(dout.view(), &cache).unwrap();
    assert_eq!(dx, reference::max_pool_backward(dout.view(), x.view(), &rp));
}
