//! Recurrent layers (LSTM, GRU, Elman RNN) as one fused op per layer and direction.
//!
//! Forward, the input projection of every time step is one GEMM (`[T * B, I] x [I, G * H]`)
//! before the time loop; each step is then one recurrent GEMM (`[B, H] x [H, G * H]`) and
//! one fused cell kernel that adds the biases, applies the gate nonlinearities, updates
//! the cell and hidden state, and keeps what backward needs (gate activations; the states
//! themselves). Backward through time runs the steps in reverse with one GEMM and one
//! fused gate-backward kernel per step, writing the gate gradients of every step into one
//! `[T, B, G * H]` tensor; the weight gradients are then one GEMM each over all `T * B`
//! rows, and the bias gradients one sum each. The whole layer and direction is a single
//! autograd node (`RnnGrad`), not a graph of `T` small cells.
//!
//! The node's output is the state tensor `[S, T + 1, B, H]` (S = 2 for the LSTM, whose
//! cell states follow the hidden ones): the step at time `t` reads slot `t` and writes slot
//! `t + 1` forwards, reads `t + 1` and writes `t` in reverse, so the initial state sits at
//! one end and the output sequence, `h_n` and `c_n` are views of it.
//!
//! The cell steps and the whole-layer passes run through the backend (`Backend::rnn_cell`,
//! `Backend::lstm_layer_forward` and `_backward`): the GEMMs and the step loop here are the
//! composed path, which a backend with a whole-sequence pass replaces (the CPU's LSTM,
//! which keeps the recurrent GEMM inside and splits the batch across threads).
//!
//! Variable-length batches follow PyTorch's packed sequences: a step past a sequence's
//! length carries its state through unchanged (so `h_n` is the state at the sequence's own
//! last step, and the reverse direction starts from `h0` at that step) and passes the
//! gradient straight back; outputs at padded steps are zero.

use std::sync::Arc;

use crate::autograd::FusedGrad;
use crate::autograd::GradOp;
use crate::backend::{LstmLayerBackward, LstmLayerForward, RnnCellOperands, View};
use crate::device::Device;
use crate::dtype::DType;
use crate::op::rnn::{CellStep, RNN_HAS_BIAS, RNN_HAS_LENGTHS, RNN_RELU};
use crate::op::RnnOp;
use crate::storage::Storage;
use crate::tensor::Layout;
use crate::Tensor;

/// Which recurrent cell a layer runs, with PyTorch's equations (gate order as in the rows
/// of `weight_ih` and `weight_hh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RnnMode {
    /// `nn.LSTM`: gates i, f, g, o; `c' = f * c + i * g`, `h' = o * tanh(c')`.
    Lstm,
    /// `nn.GRU`: gates r, z, n; `n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`,
    /// `h' = (1 - z) * n + z * h`.
    Gru,
    /// `nn.RNN` with `nonlinearity='tanh'`: `h' = tanh(W_ih x + b_ih + W_hh h + b_hh)`.
    RnnTanh,
    /// `nn.RNN` with `nonlinearity='relu'`.
    RnnRelu,
}

impl RnnMode {
    /// Gates per hidden unit: the row blocks of the weights (4, 3, 1).
    pub fn gates(self) -> usize {
        match self {
            RnnMode::Lstm => 4,
            RnnMode::Gru => 3,
            RnnMode::RnnTanh | RnnMode::RnnRelu => 1,
        }
    }

    /// True for the LSTM, the one cell with a cell state `c` beside `h`.
    pub fn has_cell_state(self) -> bool {
        self == RnnMode::Lstm
    }

