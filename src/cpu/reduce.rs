//! Reductions along the last axis of a contiguous `[rows, len]` matrix, accumulated in
//! f64 so the reference is more accurate than any f32 kernel it checks.

use crate::op::ReduceOp;
use crate::storage::CpuData;

/// Reduces each of the `rows` rows of length `len` starting at `src[offset]`.
/// `correction` is used by `Var` only.
pub fn reduce(op: ReduceOp, src: &[f32], offset: usize, rows: usize, len: usize, correction: f32) -> CpuData {
    let row = |r: usize| &src[offset + r * len..offset + (r + 1) * len];
    match op {
        ReduceOp::Sum => {
            CpuData::F32((0..rows).map(|r| row(r).iter().map(|&x| x as f64).sum::<f64>() as f32).collect())
        }
        ReduceOp::Mean => CpuData::F32(
            (0..rows).map(|r| (row(r).iter().map(|&x| x as f64).sum::<f64>() / len as f64) as f32).collect(),
        ),
        ReduceOp::Max => CpuData::F32((0..rows).map(|r| fold_nan(row(r), f32::NEG_INFINITY, f32::max)).collect()),
        ReduceOp::Min => CpuData::F32((0..rows).map(|r| fold_nan(row(r), f32::INFINITY, f32::min)).collect()),
        ReduceOp::Var => CpuData::F32(
            (0..rows)
                .map(|r| {
                    let xs = row(r);
                    let mean = xs.iter().map(|&x| x as f64).sum::<f64>() / len as f64;
                    let ss: f64 = xs.iter().map(|&x| (x as f64 - mean).powi(2)).sum();
                    (ss / (len as f64 - correction as f64).max(0.0)) as f32
                })
                .collect(),
        ),
        ReduceOp::ArgMax => CpuData::I32((0..rows).map(|r| arg_best(row(r), |v, w| v > w)).collect()),
        ReduceOp::ArgMin => CpuData::I32((0..rows).map(|r| arg_best(row(r), |v, w| v < w)).collect()),
    }
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
