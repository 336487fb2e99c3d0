// reduce.wgsl: reductions along the last axis of a contiguous [rows, len] matrix.
//
// Bindings: params, src (f32, the matrix starting at src_offset), out (f32, one value per
// row). One workgroup reduces one row: each invocation folds a strided slice of the row,
// then workgroup_reduce (workgroup_reduce.wgsl) combines the WG partial results.
// The tensor layer moves the reduced axes last (a copy when they are not already).

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

// Reduces row `row` with `op`, subtracting `center` from every element first (and squaring
// when `square`), and returns the result to every invocation of the workgroup.
fn reduce_row(op: u32, row: u32, lid: u32, center: f32, square: bool) -> f32 {
    let base = p.src_offset + row * p.len;
    var acc = reduce_identity(op);
    for (var j = lid; j < p.len; j = j + WG) {
        var x = src[base + j] - center;
        if (square) {
            x = x * x;
        }
        acc = reduce_combine(op, acc, x);
    }
    return workgroup_reduce(op, acc, lid);
}

@compute @workgroup_size(WG)
fn reduce_sum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let s = reduce_row(REDUCE_SUM, row, lid, 0.0, false);
    if (lid == 0u) {
        out[row] = s;
    }
}

@compute @workgroup_size(WG)
fn reduce_mean(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let s = reduce_row(REDUCE_SUM, row, lid, 0.0, false);
    if (lid == 0u) {
        out[row] = s / f32(p.len);
    }
}

@compute @workgroup_size(WG)
fn reduce_max(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let m = reduce_row(REDUCE_MAX, row, lid, 0.0, false);
    if (lid == 0u) {
        out[row] = m;
    }
}

@compute @workgroup_size(WG)
fn reduce_min(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let m = reduce_row(REDUCE_MIN, row, lid, 0.0, false);
    if (lid == 0u) {
        out[row] = m;
    }
}

// Two passes (mean, then the sum of squared deviations) rather than E[x^2] - E[x]^2,
// which cancels catastrophically when the mean is large against the spread.
@compute @workgroup_size(WG)
fn reduce_var(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = linear_workgroup(wg, nwg);
    if (row >= p.rows) {
        return;
    }
    let mean = reduce_row(REDUCE_SUM, row, lid, 0.0, false) / f32(p.len);
    let ss = reduce_row(REDUCE_SUM, row, lid, mean, true);
    if (lid == 0u) {
        out[row] = ss / max(f32(p.len) - p.correction, 0.0);
    }
}
