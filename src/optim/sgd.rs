//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight
//! decay, as `torch.optim.SGD`.

use super::{fused_update, slots, Optimizer, Slot};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_FIRST_STEP, FLAG_MAXIMIZE, FLAG_MOMENTUM, FLAG_NESTEROV};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.SGD`: momentum 0, dampening 0, weight decay 0, no Nesterov by default.
pub struct Sgd {
    slots: Vec<Slot>,
    lr: f32,
    momentum: f32,
    dampening: f32,
    weight_decay: f32,
    nesterov: bool,
    maximize: bool,
}

impl Sgd {
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Sgd {
        assert!(lr >= 0.0, "Sgd: invalid learning rate {lr}");
        Sgd {
            slots: slots(params),
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
    pub fn momentum(mut self, momentum: f32) -> Sgd {
        assert!(momentum >= 0.0, "Sgd: invalid momentum {momentum}");
        self.momentum = momentum;
        self
    }
    pub fn dampening(mut self, dampening: f32) -> Sgd {
        self.dampening = dampening;
        self
    }
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

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) {
        assert!(
            !self.nesterov || (self.momentum > 0.0 && self.dampening == 0.0),
            "Sgd: Nesterov momentum requires a momentum and zero dampening"
        );
        for slot in &mut self.slots {
            let Some(g) = grads.get(&slot.param) else { continue };
            let mut flags = 0;
            if self.momentum != 0.0 {
                flags |= FLAG_MOMENTUM;
            }
            if slot.steps == 0 {
                flags |= FLAG_FIRST_STEP;
            }
            if self.nesterov {
                flags |= FLAG_NESTEROV;
            }
            if self.maximize {
                flags |= FLAG_MAXIMIZE;
            }
            let s = OptimScalars {
                flags,
                lr: self.lr,
                weight_decay: self.weight_decay,
                beta1: self.momentum,
                beta2: self.dampening,
                ..Default::default()
            };
            let state = slot.state([self.momentum != 0.0, false, false], 0.0).clone();
            fused_update(OptimOp::Sgd, &s, &slot.param, g, &state);
            slot.steps += 1;
        }
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
}
