// argreduce.wgsl: argmax and argmin along the last axis of a contiguous [rows, len] matrix.
//
// Bindings: params, src (f32), out (i32, one index per row). One workgroup per row, as in
// reduce.wgsl, carrying (value, index) pairs. Ties go to the smallest index and NaN counts
// as the largest value (and the smallest for argmin), as in PyTorch.

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<i32>;

var<workgroup> best_value: array<f32, WG>;
var<workgroup> best_index: array<u32, WG>;

// True when candidate (v, i) beats the current best (w, j). `sign` is 1 for argmax and
// -1 for argmin.
fn beats(v: f32, i: u32, w: f32, j: u32, sign: f32) -> bool {
    let v_nan = is_nan(v);
    let w_nan = is_nan(w);
    if (v_nan || w_nan) {
        return (v_nan && !w_nan) || (v_nan && w_nan && i < j);
    }
    let sv = sign * v;
    let sw = sign * w;
    return sv > sw || (sv == sw && i < j);
}

fn arg_row(row: u32, lid: u32, sign: f32) {
    let base = p.src_offset + row * p.len;
    var bv = 0.0;
    var bi = 0xffffffffu;
    for (var j = lid; j < p.len; j = j + WG) {
        let v = src[base + j];
        if (bi == 0xffffffffu || beats(v, j, bv, bi, sign)) {
            bv = v;
            bi = j;
        }
    }
    best_value[lid] = bv;
    best_index[lid] = bi;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (lid < stride) {
            let oi = best_index[lid + stride];
            if (oi != 0xffffffffu && (best_index[lid] == 0xffffffffu || beats(best_value[lid + stride], oi, best_value[lid], best_index[lid], sign))) {
                best_value[lid] = best_value[lid + stride];
                best_index[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        out[row] = i32(best_index[0]);
    }
}

@compute @workgroup_size(WG)
fn reduce_argmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    arg_row(row, lid, 1.0);
}

@compute @workgroup_size(WG)
fn reduce_argmin(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    arg_row(row, lid, -1.0);
}
