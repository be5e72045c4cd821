//! Every layer against `patchwise-reference`, forward and backward, f32 and
//! f64, over random shapes and parameters (H and W varied independently,
//! 1×1 images, kernels as large as the padded input, stride > kernel,
//! pad ≥ kernel, dilation, groups, batch 1, ties in pooling windows).

mod common;

use common::*;
use ndarray::{Array1, Axis, IxDyn};
use patchwise_layers::*;
use proptest::prelude::*;

fn data(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1.0f64..1.0, len)
}

fn check_affine<T: Real>(n: usize, dims: &[usize], m: usize, raw: &[f64]) {
    let mut shape = vec![n];
    shape.extend_from_slice(dims);
    let d: usize = dims.iter().product();
    let x = arr::<T, _>(IxDyn(&shape), raw, 0);
    let w = arr::<T, _>((d, m), raw, 11);
    let b = arr::<T, _>(m, raw, 23);
    let (out, cache) = affine::forward(x.view(), w.view(), b.view()).unwrap();
    let expected = reference::affine_forward(x.view(), w.view(), b.view());
    let bound = reference::affine_forward(abs(&x).view(), abs(&w).view(), abs(&b).view());
    assert_sum("affine out", &out, &expected, &bound, d + 1);
    let dout = arr::<T, _>((n, m), raw, 31);
    let g = affine::backward(dout.view(), &cache).unwrap();
    let (dx, dw, db) = reference::affine_backward(dout.view(), x.view(), w.view());
    let (bx, bw, bb) = reference::affine_backward(abs(&dout).view(), abs(&x).view(), abs(&w).view());
    assert_sum("affine dx", &g.dx, &dx, &bx, m);
    assert_sum("affine dw", &g.dw, &dw, &bw, n);
    assert_sum("affine db", &g.db, &db, &bb, n);
}

fn check_activations<T: Real>(shape: &[usize], raw: &[f64], scale: f64) {
    let x = arr::<T, _>(IxDyn(shape), raw, 0).mapv(|v| v * val::<T>(scale));
    let dout = arr::<T, _>(IxDyn(shape), raw, 5);
    let (out, cache) = activation::relu_forward(x.view());
    assert_eq!(out, reference::relu_forward(x.view()));
    assert_eq!(
        activation::relu_backward(dout.view(), &cache).unwrap(),
        reference::relu_backward(dout.view(), x.view())
    );
    let (out, cache) = activation::sigmoid_forward(x.view());
    assert_scaled("sigmoid", &out, &reference::sigmoid_forward(x.view()));
    let dx = activation::sigmoid_backward(dout.view(), &cache).unwrap();
    assert_scaled(
        "sigmoid dx",
        &dx,
        &reference::sigmoid_backward(dout.view(), x.view()),
    );
}

/// The reference's view of a batch-norm state's hyper-parameters.
fn reference_params<T: Real>(state: &batchnorm::BatchNormState<T>) -> reference::BatchNormParams<T> {
    let mode = match state.mode {
        Mode::Train => reference::Mode::Train,
        Mode::Test => reference::Mode::Test,
    };
    reference::BatchNormParams {
        mode,
        eps: state.eps,
        momentum: state.momentum,
    }
}

