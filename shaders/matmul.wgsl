// matmul.wgsl: batched C[b] = act(A[b] x B[b] + bias), A [M, K], B [K, N], C [M, N], f32.
//
// Bindings: params, a (f32), b (f32), bias (f32), out (f32, contiguous [batch, M, N]);
// the params, the params and bias bindings and the epilogue every entry point applies to
// each finished element are in matmul_epilogue.wgsl, placed before this file. A and B are
// strided views: any row and column strides, so a transposed operand costs no copy, and
// per-batch offsets come from broadcast batch strides (0 on a broadcast batch dimension).
//
// Two tilings, both walking the tiles with the folded x-y workgroup grid and the batch
// with z (offset by batch_start when a batch is split over several dispatches):
// - `matmul`: one workgroup of 256 invocations computes a 64x64 tile of C. Each step loads
//   a 64x16 slice of A and a 16x64 slice of B into workgroup memory (four elements of each
//   per invocation, zero beyond the edges), then each invocation accumulates a 4x4 block
//   of C in registers from them. What GPUs with fast workgroup memory want.
// - `matmul_rows8`: no workgroup memory and no barrier. A workgroup of 64 invocations
//   computes an 8x64 block of C; invocation i owns column col0 + i of its 8 rows and walks
//   K reading B straight from global memory. The A element of a row and step is the same
//   for the whole workgroup, so a CPU-based adapter (lavapipe) loads it once and
//   broadcasts it, and one gathered B load feeds eight multiply-adds.

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const ROWS8_M: u32 = 8u;
const ROWS8_N: u32 = 64u;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> a_tile: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> b_tile: array<f32, 1024>; // [TILE_K][TILE_N]

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = linear_workgroup(wg, nwg);
    let tile_m = tile / p.tiles_n;
    let tile_n = tile % p.tiles_n;
    if (tile_m >= p.tiles_m) {
        return;
    }
    let batch = p.batch_start + wg.z;
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);
    let row0 = tile_m * TILE_M;
    let col0 = tile_n * TILE_N;
    // This invocation's 4x4 block: rows row0 + ty*4 .. +4, columns col0 + tx*4 .. +4.
    let tx = lid % 16u;
    let ty = lid / 16u;

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 = k0 + TILE_K) {
        for (var e = 0u; e < 4u; e = e + 1u) {
            let flat = lid + e * WG;
            // A: neighbouring invocations take neighbouring k (coalesced when A is row-major).
            let ak = flat % TILE_K;
            let am = flat / TILE_K;
            let gm = row0 + am;
            let gk = k0 + ak;
            var av = 0.0;
            if (gm < p.m && gk < p.k) {
                av = a[a_base + gm * p.a_row_stride + gk * p.a_col_stride];
            }
            a_tile[ak * TILE_M + am] = av;
            // B: neighbouring invocations take neighbouring n.
            let bn = flat % TILE_N;
            let bk = flat / TILE_N;
            let gn = col0 + bn;
            let gkb = k0 + bk;
            var bv = 0.0;
            if (gn < p.n && gkb < p.k) {
                bv = b[b_base + gkb * p.b_row_stride + gn * p.b_col_stride];
            }
            b_tile[bk * TILE_N + bn] = bv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk = kk + 1u) {
            let ar = kk * TILE_M + ty * 4u;
            let br = kk * TILE_N + tx * 4u;
            let bv = vec4<f32>(b_tile[br], b_tile[br + 1u], b_tile[br + 2u], b_tile[br + 3u]);
            acc0 = acc0 + a_tile[ar] * bv;
            acc1 = acc1 + a_tile[ar + 1u] * bv;
            acc2 = acc2 + a_tile[ar + 2u] * bv;
            acc3 = acc3 + a_tile[ar + 3u] * bv;
        }
        workgroupBarrier();
    }

    let out_base = batch * p.m * p.n;
    var rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i = i + 1u) {
        let gm = row0 + ty * 4u + i;
        if (gm >= p.m) {
            break;
        }
        for (var j = 0u; j < 4u; j = j + 1u) {
            let gn = col0 + tx * 4u + j;
            if (gn < p.n) {
                out[out_base + gm * p.n + gn] = epilogue(rows[i][j], gm, gn);
            }
        }
    }
}

@compute @workgroup_size(64)
fn matmul_rows8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = linear_workgroup(wg, nwg);
    let tile_m = tile / p.tiles_n;
    let tile_n = tile % p.tiles_n;
    if (tile_m >= p.tiles_m) {
        return;
    }
    let batch = p.batch_start + wg.z;
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);
    let row0 = tile_m * ROWS8_M;
    let col = tile_n * ROWS8_N + lid;
    // Rows and columns past the edge read the last row or column instead: every load stays
    // in bounds without a branch in the K loop, and the stores below skip them.
    let last_row = p.m - 1u;
    let b_col = b_base + min(col, p.n - 1u) * p.b_col_stride;
    let a0 = a_base + min(row0, last_row) * p.a_row_stride;
    let a1 = a_base + min(row0 + 1u, last_row) * p.a_row_stride;
    let a2 = a_base + min(row0 + 2u, last_row) * p.a_row_stride;
    let a3 = a_base + min(row0 + 3u, last_row) * p.a_row_stride;
    let a4 = a_base + min(row0 + 4u, last_row) * p.a_row_stride;
    let a5 = a_base + min(row0 + 5u, last_row) * p.a_row_stride;
    let a6 = a_base + min(row0 + 6u, last_row) * p.a_row_stride;
    let a7 = a_base + min(row0 + 7u, last_row) * p.a_row_stride;

    var acc0 = 0.0;
    var acc1 = 0.0;
    var acc2 = 0.0;
    var acc3 = 0.0;
    var acc4 = 0.0;
    var acc5 = 0.0;
    var acc6 = 0.0;
    var acc7 = 0.0;
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        let bv = b[b_col + kk * p.b_row_stride];
        let ak = kk * p.a_col_stride;
        acc0 = acc0 + a[a0 + ak] * bv;
        acc1 = acc1 + a[a1 + ak] * bv;
        acc2 = acc2 + a[a2 + ak] * bv;
        acc3 = acc3 + a[a3 + ak] * bv;
        acc4 = acc4 + a[a4 + ak] * bv;
        acc5 = acc5 + a[a5 + ak] * bv;
        acc6 = acc6 + a[a6 + ak] * bv;
        acc7 = acc7 + a[a7 + ak] * bv;
    }

    if (col >= p.n) {
        return;
    }
    let out_base = batch * p.m * p.n;
    var rows = array<f32, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    for (var i = 0u; i < ROWS8_M; i = i + 1u) {
        let gm = row0 + i;
        if (gm >= p.m) {
            break;
        }
        out[out_base + gm * p.n + col] = epilogue(rows[i], gm, col);
    }
}
