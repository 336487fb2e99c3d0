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

    /// Device storage in `buffer`.
    pub(crate) fn gpu(buffer: GpuBuffer) -> Storage {
        Storage::Gpu(buffer)
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
            Device::Gpu(ctx) => Storage::Gpu(ctx.try_create(creation, n, op)?),
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
            (Storage::Gpu(s), Storage::Gpu(d)) => s.ctx.copy_into(dtype, s, ls, d, ld),
            _ => mixed_devices("copy"),
        }
    }

    /// The view `ls` copied into new contiguous storage of its own.
    pub(crate) fn copy(&self, dtype: DType, ls: &Layout, op: &str) -> Storage {
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
            Storage::Gpu(x) => Storage::Gpu(x.ctx.reduce(op, x, offset, rows, len, correction)),
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
            Storage::Gpu(x) => Storage::Gpu(x.ctx.softmax(op, x, offset, rows, len)),
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
            (Storage::Gpu(a), Storage::Gpu(b), bias) => {
                let bias = bias.map(|(s, offset, axis)| (s.gpu_buffer(), offset, axis));
                Storage::Gpu(a.ctx.matmul((a, la), (b, lb), dims, Epilogue { bias, activation }))
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
                Storage::Gpu(s.ctx.index(op, (s, ls), axis, i, index_offset, index_len, out_shape))
            }
            _ => mixed_devices(op.name()),
        }
    }

    // ---- half precision ----

    /// The view `lx` converted by `op` (see [`Backend::cast`]).
    pub(crate) fn cast(&self, op: HalfOp, lx: &Layout) -> Storage {
        match self {
            Storage::Cpu(x) => Storage::cpu(CpuBackend.cast(op, &x.read().unwrap(), lx)),
            Storage::Gpu(x) => Storage::Gpu(x.ctx.cast(op, x, lx)),
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
            (Storage::Gpu(a), Storage::Gpu(b)) => Storage::Gpu(a.ctx.half_matmul((a, la), (b, lb), dims)),
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
            (Storage::Gpu(s), Storage::Gpu(w)) => Storage::Gpu(s.ctx.crop_flip((s, ls), w, offset, out_size)),
            _ => mixed_devices("crop_flip"),
        }
    }
}