fn check_batchnorm<T: Real>(n: usize, d: usize, train: bool, raw: &[f64]) {
    let x = arr::<T, _>((n, d), raw, 0).mapv(|v| v * val::<T>(3.0) + val::<T>(0.5));
    let gamma = arr::<T, _>(d, raw, 7);
    let beta = arr::<T, _>(d, raw, 13);
    let mean = arr::<T, _>(d, raw, 17);
    let var = arr::<T, _>(d, raw, 19).mapv(|v| v * v + val::<T>(0.1));
    let mode = if train { Mode::Train } else { Mode::Test };
    let mut state = batchnorm::BatchNormState::new(d);
    state.mode = mode;
    state.running_mean = mean.clone();
    state.running_var = var.clone();
    let params = reference_params(&state);
    let (out, cache) = batchnorm::forward(x.view(), gamma.view(), beta.view(), &mut state).unwrap();
    let (eo, em, ev) = reference::batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &params,
        mean.view(),
        var.view(),
    );
    assert_scaled("bn out", &out, &eo);
    assert_scaled("bn running_mean", &state.running_mean, &em);
    assert_scaled("bn running_var", &state.running_var, &ev);
    if train {
        let dout = arr::<T, _>((n, d), raw, 29);
        let (dx, dg, db) = reference::batchnorm_backward(dout.view(), x.view(), gamma.view(), state.eps);
        let columns: Vec<Vec<T>> = x.columns().into_iter().map(|c| c.to_vec()).collect();
        let scale = norm_dx_scale(&dout, &gamma, &columns, 1e-5);
        // dγ and dβ are sums over the batch that may cancel: scaled by the
        // sums of their terms' magnitudes, not by their results.
        let param_scale = norm_param_scale(&dout, &x, true, 1e-5);
        for (name, g) in [
            ("graph", batchnorm::backward(dout.view(), &cache).unwrap()),
            ("alt", batchnorm::backward_alt(dout.view(), &cache).unwrap()),
        ] {
            assert_to_scale(&format!("bn {name} dx"), &g.dx, &dx, scale);
            assert_to_scale(&format!("bn {name} dgamma"), &g.dgamma, &dg, param_scale);
            assert_to_scale(&format!("bn {name} dbeta"), &g.dbeta, &db, param_scale);
        }
    }
}

fn check_layernorm<T: Real>(n: usize, d: usize, raw: &[f64]) {
    let x = arr::<T, _>((n, d), raw, 0).mapv(|v| v * val::<T>(2.0) - val::<T>(0.3));
    let gamma = arr::<T, _>(d, raw, 7);
    let beta = arr::<T, _>(d, raw, 13);
    let eps = val::<T>(1e-5);
    let (out, cache) = layernorm::forward(x.view(), gamma.view(), beta.view(), eps).unwrap();
    assert_scaled(
        "ln out",
        &out,
        &reference::layernorm_forward(x.view(), gamma.view(), beta.view(), eps),
    );
    let dout = arr::<T, _>((n, d), raw, 29);
    let g = layernorm::backward(dout.view(), &cache).unwrap();
    let (dx, dg, db) = reference::layernorm_backward(dout.view(), x.view(), gamma.view(), eps);
    let rows: Vec<Vec<T>> = x.rows().into_iter().map(|r| r.to_vec()).collect();
    assert_to_scale("ln dx", &g.dx, &dx, norm_dx_scale(&dout, &gamma, &rows, 1e-5));
    let param_scale = norm_param_scale(&dout, &x, false, 1e-5);
    assert_to_scale("ln dgamma", &g.dgamma, &dg, param_scale);
    assert_to_scale("ln dbeta", &g.dbeta, &db, param_scale);
}

fn check_dropout<T: Real>(shape: &[usize], p: f64, train: bool, seed: u64, raw: &[f64]) {
    let x = arr::<T, _>(IxDyn(shape), raw, 0);
    let params = dropout::DropoutParams {
        p: val::<T>(p),
        mode: if train { Mode::Train } else { Mode::Test },
        seed,
    };
    let (out, cache) = dropout::forward(x.view(), &params).unwrap();
    assert_eq!(
        out,
        reference::dropout_forward(x.view(), val::<T>(p), train, seed),
        "identical masks"
    );
    let dout = arr::<T, _>(IxDyn(shape), raw, 3);
    let dx = dropout::backward(dout.view(), &cache).unwrap();
    assert_eq!(
        dx,
        reference::dropout_backward(dout.view(), val::<T>(p), train, seed)
    );
}

