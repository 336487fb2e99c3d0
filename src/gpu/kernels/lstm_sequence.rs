//! The whole-sequence LSTM passes (lstm_sequence.wgsl): every step of one layer and
//! direction in one dispatch, one workgroup per sequence, where the hidden size fits one
//! workgroup.

use std::sync::Arc;

use super::u32_of;
use crate::gpu::context::{GpuContext, WORKGROUP_SIZE};
use crate::gpu::params::kernel_params;
use crate::op::rnn::CellStep;
use crate::op::{Op, RnnOp};

kernel_params! {
    /// `LstmSequenceParams` of lstm_sequence.wgsl.
    pub(super) struct LstmSequenceParams {
        batch: u32,
        hidden: u32,
        steps: u32,
        flags: u32,
        offsets: [u32; 4],
        lengths_offset: u32,
        out0_offset: u32,
        out1_offset: u32,
        _pad0: u32,
    }
}

/// `flags` bit of lstm_sequence.wgsl: the steps run in reverse time order.
const REVERSE: u32 = 8;
// The other bits are rnn.wgsl's, which the tensor layer sets.
const _: () = assert!(REVERSE & (crate::op::rnn::RNN_HAS_BIAS | crate::op::rnn::RNN_HAS_LENGTHS) == 0);

/// Whether the kernels run `steps` (one layer and direction, in processing order): the
/// hidden size fits one workgroup, the batch one row of workgroups, and the steps are the
/// whole sequence forwards or in reverse. Returns the direction's flag.
pub fn lstm_sequence_fits(ctx: &GpuContext, steps: &[CellStep]) -> Option<u32> {
    let first = steps.first()?;
    let (t_len, batch, hidden) = (first.steps, first.batch, first.hidden);
    if hidden == 0 || hidden > WORKGROUP_SIZE as usize || batch == 0 {
        return None;
    }
    if batch > ctx.limits.max_compute_workgroups_per_dimension as usize || steps.len() != t_len {
        return None;
    }
    let reverse = first.slot_in > first.slot_out;
    let expected = |k: usize| {
        let t = if reverse { t_len - 1 - k } else { k };
        let (slot_in, slot_out) = if reverse { (t + 1, t) } else { (t, t + 1) };
        CellStep { batch, hidden, steps: t_len, t, slot_in, slot_out }
    };
    let standard = steps.iter().enumerate().all(|(k, s)| *s == expected(k));
    standard.then_some(if reverse { REVERSE } else { 0 })
}

/// One dispatch of `op` (one of the two `LstmSequence` passes) over the batch: `inputs` are the four f32 read bindings with
/// the element offset each starts at, `lengths` the i32 one, `outputs` the two read-write
/// ones with theirs (see lstm_sequence.wgsl). `flags` are rnn.wgsl's bits plus the
/// direction from [`lstm_sequence_fits`].
#[allow(clippy::too_many_arguments)]
pub fn lstm_sequence(
    ctx: &Arc<GpuContext>,
    op: RnnOp,
    step: &CellStep,
    flags: u32,
    inputs: [(&wgpu::Buffer, usize); 4],
    lengths: (&wgpu::Buffer, usize),
    outputs: [(&wgpu::Buffer, usize); 2],
) {
    let p = LstmSequenceParams {
        batch: u32_of(step.batch),
        hidden: u32_of(step.hidden),
        steps: u32_of(step.steps),
        flags,
        offsets: inputs.map(|(_, offset)| u32_of(offset)),
        lengths_offset: u32_of(lengths.1),
        out0_offset: u32_of(outputs[0].1),
        out1_offset: u32_of(outputs[1].1),
        _pad0: 0,
    };
    let buffers = [inputs[0].0, inputs[1].0, inputs[2].0, inputs[3].0, lengths.0, outputs[0].0, outputs[1].0];
    ctx.dispatch(Op::Rnn(op).kernel(), bytemuck::bytes_of(&p), &buffers, [u32_of(step.batch), 1, 1]);
}
