//! The LSTM's whole-sequence passes: every step of a layer and direction in one call,
//! the batch split across threads by runs of sequences, with the recurrent GEMM inside.

use std::ops::Range;

use rayon::prelude::*;

use super::cells::{lstm_backward_row, lstm_forward_row, LstmForwardRow};
use super::fused;
use super::*;
use crate::cpu::alloc;
use crate::cpu::gemm::{sgemm, Strided, Threads};
use crate::cpu::packed;

/// What the forward pass of a whole LSTM layer and direction reads: the input projection
/// (below), `w_hh_t` (`W_hh^T`, `[H, 4H]` row-major), the two biases `[4H]`, lengths `[B]`.
#[derive(Clone, Copy, Debug)]
pub struct SequenceInputs<'a> {
    pub projection: Projection<'a>,
    pub w_hh_t: &'a [f32],
    pub bias: Option<(&'a [f32], &'a [f32])>,
    pub lengths: Option<&'a [i32]>,
}

/// Where the input projection `x_t W_ih^T` of every step comes from.
#[derive(Clone, Copy, Debug)]
pub enum Projection<'a> {
    /// Computed apart: `xw` `[T, B, 4H]`.
    Computed(&'a [f32]),
    /// Computed inside each step (`fused::lstm_step`, which needs [`fused_projection`]):
    /// the time-major input `x` (`[T, B, I]`) and `W_ih` (`[4H, I]` row-major).
    Fused { x: &'a [f32], w_ih: &'a [f32], input: usize },
}

/// Whether [`lstm_layer_forward`] takes [`Projection::Fused`] (the CPU has AVX-512F).
pub fn fused_projection() -> bool {
    fused::available()
}

/// Whether the backward pass of an LSTM layer runs as [`lstm_layer_backward`]. With the
/// packed kernel ([`packed::available`]) it always does, as the forward pass (see
/// [`forward_by_sequence`]): its product with `W_hh` rounds differently from the matmul of
/// the per-step path. Without it, where it pays: it splits the batch across threads, so it
/// needs at least two rows per thread to beat the per-step split of
/// [`lstm_cell_backward`] and the matmul.
pub fn splits_by_sequence(batch: usize) -> bool {
    let threads = parallel::threads();
    packed::available() || (threads > 1 && batch >= 2 * threads)
}

/// Whether the forward pass of an LSTM layer runs as [`lstm_layer_forward`]. With the
/// packed kernel ([`packed::available`]) it always does, whatever the batch and the thread
/// count: its recurrent product rounds differently from the matmul of the per-step path,
/// so taking one path for every thread count keeps the results the same bits on all of
/// them. Without it, as [`splits_by_sequence`].
pub fn forward_by_sequence(batch: usize) -> bool {
    splits_by_sequence(batch)
}

/// The forward pass of a whole LSTM layer and direction: for each step of `steps` (in the
/// order given), `h W_hh^T` and the cell, writing the state slots and the workspace as
/// [`lstm_cell_forward`] does step by step. An empty `ws` (a forward pass no backward
/// follows) keeps no workspace.
///
/// The sequences of a batch are independent through all the steps, so the batch is cut
/// into one run of rows per thread and each thread carries its rows through every step on
/// its own: one hand-off to the pool per layer instead of two per step (the GEMM's and the
/// cell's), and each thread's rows of the state stay in its core's cache. Each row's
/// recurrent product is one dot product over `H` per element whatever the rows around it,
/// so the results do not depend on how the batch is cut. On a CPU with AVX-512 each step
/// runs as `fused::lstm_step`, the cell in the epilogue of the product, with `W_hh^T`
/// packed once for the sequence; elsewhere on [`sgemm`], whose rows are the same bits as
/// the step-by-step path's matmul, and the cell after it.
pub fn lstm_layer_forward(steps: &[CellStep], x: &SequenceInputs, state: &mut [f32], ws: &mut [f32]) {
    let Some(first) = steps.first() else { return };
    let (batch, h, width) = (first.batch, first.hidden, 4 * first.hidden);
    assert!(
        ws.is_empty() || ws.len() >= first.steps * batch * width,
        "lstm_layer_forward: a workspace of {} elements for {} steps of {batch}x{width}",
        ws.len(),
        first.steps
    );
    assert_eq!(x.w_hh_t.len(), h * width, "lstm_layer_forward: W_hh^T of {} elements for hidden {h}", x.w_hh_t.len());
    let zeros = vec![-0.0f32; width];
    let bias = x.bias.unwrap_or((&zeros, &zeros));
    // W_hh^T packed once for the whole sequence (gate panels for the fused step), where
    // the matmul would pack it again at every step.
    let w_packed = fused::available().then(|| match x.projection {
        Projection::Computed(_) => fused::pack_gates(0, h, &[], x.w_hh_t),
        Projection::Fused { w_ih, input, .. } => fused::pack_gates(input, h, w_ih, x.w_hh_t),
    });
    assert!(
        w_packed.is_some() || matches!(x.projection, Projection::Computed(_)),
        "lstm_layer_forward: a fused input projection needs AVX-512F"
    );
    let w_packed = w_packed.as_ref().map(|b| b.as_slice());
    let (state, ws) = (RowShared::new(state), RowShared::new(ws));
    for_each_batch_run(batch, |rows| lstm_run_widest(steps, x, w_packed, bias, rows, &state, &ws));
}

