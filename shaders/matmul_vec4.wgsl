// matmul_vec4.wgsl: the kernels of matmul.wgsl with 16-byte loads and stores, for the common
// case where both operands are row-major and every row starts on a 4-element boundary.
//
// Bindings: params (MatmulParams), a, b, out as arrays of vec4<f32>, bias as f32 (any
// offset); the params, the params and bias bindings and the epilogue are in
// matmul_epilogue.wgsl, placed before this file. Preconditions checked by the launcher:
// a_col_stride == b_col_stride == 1; K, N, the row strides, the offsets and the batch
// strides all multiples of 4. Then a row of A splits into whole vec4s along K, a row of B and of C
// into whole vec4s along N, and every bounds test on a vec4 is exact.
//
// Three tilings; src/gpu/tuning.rs picks one per adapter and shape class:
// - `matmul_vec4`: 64x64 output tile per workgroup of 256, K step 16, a 4x4 block per
//   invocation. Each step every invocation loads one vec4 of A and one of B into
//   workgroup memory.
// - `matmul_vec4_tile128`: 128x128 output tile per workgroup of 256, K step 8, an 8x8
//   block per invocation (two 4x4 quadrants 64 apart, so that the vec4 reads of workgroup
//   memory by neighbouring invocations are contiguous), the next step's global loads
//   issued before the current step's arithmetic. The configuration for large products on
//   GPUs: 64 multiply-adds per workgroup-memory load instead of 16.
// - `matmul_vec4_rows4`: no workgroup memory and no barrier; a workgroup of 32 computes a
//   4x128 block of C, each invocation one column quad of four rows, reading A as vec4
//   along K (the same address for the whole workgroup) and four B rows per K quad.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const T128: u32 = 128u;
const T128_K: u32 = 8u;
const ROWS4_M: u32 = 4u;
const ROWS4_QUADS: u32 = 32u;

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

// The epilogue of the four elements (row, col .. col + 3).
fn epilogue4(v: vec4<f32>, row: u32, col: u32) -> vec4<f32> {
    if (p.bias_mode == 0u && p.activation == 0u) {
        return v;
    }
    return vec4<f32>(epilogue(v.x, row, col), epilogue(v.y, row, col + 1u), epilogue(v.z, row, col + 2u), epilogue(v.w, row, col + 3u));
}

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
            out[(out_base + gm * p.n + gn) / 4u] = epilogue4(rows[i], gm, gn);
        }
    }
}

var<workgroup> a_tile128: array<vec4<f32>, 256>; // [T128_K][T128 / 4]: A transposed, rows in vec4s
var<workgroup> b_tile128: array<vec4<f32>, 256>; // [T128_K][T128 / 4]

