// reduce_params.wgsl: the params of a row reduction, shared by reduce.wgsl and
// argreduce.wgsl (src/gpu/shaders.rs places this file in front of both) and mirrored by
// `ReduceParams` in src/gpu/kernels/reduce.rs. The matrix is [rows, len], contiguous from
// src_offset.

struct ReduceParams {
    rows: u32,
    len: u32,
    src_offset: u32,
    correction: f32,  // var: divide by len - correction
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
