//! The kernels against `patchwise-reference`: proptests over random shapes
//! and parameters (H and W varied independently, padding ≥ kernel, stride >
//! kernel, dilation, 1×1 images), both element types; plus determinism across
//! thread counts and the documented errors.

use ndarray::{Array2, Array3, Array4, ArrayView2, ShapeBuilder};
use patchwise_kernels::*;
use patchwise_reference as reference;
use proptest::prelude::*;
use std::ops::Range;

/// `PROPTEST_CASES` when set, else `default`.
fn config(default: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var("PROPTEST_CASES").is_err() {
        c.cases = default;
    }
    c
}

/// The element types under test.
trait Real: Element + reference::Real {}
impl<T: Element + reference::Real> Real for T {}

use reference::tolerance::assert_within_sum_bound as assert_within;

fn values<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| <T as Element>::from_f64(x)).collect()
}

fn data(len: usize) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-1.0f64..1.0, len)
}

#[derive(Clone, Debug)]
struct Geometry {
    channels: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}

fn geometry() -> impl Strategy<Value = Geometry> {
    geometries(1..4, 1..9, 1..5, 1..5, 0..5, 1..4)
}

/// Geometries with each size drawn from its range (both axes alike).
fn geometries(
    channels: Range<usize>,
    input: Range<usize>,
    kernel: Range<usize>,
    stride: Range<usize>,
    pad: Range<usize>,
    dilation: Range<usize>,
) -> impl Strategy<Value = Geometry> {
    let both = |r: Range<usize>| [r.clone(), r];
    (
        channels,
        both(input),
        both(kernel),
        both(stride),
        both(pad),
        both(dilation),
    )
        .prop_map(|(channels, input, kernel, stride, pad, dilation)| Geometry {
            channels,
            input,
            kernel,
            stride,
            pad,
            dilation,
        })
}

impl Geometry {
    fn window(&self) -> Result<Window2d> {
        Window2d::new(self.input, self.kernel, self.stride, self.pad, self.dilation)
    }
    fn params(&self) -> reference::ConvParams {
        reference::ConvParams {
            stride: self.stride,
            pad: self.pad,
            dilation: self.dilation,
            groups: 1,
        }
    }
    /// Padding at most max(input, kernel) per axis.
    fn pad_ok(&self) -> bool {
        (0..2).all(|a| self.pad[a] <= self.input[a].max(self.kernel[a]))
    }
    fn fits(&self) -> bool {
        (0..2).all(|a| self.dilation[a] * (self.kernel[a] - 1) < self.input[a] + 2 * self.pad[a])
    }
}

fn check_im2col<T: Real>(g: &Geometry, raw: &[f64]) {
    let Geometry {
        channels: c,
        input: [h, w],
        ..
    } = *g;
    let geom = match g.window() {
        Ok(geom) => {
            assert!(g.pad_ok() && g.fits(), "invalid geometry accepted: {g:?}");
            geom
        }
        Err(e) => {
            match e {
                Error::Parameter {
                    arg: "pad_h" | "pad_w",
                    ..
                } => assert!(!g.pad_ok(), "{e}"),
                Error::WindowTooLarge { .. } => assert!(!g.fits(), "{e}"),
                e => panic!("unexpected error {e} for {g:?}"),
            }
            return;
        }
    };
    let x = Array3::from_shape_vec((c, h, w), values::<T>(&raw[..c * h * w])).unwrap();
    let expected = reference::im2col(x.view(), g.kernel, &g.params());
    let mut cols = vec![<T as Element>::ZERO; expected.len()];
    im2col(x.as_slice().unwrap(), c, &geom, &mut cols).unwrap();
    assert_eq!(cols, expected.as_slice().unwrap(), "im2col");

    let y: Vec<T> = (0..cols.len())
        .map(|i| <T as Element>::from_f64(raw[i % raw.len()] - 0.25))
        .collect();
    let y = Array2::from_shape_vec(expected.raw_dim(), y).unwrap();
    let expected = reference::col2im(y.view(), [c, h, w], g.kernel, &g.params());
    let bound = reference::col2im(
        y.mapv(|v| reference::Real::abs(v)).view(),
        [c, h, w],
        g.kernel,
        &g.params(),
    );
    let mut image = vec![<T as Element>::from_f64(7.0); c * h * w]; // overwritten, not accumulated into
    col2im(y.as_slice().unwrap(), c, &geom, &mut image).unwrap();
    assert_within(
        "col2im",
        &image,
        expected.as_slice().unwrap(),
        bound.as_slice().unwrap(),
        g.kernel[0] * g.kernel[1],
    );

    // The same scatter band by band of output rows (bands of 1..=3 rows),
    // on a zeroed image.
    let [oh, ow] = geom.output();
    let band = 1 + (raw[0].to_bits() % 3) as usize;
    let mut banded = vec![<T as Element>::ZERO; c * h * w];
    for r0 in (0..oh).step_by(band) {
        let rows = r0..(r0 + band).min(oh);
        let part = y.slice(ndarray::s![.., r0 * ow..rows.end * ow]).to_owned();
        col2im_rows(part.as_slice().unwrap(), c, &geom, rows, &mut banded).unwrap();
    }
    assert_within(
        "col2im by bands",
        &banded,
        expected.as_slice().unwrap(),
        bound.as_slice().unwrap(),
        g.kernel[0] * g.kernel[1],
    );

    // The same bands through the phase lines: the same adds in the same
    // order, so the same bits; twice, the second after a reset.
    let mut phases = Col2imPhases::new(c, &geom).unwrap();
    for round in 0..2 {
        if round == 1 {
            phases.reset();
        }
        for r0 in (0..oh).step_by(band) {
            let rows = r0..(r0 + band).min(oh);
            let part = y.slice(ndarray::s![.., r0 * ow..rows.end * ow]).to_owned();
            phases.add_rows(part.as_slice().unwrap(), rows).unwrap();
        }
        let mut phased = vec![<T as Element>::from_f64(f64::NAN); c * h * w]; // overwritten
        phases.finish(&mut phased).unwrap();
        assert_eq!(bits_of(&phased), bits_of(&banded), "col2im by phases");
    }
}

#[test]
fn col2im_rows_errors() {
    let g = Window2d::new([4, 4], [3, 3], [1, 1], [1, 1], [1, 1]).unwrap(); // 4×4 output
    let mut image = [0.0f32; 2 * 16];
    let cols = [0.0f32; 2 * 9 * 2 * 4]; // two channels, output rows 1..3
    assert!(col2im_rows(&cols, 2, &g, 1..3, &mut image).is_ok());
    assert!(matches!(
        col2im_rows(&cols, 2, &g, 3..5, &mut image),
        Err(Error::Parameter { arg: "rows", .. })
    ));
    assert!(matches!(
        col2im_rows(&cols, 2, &g, 1..2, &mut image),
        Err(Error::Shape { arg: "cols", .. })
    ));
    assert!(matches!(
        col2im_rows(&cols, 2, &g, 1..3, &mut image[..31]),
        Err(Error::Shape { arg: "image", .. })
    ));
}

#[test]
fn col2im_phases_errors() {
    let g = Window2d::new([4, 4], [3, 3], [2, 2], [1, 1], [1, 1]).unwrap(); // 2×2 output
    let mut phases = Col2imPhases::<f32>::new(2, &g).unwrap();
    let cols = [0.0f32; 2 * 9 * 2]; // two channels, output row 1
    assert!(phases.add_rows(&cols, 1..2).is_ok());
    assert!(matches!(
        phases.add_rows(&cols, 1..3),
        Err(Error::Parameter { arg: "rows", .. })
    ));
    assert!(matches!(
        phases.add_rows(&cols, 0..2),
        Err(Error::Shape { arg: "cols", .. })
    ));
    assert!(matches!(
        phases.finish(&mut [0.0; 31]),
        Err(Error::Shape { arg: "image", .. })
    ));
    assert!(matches!(
        Col2imPhases::<f32>::new(usize::MAX, &g),
        Err(Error::Overflow { .. })
    ));
}

fn check_gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    transpose: [bool; 3],
    alpha: f64,
    beta: f64,
    raw: &[f64],
) {
    let take = |off: usize, rows: usize, cols: usize, t: bool| -> Array2<T> {
        let v: Vec<T> = (0..rows * cols)
            .map(|i| <T as Element>::from_f64(raw[(off + i) % raw.len()]))
            .collect();
        if t {
            Array2::from_shape_vec((cols, rows), v).unwrap().reversed_axes()
        } else {
            Array2::from_shape_vec((rows, cols), v).unwrap()
        }
    };
    let a = take(0, m, k, transpose[0]);
    let b = take(7, k, n, transpose[1]);
    let c0 = take(13, m, n, transpose[2]);
    let (alpha, beta) = (<T as Element>::from_f64(alpha), <T as Element>::from_f64(beta));
    let expected = reference::gemm(alpha, a.view(), b.view(), beta, c0.view());
    let abs = |x: &Array2<T>| x.mapv(|v| reference::Real::abs(v));
    let bound = reference::gemm(
        reference::Real::abs(alpha),
        abs(&a).view(),
        abs(&b).view(),
        reference::Real::abs(beta),
        abs(&c0).view(),
    );
    for parallel in [false, true] {
        let mut c = c0.clone();
        if parallel {
            gemm(alpha, a.view(), b.view(), beta, c.view_mut()).unwrap();
        } else {
            gemm_serial(alpha, a.view(), b.view(), beta, c.view_mut()).unwrap();
        }
        let flat = |x: &Array2<T>| x.iter().copied().collect::<Vec<T>>();
        assert_within("gemm", &flat(&c), &flat(&expected), &flat(&bound), k);
    }
}

