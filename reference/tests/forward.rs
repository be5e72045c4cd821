//! Forward passes of the reference on cases worked out by hand (the working
//! is in the comments), the CS231n notebooks' published numbers, and the
//! structural properties (adjointness, stability) the fast crates rely on.

use ndarray::{array, Array, Array1, Array2, Array3, ArrayD, Dimension, IxDyn};
use patchwise_reference::*;

fn assert_rel<D: Dimension>(name: &str, got: &Array<f64, D>, expected: &Array<f64, D>, tol: f64) {
    let err = rel_error(got.view(), expected.view());
    assert!(
        err <= tol,
        "{name}: rel_error {err:e} > {tol:e}\n got {got}\n expected {expected}"
    );
}

#[test]
fn conv_forward_by_hand_stride_2_pad_1() {
    // x = [[1 2 3] [4 5 6] [7 8 9]], w = [[1 0] [0 -1]], b = 1, stride 2, pad 1.
    // OH = OW = (3 + 2 − 2)/2 + 1 = 2. Window (oh, ow) starts at padded
    // (2oh − 1, 2ow − 1); only its taps w[0,0] and w[1,1] are non-zero:
    // (0,0): 1·x̃[-1,-1] − x[0,0] + 1 = 0 − 1 + 1 = 0
    // (0,1): 1·x̃[-1, 1] − x[0,2] + 1 = 0 − 3 + 1 = −2
    // (1,0): 1·x̃[ 1,-1] − x[2,0] + 1 = 0 − 7 + 1 = −6
    // (1,1): 1·x[1,1]   − x[2,2] + 1 = 5 − 9 + 1 = −3
    let x = array![[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]];
    let w = array![[[[1.0, 0.0], [0.0, -1.0]]]];
    let out = conv_forward(x.view(), w.view(), array![1.0].view(), &ConvParams::new(2, 1));
    assert_eq!(out, array![[[[0.0, -2.0], [-6.0, -3.0]]]]);
}

#[test]
fn conv_forward_groups_and_dilation_by_hand() {
    // Two channels, two groups of one: filter 0 sees channel 0, filter 1
    // channel 1. A 1×2 kernel [1 1] with width dilation 2 adds x[., j] and
    // x[., j+2]: OW = (4 − 2·1 − 1)/1 + 1 = 2.
    // channel 0 row [1 2 3 4]: [1+3, 2+4] = [4, 6]; channel 1 row [10 20 30 40]: [40, 60].
    let x = array![[[[1.0, 2.0, 3.0, 4.0]], [[10.0, 20.0, 30.0, 40.0]]]];
    let w = array![[[[1.0, 1.0]]], [[[1.0, 1.0]]]];
    let p = ConvParams {
        dilation: [1, 2],
        groups: 2,
        ..Default::default()
    };
    let out = conv_forward(x.view(), w.view(), array![0.0, 0.0].view(), &p);
    assert_eq!(out, array![[[[4.0, 6.0]], [[40.0, 60.0]]]]);
}

#[test]
fn notebook_forward_values() {
    let (x, w, b, p, expected) = notebook::conv_forward();
    notebook::assert_printed("conv", &conv_forward(x.view(), w.view(), b.view(), &p), &expected);
    let (x, w, b, expected) = notebook::affine_forward();
    notebook::assert_printed("affine", &affine_forward(x.view(), w.view(), b.view()), &expected);
    let (x, p, expected) = notebook::max_pool_forward();
    notebook::assert_printed("max pool", &max_pool_forward(x.view(), &p), &expected);
}

