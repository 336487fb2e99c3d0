//! Embedding lookup and its deterministic gradient (embedding.wgsl): the indices are
//! sorted on the device and each row sums its run in position order.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::layout::Layout;
use crate::op::{EmbeddingOp, Op};

kernel_params! {
    /// `EmbeddingParams` of embedding.wgsl.
    pub(super) struct EmbeddingParams {
        numel: u32,
        num_rows: u32,
        dim: u32,
        count: u32,
        padded: u32,
        k: u32,
        j: u32,
        padding_idx: u32,
        src_offset: u32,
        index_offset: u32,
        row_stride: u32,
        col_stride: u32,
    }
}

/// Pairs one workgroup of embedding.wgsl sorts in workgroup memory (`BLOCK` there).
pub const EMBEDDING_SORT_BLOCK: usize = 512;

/// `NO_ROW` of embedding.wgsl: the key of an index outside the table, and "no padding row".
const EMBEDDING_NO_ROW: u32 = u32::MAX;

/// Length of the sort of `count` positions: a power of two, at least one block.
pub fn embedding_sort_len(count: usize) -> usize {
    count.next_power_of_two().max(EMBEDDING_SORT_BLOCK)
}

/// Size in `u32` words of the work buffer [`embedding_groups`] fills for `count` positions
/// and `rows` rows: the sorted pairs, then `rows + 1` row starts.
pub fn embedding_work_words(count: usize, rows: usize) -> usize {
    2 * embedding_sort_len(count) + rows + 1
}

fn embedding_params(count: usize, rows: usize, dim: usize) -> EmbeddingParams {
    let mut p = EmbeddingParams::zeroed();
    p.num_rows = u32_of(rows);
    p.dim = u32_of(dim);
    p.count = u32_of(count);
    p.padded = u32_of(embedding_sort_len(count));
    p.padding_idx = EMBEDDING_NO_ROW;
    p
}

/// The lookup: rows of the `[rows, dim]` view `lw` of `weight` picked by the `count`
/// contiguous i32 indices from `index_offset` of `indices`, into the contiguous
/// `[count, dim]` `out`. Indices outside the table give zero rows.
pub fn embedding(
    ctx: &Arc<GpuContext>,
    weight: &wgpu::Buffer,
    lw: &Layout,
    indices: &wgpu::Buffer,
    index_offset: usize,
    count: usize,
    out: &wgpu::Buffer,
) {
    let (rows, dim) = (lw.shape[0], lw.shape[1]);
    let mut p = embedding_params(count, rows, dim);
    p.numel = u32_of(count * dim);
    p.src_offset = u32_of(lw.offset);
    p.index_offset = u32_of(index_offset);
    p.row_stride = u32_of(lw.strides[0]);
    p.col_stride = u32_of(lw.strides[1]);
    // The lookup does not use the work binding.
    let kernel = Op::Embedding(EmbeddingOp::Lookup).kernel();
    let buffers = [weight, indices, ctx.unused_binding(0), out];
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, count * dim));
}

/// Groups the `count` contiguous i32 indices from `index_offset` of `indices` by row:
/// records the pair construction, the bitonic sort and the row-start search of
/// embedding.wgsl, which leave in `work` (at least [`embedding_work_words`] words) the
/// `(row, position)` pairs sorted by row then position, and the first pair of each row
/// `0..=rows` after them.
pub fn embedding_groups(
    ctx: &Arc<GpuContext>,
    indices: &wgpu::Buffer,
    index_offset: usize,
    count: usize,
    rows: usize,
    work: &wgpu::Buffer,
) {
    let padded = embedding_sort_len(count);
    let base = EmbeddingParams { index_offset: u32_of(index_offset), ..embedding_params(count, rows, 0) };
    // The sort kernels write only `work`, not the output binding.
    let buffers = [indices, indices, work, ctx.unused_binding(0)];
    let run = |op: EmbeddingOp, p: EmbeddingParams, groups: [u32; 3]| {
        ctx.dispatch(Op::Embedding(op).kernel(), bytemuck::bytes_of(&p), &buffers, groups);
    };
    let blocks = ctx.fold_workgroups(u32_of(padded / EMBEDDING_SORT_BLOCK));
    run(EmbeddingOp::SortKeys, EmbeddingParams { numel: u32_of(padded), ..base }, linear_groups(ctx, padded));
    run(EmbeddingOp::SortBlock, base, blocks);
    let mut k = 2 * EMBEDDING_SORT_BLOCK;
    while k <= padded {
        let mut j = k / 2;
        while j >= EMBEDDING_SORT_BLOCK {
            let p = EmbeddingParams { numel: u32_of(padded / 2), k: u32_of(k), j: u32_of(j), ..base };
            run(EmbeddingOp::MergeGlobal, p, linear_groups(ctx, padded / 2));
            j /= 2;
        }
        run(EmbeddingOp::MergeLocal, EmbeddingParams { k: u32_of(k), ..base }, blocks);
        k *= 2;
    }
    run(EmbeddingOp::RowStarts, EmbeddingParams { numel: u32_of(rows + 1), ..base }, linear_groups(ctx, rows + 1));
}

/// The contiguous `[rows, dim]` weight gradient into `out`, from the contiguous
/// `[count, dim]` output gradient at `grad_offset` of `grad` and the `work` buffer that
/// [`embedding_groups`] filled for the same indices. Row `padding_idx` stays zero.
pub fn embedding_backward(
    ctx: &Arc<GpuContext>,
    grad: &wgpu::Buffer,
    grad_offset: usize,
    work: &wgpu::Buffer,
    count: usize,
    rows: usize,
    dim: usize,
    padding_idx: Option<usize>,
    out: &wgpu::Buffer,
) {
    let mut p = embedding_params(count, rows, dim);
    p.numel = u32_of(rows * dim);
    p.src_offset = u32_of(grad_offset);
    if let Some(row) = padding_idx {
        p.padding_idx = u32_of(row);
    }
    let kernel = Op::Embedding(EmbeddingOp::Backward).kernel();
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[grad, grad, work, out], linear_groups(ctx, rows * dim));
}
