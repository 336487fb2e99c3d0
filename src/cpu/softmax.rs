//! Softmax and log-softmax along the last axis of a contiguous `[rows, len]` matrix; rows
//! are normalised in parallel, each by one thread.

use super::alloc;
use super::parallel;
use crate::op::SoftmaxOp;

/// `op` of each of the `rows` rows of length `len` starting at `src[offset]`.
pub fn softmax(op: SoftmaxOp, src: &[f32], offset: usize, rows: usize, len: usize) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(rows * len, "softmax");
    if len == 0 {
        return out;
    }
    // Each row costs an exp per element in the sum and another in the output.
    parallel::for_each_run(&mut out, len, 4 * len, |first, run| {
        for (r, dst) in run.chunks_exact_mut(len).enumerate() {
            let row = first + r;
            softmax_row(op, &src[offset + row * len..offset + (row + 1) * len], dst);
        }
    });
    out
}

fn softmax_row(op: SoftmaxOp, xs: &[f32], dst: &mut [f32]) {
    let max = xs.iter().fold(f32::NEG_INFINITY, |m, &x| if x.is_nan() || m.is_nan() { f32::NAN } else { m.max(x) });
    let sum: f64 = xs.iter().map(|&x| ((x - max) as f64).exp()).sum();
    match op {
        SoftmaxOp::Softmax => {
            for (d, &x) in dst.iter_mut().zip(xs) {
                *d = (((x - max) as f64).exp() / sum) as f32;
            }
        }
        SoftmaxOp::LogSoftmax => {
            let log_sum = sum.ln();
            for (d, &x) in dst.iter_mut().zip(xs) {
                *d = ((x - max) as f64 - log_sum) as f32;
            }
        }
    }
}
