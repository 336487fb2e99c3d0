//! Optimizers, learning-rate schedules, gradient clipping and regularisers.
//!
//! Every optimizer updates its parameters with one fused kernel (`shaders/optim.wgsl`,
//! and its CPU twin in `cpu::optim`) that rewrites the parameters and the optimizer's
//! state in place, so a step allocates nothing after the first. Semantics and defaults
//! are PyTorch's (`torch.optim`, single-tensor formulas); a parameter without a gradient
//! is skipped, as one whose `.grad` is `None`.
//!
//! A step is a multi-tensor apply, as PyTorch's `foreach` and `fused` implementations:
//! every parameter whose update has the same scalars (the same group options, rate and
//! step count) and whose state lies in the same arena goes to the backend in one call.
//! On a GPU that is one dispatch for up to twelve parameters (`optim_wide`, on adapters
//! that allow its 25 storage bindings, which every desktop driver does) or three (the
//! portable build, inside WebGPU's default of eight), so a model with `P` parameter
//! tensors costs `ceil(P / 12)` dispatches per step instead of `P`. Parameters belong to
//! the model and each owns its buffer, so they cannot be moved into one arena; they are
//! bound side by side instead, and the segment table rides in the params uniform that
//! every dispatch has. The optimizer's own state (momentum buffers, `exp_avg`, ...) does
//! live in one arena per device, allocated at the first step, which is what lets any
//! parameters share a dispatch. Each element still goes through exactly the arithmetic of
//! a one-parameter update, so grouping changes no bit of the result.
//!
//! ```
//! use wgrad::optim::{Optimizer, Sgd};
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let w = Tensor::from_slice(&[1.0f32, -2.0], &[2], &dev).requires_grad();
//! let mut opt = Sgd::new([w.clone()], 0.1);
//! let grads = w.square().sum_all().backward(); // d/dw = 2w
//! opt.step(&grads);
//! assert_eq!(w.to_vec::<f32>(), vec![0.8, -1.6]);
//! ```
//!
//! ## Parameter groups
//!
//! As PyTorch's `param_groups`, an optimizer can hold several [`ParamGroup`]s, each with
//! its own learning rate and, where it sets them, its own weight decay, momentum, betas,
//! eps, ...; the optimizer's constructor rate and builder methods are the defaults of the
//! groups that do not. `new(params, lr)` is one group. A group is a list of tensors, or
//! is picked from a model by parameter name ([`ParamGroup::from_names`],
//! [`ParamGroup::with_prefix`], [`ParamGroup::filter`]). Each group keeps its rate
//! ([`Optimizer::group_lr`]) and the rate it was built with ([`Optimizer::initial_lr`]),
//! which the schedulers of [`scheduler`] scale group by group.
//!
//! Fine-tuning: a pretrained backbone at a low rate, a new head at a higher one, and no
//! weight decay on biases:
//!
//! ```
//! use wgrad::nn::{self, Forward};
//! use wgrad::optim::scheduler::{CosineAnnealingLr, LrScheduler};
//! use wgrad::optim::{AdamW, Optimizer, ParamGroup};
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let backbone = nn::Sequential::new().add(nn::Linear::new(8, 16, &dev)).add(nn::ReLU);
//! // Parameters `0.0.weight`, `0.0.bias` (the backbone) and `1.weight`, `1.bias` (the head).
//! let model = nn::Sequential::new().add(backbone).add(nn::Linear::new(16, 3, &dev));
//! let bias = |name: &str| name.ends_with(".bias");
//! let groups = [
//!     ParamGroup::filter(&model, |n, _| n.starts_with("0.") && !bias(n)).lr(1e-4),
//!     ParamGroup::filter(&model, |n, _| n.starts_with("0.") && bias(n)).lr(1e-4).weight_decay(0.0),
//!     ParamGroup::filter(&model, |n, _| n.starts_with("1.") && !bias(n)),
//!     ParamGroup::filter(&model, |n, _| n.starts_with("1.") && bias(n)).weight_decay(0.0),
//! ];
//! let mut opt = AdamW::with_groups(groups, 1e-3).weight_decay(0.05); // the head's rate; decay elsewhere
//! let mut sched = CosineAnnealingLr::new(1e-3, 10, 0.0);
//! let x = Tensor::randn(&[4, 8], 0, &dev);
//! for _epoch in 0..5 {
//!     opt.step(&model.forward(&x).square().mean_all().backward());
//!     sched.step();
//!     sched.apply(&mut opt); // each group's own rate, on the same cosine
//! }
//! assert!((opt.group_lr(0) - 0.5e-4).abs() < 1e-9 && (opt.group_lr(2) - 0.5e-3).abs() < 1e-9);
//! ```
//!
//! A group's options become scalars of its parameters' updates, so the multi-tensor dispatch
//! above is unchanged: parameters whose scalars are equal share a dispatch whichever group
//! they are in, and a step with groups is bit for bit the steps of one optimizer per
//! group. [`OptimizerState`] holds the groups (sizes, rates, initial rates, options), so a
//! resumed run continues every group where it stopped.

