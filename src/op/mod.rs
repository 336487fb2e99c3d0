//! The engine's vocabulary: the one list of what it can compute, and the parameter types
//! both backends take.
//!
//! Every variant of [`Op`] has a CPU implementation in `cpu/`, a WGSL entry point named by
//! [`Op::kernel`] in `shaders/`, and a cross-check in `tests/`. The test
//! `tests/op_coverage.rs` walks [`Op::all`] and fails when any of the three is missing;
//! the CPU dispatch and the test table are exhaustive `match`es, so adding a variant
//! without them does not compile.
//!
//! Ops are kinds, not graph nodes: the scalars an op takes (a clamp range, a seed) travel
//! beside it at call time, in the types of the submodules: a view's [`layout`], a matmul's
//! epilogue ([`matmul`]), convolution and pooling geometry ([`conv`], [`pool`]), a
//! recurrent step and its flags ([`rnn`]), the shapes and flags of layer and batch
//! normalisation ([`norm`]), optimizer scalars ([`optim`]) and cross-entropy's rows and
//! reduction ([`loss`]).
//!
//! This module sits below both backends and imports nothing from the crate: `cpu/`, `gpu/`
//! and the tensor layer above them all speak it, so neither backend reaches up into
//! `tensor`, `loss` or `optim` for a parameter type. The public layer re-exports what users
//! name (`wgrad::Layout`, `wgrad::Activation`, `wgrad::loss::Reduction`).

pub mod conv;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod rnn;

/// Declares a field-less enum together with the list of all its variants and their names,
/// so a test can walk every variant.
macro_rules! op_list {
    ($(#[$meta:meta])* $name:ident, entry prefix $prefix:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vmeta])* $variant,)* }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The snake_case name.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)* }
            }

            /// The WGSL entry point: the name behind a prefix that keeps it clear of
            /// WGSL's built-in functions (`exp`, `max`, ...).
            pub fn entry(self) -> &'static str {
                match self { $($name::$variant => concat!($prefix, $text),)* }
            }
        }
    };
}

op_list! {
    /// One input, one output of the same shape. Scalars (`alpha`, clamp bounds, exponent)
    /// travel as two `f32` parameters beside the op.
    UnaryOp, entry prefix "unary_" {
        /// Copy a strided view into a (possibly strided) destination; `contiguous()` and `cat` use it.
        Copy => "copy",
        Neg => "neg",
        Abs => "abs",
        Exp => "exp",
        Log => "log",
        Sqrt => "sqrt",
        Rsqrt => "rsqrt",
        Square => "square",
        Recip => "recip",
        Sin => "sin",
        Cos => "cos",
        /// `x * scalar0 + scalar1`: scalar add, sub, mul and div all lower to it.
        Affine => "affine",
        /// `x ^ scalar0`.
        PowScalar => "pow_scalar",
        /// `min(max(x, scalar0), scalar1)`.
        Clamp => "clamp",
        Relu => "relu",
        /// `x` if positive, else `scalar0 * x`.
        LeakyRelu => "leaky_relu",
        /// `x` if positive, else `scalar0 * (exp(x) - 1)`.
        Elu => "elu",
        Sigmoid => "sigmoid",
        Tanh => "tanh",
        /// The exact GELU, `x * Φ(x)` with the error function, as PyTorch's default.
        Gelu => "gelu",
        /// `log(1 + exp(x))`, computed without overflow.
        Softplus => "softplus",
        /// `x * sigmoid(x)`.
        Silu => "silu",
        /// The derivative of the exact GELU, `Φ(x) + x φ(x)`, for its gradient rule.
        GeluGrad => "gelu_grad",
    }
}

op_list! {
    /// Two inputs broadcast against each other (NumPy rules); comparisons give `1.0`/`0.0` masks.
    BinaryOp, entry prefix "binary_" {
        Add => "add",
        Sub => "sub",
        Mul => "mul",
        Div => "div",
        Pow => "pow",
        Maximum => "maximum",
        Minimum => "minimum",
        Eq => "eq",
        Ne => "ne",
        Lt => "lt",
        Le => "le",
        Gt => "gt",
        Ge => "ge",
    }
}

