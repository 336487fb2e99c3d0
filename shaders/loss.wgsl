// loss.wgsl: fused cross-entropy of logits [rows, classes] against i32 class indices,
// forward and backward, each one dispatch (the CPU twins are in src/cpu/loss.rs).
//
// Bindings: params; logits (f32, contiguous [rows, classes] from logits_offset); targets
// (i32, [rows] from targets_offset); weight (f32 class weights [classes] from
// weight_offset, read only with FLAG_WEIGHT); aux (f32, the forward's saved values from
// aux_offset: lse[rows] then the weight sum; backward only); grad (f32, the gradient of
// the loss from grad_offset: one value, or one per row for REDUCTION_NONE; backward
// only); out (f32).
//
// A row is ignored when FLAG_IGNORE is set and its target equals ignore_index: it adds
// nothing to the loss, its weight counts 0 and its gradient is 0. A target outside
// 0..classes that is not ignored makes its row's loss, the weight sum and its gradient
// NaN, so a bad index shows up instead of reading out of bounds.
//
// cross_entropy_forward runs as one workgroup. Invocation t takes rows t, t + WG, ... in
// order; for each row it computes lse = max + log(sum(exp(x - max))), the row's loss
// l = w[y] * (lse - x[y]) and weight w[y], and adds them to its running sums; then
// workgroup_sum_vec2 (workgroup_sum_vec2.wgsl) adds the WG partial pairs. out holds
// [losses | lse | weight sum]: the losses are one value (the sum, or the sum divided by
// the weight sum for REDUCTION_MEAN) or, for REDUCTION_NONE, one per row.
//
// cross_entropy_backward: one invocation per logit, out[r, c] =
// (exp(x[r, c] - lse[r]) - (c == y[r])) * (w[y[r]] * scale), scale being the incoming
// gradient (its row's for REDUCTION_NONE), divided by the weight sum for REDUCTION_MEAN.

struct LossParams {
    rows: u32,
    classes: u32,
    logits_offset: u32,
    targets_offset: u32,
    weight_offset: u32,
    aux_offset: u32,
    grad_offset: u32,
    flags: u32,
    ignore_index: i32,
    reduction: u32,
    _pad0: u32,
    _pad1: u32,
}

const FLAG_WEIGHT: u32 = 1u;
const FLAG_IGNORE: u32 = 2u;
const REDUCTION_MEAN: u32 = 0u;
const REDUCTION_SUM: u32 = 1u;
const REDUCTION_NONE: u32 = 2u;

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<i32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read> grad: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// A quiet NaN made from a uniform value, so that no compiler folds it into a constant
// (WGSL rejects NaN in constant expressions).
fn quiet_nan() -> f32 {
    return bitcast<f32>(0x7fc00000u | (p.flags & 0u));
}

fn is_ignored(t: i32) -> bool {
    return (p.flags & FLAG_IGNORE) != 0u && t == p.ignore_index;
}

fn in_range(t: i32) -> bool {
    return t >= 0 && u32(t) < p.classes;
}

fn class_weight(t: i32) -> f32 {
    if ((p.flags & FLAG_WEIGHT) != 0u) {
        return weight[p.weight_offset + u32(t)];
    }
    return 1.0;
}

@compute @workgroup_size(WG)
fn cross_entropy_forward(@builtin(local_invocation_index) lid: u32) {
    let lse_at = select(1u, p.rows, p.reduction == REDUCTION_NONE);
    var acc_loss = 0.0;
    var acc_weight = 0.0;
    for (var r = lid; r < p.rows; r = r + WG) {
        let row = p.logits_offset + r * p.classes;
        var m = logits[row];
        for (var c = 1u; c < p.classes; c = c + 1u) {
            m = nan_max(m, logits[row + c]);
        }
        var s = 0.0;
        for (var c = 0u; c < p.classes; c = c + 1u) {
            s = s + exp(logits[row + c] - m);
        }
        let lse = m + log(s);
        out[lse_at + r] = lse;
        let t = targets[p.targets_offset + r];
        var l = 0.0;
        var w = 0.0;
        if (is_ignored(t)) {
            l = 0.0;
            w = 0.0;
        } else if (!in_range(t)) {
            l = quiet_nan();
            w = quiet_nan();
        } else {
            w = class_weight(t);
            l = w * (lse - logits[row + u32(t)]);
        }
        if (p.reduction == REDUCTION_NONE) {
            out[r] = l;
        }
        acc_loss = acc_loss + l;
        acc_weight = acc_weight + w;
    }
    let sums = workgroup_sum_vec2(vec2<f32>(acc_loss, acc_weight), lid);
    if (lid == 0u) {
        let total = sums.x;
        let weight_sum = sums.y;
        out[lse_at + p.rows] = weight_sum;
        if (p.reduction == REDUCTION_MEAN) {
            out[0] = total / weight_sum;
        } else if (p.reduction == REDUCTION_SUM) {
            out[0] = total;
        }
    }
}

@compute @workgroup_size(WG)
fn cross_entropy_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.rows * p.classes) {
        return;
    }
    let r = i / p.classes;
    let c = i - r * p.classes;
    let t = targets[p.targets_offset + r];
    var scale: f32;
    if (p.reduction == REDUCTION_NONE) {
        scale = grad[p.grad_offset + r];
    } else if (p.reduction == REDUCTION_SUM) {
        scale = grad[p.grad_offset];
    } else {
        scale = grad[p.grad_offset] / aux[p.aux_offset + p.rows];
    }
    var v: f32;
    if (is_ignored(t)) {
        v = 0.0;
    } else if (!in_range(t)) {
        v = quiet_nan();
    } else {
        let prob = exp(logits[p.logits_offset + i] - aux[p.aux_offset + r]);
        let onehot = select(0.0, 1.0, c == u32(t));
        v = (prob - onehot) * (class_weight(t) * scale);
    }
    out[i] = v;
}
