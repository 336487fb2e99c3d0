//! Checkpoints: a module's named parameters and buffers as a [safetensors] file, laid out
//! exactly as PyTorch's `safetensors.torch.save_file(model.state_dict(), path)` writes
//! them: one tensor per parameter and per buffer, named as `named_parameters` and
//! `named_buffers` name them (`0.weight`, `2.bias`, `1.running_mean`), its shape row-major
//! (`[out, in]` for a Linear weight), no `__metadata__` (unless [`save_with_receipt`]
//! adds a reproducibility receipt, which PyTorch ignores). A file written here loads into
//! the same PyTorch model with `model.load_state_dict(load_file(path))`, and the other way
//! round.
//!
//! Float tensors are F32. Integer buffers (batch norm's `num_batches_tracked`, an `i32`
//! tensor here) are written as I64, the dtype of PyTorch's `torch.long` counter, so the
//! state dict PyTorch expects is exactly what it gets; loading accepts I64 or I32 values
//! that fit in an `i32`.
//!
//! The file is a [`StateDict`]: [`save_state_dict`] writes one and [`load_state_dict`]
//! reads one back (to inspect, or to load into a submodule through
//! [`StateDict::with_prefix`]); [`save`] and [`load`] are those over a module's
//! [`Module::state_dict`] and [`Module::load_state_dict`], checked by the same code.
//!
//! Two guarantees shape the code:
//!
//! - [`save`] never leaves a half-written file at `path`: it writes a temporary file in
//!   the same directory, flushes it to disk and renames it over `path`, so a crash leaves
//!   either the old checkpoint or the new one.
//! - [`load`] checks every tensor of the file against every parameter and buffer (names,
//!   dtype, shapes, integer ranges) before it writes any, so a file that does not fit the
//!   model changes nothing. It then overwrites their storage in place, so an optimizer
//!   built from `module.parameters()` keeps updating the loaded values.
//!
//! Wrong or unreadable files are `Err`s: a missing file is [`Error::Io`]; a truncated or
//! corrupt file, or one whose tensors do not match the model, is [`Error::Format`] with a
//! reason that names each offending tensor and its shapes.
//!
//! ```
//! use wgrad::nn::{self, Module};
//! use wgrad::{checkpoint, Device};
//! let dev = Device::cpu();
//! let model = nn::Sequential::new().add(nn::Linear::new(4, 3, &dev));
//! let path = std::env::temp_dir().join(format!("wgrad-doc-{}.safetensors", std::process::id()));
//! checkpoint::save(&model, &path)?;
//! let other = nn::Sequential::new().add(nn::Linear::new(4, 3, &dev));
//! checkpoint::load(&other, &path)?;
//! assert_eq!(other.parameters()[0].to_vec::<f32>(), model.parameters()[0].to_vec::<f32>());
//! let state = checkpoint::load_state(&path)?;
//! assert_eq!(state[0].0, "0.bias"); // sorted by name, as in the file
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), wgrad::Error>(())
//! ```
//!
//! An optimizer's state goes into a file of its own with [`save_optimizer`] and comes back
//! with [`load_optimizer`] (or [`load_optimizer_state`] to inspect it), with the same
//! atomic write and the same check-everything-first load.
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors, View};

use crate::error::{Error, Result};
use crate::nn::state_dict::{plan_load, state_of};
use crate::nn::{Module, StateDict};
use crate::optim::{GroupOptions, GroupState, Optimizer, OptimizerState, ParamState};
use crate::receipt::Receipt;
use crate::{DType, Device, Tensor};

/// One tensor of a checkpoint as [`load_state`] returns it: name, shape, row-major values.
pub type NamedArray = (String, Vec<usize>, Vec<f32>);

