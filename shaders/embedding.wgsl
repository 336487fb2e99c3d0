// embedding.wgsl: the embedding lookup, and the gradient of its weight by sorting, without
// float atomics and with the same result on every run.
//
// Layouts (all sizes in elements):
//   weight  f32 [num_rows, dim] read at src_offset + row * row_stride + column * col_stride
//           (any 2-D view, so a transposed or sliced table needs no copy);
//   indices i32, `count` of them, contiguous from index_offset (the flattened index tensor);
//   lookup output           f32 [count, dim], contiguous;
//   incoming gradient (src) f32 [count, dim], contiguous from src_offset;
//   weight gradient (out)   f32 [num_rows, dim], contiguous;
//   work    u32: the sort pairs, pair i at [2i] (key: the row) and [2i + 1] (the position
//           it came from), for i < padded; then row v's first sorted pair at 2 * padded + v,
//           for v = 0 ..= num_rows.
//
// Lookup (`embedding`): one invocation per output element copies weight[indices[p], c]. An
// index outside [0, num_rows) reads nothing and yields a zero row; the host validates
// indices where it is asked to (the CPU reference always does).
//
// Gradient: dW[v, c] = sum of dY[p, c] over the positions p with indices[p] == v. A scatter
// would need float atomics and would sum in whatever order the hardware runs, so instead,
// as PyTorch's CUDA embedding backward does, the positions are grouped by row first:
//   1. embedding_sort_keys writes the pair (indices[p], p) for every position, with the
//      key NO_ROW for an index outside the table, and pads with (NO_ROW, i) up to `padded`,
//      a power of two no smaller than BLOCK.
//   2. A bitonic network sorts the pairs by (key, position). Positions are all different,
//      so the order is total and the sorted sequence unique: the unstable network gives the
//      same result on every run, and within a row the positions come out ascending. Stages
//      whose compare distance j is below BLOCK stay inside one block of BLOCK pairs and run
//      in workgroup memory, several per dispatch: embedding_sort_block sorts every block
//      (merge sizes k = 2 .. BLOCK); for each larger k, embedding_merge_global runs one stage
//      with j >= BLOCK across global memory, and embedding_merge_local the stages
//      j = BLOCK / 2 .. 1. O(padded log^2 padded) compare-exchanges in
//      O(log^2(padded / BLOCK)) dispatches.
//   3. embedding_row_starts finds the segment boundaries: one invocation per row v binary
//      searches the sorted keys for the first pair with key >= v, so row v's positions are
//      the pairs [start[v], start[v + 1]). Out-of-range indices (NO_ROW) belong to no row.
//   4. embedding_backward runs one invocation per (row, column) and sums its row's segment
//      of dY, column `column`, in sorted order, that is, in increasing position, starting
//      from zero: every element of dW has one writer (rows that no index names, and the
//      padding row, get exact zeros) and the additions happen in a fixed order, the order
//      of the CPU reference, so the two agree bit for bit. O((num_rows + count) * dim).
//      A row named by many positions makes its invocations loop longer than the others;
//      the fixed order is worth that imbalance.

struct EmbeddingParams {
    // Invocations of this dispatch that do work (elements, pairs, compare-exchanges or rows).
    numel: u32,
    num_rows: u32,
    dim: u32,
    // Positions: the number of indices.
    count: u32,
    // Length of the sort: a power of two >= max(count, BLOCK).
    padded: u32,
    // Bitonic merge size and compare distance of a merge_global or merge_local stage.
    k: u32,
    j: u32,
    // The row whose gradient stays zero, or NO_ROW.
    padding_idx: u32,
    src_offset: u32,
    index_offset: u32,
    row_stride: u32,
    col_stride: u32,
}

// The sort key of an index outside the table (and of padding), larger than every row.
const NO_ROW: u32 = 0xffffffffu;
// Pairs sorted in workgroup memory by one workgroup: two per invocation.
const BLOCK: u32 = 512u;

@group(0) @binding(0) var<uniform> p: EmbeddingParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> indices: array<i32>;
@group(0) @binding(3) var<storage, read_write> work: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

var<workgroup> block_keys: array<u32, BLOCK>;
var<workgroup> block_positions: array<u32, BLOCK>;

@compute @workgroup_size(256)
fn embedding(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let position = i / p.dim;
    let column = i % p.dim;
    let row = indices[p.index_offset + position];
    var value = 0.0;
    if (row >= 0 && u32(row) < p.num_rows) {
        value = src[p.src_offset + u32(row) * p.row_stride + column * p.col_stride];
    }
    out[i] = value;
}

@compute @workgroup_size(256)
fn embedding_sort_keys(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    var key = NO_ROW;
    if (i < p.count) {
        let row = indices[p.index_offset + i];
        if (row >= 0 && u32(row) < p.num_rows) {
            key = u32(row);
        }
    }
    work[2u * i] = key;
    work[2u * i + 1u] = i;
}