op_list! {
    /// Reductions over the last axis of a contiguous `[rows, len]` matrix; the tensor layer
    /// moves the reduced axes there first. `Var` takes the correction (Bessel's 1 by default)
    /// as a scalar; `ArgMax`/`ArgMin` return `i32` indices and the first index on ties.
    ReduceOp, entry prefix "reduce_" {
        Sum => "sum",
        Mean => "mean",
        Max => "max",
        Min => "min",
        Var => "var",
        ArgMax => "argmax",
        ArgMin => "argmin",
    }
}

op_list! {
    /// Tensors made from nothing but a shape and scalars.
    CreationOp, entry prefix "" {
        /// Every element set to one value.
        Fill => "fill",
        /// `start + i * step`.
        Arange => "arange",
        /// Ones on the diagonal of each `[n, m]` matrix.
        Eye => "eye",
        /// Uniform in `[low, high)` from a counter-based generator keyed by a seed.
        RandUniform => "rand_uniform",
        /// Normal with a mean and standard deviation (Box-Muller on the same generator).
        RandNormal => "rand_normal",
    }
}

/// One creation op with its scalars: what a backend needs to make a tensor from nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Creation {
    /// Every element `value`.
    Fill(f32),
    /// `start + i * step`.
    Arange { start: f32, step: f32 },
    /// Ones on the diagonal of each `[rows, cols]` matrix (`cols` at least 1).
    Eye { rows: usize, cols: usize },
    /// Uniform in `[low, high)` from `seed`.
    RandUniform { seed: u64, low: f32, high: f32 },
    /// Normal with `mean` and `std` from `seed`.
    RandNormal { seed: u64, mean: f32, std: f32 },
}

impl Creation {
    /// The kernel this creation runs.
    pub fn op(&self) -> CreationOp {
        match self {
            Creation::Fill(_) => CreationOp::Fill,
            Creation::Arange { .. } => CreationOp::Arange,
            Creation::Eye { .. } => CreationOp::Eye,
            Creation::RandUniform { .. } => CreationOp::RandUniform,
            Creation::RandNormal { .. } => CreationOp::RandNormal,
        }
    }
}

op_list! {
    /// Ops that pick elements by integer (`i32`) indices.
    IndexOp, entry prefix "" {
        /// Whole slices along an axis, chosen by a 1-D index vector.
        IndexSelect => "index_select",
        /// `out[.., i, ..] = src[.., index[.., i, ..], ..]` along one axis (PyTorch's `gather`).
        Gather => "gather",
        /// Sums slices into the rows a 1-D index names, repeated indices accumulating
        /// (PyTorch's `index_add`): the gradient of `IndexSelect`.
        IndexAdd => "index_add",
        /// `out[.., index[.., i, ..], ..] += src[.., i, ..]` (PyTorch's `scatter_add`): the
        /// gradient of `Gather`.
        ScatterAdd => "scatter_add",
    }
}

op_list! {
    /// Row-wise normalisations along the last axis of a contiguous matrix.
    SoftmaxOp, entry prefix "row_" {
        Softmax => "softmax",
        LogSoftmax => "log_softmax",
    }
}

op_list! {
    /// Fused in-place optimizer updates of several parameter tensors and their state per
    /// dispatch (up to twelve), with PyTorch's formulas. AdamW is `Adam` with decoupled weight decay.
    OptimOp, entry prefix "" {
        Sgd => "sgd_step",
        Adam => "adam_step",
        Adagrad => "adagrad_step",
        RmsProp => "rmsprop_step",
    }
}

op_list! {
    /// The data movement of im2col convolution; the arithmetic is the matmul kernel's.
    ConvOp, entry prefix "" {
        /// Unfolds the receptive field of every output position of an NCHW batch into one
        /// column of a `[channels * kh * kw, positions]` matrix per image, zeros where the
        /// field overhangs the padding.
        Im2col => "im2col",
        /// The adjoint of `Im2col`: every input position gathers the column entries that
        /// were read from it. The input gradient of a convolution, with no atomics.
        Col2im => "col2im",
        /// Direct convolution with the bias in the epilogue: each invocation a block of
        /// output channels by output columns, reading the input and weights in place
        /// (an implicit GEMM whose column matrix is never stored).
        Conv2dDirect => "conv2d_direct",
    }
}

