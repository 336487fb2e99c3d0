// conv.wgsl: the data movement of im2col convolution.
//
// A convolution of an NCHW batch is a matmul once every receptive field has been unfolded
// into a column: row r = (c * kernel_h + ki) * kernel_w + kj of the column matrix holds,
// for each output position l = oy * out_w + ox, the input value at
//   y = oy * stride_h - pad_h + ki * dilation_h,   x = ox * stride_w - pad_w + kj * dilation_w
// or zero where that lies in the padding. The column matrix of image n, row r, position l
// sits at n * col_n_stride + r * col_r_stride + l, so one kernel writes both layouts the
// convolution needs: image-major [N, rows, L] for the forward matmul and row-major
// [rows, N, L] for the weight gradient, which contracts over images and positions at once.
//
// col2im is the adjoint of im2col: each input element gathers the column entries read
// from it. Gathering (rather than scattering from each column entry) gives every output
// element a single writer, so overlapping windows need no atomics and sums come out in a
// fixed order.

struct ConvParams {
    batch: u32,
    channels: u32,
    height: u32,
    width: u32,
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
    // Element offset of the first input (im2col) or column entry (col2im) to read.
    src_offset: u32,
    // Elements to write: the column matrix (im2col) or the image batch (col2im).
    numel: u32,
    col_n_stride: u32,
    col_r_stride: u32,
    _pad0: u32,
    _pad1: u32,
    // Strides of the input view in elements, in N, C, H, W order (im2col only: it reads any
    // view, so a slice of a batch needs no copy).
    x_strides: vec4<u32>,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(256)
fn im2col(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    // i runs over (n, r, l) in row-major order.
    let positions = p.out_h * p.out_w;
    let rows = p.channels * p.kernel_h * p.kernel_w;
    let l = i % positions;
    let r = (i / positions) % rows;
    let n = i / (positions * rows);
    let kj = r % p.kernel_w;
    let ki = (r / p.kernel_w) % p.kernel_h;
    let c = r / (p.kernel_w * p.kernel_h);
    let ox = l % p.out_w;
    let oy = l / p.out_w;
    // Signed: the window may start in the padding above or left of the image.
    let y = i32(oy * p.stride_h + ki * p.dilation_h) - i32(p.pad_h);
    let x = i32(ox * p.stride_w + kj * p.dilation_w) - i32(p.pad_w);
    var value = 0.0;
    if (y >= 0 && y < i32(p.height) && x >= 0 && x < i32(p.width)) {
        let s = p.x_strides;
        value = src[p.src_offset + n * s.x + c * s.y + u32(y) * s.z + u32(x) * s.w];
    }
    dst[n * p.col_n_stride + r * p.col_r_stride + l] = value;
}

@compute @workgroup_size(256)
fn col2im(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    // i runs over the contiguous [N, C, H, W] output.
    let x = i % p.width;
    let y = (i / p.width) % p.height;
    let c = (i / (p.width * p.height)) % p.channels;
    let n = i / (p.width * p.height * p.channels);
    var sum = 0.0;
    for (var ki = 0u; ki < p.kernel_h; ki = ki + 1u) {
        // The output row whose window reads input row y at kernel row ki, if any.
        let ty = i32(y + p.pad_h) - i32(ki * p.dilation_h);
        if (ty < 0 || u32(ty) % p.stride_h != 0u) {
            continue;
        }
        let oy = u32(ty) / p.stride_h;
        if (oy >= p.out_h) {
            continue;
        }
        for (var kj = 0u; kj < p.kernel_w; kj = kj + 1u) {
            let tx = i32(x + p.pad_w) - i32(kj * p.dilation_w);
            if (tx < 0 || u32(tx) % p.stride_w != 0u) {
                continue;
            }
            let ox = u32(tx) / p.stride_w;
            if (ox >= p.out_w) {
                continue;
            }
            let r = (c * p.kernel_h + ki) * p.kernel_w + kj;
            sum = sum + src[p.src_offset + n * p.col_n_stride + r * p.col_r_stride + oy * p.out_w + ox];
        }
    }
    dst[i] = sum;
}
