// batch_norm.wgsl: batch normalisation over contiguous [N, C, L] tensors (channels in the
// middle; [N, C] is L = 1 and [N, C, H, W] is L = H * W).
//
// Bindings: params, in0..in3 (f32, read-only, each starting at its own offset), out (f32).
// Element (n, ch, pos) of an [N, C, L] operand is at offset + (n * C + ch) * L + pos, so
// the M = N * L elements of one channel are N runs of L. Per-channel vectors are read at
// offset + ch; a "table" is a [rows, C] matrix whose row r is read at offset + r * C + ch.
//
// Entry points and what their inputs are:
//   batch_norm_stats            in0 x, in1 weight        -> out [4, C] statistics table
//   batch_norm_apply            in0 x, in1 mean, in2 scale, in3 bias -> out [N, C, L]
//   batch_norm_backward_reduce  in0 dy, in1 x, in2 statistics table -> out [6, C] gradient table
//   batch_norm_backward_apply   in0 dy, in1 x, in2 gradient table  -> out [N, C, L]
// Unused inputs are bound to some buffer the launcher already has and never read.
//
// Statistics table rows: 0 mean, 1 biased variance, 2 invstd = 1 / sqrt(var + eps),
// 3 scale = weight * invstd.
// Gradient table rows: 0 sum(dy) (the bias gradient), 1 invstd * sum(dy * (x - mean))
// (the weight gradient), 2 mean, 3 mean(dy), 4 proj = invstd^2 * mean(dy * (x - mean)),
// 5 scale. In evaluation mode rows 3 and 4 are zero: the statistics are constants.
//
// The reductions run one workgroup per channel: every invocation folds a strided share of
// the channel's M elements, then workgroup_sum_vec2 (workgroup_sum_vec2.wgsl) adds the
// partial sums.

struct BatchNormParams {
    n: u32,
    c: u32,
    l: u32,
    flags: u32,
    offsets: vec4<u32>,  // of in0, in1, in2, in3
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const HAS_WEIGHT: u32 = 1u;
const HAS_BIAS: u32 = 2u;
const TRAINING: u32 = 4u;

@group(0) @binding(0) var<uniform> p: BatchNormParams;
@group(0) @binding(1) var<storage, read> in0: array<f32>;
@group(0) @binding(2) var<storage, read> in1: array<f32>;
@group(0) @binding(3) var<storage, read> in2: array<f32>;
@group(0) @binding(4) var<storage, read> in3: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// What channel_sums adds up per element.
const SUM_X: u32 = 0u;        // (x, 0) from in0
const SUM_SQ_DEV: u32 = 1u;   // ((x - center)^2, 0) from in0
const SUM_GRAD: u32 = 2u;     // (dy, dy * (x - center)) with dy from in0, x from in1

// The two sums `mode` names over the M elements of channel `ch`, returned to every
// invocation of the workgroup.
fn channel_sums(mode: u32, ch: u32, lid: u32, center: f32) -> vec2<f32> {
    // Invocation lid starts at element lid of the channel, (lid / L, lid % L), and steps
    // WG elements at a time; the position is carried along instead of divided out anew.
    var n = lid / p.l;
    var pos = lid % p.l;
    let step_n = WG / p.l;
    let step_pos = WG % p.l;
    var acc = vec2<f32>(0.0, 0.0);
    loop {
        if (n >= p.n) {
            break;
        }
        let e = (n * p.c + ch) * p.l + pos;
        let a = in0[p.offsets.x + e];
        switch mode {
            case SUM_X: {
                acc.x = acc.x + a;
            }
            case SUM_SQ_DEV: {
                let d = a - center;
                acc.x = acc.x + d * d;
            }
            default: {
                acc = acc + vec2<f32>(a, a * (in1[p.offsets.y + e] - center));
            }
        }
        pos = pos + step_pos;
        n = n + step_n;
        if (pos >= p.l) {
            pos = pos - p.l;
            n = n + 1u;
        }
    }
    return workgroup_sum_vec2(acc, lid);
}

// Mean and biased variance in two passes over the data (the mean, then the squared
// deviations from it) rather than E[x^2] - E[x]^2, which cancels catastrophically when
// the mean is large against the spread.
@compute @workgroup_size(WG)
fn batch_norm_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = linear_workgroup(wg, nwg);
    if (ch >= p.c) {
        return;
    }
    let count = f32(p.n * p.l);
    let mean = channel_sums(SUM_X, ch, lid, 0.0).x / count;
    let variance = channel_sums(SUM_SQ_DEV, ch, lid, mean).x / count;
    if (lid == 0u) {
        let invstd = 1.0 / sqrt(variance + p.eps);
        var weight = 1.0;
        if ((p.flags & HAS_WEIGHT) != 0u) {
            weight = in1[p.offsets.y + ch];
        }
        out[ch] = mean;
        out[p.c + ch] = variance;
        out[2u * p.c + ch] = invstd;
        out[3u * p.c + ch] = weight * invstd;
    }
}

// y = (x - mean[c]) * scale[c] + bias[c]: subtracting the mean first keeps the precision
// that x * scale + (bias - mean * scale) would lose when the mean is large.
@compute @workgroup_size(WG)
fn batch_norm_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n * p.c * p.l) {
        return;
    }
    let ch = (i / p.l) % p.c;
    var shift = 0.0;
    if ((p.flags & HAS_BIAS) != 0u) {
        shift = in3[p.offsets.w + ch];
    }
    out[i] = (in0[p.offsets.x + i] - in1[p.offsets.y + ch]) * in2[p.offsets.z + ch] + shift;
}

@compute @workgroup_size(WG)
fn batch_norm_backward_reduce(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let ch = linear_workgroup(wg, nwg);
    if (ch >= p.c) {
        return;
    }
    let table = p.offsets.z;
    let mean = in2[table + ch];
    let sums = channel_sums(SUM_GRAD, ch, lid, mean);
    if (lid == 0u) {
        let invstd = in2[table + 2u * p.c + ch];
        let count = f32(p.n * p.l);
        var mean_dy = 0.0;
        var proj = 0.0;
        if ((p.flags & TRAINING) != 0u) {
            mean_dy = sums.x / count;
            proj = sums.y / count * invstd * invstd;
        }
        out[ch] = sums.x;
        out[p.c + ch] = sums.y * invstd;
        out[2u * p.c + ch] = mean;
        out[3u * p.c + ch] = mean_dy;
        out[4u * p.c + ch] = proj;
        out[5u * p.c + ch] = in2[table + 3u * p.c + ch];
    }
}

// dx = (dy - mean(dy) - (x - mean) * proj) * scale, PyTorch's arrangement: centring x
// before scaling avoids the cancellation of an x * k + b form.
@compute @workgroup_size(WG)
fn batch_norm_backward_apply(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.n * p.c * p.l) {
        return;
    }
    let ch = (i / p.l) % p.c;
    let t = p.offsets.z;
    let mean = in2[t + 2u * p.c + ch];
    let mean_dy = in2[t + 3u * p.c + ch];
    let proj = in2[t + 4u * p.c + ch];
    let scale = in2[t + 5u * p.c + ch];
    let dy = in0[p.offsets.x + i];
    let x = in1[p.offsets.y + i];
    out[i] = (dy - mean_dy - (x - mean) * proj) * scale;
}
