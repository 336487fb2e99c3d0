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