#[derive(Clone, Debug)]
struct Pool {
    planes: usize,
    input: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    pad: [usize; 2],
}

fn pool() -> impl Strategy<Value = Pool> {
    (
        1usize..5,
        [1usize..10, 1..10],
        [1usize..5, 1..5],
        [1usize..5, 1..5],
        [0usize..3, 0..3],
    )
        .prop_map(|(planes, input, kernel, stride, pad)| Pool {
            planes,
            input,
            kernel,
            stride,
            pad,
        })
}

/// The bit patterns of a float slice (compares NaN and signed zeros exactly).
fn bits_of<T: Element>(v: &[T]) -> Vec<u64> {
    v.iter().map(|&x| Element::to_f64(x).to_bits()).collect()
}

fn check_pool<T: Real>(p: &Pool, raw: &[f64], ties: bool) {
    let [h, w] = p.input;
    let geom = match Window2d::pooling(p.input, p.kernel, p.stride, p.pad) {
        Ok(g) => g,
        Err(e) => {
            let fits =
                (0..2).all(|a| p.kernel[a] <= p.input[a] + 2 * p.pad[a] && 2 * p.pad[a] <= p.kernel[a]);
            assert!(!fits, "valid pooling geometry rejected: {e}");
            return;
        }
    };
    // With `ties`, values are rounded to a few levels so windows hold equal maxima.
    let xs: Vec<T> = raw[..p.planes * h * w]
        .iter()
        .map(|&v| <T as Element>::from_f64(if ties { (v * 2.0).round() } else { v }))
        .collect();
    let x = Array4::from_shape_vec((1, p.planes, h, w), xs).unwrap();
    let rp = reference::PoolParams {
        kernel: p.kernel,
        stride: p.stride,
        pad: p.pad,
    };
    let n_out = p.planes * geom.output_len();
    let (mut out, mut arg) = (vec![<T as Element>::ZERO; n_out], vec![0u8; n_out]);
    max_pool2d_forward(x.as_slice().unwrap(), p.planes, &geom, &mut out, &mut arg).unwrap();
    // Every arg-max index type records the same taps.
    let (mut out16, mut arg16) = (vec![<T as Element>::ZERO; n_out], vec![0u16; n_out]);
    max_pool2d_forward(x.as_slice().unwrap(), p.planes, &geom, &mut out16, &mut arg16).unwrap();
    let (mut out32, mut arg32) = (vec![<T as Element>::ZERO; n_out], vec![0u32; n_out]);
    max_pool2d_forward(x.as_slice().unwrap(), p.planes, &geom, &mut out32, &mut arg32).unwrap();
    assert!(arg.iter().zip(&arg16).all(|(&a, &b)| u16::from(a) == b));
    assert!(arg.iter().zip(&arg32).all(|(&a, &b)| u32::from(a) == b));
    assert_eq!(bits_of(&out), bits_of(&out16));
    assert_eq!(bits_of(&out), bits_of(&out32));
    let (fresh, fresh_arg) = max_pool2d_forward_vec::<T, u8>(x.as_slice().unwrap(), p.planes, &geom).unwrap();
    assert_eq!(
        (bits_of(&fresh), fresh_arg),
        (bits_of(&out), arg.clone()),
        "max pool forward into new vectors"
    );
    let expected = reference::max_pool_forward(x.view(), &rp);
    let same = |a: &T, b: &T| a == b || (reference::Real::is_nan(*a) && reference::Real::is_nan(*b));
    assert!(
        out.iter().zip(expected.iter()).all(|(a, b)| same(a, b)),
        "max pool forward: {out:?} vs {expected}"
    );

    let dout = Array4::from_shape_vec(
        (1, p.planes, geom.output()[0], geom.output()[1]),
        (0..n_out)
            .map(|i| <T as Element>::from_f64(raw[(i * 3 + 1) % raw.len()]))
            .collect(),
    )
    .unwrap();
    let mut dx = vec![<T as Element>::from_f64(3.0); x.len()];
    max_pool2d_backward(dout.as_slice().unwrap(), &arg, p.planes, &geom, &mut dx).unwrap();
    let mut dx32 = vec![<T as Element>::from_f64(3.0); x.len()];
    max_pool2d_backward(dout.as_slice().unwrap(), &arg32, p.planes, &geom, &mut dx32).unwrap();
    assert_eq!(bits_of(&dx), bits_of(&dx32));
    let fresh = max_pool2d_backward_vec(dout.as_slice().unwrap(), &arg, p.planes, &geom).unwrap();
    assert_eq!(
        bits_of(&fresh),
        bits_of(&dx),
        "max pool backward into a new vector"
    );
    let expected = reference::max_pool_backward(dout.view(), x.view(), &rp);
    let bound = reference::max_pool_backward(dout.mapv(|v| reference::Real::abs(v)).view(), x.view(), &rp);
    assert_within(
        "max pool backward",
        &dx,
        expected.as_slice().unwrap(),
        bound.as_slice().unwrap(),
        geom.kernel_len(),
    );

    for include in [false, true] {
        let mut out = vec![<T as Element>::ZERO; n_out];
        avg_pool2d_forward(x.as_slice().unwrap(), p.planes, &geom, include, &mut out).unwrap();
        let fresh = avg_pool2d_forward_vec(x.as_slice().unwrap(), p.planes, &geom, include).unwrap();
        assert_eq!(
            bits_of(&fresh),
            bits_of(&out),
            "avg pool forward into a new vector"
        );
        let expected = reference::avg_pool_forward(x.view(), &rp, include);
        let bound = reference::avg_pool_forward(x.mapv(|v| reference::Real::abs(v)).view(), &rp, include);
        assert_within(
            "avg pool forward",
            &out,
            expected.as_slice().unwrap(),
            bound.as_slice().unwrap(),
            geom.kernel_len(),
        );
        avg_pool2d_backward(dout.as_slice().unwrap(), p.planes, &geom, include, &mut dx).unwrap();
        let fresh = avg_pool2d_backward_vec(dout.as_slice().unwrap(), p.planes, &geom, include).unwrap();
        assert_eq!(
            bits_of(&fresh),
            bits_of(&dx),
            "avg pool backward into a new vector"
        );
        let shape = [1, p.planes, h, w];
        let expected = reference::avg_pool_backward(dout.view(), shape, &rp, include);
        let bound =
            reference::avg_pool_backward(dout.mapv(|v| reference::Real::abs(v)).view(), shape, &rp, include);
        assert_within(
            "avg pool backward",
            &dx,
            expected.as_slice().unwrap(),
            bound.as_slice().unwrap(),
            geom.kernel_len(),
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn im2col_col2im_match_reference(g in geometry(), raw in data(3 * 8 * 8)) {
        check_im2col::<f32>(&g, &raw);
        check_im2col::<f64>(&g, &raw);
    }

    #[test]
    fn gemm_matches_reference(
        m in 0usize..40, k in 0usize..40, n in 0usize..40,
        transpose in [any::<bool>(), any::<bool>(), any::<bool>()],
        alpha in prop::sample::select(vec![1.0, -0.5, 2.0]),
        beta in prop::sample::select(vec![0.0, 1.0, -1.5]),
        raw in data(97),
    ) {
        check_gemm::<f32>(m, k, n, transpose, alpha, beta, &raw);
        check_gemm::<f64>(m, k, n, transpose, alpha, beta, &raw);
    }

    #[test]
    fn pooling_matches_reference(p in pool(), raw in data(4 * 9 * 9), ties in any::<bool>()) {
        check_pool::<f32>(&p, &raw, ties);
        check_pool::<f64>(&p, &raw, ties);
    }
}

/// The route reading B in place (beta = 0, few rows, contiguous rows of B)
/// against the reference, and bit for bit against the packed route (the
/// same B stored by columns), serial and parallel; `row_gap` pads B's rows;
/// A stored by rows (read in place too, where B is narrow enough) or by
/// columns (packed).
fn check_gemm_b_in_place<T: Real>(
    (m, k, n): (usize, usize, usize),
    row_gap: usize,
    a_by_columns: bool,
    raw: &[f64],
) {
    let value = |i: usize| <T as Element>::from_f64(raw[i % raw.len()]);
    let a = Array2::from_shape_fn((m, k).set_f(a_by_columns), |(i, j)| value(i * 7 + j * 3 + 1));
    let padded = Array2::from_shape_fn((k, n + row_gap), |(i, j)| value(i * 5 + j * 11 + 2));
    let b = padded.slice(ndarray::s![.., ..n]);
    let by_columns = b.t().as_standard_layout().into_owned();
    let zero = Array2::<T>::zeros((m, n));
    let expected = reference::gemm(
        <T as Element>::ONE,
        a.view(),
        b,
        <T as Element>::ZERO,
        zero.view(),
    );
    let bound = reference::gemm(
        <T as Element>::ONE,
        a.mapv(|v| reference::Real::abs(v)).view(),
        b.mapv(|v| reference::Real::abs(v)).view(),
        <T as Element>::ZERO,
        zero.view(),
    );
    let run = |b: ArrayView2<'_, T>, parallel: bool| {
        // NaN where C starts: beta = 0 must never read it.
        let mut c = Array2::from_elem((m, n), <T as Element>::from_f64(f64::NAN));
        let product = if parallel { gemm::<T> } else { gemm_serial::<T> };
        product(
            <T as Element>::ONE,
            a.view(),
            b,
            <T as Element>::ZERO,
            c.view_mut(),
        )
        .unwrap();
        c
    };
    let in_place = run(b, true);
    let flat = |x: &Array2<T>| x.iter().copied().collect::<Vec<T>>();
    assert_within(
        "gemm, B in place",
        &flat(&in_place),
        &flat(&expected),
        &flat(&bound),
        k,
    );
    let packed = run(by_columns.t(), false);
    assert_eq!(
        bits_of(&flat(&in_place)),
        bits_of(&flat(&packed)),
        "in place vs packed"
    );
    assert_eq!(
        bits_of(&flat(&in_place)),
        bits_of(&flat(&run(b, false))),
        "serial"
    );
}

proptest! {
    #![proptest_config(config(24))]

    /// Either side of the route's row limits (128; 256 for A read in
    /// place, or a B at least as wide as A is tall or of two NR panels or
    /// more; past 256 for A read in place and B of at most 8 panels, half
    /// as wide as A is tall), A's rows split across two threads when the
    /// columns are few, several KC blocks, several NR panels and a partial
    /// last one.
    #[test]
    fn gemm_b_in_place_matches_reference(
        m in 1usize..270, k in 1usize..600, n in 1usize..400, row_gap in 0usize..3, a_by_columns in any::<bool>(), raw in data(97),
    ) {
        check_gemm_b_in_place::<f32>((m, k, n), row_gap, a_by_columns, &raw);
        check_gemm_b_in_place::<f64>((m, k, n), row_gap, a_by_columns, &raw);
    }
}

#[test]
fn gemm_large_parallel_shapes_match_reference() {
    // Big enough to take the parallel paths (column blocks and row blocks).
    let raw: Vec<f64> = (0..1000).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    check_gemm::<f32>(70, 300, 333, [false, true, false], 1.0, 0.0, &raw);
    check_gemm::<f64>(333, 200, 40, [true, false, true], -1.0, 0.5, &raw);
}

proptest! {
    #![proptest_config(config(32))]

    /// Products with B no wider than A is tall and several KC blocks run,
    /// on several threads, as row bands (one band of C's rows per thread,
    /// each KC block of B packed by the first band to reach it): edge
    /// tiles, beta, strided views.
    #[test]
    fn gemm_row_bands_match_reference(
        m in 16usize..200, k in 257usize..700, n_part in 0.0f64..1.0,
        transpose in [any::<bool>(), any::<bool>(), any::<bool>()],
        alpha in prop::sample::select(vec![1.0, -0.5]),
        beta in prop::sample::select(vec![0.0, -1.5]),
        threads in 2usize..4,
        raw in data(97),
    ) {
        let n = 1 + ((m - 1) as f64 * n_part) as usize;
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            check_gemm::<f32>(m, k, n, transpose, alpha, beta, &raw);
            check_gemm::<f64>(m, k, n, transpose, alpha, beta, &raw);
        });
    }
}

