//! 2-D convolution (cross-correlation, as in CS231n) on im2col + GEMM.
//!
//! x (N, C, H, W), w (F, C/G, KH, KW), b (F,) → out (N, F, OH, OW), with
//! `OH = (H + 2·pad_h − dil_h·(KH−1) − 1) / stride_h + 1` (likewise OW) and,
//! for filter f in group g = f / (F/G),
//!
//! ```text
//! out[n, f] = W_g[f] · col_g(x[n]) + b[f]        (a row of F/G × OH·OW)
//! ```
//!
//! where `col_g(x[n])` is the im2col matrix (C/G·KH·KW × OH·OW) of the
//! group's channels — in the forward pass an implicit GEMM that never builds
//! it: with up to 128 filters per group the micro-kernel reads its rows in
//! place (no packing of B) — from the image itself, its padding under lane
//! masks, for stride-1 "same"-width layers on AVX-512 (there up to 256
//! filters on images of 576 pixels or more), else from bands of the
//! zero-padded, stride-phase-split image —, with more filters the GEMM
//! packs its panels straight from the image; either way the products are written straight into the output
//! ([`patchwise_kernels::gemm_im2col_batch`]: a new array, never
//! zero-filled first), the bias added as they are. Backward:
//!
//! ```text
//! db[f]  = Σ_{n, p} dout[n, f, p]
//! dW_g   = Σ_n dout_g[n] · col_g(x[n])ᵀ
//! dx[n]  = col2im(W_gᵀ · dout_g[n])
//! ```
//!
//! dW is one implicit GEMM per group over the whole batch
//! ([`patchwise_kernels::gemm_im2col_transposed`]: the taps' rows read in
//! place from bands of the padded image, only dout packed, partial sums of
//! groups of bands added in a fixed order; on small images, whose padded
//! rows would add over 10 % of work, B packed from the image). For stride
//! 1, dx is computed as the convolution of dout with the flipped filters
//! (channels and filters swapped, padding `dilation·(K − 1) − pad`; the
//! flipped filters in a per-thread spare vector,
//! [`patchwise_kernels::spare`], reused across calls), again an
//! implicit GEMM; other strides (and non-finite weights, whose 0·∞ terms
//! the flipped form would add) build W_gᵀ · dout_g\[n\] band by band of
//! output rows (about 512 KiB of columns) and scatter each band while it
//! is in cache ([`patchwise_kernels::Col2imPhases`]: the image's columns
//! split by phase modulo the stride, so that every add is contiguous; where
//! one band holds all output rows, [`patchwise_kernels::Col2imLines`]
//! instead sums each image line in registers and writes it once). For 1×1,
//! stride-1, unpadded convolutions dx skips col2im: the image is the
//! matrix, Wᵀ · dout the 1×1 convolution of dout. The two implicit-GEMM
//! routes write dx straight into a new array, like the forward pass. On
//! small layers dx and dW are computed side by side (one parallel region),
//! on large ones one after the other.
//!
//! **Memory.** The forward pass's cache borrows x and w (no copy when they
//! are in standard layout), so beyond its output the pass needs only
//! per-thread packing buffers and bands: 2.5-9 % of the output on the ResNet
//! layers (`conv_memory` in `patchwise-benches` measures it).
//!
//! **Threads.** The parallel level is decided once per call: with at least
//! as many images (or chunks of images) as threads, one task per image
//! (chunk) with single-threaded GEMMs; otherwise one after another with
//! parallel GEMMs (dW's product is parallel inside, over groups of bands
//! and channel ranges fixed by the shape). Both give bit-identical results,
//! so every thread count gives the same bits.
//!
//! ```
//! use ndarray::{array, Array4};
//! use patchwise_layers::conv::{self, ConvParams};
//! let x = array![[[[1.0f64, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]]];
//! let w = array![[[[1.0, 0.0], [0.0, -1.0]]]];
//! let (out, cache) = conv::forward(x.view(), w.view(), array![1.0].view(), &ConvParams::new(2, 1))?;
//! assert_eq!(out, array![[[[0.0, -2.0], [-6.0, -3.0]]]]);
//! let grads = conv::backward(Array4::ones((1, 1, 2, 2)).view(), &cache)?;
//! assert_eq!(grads.db, array![4.0]);
//! assert_eq!(grads.dx.dim(), (1, 1, 3, 3));
//! # Ok::<(), patchwise_layers::Error>(())
//! ```

