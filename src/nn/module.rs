//! The [`Module`] trait (what every model and layer is: named parameters and buffers,
//! children, a training mode), the [`Forward`] trait (a module that maps one tensor to
//! one tensor, which [`super::Sequential`] chains), and the visitors through which a
//! module shows its tensors.
//!
//! A module lists its tensors in one place, [`Module::visit`] (and its `&mut` twin
//! [`Module::visit_mut`]); everything else a framework needs is built on those two:
//! `named_parameters`, `named_buffers`, `state_dict`, `load_state_dict`, `freeze`,
//! `to_device`. `#[derive(Module)]` writes both visits (and `set_training`,
//! `is_training`, `describe`) from a struct's fields, so a user's model never lists its
//! parameters by hand, and the trait has no empty defaults a hand-written impl could
//! forget: a module with nothing to show says so with an empty `visit`.

use std::collections::HashSet;

use std::sync::atomic::{AtomicU64, Ordering};

use super::state_dict::{self, LoadReport, StateDict};
use crate::{Device, Error, Result, Tensor};

/// What a tensor a module shows is to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorRole {
    /// Trained by gradients (PyTorch's `nn.Parameter`).
    Parameter,
    /// Saved and loaded with the parameters but not trained by gradients (PyTorch's
    /// `register_buffer`): batch norm's running statistics and `num_batches_tracked`.
    Buffer,
}

/// A layer or a network of layers: parameters, buffers and child modules under
/// PyTorch-style dotted names (`conv.weight`, `blocks.0.fc.bias`), and a training mode.
///
/// Write it with `#[derive(Module)]` (see [`derive@crate::nn::Module`]); implement it by hand for a
/// new kind of layer. `forward` is not part of it: a model's forward pass is its own
/// method, with whatever inputs it needs. A module that maps one tensor to one tensor
/// also implements [`Forward`], which lets it sit in a [`super::Sequential`].
///
/// `Send + Sync`, as tensors and devices are, so a model can move to a worker thread or be
/// shared behind an `Arc`. A layer that keeps state across calls keeps it in atomics or
/// locks (dropout's call counter is an `AtomicU64`).
pub trait Module: Send + Sync {
    /// Shows every parameter, buffer and child module to `visitor`, in registration
    /// order (a child's tensors under the child's name). Names must be unique.
    fn visit(&self, visitor: &mut Visitor<'_>);

    /// As [`Module::visit`], with each tensor lent mutably, so it can be replaced (moved to
    /// another device). Must show the same tensors under the same names in the same order.
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>);

    /// Switches training behaviour (dropout, batch norm) on or off, in this module and
    /// every child, as PyTorch's `train()` / `eval()`.
    fn set_training(&mut self, training: bool);

    /// True in training mode. A layer without mode-dependent behaviour keeps no mode and
    /// reports `true`; a model reports `false` when any of its layers is in evaluation mode.
    fn is_training(&self) -> bool;

    /// A short description for printing a model, as PyTorch's `repr`.
    fn describe(&self) -> String;

