//! Convolution on the host: im2col and col2im (the data movement of the GPU's im2col
//! path; `shaders/conv.wgsl` follows the same index arithmetic), and the fused forward and
//! backward passes the CPU backend runs.
//!
//! The fused passes work image by image, each image on one rayon task: its column matrix
//! (`[rows, L]`, a few hundred KiB at most) stays in the core's cache between being
//! unfolded and being multiplied, where a whole batch's columns would go through memory.
//! The output is prefilled with the bias so that the GEMM accumulates onto it (beta = 1)
//! instead of a separate broadcast pass. Direct loops over kernel taps (one `axpy` per tap
//! and output row) were measured slower than this even for one input channel and a 3x3
//! kernel, where the GEMM contracts over only 9 rows: their rows of 26 elements leave the
//! loop overhead larger than the arithmetic.
//!
//! Every output element is computed by one task in a fixed order, so results do not depend
//! on the thread count. The weight gradient, a sum over images, is summed per fixed chunk
//! of [`WEIGHT_GRAD_IMAGES`] images and the chunks added in order.

use super::alloc;
use rayon::prelude::*;

use super::gemm::{sgemm, Strided, Threads};
use super::packed;

pub use crate::op::conv::{ColumnLayout, ConvGeometry};
use crate::op::layout::Layout;

impl ConvGeometry {
    /// The outputs `lo..hi` along axis `a` whose tap `k` lands inside the input; output
    /// `o` then reads input `o * stride + k * dilation - padding`.
    fn inside(&self, a: usize, k: usize) -> std::ops::Range<usize> {
        let (extent, n) = if a == 0 { (self.height, self.out[0]) } else { (self.width, self.out[1]) };
        let (s, shift) = (self.stride[a], k * self.dilation[a]);
        // Smallest o with o * s + shift >= padding, and one past the largest with
        // o * s + shift < padding + extent.
        let lo = self.padding[a].saturating_sub(shift).div_ceil(s);
        let hi = (self.padding[a] + extent).saturating_sub(shift).div_ceil(s);
        lo.min(n)..hi.min(n).max(lo.min(n))
    }
}

/// Images whose weight-gradient contributions one task sums before the chunks are added
/// in order: a constant, so the summation order does not depend on the thread count.
pub const WEIGHT_GRAD_IMAGES: usize = 4;

/// Calls `f(row, q, src, step, len)` for every run of column entries of image `n` of the
/// view `lx` that lie inside the input: row `row` of the column matrix, positions
/// `q..q + len`, read from `x[src + i * step]`. Entries that fall in the padding are not
/// visited.
#[inline(always)]
fn for_each_unfold_run(lx: &Layout, g: &ConvGeometry, n: usize, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    let [kh, kw] = g.kernel;
    let ow = g.out[1];
    let s = &lx.strides;
    for c in 0..g.channels {
        for ki in 0..kh {
            for kj in 0..kw {
                let row = (c * kh + ki) * kw + kj;
                let xs = g.inside(1, kj);
                if xs.is_empty() {
                    continue;
                }
                // Input column of the first output inside, and the step between outputs.
                let x0 = xs.start * g.stride[1] + kj * g.dilation[1] - g.padding[1];
                let step = g.stride[1] * s[3];
                for oy in g.inside(0, ki) {
                    let y = oy * g.stride[0] + ki * g.dilation[0] - g.padding[0];
                    let base = lx.offset + n * s[0] + c * s[1] + y * s[2] + x0 * s[3];
                    f(row, oy * ow + xs.start, base, step, xs.len());
                }
            }
        }
    }
}

/// Unfolds image `n` of the view `lx` of `x` into `dst`, whose row `r` starts at
/// `r * r_stride` and holds the image's `L` positions; entries that fall in the padding are
/// left as they are (the caller zeroes `dst` when the geometry has any).
fn unfold_image(x: &[f32], lx: &Layout, g: &ConvGeometry, n: usize, dst: &mut [f32], r_stride: usize) {
    // The runs are an output row long (a few dozen floats), where a call to `memcpy` costs
    // more than the copy: on AVX-512 they are masked vector moves inlined into the loop.
    if packed::available() {
        return packed::with_short_copies(|copier| {
            for_each_unfold_run(lx, g, n, |row, q, base, step, len| {
                let d = &mut dst[row * r_stride + q..][..len];
                if step == 1 {
                    for (i, piece) in d.chunks_mut(packed::NR).enumerate() {
                        let from = base + i * packed::NR;
                        copier.copy(piece, &x[from..from + piece.len()]);
                    }
                } else {
                    for (k, v) in d.iter_mut().enumerate() {
                        *v = x[base + k * step];
                    }
                }
            })
        });
    }
    for_each_unfold_run(lx, g, n, |row, q, base, step, len| {
        let d = &mut dst[row * r_stride + q..][..len];
        if step == 1 {
            d.copy_from_slice(&x[base..base + len]);
        } else {
            for (k, v) in d.iter_mut().enumerate() {
                *v = x[base + k * step];
            }
        }
    });
}

