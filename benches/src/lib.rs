//! # patchwise-benches
//!
//! The benchmark suite shared by the criterion benches (`cargo bench`) and
//! the `dashboard` binary: for each op and shape, a `naive` runner (the
//! `patchwise-reference` loops), a `fast` runner (the layers and kernels)
//! and, for GEMM, a `matrixmultiply` runner. All in f32.
//!
//! Naive runs that would take many seconds are made on a slice of the work
//! (fewer images, fewer GEMM rows) and scaled up; each runner says so.

#![warn(missing_docs)]

pub mod machine;
pub mod report;

use ndarray::{s, Array1, Array2, Array3, Array4};
use patchwise_layers::{conv, pool};
use patchwise_reference as reference;

/// Work per naive run above which the naive runner is timed on a slice.
const NAIVE_FLOP_BUDGET: f64 = 3e8;

/// A convolution shape of the suite.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    /// Short name, e.g. `resnet3x3_56`.
    pub name: &'static str,
    /// Batch, channels, height, width.
    pub nchw: [usize; 4],
    /// Filters.
    pub f: usize,
    /// Kernel size (square).
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

impl ConvShape {
    fn label(&self) -> String {
        let [n, c, h, w] = self.nchw;
        format!(
            "{} ({n},{c},{h},{w}) F{} {}x{} s{} p{}",
            self.name, self.f, self.k, self.k, self.stride, self.pad
        )
    }
    fn out_hw(&self) -> [usize; 2] {
        let [_, _, h, w] = self.nchw;
        [
            (h + 2 * self.pad - self.k) / self.stride + 1,
            (w + 2 * self.pad - self.k) / self.stride + 1,
        ]
    }
    /// Multiply-adds × 2 of the forward pass.
    pub fn forward_flops(&self) -> f64 {
        let [n, c, _, _] = self.nchw;
        let [oh, ow] = self.out_hw();
        2.0 * (n * self.f * oh * ow * c * self.k * self.k) as f64
    }
}

/// A pooling shape of the suite.
#[derive(Clone, Copy, Debug)]
pub struct PoolShape {
    /// Short name.
    pub name: &'static str,
    /// Batch, channels, height, width.
    pub nchw: [usize; 4],
    /// Window (square).
    pub k: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

impl PoolShape {
    fn label(&self) -> String {
        let [n, c, h, w] = self.nchw;
        format!(
            "{} ({n},{c},{h},{w}) {}x{} s{} p{}",
            self.name, self.k, self.k, self.stride, self.pad
        )
    }
    fn params(&self) -> pool::PoolParams {
        pool::PoolParams::new(self.k, self.k, self.stride).with_pad(self.pad, self.pad)
    }
    fn reference_params(&self) -> reference::PoolParams {
        reference::PoolParams {
            kernel: [self.k; 2],
            stride: [self.stride; 2],
            pad: [self.pad; 2],
        }
    }
}

/// A GEMM shape: C (M×N) = A (M×K) · B (K×N).
#[derive(Clone, Copy, Debug)]
pub struct GemmShape {
    /// Short name.
    pub name: &'static str,
    /// Rows of A and C.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of B and C.
    pub n: usize,
}

/// Max or average pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    /// Max pooling.
    Max,
    /// Average pooling (padding counted).
    Avg,
}

/// One benchmark of the suite, before its data is built.
#[derive(Clone, Copy, Debug)]
pub enum Spec {
    /// `gemm`.
    Gemm(GemmShape),
    /// `im2col` of a convolution's input (batched).
    Im2col(ConvShape),
    /// `conv2d_forward`.
    ConvForward(ConvShape),
    /// `conv2d_backward` (dx, dw and db).
    ConvBackward(ConvShape),
    /// `max_pool2d_*` / `avg_pool2d_*`; `backward` selects the pass.
    Pool {
        /// Max or average.
        kind: PoolKind,
        /// Backward (true) or forward (false).
        backward: bool,
        /// The shape.
        shape: PoolShape,
    },
}

