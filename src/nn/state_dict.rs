//! State dicts in memory: a module's parameters and buffers by name, as PyTorch's
//! `model.state_dict()` and `model.load_state_dict(sd, strict)`.
//!
//! The type lives in `nn`, beside the [`Module`] trait whose provided methods build and
//! load it, rather than in `checkpoint`: a state dict is a module's state, whatever holds
//! it, and [`crate::checkpoint`] is one place to keep it (a safetensors file), written and
//! read over these functions. Keeping the one validation in this file means a file and an
//! in-memory dict are checked by the same code and fail the same way.
//!
//! A [`StateDict`] keeps insertion order (a module's: per module, parameters then buffers,
//! in registration order, as PyTorch orders them) and maps each name to a [`Tensor`]. The
//! tensors [`Module::state_dict`] returns are detached views of the module's own storage,
//! as PyTorch's are: they follow the module as it trains; `to_device` or a save makes a
//! snapshot.
//!
//! Loading checks every shared key (dtype and shape) before it writes any, so an `Err`
//! leaves the module unchanged; the values are then copied into the parameters' storage in
//! place (to the parameter's device), so an optimizer built from `module.parameters()`
//! keeps updating the loaded values.
//!
//! ```
//! use wgrad::nn::{self, Module};
//! use wgrad::Device;
//! let dev = Device::cpu();
//! let backbone = nn::Sequential::new().add(nn::Linear::new(4, 3, &dev));
//! let sd = backbone.state_dict().prefixed("backbone.");
//! assert_eq!(sd.keys().collect::<Vec<_>>(), ["backbone.0.weight", "backbone.0.bias"]);
//! let fresh = nn::Sequential::new().add(nn::Linear::new(4, 3, &dev));
//! let report = fresh.load_state_dict(&sd.with_prefix("backbone."), true)?;
//! assert!(report.missing_keys.is_empty() && report.unexpected_keys.is_empty());
//! assert_eq!(fresh.parameters()[0].to_vec::<f32>(), backbone.parameters()[0].to_vec::<f32>());
//! # Ok::<(), wgrad::Error>(())
//! ```

use std::collections::{HashMap, HashSet};

use super::Module;
use crate::{DType, Error, Result, Tensor};

/// Names to tensors, in insertion order; names are unique (inserting a name again
/// replaces its tensor in place).
#[derive(Clone, Default)]
pub struct StateDict {
    entries: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl StateDict {
    pub fn new() -> StateDict {
        StateDict::default()
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Adds `tensor` under `name` at the end, or replaces the tensor already named so (in
    /// its place) and returns the old one.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        let name = name.into();
        if let Some(&i) = self.index.get(&name) {
            return Some(std::mem::replace(&mut self.entries[i].1, tensor));
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, tensor));
        None
    }

    /// Removes the tensor named `name`, keeping the order of the others.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        let i = self.index.remove(name)?;
        let (_, tensor) = self.entries.remove(i);
        for slot in self.index.values_mut() {
            if *slot > i {
                *slot -= 1;
            }
        }
        Some(tensor)
    }

    /// The names, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The tensors, in order.
    pub fn values(&self) -> impl Iterator<Item = &Tensor> {
        self.entries.iter().map(|(_, t)| t)
    }

    /// `(name, tensor)` pairs, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries whose names start with `prefix`, with the prefix removed, in order:
    /// `sd.with_prefix("backbone.")` is what loads into the `backbone` submodule (as
    /// `{k[len(p):]: v for k, v in sd.items() if k.startswith(p)}` does in PyTorch).
    pub fn with_prefix(&self, prefix: &str) -> StateDict {
        self.entries
            .iter()
            .filter_map(|(n, t)| n.strip_prefix(prefix).map(|rest| (rest.to_string(), t.clone())))
            .collect()
    }

    /// Every entry with `prefix` put before its name: a submodule's state dict as it
    /// appears inside its parent (`"backbone."` gives `backbone.0.weight`).
    pub fn prefixed(&self, prefix: &str) -> StateDict {
        self.entries.iter().map(|(n, t)| (format!("{prefix}{n}"), t.clone())).collect()
    }

    /// Appends every entry of `other` (replacing entries of the same name).
    pub fn extend(&mut self, other: StateDict) {
        for (n, t) in other {
            self.insert(n, t);
        }
    }
}

impl FromIterator<(String, Tensor)> for StateDict {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> StateDict {
        let mut sd = StateDict::new();
        for (n, t) in iter {
            sd.insert(n, t);
        }
        sd
    }
}

impl IntoIterator for StateDict {
    type Item = (String, Tensor);
    type IntoIter = std::vec::IntoIter<(String, Tensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl std::fmt::Debug for StateDict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.entries.iter().map(|(n, t)| (n, (t.dtype(), t.shape())))).finish()
    }
}

