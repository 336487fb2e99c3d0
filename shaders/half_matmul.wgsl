// half_matmul.wgsl: batched C[b] = A[b] x B[b], A [M, K] and B [K, N] in f16, C [M, N] in
// f32. Products of two f16 values are exact in f32, and the sum runs in f32 in the order
// k = 0, 1, .. K-1, as the CPU twin (cpu::half::matmul) does.
//
// Params and bindings: half_matmul_params.wgsl, placed in front of this file. A and B are
// strided views (any row and column strides,
// broadcast batch strides), as in matmul.wgsl; an f16 result is this kernel's f32 output
// rounded by `cast_to_half`.
//
// Work split: each invocation computes a 4x4 block of C from direct loads, without
// workgroup memory: on a CPU adapter (lavapipe runs a workgroup on one thread) barriers and
// shared memory cost more than the cache-resident global loads they would save. The
// linear invocation index (x-y grid folded) walks the blocks; z walks the batch.

const BLOCK: u32 = 4u;

@compute @workgroup_size(WG)
fn half_matmul(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let block = linear_index(wg, nwg, lid);
    if (block >= p.blocks_m * p.blocks_n) {
        return;
    }
    let row0 = (block / p.blocks_n) * BLOCK;
    let col0 = (block % p.blocks_n) * BLOCK;
    let batch = p.batch_start + wg.z;
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);

    // Rows and columns past the edge read the last valid one (always in bounds) and are
    // not written.
    var a_row: array<u32, 4>;
    var b_col: array<u32, 4>;
    for (var r = 0u; r < BLOCK; r = r + 1u) {
        a_row[r] = a_base + min(row0 + r, p.m - 1u) * p.a_row_stride;
        b_col[r] = b_base + min(col0 + r, p.n - 1u) * p.b_col_stride;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk = kk + 1u) {
        let ak = kk * p.a_col_stride;
        let bk = kk * p.b_row_stride;
        let bv = vec4<f32>(b_at(b_col[0] + bk), b_at(b_col[1] + bk), b_at(b_col[2] + bk), b_at(b_col[3] + bk));
        acc0 = acc0 + a_at(a_row[0] + ak) * bv;
        acc1 = acc1 + a_at(a_row[1] + ak) * bv;
        acc2 = acc2 + a_at(a_row[2] + ak) * bv;
        acc3 = acc3 + a_at(a_row[3] + ak) * bv;
    }

    let c_base = batch * p.m * p.n;
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var r = 0u; r < BLOCK; r = r + 1u) {
        let row = row0 + r;
        if (row >= p.m) {
            break;
        }
        for (var c = 0u; c < BLOCK; c = c + 1u) {
            let col = col0 + c;
            if (col < p.n) {
                out[c_base + row * p.n + col] = acc[r][c];
            }
        }
    }
}
