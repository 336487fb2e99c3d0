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

use super::alloc;
use std::ops::Range;

use rayon::prelude::*;

use super::gemm::{sgemm, Strided, Threads};
use super::parallel;
pub use crate::op::rnn::CellStep;

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

/// `e^x` in f32 as `2^k * e^r` (`k` an integer, `|r| <= ln(2)/2`), with Cephes' `expf`
/// reduction (`ln 2` split in two so that `r` is nearly exact) and its degree-7 minimax
/// polynomial for `e^r`: within 1 ulp of the correctly rounded value everywhere. All in
/// f32 and branch-free, so the cell loops that call it vectorise 8 or 16 lanes wide;
/// the platform's `expf` is a call per element.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Past these bounds e^x is zero or infinite in f32; the clamp keeps 2^k's two factors
    // normal. NaN fails both comparisons and passes through to the polynomial.
    let x = clamp(x, -104.0, 89.0);
    // Adding 1.5 * 2^23 rounds x / ln 2 to the nearest integer k (|k| <= 150), which lands
    // in the low mantissa bits: `shifted - SHIFT` is k as a float, and the difference of
    // the two bit patterns is k as an integer (no float-to-int conversion, which would
    // keep the loop from vectorising).
    const SHIFT: f32 = 12_582_912.0;
    let shifted = x * std::f32::consts::LOG2_E + SHIFT;
    let kf = shifted - SHIFT;
    let k = shifted.to_bits().wrapping_sub(SHIFT.to_bits()) as i32;
    let r = (x - kf * 0.693_359_4) + kf * 2.121_944_4e-4;
    let z = r * r;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 5.0e-1)
        * z
        + r
        + 1.0;
    // 2^k as two factors, each a normal f32, so that k from -150 to 128 works.
    let (k1, k2) = (k >> 1, k - (k >> 1));
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    p * pow2(k1) * pow2(k2)
}

/// `x` limited to `[lo, hi]`, NaN passed through, as two compare-and-selects (which
/// vectorise, where `f32::clamp`'s NaN handling may not).
#[inline(always)]
fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    let x = if x < lo { lo } else { x };
    if x > hi {
        hi
    } else {
        x
    }
}

/// The logistic function as rnn.wgsl writes it: `1 / (1 + e^-x)` for `x >= 0` and
/// `e^x / (1 + e^x)` below, so that neither side overflows. Both sides are computed and
/// one is selected, which keeps the cell loops branch-free.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs());
    // One division for both sides: e / (1 + e) as e * (1 / (1 + e)) costs one more
    // rounding (within 2 ulp in all), where a second division would cost several times
    // the rest of the function.
    let positive = 1.0 / (1.0 + e);
    let negative = e * positive;
    if x >= 0.0 {
        positive
    } else {
        negative
    }
}

/// `tanh`, clamped to `[-10, 10]` as rnn.wgsl does (where some back-ends overflow; the
/// result is ±1 in f32 there anyway); NaN passes through.
///
/// Computed as Cephes' `tanhf`: `1 - 2 / (exp(2|x|) + 1)` with the sign of `x` from
/// |x| = 0.625 on, and below it an odd polynomial with Cephes' minimax coefficients, which
/// avoids the cancellation of the first form near zero. Within 1 ulp of the exact value
/// over [-10, 10] (tests/rnn.rs checks it against f64). Both forms are computed and one is
/// selected, so the loops that call it vectorise; the platform's `tanhf` would otherwise
/// dominate a cell step on the CPU.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    let x = clamp(x, -10.0, 10.0);
    let a = x.abs();
    let large = (1.0 - 2.0 / (exp(a + a) + 1.0)).copysign(x);
    let z = x * x;
    let p = (((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328e-1;
    let small = p * z * x + x;
    // NaN fails the comparison and takes the polynomial, which keeps it NaN.
    if a >= 0.625 {
        large
    } else {
        small
    }
}

/// Runs `f`, on x86-64 CPUs with AVX2 compiled for AVX2 so that the cell loops inlined into
/// it run 8 floats wide instead of 4. The arithmetic is the same IEEE operations either
/// way (no FMA contraction), so the results are bit-identical. (An AVX-512 build as a
/// third choice here was measured slower: with three call sites the compiler stops
/// inlining the cell loops into them. The whole-sequence LSTM passes have AVX-512 builds
/// of their own, whose bodies are `#[inline(always)]` and so always compiled in full.)
#[inline(always)]
fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2")]
        fn with_avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { with_avx2(f) };
        }
    }
    f()
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

