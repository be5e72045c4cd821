//! The transposed implicit GEMM (a convolution's weight gradient,
//! `C = A · [im2col(x₀) … im2col(x_{N−1})]ᵀ`) with the im2col rows read in
//! place: the column matrices are never built or packed.
//!
//! The product is computed transposed, `Cᵀ = im2col · Aᵀ`: the im2col rows
//! (taps) are the rows of the micro-kernel's tile, the rows of A (filters)
//! its columns, and the sum runs over output pixels. On the wide grid of
//! [`super::direct`] (row length = the padded width, or a phase plane's
//! width for stride s > 1) every tap's row is one contiguous run of the
//! padded image, so a micro-kernel that broadcasts its A values one at a
//! time ([`super::kernel::ARowsKernelFn`]) reads them where they lie. Only A
//! is packed: per band of output rows, its columns widened to the wide grid
//! with zeros in the columns that are not output pixels — a fraction
//! (1 / taps) of what packing the column matrix would write. Each image
//! goes by itself (its last row's extra columns are not computed), so the
//! extra work is the extra columns of OH − 1 rows; with more than
//! [`WIDE_OVERHEAD_MAX`] of it (small images) the packed route is taken.
//!
//! Those zeros multiply image values the definition of C does not pair with
//! that tap: harmless for finite images, but 0·∞ = NaN. The bands are
//! checked as they are built (images read in place, before), and on a
//! value that is not finite the route gives way to the packed one.
//!
//! Work goes in bands of output rows, the bands in a fixed number of
//! groups (from the shape only) whose partial sums are added in group order
//! at the end; a group's taps may be split by channel ranges between tasks.
//! Every element's sum runs over the same bands and steps in the same order
//! whatever the thread count: results are bit-identical for any number of
//! threads, and serial equals parallel.

use super::direct::Source;
use super::kernel::ARowsKernel;
use super::pack::aligned;
use crate::{Element, Window2d};
use ndarray::{ArrayView3, ArrayViewMut2, Axis};
use rayon::prelude::*;
use std::ops::Range;

/// Wide pixels per band to aim for (two KC blocks).
const BAND_PIXELS: usize = 512;
/// Tasks to aim for: enough to balance a few threads (a fixed number, so
/// that the sums' order never depends on the thread count).
const TASKS: usize = 8;
/// Largest total size of the groups' partial sums, in elements.
const PARTIALS_MAX: usize = 1 << 22;
/// Fewest taps per channel range: below this, re-packing A per range costs
/// more than the split gains.
const RANGE_MIN_TAPS: usize = 256;
/// Taps per block of the final sum of the groups' partials.
const SUM_TAPS: usize = 64;
/// Fewest wide pixels per group: a group's partial sums (taps × M values
/// written, then read by the final sum) must be small next to its products.
const GROUP_PIXELS_MIN: usize = 2048;
/// Most wide-grid work per output pixel (see [`applies`]): the 14×14
/// ResNet layer's 13 % extra takes the packed route (1.08-1.10x on its
/// backward pass), the 28×28 one's 7 % stays (the routes tie there).
const WIDE_OVERHEAD_MAX: f64 = 1.1;

/// Whether the in-place route applies: C only written (beta = 0) and a
/// wide grid with at most [`WIDE_OVERHEAD_MAX`] extra work. (Small images
/// pay up to a third extra for their wide rows: there the packed route
/// wins.)
pub(crate) fn applies<T: Element>(beta: T, geom: &Window2d) -> bool {
    let wide = (geom.input()[1] + 2 * geom.pad()[1]).div_ceil(geom.stride()[1]);
    let [oh, ow] = geom.output();
    beta == T::ZERO && ((oh - 1) * wide + ow) as f64 <= WIDE_OVERHEAD_MAX * (oh * ow) as f64
}

fn all_finite<T: Element>(values: &[T]) -> bool {
    values.iter().fold(true, |ok, v| ok & v.is_finite())
}

/// One band: output rows `rows` of image `image`.
#[derive(Clone)]
struct Band {
    image: usize,
    rows: Range<usize>,
}

