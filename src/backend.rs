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
//! Every op family is behind the seam: creation, upload and read-back, copies (contiguous,
//! in-place assignment), the elementwise family (unary, binary and `where`), reductions,
//! softmax, matmul with its fused epilogue, the index family (index_select, gather,
//! index_add, scatter_add), half-precision conversions and the half matmul, augmentation
//! (`crop_flip`), pooling, layer and batch normalisation, embedding (lookup, gradient,
//! grouping by index), the fused cross-entropy, the optimizer step in place, convolution
//! (im2col, col2im, the forward pass and its two gradients), and the recurrent cell step
//! and whole LSTM layer. A new family is a method on the trait, its two implementations
//! beside the backends' existing kernels, one storage method, and a tensor method that
//! validates, calls the storage and records.
//!
//! In-place writes (a copy into a view, an upload into a parameter) take the output as
//! [`Backend::BufferMut`]: the host's data under its write lock, a shared handle on the
//! GPU, where the recorded order of the work keeps reads and writes apart. Kernels that
//! read contiguous operands from an element offset take them as [`At`] (buffer and
//! offset) or [`View`] (buffer and layout). Ops that update an existing tensor in place
//! (the optimizer step, the recurrent cells) take its [`Backend::Shared`] form, the
//! buffer as the storage shares it, and take its lock themselves.
//!
//! Composed defaults: where a family can be built from others, the trait method's default
//! returns `None` (or `false`) and the tensor layer composes it from the other families'
//! ops, which run on any backend; a backend with a fused kernel overrides the method.
//! Convolution's forward pass is the batched matmul of the weights with im2col's columns
//! unless the backend fuses it (the CPU always, the GPU with its direct kernel where
//! [`ConvAlgorithm`] picks it); its gradients are `W^T` times the output gradient folded
//! by col2im and a matmul with the columns, unless the backend fuses them (the CPU). A
//! recurrent layer runs one matmul and one cell step per time step unless the backend has
//! a whole-sequence pass (the CPU's LSTM, for batches it splits by sequence). The
//! leading-axis sums of a reduction are a permute and a row reduction unless the backend
//! reads them in place (the CPU). The compositions live in the tensor layer, where the
//! ops they are made of record their gradients.

use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::op::layout::Layout;
use crate::op::matmul::{Epilogue, MatmulDims};
use crate::op::{BinaryOp, Creation, HalfOp, IndexOp, ReduceOp, SoftmaxOp, UnaryOp};

// The layer families' parameter types.
use crate::op::loss::CrossEntropyRows;
use crate::op::norm::{BnDims, LnDims};
use crate::op::optim::OptimScalars;
use crate::op::pool::PoolGeometry;
use crate::op::{BatchNormOp, LayerNormOp, OptimOp, PoolOp};

// Convolution.
use crate::op::conv::{ColumnLayout, ConvAlgorithm, ConvChannels, ConvGeometry};

// Recurrent layers.
use crate::op::rnn::CellStep;
use crate::op::RnnOp;

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

    /// The gradient of a ReLU, `g * (x > 0 ? 1 : 0)` of two f32 views of one shape, in one
    /// pass where this backend has one; `None` (the default) asks for the composed form,
    /// [`BinaryOp::Gt`] then [`BinaryOp::Mul`], which the tensor layer runs. The fused
    /// pass must give the composed form's bits (a product with the 1/0 mask, so a
    /// negative or NaN gradient at `x <= 0` gives -0 or NaN as there).
    fn relu_backward(&self, g: (&Self::Buffer, &Layout), x: (&Self::Buffer, &Layout)) -> Option<Self::Buffer> {
        let _ = (g, x);
        None
    }

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
        operands: CrossEntropyOperands<Self::Buffer>,
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

    // ---- recurrent step and whole layer ----

    /// One fused recurrent cell step `op` over the batch (see [`RnnCellOperands`]);
    /// `flags` are the `RNN_*` bits. The outputs start at element 0.
    fn rnn_cell(&self, op: RnnOp, step: &CellStep, flags: u32, x: RnnCellOperands<Self::Buffer, Self::Shared>);

    /// The forward pass of a whole LSTM layer and direction in one call, where this
    /// backend has one for the batch; `false` (the default) asks for the composed path,
    /// one recurrent matmul and one [`Backend::rnn_cell`] per step, which the tensor layer
    /// runs. The CPU overrides it for batches it splits across threads by sequence.
    fn lstm_layer_forward(&self, x: LstmLayerForward<Self::Buffer, Self::Shared>) -> bool {
        let _ = x;
        false
    }

    /// Whether [`Backend::lstm_layer_forward`] runs with an empty workspace view, storing
    /// no gate activations, when no backward pass will read them (a forward pass that
    /// records no graph). `false` (the default): the tensor layer always gives it one.
    fn lstm_forward_without_workspace(&self) -> bool {
        false
    }

    /// The backward pass of a whole LSTM layer and direction, as
    /// [`Backend::lstm_layer_forward`]: `false` (the default) asks for one matmul and one
    /// backward cell step per step.
    fn lstm_layer_backward(&self, x: LstmLayerBackward<Self::Buffer, Self::Shared>) -> bool {
        let _ = x;
        false
    }
}