/// The outputs of one LSTM forward row.
struct LstmForwardRow<'a> {
    h: &'a mut [f32],
    c: &'a mut [f32],
    ws: &'a mut [f32],
}

/// `lstm_cell_forward`: writes slot `slot_out` of both state sections and the gate
/// activations `i, f, g, o` of time `t` into `ws` (`[T, B, 4H]`).
pub fn lstm_cell_forward(s: &CellStep, x: &ForwardInputs, state: &mut [f32], ws: &mut [f32]) {
    let (h, width) = (s.hidden, 4 * s.hidden);
    let [h_in, c_in, h_out, c_out] =
        regions(state, [s.slot(0, s.slot_in), s.slot(1, s.slot_in), s.slot(0, s.slot_out), s.slot(1, s.slot_out)]);
    let (h_in, c_in) = (&*h_in, &*c_in);
    let ws = &mut ws[s.time_rows(0, width)];
    let mut rows: Vec<LstmForwardRow> = h_out
        .chunks_exact_mut(h)
        .zip(c_out.chunks_exact_mut(h))
        .zip(ws.chunks_exact_mut(width))
        .map(|((h, c), ws)| LstmForwardRow { h, c, ws })
        .collect();
    let zeros = vec![-0.0f32; width];
    let bias = biases(x, &zeros);
    let xw = &x.xw[s.time_rows(0, width)];
    per_row(&mut rows, s.row_work(4), |b, out| {
        let (units, gates) = (b * h..(b + 1) * h, b * width..(b + 1) * width);
        let prev = (&h_in[units.clone()], &c_in[units]);
        lstm_forward_row(s.active(x.lengths, b), &xw[gates.clone()], &x.hw[gates], bias, prev, out);
    });
}

/// One batch row of an LSTM step: `xw` and `hw` are the row's `[4H]` projections, `prev`
/// its `[H]` previous hidden and cell state. A row past its sequence's end (not `active`)
/// carries its state over and leaves zero gate activations.
#[inline(always)]
fn lstm_forward_row(
    active: bool,
    xw: &[f32],
    hw: &[f32],
    (b_ih, b_hh): (&[f32], &[f32]),
    (h_prev, c_prev): (&[f32], &[f32]),
    out: &mut LstmForwardRow,
) {
    let h = h_prev.len();
    if !active {
        out.h.copy_from_slice(h_prev);
        out.c.copy_from_slice(c_prev);
        out.ws.fill(0.0);
        return;
    }
    // Three passes over slices, each a plain loop the compiler vectorises: the
    // pre-activations into the workspace row, the gate nonlinearities in place, then the
    // state update. Per element these are the operations of rnn.wgsl, in its order.
    for ((((pre, &xw), &b_ih), &hw), &b_hh) in out.ws.iter_mut().zip(xw).zip(b_ih).zip(hw).zip(b_hh) {
        *pre = (xw + b_ih) + (hw + b_hh);
    }
    let (ig, rest) = out.ws.split_at_mut(h);
    let (fg, rest) = rest.split_at_mut(h);
    let (gg, og) = rest.split_at_mut(h);
    for gate in [&mut *ig, &mut *fg, &mut *og] {
        for v in gate.iter_mut() {
            *v = sigmoid(*v);
        }
    }
    for v in gg.iter_mut() {
        *v = tanh(*v);
    }
    let gates = ig.iter().zip(fg.iter()).zip(gg.iter()).zip(og.iter());
    for ((h_out, c_out), (&c_prev, (((&ig, &fg), &gg), &og))) in
        out.h.iter_mut().zip(out.c.iter_mut()).zip(c_prev.iter().zip(gates))
    {
        let c = fg * c_prev + ig * gg;
        *h_out = og * tanh(c);
        *c_out = c;
    }
}