    /// Every parameter with its dotted name, in registration order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        named(self, Some(TensorRole::Parameter))
    }

    /// Every buffer with its dotted name (`1.running_mean`), in registration order.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        named(self, Some(TensorRole::Buffer))
    }

    /// Every parameter and buffer by name, as PyTorch's `state_dict()`: detached tensors
    /// that share the module's storage, in registration order (per module, as its
    /// `visit` shows them: a layer's parameters, then its buffers).
    fn state_dict(&self) -> StateDict {
        named(self, None).into_iter().map(|(n, t)| (n, t.detach())).collect()
    }

    /// Copies the tensors of `state_dict` into the parameters and buffers of the same
    /// name, in place (an optimizer holding `parameters()` keeps updating the loaded
    /// values), moving them to each parameter's device, as PyTorch's
    /// `load_state_dict(sd, strict)`.
    ///
    /// Returns the keys that matched nothing: the module's `missing_keys` and the dict's
    /// `unexpected_keys`. With `strict`, either kind is an [`crate::Error::StateDict`]
    /// naming each key. A shared key whose dtype or shape differs is an error in either
    /// mode, naming the key and both shapes. Everything is checked before anything is
    /// written, so on `Err` the module is unchanged.
    ///
    /// Load between steps, not between a forward pass and its backward: the graph keeps the
    /// parameters' storage, not a copy, so its backward would see the loaded values.
    fn load_state_dict(&self, state_dict: &StateDict, strict: bool) -> Result<LoadReport> {
        state_dict::load(self, state_dict, strict)
    }

    /// The parameters alone, for an optimizer.
    fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters().into_iter().map(|(_, t)| t).collect()
    }

    /// Number of scalar parameters.
    fn num_parameters(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.numel()).sum()
    }

    /// Number of scalar parameters that are not frozen.
    fn num_trainable_parameters(&self) -> usize {
        self.named_parameters().iter().filter(|(_, t)| !t.is_frozen()).map(|(_, t)| t.numel()).sum()
    }

    /// Freezes every parameter of this module and its children ([`Tensor::freeze`]): they
    /// stop receiving gradients (the graph does not record them) and optimizer updates, as
    /// `requires_grad_(False)` on each of them in PyTorch. Call it on a submodule
    /// (`model.features.freeze()`) to freeze a part of a model, or use
    /// [`Module::freeze_submodule`] with its name.
    fn freeze(&self) {
        for (_, p) in self.named_parameters() {
            p.freeze();
        }
    }

    /// Undoes [`Module::freeze`] on every parameter of this module and its children.
    fn unfreeze(&self) {
        for (_, p) in self.named_parameters() {
            p.unfreeze();
        }
    }

    /// Freezes the parameters under `name` (`"features"`, `"blocks.0"`, or one parameter's
    /// full name), returning how many tensors it froze. A name that is not a submodule or
    /// parameter of this module is an [`Error::NotInModule`] listing the names it has, and
    /// freezes nothing.
    fn freeze_submodule(&self, name: &str) -> Result<usize> {
        set_frozen_under(self, name, true)
    }

    /// Unfreezes the parameters under `name`, as [`Module::freeze_submodule`].
    fn unfreeze_submodule(&self, name: &str) -> Result<usize> {
        set_frozen_under(self, name, false)
    }

    /// The position of every random stream of this module and its children (dropout's
    /// mask counters) by dotted name, in visiting order: what a resumable training
    /// checkpoint saves besides the [`Module::state_dict`], which holds no counters (so
    /// that it stays PyTorch's).
    fn random_streams(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        self.visit(&mut Visitor::for_random_streams(&mut |name, counter| {
            out.push((name.to_string(), counter.load(Ordering::Relaxed)));
        }));
        out
    }

    /// Puts every random stream back where [`Module::random_streams`] found it. The names
    /// must be exactly this module's; otherwise nothing changes and the error names the
    /// streams that differ.
    fn load_random_streams(&self, streams: &[(String, u64)]) -> Result<()> {
        let mine = self.random_streams();
        let missing: Vec<&str> =
            mine.iter().filter(|(n, _)| !streams.iter().any(|(m, _)| m == n)).map(|(n, _)| n.as_str()).collect();
        let unexpected: Vec<&str> =
            streams.iter().filter(|(n, _)| !mine.iter().any(|(m, _)| m == n)).map(|(n, _)| n.as_str()).collect();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(Error::StateDict {
                reason: format!(
                    "random streams do not match the model: missing {missing:?}, unexpected {unexpected:?}"
                ),
            });
        }
        self.visit(&mut Visitor::for_random_streams(&mut |name, counter| {
            if let Some((_, position)) = streams.iter().find(|(n, _)| n == name) {
                counter.store(*position, Ordering::Relaxed);
            }
        }));
        Ok(())
    }

    /// Moves every parameter and buffer to `device`, in place, as PyTorch's
    /// `model.to(device)`. A parameter stays a parameter (frozen or not) but becomes a new
    /// leaf: build the optimizer after moving the model, as PyTorch advises. Tensors
    /// already on `device` are kept as they are. Errors (a tensor too large for the
    /// device, a lost device) are `Err`, and the tensors moved before it stay moved.
    fn to_device(&mut self, device: &Device) -> Result<()> {
        let mut result = Ok(());
        self.visit_mut(&mut VisitorMut::new(&mut |name, tensor, role| {
            if result.is_err() || tensor.device() == device {
                return;
            }
            match tensor.try_to_device(device) {
                Ok(moved) => {
                    let moved = match role {
                        TensorRole::Parameter if tensor.grad_id().is_some() => {
                            let moved = moved.requires_grad();
                            if tensor.is_frozen() {
                                moved.freeze();
                            }
                            moved
                        }
                        _ => moved,
                    };
                    *tensor = moved;
                }
                Err(e) => {
                    log::error!("to_device: moving '{name}' failed: {e}");
                    result = Err(e);
                }
            }
        }));
        result
    }
}

