// index.wgsl: index_select and gather along one axis, with i32 indices.
//
// Bindings: params, src (f32, any strided view), index (i32, contiguous), out (f32,
// contiguous, shape `shape`). One invocation writes one output element: it decomposes its
// linear index into coordinates of `shape`, replaces the coordinate on `axis` by the index
// it looks up (index_select: index[coordinate]; gather: index[i]) and reads src there.
// An index outside [0, axis_len) yields NaN: a kernel cannot raise, and NaN is loud.

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Reads src at output coordinates (from linear index i) with the axis coordinate replaced.
fn read_with(i: u32, looked_up: i32) -> f32 {
    if (looked_up < 0 || u32(looked_up) >= p.axis_len) {
        return bitcast<f32>(0x7fc00000u);
    }
    var sh = p.shape;
    var st = p.src_strides;
    var rem = i;
    var off = p.src_offset;
    for (var d = p.rank; d > 0u; d = d - 1u) {
        let k = d - 1u;
        let n = sh[k / 4u][k % 4u];
        var c = rem % n;
        rem = rem / n;
        if (k == p.axis) {
            c = u32(looked_up);
        }
        off = off + c * st[k / 4u][k % 4u];
    }
    return src[off];
}

// The output coordinate along `axis` of linear index i.
fn axis_coordinate(i: u32) -> u32 {
    var sh = p.shape;
    var rem = i;
    for (var d = p.rank - 1u; d > p.axis; d = d - 1u) {
        rem = rem / sh[d / 4u][d % 4u];
    }
    return rem % sh[p.axis / 4u][p.axis % 4u];
}

@compute @workgroup_size(WG)
fn index_select(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    out[i] = read_with(i, indices[p.index_offset + axis_coordinate(i)]);
}

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    out[i] = read_with(i, indices[p.index_offset + i]);
}
