//! Parameter groups: parameters that share a learning rate and hyper-parameters within
//! one optimizer, as the dicts of PyTorch's `param_groups`.
//!
//! A group holds its tensors and only the options it overrides; everything else comes
//! from the optimizer's defaults (its constructor's rate and its builder methods, which
//! may be called after the groups are given, as PyTorch's `defaults` fill every group
//! that did not set a key). The optimizer resolves the two when it steps, so a group's
//! values are plain numbers by then and parameters of different groups simply carry
//! different scalars into the fused update.
//!
//! The constructors from a model read [`Module::named_parameters`] only, so any model
//! with PyTorch-style dotted names works.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::Tensor;

/// Per-group values of the options an optimizer keeps per group, by PyTorch's names.
/// `None` means the group does not set the option and the optimizer's default applies.
///
/// In an [`OptimizerState`](super::OptimizerState) (see [`GroupState`](super::GroupState))
/// the optimizer writes every option it has, and `None` there means the state does not
/// record the option (a `wgrad.optimizer.v1` file): loading keeps the optimizer's value.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct GroupOptions {
    /// The weight decay (L2 penalty, or AdamW's decoupled decay). Every optimizer.
    pub weight_decay: Option<f32>,
    /// The momentum factor. [`Sgd`](super::Sgd) and [`RmsProp`](super::RmsProp).
    pub momentum: Option<f32>,
    /// The dampening of the momentum. [`Sgd`](super::Sgd).
    pub dampening: Option<f32>,
    /// The decay rates of the moment estimates. [`Adam`](super::Adam) and
    /// [`AdamW`](super::AdamW).
    pub betas: Option<(f32, f32)>,
    /// The term added to the denominator. Adam, AdamW, RmsProp and Adagrad.
    pub eps: Option<f32>,
    /// The smoothing constant of the squared-gradient average. [`RmsProp`](super::RmsProp).
    pub alpha: Option<f32>,
}

impl GroupOptions {
    /// The names of the options that are set, in a fixed order.
    pub(super) fn set_names(&self) -> Vec<&'static str> {
        let GroupOptions { weight_decay, momentum, dampening, betas, eps, alpha } = self;
        [
            ("weight_decay", weight_decay.is_some()),
            ("momentum", momentum.is_some()),
            ("dampening", dampening.is_some()),
            ("betas", betas.is_some()),
            ("eps", eps.is_some()),
            ("alpha", alpha.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// These options with every option `newer` sets replaced by its value.
    pub(super) fn overridden_by(&self, newer: &GroupOptions) -> GroupOptions {
        GroupOptions {
            weight_decay: newer.weight_decay.or(self.weight_decay),
            momentum: newer.momentum.or(self.momentum),
            dampening: newer.dampening.or(self.dampening),
            betas: newer.betas.or(self.betas),
            eps: newer.eps.or(self.eps),
            alpha: newer.alpha.or(self.alpha),
        }
    }

    /// The values of a group: its own where it sets them, the optimizer's `defaults` elsewhere.
    pub(super) fn resolve(&self, defaults: &Hyper) -> Hyper {
        let (beta1, beta2) = self.betas.unwrap_or((defaults.beta1, defaults.beta2));
        Hyper {
            weight_decay: self.weight_decay.unwrap_or(defaults.weight_decay),
            momentum: self.momentum.unwrap_or(defaults.momentum),
            dampening: self.dampening.unwrap_or(defaults.dampening),
            beta1,
            beta2,
            eps: self.eps.unwrap_or(defaults.eps),
            alpha: self.alpha.unwrap_or(defaults.alpha),
        }
    }

    /// The options named in `names`, every one set from `h`: what a state records.
    pub(super) fn recorded(h: &Hyper, names: &[&str]) -> GroupOptions {
        let has = |n: &str| names.contains(&n);
        GroupOptions {
            weight_decay: has("weight_decay").then_some(h.weight_decay),
            momentum: has("momentum").then_some(h.momentum),
            dampening: has("dampening").then_some(h.dampening),
            betas: has("betas").then_some((h.beta1, h.beta2)),
            eps: has("eps").then_some(h.eps),
            alpha: has("alpha").then_some(h.alpha),
        }
    }
}

/// One group's option values after defaults are applied. Each optimizer reads the fields
/// it has and leaves the others at their defaults.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Hyper {
    pub weight_decay: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub alpha: f32,
}

/// Parameters that share a learning rate and hyper-parameters within one optimizer
/// (one dict of PyTorch's `param_groups`), built with overrides of the optimizer's
/// defaults. Give a list of them to an optimizer's `with_groups`.
///
/// The options a group does not set come from the optimizer: its constructor's rate and
/// its builder methods. An option the optimizer does not have (betas on [`Sgd`](super::Sgd))
/// makes its constructor panic.
///
/// The classic split, no weight decay on biases and normalisation weights (the
/// one-dimensional parameters), with every rate from the optimizer:
///
/// ```
/// use wgrad::nn::{self, Module};
/// use wgrad::optim::{AdamW, Optimizer, ParamGroup};
/// use wgrad::Device;
/// let dev = Device::cpu();
/// let model = nn::Sequential::new()
///     .add(nn::Linear::new(4, 8, &dev))
///     .add(nn::LayerNorm::new(&[8], &dev))
///     .add(nn::Linear::new(8, 2, &dev));
/// let decay = ParamGroup::filter(&model, |_, t| t.shape().len() > 1);
/// let no_decay = ParamGroup::filter(&model, |_, t| t.shape().len() <= 1).weight_decay(0.0);
/// assert_eq!((decay.len(), no_decay.len()), (2, 4)); // two weights; two biases and the norm's two
/// let opt = AdamW::with_groups([decay, no_decay], 1e-3).weight_decay(0.05);
/// assert_eq!(opt.num_groups(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct ParamGroup {
    params: Vec<Tensor>,
    lr: Option<f32>,
    options: GroupOptions,
}