use crate::stats::lane_sum;
use crate::{check, Element, Error, Result};
use ndarray::{
    s, Array1, Array2, Array4, ArrayView1, ArrayView2, ArrayView3, ArrayView4, ArrayViewMut2, CowArray, Ix4,
};
use patchwise_kernels::{
    checked_product, col2im_images, gemm, gemm_im2col_batch, gemm_im2col_transposed, gemm_serial, spare,
    Col2imLines, Col2imPhases, ImageSink, Window2d,
};
use rayon::prelude::*;

/// The seed's `conv_param` (stride, pad), extended with per-axis values,
/// dilation and groups. Arrays are [height, width].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    /// Step between windows.
    pub stride: [usize; 2],
    /// Zero padding on each side.
    pub pad: [usize; 2],
    /// Spacing between kernel taps (1 = dense).
    pub dilation: [usize; 2],
    /// Groups G: C and F must be multiples of G; w is (F, C/G, KH, KW).
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
    /// The seed's parameters: one stride and one padding for both axes.
    pub fn new(stride: usize, pad: usize) -> Self {
        Self {
            stride: [stride; 2],
            pad: [pad; 2],
            ..Self::default()
        }
    }
    /// Separate strides for height and width.
    pub fn with_stride(self, stride_h: usize, stride_w: usize) -> Self {
        Self {
            stride: [stride_h, stride_w],
            ..self
        }
    }
    /// Separate padding for height and width.
    pub fn with_pad(self, pad_h: usize, pad_w: usize) -> Self {
        Self {
            pad: [pad_h, pad_w],
            ..self
        }
    }
    /// Dilation for height and width.
    pub fn with_dilation(self, dilation_h: usize, dilation_w: usize) -> Self {
        Self {
            dilation: [dilation_h, dilation_w],
            ..self
        }
    }
    /// Grouped convolution with `groups` groups.
    pub fn with_groups(self, groups: usize) -> Self {
        Self { groups, ..self }
    }
}

/// The sizes of one convolution, validated.
#[derive(Clone, Copy, Debug)]
struct Plan {
    n: usize,
    c: usize,
    f: usize,
    groups: usize,
    geom: Window2d,
}

impl Plan {
    fn new(x: (usize, usize, usize, usize), w: (usize, usize, usize, usize), p: &ConvParams) -> Result<Self> {
        let (n, c, h, wd) = x;
        let (f, cg, kh, kw) = w;
        let g = p.groups;
        if g == 0 || c % g != 0 || f % g != 0 {
            return Err(Error::parameter(
                "groups",
                format!("a divisor of C = {c} and F = {f}"),
                g,
            ));
        }
        if cg != c / g {
            return Err(Error::shape("w", [f, c / g, kh, kw], [f, cg, kh, kw]));
        }
        let geom = Window2d::new([h, wd], [kh, kw], p.stride, p.pad, p.dilation)?;
        checked_product("output elements", &[n, f, geom.output_len()])?;
        checked_product("im2col elements", &[cg, geom.kernel_len(), geom.output_len()])?;
        Ok(Self {
            n,
            c,
            f,
            groups: g,
            geom,
        })
    }
    /// Channels per group.
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    /// Filters per group.
    fn fg(&self) -> usize {
        self.f / self.groups
    }
    /// Rows of a group's column matrix: C/G·KH·KW.
    fn k(&self) -> usize {
        self.cg() * self.geom.kernel_len()
    }
    /// Output pixels per image: OH·OW.
    fn p(&self) -> usize {
        self.geom.output_len()
    }
    fn image_len(&self) -> usize {
        self.c * self.geom.input_len()
    }
    /// True when one task per image keeps every thread busy.
    fn parallel_over(&self, tasks: usize) -> bool {
        tasks >= rayon::current_num_threads()
    }
}

/// A matrix product on the thread-level the caller chose.
#[derive(Clone, Copy)]
enum Gemm {
    /// Inside a per-image task: single-threaded.
    Serial,
    /// Images one by one: the product itself is parallel.
    Parallel,
}

