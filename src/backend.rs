//! The seam between the engine and its devices.
//!
//! [`Backend`] is what a device can compute, one method per op family, written against
//! the backend's own buffer type: the CPU backend implements it on host vectors
//! (`cpu::backend`), the wgpu backend on pooled device buffers (`gpu::backend`). The
//! methods of [`Storage`](crate::storage::Storage) are the one place that matches on the
//! kind of storage and hands the work to the backend that holds it; a tensor method
//! validates its arguments, calls the storage and records its gradient node, and never
//! looks at the device itself. A new backend (a native Metal or CUDA one, a wasm one)
//! implements this trait and adds one arm to each storage method.
//!
//! Backend methods assume valid input: operands on one device, of the dtypes and shapes
//! the op takes, every view already broadcast to the output's shape. The tensor layer has
//! checked all of it, naming the op in its panics.
//!
//! So far the elementwise family (unary, binary and `where`) goes through the seam; the
//! other families still choose their device inside `tensor/`, `loss.rs` and `optim/`, and
//! move here one at a time in the same way: a method on the trait, its two
//! implementations beside the backends' existing kernels, one storage method, and the
//! tensor method reduced to validate, call, record.

use crate::op::layout::Layout;
use crate::op::{BinaryOp, UnaryOp};

/// The kernels one kind of device runs, one method per op family. Outputs are new,
/// contiguous buffers of the operands' (broadcast) shape.
pub(crate) trait Backend {
    /// Where this backend keeps a tensor's elements.
    type Buffer;

    /// Unary `op` with its two scalars (see [`UnaryOp`]) of the f32 view `lx` of `x`.
    fn unary(&self, op: UnaryOp, scalars: [f32; 2], x: &Self::Buffer, lx: &Layout) -> Self::Buffer;

    /// Binary `op` of two f32 views already broadcast to the output's shape.
    fn binary(&self, op: BinaryOp, a: &Self::Buffer, la: &Layout, b: &Self::Buffer, lb: &Layout) -> Self::Buffer;

    /// `where(cond, a, b)` of three f32 views already broadcast to the output's shape:
    /// `a` where `cond` is non-zero, else `b`.
    fn where_select(
        &self,
        cond: (&Self::Buffer, &Layout),
        a: (&Self::Buffer, &Layout),
        b: (&Self::Buffer, &Layout),
    ) -> Self::Buffer;
}
