// matmul_vec4.wgsl: the matmul.wgsl kernel with 16-byte loads and stores, for the common
// case where both operands are row-major and every row starts on a 4-element boundary.
//
// Bindings: params (MatmulParams, as in matmul.wgsl), a, b, out as arrays of vec4<f32>.
// Preconditions checked by the launcher: a_col_stride == b_col_stride == 1; K, N, the row
// strides, the offsets and the batch strides all multiples of 4. Then a row of A splits
// into whole vec4s along K, a row of B and of C into whole vec4s along N, and every
// bounds test on a vec4 is exact.
//
// Tiling as in matmul.wgsl: 64x64 output tile per workgroup of 256, K step 16, a 4x4
// block per invocation. Each step every invocation loads one vec4 of A and one of B.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    batch_rank: u32,
    a_offset: u32,
    b_offset: u32,
    tiles_m: u32,
    tiles_n: u32,
    a_row_stride: u32,
    a_col_stride: u32,
    b_row_stride: u32,
    b_col_stride: u32,
    batch_start: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    batch_shape: array<vec4<u32>, 2>,
    a_batch_strides: array<vec4<u32>, 2>,
    b_batch_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> a_tile: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> b_tile: array<vec4<f32>, 256>; // [TILE_K][TILE_N / 4]

@compute @workgroup_size(WG)
fn matmul_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = linear_workgroup(wg, nwg);
    let tile_m = tile / p.tiles_n;
    let tile_n = tile % p.tiles_n;
    if (tile_m >= p.tiles_m) {
        return;
    }
    let batch = p.batch_start + wg.z;
    // Element offsets, all multiples of 4 by the preconditions.
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);
    let row0 = tile_m * TILE_M;
    let col0 = tile_n * TILE_N;
    let tx = lid % 16u;
    let ty = lid / 16u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    // This invocation's loads: A row am, k-quad aq; B row bk, n-quad bq.
    let am = lid / 4u;
    let aq = lid % 4u;
    let bk = lid / 16u;
    let bq = lid % 16u;

    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        let gm = row0 + am;
        let gk = k0 + aq * 4u;
        var av = vec4<f32>(0.0);
        if (gm < p.m && gk < p.k) {
            av = a[(a_base + gm * p.a_row_stride + gk) / 4u];
        }
        a_tile[(aq * 4u) * TILE_M + am] = av.x;
        a_tile[(aq * 4u + 1u) * TILE_M + am] = av.y;
        a_tile[(aq * 4u + 2u) * TILE_M + am] = av.z;
        a_tile[(aq * 4u + 3u) * TILE_M + am] = av.w;

        let gkb = k0 + bk;
        let gn = col0 + bq * 4u;
        var bv = vec4<f32>(0.0);
        if (gkb < p.k && gn < p.n) {
            bv = b[(b_base + gkb * p.b_row_stride + gn) / 4u];
        }
        b_tile[bk * 16u + bq] = bv;
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let ar = kk * TILE_M + ty * 4u;
            let bvec = b_tile[kk * 16u + tx];
            acc0 = acc0 + a_tile[ar] * bvec;
            acc1 = acc1 + a_tile[ar + 1u] * bvec;
            acc2 = acc2 + a_tile[ar + 2u] * bvec;
            acc3 = acc3 + a_tile[ar + 3u] * bvec;
        }
        workgroupBarrier();
    }

    let gn = col0 + tx * 4u;
    if (gn >= p.n) {
        return;
    }
    let out_base = batch * p.m * p.n;
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let gm = row0 + ty * 4u + i;
        if (gm < p.m) {
            out[(out_base + gm * p.n + gn) / 4u] = rows[i];
        }
    }
}