impl Gemm {
    fn run<T: Element>(
        self,
        a: ArrayView2<'_, T>,
        b: ArrayView2<'_, T>,
        beta: T,
        c: ArrayViewMut2<'_, T>,
    ) -> Result<()> {
        match self {
            Gemm::Serial => gemm_serial(T::ONE, a, b, beta, c),
            Gemm::Parallel => gemm(T::ONE, a, b, beta, c),
        }
    }
}

/// The weights' matrices of every group, each (F/G × C/G·KH·KW).
fn group_matrices<'a, T>(w: ArrayView2<'a, T>, plan: &Plan) -> Vec<ArrayView2<'a, T>> {
    let fg = plan.fg();
    (0..plan.groups)
        .map(|g| w.slice_move(s![g * fg..(g + 1) * fg, ..]))
        .collect()
}

/// What [`backward`] needs: the input, the weights and the geometry. It
/// borrows x and w from the caller when they are in standard layout (no
/// copy of the input) and owns a standard-layout copy otherwise.
#[derive(Clone, Debug)]
pub struct ConvCache<'a, T> {
    x: CowArray<'a, T, Ix4>,
    w: CowArray<'a, T, Ix4>,
    plan: Plan,
}

/// Gradients of the convolution, each of its input's shape.
#[derive(Clone, Debug)]
pub struct ConvGrads<T> {
    /// ∂L/∂x, (N, C, H, W).
    pub dx: Array4<T>,
    /// ∂L/∂w, (F, C/G, KH, KW).
    pub dw: Array4<T>,
    /// ∂L/∂b, (F,).
    pub db: Array1<T>,
}

/// `v` itself if it is in standard layout, else a standard-layout copy.
fn standard_layout<T: Element>(v: ArrayView4<'_, T>) -> CowArray<'_, T, Ix4> {
    if v.is_standard_layout() {
        v.into()
    } else {
        v.as_standard_layout().into_owned().into()
    }
}

/// The weights as the (F × C/G·KH·KW) matrix.
fn weight_matrix<'a, T: Element>(w: &'a CowArray<'_, T, Ix4>, plan: &Plan) -> ArrayView2<'a, T> {
    ArrayView2::from_shape((plan.f, plan.k()), w.as_slice().expect("standard layout")).expect("F·K elements")
}

/// Forward pass.
///
/// # Errors
/// [`Error::Shape`] if w is not (F, C/G, KH, KW) or b is not (F,);
/// [`Error::Parameter`] for zero stride or dilation, or groups not dividing C
/// and F; [`Error::WindowTooLarge`] if the dilated kernel exceeds the padded
/// input; [`Error::Overflow`] if a size overflows.
pub fn forward<'a, T: Element>(
    x: ArrayView4<'a, T>,
    w: ArrayView4<'a, T>,
    b: ArrayView1<'_, T>,
    params: &ConvParams,
) -> Result<(Array4<T>, ConvCache<'a, T>)> {
    let plan = Plan::new(x.dim(), w.dim(), params)?;
    check::shape("b", b.shape(), &[plan.f])?;
    let (x, w) = (standard_layout(x), standard_layout(w));
    let [oh, ow] = plan.geom.output();
    let bias = b.to_vec();
    let images = x.as_slice().expect("standard layout");
    let groups = group_matrices(weight_matrix(&w, &plan), &plan);
    let image_len = plan.image_len();
    let out = gemm_im2col_batch(
        &groups,
        images,
        plan.n,
        image_len,
        plan.cg(),
        &plan.geom,
        Some(&bias),
    )?;
    let out = out
        .into_shape_with_order((plan.n, plan.f, oh, ow))
        .expect("N·F·P elements");
    Ok((out, ConvCache { x, w, plan }))
}

/// dW = Σₙ doutₙ · im2col(xₙ)ᵀ, one product per group over the whole
/// batch (the images concatenated along the product's inner dimension;
/// parallel and bit-identical for any thread count inside the product).
fn weight_gradient<T: Element>(plan: &Plan, images: &[T], douts: &[T]) -> Result<Array2<T>> {
    let (fg, cg, hw) = (plan.fg(), plan.cg(), plan.geom.input_len());
    let douts = ArrayView3::from_shape((plan.n, plan.f, plan.p()), douts).expect("N·F·P elements");
    let mut dw = crate::output::zeros((plan.f, plan.k()));
    for g in 0..plan.groups {
        gemm_im2col_transposed(
            T::ONE,
            douts.slice(s![.., g * fg..(g + 1) * fg, ..]),
            &images[g * cg * hw..],
            plan.image_len(),
            cg,
            &plan.geom,
            T::ZERO,
            dw.slice_mut(s![g * fg..(g + 1) * fg, ..]),
        )?;
    }
    Ok(dw)
}

