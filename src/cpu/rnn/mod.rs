//! The fused recurrent cells on the host: one time step of an LSTM, GRU or Elman RNN layer
//! over a whole batch, forward and backward. `shaders/rnn.wgsl` states the layouts of the
//! operands and the slot scheme; these loops follow its index arithmetic and its formulas
//! operation for operation, so the two devices round alike.
//!
//! The GEMMs around the cells are the tensor layer's matmul; what is left here is a tight
//! loop over `batch * hidden` units per step. Batch rows are independent, so they run in
//! parallel (see [`super::parallel`]), each row a loop over the hidden units that reads
//! every operand as a contiguous slice; the nonlinearities are branch-free so the compiler
//! can vectorise that loop (on x86-64 also in an AVX2 build chosen at run time, whose
//! results are bit-identical: Rust does not contract `a * b + c` into FMAs).
//!
//! Four parts: `math` (the branch-free `exp`, `sigmoid` and `tanh` the loops call),
//! `cells` (one step of each cell, the references of the GPU kernels), `sequence` (the
//! LSTM's whole-sequence passes, which keep the recurrent GEMM inside and split the batch
//! across threads) and `fused` (on AVX-512, the LSTM forward step as one product whose
//! epilogue is the cell, the input projection included). This file holds what they share:
//! the step's index arithmetic and the operand types.

use std::ops::Range;

use super::parallel;
pub use crate::op::rnn::CellStep;

mod cells;
mod fused;
mod math;
mod sequence;

pub use cells::{
    gru_cell_backward, gru_cell_forward, lstm_cell_backward, lstm_cell_forward, rnn_cell_backward, rnn_cell_forward,
};
use math::vectorised;
pub use math::{exp, sigmoid, tanh};
pub use sequence::{
    forward_by_sequence, fused_projection, lstm_layer_backward, lstm_layer_forward, splits_by_sequence, Projection,
    SequenceBackwardInputs, SequenceInputs,
};

impl CellStep {
    /// The `[B * H]` range of state section `s`, slot `k`, in the `[S, T + 1, B, H]` state.
    fn slot(&self, s: usize, k: usize) -> Range<usize> {
        let len = self.batch * self.hidden;
        let start = (s * (self.steps + 1) + k) * len;
        start..start + len
    }

    /// The `[B * width]` range of this step's time in section `section` of a
    /// `[.., T, B, width]` tensor.
    fn time_rows(&self, section: usize, width: usize) -> Range<usize> {
        let len = self.batch * width;
        let start = (section * self.steps + self.t) * len;
        start..start + len
    }

    fn active(&self, lengths: Option<&[i32]>, b: usize) -> bool {
        lengths.is_none_or(|l| (self.t as i64) < l[b] as i64)
    }

    /// What one batch row of a cell costs, for the parallel split: about ten
    /// element-operations per exp and a few for the rest, per gate and unit.
    fn row_work(&self, gates: usize) -> usize {
        16 * gates * self.hidden
    }
}

/// What a forward cell reads, each slice starting at its tensor's first element: `xw`
/// `[T, B, G * H]`, `hw` `[B, G * H]`, the two biases `[G * H]`, lengths `[B]`.
#[derive(Clone, Copy, Debug)]
pub struct ForwardInputs<'a> {
    /// `x_t W_ih^T` of every step.
    pub xw: &'a [f32],
    /// `h_{t-1} W_hh^T` of this step.
    pub hw: &'a [f32],
    /// `(bias_ih, bias_hh)`.
    pub bias: Option<(&'a [f32], &'a [f32])>,
    /// Each sequence's length, for padded batches.
    pub lengths: Option<&'a [i32]>,
}

/// What a backward cell reads: the gradient of the state tensor `[S, T + 1, B, H]`,
/// `dhw = dgates_next W_hh` `[B, H]`, the forward workspace and state, lengths `[B]`.
#[derive(Clone, Copy, Debug)]
pub struct BackwardInputs<'a> {
    /// The gradient of the loss with respect to every slot of the state tensor.
    pub d_state: &'a [f32],
    /// The next step's gate gradients times `W_hh` (zeros for the last step).
    pub dhw: &'a [f32],
    /// The forward workspace (gate activations); empty for the Elman cell.
    pub ws: &'a [f32],
    /// The forward state tensor.
    pub state: &'a [f32],
    /// Each sequence's length, for padded batches.
    pub lengths: Option<&'a [i32]>,
}

/// Disjoint mutable regions `ranges` of `data`, in the order given.
fn regions<const N: usize>(data: &mut [f32], ranges: [Range<usize>; N]) -> [&mut [f32]; N] {
    let mut order: [usize; N] = std::array::from_fn(|i| i);
    order.sort_by_key(|&i| ranges[i].start);
    let mut out: [Option<&mut [f32]>; N] = std::array::from_fn(|_| None);
    let (mut rest, mut consumed) = (data, 0);
    for i in order {
        let r = &ranges[i];
        assert!(r.start >= consumed, "rnn cell: state regions {ranges:?} overlap");
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(r.start - consumed);
        let (region, tail) = tail.split_at_mut(r.len());
        out[i] = Some(region);
        rest = tail;
        consumed = r.end;
    }
    out.map(|r| r.expect("every region was split off"))
}

/// The bias pair of a forward step, or `-0.0` in its place: `v + -0.0 == v` for every
/// `v` (zeros keep their sign), so one loop serves both cases with unchanged results.
fn biases<'a>(x: &ForwardInputs<'a>, zeros: &'a [f32]) -> (&'a [f32], &'a [f32]) {
    x.bias.unwrap_or((zeros, zeros))
}

/// Gate `g`'s `[H]` block of a row of `G * H` values.
fn gate(row: &[f32], g: usize, h: usize) -> &[f32] {
    &row[g * h..(g + 1) * h]
}

/// Calls `f(b, row)` for every batch row `b`, rows split across threads; `rows` holds one
/// entry of disjoint mutable slices per batch row.
fn per_row<T: Send>(rows: &mut [T], work_per_row: usize, f: impl Fn(usize, &mut T) + Sync) {
    parallel::for_each_run(rows, 1, work_per_row, |first, run| {
        vectorised(|| {
            for (k, row) in run.iter_mut().enumerate() {
                f(first + k, row);
            }
        })
    });
}

/// `dL/dh_t` of unit `j` of a batch row: from the output slot itself, through the next
/// step's `W_hh`, and the carried part.
#[inline(always)]
fn incoming_dh(d_out: &[f32], dhw: &[f32], carry: &[f32], j: usize) -> f32 {
    d_out[j] + dhw[j] + carry[j]
}
