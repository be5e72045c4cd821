//! col2im of a whole column matrix by destination line: each image line's
//! values summed in registers from the column-matrix runs that land on it,
//! then written once.
//!
//! [`crate::Col2imPhases`] adds each column-matrix row into the image's
//! phase lines (a read-modify-write of a line per row and output row) and
//! then interleaves the phases into the image: three passes over the
//! image. Here, for each image line and each chunk of a vector of its
//! phase positions, the runs that land there (in the column matrix's row
//! order) are loaded and added in registers, the phases interleaved and
//! the image line written: one pass, nothing read back, nothing zeroed
//! first. Every pixel's sum has [`crate::col2im`]'s terms in its order, so
//! the bits are the same; the positions a run does not reach are added as
//! zeros, which leaves such a sum as it was (a sum started from +0 is
//! never −0).
//!
//! It needs the whole column matrix at once (every output row lands on
//! some image line), so it suits images whose column matrix fits in cache;
//! [`crate::Col2imPhases`] takes one band of output rows at a time. It
//! exists for column strides 1 and 2 with AVX-512 (masked loads make the
//! runs' ends free; two permutes interleave the phases); elsewhere
//! [`crate::Col2imPhases`] is the faster one (a portable version of this
//! pass measured 1.6x slower than it with AVX2).

use crate::error::{check_len, checked_product, Result};
use crate::gemm::gather::lanes_inside;
use crate::slot::Slot;
use crate::{Element, Window2d};
use std::ops::Range;

/// Which runs land on each image line, the same for every channel.
#[derive(Clone, Debug)]
pub struct LinePlan {
    /// Image height and width.
    pub(crate) h: usize,
    pub(crate) w: usize,
    /// Column stride (the number of phases).
    pub(crate) sw: usize,
    /// Column-matrix values per channel (KH·KW·OH·OW).
    pub(crate) channel_len: usize,
    /// Every line's runs of column-matrix values, line after line and
    /// phase after phase, each phase's in the column matrix's row order:
    /// position t of phase line φ (image column φ + t·SW) takes the value
    /// at `runs[r] + t` of its channel's column-matrix rows, where run r
    /// reaches (see `masks`).
    pub(crate) runs: Vec<isize>,
    /// The runs of phase φ of image line y: `runs[lines[y·SW + φ].clone()]`.
    pub(crate) lines: Vec<Range<usize>>,
    /// Vectors of `lanes` phase positions per phase line (the longest).
    pub(crate) chunks: usize,
    /// Per chunk and run, the lanes (positions t) whose output column lies
    /// in `0..OW`: run r's for chunk k at `masks[k·runs.len() + r]`.
    pub(crate) masks: Vec<u32>,
}

impl LinePlan {
    /// The plan of `geom`, its masks for vectors of `lanes` values.
    fn new(geom: &Window2d, lanes: usize) -> Self {
        let [h, w] = geom.input();
        let [kh, kw] = geom.kernel();
        let [sh, sw] = geom.stride();
        let [dh, dw] = geom.dilation();
        let [ph, pw] = geom.pad();
        let [oh, ow] = geom.output();
        let p = oh * ow;
        let chunks = w.div_ceil(sw).div_ceil(lanes);
        // Each run's start and shift: position t reads output column
        // t + shift.
        let (mut runs, mut shifts, mut lines) = (Vec::new(), Vec::new(), Vec::with_capacity(h * sw));
        let mut line = Vec::new();
        for y in 0..h {
            line.clear();
            for i in 0..kh {
                // Output row oy reads image row oy·SH + i·DH − PH.
                let Some(reach) = (y + ph).checked_sub(i * dh) else {
                    continue;
                };
                if reach % sh != 0 || reach / sh >= oh {
                    continue;
                }
                let row = i * kw * p + reach / sh * ow;
                for j in (0..kw).filter(|&j| !geom.valid_outputs(1, j).is_empty()) {
                    // Output column ox lands on image column X = ox·SW +
                    // j·DW − PW: phase X mod SW, position t = ox − shift.
                    let offset = (j * dw) as isize - pw as isize;
                    let phase = offset.rem_euclid(sw as isize) as usize;
                    let shift = (phase as isize - offset) / sw as isize;
                    let start = (row + j * p) as isize + shift;
                    line.push((phase, start, shift));
                }
            }
            for phase in 0..sw {
                let first = runs.len();
                for &(_, start, shift) in line.iter().filter(|(q, ..)| *q == phase) {
                    runs.push(start);
                    shifts.push(shift);
                }
                lines.push(first..runs.len());
            }
        }
        let masks = (0..chunks)
            .flat_map(|k| {
                let shifts = &shifts;
                shifts
                    .iter()
                    .map(move |&shift| lanes_inside((k * lanes) as isize + shift, ow, lanes))
            })
            .collect();
        LinePlan {
            h,
            w,
            sw,
            channel_len: geom.kernel_len() * p,
            runs,
            lines,
            chunks,
            masks,
        }
    }
}

