"""Independent float64 reference values for tests/attention.rs.

Computes torch.nn.MultiheadAttention's forward pass (batch_first=True) with NumPy in
float64, following the equations of PyTorch's F.multi_head_attention_forward:

    q, k, v = query W_q^T + b_q, key W_k^T + b_k, value W_v^T + b_v
    (W_q, W_k, W_v are the row blocks of in_proj_weight, b_* those of in_proj_bias)
    per head h:   A_h = softmax(q_h k_h^T / sqrt(E / H) + attn_mask, masked keys -inf)
                  o_h = A_h v_h
    output = concat_h(o_h) W_o^T + b_o
    weights = mean_h(A_h) when averaged, else A_h per head

Inputs and parameters come from a closed formula, det(n, a, b, c)[i] = c * sin(a * i + b)
rounded to float32, which the Rust test evaluates the same way, so no random generator
has to agree between the two. Run `python3 scripts/mha_reference.py` and paste its output
into tests/attention.rs.
"""

import numpy as np


def det(n, a, b, c):
    i = np.arange(n, dtype=np.float64)
    return (c * np.sin(a * i + b)).astype(np.float32).astype(np.float64)


def softmax(x):
    m = np.max(x, axis=-1, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def mha(query, key, value, w_in, b_in, w_out, b_out, heads, attn_mask=None, key_padding_mask=None,
        causal=False):
    n, l, e = query.shape
    s = key.shape[1]
    dh = e // heads
    w_q, w_k, w_v = w_in[:e], w_in[e:2 * e], w_in[2 * e:]
    b_q, b_k, b_v = b_in[:e], b_in[e:2 * e], b_in[2 * e:]
    q = query @ w_q.T + b_q
    k = key @ w_k.T + b_k
    v = value @ w_v.T + b_v
    split = lambda t, length: t.reshape(n, length, heads, dh).transpose(0, 2, 1, 3)
    q, k, v = split(q, l), split(k, s), split(v, s)
    scores = (q / np.sqrt(dh)) @ k.transpose(0, 1, 3, 2)  # [N, H, L, S]
    if attn_mask is not None:
        scores = scores + attn_mask
    if causal:
        scores = np.where(np.tril(np.ones((l, s), dtype=bool)), scores, -np.inf)
    if key_padding_mask is not None:
        scores = np.where(key_padding_mask[:, None, None, :], -np.inf, scores)
    weights = softmax(scores)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(n, l, e)
    return out @ w_out.T + b_out, weights


def rust_array(name, values):
    flat = ", ".join(f"{x:.9e}" for x in values.reshape(-1))
    return f"const {name}: [f64; {values.size}] = [{flat}];"


def main():
    e, heads, n, l, s = 6, 2, 2, 3, 4
    query = det(n * l * e, 0.53, 0.2, 1.0).reshape(n, l, e)
    key = det(n * s * e, 0.71, -0.4, 1.0).reshape(n, s, e)
    value = det(n * s * e, 0.29, 1.1, 1.5).reshape(n, s, e)
    w_in = det(3 * e * e, 0.37, 0.11, 0.5).reshape(3 * e, e)
    b_in = det(3 * e, 0.9, 0.3, 0.2)
    w_out = det(e * e, 0.61, -0.7, 0.4).reshape(e, e)
    b_out = det(e, 1.7, 0.5, 0.1)

    # Case 1: cross-attention with an additive [L, S] mask and the last key of the second
    # sequence marked as padding; weights averaged over the heads.
    attn_mask = det(l * s, 1.3, 0.0, 0.5).reshape(l, s)
    padding = np.array([[False, False, False, False], [False, False, False, True]])
    out, weights = mha(query, key, value, w_in, b_in, w_out, b_out, heads, attn_mask=attn_mask,
                       key_padding_mask=padding)
    print(rust_array("CROSS_OUTPUT", out))
    print(rust_array("CROSS_WEIGHTS", weights.mean(axis=1)))

    # Case 2: causal self-attention of the query, weights per head.
    out, weights = mha(query, query, query, w_in, b_in, w_out, b_out, heads, causal=True)
    print(rust_array("CAUSAL_OUTPUT", out))
    print(rust_array("CAUSAL_WEIGHTS", weights))


if __name__ == "__main__":
    main()
