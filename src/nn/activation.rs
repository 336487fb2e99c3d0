//! Activation modules (parameter-free wrappers of the tensor ops) and Flatten.

use super::Module;
use crate::Tensor;

macro_rules! activation {
    ($(#[$doc:meta])* $name:ident, $text:literal, |$x:ident| $body:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Tensor {
                $body
            }
            fn describe(&self) -> String {
                $text.to_string()
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

impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.leaky_relu(self.0)
    }
    fn describe(&self) -> String {
        format!("LeakyReLU(negative_slope={})", self.0)
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

impl Module for Elu {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.elu(self.0)
    }
    fn describe(&self) -> String {
        format!("ELU(alpha={})", self.0)
    }
}

/// Softmax along an axis.
#[derive(Clone, Copy, Debug)]
pub struct Softmax(pub isize);

impl Module for Softmax {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.softmax(self.0)
    }
    fn describe(&self) -> String {
        format!("Softmax(dim={})", self.0)
    }
}

/// Log-softmax along an axis.
#[derive(Clone, Copy, Debug)]
pub struct LogSoftmax(pub isize);

impl Module for LogSoftmax {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.log_softmax(self.0)
    }
    fn describe(&self) -> String {
        format!("LogSoftmax(dim={})", self.0)
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

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(
            self.start_dim < x.rank().max(1),
            "Flatten: start_dim {} for input of shape {:?}",
            self.start_dim,
            x.shape()
        );
        x.flatten_from(self.start_dim)
    }
    fn describe(&self) -> String {
        format!("Flatten(start_dim={})", self.start_dim)
    }
}
