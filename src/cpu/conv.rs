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

/// Unfolds image `n` of the view `lx` of `x` into `dst`, whose row `r` starts at
/// `r * r_stride` and holds the image's `L` positions; entries that fall in the padding are
/// left as they are (the caller zeroes `dst` when the geometry has any).
fn unfold_image(x: &[f32], lx: &Layout, g: &ConvGeometry, n: usize, dst: &mut [f32], r_stride: usize) {
    let [kh, kw] = g.kernel;
    let ow = g.out[1];
    let s = &lx.strides;
    for c in 0..g.channels {
        for ki in 0..kh {
            for kj in 0..kw {
                let row = ((c * kh + ki) * kw + kj) * r_stride;
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
                    let d = &mut dst[row + oy * ow + xs.start..row + oy * ow + xs.end];
                    if step == 1 {
                        d.copy_from_slice(&x[base..base + d.len()]);
                    } else {
                        for (k, v) in d.iter_mut().enumerate() {
                            *v = x[base + k * step];
                        }
                    }
                }
            }
        }
    }
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

/// The input gradient of a convolution: the contiguous `[N, C, H, W]` adjoint of
/// [`conv2d`] applied to the contiguous output gradient `gy` (`[N, out, L]`).
pub fn conv2d_input_grad(gy: &[f32], w: &[f32], g: &ConvGeometry, gr: Groups) -> Vec<f32> {
    let positions = g.positions();
    let image_in = g.channels * g.height * g.width;
    let image_out = gr.out_channels() * positions;
    let mut dx = alloc::zeroed::<f32>(g.batch * image_in, "conv");
    if image_in == 0 {
        return dx;
    }
    let pointwise = g.kernel == [1, 1] && g.stride == [1, 1] && g.padding == [0, 0];
    dx.par_chunks_mut(image_in).enumerate().for_each_init(
        || if pointwise { Vec::new() } else { alloc::zeroed::<f32>(g.rows() * positions, "conv") },
        |cols, (n, dxn)| {
            let gyn = &gy[n * image_out..][..image_out];
            // A 1x1 window with unit stride reads each input once: its columns are the
            // image itself, so the GEMM writes the gradient directly.
            let target: &mut [f32] = if pointwise { dxn } else { cols };
            for grp in 0..gr.groups {
                // W_g^T [rows, out/groups] times the group's gradient [out/groups, L].
                gemm(
                    (gr.rows, gr.out_per_group, positions),
                    &w[grp * gr.out_per_group * gr.rows..],
                    (1, gr.rows),
                    &gyn[grp * gr.out_per_group * positions..],
                    (positions, 1),
                    0.0,
                    &mut target[grp * gr.rows * positions..],
                    positions,
                );
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
    let mut chunks = chunks.into_iter();
    let mut total = chunks.next().unwrap_or_else(|| alloc::zeroed::<f32>(numel, "conv"));
    for part in chunks {
        for (t, p) in total.iter_mut().zip(&part) {
            *t += p;
        }
    }
    total
}
