//! AdaGrad, as `torch.optim.Adagrad`.

use super::group::Hyper;
use super::state::StateSpec;
use super::{group_rate_methods, Kind, Optimizer, OptimizerState, ParamGroup, ParamSet};
use crate::autograd::Gradients;
use crate::op::optim::{OptimScalars, FLAG_MAXIMIZE};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.Adagrad`: lr 0.01 by convention, lr decay 0, weight decay 0, initial
/// accumulator 0, eps 1e-10.
///
/// Per parameter group: `lr`, `weight_decay` and `eps` ([`Adagrad::with_groups`]); the
/// learning-rate decay and the initial accumulator are the optimizer's.
pub struct Adagrad {
    params: ParamSet,
    /// The defaults of `weight_decay` and `eps`.
    defaults: Hyper,
    lr_decay: f32,
    initial_accumulator_value: f32,
    maximize: bool,
}

const KIND: Kind = Kind { name: "Adagrad", options: &["weight_decay", "eps"], check: |_| Ok(()) };

impl Adagrad {
    /// AdaGrad over `params` with learning rate `lr`: one parameter group.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adagrad {
        Adagrad::from_params(ParamSet::new(KIND, params, lr))
    }

    /// AdaGrad over parameter groups, each with its own learning rate, weight decay and
    /// eps where it sets them; `lr` and the builder methods give the values of the groups
    /// that do not (PyTorch's `defaults`).
    ///
    /// Panics on no groups, an empty group, a tensor in two groups, or an option AdaGrad
    /// does not have (momentum, dampening, betas, alpha), naming the group.
    pub fn with_groups(groups: impl IntoIterator<Item = ParamGroup>, lr: f32) -> Adagrad {
        Adagrad::from_params(ParamSet::with_groups(KIND, groups, lr))
    }

    fn from_params(params: ParamSet) -> Adagrad {
        let defaults = Hyper { eps: 1e-10, ..Default::default() };
        Adagrad { params, defaults, lr_decay: 0.0, initial_accumulator_value: 0.0, maximize: false }
    }

    /// The learning rate of step `t` is `lr / (1 + (t - 1) * lr_decay)`, in every group.
    pub fn lr_decay(mut self, lr_decay: f32) -> Adagrad {
        self.lr_decay = lr_decay;
        self
    }
    /// L2 penalty added to the gradient, for every group that sets none.
    pub fn weight_decay(mut self, weight_decay: f32) -> Adagrad {
        self.defaults.weight_decay = weight_decay;
        self
    }
    /// The starting value of the sum of squared gradients.
    pub fn initial_accumulator_value(mut self, value: f32) -> Adagrad {
        self.initial_accumulator_value = value;
        self
    }
    /// The term added to the denominator, outside the square root, for every group that
    /// sets none.
    pub fn eps(mut self, eps: f32) -> Adagrad {
        self.defaults.eps = eps;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> Adagrad {
        self.maximize = maximize;
        self
    }

    /// The state every group keeps.
    fn spec(initial_accumulator_value: f32) -> StateSpec {
        StateSpec { names: [Some("sum"), None, None], init: initial_accumulator_value }
    }
}

impl Optimizer for Adagrad {
    fn step(&mut self, grads: &Gradients) {
        let flags = if self.maximize { FLAG_MAXIMIZE } else { 0 };
        let spec = Adagrad::spec(self.initial_accumulator_value);
        let hypers = self.params.hypers(&self.defaults);
        let lr_decay = self.lr_decay;
        self.params.step(OptimOp::Adagrad, spec.used(), spec.init, grads, |group, lr, steps| {
            let Hyper { weight_decay, eps, .. } = hypers[group];
            *steps += 1;
            let clr = lr as f64 / (1.0 + (*steps - 1) as f64 * lr_decay as f64);
            OptimScalars { flags, lr: clr as f32, weight_decay, eps, ..Default::default() }
        });
    }
    group_rate_methods!();
    fn state_dict(&self) -> OptimizerState {
        let init = self.initial_accumulator_value;
        self.params.state_dict(&self.defaults, |_| Adagrad::spec(init))
    }
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()> {
        let init = self.initial_accumulator_value;
        self.params.load_state_dict(&self.defaults, state, |_| Adagrad::spec(init), |_| Ok(()))
    }
}