impl ParamGroup {
    /// A group of `params` that sets no option of its own.
    pub fn new(params: impl IntoIterator<Item = Tensor>) -> ParamGroup {
        ParamGroup { params: params.into_iter().collect(), lr: None, options: GroupOptions::default() }
    }

    /// The parameters of `model` with the given names ([`Module::named_parameters`], such as
    /// `"head.weight"`), in the order the names are given; a name listed twice is taken
    /// once.
    ///
    /// An [`Error::NotInModule`] names every name that is not a parameter of the model.
    ///
    /// ```
    /// use wgrad::nn::{self, Module};
    /// use wgrad::optim::ParamGroup;
    /// use wgrad::Device;
    /// let model = nn::Sequential::new().add(nn::Linear::new(4, 2, &Device::cpu()));
    /// assert_eq!(ParamGroup::from_names(&model, &["0.bias"])?.len(), 1);
    /// let err = ParamGroup::from_names(&model, &["0.weight", "1.weight"]).unwrap_err();
    /// assert!(err.to_string().contains("'1.weight'"));
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn from_names<S: AsRef<str>>(model: &(impl Module + ?Sized), names: &[S]) -> Result<ParamGroup> {
        let named = model.named_parameters();
        let mut params = Vec::with_capacity(names.len());
        let mut taken = HashSet::new();
        let mut unknown = Vec::new();
        for name in names {
            let name = name.as_ref();
            match named.iter().find(|(n, _)| n == name) {
                Some((_, t)) if taken.insert(name) => params.push(t.clone()),
                Some(_) => {}
                None => unknown.push(format!("'{name}'")),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::NotInModule(format!(
                "ParamGroup::from_names: {} {} of the model; its parameters are {}",
                unknown.join(", "),
                if unknown.len() == 1 { "is not a parameter" } else { "are not parameters" },
                list_names(&named)
            )));
        }
        Ok(ParamGroup::new(params))
    }

