//! The fused cross-entropy over class indices (loss.wgsl), forward and gradient.

use std::sync::Arc;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::loss::Reduction;
use crate::op::Op;

kernel_params! {
    /// `LossParams` of loss.wgsl.
    pub(super) struct LossParams {
        rows: u32,
        classes: u32,
        logits_offset: u32,
        targets_offset: u32,
        weight_offset: u32,
        aux_offset: u32,
        grad_offset: u32,
        flags: u32,
        ignore_index: i32,
        reduction: u32,
        _pad: [u32; 2],
    }
}

/// A buffer of the fused cross-entropy and the element its data starts at.
pub type BufferAt<'a> = (&'a wgpu::Buffer, usize);

/// The operands of the fused cross-entropy kernels: contiguous `logits [rows, classes]`,
/// `i32` `targets [rows]` and the optional class weights `[classes]`.
pub struct CrossEntropyOperands<'a> {
    pub rows: usize,
    pub classes: usize,
    pub logits: BufferAt<'a>,
    pub targets: BufferAt<'a>,
    pub weight: Option<BufferAt<'a>>,
    pub ignore_index: Option<i32>,
    pub reduction: Reduction,
}

impl CrossEntropyOperands<'_> {
    fn params(&self, aux_offset: usize, grad_offset: usize) -> LossParams {
        let flags = self.weight.is_some() as u32 | (self.ignore_index.is_some() as u32) << 1;
        LossParams {
            rows: u32_of(self.rows),
            classes: u32_of(self.classes),
            logits_offset: u32_of(self.logits.1),
            targets_offset: u32_of(self.targets.1),
            weight_offset: u32_of(self.weight.map_or(0, |w| w.1)),
            aux_offset: u32_of(aux_offset),
            grad_offset: u32_of(grad_offset),
            flags,
            ignore_index: self.ignore_index.unwrap_or(0),
            reduction: match self.reduction {
                Reduction::Mean => 0,
                Reduction::Sum => 1,
                Reduction::None => 2,
                Reduction::BatchMean => unreachable!("cross_entropy: BatchMean is rejected before the kernel"),
            },
            _pad: [0; 2],
        }
    }
}

/// The fused cross-entropy forward into `out` (`[losses | lse per row | weight sum]`, see
/// [`CrossEntropyRows::forward_len`](crate::op::loss::CrossEntropyRows::forward_len)), one workgroup.
pub fn cross_entropy_forward(ctx: &Arc<GpuContext>, x: &CrossEntropyOperands, out: &wgpu::Buffer) {
    let p = x.params(0, 0);
    let weight = x.weight.map_or(x.logits.0, |w| w.0);
    let buffers = [x.logits.0, x.targets.0, weight, x.logits.0, x.logits.0, out];
    let kernel = Op::Loss(crate::op::LossOp::CrossEntropyForward).kernel();
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &buffers, [1, 1, 1]);
}

/// The gradient of the fused cross-entropy with respect to the logits into `out`
/// (`[rows, classes]`), from the forward's `aux` (`lse` per row, then the weight sum) and
/// the incoming gradient `grad`.
pub fn cross_entropy_backward(
    ctx: &Arc<GpuContext>,
    x: &CrossEntropyOperands,
    aux: BufferAt,
    grad: BufferAt,
    out: &wgpu::Buffer,
) {
    let p = x.params(aux.1, grad.1);
    let weight = x.weight.map_or(x.logits.0, |w| w.0);
    let buffers = [x.logits.0, x.targets.0, weight, aux.0, grad.0, out];
    let kernel = Op::Loss(crate::op::LossOp::CrossEntropyBackward).kernel();
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, x.rows * x.classes));
}
