//! An optimizer's state as a value: what [`Optimizer::state_dict`] returns and
//! [`Optimizer::load_state_dict`] takes, so a run can stop and continue with the same bits.
//!
//! The layout follows PyTorch's `optimizer.state_dict()`: per parameter, in the order the
//! optimizer was built with, the step count and the state tensors under PyTorch's names
//! (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, `square_avg`, `grad_avg`, `sum`), and the
//! learning rate a scheduler may have changed. A parameter that has not been updated yet
//! has no entry, as in PyTorch. The other hyper-parameters (betas, momentum, weight
//! decay, ...) are the optimizer's own, set by its builder, and are not part of the state.
//!
//! [`crate::checkpoint::save_optimizer`] and [`crate::checkpoint::load_optimizer`] write
//! and read it as a safetensors file.
//!
//! [`Optimizer::state_dict`]: super::Optimizer::state_dict
//! [`Optimizer::load_state_dict`]: super::Optimizer::load_state_dict

use std::collections::BTreeMap;

use super::ParamSet;
use crate::error::{Error, Result};
use crate::tensor::Layout;
use crate::{DType, Tensor};

/// A snapshot of an optimizer: its kind, learning rate and each parameter's state.
#[derive(Clone, Debug)]
pub struct OptimizerState {
    /// Which optimizer wrote it: `"Sgd"`, `"Adam"`, `"AdamW"`, `"RmsProp"` or `"Adagrad"`.
    /// Loading checks it.
    pub kind: String,
    /// The learning rate of the next step (as a scheduler last set it).
    pub lr: f32,
    /// One entry per parameter, in the order the optimizer was built with; `None` for a
    /// parameter that has not been updated yet.
    pub params: Vec<Option<ParamState>>,
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

/// What an optimizer keeps: its kind, the name of each of the (up to three) state vectors
/// its update uses, in the order of the fused kernel's state slots, and their starting value.
pub(super) struct StateSpec {
    pub kind: &'static str,
    pub names: [Option<&'static str>; 3],
    pub init: f32,
}

impl StateSpec {
    pub fn used(&self) -> [bool; 3] {
        self.names.map(|n| n.is_some())
    }
}

impl ParamSet {
    /// Copies of every parameter's state, on the parameters' devices: one device-side copy
    /// per state tensor, out of the arena, with nothing read back to the host.
    pub(super) fn state_dict(&self, spec: &StateSpec, lr: f32) -> OptimizerState {
        let params = self
            .slots
            .iter()
            .map(|slot| {
                if slot.steps == 0 {
                    return None;
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
                Some(ParamState { step: slot.steps, tensors })
            })
            .collect();
        OptimizerState { kind: spec.kind.to_string(), lr, params }
    }

    /// Checks `state` against the parameters and `spec`, then replaces every parameter's
    /// state with it (a parameter without an entry starts afresh). Returns the learning
    /// rate to set. On `Err` nothing has changed.
    pub(super) fn load_state_dict(&mut self, spec: &StateSpec, state: &OptimizerState) -> Result<f32> {
        let fail = |reason: String| Err(Error::OptimizerState(reason));
        if state.kind != spec.kind {
            return fail(format!("the state is of a {} optimizer, not of a {}", state.kind, spec.kind));
        }
        if state.params.len() != self.slots.len() {
            return fail(format!(
                "the state has {} parameters but the {} optimizer has {}",
                state.params.len(),
                spec.kind,
                self.slots.len()
            ));
        }
        if !(state.lr.is_finite() && state.lr >= 0.0) {
            return fail(format!("invalid learning rate {}", state.lr));
        }
        let mut problems = Vec::new();
        for (i, (slot, entry)) in self.slots.iter().zip(&state.params).enumerate() {
            let Some(entry) = entry else { continue };
            let shape = slot.param.shape();
            for name in spec.names.iter().flatten() {
                match entry.tensors.get(*name) {
                    None => problems.push(format!("parameter {i} (shape {shape:?}): '{name}' is missing")),
                    Some(t) if t.dtype() != DType::F32 => {
                        problems.push(format!("parameter {i} (shape {shape:?}): '{name}' is {}, not f32", t.dtype()))
                    }
                    Some(t) if t.shape() != shape => problems.push(format!(
                        "parameter {i}: '{name}' has shape {:?} but the parameter has shape {shape:?}",
                        t.shape()
                    )),
                    Some(_) => {}
                }
            }
            for (name, t) in &entry.tensors {
                if !spec.names.contains(&Some(name.as_str())) {
                    problems.push(format!(
                        "parameter {i} (shape {shape:?}): '{name}' (shape {:?}) is not a state this {} keeps",
                        t.shape(),
                        spec.kind
                    ));
                }
            }
        }
        if !problems.is_empty() {
            return fail(problems.join("; "));
        }
        // Read every tensor to the host before anything changes: a device error is an Err too.
        let mut values: Vec<Vec<(usize, Vec<f32>)>> = Vec::with_capacity(self.slots.len());
        for entry in &state.params {
            let mut v = Vec::new();
            if let Some(entry) = entry {
                for (k, name) in spec.names.iter().enumerate() {
                    let Some(name) = name else { continue };
                    v.push((k, entry.tensors[*name].try_to_vec::<f32>()?));
                }
            }
            values.push(v);
        }

        if self.arenas.is_empty() && state.params.iter().all(Option::is_none) {
            return Ok(state.lr);
        }
        self.create_state(spec.used(), spec.init);
        let mut host: Vec<Vec<f32>> = self.arenas.iter().map(|a| vec![spec.init; a.numel()]).collect();
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
        Ok(state.lr)
    }
}
