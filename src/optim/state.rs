//! An optimizer's state as a value: what [`Optimizer::state_dict`] returns and
//! [`Optimizer::load_state_dict`] takes, so a run can stop and continue with the same bits.
//!
//! The layout follows PyTorch's `optimizer.state_dict()`: the parameter groups
//! (`param_groups`: for each, its parameters, its learning rate, the `initial_lr` that
//! schedulers scale, and its per-group options such as `weight_decay` and `betas`), then
//! per parameter, in the order the optimizer was built with, the step count and the state
//! tensors under PyTorch's names (`momentum_buffer`, `exp_avg`, `exp_avg_sq`,
//! `square_avg`, `grad_avg`, `sum`). A parameter that has not been updated yet has no
//! entry, as in PyTorch. The options that are not per group here (Nesterov, maximize,
//! RmsProp's centering, Adagrad's `lr_decay` and initial accumulator) are the optimizer's
//! own, set by its builder, and are not part of the state; PyTorch keeps them in every
//! group.
//!
//! Loading restores each group's rates and options, as PyTorch's `load_state_dict`
//! replaces `param_groups`, so the state tensors checked are those the *loaded* options
//! call for: a momentum Sgd's state loads into an Sgd built without momentum, which then
//! has momentum.
//!
//! [`crate::checkpoint::save_optimizer`] and [`crate::checkpoint::load_optimizer`] write
//! and read it as a safetensors file.
//!
//! [`Optimizer::state_dict`]: super::Optimizer::state_dict
//! [`Optimizer::load_state_dict`]: super::Optimizer::load_state_dict

use std::collections::BTreeMap;

use super::group::Hyper;
use super::{GroupOptions, ParamSet};
use crate::error::{Error, Result};
use crate::tensor::Layout;
use crate::{DType, Tensor};

/// A snapshot of an optimizer: its kind, its parameter groups and each parameter's state.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// Which optimizer wrote it: `"Sgd"`, `"Adam"`, `"AdamW"`, `"RmsProp"` or `"Adagrad"`.
    /// Loading checks it.
    pub kind: String,
    /// The parameter groups, in order: group 0 covers the first `groups[0].num_params`
    /// entries of `params`, group 1 the next ones, and so on.
    pub groups: Vec<GroupState>,
    /// One entry per parameter, in the order the optimizer was built with; `None` for a
    /// parameter that has not been updated yet.
    pub params: Vec<Option<ParamState>>,
}

impl OptimizerState {
    /// The learning rate of the first group (as a scheduler last set it): the rate of an
    /// optimizer of one group. Panics on a state without groups, which no optimizer
    /// returns.
    pub fn lr(&self) -> f32 {
        self.groups.first().expect("an optimizer state has at least one parameter group").lr
    }
}

/// One parameter group of an [`OptimizerState`] (one dict of PyTorch's `param_groups`).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupState {
    /// How many consecutive entries of [`OptimizerState::params`] the group covers.
    pub num_params: usize,
    /// The learning rate of the next step (as a scheduler last set it).
    pub lr: f32,
    /// The rate the group was built with, which schedulers scale (PyTorch's `initial_lr`).
    pub initial_lr: f32,
    /// The group's values of the per-group options: `state_dict` sets every option the
    /// optimizer has. An option that is `None` keeps the optimizer's value on load.
    pub options: GroupOptions,
}

/// One parameter's optimizer state.
#[derive(Clone, Debug)]
pub struct ParamState {
    /// Updates taken for this parameter (PyTorch's `step`).
    pub step: u64,
    /// The state tensors by PyTorch's name, each f32 with the parameter's shape. `state_dict`
    /// returns copies on the optimizer's device; `load_state_dict` accepts them on any device.
    pub tensors: BTreeMap<String, Tensor>,
}

/// What the update of one group keeps: the name of each of the (up to three) state
/// vectors it uses, in the order of the fused kernel's state slots, and their starting
/// value (the same in every group).
pub(super) struct StateSpec {
    pub names: [Option<&'static str>; 3],
    pub init: f32,
}

impl StateSpec {
    pub fn used(&self) -> [bool; 3] {
        self.names.map(|n| n.is_some())
    }

