//! Row reductions (reduce.wgsl, argreduce.wgsl): one workgroup per row of a contiguous
//! `[rows, len]` matrix.

use std::sync::Arc;

use super::u32_of;
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::{Op, ReduceOp};

kernel_params! {
    /// `ReduceParams` of reduce.wgsl and argreduce.wgsl.
    pub(super) struct ReduceParams {
        rows: u32,
        len: u32,
        src_offset: u32,
        /// `Var`: the divisor is `len - correction`.
        correction: f32,
    }
}

/// Reduces each row of the contiguous `[rows, len]` matrix at `offset` of `src` into `out`.
pub fn reduce(
    ctx: &Arc<GpuContext>,
    op: ReduceOp,
    src: &wgpu::Buffer,
    offset: usize,
    rows: usize,
    len: usize,
    correction: f32,
    out: &wgpu::Buffer,
) {
    let p = ReduceParams { rows: u32_of(rows), len: u32_of(len), src_offset: u32_of(offset), correction };
    ctx.dispatch(Op::Reduce(op).kernel(), bytemuck::bytes_of(&p), &[src, out], ctx.fold_workgroups(u32_of(rows)));
}