/// Sums a plan's lines for `channels` channels: image line y of channel c
/// (`image[(c·H + y)·W..][..W]`) from `cols` (the channels' column
/// matrices, `channel_len` values each), every value written.
///
/// # Safety
/// `cols` holds `channels · channel_len` values; `image` is valid for
/// writes of `channels · H · W` values; the plan's column stride is 1 or
/// 2 and its masks are for vectors of the function's; the CPU supports
/// the function's instruction set.
pub(crate) type LineSumsFn<T> = unsafe fn(plan: &LinePlan, channels: usize, cols: &[T], image: *mut T);

/// Defines an AVX-512F [`LineSumsFn`] for column strides 1 and 2: a
/// vector of phase positions at a time, each run a masked load (zeros
/// where the run does not reach), the two phases of stride 2 interleaved
/// by two permutes.
macro_rules! line_sums_avx512 {
    ($name:ident, $t:ty, $vec:ty, $lanes:literal, $mask:ty,
     $zero:ident, $load:ident, $add:ident, $store:ident, $permute:ident, $index:ident, $index_ty:ty) => {
        /// See [`LineSumsFn`].
        ///
        /// # Safety
        /// As [`LineSumsFn`].
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        pub(crate) unsafe fn $name(plan: &LinePlan, channels: usize, cols: &[$t], image: *mut $t) {
            use std::arch::x86_64::*;
            debug_assert!(plan.sw <= 2, "column stride {} > 2", plan.sw);
            let (w, sw, chunks) = (plan.w, plan.sw, plan.chunks);
            // Lane l of the low half takes even lane l/2 (l even) or odd
            // lane l/2 (l odd; the second operand's lanes follow the
            // first's); the high half the same from LANES/2 on.
            let low: [$index_ty; $lanes] = std::array::from_fn(|l| ((l / 2) + (l % 2) * $lanes) as $index_ty);
            let high: [$index_ty; $lanes] =
                std::array::from_fn(|l| ((l / 2 + $lanes / 2) + (l % 2) * $lanes) as $index_ty);
            // SAFETY: arrays of LANES indices, read whole.
            let (low, high) = unsafe { ($index(low.as_ptr().cast()), $index(high.as_ptr().cast())) };
            // The sum of chunk k of phase runs `runs`, its lanes from t0.
            let sum = |cols: *const $t, runs: &Range<usize>, k: usize, t0: usize| {
                let masks = &plan.masks[k * plan.runs.len()..][runs.clone()];
                let mut sum = $zero();
                for (&start, &mask) in plan.runs[runs.clone()].iter().zip(masks) {
                    let at = cols.wrapping_offset(start + t0 as isize);
                    // SAFETY: the mask's lanes are those whose output
                    // column t + shift lies in 0..OW: values of the run's
                    // output row, inside `cols`.
                    sum = $add(sum, unsafe { $load(mask as $mask, at) });
                }
                sum
            };
            for c in 0..channels {
                let cols = cols[c * plan.channel_len..][..plan.channel_len].as_ptr();
                for (y, phases) in plan.lines.chunks_exact(sw).enumerate() {
                    let line = image.wrapping_add((c * plan.h + y) * w);
                    for k in 0..chunks {
                        let t0 = k * $lanes;
                        // SAFETY: the masks keep the stores to columns
                        // below W: inside line y of channel c.
                        unsafe {
                            if sw == 1 {
                                let mask = lanes_inside(t0 as isize, w, $lanes) as $mask;
                                $store(line.add(t0), mask, sum(cols, &phases[0], k, t0));
                            } else {
                                let (even, odd) =
                                    (sum(cols, &phases[0], k, t0), sum(cols, &phases[1], k, t0));
                                let x0 = 2 * t0;
                                let mask = lanes_inside(x0 as isize, w, $lanes) as $mask;
                                $store(line.add(x0), mask, $permute(even, low, odd));
                                let x1 = x0 + $lanes;
                                let mask = lanes_inside(x1 as isize, w, $lanes) as $mask;
                                $store(line.wrapping_add(x1), mask, $permute(even, high, odd));
                            }
                        }
                    }
                }
            }
        }
    };
}