/// Unfolds image `n` of the view `lx` of `x` straight into the packed layout of
/// [`packed`] (panels of [`packed::NR`] positions), one packed matrix of `rows` rows per
/// group one after another; entries in the padding are left as they are.
fn unfold_image_packed(x: &[f32], lx: &Layout, g: &ConvGeometry, n: usize, rows: usize, dst: &mut [f32]) {
    let per_group = packed::packed_len(rows, g.positions());
    packed::with_short_copies(|copier| {
        for_each_unfold_run(lx, g, n, |row, q, base, step, len| {
            let group = (row / rows) * per_group;
            let r = row % rows;
            // A run of positions is contiguous within a panel: split it where panels change.
            let mut done = 0;
            while done < len {
                let at = group + packed::packed_index(rows, r, q + done);
                let piece = (packed::NR - (q + done) % packed::NR).min(len - done);
                let src = base + done * step;
                let d = &mut dst[at..at + piece];
                if step == 1 {
                    copier.copy(d, &x[src..src + piece]);
                } else {
                    for (k, v) in d.iter_mut().enumerate() {
                        *v = x[src + k * step];
                    }
                }
                done += piece;
            }
        })
    });
}

/// True when some window reaches into the padding, so column entries must be zeroed.
fn has_overhang(g: &ConvGeometry) -> bool {
    (0..2).any(|a| {
        let k = g.kernel[a];
        g.padding[a] > 0 || (0..k).any(|t| g.inside(a, t).len() < g.out[a])
    })
}

/// The column matrix of the view `lx` (shape `[N, C, H, W]`) of `x`, in `cols` layout;
/// zeros where a window overhangs the padding.
pub fn im2col(x: &[f32], lx: &Layout, g: &ConvGeometry, cols: ColumnLayout) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(g.batch * g.rows() * g.positions(), "conv");
    for n in 0..g.batch {
        unfold_image(x, lx, g, n, &mut out[n * cols.n_stride..], cols.r_stride);
    }
    out
}

/// Adds into the `[C, H, W]` image `plane` every column entry of one image's columns
/// (row `r` at `cols[r * r_stride..]`) that was read from each input position, in the
/// kernel's order (ki, then kj, per element), so both devices sum overlapping windows
/// identically.
fn fold_image(cols: &[f32], r_stride: usize, g: &ConvGeometry, image: &mut [f32]) {
    // The runs are an output row long (a few dozen floats): on AVX-512 they are added by
    // masked vector moves inlined into the loop, elsewhere by `axpy`. Either way each
    // element gets `dst + src`, in the same order: the same bits.
    #[cfg(target_arch = "x86_64")]
    if g.stride[1] == 1 && packed::available() {
        let [h, w] = [g.height, g.width];
        assert!(image.len() >= g.channels * h * w, "conv fold: an image of {} elements", image.len());
        let rows = g.rows();
        assert!(rows == 0 || cols.len() >= (rows - 1) * r_stride + g.positions(), "conv fold: columns too short");
        // SAFETY: the CPU has AVX-512F, and the operands hold the shapes (checked above).
        return unsafe { avx512_fold::fold_rows(cols, r_stride, g, image) };
    }
    fold_image_portable(cols, r_stride, g, image)
}

/// [`fold_image`] on any CPU: one `axpy` per run of a column row.
fn fold_image_portable(cols: &[f32], r_stride: usize, g: &ConvGeometry, image: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let ow = g.out[1];
    let (h, w) = (g.height, g.width);
    for c in 0..g.channels {
        let plane = &mut image[c * h * w..][..h * w];
        for ki in 0..kh {
            for kj in 0..kw {
                let row = ((c * kh + ki) * kw + kj) * r_stride;
                let xs = g.inside(1, kj);
                if xs.is_empty() {
                    continue;
                }
                let x0 = xs.start * g.stride[1] + kj * g.dilation[1] - g.padding[1];
                for oy in g.inside(0, ki) {
                    let y = oy * g.stride[0] + ki * g.dilation[0] - g.padding[0];
                    let src = &cols[row + oy * ow + xs.start..row + oy * ow + xs.end];
                    if g.stride[1] == 1 {
                        axpy(&mut plane[y * w + x0..][..src.len()], 1.0, src);
                    } else {
                        for (k, v) in src.iter().enumerate() {
                            plane[y * w + x0 + k * g.stride[1]] += v;
                        }
                    }
                }
            }
        }
    }
}

/// [`fold_image`] with unit column stride on AVX-512: each row of each image plane is
/// held in registers (16 columns at a time) while every column entry that lands in it is
/// added, tap by tap in the kernel's order, then stored once. Adding run by run into
/// memory instead reloads each row right after a masked store to an overlapping range,
/// which the CPU cannot forward. Each element gets the same additions in the same order
/// as the portable loop: the same bits.
#[cfg(target_arch = "x86_64")]
mod avx512_fold {
    use super::ConvGeometry;
    use std::arch::x86_64::*;

