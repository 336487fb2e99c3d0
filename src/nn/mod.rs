//! Layers. A [`Module`] maps a tensor to a tensor and owns named parameters, with
//! PyTorch's names (`0.weight`, `fc1.bias`) so checkpoints and intuitions carry over.
//!
//! Parameters are leaf tensors that require a gradient; optimizers update their storage
//! in place, so a module and an optimizer built from `module.parameters()` stay in step.
//!
//! ```
//! use wgrad::nn::{self, Module};
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
mod batch_norm;
mod conv;
mod dropout;
mod embedding;
mod layer_norm;
mod linear;
mod pool;
mod rnn;
mod sequential;
pub(crate) mod state_dict;

pub use activation::{Elu, Flatten, Gelu as GELU, LeakyReLU, LogSoftmax, ReLU, SiLU, Sigmoid, Softmax, Softplus, Tanh};
pub use attention::MultiheadAttention;
pub use batch_norm::{BatchNorm1d, BatchNorm2d};
pub use conv::{Conv1d, Conv2d};
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use layer_norm::LayerNorm;
pub use linear::Linear;
pub use pool::{AdaptiveAvgPool2d, AvgPool2d, MaxPool2d};
pub use rnn::{RnnNonlinearity, RnnOptions, GRU, LSTM, RNN};
pub use sequential::Sequential;
pub use state_dict::{LoadReport, StateDict};

use crate::Tensor;

/// A layer or a network of layers.
///
/// `Send + Sync`, as tensors and devices are, so a model (a `Sequential` of boxed layers
/// included) can move to a worker thread or be shared behind an `Arc`. A layer that keeps
/// state across calls keeps it in atomics or locks (dropout's call counter is an
/// `AtomicU64`).
pub trait Module: Send + Sync {
    fn forward(&self, input: &Tensor) -> Tensor;

    /// Every parameter with its PyTorch-style dotted name, in registration order.
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Every buffer with its PyTorch-style dotted name (`1.running_mean`), in registration
    /// order: state that is saved and loaded with the parameters but not trained by
    /// gradients, such as batch norm's running statistics and `num_batches_tracked`.
    /// Checkpoints hold both, as PyTorch's `state_dict` does.
    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Every parameter and buffer by name, as PyTorch's `state_dict()`: detached tensors
    /// that share the module's storage. The default lists this module's parameters, then
    /// its buffers, in registration order; a container overrides it to list each child's
    /// state dict in turn under the child's name ([`Sequential`] does), which gives
    /// PyTorch's order (per module, parameters then buffers).
    fn state_dict(&self) -> StateDict {
        self.named_parameters().into_iter().chain(self.named_buffers()).map(|(n, t)| (n, t.detach())).collect()
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
    fn load_state_dict(&self, state_dict: &StateDict, strict: bool) -> crate::Result<LoadReport> {
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

    /// Switches training behaviour (dropout, batch norm) on or off, as PyTorch's
    /// `train()` / `eval()`.
    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    /// A short description for printing a model.
    fn describe(&self) -> String;
}

/// `model.set_training(false)`, for symmetry with PyTorch's `eval()`.
pub fn eval(model: &mut dyn Module) {
    model.set_training(false);
}

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