/// A benchmark with its data built: what to run and how much work it is.
pub struct Bench {
    /// Op group, e.g. `conv2d_forward`.
    pub op: &'static str,
    /// Human-readable shape.
    pub shape: String,
    /// Floating-point operations of one full run (compute-bound ops).
    pub flops: Option<f64>,
    /// Bytes read + written by one full run (memory-bound ops).
    pub bytes: Option<f64>,
    /// The implementations.
    pub runners: Vec<Runner>,
}

/// One implementation of a benchmark.
pub struct Runner {
    /// `naive`, `fast` or `matrixmultiply`.
    pub imp: &'static str,
    /// Multiply a run's time by this to get the full workload's (> 1 when
    /// the runner does only a slice of it).
    pub scale: f64,
    /// What slice the runner does, when `scale` > 1.
    pub note: Option<String>,
    /// One run.
    pub run: Box<dyn FnMut() + Send>,
}

impl Runner {
    fn new(imp: &'static str, run: impl FnMut() + Send + 'static) -> Self {
        Self {
            imp,
            scale: 1.0,
            note: None,
            run: Box::new(run),
        }
    }
    fn sliced(
        imp: &'static str,
        part: usize,
        whole: usize,
        unit: &str,
        run: impl FnMut() + Send + 'static,
    ) -> Self {
        let note = (part < whole).then(|| format!("{imp} timed on {part} of {whole} {unit}, scaled"));
        Self {
            imp,
            scale: whole as f64 / part as f64,
            note,
            run: Box::new(run),
        }
    }
}

/// Deterministic data in [-1, 1).
fn fill(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u64)
        .map(|i| (reference::dropout_uniform(seed, i) * 2.0 - 1.0) as f32)
        .collect()
}

fn array4(shape: [usize; 4], seed: u64) -> Array4<f32> {
    Array4::from_shape_vec(shape, fill(shape.iter().product(), seed)).expect("sized")
}

/// How many of `n` images a naive run of `flops_per_image` may take.
fn naive_images(n: usize, flops_per_image: f64) -> usize {
    ((NAIVE_FLOP_BUDGET / flops_per_image).floor() as usize).clamp(1, n)
}

impl Spec {
    /// The op group name.
    pub fn op(&self) -> &'static str {
        match self {
            Spec::Gemm(_) => "gemm",
            Spec::Im2col(_) => "im2col",
            Spec::ConvForward(_) => "conv2d_forward",
            Spec::ConvBackward(_) => "conv2d_backward",
            Spec::Pool {
                kind: PoolKind::Max,
                backward: false,
                ..
            } => "max_pool2d_forward",
            Spec::Pool {
                kind: PoolKind::Max,
                backward: true,
                ..
            } => "max_pool2d_backward",
            Spec::Pool {
                kind: PoolKind::Avg,
                backward: false,
                ..
            } => "avg_pool2d_forward",
            Spec::Pool {
                kind: PoolKind::Avg,
                backward: true,
                ..
            } => "avg_pool2d_backward",
        }
    }

    /// The shape label.
    pub fn shape(&self) -> String {
        match self {
            Spec::Gemm(g) => format!("{} M{} K{} N{}", g.name, g.m, g.k, g.n),
            Spec::Im2col(c) | Spec::ConvForward(c) | Spec::ConvBackward(c) => c.label(),
            Spec::Pool { shape, .. } => shape.label(),
        }
    }

    /// Allocates the data and the runners.
    pub fn build(&self) -> Bench {
        let (op, shape) = (self.op(), self.shape());
        match *self {
            Spec::Gemm(g) => gemm_bench(op, shape, g),
            Spec::Im2col(c) => im2col_bench(op, shape, c),
            Spec::ConvForward(c) => conv_bench(op, shape, c, false),
            Spec::ConvBackward(c) => conv_bench(op, shape, c, true),
            Spec::Pool {
                kind,
                backward,
                shape: p,
            } => pool_bench(op, shape, p, kind, backward),
        }
    }
}