/// A module's forward pass from one input to one output tensor, as PyTorch's
/// `forward(x)`. `Forward` (the input a tensor) is what every built-in layer implements
/// and what [`super::Sequential`] chains. A model whose forward pass takes more than a
/// tensor names what it takes as `I`: `Forward<(Tensor, Vec<usize>)>` for token ids with
/// each text's length, a struct for several inputs. [`crate::train::Trainer`] trains
/// either kind, fed by a loader of the same input type. A forward pass that returns more
/// than a tensor (a recurrent layer's states) is a method of its own.
pub trait Forward<I = Tensor>: Module {
    fn forward(&self, input: &I) -> Tensor;
}

/// `model.set_training(false)`, for symmetry with PyTorch's `eval()`.
pub fn eval(model: &mut (impl Module + ?Sized)) {
    model.set_training(false);
}

/// What a [`Visitor`] calls with each tensor: its full name, the tensor, its role.
type TensorCallback<'a> = dyn FnMut(&str, &Tensor, TensorRole) + 'a;
/// What a [`Visitor`] calls with each random stream: its full name and counter.
type StreamCallback<'a> = dyn FnMut(&str, &AtomicU64) + 'a;

/// Walks a module's tensors for [`Module::visit`]: a module calls [`Visitor::parameter`]
/// and [`Visitor::buffer`] for its own tensors and [`Visitor::module`] for each child,
/// which visits the child under its name.
pub struct Visitor<'a> {
    prefix: String,
    on_tensor: Option<&'a mut TensorCallback<'a>>,
    on_random_stream: Option<&'a mut StreamCallback<'a>>,
}

