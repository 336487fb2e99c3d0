//! In-place overwrite of a tensor's elements from host data, for loading checkpoints
//! into parameters that optimizers already hold.
//!
//! Every other op returns a new tensor; this one rewrites the storage every clone of the
//! tensor shares, which is the point: a module and an optimizer built from
//! `module.parameters()` both see the loaded values. On a GPU device the upload is
//! recorded in the command batch like any dispatch, so work recorded earlier still reads
//! the old values and work recorded later reads the new ones.

use crate::dtype::DType;
use crate::storage::{CpuData, Storage};
use crate::Tensor;

impl Tensor {
    /// Overwrites every element of this (contiguous, f32) tensor with `data`, in
    /// row-major order, in place. Panics when the dtype, the layout or the length is wrong:
    /// callers validate their input before calling.
    pub(crate) fn assign_from_host(&self, data: &[f32]) {
        assert_eq!(
            self.dtype,
            DType::F32,
            "assign: the tensor of shape {:?} holds {}, not f32",
            self.shape(),
            self.dtype
        );
        assert!(
            self.is_contiguous(),
            "assign: the tensor of shape {:?} is a non-contiguous view; it cannot be overwritten in place",
            self.shape()
        );
        assert_eq!(
            data.len(),
            self.numel(),
            "assign: {} values given for a tensor of shape {:?} ({} elements)",
            data.len(),
            self.shape(),
            self.numel()
        );
        let offset = self.layout.offset;
        match &*self.storage {
            Storage::Cpu(lock) => match &mut *lock.write().unwrap() {
                CpuData::F32(v) => v[offset..offset + data.len()].copy_from_slice(data),
                other => unreachable!("an f32 tensor over {} storage", other.dtype()),
            },
            Storage::Gpu(buffer) => {
                buffer.ctx.record_upload(buffer.buffer(), (offset * 4) as u64, bytemuck::cast_slice(data));
            }
        }
    }
}