/// Runs `f` in rayon pools of 1, 2, 3 and 8 threads and asserts that all give
/// bit-identical results.
fn assert_deterministic<R: PartialEq + std::fmt::Debug + Send>(what: &str, f: impl Fn() -> R + Sync) {
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(&f)
    };
    let first = run(1);
    for threads in [2, 3, 8] {
        assert!(run(threads) == first, "{what}: {threads} threads differ from 1");
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn kernels_are_deterministic_across_thread_counts() {
    let raw =
        |n: usize, s: usize| -> Vec<f32> { (0..n).map(|i| ((i * s % 1009) as f32) / 500.0 - 1.0).collect() };
    let a = Array2::from_shape_vec((150, 300), raw(45_000, 7)).unwrap();
    let b = Array2::from_shape_vec((300, 500), raw(150_000, 11)).unwrap();
    assert_deterministic("gemm", || {
        let mut c = Array2::<f32>::zeros((150, 500));
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap();
        bits(c.as_slice().unwrap())
    });
    // Also equal to the serial product.
    let mut serial = Array2::<f32>::zeros((150, 500));
    gemm_serial(1.0, a.view(), b.view(), 0.0, serial.view_mut()).unwrap();
    let mut parallel = Array2::<f32>::zeros((150, 500));
    rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap()
        .install(|| {
            gemm(1.0, a.view(), b.view(), 0.0, parallel.view_mut()).unwrap();
        });
    assert_eq!(
        bits(serial.as_slice().unwrap()),
        bits(parallel.as_slice().unwrap())
    );
    // And called from this thread, outside any pool's workers (the
    // product then enters the global pool once, `threads::on_worker`).
    let mut outside = Array2::<f32>::zeros((150, 500));
    gemm(1.0, a.view(), b.view(), 0.0, outside.view_mut()).unwrap();
    assert_eq!(
        bits(serial.as_slice().unwrap()),
        bits(outside.as_slice().unwrap())
    );

    // A product taking the row bands on 2, 3 and 8 threads.
    let tall = Array2::from_shape_vec((300, 600), raw(180_000, 19)).unwrap();
    let narrow = Array2::from_shape_vec((600, 200), raw(120_000, 23)).unwrap();
    assert_deterministic("gemm (row bands)", || {
        let mut c = Array2::<f32>::zeros((300, 200));
        gemm(1.0, tall.view(), narrow.view(), 0.0, c.view_mut()).unwrap();
        bits(c.as_slice().unwrap())
    });

    let geom = Window2d::new([33, 29], [3, 3], [1, 2], [1, 1], [1, 1]).unwrap();
    let (n, c) = (6, 4);
    let images = raw(n * c * geom.input_len(), 13);
    let cols_len = n * c * geom.kernel_len() * geom.output_len();
    assert_deterministic("im2col_batch + col2im_batch", || {
        let mut cols = vec![0.0f32; cols_len];
        im2col_batch(&images, n, c, &geom, &mut cols).unwrap();
        let mut back = vec![0.0f32; images.len()];
        col2im_batch(&cols, n, c, &geom, &mut back).unwrap();
        (bits(&cols), bits(&back))
    });

    let pg = Window2d::pooling([56, 60], [3, 3], [2, 2], [1, 1]).unwrap();
    let planes = 16;
    let x = raw(planes * pg.input_len(), 17);
    assert_deterministic("pooling", || {
        let n_out = planes * pg.output_len();
        let (mut out, mut arg, mut avg) = (vec![0.0f32; n_out], vec![0u8; n_out], vec![0.0f32; n_out]);
        max_pool2d_forward(&x, planes, &pg, &mut out, &mut arg).unwrap();
        avg_pool2d_forward(&x, planes, &pg, false, &mut avg).unwrap();
        let (mut dx, mut dxa) = (vec![0.0f32; x.len()], vec![0.0f32; x.len()]);
        max_pool2d_backward(&avg, &arg, planes, &pg, &mut dx).unwrap();
        avg_pool2d_backward(&out, planes, &pg, true, &mut dxa).unwrap();
        let fresh = max_pool2d_backward_vec(&avg, &arg, planes, &pg).unwrap();
        let fresh_avg = avg_pool2d_backward_vec(&out, planes, &pg, true).unwrap();
        assert_eq!((bits(&fresh), bits(&fresh_avg)), (bits(&dx), bits(&dxa)));
        let (fresh_out, fresh_arg) = max_pool2d_forward_vec::<f32, u8>(&x, planes, &pg).unwrap();
        let fresh_avg_out = avg_pool2d_forward_vec(&x, planes, &pg, false).unwrap();
        assert_eq!(
            (bits(&fresh_out), &fresh_arg, bits(&fresh_avg_out)),
            (bits(&out), &arg, bits(&avg))
        );
        (bits(&out), arg, bits(&avg), bits(&dx), bits(&dxa))
    });
}

#[test]
fn bad_geometry_is_an_error() {
    let err = Window2d::new([4, 4], [2, 2], [1, 0], [0, 0], [1, 1]).unwrap_err();
    assert_eq!(err, Error::parameter("stride_w", "> 0", 0));
    assert_eq!(err.to_string(), "stride_w: expected > 0, got 0");
    assert!(matches!(
        Window2d::new([4, 4], [2, 2], [1, 1], [0, 0], [0, 1]),
        Err(Error::Parameter {
            arg: "dilation_h",
            ..
        })
    ));
    assert!(matches!(
        Window2d::new([4, 4], [0, 2], [1, 1], [0, 0], [1, 1]),
        Err(Error::Parameter { arg: "kernel_h", .. })
    ));
    assert_eq!(
        Window2d::new([4, 4], [2, 6], [1, 1], [0, 0], [1, 1]).unwrap_err(),
        Error::WindowTooLarge {
            axis: "width",
            window: 6,
            padded_input: 4
        }
    );
    assert_eq!(
        Window2d::new([4, 4], [3, 3], [1, 1], [0, 0], [2, 1]).unwrap_err(),
        Error::WindowTooLarge {
            axis: "height",
            window: 5,
            padded_input: 4
        }
    );
    // Sizes that overflow usize are errors, not wraps.
    assert!(matches!(
        Window2d::new([4, usize::MAX], [1, 1], [1, 1], [0, 1], [1, 1]),
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        Window2d::new([1 << 40, 1 << 40], [1, 1], [1, 1], [0, 0], [1, 1]),
        Err(Error::Overflow { .. })
    ));
    assert!(matches!(
        Window2d::new([8, 8], [usize::MAX, 1], [1, 1], [0, 0], [2, 1]),
        Err(Error::Overflow { .. })
    ));
    // Padding beyond both the input and the kernel.
    assert_eq!(
        Window2d::new([3, 3], [2, 2], [1, 1], [4, 0], [1, 1])
            .unwrap_err()
            .to_string(),
        "pad_h: expected <= max(input, kernel) = 3, got 4"
    );
    assert!(Window2d::new([3, 3], [2, 5], [1, 1], [3, 5], [1, 1]).is_ok());
    // Pooling: padding beyond half the window, empty input.
    assert!(matches!(
        Window2d::pooling([4, 4], [2, 2], [1, 1], [0, 2]),
        Err(Error::Parameter { arg: "pad_w", .. })
    ));
    assert!(matches!(
        Window2d::pooling([0, 4], [1, 1], [1, 1], [0, 0]),
        Err(Error::Parameter { arg: "input_h", .. })
    ));
}

#[test]
fn bad_buffers_are_errors() {
    let g = Window2d::new([3, 3], [2, 2], [1, 1], [0, 0], [1, 1]).unwrap();
    let mut cols = vec![0.0f32; 16];
    assert!(matches!(
        im2col(&[0.0f32; 8], 1, &g, &mut cols),
        Err(Error::Shape { arg: "image", .. })
    ));
    assert!(matches!(
        im2col(&[0.0f32; 9], 1, &g, &mut cols[..15]),
        Err(Error::Shape { arg: "cols", .. })
    ));
    let mut image = vec![0.0f32; 9];
    assert!(matches!(
        col2im(&cols[..3], 1, &g, &mut image),
        Err(Error::Shape { arg: "cols", .. })
    ));
    assert!(matches!(
        im2col_batch(&[0.0f32; 9], 2, 1, &g, &mut cols),
        Err(Error::Shape { arg: "images", .. })
    ));
    let huge = im2col_batch(&[0.0f32; 9], usize::MAX, 1, &g, &mut cols);
    assert!(matches!(huge, Err(Error::Overflow { .. })), "{huge:?}");

    let a = Array2::<f64>::zeros((2, 3));
    let b = Array2::<f64>::zeros((4, 2));
    let mut c = Array2::<f64>::zeros((2, 2));
    let e = gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "b: expected shape [3, _] (rows = a's columns), got [4, 2]"
    );
    let b = Array2::<f64>::zeros((3, 2));
    assert!(matches!(
        gemm(1.0, a.view(), b.view(), 0.0, c.view_mut().reversed_axes()),
        Ok(())
    ));
    let mut c3 = Array2::<f64>::zeros((3, 2));
    assert!(matches!(
        gemm(1.0, a.view(), b.view(), 0.0, c3.view_mut()),
        Err(Error::Shape { arg: "c", .. })
    ));
    assert!(matches!(
        gemm(f64::NAN, a.view(), b.view(), 0.0, c.view_mut()),
        Err(Error::Parameter { arg: "alpha", .. })
    ));
    assert!(matches!(
        gemm_serial(1.0, a.view(), b.view(), f64::INFINITY, c.view_mut()),
        Err(Error::Parameter { arg: "beta", .. })
    ));

    let pg = Window2d::pooling([2, 2], [2, 2], [2, 2], [0, 0]).unwrap();
    let mut dx = [0.0f32; 4];
    let bad = max_pool2d_backward(&[1.0f32], &[4u8], 1, &pg, &mut dx);
    assert!(
        matches!(bad, Err(Error::Parameter { arg: "argmax", .. })),
        "{bad:?}"
    );
    let bad = max_pool2d_backward_vec(&[1.0f32], &[4u8], 1, &pg);
    assert!(
        matches!(bad, Err(Error::Parameter { arg: "argmax", .. })),
        "{bad:?}"
    );
    let short = max_pool2d_backward_vec(&[1.0f32, 2.0], &[0u8], 2, &pg);
    assert!(
        matches!(short, Err(Error::Shape { arg: "argmax", .. })),
        "{short:?}"
    );
    let short = avg_pool2d_backward_vec(&[1.0f32], 2, &pg, true);
    assert!(
        matches!(short, Err(Error::Shape { arg: "dout", .. })),
        "{short:?}"
    );
    let short = max_pool2d_forward_vec::<f32, u8>(&[1.0; 3], 1, &pg);
    assert!(matches!(short, Err(Error::Shape { arg: "x", .. })), "{short:?}");
    let short = avg_pool2d_forward_vec(&[1.0f32; 5], 2, &pg, true);
    assert!(matches!(short, Err(Error::Shape { arg: "x", .. })), "{short:?}");
    let not_pooling = Window2d::new([4, 4], [2, 2], [2, 2], [0, 0], [2, 2]).unwrap();
    let bad = avg_pool2d_backward_vec(&[1.0f32], 1, &not_pooling, true);
    assert!(
        matches!(bad, Err(Error::Parameter { arg: "geom", .. })),
        "{bad:?}"
    );
    // A tap on the padding of a border window (tap 0 of the top-left 3×3
    // window with pad 1), and a tap beyond the window.
    let padded = Window2d::pooling([4, 4], [3, 3], [2, 2], [1, 1]).unwrap();
    let mut dx = [0.0f32; 16];
    for tap in [0u8, 9] {
        let bad = max_pool2d_backward(&[1.0f32; 4], &[tap, 4, 4, 4], 1, &padded, &mut dx);
        let fresh = max_pool2d_backward_vec(&[1.0f32; 4], &[tap, 4, 4, 4], 1, &padded);
        assert_eq!(
            fresh.unwrap_err().to_string(),
            bad.as_ref().unwrap_err().to_string()
        );
        assert_eq!(
            bad.unwrap_err().to_string(),
            format!("argmax: expected taps < 9 that fall on a real pixel of their 3×3 window, got {tap}")
        );
    }
    // An index type too narrow for the window: 17×16 = 272 taps in a u8.
    let wide = Window2d::pooling([17, 16], [17, 16], [1, 1], [0, 0]).unwrap();
    assert!(matches!(
        max_pool2d_forward_vec::<f32, u8>(&[0.0f32; 272], 1, &wide),
        Err(Error::Parameter { arg: "argmax", .. })
    ));
    assert!(matches!(
        max_pool2d_forward(&[0.0f32; 272], 1, &wide, &mut [0.0], &mut [0u8]),
        Err(Error::Parameter { arg: "argmax", .. })
    ));
    assert!(max_pool2d_forward(&[0.0f32; 272], 1, &wide, &mut [0.0], &mut [0u16]).is_ok());
    // A convolution geometry (dilated) is not a pooling geometry.
    let dilated = Window2d::new([5, 5], [2, 2], [1, 1], [0, 0], [2, 2]).unwrap();
    assert!(matches!(
        avg_pool2d_forward(&[0.0f32; 25], 1, &dilated, true, &mut [0.0; 9]),
        Err(Error::Parameter { arg: "geom", .. })
    ));
    assert!(matches!(
        max_pool2d_forward(&[0.0f32; 4], 1, &pg, &mut [0.0; 2], &mut [0u8; 1]),
        Err(Error::Shape { arg: "out", .. })
    ));
}