#[derive(Clone, Debug)]
struct Conv {
    n: usize,
    groups: usize,
    cg: usize,
    fg: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

fn conv_case() -> impl Strategy<Value = Conv> {
    (
        (1usize..4, 1usize..4, 1usize..4, 1usize..4),
        ([1usize..9, 1..9], [1usize..5, 1..5]),
        ([1usize..4, 1..4], [0usize..5, 0..5], [1usize..4, 1..4]),
    )
        .prop_map(
            |((n, groups, cg, fg), (input, kernel), (stride, pad, dilation))| Conv {
                n,
                groups,
                cg,
                fg,
                input,
                kernel,
                stride,
                pad,
                dilation,
            },
        )
}

fn pointwise_case() -> impl Strategy<Value = Conv> {
    ((1usize..4, 1usize..4, 1usize..5, 1usize..5), [1usize..9, 1..9]).prop_map(
        |((n, groups, cg, fg), input)| Conv {
            n,
            groups,
            cg,
            fg,
            input,
            kernel: [1, 1],
            stride: [1, 1],
            pad: [0, 0],
            dilation: [1, 1],
        },
    )
}

fn check_conv<T: Real>(c: &Conv, raw: &[f64]) {
    let (ch, f) = (c.groups * c.cg, c.groups * c.fg);
    let [h, w] = c.input;
    let [kh, kw] = c.kernel;
    let x = arr::<T, _>((c.n, ch, h, w), raw, 0);
    let wt = arr::<T, _>((f, c.cg, kh, kw), raw, 101);
    let b = arr::<T, _>(f, raw, 203);
    let params = conv::ConvParams {
        stride: c.stride,
        pad: c.pad,
        dilation: c.dilation,
        groups: c.groups,
    };
    let rp = reference::ConvParams {
        stride: c.stride,
        pad: c.pad,
        dilation: c.dilation,
        groups: c.groups,
    };
    let pad_ok = (0..2).all(|a| c.pad[a] <= c.input[a].max(c.kernel[a]));
    let fits = (0..2).all(|a| c.dilation[a] * (c.kernel[a] - 1) < c.input[a] + 2 * c.pad[a]);
    let (out, cache) = match conv::forward(x.view(), wt.view(), b.view(), &params) {
        Ok(r) => r,
        Err(e) => {
            match e {
                Error::Parameter {
                    arg: "pad_h" | "pad_w",
                    ..
                } => assert!(!pad_ok, "{e}"),
                Error::WindowTooLarge { .. } => assert!(!fits, "{e}"),
                e => panic!("unexpected error {e} for {c:?}"),
            }
            return;
        }
    };
    assert!(fits && pad_ok, "invalid geometry accepted: {c:?}");
    let expected = reference::conv_forward(x.view(), wt.view(), b.view(), &rp);
    let bound = reference::conv_forward(abs(&x).view(), abs(&wt).view(), abs(&b).view(), &rp);
    assert_sum("conv out", &out, &expected, &bound, c.cg * kh * kw + 1);

    let dout = arr::<T, _>(out.raw_dim(), raw, 307);
    let g = conv::backward(dout.view(), &cache).unwrap();
    let (dx, dw, db) = reference::conv_backward(dout.view(), x.view(), wt.view(), &rp);
    let (bx, bw, bb) = reference::conv_backward(abs(&dout).view(), abs(&x).view(), abs(&wt).view(), &rp);
    let p = out.dim().2 * out.dim().3;
    assert_sum("conv dx", &g.dx, &dx, &bx, c.fg * kh * kw);
    assert_sum("conv dw", &g.dw, &dw, &bw, c.n * p);
    assert_sum("conv db", &g.db, &db, &bb, c.n * p);
}

#[derive(Clone, Debug)]
struct Pool {
    n: usize,
    c: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
}

fn pool_case() -> impl Strategy<Value = Pool> {
    (
        (1usize..3, 1usize..3),
        [1usize..9, 1..9],
        [1usize..5, 1..5],
        [1usize..4, 1..4],
        [0usize..3, 0..3],
    )
        .prop_map(|((n, c), input, kernel, stride, pad)| Pool {
            n,
            c,
            input,
            kernel,
            stride,
            pad,
        })
}

fn check_pool<T: Real>(p: &Pool, raw: &[f64], ties: bool) {
    let x = arr::<T, _>((p.n, p.c, p.input[0], p.input[1]), raw, 0).mapv(|v| {
        if ties {
            <T as reference::Real>::from_f64((reference::Real::to_f64(v) * 2.0).round())
        } else {
            v
        }
    });
    let rp = reference::PoolParams {
        kernel: p.kernel,
        stride: p.stride,
        pad: p.pad,
    };
    let params = pool::PoolParams {
        kernel: p.kernel,
        stride: p.stride,
        pad: p.pad,
        count_include_pad: true,
    };
    let valid = (0..2).all(|a| p.kernel[a] <= p.input[a] + 2 * p.pad[a] && 2 * p.pad[a] <= p.kernel[a]);
    let (out, cache) = match pool::max_forward(x.view(), &params) {
        Ok(r) => r,
        Err(e) => {
            assert!(!valid, "valid pooling rejected: {e}");
            return;
        }
    };
    assert!(valid, "invalid pooling accepted: {p:?}");
    assert_eq!(out, reference::max_pool_forward(x.view(), &rp));
    let dout = arr::<T, _>(out.raw_dim(), raw, 41);
    let dx = pool::max_backward(dout.view(), &cache).unwrap();
    let kk = p.kernel[0] * p.kernel[1];
    let bound = reference::max_pool_backward(abs(&dout).view(), x.view(), &rp);
    assert_sum(
        "max pool dx",
        &dx,
        &reference::max_pool_backward(dout.view(), x.view(), &rp),
        &bound,
        kk,
    );
    for include in [true, false] {
        let params = params.with_count_include_pad(include);
        let (out, cache) = pool::avg_forward(x.view(), &params).unwrap();
        let bound = reference::avg_pool_forward(abs(&x).view(), &rp, include);
        assert_sum(
            "avg pool out",
            &out,
            &reference::avg_pool_forward(x.view(), &rp, include),
            &bound,
            kk,
        );
        let dx = pool::avg_backward(dout.view(), &cache).unwrap();
        let shape = [p.n, p.c, p.input[0], p.input[1]];
        let expected = reference::avg_pool_backward(dout.view(), shape, &rp, include);
        let bound = reference::avg_pool_backward(abs(&dout).view(), shape, &rp, include);
        assert_sum("avg pool dx", &dx, &expected, &bound, kk);
    }
}

fn check_spatial<T: Real>(n: usize, groups: usize, cg: usize, h: usize, w: usize, train: bool, raw: &[f64]) {
    let c = groups * cg;
    let x = arr::<T, _>((n, c, h, w), raw, 0).mapv(|v| v * val::<T>(2.0) + val::<T>(1.0));
    let gamma = arr::<T, _>(c, raw, 7);
    let beta = arr::<T, _>(c, raw, 13);
    let dout = arr::<T, _>((n, c, h, w), raw, 29);
    let mut state = batchnorm::BatchNormState::new(c);
    state.mode = if train { Mode::Train } else { Mode::Test };
    state.running_mean = arr::<T, _>(c, raw, 3);
    state.running_var = arr::<T, _>(c, raw, 5).mapv(|v| v * v + val::<T>(0.5));
    let (rm, rv) = (state.running_mean.clone(), state.running_var.clone());
    let params = reference_params(&state);
    let (out, cache) = spatial::batchnorm_forward(x.view(), gamma.view(), beta.view(), &mut state).unwrap();
    let (eo, em, ev) = reference::spatial_batchnorm_forward(
        x.view(),
        gamma.view(),
        beta.view(),
        &params,
        rm.view(),
        rv.view(),
    );
    assert_scaled("sbn out", &out, &eo);
    assert_scaled("sbn running_mean", &state.running_mean, &em);
    assert_scaled("sbn running_var", &state.running_var, &ev);
    if train {
        let g = spatial::batchnorm_backward(dout.view(), &cache).unwrap();
        let (dx, dg, db) =
            reference::spatial_batchnorm_backward(dout.view(), x.view(), gamma.view(), state.eps);
        let channels: Vec<Vec<T>> = x
            .axis_iter(Axis(1))
            .map(|c| c.iter().copied().collect())
            .collect();
        assert_to_scale(
            "sbn dx",
            &g.dx,
            &dx,
            norm_dx_scale(&dout, &gamma, &channels, 1e-5),
        );
        assert_scaled("sbn dgamma", &g.dgamma, &dg);
        assert_scaled("sbn dbeta", &g.dbeta, &db);
    }
    let eps = val::<T>(1e-5);
    let (out, cache) = spatial::groupnorm_forward(x.view(), gamma.view(), beta.view(), groups, eps).unwrap();
    assert_scaled(
        "gn out",
        &out,
        &reference::spatial_groupnorm_forward(x.view(), gamma.view(), beta.view(), groups, eps),
    );
    let g = spatial::groupnorm_backward(dout.view(), &cache).unwrap();
    let (dx, dg, db) =
        reference::spatial_groupnorm_backward(dout.view(), x.view(), gamma.view(), groups, eps);
    let sets: Vec<Vec<T>> = x
        .as_slice()
        .unwrap()
        .chunks(cg * h * w)
        .map(|s| s.to_vec())
        .collect();
    assert_to_scale("gn dx", &g.dx, &dx, norm_dx_scale(&dout, &gamma, &sets, 1e-5));
    assert_scaled("gn dgamma", &g.dgamma, &dg);
    assert_scaled("gn dbeta", &g.dbeta, &db);
}

fn check_losses<T: Real>(n: usize, c: usize, scale: f64, labels: &[usize], raw: &[f64]) {
    let x = arr::<T, _>((n, c), raw, 0).mapv(|v| v * val::<T>(scale));
    let y: Vec<usize> = labels[..n].iter().map(|&l| l % c).collect();
    let (loss, dx) = loss::softmax_loss(x.view(), &y).unwrap();
    let (el, edx) = reference::softmax_loss(x.view(), &y);
    assert_scaled(
        "softmax loss",
        &Array1::from_elem(1, loss),
        &Array1::from_elem(1, el),
    );
    // dx = (p − onehot)/N: its terms have size 1/N, whatever cancels.
    assert_to_scale("softmax dx", &dx, &edx, 1.0 / n as f64);
    assert!(<T as reference::Real>::to_f64(loss).is_finite());
    let (loss, dx) = loss::svm_loss(x.view(), &y).unwrap();
    let (el, edx) = reference::svm_loss(x.view(), &y);
    assert_scaled("svm loss", &Array1::from_elem(1, loss), &Array1::from_elem(1, el));
    assert_scaled("svm dx", &dx, &edx);
}

fn check_optimizers<T: Real>(shape: &[usize], raw: &[f64]) {
    use optim::Optimizer;
    let w0 = arr::<T, _>(IxDyn(shape), raw, 0);
    let grads: Vec<_> = (0..3)
        .map(|s| arr::<T, _>(IxDyn(shape), raw, 17 * (s + 1)))
        .collect();
    let zeros = w0.mapv(|_| val::<T>(0.0));

    let (mut w, mut sgd) = (
        w0.clone(),
        optim::Sgd {
            learning_rate: val::<T>(0.05),
        },
    );
    let mut rw = w0.clone();
    for g in &grads {
        sgd.update(w.view_mut(), g.view()).unwrap();
        rw = reference::sgd(rw.view(), g.view(), val::<T>(0.05));
    }
    assert_scaled("sgd", &w, &rw);

    let (mut w, mut opt) = (w0.clone(), optim::SgdMomentum::default());
    let (mut rw, mut rv) = (w0.clone(), zeros.clone());
    for g in &grads {
        opt.update(w.view_mut(), g.view()).unwrap();
        (rw, rv) = reference::sgd_momentum(rw.view(), g.view(), rv.view(), opt.learning_rate, opt.momentum);
    }
    assert_scaled("momentum w", &w, &rw);
    assert_scaled("momentum v", opt.velocity.as_ref().unwrap(), &rv);

    let (mut w, mut opt) = (w0.clone(), optim::RmsProp::default());
    let (mut rw, mut rc) = (w0.clone(), zeros.clone());
    let cfg = reference::RmsPropConfig::default();
    for g in &grads {
        opt.update(w.view_mut(), g.view()).unwrap();
        (rw, rc) = reference::rmsprop(rw.view(), g.view(), rc.view(), &cfg);
    }
    assert_scaled("rmsprop w", &w, &rw);
    assert_scaled("rmsprop cache", opt.cache.as_ref().unwrap(), &rc);

    let (mut w, mut opt) = (w0.clone(), optim::Adam::default());
    let (mut rw, mut rm, mut rv, mut t) = (w0.clone(), zeros.clone(), zeros, 0);
    let cfg = reference::AdamConfig::default();
    for g in &grads {
        opt.update(w.view_mut(), g.view()).unwrap();
        (rw, rm, rv, t) = reference::adam(rw.view(), g.view(), rm.view(), rv.view(), t, &cfg);
    }
    assert_eq!(opt.t, t);
    assert_scaled("adam w", &w, &rw);
    assert_scaled("adam m", opt.m.as_ref().unwrap(), &rm);
    assert_scaled("adam v", opt.v.as_ref().unwrap(), &rv);
}

fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..5, 1..4)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn affine(n in 1usize..5, dims in prop::collection::vec(1usize..4, 1..4), m in 1usize..6, raw in data(101)) {
        check_affine::<f32>(n, &dims, m, &raw);
        check_affine::<f64>(n, &dims, m, &raw);
    }

    #[test]
    fn activations(shape in small_shape(), raw in data(67), scale in prop::sample::select(vec![1.0, 50.0, 1e3])) {
        check_activations::<f32>(&shape, &raw, scale);
        check_activations::<f64>(&shape, &raw, scale);
    }

    #[test]
    fn batchnorm(n in 1usize..9, d in 1usize..6, train in any::<bool>(), raw in data(89)) {
        check_batchnorm::<f32>(n, d, train, &raw);
        check_batchnorm::<f64>(n, d, train, &raw);
    }

    #[test]
    fn layernorm(n in 1usize..6, d in 1usize..9, raw in data(89)) {
        check_layernorm::<f32>(n, d, &raw);
        check_layernorm::<f64>(n, d, &raw);
    }

    #[test]
    fn dropout(shape in small_shape(), p in prop::sample::select(vec![0.1, 0.5, 0.8, 1.0]), train in any::<bool>(), seed in any::<u64>(), raw in data(53)) {
        check_dropout::<f32>(&shape, p, train, seed, &raw);
        check_dropout::<f64>(&shape, p, train, seed, &raw);
    }

    #[test]
    fn conv(c in conv_case(), raw in data(997)) {
        check_conv::<f32>(&c, &raw);
        check_conv::<f64>(&c, &raw);
    }

    #[test]
    fn conv_pointwise(c in pointwise_case(), raw in data(997)) {
        check_conv::<f32>(&c, &raw);
        check_conv::<f64>(&c, &raw);
    }

    #[test]
    fn pooling(p in pool_case(), raw in data(211), ties in any::<bool>()) {
        check_pool::<f32>(&p, &raw, ties);
        check_pool::<f64>(&p, &raw, ties);
    }

    #[test]
    fn spatial_norms(n in 1usize..4, groups in 1usize..4, cg in 1usize..4, h in 1usize..5, w in 1usize..5, train in any::<bool>(), raw in data(173)) {
        check_spatial::<f32>(n, groups, cg, h, w, train, &raw);
        check_spatial::<f64>(n, groups, cg, h, w, train, &raw);
    }

    #[test]
    fn losses(n in 1usize..7, c in 1usize..7, scale in prop::sample::select(vec![1.0, 30.0, 1e4]), labels in prop::collection::vec(0usize..100, 6), raw in data(61)) {
        check_losses::<f32>(n, c, scale, &labels, &raw);
        check_losses::<f64>(n, c, scale, &labels, &raw);
    }

    #[test]
    fn optimizers(shape in small_shape(), raw in data(71)) {
        check_optimizers::<f32>(&shape, &raw);
        check_optimizers::<f64>(&shape, &raw);
    }
}

