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
//! Behind the seam so far: creation, upload and read-back, copies (contiguous, in-place
//! assignment), the elementwise family (unary, binary and `where`), reductions, softmax,
//! matmul with its fused epilogue, the index family (index_select, gather, index_add,
//! scatter_add), half-precision conversions and the half matmul, and augmentation
//! (`crop_flip`). The other families (convolution, pooling, norms, embedding, recurrent
//! layers, cross-entropy, optimizer steps) still choose their device inside `tensor/`,
//! `loss.rs` and `optim/`, and move here one at a time in the same way: a method on the
//! trait, its two implementations beside the backends' existing kernels, one storage
//! method, and the tensor method reduced to validate, call, record.
//!
//! In-place writes (a copy into a view, an upload into a parameter) take the output as
//! [`Backend::BufferMut`]: the host's data under its write lock, a shared handle on the
//! GPU, where the recorded order of the work keeps reads and writes apart.

use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::op::layout::Layout;
use crate::op::matmul::{Epilogue, MatmulDims};
use crate::op::{BinaryOp, Creation, HalfOp, IndexOp, ReduceOp, SoftmaxOp, UnaryOp};

/// The kernels one kind of device runs, one method per op family. Outputs are new,
/// contiguous buffers of the operands' (broadcast) shape.
pub(crate) trait Backend {
    /// Where this backend keeps a tensor's elements.
    type Buffer;

    /// A buffer open for an in-place write (see the module documentation).
    type BufferMut<'a>;

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

    // ---- creation, upload, read-back and copies ----

    /// `n` elements of `dtype` for an op that writes every one of them (`op` names it in
    /// an out-of-memory panic).
    fn alloc(&self, dtype: DType, n: usize, op: &str) -> Self::Buffer;

    /// A new buffer holding `data`; an allocation failure (or an error the device reported
    /// for earlier work) is an `Err` naming `op`.
    fn try_upload<T: Element>(&self, data: &[T], op: &str) -> Result<Self::Buffer>;

    /// `n` new f32 elements made by `creation`, with [`Backend::try_upload`]'s errors.
    fn try_create(&self, creation: Creation, n: usize, op: &str) -> Result<Self::Buffer>;

    /// `n` elements of `x` from element `offset` on, copied to the host. Device failures
    /// (an error reported for earlier work, a lost device, no memory) are `Err`s.
    fn try_read<T: Element>(&self, x: &Self::Buffer, offset: usize, n: usize) -> Result<Vec<T>>;

    /// Writes `bytes` into `dst` from byte `offset` on. `false`, writing nothing, when the
    /// device cannot write that range without touching its neighbours (the GPU writes
    /// whole 32-bit words, so an `f16` range must own the words it covers).
    fn write_host(&self, dst: Self::BufferMut<'_>, offset: usize, bytes: &[u8]) -> bool;

    /// Copies the view `ls` of `src` into the view `ld` of `dst`, both of `dtype` and of
    /// one shape.
    fn copy_into(&self, dtype: DType, src: &Self::Buffer, ls: &Layout, dst: Self::BufferMut<'_>, ld: &Layout);

    // ---- reductions and softmax ----

    /// Reduces each of `rows` contiguous rows of `len` elements, the first at `offset`
    /// of `x`, with `op` (`correction` for the variance); f32 results, i32 for the arg ops.
    fn reduce(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        offset: usize,
        rows: usize,
        len: usize,
        correction: f32,
    ) -> Self::Buffer;

    /// The sums (or means) of `cols` columns over `len` contiguous rows from `offset` on:
    /// a reduction of the leading axes read in place. `None` when the backend has no such
    /// kernel; the caller then moves the axes last and runs [`Backend::reduce`], which
    /// gives the same bits. The CPU overrides it.
    fn column_sums(
        &self,
        x: &Self::Buffer,
        offset: usize,
        len: usize,
        cols: usize,
        mean: bool,
    ) -> Option<Self::Buffer> {
        let _ = (x, offset, len, cols, mean);
        None
    }

    /// Softmax or log-softmax of each of `rows` contiguous rows of `len` elements from
    /// `offset` on.
    fn softmax(&self, op: SoftmaxOp, x: &Self::Buffer, offset: usize, rows: usize, len: usize) -> Self::Buffer;

    // ---- matmul ----

    /// The f32 product of the views `la` (`[batch.., m, k]`) and `lb` (`[batch.., k, n]`),
    /// then `epilogue` on each element, into a contiguous `[batch.., m, n]` buffer.
    fn matmul(
        &self,
        a: (&Self::Buffer, &Layout),
        b: (&Self::Buffer, &Layout),
        dims: MatmulDims<'_>,
        epilogue: Epilogue<'_, Self::Buffer>,
    ) -> Self::Buffer;

    // ---- the index family ----

    /// `op` along `axis` of the f32 view `ls` of `src`, with the `index_len` i32 indices
    /// at `index_offset` of `index`, into a new contiguous f32 buffer of `out_shape`.
    #[allow(clippy::too_many_arguments)]
    fn index(
        &self,
        op: IndexOp,
        src: (&Self::Buffer, &Layout),
        axis: usize,
        index: &Self::Buffer,
        index_offset: usize,
        index_len: usize,
        out_shape: &[usize],
    ) -> Self::Buffer;

    // ---- half precision ----

    /// The view `lx` of `x` converted by `op` ([`HalfOp::ToHalf`] or [`HalfOp::ToFloat`])
    /// into a new contiguous buffer.
    fn cast(&self, op: HalfOp, x: &Self::Buffer, lx: &Layout) -> Self::Buffer;

    /// The product of two f16 views accumulated in f32, as [`Backend::matmul`] without an
    /// epilogue; the result is f32.
    fn half_matmul(
        &self,
        a: (&Self::Buffer, &Layout),
        b: (&Self::Buffer, &Layout),
        dims: MatmulDims<'_>,
    ) -> Self::Buffer;

    // ---- augmentation ----

    /// `crop_flip` of the `[N, C, H, W]` f32 view `ls` of `src` through the `3 N` i32
    /// windows at `windows_offset` of `windows`, into `[N, C, out_h, out_w]`.
    fn crop_flip(
        &self,
        src: (&Self::Buffer, &Layout),
        windows: &Self::Buffer,
        windows_offset: usize,
        out_size: [usize; 2],
    ) -> Self::Buffer;
}