/// Max-pooling backward rejects an arg-max that names padding or lies past
/// the window, on every pass (3×3 / stride 2 gathers: its check is apart
/// from the pass; 3×3 / stride 1 scatters; 2×2 / stride 2 writes).
#[test]
fn max_pool_backward_rejects_taps_off_the_window() {
    // 5×5 input, 3×3 windows, pad 1, stride 2 (3×3 outputs) or 1 (5×5):
    // window (0, 1) has padding above (taps 0-2), window (1, 0) left of it
    // (taps 0, 3, 6), the last window below and right of it (taps 6-8, 2, 5).
    for (stride, out) in [(2, 3), (1, 5)] {
        let g = Window2d::pooling([5, 5], [3, 3], [stride, stride], [1, 1]).unwrap();
        let dout = vec![1.0f32; out * out];
        let at = |o: usize, tap: u8| {
            let mut arg = vec![4u8; out * out];
            arg[o] = tap;
            arg
        };
        let mut dx = vec![0.0f32; 25];
        assert!(max_pool2d_backward(&dout, &at(0, 4), 1, &g, &mut dx).is_ok());
        for (o, tap) in [
            (1, 2),
            (1, 0),
            (out, 3),
            (out, 6),
            (out, 0),
            (out * out - 1, 8),
            (out * out - 1, 5),
            (out * out - 1, 9),
            (out * out - 1, 200),
        ] {
            let bad = max_pool2d_backward(&dout, &at(o, tap), 1, &g, &mut dx);
            assert!(
                matches!(bad, Err(Error::Parameter { arg: "argmax", .. })),
                "stride {stride}, output {o}, tap {tap}: {bad:?}"
            );
            let bad = max_pool2d_backward_vec(&dout, &at(o, tap), 1, &g);
            assert!(
                matches!(bad, Err(Error::Parameter { arg: "argmax", .. })),
                "stride {stride}, output {o}, tap {tap}: {bad:?}"
            );
        }
        // The first window's bottom-right tap is a real pixel.
        assert!(max_pool2d_backward(&dout, &at(0, 8), 1, &g, &mut dx).is_ok());
    }
}

/// The taps' range check of the 3×3 / stride-2 and 2×2 / stride-2 backward
/// passes scans whole vectors of taps: a tap out of range is found
/// wherever it lies in a long arg-max (two planes of 20×20 windows), in
/// u8 and u16.
#[test]
fn max_pool_backward_finds_a_bad_tap_anywhere() {
    fn check<I: patchwise_kernels::ArgIndex>(tap: impl Fn(u32) -> I) {
        // 3×3 windows with padding 1, their centre tap (4) always a real
        // pixel; 2×2 unpadded, every tap real.
        for (k, pad, good, bad_taps) in [(3, 1, 4, [9, 200]), (2, 0, 1, [4, 255])] {
            let g = Window2d::pooling([40, 40], [k, k], [2, 2], [pad, pad]).unwrap();
            let n = 2 * g.output_len();
            assert_eq!(n, 800);
            let dout = vec![1.0f32; n];
            assert!(max_pool2d_backward_vec(&dout, &vec![tap(good); n], 2, &g).is_ok());
            for o in [0, 17, 63, 64, 255, 399, 400, 523, 799] {
                for bad in bad_taps {
                    let mut arg = vec![tap(good); n];
                    arg[o] = tap(bad);
                    let got = max_pool2d_backward_vec(&dout, &arg, 2, &g);
                    assert!(
                        matches!(got, Err(Error::Parameter { arg: "argmax", .. })),
                        "{k}x{k}, output {o}, tap {bad}: {:?}",
                        got.err()
                    );
                }
            }
        }
    }
    check(|t| t as u8);
    check(|t| t as u16);
}