    /// PyTorch's class name for the cell.
    pub fn name(self) -> &'static str {
        match self {
            RnnMode::Lstm => "LSTM",
            RnnMode::Gru => "GRU",
            RnnMode::RnnTanh | RnnMode::RnnRelu => "RNN",
        }
    }

    /// State sections of the state tensor: h, and c for the LSTM.
    fn sections(self) -> usize {
        if self.has_cell_state() {
            2
        } else {
            1
        }
    }

    /// Sections of the gate-gradient tensor: the GRU's n gate has different gradients on
    /// the input side and the recurrent side.
    fn dgate_sections(self) -> usize {
        if self == RnnMode::Gru {
            2
        } else {
            1
        }
    }

    /// Values per hidden unit and step that backward reads from the forward workspace:
    /// the LSTM's four gate activations, the GRU's r, z, n and `W_hn h + b_hn`; the Elman
    /// cell needs only its output.
    fn workspace_width(self) -> usize {
        match self {
            RnnMode::Lstm | RnnMode::Gru => 4,
            RnnMode::RnnTanh | RnnMode::RnnRelu => 0,
        }
    }

    fn ops(self) -> (RnnOp, RnnOp) {
        match self {
            RnnMode::Lstm => (RnnOp::LstmCellForward, RnnOp::LstmCellBackward),
            RnnMode::Gru => (RnnOp::GruCellForward, RnnOp::GruCellBackward),
            RnnMode::RnnTanh | RnnMode::RnnRelu => (RnnOp::RnnCellForward, RnnOp::RnnCellBackward),
        }
    }

    fn relu_flag(self) -> u32 {
        if self == RnnMode::RnnRelu {
            RNN_RELU
        } else {
            0
        }
    }
}

/// The parameters of one layer and direction, with PyTorch's shapes: `weight_ih`
/// `[G * H, input_size]`, `weight_hh` `[G * H, H]`, and the biases `[G * H]` (both or
/// neither), G being [`RnnMode::gates`].
#[derive(Clone, Copy, Debug)]
pub struct RnnWeights<'a> {
    /// Input-to-hidden weights, the gates' row blocks stacked.
    pub weight_ih: &'a Tensor,
    /// Hidden-to-hidden weights, the gates' row blocks stacked.
    pub weight_hh: &'a Tensor,
    /// Input-side bias.
    pub bias_ih: Option<&'a Tensor>,
    /// Recurrent-side bias (for the GRU's n gate it is scaled by the reset gate).
    pub bias_hh: Option<&'a Tensor>,
}

/// What [`Tensor::rnn_layer`] returns.
#[derive(Clone, Debug)]
pub struct RnnLayerOutput {
    /// `[T, B, H]`: the hidden state after every step, in time order (zero at padded steps).
    pub output: Tensor,
    /// `[B, H]`: the final hidden state (for the reverse direction, the state after time 0).
    pub h_n: Tensor,
    /// `[B, H]`: the final cell state of an LSTM; `None` for the other cells.
    pub c_n: Option<Tensor>,
}

/// Where the steps of one direction read and write the state tensor.
#[derive(Clone, Copy, Debug)]
struct Slots {
    steps: usize,
    reverse: bool,
}

impl Slots {
    /// The time index of the `k`-th step processed.
    fn time(&self, k: usize) -> usize {
        if self.reverse {
            self.steps - 1 - k
        } else {
            k
        }
    }

    /// The slot holding the initial state.
    fn initial(&self) -> usize {
        if self.reverse {
            self.steps
        } else {
            0
        }
    }

    /// The slot holding the final state, at the other end.
    fn last(&self) -> usize {
        self.steps - self.initial()
    }

    /// The first of the `T` slots that hold the previous state of each time in order.
    fn first_input(&self) -> usize {
        self.reverse as usize
    }

    /// The first of the `T` slots that hold the output of each time in order.
    fn first_output(&self) -> usize {
        1 - self.reverse as usize
    }

    fn step(&self, batch: usize, hidden: usize, k: usize) -> CellStep {
        let t = self.time(k);
        CellStep {
            batch,
            hidden,
            steps: self.steps,
            t,
            slot_in: t + self.first_input(),
            slot_out: t + self.first_output(),
        }
    }

    /// Every step of the layer in processing order, for a backend's whole-sequence passes.
    fn all_steps(&self, batch: usize, hidden: usize) -> Vec<CellStep> {
        (0..self.steps).map(|k| self.step(batch, hidden, k)).collect()
    }
}

/// The `[B, H]` view of slot `slot` of section `section` of a contiguous `[S, T + 1, B, H]`
/// state tensor, outside the graph.
fn slot_view(state: &Tensor, section: usize, slot: usize) -> Tensor {
    let [_, slots, batch, hidden] = [state.dim(0), state.dim(1), state.dim(2), state.dim(3)];
    let offset = state.layout.offset + (section * slots + slot) * batch * hidden;
    state.with_layout(Layout { shape: vec![batch, hidden], strides: vec![hidden, 1], offset })
}