mod adagrad;
mod adam;
mod group;
mod rmsprop;
mod sgd;
mod state;

pub mod clip;
pub mod regularize;
pub mod scheduler;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use group::{GroupOptions, ParamGroup};
pub use rmsprop::RmsProp;
pub use sgd::Sgd;
pub use state::{GroupState, OptimizerState, ParamState};

use std::collections::HashMap;
use std::sync::Arc;

use crate::autograd::{no_grad, Gradients};
use crate::backend::OptimSegment;
use crate::op::optim::OptimScalars;
use crate::op::{OptimOp, UnaryOp};
use crate::storage::Storage;
use crate::{Device, Tensor};

/// What every optimizer offers: one update from a set of gradients, the learning rate of
/// each parameter group (which schedulers set between steps), and its state as a value to
/// save and restore.
///
/// An optimizer built with `new(params, lr)` has one group; one built with
/// `with_groups(groups, lr)` has one per [`ParamGroup`], in the order given, as PyTorch's
/// `param_groups`.
pub trait Optimizer {
    /// Updates every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &Gradients);
    /// The learning rate the next step uses in the first parameter group (PyTorch's
    /// `param_groups[0]["lr"]`): the rate, for an optimizer of one group.
    fn lr(&self) -> f32 {
        self.group_lr(0)
    }
    /// Sets the learning rate of the following steps in every parameter group, so groups
    /// built with different rates then share `lr`. To scale each group's own rate, use a
    /// scheduler's [`apply`](scheduler::LrScheduler::apply), or [`set_group_lr`](Optimizer::set_group_lr).
    fn set_lr(&mut self, lr: f32) {
        for group in 0..self.num_groups() {
            self.set_group_lr(group, lr);
        }
    }
    /// The number of parameter groups (1 for an optimizer built with `new`).
    fn num_groups(&self) -> usize;
    /// The learning rate the next step uses in parameter group `group`. Panics when there
    /// is no such group.
    fn group_lr(&self, group: usize) -> f32;
    /// Sets the learning rate of the following steps in parameter group `group`. Panics
    /// when there is no such group.
    fn set_group_lr(&mut self, group: usize, lr: f32);
    /// The learning rate group `group` was built with (PyTorch's `initial_lr`): what
    /// schedulers scale. `set_lr` and `set_group_lr` leave it alone; `load_state_dict`
    /// restores it. Panics when there is no such group.
    fn initial_lr(&self, group: usize) -> f32;
    /// A copy of the optimizer's state: each parameter group (its size, rates and
    /// per-group options) and, for each parameter it has updated, the step count and state
    /// tensors under PyTorch's names (see [`OptimizerState`]). The tensors are copies on
    /// the parameters' devices, made without waiting for the GPU; later steps do not
    /// change them.
    fn state_dict(&self) -> OptimizerState;
    /// Replaces the optimizer's state with `state`, copying its tensors onto the
    /// parameters' devices, and each group's rate, initial rate and per-group options with
    /// the state's (as PyTorch's `load_state_dict` replaces `param_groups`), so the next
    /// step is the one the saved optimizer would have taken. `state` must come from the
    /// same kind of optimizer with the same groups (as many, each with as many
    /// parameters) over parameters of the same shapes, in the same order, and its state
    /// tensors must be those its options call for (Sgd's momentum, RmsProp's momentum and
    /// centering); everything is checked first, and on
    /// [`Error::OptimizerState`](crate::Error::OptimizerState) nothing has changed.
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()>;
}

/// Implements the per-group rate methods of [`Optimizer`] for an optimizer whose
/// [`ParamSet`] is its `params` field.
macro_rules! group_rate_methods {
    () => {
        fn num_groups(&self) -> usize {
            self.params.groups.len()
        }
        fn group_lr(&self, group: usize) -> f32 {
            self.params.group(group).lr
        }
        fn set_group_lr(&mut self, group: usize, lr: f32) {
            self.params.group_mut(group).lr = lr;
        }
        fn initial_lr(&self, group: usize) -> f32 {
            self.params.group(group).initial_lr
        }
    };
}
use group_rate_methods;

