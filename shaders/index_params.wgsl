// index_params.wgsl: the params of a gather or scatter along one axis, shared by
// index.wgsl and scatter.wgsl (src/gpu/shaders.rs places this file in front of both) and
// mirrored by `IndexParams` in src/gpu/kernels/index.rs.

struct IndexParams {
    numel: u32,
    rank: u32,
    axis: u32,
    axis_len: u32,     // src's size along axis
    src_offset: u32,
    index_offset: u32,
    _pad0: u32,
    _pad1: u32,
    shape: array<vec4<u32>, 2>,        // output shape
    src_shape: array<vec4<u32>, 2>,    // scatter only
    src_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: IndexParams;