impl<'a> Visitor<'a> {
    /// A visitor that calls `f` with each tensor's full dotted name and role.
    pub fn new(f: &'a mut dyn FnMut(&str, &Tensor, TensorRole)) -> Visitor<'a> {
        Visitor { prefix: String::new(), on_tensor: Some(f), on_random_stream: None }
    }

    /// A visitor that calls `f` with each random stream's full dotted name and counter
    /// (see [`Visitor::random_stream`]), and skips the tensors.
    pub fn for_random_streams(f: &'a mut dyn FnMut(&str, &AtomicU64)) -> Visitor<'a> {
        Visitor { prefix: String::new(), on_tensor: None, on_random_stream: Some(f) }
    }

    /// Shows a random stream named `name`: the counter of draws a layer has made from its
    /// seed (dropout's mask count). A layer's draws are a function of its seed and this
    /// counter, so a resumable training checkpoint ([`crate::train`]) saves the counters
    /// and a resumed run draws the masks the uninterrupted one would have.
    pub fn random_stream(&mut self, name: &str, counter: &AtomicU64) {
        if let Some(f) = self.on_random_stream.as_deref_mut() {
            let len = self.prefix.len();
            self.prefix.push_str(name);
            f(&self.prefix, counter);
            self.prefix.truncate(len);
        }
    }

    /// Shows a parameter named `name` (relative to the module being visited).
    pub fn parameter(&mut self, name: &str, tensor: &Tensor) {
        self.tensor(name, tensor, TensorRole::Parameter);
    }

    /// Shows a buffer named `name`.
    pub fn buffer(&mut self, name: &str, tensor: &Tensor) {
        self.tensor(name, tensor, TensorRole::Buffer);
    }

    /// Shows the parameters `weight` and, when present, `bias`: what a linear or
    /// convolution layer holds.
    pub fn weight_and_bias(&mut self, weight: &Tensor, bias: Option<&Tensor>) {
        self.parameter("weight", weight);
        if let Some(b) = bias {
            self.parameter("bias", b);
        }
    }

    fn tensor(&mut self, name: &str, tensor: &Tensor, role: TensorRole) {
        if let Some(f) = self.on_tensor.as_deref_mut() {
            let len = self.prefix.len();
            self.prefix.push_str(name);
            f(&self.prefix, tensor, role);
            self.prefix.truncate(len);
        }
    }

    /// Visits the child `module` under `name`: its tensors are named `name.<theirs>`.
    pub fn module(&mut self, name: &str, module: &(impl Module + ?Sized)) {
        let len = self.prefix.len();
        self.prefix.push_str(name);
        self.prefix.push('.');
        module.visit(self);
        self.prefix.truncate(len);
    }
}

/// [`Visitor`] with each tensor lent mutably, for [`Module::visit_mut`].
pub struct VisitorMut<'a> {
    prefix: String,
    f: &'a mut dyn FnMut(&str, &mut Tensor, TensorRole),
}

impl<'a> VisitorMut<'a> {
    /// A visitor that calls `f` with each tensor's full dotted name and role.
    pub fn new(f: &'a mut dyn FnMut(&str, &mut Tensor, TensorRole)) -> VisitorMut<'a> {
        VisitorMut { prefix: String::new(), f }
    }

    pub fn parameter(&mut self, name: &str, tensor: &mut Tensor) {
        self.tensor(name, tensor, TensorRole::Parameter);
    }

    pub fn buffer(&mut self, name: &str, tensor: &mut Tensor) {
        self.tensor(name, tensor, TensorRole::Buffer);
    }

    /// [`Visitor::weight_and_bias`], lent mutably.
    pub fn weight_and_bias(&mut self, weight: &mut Tensor, bias: Option<&mut Tensor>) {
        self.parameter("weight", weight);
        if let Some(b) = bias {
            self.parameter("bias", b);
        }
    }

    fn tensor(&mut self, name: &str, tensor: &mut Tensor, role: TensorRole) {
        let len = self.prefix.len();
        self.prefix.push_str(name);
        (self.f)(&self.prefix, tensor, role);
        self.prefix.truncate(len);
    }

    pub fn module(&mut self, name: &str, module: &mut (impl Module + ?Sized)) {
        let len = self.prefix.len();
        self.prefix.push_str(name);
        self.prefix.push('.');
        module.visit_mut(self);
        self.prefix.truncate(len);
    }
}

/// The tensors of `module` with `role` (all of them for `None`), with their names.
fn named<M: Module + ?Sized>(module: &M, role: Option<TensorRole>) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    module.visit(&mut Visitor::new(&mut |name, tensor, r| {
        if role.is_none_or(|role| role == r) {
            out.push((name.to_string(), tensor.clone()));
        }
    }));
    out
}

/// True when `name` is `prefix` or lies under it (`features` covers `features.0.weight`,
/// not `features2.weight`).
pub(crate) fn is_under(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The submodule paths and parameter names of `names`: `a.b.weight` gives `a`, `a.b` and
/// `a.b.weight`, so an error can list what a user may name.
fn paths(names: &[(String, Tensor)]) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (name, _) in names {
        let mut end = 0;
        for part in name.split('.') {
            end += part.len();
            let path = &name[..end];
            if seen.insert(path.to_string()) {
                out.push(path.to_string());
            }
            end += 1;
        }
    }
    out
}

fn set_frozen_under<M: Module + ?Sized>(module: &M, name: &str, frozen: bool) -> Result<usize> {
    let params = module.named_parameters();
    let selected: Vec<&Tensor> = params.iter().filter(|(n, _)| is_under(n, name)).map(|(_, t)| t).collect();
    if selected.is_empty() {
        let op = if frozen { "freeze_submodule" } else { "unfreeze_submodule" };
        let known = paths(&params);
        let buffers_only = module.named_buffers().iter().any(|(n, _)| is_under(n, name));
        let why = if buffers_only { "holds only buffers, which are never trained" } else { "is not part of the model" };
        return Err(Error::NotInModule(format!(
            "{op}: '{name}' {why}; its submodules and parameters are: {}",
            if known.is_empty() { "(none)".to_string() } else { known.join(", ") }
        )));
    }
    for t in &selected {
        if frozen {
            t.freeze();
        } else {
            t.unfreeze();
        }
    }
    Ok(selected.len())
}

/// How `#[derive(Module)]` treats a field: a module (a child under the field's name), a
/// `Vec` or `Option` of fields, or a parameter [`Tensor`]. Implemented for every
/// [`Module`] (boxed ones included), `Tensor`, `Vec<T>` and `Option<T>`; a field of any
/// other type (a size, a flag) is configuration, marked `#[module(skip)]`.
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a module, a parameter tensor, or a `Vec` or `Option` of them",
    label = "#[derive(Module)] cannot register this field",
    note = "mark a field that holds configuration `#[module(skip)]`, and one that holds a buffer `#[module(buffer)]`"
)]
pub trait ModuleField {
    fn visit_field(&self, name: &str, visitor: &mut Visitor<'_>);
    fn visit_field_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>);
    fn set_training_field(&mut self, training: bool);
    /// `None` for fields without a mode (tensors, empty containers).
    fn is_training_field(&self) -> Option<bool>;
    /// Appends `(name, description)` for each child module to print.
    fn describe_field(&self, name: &str, out: &mut Vec<(String, String)>);
}

