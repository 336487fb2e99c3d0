//! A list of modules, as `torch.nn.ModuleList`.

use super::module::describe_list;
use super::{Module, Visitor, VisitorMut};

/// Modules held in a list and named by index (`0.weight`, `1.bias`), as
/// `torch.nn.ModuleList`: the blocks of a network that its own forward method runs in
/// whatever order it needs. `ModuleList<Block>` holds one type; the default,
/// `ModuleList<Box<dyn Module>>`, any mix. (A `Vec` field of a `#[derive(Module)]`
/// struct is registered the same way.)
///
/// ```
/// use wgrad::nn::{self, Forward, Module, ModuleList};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let blocks: ModuleList<nn::Linear> = (0..3).map(|_| nn::Linear::new(4, 4, &dev)).collect();
/// let mut x = Tensor::ones(&[2, 4], &dev);
/// for block in &blocks {
///     x = block.forward(&x).relu();
/// }
/// assert_eq!(blocks.named_parameters()[2].0, "1.weight");
/// // Printed as PyTorch prints a list of equal blocks:
/// assert_eq!(blocks.describe(), "ModuleList(\n  (0-2): 3 x Linear(in_features=4, out_features=4, bias=True)\n)");
/// ```
pub struct ModuleList<M: Module = Box<dyn Module>> {
    modules: Vec<M>,
    training: bool,
}

impl<M: Module> Default for ModuleList<M> {
    fn default() -> Self {
        ModuleList::new()
    }
}

impl<M: Module> ModuleList<M> {
    pub fn new() -> ModuleList<M> {
        ModuleList { modules: Vec::new(), training: true }
    }

    /// Appends a module (named by its index).
    pub fn push(&mut self, module: M) {
        self.modules.push(module);
    }

    pub fn get(&self, index: usize) -> Option<&M> {
        self.modules.get(index)
    }

    pub fn get_mut(&mut self, index: usize) -> Option<&mut M> {
        self.modules.get_mut(index)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, M> {
        self.modules.iter()
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, M> {
        self.modules.iter_mut()
    }

    pub fn len(&self) -> usize {
        self.modules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }
}

impl<M: Module> std::ops::Index<usize> for ModuleList<M> {
    type Output = M;
    fn index(&self, index: usize) -> &M {
        &self.modules[index]
    }
}

impl<M: Module> std::ops::IndexMut<usize> for ModuleList<M> {
    fn index_mut(&mut self, index: usize) -> &mut M {
        &mut self.modules[index]
    }
}

impl<M: Module> FromIterator<M> for ModuleList<M> {
    fn from_iter<I: IntoIterator<Item = M>>(iter: I) -> Self {
        ModuleList { modules: iter.into_iter().collect(), training: true }
    }
}

impl<'a, M: Module> IntoIterator for &'a ModuleList<M> {
    type Item = &'a M;
    type IntoIter = std::slice::Iter<'a, M>;
    fn into_iter(self) -> Self::IntoIter {
        self.modules.iter()
    }
}

impl<M: Module> Module for ModuleList<M> {
    fn visit(&self, v: &mut Visitor<'_>) {
        for (i, m) in self.modules.iter().enumerate() {
            v.module(&i.to_string(), m);
        }
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        for (i, m) in self.modules.iter_mut().enumerate() {
            v.module(&i.to_string(), m);
        }
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
        for m in &mut self.modules {
            m.set_training(training);
        }
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn describe(&self) -> String {
        let children: Vec<(String, String)> =
            self.modules.iter().enumerate().map(|(i, m)| (i.to_string(), m.describe())).collect();
        describe_list(&children)
    }
}
