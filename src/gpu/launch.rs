//! One launcher per op family. Each fills the kernel's params struct (the Rust twin of the
//! struct at the top of its WGSL file, declared with `gpu::params::kernel_params!` so that a test
//! compares the two layouts) and records a dispatch.
//! Launchers assume validated input: the tensor layer has checked shapes and dtypes.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::context::{GpuContext, WORKGROUP_SIZE};
use super::params::{kernel_params, ParamsLayout};
use crate::op::conv::{ColumnLayout, ConvGeometry};
use crate::op::layout::{Layout, MAX_DIMS};
use crate::op::loss::Reduction;
use crate::op::matmul::Activation;
use crate::op::optim::OptimScalars;
use crate::op::pool::PoolGeometry;
use crate::op::rnn::CellStep;
use crate::op::{
    BinaryOp, ConvOp, CreationOp, EmbeddingOp, IndexOp, KernelRef, LayerNormOp, Op, OptimOp, ReduceOp, RnnOp,
    SoftmaxOp, UnaryOp,
};

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

kernel_params! {
    /// `ElementwiseParams` of elementwise.wgsl and copy.wgsl.
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

kernel_params! {
    /// `ReduceParams` of reduce.wgsl and argreduce.wgsl.
    struct ReduceParams {
        rows: u32,
        len: u32,
        src_offset: u32,
        /// `Var`: the divisor is `len - correction`.
        correction: f32,
    }
}

kernel_params! {
    /// `SoftmaxParams` of softmax.wgsl.
    struct SoftmaxParams {
        rows: u32,
        len: u32,
        src_offset: u32,
        _pad: u32,
    }
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
    let p = ReduceParams { rows: u32_of(rows), len: u32_of(len), src_offset: u32_of(offset), correction };
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
    let p = SoftmaxParams { rows: u32_of(rows), len: u32_of(len), src_offset: u32_of(offset), _pad: 0 };
    ctx.dispatch(Op::Softmax(op).kernel(), bytemuck::bytes_of(&p), &[src, out], ctx.fold_workgroups(u32_of(rows)));
}

// ---- matmul ----

kernel_params! {
    /// `MatmulParams` of matmul.wgsl and matmul_vec4.wgsl.
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
        bias_mode: u32,
        bias_offset: u32,
        activation: u32,
        batch_shape: [u32; MAX_DIMS],
        a_batch_strides: [u32; MAX_DIMS],
        b_batch_strides: [u32; MAX_DIMS],
    }
}

pub use crate::op::matmul::BiasAxis;

/// What the matmul kernels apply to each finished element before storing it:
/// `activation(sum + bias[..])`. The same bias vector serves every batch entry.
#[derive(Clone, Copy)]
pub struct MatmulEpilogue<'a> {
    /// The bias buffer, the element offset of the bias vector in it, and its axis.
    pub bias: Option<(&'a wgpu::Buffer, usize, BiasAxis)>,
    pub activation: Activation,
}

impl MatmulEpilogue<'_> {
    /// A plain product.
    pub const NONE: MatmulEpilogue<'static> = MatmulEpilogue { bias: None, activation: Activation::None };
}

/// The code of the `activation` field of the matmul kernels' params.
fn activation_code(activation: Activation) -> u32 {
    match activation {
        Activation::None => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
        Activation::Tanh => 3,
    }
}

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
    matmul_fused(ctx, a, la, b, lb, batch_shape, m, k, n, MatmulEpilogue::NONE, out);
}

