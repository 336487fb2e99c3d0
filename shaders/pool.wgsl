// pool.wgsl: 2-D max, average and adaptive average pooling of NCHW planes, and their
// gradients. The Rust twin of every function is in src/cpu/pool.rs; keep the two in step.
//
// A plane is the in_h x in_w image of one channel of one sample; planes lie one after
// another (contiguous NCHW), so plane k of the input starts at src_offset + k * in_h * in_w
// and plane k of the output at k * out_h * out_w.
//
// Bindings: params; src (f32: the input for forward kernels, the output gradient for
// backward ones); indices (i32, read by max_pool2d_backward only); out (f32: the pooled
// output, or the input gradient); out_index (i32, written by max_pool2d only). Unused
// bindings get a stand-in buffer from the launcher.
//
// Forward kernels: one invocation computes one output element from its window. Backward
// kernels: one invocation computes one input element's gradient by gathering from the
// outputs whose windows cover it (in increasing output order), so no two invocations
// write the same element and no float atomics are needed.

struct PoolParams {
    // Invocations: output elements (forward) or input elements (backward).
    numel: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dilation_h: u32,
    dilation_w: u32,
    // Element offset of the first element of src.
    src_offset: u32,
    // Element offset of the first element of indices.
    index_offset: u32,
    // avg_pool2d: 1 when padded positions count in the divisor.
    count_include_pad: u32,
    // avg_pool2d: a fixed divisor, or 0 for none.
    divisor_override: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out_index: array<i32>;

// An output position: its plane and coordinates, from the linear output index.
struct OutPos {
    plane: u32,
    oh: u32,
    ow: u32,
}

fn out_pos(i: u32) -> OutPos {
    let ow = i % p.out_w;
    let rest = i / p.out_w;
    return OutPos(rest / p.out_h, rest % p.out_h, ow);
}

// An input position, from the linear input index.
struct InPos {
    plane: u32,
    ih: u32,
    iw: u32,
}

fn in_pos(i: u32) -> InPos {
    let iw = i % p.in_w;
    let rest = i / p.in_w;
    return InPos(rest / p.in_h, rest % p.in_h, iw);
}

// The taps of a max window along one axis that fall inside the input: x = first tap at
// or after 0, y = end (exclusive). Step by the dilation between them. As in PyTorch, the
// first tap may lie past the end when every tap is padding.
fn max_taps(o: u32, stride: u32, pad: u32, kernel: u32, dilation: u32, len: u32) -> vec2<i32> {
    let d = i32(dilation);
    let start = i32(o * stride) - i32(pad);
    var first = start;
    if (start < 0) {
        first = start + (-start + d - 1) / d * d;
    }
    let span = i32((kernel - 1u) * dilation + 1u);
    let end = min(start + span, i32(len));
    return vec2<i32>(first, end);
}

// An average window along one axis: x..y the input range it sums, z its length counted
// with padding but not past the padded edge (where the last window of ceil mode overhangs).
fn avg_window(o: u32, stride: u32, pad: u32, kernel: u32, len: u32) -> vec3<i32> {
    let start = i32(o * stride) - i32(pad);
    let end = min(start + i32(kernel), i32(len + pad));
    return vec3<i32>(max(start, 0), min(end, i32(len)), end - start);
}

// What the sum of average window (oh, ow) is divided by, as PyTorch's avg_pool2d.
fn avg_divisor(oh: u32, ow: u32) -> f32 {
    if (p.divisor_override != 0u) {
        return f32(p.divisor_override);
    }
    let rows = avg_window(oh, p.stride_h, p.pad_h, p.kernel_h, p.in_h);
    let cols = avg_window(ow, p.stride_w, p.pad_w, p.kernel_w, p.in_w);
    if (p.count_include_pad != 0u) {
        return f32(rows.z * cols.z);
    }
    return f32(max(rows.y - rows.x, 0) * max(cols.y - cols.x, 0));
}

// The outputs along one axis whose windows, `span` elements long from their start, cover
// input position i: x..y (exclusive).
fn covering_outputs(i: u32, stride: u32, pad: u32, span: u32, out_len: u32) -> vec2<u32> {
    let reach = i + pad;
    // o * stride - pad <= i  and  o * stride - pad + span - 1 >= i.
    var lo = 0u;
    if (reach + 1u > span) {
        lo = (reach + 1u - span + stride - 1u) / stride;
    }
    let hi = min(reach / stride + 1u, out_len);
    return vec2<u32>(lo, max(hi, lo));
}

// Start of adaptive window o of `count` windows over `len` inputs: floor(o * len / count),
// written so that the product does not overflow.
fn adaptive_start(o: u32, count: u32, len: u32) -> u32 {
    return (o / count) * len + ((o % count) * len) / count;
}

// End (exclusive) of adaptive window o: ceil((o + 1) * len / count).
fn adaptive_end(o: u32, count: u32, len: u32) -> u32 {
    let a = o + 1u;
    return (a / count) * len + ((a % count) * len + count - 1u) / count;
}

@compute @workgroup_size(WG)
fn max_pool2d(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let o = out_pos(i);
    let base = p.src_offset + o.plane * p.in_h * p.in_w;
    let rows = max_taps(o.oh, p.stride_h, p.pad_h, p.kernel_h, p.dilation_h, p.in_h);
    let cols = max_taps(o.ow, p.stride_w, p.pad_w, p.kernel_w, p.dilation_w, p.in_w);
    let w_len = i32(p.in_w);
    var best = bitcast<f32>(0xff800000u); // -inf: the implicit padding
    var best_index = rows.x * w_len + cols.x;
    for (var h = rows.x; h < rows.y; h = h + i32(p.dilation_h)) {
        for (var w = cols.x; w < cols.y; w = w + i32(p.dilation_w)) {
            let at = h * w_len + w;
            let v = src[base + u32(at)];
            // NaN wins and the last NaN keeps the index; ties keep the first index.
            if (is_nan(v) || (!is_nan(best) && v > best)) {
                best = v;
                best_index = at;
            }
        }
    }
    out[i] = best;
    out_index[i] = best_index;
}

@compute @workgroup_size(WG)
fn max_pool2d_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let x = in_pos(i);
    let me = i32(x.ih * p.in_w + x.iw);
    let span_h = (p.kernel_h - 1u) * p.dilation_h + 1u;
    let span_w = (p.kernel_w - 1u) * p.dilation_w + 1u;
    let rows = covering_outputs(x.ih, p.stride_h, p.pad_h, span_h, p.out_h);
    let cols = covering_outputs(x.iw, p.stride_w, p.pad_w, span_w, p.out_w);
    let base = x.plane * p.out_h * p.out_w;
    var acc = 0.0;
    for (var oh = rows.x; oh < rows.y; oh = oh + 1u) {
        for (var ow = cols.x; ow < cols.y; ow = ow + 1u) {
            let at = base + oh * p.out_w + ow;
            if (indices[p.index_offset + at] == me) {
                acc = acc + src[p.src_offset + at];
            }
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(WG)
fn avg_pool2d(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let o = out_pos(i);
    let base = p.src_offset + o.plane * p.in_h * p.in_w;
    let rows = avg_window(o.oh, p.stride_h, p.pad_h, p.kernel_h, p.in_h);
    let cols = avg_window(o.ow, p.stride_w, p.pad_w, p.kernel_w, p.in_w);
    var sum = 0.0;
    for (var h = rows.x; h < rows.y; h = h + 1) {
        for (var w = cols.x; w < cols.y; w = w + 1) {
            sum = sum + src[base + u32(h) * p.in_w + u32(w)];
        }
    }
    out[i] = sum / avg_divisor(o.oh, o.ow);
}

@compute @workgroup_size(WG)
fn avg_pool2d_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let x = in_pos(i);
    let rows = covering_outputs(x.ih, p.stride_h, p.pad_h, p.kernel_h, p.out_h);
    let cols = covering_outputs(x.iw, p.stride_w, p.pad_w, p.kernel_w, p.out_w);
    let base = p.src_offset + x.plane * p.out_h * p.out_w;
    var acc = 0.0;
    for (var oh = rows.x; oh < rows.y; oh = oh + 1u) {
        for (var ow = cols.x; ow < cols.y; ow = ow + 1u) {
            acc = acc + src[base + oh * p.out_w + ow] / avg_divisor(oh, ow);
        }
    }
    out[i] = acc;
}

@compute @workgroup_size(WG)
fn adaptive_avg_pool2d(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let o = out_pos(i);
    let base = p.src_offset + o.plane * p.in_h * p.in_w;
    let h0 = adaptive_start(o.oh, p.out_h, p.in_h);
    let h1 = adaptive_end(o.oh, p.out_h, p.in_h);
    let w0 = adaptive_start(o.ow, p.out_w, p.in_w);
    let w1 = adaptive_end(o.ow, p.out_w, p.in_w);
    var sum = 0.0;
    for (var h = h0; h < h1; h = h + 1u) {
        for (var w = w0; w < w1; w = w + 1u) {
            sum = sum + src[base + h * p.in_w + w];
        }
    }
    // Divided by the height and then the width, as PyTorch does.
    out[i] = sum / f32(h1 - h0) / f32(w1 - w0);
}

@compute @workgroup_size(WG)
fn adaptive_avg_pool2d_backward(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let x = in_pos(i);
    let base = p.src_offset + x.plane * p.out_h * p.out_w;
    // Every window that covers ih lies in floor(ih * OH / H) .. ceil((ih + 1) * OH / H);
    // the neighbours in that range that do not reach ih are skipped.
    let oh_lo = adaptive_start(x.ih, p.in_h, p.out_h);
    let oh_hi = min(adaptive_end(x.ih, p.in_h, p.out_h), p.out_h);
    let ow_lo = adaptive_start(x.iw, p.in_w, p.out_w);
    let ow_hi = min(adaptive_end(x.iw, p.in_w, p.out_w), p.out_w);
    var acc = 0.0;
    for (var oh = oh_lo; oh < oh_hi; oh = oh + 1u) {
        let h0 = adaptive_start(oh, p.out_h, p.in_h);
        let h1 = adaptive_end(oh, p.out_h, p.in_h);
        if (x.ih < h0 || x.ih >= h1) {
            continue;
        }
        for (var ow = ow_lo; ow < ow_hi; ow = ow + 1u) {
            let w0 = adaptive_start(ow, p.out_w, p.in_w);
            let w1 = adaptive_end(ow, p.out_w, p.in_w);
            if (x.iw < w0 || x.iw >= w1) {
                continue;
            }
            acc = acc + src[base + oh * p.out_w + ow] / f32(h1 - h0) / f32(w1 - w0);
        }
    }
    out[i] = acc;
}