/// Calls `f(rows)` on one run of consecutive batch rows per thread, in parallel; the runs
/// cover `0..batch` once.
fn for_each_batch_run(batch: usize, f: impl Fn(Range<usize>) + Sync) {
    if batch == 0 {
        return;
    }
    let per_run = batch.div_ceil(parallel::threads().clamp(1, batch.max(1)));
    (0..batch.div_ceil(per_run)).into_par_iter().for_each(|run| f(run * per_run..((run + 1) * per_run).min(batch)));
}

/// Defines `fn $name(args)` that calls `$body(args)` compiled for the widest vector unit of
/// the CPU it runs on: on x86-64 an AVX-512 build, else an AVX2 build, else the baseline.
/// `$body` is `#[inline(always)]`, so each `#[target_feature]` build compiles it in full
/// instead of leaving the cell loops to the inliner's judgement (see [`vectorised`]); the
/// arithmetic is the same IEEE operations in every build, so the results are the same bits.
macro_rules! widest_vector_build {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) = $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

widest_vector_build!(
    /// [`lstm_run`] for the CPU's vector unit.
    fn lstm_run_widest(
        steps: &[CellStep],
        x: &SequenceInputs,
        w_packed: Option<&[f32]>,
        bias: (&[f32], &[f32]),
        rows: Range<usize>,
        state: &RowShared,
        ws: &RowShared,
    ) = lstm_run
);

/// The rows `rows` of a `[B, w]` block that starts at `block.start`.
#[inline(always)]
fn run_block(block: Range<usize>, rows: &Range<usize>, w: usize) -> Range<usize> {
    block.start + rows.start * w..block.start + rows.end * w
}

/// Row `i` of the rows `rows` of a `[B, w]` block that starts at `block.start`.
#[inline(always)]
fn run_row(block: Range<usize>, rows: &Range<usize>, w: usize, i: usize) -> Range<usize> {
    let start = block.start + (rows.start + i) * w;
    start..start + w
}

