//! Adam and AdamW, as `torch.optim.Adam` and `torch.optim.AdamW` (without amsgrad).

use super::state::StateSpec;
use super::{Optimizer, OptimizerState, ParamSet};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_DECOUPLED, FLAG_MAXIMIZE};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.Adam`: betas (0.9, 0.999), eps 1e-8 added outside the square root,
/// weight decay 0 (added to the gradient, i.e. L2).
pub struct Adam {
    params: ParamSet,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    maximize: bool,
}

/// `torch.optim.AdamW`: Adam with decoupled weight decay (default 0.01), which shrinks
/// the weights by `lr * weight_decay` each step instead of adding to the gradient.
pub struct AdamW;

impl AdamW {
    /// AdamW over `params` with learning rate `lr` (PyTorch's default is 1e-3) and
    /// weight decay 0.01; the result is an [`Adam`], so its builder methods apply.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adam {
        let mut adam = Adam::new(params, lr);
        adam.decoupled = true;
        adam.weight_decay = 1e-2;
        adam
    }
}

impl Adam {
    /// Adam over `params` with learning rate `lr` (PyTorch's default is 1e-3).
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adam {
        assert!(lr >= 0.0, "Adam: invalid learning rate {lr}");
        Adam {
            params: ParamSet::new("Adam", params),
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            maximize: false,
        }
    }
    /// The decay rates of the first and second moment estimates, each in `[0, 1)`.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Adam {
        assert!((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2), "Adam: invalid betas ({beta1}, {beta2})");
        self.beta1 = beta1;
        self.beta2 = beta2;
        self
    }
    /// The term added to the denominator, outside the square root.
    pub fn eps(mut self, eps: f32) -> Adam {
        self.eps = eps;
        self
    }
    /// L2 penalty added to the gradient (Adam), or the decoupled decay rate (AdamW).
    pub fn weight_decay(mut self, weight_decay: f32) -> Adam {
        assert!(weight_decay >= 0.0, "Adam: invalid weight decay {weight_decay}");
        self.weight_decay = weight_decay;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> Adam {
        self.maximize = maximize;
        self
    }
}

impl Adam {
    fn spec(&self) -> StateSpec {
        let kind = if self.decoupled { "AdamW" } else { "Adam" };
        StateSpec { kind, names: [Some("exp_avg"), Some("exp_avg_sq"), None], init: 0.0 }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, grads: &Gradients) {
        let mut flags = 0;
        if self.decoupled {
            flags |= FLAG_DECOUPLED;
        }
        if self.maximize {
            flags |= FLAG_MAXIMIZE;
        }
        let spec = self.spec();
        let Adam { lr, beta1, beta2, eps, weight_decay, .. } = *self;
        self.params.step(OptimOp::Adam, spec.used(), spec.init, grads, |steps| {
            *steps += 1;
            // Bias corrections in f64 as PyTorch computes them (Python floats).
            let t = *steps as i32;
            let bias_correction1 = 1.0 - (beta1 as f64).powi(t);
            let bias_correction2 = 1.0 - (beta2 as f64).powi(t);
            OptimScalars {
                flags,
                lr: (lr as f64 / bias_correction1) as f32,
                weight_decay,
                beta1,
                beta2,
                eps,
                bias_correction2_sqrt: bias_correction2.sqrt() as f32,
                decoupled_lr: lr,
            }
        });
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
    fn state_dict(&self) -> OptimizerState {
        self.params.state_dict(&self.spec(), self.lr)
    }
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()> {
        self.lr = self.params.load_state_dict(&self.spec(), state)?;
        Ok(())
    }
}
