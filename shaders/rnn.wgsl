// rnn.wgsl: fused recurrent cells (LSTM, GRU, Elman RNN), one time step of a whole batch
// per dispatch. One invocation computes hidden unit j of sequence b (B * H invocations):
// every gate of that unit, so the gate arithmetic of a step never leaves registers.
//
// The GEMMs stay outside: x W_ih^T for all steps is one matmul before the time loop, and
// h_{t-1} W_hh^T one matmul per step; the kernels read their results. All operands are
// row-major f32 (lengths i32) starting at the element offsets in the params.
//
//   state  [S, T + 1, B, H]  S = 2 for the LSTM (section 0 h, section 1 c), else 1. The step
//          at time t reads slot slot_in and writes slot slot_out: (t, t + 1) forwards,
//          (t + 1, t) in reverse. So slots hold states in time order, the initial state sits
//          at one end, and the previous states of all T steps are one contiguous block.
//   xw     [T, B, G * H]  x_t W_ih^T of every step; G = 4 (LSTM i, f, g, o), 3 (GRU r, z, n), 1
//   hw     [B, G * H]     h_{t-1} W_hh^T of this step
//   ws     [T, B, 4 * H]  what backward needs: LSTM i, f, g, o; GRU r, z, n and W_hn h + b_hn
//   dgates [K, T, B, G * H]  gradients of the gate pre-activations. K = 2 for the GRU, whose n
//          gate has one gradient on the input side (for W_ih) and another on the recurrent
//          side (for W_hh), else 1.
//   carry  [S, B, H]  backward state between steps: section 0 the part of dL/dh_{t-1} that
//          does not pass through W_hh, section 1 (LSTM) dL/dc_{t-1}.
//
// Bindings (in0..in4 read, each from its own element offset; out0..out1 read-write, from
// element 0):
//   *_cell_forward   in0 xw, in1 hw, in2 bias_ih, in3 bias_hh, in4 lengths; out0 state, out1 ws
//   *_cell_backward  in0 dL/dstate, in1 dhw = dgates_{next} W_hh, in2 ws, in3 state,
//                    in4 lengths; out0 dgates, out1 carry
// Inputs an entry point does not read (biases without HAS_BIAS, lengths without
// HAS_LENGTHS, ws of the Elman RNN) are bound to some other buffer and never read.
//
// A sequence b is active at time t when t < lengths[b]. An inactive step carries the state
// through unchanged (forwards: past the end of a short sequence; in reverse: before its
// start, so the reverse direction starts at the sequence's own last step) and passes the
// gradient straight back; its gate values and gradients are zero.