/// One run of [`lstm_layer_forward`]: the batch rows `rows` through every step.
#[inline(always)]
fn lstm_run(
    steps: &[CellStep],
    x: &SequenceInputs,
    w_packed: Option<&[f32]>,
    bias: (&[f32], &[f32]),
    rows: Range<usize>,
    state: &RowShared,
    ws: &RowShared,
) {
    let (n, h) = (rows.len(), steps[0].hidden);
    let width = 4 * h;
    let own = |block: Range<usize>, w: usize| run_block(block, &rows, w);
    let own_row = |block: Range<usize>, w: usize, i: usize| run_row(block, &rows, w, i);
    // Without a workspace (a forward pass no backward follows) the unfused cell computes
    // its gates in a scratch row.
    let keep_ws = ws.len > 0;
    let mut scratch = if keep_ws { Vec::new() } else { alloc::zeroed::<f32>(width, "rnn") };
    let mut active = vec![true; n];
    let mut hw = if w_packed.is_some() { Vec::new() } else { alloc::zeroed::<f32>(n * width, "rnn") };
    for s in steps {
        // SAFETY: this run reads and writes only its own rows of each slot and of the
        // workspace, which no other run touches; within a step the slots read (`slot_in`)
        // and written (`slot_out`) are different slots.
        let (h_prev, c_prev) =
            unsafe { (state.get(own(s.slot(0, s.slot_in), h)), state.get(own(s.slot(1, s.slot_in), h))) };
        let (xs, xw) = match x.projection {
            Projection::Computed(xw) => (&[][..], Some(&xw[own(s.time_rows(0, width), width)])),
            Projection::Fused { x, input, .. } => (&x[own(s.time_rows(0, input), input)], None),
        };
        for (i, a) in active.iter_mut().enumerate() {
            *a = s.active(x.lengths, rows.start + i);
        }
        if let Some(w) = w_packed {
            // SAFETY: as above.
            let (h_out, c_out, ws) = unsafe {
                (
                    state.get_mut(own(s.slot(0, s.slot_out), h)),
                    state.get_mut(own(s.slot(1, s.slot_out), h)),
                    keep_ws.then(|| ws.get_mut(own(s.time_rows(0, width), width))),
                )
            };
            let input = xs.len() / n;
            let rows = fused::StepRows { x: xs, h_prev, c_prev, xw, active: &active, h_out, c_out, ws };
            fused::lstm_step(input, h, w, bias, rows);
            continue;
        }
        let xw = xw.expect("the unfused step reads a computed projection");
        let lhs = Strided { data: h_prev, offset: 0, row_stride: h as isize, col_stride: 1 };
        let rhs = Strided { data: x.w_hh_t, offset: 0, row_stride: width as isize, col_stride: 1 };
        sgemm((n, h, width), lhs, rhs, 0.0, &mut hw, width, Threads::Caller);
        for (i, &active) in active.iter().enumerate() {
            let (units, gates) = (i * h..(i + 1) * h, i * width..(i + 1) * width);
            // SAFETY: as above; row `i` of this step's outputs is reached only here.
            let mut out = unsafe {
                LstmForwardRow {
                    h: state.get_mut(own_row(s.slot(0, s.slot_out), h, i)),
                    c: state.get_mut(own_row(s.slot(1, s.slot_out), h, i)),
                    ws: if keep_ws { ws.get_mut(own_row(s.time_rows(0, width), width, i)) } else { &mut scratch[..] },
                }
            };
            let prev = (&h_prev[units.clone()], &c_prev[units]);
            lstm_forward_row(active, &xw[gates.clone()], &hw[gates], bias, prev, &mut out);
        }
    }
}

/// A mutable buffer that several threads carve disjoint row ranges out of (the runs of
/// [`lstm_layer_forward`]). Holding it borrows the buffer mutably for its whole life.
struct RowShared<'a> {
    ptr: *mut f32,
    len: usize,
    _borrow: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: the buffer is only reached through `get` and `get_mut`, whose callers promise
// that no range given out mutably overlaps another range in use on any thread.
unsafe impl Send for RowShared<'_> {}
unsafe impl Sync for RowShared<'_> {}

impl<'a> RowShared<'a> {
    fn new(data: &'a mut [f32]) -> Self {
        RowShared { ptr: data.as_mut_ptr(), len: data.len(), _borrow: std::marker::PhantomData }
    }

    /// # Safety
    /// No range overlapping `r` may be in use mutably while the slice lives.
    unsafe fn get(&self, r: Range<usize>) -> &[f32] {
        assert!(r.start <= r.end && r.end <= self.len, "rnn: rows {r:?} outside a buffer of {}", self.len);
        // SAFETY: in bounds (checked above); the caller rules out mutable overlap.
        unsafe { std::slice::from_raw_parts(self.ptr.add(r.start), r.len()) }
    }

    /// # Safety
    /// No range overlapping `r` may be in use at all while the slice lives.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut(&self, r: Range<usize>) -> &mut [f32] {
        assert!(r.start <= r.end && r.end <= self.len, "rnn: rows {r:?} outside a buffer of {}", self.len);
        // SAFETY: in bounds (checked above); the caller rules out any overlap.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.len()) }
    }
}

/// What the backward pass of a whole LSTM layer and direction reads: the gradient of the
/// state tensor `[2, T + 1, B, H]`, the forward workspace `[T, B, 4H]` and state, `W_hh`
/// (`[4H, H]` row-major), lengths `[B]`.
#[derive(Clone, Copy, Debug)]
pub struct SequenceBackwardInputs<'a> {
    pub d_state: &'a [f32],
    pub ws: &'a [f32],
    pub state: &'a [f32],
    pub w_hh: &'a [f32],
    pub lengths: Option<&'a [i32]>,
}

