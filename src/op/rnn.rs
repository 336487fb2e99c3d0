//! One time step of a recurrent layer, as the fused cell kernels of both backends see it.

/// One time step of a recurrent layer: the sizes and the state slots every cell kernel
/// needs (the Rust twin of the leading fields of `RnnParams` in rnn.wgsl).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellStep {
    /// Sequences in the batch (`B`).
    pub batch: usize,
    /// Hidden units per sequence (`H`).
    pub hidden: usize,
    /// Time steps of the whole sequence (`T`).
    pub steps: usize,
    /// The time index this step processes.
    pub t: usize,
    /// The state slot holding the previous state, and the one this step writes.
    pub slot_in: usize,
    pub slot_out: usize,
}

/// `flags` bit of `rnn_cell` (rnn.wgsl's `HAS_BIAS`): add the biases bound as in2, in3.
pub const RNN_HAS_BIAS: u32 = 1;
/// `HAS_LENGTHS`: a step at or past `lengths[b]` carries sequence `b`'s state through.
pub const RNN_HAS_LENGTHS: u32 = 2;
/// `RELU`: the Elman cell uses relu instead of tanh.
pub const RNN_RELU: u32 = 4;