    /// The state vectors any of `specs` uses: the layout of the arenas.
    pub fn union(specs: &[StateSpec]) -> [bool; 3] {
        let mut used = [false; 3];
        for spec in specs {
            for (u, s) in used.iter_mut().zip(spec.used()) {
                *u |= s;
            }
        }
        used
    }
}

impl ParamSet {
    /// Copies of every parameter's state, on the parameters' devices (one device-side copy
    /// per state tensor, out of the arena, with nothing read back to the host), and every
    /// group with its options resolved from `defaults`. `spec` gives the state a group's
    /// update keeps from its option values.
    pub(super) fn state_dict(&self, defaults: &Hyper, spec: impl Fn(&Hyper) -> StateSpec) -> OptimizerState {
        let hypers = self.hypers(defaults);
        let specs: Vec<StateSpec> = hypers.iter().map(&spec).collect();
        let groups = self
            .groups
            .iter()
            .zip(&hypers)
            .map(|(g, h)| GroupState {
                num_params: g.end - g.start,
                lr: g.lr,
                initial_lr: g.initial_lr,
                options: GroupOptions::recorded(h, self.kind.options),
            })
            .collect();
        let mut params = Vec::with_capacity(self.slots.len());
        for (group, spec) in self.groups.iter().zip(&specs) {
            for slot in &self.slots[group.start..group.end] {
                if slot.steps == 0 {
                    params.push(None);
                    continue;
                }
                let arena = &self.arenas[slot.arena];
                let n = slot.param.numel();
                let mut tensors = BTreeMap::new();
                for (k, name) in spec.names.iter().enumerate() {
                    let Some(name) = name else { continue };
                    let mut layout = Layout::contiguous(slot.param.shape());
                    layout.offset = arena.layout.offset + slot.state_offset + self.state_pos[k] as usize * n;
                    tensors.insert(name.to_string(), arena.with_layout(layout).snapshot());
                }
                params.push(Some(ParamState { step: slot.steps, tensors }));
            }
        }
        OptimizerState { kind: self.kind.name.to_string(), groups, params }
    }

