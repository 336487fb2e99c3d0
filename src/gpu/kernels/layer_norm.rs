//! Layer normalisation (layer_norm.wgsl): the row kernels and the weight and bias
//! gradients.

use std::sync::Arc;

use super::u32_of;
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::{LayerNormOp, Op};

kernel_params! {
    /// `LayerNormParams` of layer_norm.wgsl.
    pub(super) struct LayerNormParams {
        rows: u32,
        len: u32,
        flags: u32,
        chunk_rows: u32,
        offsets: [u32; 4],
        eps: f32,
        _pad: [u32; 3],
    }
}

/// `flags` bits of [`layer_norm`], as layer_norm.wgsl names them.
pub const LAYER_NORM_HAS_WEIGHT: u32 = 1;
pub const LAYER_NORM_HAS_BIAS: u32 = 2;

/// Columns per workgroup of `layer_norm_param_backward` (`COLS` in layer_norm.wgsl).
const LAYER_NORM_COLS: usize = 32;

/// One layer-normalisation kernel over contiguous `[rows, len]` operands. `inputs` are the
/// four read bindings with the element offset each starts at (see layer_norm.wgsl for what
/// each entry point reads); unused ones may repeat any buffer. `out2` receives the
/// statistics table of `Forward` and must be a buffer of its own for every op. The row
/// kernels run one workgroup per row; `ParamBackward` one per tile of columns and chunk of
/// `chunk_rows` rows.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    ctx: &Arc<GpuContext>,
    op: LayerNormOp,
    [rows, len]: [usize; 2],
    flags: u32,
    eps: f32,
    chunk_rows: usize,
    inputs: [(&wgpu::Buffer, usize); 4],
    out: &wgpu::Buffer,
    out2: &wgpu::Buffer,
) {
    assert!(chunk_rows > 0, "layer_norm: chunk_rows must be positive");
    let p = LayerNormParams {
        rows: u32_of(rows),
        len: u32_of(len),
        flags,
        chunk_rows: u32_of(chunk_rows),
        offsets: inputs.map(|(_, offset)| u32_of(offset)),
        eps,
        _pad: [0; 3],
    };
    let groups = match op {
        LayerNormOp::Forward | LayerNormOp::Backward => rows,
        LayerNormOp::ParamBackward => len.div_ceil(LAYER_NORM_COLS) * rows.div_ceil(chunk_rows),
    };
    let buffers = [inputs[0].0, inputs[1].0, inputs[2].0, inputs[3].0, out, out2];
    ctx.dispatch(Op::LayerNorm(op).kernel(), bytemuck::bytes_of(&p), &buffers, ctx.fold_workgroups(u32_of(groups)));
}
