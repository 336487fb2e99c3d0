// softmax.wgsl: softmax and log_softmax along the last axis of a contiguous [rows, len] matrix.
//
// Bindings: params, src (f32), out (f32, same shape, contiguous). One workgroup per row:
// a max reduction, a reduction of exp(x - max), then each invocation writes its slice of
// the row. Subtracting the row max first keeps exp from overflowing.

struct SoftmaxParams {
    rows: u32,
    len: u32,
    src_offset: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Returns (row max, sum of exp(x - max)) to every invocation.
fn row_stats(base: u32, lid: u32) -> vec2<f32> {
    var m = bitcast<f32>(0xff800000u);
    for (var j = lid; j < p.len; j = j + WG) {
        m = nan_max(m, src[base + j]);
    }
    let row_max = workgroup_reduce(REDUCE_MAX, m, lid);
    var s = 0.0;
    for (var j = lid; j < p.len; j = j + WG) {
        s = s + exp(src[base + j] - row_max);
    }
    return vec2<f32>(row_max, workgroup_reduce(REDUCE_SUM, s, lid));
}

@compute @workgroup_size(WG)
fn row_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = p.src_offset + row * p.len;
    let st = row_stats(base, lid);
    for (var j = lid; j < p.len; j = j + WG) {
        out[row * p.len + j] = exp(src[base + j] - st.x) / st.y;
    }
}

@compute @workgroup_size(WG)
fn row_log_softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let base = p.src_offset + row * p.len;
    let st = row_stats(base, lid);
    let log_sum = log(st.y);
    for (var j = lid; j < p.len; j = j + WG) {
        out[row * p.len + j] = src[base + j] - st.x - log_sum;
    }
}
