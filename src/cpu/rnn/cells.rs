//! One time step of an LSTM, GRU or Elman cell over a whole batch, forward and backward:
//! the twins of the cell kernels of `shaders/rnn.wgsl`.

use super::math::{sigmoid, tanh};
use super::{biases, gate, incoming_dh, per_row, regions, BackwardInputs, CellStep, ForwardInputs};

/// The outputs of one LSTM forward row.
pub(super) struct LstmForwardRow<'a> {
    pub(super) h: &'a mut [f32],
    pub(super) c: &'a mut [f32],
    pub(super) ws: &'a mut [f32],
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
pub(super) fn lstm_forward_row(
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
pub(super) fn lstm_backward_row(
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
