// half_matmul_params.wgsl: the params and bindings of the f16 matmul, shared by its
// portable build (half_matmul.wgsl) and its cooperative-matrix builds
// (half_matmul_coop.wgsl), which src/gpu/shaders.rs places this file in front of, and
// mirrored by `HalfMatmulParams` in src/gpu/kernels/half.rs. `blocks_m` and `blocks_n` count the
// blocks of C in the kernel's own block size.
//
// Bindings: params, a (packed f16: element i in half i%2 of word i/2), b (packed f16), out
// (f32, contiguous [batch, M, N]).

struct HalfMatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    a_offset: u32,
    b_offset: u32,
    blocks_m: u32,
    blocks_n: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    b_row_stride: u32,
    b_col_stride: u32,
    batch_start: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    batch_shape: array<vec4<u32>, 2>,
    a_batch_strides: array<vec4<u32>, 2>,
    b_batch_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: HalfMatmulParams;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Element i of the packed f16 arrays a and b, exactly, in f32.
fn a_at(i: u32) -> f32 {
    return half_to_f32(a[i >> 1u] >> ((i & 1u) * 16u));
}

fn b_at(i: u32) -> f32 {
    return half_to_f32(b[i >> 1u] >> ((i & 1u) * 16u));
}