/// [`matmul`] with a bias and an activation applied in the same dispatch (see
/// [`MatmulEpilogue`]): the fused epilogue of `Tensor::linear`, and the one a convolution
/// uses for its bias with [`BiasAxis::Row`]. `la` and `lb` are views of `[batch.., m, k]`
/// and `[batch.., k, n]` with any strides (stride 0 on broadcast batch dimensions); a bias
/// vector has `n` (column) or `m` (row) elements from its offset on. `k` may be 0: then
/// every element is `activation(bias)`.
///
/// The tile configuration comes from [`super::tuning`]: the one forced, or the winner of
/// the tuning pass for this adapter and shape class (run here the first time a class is
/// seen).
#[allow(clippy::too_many_arguments)]
pub fn matmul_fused(
    ctx: &Arc<GpuContext>,
    a: &wgpu::Buffer,
    la: &Layout,
    b: &wgpu::Buffer,
    lb: &Layout,
    batch_shape: &[usize],
    m: usize,
    k: usize,
    n: usize,
    epilogue: MatmulEpilogue<'_>,
    out: &wgpu::Buffer,
) {
    let batch: usize = batch_shape.iter().product();
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    let r = la.rank();
    let mut p = MatmulParams::zeroed();
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
    p.activation = activation_code(epilogue.activation);
    // Without a bias the kernels never read the binding; any read-only buffer fills it.
    let bias_buffer = match epilogue.bias {
        Some((buffer, offset, axis)) => {
            p.bias_mode = if axis == BiasAxis::Column { 1 } else { 2 };
            p.bias_offset = u32_of(offset);
            buffer
        }
        None => a,
    };
    // 16-byte loads and stores need row-major operands whose rows all start on a
    // 4-element boundary; anything else takes the scalar kernels.
    let aligned = p.a_col_stride == 1
        && p.b_col_stride == 1
        && [p.k, p.n, p.a_row_stride, p.b_row_stride, p.a_offset, p.b_offset].iter().all(|v| v % 4 == 0)
        && p.a_batch_strides.iter().chain(&p.b_batch_strides).all(|v| v % 4 == 0);
    let class = super::tuning::ShapeClass::new(m, n, k, batch, aligned, p.a_col_stride == 1, p.b_col_stride == 1);
    let buffers = [a, b, bias_buffer, out];
    let mut record = |config: &'static super::tuning::MatmulConfig, slice: super::tuning::Slice| {
        let mut q = p;
        q.m = u32_of(slice.rows);
        record_matmul(ctx, config, q, slice.batches, &buffers);
    };
    let config = super::tuning::choose(ctx, class, (m, n, k, batch), &mut record);
    record_matmul(ctx, config, p, batch, &buffers);
}

/// Records the dispatches of one configuration over `batch` batch entries (`p.m` rows each).
fn record_matmul(
    ctx: &GpuContext,
    config: &super::tuning::MatmulConfig,
    mut p: MatmulParams,
    batch: usize,
    buffers: &[&wgpu::Buffer; 4],
) {
    let tiles_m = (p.m as usize).div_ceil(config.tile_m);
    let tiles_n = (p.n as usize).div_ceil(config.tile_n);
    p.tiles_m = u32_of(tiles_m);
    p.tiles_n = u32_of(tiles_n);
    let grid = ctx.fold_workgroups(u32_of(tiles_m * tiles_n));
    let max_z = ctx.limits.max_compute_workgroups_per_dimension as usize;
    // The z dimension walks the batch; a batch beyond the limit takes several dispatches.
    let mut start = 0;
    while start < batch {
        let count = (batch - start).min(max_z);
        p.batch_start = u32_of(start);
        ctx.dispatch(config.kernel, bytemuck::bytes_of(&p), buffers, [grid[0], grid[1], u32_of(count)]);
        start += count;
    }
}

