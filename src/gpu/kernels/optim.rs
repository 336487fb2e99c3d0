//! The fused optimizer updates (optim.wgsl), up to twelve parameter tensors per dispatch.

use std::sync::Arc;

use super::u32_of;
use crate::gpu::context::{GpuContext, PARAMS_SLOT, UNUSED_BINDINGS, WORKGROUP_SIZE};
use crate::gpu::params::kernel_params;
use crate::gpu::shaders::OPTIM_WIDE_BINDINGS;
use crate::op::optim::OptimScalars;
use crate::op::{KernelRef, Op, OptimOp};

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
        seg: [[u32; 4]; OPTIM_WIDE_SEGMENTS],
    }
}

/// Parameter tensors one dispatch of the portable build (`optim`) updates at most.
pub const OPTIM_SEGMENTS: usize = 3;

/// Parameter tensors one dispatch of the wide build (`optim_wide`) updates at most: the
/// rows of the segment table both builds share.
pub const OPTIM_WIDE_SEGMENTS: usize = 12;

// The wide build runs for dispatches of more than `OPTIM_SEGMENTS` segments, the portable
// one for the others: the missing segments' parameter bindings are filled with the
// context's unused bindings.
const _: () = assert!(OPTIM_SEGMENTS - 1 <= UNUSED_BINDINGS);
const _: () = assert!(OPTIM_WIDE_SEGMENTS - (OPTIM_SEGMENTS + 1) <= UNUSED_BINDINGS);
const _: () = assert!(2 * OPTIM_WIDE_SEGMENTS + 1 == OPTIM_WIDE_BINDINGS);
// The table of the wide build must fit the params slot every dispatch gets.
const _: () = assert!(std::mem::size_of::<OptimParams>() <= PARAMS_SLOT);

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

/// The most parameter tensors one optimizer dispatch updates on this device:
/// [`OPTIM_WIDE_SEGMENTS`] where the adapter allows the wide build's storage bindings,
/// else [`OPTIM_SEGMENTS`].
pub fn optim_segments_per_dispatch(ctx: &GpuContext) -> usize {
    if ctx.limits.max_storage_buffers_per_shader_stage as usize >= OPTIM_WIDE_BINDINGS {
        OPTIM_WIDE_SEGMENTS
    } else {
        OPTIM_SEGMENTS
    }
}

/// One fused optimizer update of every parameter in `segments` and its state in `arena`,
/// in place: `ceil(len / optim_segments_per_dispatch)` dispatches. `state_pos[k]` is
/// where state `k` lies in a segment's state block (in units of the segment's length).
/// No two segments may share a parameter buffer.
pub fn optim(
    ctx: &Arc<GpuContext>,
    op: OptimOp,
    s: &OptimScalars,
    state_pos: [u32; 3],
    segments: &[OptimSegment],
    arena: &wgpu::Buffer,
) {
    for chunk in segments.chunks(optim_segments_per_dispatch(ctx)) {
        optim_dispatch(ctx, op, s, state_pos, chunk, arena);
    }
}

/// One dispatch of up to [`OPTIM_WIDE_SEGMENTS`] segments: the portable build for up to
/// [`OPTIM_SEGMENTS`] (fewer bindings to create), the wide one above.
fn optim_dispatch(
    ctx: &Arc<GpuContext>,
    op: OptimOp,
    s: &OptimScalars,
    state_pos: [u32; 3],
    segments: &[OptimSegment],
    arena: &wgpu::Buffer,
) {
    assert!(
        (1..=OPTIM_WIDE_SEGMENTS).contains(&segments.len()),
        "{}: {} segments in one dispatch",
        op.name(),
        segments.len()
    );
    let (file, width) =
        if segments.len() <= OPTIM_SEGMENTS { ("optim", OPTIM_SEGMENTS) } else { ("optim_wide", OPTIM_WIDE_SEGMENTS) };
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
        seg: [[0; 4]; OPTIM_WIDE_SEGMENTS],
    };
    // Bindings in the order of the build's signature: (grad, param) per segment, then the
    // arena. Unused grads repeat grad0 (read-only bindings may alias); unused params get
    // distinct dummies (a written binding may not alias another).
    let mut buffers: [&wgpu::Buffer; OPTIM_WIDE_BINDINGS] = [arena; OPTIM_WIDE_BINDINGS];
    let mut workgroups = 0usize;
    for k in 0..width {
        let (grad, param) = match segments.get(k) {
            Some(seg) => {
                p.seg[k] = [u32_of(workgroups), u32_of(seg.numel), u32_of(seg.grad_offset), u32_of(seg.state_offset)];
                workgroups += seg.numel.div_ceil(WORKGROUP_SIZE as usize);
                (seg.grad, seg.param)
            }
            None => (segments[0].grad, ctx.unused_binding(k - segments.len())),
        };
        buffers[2 * k] = grad;
        buffers[2 * k + 1] = param;
    }
    buffers[2 * width] = arena;
    let kernel = KernelRef { file, entry: Op::Optim(op).kernel().entry };
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &buffers[..2 * width + 1], ctx.fold_workgroups(u32_of(workgroups)));
}
