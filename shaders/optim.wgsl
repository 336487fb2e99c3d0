// optim.wgsl: fused optimizer updates of several parameter tensors per dispatch (a
// multi-tensor apply), in place.
//
// The file is built twice (see gpu/shaders.rs), differing only in SEGMENTS, the number of
// parameter tensors one dispatch can update: `optim` with 3, inside WebGPU's default of
// eight storage buffers per shader stage so it serves every adapter, and `optim_wide` with
// 12, for adapters that allow 25 (every desktop Vulkan, DX12 and Metal driver). The
// bindings are generated beside SEGMENTS: params; then for each segment s, grad<s> (f32,
// contiguous from its segment's grad_offset) and param<s> (f32, updated in place from
// element 0); last, state (f32, the optimizer's state arena, updated in place). A dispatch
// with fewer segments binds unused grads to grad0 and unused params to distinct dummy
// buffers it never touches. grad_at, param_at and set_param select a segment's binding.
//
// Parameters own their buffers (they belong to the model), so they cannot share one arena
// and each needs its own binding; the segment table lives in the params uniform, which
// every dispatch's params share (one buffer, written once per submit), so a step uploads
// nothing else.
//
// The segment table: seg[s] = (first_workgroup, numel, grad_offset, state_offset), for
// s < segments. Segment s owns the workgroups from its first_workgroup up to the next
// segment's, each workgroup one run of WG consecutive elements, so a workgroup never
// straddles two tensors and control flow stays uniform within it. One invocation updates
// one element: it reads the gradient, the parameter and its state, and writes the new
// parameter and state, with PyTorch's formulas and order of operations (torch.optim,
// foreach=False). Scalars the tensors share (bias corrections, the learning rate after
// decay) are computed once on the host. Each element goes through the same arithmetic
// whichever build runs it and however many segments share its dispatch.
//
// State k of element i of segment s lives at state_offset + state_pos[k] * numel + i: a
// segment's state vectors lie one after the other in the arena, only those the update
// uses. sgd: state 0 = momentum buffer. adam/adamw: 0 = exp_avg, 1 = exp_avg_sq.
// adagrad: 0 = sum. rmsprop: 0 = square_avg, 1 = momentum buffer, 2 = grad_avg (centered).

struct OptimParams {
    segments: u32,     // 1 to SEGMENTS
    flags: u32,        // FLAG_* below
    _pad0: u32,
    _pad1: u32,
    state_pos: vec4<u32>,
    lr: f32,           // adam: lr / bias_correction1; adagrad: lr / (1 + (step - 1) * lr_decay)
    weight_decay: f32,
    beta1: f32,        // sgd and rmsprop: momentum; adam: beta1
    beta2: f32,        // sgd: dampening; adam: beta2; rmsprop: alpha
    eps: f32,
    bias_correction2_sqrt: f32, // adam
    decoupled_lr: f32, // adamw: the plain lr, for the decoupled decay
    _pad2: f32,
    // Room for the wide build's segments; the narrow build reads the first three.
    seg: array<vec4<u32>, 12>,
}

const FLAG_NESTEROV: u32 = 1u;
const FLAG_FIRST_STEP: u32 = 2u;   // sgd: the momentum buffer starts as the gradient
const FLAG_DECOUPLED: u32 = 4u;    // adamw
const FLAG_CENTERED: u32 = 8u;     // rmsprop
const FLAG_MOMENTUM: u32 = 16u;    // sgd and rmsprop: momentum is non-zero
const FLAG_MAXIMIZE: u32 = 32u;

@group(0) @binding(0) var<uniform> p: OptimParams;

fn has(flag: u32) -> bool {
    return (p.flags & flag) != 0u;
}

// The element one invocation updates: its segment and its index in that tensor, with
// valid = false past the segment's end (the partial last workgroup of each segment).
struct Element {
    s: u32,
    i: u32,
    valid: bool,
}

fn element(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> Element {
    let w = linear_workgroup(wg, nwg);
    var s = 0u;
    for (var k = 1u; k < p.segments; k = k + 1u) {
        if (w >= p.seg[k].x) {
            s = k;
        }
    }
    let i = (w - p.seg[s].x) * WG + lid;
    return Element(s, i, i < p.seg[s].y);
}

fn gradient(e: Element) -> f32 {
    let g = grad_at(e.s, p.seg[e.s].z + e.i);
    return select(g, -g, has(FLAG_MAXIMIZE));
}

fn load_param(e: Element) -> f32 {
    return param_at(e.s, e.i);
}

fn store_param(e: Element, v: f32) {
    set_param(e.s, e.i, v);
}

// Index in the arena of state k of the element.
fn st(e: Element, k: u32) -> u32 {
    let seg = p.seg[e.s];
    return seg.w + p.state_pos[k] * seg.y + e.i;
}

@compute @workgroup_size(WG)
fn sgd_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = element(wg, nwg, lid);
    if (!e.valid) {
        return;
    }
    var g = gradient(e);
    let x = load_param(e);
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    if (has(FLAG_MOMENTUM)) {
        var buf = g;
        if (!has(FLAG_FIRST_STEP)) {
            buf = p.beta1 * state[st(e, 0u)] + (1.0 - p.beta2) * g;
        }
        state[st(e, 0u)] = buf;
        g = select(buf, g + p.beta1 * buf, has(FLAG_NESTEROV));
    }
    store_param(e, x - p.lr * g);
}

@compute @workgroup_size(WG)
fn adam_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = element(wg, nwg, lid);
    if (!e.valid) {
        return;
    }
    var g = gradient(e);
    var x = load_param(e);
    if (has(FLAG_DECOUPLED)) {
        x = x * (1.0 - p.decoupled_lr * p.weight_decay);
    } else if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    let m = p.beta1 * state[st(e, 0u)] + (1.0 - p.beta1) * g;
    let v = p.beta2 * state[st(e, 1u)] + (1.0 - p.beta2) * g * g;
    state[st(e, 0u)] = m;
    state[st(e, 1u)] = v;
    let denom = sqrt(v) / p.bias_correction2_sqrt + p.eps;
    store_param(e, x - p.lr * (m / denom));
}

@compute @workgroup_size(WG)
fn adagrad_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = element(wg, nwg, lid);
    if (!e.valid) {
        return;
    }
    var g = gradient(e);
    let x = load_param(e);
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    let s = state[st(e, 0u)] + g * g;
    state[st(e, 0u)] = s;
    store_param(e, x - p.lr * (g / (sqrt(s) + p.eps)));
}

@compute @workgroup_size(WG)
fn rmsprop_step(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = element(wg, nwg, lid);
    if (!e.valid) {
        return;
    }
    var g = gradient(e);
    let x = load_param(e);
    if (p.weight_decay != 0.0) {
        g = g + p.weight_decay * x;
    }
    let alpha = p.beta2;
    let sq = alpha * state[st(e, 0u)] + (1.0 - alpha) * g * g;
    state[st(e, 0u)] = sq;
    var avg: f32;
    if (has(FLAG_CENTERED)) {
        let ga = alpha * state[st(e, 2u)] + (1.0 - alpha) * g;
        state[st(e, 2u)] = ga;
        avg = sqrt(sq - ga * ga) + p.eps;
    } else {
        avg = sqrt(sq) + p.eps;
    }
    if (has(FLAG_MOMENTUM)) {
        let buf = p.beta1 * state[st(e, 1u)] + g / avg;
        state[st(e, 1u)] = buf;
        store_param(e, x - p.lr * buf);
    } else {
        store_param(e, x - p.lr * (g / avg));
    }
}
