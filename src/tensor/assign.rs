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
        // A device that writes whole 32-bit words refuses an f16 view that shares them.
        let written = self.storage.write_host(offset * T::DTYPE.size_bytes(), bytemuck::cast_slice(data));
        assert!(
            written,
            "assign: the f16 view of shape {:?} at offset {offset} shares 32-bit words with other elements",
            self.shape()
        );
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
        self.storage.increment_host_counter(self.layout.offset).unwrap_or_else(|| {
            panic!("increment_counter: the counter of shape {:?} is not in host memory", self.shape())
        })
    }

    /// A fresh contiguous copy in storage of its own, of any dtype.
    fn packed_copy(&self) -> Tensor {
        Tensor::from_storage(self.storage.copy(self.dtype, &self.layout, "assign"), self.shape(), self.dtype)
    }
}
