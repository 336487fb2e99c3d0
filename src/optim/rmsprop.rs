//! RMSprop, as `torch.optim.RMSprop`, with momentum and the centered variant.

use super::group::Hyper;
use super::state::StateSpec;
use super::{group_rate_methods, Kind, Optimizer, OptimizerState, ParamGroup, ParamSet};
use crate::autograd::Gradients;
use crate::op::optim::{OptimScalars, FLAG_CENTERED, FLAG_MAXIMIZE, FLAG_MOMENTUM};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.RMSprop`: lr 0.01 by convention, alpha 0.99, eps 1e-8 (outside the
/// square root), weight decay 0, momentum 0, not centered.
///
/// Per parameter group: `lr`, `weight_decay`, `momentum`, `eps` and `alpha`
/// ([`RmsProp::with_groups`]).
pub struct RmsProp {
    params: ParamSet,
    /// The defaults of `alpha`, `eps`, `weight_decay` and `momentum`.
    defaults: Hyper,
    centered: bool,
    maximize: bool,
}

const KIND: Kind = Kind { name: "RmsProp", options: &["weight_decay", "momentum", "eps", "alpha"], check: |_| Ok(()) };

impl RmsProp {
    /// RMSprop over `params` with learning rate `lr`: one parameter group.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> RmsProp {
        RmsProp::from_params(ParamSet::new(KIND, params, lr))
    }

    /// RMSprop over parameter groups, each with its own learning rate, weight decay,
    /// momentum, eps and alpha where it sets them; `lr` and the builder methods give the
    /// values of the groups that do not (PyTorch's `defaults`).
    ///
    /// Panics on no groups, an empty group, a tensor in two groups, or an option RMSprop
    /// does not have (betas, dampening), naming the group.
    pub fn with_groups(groups: impl IntoIterator<Item = ParamGroup>, lr: f32) -> RmsProp {
        RmsProp::from_params(ParamSet::with_groups(KIND, groups, lr))
    }

    fn from_params(params: ParamSet) -> RmsProp {
        let defaults = Hyper { alpha: 0.99, eps: 1e-8, ..Default::default() };
        RmsProp { params, defaults, centered: false, maximize: false }
    }

    /// The smoothing constant of the running average of squared gradients, for every
    /// group that sets none.
    pub fn alpha(mut self, alpha: f32) -> RmsProp {
        self.defaults.alpha = alpha;
        self
    }
    /// The term added to the denominator, outside the square root, for every group that
    /// sets none.
    pub fn eps(mut self, eps: f32) -> RmsProp {
        self.defaults.eps = eps;
        self
    }
    /// L2 penalty added to the gradient, for every group that sets none.
    pub fn weight_decay(mut self, weight_decay: f32) -> RmsProp {
        self.defaults.weight_decay = weight_decay;
        self
    }
    /// The momentum factor (0 turns momentum off), for every group that sets none.
    pub fn momentum(mut self, momentum: f32) -> RmsProp {
        self.defaults.momentum = momentum;
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

    /// The state a group with options `h` keeps.
    fn spec(centered: bool, h: &Hyper) -> StateSpec {
        let momentum = (h.momentum > 0.0).then_some("momentum_buffer");
        let centered = centered.then_some("grad_avg");
        StateSpec { names: [Some("square_avg"), momentum, centered], init: 0.0 }
    }
}

impl Optimizer for RmsProp {
    fn step(&mut self, grads: &Gradients) {
        let mut flags = 0;
        if self.centered {
            flags |= FLAG_CENTERED;
        }
        if self.maximize {
            flags |= FLAG_MAXIMIZE;
        }
        let hypers = self.params.hypers(&self.defaults);
        let specs: Vec<StateSpec> = hypers.iter().map(|h| RmsProp::spec(self.centered, h)).collect();
        let used = StateSpec::union(&specs);
        self.params.step(OptimOp::RmsProp, used, 0.0, grads, |group, lr, steps| {
            let Hyper { alpha, eps, weight_decay, momentum, .. } = hypers[group];
            let flags = if momentum > 0.0 { flags | FLAG_MOMENTUM } else { flags };
            *steps += 1;
            OptimScalars { flags, lr, weight_decay, beta1: momentum, beta2: alpha, eps, ..Default::default() }
        });
    }
    group_rate_methods!();
    fn state_dict(&self) -> OptimizerState {
        let centered = self.centered;
        self.params.state_dict(&self.defaults, |h| RmsProp::spec(centered, h))
    }
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()> {
        let centered = self.centered;
        self.params.load_state_dict(&self.defaults, state, |h| RmsProp::spec(centered, h), |_| Ok(()))
    }
}
