//! Where a tensor's elements live: a host vector or a pooled device buffer. Views share
//! one storage through an `Arc`; ops never modify an input's storage.
//!
//! The op methods of [`Storage`] are where the engine chooses a device: each matches on
//! the storage once and calls the [`Backend`] that holds it (see [`crate::backend`]).

use std::sync::RwLock;

use half::f16;

use crate::backend::Backend;
use crate::cpu::alloc::try_zeroed;
use crate::cpu::backend::CpuBackend;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::Result;
use crate::gpu::pool::GpuBuffer;
use crate::op::layout::Layout;
use crate::op::{BinaryOp, UnaryOp};

// The layer families.
use std::sync::RwLockReadGuard;

use crate::backend::{At, OptimSegment};
use crate::op::loss::CrossEntropyRows;
use crate::op::norm::{BnDims, LnDims};
use crate::op::optim::OptimScalars;
use crate::op::pool::PoolGeometry;
use crate::op::{BatchNormOp, LayerNormOp, OptimOp, PoolOp};

// Convolution.
use crate::op::conv::{ColumnLayout, ConvAlgorithm, ConvChannels, ConvGeometry};

// Recurrent layers.
use crate::backend::{LstmLayerBackward, LstmLayerForward, RnnCellOperands, View};
use crate::op::rnn::CellStep;
use crate::op::RnnOp;

/// Host-side elements of one dtype.
#[derive(Clone, Debug)]
pub enum CpuData {
    F32(Vec<f32>),
    I32(Vec<i32>),
    F16(Vec<f16>),
}

impl CpuData {
    pub fn dtype(&self) -> DType {
        match self {
            CpuData::F32(_) => DType::F32,
            CpuData::I32(_) => DType::I32,
            CpuData::F16(_) => DType::F16,
        }
    }

    /// `n` zero elements of `dtype`, or [`crate::Error::OutOfMemory`] naming `op` when the
    /// host cannot allocate them.
    pub fn try_zeros(dtype: DType, n: usize, op: &str) -> Result<CpuData> {
        Ok(match dtype {
            DType::F32 => CpuData::F32(try_zeroed(n, op)?),
            DType::I32 => CpuData::I32(try_zeroed(n, op)?),
            DType::F16 => CpuData::F16(try_zeroed(n, op)?),
        })
    }

    /// As [`CpuData::try_zeros`], panicking with the error's message (an abort, as
    /// `vec![0; n]` would do, cannot be caught).
    pub fn zeros(dtype: DType, n: usize, op: &str) -> CpuData {
        CpuData::try_zeros(dtype, n, op).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn as_f32(&self) -> &[f32] {
        match self {
            CpuData::F32(v) => v,
            other => panic!("expected f32 storage, found {}", other.dtype()),
        }
    }

    pub fn as_i32(&self) -> &[i32] {
        match self {
            CpuData::I32(v) => v,
            other => panic!("expected i32 storage, found {}", other.dtype()),
        }
    }

    pub fn as_f16(&self) -> &[f16] {
        match self {
            CpuData::F16(v) => v,
            other => panic!("expected f16 storage, found {}", other.dtype()),
        }
    }

    /// The elements as raw 32-bit words, for dtype-agnostic copies of the 4-byte dtypes.
    /// Panics on `f16` storage, whose elements are half a word: copy it with
    /// [`CpuData::gather`] instead.
    pub fn words(&self) -> &[u32] {
        match self {
            CpuData::F32(v) => bytemuck::cast_slice(v),
            CpuData::I32(v) => bytemuck::cast_slice(v),
            CpuData::F16(_) => panic!("words: f16 storage has 2-byte elements and cannot be read as 32-bit words"),
        }
    }

    /// The elements as mutable raw 32-bit words; panics on `f16` storage as [`CpuData::words`].
    pub fn words_mut(&mut self) -> &mut [u32] {
        match self {
            CpuData::F32(v) => bytemuck::cast_slice_mut(v),
            CpuData::I32(v) => bytemuck::cast_slice_mut(v),
            CpuData::F16(_) => {
                panic!("words_mut: f16 storage has 2-byte elements and cannot be written as 32-bit words")
            }
        }
    }

    /// The elements as raw bytes, for copies that know the element size (any dtype).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            CpuData::F32(v) => bytemuck::cast_slice_mut(v),
            CpuData::I32(v) => bytemuck::cast_slice_mut(v),
            CpuData::F16(v) => bytemuck::cast_slice_mut(v),
        }
    }

    /// The elements at `indices` (storage positions), in order, as new storage of the same dtype.
    pub fn gather(&self, indices: impl Iterator<Item = usize>) -> CpuData {
        match self {
            CpuData::F32(v) => CpuData::F32(indices.map(|i| v[i]).collect()),
            CpuData::I32(v) => CpuData::I32(indices.map(|i| v[i]).collect()),
            CpuData::F16(v) => CpuData::F16(indices.map(|i| v[i]).collect()),
        }
    }
}

