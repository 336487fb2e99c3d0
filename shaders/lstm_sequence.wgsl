// lstm_sequence.wgsl: a whole LSTM layer and direction in one dispatch (a persistent
// kernel, as cuDNN's): one workgroup per sequence of the batch loops over every time step,
// with the recurrent product h_{t-1} W_hh^T inside. The sequences of a batch are
// independent through all the steps, so no step needs the whole device to synchronise:
// a workgroup barrier between steps is enough. Thread j owns hidden unit j, so the hidden
// size is at most WG (the launcher falls back to one matmul and one cell dispatch per step
// above that).
//
// Layouts are those of rnn.wgsl (row-major f32, lengths i32, each operand from its element
// offset in the params):
//   xw     [T, B, 4H]      x_t W_ih^T of every step (gates i, f, g, o)
//   w      forward: W_hh^T [H, 4H]; backward: W_hh [4H, H]
//   state  [2, T + 1, B, H] section 0 h, section 1 c; the step at time t reads slot
//          slot_in and writes slot_out: (t, t + 1) forwards, (t + 1, t) in reverse
//   ws     [T, B, 4H]      the gate activations i, f, g, o (written forwards, read backwards)
//   dgates [T, B, 4H]      gradients of the gate pre-activations (written backwards)
//   carry  [2, B, H]       the backward state between steps: dL/dh_{t-1} that does not
//                          pass through W_hh, and dL/dc_{t-1}
//
// Each element follows the formulas and the order of operations of rnn.wgsl's cells (the
// gate pre-activation is (xw + b_ih) + (hw + b_hh)); only the recurrent dot product is
// summed here, in order over k, where the per-step path runs a tiled matmul, so the two
// agree to rounding, not bit for bit.
//
// Bindings:
//   lstm_sequence_forward   in0 xw, in1 W_hh^T, in2 b_ih, in3 b_hh, lengths; out0 state, out1 ws
//   lstm_sequence_backward  in0 dL/dstate, in1 W_hh, in2 ws, in3 state, lengths;
//                           out0 dgates, out1 carry
// Inputs an entry point does not read (biases without HAS_BIAS, lengths without
// HAS_LENGTHS) are bound to some other buffer and never read.

struct LstmSequenceParams {
    batch: u32,
    hidden: u32,
    steps: u32,
    flags: u32,
    // Element offsets of in0..in3.
    offsets: vec4<u32>,
    lengths_offset: u32,
    // Element offsets of out0 and out1.
    out0_offset: u32,
    out1_offset: u32,
    _pad0: u32,
}

const HAS_BIAS: u32 = 1u;
const HAS_LENGTHS: u32 = 2u;
// The steps run in reverse time order (the backward direction of a bidirectional layer).
const REVERSE: u32 = 8u;

@group(0) @binding(0) var<uniform> p: LstmSequenceParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read> lengths: array<i32>;
@group(0) @binding(6) var<storage, read_write> out0: array<f32>;
@group(0) @binding(7) var<storage, read_write> out1: array<f32>;

// forward: h_{t-1} of this workgroup's sequence; backward: the gate gradients of the step
// processed last (4H of them).
var<workgroup> shared_h: array<f32, WG>;
var<workgroup> shared_dg: array<f32, 1024>;

// The time index of the k-th step in processing order, and its input and output slots.
fn time_of(k: u32) -> u32 {
    return select(k, p.steps - 1u - k, (p.flags & REVERSE) != 0u);
}

fn slot_in(t: u32) -> u32 {
    return select(t, t + 1u, (p.flags & REVERSE) != 0u);
}

fn slot_out(t: u32) -> u32 {
    return select(t + 1u, t, (p.flags & REVERSE) != 0u);
}

fn is_active(b: u32, t: u32) -> bool {
    return (p.flags & HAS_LENGTHS) == 0u || i32(t) < lengths[p.lengths_offset + b];
}

// Element (b, j) of state section s, slot k.
fn state_index(s: u32, k: u32, b: u32, j: u32) -> u32 {
    return ((s * (p.steps + 1u) + k) * p.batch + b) * p.hidden + j;
}

// Element (gate g, unit j) of sequence b at time t in a [T, B, 4H] tensor.
fn gate_index(t: u32, b: u32, g: u32, j: u32) -> u32 {
    return (t * p.batch + b) * 4u * p.hidden + g * p.hidden + j;
}