struct RnnParams {
    batch: u32,
    hidden: u32,
    steps: u32,
    t: u32,
    slot_in: u32,
    slot_out: u32,
    flags: u32,
    // batch * hidden: one invocation each.
    numel: u32,
    // Element offsets of in0..in3.
    offsets: vec4<u32>,
    lengths_offset: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const HAS_BIAS: u32 = 1u;
const HAS_LENGTHS: u32 = 2u;
const RELU: u32 = 4u;

@group(0) @binding(0) var<uniform> p: RnnParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read> lengths: array<i32>;
@group(0) @binding(6) var<storage, read_write> out0: array<f32>;
@group(0) @binding(7) var<storage, read_write> out1: array<f32>;

// sigmoid_f and tanh_f (common.wgsl) have the formulas of src/cpu/rnn.rs.

fn is_active(b: u32) -> bool {
    return (p.flags & HAS_LENGTHS) == 0u || i32(p.t) < lengths[p.lengths_offset + b];
}

// Element (b, j) of state section s, slot k.
fn state_index(s: u32, k: u32, bh: u32) -> u32 {
    return (s * (p.steps + 1u) + k) * p.batch * p.hidden + bh;
}

// Pre-activation of gate g from the input side: x W_ih^T (+ b_ih).
fn x_gate(g: u32, b: u32, j: u32, width: u32) -> f32 {
    let col = g * p.hidden + j;
    var v = in0[p.offsets.x + (p.t * p.batch + b) * width + col];
    if ((p.flags & HAS_BIAS) != 0u) {
        v = v + in2[p.offsets.z + col];
    }
    return v;
}

// Pre-activation of gate g from the recurrent side: h W_hh^T (+ b_hh).
fn h_gate(g: u32, b: u32, j: u32, width: u32) -> f32 {
    let col = g * p.hidden + j;
    var v = in1[p.offsets.y + b * width + col];
    if ((p.flags & HAS_BIAS) != 0u) {
        v = v + in3[p.offsets.w + col];
    }
    return v;
}

// Index of gate g of unit (b, j) at time t in a [.., T, B, width] tensor (ws, dgates).
fn gate_index(section: u32, g: u32, b: u32, j: u32, width: u32) -> u32 {
    return ((section * p.steps + p.t) * p.batch + b) * width + g * p.hidden + j;
}

@compute @workgroup_size(256)
fn lstm_cell_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let width = 4u * p.hidden;
    let h_prev = out0[state_index(0u, p.slot_in, i)];
    let c_prev = out0[state_index(1u, p.slot_in, i)];
    if (!is_active(b)) {
        out0[state_index(0u, p.slot_out, i)] = h_prev;
        out0[state_index(1u, p.slot_out, i)] = c_prev;
        for (var g = 0u; g < 4u; g = g + 1u) {
            out1[gate_index(0u, g, b, j, width)] = 0.0;
        }
        return;
    }
    let ig = sigmoid_f(x_gate(0u, b, j, width) + h_gate(0u, b, j, width));
    let fg = sigmoid_f(x_gate(1u, b, j, width) + h_gate(1u, b, j, width));
    let gg = tanh_f(x_gate(2u, b, j, width) + h_gate(2u, b, j, width));
    let og = sigmoid_f(x_gate(3u, b, j, width) + h_gate(3u, b, j, width));
    let c = fg * c_prev + ig * gg;
    out0[state_index(0u, p.slot_out, i)] = og * tanh_f(c);
    out0[state_index(1u, p.slot_out, i)] = c;
    out1[gate_index(0u, 0u, b, j, width)] = ig;
    out1[gate_index(0u, 1u, b, j, width)] = fg;
    out1[gate_index(0u, 2u, b, j, width)] = gg;
    out1[gate_index(0u, 3u, b, j, width)] = og;
}

@compute @workgroup_size(256)
fn lstm_cell_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let width = 4u * p.hidden;
    let bh = p.batch * p.hidden;
    // dL/dh_t: from the output slot itself, through W_hh of the next step, and carried.
    let dh = in0[p.offsets.x + state_index(0u, p.slot_out, i)] + in1[p.offsets.y + i] + out1[i];
    var dc = in0[p.offsets.x + state_index(1u, p.slot_out, i)] + out1[bh + i];
    if (!is_active(b)) {
        out1[i] = dh;
        out1[bh + i] = dc;
        for (var g = 0u; g < 4u; g = g + 1u) {
            out0[gate_index(0u, g, b, j, width)] = 0.0;
        }
        return;
    }
    let ig = in2[p.offsets.z + gate_index(0u, 0u, b, j, width)];
    let fg = in2[p.offsets.z + gate_index(0u, 1u, b, j, width)];
    let gg = in2[p.offsets.z + gate_index(0u, 2u, b, j, width)];
    let og = in2[p.offsets.z + gate_index(0u, 3u, b, j, width)];
    let c = in3[p.offsets.w + state_index(1u, p.slot_out, i)];
    let c_prev = in3[p.offsets.w + state_index(1u, p.slot_in, i)];
    let tc = tanh_f(c);
    let d_o = dh * tc;
    dc = dc + dh * og * (1.0 - tc * tc);
    out0[gate_index(0u, 0u, b, j, width)] = dc * gg * ig * (1.0 - ig);
    out0[gate_index(0u, 1u, b, j, width)] = dc * c_prev * fg * (1.0 - fg);
    out0[gate_index(0u, 2u, b, j, width)] = dc * ig * (1.0 - gg * gg);
    out0[gate_index(0u, 3u, b, j, width)] = d_o * og * (1.0 - og);
    out1[i] = 0.0;
    out1[bh + i] = dc * fg;
}