/// The backing store of one or more tensors.
#[derive(Debug)]
pub enum Storage {
    /// Behind a lock so optimizers can update parameters in place.
    Cpu(RwLock<CpuData>),
    Gpu(GpuBuffer),
}

/// Operands of one op must share a device; the tensor layer has checked that they do.
fn mixed_devices(op: &str) -> ! {
    unreachable!("{op}: operands on different devices reached the backend")
}

impl Storage {
    fn cpu(data: CpuData) -> Storage {
        Storage::Cpu(RwLock::new(data))
    }

    /// The device that holds this storage.
    pub(crate) fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(buffer) => Device::Gpu(buffer.ctx.clone()),
        }
    }

    /// Unary `op` of the f32 view `layout` of this storage (see [`Backend::unary`]).
    pub(crate) fn unary(&self, op: UnaryOp, scalars: [f32; 2], layout: &Layout) -> Storage {
        match self {
            Storage::Cpu(x) => Storage::cpu(CpuBackend.unary(op, scalars, &x.read().unwrap(), layout)),
            Storage::Gpu(x) => Storage::Gpu(x.ctx.unary(op, scalars, x, layout)),
        }
    }

    /// Binary `op` of two f32 views broadcast to one shape (see [`Backend::binary`]).
    pub(crate) fn binary(&self, op: BinaryOp, la: &Layout, other: &Storage, lb: &Layout) -> Storage {
        match (self, other) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::cpu(CpuBackend.binary(op, &a.read().unwrap(), la, &b.read().unwrap(), lb))
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => Storage::Gpu(a.ctx.binary(op, a, la, b, lb)),
            _ => mixed_devices(op.name()),
        }
    }

    /// `where(cond, self, other)` of three f32 views broadcast to one shape (see
    /// [`Backend::where_select`]).
    pub(crate) fn where_select(&self, la: &Layout, cond: (&Storage, &Layout), other: (&Storage, &Layout)) -> Storage {
        let ((c, lc), (b, lb)) = (cond, other);
        match (c, self, b) {
            (Storage::Cpu(c), Storage::Cpu(a), Storage::Cpu(b)) => {
                let (c, a, b) = (c.read().unwrap(), a.read().unwrap(), b.read().unwrap());
                Storage::cpu(CpuBackend.where_select((&c, lc), (&a, la), (&b, lb)))
            }
            (Storage::Gpu(c), Storage::Gpu(a), Storage::Gpu(b)) => {
                Storage::Gpu(a.ctx.where_select((c, lc), (a, la), (b, lb)))
            }
            _ => mixed_devices("where"),
        }
    }
}

// ---- pooling, layer and batch norm, embedding, cross-entropy, optimizer step ----

/// A storage and the element an operand starts at.
pub(crate) type StorageAt<'a> = At<'a, Storage>;