kernel_params! {
    /// `IndexParams` of index.wgsl and scatter.wgsl.
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

kernel_params! {
    /// `OptimParams` of optim.wgsl.
    struct OptimParams {
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
        seg: [[u32; 4]; OPTIM_SEGMENTS],
    }
}

/// Parameter tensors one optimizer dispatch updates at most (the `seg` table of optim.wgsl).
pub const OPTIM_SEGMENTS: usize = 3;

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

/// One fused optimizer update of up to [`OPTIM_SEGMENTS`] parameters and their state in
/// `arena`, in place. `state_pos[k]` is where state `k` lies in a segment's state block
/// (in units of the segment's length). `dummies` are distinct buffers, none of them a
/// parameter or the arena, bound in the place of missing segments' parameters (a
/// writable buffer may be bound only once per dispatch).
pub fn optim(
    ctx: &Arc<GpuContext>,
    op: OptimOp,
    s: &OptimScalars,
    state_pos: [u32; 3],
    segments: &[OptimSegment],
    arena: &wgpu::Buffer,
    dummies: [&wgpu::Buffer; OPTIM_SEGMENTS - 1],
) {
    assert!(
        (1..=OPTIM_SEGMENTS).contains(&segments.len()),
        "{}: {} segments in one dispatch",
        op.name(),
        segments.len()
    );
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
        seg: [[0; 4]; OPTIM_SEGMENTS],
    };
    let mut workgroups = 0usize;
    let mut grads = [segments[0].grad; OPTIM_SEGMENTS];
    let mut params = dummies.to_vec();
    params.insert(0, segments[0].param);
    for (k, seg) in segments.iter().enumerate() {
        p.seg[k] = [u32_of(workgroups), u32_of(seg.numel), u32_of(seg.grad_offset), u32_of(seg.state_offset)];
        workgroups += seg.numel.div_ceil(WORKGROUP_SIZE as usize);
        grads[k] = seg.grad;
        params[k] = seg.param;
    }
    let buffers = [grads[0], grads[1], grads[2], params[0], params[1], params[2], arena];
    ctx.dispatch(Op::Optim(op).kernel(), bytemuck::bytes_of(&p), &buffers, ctx.fold_workgroups(u32_of(workgroups)));
}

// ---- convolution ----

kernel_params! {
    /// `ConvParams` of conv.wgsl.
    struct ConvParams {
        batch: u32,
        channels: u32,
        height: u32,
        width: u32,
        out_h: u32,
        out_w: u32,
        kernel_h: u32,
        kernel_w: u32,
        stride_h: u32,
        stride_w: u32,
        pad_h: u32,
        pad_w: u32,
        dilation_h: u32,
        dilation_w: u32,
        src_offset: u32,
        numel: u32,
        col_n_stride: u32,
        col_r_stride: u32,
        _pad: [u32; 2],
        x_strides: [u32; 4],
    }
}

fn conv_params(g: &ConvGeometry, cols: ColumnLayout, src_offset: usize, numel: usize) -> ConvParams {
    let mut p = ConvParams::zeroed();
    p.batch = u32_of(g.batch);
    p.channels = u32_of(g.channels);
    p.height = u32_of(g.height);
    p.width = u32_of(g.width);
    [p.out_h, p.out_w] = g.out.map(u32_of);
    [p.kernel_h, p.kernel_w] = g.kernel.map(u32_of);
    [p.stride_h, p.stride_w] = g.stride.map(u32_of);
    [p.pad_h, p.pad_w] = g.padding.map(u32_of);
    [p.dilation_h, p.dilation_w] = g.dilation.map(u32_of);
    p.src_offset = u32_of(src_offset);
    p.numel = u32_of(numel);
    p.col_n_stride = u32_of(cols.n_stride);
    p.col_r_stride = u32_of(cols.r_stride);
    p
}

/// The column matrix of the `[N, C, H, W]` view `lx` of `x` into `out`, in `cols` layout.
pub fn im2col(
    ctx: &Arc<GpuContext>,
    x: &wgpu::Buffer,
    lx: &Layout,
    g: &ConvGeometry,
    cols: ColumnLayout,
    out: &wgpu::Buffer,
) {
    let numel = g.batch * g.rows() * g.positions();
    let mut p = conv_params(g, cols, lx.offset, numel);
    p.x_strides = [lx.strides[0], lx.strides[1], lx.strides[2], lx.strides[3]].map(u32_of);
    ctx.dispatch(Op::Conv(ConvOp::Im2col).kernel(), bytemuck::bytes_of(&p), &[x, out], linear_groups(ctx, numel));
}

/// The contiguous `[N, C, H, W]` adjoint of a column matrix that starts at `offset` in
/// `cols_buffer`.
pub fn col2im(
    ctx: &Arc<GpuContext>,
    cols_buffer: &wgpu::Buffer,
    offset: usize,
    cols: ColumnLayout,
    g: &ConvGeometry,
    out: &wgpu::Buffer,
) {
    let numel = g.batch * g.channels * g.height * g.width;
    let p = conv_params(g, cols, offset, numel);
    ctx.dispatch(
        Op::Conv(ConvOp::Col2im).kernel(),
        bytemuck::bytes_of(&p),
        &[cols_buffer, out],
        linear_groups(ctx, numel),
    );
}

