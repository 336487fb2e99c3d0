// scatter.wgsl: index_add and scatter_add along one axis, the gradients of index_select
// and gather. Deterministic and free of float atomics (which WGSL does not have).
//
// Bindings: params (index_params.wgsl), src (f32 view: the incoming gradient), indices (i32, contiguous; for
// scatter_add laid out exactly like src), out (f32, contiguous, shape `shape`).
// One invocation owns one output element and sums every src element whose index points
// at it, looping over the src axis (length axis_len) in order. Each element is written
// once by one invocation, so repeated indices accumulate correctly and the result is
// the same on every run. The cost is O(out elements x axis_len): small for the gathers of
// a loss (axis_len 1); an embedding's backward over a large batch will want a sort-based
// kernel.

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// For output element i: its coordinate on `axis`, the src offset of the same coordinates
// with the axis coordinate set to 0, and whether those coordinates exist in src (beyond
// the axis, src may be smaller than the output in scatter_add).
struct Located {
    axis_coord: u32,
    src_base: u32,
    inside: bool,
}

fn locate(i: u32) -> Located {
    var sh = p.shape;
    var ssh = p.src_shape;
    var st = p.src_strides;
    var rem = i;
    var r: Located;
    r.axis_coord = 0u;
    r.src_base = 0u;
    r.inside = true;
    for (var d = p.rank; d > 0u; d = d - 1u) {
        let k = d - 1u;
        let c = rem % sh[k / 4u][k % 4u];
        rem = rem / sh[k / 4u][k % 4u];
        if (k == p.axis) {
            r.axis_coord = c;
        } else {
            r.inside = r.inside && c < ssh[k / 4u][k % 4u];
            r.src_base = r.src_base + c * st[k / 4u][k % 4u];
        }
    }
    return r;
}

fn axis_stride() -> u32 {
    var st = p.src_strides;
    return st[p.axis / 4u][p.axis % 4u];
}

// out[.., d, ..] = sum over l with indices[l] == d of src[.., l, ..].
@compute @workgroup_size(WG)
fn index_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let at = locate(i);
    let step = axis_stride();
    var acc = 0.0;
    for (var l = 0u; l < p.axis_len; l = l + 1u) {
        if (indices[p.index_offset + l] == i32(at.axis_coord)) {
            acc = acc + src[p.src_offset + at.src_base + l * step];
        }
    }
    out[i] = acc;
}

// out[.., d, ..] = sum over l with indices[.., l, ..] == d of src[.., l, ..].
@compute @workgroup_size(WG)
fn scatter_add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let at = locate(i);
    let step = axis_stride();
    var acc = 0.0;
    if (at.inside) {
        for (var l = 0u; l < p.axis_len; l = l + 1u) {
            // indices is laid out like src (both contiguous with one shape).
            if (indices[p.index_offset + at.src_base + l * step] == i32(at.axis_coord)) {
                acc = acc + src[p.src_offset + at.src_base + l * step];
            }
        }
    }
    out[i] = acc;
}
