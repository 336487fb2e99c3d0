//! Adam and AdamW, as `torch.optim.Adam` and `torch.optim.AdamW` (without amsgrad).

use super::group::Hyper;
use super::state::StateSpec;
use super::{group_rate_methods, GroupOptions, Kind, Optimizer, OptimizerState, ParamGroup, ParamSet};
use crate::autograd::Gradients;
use crate::op::optim::{OptimScalars, FLAG_DECOUPLED, FLAG_MAXIMIZE};
use crate::op::OptimOp;
use crate::Tensor;

/// `torch.optim.Adam`: betas (0.9, 0.999), eps 1e-8 added outside the square root,
/// weight decay 0 (added to the gradient, i.e. L2).
///
/// Per parameter group: `lr`, `weight_decay`, `betas` and `eps` ([`Adam::with_groups`]).
pub struct Adam {
    params: ParamSet,
    /// The defaults of `betas`, `eps` and `weight_decay`.
    defaults: Hyper,
    decoupled: bool,
    maximize: bool,
}

/// `torch.optim.AdamW`: Adam with decoupled weight decay (default 0.01), which shrinks
/// the weights by `lr * weight_decay` each step instead of adding to the gradient.
pub struct AdamW;

const OPTIONS: &[&str] = &["weight_decay", "betas", "eps"];
const ADAM: Kind = Kind { name: "Adam", options: OPTIONS, check: Adam::check };
const ADAMW: Kind = Kind { name: "AdamW", options: OPTIONS, check: Adam::check };

impl AdamW {
    /// AdamW over `params` with learning rate `lr` (PyTorch's default is 1e-3) and
    /// weight decay 0.01; the result is an [`Adam`], so its builder methods apply.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adam {
        Adam::from_params(ParamSet::new(ADAMW, params, lr), true)
    }

    /// AdamW over parameter groups, as [`Adam::with_groups`], with a default weight decay
    /// of 0.01.
    pub fn with_groups(groups: impl IntoIterator<Item = ParamGroup>, lr: f32) -> Adam {
        Adam::from_params(ParamSet::with_groups(ADAMW, groups, lr), true)
    }
}

impl Adam {
    /// Adam over `params` with learning rate `lr` (PyTorch's default is 1e-3): one
    /// parameter group.
    pub fn new(params: impl IntoIterator<Item = Tensor>, lr: f32) -> Adam {
        Adam::from_params(ParamSet::new(ADAM, params, lr), false)
    }

    /// Adam over parameter groups, each with its own learning rate, weight decay, betas
    /// and eps where it sets them; `lr` and the builder methods give the values of the
    /// groups that do not (PyTorch's `defaults`).
    ///
    /// Panics on no groups, an empty group, a tensor in two groups, an option Adam does
    /// not have (momentum, dampening, alpha) or an invalid value, naming the group.
    ///
    /// ```
    /// use wgrad::optim::{Adam, Optimizer, ParamGroup};
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let a = Tensor::zeros(&[3], &dev).requires_grad();
    /// let b = Tensor::zeros(&[2], &dev).requires_grad();
    /// let opt = Adam::with_groups([ParamGroup::new([a]), ParamGroup::new([b]).lr(1e-4).betas(0.8, 0.99)], 1e-3)
    ///     .weight_decay(1e-4); // both groups: neither sets it
    /// assert_eq!((opt.group_lr(0), opt.group_lr(1)), (1e-3, 1e-4));
    /// ```
    pub fn with_groups(groups: impl IntoIterator<Item = ParamGroup>, lr: f32) -> Adam {
        Adam::from_params(ParamSet::with_groups(ADAM, groups, lr), false)
    }

    fn from_params(params: ParamSet, decoupled: bool) -> Adam {
        let defaults = Hyper {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: if decoupled { 1e-2 } else { 0.0 },
            ..Default::default()
        };
        Adam { params, defaults, decoupled, maximize: false }
    }

    /// The decay rates of the first and second moment estimates, each in `[0, 1)`, for
    /// every group that sets none.
    pub fn betas(mut self, beta1: f32, beta2: f32) -> Adam {
        self.check_default(GroupOptions { betas: Some((beta1, beta2)), ..Default::default() });
        self.defaults.beta1 = beta1;
        self.defaults.beta2 = beta2;
        self
    }
    /// The term added to the denominator, outside the square root, for every group that
    /// sets none.
    pub fn eps(mut self, eps: f32) -> Adam {
        self.defaults.eps = eps;
        self
    }
    /// L2 penalty added to the gradient (Adam), or the decoupled decay rate (AdamW), for
    /// every group that sets none.
    pub fn weight_decay(mut self, weight_decay: f32) -> Adam {
        self.check_default(GroupOptions { weight_decay: Some(weight_decay), ..Default::default() });
        self.defaults.weight_decay = weight_decay;
        self
    }
    /// Ascend instead of descend.
    pub fn maximize(mut self, maximize: bool) -> Adam {
        self.maximize = maximize;
        self
    }

    /// Checks a default as the options of a group are checked.
    fn check_default(&self, options: GroupOptions) {
        if let Err(reason) = Adam::check(&options) {
            panic!("{}: {reason}", self.params.kind.name);
        }
    }

    /// The checks of the builder methods, on the options that are set.
    fn check(o: &GroupOptions) -> Result<(), String> {
        if let Some((beta1, beta2)) = o.betas {
            if !((0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2)) {
                return Err(format!("invalid betas ({beta1}, {beta2})"));
            }
        }
        if let Some(weight_decay) = o.weight_decay {
            if weight_decay < 0.0 || weight_decay.is_nan() {
                return Err(format!("invalid weight decay {weight_decay}"));
            }
        }
        Ok(())
    }

    /// The state every group keeps.
    fn spec(_: &Hyper) -> StateSpec {
        StateSpec { names: [Some("exp_avg"), Some("exp_avg_sq"), None], init: 0.0 }
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
        let hypers = self.params.hypers(&self.defaults);
        let used = Adam::spec(&self.defaults).used();
        self.params.step(OptimOp::Adam, used, 0.0, grads, |group, lr, steps| {
            let Hyper { beta1, beta2, eps, weight_decay, .. } = hypers[group];
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
    group_rate_methods!();
    fn state_dict(&self) -> OptimizerState {
        self.params.state_dict(&self.defaults, Adam::spec)
    }
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()> {
        self.params.load_state_dict(&self.defaults, state, Adam::spec, |_| Ok(()))
    }
}
