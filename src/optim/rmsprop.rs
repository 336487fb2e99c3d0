//! RMSprop, as `torch.optim.RMSprop`, with momentum and the centered variant.

use super::{fused_update, slots, Optimizer, Slot};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_CENTERED, FLAG_MAXIMIZE, FLAG_MOMENTUM};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.RMSprop`: lr 0.01 by convention, alpha 0.99, eps 1e-8 (outside the
/// square root), weight decay 0, momentum 0, not centered.
pub struct RmsProp {
    slots: Vec<Slot>,
    lr: f32,
    alpha: f32,
    eps: f32,
    weight_decay: f32,
    momentum: f32,
    centered: bool,
    maximize: bool,
}

impl RmsProp {
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> RmsProp {
        assert!(lr >= 0.0, "RmsProp: invalid learning rate {lr}");
        RmsProp {
            slots: slots(params),
            lr,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            maximize: false,
        }
    }
    pub fn alpha(mut self, alpha: f32) -> RmsProp {
        self.alpha = alpha;
        self
    }
    pub fn eps(mut self, eps: f32) -> RmsProp {
        self.eps = eps;
        self
    }
    pub fn weight_decay(mut self, weight_decay: f32) -> RmsProp {
        self.weight_decay = weight_decay;
        self
    }
    pub fn momentum(mut self, momentum: f32) -> RmsProp {
        self.momentum = momentum;
        self
    }
    /// Normalise by an estimate of the gradient's variance rather than its second moment.
    pub fn centered(mut self, centered: bool) -> RmsProp {
        self.centered = centered;
        self
    }
    pub fn maximize(mut self, maximize: bool) -> RmsProp {
        self.maximize = maximize;
        self
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, grads: &Gradients) {
        for slot in &mut self.slots {
            let Some(g) = grads.get(&slot.param) else { continue };
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
            let s = OptimScalars {
                flags,
                lr: self.lr,
                weight_decay: self.weight_decay,
                beta1: self.momentum,
                beta2: self.alpha,
                eps: self.eps,
                ..Default::default()
            };
            let state = slot.state([true, self.momentum > 0.0, self.centered], 0.0).clone();
            fused_update(OptimOp::RmsProp, &s, &slot.param, g, &state);
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