/// Writes every named parameter and buffer of `module` to `path` as a safetensors file,
/// replacing the file atomically (temporary file in the same directory, fsync, rename):
/// [`save_state_dict`] of [`Module::state_dict`].
///
/// GPU tensors are read back first, which waits for the work recorded so far.
///
/// Panics, writing nothing, when the module has no parameters and no buffers: a file of
/// no tensors is what a model whose own `Module` impl forgot `named_parameters` would
/// otherwise save without a word.
pub fn save(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let state = state_of(module, "checkpoint::save");
    assert!(
        !state.is_empty(),
        "checkpoint::save: {} has no parameters or buffers, so the file would hold no tensors; \
         a model of your own must return them from its Module impl's named_parameters \
         (and named_buffers)",
        module.describe()
    );
    save_state_dict(&state, path)
}

/// Writes `state_dict` to `path` as a safetensors file, replacing the file atomically.
/// Float tensors keep their dtype (F32, F16); `i32` tensors are written as I64, as
/// PyTorch keeps its integer buffers.
pub fn save_state_dict(state_dict: &StateDict, path: impl AsRef<Path>) -> Result<()> {
    write_state_dict(state_dict, path.as_ref(), None)
}

/// [`save`] with a reproducibility [`Receipt`] in the file's `__metadata__` (see
/// [`crate::receipt`]): the tensors are the same, and PyTorch's `load_file` and [`load`]
/// read the file as they read any checkpoint. Build the receipt after the last step, so
/// its hashes are those of the values written.
pub fn save_with_receipt(module: &dyn Module, path: impl AsRef<Path>, receipt: &Receipt) -> Result<()> {
    let state = state_of(module, "checkpoint::save_with_receipt");
    assert!(
        !state.is_empty(),
        "checkpoint::save_with_receipt: {} has no parameters or buffers, so the file would hold no tensors",
        module.describe()
    );
    write_state_dict(&state, path.as_ref(), Some(receipt.to_metadata()))
}

/// The [`Receipt`] in the checkpoint at `path`, or `None` when it was saved without one.
/// A file that cannot be read or parsed, or a receipt missing a field, is an `Err`.
pub fn load_receipt(path: impl AsRef<Path>) -> Result<Option<Receipt>> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format_error_at(path, format!("not a safetensors file: {e}")))?;
    Receipt::from_metadata(&header.metadata().clone().unwrap_or_default(), &display(path))
}

fn format_error_at(path: &Path, reason: String) -> Error {
    Error::Format { path: display(path), reason }
}

fn write_state_dict(state_dict: &StateDict, path: &Path, metadata: Option<HashMap<String, String>>) -> Result<()> {
    let arrays: Vec<(String, RawArray)> = state_dict
        .iter()
        .map(|(name, t)| {
            let (dtype, bytes) = match t.dtype() {
                DType::F32 => (Dtype::F32, t.to_vec::<f32>().iter().flat_map(|v| v.to_le_bytes()).collect()),
                DType::I32 => {
                    (Dtype::I64, t.to_vec::<i32>().iter().flat_map(|&v| i64::from(v).to_le_bytes()).collect())
                }
                DType::F16 => (Dtype::F16, t.to_vec::<half::f16>().iter().flat_map(|v| v.to_le_bytes()).collect()),
            };
            (name.to_string(), RawArray { dtype, shape: t.shape().to_vec(), bytes })
        })
        .collect();
    let bytes = safetensors::serialize(arrays, metadata)
        .map_err(|e| Error::Format { path: display(path), reason: format!("could not serialise the tensors: {e}") })?;
    write_atomically(path, &bytes)
}