    /// # Safety
    ///
    /// The CPU has AVX-512F, `g.stride[1] == 1`, `image` holds `C * H * W` elements and
    /// `cols` every row of `r_stride` (the last `L` long).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fold_rows(cols: &[f32], r_stride: usize, g: &ConvGeometry, image: &mut [f32]) {
        let [kh, kw] = g.kernel;
        let (h, w, ow) = (g.height, g.width, g.out[1]);
        // Per kj: the first output column inside, how many, and the image column it hits.
        let runs: Vec<(usize, usize, usize)> = (0..kw)
            .map(|kj| {
                let xs = g.inside(1, kj);
                let x0 = if xs.is_empty() { 0 } else { xs.start + kj * g.dilation[1] - g.padding[1] };
                (xs.start, xs.len(), x0)
            })
            .collect();
        let col = cols.as_ptr();
        for c in 0..g.channels {
            for y in 0..h {
                // The output row of tap row ki that reads image row y, if any.
                let output_row = |ki: usize| {
                    let t = (y + g.padding[0]).checked_sub(ki * g.dilation[0])?;
                    (t % g.stride[0] == 0 && t / g.stride[0] < g.out[0]).then_some(t / g.stride[0])
                };
                let row = c * h * w + y * w;
                for chunk in (0..w).step_by(16) {
                    let lanes = (w - chunk).min(16);
                    let keep: __mmask16 = if lanes == 16 { 0xffff } else { (1u16 << lanes) - 1 };
                    // SAFETY (the chunk): lanes past the row are masked off; every column
                    // entry read lies inside `cols` (lanes outside each run are masked off,
                    // so the pointer may point before a run without any lane read there).
                    unsafe {
                        let dst = image.as_mut_ptr().add(row + chunk);
                        let mut acc = _mm512_maskz_loadu_ps(keep, dst);
                        for ki in 0..kh {
                            let Some(oy) = output_row(ki) else { continue };
                            for (kj, &(start, len, x0)) in runs.iter().enumerate() {
                                let (lo, hi) = (x0.max(chunk), (x0 + len).min(chunk + lanes));
                                if lo >= hi {
                                    continue;
                                }
                                let bits = ((1u32 << (hi - chunk)) - (1u32 << (lo - chunk))) as __mmask16;
                                let r = ((c * kh + ki) * kw + kj) * r_stride + oy * ow + start;
                                // Lane `x - chunk` reads column entry `r + x - x0`.
                                let src = col.wrapping_add(r + chunk).wrapping_sub(x0);
                                acc = _mm512_mask_add_ps(acc, bits, acc, _mm512_maskz_loadu_ps(bits, src));
                            }
                        }
                        _mm512_mask_storeu_ps(dst, keep, acc);
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: a contiguous `[N, C, H, W]` batch in which every element is
/// the sum of the column entries that were read from it. `cols` starts at `offset`.
pub fn col2im(cols: &[f32], offset: usize, layout: ColumnLayout, g: &ConvGeometry) -> Vec<f32> {
    let image = g.channels * g.height * g.width;
    let mut out = alloc::zeroed::<f32>(g.batch * image, "conv");
    for (n, dst) in out.chunks_mut(image.max(1)).enumerate() {
        fold_image(&cols[offset + n * layout.n_stride..], layout.r_stride, g, dst);
    }
    out
}

/// `y += a * x` over two slices of equal length, with AVX2 and FMA where the CPU has them
/// (the crate is built for the x86-64 baseline, whose SSE2 loop does half the work per
/// instruction).
#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    debug_assert_eq!(y.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function is compiled for.
            return unsafe { axpy_fma(y, a, x) };
        }
    }
    for (d, &v) in y.iter_mut().zip(x) {
        *d += a * v;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_fma(y: &mut [f32], a: f32, x: &[f32]) {
    for (d, &v) in y.iter_mut().zip(x) {
        *d = a.mul_add(v, *d);
    }
}

/// `C = A B + beta C` on this thread (the callers run one image per rayon task), `A` and
/// `B` given as slices starting at their first element with `(row, column)` strides.
#[allow(clippy::too_many_arguments)]
fn gemm(
    mkn: (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    beta: f32,
    c: &mut [f32],
    rsc: usize,
) {
    let operand =
        |data, rs: usize, cs: usize| Strided { data, offset: 0, row_stride: rs as isize, col_stride: cs as isize };
    sgemm(mkn, operand(a, rsa, csa), operand(b, rsb, csb), beta, c, rsc, Threads::Caller);
}

/// The channel split of a grouped convolution: `(groups, input channels per group,
/// output channels per group, column rows per group)`.
#[derive(Clone, Copy, Debug)]
pub struct Groups {
    pub groups: usize,
    pub in_per_group: usize,
    pub out_per_group: usize,
    pub rows: usize,
}

impl Groups {
    /// The split of `g` into `groups` groups with `out_channels` outputs in all.
    pub fn new(g: &ConvGeometry, groups: usize, out_channels: usize) -> Groups {
        let in_per_group = g.channels / groups;
        Groups {
            groups,
            in_per_group,
            out_per_group: out_channels / groups,
            rows: in_per_group * g.kernel[0] * g.kernel[1],
        }
    }

    fn out_channels(&self) -> usize {
        self.groups * self.out_per_group
    }
}

/// The forward convolution of the `[N, C, H, W]` view `lx` of `x` with contiguous weights
/// `w` (`[out, C / groups, kh, kw]`) and an optional bias, as a contiguous `[N, out, oh, ow]`
/// batch.
pub fn conv2d(x: &[f32], lx: &Layout, w: &[f32], bias: Option<&[f32]>, g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    if packed::available() {
        // The gathered form reads the input in place where the unfold copies the column
        // matrix in short runs: it wins where the columns outnumber the outputs (more rows
        // per group than output channels per group).
        if g.stride == [1, 1] && gr.rows > gr.out_per_group {
            return conv2d_gathered(x, lx, w, bias, g, gr);
        }
        return conv2d_packed(x, lx, w, bias, g, gr);
    }
    conv2d_portable(x, lx, w, bias, g, gr)
}

/// [`conv2d`] on any CPU: per image, im2col and [`sgemm`] onto the output prefilled with
/// the bias.
fn conv2d_portable(x: &[f32], lx: &Layout, w: &[f32], bias: Option<&[f32]>, g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    let positions = g.positions();
    let image_out = gr.out_channels() * positions;
    let mut out = alloc::zeroed::<f32>(g.batch * image_out, "conv");
    if image_out == 0 {
        return out;
    }
    let zero_columns = has_overhang(g);
    out.par_chunks_mut(image_out).enumerate().for_each_init(
        || alloc::zeroed::<f32>(g.rows() * positions, "conv"),
        |cols, (n, y)| {
            if let Some(b) = bias {
                for (row, &v) in y.chunks_mut(positions).zip(b) {
                    row.fill(v);
                }
            }
            if zero_columns {
                cols.fill(0.0);
            }
            unfold_image(x, lx, g, n, cols, positions);
            for grp in 0..gr.groups {
                gemm(
                    (gr.out_per_group, gr.rows, positions),
                    &w[grp * gr.out_per_group * gr.rows..],
                    (gr.rows, 1),
                    &cols[grp * gr.rows * positions..],
                    (positions, 1),
                    1.0,
                    &mut y[grp * gr.out_per_group * positions..],
                    positions,
                );
            }
        },
    );
    out
}

/// [`conv2d`] on the AVX-512 kernel of [`packed`]: each image is unfolded straight into
/// packed panels (no separate packing pass) and multiplied with the accumulators starting
/// from the bias, so the output is written once, by the product, and never zeroed first.
fn conv2d_packed(x: &[f32], lx: &Layout, w: &[f32], bias: Option<&[f32]>, g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    let positions = g.positions();
    let image_out = gr.out_channels() * positions;
    let per_group = packed::packed_len(gr.rows, positions);
    let zero_columns = has_overhang(g);
    let mut out = Vec::new();
    if out.try_reserve_exact(g.batch * image_out).is_err() {
        panic!("{}", alloc::out_of_memory("conv", g.batch * image_out, 4));
    }
    let uninit = &mut out.spare_capacity_mut()[..g.batch * image_out];
    if image_out > 0 {
        uninit.par_chunks_mut(image_out).enumerate().for_each_init(
            || packed::AlignedBuf::zeroed(gr.groups * per_group, "conv"),
            |cols, (n, y)| {
                let cols = cols.as_mut_slice();
                if zero_columns {
                    cols.fill(0.0);
                }
                unfold_image_packed(x, lx, g, n, gr.rows, cols);
                for grp in 0..gr.groups {
                    let start = match bias {
                        Some(b) => packed::Start::RowBias(&b[grp * gr.out_per_group..]),
                        None => packed::Start::Zero,
                    };
                    packed::gemm_uninit(
                        (gr.out_per_group, gr.rows, positions),
                        &w[grp * gr.out_per_group * gr.rows..],
                        gr.rows,
                        &cols[grp * per_group..],
                        start,
                        &mut y[grp * gr.out_per_group * positions..],
                        positions,
                    );
                }
            },
        );
    }
    // SAFETY: the images cover the output, and each image's product writes every element
    // of its `[out, L]` block.
    unsafe { out.set_len(g.batch * image_out) };
    out
}

/// [`conv2d`] position by position on the gathered kernel of [`packed`]
/// ([`packed::gemm_gathered_transposed`]): a tile is six output positions by up to 64
/// output channels, each step of the contraction broadcasting one tap of the six windows
/// straight from the (padded) input planes and multiplying it by a row of the transposed
/// weights, packed once per call. Nothing is unfolded per image, any number of positions
/// fills the tiles, and the tile is stored transposed into the `[out, L]` output.
///
/// A padded geometry, or an input view whose planes are not contiguous, is first copied
/// into zero-bordered contiguous planes, one image at a time.
fn conv2d_gathered(x: &[f32], lx: &Layout, w: &[f32], bias: Option<&[f32]>, g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    let positions = g.positions();
    let image_out = gr.out_channels() * positions;
    let windows = Windows::new(g, lx);
    let (opg, rows) = (gr.out_per_group, gr.rows);
    let per_group = packed::packed_len(rows, opg);
    let mut weights = packed::AlignedBuf::zeroed(gr.groups * per_group, "conv");
    for grp in 0..gr.groups {
        let wg = &w[grp * opg * rows..][..opg * rows];
        packed::pack_b(rows, opg, wg, (1, rows), &mut weights.as_mut_slice()[grp * per_group..][..per_group]);
    }
    let weights = weights.as_slice();
    let mut out = Vec::new();
    if out.try_reserve_exact(g.batch * image_out).is_err() {
        panic!("{}", alloc::out_of_memory("conv", g.batch * image_out, 4));
    }
    let uninit = &mut out.spare_capacity_mut()[..g.batch * image_out];
    if image_out > 0 {
        let scratch = || if windows.in_place { Vec::new() } else { alloc::zeroed::<f32>(windows.image_len, "conv") };
        uninit.par_chunks_mut(image_out).enumerate().for_each_init(scratch, |padded, (n, y)| {
            let image: &[f32] = if windows.in_place {
                &x[lx.offset + n * lx.strides[0]..][..windows.image_len]
            } else {
                windows.pad_image(x, lx, n, padded);
                padded
            };
            for grp in 0..gr.groups {
                packed::gemm_gathered_transposed(
                    (positions, rows, opg),
                    image,
                    &windows.starts,
                    &windows.offsets[grp * rows..],
                    &weights[grp * per_group..],
                    bias.map(|b| &b[grp * opg..]),
                    &mut y[grp * opg * positions..],
                    positions,
                );
            }
        });
    }
    // SAFETY: the images cover the output, and each group's product writes every element
    // of its `[out / groups, L]` block.
    unsafe { out.set_len(g.batch * image_out) };
    out
}

/// Where the windows of a convolution lie in an image's (padded) input planes, for the
/// gathered kernel: element `(c, y, x)` of an image's padded planes is at
/// `c * plane + y * wp + x`, output position `q`'s window starts at `starts[q]`, and tap
/// `r = (c, i, j)` lies `offsets[r]` past a window's start.
struct Windows {
    starts: Vec<usize>,
    offsets: Vec<usize>,
    /// Whether the view's planes are read where they lie: no padding, contiguous planes.
    in_place: bool,
    /// Floats of one image's padded planes.
    image_len: usize,
    plane: usize,
    wp: usize,
    g: ConvGeometry,
}

impl Windows {
    fn new(g: &ConvGeometry, lx: &Layout) -> Windows {
        let (hp, wp) = (g.height + 2 * g.padding[0], g.width + 2 * g.padding[1]);
        let plane = hp * wp;
        let ow = g.out[1];
        let st = &lx.strides;
        let in_place = g.padding == [0, 0] && st[3] == 1 && st[2] == g.width && st[1] == g.height * g.width;
        let [kh, kw] = g.kernel;
        let starts = (0..g.positions()).map(|q| (q / ow) * g.stride[0] * wp + (q % ow) * g.stride[1]).collect();
        let offsets = (0..g.rows())
            .map(|r| {
                let (c, i, j) = (r / (kh * kw), r / kw % kh, r % kw);
                c * plane + i * g.dilation[0] * wp + j * g.dilation[1]
            })
            .collect();
        Windows { starts, offsets, in_place, image_len: g.channels * plane, plane, wp, g: *g }
    }

    /// Copies image `n` of the view `lx` of `x` into `dst`'s zero-bordered planes; the
    /// border is left as it is (zero from the allocation).
    fn pad_image(&self, x: &[f32], lx: &Layout, n: usize, dst: &mut [f32]) {
        let (g, s) = (&self.g, &lx.strides);
        for c in 0..g.channels {
            for row in 0..g.height {
                let src = lx.offset + n * s[0] + c * s[1] + row * s[2];
                let at = c * self.plane + (row + g.padding[0]) * self.wp + g.padding[1];
                for (col, d) in dst[at..at + g.width].iter_mut().enumerate() {
                    *d = x[src + col * s[3]];
                }
            }
        }
    }
}

/// The input gradient of a convolution: the contiguous `[N, C, H, W]` adjoint of
/// [`conv2d`] applied to the contiguous output gradient `gy` (`[N, out, L]`).
pub fn conv2d_input_grad(gy: &[f32], w: &[f32], g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    // The packed kernel's panels are 64 positions wide: below about 48 positions most of
    // a panel would be padding, and the general GEMM wins.
    conv2d_input_grad_on(gy, w, g, gr, packed::available() && g.positions() >= PACKED_INPUT_GRAD_POSITIONS)
}

/// Positions per image from which [`conv2d_input_grad`] runs on the packed kernel: three
/// quarters of one 64-wide panel.
const PACKED_INPUT_GRAD_POSITIONS: usize = 48;

/// [`conv2d_input_grad`]: per image and group, the columns `W_g^T dY_g` (`[rows, L]`),
/// folded into the image's gradient. With `use_packed` (AVX-512) `W_g^T` is transposed once
/// per call and each `dY_g` packed into panels for [`packed::gemm`]; otherwise [`sgemm`]
/// reads both through strides.
fn conv2d_input_grad_on(gy: &[f32], w: &[f32], g: &ConvGeometry, gr: Groups, use_packed: bool) -> Vec<f32> {
    let positions = g.positions();
    let image_in = g.channels * g.height * g.width;
    let image_out = gr.out_channels() * positions;
    let mut dx = alloc::zeroed::<f32>(g.batch * image_in, "conv");
    if image_in == 0 {
        return dx;
    }
    let (opg, rows) = (gr.out_per_group, gr.rows);
    // W_g^T, one `[rows, out / groups]` block per group, for the packed product.
    let mut wt = Vec::new();
    if use_packed {
        wt = alloc::zeroed::<f32>(gr.groups * rows * opg, "conv");
        for grp in 0..gr.groups {
            let (src, dst) = (&w[grp * opg * rows..][..opg * rows], &mut wt[grp * rows * opg..][..rows * opg]);
            for o in 0..opg {
                for r in 0..rows {
                    dst[r * opg + o] = src[o * rows + r];
                }
            }
        }
    }
    let per_group = packed::packed_len(opg, positions);
    let pointwise = g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [0, 0];
    dx.par_chunks_mut(image_in).enumerate().for_each_init(
        || {
            let cols = if pointwise { Vec::new() } else { alloc::zeroed::<f32>(g.rows() * positions, "conv") };
            let panels = packed::AlignedBuf::zeroed(if use_packed { gr.groups * per_group } else { 0 }, "conv");
            (panels, cols)
        },
        |(panels, cols), (n, dxn)| {
            let gyn = &gy[n * image_out..][..image_out];
            // A 1x1 window with unit stride reads each input once: its columns are the
            // image itself, so the product writes the gradient directly.
            let target: &mut [f32] = if pointwise { dxn } else { cols };
            for grp in 0..gr.groups {
                let (dy, columns) = (&gyn[grp * opg * positions..], &mut target[grp * rows * positions..]);
                if use_packed {
                    let panel = &mut panels.as_mut_slice()[grp * per_group..][..per_group];
                    packed::pack_b(opg, positions, dy, (positions, 1), panel);
                    let wt = &wt[grp * rows * opg..];
                    packed::gemm((rows, opg, positions), wt, opg, panel, packed::Start::Zero, columns, positions);
                } else {
                    let w = &w[grp * opg * rows..];
                    gemm((rows, opg, positions), w, (1, rows), dy, (positions, 1), 0.0, columns, positions);
                }
            }
            if !pointwise {
                fold_image(cols, positions, g, dxn);
            }
        },
    );
    dx
}

/// The weight gradient of a convolution, `[out, C / groups, kh, kw]` contiguous: for each
/// image, its output gradient `[out, L]` times its columns transposed, summed over the
/// batch in fixed chunks of [`WEIGHT_GRAD_IMAGES`] images.
pub fn conv2d_weight_grad(x: &[f32], lx: &Layout, gy: &[f32], g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    // The packed product's columns are the output channels of a group: with fewer than
    // about 48 most of a 64-wide panel would be padding, and packing the output gradient
    // transposed would cost more than the product it feeds.
    if packed::available() && gr.out_per_group >= PACKED_WEIGHT_GRAD_CHANNELS {
        return conv2d_weight_grad_packed(x, lx, gy, g, gr);
    }
    conv2d_weight_grad_portable(x, lx, gy, g, gr)
}

/// The weight-gradient chunks' sum, added in chunk order (so the same bits on any thread
/// count); zeros of `numel` for an empty batch.
fn sum_in_order(chunks: Vec<Vec<f32>>, numel: usize) -> Vec<f32> {
    let mut chunks = chunks.into_iter();
    let mut total = chunks.next().unwrap_or_else(|| alloc::zeroed::<f32>(numel, "conv"));
    for part in chunks {
        for (t, p) in total.iter_mut().zip(&part) {
            *t += p;
        }
    }
    total
}

/// Output channels per group from which [`conv2d_weight_grad`] runs on the packed kernel:
/// three quarters of one 64-wide panel.
const PACKED_WEIGHT_GRAD_CHANNELS: usize = 48;

/// [`conv2d_weight_grad`] on any CPU: per image, `dY_g cols_g^T` added by [`sgemm`].
fn conv2d_weight_grad_portable(x: &[f32], lx: &Layout, gy: &[f32], g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    let positions = g.positions();
    let image_out = gr.out_channels() * positions;
    let numel = gr.out_channels() * gr.rows;
    let zero_columns = has_overhang(g);
    let chunks: Vec<Vec<f32>> = (0..g.batch.div_ceil(WEIGHT_GRAD_IMAGES))
        .into_par_iter()
        .map(|chunk| {
            let mut dw = alloc::zeroed::<f32>(numel, "conv");
            let mut cols = alloc::zeroed::<f32>(g.rows() * positions, "conv");
            let images = chunk * WEIGHT_GRAD_IMAGES..((chunk + 1) * WEIGHT_GRAD_IMAGES).min(g.batch);
            for n in images {
                if zero_columns {
                    cols.fill(0.0);
                }
                unfold_image(x, lx, g, n, &mut cols, positions);
                let gyn = &gy[n * image_out..][..image_out];
                for grp in 0..gr.groups {
                    // dW_g [out/groups, rows] += dY_g [out/groups, L] times cols_g^T [L, rows].
                    gemm(
                        (gr.out_per_group, positions, gr.rows),
                        &gyn[grp * gr.out_per_group * positions..],
                        (positions, 1),
                        &cols[grp * gr.rows * positions..],
                        (1, positions),
                        1.0,
                        &mut dw[grp * gr.out_per_group * gr.rows..],
                        gr.rows,
                    );
                }
            }
            dw
        })
        .collect();
    sum_in_order(chunks, numel)
}

/// [`conv2d_weight_grad`] on the gathered AVX-512 kernel of [`packed`]. A chunk of
/// [`WEIGHT_GRAD_IMAGES`] images is one product per group, `dW_g = (cols_g dY_g^T)^T`,
/// contracting over the positions of every image of the chunk at once: row `r` of the
/// column matrix is read straight from the images (tap `r`'s offset plus each position's
/// window start, nothing unfolded), the output gradients are packed transposed beside each
/// other, and the kernel's transposed store writes `[out, rows]` directly. The chunks'
/// sums are added in order.
///
/// A padded geometry, or an input view whose planes are not contiguous, is first copied
/// into zero-bordered contiguous planes, one image at a time.
fn conv2d_weight_grad_packed(x: &[f32], lx: &Layout, gy: &[f32], g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    let positions = g.positions();
    let image_out = gr.out_channels() * positions;
    let (opg, rows) = (gr.out_per_group, gr.rows);
    let numel = gr.out_channels() * rows;
    let windows = Windows::new(g, lx);
    let image_len = windows.image_len;
    let span = WEIGHT_GRAD_IMAGES * positions;
    let per_group = packed::packed_len(span, opg);
    let chunks: Vec<Vec<f32>> = (0..g.batch.div_ceil(WEIGHT_GRAD_IMAGES))
        .into_par_iter()
        .map_init(
            // The padded planes' borders are never written (zero for every image), and
            // the packed tail columns never reach the product's output: zeroed once per
            // task.
            || {
                let padded = if windows.in_place {
                    Vec::new()
                } else {
                    alloc::zeroed::<f32>(WEIGHT_GRAD_IMAGES * image_len, "conv")
                };
                (padded, packed::AlignedBuf::zeroed(gr.groups * per_group, "conv"), vec![0usize; span])
            },
            |(padded, panels, steps), chunk| {
                let images = chunk * WEIGHT_GRAD_IMAGES..((chunk + 1) * WEIGHT_GRAD_IMAGES).min(g.batch);
                let k = images.len() * positions;
                let panels = panels.as_mut_slice();
                // The chunk's images side by side: in place, `s[0]` apart from the first;
                // copied, `image_len` apart.
                let (source, image_stride): (&[f32], usize) = if windows.in_place {
                    (&x[lx.offset + images.start * lx.strides[0]..], lx.strides[0])
                } else {
                    for (i, n) in images.clone().enumerate() {
                        windows.pad_image(x, lx, n, &mut padded[i * image_len..][..image_len]);
                    }
                    (&padded[..], image_len)
                };
                for (i, n) in images.clone().enumerate() {
                    for (q, step) in steps[i * positions..][..positions].iter_mut().enumerate() {
                        *step = i * image_stride + windows.starts[q];
                    }
                    let gyn = &gy[n * image_out..][..image_out];
                    // dY_g^T: row `i * L + l` of the packed operand is position `l` of image `i`.
                    for (o, row) in gyn.chunks_exact(positions).enumerate() {
                        let group = &mut panels[(o / opg) * per_group..][..per_group];
                        let o = o % opg;
                        for (l, &v) in row.iter().enumerate() {
                            group[packed::packed_index(k, i * positions + l, o)] = v;
                        }
                    }
                }
                let mut dw = Vec::with_capacity(numel);
                for grp in 0..gr.groups {
                    packed::gemm_gathered_transposed(
                        (rows, k, opg),
                        source,
                        &windows.offsets[grp * rows..],
                        &steps[..k],
                        &panels[grp * per_group..],
                        None,
                        &mut dw.spare_capacity_mut()[grp * opg * rows..],
                        rows,
                    );
                }
                // SAFETY: each group's product wrote every element of its `[out / groups,
                // rows]` block, and the blocks cover the gradient.
                unsafe { dw.set_len(numel) };
                dw
            },
        )
        .collect();
    sum_in_order(chunks, numel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / 16777216.0 - 0.5)
            .collect()
    }

    fn geometry(
        [n, c, h, w]: [usize; 4],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> ConvGeometry {
        let out = |a: usize, len: usize| (len + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) / stride[a] + 1;
        ConvGeometry {
            batch: n,
            channels: c,
            height: h,
            width: w,
            kernel,
            stride,
            padding,
            dilation,
            out: [out(0, h), out(1, w)],
        }
    }

    /// The AVX-512 fold (a plane row held in registers) against the portable one, bit for
    /// bit, with strides, padding, dilation, rows wider than a vector and negative zeros.
    #[test]
    fn the_vector_fold_matches_the_portable_one() {
        if !packed::available() {
            return;
        }
        let cases = [
            ([1, 3, 13, 13], [3, 3], [1, 1], [0, 0], [1, 1]),
            ([1, 2, 11, 40], [3, 5], [1, 1], [1, 2], [1, 1]),
            ([1, 2, 12, 17], [3, 3], [2, 1], [1, 1], [2, 2]),
            ([1, 1, 7, 5], [2, 2], [1, 1], [2, 0], [1, 3]),
        ];
        for (shape, kernel, stride, padding, dilation) in cases {
            let g = geometry(shape, kernel, stride, padding, dilation);
            let mut cols = values(g.rows() * g.positions(), 9);
            for v in cols.iter_mut().step_by(7) {
                *v = -0.0;
            }
            let image = g.channels * g.height * g.width;
            let (mut got, mut want) = (vec![0.0f32; image], vec![0.0f32; image]);
            fold_image(&cols, g.positions(), &g, &mut got);
            fold_image_portable(&cols, g.positions(), &g, &mut want);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{shape:?} k{kernel:?} s{stride:?} p{padding:?} d{dilation:?}");
        }
    }

    /// The AVX-512 forms (the unfolding one and the gathered one, each for any stride)
    /// against the portable im2col + sgemm, on shapes that cut the 6-row and 64-column
    /// tiles, with padding, dilation, groups, no bias and an input view that is not
    /// contiguous.
    #[test]
    fn the_packed_forms_match_the_portable_one() {
        if !packed::available() {
            return;
        }
        /// Input shape, output channels, kernel, stride, padding, dilation, groups, bias.
        struct Case([usize; 4], usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2], usize, bool);
        let cases = [
            Case([3, 1, 28, 28], 32, [3, 3], [1, 1], [0, 0], [1, 1], 1, true),
            Case([2, 32, 13, 13], 64, [3, 3], [1, 1], [0, 0], [1, 1], 1, true),
            Case([2, 5, 11, 9], 7, [3, 2], [1, 1], [2, 1], [1, 1], 1, true),
            Case([2, 6, 12, 17], 13, [3, 3], [1, 1], [1, 1], [2, 2], 1, false),
            Case([2, 8, 15, 15], 10, [3, 3], [2, 2], [1, 1], [1, 1], 2, true),
            Case([1, 4, 30, 70], 3, [5, 5], [1, 1], [2, 2], [1, 1], 1, true),
            Case([2, 16, 7, 7], 20, [1, 1], [1, 1], [0, 0], [1, 1], 4, true),
            Case([2, 9, 8, 8], 70, [3, 3], [1, 1], [1, 1], [1, 1], 1, true),
            Case([3, 12, 9, 10], 66, [3, 3], [2, 1], [0, 2], [1, 1], 1, false),
        ];
        for Case(shape, out_ch, kernel, stride, padding, dilation, groups, with_bias) in cases {
            let g = geometry(shape, kernel, stride, padding, dilation);
            let gr = Groups::new(&g, groups, out_ch);
            let [n, c, h, w] = shape;
            // The input as a permuted view half the time: [N, C, W, H] storage read as [N, C, H, W].
            let x = values(n * c * h * w, 1);
            let strided = out_ch % 2 == 1;
            let lx = if strided {
                Layout { shape: shape.to_vec(), strides: vec![c * h * w, h * w, 1, h], offset: 0 }
            } else {
                Layout { shape: shape.to_vec(), strides: vec![c * h * w, h * w, w, 1], offset: 0 }
            };
            let wt = values(out_ch * gr.rows, 2);
            let bias = values(out_ch, 3);
            let bias = with_bias.then_some(&bias[..]);
            let want = conv2d_portable(&x, &lx, &wt, bias, &g, gr);
            let mut forms = vec![("unfolded", conv2d_packed(&x, &lx, &wt, bias, &g, gr))];
            forms.push(("gathered", conv2d_gathered(&x, &lx, &wt, bias, &g, gr)));
            for (name, got) in forms {
                assert_eq!(got.len(), want.len());
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{name} {shape:?} k{kernel:?} s{stride:?} p{padding:?} d{dilation:?} g{groups}: [{i}] {a} vs {b}");
                }
            }
        }
    }

    /// The packed backward passes against the portable ones (im2col + `sgemm` + col2im):
    /// batches that do not fill the last weight-gradient chunk, more than one 64-wide panel
    /// of output channels, fewer positions than a panel, groups, padding, stride, dilation,
    /// a 1x1 window and a permuted input view.
    #[test]
    fn the_packed_backward_passes_match_the_portable_ones() {
        if !packed::available() {
            return;
        }
        /// Input shape, output channels, kernel, stride, padding, dilation, groups.
        struct Case([usize; 4], usize, [usize; 2], [usize; 2], [usize; 2], [usize; 2], usize);
        let cases = [
            Case([5, 1, 28, 28], 32, [3, 3], [1, 1], [0, 0], [1, 1], 1),
            Case([6, 32, 13, 13], 64, [3, 3], [1, 1], [0, 0], [1, 1], 1),
            Case([9, 64, 5, 5], 64, [3, 3], [1, 1], [0, 0], [1, 1], 1),
            Case([3, 5, 11, 9], 70, [3, 2], [1, 1], [2, 1], [1, 1], 1),
            Case([2, 6, 12, 17], 13, [3, 3], [1, 1], [1, 1], [2, 2], 1),
            Case([7, 8, 15, 15], 10, [3, 3], [2, 2], [1, 1], [1, 1], 2),
            Case([2, 16, 7, 9], 20, [1, 1], [1, 1], [0, 0], [1, 1], 4),
            Case([1, 3, 4, 4], 2, [3, 3], [1, 1], [1, 1], [1, 1], 1),
        ];
        for Case(shape, out_ch, kernel, stride, padding, dilation, groups) in cases {
            let g = geometry(shape, kernel, stride, padding, dilation);
            let gr = Groups::new(&g, groups, out_ch);
            let [n, c, h, w] = shape;
            let x = values(n * c * h * w, 1);
            let lx = if out_ch % 2 == 1 {
                Layout { shape: shape.to_vec(), strides: vec![c * h * w, h * w, 1, h], offset: 0 }
            } else {
                Layout { shape: shape.to_vec(), strides: vec![c * h * w, h * w, w, 1], offset: 0 }
            };
            let wt = values(out_ch * gr.rows, 2);
            let gy = values(n * out_ch * g.positions(), 3);
            let close = |name: &str, got: &[f32], want: &[f32]| {
                assert_eq!(got.len(), want.len(), "{name}");
                for (i, (a, b)) in got.iter().zip(want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "{name} {shape:?} k{kernel:?} s{stride:?} p{padding:?} d{dilation:?} g{groups}: [{i}] {a} vs {b}"
                    );
                }
            };
            close(
                "input grad",
                &conv2d_input_grad_on(&gy, &wt, &g, gr, true),
                &conv2d_input_grad_on(&gy, &wt, &g, gr, false),
            );
            close(
                "weight grad",
                &conv2d_weight_grad_packed(&x, &lx, &gy, &g, gr),
                &conv2d_weight_grad_portable(&x, &lx, &gy, &g, gr),
            );
        }
    }
}