/// How dx is computed, chosen once per backward call from the shapes.
enum DxRoute<T> {
    /// 1×1, stride 1, unpadded: dx = Wᵀ · dout, the image itself the
    /// product's output.
    Pointwise,
    /// Stride 1: dx is the convolution of dout (padded by
    /// `dilation·(K − 1) − pad`) with the flipped filters, channels and
    /// filters swapped — an implicit GEMM, no column matrix. `w` is
    /// (C × F/G·KH·KW): row c holds, for each filter f of c's group, the
    /// taps of w[f, c] rotated by 180°.
    Flipped { w: Array2<T>, geom: Window2d },
    /// Otherwise: Wᵀ · dout into a column matrix, then col2im.
    Col2im,
}

impl<T: Element> DxRoute<T> {
    fn new(plan: &Plan, w: &CowArray<'_, T, Ix4>) -> Result<Self> {
        if plan.geom.is_pointwise() {
            return Ok(DxRoute::Pointwise);
        }
        let Some(geom) = flipped_geometry(&plan.geom) else {
            return Ok(DxRoute::Col2im);
        };
        let filters = w.as_slice().expect("standard layout");
        let (cg, fg, taps) = (plan.cg(), plan.fg(), plan.geom.kernel_len());
        // A spare vector of this thread's: allocated anew each call, the
        // flipped filters were paged in and given back to the system every
        // time (1.4-1.8x on the 7×7 layer's backward pass).
        let values = spare::take(plan.c * fg * taps)?;
        let mut flipped = Array2::from_shape_vec((plan.c, fg * taps), values).expect("C·F/G·KH·KW values");
        // In tiles of FLIP_BLOCK channels × FLIP_BLOCK filters: both the
        // reads (filters' consecutive channels) and the writes (channels'
        // consecutive filters) stay within a few pages per tile. Each tile
        // also tells whether the weights it copied are finite: one pass
        // over the weights, in parallel (9 MB on the 7×7 ResNet layer).
        const FLIP_BLOCK: usize = 32;
        let width = fg * taps;
        let rows = flipped.as_slice_mut().expect("fresh array");
        let flip_block = |(block, rows): (usize, &mut [T])| {
            let mut finite = true;
            for f0 in (0..fg).step_by(FLIP_BLOCK) {
                for (i, row) in rows.chunks_exact_mut(width).enumerate() {
                    let c = block * FLIP_BLOCK + i;
                    for f in f0..(f0 + FLIP_BLOCK).min(fg) {
                        // Rotating a KH×KW block by 180° reverses its row-major order.
                        let src = &filters[((c / cg * fg + f) * cg + c % cg) * taps..][..taps];
                        let dst = &mut row[f * taps..][..taps];
                        dst.iter_mut().zip(src.iter().rev()).for_each(|(d, &v)| *d = v);
                        finite &= all_finite(src);
                    }
                }
            }
            finite
        };
        let finite = rows
            .par_chunks_mut(FLIP_BLOCK * width.max(1))
            .enumerate()
            .map(flip_block)
            .reduce(|| true, |a, b| a & b);
        // The flipped convolution also multiplies each filter tap by the
        // zeros that pad dout, terms the definition of dx does not have:
        // harmless for finite weights, but 0·∞ = NaN. So only with finite
        // weights; others take the column route, which has exactly the
        // reference's terms.
        if !finite {
            spare::give_back(flipped.into_raw_vec_and_offset().0);
            return Ok(DxRoute::Col2im);
        }
        Ok(DxRoute::Flipped { w: flipped, geom })
    }
}

/// Whether every value is finite (no early exit: the compiler vectorises
/// it).
fn all_finite<T: Element>(values: &[T]) -> bool {
    values.iter().fold(true, |ok, v| ok & v.is_finite())
}