/// What the forward pass of a whole LSTM layer and direction reads: `xw` `[T, B, 4H]`
/// (`x_t W_ih^T` of every step), `w_hh_t` (`W_hh^T`, `[H, 4H]` row-major), the two biases
/// `[4H]`, lengths `[B]`.
#[derive(Clone, Copy, Debug)]
pub struct SequenceInputs<'a> {
    pub xw: &'a [f32],
    pub w_hh_t: &'a [f32],
    pub bias: Option<(&'a [f32], &'a [f32])>,
    pub lengths: Option<&'a [i32]>,
}

/// Whether [`lstm_layer_forward`] pays for a batch of `batch` sequences: it splits the
/// batch across threads, so it needs at least two rows per thread to beat the per-step
/// split of [`lstm_cell_forward`] and the matmul.
pub fn splits_by_sequence(batch: usize) -> bool {
    let threads = parallel::threads();
    threads > 1 && batch >= 2 * threads
}

/// The forward pass of a whole LSTM layer and direction: for each step of `steps` (in the
/// order given), `h W_hh^T` and the cell, writing the state slots and the workspace as
/// [`lstm_cell_forward`] does step by step.
///
/// The sequences of a batch are independent through all the steps, so the batch is cut
/// into one run of rows per thread and each thread carries its rows through every step on
/// its own: one hand-off to the pool per layer instead of two per step (the GEMM's and the
/// cell's), and each thread's rows of the state stay in its core's cache. Each row is
/// computed by the same operations as in the step-by-step path (its recurrent GEMM row is
/// one dot product over `H` per element, whatever the rows around it), so the results are
/// the same bits.
pub fn lstm_layer_forward(steps: &[CellStep], x: &SequenceInputs, state: &mut [f32], ws: &mut [f32]) {
    let Some(first) = steps.first() else { return };
    let (batch, h, width) = (first.batch, first.hidden, 4 * first.hidden);
    assert_eq!(x.w_hh_t.len(), h * width, "lstm_layer_forward: W_hh^T of {} elements for hidden {h}", x.w_hh_t.len());
    let zeros = vec![-0.0f32; width];
    let bias = x.bias.unwrap_or((&zeros, &zeros));
    let (state, ws) = (RowShared::new(state), RowShared::new(ws));
    for_each_batch_run(batch, |rows| lstm_run_widest(steps, x, bias, rows, &state, &ws));
}