kernel_params! {
    /// `DirectParams` of conv_direct.wgsl.
    struct DirectParams {
        batch: u32,
        channels: u32,
        height: u32,
        width: u32,
        out_channels: u32,
        out_h: u32,
        out_w: u32,
        groups: u32,
        kernel_h: u32,
        kernel_w: u32,
        stride_h: u32,
        stride_w: u32,
        pad_h: u32,
        pad_w: u32,
        dilation_h: u32,
        dilation_w: u32,
        x_offset: u32,
        has_bias: u32,
        blocks: u32,
        _pad: u32,
        x_strides: [u32; 4],
    }
}

/// Output channels and output columns one invocation of `conv2d_direct` computes (the
/// `OC_BLOCK` and `OX_BLOCK` of conv_direct.wgsl).
const DIRECT_BLOCK: [usize; 2] = [4, 4];

/// The direct convolution of the `[N, C, H, W]` view `lx` of `x` with the contiguous
/// weights `w` (`[out, C / groups, kh, kw]`) and, if given, the contiguous `[out]` bias,
/// into the contiguous `[N, out, oh, ow]` buffer `out`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_direct(
    ctx: &Arc<GpuContext>,
    x: &wgpu::Buffer,
    lx: &Layout,
    g: &ConvGeometry,
    w: &wgpu::Buffer,
    out_channels: usize,
    groups: usize,
    bias: Option<&wgpu::Buffer>,
    out: &wgpu::Buffer,
) {
    let per_group = out_channels / groups;
    let blocks = g.batch * groups * per_group.div_ceil(DIRECT_BLOCK[0]) * g.out[0] * g.out[1].div_ceil(DIRECT_BLOCK[1]);
    let p = DirectParams {
        batch: u32_of(g.batch),
        channels: u32_of(g.channels),
        height: u32_of(g.height),
        width: u32_of(g.width),
        out_channels: u32_of(out_channels),
        out_h: u32_of(g.out[0]),
        out_w: u32_of(g.out[1]),
        groups: u32_of(groups),
        kernel_h: u32_of(g.kernel[0]),
        kernel_w: u32_of(g.kernel[1]),
        stride_h: u32_of(g.stride[0]),
        stride_w: u32_of(g.stride[1]),
        pad_h: u32_of(g.padding[0]),
        pad_w: u32_of(g.padding[1]),
        dilation_h: u32_of(g.dilation[0]),
        dilation_w: u32_of(g.dilation[1]),
        x_offset: u32_of(lx.offset),
        has_bias: bias.is_some() as u32,
        blocks: u32_of(blocks),
        _pad: 0,
        x_strides: [lx.strides[0], lx.strides[1], lx.strides[2], lx.strides[3]].map(u32_of),
    };
    // Without a bias the weights stand in for the unread bias binding (both read-only).
    let buffers = [x, w, bias.unwrap_or(w), out];
    ctx.dispatch(Op::Conv(ConvOp::Conv2dDirect).kernel(), bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, blocks));
}

// ---- pooling ----

kernel_params! {
    /// `PoolParams` of pool.wgsl.
    struct PoolParams {
        numel: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        kernel_h: u32,
        kernel_w: u32,
        stride_h: u32,
        stride_w: u32,
        pad_h: u32,
        pad_w: u32,
        dilation_h: u32,
        dilation_w: u32,
        src_offset: u32,
        index_offset: u32,
        count_include_pad: u32,
        divisor_override: u32,
        _pad: [u32; 3],
    }
}

