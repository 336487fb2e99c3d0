//! The fused optimizer updates (optim.wgsl), several parameter tensors per dispatch.

use std::sync::Arc;

use super::u32_of;
use crate::gpu::context::{GpuContext, UNUSED_BINDINGS, WORKGROUP_SIZE};
use crate::gpu::params::kernel_params;
use crate::op::optim::OptimScalars;
use crate::op::{Op, OptimOp};

kernel_params! {
    /// `OptimParams` of optim.wgsl.
    pub(super) struct OptimParams {
        segments: u32,
        flags: u32,
        _pad0: [u32; 2],
        state_pos: [u32; 4],
        lr: f32,
        weight_decay: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        bias_correction2_sqrt: f32,
        decoupled_lr: f32,
        _pad2: f32,
        /// `(first_workgroup, numel, grad_offset, state_offset)` of each segment.
        seg: [[u32; 4]; OPTIM_SEGMENTS],
    }
}

/// Parameter tensors one optimizer dispatch updates at most (the `seg` table of optim.wgsl).
pub const OPTIM_SEGMENTS: usize = 3;

// A dispatch of one segment leaves the other segments' parameter bindings unused.
const _: () = assert!(OPTIM_SEGMENTS - 1 <= UNUSED_BINDINGS);

/// One parameter tensor of a multi-tensor optimizer dispatch: `numel` elements of `param`
/// (from element 0), its contiguous gradient at `grad_offset` of `grad`, and its state
/// vectors in the arena from `state_offset`.
pub struct OptimSegment<'a> {
    pub param: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub grad_offset: usize,
    pub state_offset: usize,
    pub numel: usize,
}

/// One fused optimizer update of up to [`OPTIM_SEGMENTS`] parameters and their state in
/// `arena`, in place. `state_pos[k]` is where state `k` lies in a segment's state block
/// (in units of the segment's length). Missing segments' parameter bindings are filled
/// with the context's unused bindings.
pub fn optim(
    ctx: &Arc<GpuContext>,
    op: OptimOp,
    s: &OptimScalars,
    state_pos: [u32; 3],
    segments: &[OptimSegment],
    arena: &wgpu::Buffer,
) {
    assert!(
        (1..=OPTIM_SEGMENTS).contains(&segments.len()),
        "{}: {} segments in one dispatch",
        op.name(),
        segments.len()
    );
    let mut p = OptimParams {
        segments: segments.len() as u32,
        flags: s.flags,
        _pad0: [0; 2],
        state_pos: [state_pos[0], state_pos[1], state_pos[2], 0],
        lr: s.lr,
        weight_decay: s.weight_decay,
        beta1: s.beta1,
        beta2: s.beta2,
        eps: s.eps,
        bias_correction2_sqrt: s.bias_correction2_sqrt,
        decoupled_lr: s.decoupled_lr,
        _pad2: 0.0,
        seg: [[0; 4]; OPTIM_SEGMENTS],
    };
    let mut workgroups = 0usize;
    let mut grads = [segments[0].grad; OPTIM_SEGMENTS];
    let mut params = [segments[0].param, ctx.unused_binding(0), ctx.unused_binding(1)];
    for (k, seg) in segments.iter().enumerate() {
        p.seg[k] = [u32_of(workgroups), u32_of(seg.numel), u32_of(seg.grad_offset), u32_of(seg.state_offset)];
        workgroups += seg.numel.div_ceil(WORKGROUP_SIZE as usize);
        grads[k] = seg.grad;
        params[k] = seg.param;
    }
    let buffers = [grads[0], grads[1], grads[2], params[0], params[1], params[2], arena];
    ctx.dispatch(Op::Optim(op).kernel(), bytemuck::bytes_of(&p), &buffers, ctx.fold_workgroups(u32_of(workgroups)));
}