/// Reads the safetensors file at `path` and copies each tensor into the parameter or
/// buffer of `module` with the same name, in place: a strict
/// [`Module::load_state_dict`] of the file's tensors, with the file's dtypes.
///
/// Every parameter and buffer must have a tensor of the same shape in the file (F32 for
/// float tensors; I64 or I32 within the `i32` range for integer buffers), and every tensor
/// in the file a parameter or buffer; all of this is checked before anything is written,
/// so on `Err` the module is unchanged. On a GPU device the uploads are recorded in the
/// command batch, ordered after the work recorded before the call.
///
/// Load between steps, not between a forward pass and its backward: the graph keeps the
/// parameters' storage, not a copy, so its backward would see the loaded values.
pub fn load(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = parse(path, &bytes)?;
    let targets = state_of(module, "checkpoint::load");

    // Decode each tensor into the dtype of the parameter it is for, reporting the file
    // dtypes that cannot be loaded there in the file's own terms (I64, F64).
    let mut problems = Vec::new();
    let mut undecodable = HashSet::new();
    let mut odd_extra = Vec::new();
    let mut state = StateDict::new();
    let mut tensors: Vec<_> = file.iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    for (name, view) in tensors {
        let decoded = match targets.get(name) {
            Some(target) => decode_as(target.dtype(), name, &view).map_err(|reason| {
                problems.push(format!("{reason} (shape {:?} in the model)", target.shape()));
                undecodable.insert(name.to_string());
            }),
            None => decode(name, &view).map_err(|_| odd_extra.push(name.to_string())),
        };
        if let Ok(tensor) = decoded {
            state.insert(name, tensor);
        }
    }
    let source = "the file";
    let plan = plan_load(module, &state, source, "checkpoint::load");
    problems.extend(plan.mismatches.iter().cloned());
    for name in plan.report.missing_keys.iter().filter(|n| !undecodable.contains(*n)) {
        problems.push(plan.missing_message(name, source));
    }
    let mut extra = plan.report.unexpected_keys.clone();
    extra.extend(odd_extra);
    extra.sort();
    for name in extra {
        let shape = file.tensor(&name).map(|v| v.shape().to_vec()).unwrap_or_default();
        problems
            .push(format!("tensor '{name}' (shape {shape:?} in the file) matches no parameter or buffer of the model"));
    }
    if !problems.is_empty() {
        return Err(Error::Format { path: display(path), reason: problems.join("; ") });
    }
    plan.apply();
    Ok(())
}

/// The `__metadata__` value of `format` in an optimizer file.
const OPTIMIZER_FORMAT: &str = "wgrad.optimizer.v2";
/// The format of the files written before parameter groups, read as one group.
const OPTIMIZER_FORMAT_V1: &str = "wgrad.optimizer.v1";

