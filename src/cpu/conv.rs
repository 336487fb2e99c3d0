//! im2col and col2im, the data movement of convolution (see `shaders/conv.wgsl`, whose
//! index arithmetic these loops follow).

use crate::tensor::Layout;

/// The shape arithmetic of one 2-D convolution over an NCHW batch, shared by the CPU
/// loops, the GPU launcher and the tensor layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// Output height and width.
    pub out: [usize; 2],
}

/// Where entry `(image, row, position)` of a column matrix lives: `image * n_stride +
/// row * r_stride + position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnLayout {
    pub n_stride: usize,
    pub r_stride: usize,
}

impl ConvGeometry {
    /// Rows of the column matrix: one per (channel, kernel row, kernel column).
    pub fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.out[0] * self.out[1]
    }

    /// `[N, rows, L]`: each image's columns together, as the forward matmul reads them.
    pub fn image_major(&self) -> ColumnLayout {
        ColumnLayout { n_stride: self.rows() * self.positions(), r_stride: self.positions() }
    }

    /// `[rows, N, L]`: each row across all images, so one matmul contracts over images and
    /// positions together (the weight gradient).
    pub fn row_major(&self) -> ColumnLayout {
        ColumnLayout { n_stride: self.positions(), r_stride: self.batch * self.positions() }
    }

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

/// The column matrix of the view `lx` (shape `[N, C, H, W]`) of `x`, in `cols` layout;
/// zeros where a window overhangs the padding.
pub fn im2col(x: &[f32], lx: &Layout, g: &ConvGeometry, cols: ColumnLayout) -> Vec<f32> {
    let [kh, kw] = g.kernel;
    let ow = g.out[1];
    let s = &lx.strides;
    let mut out = vec![0.0; g.batch * g.rows() * g.positions()];
    for n in 0..g.batch {
        for c in 0..g.channels {
            for ki in 0..kh {
                for kj in 0..kw {
                    let r = (c * kh + ki) * kw + kj;
                    let row = n * cols.n_stride + r * cols.r_stride;
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
                        let dst = &mut out[row + oy * ow + xs.start..row + oy * ow + xs.end];
                        if step == 1 {
                            dst.copy_from_slice(&x[base..base + dst.len()]);
                        } else {
                            for (k, d) in dst.iter_mut().enumerate() {
                                *d = x[base + k * step];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// The adjoint of [`im2col`]: a contiguous `[N, C, H, W]` batch in which every element is
/// the sum of the column entries that were read from it. `cols` starts at `offset`.
pub fn col2im(cols: &[f32], offset: usize, layout: ColumnLayout, g: &ConvGeometry) -> Vec<f32> {
    let [kh, kw] = g.kernel;
    let ow = g.out[1];
    let (h, w) = (g.height, g.width);
    let mut out = vec![0.0; g.batch * g.channels * h * w];
    // Accumulated in the same order as the kernel's loops (ki, then kj, per element), so
    // both devices sum overlapping windows identically.
    for n in 0..g.batch {
        for c in 0..g.channels {
            let plane = &mut out[(n * g.channels + c) * h * w..][..h * w];
            for ki in 0..kh {
                for kj in 0..kw {
                    let r = (c * kh + ki) * kw + kj;
                    let row = offset + n * layout.n_stride + r * layout.r_stride;
                    let xs = g.inside(1, kj);
                    if xs.is_empty() {
                        continue;
                    }
                    let x0 = xs.start * g.stride[1] + kj * g.dilation[1] - g.padding[1];
                    for oy in g.inside(0, ki) {
                        let y = oy * g.stride[0] + ki * g.dilation[0] - g.padding[0];
                        let src = &cols[row + oy * ow + xs.start..row + oy * ow + xs.end];
                        for (k, v) in src.iter().enumerate() {
                            plane[y * w + x0 + k * g.stride[1]] += v;
                        }
                    }
                }
            }
        }
    }
    out
}
