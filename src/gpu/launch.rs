//! One launcher per op family. Each fills the kernel's params struct (the Rust twin of the
//! struct at the top of its WGSL file: keep the two in step) and records a dispatch.
//! Launchers assume validated input: the tensor layer has checked shapes and dtypes.

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::context::{GpuContext, WORKGROUP_SIZE};
use crate::cpu::optim::OptimScalars;
use crate::op::{BinaryOp, CreationOp, IndexOp, KernelRef, Op, OptimOp, ReduceOp, SoftmaxOp, UnaryOp};
use crate::tensor::{Layout, MAX_DIMS};

/// Packs up to eight dimensions for a `array<vec4<u32>, 2>` uniform field.
fn pack(values: &[usize]) -> [u32; MAX_DIMS] {
    let mut out = [0u32; MAX_DIMS];
    for (o, &v) in out.iter_mut().zip(values) {
        *o = u32::try_from(v).expect("dimension or stride does not fit in 32 bits");
    }
    out
}

fn u32_of(v: usize) -> u32 {
    u32::try_from(v).expect("size does not fit in 32 bits")
}

fn linear_groups(ctx: &GpuContext, items: usize) -> [u32; 3] {
    ctx.fold_workgroups(u32_of(items.div_ceil(WORKGROUP_SIZE as usize)))
}

/// `ElementwiseParams` of elementwise.wgsl and copy.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct ElementwiseParams {
    numel: u32,
    rank: u32,
    scalar0: f32,
    scalar1: f32,
    offsets: [u32; 4],
    contiguous: [u32; 4],
    shape: [u32; MAX_DIMS],
    strides: [[u32; MAX_DIMS]; 4],
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

/// Unary `op` of the view `la` of `a` into the contiguous `out`.
pub fn unary(ctx: &Arc<GpuContext>, op: UnaryOp, s0: f32, s1: f32, a: &wgpu::Buffer, la: &Layout, out: &wgpu::Buffer) {
    let lo = Layout::contiguous(&la.shape);
    if op == UnaryOp::Copy {
        return copy(ctx, a, la, out, &lo);
    }
    let p = elementwise_params(&la.shape, [Some(la), None, None, Some(&lo)], s0, s1);
    ctx.dispatch(Op::Unary(op).kernel(), bytemuck::bytes_of(&p), &[a, a, a, out], linear_groups(ctx, la.numel()));
}

/// Copies the view `ls` of `src` into the view `ld` of `out`, word for word (any dtype).
pub fn copy(ctx: &Arc<GpuContext>, src: &wgpu::Buffer, ls: &Layout, out: &wgpu::Buffer, ld: &Layout) {
    let p = elementwise_params(&ls.shape, [Some(ls), None, None, Some(ld)], 0.0, 0.0);
    ctx.dispatch(
        Op::Unary(UnaryOp::Copy).kernel(),
        bytemuck::bytes_of(&p),
        &[src, out],
        linear_groups(ctx, ls.numel()),
    );
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
    ctx.dispatch(Op::Binary(op).kernel(), bytemuck::bytes_of(&p), &[a, b, a, out], linear_groups(ctx, la.numel()));
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
    ctx.dispatch(Op::Where.kernel(), bytemuck::bytes_of(&p), &[a, b, cond, out], linear_groups(ctx, la.numel()));
}

/// `CreationParams` of creation.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable, Default)]
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

/// `ReduceParams` of reduce.wgsl and argreduce.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct RowsParams {
    rows: u32,
    len: u32,
    src_offset: u32,
    scalar: f32,
}

/// Reduces each row of the contiguous `[rows, len]` matrix at `offset` of `src` into `out`.
pub fn reduce(
    ctx: &Arc<GpuContext>,
    op: ReduceOp,
    src: &wgpu::Buffer,
    offset: usize,
    rows: usize,
    len: usize,
    correction: f32,
    out: &wgpu::Buffer,
) {
    let p = RowsParams { rows: u32_of(rows), len: u32_of(len), src_offset: u32_of(offset), scalar: correction };
    ctx.dispatch(Op::Reduce(op).kernel(), bytemuck::bytes_of(&p), &[src, out], ctx.fold_workgroups(u32_of(rows)));
}

/// Softmax or log-softmax of each row of the contiguous `[rows, len]` matrix at `offset`.
pub fn softmax(
    ctx: &Arc<GpuContext>,
    op: SoftmaxOp,
    src: &wgpu::Buffer,
    offset: usize,
    rows: usize,
    len: usize,
    out: &wgpu::Buffer,
) {
    let p = RowsParams { rows: u32_of(rows), len: u32_of(len), src_offset: u32_of(offset), scalar: 0.0 };
    ctx.dispatch(Op::Softmax(op).kernel(), bytemuck::bytes_of(&p), &[src, out], ctx.fold_workgroups(u32_of(rows)));
}

/// `MatmulParams` of matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    a_offset: u32,
    b_offset: u32,
    tiles_m: u32,
    tiles_n: u32,
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

const MATMUL_TILE: usize = 64;