#[test]
fn conv_larger_shapes_take_both_parallel_paths() {
    // Batch 1 (parallel GEMM) and batch 9 (one task per image), with groups,
    // dilation and asymmetric parameters; big enough for the parallel GEMM.
    let raw: Vec<f64> = (0..1009).map(|i| ((i * 37 % 211) as f64) / 105.0 - 1.0).collect();
    for n in [1, 9] {
        let c = Conv {
            n,
            groups: 2,
            cg: 8,
            fg: 16,
            input: [17, 23],
            kernel: [3, 2],
            stride: [1, 2],
            pad: [2, 1],
            dilation: [2, 1],
        };
        check_conv::<f32>(&c, &raw);
        check_conv::<f64>(&c, &raw);
    }
    let c = Conv {
        n: 2,
        groups: 1,
        cg: 64,
        fg: 32,
        input: [12, 12],
        kernel: [1, 1],
        stride: [1, 1],
        pad: [0, 0],
        dilation: [1, 1],
    };
    check_conv::<f32>(&c, &raw);
    // More than 128 filters: the packed route, one image per product
    // (batch 1) or several side by side (batch 3), the bias added on the
    // way out.
    for n in [1, 3] {
        let c = Conv {
            n,
            groups: 1,
            cg: 3,
            fg: 136,
            input: [6, 7],
            kernel: [3, 3],
            stride: [1, 1],
            pad: [1, 1],
            dilation: [1, 1],
        };
        check_conv::<f32>(&c, &raw);
        check_conv::<f64>(&c, &raw);
    }
    // Stride 2 with columns of C·KH·KW × OW = 800 × 65 per output row: the
    // column route of dx runs in bands of 1 (f64) or 2 (f32) output rows.
    let c = Conv {
        n: 2,
        groups: 1,
        cg: 32,
        fg: 4,
        input: [130, 130],
        kernel: [5, 5],
        stride: [2, 2],
        pad: [2, 2],
        dilation: [1, 1],
    };
    check_conv::<f32>(&c, &raw);
    check_conv::<f64>(&c, &raw);
}

/// Images large enough that dW is summed over several chunks of the batch
/// (about 1024 output pixels each), stride 1 (dx by the flipped filters)
/// or 2 (dx by col2im), grouped or not.
fn large_conv_case() -> impl Strategy<Value = Conv> {
    (
        2usize..6,
        1usize..3,
        [16usize..36, 16..36],
        1usize..3,
        any::<bool>(),
    )
        .prop_map(|(n, groups, input, stride, padded)| Conv {
            n,
            groups,
            cg: 2,
            fg: 3,
            input,
            kernel: [3, 3],
            stride: [stride; 2],
            pad: [usize::from(padded); 2],
            dilation: [1, 1],
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn conv_large_images(c in large_conv_case(), raw in data(997)) {
        check_conv::<f32>(&c, &raw);
        check_conv::<f64>(&c, &raw);
    }
}
