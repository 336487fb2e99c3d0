//! In-place overwrites of a tensor's elements: from host data, for loading checkpoints
//! into parameters that optimizers already hold, and from another tensor on the same
//! device, for state that a layer updates as it runs (batch norm's running statistics).
//!
//! Every other op returns a new tensor; these rewrite the storage every clone of the
//! tensor shares, which is the point: a module and an optimizer built from
//! `module.parameters()` both see the loaded values. On a GPU device the write is
//! recorded in the command batch like any dispatch, so work recorded earlier still reads
//! the old values and work recorded later reads the new ones.

use std::sync::Arc;

use crate::dtype::{DType, Element};
use crate::storage::{CpuData, Storage};
use crate::Tensor;

impl Tensor {
    /// Panics unless this tensor can be overwritten in place: contiguous, so that no two
    /// elements share a storage slot (a broadcast view would make the write ambiguous).
    fn check_assignable(&self, op: &str) {
        assert!(
            self.is_contiguous(),
            "{op}: the tensor of shape {:?} is a non-contiguous view; it cannot be overwritten in place",
            self.shape()
        );
    }

    /// Overwrites every element of this contiguous tensor with `data`, in row-major order,
    /// in place. Panics when the dtype, the layout or the length is wrong: callers validate
    /// their input before calling.
    pub(crate) fn assign_from_host<T: Element>(&self, data: &[T]) {
        assert_eq!(
            self.dtype,
            T::DTYPE,
            "assign: the tensor of shape {:?} holds {}, not {}",
            self.shape(),
            self.dtype,
            T::DTYPE
        );
        self.check_assignable("assign");
        assert_eq!(
            data.len(),
            self.numel(),
            "assign: {} values given for a tensor of shape {:?} ({} elements)",
            data.len(),
            self.shape(),
            self.numel()
        );
        let offset = self.layout.offset;
        let size = T::DTYPE.size_bytes();
        match &*self.storage {
            Storage::Cpu(lock) => {
                let mut storage = lock.write().unwrap();
                let bytes = storage.bytes_mut();
                bytes[offset * size..(offset + data.len()) * size].copy_from_slice(bytemuck::cast_slice(data));
            }
            Storage::Gpu(buffer) => {
                // Uploads move whole 32-bit words: an f16 tensor is written only where it
                // owns them, from an even offset to an even length or the end of its storage.
                let end = (offset + data.len()) * size;
                let whole_words = (offset * size).is_multiple_of(4)
                    && (end.is_multiple_of(4) || end.div_ceil(4) * 4 >= buffer.len_bytes as usize);
                assert!(
                    whole_words,
                    "assign: the f16 view of shape {:?} at offset {offset} shares 32-bit words with other elements",
                    self.shape()
                );
                buffer.ctx.record_upload(buffer.buffer(), (offset * size) as u64, bytemuck::cast_slice(data));
            }
        }
    }

    /// Overwrites every element of this contiguous tensor with the elements of `src` (same
    /// shape, dtype and device; any layout), in place and without a trip through the host:
    /// on a GPU device it is a copy kernel recorded in the batch. `src` may be a view of
    /// this tensor's own storage. Not recorded by autograd: use it on buffers, not on
    /// tensors a graph still needs.
    pub(crate) fn assign(&self, src: &Tensor) {
        assert_eq!(
            self.shape(),
            src.shape(),
            "assign: source of shape {:?} for a tensor of shape {:?}",
            src.shape(),
            self.shape()
        );
        assert_eq!(self.dtype, src.dtype, "assign: source holds {}, the tensor {}", src.dtype, self.dtype);
        self.same_device(src, "assign");
        self.check_assignable("assign");
        if self.numel() == 0 {
            return;
        }
        if Arc::ptr_eq(&self.storage, &src.storage) {
            // Reading and writing one storage in one pass would race on the GPU (and
            // deadlock on the CPU lock): go through a copy.
            return self.assign(&src.detach().packed_copy());
        }
        super::view::copy_into(src, self);
    }

    /// Adds one to this one-element `i32` tensor in host memory and returns the new value,
    /// under the storage's write lock, so concurrent callers each count once. Saturates
    /// at `i32::MAX`. A counter such as batch norm's `num_batches_tracked` lives on the
    /// host because the host is where it is read.
    pub(crate) fn increment_counter(&self) -> i32 {
        assert!(
            self.dtype == DType::I32 && self.numel() == 1,
            "increment_counter: needs a one-element i32 tensor, got {} of shape {:?}",
            self.dtype,
            self.shape()
        );
        let Storage::Cpu(lock) = &*self.storage else {
            panic!("increment_counter: the counter of shape {:?} is not in host memory", self.shape())
        };
        let mut storage = lock.write().unwrap();
        let CpuData::I32(values) = &mut *storage else { unreachable!("an i32 tensor over f32 storage") };
        let slot = &mut values[self.layout.offset];
        *slot = slot.saturating_add(1);
        *slot
    }

    /// A fresh contiguous copy in storage of its own, of any dtype.
    fn packed_copy(&self) -> Tensor {
        match &*self.storage {
            Storage::Cpu(s) => {
                let data = s.read().unwrap();
                Tensor::from_cpu_data(data.gather(self.layout.storage_indices()), self.shape())
            }
            Storage::Gpu(_) => {
                let out = Tensor::empty_like_shape(self.shape(), self.dtype, &self.device, "assign");
                super::view::copy_into(self, &out);
                out
            }
        }
    }
}