#[test]
fn gemm_beta_zero_does_not_read_c() {
    let a = ndarray::array![[1.0f32, 2.0]];
    let b = ndarray::array![[3.0f32], [4.0]];
    let mut c = ndarray::array![[f32::NAN]];
    gemm(1.0, a.view(), b.view(), 0.0, c.view_mut()).unwrap();
    assert_eq!(c[[0, 0]], 11.0);
    // K = 0: C ← beta·C.
    let mut c = ndarray::array![[2.0f32, 4.0]];
    let empty: ArrayView2<f32> = ArrayView2::from_shape((1, 0), &[]).unwrap();
    let b0: ArrayView2<f32> = ArrayView2::from_shape((0, 2), &[]).unwrap();
    gemm(1.0, empty, b0, 0.5, c.view_mut()).unwrap();
    assert_eq!(c, ndarray::array![[1.0f32, 2.0]]);
}

/// The implicit GEMM (parallel and serial) equals the GEMM on the explicit
/// im2col matrix, bit for bit, with C ← 1.5·A·B + beta·C. Beta = 0 takes the
/// in-place route for few rows (C starts as NaN: it must not be
/// read), beta = 1 the packed one.
fn check_implicit_gemm<T: Real>(g: &Geometry, m: usize, beta: f64, raw: &[f64]) {
    let Ok(geom) = g.window() else { return };
    let c = g.channels;
    let image: Vec<T> = (0..c * geom.input_len())
        .map(|i| <T as Element>::from_f64(raw[i % raw.len()]))
        .collect();
    let k = c * geom.kernel_len();
    let a = Array2::from_shape_fn((m, k), |(i, j)| {
        <T as Element>::from_f64(raw[(i * 7 + j * 3 + 1) % raw.len()])
    });
    let mut cols = vec![<T as Element>::ZERO; k * geom.output_len()];
    im2col(&image, c, &geom, &mut cols).unwrap();
    let cols = Array2::from_shape_vec((k, geom.output_len()), cols).unwrap();
    let start = if beta == 0.0 { f64::NAN } else { 0.5 };
    let mut explicit = Array2::from_elem((m, geom.output_len()), <T as Element>::from_f64(start));
    let mut implicit = explicit.clone();
    let mut serial = explicit.clone();
    let (alpha, beta) = (<T as Element>::from_f64(1.5), <T as Element>::from_f64(beta));
    // C stored by columns: tiles written with a column stride of M.
    let mut by_columns = explicit.t().as_standard_layout().into_owned().reversed_axes();
    gemm(alpha, a.view(), cols.view(), beta, explicit.view_mut()).unwrap();
    gemm_im2col(alpha, a.view(), &image, c, &geom, beta, implicit.view_mut()).unwrap();
    gemm_im2col_serial(alpha, a.view(), &image, c, &geom, beta, serial.view_mut()).unwrap();
    gemm_im2col(alpha, a.view(), &image, c, &geom, beta, by_columns.view_mut()).unwrap();
    assert_eq!(explicit, by_columns, "C stored by columns");
    assert!(
        explicit.iter().all(|v| v.is_finite()),
        "finite inputs give finite outputs"
    );
    assert_eq!(
        explicit, implicit,
        "implicit GEMM equals GEMM on the explicit im2col matrix"
    );
    assert_eq!(explicit, serial);
}

/// KC blocks shallower than the kernel's taps: a last block of 8 rows
/// with 12 taps (22 channels of 3×4: K = 264), and 17×17 windows (289
/// taps, more than a block), stride 2 and small images so B is packed tap
/// by tap; the GEMM's packed route (m > 128, and beta = 1).
#[test]
fn implicit_gemm_blocks_shallower_than_the_taps() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    let cases = [
        (22, [6, 7], [3, 4], [1, 1], [1, 1]),
        (22, [9, 9], [3, 4], [2, 2], [1, 0]),
        (1, [20, 21], [17, 17], [1, 1], [0, 1]),
        (2, [19, 19], [17, 17], [2, 1], [1, 1]),
    ];
    for (channels, input, kernel, stride, pad) in cases {
        let g = Geometry {
            channels,
            input,
            kernel,
            stride,
            pad,
            dilation: [1, 1],
        };
        for (m, beta) in [(130, 0.0), (5, 1.0)] {
            check_implicit_gemm::<f32>(&g, m, beta, &raw);
            check_implicit_gemm::<f64>(&g, m, beta, &raw);
        }
    }
}