/// The geometry of the flipped-filter convolution that maps dout back onto
/// x for a stride-1 convolution: input OH×OW, the same kernel and dilation,
/// padding `dilation·(K − 1) − pad`, so its output is H×W. None for other
/// strides or where that padding would be negative or out of range.
fn flipped_geometry(g: &Window2d) -> Option<Window2d> {
    if g.stride() != [1, 1] {
        return None;
    }
    let mut pad = [0; 2];
    for (axis, pad) in pad.iter_mut().enumerate() {
        let reach = g.dilation()[axis] * (g.kernel()[axis] - 1);
        *pad = reach.checked_sub(g.pad()[axis])?;
    }
    let flipped = Window2d::new(g.output(), g.kernel(), [1, 1], pad, g.dilation()).ok()?;
    (flipped.output() == g.input()).then_some(flipped)
}

/// Bytes of the column matrix computed at once by the column route of dx
/// (about half of L2).
const COL2IM_BAND_BYTES: usize = 1 << 19;

/// dx of one image by the column route: Wᵀ · dout band by band of output
/// rows (`wt`: each group's W_gᵀ), each band scattered into the phase
/// lines while in cache, which are then written out as the image's dx,
/// group after group (`buf` and `phases` are the task's scratch). Where
/// one band holds every output row (`lines`), its column matrix is summed
/// line by line straight into dx instead.
fn col2im_dx_image<T: Element>(
    plan: &Plan,
    wt: &[Array2<T>],
    lines: Option<&Col2imLines<T>>,
    dout: &[T],
    dx: &mut ImageSink<'_, T>,
    (buf, phases): &mut (Vec<T>, Option<Col2imPhases<T>>),
    mode: Gemm,
) -> Result<()> {
    let (fg, p, cg) = (plan.fg(), plan.p(), plan.cg());
    let [oh, ow] = plan.geom.output();
    let band = col2im_band_rows::<T>(plan);
    for g in 0..plan.groups {
        let dout_g = &dout[g * fg * p..][..fg * p];
        let dout_m = ArrayView2::from_shape((fg, p), dout_g).expect("Fg·P elements");
        if let Some(lines) = lines {
            buf.resize(plan.k() * p, T::ZERO);
            let dcols = ArrayViewMut2::from_shape((plan.k(), p), &mut buf[..]).expect("K·P elements");
            mode.run(wt[g].view(), dout_m, T::ZERO, dcols)?;
            dx.write_lines(lines, buf)?;
            continue;
        }
        if let Some(sums) = phases.as_mut() {
            sums.reset();
        } else {
            *phases = Some(Col2imPhases::new(cg, &plan.geom)?);
        }
        let sums = phases.as_mut().expect("set just above");
        for r0 in (0..oh).step_by(band) {
            let rows = r0..(r0 + band).min(oh);
            let width = rows.len() * ow;
            buf.resize(plan.k() * width, T::ZERO);
            let dcols = ArrayViewMut2::from_shape((plan.k(), width), &mut buf[..]).expect("K·band elements");
            let dout_band = dout_m.slice(s![.., r0 * ow..r0 * ow + width]);
            mode.run(wt[g].view(), dout_band, T::ZERO, dcols)?;
            sums.add_rows(buf, rows)?;
        }
        dx.finish(sums)?;
    }
    Ok(())
}

/// Output rows per band of the column route (a number fixed by the
/// shape): about [`COL2IM_BAND_BYTES`] of column matrix.
fn col2im_band_rows<T>(plan: &Plan) -> usize {
    let [oh, ow] = plan.geom.output();
    let row_bytes = plan.k() * ow * std::mem::size_of::<T>();
    (COL2IM_BAND_BYTES / row_bytes.max(1)).clamp(1, oh.max(1))
}

