//! The embedding lookup, the grouping of positions by index, and the weight gradient: the
//! references for `shaders/embedding.wgsl`.
//!
//! The GPU computes the weight gradient by sorting `(index, position)` pairs and summing
//! each row's segment in position order. Here the same sums come from one pass over the
//! positions in increasing order, adding each gradient row into its table row: the same
//! additions, starting from zero, in the same order per element, so the two devices agree
//! bit for bit. [`group_by_index`] is the reference for the sort and the segment
//! boundaries themselves.

use super::alloc;
use super::parallel;
use crate::op::layout::Layout;

/// `index` as a row of a table of `rows` rows, or a panic that names `op`, the index and
/// the table size.
pub fn check_index(op: &str, index: i32, rows: usize) -> usize {
    assert!(
        index >= 0 && (index as usize) < rows,
        "{op}: index {index} is out of range for a weight of {rows} rows (valid indices are 0..{rows})"
    );
    index as usize
}

/// Rows `indices` of the `[rows, dim]` view `lw` of `weight`, one after another: the
/// contiguous `[indices.len(), dim]` lookup, copied in parallel runs of output rows.
/// Panics on an index outside the table.
pub fn embedding(weight: &[f32], lw: &Layout, indices: &[i32]) -> Vec<f32> {
    let (rows, dim) = (lw.shape[0], lw.shape[1]);
    for &index in indices {
        check_index("embedding", index, rows);
    }
    let mut out = alloc::zeroed::<f32>(indices.len() * dim, "embedding");
    if dim == 0 {
        return out;
    }
    parallel::for_each_run(&mut out, dim, dim, |first, run| {
        for (dst, &index) in run.chunks_exact_mut(dim).zip(&indices[first..]) {
            let base = lw.offset + index as usize * lw.strides[0];
            if lw.strides[1] == 1 {
                dst.copy_from_slice(&weight[base..base + dim]);
            } else {
                for (c, d) in dst.iter_mut().enumerate() {
                    *d = weight[base + c * lw.strides[1]];
                }
            }
        }
    });
    out
}

/// The contiguous `[rows, dim]` gradient of a lookup's weight from the contiguous
/// `[indices.len(), dim]` gradient `grad` of its output: row `v` is the sum, in increasing
/// position, of the gradient rows whose index is `v`; zero for rows no index names and
/// for `padding_idx`. Panics on an index outside the table.
///
/// The table is cut into runs of rows filled in parallel: each run walks all positions in
/// order and adds only those that land in it, so every row is summed by one thread in the
/// same order as on one thread.
pub fn embedding_backward(
    grad: &[f32],
    indices: &[i32],
    rows: usize,
    dim: usize,
    padding_idx: Option<usize>,
) -> Vec<f32> {
    for &index in indices {
        check_index("embedding backward", index, rows);
    }
    let mut out = alloc::zeroed::<f32>(rows * dim, "embedding");
    if dim == 0 {
        return out;
    }
    // Every run scans all positions; the rows it owns receive their share of the adds.
    let work_per_row = (indices.len() * dim).div_ceil(rows.max(1)) + 1;
    parallel::for_each_run(&mut out, dim, work_per_row, |first, run| {
        let owned = first..first + run.len() / dim;
        for (position, &index) in indices.iter().enumerate() {
            let row = index as usize;
            if !owned.contains(&row) || Some(row) == padding_idx {
                continue;
            }
            let g = &grad[position * dim..(position + 1) * dim];
            let dst = &mut run[(row - first) * dim..(row - first + 1) * dim];
            for (o, &x) in dst.iter_mut().zip(g) {
                *o += x;
            }
        }
    });
    out
}

/// The positions `0..indices.len()` grouped by their index, as `(order, offsets)`:
/// `order[offsets[v]..offsets[v + 1]]` are the positions holding `v`, ascending, for every
/// `v < groups`; positions whose index lies outside `0..groups` belong to no group and
/// come last, ascending. `offsets` has `groups + 1` entries.
pub fn group_by_index(indices: &[i32], groups: usize) -> (Vec<i32>, Vec<i32>) {
    // Out-of-range indices share one key past every group, as the GPU's NO_ROW.
    let key = |index: i32| if index >= 0 && (index as usize) < groups { index as usize } else { groups };
    let mut counts = vec![0usize; groups + 1];
    for &index in indices {
        counts[key(index)] += 1;
    }
    // The start of every group, and of the out-of-range positions after them: the last
    // start is also `offsets[groups]`, the end of the last group.
    let mut next = Vec::with_capacity(groups + 1);
    let mut running = 0;
    for &count in &counts {
        next.push(running);
        running += count;
    }
    let offsets = next.iter().map(|&s| as_i32(s)).collect();
    // A counting sort visits positions in increasing order, so each group stays ascending.
    let mut order = alloc::zeroed::<i32>(indices.len(), "embedding");
    for (position, &index) in indices.iter().enumerate() {
        let k = key(index);
        order[next[k]] = as_i32(position);
        next[k] += 1;
    }
    (order, offsets)
}

fn as_i32(v: usize) -> i32 {
    i32::try_from(v).expect("group_by_index: more positions than an i32 can count")
}