// True when the pair (key_a, pos_a) sorts before (key_b, pos_b).
fn sorts_before(key_a: u32, pos_a: u32, key_b: u32, pos_b: u32) -> bool {
    return key_a < key_b || (key_a == key_b && pos_a < pos_b);
}

// Copies the block of pairs that starts at pair `first` into workgroup memory.
fn load_block(lid: u32, first: u32) {
    for (var h = 0u; h < 2u; h = h + 1u) {
        let l = lid + h * WG;
        block_keys[l] = work[2u * (first + l)];
        block_positions[l] = work[2u * (first + l) + 1u];
    }
}

fn store_block(lid: u32, first: u32) {
    for (var h = 0u; h < 2u; h = h + 1u) {
        let l = lid + h * WG;
        work[2u * (first + l)] = block_keys[l];
        work[2u * (first + l) + 1u] = block_positions[l];
    }
}

// The stages j = min(k, BLOCK) / 2, ..., 1 of the bitonic merge of size k, on the block in
// workgroup memory whose first pair is pair `first` of the whole sequence. The direction of
// each compare-exchange is that of the whole network: ascending where bit k of the global
// index of its lower element is clear. Invocation `lid` owns the pair (a, a + j).
fn merge_in_block(lid: u32, first: u32, k: u32) {
    for (var j = min(k, BLOCK) / 2u; j > 0u; j = j / 2u) {
        workgroupBarrier();
        let a = 2u * j * (lid / j) + lid % j;
        let b = a + j;
        let ascending = ((first + a) & k) == 0u;
        let key_a = block_keys[a];
        let pos_a = block_positions[a];
        let key_b = block_keys[b];
        let pos_b = block_positions[b];
        // Pairs are never equal, so "b before a" is exactly "out of order" when ascending.
        if (sorts_before(key_b, pos_b, key_a, pos_a) == ascending) {
            block_keys[a] = key_b;
            block_positions[a] = pos_b;
            block_keys[b] = key_a;
            block_positions[b] = pos_a;
        }
    }
    workgroupBarrier();
}

// One workgroup per block of BLOCK pairs: every merge of size k <= BLOCK.
@compute @workgroup_size(256)
fn embedding_sort_block(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let block = linear_workgroup(wg, nwg);
    if (block >= p.padded / BLOCK) {
        return;
    }
    let first = block * BLOCK;
    load_block(lid, first);
    for (var k = 2u; k <= BLOCK; k = k * 2u) {
        merge_in_block(lid, first, k);
    }
    store_block(lid, first);
}

// One compare-exchange per invocation: stage (k, j) of the network, j >= BLOCK.
@compute @workgroup_size(256)
fn embedding_merge_global(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let t = linear_index(wg, nwg, lid);
    if (t >= p.numel) {
        return;
    }
    let a = 2u * p.j * (t / p.j) + t % p.j;
    let b = a + p.j;
    let ascending = (a & p.k) == 0u;
    let key_a = work[2u * a];
    let pos_a = work[2u * a + 1u];
    let key_b = work[2u * b];
    let pos_b = work[2u * b + 1u];
    if (sorts_before(key_b, pos_b, key_a, pos_a) == ascending) {
        work[2u * a] = key_b;
        work[2u * a + 1u] = pos_b;
        work[2u * b] = key_a;
        work[2u * b + 1u] = pos_a;
    }
}

// One workgroup per block: the stages j < BLOCK of the merge of size p.k > BLOCK.
@compute @workgroup_size(256)
fn embedding_merge_local(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                         @builtin(local_invocation_index) lid: u32) {
    let block = linear_workgroup(wg, nwg);
    if (block >= p.padded / BLOCK) {
        return;
    }
    let first = block * BLOCK;
    load_block(lid, first);
    merge_in_block(lid, first, p.k);
    store_block(lid, first);
}

// One invocation per row v = 0 ..= num_rows: the first sorted pair whose key is >= v.
@compute @workgroup_size(256)
fn embedding_row_starts(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let v = linear_index(wg, nwg, lid);
    if (v >= p.numel) {
        return;
    }
    var lo = 0u;
    var hi = p.padded;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (work[2u * mid] < v) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    work[2u * p.padded + v] = lo;
}

// One invocation per element of the weight gradient: its row's segment summed in order.
@compute @workgroup_size(256)
fn embedding_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = linear_index(wg, nwg, lid);
    if (i >= p.numel) {
        return;
    }
    let row = i / p.dim;
    let column = i % p.dim;
    var sum = 0.0;
    if (row != p.padding_idx) {
        let start = work[2u * p.padded + row];
        let end = work[2u * p.padded + row + 1u];
        for (var s = start; s < end; s = s + 1u) {
            let position = work[2u * s + 1u];
            sum = sum + src[p.src_offset + position * p.dim + column];
        }
    }
    out[i] = sum;
}