#[test]
fn max_pool_uses_the_stride_not_the_window() {
    // 2×2 windows with stride 1 on [[1 2 3] [4 5 6] [7 8 9]] overlap: each
    // window's maximum is its bottom-right cell. (The seed's defect 1 would
    // place window (oh, ow) at (2oh, 2ow) and read outside the image.)
    let x = array![[[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]];
    let out = max_pool_forward(x.view(), &PoolParams::new(2, 2, 1));
    assert_eq!(out, array![[[[5.0, 6.0], [8.0, 9.0]]]]);
    // Overlapping windows route their gradients to shared cells and add up:
    // 5 is the max of window (0,0) only, 9 of (1,1) only.
    let dx = max_pool_backward(
        array![[[[1.0, 2.0], [3.0, 4.0]]]].view(),
        x.view(),
        &PoolParams::new(2, 2, 1),
    );
    assert_eq!(dx, array![[[[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 3.0, 4.0]]]]);
}

#[test]
fn max_pool_ties_and_nan() {
    // A window of equal values: the gradient goes to the first (top-left).
    let x = array![[[[1.0, 1.0], [1.0, 1.0]]]];
    let p = PoolParams::new(2, 2, 2);
    let dx = max_pool_backward(array![[[[3.0]]]].view(), x.view(), &p);
    assert_eq!(dx, array![[[[3.0, 0.0], [0.0, 0.0]]]]);
    // Ties after the first element: [[0 2] [2 1]] → the 2 at (0,1).
    let x = array![[[[0.0, 2.0], [2.0, 1.0]]]];
    let dx = max_pool_backward(array![[[[1.0]]]].view(), x.view(), &p);
    assert_eq!(dx, array![[[[0.0, 1.0], [0.0, 0.0]]]]);
    // NaN propagates and takes the gradient: the first NaN, at (0,1).
    let x = array![[[[5.0, f64::NAN], [f64::NAN, 9.0]]]];
    assert!(max_pool_forward(x.view(), &p)[[0, 0, 0, 0]].is_nan());
    let dx = max_pool_backward(array![[[[1.0]]]].view(), x.view(), &p);
    assert_eq!(dx, array![[[[0.0, 1.0], [0.0, 0.0]]]]);
}

#[test]
fn pooling_with_padding_by_hand() {
    // x = [[1 2] [3 4]], 2×2 windows, stride 2, pad 1: OH = (2+2−2)/2+1 = 2;
    // each window holds exactly one real pixel (one corner).
    let x = array![[[[1.0, 2.0], [3.0, 4.0]]]];
    let p = PoolParams {
        kernel: [2, 2],
        stride: [2, 2],
        pad: [1, 1],
    };
    assert_eq!(max_pool_forward(x.view(), &p), x);
    // Counting the padding: each window sums one pixel over 4 cells.
    assert_eq!(avg_pool_forward(x.view(), &p, true), x.mapv(|v| v / 4.0));
    assert_eq!(avg_pool_forward(x.view(), &p, false), x);
    // 3×3 windows, stride 1, pad 1 on the same image: window (0,0) covers all
    // four pixels (sum 10) over 9 cells, of which 4 are real.
    let p = PoolParams {
        kernel: [3, 3],
        stride: [1, 1],
        pad: [1, 1],
    };
    assert_eq!(avg_pool_forward(x.view(), &p, true)[[0, 0, 0, 0]], 10.0 / 9.0);
    assert_eq!(avg_pool_forward(x.view(), &p, false)[[0, 0, 0, 0]], 2.5);
}

#[test]
fn losses_by_hand() {
    // Two equal scores: p = [1/2, 1/2], loss = ln 2, dx = p − onehot.
    let (loss, dx) = softmax_loss(array![[0.0, 0.0]].view(), &[0]);
    assert!((loss - 2f64.ln()).abs() < 1e-15);
    assert_eq!(dx, array![[-0.5, 0.5]]);
    // Scores ±1e4 would overflow e^x; with the max subtracted they give
    // loss 0 for the right label and 2e4 for the wrong one, gradients finite.
    let x = array![[1e4, -1e4], [1e4, -1e4]];
    let (loss, dx) = softmax_loss(x.view(), &[0, 1]);
    assert_eq!(loss, 1e4); // (0 + 2e4) / 2
    assert!(dx.iter().all(|v: &f64| v.is_finite()));
    let (loss32, _) = softmax_loss(x.mapv(|v| v as f32).view(), &[0, 1]);
    assert_eq!(loss32, 1e4f32);
    // SVM, x = [1 2 3], y = 0: margins 2−1+1 = 2 and 3−1+1 = 3, loss 5;
    // each positive margin adds 1 to its class and −1 to the label.
    let (loss, dx) = svm_loss(array![[1.0, 2.0, 3.0]].view(), &[0]);
    assert_eq!(loss, 5.0);
    assert_eq!(dx, array![[-2.0, 1.0, 1.0]]);
    // Margins ≤ 0 count nothing: x = [5 1 4.5], y = 0 → 1−5+1 < 0, 4.5−5+1 = 0.5.
    let (loss, dx) = svm_loss(array![[5.0, 1.0, 4.5]].view(), &[0]);
    assert_eq!(loss, 0.5);
    assert_eq!(dx, array![[-1.0, 0.0, 1.0]]);
}

#[test]
fn sigmoid_is_stable() {
    let x = ArrayD::from_shape_vec(IxDyn(&[4]), vec![-1000.0f32, 0.0, 1000.0, -30.0]).unwrap();
    let s = sigmoid_forward(x.view());
    assert_eq!(s[0], 0.0);
    assert_eq!(s[1], 0.5);
    assert_eq!(s[2], 1.0);
    assert!(s[3] > 0.0 && (s[3] - (-30f32).exp()).abs() < 1e-18);
    assert!(sigmoid_backward(ArrayD::ones(IxDyn(&[4])).view(), x.view())
        .iter()
        .all(|v| v.is_finite()));
}

#[test]
fn batchnorm_running_averages_by_hand() {
    // Column [1 3]: batch mean 2, biased var 1. With momentum 0.9 from
    // (mean 0, var 1): running mean 0.9·0 + 0.1·2 = 0.2, var 0.9 + 0.1 = 1.
    // x̂ = ±1/√(1 + eps).
    let params = BatchNormParams {
        mode: Mode::Train,
        eps: 1e-5,
        momentum: 0.9,
    };
    let (out, mean, var) = batchnorm_forward(
        array![[1.0], [3.0]].view(),
        array![2.0].view(),
        array![0.5].view(),
        &params,
        array![0.0].view(),
        array![1.0].view(),
    );
    assert!((mean[0] - 0.2).abs() < 1e-15 && (var[0] - 1.0).abs() < 1e-15);
    let s = 1.0 / (1.0f64 + 1e-5).sqrt();
    assert_rel("bn out", &out, &array![[0.5 - 2.0 * s], [0.5 + 2.0 * s]], 1e-15);
    // Test mode uses the running statistics and leaves them alone.
    let test = BatchNormParams {
        mode: Mode::Test,
        ..params
    };
    let (out, mean2, _) = batchnorm_forward(
        array![[2.2]].view(),
        array![1.0].view(),
        array![0.0].view(),
        &test,
        mean.view(),
        var.view(),
    );
    assert!((out[[0, 0]] - 2.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-12);
    assert_eq!(mean2, mean);
}

#[test]
fn groupnorm_normalises_each_group() {
    // N=1, C=4, 1×2 planes, 2 groups: group 0 = channels 0,1 = [0 2 4 6]
    // (mean 3, var 5), group 1 = [10 10 10 10] (var 0 → x̂ = 0 → out = β).
    let x = array![[[[0.0, 2.0]], [[4.0, 6.0]], [[10.0, 10.0]], [[10.0, 10.0]]]];
    let out = spatial_groupnorm_forward(
        x.view(),
        Array1::ones(4).view(),
        array![0.0, 0.0, 7.0, 7.0].view(),
        2,
        0.0,
    );
    let s = 5f64.sqrt();
    let expected = array![[
        [[-3.0 / s, -1.0 / s]],
        [[1.0 / s, 3.0 / s]],
        [[7.0, 7.0]],
        [[7.0, 7.0]]
    ]];
    assert_rel("gn", &out, &expected, 1e-15);
}

#[test]
fn optimizer_steps_by_hand() {
    let w = ArrayD::from_elem(IxDyn(&[1]), 1.0);
    let dw = ArrayD::from_elem(IxDyn(&[1]), 0.5);
    // SGD: 1 − 0.1·0.5 = 0.95.
    assert_eq!(sgd(w.view(), dw.view(), 0.1)[0], 0.95);
    // Momentum: v = 0.9·0.2 − 0.1·0.5 = 0.13; w = 1.13.
    let v = ArrayD::from_elem(IxDyn(&[1]), 0.2);
    let (nw, nv) = sgd_momentum(w.view(), dw.view(), v.view(), 0.1, 0.9);
    assert!((nv[0] - 0.13).abs() < 1e-15 && (nw[0] - 1.13).abs() < 1e-15);
    // RMSProp from cache 0: cache = 0.01·0.25 = 0.0025, √ = 0.05;
    // w = 1 − 0.01·0.5/(0.05 + 1e-8).
    let zero = ArrayD::zeros(IxDyn(&[1]));
    let (nw, nc) = rmsprop(w.view(), dw.view(), zero.view(), &RmsPropConfig::default());
    assert!((nc[0] - 0.0025).abs() < 1e-15);
    assert!((nw[0] - (1.0 - 0.005 / (0.05 + 1e-8))).abs() < 1e-15);
    // Adam's first step (t 0 → 1): m = 0.1·0.5 = 0.05, v = 0.001·0.25;
    // m̂ = 0.05/0.1 = 0.5, v̂ = 0.00025/0.001 = 0.25, √v̂ = 0.5:
    // w = 1 − 1e-3·0.5/(0.5 + 1e-8).
    let (nw, m, v, t) = adam(
        w.view(),
        dw.view(),
        zero.view(),
        zero.view(),
        0,
        &AdamConfig::default(),
    );
    assert_eq!(t, 1);
    assert!((m[0] - 0.05).abs() < 1e-15 && (v[0] - 0.00025).abs() < 1e-15);
    assert!((nw[0] - (1.0 - 1e-3 * 0.5 / (0.5 + 1e-8))).abs() < 1e-15);
}

#[test]
fn optimizers_cs231n_notebook() {
    let (w, dw, a, b) = notebook::optim_inputs();
    let (nw, nv) = sgd_momentum(w.view(), dw.view(), a.view(), 1e-3, 0.9);
    let (ew, ev) = notebook::sgd_momentum_expected();
    notebook::assert_printed("momentum w", &nw, &ew);
    notebook::assert_printed("momentum v", &nv, &ev);
    let cfg = RmsPropConfig {
        learning_rate: 1e-2,
        ..Default::default()
    };
    let (nw, nc) = rmsprop(w.view(), dw.view(), a.view(), &cfg);
    let (ew, ec) = notebook::rmsprop_expected();
    notebook::assert_printed("rmsprop w", &nw, &ew);
    notebook::assert_printed("rmsprop cache", &nc, &ec);
    let cfg = AdamConfig {
        learning_rate: 1e-2,
        ..Default::default()
    };
    let (nw, nm, nv, t) = adam(w.view(), dw.view(), a.view(), b.view(), 5, &cfg);
    let (ew, em, ev) = notebook::adam_expected();
    assert_eq!(t, 6);
    notebook::assert_printed("adam w", &nw, &ew);
    notebook::assert_printed("adam m", &nm, &em);
    notebook::assert_printed("adam v", &nv, &ev);
}

#[test]
fn im2col_col2im_are_adjoint() {
    // ⟨im2col(x), y⟩ = ⟨x, col2im(y)⟩ for every geometry, including padding,
    // dilation and stride larger than the kernel.
    let cases = [
        ([2, 5, 6], [3, 2], ConvParams::new(1, 1)),
        (
            [1, 7, 4],
            [2, 3],
            ConvParams {
                stride: [3, 1],
                pad: [2, 1],
                dilation: [1, 2],
                groups: 1,
            },
        ),
        (
            [3, 4, 4],
            [1, 1],
            ConvParams {
                stride: [2, 3],
                ..Default::default()
            },
        ),
    ];
    for (seed, (shape, kernel, p)) in cases.into_iter().enumerate() {
        let mut i = 0;
        let mut next = || {
            i += 1;
            dropout_uniform(seed as u64, i) - 0.5
        };
        let x = Array3::from_shape_simple_fn((shape[0], shape[1], shape[2]), &mut next);
        let cols = im2col(x.view(), kernel, &p);
        let y = Array2::from_shape_simple_fn(cols.raw_dim(), &mut next);
        let lhs: f64 = (&cols * &y).sum();
        let rhs: f64 = (&x * &col2im(y.view(), shape, kernel, &p)).sum();
        assert!((lhs - rhs).abs() <= 1e-12 * (1.0 + lhs.abs()), "{lhs} != {rhs}");
    }
    // And by hand: a 1×2×2 image, 1×1 kernel, stride 1: cols is the image
    // as one row.
    let x = array![[[1.0, 2.0], [3.0, 4.0]]];
    assert_eq!(
        im2col(x.view(), [1, 1], &ConvParams::default()),
        array![[1.0, 2.0, 3.0, 4.0]]
    );
}

#[test]
fn dropout_mask_properties() {
    let x = ArrayD::from_elem(IxDyn(&[100, 100]), 1.0f64);
    // p = 1 keeps everything; test mode is the identity.
    assert_eq!(dropout_forward(x.view(), 1.0, true, 3), x);
    assert_eq!(dropout_forward(x.view(), 0.3, false, 3), x);
    // Kept units are scaled by 1/p, and about p of them are kept.
    let out = dropout_forward(x.view(), 0.25, true, 7);
    let kept = out.iter().filter(|&&v| v != 0.0).count();
    assert!(out.iter().all(|&v| v == 0.0 || v == 4.0));
    assert!((2300..2700).contains(&kept), "kept {kept} of 10000 at p = 0.25");
    // The mask is the documented pure function of (seed, index).
    for (i, &v) in out.iter().enumerate() {
        assert_eq!(v != 0.0, dropout_keep(7, i as u64, 0.25));
    }
    // A different seed, a different mask.
    assert_ne!(dropout_forward(x.view(), 0.25, true, 8), out);
    // SplitMix64's first output from seed 0 is 0xE220A8397B1DCDAF.
    assert_eq!(
        dropout_uniform(0, 0),
        (0xE220_A839_7B1D_CDAFu64 >> 11) as f64 / (1u64 << 53) as f64
    );
}

#[test]
fn gemm_by_hand() {
    // [[1 2] [3 4]] · [[5 6] [7 8]] = [[19 22] [43 50]]; 2·AB − C.
    let a = array![[1.0, 2.0], [3.0, 4.0]];
    let b = array![[5.0, 6.0], [7.0, 8.0]];
    let c = array![[1.0, 1.0], [1.0, 1.0]];
    assert_eq!(
        gemm(2.0, a.view(), b.view(), -1.0, c.view()),
        array![[37.0, 43.0], [85.0, 99.0]]
    );
    // beta = 0 does not read C: a NaN there does not leak.
    let c = array![[f64::NAN, 0.0], [0.0, 0.0]];
    assert_eq!(
        gemm(1.0, a.view(), b.view(), 0.0, c.view()),
        array![[19.0, 22.0], [43.0, 50.0]]
    );
}

#[test]
#[should_panic(expected = "stride (height): expected > 0, got 0")]
fn zero_stride_panics_with_a_clear_message() {
    let x = Array::zeros((1, 1, 3, 3));
    let w = Array::zeros((1, 1, 2, 2));
    let p = ConvParams {
        stride: [0, 1],
        ..Default::default()
    };
    conv_forward::<f64>(x.view(), w.view(), Array1::zeros(1).view(), &p);
}

#[test]
#[should_panic(expected = "y[1]: expected a class < 3, got 3")]
fn label_out_of_range_panics_with_a_clear_message() {
    softmax_loss(Array2::<f32>::zeros((2, 3)).view(), &[0, 3]);
}

#[test]
#[should_panic(expected = "kernel (width): expected a dilated extent <= padded input 4, got 5")]
fn oversized_window_panics_with_a_clear_message() {
    max_pool_forward(
        Array::<f64, _>::zeros((1, 1, 4, 4)).view(),
        &PoolParams::new(2, 5, 1),
    );
}
