// layer_norm.wgsl: layer normalisation over the rows of contiguous [rows, len] matrices,
// where a row is one normalised block (the trailing `normalized_shape` dimensions).
//
// Bindings: params, in0..in3 (f32, read-only, each starting at its own element offset),
// out and out2 (f32, written from element 0). Per-column vectors (weight, bias) are read at
// offset + j; the statistics table is a [2, rows] matrix: row 0 the means, row 1
// rstd = 1 / sqrt(biased variance + eps).
//
// Entry points and what their operands are (x is always in0, the weight always in2):
//   layer_norm_forward          in0 x, in2 weight, in3 bias  -> out y [rows, len],
//                                                               out2 statistics [2, rows]
//   layer_norm_backward         in0 x, in1 dy, in2 weight, in3 statistics -> out dx [rows, len]
//   layer_norm_param_backward   in0 x, in1 dy, in3 statistics -> out [chunks, 2, len]: per
//                               chunk of chunk_rows rows, the sums over its rows of
//                               dy * xhat (weight gradient) and of dy (bias gradient)
// Unused inputs and outputs are bound to other buffers the launcher has and never touched.
//
// forward and backward run one workgroup per row: every invocation folds a strided share
// of the row, then workgroup_sum_vec2 (workgroup_sum_vec2.wgsl) adds the partial sums. param_backward runs
// one workgroup per (tile of COLS columns, chunk of rows): COLS adjacent invocations read
// adjacent columns of a row (coalesced), ROW_LANES such groups take every ROW_LANES-th row
// of the chunk, and the same tree over each column's lanes finishes its sums.

struct LayerNormParams {
    rows: u32,
    len: u32,
    flags: u32,
    chunk_rows: u32,
    offsets: vec4<u32>,  // of in0, in1, in2, in3
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const HAS_WEIGHT: u32 = 1u;
const HAS_BIAS: u32 = 2u;

// Columns per param_backward tile, and lanes over rows: COLS * ROW_LANES = WG.
const COLS: u32 = 32u;
const ROW_LANES: u32 = 8u;

@group(0) @binding(0) var<uniform> p: LayerNormParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;

// Element j of the weight, or 1 without one.
fn weight_at(j: u32) -> f32 {
    if ((p.flags & HAS_WEIGHT) != 0u) {
        return in2[p.offsets.z + j];
    }
    return 1.0;
}

// Mean and biased variance in two passes over the row (the mean, then the squared
// deviations from it) rather than E[x^2] - E[x]^2, which cancels catastrophically when
// the mean is large against the spread.
@compute @workgroup_size(WG)
fn layer_norm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = p.offsets.x + row * p.len;
    let count = f32(p.len);
    var sum = 0.0;
    for (var j = lid; j < p.len; j = j + WG) {
        sum = sum + in0[base + j];
    }
    let mean = workgroup_sum_vec2(vec2<f32>(sum, 0.0), lid).x / count;
    var squares = 0.0;
    for (var j = lid; j < p.len; j = j + WG) {
        let d = in0[base + j] - mean;
        squares = squares + d * d;
    }
    let variance = workgroup_sum_vec2(vec2<f32>(squares, 0.0), lid).x / count;
    let rstd = 1.0 / sqrt(variance + p.eps);
    for (var j = lid; j < p.len; j = j + WG) {
        var y = (in0[base + j] - mean) * rstd * weight_at(j);
        if ((p.flags & HAS_BIAS) != 0u) {
            y = y + in3[p.offsets.w + j];
        }
        out[row * p.len + j] = y;
    }
    if (lid == 0u) {
        out2[row] = mean;
        out2[p.rows + row] = rstd;
    }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * weight and
// xhat = (x - mean) * rstd: the input gradient of one row, PyTorch's formula.
@compute @workgroup_size(WG)
fn layer_norm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let x_base = p.offsets.x + row * p.len;
    let dy_base = p.offsets.y + row * p.len;
    let mean = in3[p.offsets.w + row];
    let rstd = in3[p.offsets.w + p.rows + row];
    var acc = vec2<f32>(0.0, 0.0);
    for (var j = lid; j < p.len; j = j + WG) {
        let g = in1[dy_base + j] * weight_at(j);
        let xhat = (in0[x_base + j] - mean) * rstd;
        acc = acc + vec2<f32>(g, g * xhat);
    }
    let sums = workgroup_sum_vec2(acc, lid) / f32(p.len);
    for (var j = lid; j < p.len; j = j + WG) {
        let g = in1[dy_base + j] * weight_at(j);
        let xhat = (in0[x_base + j] - mean) * rstd;
        out[row * p.len + j] = rstd * (g - sums.x - xhat * sums.y);
    }
}

@compute @workgroup_size(WG)
fn layer_norm_param_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tiles = (p.len + COLS - 1u) / COLS;
    let chunks = (p.rows + p.chunk_rows - 1u) / p.chunk_rows;
    let group = linear_workgroup(wg, nwg);
    if (group >= tiles * chunks) {
        return;
    }
    let tile = group % tiles;
    let chunk = group / tiles;
    let lane = lid / COLS;
    let j = tile * COLS + lid % COLS;
    let first = chunk * p.chunk_rows;
    let end = min(first + p.chunk_rows, p.rows);
    var acc = vec2<f32>(0.0, 0.0);
    if (j < p.len) {
        for (var r = first + lane; r < end; r = r + ROW_LANES) {
            let xhat = (in0[p.offsets.x + r * p.len + j] - in3[p.offsets.w + r]) * in3[p.offsets.w + p.rows + r];
            let dy = in1[p.offsets.y + r * p.len + j];
            acc = acc + vec2<f32>(dy * xhat, dy);
        }
    }
    let sums = workgroup_sum_vec2_groups(acc, lid, lane, ROW_LANES, COLS);
    if (lane == 0u && j < p.len) {
        out[chunk * 2u * p.len + j] = sums.x;
        out[(chunk * 2u + 1u) * p.len + j] = sums.y;
    }
}
