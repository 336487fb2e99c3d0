//! Index kernels (index.wgsl, scatter.wgsl): index_select, gather and their gradients
//! index_add and scatter_add.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::{linear_groups, pack, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::layout::{Layout, MAX_DIMS};
use crate::op::{IndexOp, Op};

kernel_params! {
    /// `IndexParams` of index.wgsl and scatter.wgsl.
    pub(super) struct IndexParams {
        numel: u32,
        rank: u32,
        axis: u32,
        axis_len: u32,
        src_offset: u32,
        index_offset: u32,
        _pad: [u32; 2],
        shape: [u32; MAX_DIMS],
        src_shape: [u32; MAX_DIMS],
        src_strides: [u32; MAX_DIMS],
    }
}

/// One of the four index kernels on the view `ls` of `src` along `axis`, with contiguous
/// i32 indices starting at `index_offset`, into the contiguous `out` of shape `out_shape`.
/// index_select and gather read through the indices; index_add and scatter_add sum into
/// the positions they name (for scatter_add the indices are laid out like `ls`).
pub fn index(
    ctx: &Arc<GpuContext>,
    op: IndexOp,
    src: &wgpu::Buffer,
    ls: &Layout,
    axis: usize,
    index: &wgpu::Buffer,
    index_offset: usize,
    out_shape: &[usize],
    out: &wgpu::Buffer,
) {
    let mut p = IndexParams::zeroed();
    let numel: usize = out_shape.iter().product();
    p.numel = u32_of(numel);
    p.rank = out_shape.len() as u32;
    p.axis = axis as u32;
    p.axis_len = u32_of(ls.shape[axis]);
    p.src_offset = u32_of(ls.offset);
    p.index_offset = u32_of(index_offset);
    p.shape = pack(out_shape);
    p.src_shape = pack(&ls.shape);
    p.src_strides = pack(&ls.strides);
    ctx.dispatch(Op::Index(op).kernel(), bytemuck::bytes_of(&p), &[src, index, out], linear_groups(ctx, numel));
}