@compute @workgroup_size(WG)
fn lstm_sequence_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let b = wg.x;
    let h = p.hidden;
    let width = 4u * h;
    let owns = j < h;
    var c = 0.0;
    if (owns) {
        let first = slot_in(time_of(0u));
        shared_h[j] = out0[p.out0_offset + state_index(0u, first, b, j)];
        c = out0[p.out0_offset + state_index(1u, first, b, j)];
    }
    workgroupBarrier();
    for (var k = 0u; k < p.steps; k = k + 1u) {
        let t = time_of(k);
        var h_new = 0.0;
        if (owns) {
            if (is_active(b, t)) {
                // hw = h_{t-1} W_hh^T for the four gates of unit j.
                var hw = vec4<f32>(0.0);
                for (var q = 0u; q < h; q = q + 1u) {
                    let row = p.offsets.y + q * width + j;
                    let hq = shared_h[q];
                    hw = hw + hq * vec4<f32>(in1[row], in1[row + h], in1[row + 2u * h], in1[row + 3u * h]);
                }
                var pre: array<f32, 4>;
                for (var g = 0u; g < 4u; g = g + 1u) {
                    var xg = in0[p.offsets.x + gate_index(t, b, g, j)];
                    var hg = hw[g];
                    if ((p.flags & HAS_BIAS) != 0u) {
                        xg = xg + in2[p.offsets.z + g * h + j];
                        hg = hg + in3[p.offsets.w + g * h + j];
                    }
                    pre[g] = xg + hg;
                }
                let ig = sigmoid_f(pre[0]);
                let fg = sigmoid_f(pre[1]);
                let gg = tanh_f(pre[2]);
                let og = sigmoid_f(pre[3]);
                c = fg * c + ig * gg;
                h_new = og * tanh_f(c);
                out1[p.out1_offset + gate_index(t, b, 0u, j)] = ig;
                out1[p.out1_offset + gate_index(t, b, 1u, j)] = fg;
                out1[p.out1_offset + gate_index(t, b, 2u, j)] = gg;
                out1[p.out1_offset + gate_index(t, b, 3u, j)] = og;
            } else {
                // Past the end of a short sequence the state carries through unchanged.
                h_new = shared_h[j];
                for (var g = 0u; g < 4u; g = g + 1u) {
                    out1[p.out1_offset + gate_index(t, b, g, j)] = 0.0;
                }
            }
            out0[p.out0_offset + state_index(0u, slot_out(t), b, j)] = h_new;
            out0[p.out0_offset + state_index(1u, slot_out(t), b, j)] = c;
        }
        // Every unit has read h_{t-1} before any overwrites it.
        workgroupBarrier();
        if (owns) {
            shared_h[j] = h_new;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG)
fn lstm_sequence_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) j: u32) {
    let b = wg.x;
    let h = p.hidden;
    let bh = p.batch * h;
    let owns = j < h;
    var carry_h = 0.0;
    var carry_c = 0.0;
    if (owns) {
        carry_h = out1[p.out1_offset + b * h + j];
        carry_c = out1[p.out1_offset + bh + b * h + j];
    }
    for (var n = 0u; n < p.steps; n = n + 1u) {
        // Steps in reverse processing order: the last processed comes first.
        let k = p.steps - 1u - n;
        let t = time_of(k);
        var dg = vec4<f32>(0.0);
        if (owns) {
            // dL/dh_t through the recurrent product of the step processed after this one
            // (none for the last): dhw = dgates_next W_hh.
            var dhw = 0.0;
            if (n > 0u) {
                for (var q = 0u; q < 4u * h; q = q + 1u) {
                    dhw = dhw + shared_dg[q] * in1[p.offsets.y + q * h + j];
                }
            }
            let so = slot_out(t);
            let dh = in0[p.offsets.x + state_index(0u, so, b, j)] + dhw + carry_h;
            var dc = in0[p.offsets.x + state_index(1u, so, b, j)] + carry_c;
            if (is_active(b, t)) {
                let ig = in2[p.offsets.z + gate_index(t, b, 0u, j)];
                let fg = in2[p.offsets.z + gate_index(t, b, 1u, j)];
                let gg = in2[p.offsets.z + gate_index(t, b, 2u, j)];
                let og = in2[p.offsets.z + gate_index(t, b, 3u, j)];
                let cell = in3[p.offsets.w + state_index(1u, so, b, j)];
                let c_prev = in3[p.offsets.w + state_index(1u, slot_in(t), b, j)];
                let tc = tanh_f(cell);
                let d_o = dh * tc;
                dc = dc + dh * og * (1.0 - tc * tc);
                dg = vec4<f32>(dc * gg * ig * (1.0 - ig), dc * c_prev * fg * (1.0 - fg), dc * ig * (1.0 - gg * gg),
                               d_o * og * (1.0 - og));
                carry_h = 0.0;
                carry_c = dc * fg;
            } else {
                // Before the start of a short sequence (in reverse) the gradient passes through.
                carry_h = dh;
                carry_c = dc;
            }
            for (var g = 0u; g < 4u; g = g + 1u) {
                out0[p.out0_offset + gate_index(t, b, g, j)] = dg[g];
            }
        }
        // Every unit has read the previous step's gate gradients before any overwrites them.
        workgroupBarrier();
        if (owns) {
            for (var g = 0u; g < 4u; g = g + 1u) {
                shared_dg[g * h + j] = dg[g];
            }
        }
        workgroupBarrier();
    }
    if (owns) {
        out1[p.out1_offset + b * h + j] = carry_h;
        out1[p.out1_offset + bh + b * h + j] = carry_c;
    }
}
