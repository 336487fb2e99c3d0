// half_matmul_coop.wgsl: the f16 matmul of half_matmul.wgsl (same params and bindings, from
// half_matmul_params.wgsl placed in front of this file, and the same result: C [batch, M,
// N] in f32 from f16 views A [M, K] and B [K, N]) on cooperative
// matrices, the subgroup-wide multiply-accumulate units (tensor cores on NVIDIA, matrix
// cores on AMD, simdgroup matrices on Apple) that wgpu exposes as EXPERIMENTAL_COOPERATIVE_MATRIX.
//
// Built twice (src/gpu/shaders.rs), once per cooperative tile size T the hardware may offer
// for f16 inputs with an f32 accumulator: 8 (`half_matmul_coop8`) and 16
// (`half_matmul_coop16`). The build defines T and the aliases CoopA, CoopB, CoopC.
//
// Work split: one workgroup of COOP_INVOCATIONS computes a BM x BM block of C as TILES x
// TILES cooperative tiles (16 of 8x8, or 4 of 16x16); each subgroup takes tiles subgroup_id, subgroup_id +
// num_subgroups, ... so the same kernel serves subgroups of 8 (lavapipe), 32 (NVIDIA) or
// 64 (AMD) invocations. K is walked in chunks of KC: the workgroup stages the A rows
// [BM, KC] and B columns [KC, BM] of the chunk into workgroup memory, converting the
// packed f16 words of any strided view and writing zeros past the matrix edges, so the
// cooperative loads never need bounds or stride checks of their own. The accumulators
// live in workgroup memory (TILES x TILES per workgroup is more than a subgroup can hold
// in variables when there is a single subgroup) and reach `out` with an edge check.
//
// Every cooperative operation runs in subgroup-uniform control flow: the workgroup's early
// return, the K loop and the barriers are uniform across the workgroup, and a subgroup's
// tile loop depends only on subgroup_id.

// 8 KiB of workgroup memory in all, within every adapter's limit (WebGPU's default 16 KiB).
const COOP_INVOCATIONS: u32 = 64u;
const BM: u32 = 32u;
const TILES: u32 = BM / T;
const KC: u32 = 32u;

// Row-major staging tiles: A chunk [BM, KC], B chunk [KC, BM], accumulators [BM, BM].
var<workgroup> tile_a: array<f16, BM * KC>;
var<workgroup> tile_b: array<f16, KC * BM>;
var<workgroup> tile_c: array<f32, BM * BM>;

@compute @workgroup_size(COOP_INVOCATIONS)
fn half_matmul_coop(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_id) sg: u32,
    @builtin(num_subgroups) nsg: u32,
) {
    // linear_workgroup(wg, nwg), written out: naga cannot see that a function's result is
    // uniform, and the return below must be.
    let block = wg.y * nwg.x + wg.x;
    if (block >= p.blocks_m * p.blocks_n) {
        return;
    }
    let row0 = (block / p.blocks_n) * BM;
    let col0 = (block % p.blocks_n) * BM;
    let batch = p.batch_start + wg.z;
    let a_base = p.a_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.a_batch_strides);
    let b_base = p.b_offset + strided_offset(batch, p.batch_rank, p.batch_shape, p.b_batch_strides);

    for (var i = lid; i < BM * BM; i = i + COOP_INVOCATIONS) {
        tile_c[i] = 0.0;
    }
    for (var k0 = 0u; k0 < p.k; k0 = k0 + KC) {
        // The previous chunk's cooperative loads are done before the tiles are overwritten
        // (and, the first time, the accumulators are zero before any tile reads them).
        workgroupBarrier();
        for (var i = lid; i < BM * KC; i = i + COOP_INVOCATIONS) {
            let row = row0 + i / KC;
            let kk = k0 + i % KC;
            var v = f16(0.0);
            if (row < p.m && kk < p.k) {
                let at = a_base + row * p.a_row_stride + kk * p.a_col_stride;
                v = f16(a_at(at));
            }
            tile_a[i] = v;
        }
        for (var i = lid; i < KC * BM; i = i + COOP_INVOCATIONS) {
            let kk = k0 + i / BM;
            let col = col0 + i % BM;
            var v = f16(0.0);
            if (kk < p.k && col < p.n) {
                let at = b_base + kk * p.b_row_stride + col * p.b_col_stride;
                v = f16(b_at(at));
            }
            tile_b[i] = v;
        }
        workgroupBarrier();
        for (var t = sg; t < TILES * TILES; t = t + nsg) {
            let c_start = (t / TILES) * T * BM + (t % TILES) * T;
            let a_start = (t / TILES) * T * KC;
            let b_start = (t % TILES) * T;
            var acc = coopLoadT<CoopC>(&tile_c[c_start], BM);
            for (var kk = 0u; kk < KC; kk = kk + T) {
                let am = coopLoadT<CoopA>(&tile_a[a_start + kk], KC);
                let bm = coopLoadT<CoopB>(&tile_b[kk * BM + b_start], BM);
                acc = coopMultiplyAdd(am, bm, acc);
            }
            coopStoreT(acc, &tile_c[c_start], BM);
        }
    }
    workgroupBarrier();

    let c_base = batch * p.m * p.n;
    for (var i = lid; i < BM * BM; i = i + COOP_INVOCATIONS) {
        let row = row0 + i / BM;
        let col = col0 + i % BM;
        if (row < p.m && col < p.n) {
            out[c_base + row * p.n + col] = tile_c[i];
        }
    }
}