op_list! {
    /// 2-D pooling over NCHW tensors and the gradients of each.
    PoolOp, entry prefix "" {
        /// Window maxima, with the flat `h * W + w` index of each maximum (as PyTorch's
        /// `return_indices`) kept for the backward pass.
        MaxPool2d => "max_pool2d",
        /// Every input position gathers the output gradients whose recorded maximum it was.
        MaxPool2dBackward => "max_pool2d_backward",
        /// Window means (padding counted or not, or a fixed divisor).
        AvgPool2d => "avg_pool2d",
        AvgPool2dBackward => "avg_pool2d_backward",
        /// Means over windows chosen so that the output has a given size.
        AdaptiveAvgPool2d => "adaptive_avg_pool2d",
        AdaptiveAvgPool2dBackward => "adaptive_avg_pool2d_backward",
    }
}

op_list! {
    /// Batch normalisation over contiguous `[N, C, L]` (channels in the middle): two
    /// per-channel reductions into small `[rows, C]` tables and the elementwise passes
    /// that read them. The table layouts are in `cpu/batch_norm.rs`.
    BatchNormOp, entry prefix "" {
        /// Per-channel mean and biased variance (two passes), with `invstd` and
        /// `scale = weight * invstd` from them: a `[4, C]` statistics table.
        Stats => "batch_norm_stats",
        /// `y = (x - mean[c]) * scale[c] + bias[c]`.
        Apply => "batch_norm_apply",
        /// Per-channel sums of `dy` and of `dy * (x - mean)`, and from them the weight and
        /// bias gradients and the factors of the input gradient: a `[6, C]` gradient table.
        BackwardReduce => "batch_norm_backward_reduce",
        /// `dx = (dy - mean(dy)[c] - (x - mean[c]) * proj[c]) * scale[c]`.
        BackwardApply => "batch_norm_backward_apply",
    }
}

op_list! {
    /// Per-image geometric data augmentation of NCHW batches.
    AugmentOp, entry prefix "" {
        /// Each image read at its own offset (zeros outside it) and optionally mirrored
        /// left to right: random crop with padding, random shift and horizontal flip.
        CropFlip => "crop_flip",
    }
}

op_list! {
    /// Embedding lookup and the deterministic, sort-based gradient of its table (see
    /// `shaders/embedding.wgsl`): the pairs `(index, position)` are sorted by a bitonic
    /// network, each row's run of positions is found, and each gradient element sums its
    /// row's run in position order.
    EmbeddingOp, entry prefix "" {
        /// Table rows picked by `i32` indices (a zero row for an index outside the table).
        Lookup => "embedding",
        /// The `(index, position)` pair of every position, padded to a power of two.
        SortKeys => "embedding_sort_keys",
        /// Every bitonic merge that fits in one block of pairs, in workgroup memory.
        SortBlock => "embedding_sort_block",
        /// One bitonic stage whose compare distance spans blocks, in global memory.
        MergeGlobal => "embedding_merge_global",
        /// The stages of a larger merge that stay within a block, in workgroup memory.
        MergeLocal => "embedding_merge_local",
        /// Where each row's run of sorted pairs starts (a binary search per row).
        RowStarts => "embedding_row_starts",
        /// Each weight-gradient element: its row's run of output gradients, summed in order.
        Backward => "embedding_backward",
    }
}

op_list! {
    /// Layer normalisation over the rows of contiguous `[rows, len]` data, a row being one
    /// normalised block (the trailing `normalized_shape` dimensions).
    LayerNormOp, entry prefix "" {
        /// Each row's mean and `rstd`, and the normalised, scaled and shifted row.
        Forward => "layer_norm_forward",
        /// The input gradient of each row, from the saved mean and `rstd`.
        Backward => "layer_norm_backward",
        /// Per chunk of rows, the column sums of `dy * xhat` and `dy`: the weight and bias
        /// gradients once the chunks are added up.
        ParamBackward => "layer_norm_param_backward",
    }
}

