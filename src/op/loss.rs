//! How a loss combines its per-element values, and the rows of the fused cross-entropy
//! kernels of both backends.

/// How a loss combines its per-element values, as PyTorch's `reduction` argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// The mean over all elements (`'mean'`, PyTorch's default). The class losses with
    /// weights ([`CrossEntropy`], [`nll_loss`]) divide by the sum of the weights of the
    /// targets instead, as PyTorch does.
    ///
    /// [`CrossEntropy`]: crate::loss::CrossEntropy
    /// [`nll_loss`]: crate::loss::nll_loss
    #[default]
    Mean,
    /// The sum over all elements (`'sum'`).
    Sum,
    /// No reduction (`'none'`): the per-element losses, in the shape of the target.
    None,
    /// [`kl_div`] only (`'batchmean'`): the sum divided by the batch size `input.shape[0]`,
    /// which makes the result the mathematical KL divergence averaged over the batch.
    /// Every other loss panics on it, as PyTorch rejects it there.
    ///
    /// [`kl_div`]: crate::loss::kl_div
    BatchMean,
}

/// What decides one row's share of the loss: the class weights (all 1 when absent) and
/// the ignored target.
#[derive(Clone, Copy, Debug)]
pub struct CrossEntropyRows<'a> {
    /// The `N` of `logits [N, C]`.
    pub rows: usize,
    /// The `C` of `logits [N, C]`.
    pub classes: usize,
    /// The class weights, `[C]`; all 1 when absent.
    pub weight: Option<&'a [f32]>,
    /// Rows whose target is this index count nowhere.
    pub ignore_index: Option<i32>,
    pub reduction: Reduction,
}

impl CrossEntropyRows<'_> {
    /// Where the per-row `lse` values start in the forward's output.
    pub fn lse_at(&self) -> usize {
        if self.reduction == Reduction::None {
            self.rows
        } else {
            1
        }
    }

    /// Length of the forward's output: losses, `lse` per row, weight sum.
    pub fn forward_len(&self) -> usize {
        self.lse_at() + self.rows + 1
    }
}