    /// Checks `state` against the parameters and groups, then replaces every group's rates
    /// and options and every parameter's state with it (a parameter without an entry
    /// starts afresh). `spec` gives the state a group keeps from its option values
    /// (resolved from `defaults` where the state records none); `check` checks those values
    /// together (Sgd's Nesterov conditions). On `Err` nothing has changed.
    pub(super) fn load_state_dict(
        &mut self,
        defaults: &Hyper,
        state: &OptimizerState,
        spec: impl Fn(&Hyper) -> StateSpec,
        check: impl Fn(&Hyper) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let kind = self.kind.name;
        let fail = |reason: String| Err(Error::OptimizerState(reason));
        if state.kind != kind {
            return fail(format!("the state is of a {} optimizer, not of a {kind}", state.kind));
        }
        if state.params.len() != self.slots.len() {
            return fail(format!(
                "the state has {} parameters but the {kind} optimizer has {}",
                state.params.len(),
                self.slots.len()
            ));
        }
        if state.groups.len() != self.groups.len() {
            return fail(format!(
                "the state has {} parameter groups ({}) but the {kind} optimizer has {} ({})",
                state.groups.len(),
                sizes(state.groups.iter().map(|g| g.num_params)),
                self.groups.len(),
                sizes(self.groups.iter().map(|g| g.end - g.start))
            ));
        }
        let mut problems = Vec::new();
        let mut options = Vec::with_capacity(self.groups.len());
        for (i, (group, saved)) in self.groups.iter().zip(&state.groups).enumerate() {
            let count = group.end - group.start;
            if saved.num_params != count {
                problems.push(format!(
                    "parameter group {i} has {} parameters in the state but {count} in the {kind} optimizer",
                    saved.num_params
                ));
            }
            for (what, lr) in [("learning rate", saved.lr), ("initial learning rate", saved.initial_lr)] {
                if !(lr.is_finite() && lr >= 0.0) {
                    problems.push(format!("parameter group {i}: invalid {what} {lr}"));
                }
            }
            let merged = group.options.overridden_by(&saved.options);
            if let Err(reason) = self.kind.check_group(i, None, &saved.options) {
                problems.push(reason);
            } else if let Err(reason) = check(&merged.resolve(defaults)) {
                problems.push(format!("parameter group {i}: {reason}"));
            }
            options.push(merged);
        }
        if !problems.is_empty() {
            return fail(problems.join("; "));
        }
        let specs: Vec<StateSpec> = options.iter().map(|o| spec(&o.resolve(defaults))).collect();
        for (g, (group, spec)) in self.groups.iter().zip(&specs).enumerate() {
            for i in group.start..group.end {
                let Some(entry) = &state.params[i] else { continue };
                let shape = self.slots[i].param.shape();
                for name in spec.names.iter().flatten() {
                    match entry.tensors.get(*name) {
                        None => problems.push(format!("parameter {i} (shape {shape:?}): '{name}' is missing")),
                        Some(t) if t.dtype() != DType::F32 => problems
                            .push(format!("parameter {i} (shape {shape:?}): '{name}' is {}, not f32", t.dtype())),
                        Some(t) if t.shape() != shape => problems.push(format!(
                            "parameter {i}: '{name}' has shape {:?} but the parameter has shape {shape:?}",
                            t.shape()
                        )),
                        Some(_) => {}
                    }
                }
                for (name, t) in &entry.tensors {
                    if !spec.names.contains(&Some(name.as_str())) {
                        let group =
                            if self.groups.len() > 1 { format!(" in parameter group {g}") } else { String::new() };
                        problems.push(format!(
                            "parameter {i} (shape {shape:?}): '{name}' (shape {:?}) is not a state this {kind} keeps{group}",
                            t.shape(),
                        ));
                    }
                }
            }
        }
        if !problems.is_empty() {
            return fail(problems.join("; "));
        }
        // Read every tensor to the host before anything changes: a device error is an Err too.
        let mut values: Vec<Vec<(usize, Vec<f32>)>> = Vec::with_capacity(self.slots.len());
        for (group, spec) in self.groups.iter().zip(&specs) {
            for entry in &state.params[group.start..group.end] {
                let mut v = Vec::new();
                if let Some(entry) = entry {
                    for (k, name) in spec.names.iter().enumerate() {
                        let Some(name) = name else { continue };
                        v.push((k, entry.tensors[*name].try_to_vec::<f32>()?));
                    }
                }
                values.push(v);
            }
        }

        for ((group, saved), options) in self.groups.iter_mut().zip(&state.groups).zip(options) {
            group.lr = saved.lr;
            group.initial_lr = saved.initial_lr;
            group.options = options;
        }
        let used = StateSpec::union(&specs);
        let init = specs[0].init;
        if !self.arenas.is_empty() && self.used != used {
            // The loaded options keep other state vectors: lay the arenas out afresh.
            self.arenas.clear();
        }
        if self.arenas.is_empty() && state.params.iter().all(Option::is_none) {
            for slot in &mut self.slots {
                slot.steps = 0;
            }
            return Ok(());
        }
        self.create_state(used, init);
        let mut host: Vec<Vec<f32>> = self.arenas.iter().map(|a| vec![init; a.numel()]).collect();
        for ((slot, entry), v) in self.slots.iter_mut().zip(&state.params).zip(values) {
            slot.steps = entry.as_ref().map_or(0, |e| e.step);
            let n = slot.param.numel();
            for (k, data) in v {
                let start = slot.state_offset + self.state_pos[k] as usize * n;
                host[slot.arena][start..start + n].copy_from_slice(&data);
            }
        }
        crate::autograd::no_grad(|| {
            for (arena, data) in self.arenas.iter().zip(&host) {
                arena.assign_from_host(data);
            }
        });
        Ok(())
    }
}

/// Group sizes for a message: `[3, 1]`.
fn sizes(counts: impl Iterator<Item = usize>) -> String {
    format!("of sizes {:?}", counts.collect::<Vec<_>>())
}