/// The `[rows, cols]` view starting `start` elements into a contiguous tensor.
fn matrix_view(t: &Tensor, start: usize, rows: usize, cols: usize) -> Tensor {
    t.with_layout(Layout { shape: vec![rows, cols], strides: vec![cols, 1], offset: t.layout.offset + start })
}

/// A contiguous tensor as a backend operand.
fn view(t: &Tensor) -> View<'_, Storage> {
    (&t.storage, &t.layout)
}

/// What every step of one layer and direction reads besides the projections, prepared
/// once per layer on the device it runs on.
struct StepConstants {
    /// The contiguous biases.
    bias: Option<(Tensor, Tensor)>,
    /// The sequence lengths of a padded batch, as i32 on the layer's device.
    lengths: Option<Tensor>,
    flags: u32,
}

impl StepConstants {
    fn new(mode: RnnMode, bias: Option<(&Tensor, &Tensor)>, lengths: Option<&[i32]>, device: &Device) -> Self {
        let mut flags = mode.relu_flag();
        if bias.is_some() {
            flags |= RNN_HAS_BIAS;
        }
        if lengths.is_some() {
            flags |= RNN_HAS_LENGTHS;
        }
        StepConstants {
            bias: bias.map(|(a, b)| (a.detach().contiguous(), b.detach().contiguous())),
            lengths: lengths.map(|l| Tensor::from_slice(l, &[l.len()], device)),
            flags,
        }
    }

    fn lengths(&self) -> Option<View<'_, Storage>> {
        self.lengths.as_ref().map(view)
    }
}

/// One forward cell step: reads `xw` `[T * B, G * H]` and `hw` `[B, G * H]` (both
/// contiguous), updates the state tensor and the workspace (none for the Elman cell) in
/// place.
fn cell_forward(
    mode: RnnMode,
    step: &CellStep,
    xw: &Tensor,
    hw: &Tensor,
    k: &StepConstants,
    state: &Tensor,
    ws: Option<&Tensor>,
) {
    let (b_ih, b_hh) = k.bias.as_ref().map(|(a, b)| (view(a), view(b))).unzip();
    let operands = RnnCellOperands {
        inputs: [Some(view(xw)), Some(view(hw)), b_ih, b_hh],
        lengths: k.lengths(),
        outputs: [Some(view(state)), ws.map(view)],
    };
    Storage::rnn_cell(mode.ops().0, step, k.flags, operands);
}

/// What one backward cell step reads: the gradient of the state tensor, `dhw` `[B, H]`,
/// and the forward's workspace (none for the Elman cell) and state (all contiguous).
struct BackwardOperands<'a> {
    d_state: &'a Tensor,
    dhw: &'a Tensor,
    ws: Option<&'a Tensor>,
    state: &'a Tensor,
}

/// One backward cell step: writes the gate gradients of this step's time into `dgates`
/// and updates `carry` in place.
fn cell_backward(
    mode: RnnMode,
    step: &CellStep,
    x: &BackwardOperands,
    k: &StepConstants,
    dgates: &Tensor,
    carry: &Tensor,
) {
    let operands = RnnCellOperands {
        inputs: [Some(view(x.d_state)), Some(view(x.dhw)), x.ws.map(view), Some(view(x.state))],
        lengths: k.lengths(),
        outputs: [Some(view(dgates)), Some(view(carry))],
    };
    Storage::rnn_cell(mode.ops().1, step, k.flags & (RNN_HAS_LENGTHS | RNN_RELU), operands);
}

/// The gradient rule of [`Tensor::rnn_layer`]: backward through time of one layer and
/// direction. Inputs are `[x, weight_ih, weight_hh, h0, c0 (LSTM), bias_ih, bias_hh (with
/// biases), workspace (LSTM, GRU)]`; the workspace is a saved constant, and the node's
/// output is the state tensor.
#[derive(Clone, Debug)]
pub(crate) struct RnnGrad {
    mode: RnnMode,
    reverse: bool,
    has_bias: bool,
    lengths: Option<Vec<i32>>,
}