/// What a [`ParamSet`] needs to know of the optimizer that owns it to check its groups.
#[derive(Clone, Copy)]
struct Kind {
    /// The optimizer's name in messages and states: `"Sgd"`, `"AdamW"`, ...
    name: &'static str,
    /// The [`GroupOptions`] it keeps per group, by name.
    options: &'static [&'static str],
    /// Checks the options a group sets as the builder methods check them; the reason names
    /// the option and its value.
    check: fn(&GroupOptions) -> Result<(), String>,
}

impl Kind {
    /// Checks the options of group `index` (`"parameter group 1: ..."` on failure): that
    /// the optimizer has each and that its value is valid.
    fn check_group(&self, index: usize, lr: Option<f32>, options: &GroupOptions) -> Result<(), String> {
        let Kind { name, options: known, check } = *self;
        let unknown: Vec<&str> = options.set_names().into_iter().filter(|n| !known.contains(n)).collect();
        if !unknown.is_empty() {
            return Err(format!(
                "parameter group {index} sets {}, which {name} does not have (its per-group options are lr, {})",
                unknown.join(" and "),
                known.join(", ")
            ));
        }
        if let Some(lr) = lr {
            if lr < 0.0 || lr.is_nan() {
                return Err(format!("parameter group {index}: invalid learning rate {lr}"));
            }
        }
        check(options).map_err(|reason| format!("parameter group {index}: {reason}"))
    }
}

/// One parameter group of a [`ParamSet`]: a run of consecutive slots, its rates and the
/// options it sets.
struct Group {
    /// Its parameters are `slots[start..end]`.
    start: usize,
    end: usize,
    lr: f32,
    initial_lr: f32,
    /// The options the group sets; the others are the optimizer's defaults.
    options: GroupOptions,
}

/// One parameter and where its optimizer state lies.
struct Slot {
    param: Tensor,
    /// Steps taken for this parameter (PyTorch counts per parameter).
    steps: u64,
    /// Which of [`ParamSet::arenas`] holds the state, and from which element.
    arena: usize,
    state_offset: usize,
}

impl Slot {
    fn new(param: Tensor) -> Slot {
        assert!(
            param.grad_id().is_some(),
            "optimizer: a parameter of shape {:?} does not require a gradient; call requires_grad() on it",
            param.shape()
        );
        assert!(
            param.is_contiguous() && param.layout.offset == 0,
            "optimizer: a parameter of shape {:?} is a view; parameters must own their storage",
            param.shape()
        );
        Slot { param, steps: 0, arena: 0, state_offset: 0 }
    }
}

/// The parameters of one optimizer in their groups, their state arenas, and the grouping
/// of updates into multi-tensor dispatches.
struct ParamSet {
    kind: Kind,
    slots: Vec<Slot>,
    /// The parameter groups, in order; together they cover `slots` in order.
    groups: Vec<Group>,
    /// The state of every slot, created at the first step: for each slot, the state
    /// vectors its update uses, one after the other. One arena per device, more when the
    /// state would not fit in one storage binding.
    arenas: Vec<Tensor>,
    /// The state vectors the update keeps (set with the arenas): those of any group, so
    /// a group whose options need fewer has blocks it leaves untouched.
    used: [bool; 3],
    /// Where state `k` lies in a slot's block, in units of the slot's length.
    state_pos: [u32; 3],
}

/// One parameter's update of a step, before it is grouped.
struct Update {
    slot: usize,
    scalars: OptimScalars,
    grad: Tensor,
}

impl ParamSet {
    /// The parameters of an optimizer of one group at rate `lr`. Panics on an empty list,
    /// as PyTorch's optimizers raise on one: every later step would silently change
    /// nothing, which is how a model whose `Module` impl registers no parameters would
    /// otherwise go unnoticed.
    fn new(kind: Kind, params: impl IntoIterator<Item = Tensor>, lr: f32) -> ParamSet {
        let optimizer = kind.name;
        assert!(lr >= 0.0, "{optimizer}: invalid learning rate {lr}");
        let slots: Vec<Slot> = params.into_iter().map(Slot::new).collect();
        assert!(
            !slots.is_empty(),
            "{optimizer}: the parameter list is empty, so no step would change anything; \
             if it came from `model.parameters()`, the model registers no parameters \
             (does its `Module` impl return them from `named_parameters`?)"
        );
        let group = Group { start: 0, end: slots.len(), lr, initial_lr: lr, options: GroupOptions::default() };
        ParamSet::from_parts(kind, slots, vec![group])
    }

