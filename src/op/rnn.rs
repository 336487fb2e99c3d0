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
