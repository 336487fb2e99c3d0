//! Batch normalisation (batch_norm.wgsl): per-channel statistics, the affine pass and
//! their gradients.

use std::sync::Arc;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::Op;

kernel_params! {
    /// `BatchNormParams` of batch_norm.wgsl.
    pub(super) struct BatchNormParams {
        n: u32,
        c: u32,
        l: u32,
        flags: u32,
        offsets: [u32; 4],
        eps: f32,
        _pad: [u32; 3],
    }
}

pub use crate::op::norm::{BATCH_NORM_HAS_BIAS, BATCH_NORM_HAS_WEIGHT, BATCH_NORM_TRAINING};

/// One batch-normalisation kernel over contiguous `[n, c, l]` operands. `inputs` are the
/// four read bindings with the element offset each starts at (see batch_norm.wgsl for what
/// each entry point reads); unused ones may repeat any buffer. The reductions run one
/// workgroup per channel, the elementwise passes one invocation per element.
pub fn batch_norm(
    ctx: &Arc<GpuContext>,
    op: crate::op::BatchNormOp,
    [n, c, l]: [usize; 3],
    flags: u32,
    eps: f32,
    inputs: [(&wgpu::Buffer, usize); 4],
    out: &wgpu::Buffer,
) {
    use crate::op::BatchNormOp;
    let p = BatchNormParams {
        n: u32_of(n),
        c: u32_of(c),
        l: u32_of(l),
        flags,
        offsets: inputs.map(|(_, offset)| u32_of(offset)),
        eps,
        _pad: [0; 3],
    };
    let groups = match op {
        BatchNormOp::Stats | BatchNormOp::BackwardReduce => ctx.fold_workgroups(u32_of(c)),
        BatchNormOp::Apply | BatchNormOp::BackwardApply => linear_groups(ctx, n * c * l),
    };
    let buffers = [inputs[0].0, inputs[1].0, inputs[2].0, inputs[3].0, out];
    ctx.dispatch(Op::BatchNorm(op).kernel(), bytemuck::bytes_of(&p), &buffers, groups);
}
