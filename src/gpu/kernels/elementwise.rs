//! Elementwise kernels (elementwise.wgsl, and copy.wgsl for copies of any dtype): unary,
//! binary and `where` over strided views broadcast to the output's shape.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::{linear_groups, pack, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::layout::{Layout, MAX_DIMS};
use crate::op::{BinaryOp, KernelRef, Op, UnaryOp};

kernel_params! {
    /// `ElementwiseParams` of elementwise.wgsl and copy.wgsl.
    pub(super) struct ElementwiseParams {
        numel: u32,
        rank: u32,
        scalar0: f32,
        scalar1: f32,
        offsets: [u32; 4],
        contiguous: [u32; 4],
        shape: [u32; MAX_DIMS],
        strides: [[u32; MAX_DIMS]; 4],
    }
}

/// Operands a, b, cond, out, each a view with the output's shape (or `None` if unused).
fn elementwise_params(shape: &[usize], operands: [Option<&Layout>; 4], s0: f32, s1: f32) -> ElementwiseParams {
    let mut p = ElementwiseParams::zeroed();
    p.numel = u32_of(shape.iter().product());
    p.rank = shape.len() as u32;
    p.scalar0 = s0;
    p.scalar1 = s1;
    p.shape = pack(shape);
    for (w, l) in operands.iter().enumerate() {
        if let Some(l) = l {
            debug_assert_eq!(l.shape, shape);
            p.offsets[w] = u32_of(l.offset);
            p.contiguous[w] = l.is_contiguous() as u32;
            p.strides[w] = pack(&l.strides);
        } else {
            p.contiguous[w] = 1;
        }
    }
    p
}

/// The elementwise kernel `kernel` in the build that suits `p`: `elementwise_contiguous`
/// when every operand is contiguous or one value broadcast to every element (all strides
/// zero, as a scalar operand is), which a software adapter runs several times faster;
/// `elementwise` otherwise.
fn elementwise_kernel(kernel: KernelRef, p: &ElementwiseParams) -> KernelRef {
    debug_assert_eq!(kernel.file, "elementwise");
    let unit_or_zero_step = |w: usize| p.contiguous[w] == 1 || p.strides[w].iter().all(|&s| s == 0);
    if (0..4).all(unit_or_zero_step) {
        KernelRef { file: "elementwise_contiguous", entry: kernel.entry }
    } else {
        kernel
    }
}

/// Unary `op` of the view `la` of `a` into the contiguous `out`.
pub fn unary(ctx: &Arc<GpuContext>, op: UnaryOp, s0: f32, s1: f32, a: &wgpu::Buffer, la: &Layout, out: &wgpu::Buffer) {
    let lo = Layout::contiguous(&la.shape);
    if op == UnaryOp::Copy {
        return copy(ctx, a, la, out, &lo);
    }
    let p = elementwise_params(&la.shape, [Some(la), None, None, Some(&lo)], s0, s1);
    let kernel = elementwise_kernel(Op::Unary(op).kernel(), &p);
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[a, a, a, out], linear_groups(ctx, la.numel()));
}

/// Copies the view `ls` of `src` into the view `ld` of `out`, word for word (any dtype).
pub fn copy(ctx: &Arc<GpuContext>, src: &wgpu::Buffer, ls: &Layout, out: &wgpu::Buffer, ld: &Layout) {
    let p = elementwise_params(&ls.shape, [Some(ls), None, None, Some(ld)], 0.0, 0.0);
    let mut kernel = Op::Unary(UnaryOp::Copy).kernel();
    if p.contiguous[3] == 1 {
        kernel.file = "copy_to_contiguous";
    }
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[src, out], linear_groups(ctx, ls.numel()));
}

/// Binary `op` of two views already broadcast to the output shape.
pub fn binary(
    ctx: &Arc<GpuContext>,
    op: BinaryOp,
    a: &wgpu::Buffer,
    la: &Layout,
    b: &wgpu::Buffer,
    lb: &Layout,
    out: &wgpu::Buffer,
) {
    let lo = Layout::contiguous(&la.shape);
    let p = elementwise_params(&la.shape, [Some(la), Some(lb), None, Some(&lo)], 0.0, 0.0);
    let kernel = elementwise_kernel(Op::Binary(op).kernel(), &p);
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[a, b, a, out], linear_groups(ctx, la.numel()));
}

/// `where(cond, a, b)` of three views already broadcast to the output shape.
pub fn where_select(
    ctx: &Arc<GpuContext>,
    cond: &wgpu::Buffer,
    lc: &Layout,
    a: &wgpu::Buffer,
    la: &Layout,
    b: &wgpu::Buffer,
    lb: &Layout,
    out: &wgpu::Buffer,
) {
    let lo = Layout::contiguous(&la.shape);
    let p = elementwise_params(&la.shape, [Some(la), Some(lb), Some(lc), Some(&lo)], 0.0, 0.0);
    let kernel = elementwise_kernel(Op::Where.kernel(), &p);
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[a, b, cond, out], linear_groups(ctx, la.numel()));
}