/// One pooling kernel over the contiguous planes `g` describes. `src` holds, from element
/// `src_offset`, the input (forward ops) or the output gradient (backward ops); `indices`
/// holds max_pool2d's indices from `index_offset` (read by `MaxPool2dBackward` only);
/// `out` receives the output or the input gradient, and `out_index` the indices
/// `MaxPool2d` writes. A binding the op does not use takes any buffer, except that
/// `out_index` must not be `out`, `src` or `indices`.
pub fn pool(
    ctx: &Arc<GpuContext>,
    op: crate::op::PoolOp,
    g: &PoolGeometry,
    src: &wgpu::Buffer,
    src_offset: usize,
    indices: &wgpu::Buffer,
    index_offset: usize,
    out: &wgpu::Buffer,
    out_index: &wgpu::Buffer,
) {
    use crate::op::PoolOp;
    let backward =
        matches!(op, PoolOp::MaxPool2dBackward | PoolOp::AvgPool2dBackward | PoolOp::AdaptiveAvgPool2dBackward);
    // Forward kernels run one invocation per output element, backward ones per input element.
    let numel = g.planes * if backward { g.in_plane() } else { g.out_plane() };
    let p = PoolParams {
        numel: u32_of(numel),
        in_h: u32_of(g.in_h),
        in_w: u32_of(g.in_w),
        out_h: u32_of(g.out_h),
        out_w: u32_of(g.out_w),
        kernel_h: u32_of(g.kernel[0]),
        kernel_w: u32_of(g.kernel[1]),
        stride_h: u32_of(g.stride[0]),
        stride_w: u32_of(g.stride[1]),
        pad_h: u32_of(g.padding[0]),
        pad_w: u32_of(g.padding[1]),
        dilation_h: u32_of(g.dilation[0]),
        dilation_w: u32_of(g.dilation[1]),
        src_offset: u32_of(src_offset),
        index_offset: u32_of(index_offset),
        count_include_pad: g.count_include_pad as u32,
        divisor_override: u32_of(g.divisor_override.unwrap_or(0)),
        _pad: [0; 3],
    };
    let buffers = [src, indices, out, out_index];
    ctx.dispatch(Op::Pool(op).kernel(), bytemuck::bytes_of(&p), &buffers, linear_groups(ctx, numel));
}

// ---- batch normalisation ----

kernel_params! {
    /// `BatchNormParams` of batch_norm.wgsl.
    struct BatchNormParams {
        n: u32,
        c: u32,
        l: u32,
        flags: u32,
        offsets: [u32; 4],
        eps: f32,
        _pad: [u32; 3],
    }
}

/// `flags` bits of [`batch_norm`], as batch_norm.wgsl names them.
pub const BATCH_NORM_HAS_WEIGHT: u32 = 1;
pub const BATCH_NORM_HAS_BIAS: u32 = 2;
pub const BATCH_NORM_TRAINING: u32 = 4;

/// One batch-normalisation kernel over contiguous `[n, c, l]` operands. `inputs` are the
/// four read bindings with the element offset each starts at (see batch_norm.wgsl for what
/// each entry point reads); unused ones may repeat any buffer. The reductions run one
/// workgroup per channel, the elementwise passes one invocation per element.
pub fn batch_norm(
    ctx: &Arc<GpuContext>,
    op: crate::op::BatchNormOp,
    [n, c, l]: [usize; 3],
    flags: u32,
    eps: f32,
    inputs: [(&wgpu::Buffer, usize); 4],
    out: &wgpu::Buffer,
) {
    use crate::op::BatchNormOp;
    let p = BatchNormParams {
        n: u32_of(n),
        c: u32_of(c),
        l: u32_of(l),
        flags,
        offsets: inputs.map(|(_, offset)| u32_of(offset)),
        eps,
        _pad: [0; 3],
    };
    let groups = match op {
        BatchNormOp::Stats | BatchNormOp::BackwardReduce => ctx.fold_workgroups(u32_of(c)),
        BatchNormOp::Apply | BatchNormOp::BackwardApply => linear_groups(ctx, n * c * l),
    };
    let buffers = [inputs[0].0, inputs[1].0, inputs[2].0, inputs[3].0, out];
    ctx.dispatch(Op::BatchNorm(op).kernel(), bytemuck::bytes_of(&p), &buffers, groups);
}

// ---- augmentation ----

kernel_params! {
    /// `CropFlipParams` of augment.wgsl.
    struct CropFlipParams {
        numel: u32,
        channels: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        src_offset: u32,
        windows_offset: u32,
        src_strides: [u32; 4],
    }
}

