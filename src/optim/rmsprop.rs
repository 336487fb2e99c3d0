//! RMSprop, as `torch.optim.RMSprop`, with momentum and the centered variant.

use super::state::StateSpec;
use super::{Optimizer, OptimizerState, ParamSet};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_CENTERED, FLAG_MAXIMIZE, FLAG_MOMENTUM};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.RMSprop`: lr 0.01 by convention, alpha 0.99, eps 1e-8 (outside the
/// square root), weight decay 0, momentum 0, not centered.
pub struct RmsProp {
    params: ParamSet,
    lr: f32,
    alpha: f32,
    eps: f32,
    weight_decay: f32,
    momentum: f32,
    centered: bool,
    maximize: bool,
}

impl RmsProp {
    /// RMSprop over `params` with learning rate `lr`.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> RmsProp {
        assert!(lr >= 0.0, "RmsProp: invalid learning rate {lr}");
        RmsProp {
            params: ParamSet::new("RmsProp", params),
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
    /// The smoothing constant of the running average of squared gradients.
    pub fn alpha(mut self, alpha: f32) -> RmsProp {
        self.alpha = alpha;
        self
    }
    /// The term added to the denominator, outside the square root.
    pub fn eps(mut self, eps: f32) -> RmsProp {
        self.eps = eps;
        self
    }
    /// L2 penalty added to the gradient.
    pub fn weight_decay(mut self, weight_decay: f32) -> RmsProp {
        self.weight_decay = weight_decay;
        self
    }
    /// The momentum factor (0 turns momentum off).
    pub fn momentum(mut self, momentum: f32) -> RmsProp {
        self.momentum = momentum;
        self
    }
    /// Normalise by an estimate of the gradient's variance rather than its second moment.
    pub fn centered(mut self, centered: bool) -> RmsProp {
        self.centered = centered;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> RmsProp {
        self.maximize = maximize;
        self
    }
}

impl RmsProp {
    fn spec(&self) -> StateSpec {
        let momentum = (self.momentum > 0.0).then_some("momentum_buffer");
        let centered = self.centered.then_some("grad_avg");
        StateSpec { kind: "RmsProp", names: [Some("square_avg"), momentum, centered], init: 0.0 }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, grads: &Gradients) {
        let mut flags = 0;
        if self.centered {
            flags |= FLAG_CENTERED;
        }
        if self.momentum > 0.0 {
            flags |= FLAG_MOMENTUM;
        }
        if self.maximize {
            flags |= FLAG_MAXIMIZE;
        }
        let spec = self.spec();
        let RmsProp { lr, alpha, eps, weight_decay, momentum, .. } = *self;
        self.params.step(OptimOp::RmsProp, spec.used(), spec.init, grads, |steps| {
            *steps += 1;
            OptimScalars { flags, lr, weight_decay, beta1: momentum, beta2: alpha, eps, ..Default::default() }
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