    /// The parameters of an optimizer with parameter groups, `lr` being the rate of the
    /// groups that set none. Panics, naming the optimizer and the group, on no groups, an
    /// empty group, an option the optimizer does not have or an invalid value, and a
    /// tensor in more than one group (as PyTorch raises).
    fn with_groups(kind: Kind, groups: impl IntoIterator<Item = ParamGroup>, lr: f32) -> ParamSet {
        let optimizer = kind.name;
        assert!(lr >= 0.0, "{optimizer}: invalid learning rate {lr}");
        let mut slots = Vec::new();
        let mut parts = Vec::new();
        for (index, group) in groups.into_iter().enumerate() {
            let (params, group_lr, options) = group.into_parts();
            assert!(
                !params.is_empty(),
                "{optimizer}: parameter group {index} is empty, so its options would apply to nothing; \
                 if it came from a model, the model registers no parameters there or the names or \
                 filter matched none"
            );
            if let Err(reason) = kind.check_group(index, group_lr, &options) {
                panic!("{optimizer}: {reason}");
            }
            let start = slots.len();
            slots.extend(params.into_iter().map(Slot::new));
            let lr = group_lr.unwrap_or(lr);
            parts.push(Group { start, end: slots.len(), lr, initial_lr: lr, options });
        }
        assert!(!parts.is_empty(), "{optimizer}: no parameter groups, so no step would change anything");
        // PyTorch's check: a tensor in two groups would be updated twice per step.
        let mut owner = HashMap::new();
        for (index, group) in parts.iter().enumerate() {
            for slot in &slots[group.start..group.end] {
                let id = slot.param.grad_id().expect("a parameter requires a gradient");
                if let Some(&first) = owner.get(&id) {
                    if first != index {
                        panic!(
                            "{optimizer}: some parameters appear in more than one parameter group: the tensor of \
                             shape {:?} is in groups {first} and {index}",
                            slot.param.shape()
                        );
                    }
                }
                owner.insert(id, index);
            }
        }
        ParamSet::from_parts(kind, slots, parts)
    }

    fn from_parts(kind: Kind, slots: Vec<Slot>, groups: Vec<Group>) -> ParamSet {
        ParamSet { kind, slots, groups, arenas: Vec::new(), used: [false; 3], state_pos: [0; 3] }
    }

    /// Group `index`; panics, naming the optimizer, when there is none.
    fn group(&self, index: usize) -> &Group {
        let count = self.groups.len();
        self.groups.get(index).unwrap_or_else(|| {
            panic!("{}: there is no parameter group {index}; the optimizer has {count}", self.kind.name)
        })
    }

    fn group_mut(&mut self, index: usize) -> &mut Group {
        let (name, count) = (self.kind.name, self.groups.len());
        self.groups
            .get_mut(index)
            .unwrap_or_else(|| panic!("{name}: there is no parameter group {index}; the optimizer has {count}"))
    }

    /// The option values of every group, from the optimizer's `defaults`.
    fn hypers(&self, defaults: &group::Hyper) -> Vec<group::Hyper> {
        self.groups.iter().map(|g| g.options.resolve(defaults)).collect()
    }

