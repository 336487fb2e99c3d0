//! The fused recurrent cells on the host: one time step of an LSTM, GRU or Elman RNN layer
//! over a whole batch, forward and backward. `shaders/rnn.wgsl` states the layouts of the
//! operands and the slot scheme; these loops follow its index arithmetic and its formulas
//! operation for operation, so the two devices round alike.
//!
//! The GEMMs around the cells are the tensor layer's matmul; what is left here is a tight
//! loop over `batch * hidden` units per step.

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

impl CellStep {
    /// Element `bh = b * hidden + j` of state section `s`, slot `k`.
    fn state_index(&self, s: usize, k: usize, bh: usize) -> usize {
        (s * (self.steps + 1) + k) * self.batch * self.hidden + bh
    }

    /// Gate `g` of unit `(b, j)` at this step's time in a `[.., T, B, width]` tensor.
    fn gate_index(&self, section: usize, g: usize, b: usize, j: usize, width: usize) -> usize {
        ((section * self.steps + self.t) * self.batch + b) * width + g * self.hidden + j
    }

    fn active(&self, lengths: Option<&[i32]>, b: usize) -> bool {
        lengths.is_none_or(|l| (self.t as i64) < l[b] as i64)
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

/// The logistic function as rnn.wgsl writes it: no overflow for either sign.
pub fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// `tanh`, clamped to `[-10, 10]` as rnn.wgsl does (where some back-ends overflow; the
/// result is ±1 in f32 there anyway); NaN passes through.
///
/// Computed as Cephes' `tanhf`: `1 - 2 / (exp(2|x|) + 1)` with the sign of `x` from
/// |x| = 0.625 on, and below it an odd polynomial with Cephes' minimax coefficients, which
/// avoids the cancellation of the first form near zero. Within 1 ulp of the exact value
/// over [-10, 10] (tests/rnn.rs checks it against f64), and here about 2.5 times faster
/// than the platform's `tanhf`, which otherwise dominates a cell step on the CPU.
pub fn tanh(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    let x = x.clamp(-10.0, 10.0);
    let a = x.abs();
    if a >= 0.625 {
        (1.0 - 2.0 / ((a + a).exp() + 1.0)).copysign(x)
    } else {
        let z = x * x;
        let p = (((-5.704_988_7e-3 * z + 2.063_909e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328e-1;
        p * z * x + x
    }
}

impl ForwardInputs<'_> {
    /// `x W_ih^T (+ b_ih)` of gate `g`.
    fn x_gate(&self, s: &CellStep, g: usize, b: usize, j: usize, width: usize) -> f32 {
        let col = g * s.hidden + j;
        let v = self.xw[(s.t * s.batch + b) * width + col];
        match self.bias {
            Some((b_ih, _)) => v + b_ih[col],
            None => v,
        }
    }

    /// `h W_hh^T (+ b_hh)` of gate `g`.
    fn h_gate(&self, s: &CellStep, g: usize, b: usize, j: usize, width: usize) -> f32 {
        let col = g * s.hidden + j;
        let v = self.hw[b * width + col];
        match self.bias {
            Some((_, b_hh)) => v + b_hh[col],
            None => v,
        }
    }

    fn pre(&self, s: &CellStep, g: usize, b: usize, j: usize, width: usize) -> f32 {
        self.x_gate(s, g, b, j, width) + self.h_gate(s, g, b, j, width)
    }
}

/// `dL/dh_t` of unit `bh`: from the output slot itself, through the next step's `W_hh`,
/// and the carried part.
fn incoming_dh(s: &CellStep, x: &BackwardInputs, carry: &[f32], bh: usize) -> f32 {
    x.d_state[s.state_index(0, s.slot_out, bh)] + x.dhw[bh] + carry[bh]
}

/// `lstm_cell_forward`: writes slot `slot_out` of both state sections and the gate
/// activations `i, f, g, o` of time `t` into `ws` (`[T, B, 4H]`).
pub fn lstm_cell_forward(s: &CellStep, x: &ForwardInputs, state: &mut [f32], ws: &mut [f32]) {
    let (h, width) = (s.hidden, 4 * s.hidden);
    for b in 0..s.batch {
        let active = s.active(x.lengths, b);
        for j in 0..h {
            let bh = b * h + j;
            let h_prev = state[s.state_index(0, s.slot_in, bh)];
            let c_prev = state[s.state_index(1, s.slot_in, bh)];
            if !active {
                state[s.state_index(0, s.slot_out, bh)] = h_prev;
                state[s.state_index(1, s.slot_out, bh)] = c_prev;
                for g in 0..4 {
                    ws[s.gate_index(0, g, b, j, width)] = 0.0;
                }
                continue;
            }
            let ig = sigmoid(x.pre(s, 0, b, j, width));
            let fg = sigmoid(x.pre(s, 1, b, j, width));
            let gg = tanh(x.pre(s, 2, b, j, width));
            let og = sigmoid(x.pre(s, 3, b, j, width));
            let c = fg * c_prev + ig * gg;
            state[s.state_index(0, s.slot_out, bh)] = og * tanh(c);
            state[s.state_index(1, s.slot_out, bh)] = c;
            for (g, v) in [ig, fg, gg, og].into_iter().enumerate() {
                ws[s.gate_index(0, g, b, j, width)] = v;
            }
        }
    }
}

/// `lstm_cell_backward`: writes the gate pre-activation gradients of time `t` into
/// `dgates` (`[1, T, B, 4H]`) and updates `carry` (`[2, B, H]`: the part of `dL/dh_{t-1}`
/// that bypasses `W_hh`, and `dL/dc_{t-1}`).
pub fn lstm_cell_backward(s: &CellStep, x: &BackwardInputs, dgates: &mut [f32], carry: &mut [f32]) {
    let (h, width) = (s.hidden, 4 * s.hidden);
    let bh_total = s.batch * h;
    for b in 0..s.batch {
        let active = s.active(x.lengths, b);
        for j in 0..h {
            let bh = b * h + j;
            let dh = incoming_dh(s, x, carry, bh);
            let mut dc = x.d_state[s.state_index(1, s.slot_out, bh)] + carry[bh_total + bh];
            if !active {
                carry[bh] = dh;
                carry[bh_total + bh] = dc;
                for g in 0..4 {
                    dgates[s.gate_index(0, g, b, j, width)] = 0.0;
                }
                continue;
            }
            let ig = x.ws[s.gate_index(0, 0, b, j, width)];
            let fg = x.ws[s.gate_index(0, 1, b, j, width)];
            let gg = x.ws[s.gate_index(0, 2, b, j, width)];
            let og = x.ws[s.gate_index(0, 3, b, j, width)];
            let c = x.state[s.state_index(1, s.slot_out, bh)];
            let c_prev = x.state[s.state_index(1, s.slot_in, bh)];
            let tc = tanh(c);
            let d_o = dh * tc;
            dc += dh * og * (1.0 - tc * tc);
            dgates[s.gate_index(0, 0, b, j, width)] = dc * gg * ig * (1.0 - ig);
            dgates[s.gate_index(0, 1, b, j, width)] = dc * c_prev * fg * (1.0 - fg);
            dgates[s.gate_index(0, 2, b, j, width)] = dc * ig * (1.0 - gg * gg);
            dgates[s.gate_index(0, 3, b, j, width)] = d_o * og * (1.0 - og);
            carry[bh] = 0.0;
            carry[bh_total + bh] = dc * fg;
        }
    }
}

/// `gru_cell_forward`: writes slot `slot_out` and `r, z, n, W_hn h + b_hn` of time `t`
/// into `ws` (`[T, B, 4H]`).
pub fn gru_cell_forward(s: &CellStep, x: &ForwardInputs, state: &mut [f32], ws: &mut [f32]) {
    let (h, width, ws_width) = (s.hidden, 3 * s.hidden, 4 * s.hidden);
    for b in 0..s.batch {
        let active = s.active(x.lengths, b);
        for j in 0..h {
            let bh = b * h + j;
            let h_prev = state[s.state_index(0, s.slot_in, bh)];
            if !active {
                state[s.state_index(0, s.slot_out, bh)] = h_prev;
                for g in 0..4 {
                    ws[s.gate_index(0, g, b, j, ws_width)] = 0.0;
                }
                continue;
            }
            let r = sigmoid(x.pre(s, 0, b, j, width));
            let z = sigmoid(x.pre(s, 1, b, j, width));
            let hn = x.h_gate(s, 2, b, j, width);
            let n = tanh(x.x_gate(s, 2, b, j, width) + r * hn);
            state[s.state_index(0, s.slot_out, bh)] = (1.0 - z) * n + z * h_prev;
            for (g, v) in [r, z, n, hn].into_iter().enumerate() {
                ws[s.gate_index(0, g, b, j, ws_width)] = v;
            }
        }
    }
}

/// `gru_cell_backward`: writes the input-side (section 0) and recurrent-side (section 1)
/// gate gradients of time `t` into `dgates` (`[2, T, B, 3H]`) and updates `carry`
/// (`[1, B, H]`).
pub fn gru_cell_backward(s: &CellStep, x: &BackwardInputs, dgates: &mut [f32], carry: &mut [f32]) {
    let (h, width, ws_width) = (s.hidden, 3 * s.hidden, 4 * s.hidden);
    for b in 0..s.batch {
        let active = s.active(x.lengths, b);
        for j in 0..h {
            let bh = b * h + j;
            let dh = incoming_dh(s, x, carry, bh);
            if !active {
                carry[bh] = dh;
                for g in 0..3 {
                    dgates[s.gate_index(0, g, b, j, width)] = 0.0;
                    dgates[s.gate_index(1, g, b, j, width)] = 0.0;
                }
                continue;
            }
            let r = x.ws[s.gate_index(0, 0, b, j, ws_width)];
            let z = x.ws[s.gate_index(0, 1, b, j, ws_width)];
            let n = x.ws[s.gate_index(0, 2, b, j, ws_width)];
            let hn = x.ws[s.gate_index(0, 3, b, j, ws_width)];
            let h_prev = x.state[s.state_index(0, s.slot_in, bh)];
            let dn = dh * (1.0 - z);
            let dz = dh * (h_prev - n);
            let dan = dn * (1.0 - n * n);
            let dar = dan * hn * r * (1.0 - r);
            let daz = dz * z * (1.0 - z);
            for (g, v) in [dar, daz, dan].into_iter().enumerate() {
                dgates[s.gate_index(0, g, b, j, width)] = v;
            }
            for (g, v) in [dar, daz, dan * r].into_iter().enumerate() {
                dgates[s.gate_index(1, g, b, j, width)] = v;
            }
            carry[bh] = dh * z;
        }
    }
}

/// `rnn_cell_forward`: writes slot `slot_out`, `tanh` or (with `relu`) `relu` of the
/// pre-activation. The Elman cell keeps no workspace: its backward reads the output.
pub fn rnn_cell_forward(s: &CellStep, x: &ForwardInputs, relu: bool, state: &mut [f32]) {
    let h = s.hidden;
    for b in 0..s.batch {
        let active = s.active(x.lengths, b);
        for j in 0..h {
            let bh = b * h + j;
            let out = s.state_index(0, s.slot_out, bh);
            if !active {
                state[out] = state[s.state_index(0, s.slot_in, bh)];
                continue;
            }
            let pre = x.pre(s, 0, b, j, h);
            state[out] = if !relu {
                tanh(pre)
            } else if pre > 0.0 || pre.is_nan() {
                pre
            } else {
                0.0
            };
        }
    }
}

/// `rnn_cell_backward`: writes the pre-activation gradient of time `t` into `dgates`
/// (`[1, T, B, H]`) and updates `carry` (`[1, B, H]`).
pub fn rnn_cell_backward(s: &CellStep, x: &BackwardInputs, relu: bool, dgates: &mut [f32], carry: &mut [f32]) {
    let h = s.hidden;
    for b in 0..s.batch {
        let active = s.active(x.lengths, b);
        for j in 0..h {
            let bh = b * h + j;
            let dh = incoming_dh(s, x, carry, bh);
            let slot = s.gate_index(0, 0, b, j, h);
            if !active {
                carry[bh] = dh;
                dgates[slot] = 0.0;
                continue;
            }
            let out = x.state[s.state_index(0, s.slot_out, bh)];
            dgates[slot] = if !relu {
                dh * (1.0 - out * out)
            } else if out > 0.0 {
                dh
            } else {
                0.0
            };
            carry[bh] = 0.0;
        }
    }
}