impl Storage {
    /// The host elements of an operand of an op that runs on the CPU.
    fn host(&self, op: &str) -> RwLockReadGuard<'_, CpuData> {
        match self {
            Storage::Cpu(data) => data.read().unwrap(),
            Storage::Gpu(_) => mixed_devices(op),
        }
    }

    /// The device buffer of an operand of an op that runs on the GPU.
    fn device_buffer(&self, op: &str) -> &GpuBuffer {
        match self {
            Storage::Gpu(buffer) => buffer,
            Storage::Cpu(_) => mixed_devices(op),
        }
    }

    /// One pooling kernel on the contiguous planes of this storage from `offset` (see
    /// [`Backend::pool`]).
    pub(crate) fn pool(
        &self,
        op: PoolOp,
        g: &PoolGeometry,
        offset: usize,
        indices: Option<StorageAt>,
    ) -> (Storage, Option<Storage>) {
        let name = op.name();
        match self {
            Storage::Cpu(src) => {
                let src = src.read().unwrap();
                let indices = indices.map(|(s, at)| (s.host(name), at));
                let (out, idx) = CpuBackend.pool(op, g, (&src, offset), indices.as_ref().map(|(i, at)| (&**i, *at)));
                (Storage::cpu(out), idx.map(Storage::cpu))
            }
            Storage::Gpu(src) => {
                let indices = indices.map(|(s, at)| (s.device_buffer(name), at));
                let (out, idx) = src.ctx.pool(op, g, (src, offset), indices);
                (Storage::Gpu(out), idx.map(Storage::Gpu))
            }
        }
    }

    /// One layer-normalisation kernel (see [`Backend::layer_norm`]); `operands[0]`, `x`,
    /// is always present and decides the device.
    pub(crate) fn layer_norm(
        op: LayerNormOp,
        d: LnDims,
        eps: f32,
        chunk_rows: usize,
        operands: [Option<StorageAt>; 4],
    ) -> (Storage, Option<Storage>) {
        let (x, _) = operands[0].expect("every layer_norm kernel reads x");
        match x {
            Storage::Cpu(_) => {
                let guards = operands.map(|o| o.map(|(s, at)| (s.host("layer_norm"), at)));
                let operands = guards.each_ref().map(|o| o.as_ref().map(|(g, at)| (&**g, *at)));
                let (out, stats) = CpuBackend.layer_norm(op, d, eps, chunk_rows, operands);
                (Storage::cpu(out), stats.map(Storage::cpu))
            }
            Storage::Gpu(x) => {
                let operands = operands.map(|o| o.map(|(s, at)| (s.device_buffer("layer_norm"), at)));
                let (out, stats) = x.ctx.layer_norm(op, d, eps, chunk_rows, operands);
                (Storage::Gpu(out), stats.map(Storage::Gpu))
            }
        }
    }

    /// One batch-normalisation kernel (see [`Backend::batch_norm`]); `inputs[0]` decides
    /// the device.
    pub(crate) fn batch_norm(op: BatchNormOp, d: BnDims, flags: u32, eps: f32, inputs: [StorageAt; 4]) -> Storage {
        match inputs[0].0 {
            Storage::Cpu(_) => {
                let guards = inputs.map(|(s, at)| (s.host("batch_norm"), at));
                let inputs = guards.each_ref().map(|(g, at)| (&**g, *at));
                Storage::cpu(CpuBackend.batch_norm(op, d, flags, eps, inputs))
            }
            Storage::Gpu(x) => {
                let inputs = inputs.map(|(s, at)| (s.device_buffer("batch_norm"), at));
                Storage::Gpu(x.ctx.batch_norm(op, d, flags, eps, inputs))
            }
        }
    }

    /// The rows of this table (the view `lw`) picked by `n` indices (see
    /// [`Backend::embedding`]).
    pub(crate) fn embedding(&self, lw: &Layout, (indices, at): StorageAt, n: usize) -> Storage {
        match self {
            Storage::Cpu(w) => {
                Storage::cpu(CpuBackend.embedding(&w.read().unwrap(), lw, (&indices.host("embedding"), at), n))
            }
            Storage::Gpu(w) => Storage::Gpu(w.ctx.embedding(w, lw, (indices.device_buffer("embedding"), at), n)),
        }
    }

    /// The `[rows, dim]` table gradient from this output gradient, contiguous from
    /// `offset` (see [`Backend::embedding_backward`]).
    pub(crate) fn embedding_backward(
        &self,
        offset: usize,
        (indices, at): StorageAt,
        n: usize,
        table: [usize; 2],
        padding_idx: Option<usize>,
    ) -> Storage {
        match self {
            Storage::Cpu(g) => {
                let (g, indices) = (g.read().unwrap(), indices.host("embedding"));
                Storage::cpu(CpuBackend.embedding_backward((&g, offset), (&indices, at), n, table, padding_idx))
            }
            Storage::Gpu(g) => {
                let indices = (indices.device_buffer("embedding"), at);
                Storage::Gpu(g.ctx.embedding_backward((g, offset), indices, n, table, padding_idx))
            }
        }
    }

    /// The `n` i32 indices of this storage from `offset`, grouped by value (see
    /// [`Backend::group_by_index`]).
    pub(crate) fn group_by_index(&self, offset: usize, n: usize, groups: usize) -> (Storage, Storage) {
        match self {
            Storage::Cpu(x) => {
                let (order, offsets) = CpuBackend.group_by_index((&x.read().unwrap(), offset), n, groups);
                (Storage::cpu(order), Storage::cpu(offsets))
            }
            Storage::Gpu(x) => {
                let (order, offsets) = x.ctx.group_by_index((x, offset), n, groups);
                (Storage::Gpu(order), Storage::Gpu(offsets))
            }
        }
    }

    /// The fused cross-entropy forward of these logits (see
    /// [`Backend::cross_entropy_forward`]).
    pub(crate) fn cross_entropy_forward(
        &self,
        op: &str,
        spec: &CrossEntropyRows,
        offset: usize,
        (targets, targets_at): StorageAt,
        weight: Option<StorageAt>,
    ) -> Storage {
        match self {
            Storage::Cpu(x) => {
                let (x, t) = (x.read().unwrap(), targets.host(op));
                let w = weight.map(|(w, at)| (w.host(op), at));
                let w = w.as_ref().map(|(w, at)| (&**w, *at));
                Storage::cpu(CpuBackend.cross_entropy_forward(op, spec, (&x, offset), (&t, targets_at), w))
            }
            Storage::Gpu(x) => {
                let t = (targets.device_buffer(op), targets_at);
                let w = weight.map(|(w, at)| (w.device_buffer(op), at));
                Storage::Gpu(x.ctx.cross_entropy_forward(op, spec, (x, offset), t, w))
            }
        }
    }

    /// The fused cross-entropy's gradient with respect to these logits (see
    /// [`Backend::cross_entropy_backward`]).
    pub(crate) fn cross_entropy_backward(
        &self,
        spec: &CrossEntropyRows,
        offset: usize,
        ((targets, targets_at), weight): (StorageAt, Option<StorageAt>),
        (aux, aux_at): StorageAt,
        (grad, grad_at): StorageAt,
    ) -> Storage {
        const OP: &str = "cross_entropy backward";
        match self {
            Storage::Cpu(x) => {
                let (x, t, a, g) = (x.read().unwrap(), targets.host(OP), aux.host(OP), grad.host(OP));
                let w = weight.map(|(w, at)| (w.host(OP), at));
                let w = w.as_ref().map(|(w, at)| (&**w, *at));
                let operands = ((&*x, offset), (&*t, targets_at), w);
                Storage::cpu(CpuBackend.cross_entropy_backward(spec, operands, (&a, aux_at), (&g, grad_at)))
            }
            Storage::Gpu(x) => {
                let t = (targets.device_buffer(OP), targets_at);
                let w = weight.map(|(w, at)| (w.device_buffer(OP), at));
                let (a, g) = ((aux.device_buffer(OP), aux_at), (grad.device_buffer(OP), grad_at));
                Storage::Gpu(x.ctx.cross_entropy_backward(spec, ((x, offset), t, w), a, g))
            }
        }
    }

    /// One optimizer update of `segments` in place, with their state in this arena (see
    /// [`Backend::optim_step`]).
    pub(crate) fn optim_step(
        &self,
        op: OptimOp,
        s: &OptimScalars,
        used: [bool; 3],
        segments: &[OptimSegment<Storage>],
    ) {
        let name = op.name();
        match self {
            Storage::Cpu(arena) => {
                fn host<'a>(s: &'a Storage, name: &str) -> &'a RwLock<CpuData> {
                    match s {
                        Storage::Cpu(data) => data,
                        Storage::Gpu(_) => mixed_devices(name),
                    }
                }
                let segments: Vec<_> = segments
                    .iter()
                    .map(|seg| OptimSegment {
                        param: host(seg.param, name),
                        grad: host(seg.grad, name),
                        grad_offset: seg.grad_offset,
                        state_offset: seg.state_offset,
                        numel: seg.numel,
                    })
                    .collect();
                CpuBackend.optim_step(op, s, used, &segments, arena);
            }
            Storage::Gpu(arena) => {
                let segments: Vec<_> = segments
                    .iter()
                    .map(|seg| OptimSegment {
                        param: seg.param.device_buffer(name),
                        grad: seg.grad.device_buffer(name),
                        grad_offset: seg.grad_offset,
                        state_offset: seg.state_offset,
                        numel: seg.numel,
                    })
                    .collect();
                arena.ctx.optim_step(op, s, used, &segments, arena);
            }
        }
    }
}