fn gemm_bench(op: &'static str, shape: String, g: GemmShape) -> Bench {
    let a = Array2::from_shape_vec((g.m, g.k), fill(g.m * g.k, 1)).expect("sized");
    let b = Array2::from_shape_vec((g.k, g.n), fill(g.k * g.n, 2)).expect("sized");
    let flops = 2.0 * (g.m * g.k * g.n) as f64;
    let rows = ((NAIVE_FLOP_BUDGET / (2.0 * (g.k * g.n) as f64)).floor() as usize).clamp(1, g.m);
    let (na, nb) = (a.slice(s![..rows, ..]).to_owned(), b.clone());
    let nc = Array2::<f32>::zeros((rows, g.n));
    let naive = Runner::sliced("naive", rows, g.m, "rows", move || {
        std::hint::black_box(reference::gemm(1.0, na.view(), nb.view(), 0.0, nc.view()));
    });
    let (fa, fb, mut fc) = (a.clone(), b.clone(), Array2::<f32>::zeros((g.m, g.n)));
    let fast = Runner::new("fast", move || {
        patchwise_kernels::gemm(1.0, fa.view(), fb.view(), 0.0, fc.view_mut()).expect("valid shapes");
    });
    let mut mc = Array2::<f32>::zeros((g.m, g.n));
    // ndarray's matrix product on f32 is matrixmultiply's sgemm (its default,
    // single-threaded build): the baseline, called without our threading.
    let mm = Runner::new("matrixmultiply", move || {
        ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut mc);
    });
    Bench {
        op,
        shape,
        flops: Some(flops),
        bytes: None,
        runners: vec![naive, fast, mm],
    }
}

fn im2col_bench(op: &'static str, shape: String, c: ConvShape) -> Bench {
    let [n, ch, h, w] = c.nchw;
    let x = array4(c.nchw, 3);
    let geom =
        patchwise_kernels::Window2d::new([h, w], [c.k; 2], [c.stride; 2], [c.pad; 2], [1, 1]).expect("valid");
    let cols_len = n * ch * c.k * c.k * geom.output_len();
    let bytes = 4.0 * (x.len() + cols_len) as f64;
    let per_image_work = (ch * c.k * c.k * geom.output_len()) as f64 * 20.0;
    let images = naive_images(n, per_image_work);
    let nx = x.slice(s![..images, .., .., ..]).to_owned();
    let p = reference::ConvParams::new(c.stride, c.pad);
    let naive = Runner::sliced("naive", images, n, "images", move || {
        for i in 0..nx.dim().0 {
            let img: Array3<f32> = nx.slice(s![i, .., .., ..]).to_owned();
            std::hint::black_box(reference::im2col(img.view(), [c.k; 2], &p));
        }
    });
    let mut cols = vec![0.0f32; cols_len];
    let fast = Runner::new("fast", move || {
        patchwise_kernels::im2col_batch(x.as_slice().expect("contiguous"), n, ch, &geom, &mut cols)
            .expect("valid");
    });
    Bench {
        op,
        shape,
        flops: None,
        bytes: Some(bytes),
        runners: vec![naive, fast],
    }
}

