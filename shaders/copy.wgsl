// copy.wgsl: copy a strided view into a strided destination, bit for bit.
//
// Bindings: params (elementwise_params.wgsl), src (u32 words), out (u32
// words). Working on raw 32-bit words makes one kernel serve every 4-byte dtype (f32, i32)
// and keeps integer bit patterns away from float registers, where a denormal could be
// flushed. One invocation copies one element; `contiguous()`, `cat` and `stack` use it.
//
// Built twice (src/gpu/shaders.rs): `copy`, and `copy_to_contiguous` (DST_CONTIGUOUS true)
// for a contiguous destination, what `contiguous()` asks for, with the destination's
// strided index path compiled out (see elementwise.wgsl on why that pays).

@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;

@compute @workgroup_size(WG)
fn copy_strided(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    var src_at = p.offsets[0] + i;
    if (p.contiguous[0] == 0u) {
        src_at = p.offsets[0] + strided_offset(i, p.rank, p.shape, p.strides[0]);
    }
    var out_at = p.offsets[3] + i;
    if (!DST_CONTIGUOUS && p.contiguous[3] == 0u) {
        out_at = p.offsets[3] + strided_offset(i, p.rank, p.shape, p.strides[3]);
    }
    out[out_at] = src[src_at];
}