/// The backward pass through time of a whole LSTM layer and direction: `steps` in forward
/// order, walked from the last; for each, `dhw = dgates_next W_hh` and the backward cell,
/// writing `dgates` (`[1, T, B, 4H]`) and `carry` (`[2, B, H]`) as [`lstm_cell_backward`]
/// does step by step. The batch is split across threads as in [`lstm_layer_forward`], with
/// the same bits as the step-by-step path.
pub fn lstm_layer_backward(steps: &[CellStep], x: &SequenceBackwardInputs, dgates: &mut [f32], carry: &mut [f32]) {
    let Some(first) = steps.first() else { return };
    let (batch, h, width) = (first.batch, first.hidden, 4 * first.hidden);
    assert_eq!(x.w_hh.len(), width * h, "lstm_layer_backward: W_hh of {} elements for hidden {h}", x.w_hh.len());
    // W_hh packed once for the whole sequence on the packed kernel.
    let w_packed = packed::available().then(|| {
        let mut buf = packed::AlignedBuf::zeroed(packed::packed_len(width, h), "rnn");
        packed::pack_b(width, h, x.w_hh, (h, 1), buf.as_mut_slice());
        buf
    });
    let w_packed = w_packed.as_ref().map(|b| b.as_slice());
    let (dgates, carry) = (RowShared::new(dgates), RowShared::new(carry));
    for_each_batch_run(batch, |rows| lstm_backward_run_widest(steps, x, w_packed, rows, &dgates, &carry));
}

widest_vector_build!(
    /// [`lstm_backward_run`] for the CPU's vector unit.
    fn lstm_backward_run_widest(
        steps: &[CellStep],
        x: &SequenceBackwardInputs,
        w_packed: Option<&[f32]>,
        rows: Range<usize>,
        dgates: &RowShared,
        carry: &RowShared,
    ) = lstm_backward_run
);

/// One run of [`lstm_layer_backward`]: the batch rows `rows` back through every step.
#[inline(always)]
fn lstm_backward_run(
    steps: &[CellStep],
    x: &SequenceBackwardInputs,
    w_packed: Option<&[f32]>,
    rows: Range<usize>,
    dgates: &RowShared,
    carry: &RowShared,
) {
    let (n, h, batch) = (rows.len(), steps[0].hidden, steps[0].batch);
    let width = 4 * h;
    let own = |block: Range<usize>, w: usize| run_block(block, &rows, w);
    let own_row = |block: Range<usize>, w: usize, i: usize| run_row(block, &rows, w, i);
    // SAFETY: each run's rows of `carry` (both sections) are its own for the whole pass.
    let (carry_h, carry_c) =
        unsafe { (carry.get_mut(own(0..batch * h, h)), carry.get_mut(own(batch * h..2 * batch * h, h))) };
    let mut dhw = alloc::zeroed::<f32>(n * h, "rnn");
    // Asked once: the vector row needs AVX-512F.
    let vector_rows = fused::available();
    for k in (0..steps.len()).rev() {
        let s = &steps[k];
        if let Some(next) = steps.get(k + 1) {
            // SAFETY: the next step's gate gradients (another time) were written by this
            // run, and nothing writes them now.
            let dg_next = unsafe { dgates.get(own(next.time_rows(0, width), width)) };
            match w_packed {
                Some(w) => packed::gemm((n, width, h), dg_next, width, w, packed::Start::Zero, &mut dhw, h),
                None => {
                    let lhs = Strided { data: dg_next, offset: 0, row_stride: width as isize, col_stride: 1 };
                    let rhs = Strided { data: x.w_hh, offset: 0, row_stride: h as isize, col_stride: 1 };
                    sgemm((n, width, h), lhs, rhs, 0.0, &mut dhw, h, Threads::Caller);
                }
            }
        }
        let (dh_out, dc_out) = (&x.d_state[s.slot(0, s.slot_out)], &x.d_state[s.slot(1, s.slot_out)]);
        let (c_out, c_in) = (&x.state[s.slot(1, s.slot_out)], &x.state[s.slot(1, s.slot_in)]);
        let ws = &x.ws[s.time_rows(0, width)];
        for i in 0..n {
            let b = rows.start + i;
            let unit = b * h..(b + 1) * h;
            let d_out = (&dh_out[unit.clone()], &dc_out[unit.clone()]);
            let cells = (&c_out[unit.clone()], &c_in[unit]);
            // SAFETY: row `b` of this step's gate gradients is reached only here.
            let dg = unsafe { dgates.get_mut(own_row(s.time_rows(0, width), width, i)) };
            let local = i * h..(i + 1) * h;
            let (ch, cc) = (&mut carry_h[local.clone()], &mut carry_c[local.clone()]);
            let (active, ws) = (s.active(x.lengths, b), &ws[b * width..(b + 1) * width]);
            if active && vector_rows {
                fused::lstm_backward_row(d_out, &dhw[local], ws, cells, dg, ch, cc);
            } else {
                lstm_backward_row(active, d_out, &dhw[local], ws, cells, dg, ch, cc);
            }
        }
    }
}