// ---- convolution and its two gradients ----

impl Storage {
    /// The column matrix of the `[N, C, H, W]` view `layout` of this storage (see
    /// [`Backend::im2col`]).
    pub(crate) fn im2col(&self, layout: &Layout, g: &ConvGeometry, columns: ColumnLayout) -> Storage {
        match self {
            Storage::Cpu(x) => Storage::cpu(CpuBackend.im2col(&x.read().unwrap(), layout, g, columns)),
            Storage::Gpu(x) => Storage::Gpu(x.ctx.im2col(x, layout, g, columns)),
        }
    }

    /// This contiguous column matrix from `offset`, folded back into a batch (see
    /// [`Backend::col2im`]).
    pub(crate) fn col2im(&self, offset: usize, columns: ColumnLayout, g: &ConvGeometry) -> Storage {
        match self {
            Storage::Cpu(cols) => Storage::cpu(CpuBackend.col2im((&cols.read().unwrap(), offset), columns, g)),
            Storage::Gpu(cols) => Storage::Gpu(cols.ctx.col2im((cols, offset), columns, g)),
        }
    }

    /// The backend's fused forward convolution, or `None` for the composed path (see
    /// [`Backend::conv2d`]); the input `x` decides the device.
    pub(crate) fn conv2d(
        (x, lx): (&Storage, &Layout),
        (w, w_at): StorageAt,
        bias: Option<StorageAt>,
        g: &ConvGeometry,
        ch: ConvChannels,
        algorithm: ConvAlgorithm,
    ) -> Option<Storage> {
        match x {
            Storage::Cpu(x) => {
                let (x, w) = (x.read().unwrap(), w.host("conv2d"));
                let bias = bias.map(|(b, at)| (b.host("conv2d"), at));
                let bias = bias.as_ref().map(|(b, at)| (&**b, *at));
                CpuBackend.conv2d((&x, lx), (&w, w_at), bias, g, ch, algorithm).map(Storage::cpu)
            }
            Storage::Gpu(x) => {
                let w = (w.device_buffer("conv2d"), w_at);
                let bias = bias.map(|(b, at)| (b.device_buffer("conv2d"), at));
                x.ctx.conv2d((x, lx), w, bias, g, ch, algorithm).map(Storage::Gpu)
            }
        }
    }

