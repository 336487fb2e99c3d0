// augment.wgsl: per-image geometric augmentation of an NCHW batch (random crop with zero
// padding, random shift, horizontal flip), all as one op: crop_flip.
//
// Bindings: params, src (f32, an [N, C, in_h, in_w] view with any strides), windows (i32,
// contiguous, three per image: dy, dx, flip), out (f32, contiguous [N, C, out_h, out_w]).
// One invocation writes one output element (n, c, y, x). The image's window is the
// out_h x out_w rectangle whose top-left corner sits at (dy, dx) in input coordinates; the
// offsets may be negative or run past the far edges. Output column x reads window column
// x, or out_w - 1 - x when flip is nonzero (a mirror inside the window, so a crop followed
// by a flip is one call). Window positions outside the input read as 0.

struct CropFlipParams {
    numel: u32,            // N * C * out_h * out_w
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    src_offset: u32,
    windows_offset: u32,
    src_strides: vec4<u32>, // strides of n, c, h, w in src
}

@group(0) @binding(0) var<uniform> p: CropFlipParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> windows: array<i32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn crop_flip(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let x = i % p.out_w;
    var rem = i / p.out_w;
    let y = rem % p.out_h;
    rem = rem / p.out_h;
    let c = rem % p.channels;
    let n = rem / p.channels;

    let w = p.windows_offset + 3u * n;
    var col = x;
    if (windows[w + 2u] != 0) {
        col = p.out_w - 1u - x;
    }
    // Two's complement wrap-around on extreme offsets lands on negative values (the sums
    // are below 2^31 + out_h), which read as outside, as on the CPU.
    let iy = windows[w] + i32(y);
    let ix = windows[w + 1u] + i32(col);
    var value = 0.0;
    if (iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w)) {
        let s = p.src_strides;
        value = src[p.src_offset + n * s.x + c * s.y + u32(iy) * s.z + u32(ix) * s.w];
    }
    out[i] = value;
}