op_list! {
    /// Fused recurrent cells: one time step of an LSTM, GRU or Elman RNN layer over a whole
    /// batch, with the gate arithmetic of a step in one kernel (see `shaders/rnn.wgsl`). The
    /// GEMMs around them (input projection, recurrent projection, weight gradients) are
    /// `Matmul`; the two whole-sequence LSTM passes take the recurrent projection inside.
    RnnOp, entry prefix "" {
        /// Bias add, sigmoid/tanh gates, cell and hidden update; keeps the gate activations.
        LstmCellForward => "lstm_cell_forward",
        /// Gate pre-activation gradients and the cell gradient carried to the previous step.
        LstmCellBackward => "lstm_cell_backward",
        /// Reset and update gates, the candidate with the reset applied to `W_hn h + b_hn`.
        GruCellForward => "gru_cell_forward",
        GruCellBackward => "gru_cell_backward",
        /// `h' = tanh(pre)` or `relu(pre)`.
        RnnCellForward => "rnn_cell_forward",
        RnnCellBackward => "rnn_cell_backward",
        /// Every step of one LSTM layer and direction in one dispatch, the recurrent
        /// product inside the loop (see `shaders/lstm_sequence.wgsl`): where the hidden size
        /// fits one workgroup, on adapters that are not software rasterisers.
        LstmSequenceForward => "lstm_sequence_forward",
        /// Back through every step of one LSTM layer and direction in one dispatch: the gate
        /// pre-activation gradients of each step and the carry to the step before.
        LstmSequenceBackward => "lstm_sequence_backward",
    }
}

// ---- half precision ----

op_list! {
    /// Half precision (`f16`) storage and its one arithmetic op. On a GPU, `f16` tensors keep
    /// two elements in each 32-bit word (see `shaders/half.wgsl`); these kernels are the
    /// only ones that read or write them.
    HalfOp, entry prefix "" {
        /// `f32` to `f16`, rounded to nearest even; beyond the `f16` range to infinity.
        ToHalf => "cast_to_half",
        /// `f16` to `f32`, exact.
        ToFloat => "cast_to_float",
        /// Copy a strided `f16` view into a (possibly strided) `f16` destination.
        Copy => "half_copy",
        /// Batched `[.., M, K] x [.., K, N]` of `f16` operands, accumulated and written in `f32`.
        Matmul => "half_matmul",
    }
}

// ---- loss ----

op_list! {
    /// The fused cross-entropy over `i32` class indices (see `shaders/loss.wgsl`).
    LossOp, entry prefix "" {
        /// Log-softmax, the picked class, the weights and the reduction in one kernel; also
        /// keeps each row's log-sum-exp and the weight sum for the backward pass.
        CrossEntropyForward => "cross_entropy_forward",
        /// `(softmax - one_hot) * weight * scale`, the gradient of the logits, in one kernel.
        CrossEntropyBackward => "cross_entropy_backward",
    }
}

