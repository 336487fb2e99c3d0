//! A chain of modules.

use super::{describe_children, Forward, Module, Visitor, VisitorMut};
use crate::Tensor;

/// Modules applied in order, as `torch.nn.Sequential`. A child added with
/// [`Sequential::add`] is named by its position (`0.weight`, `2.bias`,
/// `1.running_mean`), as PyTorch names them; one added with [`Sequential::add_named`] by
/// the given name (`conv.weight`), as a PyTorch `Sequential` built from an `OrderedDict`.
///
/// ```
/// use wgrad::nn::{self, Forward, Module};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let mut model = nn::Sequential::new()
///     .add_named("features", nn::Linear::new(4, 8, &dev))
///     .add_named("act", nn::ReLU)
///     .add_named("head", nn::Linear::new(8, 3, &dev));
/// let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["features.weight", "features.bias", "head.weight", "head.bias"]);
/// // A new head for another task:
/// model.replace("head", nn::Linear::new(8, 10, &dev));
/// assert_eq!(model.forward(&Tensor::zeros(&[2, 4], &dev)).shape(), &[2, 10]);
/// ```
pub struct Sequential {
    layers: Vec<(String, Box<dyn Forward>)>,
    training: bool,
}

/// Starts in training mode, as every PyTorch module does (a derived `Default` would not).
impl Default for Sequential {
    fn default() -> Self {
        Sequential::new()
    }
}

impl Sequential {
    pub fn new() -> Sequential {
        Sequential { layers: Vec::new(), training: true }
    }

    /// Appends a module named by its position (`"0"`, `"1"`, ...).
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, layer: impl Forward + 'static) -> Sequential {
        let name = self.layers.len().to_string();
        self.add_named(name, layer)
    }

    /// Appends a module under `name`, as PyTorch's `add_module`. Panics on an empty name,
    /// a name with a `.` (it would read as a path), and a name already taken.
    pub fn add_named(mut self, name: impl Into<String>, layer: impl Forward + 'static) -> Sequential {
        let name = name.into();
        assert!(
            !name.is_empty() && !name.contains('.'),
            "Sequential: '{name}' is not a child name (non-empty, without '.')"
        );
        assert!(
            self.get(&name).is_none(),
            "Sequential: a child named '{name}' already exists (children: {})",
            self.names().collect::<Vec<_>>().join(", ")
        );
        self.layers.push((name, Box::new(layer)));
        self
    }

    /// The child named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&dyn Forward> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, l)| &**l)
    }

    /// The child named `name`, mutably (to switch its mode or move it).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut (dyn Forward + 'static)> {
        self.layers.iter_mut().find(|(n, _)| n == name).map(|(_, l)| &mut **l)
    }

    /// Puts `layer` in place of the child named `name` and returns the old one, as
    /// assigning `model.head = nn.Linear(...)` in PyTorch. Panics, listing the children,
    /// when there is no child of that name.
    pub fn replace(&mut self, name: &str, layer: impl Forward + 'static) -> Box<dyn Forward> {
        let names = self.names().collect::<Vec<_>>().join(", ");
        let slot = self
            .layers
            .iter_mut()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("Sequential::replace: no child named '{name}' (children: {names})"));
        let mut layer: Box<dyn Forward> = Box::new(layer);
        layer.set_training(self.training);
        std::mem::replace(&mut slot.1, layer)
    }

    /// The children's names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|(n, _)| n.as_str())
    }

    /// The children with their names, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &dyn Forward)> {
        self.layers.iter().map(|(n, l)| (n.as_str(), &**l))
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Forward for Sequential {
    fn forward(&self, input: &Tensor) -> Tensor {
        let mut x = input.clone();
        for (_, layer) in &self.layers {
            x = layer.forward(&x);
        }
        x
    }
}

impl Module for Sequential {
    fn visit(&self, v: &mut Visitor<'_>) {
        for (name, layer) in &self.layers {
            v.module(name, layer);
        }
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        for (name, layer) in &mut self.layers {
            v.module(name, layer);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for (_, layer) in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn describe(&self) -> String {
        let children: Vec<(String, String)> = self.layers.iter().map(|(n, l)| (n.clone(), l.describe())).collect();
        describe_children("Sequential", &children)
    }
}