impl FusedGrad for RnnGrad {
    fn backward(&self, g: &Tensor, inputs: &[Tensor], out: &Tensor) -> Vec<Option<Tensor>> {
        let mode = self.mode;
        let mut next = inputs.iter();
        let mut take = || next.next().expect("rnn_layer records every input its rule reads");
        let (x, w_ih, w_hh, h0) = (take(), take(), take(), take());
        let c0 = mode.has_cell_state().then(&mut take);
        let bias = self.has_bias.then(|| (take(), take()));
        let ws = (mode.workspace_width() > 0).then(&mut take);
        let (steps, batch, input) = (x.dim(0), x.dim(1), x.dim(2));
        let (gh, hidden) = (w_hh.dim(0), w_hh.dim(1));
        let device = x.device();
        let slots = Slots { steps, reverse: self.reverse };

        let state = out.detach();
        // A gradient that shares the state's storage would be read under two locks on the
        // CPU; it cannot arise from the rules in this crate, but a copy makes it harmless.
        let d_state =
            if Arc::ptr_eq(&g.storage, &state.storage) { g.detach().affine(1.0, 0.0) } else { g.contiguous() };
        let k = StepConstants::new(mode, None, self.lengths.as_deref(), device);
        let sections = mode.dgate_sections();
        let dgates = Tensor::empty_like_shape(&[sections, steps, batch, gh], DType::F32, device, "rnn backward");
        let carry = Tensor::zeros(&[mode.sections(), batch, hidden], device);
        let w_hh = w_hh.detach();
        // The recurrent-side gate gradients of one time, `[B, G * H]`.
        let dgates_h = |t: usize| matrix_view(&dgates, ((sections - 1) * steps + t) * batch * gh, batch, gh);
        let ws = ws.map(|w| w.detach());
        let zero_dhw = Tensor::zeros(&[batch, hidden], device);
        // A backend with a whole-sequence LSTM pass (the CPU, for batches it splits by
        // sequence) runs it; otherwise one matmul and one cell step per step.
        let whole_sequence = mode == RnnMode::Lstm && {
            let (steps, w_hh) = (slots.all_steps(batch, hidden), w_hh.contiguous());
            Storage::lstm_layer_backward(LstmLayerBackward {
                steps: &steps,
                d_state: view(&d_state),
                ws: view(ws.as_ref().expect("the LSTM keeps a workspace")),
                state: view(&state),
                w_hh: view(&w_hh),
                lengths: k.lengths(),
                dgates: view(&dgates),
                carry: view(&carry),
            })
        };
        if !whole_sequence {
            for k_step in (0..steps).rev() {
                let step = slots.step(batch, hidden, k_step);
                // dL/dh_t through the next step's recurrent GEMM (none after the last step).
                let dhw =
                    if k_step + 1 < steps { dgates_h(slots.time(k_step + 1)).matmul(&w_hh) } else { zero_dhw.clone() };
                let operands = BackwardOperands { d_state: &d_state, dhw: &dhw, ws: ws.as_ref(), state: &state };
                cell_backward(mode, &step, &operands, &k, &dgates, &carry);
            }
        }

        let mut grads: Vec<Option<Tensor>> = vec![None; inputs.len()];
        let rows = steps * batch;
        let dgates_x = matrix_view(&dgates, 0, rows, gh);
        let dgates_hh = matrix_view(&dgates, (sections - 1) * rows * gh, rows, gh);
        if x.is_tracked() {
            let dx = dgates_x.matmul(&w_ih.detach());
            grads[0] = Some(dx.reshape(&[steps as isize, batch as isize, input as isize]));
        }
        if w_ih.is_tracked() {
            let x2 = x.detach().contiguous().reshape(&[rows as isize, input as isize]);
            grads[1] = Some(dgates_x.t().matmul(&x2));
        }
        if inputs[2].is_tracked() {
            // The previous state of every time, in time order: one contiguous block of slots.
            let h_prev = matrix_view(&state, slots.first_input() * batch * hidden, rows, hidden);
            grads[2] = Some(dgates_hh.t().matmul(&h_prev));
        }
        let initial = slots.initial();
        // What reached the initial state without passing through W_hh: section 0 for h, 1 for c.
        let carried = |section: usize| matrix_view(&carry, section * batch * hidden, batch, hidden);
        if h0.is_tracked() {
            let through_w = dgates_h(slots.time(0)).matmul(&w_hh);
            let dh0 = through_w.add(&carried(0)).add(&slot_view(&d_state, 0, initial));
            grads[3] = Some(dh0);
        }
        let mut index = 4;
        if let Some(c0) = c0 {
            if c0.is_tracked() {
                grads[index] = Some(carried(1).add(&slot_view(&d_state, 1, initial)));
            }
            index += 1;
        }
        if let Some((b_ih, b_hh)) = bias {
            if b_ih.is_tracked() {
                grads[index] = Some(dgates_x.sum(&[0], false));
            }
            if b_hh.is_tracked() {
                // With one gate-gradient section (LSTM, Elman) both biases get the same sum.
                let shared = if sections == 1 { grads[index].clone() } else { None };
                grads[index + 1] = Some(shared.unwrap_or_else(|| dgates_hh.sum(&[0], false)));
            }
        }
        grads
    }
}