/// `C ← alpha·Σₙ Aₙ·im2col(xₙ)ᵀ` (A is (count, M, OH·OW), C is
/// (M, C·KH·KW)); shapes checked and [`applies`] true. Returns false, C
/// untouched, when an image value the wide grid pairs with a zero of A is
/// not finite: the caller takes another route.
#[allow(clippy::too_many_arguments)]
pub(crate) fn im2col_transposed_product<T: Element>(
    kern: &ARowsKernel<T>,
    alpha: T,
    a: ArrayView3<'_, T>,
    (images, image_stride): (&[T], usize),
    channels: usize,
    geom: &Window2d,
    mut c: ArrayViewMut2<'_, T>,
    parallel: bool,
) -> bool {
    let (count, m, _) = a.dim();
    let taps_per_channel = geom.kernel_len();
    let taps = channels * taps_per_channel;
    let plane = geom.input_len();
    // Image n's channel range: bands built (padding, phase planes) or, with
    // stride 1 and no padding, read in place.
    let in_place = geom.pad() == [0, 0] && geom.stride() == [1, 1];
    let source = |n: usize, range: &Range<usize>, band_rows: usize| {
        let first = n * image_stride + range.start * plane;
        let mut s = Source::new((&images[first..], 1, image_stride), range.len(), geom);
        s.band_rows = band_rows;
        s
    };
    let wide = source(0, &(0..channels), 1).wide;
    // Where the wide grid is wider than the output, its extra columns' zeros
    // of A meet image values, which must then be finite. Built bands are
    // checked as they are built; images read in place are checked here.
    let [oh, ow] = geom.output();
    let extra = wide != ow;
    if extra && in_place && !(0..count).all(|n| all_finite(&images[n * image_stride..][..channels * plane])) {
        return false;
    }
    let band_rows = BAND_PIXELS.div_ceil(wide).clamp(1, oh);
    let bands: Vec<Band> = (0..count)
        .flat_map(|image| {
            (0..oh).step_by(band_rows).map(move |r| Band {
                image,
                rows: r..(r + band_rows).min(oh),
            })
        })
        .collect();

    // Groups of consecutive bands (partial sums; their sizes differ by one
    // at most) and channel ranges (the taps split between tasks).
    let pixels = count * ((oh - 1) * wide + ow);
    let groups = bands
        .len()
        .min(TASKS)
        .min((PARTIALS_MAX / (taps * m)).max(1))
        .min((pixels / GROUP_PIXELS_MIN).max(1));
    let unit = kern.mr / gcd(kern.mr, taps_per_channel);
    let range_channels = (RANGE_MIN_TAPS.div_ceil(taps_per_channel).div_ceil(unit) * unit)
        .max(channels.div_ceil(TASKS.div_ceil(groups)).div_ceil(unit) * unit);
    let ranges: Vec<Range<usize>> = (0..channels)
        .step_by(range_channels)
        .map(|c0| c0..(c0 + range_channels).min(channels))
        .collect();

    // A's packed columns per band: with several channel ranges every
    // range's task needs them, so they are packed once, up front, in
    // parallel (every task re-packing them took 10 % of the 14×14 ResNet
    // backward: 1.06× on it, alternated call by call); with one range
    // each task packs its bands as it goes, into a buffer kept in cache.
    let panels = m.div_ceil(kern.nr);
    let band_len = |band: &Band| panels * band_pixels(band, wide, ow).len() * kern.nr;
    let mut prepacked_buf = Vec::new();
    let mut prepacked: Vec<&[T]> = Vec::new();
    if ranges.len() > 1 {
        let total = bands.iter().map(band_len).sum();
        let mut rest = aligned(&mut prepacked_buf, total);
        let mut parts = Vec::with_capacity(bands.len());
        for band in &bands {
            let (part, tail) = rest.split_at_mut(band_len(band));
            rest = tail;
            parts.push((band, part));
        }
        let pack = |(band, part): (&Band, &mut [T])| pack_band(kern, (band, wide, [oh, ow]), a, m, part);
        if parallel {
            parts.par_iter_mut().for_each(|(band, part)| pack((band, part)));
        } else {
            parts.iter_mut().for_each(|(band, part)| pack((band, part)));
        }
        prepacked = parts.into_iter().map(|(_, part)| &*part).collect();
    }

    let mut partials = vec![T::ZERO; groups * taps * m];
    let mut tasks = Vec::new();
    for (g, part) in partials.chunks_exact_mut(taps * m).enumerate() {
        let group = g * bands.len() / groups..(g + 1) * bands.len() / groups;
        let mut rest = part;
        for range in &ranges {
            let (mine, tail) = rest.split_at_mut(range.len() * taps_per_channel * m);
            rest = tail;
            tasks.push((group.clone(), range.clone(), mine));
        }
    }
    // Each task: its group's bands on its channel range; false as soon as
    // a band that needs it is not finite.
    let check = extra && !in_place;
    let task = |(group, range, out): (Range<usize>, Range<usize>, &mut [T]),
                (band_buf, panel_buf): &mut (Vec<T>, Vec<T>)| {
        group.enumerate().all(|(i, index)| {
            let band = &bands[index];
            let s = source(band.image, &range, band_rows);
            let packed = match prepacked.get(index) {
                Some(&packed) => packed,
                None => {
                    let packed = aligned(panel_buf, band_len(band));
                    pack_band(kern, (band, wide, [oh, ow]), a, m, packed);
                    &*packed
                }
            };
            run_band(kern, (&s, band), (packed, band_buf), (out, m), (i == 0, check))
        })
    };
    let finite = if parallel && tasks.len() > 1 {
        tasks
            .into_par_iter()
            .map_init(Default::default, |bufs, t| task(t, bufs))
            .reduce(|| true, |x, y| x & y)
    } else {
        let mut bufs = Default::default();
        tasks.into_iter().all(|t| task(t, &mut bufs))
    };
    if !finite {
        return false;
    }

    // C[f, k] = alpha · Σ_g partial_g[k, f], groups in order, SUM_TAPS taps
    // at a time: their rows summed contiguously, then written across.
    let sum = |(block, mut c): (usize, ArrayViewMut2<'_, T>), acc: &mut Vec<T>| {
        let k0 = block * SUM_TAPS;
        let len = c.ncols();
        acc.clear();
        acc.extend_from_slice(&partials[k0 * m..(k0 + len) * m]);
        for g in 1..groups {
            let part = &partials[(g * taps + k0) * m..][..len * m];
            acc.iter_mut().zip(part).for_each(|(a, &v)| *a += v);
        }
        for (f, mut row) in c.outer_iter_mut().enumerate() {
            row.iter_mut()
                .zip(acc[f..].iter().step_by(m))
                .for_each(|(out, &v)| *out = alpha * v);
        }
    };
    let blocks = c.axis_chunks_iter_mut(Axis(1), SUM_TAPS);
    if parallel {
        blocks
            .into_par_iter()
            .enumerate()
            .for_each_init(Vec::new, |acc, b| sum(b, acc));
    } else {
        let mut acc = Vec::new();
        blocks.enumerate().for_each(|b| sum(b, &mut acc));
    }
    true
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The band's wide pixels: `rows.start·wide .. (rows.end − 1)·wide + OW`
/// (its last row's extra columns not computed).
fn band_pixels(band: &Band, wide: usize, ow: usize) -> Range<usize> {
    band.rows.start * wide..(band.rows.end - 1) * wide + ow
}

/// Packs A's columns for a band's wide pixels into `packed`
/// (⌈M/NR⌉·width·NR values), NR rows (filters) per panel: step t of panel
/// jp holds A[·, jp·NR + j] at wide pixel q.start + t, zero in the wide
/// grid's extra columns and the last panel's unused lanes.
fn pack_band<T: Element>(
    kern: &ARowsKernel<T>,
    (band, wide, [oh, ow]): (&Band, usize, [usize; 2]),
    a: ArrayView3<'_, T>,
    m: usize,
    packed: &mut [T],
) {
    let nr = kern.nr;
    let width = band_pixels(band, wide, ow).len();
    let image = a.index_axis(Axis(0), band.image);
    let contiguous = image.as_slice();
    let mut filter_rows: Vec<&[T]> = Vec::with_capacity(nr);
    for (local, y) in band.rows.clone().enumerate() {
        // The next row's filter rows, 25 short runs in as many planes on
        // the CS231n layer, are fetched while this one is packed (1.02-1.04×
        // on its backward pass; neutral on the ResNet layers).
        if let (Some(values), true) = (contiguous, y + 1 < band.rows.end) {
            for f in 0..m {
                let next = &values[f * oh * ow + (y + 1) * ow..][..ow];
                let lines = next.chunks(64 / std::mem::size_of::<T>());
                lines
                    .map(<[T]>::as_ptr)
                    .chain(next.last().map(std::ptr::from_ref))
                    .for_each(prefetch);
            }
        }
        let at = local * wide;
        let end = (at + wide).min(width);
        for (jp, panel) in packed.chunks_exact_mut(width * nr).enumerate() {
            let steps = &mut panel[at * nr..end * nr];
            let (pixels, extra) = steps.split_at_mut(ow * nr);
            extra.fill(T::ZERO);
            let filters = jp * nr..m.min((jp + 1) * nr);
            match contiguous {
                Some(values) => {
                    // The panel's filters' pixels of row y, transposed (the
                    // last panel's unused lanes get zeros).
                    filter_rows.clear();
                    filter_rows.extend(filters.map(|f| &values[f * oh * ow + y * ow..][..ow]));
                    // SAFETY: the packing function belongs to the kernel
                    // chosen for a supported instruction set.
                    unsafe { (kern.pack)(&filter_rows, ow, nr, pixels) };
                }
                None => {
                    for (j, f) in filters.clone().enumerate() {
                        let src = image.slice(ndarray::s![f, y * ow..(y + 1) * ow]);
                        pixels
                            .chunks_exact_mut(nr)
                            .zip(src.iter())
                            .for_each(|(d, &v)| d[j] = v);
                    }
                    let used = filters.len();
                    pixels.chunks_exact_mut(nr).for_each(|d| d[used..].fill(T::ZERO));
                }
            }
        }
    }
}

/// Asks for the cache line holding `at` (a hint: no effect on results).
fn prefetch<T>(at: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86-64; a prefetch never faults.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast())
    };
}

