//! The fully connected layer.

use super::{Forward, Module, Visitor, VisitorMut};
use crate::{init, random, Activation, Device, Tensor};

/// `y = x W^T + b`, as `torch.nn.Linear`: `weight` is `[out, in]`, `bias` `[out]`.
/// PyTorch's default initialisation: both uniform in `[-1/sqrt(in), 1/sqrt(in)]`
/// (`kaiming_uniform_(a=sqrt(5))` for the weight).
///
/// The forward pass is one [`Tensor::linear`]: product, bias and (with
/// [`Linear::with_activation`]) an activation in a single GEMM, so a `Linear` followed by a
/// ReLU can be one layer and one dispatch.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Applied to `x W^T + b` inside the GEMM; [`Activation::None`] for PyTorch's `Linear`.
    pub activation: Activation,
}

impl Linear {
    /// A layer with a bias, initialised from this thread's seed stream
    /// (see [`crate::manual_seed`]).
    pub fn new(in_features: usize, out_features: usize, device: &Device) -> Linear {
        Linear::with_seed(in_features, out_features, true, random::next_seed(), device)
    }

    /// A layer initialised from an explicit seed, with or without a bias.
    pub fn with_seed(in_features: usize, out_features: usize, bias: bool, seed: u64, device: &Device) -> Linear {
        let bound = 1.0 / (in_features.max(1) as f32).sqrt();
        let weight = init::uniform(&[out_features, in_features], -bound, bound, seed, device).requires_grad();
        let bias = bias.then(|| init::uniform(&[out_features], -bound, bound, seed ^ 0xb1a5, device).requires_grad());
        Linear { weight, bias, activation: Activation::None }
    }

    /// A layer with the given parameters (which should require gradients).
    pub fn from_parameters(weight: Tensor, bias: Option<Tensor>) -> Linear {
        assert_eq!(weight.rank(), 2, "Linear: weight must be [out, in], got {:?}", weight.shape());
        if let Some(b) = &bias {
            assert_eq!(
                b.shape(),
                &weight.shape()[..1],
                "Linear: bias {:?} does not match weight {:?}",
                b.shape(),
                weight.shape()
            );
        }
        Linear { weight, bias, activation: Activation::None }
    }

    /// The same layer with `activation` fused into its forward pass: `Linear` followed by
    /// `ReLU` as one layer, with the same parameters.
    pub fn with_activation(self, activation: Activation) -> Linear {
        Linear { activation, ..self }
    }
}

impl Module for Linear {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.weight_and_bias(&self.weight, self.bias.as_ref());
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.weight_and_bias(&mut self.weight, self.bias.as_mut());
    }

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let activation = match self.activation {
            Activation::None => String::new(),
            a => format!(", activation={a:?}"),
        };
        format!(
            "Linear(in_features={}, out_features={}, bias={}{activation})",
            self.weight.dim(1),
            self.weight.dim(0),
            // Python's bool, as PyTorch prints it.
            if self.bias.is_some() { "True" } else { "False" }
        )
    }
}

impl Forward for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let in_features = self.weight.dim(1);
        assert!(
            x.rank() >= 1 && x.dim(-1) == in_features,
            "Linear: input of shape {:?} does not end in {in_features} features",
            x.shape()
        );
        x.linear(&self.weight, self.bias.as_ref(), self.activation)
    }
}
