//! The fused recurrent cells (rnn.wgsl): one LSTM, GRU or Elman step over a batch,
//! forward and backward.

use std::sync::Arc;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::rnn::CellStep;
use crate::op::{Op, RnnOp};

kernel_params! {
    /// `RnnParams` of rnn.wgsl.
    pub(super) struct RnnParams {
        batch: u32,
        hidden: u32,
        steps: u32,
        t: u32,
        slot_in: u32,
        slot_out: u32,
        flags: u32,
        numel: u32,
        offsets: [u32; 4],
        lengths_offset: u32,
        _pad: [u32; 3],
    }
}

pub use crate::op::rnn::{RNN_HAS_BIAS, RNN_HAS_LENGTHS, RNN_RELU};

/// One fused recurrent cell step over the whole batch, one invocation per hidden unit.
/// `inputs` are the four f32 read bindings with the element offset each starts at and
/// `lengths` the i32 one (see rnn.wgsl for what each entry point reads; unused ones may
/// repeat any buffer); `outputs` are the two read-write bindings, which start at element 0
/// and must be distinct buffers, neither bound as an input.
pub fn rnn_cell(
    ctx: &Arc<GpuContext>,
    op: RnnOp,
    step: &CellStep,
    flags: u32,
    inputs: [(&wgpu::Buffer, usize); 4],
    lengths: (&wgpu::Buffer, usize),
    outputs: [&wgpu::Buffer; 2],
) {
    let numel = step.batch * step.hidden;
    let p = RnnParams {
        batch: u32_of(step.batch),
        hidden: u32_of(step.hidden),
        steps: u32_of(step.steps),
        t: u32_of(step.t),
        slot_in: u32_of(step.slot_in),
        slot_out: u32_of(step.slot_out),
        flags,
        numel: u32_of(numel),
        offsets: inputs.map(|(_, offset)| u32_of(offset)),
        lengths_offset: u32_of(lengths.1),
        _pad: [0; 3],
    };
    let buffers = [inputs[0].0, inputs[1].0, inputs[2].0, inputs[3].0, lengths.0, outputs[0], outputs[1]];
    ctx.dispatch(Op::Rnn(op).kernel(), bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, numel));
}