@compute @workgroup_size(256)
fn matmul_vec4_tile128(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = linear_workgroup(wg, nwg);
    let tile_m = tile / p.tiles_n;
    let tile_n = tile % p.tiles_n;
    if (tile_m >= p.tiles_m) {
        return;
    }
    let batch = p.batch_start + wg.z;
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);
    let row0 = tile_m * T128;
    let col0 = tile_n * T128;
    // Compute block: rows ty*4 .. +4 and 64 + ty*4 .. +4, column quads tx and 16 + tx.
    let tx = lid % 16u;
    let ty = lid / 16u;
    // Loads per step: A row am, k-quad aq (128 rows x 2 quads); B row bk, n-quad bq (8 x 32).
    let am = lid / 2u;
    let aq = lid % 2u;
    let bk = lid / 32u;
    let bq = lid % 32u;
    let gm_load = row0 + am;
    let gn_load = col0 + bq * 4u;

    var acc: array<vec4<f32>, 16>; // [row i of the block][column quad h]: acc[i * 2 + h]
    for (var i = 0u; i < 16u; i = i + 1u) {
        acc[i] = vec4<f32>(0.0);
    }

    var a_next = vec4<f32>(0.0);
    var b_next = vec4<f32>(0.0);
    if (gm_load < p.m && aq * 4u < p.k) {
        a_next = a[(a_base + gm_load * p.a_row_stride + aq * 4u) / 4u];
    }
    if (bk < p.k && gn_load < p.n) {
        b_next = b[(b_base + bk * p.b_row_stride + gn_load) / 4u];
    }

    for (var k0 = 0u; k0 < p.k; k0 = k0 + T128_K) {
        let slot = am / 4u;
        let lane = am % 4u;
        a_tile128[(aq * 4u) * 32u + slot][lane] = a_next.x;
        a_tile128[(aq * 4u + 1u) * 32u + slot][lane] = a_next.y;
        a_tile128[(aq * 4u + 2u) * 32u + slot][lane] = a_next.z;
        a_tile128[(aq * 4u + 3u) * 32u + slot][lane] = a_next.w;
        b_tile128[bk * 32u + bq] = b_next;
        workgroupBarrier();

        // The next step's loads go out before this step's arithmetic hides their latency.
        let k1 = k0 + T128_K;
        a_next = vec4<f32>(0.0);
        b_next = vec4<f32>(0.0);
        if (gm_load < p.m && k1 + aq * 4u < p.k) {
            a_next = a[(a_base + gm_load * p.a_row_stride + k1 + aq * 4u) / 4u];
        }
        if (k1 + bk < p.k && gn_load < p.n) {
            b_next = b[(b_base + (k1 + bk) * p.b_row_stride + gn_load) / 4u];
        }

        for (var kk = 0u; kk < T128_K; kk = kk + 1u) {
            let a_lo = a_tile128[kk * 32u + ty];
            let a_hi = a_tile128[kk * 32u + 16u + ty];
            let b_lo = b_tile128[kk * 32u + tx];
            let b_hi = b_tile128[kk * 32u + 16u + tx];
            for (var i = 0u; i < 4u; i = i + 1u) {
                acc[i * 2u] = acc[i * 2u] + a_lo[i] * b_lo;
                acc[i * 2u + 1u] = acc[i * 2u + 1u] + a_lo[i] * b_hi;
                acc[8u + i * 2u] = acc[8u + i * 2u] + a_hi[i] * b_lo;
                acc[8u + i * 2u + 1u] = acc[8u + i * 2u + 1u] + a_hi[i] * b_hi;
            }
        }
        workgroupBarrier();
    }

    let out_base = batch * p.m * p.n;
    for (var i = 0u; i < 8u; i = i + 1u) {
        let gm = row0 + (i / 4u) * 64u + ty * 4u + i % 4u;
        if (gm >= p.m) {
            continue;
        }
        for (var h = 0u; h < 2u; h = h + 1u) {
            let gn = col0 + h * 64u + tx * 4u;
            if (gn < p.n) {
                out[(out_base + gm * p.n + gn) / 4u] = epilogue4(acc[i * 2u + h], gm, gn);
            }
        }
    }
}

@compute @workgroup_size(32)
fn matmul_vec4_rows4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = linear_workgroup(wg, nwg);
    let tile_m = tile / p.tiles_n;
    let tile_n = tile % p.tiles_n;
    if (tile_m >= p.tiles_m) {
        return;
    }
    let batch = p.batch_start + wg.z;
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);
    let row0 = tile_m * ROWS4_M;
    let quad = tile_n * ROWS4_QUADS + lid;
    // Past the edge, read the last row or column quad: loads stay in bounds without a
    // branch in the K loop; the stores skip those rows and quads. Offsets in vec4 units.
    let last_row = p.m - 1u;
    let b_row4 = p.b_row_stride / 4u;
    let b_col = b_base / 4u + min(quad, p.n / 4u - 1u);
    let a0 = (a_base + min(row0, last_row) * p.a_row_stride) / 4u;
    let a1 = (a_base + min(row0 + 1u, last_row) * p.a_row_stride) / 4u;
    let a2 = (a_base + min(row0 + 2u, last_row) * p.a_row_stride) / 4u;
    let a3 = (a_base + min(row0 + 3u, last_row) * p.a_row_stride) / 4u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < p.k / 4u; k4 = k4 + 1u) {
        let bp = b_col + k4 * 4u * b_row4;
        let b0 = b[bp];
        let b1 = b[bp + b_row4];
        let b2 = b[bp + 2u * b_row4];
        let b3 = b[bp + 3u * b_row4];
        let x0 = a[a0 + k4];
        let x1 = a[a1 + k4];
        let x2 = a[a2 + k4];
        let x3 = a[a3 + k4];
        acc0 = acc0 + x0.x * b0 + x0.y * b1 + x0.z * b2 + x0.w * b3;
        acc1 = acc1 + x1.x * b0 + x1.y * b1 + x1.z * b2 + x1.w * b3;
        acc2 = acc2 + x2.x * b0 + x2.y * b1 + x2.z * b2 + x2.w * b3;
        acc3 = acc3 + x3.x * b0 + x3.y * b1 + x3.z * b2 + x3.w * b3;
    }

    if (quad >= p.n / 4u) {
        return;
    }
    let out_base = batch * p.m * p.n;
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < ROWS4_M; i = i + 1u) {
        let gm = row0 + i;
        if (gm >= p.m) {
            break;
        }
        out[(out_base + gm * p.n) / 4u + quad] = epilogue4(rows[i], gm, quad * 4u);
    }
}
