//! AdaGrad, as `torch.optim.Adagrad`.

use super::{fused_update, slots, Optimizer, Slot};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_MAXIMIZE};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.Adagrad`: lr 0.01 by convention, lr decay 0, weight decay 0, initial
/// accumulator 0, eps 1e-10.
pub struct Adagrad {
    slots: Vec<Slot>,
    lr: f32,
    lr_decay: f32,
    weight_decay: f32,
    initial_accumulator_value: f32,
    eps: f32,
    maximize: bool,
}

impl Adagrad {
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adagrad {
        assert!(lr >= 0.0, "Adagrad: invalid learning rate {lr}");
        Adagrad {
            slots: slots(params),
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
    pub fn lr_decay(mut self, lr_decay: f32) -> Adagrad {
        self.lr_decay = lr_decay;
        self
    }
    pub fn weight_decay(mut self, weight_decay: f32) -> Adagrad {
        self.weight_decay = weight_decay;
        self
    }
    pub fn initial_accumulator_value(mut self, value: f32) -> Adagrad {
        self.initial_accumulator_value = value;
        self
    }
    pub fn eps(mut self, eps: f32) -> Adagrad {
        self.eps = eps;
        self
    }
    pub fn maximize(mut self, maximize: bool) -> Adagrad {
        self.maximize = maximize;
        self
    }
}

impl Optimizer for Adagrad {
    fn step(&mut self, grads: &Gradients) {
        for slot in &mut self.slots {
            let Some(g) = grads.get(&slot.param) else { continue };
            slot.steps += 1;
            let clr = self.lr as f64 / (1.0 + (slot.steps - 1) as f64 * self.lr_decay as f64);
            let s = OptimScalars {
                flags: if self.maximize { FLAG_MAXIMIZE } else { 0 },
                lr: clr as f32,
                weight_decay: self.weight_decay,
                eps: self.eps,
                ..Default::default()
            };
            let state = slot.state([true, false, false], self.initial_accumulator_value).clone();
            fused_update(OptimOp::Adagrad, &s, &slot.param, g, &state);
        }
    }
    fn lr(&self) -> f32 {
        self.lr
    }
    fn set_lr(&mut self, lr: f32) {
        self.lr = lr;
    }
}