@compute @workgroup_size(256)
fn gru_cell_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let width = 3u * p.hidden;
    let ws_width = 4u * p.hidden;
    let h_prev = out0[state_index(0u, p.slot_in, i)];
    if (!is_active(b)) {
        out0[state_index(0u, p.slot_out, i)] = h_prev;
        for (var g = 0u; g < 4u; g = g + 1u) {
            out1[gate_index(0u, g, b, j, ws_width)] = 0.0;
        }
        return;
    }
    let r = sigmoid_f(x_gate(0u, b, j, width) + h_gate(0u, b, j, width));
    let z = sigmoid_f(x_gate(1u, b, j, width) + h_gate(1u, b, j, width));
    // The reset gate scales the whole recurrent projection of n, its bias included.
    let hn = h_gate(2u, b, j, width);
    let n = tanh_f(x_gate(2u, b, j, width) + r * hn);
    out0[state_index(0u, p.slot_out, i)] = (1.0 - z) * n + z * h_prev;
    out1[gate_index(0u, 0u, b, j, ws_width)] = r;
    out1[gate_index(0u, 1u, b, j, ws_width)] = z;
    out1[gate_index(0u, 2u, b, j, ws_width)] = n;
    out1[gate_index(0u, 3u, b, j, ws_width)] = hn;
}

@compute @workgroup_size(256)
fn gru_cell_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let width = 3u * p.hidden;
    let ws_width = 4u * p.hidden;
    let dh = in0[p.offsets.x + state_index(0u, p.slot_out, i)] + in1[p.offsets.y + i] + out1[i];
    if (!is_active(b)) {
        out1[i] = dh;
        for (var g = 0u; g < 3u; g = g + 1u) {
            out0[gate_index(0u, g, b, j, width)] = 0.0;
            out0[gate_index(1u, g, b, j, width)] = 0.0;
        }
        return;
    }
    let r = in2[p.offsets.z + gate_index(0u, 0u, b, j, ws_width)];
    let z = in2[p.offsets.z + gate_index(0u, 1u, b, j, ws_width)];
    let n = in2[p.offsets.z + gate_index(0u, 2u, b, j, ws_width)];
    let hn = in2[p.offsets.z + gate_index(0u, 3u, b, j, ws_width)];
    let h_prev = in3[p.offsets.w + state_index(0u, p.slot_in, i)];
    let dn = dh * (1.0 - z);
    let dz = dh * (h_prev - n);
    let dan = dn * (1.0 - n * n);
    let dar = dan * hn * r * (1.0 - r);
    let daz = dz * z * (1.0 - z);
    // Input side: gradients of W_i* x + b_i*; recurrent side: of W_h* h + b_h*.
    out0[gate_index(0u, 0u, b, j, width)] = dar;
    out0[gate_index(0u, 1u, b, j, width)] = daz;
    out0[gate_index(0u, 2u, b, j, width)] = dan;
    out0[gate_index(1u, 0u, b, j, width)] = dar;
    out0[gate_index(1u, 1u, b, j, width)] = daz;
    out0[gate_index(1u, 2u, b, j, width)] = dan * r;
    out1[i] = dh * z;
}

@compute @workgroup_size(256)
fn rnn_cell_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    if (!is_active(b)) {
        out0[state_index(0u, p.slot_out, i)] = out0[state_index(0u, p.slot_in, i)];
        return;
    }
    let pre = x_gate(0u, b, j, p.hidden) + h_gate(0u, b, j, p.hidden);
    var h = 0.0;
    if ((p.flags & RELU) != 0u) {
        // NaN passes through, as PyTorch's relu.
        h = select(0.0, pre, pre > 0.0 || is_nan(pre));
    } else {
        h = tanh_f(pre);
    }
    out0[state_index(0u, p.slot_out, i)] = h;
}

@compute @workgroup_size(256)
fn rnn_cell_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let b = i / p.hidden;
    let j = i % p.hidden;
    let dh = in0[p.offsets.x + state_index(0u, p.slot_out, i)] + in1[p.offsets.y + i] + out1[i];
    if (!is_active(b)) {
        out1[i] = dh;
        out0[gate_index(0u, 0u, b, j, p.hidden)] = 0.0;
        return;
    }
    let h = in3[p.offsets.w + state_index(0u, p.slot_out, i)];
    var d = 0.0;
    if ((p.flags & RELU) != 0u) {
        d = select(0.0, dh, h > 0.0);
    } else {
        d = dh * (1.0 - h * h);
    }
    out0[gate_index(0u, 0u, b, j, p.hidden)] = d;
    out1[i] = 0.0;
}