line_sums_avx512!(
    line_sums_f32_avx512,
    f32,
    __m512,
    16,
    u16,
    _mm512_setzero_ps,
    _mm512_maskz_loadu_ps,
    _mm512_add_ps,
    _mm512_mask_storeu_ps,
    _mm512_permutex2var_ps,
    _mm512_loadu_si512,
    i32
);
line_sums_avx512!(
    line_sums_f64_avx512,
    f64,
    __m512d,
    8,
    u8,
    _mm512_setzero_pd,
    _mm512_maskz_loadu_pd,
    _mm512_add_pd,
    _mm512_mask_storeu_pd,
    _mm512_permutex2var_pd,
    _mm512_loadu_si512,
    i64
);

/// col2im of a whole column matrix, image line by image line (see the
/// module's notes): the same values as [`crate::col2im`], bit for bit,
/// written without zeroing the image first. Built once per shape, used
/// for any number of images.
///
/// ```
/// use patchwise_kernels::{col2im, Col2imLines, Window2d};
/// // 1×1×5 image, 1×3 kernel, stride 2: two windows overlapping at pixel 2.
/// let g = Window2d::new([1, 5], [1, 3], [2, 2], [0, 0], [1, 1]).unwrap();
/// let cols = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // 3 taps × 2 windows
/// let mut expected = [0.0f32; 5];
/// col2im(&cols, 1, &g, &mut expected).unwrap();
/// assert_eq!(expected, [1.0, 3.0, 5.0 + 2.0, 4.0, 6.0]);
/// // Where this CPU has the pass (AVX-512), the same bits.
/// if let Some(lines) = Col2imLines::new(1, &g) {
///     let mut image = [f32::NAN; 5];
///     lines.write(&cols, &mut image).unwrap();
///     assert_eq!(image, expected);
/// }
/// ```
#[derive(Clone, Debug)]
pub struct Col2imLines<T> {
    channels: usize,
    plan: LinePlan,
    sums: LineSumsFn<T>,
}

impl<T: Element> Col2imLines<T> {
    /// The col2im of `channels` channels through `geom`, or `None` where
    /// the pass does not exist (column stride over 2, or an instruction
    /// set without it: see the module's notes).
    pub fn new(channels: usize, geom: &Window2d) -> Option<Self> {
        let sums = T::col2im_lines(crate::isa::selected())?;
        (geom.stride()[1] <= 2).then(|| Col2imLines {
            channels,
            plan: LinePlan::new(geom, VECTOR_BYTES / std::mem::size_of::<T>()),
            sums,
        })
    }

    /// Writes into `image` (C·H·W values, overwritten) the col2im of
    /// `cols` (C·KH·KW × OH·OW, row-major).
    ///
    /// # Errors
    /// [`crate::Error::Shape`] if `cols` or `image` has the wrong length,
    /// [`crate::Error::Overflow`] if their sizes overflow.
    pub fn write(&self, cols: &[T], image: &mut [T]) -> Result<()> {
        self.write_slots(cols, image)
    }

    /// [`Self::write`] into slots of initialised or fresh memory.
    pub(crate) fn write_slots<S: Slot<T>>(&self, cols: &[T], image: &mut [S]) -> Result<()> {
        let plan = &self.plan;
        let cols_len = checked_product("cols elements", &[self.channels, plan.channel_len])?;
        check_len("cols", cols.len(), cols_len)?;
        check_len("image", image.len(), self.image_len())?;
        // SAFETY: lengths checked above; a slot has T's layout (Slot's
        // contract) and is only written; the plan's stride is 1 or 2 and
        // its masks for vectors of VECTOR_BYTES bytes, those of the
        // function, chosen for an instruction set this CPU supports.
        unsafe { (self.sums)(plan, self.channels, cols, image.as_mut_ptr().cast::<T>()) };
        Ok(())
    }

