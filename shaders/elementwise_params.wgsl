// elementwise_params.wgsl: the params of a strided elementwise dispatch, shared by
// elementwise.wgsl and copy.wgsl (src/gpu/shaders.rs places this file in front of both)
// and mirrored by `ElementwiseParams` in src/gpu/kernels/elementwise.rs. Up to eight dimensions; the
// four operands' offsets and strides are in the order a, b, cond, out (copy uses a as its
// source and out as its destination).

struct ElementwiseParams {
    numel: u32,
    rank: u32,
    scalar0: f32,
    scalar1: f32,
    offsets: vec4<u32>,     // a, b, cond, out
    contiguous: vec4<u32>,  // 1 where that operand is row-major with the output's shape
    shape: array<vec4<u32>, 2>,
    strides: array<array<vec4<u32>, 2>, 4>,  // a, b, cond, out
}

@group(0) @binding(0) var<uniform> p: ElementwiseParams;