/// What [`Module::load_state_dict`] did not match, as PyTorch's `_IncompatibleKeys`: the
/// module's parameters and buffers the dict has no entry for, and the dict's entries that
/// name none of them, each in order. Both are empty after a successful strict load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    pub missing_keys: Vec<String>,
    pub unexpected_keys: Vec<String>,
}

/// The checked plan of a load: what does not match, and the copies to make once nothing
/// is wrong. Shared by [`Module::load_state_dict`] and [`crate::checkpoint::load`].
pub(crate) struct LoadPlan {
    pub(crate) report: LoadReport,
    /// One message per shared key whose dtype or shape differs.
    pub(crate) mismatches: Vec<String>,
    /// The module's own tensors (by name), for messages about missing keys.
    pub(crate) targets: StateDict,
    updates: Vec<(Tensor, Tensor)>,
}

/// The state dict of a module whose names must be unique: two tensors with one name
/// would silently become one entry, a bug in the module reported as such.
pub(crate) fn state_of<M: Module + ?Sized>(module: &M, op: &str) -> StateDict {
    let state = module.state_dict();
    let mut seen = HashSet::new();
    let names: Vec<String> =
        module.named_parameters().into_iter().chain(module.named_buffers()).map(|(n, _)| n).collect();
    for name in &names {
        assert!(seen.insert(name.as_str()), "{op}: the module has two parameters or buffers named '{name}'");
    }
    state
}

/// Compares `sd` with the module's parameters and buffers; `source` names the dict in
/// messages ("the state dict", "the file").
pub(crate) fn plan_load<M: Module + ?Sized>(module: &M, sd: &StateDict, source: &str, op: &str) -> LoadPlan {
    let targets = state_of(module, op);
    let mut report = LoadReport::default();
    let mut mismatches = Vec::new();
    let mut updates = Vec::new();
    for (name, target) in targets.iter() {
        // A tensor that cannot be overwritten is a bug in the module, not in the dict.
        assert!(target.is_contiguous(), "{op}: '{name}' of shape {:?} is not a contiguous tensor", target.shape());
        let Some(value) = sd.get(name) else {
            report.missing_keys.push(name.to_string());
            continue;
        };
        if value.dtype() != target.dtype() {
            mismatches.push(format!(
                "tensor '{name}' is {} in {source} (shape {:?}) but {} in the model (shape {:?})",
                value.dtype(),
                value.shape(),
                target.dtype(),
                target.shape()
            ));
        } else if value.shape() != target.shape() {
            mismatches.push(format!(
                "tensor '{name}' has shape {:?} in {source} but {:?} in the model",
                value.shape(),
                target.shape()
            ));
        } else {
            updates.push((target.clone(), value.clone()));
        }
    }
    report.unexpected_keys = sd.keys().filter(|n| !targets.contains_key(n)).map(str::to_string).collect();
    LoadPlan { report, mismatches, targets, updates }
}

impl LoadPlan {
    /// The message for a key the module has and the dict lacks.
    pub(crate) fn missing_message(&self, name: &str, source: &str) -> String {
        let shape = self.targets.get(name).map(|t| t.shape().to_vec()).unwrap_or_default();
        format!("tensor '{name}' (shape {shape:?} in the model) is missing from {source}")
    }

    /// Copies every checked value into its parameter or buffer, in place, on the
    /// parameter's device. On a GPU device the writes are recorded in the command batch,
    /// after the work recorded before.
    pub(crate) fn apply(self) -> LoadReport {
        for (target, value) in self.updates {
            if value.device() == target.device() {
                target.assign(&value);
                continue;
            }
            match target.dtype() {
                DType::F32 => target.assign_from_host(&value.to_vec::<f32>()),
                DType::I32 => target.assign_from_host(&value.to_vec::<i32>()),
                DType::F16 => target.assign_from_host(&value.to_vec::<half::f16>()),
            }
        }
        self.report
    }
}

/// [`Module::load_state_dict`]'s body.
pub(crate) fn load<M: Module + ?Sized>(module: &M, sd: &StateDict, strict: bool) -> Result<LoadReport> {
    let source = "the state dict";
    let plan = plan_load(module, sd, source, "load_state_dict");
    let mut problems = plan.mismatches.clone();
    if strict {
        problems.extend(plan.report.missing_keys.iter().map(|n| plan.missing_message(n, source)));
        problems.extend(plan.report.unexpected_keys.iter().map(|n| {
            let shape = sd.get(n).map(|t| t.shape().to_vec()).unwrap_or_default();
            format!("tensor '{n}' (shape {shape:?} in {source}) matches no parameter or buffer of the model")
        }));
    }
    if !problems.is_empty() {
        return Err(Error::StateDict { reason: problems.join("; ") });
    }
    Ok(plan.apply())
}