impl Tensor {
    /// One recurrent layer in one direction over the time-major sequence `self` of shape
    /// `[T, B, input_size]`: the computation of one layer of `nn.LSTM`, `nn.GRU` or
    /// `nn.RNN` (which the modules in `nn` stack and run both ways).
    ///
    /// `h0` and `c0` (`[B, H]`; `c0` for the LSTM only) default to zeros. With `reverse`
    /// the sequence is processed from its last step to its first. With `lengths` (one per
    /// sequence, each in `1..=T`) the batch is padded: steps at or past a sequence's length
    /// leave its state unchanged and output zeros, so `h_n` and `c_n` are the states at each
    /// sequence's own last step and the reverse direction starts there, as with PyTorch's
    /// packed sequences.
    ///
    /// Differentiable with respect to the input, the initial states and the weights, as one
    /// autograd node. Forward runs one GEMM for the input projection of all steps, then per
    /// step one recurrent GEMM and one fused cell kernel (biases, gates, state update);
    /// backward through time mirrors it with one GEMM and one fused gate-backward kernel per
    /// step, and computes each weight gradient as one GEMM over all `T * B` rows.
    ///
    /// ```
    /// use wgrad::{Device, RnnMode, RnnWeights, Tensor};
    /// let dev = Device::cpu();
    /// let (w_ih, w_hh) = (Tensor::randn(&[12, 5], 0, &dev), Tensor::randn(&[12, 3], 1, &dev));
    /// let weights = RnnWeights { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: None, bias_hh: None };
    /// let x = Tensor::randn(&[7, 2, 5], 2, &dev);
    /// let out = x.rnn_layer(RnnMode::Lstm, &weights, None, None, false, Some(&[7, 4]));
    /// assert_eq!(out.output.shape(), &[7, 2, 3]);
    /// assert_eq!(out.h_n.shape(), &[2, 3]);
    /// // The second sequence ends after 4 steps: its h_n is its output at time 3.
    /// let h3 = out.output.narrow(0, 3, 1).narrow(1, 1, 1).to_vec::<f32>();
    /// assert_eq!(out.h_n.narrow(0, 1, 1).to_vec::<f32>(), h3);
    /// ```
    pub fn rnn_layer(
        &self,
        mode: RnnMode,
        weights: &RnnWeights,
        h0: Option<&Tensor>,
        c0: Option<&Tensor>,
        reverse: bool,
        lengths: Option<&[usize]>,
    ) -> RnnLayerOutput {
        let op = "rnn_layer";
        let (steps, batch, input, hidden) = check_layer(op, mode, self, weights, h0, c0, lengths);
        let device = self.device().clone();
        let gh = mode.gates() * hidden;
        let slots = Slots { steps, reverse };

        let x = self.detach().contiguous();
        let project = || x.reshape(&[(steps * batch) as isize, input as isize]).matmul(&weights.weight_ih.detach().t());
        let w_hh_t = weights.weight_hh.detach().t().contiguous();
        let lengths_i32: Option<Vec<i32>> = lengths.map(|l| l.iter().map(|&n| n as i32).collect());
        let bias = weights.bias_ih.zip(weights.bias_hh);
        let k = StepConstants::new(mode, bias, lengths_i32.as_deref(), &device);

        let state = Tensor::empty_like_shape(&[mode.sections(), steps + 1, batch, hidden], DType::F32, &device, "rnn");
        let zeros = || Tensor::zeros(&[batch, hidden], &device);
        let h0 = h0.cloned().unwrap_or_else(zeros);
        slot_view(&state, 0, slots.initial()).assign(&h0.detach());
        let c0 = mode.has_cell_state().then(|| c0.cloned().unwrap_or_else(zeros));
        if let Some(c0) = &c0 {
            slot_view(&state, 1, slots.initial()).assign(&c0.detach());
        }
        let new_ws = || {
            let width = mode.workspace_width();
            Tensor::empty_like_shape(&[steps, batch, width * hidden], DType::F32, &device, "rnn")
        };
        // Only the backward pass reads the workspace, so a forward pass that records no
        // graph keeps none where the backend's whole-sequence LSTM pass can skip its stores
        // (the CPU's; the GPU kernels always bind one). The Elman cell keeps none at all.
        let records = crate::autograd::is_grad_enabled()
            && [
                Some(self),
                Some(weights.weight_ih),
                Some(weights.weight_hh),
                Some(&h0),
                c0.as_ref(),
                weights.bias_ih,
                weights.bias_hh,
            ]
            .into_iter()
            .flatten()
            .any(Tensor::is_tracked);
        let skip_ws = mode == RnnMode::Lstm && !records && Storage::lstm_forward_without_workspace(&device);
        let mut ws = (mode.workspace_width() > 0 && !skip_ws).then(new_ws);
        // A backend with a whole-sequence LSTM pass (the CPU, for batches it splits by
        // sequence; the GPU where the hidden size fits a workgroup) runs it; otherwise one
        // matmul and one cell step per step. The input projection is left to the backend
        // first (the CPU's fused step computes it inside), then computed here.
        let mut xw = None;
        let whole_sequence = mode == RnnMode::Lstm && {
            let steps = slots.all_steps(batch, hidden);
            let (b_ih, b_hh) = k.bias.as_ref().map(|(a, b)| (view(a), view(b))).unzip();
            let no_ws = Tensor::empty_like_shape(&[0], DType::F32, &device, "rnn");
            let w_ih = weights.weight_ih.detach().contiguous();
            let layer = |xw: Option<&Tensor>| {
                Storage::lstm_layer_forward(LstmLayerForward {
                    steps: &steps,
                    xw: xw.map(view),
                    x: view(&x),
                    w_ih: view(&w_ih),
                    w_hh_t: view(&w_hh_t),
                    bias: b_ih.zip(b_hh),
                    lengths: k.lengths(),
                    state: view(&state),
                    ws: view(ws.as_ref().unwrap_or(&no_ws)),
                })
            };
            layer(None) || layer(Some(xw.insert(project())))
        };
        if !whole_sequence {
            let xw = xw.get_or_insert_with(project);
            debug_assert_eq!(xw.shape(), [steps * batch, gh]);
            if mode.workspace_width() > 0 && ws.is_none() {
                ws = Some(new_ws());
            }
            for k_step in 0..steps {
                let step = slots.step(batch, hidden, k_step);
                let hw = slot_view(&state, 0, step.slot_in).matmul(&w_hh_t);
                cell_forward(mode, &step, xw, &hw, &k, &state, ws.as_ref());
            }
        }

        let mut inputs: Vec<&Tensor> = vec![self, weights.weight_ih, weights.weight_hh, &h0];
        inputs.extend(c0.as_ref());
        if let Some((b_ih, b_hh)) = bias {
            inputs.extend([b_ih, b_hh]);
        }
        inputs.extend(ws.as_ref());
        let grad = RnnGrad { mode, reverse, has_bias: bias.is_some(), lengths: lengths_i32 };
        let state = Tensor::record(state, GradOp::fused(grad), &inputs);

        let section = |s: usize| state.narrow(0, s, 1).squeeze(0);
        let hs = section(0);
        let mut output = hs.narrow(0, slots.first_output(), steps);
        if let Some(lengths) = lengths {
            output = output.mul(&padding_mask(lengths, steps, &device));
        }
        let last = |t: &Tensor| t.narrow(0, slots.last(), 1).squeeze(0);
        let h_n = last(&hs);
        let c_n = mode.has_cell_state().then(|| last(&section(1)));
        RnnLayerOutput { output, h_n, c_n }
    }
}