/// Writes `optimizer`'s state ([`Optimizer::state_dict`]) to `path` as a safetensors file,
/// atomically as [`save`] does.
///
/// Each parameter `i` the optimizer has updated gets a tensor `state.{i}.step` (I64,
/// shape `[]`) and one F32 tensor `state.{i}.{name}` per state (`exp_avg`,
/// `momentum_buffer`, ...) with the parameter's shape; parameters are numbered across the
/// groups, as PyTorch numbers them. The metadata holds `format` (`wgrad.optimizer.v2`),
/// `optimizer` (its kind), `num_params`, `num_groups`, and for each group `g`:
/// `group.{g}.num_params`, `group.{g}.lr`, `group.{g}.initial_lr` and one
/// `group.{g}.{option}` per per-group option (`weight_decay`, `momentum`, `dampening`,
/// `eps`, `alpha`, and `betas` as `[beta1, beta2]`). Every rate and option is written
/// exactly, as the shortest decimal that reads back to the same f32. `lr` repeats the
/// first group's rate for readers that know one rate.
///
/// ```
/// use wgrad::optim::{Adam, Optimizer, ParamGroup};
/// use wgrad::{checkpoint, Device, Tensor};
/// let dev = Device::cpu();
/// let w = Tensor::from_slice(&[1.0f32, -2.0], &[2], &dev).requires_grad();
/// let b = Tensor::from_slice(&[0.5f32], &[1], &dev).requires_grad();
/// let groups = || [ParamGroup::new([w.clone()]), ParamGroup::new([b.clone()]).lr(0.01).weight_decay(0.0)];
/// let mut opt = Adam::with_groups(groups(), 0.1).weight_decay(1e-4);
/// opt.step(&w.square().sum_all().add(&b.sum_all()).backward());
/// let path = std::env::temp_dir().join(format!("wgrad-doc-opt-{}.safetensors", std::process::id()));
/// checkpoint::save_optimizer(&opt, &path)?;
/// let mut resumed = Adam::with_groups(groups(), 0.1);
/// checkpoint::load_optimizer(&mut resumed, &path)?;
/// assert_eq!(resumed.state_dict().params[0].as_ref().unwrap().step, 1);
/// assert_eq!(resumed.group_lr(1), 0.01);
/// assert_eq!(resumed.state_dict().groups[0].options.weight_decay, Some(1e-4)); // restored
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn save_optimizer(optimizer: &(impl Optimizer + ?Sized), path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let state = optimizer.state_dict();
    let mut arrays: Vec<(String, RawArray)> = Vec::new();
    for (i, entry) in state.params.iter().enumerate() {
        let Some(entry) = entry else { continue };
        let step = i64::try_from(entry.step).unwrap_or(i64::MAX);
        arrays.push((
            format!("state.{i}.step"),
            RawArray { dtype: Dtype::I64, shape: Vec::new(), bytes: step.to_le_bytes().to_vec() },
        ));
        for (name, t) in &entry.tensors {
            let bytes = t.to_vec::<f32>().iter().flat_map(|v| v.to_le_bytes()).collect();
            arrays
                .push((format!("state.{i}.{name}"), RawArray { dtype: Dtype::F32, shape: t.shape().to_vec(), bytes }));
        }
    }
    let mut metadata = HashMap::from([
        ("format".to_string(), OPTIMIZER_FORMAT.to_string()),
        ("optimizer".to_string(), state.kind.clone()),
        ("lr".to_string(), format!("{:?}", state.lr())),
        ("num_params".to_string(), state.params.len().to_string()),
        ("num_groups".to_string(), state.groups.len().to_string()),
    ]);
    for (g, group) in state.groups.iter().enumerate() {
        let GroupOptions { weight_decay, momentum, dampening, betas, eps, alpha, .. } = group.options;
        let mut put = |key: &str, value: String| metadata.insert(format!("group.{g}.{key}"), value);
        put("num_params", group.num_params.to_string());
        put("lr", format!("{:?}", group.lr));
        put("initial_lr", format!("{:?}", group.initial_lr));
        for (key, value) in [
            ("weight_decay", weight_decay),
            ("momentum", momentum),
            ("dampening", dampening),
            ("eps", eps),
            ("alpha", alpha),
        ] {
            if let Some(v) = value {
                put(key, format!("{v:?}"));
            }
        }
        if let Some((beta1, beta2)) = betas {
            put("betas", format!("[{beta1:?}, {beta2:?}]"));
        }
    }
    let bytes = safetensors::serialize(arrays, Some(metadata))
        .map_err(|e| Error::Format { path: display(path), reason: format!("could not serialise the tensors: {e}") })?;
    write_atomically(path, &bytes)
}

