// half.wgsl: conversions between f32 and f16, and copies of f16 views.
//
// Storage of f16 tensors: two elements per 32-bit word, element i in bits 16*(i%2) ..
// 16*(i%2)+15 of word i/2 (the little-endian layout of a packed `[f16]` on the host). Only
// core WGSL is used, so these kernels need no optional feature: the buffers are
// `array<u32>`, not `array<f16>`, and both conversions are integer arithmetic on the bits.
//
// Bindings: params, src (u32 words: f32 bits or packed f16), out (u32 words, written with
// atomics). Two f16 elements share a word, so two invocations may write the two halves of
// one word in the same dispatch; `half_copy` therefore clears and sets its half with
// atomicAnd/atomicOr, which commute. The other kernels write whole words (`atomicStore`).
//
// f32 -> f16 rounds to nearest, ties to even, in integer arithmetic (WGSL leaves the
// rounding of float conversions and out-of-range results to the implementation), so the
// result is bit-for-bit the host's `half::f16::from_f32`: magnitudes from 65520 up become
// infinity (the loss-scaling overflow check relies on it), NaN stays NaN.

struct HalfParams {
    numel: u32,
    rank: u32,
    src_offset: u32,
    dst_offset: u32,
    src_contiguous: u32,
    dst_contiguous: u32,
    _pad0: u32,
    _pad1: u32,
    shape: array<vec4<u32>, 2>,
    src_strides: array<vec4<u32>, 2>,
    dst_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: HalfParams;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<atomic<u32>>;

// The f16 bits (low 16 bits of the result) nearest to x, ties to even.
fn f32_to_half_bits(x: f32) -> u32 {
    let u = bitcast<u32>(x);
    let sign = (u >> 16u) & 0x8000u;
    let a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) {
        // Infinity, or NaN kept quiet with the top bits of its payload (as the half crate).
        let nan_bit = select(0u, 0x0200u, a > 0x7f800000u);
        return sign | 0x7c00u | nan_bit | ((a & 0x7fffffu) >> 13u);
    }
    if (a >= 0x477ff000u) {
        // 65520 and above: halfway to 2^16 or beyond, which rounds to infinity.
        return sign | 0x7c00u;
    }
    let e = a >> 23u;
    if (e < 102u) {
        // Below 2^-25: rounds to zero (2^-25 itself is a tie that goes to the even zero).
        return sign;
    }
    let mant = (a & 0x7fffffu) | 0x800000u;
    if (e < 113u) {
        // A subnormal f16: the value in units of 2^-24 is mant >> (126 - e), rounded.
        let s = 126u - e;
        let q = mant >> s;
        let rest = mant & ((1u << s) - 1u);
        let half_unit = 1u << (s - 1u);
        let up = rest > half_unit || (rest == half_unit && (q & 1u) == 1u);
        return sign | (q + select(0u, 1u, up));
    }
    // A normal f16: rebias the exponent, keep 10 fraction bits, round on the 13 dropped. A
    // carry out of the fraction bumps the exponent, which is the right result.
    let h = ((e - 112u) << 10u) | ((a & 0x7fffffu) >> 13u);
    let rest = a & 0x1fffu;
    let up = rest > 0x1000u || (rest == 0x1000u && (h & 1u) == 1u);
    return sign | (h + select(0u, 1u, up));
}

// The f16 element at storage index i of the packed source, as f32 (exact).
fn src_half(i: u32) -> f32 {
    return half_to_f32(src[i >> 1u] >> ((i & 1u) * 16u));
}

fn src_index(i: u32) -> u32 {
    if (p.src_contiguous == 1u) {
        return p.src_offset + i;
    }
    return p.src_offset + strided_offset(i, p.rank, p.shape, p.src_strides);
}

// f32 view -> contiguous f16: one invocation converts elements 2w and 2w+1 into word w
// (a zero high half past the last element).
@compute @workgroup_size(WG)
fn cast_to_half(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let w = linear_index(wg, nwg, lid);
    let i = 2u * w;
    if (i >= p.numel) {
        return;
    }
    let lo = f32_to_half_bits(bitcast<f32>(src[src_index(i)]));
    var hi = 0u;
    if (i + 1u < p.numel) {
        hi = f32_to_half_bits(bitcast<f32>(src[src_index(i + 1u)]));
    }
    atomicStore(&out[w], lo | (hi << 16u));
}

// f16 view -> contiguous f32: one invocation per element.
@compute @workgroup_size(WG)
fn cast_to_float(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    atomicStore(&out[i], bitcast<u32>(src_half(src_index(i))));
}

// f16 view -> f16 view, bit for bit: one invocation per element, replacing its half of
// the destination word.
@compute @workgroup_size(WG)
fn half_copy(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let s = src_index(i);
    let bits = (src[s >> 1u] >> ((s & 1u) * 16u)) & 0xffffu;
    var d = p.dst_offset + i;
    if (p.dst_contiguous == 0u) {
        d = p.dst_offset + strided_offset(i, p.rank, p.shape, p.dst_strides);
    }
    let shift = (d & 1u) * 16u;
    atomicAnd(&out[d >> 1u], ~(0xffffu << shift));
    atomicOr(&out[d >> 1u], bits << shift);
}