fn conv_bench(op: &'static str, shape: String, c: ConvShape, backward: bool) -> Bench {
    let [n, ch, _, _] = c.nchw;
    let x = array4(c.nchw, 4);
    let w = array4([c.f, ch, c.k, c.k], 5);
    let b = Array1::from_vec(fill(c.f, 6));
    let [oh, ow] = c.out_hw();
    let dout = array4([n, c.f, oh, ow], 7);
    let passes = if backward { 2.0 } else { 1.0 };
    let flops = passes * c.forward_flops();
    let images = naive_images(n, flops / n as f64 * 3.0);
    let rp = reference::ConvParams::new(c.stride, c.pad);
    let (nx, nw, nb) = (x.slice(s![..images, .., .., ..]).to_owned(), w.clone(), b.clone());
    let nd = dout.slice(s![..images, .., .., ..]).to_owned();
    let naive = Runner::sliced("naive", images, n, "images", move || {
        if backward {
            std::hint::black_box(reference::conv_backward(nd.view(), nx.view(), nw.view(), &rp));
        } else {
            std::hint::black_box(reference::conv_forward(nx.view(), nw.view(), nb.view(), &rp));
        }
    });
    let params = conv::ConvParams::new(c.stride, c.pad);
    let fast = if backward {
        // The cache borrows x and w for as long as the runner lives: leak
        // them (a few MB per benchmark, once per process).
        let (x, w) = (&*Box::leak(Box::new(x)), &*Box::leak(Box::new(w)));
        let (_, cache) = conv::forward(x.view(), w.view(), b.view(), &params).expect("valid");
        Runner::new("fast", move || {
            std::hint::black_box(conv::backward(dout.view(), &cache).expect("valid"));
        })
    } else {
        Runner::new("fast", move || {
            std::hint::black_box(conv::forward(x.view(), w.view(), b.view(), &params).expect("valid"));
        })
    };
    Bench {
        op,
        shape,
        flops: Some(flops),
        bytes: None,
        runners: vec![naive, fast],
    }
}

fn pool_bench(op: &'static str, shape: String, p: PoolShape, kind: PoolKind, backward: bool) -> Bench {
    let [n, c, h, w] = p.nchw;
    let x = array4(p.nchw, 8);
    let params = p.params();
    let (out, max_cache) = pool::max_forward(x.view(), &params).expect("valid");
    let (_, avg_cache) = pool::avg_forward(x.view(), &params).expect("valid");
    let out_len = out.len();
    let dout = array4([n, c, out.dim().2, out.dim().3], 9);
    // Bytes: forward reads x, writes out (+ the arg-max for max: one byte
    // per output for these windows); backward reads dout (+ arg-max) and
    // writes dx.
    let argmax_bytes = if kind == PoolKind::Max {
        out_len as f64
    } else {
        0.0
    };
    let bytes = 4.0 * (x.len() + out_len) as f64 + argmax_bytes;
    let images = naive_images(n, (c * h * w * p.k * p.k) as f64 * 40.0);
    let rp = p.reference_params();
    let (nx, nd) = (
        x.slice(s![..images, .., .., ..]).to_owned(),
        dout.slice(s![..images, .., .., ..]).to_owned(),
    );
    let naive = Runner::sliced("naive", images, n, "images", move || match (kind, backward) {
        (PoolKind::Max, false) => drop(std::hint::black_box(reference::max_pool_forward(nx.view(), &rp))),
        (PoolKind::Max, true) => drop(std::hint::black_box(reference::max_pool_backward(
            nd.view(),
            nx.view(),
            &rp,
        ))),
        (PoolKind::Avg, false) => drop(std::hint::black_box(reference::avg_pool_forward(
            nx.view(),
            &rp,
            true,
        ))),
        (PoolKind::Avg, true) => {
            let shape = [nd.dim().0, c, h, w];
            drop(std::hint::black_box(reference::avg_pool_backward(
                nd.view(),
                shape,
                &rp,
                true,
            )))
        }
    });
    let fast = Runner::new("fast", move || match (kind, backward) {
        (PoolKind::Max, false) => drop(std::hint::black_box(
            pool::max_forward(x.view(), &params).expect("valid"),
        )),
        (PoolKind::Max, true) => drop(std::hint::black_box(
            pool::max_backward(dout.view(), &max_cache).expect("valid"),
        )),
        (PoolKind::Avg, false) => drop(std::hint::black_box(
            pool::avg_forward(x.view(), &params).expect("valid"),
        )),
        (PoolKind::Avg, true) => drop(std::hint::black_box(
            pool::avg_backward(dout.view(), &avg_cache).expect("valid"),
        )),
    });
    Bench {
        op,
        shape,
        flops: None,
        bytes: Some(bytes),
        runners: vec![naive, fast],
    }
}

