//! 2-D max, average and adaptive average pooling and their gradients (pool.wgsl).

use std::sync::Arc;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::pool::PoolGeometry;
use crate::op::Op;

kernel_params! {
    /// `PoolParams` of pool.wgsl.
    pub(super) struct PoolParams {
        numel: u32,
        in_h: u32,
        in_w: u32,
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
        index_offset: u32,
        count_include_pad: u32,
        divisor_override: u32,
        _pad: [u32; 3],
    }
}

/// One pooling kernel over the contiguous planes `g` describes. `src` holds, from element
/// `src_offset`, the input (forward ops) or the output gradient (backward ops); `indices`
/// holds max_pool2d's indices from `index_offset` (read by `MaxPool2dBackward` only);
/// `out` receives the output or the input gradient, and `out_index` the indices
/// `MaxPool2d` writes. A binding the op does not use takes any buffer, except that
/// `out_index` must not be `out`, `src` or `indices`.
pub fn pool(
    ctx: &Arc<GpuContext>,
    op: crate::op::PoolOp,
    g: &PoolGeometry,
    src: &wgpu::Buffer,
    src_offset: usize,
    indices: &wgpu::Buffer,
    index_offset: usize,
    out: &wgpu::Buffer,
    out_index: &wgpu::Buffer,
) {
    use crate::op::PoolOp;
    let backward =
        matches!(op, PoolOp::MaxPool2dBackward | PoolOp::AvgPool2dBackward | PoolOp::AdaptiveAvgPool2dBackward);
    // Forward kernels run one invocation per output element, backward ones per input element.
    let numel = g.planes * if backward { g.in_plane() } else { g.out_plane() };
    let p = PoolParams {
        numel: u32_of(numel),
        in_h: u32_of(g.in_h),
        in_w: u32_of(g.in_w),
        out_h: u32_of(g.out_h),
        out_w: u32_of(g.out_w),
        kernel_h: u32_of(g.kernel[0]),
        kernel_w: u32_of(g.kernel[1]),
        stride_h: u32_of(g.stride[0]),
        stride_w: u32_of(g.stride[1]),
        pad_h: u32_of(g.padding[0]),
        pad_w: u32_of(g.padding[1]),
        dilation_h: u32_of(g.dilation[0]),
        dilation_w: u32_of(g.dilation[1]),
        src_offset: u32_of(src_offset),
        index_offset: u32_of(index_offset),
        count_include_pad: g.count_include_pad as u32,
        divisor_override: u32_of(g.divisor_override.unwrap_or(0)),
        _pad: [0; 3],
    };
    let buffers = [src, indices, out, out_index];
    ctx.dispatch(Op::Pool(op).kernel(), bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, numel));
}
