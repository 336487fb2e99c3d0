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

// The layer families' parameter types.
use crate::cpu::batch_norm::BnDims;
use crate::cpu::layer_norm::LnDims;
use crate::op::loss::CrossEntropyRows;
use crate::op::optim::OptimScalars;
use crate::op::pool::PoolGeometry;
use crate::op::{BatchNormOp, LayerNormOp, OptimOp, PoolOp};

// Convolution.
use crate::op::conv::{ColumnLayout, ConvAlgorithm, ConvChannels, ConvGeometry};

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

    // ---- pooling, layer and batch norm, embedding, cross-entropy, optimizer step ----
    // Kernels that read contiguous operands from an element offset (`At`).

    /// The buffer as the storage shares it between views, for the ops that write an
    /// existing tensor in place (the optimizer step): they take its lock themselves.
    type Shared;

    /// One pooling kernel over the contiguous NCHW planes `g` describes: `src` holds the
    /// input (forward ops) or the output gradient (backward ops), `indices` the i32
    /// indices of max pooling (read by `MaxPool2dBackward` only). Returns the output or
    /// input gradient, and the indices `MaxPool2d` writes.
    fn pool(
        &self,
        op: PoolOp,
        g: &PoolGeometry,
        src: At<Self::Buffer>,
        indices: Option<At<Self::Buffer>>,
    ) -> (Self::Buffer, Option<Self::Buffer>);

    /// One layer-normalisation kernel over `[rows, len]` rows. `operands` follow
    /// layer_norm.wgsl (`x`, `dy`, weight, then the bias (forward) or the statistics
    /// table (backward)); the weight and bias are optional. Returns the output (forward),
    /// input gradient or chunked parameter gradients, and for the forward pass the
    /// `[2, rows]` statistics table.
    fn layer_norm(
        &self,
        op: LayerNormOp,
        d: LnDims,
        eps: f32,
        chunk_rows: usize,
        operands: [Option<At<Self::Buffer>>; 4],
    ) -> (Self::Buffer, Option<Self::Buffer>);

    /// One batch-normalisation kernel over `[n, c, l]`; `inputs` follow batch_norm.wgsl,
    /// and entries the op does not read may be any buffer. `flags` are the
    /// `BATCH_NORM_*` bits.
    fn batch_norm(
        &self,
        op: BatchNormOp,
        d: BnDims,
        flags: u32,
        eps: f32,
        inputs: [At<Self::Buffer>; 4],
    ) -> Self::Buffer;

    /// The rows of the table view `lw` picked by `n` i32 indices, `[n, dim]`. Indices
    /// outside the table panic on the CPU and give zero rows on the GPU.
    fn embedding(&self, weight: &Self::Buffer, lw: &Layout, indices: At<Self::Buffer>, n: usize) -> Self::Buffer;

    /// The dense `table` (`[rows, dim]`) gradient of an embedding from the contiguous output
    /// gradient `grad` (`[n, dim]`) and its `n` indices, summed in position order.
    fn embedding_backward(
        &self,
        grad: At<Self::Buffer>,
        indices: At<Self::Buffer>,
        n: usize,
        table: [usize; 2],
        padding_idx: Option<usize>,
    ) -> Self::Buffer;

    /// The `n` positions of the i32 `indices` grouped by value (`[n]`) and where each of
    /// the `groups` values' run starts (`[groups + 1]`), as [`Tensor::group_by_index`].
    ///
    /// [`Tensor::group_by_index`]: crate::Tensor::group_by_index
    fn group_by_index(&self, indices: At<Self::Buffer>, n: usize, groups: usize) -> (Self::Buffer, Self::Buffer);

    /// The fused cross-entropy forward of contiguous `logits [rows, classes]` against i32
    /// `targets [rows]` with optional class weights (`spec.weight` is unused):
    /// `[losses | lse per row | weight sum]`. The CPU checks the targets, naming `op`.
    fn cross_entropy_forward(
        &self,
        op: &str,
        spec: &CrossEntropyRows,
        logits: At<Self::Buffer>,
        targets: At<Self::Buffer>,
        weight: Option<At<Self::Buffer>>,
    ) -> Self::Buffer;

    /// The fused cross-entropy's gradient with respect to the logits, `[rows, classes]`, of
    /// the forward's operands (logits, targets, weights), from the forward's `aux` (`lse` per row, then the weight sum) and the incoming
    /// gradient `grad`.
    fn cross_entropy_backward(
        &self,
        spec: &CrossEntropyRows,
        operands: (At<Self::Buffer>, At<Self::Buffer>, Option<At<Self::Buffer>>),
        aux: At<Self::Buffer>,
        grad: At<Self::Buffer>,
    ) -> Self::Buffer;

    /// One optimizer update of every parameter in `segments`, in place: the parameters,
    /// and their state in `arena` (the `used` state blocks of each parameter one after
    /// another from its `state_offset`). No gradient may share a parameter's storage.
    fn optim_step(
        &self,
        op: OptimOp,
        s: &OptimScalars,
        used: [bool; 3],
        segments: &[OptimSegment<Self::Shared>],
        arena: &Self::Shared,
    );

    // ---- convolution and its two gradients ----

    /// The column matrix of the `[N, C, H, W]` f32 view `lx` of `x`, in `layout`
    /// (`[N, rows, L]` image-major or `[rows, N, L]` row-major).
    fn im2col(&self, x: &Self::Buffer, lx: &Layout, g: &ConvGeometry, layout: ColumnLayout) -> Self::Buffer;

    /// Folds a contiguous column matrix (in `layout`, from `cols`' offset) back into an
    /// `[N, C, H, W]` batch, summing the entries read from each position.
    fn col2im(&self, cols: At<Self::Buffer>, layout: ColumnLayout, g: &ConvGeometry) -> Self::Buffer;

    /// The forward convolution of the view `x` with contiguous weights and an optional
    /// contiguous bias, `[N, out, oh, ow]` with the bias added, where this backend has a
    /// fused kernel for the case; `None` (the default) asks for the composed path, the
    /// batched matmul of the weights with im2col's columns, which the tensor layer builds
    /// from the backend's other families. The CPU always fuses; the GPU runs its direct
    /// kernel when `algorithm` picks it.
    fn conv2d(
        &self,
        x: (&Self::Buffer, &Layout),
        w: At<Self::Buffer>,
        bias: Option<At<Self::Buffer>>,
        g: &ConvGeometry,
        ch: ConvChannels,
        algorithm: ConvAlgorithm,
    ) -> Option<Self::Buffer> {
        let _ = (x, w, bias, g, ch, algorithm);
        None
    }

    /// The input and weight gradients of a convolution (each only where `wanted`) from
    /// the contiguous output gradient `gy`, the input view `x` and the contiguous weights,
    /// for a non-empty batch; `None` (the default) asks for the composed path: the input
    /// gradient as `W^T` times `gy` folded back by [`Backend::col2im`], the weight
    /// gradient as one matmul of `gy` with the row-major columns, per chunk of images
    /// (built by the tensor layer from the backend's other families, as the forward
    /// pass). The CPU overrides it with its fused per-image passes.
    fn conv2d_backward(
        &self,
        gy: At<Self::Buffer>,
        x: (&Self::Buffer, &Layout),
        w: At<Self::Buffer>,
        g: &ConvGeometry,
        ch: ConvChannels,
        wanted: [bool; 2],
    ) -> Option<[Option<Self::Buffer>; 2]> {
        let _ = (gy, x, w, g, ch, wanted);
        None
    }
}

// ---- operand types of the pooling, normalisation, embedding, cross-entropy and
// optimizer families ----

/// A read operand of a kernel that reads contiguous elements from an offset: the buffer
/// and the element its data starts at.
pub(crate) type At<'a, B> = (&'a B, usize);

/// One parameter of a multi-tensor optimizer update, as the storage shares it (the step
/// writes the parameter in place): its elements, its contiguous gradient from
/// `grad_offset`, and where its state starts in the arena.
pub(crate) struct OptimSegment<'a, S> {
    pub param: &'a S,
    pub grad: &'a S,
    pub grad_offset: usize,
    pub state_offset: usize,
    pub numel: usize,
}