    /// The parameters of `model` whose name is `prefix` or starts with `prefix.` (a
    /// submodule's parameters: `"features"` takes `features.0.weight` but not
    /// `features_extra.weight`), in the model's order.
    ///
    /// An [`Error::NotInModule`] names the prefix when no parameter matches.
    pub fn with_prefix(model: &(impl Module + ?Sized), prefix: &str) -> Result<ParamGroup> {
        let named = model.named_parameters();
        let under = |name: &str| name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
        let group = ParamGroup::new(named.iter().filter(|(n, _)| under(n)).map(|(_, t)| t.clone()));
        if group.is_empty() {
            return Err(Error::NotInModule(format!(
                "ParamGroup::with_prefix: no parameter of the model is named '{prefix}' or starts with '{prefix}.'; \
                 its parameters are {}",
                list_names(&named)
            )));
        }
        Ok(group)
    }

    /// The parameters of `model` for which `keep(name, tensor)` is true, in the model's
    /// order. The group may be empty (an optimizer refuses an empty group).
    ///
    /// ```
    /// use wgrad::nn::{self, Module};
    /// use wgrad::optim::ParamGroup;
    /// use wgrad::Device;
    /// let model = nn::Sequential::new().add(nn::Linear::new(4, 2, &Device::cpu()));
    /// let biases = ParamGroup::filter(&model, |name, _| name.ends_with(".bias"));
    /// assert_eq!(biases.params()[0].shape(), &[2]);
    /// ```
    pub fn filter(model: &(impl Module + ?Sized), mut keep: impl FnMut(&str, &Tensor) -> bool) -> ParamGroup {
        ParamGroup::new(model.named_parameters().into_iter().filter(|(n, t)| keep(n, t)).map(|(_, t)| t))
    }

    /// The learning rate of this group, instead of the optimizer's.
    pub fn lr(mut self, lr: f32) -> ParamGroup {
        self.lr = Some(lr);
        self
    }

    /// The weight decay of this group (every optimizer).
    pub fn weight_decay(mut self, weight_decay: f32) -> ParamGroup {
        self.options.weight_decay = Some(weight_decay);
        self
    }

    /// The momentum factor of this group ([`Sgd`](super::Sgd), [`RmsProp`](super::RmsProp)).
    pub fn momentum(mut self, momentum: f32) -> ParamGroup {
        self.options.momentum = Some(momentum);
        self
    }

    /// The dampening of this group's momentum ([`Sgd`](super::Sgd)).
    pub fn dampening(mut self, dampening: f32) -> ParamGroup {
        self.options.dampening = Some(dampening);
        self
    }

    /// The betas of this group ([`Adam`](super::Adam), [`AdamW`](super::AdamW)).
    pub fn betas(mut self, beta1: f32, beta2: f32) -> ParamGroup {
        self.options.betas = Some((beta1, beta2));
        self
    }

    /// The eps of this group ([`Adam`](super::Adam), [`AdamW`](super::AdamW),
    /// [`RmsProp`](super::RmsProp), [`Adagrad`](super::Adagrad)).
    pub fn eps(mut self, eps: f32) -> ParamGroup {
        self.options.eps = Some(eps);
        self
    }

    /// The smoothing constant of this group ([`RmsProp`](super::RmsProp)).
    pub fn alpha(mut self, alpha: f32) -> ParamGroup {
        self.options.alpha = Some(alpha);
        self
    }

    /// The group's parameters.
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// The number of parameter tensors.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// True when the group has no parameter.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The learning rate the group sets, if any.
    pub fn lr_override(&self) -> Option<f32> {
        self.lr
    }

    /// The other options the group sets.
    pub fn options(&self) -> &GroupOptions {
        &self.options
    }

    pub(super) fn into_parts(self) -> (Vec<Tensor>, Option<f32>, GroupOptions) {
        (self.params, self.lr, self.options)
    }
}

/// The model's parameter names, for an error message: `'0.weight', '0.bias'`, the first
/// few of a large model, or "none".
fn list_names(named: &[(String, Tensor)]) -> String {
    const SHOWN: usize = 16;
    if named.is_empty() {
        return "none".into();
    }
    let mut list = named.iter().take(SHOWN).map(|(n, _)| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    if named.len() > SHOWN {
        list.push_str(&format!(", ... ({} in all)", named.len()));
    }
    list
}