/// dx of every image, (N, C, H, W), by the route [`DxRoute`] picks, and
/// where that route went image by image, each image's per-filter dout sums
/// ([`lane_sum`], N·F values); N, F·P and C·H·W all positive.
fn input_gradient<T: Element>(cache: &ConvCache<'_, T>, douts: &[T]) -> Result<(Array4<T>, Option<Vec<T>>)> {
    let plan = cache.plan;
    let (out_len, fg) = (plan.f * plan.p(), plan.fg());
    let wm = weight_matrix(&cache.w, &plan);
    let flat = match DxRoute::new(&plan, &cache.w)? {
        DxRoute::Flipped { w, geom } => {
            let cg = plan.cg();
            let groups: Vec<_> = (0..plan.groups)
                .map(|g| w.slice(s![g * cg..(g + 1) * cg, ..]))
                .collect();
            let dx = gemm_im2col_batch(&groups, douts, plan.n, out_len, fg, &geom, None);
            drop(groups);
            let (values, _) = w.into_raw_vec_and_offset();
            spare::give_back(values);
            dx?
        }
        DxRoute::Pointwise => {
            // dx[n] = W_gᵀ · dout_g[n]: a 1×1 window over dout.
            let groups: Vec<_> = group_matrices(wm, &plan)
                .into_iter()
                .map(|w_g| w_g.reversed_axes())
                .collect();
            gemm_im2col_batch(&groups, douts, plan.n, out_len, fg, &plan.geom, None)?
        }
        DxRoute::Col2im => {
            // Each image's dx into fresh memory, then its filters' dout sums
            // while dout is in cache (db's per-image sums, saving a pass
            // over dout: the CS231n backward pass 1.05x on one thread,
            // 1.00-1.05x on two).
            let p = plan.p();
            let parallel = plan.parallel_over(plan.n);
            // Each group's W_gᵀ with contiguous rows, made once: the
            // products read its rows in place, nothing packed per image
            // (CS231n backward 1.02-1.04x).
            let wt: Vec<Array2<T>> = group_matrices(wm, &plan)
                .into_iter()
                .map(|w_g| w_g.t().as_standard_layout().into_owned())
                .collect();
            let mode = if parallel { Gemm::Serial } else { Gemm::Parallel };
            // One band for every output row: its column matrix summed line
            // by line into dx, no phase lines (CS231n backward 1.07-1.11x).
            let lines = (col2im_band_rows::<T>(&plan) >= plan.geom.output()[0])
                .then(|| Col2imLines::new(plan.cg(), &plan.geom))
                .flatten();
            let (values, per_image) =
                col2im_images(plan.n, plan.image_len(), parallel, |scratch, n, sink| {
                    let d = &douts[n * out_len..][..out_len];
                    col2im_dx_image(&plan, &wt, lines.as_ref(), d, sink, scratch, mode)?;
                    Ok(d.chunks_exact(p).map(lane_sum).collect::<Vec<T>>())
                })?;
            let dx = Array4::from_shape_vec(cache.x.raw_dim(), values).expect("N·C·H·W values");
            return Ok((dx, Some(per_image.concat())));
        }
    };
    let dx = flat
        .into_shape_with_order(cache.x.raw_dim())
        .expect("N·C·H·W elements");
    Ok((dx, None))
}

/// Multiply-adds of one gradient product (N·F·P·K) below which the
/// backward pass computes dx and dW side by side ([`backward_here`]).
const JOIN_MACS: usize = 1 << 28;

/// Backward pass.
///
/// # Errors
/// [`Error::Shape`] if dout is not (N, F, OH, OW).
pub fn backward<T: Element>(dout: ArrayView4<'_, T>, cache: &ConvCache<'_, T>) -> Result<ConvGrads<T>> {
    // Its parallel steps (db, dW, dx) start from inside the pool: one cold
    // entry per call, not one per step.
    patchwise_kernels::on_worker(|| backward_here(dout, cache))
}

/// [`backward`] on the calling thread: dx and dW side by side for small
/// layers (below [`JOIN_MACS`]), one after the other for large ones.
fn backward_here<T: Element>(dout: ArrayView4<'_, T>, cache: &ConvCache<'_, T>) -> Result<ConvGrads<T>> {
    let plan = cache.plan;
    // Side by side: one parallel region, no worker idle (and put to sleep)
    // between the steps. One after the other, each step's tasks share the
    // caches. Side by side against one after the other, alternated:
    // CS231n 1.07-1.12x, (1,64,56,56) 3×3 1.11x, (16,16,32,32) 1.17x;
    // (50,32,32,32) 0.93x, ResNet's 3×3 layers 0.88-0.97x.
    let macs = [plan.n, plan.f, plan.p(), plan.k()]
        .iter()
        .fold(1usize, |a, &b| a.saturating_mul(b));
    gradients(dout, cache, macs < JOIN_MACS)
}