/// Batched matmul of two views whose batch dimensions are broadcast to `batch_shape`; the
/// output is contiguous `[batch.., m, n]`.
pub fn matmul(
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
    let tiles_m = m.div_ceil(MATMUL_TILE);
    let tiles_n = n.div_ceil(MATMUL_TILE);
    let mut p = MatmulParams::zeroed();
    p.m = u32_of(m);
    p.n = u32_of(n);
    p.k = u32_of(k);
    p.batch_rank = batch_shape.len() as u32;
    p.a_offset = u32_of(la.offset);
    p.b_offset = u32_of(lb.offset);
    p.tiles_m = u32_of(tiles_m);
    p.tiles_n = u32_of(tiles_n);
    p.a_row_stride = u32_of(la.strides[r - 2]);
    p.a_col_stride = u32_of(la.strides[r - 1]);
    p.b_row_stride = u32_of(lb.strides[r - 2]);
    p.b_col_stride = u32_of(lb.strides[r - 1]);
    p.batch_shape = pack(batch_shape);
    p.a_batch_strides = pack(&la.strides[..r - 2]);
    p.b_batch_strides = pack(&lb.strides[..r - 2]);
    let batch: usize = batch_shape.iter().product();
    // 16-byte loads and stores need row-major operands whose rows all start on a
    // 4-element boundary; anything else takes the scalar kernel.
    let aligned = p.a_col_stride == 1
        && p.b_col_stride == 1
        && [p.k, p.n, p.a_row_stride, p.b_row_stride, p.a_offset, p.b_offset].iter().all(|v| v % 4 == 0)
        && p.a_batch_strides.iter().chain(&p.b_batch_strides).all(|v| v % 4 == 0);
    let kernel = if aligned { KernelRef { file: "matmul_vec4", entry: "matmul_vec4" } } else { Op::Matmul.kernel() };
    let grid = ctx.fold_workgroups(u32_of(tiles_m * tiles_n));
    let max_z = ctx.limits.max_compute_workgroups_per_dimension as usize;
    // The z dimension walks the batch; a batch beyond the limit takes several dispatches.
    let mut start = 0;
    while start < batch {
        let count = (batch - start).min(max_z);
        p.batch_start = u32_of(start);
        ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[a, b, out], [grid[0], grid[1], u32_of(count)]);
        start += count;
    }
}

/// `IndexParams` of index.wgsl and scatter.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct IndexParams {
    numel: u32,
    rank: u32,
    axis: u32,
    axis_len: u32,
    src_offset: u32,
    index_offset: u32,
    _pad: [u32; 2],
    shape: [u32; MAX_DIMS],
    src_shape: [u32; MAX_DIMS],
    src_strides: [u32; MAX_DIMS],
}

/// One of the four index kernels on the view `ls` of `src` along `axis`, with contiguous
/// i32 indices starting at `index_offset`, into the contiguous `out` of shape `out_shape`.
/// index_select and gather read through the indices; index_add and scatter_add sum into
/// the positions they name (for scatter_add the indices are laid out like `ls`).
pub fn index(
    ctx: &Arc<GpuContext>,
    op: IndexOp,
    src: &wgpu::Buffer,
    ls: &Layout,
    axis: usize,
    index: &wgpu::Buffer,
    index_offset: usize,
    out_shape: &[usize],
    out: &wgpu::Buffer,
) {
    let mut p = IndexParams::zeroed();
    let numel: usize = out_shape.iter().product();
    p.numel = u32_of(numel);
    p.rank = out_shape.len() as u32;
    p.axis = axis as u32;
    p.axis_len = u32_of(ls.shape[axis]);
    p.src_offset = u32_of(ls.offset);
    p.index_offset = u32_of(index_offset);
    p.shape = pack(out_shape);
    p.src_shape = pack(&ls.shape);
    p.src_strides = pack(&ls.strides);
    ctx.dispatch(Op::Index(op).kernel(), bytemuck::bytes_of(&p), &[src, index, out], linear_groups(ctx, numel));
}

/// `OptimParams` of optim.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct OptimParams {
    numel: u32,
    grad_offset: u32,
    flags: u32,
    _pad: u32,
    lr: f32,
    weight_decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias_correction2_sqrt: f32,
    decoupled_lr: f32,
    _pad1: f32,
}

/// One fused optimizer update of `numel` elements of `param` (offset 0) and its three
/// state buffers, in place, from the contiguous gradient at `grad_offset`.
pub fn optim(
    ctx: &Arc<GpuContext>,
    op: OptimOp,
    s: &OptimScalars,
    grad: &wgpu::Buffer,
    grad_offset: usize,
    param: &wgpu::Buffer,
    state: [&wgpu::Buffer; 3],
    numel: usize,
) {
    let p = OptimParams {
        numel: u32_of(numel),
        grad_offset: u32_of(grad_offset),
        flags: s.flags,
        _pad: 0,
        lr: s.lr,
        weight_decay: s.weight_decay,
        beta1: s.beta1,
        beta2: s.beta2,
        eps: s.eps,
        bias_correction2_sqrt: s.bias_correction2_sqrt,
        decoupled_lr: s.decoupled_lr,
        _pad1: 0.0,
    };
    let buffers = [grad, param, state[0], state[1], state[2]];
    ctx.dispatch(Op::Optim(op).kernel(), bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, numel));
}
