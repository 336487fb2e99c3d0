// workgroup_sum_vec2.wgsl: the workgroup sum of pairs, prepended by src/gpu/shaders.rs to
// the files that need two sums at once (layer norm, batch norm, cross-entropy: a value and
// its weight, a gradient and its product with the input).
//
// The same halving tree as workgroup_reduce.wgsl, on vec2<f32>: a vector add rounds each
// component as the scalar add would, so the pair's sums have the bits of two scalar trees.

var<workgroup> partial_vec2: array<vec2<f32>, WG>;

// Sums `value` over groups of `lanes` invocations (a power of two) that lie `spacing`
// apart: invocation `lid` is lane `lane` of the group starting at lid - lane * spacing.
// Returns the group's sum to every invocation. Every invocation of the workgroup must
// call it (it holds barriers).
fn workgroup_sum_vec2_groups(value: vec2<f32>, lid: u32, lane: u32, lanes: u32, spacing: u32) -> vec2<f32> {
    partial_vec2[lid] = value;
    workgroupBarrier();
    for (var stride = lanes / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            partial_vec2[lid] = partial_vec2[lid] + partial_vec2[lid + stride * spacing];
        }
        workgroupBarrier();
    }
    let result = partial_vec2[lid - lane * spacing];
    // Everyone has read the result before a following reduction reuses the buffer.
    workgroupBarrier();
    return result;
}

// `value` summed over the whole workgroup, returned to every invocation.
fn workgroup_sum_vec2(value: vec2<f32>, lid: u32) -> vec2<f32> {
    return workgroup_sum_vec2_groups(value, lid, lid, WG, 1u);
}
