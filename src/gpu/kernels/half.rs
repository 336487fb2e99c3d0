//! Half precision (half.wgsl, half_matmul.wgsl, half_matmul_coop.wgsl): casts, copies of
//! f16 views, and the f16 matmul accumulated in f32.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::{linear_groups, pack, u32_of};
use crate::gpu::context::{GpuContext, WORKGROUP_SIZE};
use crate::gpu::params::kernel_params;
use crate::op::layout::{Layout, MAX_DIMS};
use crate::op::{HalfOp, KernelRef, Op};

kernel_params! {
    /// `HalfParams` of half.wgsl.
    pub(super) struct HalfParams {
        numel: u32,
        rank: u32,
        src_offset: u32,
        dst_offset: u32,
        src_contiguous: u32,
        dst_contiguous: u32,
        _pad: [u32; 2],
        shape: [u32; MAX_DIMS],
        src_strides: [u32; MAX_DIMS],
        dst_strides: [u32; MAX_DIMS],
    }
}

fn half_params(ls: &Layout, ld: &Layout) -> HalfParams {
    let mut p = HalfParams::zeroed();
    p.numel = u32_of(ls.numel());
    p.rank = ls.rank() as u32;
    p.src_offset = u32_of(ls.offset);
    p.dst_offset = u32_of(ld.offset);
    p.src_contiguous = ls.is_contiguous() as u32;
    p.dst_contiguous = ld.is_contiguous() as u32;
    p.shape = pack(&ls.shape);
    p.src_strides = pack(&ls.strides);
    p.dst_strides = pack(&ld.strides);
    p
}

/// Converts the view `ls` of `src` (f32 for [`HalfOp::ToHalf`], f16 for
/// [`HalfOp::ToFloat`]) into the contiguous `out` of the other dtype, at offset 0.
pub fn half_cast(ctx: &Arc<GpuContext>, op: HalfOp, src: &wgpu::Buffer, ls: &Layout, out: &wgpu::Buffer) {
    let p = half_params(ls, &Layout::contiguous(&ls.shape));
    // One invocation writes one output word: two f16 elements, or one f32.
    let items = match op {
        HalfOp::ToHalf => ls.numel().div_ceil(2),
        HalfOp::ToFloat => ls.numel(),
        HalfOp::Copy | HalfOp::Matmul => unreachable!("half_cast: {} is not a cast", op.name()),
    };
    ctx.dispatch(Op::Half(op).kernel(), bytemuck::bytes_of(&p), &[src, out], linear_groups(ctx, items));
}

/// Copies the f16 view `ls` of `src` into the f16 view `ld` of `out`, bit for bit.
pub fn half_copy(ctx: &Arc<GpuContext>, src: &wgpu::Buffer, ls: &Layout, out: &wgpu::Buffer, ld: &Layout) {
    let p = half_params(ls, ld);
    ctx.dispatch(Op::Half(HalfOp::Copy).kernel(), bytemuck::bytes_of(&p), &[src, out], linear_groups(ctx, ls.numel()));
}

kernel_params! {
    /// `HalfMatmulParams` of half_matmul.wgsl.
    pub(super) struct HalfMatmulParams {
        m: u32,
        n: u32,
        k: u32,
        batch_rank: u32,
        a_offset: u32,
        b_offset: u32,
        blocks_m: u32,
        blocks_n: u32,
        a_row_stride: u32,
        a_col_stride: u32,
        b_row_stride: u32,
        b_col_stride: u32,
        batch_start: u32,
        _pad: [u32; 3],
        batch_shape: [u32; MAX_DIMS],
        a_batch_strides: [u32; MAX_DIMS],
        b_batch_strides: [u32; MAX_DIMS],
    }
}

/// Rows and columns of C each invocation of `half_matmul` computes (`BLOCK` in the WGSL).
const HALF_MATMUL_BLOCK: usize = 4;
/// `BM` of half_matmul_coop.wgsl: the side of the square of C one workgroup computes.
const HALF_MATMUL_COOP_BLOCK: usize = 32;

/// Batched matmul of two f16 views whose batch dimensions are broadcast to `batch_shape`,
/// accumulated in f32 into the contiguous f32 `out` of shape `[batch.., m, n]`. `m`, `n`
/// and `k` are at least 1.
pub fn half_matmul(
    ctx: &Arc<GpuContext>,
    a: &wgpu::Buffer,
    la: &Layout,
    b: &wgpu::Buffer,
    lb: &Layout,
    batch_shape: &[usize],
    m: usize,
    k: usize,
    n: usize,
    out: &wgpu::Buffer,
) {
    let r = la.rank();
    let mut p = HalfMatmulParams::zeroed();
    p.m = u32_of(m);
    p.n = u32_of(n);
    p.k = u32_of(k);
    p.batch_rank = batch_shape.len() as u32;
    p.a_offset = u32_of(la.offset);
    p.b_offset = u32_of(lb.offset);
    p.a_row_stride = u32_of(la.strides[r - 2]);
    p.a_col_stride = u32_of(la.strides[r - 1]);
    p.b_row_stride = u32_of(lb.strides[r - 2]);
    p.b_col_stride = u32_of(lb.strides[r - 1]);
    p.batch_shape = pack(batch_shape);
    p.a_batch_strides = pack(&la.strides[..r - 2]);
    p.b_batch_strides = pack(&lb.strides[..r - 2]);
    // On cooperative matrices one workgroup computes each HALF_MATMUL_COOP_BLOCK square of
    // C; the portable kernel gives each invocation a HALF_MATMUL_BLOCK square.
    let (kernel, block, blocks_per_workgroup) = match ctx.cooperative_f16_tile {
        Some(tile) => {
            let file = crate::gpu::shaders::half_matmul_coop_file(tile);
            (KernelRef { file, entry: "half_matmul_coop" }, HALF_MATMUL_COOP_BLOCK, 1)
        }
        None => (Op::Half(HalfOp::Matmul).kernel(), HALF_MATMUL_BLOCK, WORKGROUP_SIZE as usize),
    };
    p.blocks_m = u32_of(m.div_ceil(block));
    p.blocks_n = u32_of(n.div_ceil(block));
    let blocks = p.blocks_m as usize * p.blocks_n as usize;
    let grid = ctx.fold_workgroups(u32_of(blocks.div_ceil(blocks_per_workgroup)));
    let batch: usize = batch_shape.iter().product();
    let max_z = ctx.limits.max_compute_workgroups_per_dimension as usize;
    // The z dimension walks the batch; a batch beyond the limit takes several dispatches.
    let mut start = 0;
    while start < batch {
        let count = (batch - start).min(max_z);
        p.batch_start = u32_of(start);
        let groups = [grid[0], grid[1], u32_of(count)];
        ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[a, b, out], groups);
        start += count;
    }
}
