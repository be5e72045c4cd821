//! Published numbers from CS231n's assignment-2 notebooks
//! (`FullyConnectedNets.ipynb`, `ConvolutionalNetworks.ipynb`), for tests:
//! the inputs are built with numpy's `linspace` exactly as the notebooks do,
//! and the expected outputs are the notebooks' printed values (8 decimals).
//! Independent ground truth for the reference and for the fast layers alike.

use crate::{ConvParams, PoolParams};
use ndarray::{array, Array, Array1, Array2, Array4, ArrayD, Dimension, IxDyn, ShapeBuilder};

/// numpy's `np.linspace(lo, hi, num=size).reshape(shape)`.
pub fn linspace<Sh: ShapeBuilder>(lo: f64, hi: f64, shape: Sh) -> Array<f64, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    let a: Array<f64, Sh::Dim> = Array::zeros(shape);
    let values = Array1::linspace(lo, hi, a.len()).to_vec();
    Array::from_shape_vec(a.raw_dim(), values).expect("same length")
}

/// Panics unless every element of `got` rounds to the printed `expected`
/// (|got − expected| ≤ half a unit of the 8th decimal).
pub fn assert_printed<D: Dimension>(name: &str, got: &Array<f64, D>, expected: &Array<f64, D>) {
    assert_eq!(
        got.shape(),
        expected.shape(),
        "{name}: expected shape {:?}, got {:?}",
        expected.shape(),
        got.shape()
    );
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() <= 0.5e-8 + 1e-12,
            "{name}: {g} does not round to the published {e}"
        );
    }
}

/// "Convolution: Naive forward pass": x (2,3,4,4), w (3,3,4,4), b (3,),
/// stride 2, pad 1. Returns `(x, w, b, params, expected_out)`.
pub fn conv_forward() -> (Array4<f64>, Array4<f64>, Array1<f64>, ConvParams, Array4<f64>) {
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
    (
        linspace(-0.1, 0.5, (2, 3, 4, 4)),
        linspace(-0.2, 0.3, (3, 3, 4, 4)),
        linspace(-0.1, 0.2, 3),
        ConvParams::new(2, 1),
        expected,
    )
}

/// "Affine layer: forward": x (2,4,5,6), w (120,3), b (3,).
/// Returns `(x, w, b, expected_out)`.
pub fn affine_forward() -> (ArrayD<f64>, Array2<f64>, Array1<f64>, Array2<f64>) {
    (
        linspace(-0.1, 0.5, IxDyn(&[2, 4, 5, 6])),
        linspace(-0.2, 0.3, (120, 3)),
        linspace(-0.3, 0.1, 3),
        array![
            [1.49834967, 1.70660132, 1.91485297],
            [3.25553199, 3.5141327, 3.77273342]
        ],
    )
}

/// "Max-Pooling: Naive forward": x (2,3,4,4), 2×2 windows, stride 2.
/// Returns `(x, params, expected_out)`.
pub fn max_pool_forward() -> (Array4<f64>, PoolParams, Array4<f64>) {
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
    (
        linspace(-0.3, 0.4, (2, 3, 4, 4)),
        PoolParams::new(2, 2, 2),
        expected,
    )
}

fn grid(rows: [[f64; 5]; 4]) -> ArrayD<f64> {
    Array2::from(rows.to_vec()).into_dyn()
}

/// The optimizer checks' shared inputs (N, D = 4, 5):
/// `(w, dw, a, b)` = linspace(−0.4, 0.6), linspace(−0.6, 0.4),
/// linspace(0.6, 0.9), linspace(0.7, 0.5).
pub fn optim_inputs() -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    let s = IxDyn(&[4, 5]);
    (
        linspace(-0.4, 0.6, s.clone()),
        linspace(-0.6, 0.4, s.clone()),
        linspace(0.6, 0.9, s.clone()),
        linspace(0.7, 0.5, s),
    )
}

/// SGD+Momentum, lr 1e-3 (momentum 0.9), velocity = `a`:
/// `(next_w, next_velocity)`.
pub fn sgd_momentum_expected() -> (ArrayD<f64>, ArrayD<f64>) {
    (
        grid([
            [0.1406, 0.20738947, 0.27417895, 0.34096842, 0.40775789],
            [0.47454737, 0.54133684, 0.60812632, 0.67491579, 0.74170526],
            [0.80849474, 0.87528421, 0.94207368, 1.00886316, 1.07565263],
            [1.14244211, 1.20923158, 1.27602105, 1.34281053, 1.4096],
        ]),
        grid([
            [0.5406, 0.55475789, 0.56891579, 0.58307368, 0.59723158],
            [0.61138947, 0.62554737, 0.63970526, 0.65386316, 0.66802105],
            [0.68217895, 0.69633684, 0.71049474, 0.72465263, 0.73881053],
            [0.75296842, 0.76712632, 0.78128421, 0.79544211, 0.8096],
        ]),
    )
}

/// RMSProp, lr 1e-2 (decay 0.99, eps 1e-8), cache = `a`: `(next_w, next_cache)`.
pub fn rmsprop_expected() -> (ArrayD<f64>, ArrayD<f64>) {
    (
        grid([
            [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
            [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
            [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
            [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619],
        ]),
        grid([
            [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
            [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
            [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
            [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926],
        ]),
    )
}

/// Adam, lr 1e-2 (β1 0.9, β2 0.999, eps 1e-8), m = `a`, v = `b`, t = 5:
/// `(next_w, next_m, next_v)` (t becomes 6).
pub fn adam_expected() -> (ArrayD<f64>, ArrayD<f64>, ArrayD<f64>) {
    (
        grid([
            [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
            [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
            [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
            [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459],
        ]),
        grid([
            [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
            [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
            [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
            [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85],
        ]),
        grid([
            [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
            [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
            [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
            [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966],
        ]),
    )
}
