//! Convolution: im2col and col2im (conv.wgsl) for the GEMM path, and the direct
//! convolution (conv_direct.wgsl).

use std::sync::Arc;

use bytemuck::Zeroable;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::conv::{ColumnLayout, ConvGeometry};
use crate::op::layout::Layout;
use crate::op::{ConvOp, Op};

kernel_params! {
    /// `ConvParams` of conv.wgsl.
    pub(super) struct ConvParams {
        batch: u32,
        channels: u32,
        height: u32,
        width: u32,
        out_h: u32,
        out_w: u32,
        kernel_h: u32,
        kernel_w: u32,
        stride_h: u32,
        stride_w: u32,
        pad_h: u32,
        pad_w: u32,
        dilation_h: u32,
        dilation_w: u32,
        src_offset: u32,
        numel: u32,
        col_n_stride: u32,
        col_r_stride: u32,
        _pad: [u32; 2],
        x_strides: [u32; 4],
    }
}

fn conv_params(g: &ConvGeometry, cols: ColumnLayout, src_offset: usize, numel: usize) -> ConvParams {
    let mut p = ConvParams::zeroed();
    p.batch = u32_of(g.batch);
    p.channels = u32_of(g.channels);
    p.height = u32_of(g.height);
    p.width = u32_of(g.width);
    [p.out_h, p.out_w] = g.out.map(u32_of);
    [p.kernel_h, p.kernel_w] = g.kernel.map(u32_of);
    [p.stride_h, p.stride_w] = g.stride.map(u32_of);
    [p.pad_h, p.pad_w] = g.padding.map(u32_of);
    [p.dilation_h, p.dilation_w] = g.dilation.map(u32_of);
    p.src_offset = u32_of(src_offset);
    p.numel = u32_of(numel);
    p.col_n_stride = u32_of(cols.n_stride);
    p.col_r_stride = u32_of(cols.r_stride);
    p
}

/// The column matrix of the `[N, C, H, W]` view `lx` of `x` into `out`, in `cols` layout.
pub fn im2col(
    ctx: &Arc<GpuContext>,
    x: &wgpu::Buffer,
    lx: &Layout,
    g: &ConvGeometry,
    cols: ColumnLayout,
    out: &wgpu::Buffer,
) {
    let numel = g.batch * g.rows() * g.positions();
    let mut p = conv_params(g, cols, lx.offset, numel);
    p.x_strides = [lx.strides[0], lx.strides[1], lx.strides[2], lx.strides[3]].map(u32_of);
    ctx.dispatch(Op::Conv(ConvOp::Im2col).kernel(), bytemuck::bytes_of(&p), &[x, out], linear_groups(ctx, numel));
}

/// The contiguous `[N, C, H, W]` adjoint of a column matrix that starts at `offset` in
/// `cols_buffer`.
pub fn col2im(
    ctx: &Arc<GpuContext>,
    cols_buffer: &wgpu::Buffer,
    offset: usize,
    cols: ColumnLayout,
    g: &ConvGeometry,
    out: &wgpu::Buffer,
) {
    let numel = g.batch * g.channels * g.height * g.width;
    let p = conv_params(g, cols, offset, numel);
    ctx.dispatch(
        Op::Conv(ConvOp::Col2im).kernel(),
        bytemuck::bytes_of(&p),
        &[cols_buffer, out],
        linear_groups(ctx, numel),
    );
}

kernel_params! {
    /// `DirectParams` of conv_direct.wgsl.
    pub(super) struct DirectParams {
        batch: u32,
        channels: u32,
        height: u32,
        width: u32,
        out_channels: u32,
        out_h: u32,
        out_w: u32,
        groups: u32,
        kernel_h: u32,
        kernel_w: u32,
        stride_h: u32,
        stride_w: u32,
        pad_h: u32,
        pad_w: u32,
        dilation_h: u32,
        dilation_w: u32,
        x_offset: u32,
        has_bias: u32,
        blocks: u32,
        _pad: u32,
        x_strides: [u32; 4],
    }
}

/// Output channels and output columns one invocation of `conv2d_direct` computes (the
/// `OC_BLOCK` and `OX_BLOCK` of conv_direct.wgsl).
const DIRECT_BLOCK: [usize; 2] = [4, 4];

/// The direct convolution of the `[N, C, H, W]` view `lx` of `x` with the contiguous
/// weights `w` (`[out, C / groups, kh, kw]`) and, if given, the contiguous `[out]` bias,
/// into the contiguous `[N, out, oh, ow]` buffer `out`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_direct(
    ctx: &Arc<GpuContext>,
    x: &wgpu::Buffer,
    lx: &Layout,
    g: &ConvGeometry,
    w: &wgpu::Buffer,
    out_channels: usize,
    groups: usize,
    bias: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) {
    let per_group = out_channels / groups;
    let blocks = g.batch * groups * per_group.div_ceil(DIRECT_BLOCK[0]) * g.out[0] * g.out[1].div_ceil(DIRECT_BLOCK[1]);
    let p = DirectParams {
        batch: u32_of(g.batch),
        channels: u32_of(g.channels),
        height: u32_of(g.height),
        width: u32_of(g.width),
        out_channels: u32_of(out_channels),
        out_h: u32_of(g.out[0]),
        out_w: u32_of(g.out[1]),
        groups: u32_of(groups),
        kernel_h: u32_of(g.kernel[0]),
        kernel_w: u32_of(g.kernel[1]),
        stride_h: u32_of(g.stride[0]),
        stride_w: u32_of(g.stride[1]),
        pad_h: u32_of(g.padding[0]),
        pad_w: u32_of(g.padding[1]),
        dilation_h: u32_of(g.dilation[0]),
        dilation_w: u32_of(g.dilation[1]),
        x_offset: u32_of(lx.offset),
        has_bias: bias.is_some() as u32,
        blocks: u32_of(blocks),
        _pad: 0,
        x_strides: [lx.strides[0], lx.strides[1], lx.strides[2], lx.strides[3]].map(u32_of),
    };
    // Without a bias the weights stand in for the unread bias binding (both read-only).
    let buffers = [x, w, bias.unwrap_or(w), out];
    ctx.dispatch(Op::Conv(ConvOp::Conv2dDirect).kernel(), bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, blocks));
}
