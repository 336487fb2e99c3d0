// conv_direct.wgsl: direct 2-D convolution of an NCHW batch, bias added in the epilogue.
//
// Inputs: x, any [N, C, H, W] view (element offset x_offset, strides x_strides in N, C, H, W
// order); w, contiguous [out, C / groups, kh, kw]; bias, [out] (read only when has_bias is
// 1). Output: contiguous [N, out, oh, ow].
//
// One invocation computes a 4 x 4 block of outputs: 4 consecutive output channels of one
// group (fewer at the end of a group whose size is not a multiple of 4) at 4 consecutive
// output columns of one output row (fewer at the end of a row). Each kernel tap loads 4
// weights and 4 inputs and does 16 multiply-adds, accumulating in the tap order
// (c, ki, kj) of the CPU loops. The implicit GEMM reads straight from global memory with
// no workgroup memory and no barriers: on software adapters (one CPU thread per workgroup)
// barriers are costly and plain loads hit the CPU caches, and the im2col column matrix is
// never materialised. Invocations run over (n, channel block, oy, column block), column
// blocks fastest, so neighbouring invocations read neighbouring inputs and the same
// weights.

struct DirectParams {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
    out_channels: u32,
    out_h: u32,
    out_w: u32,
    groups: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    x_offset: u32,
    has_bias: u32,
    // Invocations that do work: batch * groups * channel blocks per group * out_h * column blocks.
    blocks: u32,
    _pad0: u32,
    x_strides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: DirectParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Output channels and output columns per invocation.
const OC_BLOCK: u32 = 4u;
const OX_BLOCK: u32 = 4u;

@compute @workgroup_size(256)
fn conv2d_direct(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.blocks) {
        return;
    }
    let out_per_group = p.out_channels / p.groups;
    let in_per_group = p.channels / p.groups;
    let oc_blocks = (out_per_group + OC_BLOCK - 1u) / OC_BLOCK;
    let ox_blocks = (p.out_w + OX_BLOCK - 1u) / OX_BLOCK;
    let oxb = i % ox_blocks;
    let oy = (i / ox_blocks) % p.out_h;
    let t = i / (ox_blocks * p.out_h);
    let group_block = t % (p.groups * oc_blocks);
    let n = t / (p.groups * oc_blocks);
    let grp = group_block / oc_blocks;
    let first = (group_block % oc_blocks) * OC_BLOCK;
    // Channels past the group's end repeat its last channel's weights; they are not written.
    let valid_oc = min(OC_BLOCK, out_per_group - first);
    let oc0 = grp * out_per_group + first;
    let taps = in_per_group * p.kernel_h * p.kernel_w;
    let w0 = oc0 * taps;
    let w1 = (oc0 + min(1u, valid_oc - 1u)) * taps;
    let w2 = (oc0 + min(2u, valid_oc - 1u)) * taps;
    let w3 = (oc0 + min(3u, valid_oc - 1u)) * taps;
    let ox0 = oxb * OX_BLOCK;
    let s = p.x_strides;
    let last_x = i32(p.width) - 1;

    // acc[j] holds the 4 channels of output column ox0 + j.
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var ci = 0u; ci < in_per_group; ci = ci + 1u) {
        let c = grp * in_per_group + ci;
        for (var ki = 0u; ki < p.kernel_h; ki = ki + 1u) {
            let iy = i32(oy * p.stride_h + ki * p.dilation_h) - i32(p.pad_h);
            if (iy < 0 || iy >= i32(p.height)) {
                continue;
            }
            let row = p.x_offset + n * s.x + c * s.y + u32(iy) * s.z;
            for (var kj = 0u; kj < p.kernel_w; kj = kj + 1u) {
                let k = (ci * p.kernel_h + ki) * p.kernel_w + kj;
                let wv = vec4<f32>(w[w0 + k], w[w1 + k], w[w2 + k], w[w3 + k]);
                // Input columns of the 4 outputs; a column in the padding reads a clamped,
                // valid index and contributes zero.
                let ix0 = i32(ox0 * p.stride_w + kj * p.dilation_w) - i32(p.pad_w);
                let sx = i32(p.stride_w);
                let ix = vec4<i32>(ix0, ix0 + sx, ix0 + 2 * sx, ix0 + 3 * sx);
                let inside = ix >= vec4<i32>(0) & ix <= vec4<i32>(last_x);
                let at = vec4<u32>(clamp(ix, vec4<i32>(0), vec4<i32>(last_x))) * s.w + row;
                let v = select(vec4<f32>(0.0), vec4<f32>(x[at.x], x[at.y], x[at.z], x[at.w]), inside);
                acc0 = fma(vec4<f32>(v.x), wv, acc0);
                acc1 = fma(vec4<f32>(v.y), wv, acc1);
                acc2 = fma(vec4<f32>(v.z), wv, acc2);
                acc3 = fma(vec4<f32>(v.w), wv, acc3);
            }
        }
    }

    var b = vec4<f32>(0.0);
    if (p.has_bias == 1u) {
        b = vec4<f32>(bias[w0 / taps], bias[w1 / taps], bias[w2 / taps], bias[w3 / taps]);
    }
    var acc = array<vec4<f32>, 4>(acc0 + b, acc1 + b, acc2 + b, acc3 + b);
    let plane = p.out_h * p.out_w;
    let valid_ox = min(OX_BLOCK, p.out_w - ox0);
    for (var q = 0u; q < valid_oc; q = q + 1u) {
        let base = (n * p.out_channels + oc0 + q) * plane + oy * p.out_w + ox0;
        for (var j = 0u; j < valid_ox; j = j + 1u) {
            out[base + j] = acc[j][q];
        }
    }
}
