//! Tensors made from a shape and scalars (creation.wgsl), and the poisoning fill.

use std::sync::Arc;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::{CreationOp, KernelRef, Op};

kernel_params! {
    /// `CreationParams` of creation.wgsl.
    #[derive(Default)]
    pub struct CreationParams {
        pub numel: u32,
        pub rows: u32,
        pub cols: u32,
        pub bits: u32,
        pub key0: u32,
        pub key1: u32,
        pub a: f32,
        pub b: f32,
    }
}

/// Fills `numel` elements of `out` with a creation op.
pub fn creation(ctx: &Arc<GpuContext>, op: CreationOp, mut p: CreationParams, out: &wgpu::Buffer) {
    let n = p.numel as usize;
    p.numel = u32_of(n);
    ctx.dispatch(Op::Creation(op).kernel(), bytemuck::bytes_of(&p), &[out], linear_groups(ctx, n));
}

/// Writes the 32-bit pattern `bits` into the first `words` words of `out` (poisoning).
pub fn fill_bits(ctx: &Arc<GpuContext>, out: &wgpu::Buffer, bits: u32, words: u64) {
    let p = CreationParams { numel: u32_of(words as usize), bits, ..Default::default() };
    let kernel = KernelRef { file: "creation", entry: "fill_bits" };
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[out], linear_groups(ctx, words as usize));
}