impl<M: Module> ModuleField for M {
    fn visit_field(&self, name: &str, visitor: &mut Visitor<'_>) {
        visitor.module(name, self);
    }
    fn visit_field_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>) {
        visitor.module(name, self);
    }
    fn set_training_field(&mut self, training: bool) {
        self.set_training(training);
    }
    fn is_training_field(&self) -> Option<bool> {
        Some(self.is_training())
    }
    fn describe_field(&self, name: &str, out: &mut Vec<(String, String)>) {
        out.push((name.to_string(), self.describe()));
    }
}

impl ModuleField for Tensor {
    fn visit_field(&self, name: &str, visitor: &mut Visitor<'_>) {
        visitor.parameter(name, self);
    }
    fn visit_field_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>) {
        visitor.parameter(name, self);
    }
    fn set_training_field(&mut self, _training: bool) {}
    fn is_training_field(&self) -> Option<bool> {
        None
    }
    fn describe_field(&self, _name: &str, _out: &mut Vec<(String, String)>) {}
}

/// Elements are named by index (`blocks.0`, `blocks.1`), as PyTorch's `ModuleList` and
/// `ParameterList` name theirs, and print as a `ModuleList`.
impl<T: ModuleField> ModuleField for Vec<T> {
    fn visit_field(&self, name: &str, visitor: &mut Visitor<'_>) {
        for (i, item) in self.iter().enumerate() {
            item.visit_field(&format!("{name}.{i}"), visitor);
        }
    }
    fn visit_field_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>) {
        for (i, item) in self.iter_mut().enumerate() {
            item.visit_field_mut(&format!("{name}.{i}"), visitor);
        }
    }
    fn set_training_field(&mut self, training: bool) {
        for item in self {
            item.set_training_field(training);
        }
    }
    fn is_training_field(&self) -> Option<bool> {
        self.iter().filter_map(ModuleField::is_training_field).reduce(|a, b| a && b)
    }
    fn describe_field(&self, name: &str, out: &mut Vec<(String, String)>) {
        let mut items = Vec::new();
        for (i, item) in self.iter().enumerate() {
            item.describe_field(&i.to_string(), &mut items);
        }
        if !items.is_empty() {
            out.push((name.to_string(), describe_list(&items)));
        }
    }
}

/// `None` registers nothing, as a PyTorch attribute set to `None`.
impl<T: ModuleField> ModuleField for Option<T> {
    fn visit_field(&self, name: &str, visitor: &mut Visitor<'_>) {
        if let Some(item) = self {
            item.visit_field(name, visitor);
        }
    }
    fn visit_field_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>) {
        if let Some(item) = self {
            item.visit_field_mut(name, visitor);
        }
    }
    fn set_training_field(&mut self, training: bool) {
        if let Some(item) = self {
            item.set_training_field(training);
        }
    }
    fn is_training_field(&self) -> Option<bool> {
        self.as_ref().and_then(ModuleField::is_training_field)
    }
    fn describe_field(&self, name: &str, out: &mut Vec<(String, String)>) {
        if let Some(item) = self {
            item.describe_field(name, out);
        }
    }
}