/// Adds one band's products to `out` (the source's taps × M, row-major;
/// written, not read, when `first`), A's columns packed by [`pack_band`].
/// With `check`, returns false (and does nothing) if the built band holds
/// a value that is not finite.
fn run_band<T: Element>(
    kern: &ARowsKernel<T>,
    (source, band): (&Source<'_, T>, &Band),
    (packed, band_buf): (&[T], &mut Vec<T>),
    (out, m): (&mut [T], usize),
    (first, check): (bool, bool),
) -> bool {
    let (mr, nr) = (kern.mr, kern.nr);
    let ow = source.geom.output()[1];
    let q = band_pixels(band, source.wide, ow);
    let width = q.len();
    let (data, base) = source.band(band.rows.clone(), 0, band_buf);
    if check && !all_finite(data) {
        return false;
    }
    let offsets = source.offsets();
    let taps = offsets.len();
    let panels = m.div_ceil(nr);
    let from = q.start - base;
    let reach = offsets.iter().copied().max().unwrap_or(0) as usize;
    assert!(
        reach + from + width <= data.len() && mr <= 16,
        "in-place dW: a tap run leaves the band"
    );
    for jp in 0..panels {
        let cols = nr.min(m - jp * nr);
        for t0 in (0..width).step_by(kern.kc) {
            let kc = kern.kc.min(width - t0);
            let b = &packed[(jp * width + t0) * nr..][..kc * nr];
            let beta = if first && t0 == 0 { T::ZERO } else { T::ONE };
            for i in (0..taps).step_by(mr) {
                let rows_here = mr.min(taps - i);
                // Row pointers; a partial panel repeats its first row (its
                // results are not stored).
                let mut a_rows = [data.as_ptr(); 16];
                for (ii, ptr) in a_rows.iter_mut().take(mr).enumerate() {
                    let tap = if ii < rows_here { i + ii } else { i };
                    // SAFETY: offsets[tap] + from + t0 + kc ≤ reach + from +
                    // width ≤ data.len() (asserted above): a pointer into
                    // `data` with kc values after it.
                    *ptr = unsafe { data.as_ptr().add(offsets[tap] as usize + from + t0) };
                }
                // SAFETY: MR row pointers with kc values each (above), kc·NR
                // packed values at `b`, and the tile (rows_here × cols at
                // row i, column jp·NR of `out`, row stride m) lies in `out`,
                // which aliases neither.
                unsafe {
                    (kern.run)(
                        kc,
                        a_rows.as_ptr(),
                        b.as_ptr(),
                        out.as_mut_ptr().add(i * m + jp * nr),
                        m as isize,
                        1,
                        rows_here,
                        cols,
                        T::ONE,
                        beta,
                    );
                }
            }
        }
    }
    true
}