/// The convolution shapes: CS231n's, a small net, ResNet layers.
pub fn conv_shapes(quick: bool) -> Vec<ConvShape> {
    let shape = |name, nchw, f, k, stride, pad| ConvShape {
        name,
        nchw,
        f,
        k,
        stride,
        pad,
    };
    if quick {
        return vec![
            shape("cs231n_small", [4, 3, 31, 31], 25, 3, 2, 1),
            shape("tiny1x1", [2, 16, 14, 14], 8, 1, 1, 0),
        ];
    }
    vec![
        shape("cs231n", [100, 3, 31, 31], 25, 3, 2, 1),
        shape("net", [50, 32, 32, 32], 32, 3, 1, 1),
        shape("resnet_conv1", [8, 3, 224, 224], 64, 7, 2, 3),
        shape("resnet3x3_56", [8, 64, 56, 56], 64, 3, 1, 1),
        shape("resnet3x3_28", [8, 128, 28, 28], 128, 3, 1, 1),
        shape("resnet3x3_14", [8, 256, 14, 14], 256, 3, 1, 1),
        shape("resnet3x3_7", [8, 512, 7, 7], 512, 3, 1, 1),
        shape("resnet1x1_56", [8, 256, 56, 56], 64, 1, 1, 0),
        shape("batch1_3x3_56", [1, 64, 56, 56], 64, 3, 1, 1),
    ]
}

/// The pooling shapes.
pub fn pool_shapes(quick: bool) -> Vec<PoolShape> {
    let shape = |name, nchw, k, stride, pad| PoolShape {
        name,
        nchw,
        k,
        stride,
        pad,
    };
    if quick {
        return vec![shape("cs231n_small", [4, 3, 32, 32], 2, 2, 0)];
    }
    vec![
        shape("cs231n", [100, 3, 32, 32], 2, 2, 0),
        shape("resnet_2x2", [8, 64, 112, 112], 2, 2, 0),
        shape("resnet_3x3", [8, 64, 112, 112], 3, 2, 1),
    ]
}

/// The GEMM shapes: squares and the im2col products of ResNet layers.
pub fn gemm_shapes(quick: bool) -> Vec<GemmShape> {
    let shape = |name, m, k, n| GemmShape { name, m, k, n };
    if quick {
        return vec![shape("square", 128, 128, 128)];
    }
    vec![
        shape("square", 256, 256, 256),
        shape("square", 512, 512, 512),
        shape("square", 1024, 1024, 1024),
        shape("square", 2048, 2048, 2048),
        shape("im2col_56", 64, 576, 3136),
        shape("im2col_14", 256, 2304, 196),
        shape("im2col_conv1", 64, 147, 12544),
    ]
}

/// The whole suite, in dashboard order.
pub fn suite(quick: bool) -> Vec<Spec> {
    let mut specs: Vec<Spec> = gemm_shapes(quick).into_iter().map(Spec::Gemm).collect();
    let convs = conv_shapes(quick);
    specs.extend(convs.iter().map(|&c| Spec::Im2col(c)));
    specs.extend(convs.iter().map(|&c| Spec::ConvForward(c)));
    specs.extend(convs.iter().map(|&c| Spec::ConvBackward(c)));
    for kind in [PoolKind::Max, PoolKind::Avg] {
        for backward in [false, true] {
            specs.extend(pool_shapes(quick).into_iter().map(|shape| Spec::Pool {
                kind,
                backward,
                shape,
            }));
        }
    }
    specs
}