/// How `#[derive(Module)]` registers a field marked `#[module(buffer)]`: a [`Tensor`], or
/// an `Option` of one (nothing when `None`).
#[doc(hidden)]
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a buffer",
    label = "#[module(buffer)] needs a `Tensor` or an `Option<Tensor>`"
)]
pub trait BufferField {
    fn visit_buffer(&self, name: &str, visitor: &mut Visitor<'_>);
    fn visit_buffer_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>);
}

impl BufferField for Tensor {
    fn visit_buffer(&self, name: &str, visitor: &mut Visitor<'_>) {
        visitor.buffer(name, self);
    }
    fn visit_buffer_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>) {
        visitor.buffer(name, self);
    }
}

impl BufferField for Option<Tensor> {
    fn visit_buffer(&self, name: &str, visitor: &mut Visitor<'_>) {
        if let Some(t) = self {
            visitor.buffer(name, t);
        }
    }
    fn visit_buffer_mut(&mut self, name: &str, visitor: &mut VisitorMut<'_>) {
        if let Some(t) = self {
            visitor.buffer(name, t);
        }
    }
}

/// PyTorch's repr of a module with children: `Name(\n  (child): Child(...)\n)`, or
/// `Name()` without any.
#[doc(hidden)]
pub fn describe_children(type_name: &str, children: &[(String, String)]) -> String {
    if children.is_empty() {
        return format!("{type_name}()");
    }
    let mut s = format!("{type_name}(\n");
    for (name, text) in children {
        s.push_str(&format!("  ({name}): {}\n", text.replace('\n', "\n  ")));
    }
    s.push(')');
    s
}

/// PyTorch's repr of a `ModuleList`: children in order, with a run of consecutive equal
/// descriptions printed once as `(0-3): 4 x Block(...)`.
pub(crate) fn describe_list(children: &[(String, String)]) -> String {
    let mut runs: Vec<(String, String, usize, &str)> = Vec::new(); // first, last, count, text
    for (name, text) in children {
        match runs.last_mut() {
            Some((_, last, count, run_text)) if *run_text == text.as_str() => {
                *last = name.clone();
                *count += 1;
            }
            _ => runs.push((name.clone(), name.clone(), 1, text)),
        }
    }
    let grouped: Vec<(String, String)> = runs
        .into_iter()
        .map(|(first, last, count, text)| {
            if count == 1 {
                (first, text.to_string())
            } else {
                (format!("{first}-{last}"), format!("{count} x {text}"))
            }
        })
        .collect();
    describe_children("ModuleList", &grouped)
}

/// A boxed module is a module, so `Box<dyn Forward>` children and fields work.
impl<M: Module + ?Sized> Module for Box<M> {
    fn visit(&self, visitor: &mut Visitor<'_>) {
        (**self).visit(visitor)
    }
    fn visit_mut(&mut self, visitor: &mut VisitorMut<'_>) {
        (**self).visit_mut(visitor)
    }
    fn set_training(&mut self, training: bool) {
        (**self).set_training(training)
    }
    fn is_training(&self) -> bool {
        (**self).is_training()
    }
    fn describe(&self) -> String {
        (**self).describe()
    }
}

impl<I, M: Forward<I> + ?Sized> Forward<I> for Box<M> {
    fn forward(&self, input: &I) -> Tensor {
        (**self).forward(input)
    }
}

/// Implements [`Module`] for a layer without parameters, buffers or a training mode
/// (activations, pooling, flatten): an empty visit, and `describe` from the given
/// expression of the layer bound to `$layer`.
macro_rules! parameter_free_module {
    ($ty:ty, |$layer:ident| $describe:expr) => {
        impl $crate::nn::Module for $ty {
            fn visit(&self, _visitor: &mut $crate::nn::Visitor<'_>) {}
            fn visit_mut(&mut self, _visitor: &mut $crate::nn::VisitorMut<'_>) {}
            fn set_training(&mut self, _training: bool) {}
            fn is_training(&self) -> bool {
                true
            }
            fn describe(&self) -> String {
                let $layer = self;
                $describe
            }
        }
    };
}
pub(crate) use parameter_free_module;
