//! Reductions along the last axis of a contiguous `[rows, len]` matrix, accumulated in
//! f64 so the reference is more accurate than any f32 kernel it checks.
//!
//! Sums run through `sum_f64`: eight interleaved f64 accumulators combined in a fixed
//! order, so the compiler can vectorise them and the result does not depend on how many
//! threads run (each row is one thread's). Next to a left-to-right f64 sum this changes
//! only the rounding order, far below what an f32 result can show.

use super::alloc;
use super::parallel;
use crate::op::ReduceOp;
use crate::storage::CpuData;

/// Reduces each of the `rows` rows of length `len` starting at `src[offset]`.
/// `correction` is used by `Var` only. Rows are reduced in parallel, each by one thread.
pub fn reduce(op: ReduceOp, src: &[f32], offset: usize, rows: usize, len: usize, correction: f32) -> CpuData {
    let row = |r: usize| &src[offset + r * len..offset + (r + 1) * len];
    let per_row = |f: &(dyn Fn(&[f32]) -> f32 + Sync)| parallel::map_indices(rows, len, |r| f(row(r)));
    match op {
        ReduceOp::Sum => CpuData::F32(per_row(&|xs| sum_f64(xs, f64::from) as f32)),
        ReduceOp::Mean => CpuData::F32(per_row(&|xs| (sum_f64(xs, f64::from) / len as f64) as f32)),
        ReduceOp::Max => CpuData::F32(per_row(&|xs| fold_nan(xs, f32::NEG_INFINITY, f32::max))),
        ReduceOp::Min => CpuData::F32(per_row(&|xs| fold_nan(xs, f32::INFINITY, f32::min))),
        ReduceOp::Var => CpuData::F32(per_row(&|xs| {
            let mean = sum_f64(xs, f64::from) / len as f64;
            let ss = sum_f64(xs, |x| (x as f64 - mean).powi(2));
            (ss / (len as f64 - correction as f64).max(0.0)) as f32
        })),
        ReduceOp::ArgMax => CpuData::I32(parallel::map_indices(rows, len, |r| arg_best(row(r), |v, w| v > w))),
        ReduceOp::ArgMin => CpuData::I32(parallel::map_indices(rows, len, |r| arg_best(row(r), |v, w| v < w))),
    }
}

/// The sums (or with `mean` the means) of the `cols` columns of the row-major `[len, cols]`
/// matrix at `src[offset..]`: the reduction of its leading axis without transposing it
/// first. Column `j` is summed exactly as `sum_f64` sums a contiguous row (element `i`
/// into accumulator `i % 8`, the same pairwise combination, then the tail), so the result
/// is the same bits as [`reduce`] on the transposed copy; the accumulators are kept for a
/// run of columns at once, so each pass over a row is one vectorised loop.
pub fn column_sums(src: &[f32], offset: usize, len: usize, cols: usize, mean: bool) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(cols, "reduce");
    parallel::for_each_run(&mut out, 1, len, |first, run| {
        let w = run.len();
        if w == 0 {
            return;
        }
        let row = |i: usize| &src[offset + i * cols + first..][..w];
        let mut acc = vec![0.0f64; 8 * w];
        let full = len / 8 * 8;
        for i in (0..full).step_by(8) {
            for (k, lane) in acc.chunks_exact_mut(w).enumerate() {
                for (a, &x) in lane.iter_mut().zip(row(i + k)) {
                    *a += x as f64;
                }
            }
        }
        let lane = |k: usize, j: usize| acc[k * w + j];
        for (j, o) in run.iter_mut().enumerate() {
            let mut total = ((lane(0, j) + lane(4, j)) + (lane(1, j) + lane(5, j)))
                + ((lane(2, j) + lane(6, j)) + (lane(3, j) + lane(7, j)));
            for i in full..len {
                total += row(i)[j] as f64;
            }
            *o = if mean { (total / len as f64) as f32 } else { total as f32 };
        }
    });
    out
}

/// `sum(term(x))` over `xs` in f64: element `i` goes to accumulator `i % 8`, the
/// accumulators are added pairwise in a fixed order, then the tail. The same bits for the
/// same input every time.
#[inline]
pub(crate) fn sum_f64(xs: &[f32], term: impl Fn(f32) -> f64) -> f64 {
    sum_f64_indices(0..xs.len(), |i| term(xs[i]))
}

/// `sum_f64` of `term(i)` over the indices `range`, for sums that read several arrays.
#[inline]
pub(crate) fn sum_f64_indices(range: std::ops::Range<usize>, term: impl Fn(usize) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut i = range.start;
    while i + 8 <= range.end {
        for (k, a) in acc.iter_mut().enumerate() {
            *a += term(i + k);
        }
        i += 8;
    }
    let mut total = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for j in i..range.end {
        total += term(j);
    }
    total
}

/// Folds with `f`, returning NaN as soon as one element is NaN (PyTorch's max/min).
fn fold_nan(xs: &[f32], init: f32, f: fn(f32, f32) -> f32) -> f32 {
    let mut acc = init;
    for &x in xs {
        if x.is_nan() {
            return f32::NAN;
        }
        acc = f(acc, x);
    }
    acc
}

/// The first index of the best element; a NaN is best of all (PyTorch's argmax/argmin).
fn arg_best(xs: &[f32], better: fn(f32, f32) -> bool) -> i32 {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if xs[best].is_nan() {
            break;
        }
        if x.is_nan() || better(x, xs[best]) {
            best = i;
        }
    }
    best as i32
}
