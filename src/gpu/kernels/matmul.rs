//! Batched f32 matmul with its fused epilogue (matmul.wgsl, matmul_vec4.wgsl), in the tile
//! configuration [`crate::gpu::tuning`] chooses.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::{pack, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::layout::{Layout, MAX_DIMS};
use crate::op::matmul::Activation;

pub use crate::op::matmul::BiasAxis;

kernel_params! {
    /// `MatmulParams` of matmul.wgsl and matmul_vec4.wgsl.
    pub(super) struct MatmulParams {
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
/// The tile configuration comes from [`crate::gpu::tuning`]: the one forced, or the winner of
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
    let class = crate::gpu::tuning::ShapeClass::new(m, n, k, batch, aligned, p.a_col_stride == 1, p.b_col_stride == 1);
    let buffers = [a, b, bias_buffer, out];
    let mut record = |config: &'static crate::gpu::tuning::MatmulConfig, slice: crate::gpu::tuning::Slice| {
        let mut q = p;
        q.m = u32_of(slice.rows);
        record_matmul(ctx, config, q, slice.batches, &buffers);
    };
    let config = crate::gpu::tuning::choose(ctx, class, (m, n, k, batch), &mut record);
    record_matmul(ctx, config, p, batch, &buffers);
}

/// Records the dispatches of one configuration over `batch` batch entries (`p.m` rows each).
fn record_matmul(
    ctx: &GpuContext,
    config: &crate::gpu::tuning::MatmulConfig,
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
