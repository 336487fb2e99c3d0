//! Activation modules (parameter-free wrappers of the tensor ops) and Flatten.

use super::module::parameter_free_module;
use super::Forward;
use crate::Tensor;

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $text:literal, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        parameter_free_module!($name, |_layer| $text.to_string());

        impl Forward for $name {
            fn forward(&self, $x: &Tensor) -> Tensor {
                $body
            }
        }
    };
}

activation!(
    /// `max(x, 0)`.
    ReLU, "ReLU()", |x| x.relu()
);
activation!(
    /// `1 / (1 + exp(-x))`.
    Sigmoid, "Sigmoid()", |x| x.sigmoid()
);
activation!(
    /// `tanh(x)`.
    Tanh, "Tanh()", |x| x.tanh()
);
activation!(
    /// The exact (erf) GELU.
    Gelu, "GELU()", |x| x.gelu()
);
activation!(
    /// `x * sigmoid(x)`.
    SiLU, "SiLU()", |x| x.silu()
);
activation!(
    /// `log(1 + exp(x))` (beta 1, threshold 20).
    Softplus, "Softplus()", |x| x.softplus()
);

/// `x` for positive `x`, else `negative_slope * x` (PyTorch's default slope is 0.01).
#[derive(Clone, Copy, Debug)]
pub struct LeakyReLU(pub f32);

impl Default for LeakyReLU {
    fn default() -> Self {
        LeakyReLU(0.01)
    }
}

parameter_free_module!(LeakyReLU, |layer| format!("LeakyReLU(negative_slope={})", layer.0));

impl Forward for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.leaky_relu(self.0)
    }
}

/// `x` for positive `x`, else `alpha * (exp(x) - 1)` (default alpha 1).
#[derive(Clone, Copy, Debug)]
pub struct Elu(pub f32);

impl Default for Elu {
    fn default() -> Self {
        Elu(1.0)
    }
}

parameter_free_module!(Elu, |layer| format!("ELU(alpha={})", layer.0));

impl Forward for Elu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.elu(self.0)
    }
}

/// Softmax along an axis.
#[derive(Clone, Copy, Debug)]
pub struct Softmax(pub isize);

parameter_free_module!(Softmax, |layer| format!("Softmax(dim={})", layer.0));

impl Forward for Softmax {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.softmax(self.0)
    }
}

/// Log-softmax along an axis.
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax(pub isize);

parameter_free_module!(LogSoftmax, |layer| format!("LogSoftmax(dim={})", layer.0));

impl Forward for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.log_softmax(self.0)
    }
}

/// Merges all axes from `start_dim` (default 1, keeping the batch axis) into one, as
/// `torch.nn.Flatten`.
#[derive(Clone, Copy, Debug)]
pub struct Flatten {
    pub start_dim: usize,
}

impl Default for Flatten {
    fn default() -> Self {
        Flatten { start_dim: 1 }
    }
}

impl Flatten {
    pub fn new() -> Flatten {
        Flatten::default()
    }
}

parameter_free_module!(Flatten, |layer| format!("Flatten(start_dim={})", layer.start_dim));

impl Forward for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            self.start_dim < x.rank().max(1),
            "Flatten: start_dim {} for input of shape {:?}",
            self.start_dim,
            x.shape()
        );
        x.flatten_from(self.start_dim)
    }
}