/// Crop-flip of the `[N, C, H, W]` view `ls` of `src` through the contiguous i32 windows
/// (`dy, dx, flip` per image) starting at element `windows_offset` of `windows`, into the
/// contiguous `[N, C, out_h, out_w]` `out`.
pub fn crop_flip(
    ctx: &Arc<GpuContext>,
    src: &wgpu::Buffer,
    ls: &Layout,
    windows: &wgpu::Buffer,
    windows_offset: usize,
    [out_h, out_w]: [usize; 2],
    out: &wgpu::Buffer,
) {
    let numel = ls.shape[0] * ls.shape[1] * out_h * out_w;
    let p = CropFlipParams {
        numel: u32_of(numel),
        channels: u32_of(ls.shape[1]),
        in_h: u32_of(ls.shape[2]),
        in_w: u32_of(ls.shape[3]),
        out_h: u32_of(out_h),
        out_w: u32_of(out_w),
        src_offset: u32_of(ls.offset),
        windows_offset: u32_of(windows_offset),
        src_strides: [u32_of(ls.strides[0]), u32_of(ls.strides[1]), u32_of(ls.strides[2]), u32_of(ls.strides[3])],
    };
    let kernel = Op::Augment(crate::op::AugmentOp::CropFlip).kernel();
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[src, windows, out], linear_groups(ctx, numel));
}

// ---- embedding ----

kernel_params! {
    /// `EmbeddingParams` of embedding.wgsl.
    struct EmbeddingParams {
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
    // The lookup does not use the work binding, but a writable binding needs a buffer of
    // its own.
    let unused = super::GpuBuffer::new(ctx, 16);
    let kernel = Op::Embedding(EmbeddingOp::Lookup).kernel();
    let buffers = [weight, indices, unused.buffer(), out];
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
    // The sort kernels write only `work`; the output binding still needs a buffer of its own.
    let unused = super::GpuBuffer::new(ctx, 16);
    let buffers = [indices, indices, work, unused.buffer()];
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

// ---- layer normalisation ----

kernel_params! {
    /// `LayerNormParams` of layer_norm.wgsl.
    struct LayerNormParams {
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

// ---- recurrent cells ----

kernel_params! {
    /// `RnnParams` of rnn.wgsl.
    struct RnnParams {
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

/// `flags` bit of [`rnn_cell`] (rnn.wgsl's `HAS_BIAS`): add the biases bound as in2, in3.
pub const RNN_HAS_BIAS: u32 = 1;
/// `HAS_LENGTHS`: a step at or past `lengths[b]` carries sequence `b`'s state through.
pub const RNN_HAS_LENGTHS: u32 = 2;
/// `RELU`: the Elman cell uses relu instead of tanh.
pub const RNN_RELU: u32 = 4;

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

// ---- half precision ----

use crate::op::HalfOp;

kernel_params! {
    /// `HalfParams` of half.wgsl.
    struct HalfParams {
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
    struct HalfMatmulParams {
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
            let file = super::shaders::half_matmul_coop_file(tile);
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

// ---- loss ----

kernel_params! {
    /// `LossParams` of loss.wgsl.
    struct LossParams {
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

/// Every params struct of the launchers above, for the test that compares each with its
/// WGSL twin (see [`super::params`]).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const PARAMS: &[ParamsLayout] = &[
    ElementwiseParams::LAYOUT,
    CreationParams::LAYOUT,
    ReduceParams::LAYOUT,
    SoftmaxParams::LAYOUT,
    MatmulParams::LAYOUT,
    IndexParams::LAYOUT,
    OptimParams::LAYOUT,
    ConvParams::LAYOUT,
    DirectParams::LAYOUT,
    PoolParams::LAYOUT,
    BatchNormParams::LAYOUT,
    CropFlipParams::LAYOUT,
    EmbeddingParams::LAYOUT,
    LayerNormParams::LAYOUT,
    RnnParams::LAYOUT,
    HalfParams::LAYOUT,
    HalfMatmulParams::LAYOUT,
    LossParams::LAYOUT,
];