    /// The backend's fused input and weight gradients, or `None` for the composed path
    /// (see [`Backend::conv2d_backward`]); the output gradient decides the device.
    pub(crate) fn conv2d_backward(
        (gy, gy_at): StorageAt,
        (x, lx): (&Storage, &Layout),
        (w, w_at): StorageAt,
        g: &ConvGeometry,
        ch: ConvChannels,
        wanted: [bool; 2],
    ) -> Option<[Option<Storage>; 2]> {
        const OP: &str = "conv2d backward";
        match gy {
            Storage::Cpu(gy) => {
                let (gy, x, w) = (gy.read().unwrap(), x.host(OP), w.host(OP));
                let grads = CpuBackend.conv2d_backward((&gy, gy_at), (&x, lx), (&w, w_at), g, ch, wanted)?;
                Some(grads.map(|d| d.map(Storage::cpu)))
            }
            Storage::Gpu(gy) => {
                let (x, w) = ((x.device_buffer(OP), lx), (w.device_buffer(OP), w_at));
                let grads = gy.ctx.conv2d_backward((gy, gy_at), x, w, g, ch, wanted)?;
                Some(grads.map(|d| d.map(Storage::Gpu)))
            }
        }
    }
}

// ---- recurrent step and whole layer ----

/// Read guards on the host operands of a recurrent op, in the order given.
type HostViews<'a, const N: usize> = [Option<(RwLockReadGuard<'a, CpuData>, &'a Layout)>; N];

impl Storage {
    /// The lock of an operand that a CPU op writes in place.
    fn host_lock(&self, op: &str) -> &RwLock<CpuData> {
        match self {
            Storage::Cpu(data) => data,
            Storage::Gpu(_) => mixed_devices(op),
        }
    }

