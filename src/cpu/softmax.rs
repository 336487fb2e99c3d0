//! Softmax and log-softmax along the last axis of a contiguous `[rows, len]` matrix.

use crate::op::SoftmaxOp;

pub fn softmax(op: SoftmaxOp, src: &[f32], offset: usize, rows: usize, len: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * len);
    for r in 0..rows {
        let xs = &src[offset + r * len..offset + (r + 1) * len];
        let max = xs.iter().fold(f32::NEG_INFINITY, |m, &x| if x.is_nan() || m.is_nan() { f32::NAN } else { m.max(x) });
        let sum: f64 = xs.iter().map(|&x| ((x - max) as f64).exp()).sum();
        match op {
            SoftmaxOp::Softmax => out.extend(xs.iter().map(|&x| (((x - max) as f64).exp() / sum) as f32)),
            SoftmaxOp::LogSoftmax => out.extend(xs.iter().map(|&x| ((x - max) as f64 - sum.ln()) as f32)),
        }
    }
    out
}
