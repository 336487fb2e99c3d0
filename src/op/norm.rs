//! The shapes, table sizes and flags of the normalisation kernels, which the tensor layer
//! computes once and both backends read.

/// The shape of a layer-normalisation operand viewed as `[rows, len]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LnDims {
    /// Normalised blocks: the product of the leading dimensions.
    pub rows: usize,
    /// Elements per block: the product of `normalized_shape`.
    pub len: usize,
}

impl LnDims {
    pub fn numel(&self) -> usize {
        self.rows * self.len
    }

    /// Chunks of `chunk_rows` rows the parameter gradient is summed in (at least one, so
    /// the result has a defined shape even for zero rows).
    pub fn chunks(&self, chunk_rows: usize) -> usize {
        self.rows.div_ceil(chunk_rows).max(1)
    }
}

/// Rows of the statistics table.
pub const STATS_ROWS: usize = 4;
/// Rows of the gradient table.
pub const GRAD_ROWS: usize = 6;

/// The shape of a batch-normalisation operand viewed as `[N, C, L]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnDims {
    pub n: usize,
    pub c: usize,
    pub l: usize,
}

impl BnDims {
    /// Values per channel, `N * L`.
    pub fn per_channel(&self) -> usize {
        self.n * self.l
    }

    pub fn numel(&self) -> usize {
        self.n * self.c * self.l
    }
}

/// `flags` bits of the batch-normalisation kernels, as batch_norm.wgsl names them.
pub const BATCH_NORM_HAS_WEIGHT: u32 = 1;
pub const BATCH_NORM_HAS_BIAS: u32 = 2;
pub const BATCH_NORM_TRAINING: u32 = 4;