/// Reads an optimizer state written by [`save_optimizer`] from `path` (tensors on the CPU).
///
/// A file of the earlier format `wgrad.optimizer.v1`, written before parameter groups,
/// reads as one group over every parameter whose rate and initial rate are the file's
/// `lr` and whose options are not recorded (`None`), so loading it keeps the optimizer's
/// options, as loading such a file always did.
///
/// A missing file is [`Error::Io`]; a truncated or corrupt file, one without the
/// optimizer metadata, groups that do not add up to the parameters, or a tensor name,
/// dtype or shape the format does not allow is [`Error::Format`].
pub fn load_optimizer_state(path: impl AsRef<Path>) -> Result<OptimizerState> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = parse(path, &bytes)?;
    let format_error = |reason: String| Error::Format { path: display(path), reason };
    let (_, header) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| format_error(format!("not a valid safetensors file ({} bytes): {e}", bytes.len())))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let field = |key: &str| {
        metadata.get(key).ok_or_else(|| {
            format_error(format!("no '{key}' in the metadata: not an optimizer state written by save_optimizer"))
        })
    };
    let number = |key: &str| -> Result<f32> {
        let text = field(key)?;
        text.parse().map_err(|_| format_error(format!("{key} '{text}' is not a number")))
    };
    let count = |key: &str| -> Result<usize> {
        let text = field(key)?;
        text.parse().map_err(|_| format_error(format!("{key} '{text}' is not a count")))
    };
    let format = field("format")?;
    let v1 = format == OPTIMIZER_FORMAT_V1;
    if !v1 && format != OPTIMIZER_FORMAT {
        return Err(format_error(format!(
            "format '{format}' is neither '{OPTIMIZER_FORMAT}' nor '{OPTIMIZER_FORMAT_V1}'"
        )));
    }
    let kind = field("optimizer")?.clone();
    let lr = number("lr")?;
    let num_params = count("num_params")?;

    // A bound on what a corrupt header can make us allocate; no model has this many tensors.
    if num_params > 1 << 20 {
        return Err(format_error(format!("num_params {num_params} is beyond any optimizer (at most 2^20)")));
    }
    let groups = if v1 {
        vec![GroupState { num_params, lr, initial_lr: lr, options: GroupOptions::default() }]
    } else {
        let num_groups = count("num_groups")?;
        if num_groups == 0 || num_groups > num_params.max(1) {
            return Err(format_error(format!("num_groups {num_groups} is not between 1 and num_params {num_params}")));
        }
        let mut groups = Vec::with_capacity(num_groups);
        for g in 0..num_groups {
            let key = |name: &str| format!("group.{g}.{name}");
            let option = |name: &str| metadata.contains_key(&key(name)).then(|| number(&key(name))).transpose();
            let mut options = GroupOptions {
                weight_decay: option("weight_decay")?,
                momentum: option("momentum")?,
                dampening: option("dampening")?,
                eps: option("eps")?,
                alpha: option("alpha")?,
                ..Default::default()
            };
            if let Some(text) = metadata.get(&key("betas")) {
                let pair: Option<Vec<f32>> = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.split(',').map(|v| v.trim().parse().ok()).collect());
                match pair.as_deref() {
                    Some(&[beta1, beta2]) => options.betas = Some((beta1, beta2)),
                    _ => return Err(format_error(format!("{} '{text}' is not a pair [beta1, beta2]", key("betas")))),
                }
            }
            groups.push(GroupState {
                num_params: count(&key("num_params"))?,
                lr: number(&key("lr"))?,
                initial_lr: number(&key("initial_lr"))?,
                options,
            });
        }
        const GROUP_KEYS: [&str; 9] =
            ["num_params", "lr", "initial_lr", "weight_decay", "momentum", "dampening", "betas", "eps", "alpha"];
        let mut unknown: Vec<&String> = metadata
            .keys()
            .filter(|k| {
                k.strip_prefix("group.").is_some_and(|rest| {
                    !rest.split_once('.').is_some_and(|(g, name)| {
                        g.parse::<usize>().is_ok_and(|g| g < num_groups) && GROUP_KEYS.contains(&name)
                    })
                })
            })
            .collect();
        unknown.sort();
        if !unknown.is_empty() {
            return Err(format_error(format!(
                "metadata {} {} not a key of one of the {num_groups} groups",
                unknown.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(", "),
                if unknown.len() == 1 { "is" } else { "are" }
            )));
        }
        let covered: usize = groups.iter().map(|g| g.num_params).sum();
        if covered != num_params {
            return Err(format_error(format!(
                "the groups hold {covered} parameters ({:?}) but num_params is {num_params}",
                groups.iter().map(|g| g.num_params).collect::<Vec<_>>()
            )));
        }
        if lr.to_bits() != groups[0].lr.to_bits() {
            return Err(format_error(format!("lr {lr:?} is not the rate of group 0, {:?}", groups[0].lr)));
        }
        groups
    };
    let mut params: Vec<Option<ParamState>> = vec![None; num_params];
    let mut steps: Vec<Option<u64>> = vec![None; num_params];
    let mut problems = Vec::new();
    let mut names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    names.sort();
    for name in &names {
        let view = file.tensor(name).map_err(|e| format_error(format!("tensor '{name}': {e}")))?;
        let parsed = name
            .strip_prefix("state.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(i, state)| Some((i.parse::<usize>().ok()?, state)))
            .filter(|&(i, state)| i < num_params && !state.is_empty());
        let Some((i, state)) = parsed else {
            problems.push(format!("tensor '{name}' is not 'state.<i>.<name>' with i below num_params {num_params}"));
            continue;
        };
        if state == "step" {
            if view.dtype() != Dtype::I64 || view.data().len() != 8 {
                problems.push(format!(
                    "tensor '{name}' is {:?} of shape {:?}, not one I64",
                    view.dtype(),
                    view.shape()
                ));
                continue;
            }
            let step = i64::from_le_bytes(view.data().try_into().expect("8 bytes"));
            match u64::try_from(step) {
                Ok(step) => steps[i] = Some(step),
                Err(_) => problems.push(format!("tensor '{name}' holds a negative step {step}")),
            }
        } else if view.dtype() != Dtype::F32 {
            problems.push(format!("tensor '{name}' is {:?} (shape {:?}), not F32", view.dtype(), view.shape()));
        } else {
            let t = Tensor::from_slice(&decode_f32(view.data()), view.shape(), &Device::cpu());
            let entry = params[i].get_or_insert_with(|| ParamState { step: 0, tensors: BTreeMap::new() });
            entry.tensors.insert(state.to_string(), t);
        }
    }
    for (i, step) in steps.iter().enumerate() {
        match (*step, &mut params[i]) {
            (Some(step), Some(entry)) => entry.step = step,
            (Some(step), entry @ None) => *entry = Some(ParamState { step, tensors: BTreeMap::new() }),
            (None, Some(_)) => problems.push(format!("parameter {i} has state tensors but no 'state.{i}.step'")),
            (None, None) => {}
        }
    }
    if !problems.is_empty() {
        return Err(format_error(problems.join("; ")));
    }
    Ok(OptimizerState { kind, groups, params })
}