/// Calls `f(rows)` on one run of consecutive batch rows per thread, in parallel; the runs
/// cover `0..batch` once.
fn for_each_batch_run(batch: usize, f: impl Fn(Range<usize>) + Sync) {
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
    bias: (&[f32], &[f32]),
    rows: Range<usize>,
    state: &RowShared,
    ws: &RowShared,
) {
    let (n, h) = (rows.len(), steps[0].hidden);
    let width = 4 * h;
    let own = |block: Range<usize>, w: usize| run_block(block, &rows, w);
    let own_row = |block: Range<usize>, w: usize, i: usize| run_row(block, &rows, w, i);
    let mut hw = alloc::zeroed::<f32>(n * width, "rnn");
    for s in steps {
        // SAFETY: this run reads and writes only its own rows of each slot and of the
        // workspace, which no other run touches; within a step the slots read (`slot_in`)
        // and written (`slot_out`) are different slots.
        let (h_prev, c_prev) =
            unsafe { (state.get(own(s.slot(0, s.slot_in), h)), state.get(own(s.slot(1, s.slot_in), h))) };
        let lhs = Strided { data: h_prev, offset: 0, row_stride: h as isize, col_stride: 1 };
        let rhs = Strided { data: x.w_hh_t, offset: 0, row_stride: width as isize, col_stride: 1 };
        sgemm((n, h, width), lhs, rhs, 0.0, &mut hw, width, Threads::Caller);
        let xw = &x.xw[own(s.time_rows(0, width), width)];
        for i in 0..n {
            let (units, gates) = (i * h..(i + 1) * h, i * width..(i + 1) * width);
            // SAFETY: as above; row `i` of this step's outputs is reached only here.
            let mut out = unsafe {
                LstmForwardRow {
                    h: state.get_mut(own_row(s.slot(0, s.slot_out), h, i)),
                    c: state.get_mut(own_row(s.slot(1, s.slot_out), h, i)),
                    ws: ws.get_mut(own_row(s.time_rows(0, width), width, i)),
                }
            };
            let prev = (&h_prev[units.clone()], &c_prev[units]);
            let active = s.active(x.lengths, rows.start + i);
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

/// The outputs of one backward row: its gate gradients (one or two sections) and its
/// carried gradients (one or two state sections).
struct BackwardRow<'a> {
    dgates: [&'a mut [f32]; 2],
    carry: [&'a mut [f32]; 2],
}

/// Per batch row, the `[width]` gate-gradient rows of this step's time in each of
/// `sections` sections of `dgates` and the `[H]` rows of each of `carry_sections`
/// sections of `carry` (`[S, B, H]`). Absent sections are empty slices.
fn backward_rows<'a>(
    s: &CellStep,
    dgates: &'a mut [f32],
    sections: usize,
    width: usize,
    carry: &'a mut [f32],
    carry_sections: usize,
) -> Vec<BackwardRow<'a>> {
    let bh = s.batch * s.hidden;
    let (dg0, dg1) = if sections == 2 {
        let [a, b] = regions(dgates, [s.time_rows(0, width), s.time_rows(1, width)]);
        (a, b)
    } else {
        (&mut dgates[s.time_rows(0, width)], &mut [][..])
    };
    let (c0, c1) = carry[..carry_sections * bh].split_at_mut(bh);
    let section_rows = |d: &'a mut [f32], len: usize| -> Vec<&'a mut [f32]> {
        if d.is_empty() {
            (0..s.batch).map(|_| &mut [][..]).collect()
        } else {
            d.chunks_exact_mut(len).collect()
        }
    };
    let (dg0, dg1, c0, c1) = (section_rows(dg0, width), section_rows(dg1, width), section_rows(c0, s.hidden), {
        section_rows(c1, s.hidden)
    });
    dg0.into_iter()
        .zip(dg1)
        .zip(c0.into_iter().zip(c1))
        .map(|((d0, d1), (c0, c1))| BackwardRow { dgates: [d0, d1], carry: [c0, c1] })
        .collect()
}

/// `lstm_cell_backward`: writes the gate pre-activation gradients of time `t` into
/// `dgates` (`[1, T, B, 4H]`) and updates `carry` (`[2, B, H]`: the part of `dL/dh_{t-1}`
/// that bypasses `W_hh`, and `dL/dc_{t-1}`).
pub fn lstm_cell_backward(s: &CellStep, x: &BackwardInputs, dgates: &mut [f32], carry: &mut [f32]) {
    let (h, width) = (s.hidden, 4 * s.hidden);
    let mut rows = backward_rows(s, dgates, 1, width, carry, 2);
    let (dh_out, dc_out) = (&x.d_state[s.slot(0, s.slot_out)], &x.d_state[s.slot(1, s.slot_out)]);
    let (c_out, c_in) = (&x.state[s.slot(1, s.slot_out)], &x.state[s.slot(1, s.slot_in)]);
    let ws = &x.ws[s.time_rows(0, width)];
    per_row(&mut rows, s.row_work(2), |b, out| {
        let unit = b * h..(b + 1) * h;
        let d_out = (&dh_out[unit.clone()], &dc_out[unit.clone()]);
        let cells = (&c_out[unit.clone()], &c_in[unit.clone()]);
        let [dgates, _] = &mut out.dgates;
        let [carry_h, carry_c] = &mut out.carry;
        let active = s.active(x.lengths, b);
        lstm_backward_row(
            active,
            d_out,
            &x.dhw[unit],
            &ws[b * width..(b + 1) * width],
            cells,
            dgates,
            carry_h,
            carry_c,
        );
    });
}

/// One batch row of an LSTM backward step: `d_out` is the state gradient `(dh, dc)` of
/// the step's output slot, `dhw` the next step's gate gradients times `W_hh`, `ws` the
/// row's `[4H]` gate activations, `cells` its `(c_t, c_{t-1})`. Writes the row's gate
/// gradients and updates its carried `(dh, dc)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn lstm_backward_row(
    active: bool,
    (dh_out, dc_out): (&[f32], &[f32]),
    dhw: &[f32],
    ws: &[f32],
    (c_out, c_in): (&[f32], &[f32]),
    dgates: &mut [f32],
    carry_h: &mut [f32],
    carry_c: &mut [f32],
) {
    let h = dh_out.len();
    if !active {
        for j in 0..h {
            carry_h[j] = incoming_dh(dh_out, dhw, carry_h, j);
            carry_c[j] += dc_out[j];
        }
        dgates.fill(0.0);
        return;
    }
    let (ig, fg, gg, og) = (gate(ws, 0, h), gate(ws, 1, h), gate(ws, 2, h), gate(ws, 3, h));
    let (d_i, rest) = dgates.split_at_mut(h);
    let (d_f, rest) = rest.split_at_mut(h);
    let (d_g, d_o) = rest.split_at_mut(h);
    for j in 0..h {
        let dh = incoming_dh(dh_out, dhw, carry_h, j);
        let tc = tanh(c_out[j]);
        let dc = dc_out[j] + carry_c[j] + dh * og[j] * (1.0 - tc * tc);
        d_i[j] = dc * gg[j] * ig[j] * (1.0 - ig[j]);
        d_f[j] = dc * c_in[j] * fg[j] * (1.0 - fg[j]);
        d_g[j] = dc * ig[j] * (1.0 - gg[j] * gg[j]);
        d_o[j] = dh * tc * og[j] * (1.0 - og[j]);
        carry_h[j] = 0.0;
        carry_c[j] = dc * fg[j];
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
    let (dgates, carry) = (RowShared::new(dgates), RowShared::new(carry));
    for_each_batch_run(batch, |rows| lstm_backward_run_widest(steps, x, rows, &dgates, &carry));
}

widest_vector_build!(
    /// [`lstm_backward_run`] for the CPU's vector unit.
    fn lstm_backward_run_widest(
        steps: &[CellStep],
        x: &SequenceBackwardInputs,
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
    for k in (0..steps.len()).rev() {
        let s = &steps[k];
        if let Some(next) = steps.get(k + 1) {
            // SAFETY: the next step's gate gradients (another time) were written by this
            // run, and nothing writes them now.
            let dg_next = unsafe { dgates.get(own(next.time_rows(0, width), width)) };
            let lhs = Strided { data: dg_next, offset: 0, row_stride: width as isize, col_stride: 1 };
            let rhs = Strided { data: x.w_hh, offset: 0, row_stride: h as isize, col_stride: 1 };
            sgemm((n, width, h), lhs, rhs, 0.0, &mut dhw, h, Threads::Caller);
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
            lstm_backward_row(
                s.active(x.lengths, b),
                d_out,
                &dhw[local],
                &ws[b * width..(b + 1) * width],
                cells,
                dg,
                ch,
                cc,
            );
        }
    }
}

/// The outputs of one GRU or Elman forward row.
struct ForwardRow<'a> {
    h: &'a mut [f32],
    ws: &'a mut [f32],
}

/// `gru_cell_forward`: writes slot `slot_out` and `r, z, n, W_hn h + b_hn` of time `t`
/// into `ws` (`[T, B, 4H]`).
pub fn gru_cell_forward(s: &CellStep, x: &ForwardInputs, state: &mut [f32], ws: &mut [f32]) {
    let (h, width, ws_width) = (s.hidden, 3 * s.hidden, 4 * s.hidden);
    let [h_in, h_out] = regions(state, [s.slot(0, s.slot_in), s.slot(0, s.slot_out)]);
    let h_in = &*h_in;
    let ws = &mut ws[s.time_rows(0, ws_width)];
    let mut rows: Vec<ForwardRow> =
        h_out.chunks_exact_mut(h).zip(ws.chunks_exact_mut(ws_width)).map(|(h, ws)| ForwardRow { h, ws }).collect();
    let zeros = vec![-0.0f32; width];
    let (b_ih, b_hh) = biases(x, &zeros);
    let xw = &x.xw[s.time_rows(0, width)];
    per_row(&mut rows, s.row_work(3), |b, out| {
        let h_prev = &h_in[b * h..(b + 1) * h];
        if !s.active(x.lengths, b) {
            out.h.copy_from_slice(h_prev);
            out.ws.fill(0.0);
            return;
        }
        let (xw, hw) = (&xw[b * width..(b + 1) * width], &x.hw[b * width..(b + 1) * width]);
        let x_gate = |g: usize, j: usize| xw[g * h + j] + b_ih[g * h + j];
        let h_gate = |g: usize, j: usize| hw[g * h + j] + b_hh[g * h + j];
        let (ws_r, rest) = out.ws.split_at_mut(h);
        let (ws_z, rest) = rest.split_at_mut(h);
        let (ws_n, ws_hn) = rest.split_at_mut(h);
        for j in 0..h {
            let r = sigmoid(x_gate(0, j) + h_gate(0, j));
            let z = sigmoid(x_gate(1, j) + h_gate(1, j));
            let hn = h_gate(2, j);
            let n = tanh(x_gate(2, j) + r * hn);
            out.h[j] = (1.0 - z) * n + z * h_prev[j];
            (ws_r[j], ws_z[j], ws_n[j], ws_hn[j]) = (r, z, n, hn);
        }
    });
}

/// `gru_cell_backward`: writes the input-side (section 0) and recurrent-side (section 1)
/// gate gradients of time `t` into `dgates` (`[2, T, B, 3H]`) and updates `carry`
/// (`[1, B, H]`).
pub fn gru_cell_backward(s: &CellStep, x: &BackwardInputs, dgates: &mut [f32], carry: &mut [f32]) {
    let (h, width, ws_width) = (s.hidden, 3 * s.hidden, 4 * s.hidden);
    let mut rows = backward_rows(s, dgates, 2, width, carry, 1);
    let dh_out = &x.d_state[s.slot(0, s.slot_out)];
    let h_in = &x.state[s.slot(0, s.slot_in)];
    let ws = &x.ws[s.time_rows(0, ws_width)];
    per_row(&mut rows, s.row_work(2), |b, out| {
        let unit = b * h..(b + 1) * h;
        let (dh_out, dhw) = (&dh_out[unit.clone()], &x.dhw[unit.clone()]);
        let [dx, dhh] = &mut out.dgates;
        let [carry, _] = &mut out.carry;
        if !s.active(x.lengths, b) {
            for j in 0..h {
                carry[j] = incoming_dh(dh_out, dhw, carry, j);
            }
            dx.fill(0.0);
            dhh.fill(0.0);
            return;
        }
        let ws = &ws[b * ws_width..(b + 1) * ws_width];
        let h_prev = &h_in[unit];
        let (r, z, n, hn) = (gate(ws, 0, h), gate(ws, 1, h), gate(ws, 2, h), gate(ws, 3, h));
        let (dx_r, rest) = dx.split_at_mut(h);
        let (dx_z, dx_n) = rest.split_at_mut(h);
        let (dh_r, rest) = dhh.split_at_mut(h);
        let (dh_z, dh_n) = rest.split_at_mut(h);
        for j in 0..h {
            let dh = incoming_dh(dh_out, dhw, carry, j);
            let dn = dh * (1.0 - z[j]);
            let dz = dh * (h_prev[j] - n[j]);
            let dan = dn * (1.0 - n[j] * n[j]);
            let dar = dan * hn[j] * r[j] * (1.0 - r[j]);
            let daz = dz * z[j] * (1.0 - z[j]);
            (dx_r[j], dx_z[j], dx_n[j]) = (dar, daz, dan);
            (dh_r[j], dh_z[j], dh_n[j]) = (dar, daz, dan * r[j]);
            carry[j] = dh * z[j];
        }
    });
}

/// `rnn_cell_forward`: writes slot `slot_out`, `tanh` or (with `relu`) `relu` of the
/// pre-activation. The Elman cell keeps no workspace: its backward reads the output.
pub fn rnn_cell_forward(s: &CellStep, x: &ForwardInputs, relu: bool, state: &mut [f32]) {
    let h = s.hidden;
    let [h_in, h_out] = regions(state, [s.slot(0, s.slot_in), s.slot(0, s.slot_out)]);
    let h_in = &*h_in;
    let mut rows: Vec<ForwardRow> = h_out.chunks_exact_mut(h).map(|h| ForwardRow { h, ws: &mut [] }).collect();
    let zeros = vec![-0.0f32; h];
    let (b_ih, b_hh) = biases(x, &zeros);
    let xw = &x.xw[s.time_rows(0, h)];
    per_row(&mut rows, s.row_work(1), |b, out| {
        let h_prev = &h_in[b * h..(b + 1) * h];
        if !s.active(x.lengths, b) {
            out.h.copy_from_slice(h_prev);
            return;
        }
        let (xw, hw) = (&xw[b * h..(b + 1) * h], &x.hw[b * h..(b + 1) * h]);
        for j in 0..h {
            let pre = (xw[j] + b_ih[j]) + (hw[j] + b_hh[j]);
            out.h[j] = if !relu {
                tanh(pre)
            } else if pre > 0.0 || pre.is_nan() {
                pre
            } else {
                0.0
            };
        }
    });
}

/// `rnn_cell_backward`: writes the pre-activation gradient of time `t` into `dgates`
/// (`[1, T, B, H]`) and updates `carry` (`[1, B, H]`).
pub fn rnn_cell_backward(s: &CellStep, x: &BackwardInputs, relu: bool, dgates: &mut [f32], carry: &mut [f32]) {
    let h = s.hidden;
    let mut rows = backward_rows(s, dgates, 1, h, carry, 1);
    let dh_out = &x.d_state[s.slot(0, s.slot_out)];
    let h_out = &x.state[s.slot(0, s.slot_out)];
    per_row(&mut rows, s.row_work(1), |b, row| {
        let unit = b * h..(b + 1) * h;
        let (dh_out, dhw) = (&dh_out[unit.clone()], &x.dhw[unit.clone()]);
        let [dgates, _] = &mut row.dgates;
        let [carry, _] = &mut row.carry;
        if !s.active(x.lengths, b) {
            for j in 0..h {
                carry[j] = incoming_dh(dh_out, dhw, carry, j);
            }
            dgates.fill(0.0);
            return;
        }
        let out = &h_out[unit];
        for j in 0..h {
            let dh = incoming_dh(dh_out, dhw, carry, j);
            dgates[j] = if !relu {
                dh * (1.0 - out[j] * out[j])
            } else if out[j] > 0.0 {
                dh
            } else {
                0.0
            };
            carry[j] = 0.0;
        }
    });
}
