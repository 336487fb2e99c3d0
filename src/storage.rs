//! Where a tensor's elements live: a host vector or a pooled device buffer. Views share
//! one storage through an `Arc`; ops never modify an input's storage.
//!
//! The op methods of [`Storage`] are where the engine chooses a device: each matches on
//! the storage once and calls the [`Backend`] that holds it (see [`crate::backend`]).

use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use half::f16;

use crate::backend::Backend;
use crate::cpu::alloc::try_zeroed;
use crate::cpu::backend::CpuBackend;
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::gpu::pool::GpuBuffer;
use crate::op::layout::Layout;
use crate::op::matmul::{Epilogue, MatmulDims};
use crate::op::{BinaryOp, Creation, HalfOp, IndexOp, ReduceOp, SoftmaxOp, UnaryOp};
use crate::op::{ConvOp, EmbeddingOp, LossOp, Op};
use crate::shadow;

/// The dtype of most operands, short for the shadow checks' operand lists.
const F32: DType = DType::F32;

// The layer families.
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
    /// Host storage holding `data`.
    pub(crate) fn cpu(data: CpuData) -> Storage {
        // The allocator is tuned before the first host tensor exists.
        crate::cpu::alloc::tune_once();
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
            Storage::Gpu(x) => {
                let check = shadow::begin(&x.ctx, [(self, F32)]);
                let out = Storage::Gpu(x.ctx.unary(op, scalars, x, layout));
                if let Some(c) = check {
                    let args = || format!("x {layout:?}, scalars {scalars:?}");
                    c.finish(Op::Unary(op), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).unary(op, scalars, layout)]
                    });
                }
                out
            }
        }
    }

    /// Binary `op` of two f32 views broadcast to one shape (see [`Backend::binary`]).
    pub(crate) fn binary(&self, op: BinaryOp, la: &Layout, other: &Storage, lb: &Layout) -> Storage {
        match (self, other) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                Storage::cpu(CpuBackend.binary(op, &a.read().unwrap(), la, &b.read().unwrap(), lb))
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => {
                let check = shadow::begin(&a.ctx, [(self, F32), (other, F32)]);
                let out = Storage::Gpu(a.ctx.binary(op, a, la, b, lb));
                if let Some(c) = check {
                    let args = || format!("a {la:?}, b {lb:?}");
                    c.finish(Op::Binary(op), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).binary(op, la, m.get(other), lb)]
                    });
                }
                out
            }
            _ => mixed_devices(op.name()),
        }
    }

    /// The fused ReLU gradient of `self` (the incoming gradient) at `x`, where the
    /// backend has one (see [`Backend::relu_backward`]).
    pub(crate) fn relu_backward(&self, lg: &Layout, x: &Storage, lx: &Layout) -> Option<Storage> {
        match (self, x) {
            (Storage::Cpu(g), Storage::Cpu(x)) => {
                CpuBackend.relu_backward((&g.read().unwrap(), lg), (&x.read().unwrap(), lx)).map(Storage::cpu)
            }
            (Storage::Gpu(g), Storage::Gpu(x)) => g.ctx.relu_backward((g, lg), (x, lx)).map(Storage::Gpu),
            _ => mixed_devices("relu_backward"),
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
            (Storage::Gpu(gc), Storage::Gpu(ga), Storage::Gpu(gb)) => {
                let (cond, other) = (c, b);
                let check = shadow::begin(&ga.ctx, [(cond, F32), (self, F32), (other, F32)]);
                let out = Storage::Gpu(ga.ctx.where_select((gc, lc), (ga, la), (gb, lb)));
                if let Some(check) = check {
                    let args = || format!("cond {lc:?}, a {la:?}, b {lb:?}");
                    check.finish(Op::Where, args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).where_select(la, (m.get(cond), lc), (m.get(other), lb))]
                    });
                }
                out
            }
            _ => mixed_devices("where"),
        }
    }

    // ---- creation, upload, read-back and copies ----

    /// The host data of CPU storage, for the families that have not moved behind the
    /// seam yet.
    pub(crate) fn cpu_data(&self) -> RwLockReadGuard<'_, CpuData> {
        match self {
            Storage::Cpu(d) => d.read().unwrap(),
            Storage::Gpu(_) => unreachable!("cpu_data on GPU storage"),
        }
    }

    /// The device buffer of GPU storage, for the families that have not moved behind the
    /// seam yet.
    pub(crate) fn gpu_buffer(&self) -> &GpuBuffer {
        match self {
            Storage::Gpu(b) => b,
            Storage::Cpu(_) => unreachable!("gpu_buffer on CPU storage"),
        }
    }

    /// `n` elements of `dtype` on `device`, for an op that writes all of them (see
    /// [`Backend::alloc`]).
    pub(crate) fn empty(device: &Device, dtype: DType, n: usize, op: &str) -> Storage {
        match device {
            Device::Cpu => Storage::cpu(CpuBackend.alloc(dtype, n, op)),
            Device::Gpu(ctx) => Storage::Gpu(ctx.alloc(dtype, n, op)),
        }
    }

    /// New storage on `device` holding `data` (see [`Backend::try_upload`]).
    pub(crate) fn try_upload<T: Element>(device: &Device, data: &[T], op: &str) -> Result<Storage> {
        Ok(match device {
            Device::Cpu => Storage::cpu(CpuBackend.try_upload(data, op)?),
            Device::Gpu(ctx) => Storage::Gpu(ctx.try_upload(data, op)?),
        })
    }

    /// `n` new f32 elements on `device` made by `creation` (see [`Backend::try_create`]).
    pub(crate) fn try_create(device: &Device, creation: Creation, n: usize, op: &str) -> Result<Storage> {
        Ok(match device {
            Device::Cpu => Storage::cpu(CpuBackend.try_create(creation, n, op)?),
            Device::Gpu(ctx) => {
                let check = shadow::begin(ctx, []);
                let out = Storage::Gpu(ctx.try_create(creation, n, op)?);
                if let Some(c) = check {
                    let args = || format!("{creation:?}, {n} elements");
                    c.finish(Op::Creation(creation.op()), args, &[("output", &out, F32)], &[], |_| {
                        vec![Storage::cpu(CpuBackend.try_create(creation, n, op).unwrap_or_else(|e| panic!("{e}")))]
                    });
                }
                out
            }
        })
    }

    /// `n` elements from element `offset` on, copied to the host (see [`Backend::try_read`]).
    pub(crate) fn try_read<T: Element>(&self, offset: usize, n: usize) -> Result<Vec<T>> {
        match self {
            // A panic in another thread does not make the elements unreadable.
            Storage::Cpu(d) => CpuBackend.try_read(&d.read().unwrap_or_else(PoisonError::into_inner), offset, n),
            Storage::Gpu(b) => b.ctx.try_read(b, offset, n),
        }
    }

    /// Writes `bytes` from byte `offset` on, in place (see [`Backend::write_host`]).
    pub(crate) fn write_host(&self, offset: usize, bytes: &[u8]) -> bool {
        match self {
            Storage::Cpu(d) => CpuBackend.write_host(&mut d.write().unwrap(), offset, bytes),
            Storage::Gpu(b) => b.ctx.write_host(b, offset, bytes),
        }
    }

    /// Copies the view `ls` of this storage into the view `ld` of `dst` (see
    /// [`Backend::copy_into`]). `dst` must be other storage than this.
    pub(crate) fn copy_into(&self, dtype: DType, ls: &Layout, dst: &Storage, ld: &Layout) {
        match (self, dst) {
            (Storage::Cpu(s), Storage::Cpu(d)) => {
                let s = s.read().unwrap();
                CpuBackend.copy_into(dtype, &s, ls, &mut d.write().unwrap(), ld);
            }
            (Storage::Gpu(s), Storage::Gpu(d)) => {
                let check = shadow::begin(&s.ctx, [(self, dtype), (dst, dtype)]);
                s.ctx.copy_into(dtype, s, ls, d, ld);
                if let Some(c) = check {
                    let op = if dtype == DType::F16 { Op::Half(HalfOp::Copy) } else { Op::Unary(UnaryOp::Copy) };
                    let args = || format!("{dtype} source {ls:?} into {ld:?}");
                    c.finish(op, args, &[], &[("destination", dst, dtype)], |m| {
                        m.get(self).copy_into(dtype, ls, m.get(dst), ld);
                        vec![]
                    });
                }
            }
            _ => mixed_devices("copy"),
        }
    }

    /// The view `ls` copied into new contiguous storage of its own.
    pub(crate) fn copy(&self, dtype: DType, ls: &Layout, op: &str) -> Storage {
        if let Storage::Cpu(s) = self {
            if let Some(data) = CpuBackend.copy_new(dtype, &s.read().unwrap(), ls, op) {
                return Storage::cpu(data);
            }
        }
        let out = Storage::empty(&self.device(), dtype, ls.numel(), op);
        self.copy_into(dtype, ls, &out, &Layout::contiguous(&ls.shape));
        out
    }

    /// Adds one to the `i32` at `offset` of host storage under its write lock, saturating,
    /// and returns the new value; `None` for device storage. Counters live on the host
    /// because the host reads them.
    pub(crate) fn increment_host_counter(&self, offset: usize) -> Option<i32> {
        let Storage::Cpu(lock) = self else { return None };
        let mut storage = lock.write().unwrap();
        let CpuData::I32(values) = &mut *storage else {
            unreachable!("an i32 counter over {} storage", storage.dtype())
        };
        let slot = &mut values[offset];
        *slot = slot.saturating_add(1);
        Some(*slot)
    }

    /// The raw 32-bit words of the whole device buffer, guard region included, and the
    /// number of words the tensor uses; `None` for host storage, which has no guard.
    pub(crate) fn debug_raw_words(&self) -> Option<(Vec<u32>, usize)> {
        match self {
            Storage::Cpu(_) => None,
            Storage::Gpu(b) => {
                let bytes = b.ctx.read_bytes(b.buffer(), 0, b.capacity_bytes());
                Some((bytemuck::pod_collect_to_vec(&bytes), (b.len_bytes / 4) as usize))
            }
        }
    }

    // ---- reductions and softmax ----

    /// Reduces contiguous rows of this f32 storage (see [`Backend::reduce`]).
    pub(crate) fn reduce(&self, op: ReduceOp, offset: usize, rows: usize, len: usize, correction: f32) -> Storage {
        match self {
            Storage::Cpu(x) => Storage::cpu(CpuBackend.reduce(op, &x.read().unwrap(), offset, rows, len, correction)),
            Storage::Gpu(x) => {
                let check = shadow::begin(&x.ctx, [(self, F32)]);
                let out = Storage::Gpu(x.ctx.reduce(op, x, offset, rows, len, correction));
                if let Some(c) = check {
                    let dtype = if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) { DType::I32 } else { F32 };
                    let args = || format!("{rows} rows of {len} from element {offset}, correction {correction}");
                    c.finish(Op::Reduce(op), args, &[("output", &out, dtype)], &[], |m| {
                        vec![m.get(self).reduce(op, offset, rows, len, correction)]
                    });
                }
                out
            }
        }
    }

    /// Sums of leading rows read in place, where the backend has the kernel (see
    /// [`Backend::column_sums`]).
    pub(crate) fn column_sums(&self, offset: usize, len: usize, cols: usize, mean: bool) -> Option<Storage> {
        match self {
            Storage::Cpu(x) => CpuBackend.column_sums(&x.read().unwrap(), offset, len, cols, mean).map(Storage::cpu),
            Storage::Gpu(x) => x.ctx.column_sums(x, offset, len, cols, mean).map(Storage::Gpu),
        }
    }

    /// Softmax of contiguous rows of this f32 storage (see [`Backend::softmax`]).
    pub(crate) fn softmax(&self, op: SoftmaxOp, offset: usize, rows: usize, len: usize) -> Storage {
        match self {
            Storage::Cpu(x) => Storage::cpu(CpuBackend.softmax(op, &x.read().unwrap(), offset, rows, len)),
            Storage::Gpu(x) => {
                let check = shadow::begin(&x.ctx, [(self, F32)]);
                let out = Storage::Gpu(x.ctx.softmax(op, x, offset, rows, len));
                if let Some(c) = check {
                    let args = || format!("{rows} rows of {len} from element {offset}");
                    c.finish(Op::Softmax(op), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).softmax(op, offset, rows, len)]
                    });
                }
                out
            }
        }
    }

    // ---- matmul ----

    /// The product of the f32 view `la` of this storage and `lb` of `other`, then the
    /// epilogue: `bias` (storage, element offset, axis) and `activation` (see
    /// [`Backend::matmul`]).
    pub(crate) fn matmul(
        &self,
        la: &Layout,
        (other, lb): (&Storage, &Layout),
        dims: MatmulDims<'_>,
        epilogue: Epilogue<'_, Storage>,
    ) -> Storage {
        let activation = epilogue.activation;
        match (self, other, epilogue.bias) {
            (Storage::Cpu(a), Storage::Cpu(b), bias) => {
                let (a, b) = (a.read().unwrap(), b.read().unwrap());
                let bias_data = bias.map(|(s, offset, axis)| (s.cpu_data(), offset, axis));
                let bias = bias_data.as_ref().map(|(d, offset, axis)| (&**d, *offset, *axis));
                Storage::cpu(CpuBackend.matmul((&a, la), (&b, lb), dims, Epilogue { bias, activation }))
            }
            (Storage::Gpu(ga), Storage::Gpu(gb), bias) => {
                let operands = [(self, F32), (other, F32)].into_iter().chain(bias.map(|(s, _, _)| (s, F32)));
                let check = shadow::begin(&ga.ctx, operands);
                let gpu_bias = bias.map(|(s, offset, axis)| (s.gpu_buffer(), offset, axis));
                let out =
                    Storage::Gpu(ga.ctx.matmul((ga, la), (gb, lb), dims, Epilogue { bias: gpu_bias, activation }));
                if let Some(c) = check {
                    let args =
                        || format!("a {la:?}, b {lb:?}, {dims:?}, bias {:?}, {activation:?}", bias.map(|b| (b.1, b.2)));
                    c.finish(Op::Matmul, args, &[("output", &out, F32)], &[], |m| {
                        let bias = bias.map(|(s, offset, axis)| (m.get(s), offset, axis));
                        vec![m.get(self).matmul(la, (m.get(other), lb), dims, Epilogue { bias, activation })]
                    });
                }
                out
            }
            _ => mixed_devices("matmul"),
        }
    }

    // ---- the index family ----

    /// `op` along `axis` of the f32 view `ls` of this storage with the `index_len` i32
    /// indices at `index_offset` of `index` (see [`Backend::index`]).
    pub(crate) fn index(
        &self,
        op: IndexOp,
        ls: &Layout,
        axis: usize,
        (index, index_offset, index_len): (&Storage, usize, usize),
        out_shape: &[usize],
    ) -> Storage {
        match (self, index) {
            (Storage::Cpu(s), Storage::Cpu(i)) => {
                let (s, i) = (s.read().unwrap(), i.read().unwrap());
                Storage::cpu(CpuBackend.index(op, (&s, ls), axis, &i, index_offset, index_len, out_shape))
            }
            (Storage::Gpu(s), Storage::Gpu(i)) => {
                let check = shadow::begin(&s.ctx, [(self, F32), (index, DType::I32)]);
                let out = Storage::Gpu(s.ctx.index(op, (s, ls), axis, i, index_offset, index_len, out_shape));
                if let Some(c) = check {
                    let args = || {
                        format!(
                            "src {ls:?}, axis {axis}, {index_len} indices from {index_offset}, output {out_shape:?}"
                        )
                    };
                    c.finish(Op::Index(op), args, &[("output", &out, F32)], &[], |m| {
                        let index = (m.get(index), index_offset, index_len);
                        vec![m.get(self).index(op, ls, axis, index, out_shape)]
                    });
                }
                out
            }
            _ => mixed_devices(op.name()),
        }
    }

    // ---- half precision ----

    /// The view `lx` converted by `op` (see [`Backend::cast`]).
    pub(crate) fn cast(&self, op: HalfOp, lx: &Layout) -> Storage {
        match self {
            Storage::Cpu(x) => Storage::cpu(CpuBackend.cast(op, &x.read().unwrap(), lx)),
            Storage::Gpu(x) => {
                let (from, to) = match op {
                    HalfOp::ToHalf => (F32, DType::F16),
                    HalfOp::ToFloat => (DType::F16, F32),
                    _ => (DType::F16, DType::F16),
                };
                let check = shadow::begin(&x.ctx, [(self, from)]);
                let out = Storage::Gpu(x.ctx.cast(op, x, lx));
                if let Some(c) = check {
                    c.finish(
                        Op::Half(op),
                        || format!("x {lx:?}"),
                        &[("output", &out, to)],
                        &[],
                        |m| vec![m.get(self).cast(op, lx)],
                    );
                }
                out
            }
        }
    }

    /// The f16 product of the view `la` of this storage and `lb` of `other`, accumulated
    /// in f32 (see [`Backend::half_matmul`]).
    pub(crate) fn half_matmul(&self, la: &Layout, (other, lb): (&Storage, &Layout), dims: MatmulDims<'_>) -> Storage {
        match (self, other) {
            (Storage::Cpu(a), Storage::Cpu(b)) => {
                let (a, b) = (a.read().unwrap(), b.read().unwrap());
                Storage::cpu(CpuBackend.half_matmul((&a, la), (&b, lb), dims))
            }
            (Storage::Gpu(a), Storage::Gpu(b)) => {
                let check = shadow::begin(&a.ctx, [(self, DType::F16), (other, DType::F16)]);
                let out = Storage::Gpu(a.ctx.half_matmul((a, la), (b, lb), dims));
                if let Some(c) = check {
                    let args = || format!("a {la:?}, b {lb:?}, {dims:?}");
                    c.finish(Op::Half(HalfOp::Matmul), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).half_matmul(la, (m.get(other), lb), dims)]
                    });
                }
                out
            }
            _ => mixed_devices("half_matmul"),
        }
    }

    // ---- augmentation ----

    /// `crop_flip` of the f32 view `ls` through the windows at `windows_offset` of
    /// `windows` (see [`Backend::crop_flip`]).
    pub(crate) fn crop_flip(&self, ls: &Layout, (windows, offset): (&Storage, usize), out_size: [usize; 2]) -> Storage {
        match (self, windows) {
            (Storage::Cpu(s), Storage::Cpu(w)) => {
                let (s, w) = (s.read().unwrap(), w.read().unwrap());
                Storage::cpu(CpuBackend.crop_flip((&s, ls), &w, offset, out_size))
            }
            (Storage::Gpu(s), Storage::Gpu(w)) => {
                let check = shadow::begin(&s.ctx, [(self, F32), (windows, DType::I32)]);
                let out = Storage::Gpu(s.ctx.crop_flip((s, ls), w, offset, out_size));
                if let Some(c) = check {
                    let args = || format!("src {ls:?}, windows from {offset}, output {out_size:?}");
                    let op = Op::Augment(crate::op::AugmentOp::CropFlip);
                    c.finish(op, args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).crop_flip(ls, (m.get(windows), offset), out_size)]
                    });
                }
                out
            }
            _ => mixed_devices("crop_flip"),
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
                let operands = [(self, F32)].into_iter().chain(indices.map(|(s, _)| (s, DType::I32)));
                let check = shadow::begin(&src.ctx, operands);
                let gpu_indices = indices.map(|(s, at)| (s.device_buffer(name), at));
                let (out, idx) = src.ctx.pool(op, g, (src, offset), gpu_indices);
                let (out, idx) = (Storage::Gpu(out), idx.map(Storage::Gpu));
                if let Some(c) = check {
                    let mut results = vec![("output", &out, F32)];
                    results.extend(idx.as_ref().map(|i| ("indices", i, DType::I32)));
                    let args = || format!("{g:?}, from element {offset}");
                    c.finish(Op::Pool(op), args, &results, &[], |m| {
                        let (out, idx) = m.get(self).pool(op, g, offset, indices.map(|(s, at)| (m.get(s), at)));
                        std::iter::once(out).chain(idx).collect()
                    });
                }
                (out, idx)
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
            Storage::Gpu(gx) => {
                let inputs = operands.iter().flatten().map(|&(s, _)| (s, F32));
                let check = shadow::begin(&gx.ctx, inputs);
                let gpu_operands = operands.map(|o| o.map(|(s, at)| (s.device_buffer("layer_norm"), at)));
                let (out, stats) = gx.ctx.layer_norm(op, d, eps, chunk_rows, gpu_operands);
                let (out, stats) = (Storage::Gpu(out), stats.map(Storage::Gpu));
                if let Some(c) = check {
                    let mut results = vec![("output", &out, F32)];
                    results.extend(stats.as_ref().map(|s| ("statistics", s, F32)));
                    let args = || format!("{d:?}, eps {eps}, {chunk_rows} rows per chunk");
                    c.finish(Op::LayerNorm(op), args, &results, &[], |m| {
                        let operands = operands.map(|o| o.map(|(s, at)| (m.get(s), at)));
                        let (out, stats) = Storage::layer_norm(op, d, eps, chunk_rows, operands);
                        std::iter::once(out).chain(stats).collect()
                    });
                }
                (out, stats)
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
                let operands = inputs.iter().map(|&(s, _)| (s, F32));
                let check = shadow::begin(&x.ctx, operands);
                let gpu_inputs = inputs.map(|(s, at)| (s.device_buffer("batch_norm"), at));
                let out = Storage::Gpu(x.ctx.batch_norm(op, d, flags, eps, gpu_inputs));
                if let Some(c) = check {
                    let args = || format!("{d:?}, flags {flags:#x}, eps {eps}");
                    c.finish(Op::BatchNorm(op), args, &[("output", &out, F32)], &[], |m| {
                        vec![Storage::batch_norm(op, d, flags, eps, inputs.map(|(s, at)| (m.get(s), at)))]
                    });
                }
                out
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
            Storage::Gpu(w) => {
                let check = shadow::begin(&w.ctx, [(self, F32), (indices, DType::I32)]);
                let out = Storage::Gpu(w.ctx.embedding(w, lw, (indices.device_buffer("embedding"), at), n));
                if let Some(c) = check {
                    let args = || format!("table {lw:?}, {n} indices from {at}");
                    c.finish(Op::Embedding(EmbeddingOp::Lookup), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).embedding(lw, (m.get(indices), at), n)]
                    });
                }
                out
            }
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
                let check = shadow::begin(&g.ctx, [(self, F32), (indices, DType::I32)]);
                let gpu_indices = (indices.device_buffer("embedding"), at);
                let out = Storage::Gpu(g.ctx.embedding_backward((g, offset), gpu_indices, n, table, padding_idx));
                if let Some(c) = check {
                    let args = || {
                        format!(
                            "gradient from {offset}, {n} indices from {at}, table {table:?}, padding {padding_idx:?}"
                        )
                    };
                    c.finish(Op::Embedding(EmbeddingOp::Backward), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).embedding_backward(offset, (m.get(indices), at), n, table, padding_idx)]
                    });
                }
                out
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
                let check = shadow::begin(&x.ctx, [(self, DType::I32)]);
                let (order, offsets) = x.ctx.group_by_index((x, offset), n, groups);
                let (order, offsets) = (Storage::Gpu(order), Storage::Gpu(offsets));
                if let Some(c) = check {
                    let results = [("order", &order, DType::I32), ("group starts", &offsets, DType::I32)];
                    let args = || format!("{n} indices from {offset}, {groups} groups");
                    c.finish(Op::Embedding(EmbeddingOp::SortKeys), args, &results, &[], |m| {
                        let (order, offsets) = m.get(self).group_by_index(offset, n, groups);
                        vec![order, offsets]
                    });
                }
                (order, offsets)
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
                let operands = [(self, F32), (targets, DType::I32)].into_iter().chain(weight.map(|(w, _)| (w, F32)));
                let check = shadow::begin(&x.ctx, operands);
                let t = (targets.device_buffer(op), targets_at);
                let w = weight.map(|(w, at)| (w.device_buffer(op), at));
                let out = Storage::Gpu(x.ctx.cross_entropy_forward(op, spec, (x, offset), t, w));
                if let Some(c) = check {
                    let args = || format!("{spec:?}, logits from {offset}");
                    let kind = Op::Loss(LossOp::CrossEntropyForward);
                    c.finish(kind, args, &[("output", &out, F32)], &[], |m| {
                        let weight = weight.map(|(w, at)| (m.get(w), at));
                        vec![m.get(self).cross_entropy_forward(op, spec, offset, (m.get(targets), targets_at), weight)]
                    });
                }
                out
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
                let operands = [(self, F32), (targets, DType::I32), (aux, F32), (grad, F32)]
                    .into_iter()
                    .chain(weight.map(|(w, _)| (w, F32)));
                let check = shadow::begin(&x.ctx, operands);
                let t = (targets.device_buffer(OP), targets_at);
                let w = weight.map(|(w, at)| (w.device_buffer(OP), at));
                let (a, g) = ((aux.device_buffer(OP), aux_at), (grad.device_buffer(OP), grad_at));
                let out = Storage::Gpu(x.ctx.cross_entropy_backward(spec, ((x, offset), t, w), a, g));
                if let Some(c) = check {
                    let args = || format!("{spec:?}, logits from {offset}");
                    let kind = Op::Loss(LossOp::CrossEntropyBackward);
                    c.finish(kind, args, &[("output", &out, F32)], &[], |m| {
                        let operands = ((m.get(targets), targets_at), weight.map(|(w, at)| (m.get(w), at)));
                        vec![m.get(self).cross_entropy_backward(
                            spec,
                            offset,
                            operands,
                            (m.get(aux), aux_at),
                            (m.get(grad), grad_at),
                        )]
                    });
                }
                out
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
            Storage::Gpu(gpu_arena) => {
                let operands = [(self, F32)]
                    .into_iter()
                    .chain(segments.iter().flat_map(|seg| [(seg.param, F32), (seg.grad, F32)]));
                let check = shadow::begin(&gpu_arena.ctx, operands);
                let gpu_segments: Vec<_> = segments
                    .iter()
                    .map(|seg| OptimSegment {
                        param: seg.param.device_buffer(name),
                        grad: seg.grad.device_buffer(name),
                        grad_offset: seg.grad_offset,
                        state_offset: seg.state_offset,
                        numel: seg.numel,
                    })
                    .collect();
                gpu_arena.ctx.optim_step(op, s, used, &gpu_segments, gpu_arena);
                if let Some(c) = check {
                    let mut written: Vec<shadow::Operand> =
                        segments.iter().map(|seg| ("parameter", seg.param, F32)).collect();
                    written.push(("optimizer state", self, F32));
                    let args = || {
                        let sizes: Vec<usize> = segments.iter().map(|seg| seg.numel).collect();
                        format!("{s:?}, state {used:?}, parameters of {sizes:?} elements")
                    };
                    c.finish(Op::Optim(op), args, &[], &written, |m| {
                        let segments: Vec<_> = segments
                            .iter()
                            .map(|seg| OptimSegment {
                                param: m.get(seg.param),
                                grad: m.get(seg.grad),
                                grad_offset: seg.grad_offset,
                                state_offset: seg.state_offset,
                                numel: seg.numel,
                            })
                            .collect();
                        m.get(self).optim_step(op, s, used, &segments);
                        vec![]
                    });
                }
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
            Storage::Gpu(x) => {
                let check = shadow::begin(&x.ctx, [(self, F32)]);
                let out = Storage::Gpu(x.ctx.im2col(x, layout, g, columns));
                if let Some(c) = check {
                    let args = || format!("x {layout:?}, {g:?}, {columns:?}");
                    c.finish(Op::Conv(ConvOp::Im2col), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).im2col(layout, g, columns)]
                    });
                }
                out
            }
        }
    }

    /// This contiguous column matrix from `offset`, folded back into a batch (see
    /// [`Backend::col2im`]).
    pub(crate) fn col2im(&self, offset: usize, columns: ColumnLayout, g: &ConvGeometry) -> Storage {
        match self {
            Storage::Cpu(cols) => Storage::cpu(CpuBackend.col2im((&cols.read().unwrap(), offset), columns, g)),
            Storage::Gpu(cols) => {
                let check = shadow::begin(&cols.ctx, [(self, F32)]);
                let out = Storage::Gpu(cols.ctx.col2im((cols, offset), columns, g));
                if let Some(c) = check {
                    let args = || format!("columns from {offset}, {columns:?}, {g:?}");
                    c.finish(Op::Conv(ConvOp::Col2im), args, &[("output", &out, F32)], &[], |m| {
                        vec![m.get(self).col2im(offset, columns, g)]
                    });
                }
                out
            }
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
            Storage::Gpu(gx) => {
                let operands = [(x, F32), (w, F32)].into_iter().chain(bias.map(|(b, _)| (b, F32)));
                let check = shadow::begin(&gx.ctx, operands);
                let gw = (w.device_buffer("conv2d"), w_at);
                let gpu_bias = bias.map(|(b, at)| (b.device_buffer("conv2d"), at));
                let out = gx.ctx.conv2d((gx, lx), gw, gpu_bias, g, ch, algorithm).map(Storage::Gpu);
                // Only a fused kernel is checked here: the composed path is checked op by op.
                if let (Some(c), Some(out)) = (check, &out) {
                    let args = || format!("x {lx:?}, weights from {w_at}, {g:?}, {ch:?}, {algorithm:?}");
                    c.finish(Op::Conv(ConvOp::Conv2dDirect), args, &[("output", out, F32)], &[], |m| {
                        let bias = bias.map(|(b, at)| (m.get(b), at));
                        let cpu = Storage::conv2d((m.get(x), lx), (m.get(w), w_at), bias, g, ch, algorithm);
                        vec![cpu.expect("the CPU backend fuses every convolution")]
                    });
                }
                out
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
                let operands = x
                    .inputs
                    .iter()
                    .chain(&x.outputs)
                    .flatten()
                    .map(|&(s, _)| (s, F32))
                    .chain(x.lengths.map(|(s, _)| (s, DType::I32)));
                let check = shadow::begin(&out.ctx, operands);
                let gpu_operands = RnnCellOperands {
                    inputs: x.inputs.map(|v| v.map(|v| device_view(v, name))),
                    lengths: x.lengths.map(|v| device_view(v, name)),
                    outputs: x.outputs.map(|v| v.map(|v| device_view(v, name))),
                };
                out.ctx.rnn_cell(op, step, flags, gpu_operands);
                if let Some(c) = check {
                    let labels = ["first output", "second output"];
                    let written: Vec<shadow::Operand> =
                        x.outputs.iter().zip(labels).filter_map(|(v, l)| v.map(|(s, _)| (l, s, F32))).collect();
                    let args = || {
                        let layouts: Vec<_> = x.inputs.iter().chain(&x.outputs).map(|v| v.map(|(_, l)| l)).collect();
                        format!("{step:?}, flags {flags:#x}, operands {layouts:?}")
                    };
                    c.finish(Op::Rnn(op), args, &[], &written, |m| {
                        fn host<'a>(m: &'a shadow::Mirror, v: Option<View<'a, Storage>>) -> Option<View<'a, Storage>> {
                            v.map(|(s, l)| (m.get(s), l))
                        }
                        let view = |v| host(m, v);
                        let operands = RnnCellOperands {
                            inputs: x.inputs.map(view),
                            lengths: view(x.lengths),
                            outputs: x.outputs.map(view),
                        };
                        Storage::rnn_cell(op, step, flags, operands);
                        vec![]
                    });
                }
            }
        }
    }

    /// Whether `device`'s whole-layer LSTM forward pass can run without a workspace (see
    /// [`Backend::lstm_forward_without_workspace`]).
    pub(crate) fn lstm_forward_without_workspace(device: &Device) -> bool {
        match device {
            Device::Cpu => CpuBackend.lstm_forward_without_workspace(),
            Device::Gpu(ctx) => ctx.lstm_forward_without_workspace(),
        }
    }

    /// The backend's whole-layer LSTM forward pass, or `false` for the composed path
    /// (see [`Backend::lstm_layer_forward`]).
    pub(crate) fn lstm_layer_forward(x: LstmLayerForward<Storage, Storage>) -> bool {
        const OP: &str = "lstm layer";
        let Storage::Gpu(state) = x.state.0 else { return Storage::host_lstm_layer_forward(x, false) };
        // The GPU's whole-sequence pass takes the input projection computed (`xw`); asked
        // without it, it declines and is asked again with it, so only that call is checked.
        let check = match x.xw {
            Some(xw) => {
                let operands = [(xw.0, F32), (x.x.0, F32), (x.w_ih.0, F32), (x.w_hh_t.0, F32)]
                    .into_iter()
                    .chain([(x.state.0, F32), (x.ws.0, F32)])
                    .chain(x.bias.into_iter().flat_map(|(a, b)| [(a.0, F32), (b.0, F32)]))
                    .chain(x.lengths.map(|(s, _)| (s, DType::I32)));
                shadow::begin(&state.ctx, operands)
            }
            None => None,
        };
        let whole = state.ctx.lstm_layer_forward(LstmLayerForward {
            steps: x.steps,
            xw: x.xw.map(|v| device_view(v, OP)),
            x: device_view(x.x, OP),
            w_ih: device_view(x.w_ih, OP),
            w_hh_t: device_view(x.w_hh_t, OP),
            bias: x.bias.map(|(a, b)| (device_view(a, OP), device_view(b, OP))),
            lengths: x.lengths.map(|v| device_view(v, OP)),
            state: device_view(x.state, OP),
            ws: device_view(x.ws, OP),
        });
        if let (true, Some(c)) = (whole, check) {
            let written: [shadow::Operand; 2] = [("state", x.state.0, F32), ("workspace", x.ws.0, F32)];
            let args = || format!("{} steps of {:?}, bias {}", x.steps.len(), x.steps[0], x.bias.is_some());
            c.finish(Op::Rnn(RnnOp::LstmSequenceForward), args, &[], &written, |m| {
                let view = |v| mirrored(m, v);
                let host = LstmLayerForward {
                    steps: x.steps,
                    xw: x.xw.map(view),
                    x: view(x.x),
                    w_ih: view(x.w_ih),
                    w_hh_t: view(x.w_hh_t),
                    bias: x.bias.map(|(a, b)| (view(a), view(b))),
                    lengths: x.lengths.map(view),
                    state: view(x.state),
                    ws: view(x.ws),
                };
                Storage::host_lstm_layer_forward(host, true);
                vec![]
            });
        }
        whole
    }

    /// The CPU's whole-layer LSTM forward pass where it takes it, or `whatever` the batch;
    /// `false` when it does not run it.
    fn host_lstm_layer_forward(x: LstmLayerForward<Storage, Storage>, whatever: bool) -> bool {
        const OP: &str = "lstm layer";
        let [xw, input, w_ih, w_hh_t, b_ih, b_hh, lengths] = Storage::host_views(
            [x.xw, Some(x.x), Some(x.w_ih), Some(x.w_hh_t), x.bias.map(|b| b.0), x.bias.map(|b| b.1), x.lengths],
            OP,
        );
        let host = LstmLayerForward {
            steps: x.steps,
            xw: guard_view(&xw),
            x: guard_view(&input).expect("x"),
            w_ih: guard_view(&w_ih).expect("w_ih"),
            w_hh_t: guard_view(&w_hh_t).expect("w_hh_t"),
            bias: guard_view(&b_ih).zip(guard_view(&b_hh)),
            lengths: guard_view(&lengths),
            state: (x.state.0.host_lock(OP), x.state.1),
            ws: (x.ws.0.host_lock(OP), x.ws.1),
        };
        if whatever {
            CpuBackend.whole_lstm_layer_forward(host)
        } else {
            CpuBackend.lstm_layer_forward(host)
        }
    }

    /// The backend's whole-layer LSTM backward pass, or `false` for the composed path
    /// (see [`Backend::lstm_layer_backward`]).
    pub(crate) fn lstm_layer_backward(x: LstmLayerBackward<Storage, Storage>) -> bool {
        const OP: &str = "lstm layer backward";
        let Storage::Gpu(dgates) = x.dgates.0 else { return Storage::host_lstm_layer_backward(x, false) };
        let operands =
            [(x.d_state.0, F32), (x.ws.0, F32), (x.state.0, F32), (x.w_hh.0, F32), (x.dgates.0, F32), (x.carry.0, F32)]
                .into_iter()
                .chain(x.lengths.map(|(s, _)| (s, DType::I32)));
        let check = shadow::begin(&dgates.ctx, operands);
        let whole = dgates.ctx.lstm_layer_backward(LstmLayerBackward {
            steps: x.steps,
            d_state: device_view(x.d_state, OP),
            ws: device_view(x.ws, OP),
            state: device_view(x.state, OP),
            w_hh: device_view(x.w_hh, OP),
            lengths: x.lengths.map(|v| device_view(v, OP)),
            dgates: device_view(x.dgates, OP),
            carry: device_view(x.carry, OP),
        });
        if let (true, Some(c)) = (whole, check) {
            let written: [shadow::Operand; 2] = [("gate gradients", x.dgates.0, F32), ("carry", x.carry.0, F32)];
            let args = || format!("{} steps of {:?}", x.steps.len(), x.steps[0]);
            c.finish(Op::Rnn(RnnOp::LstmSequenceBackward), args, &[], &written, |m| {
                let view = |v| mirrored(m, v);
                let host = LstmLayerBackward {
                    steps: x.steps,
                    d_state: view(x.d_state),
                    ws: view(x.ws),
                    state: view(x.state),
                    w_hh: view(x.w_hh),
                    lengths: x.lengths.map(view),
                    dgates: view(x.dgates),
                    carry: view(x.carry),
                };
                Storage::host_lstm_layer_backward(host, true);
                vec![]
            });
        }
        whole
    }

    /// The CPU's whole-layer LSTM backward pass where it takes it, or `whatever` the batch.
    fn host_lstm_layer_backward(x: LstmLayerBackward<Storage, Storage>, whatever: bool) -> bool {
        const OP: &str = "lstm layer backward";
        let [d_state, ws, state, w_hh, lengths] =
            Storage::host_views([Some(x.d_state), Some(x.ws), Some(x.state), Some(x.w_hh), x.lengths], OP);
        let host = LstmLayerBackward {
            steps: x.steps,
            d_state: guard_view(&d_state).expect("d_state"),
            ws: guard_view(&ws).expect("ws"),
            state: guard_view(&state).expect("state"),
            w_hh: guard_view(&w_hh).expect("w_hh"),
            lengths: guard_view(&lengths),
            dgates: (x.dgates.0.host_lock(OP), x.dgates.1),
            carry: (x.carry.0.host_lock(OP), x.carry.1),
        };
        if whatever {
            CpuBackend.whole_lstm_layer_backward(host);
            true
        } else {
            CpuBackend.lstm_layer_backward(host)
        }
    }
}

/// The host copy of a GPU operand's view in shadow mode.
fn mirrored<'a>(m: &'a shadow::Mirror, (s, l): View<'a, Storage>) -> View<'a, Storage> {
    (m.get(s), l)
}

/// The view a read guard holds.
fn guard_view<'a>(v: &'a Option<(RwLockReadGuard<'_, CpuData>, &'a Layout)>) -> Option<View<'a, CpuData>> {
    v.as_ref().map(|(g, l)| (&**g, *l))
}

/// The device buffer of a view of an op that runs on the GPU.
fn device_view<'a>((s, l): View<'a, Storage>, op: &str) -> View<'a, GpuBuffer> {
    (s.device_buffer(op), l)
}