/// `[T, B, 1]`: 1 where step `t` is inside sequence `b`, else 0.
fn padding_mask(lengths: &[usize], steps: usize, device: &Device) -> Tensor {
    let batch = lengths.len();
    let mask: Vec<f32> = (0..steps * batch).map(|i| ((i / batch) < lengths[i % batch]) as u8 as f32).collect();
    Tensor::from_slice(&mask, &[steps, batch, 1], device)
}

/// Checks the operands of one layer, panicking with the op's name and the shapes on any
/// mismatch. Returns `(T, B, input_size, H)`.
fn check_layer(
    op: &str,
    mode: RnnMode,
    x: &Tensor,
    w: &RnnWeights,
    h0: Option<&Tensor>,
    c0: Option<&Tensor>,
    lengths: Option<&[usize]>,
) -> (usize, usize, usize, usize) {
    let name = mode.name();
    assert!(x.rank() == 3, "{op} ({name}): input must be [T, B, input_size], got shape {:?}", x.shape());
    let (steps, batch, input) = (x.dim(0), x.dim(1), x.dim(2));
    assert!(steps > 0 && batch > 0, "{op} ({name}): the input of shape {:?} is empty", x.shape());
    let gates = mode.gates();
    assert!(
        w.weight_hh.rank() == 2 && w.weight_hh.dim(1) > 0 && w.weight_hh.dim(0) == gates * w.weight_hh.dim(1),
        "{op} ({name}): weight_hh must be [{gates} * hidden_size, hidden_size], got shape {:?}",
        w.weight_hh.shape()
    );
    let hidden = w.weight_hh.dim(1);
    assert!(
        w.weight_ih.shape() == [gates * hidden, input],
        "{op} ({name}): weight_ih of shape {:?} does not match [{}, {input}] ({gates} gates of hidden size {hidden}, \
         input of shape {:?})",
        w.weight_ih.shape(),
        gates * hidden,
        x.shape()
    );
    assert_eq!(w.bias_ih.is_some(), w.bias_hh.is_some(), "{op} ({name}): bias_ih and bias_hh must be given together");
    for (label, b) in [("bias_ih", w.bias_ih), ("bias_hh", w.bias_hh)] {
        if let Some(b) = b {
            assert!(
                b.shape() == [gates * hidden],
                "{op} ({name}): {label} of shape {:?} does not match [{}]",
                b.shape(),
                gates * hidden
            );
        }
    }
    assert!(c0.is_none() || mode.has_cell_state(), "{op} ({name}): only the LSTM has a cell state, but c0 was given");
    for (label, s) in [("h0", h0), ("c0", c0)] {
        if let Some(s) = s {
            assert!(
                s.shape() == [batch, hidden],
                "{op} ({name}): {label} of shape {:?} does not match [{batch}, {hidden}] (batch, hidden_size)",
                s.shape()
            );
        }
    }
    let operands = [Some(x), Some(w.weight_ih), Some(w.weight_hh), w.bias_ih, w.bias_hh, h0, c0];
    for t in operands.into_iter().flatten() {
        t.expect_dtype(DType::F32, op);
        x.same_device(t, op);
    }
    if let Some(lengths) = lengths {
        assert_eq!(
            lengths.len(),
            batch,
            "{op} ({name}): {} lengths given for a batch of {batch} sequences",
            lengths.len()
        );
        if let Some(bad) = lengths.iter().find(|&&n| n == 0 || n > steps) {
            panic!("{op} ({name}): length {bad} is outside 1..={steps} (the input has {steps} steps): {lengths:?}");
        }
    }
    (steps, batch, input, hidden)
}
