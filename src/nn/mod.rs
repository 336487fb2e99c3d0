//! Layers and models. A [`Module`] owns named parameters, buffers and child modules,
//! with PyTorch's names (`0.weight`, `conv.bias`, `blocks.1.fc.weight`) so checkpoints
//! and intuitions carry over; a module that maps one tensor to one tensor is also a
//! [`Forward`]. Write your own model as a struct of layers with `#[derive(Module)]`
//! ([`derive@Module`]) and give it the forward method it needs.
//!
//! Parameters are leaf tensors that require a gradient; optimizers update their storage
//! in place, so a module and an optimizer built from `module.parameters()` stay in step.
//!
//! ```
//! use wgrad::nn::{self, Forward, Module};
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let model = nn::Sequential::new()
//!     .add(nn::Linear::new(4, 8, &dev))
//!     .add(nn::ReLU)
//!     .add(nn::Linear::new(8, 3, &dev));
//! let y = model.forward(&Tensor::randn(&[2, 4], 0, &dev));
//! assert_eq!(y.shape(), &[2, 3]);
//! assert_eq!(model.num_parameters(), 4 * 8 + 8 + 8 * 3 + 3);
//! let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
//! ```

mod activation;
mod attention;
pub(crate) mod batch_norm;
mod conv;
mod dropout;
mod embedding;
mod layer_norm;
mod linear;
mod module;
mod module_list;
mod pool;
mod rnn;
mod sequential;
pub(crate) mod state_dict;
mod summary;

pub use activation::{Elu, Flatten, Gelu as GELU, LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh};
pub use attention::MultiheadAttention;
pub use batch_norm::{BatchNorm1d, BatchNorm2d};
pub use conv::{Conv1d, Conv2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
#[doc(hidden)]
pub use module::{describe_children, BufferField, ModuleField};
pub use module::{eval, Forward, Module, TensorRole, Visitor, VisitorMut};
pub use module_list::ModuleList;
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use rnn::{RnnNonlinearity, RnnOptions, GRU, LSTM, RNN};
pub use sequential::Sequential;
pub use state_dict::{LoadReport, StateDict};
pub use summary::{summary, summary_with, LayerSummary, Summary};
/// Implements [`Module`](trait@Module) for a struct from its fields.
///
/// Each field is registered under its name: a module (any layer, a `Sequential`, another
/// derived struct, a `Box<dyn Forward>`) as a child whose tensors are named
/// `field.<theirs>`, a [`Tensor`](crate::Tensor) as a parameter, a `Vec` of either
/// element by element (`blocks.0.fc.weight`), an `Option` when it is `Some`. Field
/// attributes:
///
/// - `#[module(skip)]`: configuration (a size, a flag, a device), not registered. A field
///   of a type that is none of the above must be marked so; the compiler says which.
/// - `#[module(buffer)]`: a `Tensor` or `Option<Tensor>` saved and loaded with the state
///   but not trained (a running statistic).
/// - `#[module(rename = "name")]`: registered under another name (to match a PyTorch
///   attribute that is a Rust keyword, say).
///
/// `visit`, `visit_mut`, `set_training` (on every child), `is_training` (false when any
/// child is in evaluation mode) and `describe` (PyTorch's repr, children by name) are
/// generated; the forward pass stays the struct's own method, with whatever inputs it
/// needs. Implement [`Forward`] as well to put the model in a [`Sequential`].
///
/// ```
/// use wgrad::nn::{self, Forward, Module};
/// use wgrad::{Device, Tensor};
///
/// /// Two inputs: an image and a vector of side features.
/// #[derive(Module)]
/// struct TwoTower {
///     conv: nn::Conv2d,
///     side: nn::Linear,
///     blocks: Vec<nn::Linear>,
///     head: nn::Linear,
///     #[module(skip)]
///     channels: usize,
/// }
///
/// impl TwoTower {
///     fn new(dev: &Device) -> TwoTower {
///         TwoTower {
///             conv: nn::Conv2d::new(1, 4, 3, dev),
///             side: nn::Linear::new(3, 8, dev),
///             blocks: (0..2).map(|_| nn::Linear::new(8, 8, dev)).collect(),
///             head: nn::Linear::new(4 + 8, 2, dev),
///             channels: 4,
///         }
///     }
///
///     fn forward(&self, image: &Tensor, features: &Tensor) -> Tensor {
///         let a = self.conv.forward(image).relu().mean(&[2, 3], false); // [N, 4]
///         let mut b = self.side.forward(features).relu();
///         for block in &self.blocks {
///             b = block.forward(&b).relu();
///         }
///         self.head.forward(&Tensor::cat(&[a, b], 1))
///     }
/// }
///
/// let dev = Device::cpu();
/// let model = TwoTower::new(&dev);
/// let y = model.forward(&Tensor::randn(&[2, 1, 8, 8], 0, &dev), &Tensor::randn(&[2, 3], 1, &dev));
/// assert_eq!(y.shape(), &[2, 2]);
/// let names: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names[..4], ["conv.weight", "conv.bias", "side.weight", "side.bias"]);
/// assert_eq!(names[4], "blocks.0.weight");
/// assert!(model.describe().starts_with("TwoTower(\n  (conv): Conv2d(1, 4"));
/// ```
///
/// A field the derive cannot register is a compile error at that field, saying to mark
/// it `#[module(skip)]`:
///
/// ```compile_fail
/// use wgrad::nn::{self, Module};
/// #[derive(Module)]
/// struct Net {
///     fc: nn::Linear,
///     width: usize, // `usize` is not a module, a parameter tensor, or a `Vec` or `Option` of them
/// }
/// ```
pub use wgrad_derive::Module;

/// A float as Python's `repr` writes it, so `describe` reads as PyTorch prints a layer:
/// `0.1`, `1.0`, `1e-05` (scientific below 1e-4 and from 1e16, with a two-digit exponent).
pub(crate) fn python_float(v: f32) -> String {
    let a = v.abs();
    if v == 0.0 || (1e-4..1e16).contains(&a) {
        let s = v.to_string();
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{v:e}");
    let (mantissa, exponent) = s.split_once('e').expect("`{:e}` always writes an exponent");
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(d) => ('-', d),
        None => ('+', exponent),
    };
    format!("{mantissa}e{sign}{digits:0>2}")
}
