//! Where a tensor's elements live: a host vector or a pooled device buffer. Views share
//! one storage through an `Arc`; ops never modify an input's storage.

use std::sync::RwLock;

use crate::dtype::DType;
use crate::gpu::pool::GpuBuffer;

/// Host-side elements of one dtype.
#[derive(Clone, Debug)]
pub enum CpuData {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl CpuData {
    pub fn dtype(&self) -> DType {
        match self {
            CpuData::F32(_) => DType::F32,
            CpuData::I32(_) => DType::I32,
        }
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

    /// The elements as raw 32-bit words, for dtype-agnostic copies.
    pub fn words(&self) -> &[u32] {
        match self {
            CpuData::F32(v) => bytemuck::cast_slice(v),
            CpuData::I32(v) => bytemuck::cast_slice(v),
        }
    }

    pub fn from_words(dtype: DType, words: Vec<u32>) -> CpuData {
        match dtype {
            DType::F32 => CpuData::F32(bytemuck::cast_vec(words)),
            DType::I32 => CpuData::I32(bytemuck::cast_vec(words)),
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
