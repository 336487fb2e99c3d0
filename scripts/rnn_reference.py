#!/usr/bin/env python3
"""Expected values for the known-weights tests of tests/rnn.rs.

Implements, in float64 with numpy only, the equations PyTorch publishes for nn.LSTM and
nn.GRU (https://pytorch.org/docs/stable/generated/torch.nn.LSTM.html and
https://pytorch.org/docs/stable/generated/torch.nn.GRU.html): gate order i, f, g, o and
r, z, n in the rows of weight_ih / weight_hh, both biases added, the GRU's reset gate
applied to (W_hn h + b_hn). Padded batches follow PyTorch's packed sequences: each
sequence runs alone for its own length, the reverse direction starts at its last step,
outputs past the length are zero, and h_n / c_n are the states at the sequence's end.

The inputs are fixed by formulas, rounded to float32 (the values the Rust test uploads),
and printed together with the results as Rust constants. Run:

    python3 scripts/rnn_reference.py
"""

import numpy as np


def values(n, seed):
    """n fixed values in about [-0.8, 0.8], rounded to float32 and widened again."""
    k = np.arange(n, dtype=np.float64)
    v = 0.8 * np.sin(0.9 * k + 1.3 * seed) * np.cos(0.37 * k * seed + 0.5)
    return v.astype(np.float32).astype(np.float64)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    gates = w_ih @ x + b_ih + w_hh @ h + b_hh
    i, f, g, o = np.split(gates, 4)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c = f * c + i * g
    return o * np.tanh(c), c


def gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    xr, xz, xn = np.split(w_ih @ x + b_ih, 3)
    hr, hz, hn = np.split(w_hh @ h + b_hh, 3)
    r = sigmoid(xr + hr)
    z = sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


def run_sequence(cell, xs, state, reverse):
    """One sequence [T, I] through one direction; returns outputs [T, H] and the final state."""
    steps = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
    out = [None] * len(xs)
    for t in steps:
        state = cell(xs[t], state)
        out[t] = state[0]
    return np.array(out), state


def rust_array(name, array):
    """A Rust f32 array: each value rounded to f32 and written in its shortest exact form."""
    flat = ", ".join(str(np.float32(v)) for v in np.asarray(array).ravel())
    return f"const {name}: [f32; {np.asarray(array).size}] = [{flat}];"


def lstm_case():
    """One layer, T=4, B=2, input 3, hidden 2, with biases and initial states."""
    T, B, I, H = 4, 2, 3, 2
    x = values(T * B * I, 1).reshape(T, B, I)
    w_ih, w_hh = values(4 * H * I, 2).reshape(4 * H, I), values(4 * H * H, 3).reshape(4 * H, H)
    b_ih, b_hh = values(4 * H, 4), values(4 * H, 5)
    h0, c0 = values(B * H, 6).reshape(B, H), values(B * H, 7).reshape(B, H)
    outs, hn, cn = [], [], []
    for b in range(B):
        cell = lambda xt, s: lstm_cell(xt, s[0], s[1], w_ih, w_hh, b_ih, b_hh)
        y, (h, c) = run_sequence(cell, x[:, b], (h0[b], c0[b]), False)
        outs.append(y), hn.append(h), cn.append(c)
    print("// LSTM: T=4, B=2, input 3, hidden 2; inputs values(n, seed) for seeds 1..7.")
    print(rust_array("LSTM_OUTPUT", np.stack(outs, 1)))
    print(rust_array("LSTM_H_N", np.array(hn)))
    print(rust_array("LSTM_C_N", np.array(cn)))


def gru_case():
    """One layer, T=4, B=2, input 3, hidden 2, with biases and an initial state."""
    T, B, I, H = 4, 2, 3, 2
    x = values(T * B * I, 11).reshape(T, B, I)
    w_ih, w_hh = values(3 * H * I, 12).reshape(3 * H, I), values(3 * H * H, 13).reshape(3 * H, H)
    b_ih, b_hh = values(3 * H, 14), values(3 * H, 15)
    h0 = values(B * H, 16).reshape(B, H)
    outs, hn = [], []
    for b in range(B):
        cell = lambda xt, s: (gru_cell(xt, s[0], w_ih, w_hh, b_ih, b_hh),)
        y, (h,) = run_sequence(cell, x[:, b], (h0[b],), False)
        outs.append(y), hn.append(h)
    print("// GRU: T=4, B=2, input 3, hidden 2; inputs values(n, seed) for seeds 11..16.")
    print(rust_array("GRU_OUTPUT", np.stack(outs, 1)))
    print(rust_array("GRU_H_N", np.array(hn)))


def packed_bidirectional_lstm_case():
    """One bidirectional layer without biases, T=4, B=2, lengths [4, 2], zero states."""
    T, B, I, H = 4, 2, 3, 2
    lengths = [4, 2]
    x = values(T * B * I, 21).reshape(T, B, I)
    w = {
        "forward": (values(4 * H * I, 22).reshape(4 * H, I), values(4 * H * H, 23).reshape(4 * H, H)),
        "reverse": (values(4 * H * I, 24).reshape(4 * H, I), values(4 * H * H, 25).reshape(4 * H, H)),
    }
    zero = np.zeros(4 * H)
    output = np.zeros((T, B, 2 * H))
    hn = np.zeros((2, B, H))
    cn = np.zeros((2, B, H))
    for b in range(B):
        n = lengths[b]
        for d, name in enumerate(["forward", "reverse"]):
            w_ih, w_hh = w[name]
            cell = lambda xt, s: lstm_cell(xt, s[0], s[1], w_ih, w_hh, zero, zero)
            y, (h, c) = run_sequence(cell, x[:n, b], (np.zeros(H), np.zeros(H)), d == 1)
            output[:n, b, d * H:(d + 1) * H] = y
            hn[d, b], cn[d, b] = h, c
    print("// Bidirectional LSTM without biases: T=4, B=2, lengths [4, 2]; seeds 21..25.")
    print(rust_array("PACKED_OUTPUT", output))
    print(rust_array("PACKED_H_N", hn))
    print(rust_array("PACKED_C_N", cn))


if __name__ == "__main__":
    lstm_case()
    gru_case()
    packed_bidirectional_lstm_case()