    /// Values of the image it writes (C·H·W).
    pub fn image_len(&self) -> usize {
        self.channels * self.plan.h * self.plan.w
    }
}

/// Bytes of the vectors the line sums work in (AVX-512's).
const VECTOR_BYTES: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    /// The line sums against `col2im`, bit for bit, over strides 1 and 2,
    /// paddings, dilations, odd widths and widths around the vector
    /// lengths; the image starts as NaN, so every value must be written.
    /// Stride 3 has none.
    fn check_all<T: Element>() {
        let shapes = [
            // (H, W, KH, KW, stride, pad, dilation)
            (5, 5, 3, 3, 2, 1, 1),
            (31, 31, 3, 3, 2, 1, 1),
            (7, 9, 3, 3, 1, 1, 1),
            (6, 40, 2, 3, 2, 0, 1),
            (9, 33, 3, 3, 2, 2, 2),
            (8, 17, 5, 5, 2, 4, 1),
            (4, 19, 1, 1, 2, 0, 1),
            (3, 20, 3, 7, 1, 3, 1),
            (11, 16, 4, 4, 2, 1, 1),
            (4, 70, 2, 9, 1, 0, 3),
        ];
        if T::col2im_lines(crate::isa::selected()).is_none() {
            eprintln!("no line sums on this CPU: nothing to check");
            return;
        }
        for (h, w, kh, kw, s, p, d) in shapes {
            let g = Window2d::new([h, w], [kh, kw], [s, s], [p, p], [d, d]).unwrap();
            let channels = 2;
            let cols: Vec<T> = (0..channels * g.kernel_len() * g.output_len())
                .map(|i| T::from_f64(((i * 37 % 101) as f64 - 50.0) / 8.0))
                .collect();
            let mut expected = vec![T::ZERO; channels * h * w];
            crate::col2im(&cols, channels, &g, &mut expected).unwrap();
            let lines = Col2imLines::<T>::new(channels, &g).expect("stride ≤ 2, AVX-512");
            let mut image = vec![T::from_f64(f64::NAN); expected.len()];
            lines.write(&cols, &mut image).unwrap();
            let bits = |v: &[T]| {
                v.iter()
                    .map(|&x| Element::to_f64(x).to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&image), bits(&expected), "{h}×{w}, {kh}×{kw}/{s} p{p} d{d}");
        }
        let stride3 = Window2d::new([8, 8], [3, 3], [3, 3], [1, 1], [1, 1]).unwrap();
        assert!(Col2imLines::<T>::new(1, &stride3).is_none());
    }

    #[test]
    fn line_sums_match_col2im_bit_for_bit() {
        check_all::<f32>();
        check_all::<f64>();
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let g = Window2d::new([4, 4], [3, 3], [2, 2], [1, 1], [1, 1]).unwrap();
        let Some(lines) = Col2imLines::<f32>::new(2, &g) else {
            return;
        };
        let cols: Vec<f32> = (0..2 * 9 * 4).map(|i| i as f32).collect();
        let mut image = vec![0.0f32; lines.image_len()];
        let short_cols = lines.write(&cols[1..], &mut image);
        assert!(
            matches!(short_cols, Err(Error::Shape { arg: "cols", .. })),
            "{short_cols:?}"
        );
        let short_image = lines.write(&cols, &mut image[1..]);
        assert!(
            matches!(short_image, Err(Error::Shape { arg: "image", .. })),
            "{short_image:?}"
        );
        lines.write(&cols, &mut image).unwrap();
        // Through an image sink: the same checks, and one more image than
        // the sink has room for.
        let short_sink = crate::col2im_images(1, lines.image_len() - 1, false, |_: &mut (), _, sink| {
            sink.write_lines(&lines, &cols)
        });
        assert!(
            matches!(short_sink, Err(Error::Shape { arg: "lines", .. })),
            "{short_sink:?}"
        );
        let (values, _) = crate::col2im_images(1, lines.image_len(), false, |_: &mut (), _, sink| {
            sink.write_lines(&lines, &cols)
        })
        .unwrap();
        assert_eq!(values, image);
    }
}
