//! The CPU twins of `shaders/loss.wgsl`: the fused cross-entropy over class indices,
//! with the kernel's formulas and order of summation (the forward adds each row's loss
//! into one of [`LANES`] partial sums, as the kernel's invocations do, then adds the
//! partial sums in the kernel's tree order), so both devices round alike.

use super::alloc;
pub use crate::op::loss::{CrossEntropyRows, Reduction};

/// Invocations of the forward kernel's single workgroup (`WG` in `shaders/common.wgsl`).
pub const LANES: usize = 256;

impl CrossEntropyRows<'_> {
    /// `None` for an ignored row, `Some(None)` for a target outside the classes, else the
    /// class.
    fn class(&self, t: i32) -> Option<Option<usize>> {
        if self.ignore_index == Some(t) {
            None
        } else if t >= 0 && (t as usize) < self.classes {
            Some(Some(t as usize))
        } else {
            Some(None)
        }
    }

    fn weight_of(&self, class: usize) -> f32 {
        self.weight.map_or(1.0, |w| w[class])
    }
}

/// Panics, naming `op`, on a target outside `0..classes` that is not the ignored one. The
/// CPU reads every target anyway; the GPU kernel leaves such a row out rather than read
/// the targets back.
pub fn check_targets(op: &str, targets: &[i32], classes: usize, ignore: Option<i32>) {
    if let Some(&bad) = targets.iter().find(|&&t| !(t >= 0 && (t as usize) < classes) && Some(t) != ignore) {
        panic!("{op}: target {bad} is out of range for {classes} classes (0..{classes})");
    }
}

/// Max that propagates NaN, as `nan_max` in common.wgsl.
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() {
        a
    } else if b.is_nan() {
        b
    } else {
        a.max(b)
    }
}

/// The forward kernel: `[losses | lse per row | weight sum]` from contiguous
/// `logits [rows, classes]` and `targets [rows]`.
pub fn cross_entropy_forward(spec: &CrossEntropyRows, logits: &[f32], targets: &[i32]) -> Vec<f32> {
    let (rows, classes) = (spec.rows, spec.classes);
    let lse_at = spec.lse_at();
    let mut out = alloc::zeroed::<f32>(spec.forward_len(), "loss");
    let mut part_loss = [0.0f32; LANES];
    let mut part_weight = [0.0f32; LANES];
    for r in 0..rows {
        let x = &logits[r * classes..(r + 1) * classes];
        let m = x[1..].iter().fold(x[0], |m, &v| nan_max(m, v));
        let s = x.iter().fold(0.0f32, |s, &v| s + (v - m).exp());
        let lse = m + s.ln();
        out[lse_at + r] = lse;
        let (l, w) = match spec.class(targets[r]) {
            None => (0.0, 0.0),
            Some(None) => (f32::NAN, f32::NAN),
            Some(Some(c)) => {
                let w = spec.weight_of(c);
                (w * (lse - x[c]), w)
            }
        };
        if spec.reduction == Reduction::None {
            out[r] = l;
        }
        part_loss[r % LANES] += l;
        part_weight[r % LANES] += w;
    }
    let mut stride = LANES / 2;
    while stride > 0 {
        for i in 0..stride {
            part_loss[i] += part_loss[i + stride];
            part_weight[i] += part_weight[i + stride];
        }
        stride /= 2;
    }
    out[lse_at + rows] = part_weight[0];
    match spec.reduction {
        Reduction::Mean => out[0] = part_loss[0] / part_weight[0],
        Reduction::Sum => out[0] = part_loss[0],
        Reduction::None | Reduction::BatchMean => {}
    }
    out
}

/// The backward kernel: the gradient with respect to the logits, from the forward's `aux`
/// (`lse` per row, then the weight sum) and the incoming gradient `grad` (one value, or
/// one per row for [`Reduction::None`]).
pub fn cross_entropy_backward(
    spec: &CrossEntropyRows,
    logits: &[f32],
    targets: &[i32],
    aux: &[f32],
    grad: &[f32],
) -> Vec<f32> {
    let (rows, classes) = (spec.rows, spec.classes);
    let mut out = alloc::zeroed::<f32>(rows * classes, "loss");
    for (r, row) in out.chunks_mut(classes.max(1)).enumerate().take(rows) {
        let scale = match spec.reduction {
            Reduction::None => grad[r],
            Reduction::Sum => grad[0],
            Reduction::Mean | Reduction::BatchMean => grad[0] / aux[rows],
        };
        match spec.class(targets[r]) {
            None => row.fill(0.0),
            Some(None) => row.fill(f32::NAN),
            Some(Some(t)) => {
                let factor = spec.weight_of(t) * scale;
                for (c, v) in row.iter_mut().enumerate() {
                    let prob = (logits[r * classes + c] - aux[r]).exp();
                    let onehot = if c == t { 1.0 } else { 0.0 };
                    *v = (prob - onehot) * factor;
                }
            }
        }
    }
    out
}