/// Everything the engine computes. See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Creation(CreationOp),
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, a, b)`: `a` where `cond != 0`, else `b`, all three broadcast.
    Where,
    Reduce(ReduceOp),
    /// Batched `[.., M, K] x [.., K, N]` with broadcast batch dimensions and strided operands,
    /// with an optional fused bias and activation. The kernel named here is one of several
    /// tile configurations in `matmul.wgsl` and `matmul_vec4.wgsl` (16-byte loads, for
    /// row-major operands aligned to 4 elements); `gpu/tuning.rs` picks one per adapter and
    /// shape class.
    Matmul,
    Softmax(SoftmaxOp),
    Index(IndexOp),
    Optim(OptimOp),
    Conv(ConvOp),
    Pool(PoolOp),
    BatchNorm(BatchNormOp),
    Augment(AugmentOp),
    Embedding(EmbeddingOp),
    LayerNorm(LayerNormOp),
    Rnn(RnnOp),
    /// The fused cross-entropy forward and backward.
    Loss(LossOp),
    /// `f16` casts, copies and matmul with `f32` accumulation.
    Half(HalfOp),
}

/// Where an op's kernel lives: a WGSL file in `shaders/` and an entry point in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelRef {
    /// File stem in `shaders/`, e.g. `"elementwise"`.
    pub file: &'static str,
    /// Entry point name inside that file.
    pub entry: &'static str,
}

impl Op {
    /// Every op the engine has, each sub-enum expanded.
    pub fn all() -> Vec<Op> {
        let mut ops = Vec::new();
        ops.extend(CreationOp::ALL.iter().map(|&o| Op::Creation(o)));
        ops.extend(UnaryOp::ALL.iter().map(|&o| Op::Unary(o)));
        ops.extend(BinaryOp::ALL.iter().map(|&o| Op::Binary(o)));
        ops.push(Op::Where);
        ops.extend(ReduceOp::ALL.iter().map(|&o| Op::Reduce(o)));
        ops.push(Op::Matmul);
        ops.extend(SoftmaxOp::ALL.iter().map(|&o| Op::Softmax(o)));
        ops.extend(IndexOp::ALL.iter().map(|&o| Op::Index(o)));
        ops.extend(OptimOp::ALL.iter().map(|&o| Op::Optim(o)));
        ops.extend(ConvOp::ALL.iter().map(|&o| Op::Conv(o)));
        ops.extend(PoolOp::ALL.iter().map(|&o| Op::Pool(o)));
        ops.extend(BatchNormOp::ALL.iter().map(|&o| Op::BatchNorm(o)));
        ops.extend(AugmentOp::ALL.iter().map(|&o| Op::Augment(o)));
        ops.extend(EmbeddingOp::ALL.iter().map(|&o| Op::Embedding(o)));
        ops.extend(LayerNormOp::ALL.iter().map(|&o| Op::LayerNorm(o)));
        ops.extend(RnnOp::ALL.iter().map(|&o| Op::Rnn(o)));
        ops.extend(LossOp::ALL.iter().map(|&o| Op::Loss(o)));
        ops.extend(HalfOp::ALL.iter().map(|&o| Op::Half(o)));
        ops
    }

    /// A stable name, used in logs, the profiler and test reports.
    pub fn name(self) -> &'static str {
        match self {
            Op::Creation(o) => o.name(),
            Op::Unary(o) => o.name(),
            Op::Binary(o) => o.name(),
            Op::Where => "where",
            Op::Reduce(o) => o.name(),
            Op::Matmul => "matmul",
            Op::Softmax(o) => o.name(),
            Op::Index(o) => o.name(),
            Op::Optim(o) => o.name(),
            Op::Conv(o) => o.name(),
            Op::Pool(o) => o.name(),
            Op::BatchNorm(o) => o.name(),
            Op::Augment(o) => o.name(),
            Op::Embedding(o) => o.name(),
            Op::LayerNorm(o) => o.name(),
            Op::Rnn(o) => o.name(),
            Op::Loss(o) => o.name(),
            Op::Half(o) => o.name(),
        }
    }

    /// The WGSL entry point that computes this op on the GPU.
    pub fn kernel(self) -> KernelRef {
        let (file, entry) = match self {
            Op::Creation(o) => ("creation", o.entry()),
            // Copies move raw 32-bit words, so they serve every dtype: see copy.wgsl.
            Op::Unary(UnaryOp::Copy) => ("copy", "copy_strided"),
            Op::Unary(o) => ("elementwise", o.entry()),
            Op::Binary(o) => ("elementwise", o.entry()),
            Op::Where => ("elementwise", "where_select"),
            Op::Reduce(o @ (ReduceOp::ArgMax | ReduceOp::ArgMin)) => ("argreduce", o.entry()),
            Op::Reduce(o) => ("reduce", o.entry()),
            Op::Matmul => ("matmul", "matmul"),
            Op::Softmax(o) => ("softmax", o.entry()),
            Op::Index(o @ (IndexOp::IndexAdd | IndexOp::ScatterAdd)) => ("scatter", o.entry()),
            Op::Index(o) => ("index", o.entry()),
            Op::Optim(o) => ("optim", o.entry()),
            Op::Conv(ConvOp::Conv2dDirect) => ("conv_direct", "conv2d_direct"),
            Op::Conv(o) => ("conv", o.entry()),
            Op::Pool(o) => ("pool", o.entry()),
            Op::BatchNorm(o) => ("batch_norm", o.entry()),
            Op::Augment(o) => ("augment", o.entry()),
            Op::Embedding(o) => ("embedding", o.entry()),
            Op::LayerNorm(o) => ("layer_norm", o.entry()),
            Op::Rnn(o @ (RnnOp::LstmSequenceForward | RnnOp::LstmSequenceBackward)) => ("lstm_sequence", o.entry()),
            Op::Rnn(o) => ("rnn", o.entry()),
            Op::Loss(o) => ("loss", o.entry()),
            Op::Half(HalfOp::Matmul) => ("half_matmul", HalfOp::Matmul.entry()),
            Op::Half(o) => ("half", o.entry()),
        };
        KernelRef { file, entry }
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