// ---- operand types of the pooling, normalisation, embedding, cross-entropy and
// optimizer families ----

/// A read operand of a kernel that reads contiguous elements from an offset: the buffer
/// and the element its data starts at.
pub(crate) type At<'a, B> = (&'a B, usize);

/// The operands of the fused cross-entropy: logits, targets and the optional class
/// weights.
pub(crate) type CrossEntropyOperands<'a, B> = (At<'a, B>, At<'a, B>, Option<At<'a, B>>);

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

// ---- operand types of the recurrent family ----

/// A contiguous f32 or i32 view: the buffer and the layout that places it.
pub(crate) type View<'a, B> = (&'a B, &'a Layout);

/// The operands of one fused recurrent cell step, which writes its two outputs in place.
pub(crate) struct RnnCellOperands<'a, B, S> {
    /// Forward: `xw` `[T * B, G * H]`, `hw` `[B, G * H]`, `bias_ih`, `bias_hh` (both or
    /// neither). Backward: the gradient of the state tensor, `dhw` `[B, H]`, the forward
    /// workspace (absent for the Elman cell, which keeps none) and the forward state.
    pub inputs: [Option<View<'a, B>>; 4],
    /// The i32 sequence lengths `[B]` of a padded batch.
    pub lengths: Option<View<'a, B>>,
    /// Forward: the state tensor and the workspace (absent for the Elman cell).
    /// Backward: the gate gradients and the carried state gradients.
    pub outputs: [Option<View<'a, S>>; 2],
}

/// The operands of the forward pass of a whole LSTM layer and direction: every step, in
/// processing order, with what [`RnnCellOperands`] holds for one, `W_hh^T` in place of
/// `hw`. The input projection is either computed (`xw`, `[T, B, 4H]`) or left to the
/// backend (`None`): then `x` (the time-major input `[T, B, I]`) and `w_ih` (`[4H, I]`)
/// are what it projects, and a backend that does not project inputs itself answers
/// `false` to be called again with `xw`.
pub(crate) struct LstmLayerForward<'a, B, S> {
    pub steps: &'a [CellStep],
    pub xw: Option<View<'a, B>>,
    pub x: View<'a, B>,
    pub w_ih: View<'a, B>,
    pub w_hh_t: View<'a, B>,
    pub bias: Option<(View<'a, B>, View<'a, B>)>,
    pub lengths: Option<View<'a, B>>,
    pub state: View<'a, S>,
    pub ws: View<'a, S>,
}

/// The operands of the backward pass of a whole LSTM layer and direction, `W_hh` in
/// place of `dhw`.
pub(crate) struct LstmLayerBackward<'a, B, S> {
    pub steps: &'a [CellStep],
    pub d_state: View<'a, B>,
    pub ws: View<'a, B>,
    pub state: View<'a, B>,
    pub w_hh: View<'a, B>,
    pub lengths: Option<View<'a, B>>,
    pub dgates: View<'a, S>,
    pub carry: View<'a, S>,
}
