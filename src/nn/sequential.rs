//! A chain of modules.

use super::{Module, StateDict};
use crate::Tensor;

/// Modules applied in order; parameters and buffers are named by position (`0.weight`,
/// `2.bias`, `1.running_mean`), as `torch.nn.Sequential` names them.
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
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

    /// Appends a module.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, input: &Tensor) -> Tensor {
        let mut x = input.clone();
        for layer in &self.layers {
            x = layer.forward(&x);
        }
        x
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.named_parameters().into_iter().map(|(n, t)| (format!("{i}.{n}"), t)));
        }
        out
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.named_buffers().into_iter().map(|(n, t)| (format!("{i}.{n}"), t)));
        }
        out
    }

    /// Each layer's state dict under its index, so a layer's parameters and buffers stay
    /// together, as PyTorch orders them (`1.weight`, `1.bias`, `1.running_mean`, ...).
    fn state_dict(&self) -> StateDict {
        let mut out = StateDict::new();
        for (i, layer) in self.layers.iter().enumerate() {
            out.extend(layer.state_dict().prefixed(&format!("{i}.")));
        }
        out
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn describe(&self) -> String {
        let mut s = String::from("Sequential(\n");
        for (i, layer) in self.layers.iter().enumerate() {
            s.push_str(&format!("  ({i}): {}\n", layer.describe().replace('\n', "\n  ")));
        }
        s.push(')');
        s
    }
}
