// optim.wgsl: fused optimizer updates, one parameter tensor per dispatch, in place.
//
// Bindings: params, grad (f32, contiguous from grad_offset), param (f32, updated in
// place), state0, state1, state2 (f32, the optimizer's per-element state, updated in
// place; an update that needs fewer binds the param buffer's neighbours it has, unused).
// One invocation updates one element: it reads the gradient, the parameter and its
// state, and writes the new parameter and state, with PyTorch's formulas and order of
// operations (torch.optim, foreach=False). Scalars the whole tensor shares (bias
// corrections, the learning rate after decay) are computed once on the host.
//
// state use:  sgd: state0 = momentum buffer.  adam/adamw: state0 = exp_avg, state1 =
// exp_avg_sq.  adagrad: state0 = sum.  rmsprop: state0 = square_avg, state1 =
// momentum buffer, state2 = grad_avg (centered).

struct OptimParams {
    numel: u32,
    grad_offset: u32,
    flags: u32,        // FLAG_* below
    _pad: u32,
    lr: f32,           // adam: lr / bias_correction1; adagrad: lr / (1 + (step - 1) * lr_decay)
    weight_decay: f32,
    beta1: f32,        // sgd and rmsprop: momentum; adam: beta1
    beta2: f32,        // sgd: dampening; adam: beta2; rmsprop: alpha
    eps: f32,
    bias_correction2_sqrt: f32, // adam
    decoupled_lr: f32, // adamw: the plain lr, for the decoupled decay
    _pad1: f32,
}

const FLAG_NESTEROV: u32 = 1u;
const FLAG_FIRST_STEP: u32 = 2u;   // sgd: the momentum buffer starts as the gradient
const FLAG_DECOUPLED: u32 = 4u;    // adamw
const FLAG_CENTERED: u32 = 8u;     // rmsprop
const FLAG_MOMENTUM: u32 = 16u;    // sgd and rmsprop: momentum is non-zero
const FLAG_MAXIMIZE: u32 = 32u;

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> state0: array<f32>;
@group(0) @binding(4) var<storage, read_write> state1: array<f32>;
@group(0) @binding(5) var<storage, read_write> state2: array<f32>;

fn has(flag: u32) -> bool {
    return (p.flags & flag) != 0u;
}

fn gradient(i: u32) -> f32 {
    let g = grad[p.grad_offset + i];
    return select(g, -g, has(FLAG_MAXIMIZE));
}

@compute @workgroup_size(WG)
fn sgd_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    var g = gradient(i);
    let x = param[i];
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    if (has(FLAG_MOMENTUM)) {
        var buf = g;
        if (!has(FLAG_FIRST_STEP)) {
            buf = p.beta1 * state0[i] + (1.0 - p.beta2) * g;
        }
        state0[i] = buf;
        g = select(buf, g + p.beta1 * buf, has(FLAG_NESTEROV));
    }
    param[i] = x - p.lr * g;
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    var g = gradient(i);
    var x = param[i];
    if (has(FLAG_DECOUPLED)) {
        x = x * (1.0 - p.decoupled_lr * p.weight_decay);
    } else if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    let m = p.beta1 * state0[i] + (1.0 - p.beta1) * g;
    let v = p.beta2 * state1[i] + (1.0 - p.beta2) * g * g;
    state0[i] = m;
    state1[i] = v;
    let denom = sqrt(v) / p.bias_correction2_sqrt + p.eps;
    param[i] = x - p.lr * (m / denom);
}

@compute @workgroup_size(WG)
fn adagrad_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    var g = gradient(i);
    let x = param[i];
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    let s = state0[i] + g * g;
    state0[i] = s;
    param[i] = x - p.lr * (g / (sqrt(s) + p.eps));
}

@compute @workgroup_size(WG)
fn rmsprop_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    var g = gradient(i);
    let x = param[i];
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    let alpha = p.beta2;
    let sq = alpha * state0[i] + (1.0 - alpha) * g * g;
    state0[i] = sq;
    var avg: f32;
    if (has(FLAG_CENTERED)) {
        let ga = alpha * state2[i] + (1.0 - alpha) * g;
        state2[i] = ga;
        avg = sqrt(sq - ga * ga) + p.eps;
    } else {
        avg = sqrt(sq) + p.eps;
    }
    if (has(FLAG_MOMENTUM)) {
        let buf = p.beta1 * state1[i] + g / avg;
        state1[i] = buf;
        param[i] = x - p.lr * buf;
    } else {
        param[i] = x - p.lr * (g / avg);
    }
}
