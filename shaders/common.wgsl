// common.wgsl: prepended to every kernel file by src/gpu/shaders.rs.
//
// 1-D kernels run WG invocations per workgroup. The host folds a workgroup count larger
// than the per-dimension limit (65,535) into a 2-D grid; linear_workgroup undoes that.

const WG: u32 = 256u;

// The index of this workgroup in the folded x-y grid, counted row-major.
fn linear_workgroup(wg: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wg.y * nwg.x + wg.x;
}

// The global invocation index of a 1-D kernel.
fn linear_index(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return linear_workgroup(wg, nwg) * WG + lid;
}

// Storage offset (in elements, before the view's own offset) of the i-th element in
// row-major order of a view with the given shape and strides. Shapes and strides are
// packed eight to a pair of vec4s so they keep uniform-buffer alignment.
fn strided_offset(i: u32, rank: u32, shape: array<vec4<u32>, 2>, strides: array<vec4<u32>, 2>) -> u32 {
    var sh = shape;
    var st = strides;
    var rem = i;
    var off = 0u;
    for (var d = rank; d > 0u; d = d - 1u) {
        let k = d - 1u;
        let n = sh[k / 4u][k % 4u];
        off = off + (rem % n) * st[k / 4u][k % 4u];
        rem = rem / n;
    }
    return off;
}

// True when x is NaN, decided on the bits. `x != x` cannot be used: naga compiles float
// `!=` to SPIR-V's ordered not-equal, which is false for NaN, and WGSL lets compilers
// assume that NaN never occurs in float arithmetic.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// Max and min that propagate NaN, as PyTorch's maximum/minimum/max do. WGSL's max and min
// leave NaN handling to the hardware.
fn nan_max(a: f32, b: f32) -> f32 {
    if (is_nan(a)) {
        return a;
    }
    if (is_nan(b)) {
        return b;
    }
    return max(a, b);
}

fn nan_min(a: f32, b: f32) -> f32 {
    if (is_nan(a)) {
        return a;
    }
    if (is_nan(b)) {
        return b;
    }
    return min(a, b);
}

// The f32 value of the f16 bits in the low 16 bits of h (the f16 kernels' packed
// storage, see half.wgsl), exact, decided on the bits:
// `unpack2x16float` would need a capability some back-ends lack, and float arithmetic on
// the subnormals could be flushed to zero. Branch-free, with one return: a function that
// may return early makes naga treat its callers' later control flow as non-uniform, which
// the cooperative-matrix kernel cannot have.
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    let normal = sign | ((e + 112u) << 23u) | (m << 13u);
    // Infinity or NaN (payload kept).
    let special = sign | 0x7f800000u | (m << 13u);
    // Subnormal: m * 2^-24 = 1.f * 2^(top - 24), normal in f32 (not used when m is 0).
    let top = firstLeadingBit(m);
    let subnormal = sign | ((top + 103u) << 23u) | ((m << ((23u - top) & 31u)) & 0x7fffffu);
    let small = select(subnormal, sign, m == 0u);
    return bitcast<f32>(select(select(normal, special, e == 0x1fu), small, e == 0u));
}

// The logistic function without overflow: exp of a non-positive argument only. Every
// kernel that applies it (elementwise, the matmul epilogue, the recurrent gates) calls
// this one, with the formula of the CPU reference, so both devices round alike.
fn sigmoid_f(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// tanh clamped to [-10, 10], where it is already +-1 in f32: some back-ends compute tanh
// through exp, which overflows to NaN for large arguments. NaN stays NaN.
fn tanh_f(x: f32) -> f32 {
    return select(tanh(clamp(x, -10.0, 10.0)), x, is_nan(x));
}
