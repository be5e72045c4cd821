//! Forward passes of the reference on cases worked out by hand (the working
//! is in the comments), the CS231n notebooks' published numbers, and the
//! structural properties (adjointness, stability) the fast crates rely on.

use ndarray::{array, Array, Array1, Array2, Array3, ArrayD, Dimension, IxDyn, ShapeBuilder};
use patchwise_reference::*;

fn linspace<Sh: ShapeBuilder>(lo: f64, hi: f64, shape: Sh) -> Array<f64, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    let a: Array<f64, Sh::Dim> = Array::zeros(shape);
    let values = Array1::linspace(lo, hi, a.len()).to_vec();
    Array::from_shape_vec(a.raw_dim(), values).expect("same length")
}

/// The notebooks print 8 decimals: agree with every printed digit.
fn assert_printed<D: Dimension>(name: &str, got: &Array<f64, D>, expected: &Array<f64, D>) {
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= 0.5e-8 + 1e-12,
            "{name}: {g} does not round to {e}"
        );
    }
    assert_eq!(got.shape(), expected.shape(), "{name}: shape");
}

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
fn conv_forward_cs231n_notebook() {
    // ConvolutionalNetworks.ipynb, "Convolution: Naive forward pass".
    let x = linspace(-0.1, 0.5, (2, 3, 4, 4));
    let w = linspace(-0.2, 0.3, (3, 3, 4, 4));
    let b = linspace(-0.1, 0.2, 3);
    let out = conv_forward(x.view(), w.view(), b.view(), &ConvParams::new(2, 1));
    let expected = array![
        [
            [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
            [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
            [[0.50813986, 0.54309974], [0.64082444, 0.67101435]]
        ],
        [
            [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
            [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
            [[2.36270298, 2.36904306], [2.38090835, 2.38247847]]
        ]
    ];
    assert_printed("conv", &out, &expected);
}

#[test]
fn affine_forward_cs231n_notebook() {
    // FullyConnectedNets.ipynb, "Affine layer: forward".
    let x = linspace(-0.1, 0.5, IxDyn(&[2, 4, 5, 6]));
    let w = linspace(-0.2, 0.3, (120, 3));
    let b = linspace(-0.3, 0.1, 3);
    let out = affine_forward(x.view(), w.view(), b.view());
    let expected = array![
        [1.49834967, 1.70660132, 1.91485297],
        [3.25553199, 3.5141327, 3.77273342]
    ];
    assert_printed("affine", &out, &expected);
}

#[test]
fn max_pool_forward_cs231n_notebook() {
    // ConvolutionalNetworks.ipynb, "Max-Pooling: Naive forward".
    let x = linspace(-0.3, 0.4, (2, 3, 4, 4));
    let out = max_pool_forward(x.view(), &PoolParams::new(2, 2, 2));
    let expected = array![
        [
            [[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
            [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
            [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]]
        ],
        [
            [[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
            [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
            [[0.32631579, 0.34105263], [0.38526316, 0.4]]
        ]
    ];
    assert_printed("max pool", &out, &expected);
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

/// optim.ipynb's shared inputs: N, D = 4, 5.
fn optim_inputs() -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let s = IxDyn(&[4, 5]);
    (
        linspace(-0.4, 0.6, s.clone()),
        linspace(-0.6, 0.4, s.clone()),
        linspace(0.6, 0.9, s.clone()),
        linspace(0.7, 0.5, s),
    )
}

fn grid(rows: [[f64; 5]; 4]) -> ArrayD<f64> {
    Array2::from(rows.to_vec()).into_dyn()
}

#[test]
fn optimizers_cs231n_notebook() {
    let (w, dw, a, v) = optim_inputs();
    // SGD+Momentum, lr 1e-3, velocity = linspace(0.6, 0.9).
    let (nw, nv) = sgd_momentum(w.view(), dw.view(), a.view(), 1e-3, 0.9);
    let ew = grid([
        [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
        [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
        [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
        [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096],
    ]);
    let ev = grid([
        [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
        [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
        [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
        [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096],
    ]);
    assert_printed("momentum w", &nw, &ew);
    assert_printed("momentum v", &nv, &ev);
    // RMSProp, lr 1e-2, cache = linspace(0.6, 0.9).
    let cfg = RmsPropConfig {
        learning_rate: 1e-2,
        ..Default::default()
    };
    let (nw, nc) = rmsprop(w.view(), dw.view(), a.view(), &cfg);
    let ew = grid([
        [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
        [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
        [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
        [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619],
    ]);
    let ec = grid([
        [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
        [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
        [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
        [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926],
    ]);
    assert_printed("rmsprop w", &nw, &ew);
    assert_printed("rmsprop cache", &nc, &ec);
    // Adam, lr 1e-2, m = linspace(0.6, 0.9), v = linspace(0.7, 0.5), t = 5.
    let cfg = AdamConfig {
        learning_rate: 1e-2,
        ..Default::default()
    };
    let (nw, nm, nv, t) = adam(w.view(), dw.view(), a.view(), v.view(), 5, &cfg);
    assert_eq!(t, 6);
    let ew = grid([
        [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
        [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
        [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
        [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459],
    ]);
    let ev = grid([
        [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
        [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
        [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
        [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966],
    ]);
    let em = grid([
        [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
        [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
        [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
        [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85],
    ]);
    assert_printed("adam w", &nw, &ew);
    assert_printed("adam v", &nv, &ev);
    assert_printed("adam m", &nm, &em);
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