    /// Updates every parameter that has a gradient in `grads` with `op`. `scalars` gives
    /// the scalars of one parameter's update from its group's index and learning rate and
    /// its step count, which it advances as the optimizer counts. `used` names the state
    /// vectors the update reads and writes (in any group), created filled with `init`.
    fn step(
        &mut self,
        op: OptimOp,
        used: [bool; 3],
        init: f32,
        grads: &Gradients,
        mut scalars: impl FnMut(usize, f32, &mut u64) -> OptimScalars,
    ) {
        let mut updates = Vec::new();
        let mut group_index = 0;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            while i >= self.groups[group_index].end {
                group_index += 1;
            }
            let Some(grad) = grads.get(&slot.param) else { continue };
            assert_eq!(
                grad.shape(),
                slot.param.shape(),
                "{}: gradient of shape {:?} for a parameter of shape {:?}",
                op.name(),
                grad.shape(),
                slot.param.shape()
            );
            assert!(
                grad.device() == slot.param.device(),
                "{}: the gradient of a parameter of shape {:?} is on another device than the parameter",
                op.name(),
                slot.param.shape()
            );
            let s = scalars(group_index, self.groups[group_index].lr, &mut slot.steps);
            updates.push(Update { slot: i, scalars: s, grad: grad.detach() });
        }
        if updates.is_empty() {
            return;
        }
        self.create_state(used, init);
        // The updates that can share one backend call (which the GPU splits into as few
        // dispatches as its bindings allow): equal scalars, one arena, and no parameter
        // buffer twice, since a buffer may be bound for writing only once per dispatch.
        // Each update joins the first call it fits; calls run in the order they were
        // opened, so a parameter sharing another's buffer is still updated after it.
        let mut calls: Vec<Vec<Update>> = Vec::new();
        for u in updates {
            let slot = &self.slots[u.slot];
            if slot.param.numel() == 0 {
                continue;
            }
            let fits = |call: &Vec<Update>| {
                let first = &call[0];
                first.scalars == u.scalars
                    && self.slots[first.slot].arena == slot.arena
                    && !call.iter().any(|g| Arc::ptr_eq(&self.slots[g.slot].param.storage, &slot.param.storage))
            };
            match calls.iter().position(fits) {
                Some(i) => calls[i].push(u),
                None => calls.push(vec![u]),
            }
        }
        for call in &calls {
            self.run(op, call);
        }
        // Shadow mode samples by optimizer step.
        let mut devices: Vec<Device> = Vec::new();
        for slot in &self.slots {
            if !devices.contains(slot.param.device()) {
                devices.push(slot.param.device().clone());
            }
        }
        devices.iter().for_each(crate::shadow::optimizer_stepped);
    }

    /// Creates the state arenas on the first step.
    fn create_state(&mut self, used: [bool; 3], init: f32) {
        if !self.arenas.is_empty() {
            return;
        }
        self.used = used;
        let mut count = 0;
        for (k, &u) in used.iter().enumerate() {
            self.state_pos[k] = count;
            count += u as u32;
        }
        let per_element = count as usize;
        // Sizes of the arenas to create and the device of each.
        let mut arenas: Vec<(Device, usize)> = Vec::new();
        for slot in &mut self.slots {
            let dev = slot.param.device();
            let limit = dev.max_binding_bytes().map_or(usize::MAX, |bytes| bytes / 4);
            let len = per_element * slot.param.numel();
            assert!(
                len <= limit,
                "optimizer: the state of a parameter of shape {:?} ({len} elements) exceeds the device's largest \
                 storage binding ({limit} elements)",
                slot.param.shape()
            );
            match arenas.last_mut() {
                Some((d, used)) if d == dev && *used + len <= limit => {
                    slot.state_offset = *used;
                    *used += len;
                }
                _ => {
                    slot.state_offset = 0;
                    arenas.push((dev.clone(), len));
                }
            }
            slot.arena = arenas.len() - 1;
        }
        // Never empty, so an update that keeps no state still has a buffer to bind.
        no_grad(|| {
            self.arenas = arenas.iter().map(|(dev, len)| Tensor::full(&[(*len).max(1)], init, dev)).collect();
        });
    }

    /// Runs the updates of one group: parameters on one device and arena with equal scalars.
    fn run(&self, op: OptimOp, group: &[Update]) {
        let arena_index = self.slots[group[0].slot].arena;
        let arena = self.arenas[arena_index].clone();
        let grads: Vec<Tensor> = group
            .iter()
            .map(|u| {
                let grad = u.grad.contiguous();
                // A gradient may share a parameter's storage (`p.backward_with(&p)`, or one
                // inserted by hand): reading it while that parameter is written would
                // deadlock on the CPU lock and bind one buffer twice on the GPU, so it is
                // copied first.
                if group.iter().any(|g| Arc::ptr_eq(&grad.storage, &self.slots[g.slot].param.storage)) {
                    grad.unary_op(UnaryOp::Copy, 0.0, 0.0)
                } else {
                    grad
                }
            })
            .collect();
        let segments: Vec<OptimSegment<Storage>> = group
            .iter()
            .zip(&grads)
            .map(|(u, grad)| {
                let slot = &self.slots[u.slot];
                OptimSegment {
                    param: &*slot.param.storage,
                    grad: &*grad.storage,
                    grad_offset: grad.layout.offset,
                    state_offset: slot.state_offset,
                    numel: slot.param.numel(),
                }
            })
            .collect();
        let _phase = crate::shadow::enter_optimizer_step();
        arena.storage.optim_step(op, &group[0].scalars, self.used, &segments);
    }
}
