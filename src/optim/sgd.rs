//! Stochastic gradient descent with momentum, dampening, Nesterov momentum and weight
//! decay, as `torch.optim.SGD`.

use super::group::Hyper;
use super::state::StateSpec;
use super::{group_rate_methods, GroupOptions, Kind, Optimizer, OptimizerState, ParamGroup, ParamSet};
use crate::autograd::Gradients;
use crate::op::optim::{OptimScalars, FLAG_FIRST_STEP, FLAG_MAXIMIZE, FLAG_MOMENTUM, FLAG_NESTEROV};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.SGD`: momentum 0, dampening 0, weight decay 0, no Nesterov by default.
///
/// Per parameter group: `lr`, `weight_decay`, `momentum` and `dampening`
/// ([`Sgd::with_groups`]).
pub struct Sgd {
    params: ParamSet,
    /// The defaults of `momentum`, `dampening` and `weight_decay`.
    defaults: Hyper,
    nesterov: bool,
    maximize: bool,
}

const KIND: Kind = Kind { name: "Sgd", options: &["weight_decay", "momentum", "dampening"], check: Sgd::check };

impl Sgd {
    /// SGD over `params` with learning rate `lr`: one parameter group.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Sgd {
        Sgd::from_params(ParamSet::new(KIND, params, lr))
    }

    /// SGD over parameter groups, each with its own learning rate, weight decay, momentum
    /// and dampening where it sets them; `lr` and the builder methods give the values of
    /// the groups that do not (PyTorch's `defaults`).
    ///
    /// Panics on no groups, an empty group, a tensor in two groups, an option SGD does not
    /// have (betas, eps, alpha) or an invalid value, naming the group.
    ///
    /// ```
    /// use wgrad::optim::{Optimizer, ParamGroup, Sgd};
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let a = Tensor::from_slice(&[1.0f32], &[1], &dev).requires_grad();
    /// let b = Tensor::from_slice(&[1.0f32], &[1], &dev).requires_grad();
    /// let mut opt = Sgd::with_groups([ParamGroup::new([a.clone()]), ParamGroup::new([b.clone()]).lr(0.5)], 0.1);
    /// opt.step(&a.add(&b).sum_all().backward());
    /// assert_eq!((a.to_vec::<f32>()[0], b.to_vec::<f32>()[0]), (0.9, 0.5));
    /// ```
    pub fn with_groups(groups: impl IntoIterator<Item = ParamGroup>, lr: f32) -> Sgd {
        Sgd::from_params(ParamSet::with_groups(KIND, groups, lr))
    }

    fn from_params(params: ParamSet) -> Sgd {
        Sgd { params, defaults: Hyper::default(), nesterov: false, maximize: false }
    }

    /// The momentum factor (0 turns momentum off), for every group that sets none.
    pub fn momentum(mut self, momentum: f32) -> Sgd {
        Sgd::check_default(GroupOptions { momentum: Some(momentum), ..Default::default() });
        self.defaults.momentum = momentum;
        self
    }
    /// The dampening of the momentum, for every group that sets none: the new gradient
    /// enters the buffer scaled by `1 - dampening`.
    pub fn dampening(mut self, dampening: f32) -> Sgd {
        Sgd::check_default(GroupOptions { dampening: Some(dampening), ..Default::default() });
        self.defaults.dampening = dampening;
        self
    }
    /// L2 penalty added to the gradient, for every group that sets none.
    pub fn weight_decay(mut self, weight_decay: f32) -> Sgd {
        Sgd::check_default(GroupOptions { weight_decay: Some(weight_decay), ..Default::default() });
        self.defaults.weight_decay = weight_decay;
        self
    }
    /// Nesterov momentum; needs a positive momentum and zero dampening in every group, as
    /// in PyTorch.
    pub fn nesterov(mut self, nesterov: bool) -> Sgd {
        self.nesterov = nesterov;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> Sgd {
        self.maximize = maximize;
        self
    }

    /// Checks a default as the options of a group are checked.
    fn check_default(options: GroupOptions) {
        if let Err(reason) = Sgd::check(&options) {
            panic!("Sgd: {reason}");
        }
    }

    /// The checks of the builder methods, on the options that are set.
    fn check(o: &GroupOptions) -> Result<(), String> {
        if let Some(momentum) = o.momentum {
            if momentum < 0.0 || momentum.is_nan() {
                return Err(format!("invalid momentum {momentum}"));
            }
        }
        if let Some(weight_decay) = o.weight_decay {
            if weight_decay < 0.0 || weight_decay.is_nan() {
                return Err(format!("invalid weight decay {weight_decay}"));
            }
        }
        Ok(())
    }

    /// The state a group with options `h` keeps.
    fn spec(h: &Hyper) -> StateSpec {
        let momentum = (h.momentum != 0.0).then_some("momentum_buffer");
        StateSpec { names: [momentum, None, None], init: 0.0 }
    }

    /// Nesterov's conditions on a group's options.
    fn check_nesterov(nesterov: bool, h: &Hyper) -> Result<(), String> {
        if nesterov && !(h.momentum > 0.0 && h.dampening == 0.0) {
            return Err(format!(
                "Nesterov momentum requires a momentum and zero dampening (momentum {}, dampening {})",
                h.momentum, h.dampening
            ));
        }
        Ok(())
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &Gradients) {
        let hypers = self.params.hypers(&self.defaults);
        for (i, h) in hypers.iter().enumerate() {
            if let Err(reason) = Sgd::check_nesterov(self.nesterov, h) {
                panic!("Sgd: parameter group {i}: {reason}");
            }
        }
        let mut flags = 0;
        if self.nesterov {
            flags |= FLAG_NESTEROV;
        }
        if self.maximize {
            flags |= FLAG_MAXIMIZE;
        }
        let specs: Vec<StateSpec> = hypers.iter().map(Sgd::spec).collect();
        let used = StateSpec::union(&specs);
        self.params.step(OptimOp::Sgd, used, 0.0, grads, |group, lr, steps| {
            let h = &hypers[group];
            let first = if *steps == 0 { FLAG_FIRST_STEP } else { 0 };
            let momentum = if h.momentum != 0.0 { FLAG_MOMENTUM } else { 0 };
            *steps += 1;
            OptimScalars {
                flags: flags | momentum | first,
                lr,
                weight_decay: h.weight_decay,
                beta1: h.momentum,
                beta2: h.dampening,
                ..Default::default()
            }
        });
    }
    group_rate_methods!();
    fn state_dict(&self) -> OptimizerState {
        self.params.state_dict(&self.defaults, Sgd::spec)
    }
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()> {
        let nesterov = self.nesterov;
        self.params.load_state_dict(&self.defaults, state, Sgd::spec, |h| Sgd::check_nesterov(nesterov, h))
    }
}
