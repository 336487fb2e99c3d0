// workgroup_reduce.wgsl: the f32 workgroup reduction, prepended by src/gpu/shaders.rs to the
// files that reduce one row per workgroup (reduce, softmax).
//
// Every invocation brings one partial result; a halving tree in workgroup memory combines
// them (invocation i takes i + stride, stride WG/2, WG/4, ..., 1). The tree's order is
// fixed, so a reduction gives the same bits on every run and every adapter that rounds
// the same way.

const REDUCE_SUM: u32 = 0u;
const REDUCE_MAX: u32 = 1u;
const REDUCE_MIN: u32 = 2u;

var<workgroup> partial_f32: array<f32, WG>;

// Max and min propagate NaN, as PyTorch's max and min do.
fn reduce_combine(op: u32, x: f32, y: f32) -> f32 {
    switch op {
        case REDUCE_MAX: { return nan_max(x, y); }
        case REDUCE_MIN: { return nan_min(x, y); }
        default: { return x + y; }
    }
}

// The value `op` starts from: 0 for a sum, -inf for a max, +inf for a min.
fn reduce_identity(op: u32) -> f32 {
    switch op {
        case REDUCE_MAX: { return bitcast<f32>(0xff800000u); } // -inf
        case REDUCE_MIN: { return bitcast<f32>(0x7f800000u); } // +inf
        default: { return 0.0; }
    }
}

// `value` of every invocation combined with `op`, returned to every invocation. Every
// invocation of the workgroup must call it (it holds barriers).
fn workgroup_reduce(op: u32, value: f32, lid: u32) -> f32 {
    partial_f32[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            partial_f32[lid] = reduce_combine(op, partial_f32[lid], partial_f32[lid + stride]);
        }
        workgroupBarrier();
    }
    let result = partial_f32[0];
    // Everyone has read the result before a following reduction reuses the buffer.
    workgroupBarrier();
    return result;
}