/// Reads the optimizer state at `path` ([`load_optimizer_state`]) and loads it into
/// `optimizer` ([`Optimizer::load_state_dict`]), onto the parameters' devices. A state
/// that does not fit the optimizer is an [`Error::Format`] naming the file and what
/// disagrees; on `Err` the optimizer is unchanged.
pub fn load_optimizer(optimizer: &mut (impl Optimizer + ?Sized), path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let state = load_optimizer_state(path)?;
    optimizer.load_state_dict(&state).map_err(|e| match e {
        Error::OptimizerState(reason) => Error::Format { path: display(path), reason },
        other => other,
    })
}

/// Every tensor of the safetensors file at `path` as a [`StateDict`] of CPU tensors,
/// sorted by name, ready for [`Module::load_state_dict`] (whole or, through
/// [`StateDict::with_prefix`], into a submodule). F32 and F16 tensors keep their dtype;
/// I64 and I32 tensors become `i32` tensors, as the model stores its counters. Any other
/// dtype, or an integer outside the `i32` range, is an [`Error::Format`] naming the tensor.
pub fn load_state_dict(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = parse(path, &bytes)?;
    let mut tensors: Vec<_> = file.iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(b.0));
    let mut state = StateDict::new();
    for (name, view) in tensors {
        let tensor = decode(name, &view).map_err(|reason| Error::Format { path: display(path), reason })?;
        state.insert(name, tensor);
    }
    Ok(state)
}

/// The CPU tensor of `view` in its natural dtype (I64 narrowed to `i32`).
fn decode(name: &str, view: &TensorView<'_>) -> std::result::Result<Tensor, String> {
    let dtype = match view.dtype() {
        Dtype::F32 => DType::F32,
        Dtype::F16 => DType::F16,
        Dtype::I64 | Dtype::I32 => DType::I32,
        other => {
            return Err(format!(
                "tensor '{name}' is {other:?} (shape {:?}); only F32, F16, I64 and I32 can be loaded",
                view.shape()
            ))
        }
    };
    decode_as(dtype, name, view)
}