/// Geometries large enough for several KC blocks (C·KH·KW > 256) and
/// several bands of output rows, and empty images (all padding).
fn large_geometry() -> impl Strategy<Value = Geometry> {
    geometries(1..40, 0..40, 1..5, 1..4, 0..3, 1..3)
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn implicit_gemm_equals_explicit(g in geometry(), m in 1usize..20, raw in data(131)) {
        for beta in [0.0, 1.0] {
            check_implicit_gemm::<f32>(&g, m, beta, &raw);
            check_implicit_gemm::<f64>(&g, m, beta, &raw);
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// The in-place (beta = 0, M ≤ 128) route on larger shapes, either side
    /// of its row limit.
    #[test]
    fn implicit_gemm_large_equals_explicit(g in large_geometry(), m in 1usize..140, raw in data(131)) {
        check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
        check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
    }

    /// Several large images through the in-place route (one tall image).
    #[test]
    fn implicit_gemm_large_stacked_equals_per_image(g in large_geometry(), m in 1usize..140, count in 1usize..4, gap in 0usize..3, raw in data(131)) {
        check_implicit_gemm_stacked::<f32>(&g, m, count, gap, 0.0, &raw);
        check_implicit_gemm_stacked::<f64>(&g, m, count, gap, 0.0, &raw);
    }
}

#[test]
fn implicit_gemm_errors() {
    let g = Window2d::new([4, 4], [3, 3], [1, 1], [1, 1], [1, 1]).unwrap();
    let a = Array2::<f32>::zeros((2, 18));
    let mut c = Array2::<f32>::zeros((2, 16));
    assert!(matches!(
        gemm_im2col(1.0, a.view(), &[0.0; 31], 2, &g, 0.0, c.view_mut()),
        Err(Error::Shape { arg: "image", .. })
    ));
    let a9 = Array2::<f32>::zeros((2, 9));
    assert!(matches!(
        gemm_im2col(1.0, a9.view(), &[0.0; 32], 2, &g, 0.0, c.view_mut()),
        Err(Error::Shape { arg: "a", .. })
    ));
    let mut c15 = Array2::<f32>::zeros((2, 15));
    assert!(matches!(
        gemm_im2col(1.0, a.view(), &[0.0; 32], 2, &g, 0.0, c15.view_mut()),
        Err(Error::Shape { arg: "c", .. })
    ));
    assert!(matches!(
        gemm_im2col(f32::NAN, a.view(), &[0.0; 32], 2, &g, 0.0, c.view_mut()),
        Err(Error::Parameter { .. })
    ));
    assert!(gemm_im2col(1.0, a.view(), &[0.0; 32], 2, &g, 0.0, c.view_mut()).is_ok());
}

proptest! {
    #![proptest_config(config(128))]

    /// The dedicated 2×2 / stride-2 / unpadded paths (max and average),
    /// including odd sizes, ties and NaN.
    #[test]
    fn pooling_2x2_stride_2_fast_paths(planes in 1usize..4, h in 2usize..12, w in 2usize..12, raw in data(4 * 12 * 12), ties in any::<bool>(), nan_at in prop::option::of(0usize..400)) {
        let p = Pool { planes, input: [h, w], kernel: [2, 2], stride: [2, 2], pad: [0, 0] };
        let mut raw = raw;
        if let Some(i) = nan_at {
            raw[i % (planes * h * w)] = f64::NAN;
        }
        check_pool::<f32>(&p, &raw, ties);
        check_pool::<f64>(&p, &raw, ties);
    }
}

proptest! {
    #![proptest_config(config(128))]

    /// The 3×3 / stride-2 passes (padded or not), with ties, NaNs
    /// (several: a window's first NaN in row-major order is its maximum)
    /// and infinities of both signs (windows whose pixels sum to NaN
    /// without one: the forward scan's second pass).
    #[test]
    fn pooling_3x3_stride_2_fast_path(planes in 1usize..3, h in 3usize..14, w in 3usize..14, pad in 0usize..2, raw in data(3 * 14 * 14), ties in any::<bool>(), nans in prop::collection::vec(0usize..600, 0..6), infinities in prop::collection::vec(0usize..600, 0..8)) {
        let p = Pool { planes, input: [h, w], kernel: [3, 3], stride: [2, 2], pad: [pad, pad] };
        let mut raw = raw;
        for (k, i) in infinities.into_iter().enumerate() {
            raw[i % (planes * h * w)] = if k % 2 == 0 { f64::INFINITY } else { f64::NEG_INFINITY };
        }
        for i in nans {
            raw[i % (planes * h * w)] = f64::NAN;
        }
        check_pool::<f32>(&p, &raw, ties);
        check_pool::<f64>(&p, &raw, ties);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// Rows wide enough for several blocks of full windows (the tap-by-tap
    /// passes run in blocks of 16 outputs), any small window and stride.
    #[test]
    fn pooling_wide_rows(planes in 1usize..3, h in 1usize..6, w in 1usize..80, kernel in [1usize..5, 1..5], stride in [1usize..4, 1..4], pad in [0usize..3, 0..3], raw in data(2 * 6 * 80), ties in any::<bool>(), nan_at in prop::option::of(0usize..1000)) {
        let p = Pool { planes, input: [h, w], kernel, stride, pad };
        let mut raw = raw;
        if let Some(i) = nan_at {
            raw[i % (planes * h * w)] = f64::NAN;
        }
        check_pool::<f32>(&p, &raw, ties);
        check_pool::<f64>(&p, &raw, ties);
    }
}

/// The transposed implicit GEMM (a convolution's weight gradient) over a
/// batch equals the reference within the sum bound; with beta ≠ 0 (the
/// packed route) also, bit for bit, the explicit GEMM on the stacked column
/// matrices. Serial equals parallel bit for bit.
fn check_implicit_gemm_transposed<T: Real>(
    g: &Geometry,
    m: usize,
    count: usize,
    gap: usize,
    beta: f64,
    raw: &[f64],
) {
    let Ok(geom) = g.window() else { return };
    let c = g.channels;
    let (image_len, p) = (c * geom.input_len(), geom.output_len());
    let stride = image_len + gap;
    let images: Vec<T> = (0..count * stride)
        .map(|i| <T as Element>::from_f64(raw[(i * 5 + 2) % raw.len()]))
        .collect();
    let k = c * geom.kernel_len();
    let mut stacked = Array2::<T>::zeros((k, count * p));
    for n in 0..count {
        let mut cols = vec![<T as Element>::ZERO; k * p];
        im2col(&images[n * stride..][..image_len], c, &geom, &mut cols).unwrap();
        let cols = ArrayView2::from_shape((k, p), &cols).unwrap();
        stacked
            .slice_mut(ndarray::s![.., n * p..(n + 1) * p])
            .assign(&cols);
    }
    let a3 = Array3::from_shape_fn((count, m, p), |(n, i, j)| {
        <T as Element>::from_f64(raw[(i * 7 + (n * p + j) * 3 + 1) % raw.len()])
    });
    let a = Array2::from_shape_fn((m, count * p), |(i, j)| a3[[j / p, i, j % p]]);
    let c0 = Array2::from_elem((m, k), <T as Element>::from_f64(0.5));
    let (alpha, beta) = (<T as Element>::from_f64(1.5), <T as Element>::from_f64(beta));
    let mut implicit = c0.clone();
    gemm_im2col_transposed(
        alpha,
        a3.view(),
        &images,
        stride,
        c,
        &geom,
        beta,
        implicit.view_mut(),
    )
    .unwrap();
    let mut serial = c0.clone();
    gemm_im2col_transposed_serial(
        alpha,
        a3.view(),
        &images,
        stride,
        c,
        &geom,
        beta,
        serial.view_mut(),
    )
    .unwrap();
    assert_eq!(
        bits_of(implicit.as_slice().unwrap()),
        bits_of(serial.as_slice().unwrap())
    );
    if beta != <T as Element>::ZERO {
        let mut explicit = c0.clone();
        gemm(alpha, a.view(), stacked.t(), beta, explicit.view_mut()).unwrap();
        assert_eq!(
            bits_of(implicit.as_slice().unwrap()),
            bits_of(explicit.as_slice().unwrap())
        );
    }
    let expected = reference::gemm(alpha, a.view(), stacked.t(), beta, c0.view());
    let abs = |x: ArrayView2<T>| x.mapv(|v| reference::Real::abs(v));
    let bound = reference::gemm(
        alpha,
        abs(a.view()).view(),
        abs(stacked.t()).view(),
        beta,
        abs(c0.view()).view(),
    );
    assert_within(
        "stacked transposed implicit gemm",
        implicit.as_slice().unwrap(),
        expected.as_slice().unwrap(),
        bound.as_slice().unwrap(),
        count * p,
    );
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn implicit_gemm_transposed_equals_explicit(g in geometry(), m in 1usize..40, count in 0usize..6, gap in 0usize..3, beta in prop::sample::select(vec![0.0, 1.0]), raw in data(131)) {
        check_implicit_gemm_transposed::<f32>(&g, m, count, gap, beta, &raw);
        check_implicit_gemm_transposed::<f64>(&g, m, count, gap, beta, &raw);
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// Layer-sized shapes: many bands, groups of partial sums and channel
    /// ranges in the in-place route.
    #[test]
    fn implicit_gemm_transposed_large(g in large_geometry(), m in 1usize..80, count in 1usize..4, gap in 0usize..3, raw in data(131)) {
        check_implicit_gemm_transposed::<f32>(&g, m, count, gap, 0.0, &raw);
        check_implicit_gemm_transposed::<f64>(&g, m, count, gap, 0.0, &raw);
    }
}

/// Geometries with few taps (the dot-product route): rows shorter and
/// longer than a vector, with and without a last partial vector, and
/// images of several bands.
fn few_taps_geometry() -> impl Strategy<Value = Geometry> {
    geometries(1..4, 1..48, 1..4, 1..3, 0..3, 1..3)
}

proptest! {
    #![proptest_config(config(32))]

    /// Few taps, any number of filters (partial tiles of filters and
    /// taps), wide images.
    #[test]
    fn implicit_gemm_transposed_few_taps(g in few_taps_geometry(), m in 1usize..30, count in 1usize..4, gap in 0usize..3, raw in data(131)) {
        check_implicit_gemm_transposed::<f32>(&g, m, count, gap, 0.0, &raw);
        check_implicit_gemm_transposed::<f64>(&g, m, count, gap, 0.0, &raw);
    }
}

/// A non-finite image value keeps the reference's terms: the in-place
/// route, whose wide grid pairs image values with zeros of A that the
/// definition never pairs, gives way to the packed one — whether it builds
/// bands (padding) or reads the image in place (no padding).
#[test]
fn implicit_gemm_transposed_keeps_infinities_apart() {
    for pad in [1, 0] {
        // 1 channel 16×16, 3×3 taps: tap column 0 reads image columns
        // −pad .. 13, never column 15, which the wide grid's extra columns
        // pair with it.
        let g = Window2d::new([16, 16], [3, 3], [1, 1], [pad, pad], [1, 1]).unwrap();
        let mut x = [1.0f32; 256];
        x[15] = f32::INFINITY;
        let p = g.output_len();
        let a = Array3::from_elem((1, 1, p), 1.0f32);
        let mut c = Array2::zeros((1, 9));
        gemm_im2col_transposed(1.0, a.view(), &x, 256, 1, &g, 0.0, c.view_mut()).unwrap();
        // Tap (0, 0): the image values at rows and columns 0 .. 13 + pad.
        let inside = (14 + pad) as f32;
        assert_eq!(c[[0, 0]], inside * inside, "pad {pad}: {c}");
    }
}

#[test]
fn implicit_gemm_transposed_errors() {
    let g = Window2d::new([4, 4], [3, 3], [1, 1], [1, 1], [1, 1]).unwrap();
    let a = Array3::<f32>::zeros((2, 2, 16)); // two images of 16 output pixels
    let mut c = Array2::<f32>::zeros((2, 18));
    let run = |a: &Array3<f32>, images: &[f32], stride: usize, c: &mut Array2<f32>| {
        gemm_im2col_transposed(1.0, a.view(), images, stride, 2, &g, 0.0, c.view_mut())
    };
    assert!(matches!(
        run(&a, &[0.0; 63], 32, &mut c),
        Err(Error::Shape { arg: "images", .. })
    ));
    assert!(matches!(
        run(&a, &[0.0; 64], 31, &mut c),
        Err(Error::Parameter {
            arg: "image_stride",
            ..
        })
    ));
    assert!(matches!(
        run(&Array3::zeros((2, 2, 15)), &[0.0; 64], 32, &mut c),
        Err(Error::Shape { arg: "a", .. })
    ));
    assert!(matches!(
        run(&a, &[0.0; 64], 32, &mut Array2::zeros((2, 9))),
        Err(Error::Shape { arg: "c", .. })
    ));
    assert!(run(&a, &[0.0; 64], 32, &mut c).is_ok());
    assert!(run(&a, &[0.0; 70], 35, &mut c).is_ok());
}

/// Images through one implicit GEMM: C[n] equals, bit for bit, the
/// single-image implicit GEMM of image n (itself checked against the
/// explicit product above); serial equals parallel. C is a slice of a
/// larger array (rows 1..=m of m + 2), as a convolution's group is.
fn check_implicit_gemm_stacked<T: Real>(
    g: &Geometry,
    m: usize,
    count: usize,
    gap: usize,
    beta: f64,
    raw: &[f64],
) {
    let Ok(geom) = g.window() else { return };
    let c = g.channels;
    let (image_len, p) = (c * geom.input_len(), geom.output_len());
    let stride = image_len + gap;
    let images: Vec<T> = (0..count * stride)
        .map(|i| <T as Element>::from_f64(raw[(i * 5 + 2) % raw.len()]))
        .collect();
    let k = c * geom.kernel_len();
    let a = Array2::from_shape_fn((m, k), |(i, j)| {
        <T as Element>::from_f64(raw[(i * 7 + j * 3 + 1) % raw.len()])
    });
    let c0 = Array3::from_shape_fn((count, m + 2, p), |(n, i, j)| {
        <T as Element>::from_f64(raw[(n + 5 * i + 3 * j) % raw.len()])
    });
    let rows = ndarray::s![.., 1..=m, ..];
    let (alpha, beta) = (<T as Element>::from_f64(1.5), <T as Element>::from_f64(beta));
    // The product into a copy of c0, on the pool or the calling thread.
    let run = |parallel: bool, bias: Option<&[T]>| {
        let product = if parallel {
            gemm_im2col_stacked::<T>
        } else {
            gemm_im2col_stacked_serial::<T>
        };
        let mut out = c0.clone();
        product(
            alpha,
            a.view(),
            &images,
            count,
            stride,
            c,
            &geom,
            beta,
            bias,
            out.slice_mut(rows),
        )
        .unwrap();
        out
    };
    let stacked = run(true, None);
    assert_eq!(stacked, run(false, None));
    // With a bias: the same products, then bias[r] added to row r.
    let bias: Vec<T> = (0..m)
        .map(|r| <T as Element>::from_f64(raw[(r * 11 + 4) % raw.len()]))
        .collect();
    for parallel in [true, false] {
        let biased = run(parallel, Some(&bias));
        let mut expected = stacked.clone();
        for mut image in expected.outer_iter_mut() {
            for (r, mut row) in image.outer_iter_mut().enumerate().skip(1).take(m) {
                row.mapv_inplace(|v| v + bias[r - 1]);
            }
        }
        assert_eq!(
            bits_of(biased.as_slice().unwrap()),
            bits_of(expected.as_slice().unwrap()),
            "bias"
        );
    }
    // C stored pixel-major within each image (its rows not contiguous):
    // the same bits, bias included.
    let mut by_columns = c0
        .clone()
        .permuted_axes([0, 2, 1])
        .as_standard_layout()
        .into_owned()
        .permuted_axes([0, 2, 1]);
    gemm_im2col_stacked::<T>(
        alpha,
        a.view(),
        &images,
        count,
        stride,
        c,
        &geom,
        beta,
        Some(&bias),
        by_columns.slice_mut(rows),
    )
    .unwrap();
    let logical_bits = |x: &Array3<T>| {
        x.iter()
            .map(|&v| Element::to_f64(v).to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        logical_bits(&by_columns),
        logical_bits(&run(true, Some(&bias))),
        "C stored pixel-major"
    );
    // Rows outside the slice untouched.
    for i in [0, m + 1] {
        assert_eq!(
            stacked.slice(ndarray::s![.., i, ..]),
            c0.slice(ndarray::s![.., i, ..])
        );
    }
    for n in 0..count {
        let mut one = c0.slice(ndarray::s![n, 1..=m, ..]).to_owned();
        gemm_im2col(
            alpha,
            a.view(),
            &images[n * stride..][..image_len],
            c,
            &geom,
            beta,
            one.view_mut(),
        )
        .unwrap();
        let got = stacked
            .slice(ndarray::s![n, 1..=m, ..])
            .iter()
            .map(|&v| Element::to_f64(v).to_bits())
            .collect::<Vec<_>>();
        assert_eq!(got, bits_of(one.as_slice().unwrap()), "image {n}");
    }
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn implicit_gemm_stacked_equals_per_image(g in geometry(), m in 1usize..20, count in 0usize..6, gap in 0usize..3, raw in data(131)) {
        // beta = 0 takes the in-place route (the images stacked into one
        // tall image).
        for beta in [-0.5, 0.0] {
            check_implicit_gemm_stacked::<f32>(&g, m, count, gap, beta, &raw);
            check_implicit_gemm_stacked::<f64>(&g, m, count, gap, beta, &raw);
        }
    }
}

/// Stride-1 geometries whose output is as wide as the image (padding
/// across pw = dw·(KW − 1)/2, any padding down), on images of several
/// tiles and bands and up to 40 channels (several KC blocks): the route
/// reading the image itself, its padding under lane masks (where the CPU
/// has masked loads).
fn same_width_geometry() -> impl Strategy<Value = Geometry> {
    (
        1usize..40,
        [1usize..24, 1..70],
        (1usize..5, 0usize..3),
        [1usize..3, 1..3],
        0usize..4,
    )
        .prop_map(|(channels, input, (kh, half), dilation, ph)| Geometry {
            channels,
            input,
            kernel: [kh, 2 * half + 1],
            stride: [1, 1],
            pad: [ph, dilation[1] * half],
            dilation,
        })
}

/// Many channels over a wide image: each band reads more of the image
/// than the A panels' loop keeps in cache, so the tiles run in the outer
/// loop (1×1, and 3×3 with several KC blocks); with a bias, in batches.
#[test]
fn implicit_gemm_same_width_many_channels() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    for (kernel, pad) in [([1, 1], [0, 0]), ([3, 3], [1, 1])] {
        let g = Geometry {
            channels: 300,
            input: [9, 70],
            kernel,
            stride: [1, 1],
            pad,
            dilation: [1, 1],
        };
        for m in [7, 20] {
            check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
            check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
            check_implicit_gemm_batch::<f32>(&g, (1, m), 2, 1, true, &raw);
            check_implicit_gemm_batch::<f64>(&g, (1, m), 2, 1, true, &raw);
        }
    }
}

/// 1×1 kernels with padding down (rows of padding above and below each
/// image: tiles there are not whole), over images of several tiles, in
/// batches with NaN between the images: the in-image route's masked and
/// zeroing kernels on every instruction set that has them (AVX2 takes
/// the route for 1×1 kernels only).
#[test]
fn implicit_gemm_same_width_pointwise_padded() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    for (input, pad) in [
        ([6, 13], [1, 0]),
        ([9, 20], [2, 0]),
        ([5, 30], [3, 0]),
        ([4, 7], [0, 0]),
    ] {
        let g = Geometry {
            channels: 5,
            input,
            kernel: [1, 1],
            stride: [1, 1],
            pad,
            dilation: [1, 1],
        };
        for m in [3, 13] {
            check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
            check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
            for gap in [1, 2 * input[1] + 40] {
                check_implicit_gemm_batch::<f32>(&g, (1, m), 3, gap, true, &raw);
                check_implicit_gemm_batch::<f64>(&g, (1, m), 3, gap, true, &raw);
            }
        }
    }
}

/// One geometry through kernels of different tile widths in turn (8, 9 and
/// 5 rows of A pick 8×48, 9×48 and 5×80 on AVX-512): masks worked out for
/// one width never serve another.
#[test]
fn implicit_gemm_same_width_tile_widths_in_turn() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    let g = Geometry {
        channels: 3,
        input: [7, 30],
        kernel: [3, 3],
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
    };
    for m in [8, 5, 9, 5, 8] {
        check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
    }
    for m in [8, 5, 8] {
        check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
    }
}

/// More rows of A than the in-place limit over images of at least two
/// bands' pixels (the in-image route takes up to 256 there), either side
/// of 256, and over a smaller image (the packed route); with a bias, in
/// batches.
#[test]
fn implicit_gemm_same_width_many_rows() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    for (input, kernel, pad) in [
        ([24, 30], [3, 3], [1, 1]),
        ([20, 32], [1, 1], [0, 0]),
        ([14, 14], [3, 3], [1, 1]),
    ] {
        let g = Geometry {
            channels: 5,
            input,
            kernel,
            stride: [1, 1],
            pad,
            dilation: [1, 1],
        };
        for m in [129, 256, 257] {
            check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
            check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
            check_implicit_gemm_batch::<f32>(&g, (1, m), 2, 1, true, &raw);
            check_implicit_gemm_batch::<f64>(&g, (1, m), 2, 1, true, &raw);
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// One image, every row count either side of the in-place limit.
    #[test]
    fn implicit_gemm_same_width_equals_explicit(g in same_width_geometry(), m in 1usize..140, raw in data(131)) {
        check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
        check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
    }

    /// Batches with a bias, in parallel and serially; the images one
    /// apart, or further than the kernel reaches (NaN between: lanes read
    /// off the image are cleared or never read).
    #[test]
    fn implicit_gemm_same_width_batch(g in same_width_geometry(), m in 1usize..40, count in 1usize..4, with_bias: bool, raw in data(131)) {
        let reach = g.input[1] * (g.kernel[0] * g.dilation[0] + g.pad[0] + 1);
        for gap in [1, reach] {
            check_implicit_gemm_batch::<f32>(&g, (1, m), count, gap, with_bias, &raw);
            check_implicit_gemm_batch::<f64>(&g, (1, m), count, gap, with_bias, &raw);
        }
        // Into a slice of a larger C, also stored pixel-major, with a bias.
        check_implicit_gemm_stacked::<f32>(&g, m, count, 1, 0.0, &raw);
        check_implicit_gemm_stacked::<f64>(&g, m, count, 1, 0.0, &raw);
    }
}

/// A grouped batch into a new array (never zero-filled): image n, group
/// g's block equals, bit for bit, the one-image implicit GEMM (itself
/// checked against the explicit product above) with bias[g·M + r] added
/// to row r; 1 and 3 threads give the same bits.
fn check_implicit_gemm_batch<T: Real>(
    g: &Geometry,
    (groups, m): (usize, usize),
    count: usize,
    gap: usize,
    with_bias: bool,
    raw: &[f64],
) {
    let Ok(geom) = g.window() else { return };
    let c = g.channels;
    let (group_len, p) = (c * geom.input_len(), geom.output_len());
    let stride = groups * group_len + gap;
    let value = |i: usize| <T as Element>::from_f64(raw[i % raw.len()]);
    // The gaps between images hold NaN: a lane read there and counted
    // would show.
    let images: Vec<T> = (0..count * stride)
        .map(|i| {
            if i % stride < groups * group_len {
                value(i * 5 + 2)
            } else {
                <T as Element>::from_f64(f64::NAN)
            }
        })
        .collect();
    let k = c * geom.kernel_len();
    let a: Vec<Array2<T>> = (0..groups)
        .map(|gr| Array2::from_shape_fn((m, k), |(i, j)| value(gr * 13 + i * 7 + j * 3 + 1)))
        .collect();
    let views: Vec<_> = a.iter().map(|a| a.view()).collect();
    let bias: Vec<T> = (0..groups * m).map(|r| value(r * 11 + 4)).collect();
    let bias = with_bias.then_some(&bias[..]);
    let run = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| gemm_im2col_batch(&views, &images, count, stride, c, &geom, bias).unwrap())
    };
    let out = run(3);
    assert_eq!(out.dim(), (count, groups * m, p));
    assert_eq!(
        bits_of(out.as_slice().unwrap()),
        bits_of(run(1).as_slice().unwrap()),
        "threads"
    );
    for n in 0..count {
        for (gr, a_g) in a.iter().enumerate() {
            let mut one = Array2::<T>::zeros((m, p));
            let image = &images[n * stride + gr * group_len..][..group_len];
            gemm_im2col(
                <T as Element>::ONE,
                a_g.view(),
                image,
                c,
                &geom,
                <T as Element>::ZERO,
                one.view_mut(),
            )
            .unwrap();
            if let Some(bias) = bias {
                for (r, mut row) in one.outer_iter_mut().enumerate() {
                    row.mapv_inplace(|v| v + bias[gr * m + r]);
                }
            }
            let got = out.slice(ndarray::s![n, gr * m..(gr + 1) * m, ..]);
            assert_eq!(
                bits_of(got.to_owned().as_slice().unwrap()),
                bits_of(one.as_slice().unwrap()),
                "image {n}, group {gr}"
            );
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn implicit_gemm_batch_equals_per_image(g in geometry(), groups in 1usize..4, m in 0usize..20, count in 0usize..6, gap in 0usize..3, with_bias: bool, raw in data(131)) {
        check_implicit_gemm_batch::<f32>(&g, (groups, m), count, gap, with_bias, &raw);
        check_implicit_gemm_batch::<f64>(&g, (groups, m), count, gap, with_bias, &raw);
    }
}

proptest! {
    #![proptest_config(config(16))]

    /// Large images: the in-place route either side of its row limit, and
    /// beyond it the packed route on one image (written straight) or on
    /// several (zeroed first).
    #[test]
    fn implicit_gemm_large_batch_equals_per_image(g in large_geometry(), groups in 1usize..3, m in 1usize..=128, count in 2usize..4, with_bias: bool, raw in data(131)) {
        for (m, count) in [(m, count), (130, 1), (130, count)] {
            check_implicit_gemm_batch::<f32>(&g, (groups, m), count, 1, with_bias, &raw);
            check_implicit_gemm_batch::<f64>(&g, (groups, m), count, 1, with_bias, &raw);
        }
    }
}

/// Strided (or stacked) products whose output rows are whole vectors and
/// at least a kernel tile wide, stored row by row straight into C (the
/// bias added with the last KC block's tiles): ResNet's first layer in
/// small (7×7, stride 2, 64 columns), 3×3 stride 2 (48 columns), a dilated
/// one, and stride 1 without padding on stacked images; filters in one
/// partial tile, many tiles, and the in-place route's limit; one to three
/// images, with and without a bias, against the explicit product (one
/// image) and the per-image product (several: bands spanning images).
#[test]
fn implicit_gemm_output_rows_stored_straight() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    let geometries = [
        ([3, 11, 128], [7, 7], [2, 2], [3, 3], [1, 1]),
        ([2, 9, 96], [3, 3], [2, 2], [1, 1], [1, 1]),
        ([2, 8, 127], [3, 3], [2, 2], [2, 2], [2, 2]),
        ([4, 7, 52], [5, 5], [1, 1], [0, 0], [1, 1]),
    ];
    for ([channels, h, w], kernel, stride, pad, dilation) in geometries {
        let g = Geometry {
            channels,
            input: [h, w],
            kernel,
            stride,
            pad,
            dilation,
        };
        for m in [3, 40, 128] {
            check_implicit_gemm::<f32>(&g, m, 0.0, &raw);
            check_implicit_gemm::<f64>(&g, m, 0.0, &raw);
            for count in [2, 3] {
                for with_bias in [false, true] {
                    check_implicit_gemm_batch::<f32>(&g, (1, m), count, 1, with_bias, &raw);
                    check_implicit_gemm_batch::<f64>(&g, (1, m), count, 1, with_bias, &raw);
                }
            }
        }
    }
}

/// Few taps (K + 1 ≤ 2M: the explicit im2col-band route) on images of
/// several bands each, in parallel (3 threads: twelve bands per image) and
/// serially, with and without a bias, stride 1 and a CS231n-like stride 2.
#[test]
fn implicit_gemm_batch_few_taps_many_bands() {
    let raw: Vec<f64> = (0..997).map(|i| ((i * 37 % 101) as f64) / 50.0 - 1.0).collect();
    let cases = [
        (3, [40, 40], [1, 1], [1, 1], 20, 2),
        (3, [31, 31], [2, 2], [1, 1], 25, 3),
        (2, [17, 23], [1, 2], [2, 0], 14, 2),
    ];
    for (channels, input, stride, pad, m, count) in cases {
        let g = Geometry {
            channels,
            input,
            kernel: [3, 3],
            stride,
            pad,
            dilation: [1, 1],
        };
        for with_bias in [false, true] {
            check_implicit_gemm_batch::<f32>(&g, (1, m), count, 1, with_bias, &raw);
            check_implicit_gemm_batch::<f64>(&g, (1, m), count, 1, with_bias, &raw);
        }
    }
}

#[test]
fn implicit_gemm_batch_errors() {
    let g = Window2d::new([4, 4], [3, 3], [1, 1], [1, 1], [1, 1]).unwrap();
    // Two groups of 2 channels: images of 64 values, 2×18 matrices.
    let a = Array2::<f32>::zeros((2, 18));
    let run = |a: &[ArrayView2<'_, f32>], images: &[f32], stride: usize, bias: Option<&[f32]>| {
        gemm_im2col_batch(a, images, 2, stride, 2, &g, bias)
    };
    let ok = [a.view(), a.view()];
    assert_eq!(run(&ok, &[0.0; 128], 64, None).unwrap().dim(), (2, 4, 16));
    assert!(matches!(
        run(&[], &[0.0; 128], 64, None),
        Err(Error::Parameter { arg: "a", .. })
    ));
    let a9 = Array2::<f32>::zeros((2, 9));
    assert!(matches!(
        run(&[a9.view(), a9.view()], &[0.0; 128], 64, None),
        Err(Error::Shape { arg: "a", .. })
    ));
    let a3 = Array2::<f32>::zeros((3, 18));
    assert!(matches!(
        run(&[a.view(), a3.view()], &[0.0; 128], 64, None),
        Err(Error::Shape { arg: "a", .. })
    ));
    assert!(matches!(
        run(&ok, &[0.0; 127], 64, None),
        Err(Error::Shape { arg: "images", .. })
    ));
    assert!(matches!(
        run(&ok, &[0.0; 128], 63, None),
        Err(Error::Parameter {
            arg: "image_stride",
            ..
        })
    ));
    assert!(matches!(
        run(&ok, &[0.0; 128], 64, Some(&[0.0; 2])),
        Err(Error::Shape { arg: "bias", .. })
    ));
    assert!(matches!(
        gemm_im2col_batch(&ok, &[0.0; 128], usize::MAX, 64, 2, &g, None),
        Err(Error::Overflow { .. })
    ));
}

#[test]
fn implicit_gemm_stacked_errors() {
    let g = Window2d::new([4, 4], [3, 3], [1, 1], [1, 1], [1, 1]).unwrap();
    let a = Array2::<f32>::zeros((2, 18));
    let mut c = Array3::<f32>::zeros((2, 2, 16)); // two images of 16 output pixels
    let run = |a: &Array2<f32>, images: &[f32], stride: usize, c: &mut Array3<f32>| {
        gemm_im2col_stacked(1.0, a.view(), images, 2, stride, 2, &g, 0.0, None, c.view_mut())
    };
    assert!(matches!(
        run(&a, &[0.0; 63], 32, &mut c),
        Err(Error::Shape { arg: "images", .. })
    ));
    assert!(matches!(
        run(&a, &[0.0; 64], 31, &mut c),
        Err(Error::Parameter {
            arg: "image_stride",
            ..
        })
    ));
    assert!(matches!(
        run(&Array2::zeros((2, 9)), &[0.0; 64], 32, &mut c),
        Err(Error::Shape { arg: "a", .. })
    ));
    assert!(matches!(
        run(&a, &[0.0; 64], 32, &mut Array3::zeros((2, 2, 15))),
        Err(Error::Shape { arg: "c", .. })
    ));
    assert!(matches!(
        run(&a, &[0.0; 64], 32, &mut Array3::zeros((1, 2, 32))),
        Err(Error::Shape { arg: "c", .. })
    ));
    assert!(run(&a, &[0.0; 64], 32, &mut c).is_ok());
    assert!(matches!(
        gemm_im2col_stacked(
            1.0,
            a.view(),
            &[0.0; 64],
            2,
            32,
            2,
            &g,
            0.0,
            Some(&[1.0]),
            c.view_mut()
        ),
        Err(Error::Shape { arg: "bias", .. })
    ));
}
