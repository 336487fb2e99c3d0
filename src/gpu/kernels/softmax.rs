//! Softmax and log-softmax of each row (softmax.wgsl), one workgroup per row.

use std::sync::Arc;

use super::u32_of;
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::{Op, SoftmaxOp};

kernel_params! {
    /// `SoftmaxParams` of softmax.wgsl.
    pub(super) struct SoftmaxParams {
        rows: u32,
        len: u32,
        src_offset: u32,
        _pad: u32,
    }
}

/// Softmax or log-softmax of each row of the contiguous `[rows, len]` matrix at `offset`.
pub fn softmax(
    ctx: &Arc<GpuContext>,
    op: SoftmaxOp,
    src: &wgpu::Buffer,
    offset: usize,
    rows: usize,
    len: usize,
    out: &wgpu::Buffer,
) {
    let p = SoftmaxParams { rows: u32_of(rows), len: u32_of(len), src_offset: u32_of(offset), _pad: 0 };
    ctx.dispatch(Op::Softmax(op).kernel(), bytemuck::bytes_of(&p), &[src, out], ctx.fold_workgroups(u32_of(rows)));
}
