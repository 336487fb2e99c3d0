// elementwise.wgsl: unary, binary and where, on strided views with NumPy broadcasting.
//
// Bindings: params, a, b, cond (each a strided f32 view; broadcast dimensions have
// stride 0), out (f32, strided: contiguous for every op but copies into a view).
// One invocation computes one output element: it turns its linear index into the storage
// offset of each operand (a plain add when the operand is contiguous) and applies the op.
// Unary entry points read only `a`; binary ones `a` and `b`; where_select all three.
// The file is built twice (src/gpu/shaders.rs): as `elementwise`, and as
// `elementwise_contiguous` for dispatches whose operands are all contiguous.

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> cond: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// CONTIGUOUS is defined before this file: true in the `elementwise_contiguous` build, which
// the launcher uses only when every operand is contiguous (`contiguous` 1) or one value
// broadcast to all elements (`contiguous` 0, every stride 0), so that the strided path is
// compiled out rather than skipped at run time.
fn operand_offset(which: u32, i: u32) -> u32 {
    if (CONTIGUOUS) {
        return p.offsets[which] + i * p.contiguous[which];
    }
    if (p.contiguous[which] == 1u) {
        return p.offsets[which] + i;
    }
    return p.offsets[which] + strided_offset(i, p.rank, p.shape, p.strides[which]);
}

// ---- scalar helpers shared with the CPU reference (src/cpu/elementwise.rs) ----

// Real power with C's pow semantics for negative bases: integer exponents keep the sign
// rule, other exponents give NaN for finite bases (and +inf or +0 for -inf); zero bases
// handled explicitly since WGSL's pow is undefined there.
fn pow_real(x: f32, y: f32) -> f32 {
    if (y == 0.0) {
        return 1.0;
    }
    if (x == 0.0) {
        if (y > 0.0) {
            return 0.0;
        }
        return bitcast<f32>(0x7f800000u); // +inf
    }
    let r = pow(abs(x), y);
    if (x > 0.0) {
        return r;
    }
    if (floor(y) != y) {
        let neg_inf = bitcast<f32>(0xff800000u);
        return select(bitcast<f32>(0x7fc00000u), r, x == neg_inf); // NaN; +inf or +0 for -inf
    }
    let odd = abs(y) < 16777216.0 && (i32(abs(y)) & 1) == 1;
    return select(r, -r, odd);
}

// log(1 + y) accurate for small y (Goldberg's trick); WGSL has no log1p.
fn log1p_f(y: f32) -> f32 {
    let u = 1.0 + y;
    if (u == 1.0) {
        return y;
    }
    return log(u) * y / (u - 1.0);
}

// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7); WGSL has no erf.
fn erf_f(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(x));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-x * x);
    return select(-r, r, x >= 0.0);
}

fn unary_f(op: u32, x: f32) -> f32 {
    switch op {
        case 0u: { return -x; }
        case 1u: { return abs(x); }
        case 2u: { return exp(x); }
        case 3u: { return log(x); }
        case 4u: { return sqrt(x); }
        case 5u: { return inverseSqrt(x); }
        case 6u: { return x * x; }
        case 7u: { return 1.0 / x; }
        case 8u: { return sin(x); }
        case 9u: { return cos(x); }
        case 10u: { return x * p.scalar0 + p.scalar1; }
        case 11u: { return pow_real(x, p.scalar0); }
        case 12u: { return nan_min(nan_max(x, p.scalar0), p.scalar1); }
        case 13u: { return select(0.0, x, x > 0.0 || is_nan(x)); }
        case 14u: { return select(p.scalar0 * x, x, x > 0.0); }
        case 15u: { return select(p.scalar0 * (exp(x) - 1.0), x, x > 0.0); }
        case 16u: { return sigmoid_f(x); }
        // tanh of large arguments is NaN on some back-ends (exp overflow); it is ±1 in f32 past 10.
        // The clamp would turn NaN into ±1, so NaN is passed through first.
        case 17u: { return tanh_f(x); }
        case 18u: { return 0.5 * x * (1.0 + erf_f(x * 0.70710678118654752)); }
        // PyTorch's threshold: softplus(x) = x for x > 20.
        case 19u: { return select(max(x, 0.0) + log1p_f(exp(-abs(x))), x, x > 20.0); }
        case 20u: { return x * sigmoid_f(x); }
        // d/dx x Φ(x) = Φ(x) + x φ(x), φ the standard normal density.
        default: { return 0.5 * (1.0 + erf_f(x * 0.70710678118654752)) + x * 0.3989422804014327 * exp(-0.5 * x * x); }
    }
}

fn binary_f(op: u32, x: f32, y: f32) -> f32 {
    switch op {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return pow_real(x, y); }
        case 5u: { return nan_max(x, y); }
        case 6u: { return nan_min(x, y); }
        case 7u: { return select(0.0, 1.0, x == y); }
        // Not `x != y`: float != is an ordered comparison in SPIR-V, false when either is NaN.
        case 8u: { return select(0.0, 1.0, !(x == y)); }
        case 9u: { return select(0.0, 1.0, x < y); }
        case 10u: { return select(0.0, 1.0, x <= y); }
        case 11u: { return select(0.0, 1.0, x > y); }
        default: { return select(0.0, 1.0, x >= y); }
    }
}

// The op codes are compile-time constants of each entry point below, so the switch folds
// away; one entry point per op keeps the kernel findable by the op's name.
fn unary_at(op: u32, i: u32) {
    if (i >= p.numel) {
        return;
    }
    out[operand_offset(3u, i)] = unary_f(op, a[operand_offset(0u, i)]);
}

fn binary_at(op: u32, i: u32) {
    if (i >= p.numel) {
        return;
    }
    out[operand_offset(3u, i)] = binary_f(op, a[operand_offset(0u, i)], b[operand_offset(1u, i)]);
}

@compute @workgroup_size(WG)
fn unary_neg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(0u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_abs(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(1u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_exp(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(2u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_log(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(3u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_sqrt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(4u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_rsqrt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(5u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_square(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(6u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_recip(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(7u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_sin(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(8u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_cos(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(9u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_affine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(10u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_pow_scalar(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(11u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_clamp(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(12u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(13u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_leaky_relu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(14u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_elu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(15u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_sigmoid(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(16u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_tanh(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(17u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_gelu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(18u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_softplus(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(19u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_silu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(20u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn unary_gelu_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { unary_at(21u, linear_index(wg, nwg, lid)); }

@compute @workgroup_size(WG)
fn binary_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(0u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_sub(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(1u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_mul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(2u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_div(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(3u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_pow(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(4u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_maximum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(5u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_minimum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(6u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_eq(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(7u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_ne(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(8u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_lt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(9u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_le(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(10u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_gt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(11u, linear_index(wg, nwg, lid)); }
@compute @workgroup_size(WG)
fn binary_ge(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) { binary_at(12u, linear_index(wg, nwg, lid)); }

@compute @workgroup_size(WG)
fn where_select(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    // Any non-zero condition, NaN included, selects a (see `ne` on why not `!= 0.0`).
    let keep_a = !(cond[operand_offset(2u, i)] == 0.0);
    out[operand_offset(3u, i)] = select(b[operand_offset(1u, i)], a[operand_offset(0u, i)], keep_a);
}