/// The CPU tensor of `view` as `dtype`, from the file dtypes that load into it: F32 into
/// f32, F16 into f16, I64 or I32 (within range) into i32.
fn decode_as(dtype: DType, name: &str, view: &TensorView<'_>) -> std::result::Result<Tensor, String> {
    let accepted: &[Dtype] = match dtype {
        DType::F32 => &[Dtype::F32],
        DType::I32 => &[Dtype::I64, Dtype::I32],
        DType::F16 => &[Dtype::F16],
    };
    if !accepted.contains(&view.dtype()) {
        return Err(format!(
            "tensor '{name}' is {:?} in the file (shape {:?}) but only {} can be loaded",
            view.dtype(),
            view.shape(),
            accepted.iter().map(|d| format!("{d:?}")).collect::<Vec<_>>().join(" or "),
        ));
    }
    let cpu = Device::cpu();
    Ok(match dtype {
        DType::F32 => Tensor::from_slice(&decode_f32(view.data()), view.shape(), &cpu),
        DType::F16 => {
            let halves: Vec<half::f16> =
                view.data().chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]])).collect();
            Tensor::from_slice(&halves, view.shape(), &cpu)
        }
        DType::I32 => {
            let wide = decode_integers(view.dtype(), view.data());
            if let Some(bad) = wide.iter().find(|&&v| i32::try_from(v).is_err()) {
                return Err(format!("tensor '{name}' holds {bad}, outside the i32 range the model stores it in"));
            }
            let narrow: Vec<i32> = wide.iter().map(|&v| v as i32).collect();
            Tensor::from_slice(&narrow, view.shape(), &cpu)
        }
    })
}

/// Every tensor of the safetensors file at `path`, sorted by name: for inspecting a
/// checkpoint without a model. F32 tensors come back as they are; I64 and I32 tensors
/// (counters such as `num_batches_tracked`) as f32 values, exact up to 2^24. Tensors of
/// any other dtype are an [`Error::Format`].
pub fn load_state(path: impl AsRef<Path>) -> Result<Vec<NamedArray>> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = parse(path, &bytes)?;
    let mut out = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        let values = match view.dtype() {
            Dtype::F32 => decode_f32(view.data()),
            Dtype::I64 | Dtype::I32 => decode_integers(view.dtype(), view.data()).iter().map(|&v| v as f32).collect(),
            other => {
                return Err(Error::Format {
                    path: display(path),
                    reason: format!(
                        "tensor '{name}' is {other:?} (shape {:?}); only F32, I64 and I32 can be loaded",
                        view.shape()
                    ),
                })
            }
        };
        out.push((name.to_string(), view.shape().to_vec(), values));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One tensor's dtype, shape and little-endian bytes, as the safetensors serialiser wants it.
struct RawArray {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for RawArray {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Little-endian f32s from bytes that need not be 4-byte aligned (a tensor's data starts
/// wherever the header ends).
fn decode_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Little-endian I64 or I32 values, widened to i64, from bytes that need not be aligned.
fn decode_integers(dtype: Dtype, bytes: &[u8]) -> Vec<i64> {
    match dtype {
        Dtype::I64 => bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8"))).collect(),
        Dtype::I32 => bytes.chunks_exact(4).map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect(),
        other => unreachable!("decode_integers called for {other:?}"),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::Io { path: display(path), source })
}

/// Parses the header and checks that the offsets cover the data exactly; a truncated or
/// corrupt file is a `Format` error, never a panic.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
        path: display(path),
        reason: format!("not a valid safetensors file ({} bytes): {e}", bytes.len()),
    })
}

/// Writes `bytes` to a fresh temporary file next to `path`, flushes it to disk and renames
/// it over `path`. The rename is atomic on POSIX file systems (and replaces an existing
/// file on Windows too), so readers see the old file or the new one, never a prefix. What
/// every file wgrad writes goes through; an [`Error::Io`] naming `path` when it fails.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_error = |source| Error::Io { path: display(path), source };
    let Some(file_name) = path.file_name() else {
        return Err(io_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(temp_name(file_name));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(e));
    }
    sync_dir(&dir);
    Ok(())
}

/// `.NAME.PID-COUNTER-NANOS.tmp`: hidden, and unique across threads and processes.
fn temp_name(file_name: &std::ffi::OsStr) -> std::ffi::OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut name = std::ffi::OsString::from(".");
    name.push(file_name);
    name.push(format!(".{}-{}-{nanos}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    name
}

/// Flushes the directory entry of the rename, so the new file survives a power cut. Best
/// effort: some file systems refuse to sync a directory, and the data itself is already
/// on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
