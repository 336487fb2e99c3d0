//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight
//! decay, as `torch.optim.SGD`.

use super::state::StateSpec;
use super::{Optimizer, OptimizerState, ParamSet};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_FIRST_STEP, FLAG_MAXIMIZE, FLAG_MOMENTUM, FLAG_NESTEROV};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.SGD`: momentum 0, dampening 0, weight decay 0, no Nesterov by default.
pub struct Sgd {
    params: ParamSet,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: bool,
    maximize: bool,
}

impl Sgd {
    /// SGD over `params` with learning rate `lr`.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Sgd {
        assert!(lr >= 0.0, "Sgd: invalid learning rate {lr}");
        Sgd {
            params: ParamSet::new("Sgd", params),
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
    /// The momentum factor (0 turns momentum off).
    pub fn momentum(mut self, momentum: f32) -> Sgd {
        assert!(momentum >= 0.0, "Sgd: invalid momentum {momentum}");
        self.momentum = momentum;
        self
    }
    /// The dampening of the momentum: the new gradient enters the buffer scaled by
    /// `1 - dampening`.
    pub fn dampening(mut self, dampening: f32) -> Sgd {
        self.dampening = dampening;
        self
    }
    /// L2 penalty added to the gradient.
    pub fn weight_decay(mut self, weight_decay: f32) -> Sgd {
        assert!(weight_decay >= 0.0, "Sgd: invalid weight decay {weight_decay}");
        self.weight_decay = weight_decay;
        self
    }
    /// Nesterov momentum; needs a positive momentum and zero dampening, as in PyTorch.
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> Sgd {
        self.maximize = maximize;
        self
    }
}

impl Sgd {
    fn spec(&self) -> StateSpec {
        let momentum = (self.momentum != 0.0).then_some("momentum_buffer");
        StateSpec { kind: "Sgd", names: [momentum, None, None], init: 0.0 }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) {
        assert!(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Sgd: Nesterov momentum requires a momentum and zero dampening"
        );
        let mut flags = 0;
        if self.momentum != 0.0 {
            flags |= FLAG_MOMENTUM;
        }
        if self.nesterov {
            flags |= FLAG_NESTEROV;
        }
        if self.maximize {
            flags |= FLAG_MAXIMIZE;
        }
        let spec = self.spec();
        let Sgd { lr, momentum, dampening, weight_decay, .. } = *self;
        self.params.step(OptimOp::Sgd, spec.used(), spec.init, grads, |steps| {
            let first = if *steps == 0 { FLAG_FIRST_STEP } else { 0 };
            *steps += 1;
            OptimScalars {
                flags: flags | first,
                lr,
                weight_decay,
                beta1: momentum,
                beta2: dampening,
                ..Default::default()
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