/// The gradients, dx and dW `side_by_side` (in one `join`) or one after
/// the other: the same values either way.
fn gradients<T: Element>(
    dout: ArrayView4<'_, T>,
    cache: &ConvCache<'_, T>,
    side_by_side: bool,
) -> Result<ConvGrads<T>> {
    let plan = cache.plan;
    let [oh, ow] = plan.geom.output();
    check::shape("dout", dout.shape(), &[plan.n, plan.f, oh, ow])?;
    let dout = dout.as_standard_layout();
    let douts = dout.as_slice().expect("standard layout");
    let images = cache.x.as_slice().expect("standard layout");
    let out_len = plan.f * plan.p();

    let input_step = || {
        if plan.n > 0 && out_len > 0 && plan.image_len() > 0 {
            input_gradient(cache, douts)
        } else {
            Ok((crate::output::zeros(cache.x.raw_dim()), None))
        }
    };
    let weight_step = || {
        if plan.n > 0 && out_len > 0 {
            weight_gradient(&plan, images, douts)
        } else {
            Ok(Array2::zeros((plan.f, plan.k())))
        }
    };
    let (dx_step, dw_step) = if side_by_side {
        rayon::join(input_step, weight_step)
    } else {
        (input_step(), weight_step())
    };
    let (dx, image_sums) = dx_step?;
    let dw = dw_step?;

    let p = plan.p();
    // db: per image (in parallel, read in order) each filter's pixels by
    // [`lane_sum`], then per filter the images' sums in order — the sums
    // of a per-filter loop over the images, in the same order, but
    // streaming through dout (against filters in parallel: 1.04-1.08x on
    // the CS231n backward pass, 1.01-1.04x on the 7×7 ResNet one). The
    // image-by-image dx route has them already.
    let plane_sums: Vec<T> = match image_sums {
        Some(sums) => sums,
        None if p == 0 => Vec::new(),
        None => douts.par_chunks(p).map(lane_sum).collect(),
    };
    let mut db = Array1::zeros(plan.f);
    for image in plane_sums.chunks_exact(plan.f.max(1)) {
        db.iter_mut().zip(image).for_each(|(acc, &s)| *acc += s);
    }

    let (_, _, kh, kw) = cache.w.dim();
    let dw = dw
        .into_shape_with_order((plan.f, plan.cg(), kh, kw))
        .expect("F·K elements");

    Ok(ConvGrads { dx, dw, db })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array;

    /// dx and dW side by side or one after the other: the same bits, on
    /// the column route (stride 2) and the flipped one (stride 1).
    #[test]
    fn side_by_side_gradients_equal_sequential_ones() {
        for (stride, pad) in [(2, 1), (1, 1)] {
            let value = |i: usize| ((i * 37 % 101) as f64 - 50.0) / 16.0;
            let x = Array::from_shape_fn((3, 4, 9, 9), |(a, b, c, d)| {
                value(a * 1000 + b * 100 + c * 10 + d)
            });
            let w = Array::from_shape_fn((5, 4, 3, 3), |(a, b, c, d)| {
                value(a * 300 + b * 30 + c * 3 + d + 7)
            });
            let b = Array1::from_shape_fn(5, |i| value(i + 11));
            let params = ConvParams::new(stride, pad);
            let (out, cache) = forward(x.view(), w.view(), b.view(), &params).unwrap();
            let dout = out.mapv(|v| v.sin());
            let joined = gradients(dout.view(), &cache, true).unwrap();
            let sequential = gradients(dout.view(), &cache, false).unwrap();
            let bits = |a: &[f64]| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            for (name, one, other) in [
                (
                    "dx",
                    joined.dx.as_slice().unwrap(),
                    sequential.dx.as_slice().unwrap(),
                ),
                (
                    "dw",
                    joined.dw.as_slice().unwrap(),
                    sequential.dw.as_slice().unwrap(),
                ),
                (
                    "db",
                    joined.db.as_slice().unwrap(),
                    sequential.db.as_slice().unwrap(),
                ),
            ] {
                assert_eq!(bits(one), bits(other), "{name}, stride {stride}");
            }
            assert!(
                joined.dw.iter().any(|&v| v != 0.0),
                "a gradient that is not all zero"
            );
        }
    }
}