    /// Read guards on optional host views.
    fn host_views<'a, const N: usize>(views: [Option<View<'a, Storage>>; N], op: &str) -> HostViews<'a, N> {
        views.map(|v| v.map(|(s, l)| (s.host(op), l)))
    }

    /// One fused recurrent cell step in place (see [`Backend::rnn_cell`]); the first
    /// output decides the device.
    pub(crate) fn rnn_cell(op: RnnOp, step: &CellStep, flags: u32, x: RnnCellOperands<Storage, Storage>) {
        let name = op.name();
        let (first, _) = x.outputs[0].expect("every cell writes its first output");
        match first {
            Storage::Cpu(_) => {
                let inputs = Storage::host_views(x.inputs, name);
                let [lengths] = Storage::host_views([x.lengths], name);
                let operands = RnnCellOperands {
                    inputs: inputs.each_ref().map(guard_view),
                    lengths: guard_view(&lengths),
                    outputs: x.outputs.map(|v| v.map(|(s, l)| (s.host_lock(name), l))),
                };
                CpuBackend.rnn_cell(op, step, flags, operands);
            }
            Storage::Gpu(out) => {
                let operands = RnnCellOperands {
                    inputs: x.inputs.map(|v| v.map(|v| device_view(v, name))),
                    lengths: x.lengths.map(|v| device_view(v, name)),
                    outputs: x.outputs.map(|v| v.map(|v| device_view(v, name))),
                };
                out.ctx.rnn_cell(op, step, flags, operands);
            }
        }
    }

    /// The backend's whole-layer LSTM forward pass, or `false` for the composed path
    /// (see [`Backend::lstm_layer_forward`]).
    pub(crate) fn lstm_layer_forward(x: LstmLayerForward<Storage, Storage>) -> bool {
        const OP: &str = "lstm layer";
        match x.state.0 {
            Storage::Cpu(_) => {
                let [xw, w_hh_t, b_ih, b_hh, lengths] = Storage::host_views(
                    [Some(x.xw), Some(x.w_hh_t), x.bias.map(|b| b.0), x.bias.map(|b| b.1), x.lengths],
                    OP,
                );
                CpuBackend.lstm_layer_forward(LstmLayerForward {
                    steps: x.steps,
                    xw: guard_view(&xw).expect("xw"),
                    w_hh_t: guard_view(&w_hh_t).expect("w_hh_t"),
                    bias: guard_view(&b_ih).zip(guard_view(&b_hh)),
                    lengths: guard_view(&lengths),
                    state: (x.state.0.host_lock(OP), x.state.1),
                    ws: (x.ws.0.host_lock(OP), x.ws.1),
                })
            }
            Storage::Gpu(state) => state.ctx.lstm_layer_forward(LstmLayerForward {
                steps: x.steps,
                xw: device_view(x.xw, OP),
                w_hh_t: device_view(x.w_hh_t, OP),
                bias: x.bias.map(|(a, b)| (device_view(a, OP), device_view(b, OP))),
                lengths: x.lengths.map(|v| device_view(v, OP)),
                state: device_view(x.state, OP),
                ws: device_view(x.ws, OP),
            }),
        }
    }

    /// The backend's whole-layer LSTM backward pass, or `false` for the composed path
    /// (see [`Backend::lstm_layer_backward`]).
    pub(crate) fn lstm_layer_backward(x: LstmLayerBackward<Storage, Storage>) -> bool {
        const OP: &str = "lstm layer backward";
        match x.dgates.0 {
            Storage::Cpu(_) => {
                let [d_state, ws, state, w_hh, lengths] =
                    Storage::host_views([Some(x.d_state), Some(x.ws), Some(x.state), Some(x.w_hh), x.lengths], OP);
                CpuBackend.lstm_layer_backward(LstmLayerBackward {
                    steps: x.steps,
                    d_state: guard_view(&d_state).expect("d_state"),
                    ws: guard_view(&ws).expect("ws"),
                    state: guard_view(&state).expect("state"),
                    w_hh: guard_view(&w_hh).expect("w_hh"),
                    lengths: guard_view(&lengths),
                    dgates: (x.dgates.0.host_lock(OP), x.dgates.1),
                    carry: (x.carry.0.host_lock(OP), x.carry.1),
                })
            }
            Storage::Gpu(dgates) => dgates.ctx.lstm_layer_backward(LstmLayerBackward {
                steps: x.steps,
                d_state: device_view(x.d_state, OP),
                ws: device_view(x.ws, OP),
                state: device_view(x.state, OP),
                w_hh: device_view(x.w_hh, OP),
                lengths: x.lengths.map(|v| device_view(v, OP)),
                dgates: device_view(x.dgates, OP),
                carry: device_view(x.carry, OP),
            }),
        }
    }
}

/// The view a read guard holds.
fn guard_view<'a>(v: &'a Option<(RwLockReadGuard<'_, CpuData>, &'a Layout)>) -> Option<View<'a, CpuData>> {
    v.as_ref().map(|(g, l)| (&**g, *l))
}

/// The device buffer of a view of an op that runs on the GPU.
fn device_view<'a>((s, l): View<'a, Storage>, op: &str) -> View<'a, GpuBuffer> {
    (s.device_buffer(op), l)
}
