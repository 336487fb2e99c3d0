//! The CPU twins of `shaders/optim.wgsl`: the same formulas in the same order, one
//! element at a time, so both devices follow the same trajectory.

pub use crate::op::optim::{
    OptimScalars, FLAG_CENTERED, FLAG_DECOUPLED, FLAG_FIRST_STEP, FLAG_MAXIMIZE, FLAG_MOMENTUM, FLAG_NESTEROV,
};
use crate::op::OptimOp;

/// Updates `param` and the state vectors in place from `grad`. A state vector the update
/// does not use may be empty.
pub fn update(op: OptimOp, s: &OptimScalars, grad: &[f32], param: &mut [f32], state: [&mut [f32]; 3]) {
    let has = |f: u32| s.flags & f != 0;
    let [s0, s1, s2] = state;
    for i in 0..param.len() {
        let mut g = if has(FLAG_MAXIMIZE) { -grad[i] } else { grad[i] };
        let mut x = param[i];
        match op {
            OptimOp::Sgd => {
                if s.weight_decay != 0.0 {
                    g += s.weight_decay * x;
                }
                if has(FLAG_MOMENTUM) {
                    let buf = if has(FLAG_FIRST_STEP) { g } else { s.beta1 * s0[i] + (1.0 - s.beta2) * g };
                    s0[i] = buf;
                    g = if has(FLAG_NESTEROV) { g + s.beta1 * buf } else { buf };
                }
                param[i] = x - s.lr * g;
            }
            OptimOp::Adam => {
                if has(FLAG_DECOUPLED) {
                    x *= 1.0 - s.decoupled_lr * s.weight_decay;
                } else if s.weight_decay != 0.0 {
                    g += s.weight_decay * x;
                }
                let m = s.beta1 * s0[i] + (1.0 - s.beta1) * g;
                let v = s.beta2 * s1[i] + (1.0 - s.beta2) * g * g;
                s0[i] = m;
                s1[i] = v;
                let denom = v.sqrt() / s.bias_correction2_sqrt + s.eps;
                param[i] = x - s.lr * (m / denom);
            }
            OptimOp::Adagrad => {
                if s.weight_decay != 0.0 {
                    g += s.weight_decay * x;
                }
                let sum = s0[i] + g * g;
                s0[i] = sum;
                param[i] = x - s.lr * (g / (sum.sqrt() + s.eps));
            }
            OptimOp::RmsProp => {
                if s.weight_decay != 0.0 {
                    g += s.weight_decay * x;
                }
                let alpha = s.beta2;
                let sq = alpha * s0[i] + (1.0 - alpha) * g * g;
                s0[i] = sq;
                let avg = if has(FLAG_CENTERED) {
                    let ga = alpha * s2[i] + (1.0 - alpha) * g;
                    s2[i] = ga;
                    (sq - ga * ga).sqrt() + s.eps
                } else {
                    sq.sqrt() + s.eps
                };
                if has(FLAG_MOMENTUM) {
                    let buf = s.beta1 * s1[i] + g / avg;
                    s1[i] = buf;
                    param[i] = x - s.lr * buf;
                } else {
                    param[i] = x - s.lr * (g / avg);
                }
            }
        }
    }
}
