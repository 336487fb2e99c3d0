//! AdaGrad, as `torch.optim.Adagrad`.

use super::state::StateSpec;
use super::{Optimizer, OptimizerState, ParamSet};
use crate::autograd::Gradients;
use crate::cpu::optim::{OptimScalars, FLAG_MAXIMIZE};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.Adagrad`: lr 0.01 by convention, lr decay 0, weight decay 0, initial
/// accumulator 0, eps 1e-10.
pub struct Adagrad {
    params: ParamSet,
    lr: f32,
    lr_decay: f32,
    weight_decay: f32,
    initial_accumulator_value: f32,
    eps: f32,
    maximize: bool,
}

impl Adagrad {
    /// AdaGrad over `params` with learning rate `lr`.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adagrad {
        assert!(lr >= 0.0, "Adagrad: invalid learning rate {lr}");
        Adagrad {
            params: ParamSet::new("Adagrad", params),
            lr,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
    /// The learning rate of step `t` is `lr / (1 + (t - 1) * lr_decay)`.
    pub fn lr_decay(mut self, lr_decay: f32) -> Adagrad {
        self.lr_decay = lr_decay;
        self
    }
    /// L2 penalty added to the gradient.
    pub fn weight_decay(mut self, weight_decay: f32) -> Adagrad {
        self.weight_decay = weight_decay;
        self
    }
    /// The starting value of the sum of squared gradients.
    pub fn initial_accumulator_value(mut self, value: f32) -> Adagrad {
        self.initial_accumulator_value = value;
        self
    }
    /// The term added to the denominator, outside the square root.
    pub fn eps(mut self, eps: f32) -> Adagrad {
        self.eps = eps;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> Adagrad {
        self.maximize = maximize;
        self
    }
}

impl Adagrad {
    fn spec(&self) -> StateSpec {
        StateSpec { kind: "Adagrad", names: [Some("sum"), None, None], init: self.initial_accumulator_value }
    }
}

impl Optimizer for Adagrad {
    fn step(&mut self, grads: &Gradients) {
        let flags = if self.maximize { FLAG_MAXIMIZE } else { 0 };
        let spec = self.spec();
        let Adagrad { lr, lr_decay, weight_decay, eps, .. } = *self;
        self.params.step(OptimOp::Adagrad, spec.used(), spec.init, grads, |steps| {
            *steps += 1;
            let clr = lr as f64 / (1.0 + (*steps - 1) as f64 * lr_decay as f64);
            OptimScalars { flags, lr: clr as f32, weight_decay, eps, ..Default::default() }
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
