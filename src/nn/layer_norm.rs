//! The layer normalisation module, as `torch.nn.LayerNorm`.

use super::{python_float, Forward, Module, Visitor, VisitorMut};
use crate::{Device, Tensor};

/// Layer normalisation over the trailing `normalized_shape` dimensions of its input, as
/// `torch.nn.LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True)`:
/// `y = (x - mean) / sqrt(var + eps) * weight + bias`, with the mean and biased variance
/// of every block of trailing elements, and `weight` (ones) and `bias` (zeros) of shape
/// `normalized_shape` learned elementwise. Training and evaluation behave the same. See
/// [`Tensor::layer_norm`].
///
/// The builders switch parameters on and off without re-creating those that exist, so a
/// chain of them leaves each parameter initialised once.
///
/// ```
/// use wgrad::nn::{Forward, LayerNorm, Module};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let ln = LayerNorm::new(&[64], &dev);
/// assert_eq!(ln.describe(), "LayerNorm((64,), eps=1e-05, elementwise_affine=True)");
/// let y = ln.forward(&Tensor::randn(&[2, 5, 64], 0, &dev));
/// let means: Vec<f32> = y.mean(&[-1], false).to_vec();
/// assert!(means.iter().all(|m| m.abs() < 1e-5));
/// let names: Vec<String> = ln.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["weight", "bias"]);
/// let no_bias = LayerNorm::new(&[3, 4], &dev).bias(false);
/// assert!(no_bias.bias_parameter().is_none());
/// assert_eq!(no_bias.weight().unwrap().shape(), &[3, 4]);
/// ```
pub struct LayerNorm {
    normalized_shape: Vec<usize>,
    eps: f32,
    device: Device,
    elementwise_affine: bool,
    use_bias: bool,
    weight: Option<Tensor>,
    bias: Option<Tensor>,
}

impl LayerNorm {
    /// A layer normalising over the trailing dimensions `normalized_shape` on `device`,
    /// with PyTorch's defaults: `eps = 1e-5`, an elementwise affine transform with a bias.
    /// Panics when `normalized_shape` is empty.
    pub fn new(normalized_shape: &[usize], device: &Device) -> LayerNorm {
        assert!(!normalized_shape.is_empty(), "LayerNorm: normalized_shape must have at least one dimension");
        let mut layer = LayerNorm {
            normalized_shape: normalized_shape.to_vec(),
            eps: 1e-5,
            device: device.clone(),
            elementwise_affine: true,
            use_bias: true,
            weight: None,
            bias: None,
        };
        layer.sync_parameters();
        layer
    }

    /// A layer with the given elementwise affine parameters (which should require
    /// gradients): `normalized_shape` is the weight's shape, and `bias`, when given, must
    /// have the same shape (`None` is PyTorch's `bias=False`). `eps` takes its default;
    /// chain [`LayerNorm::eps`] to change it. A layer without parameters is
    /// `LayerNorm::new(..).elementwise_affine(false)`.
    pub fn from_parameters(weight: Tensor, bias: Option<Tensor>) -> LayerNorm {
        assert!(
            weight.rank() > 0,
            "LayerNorm: weight must have at least one dimension, got shape {:?}",
            weight.shape()
        );
        if let Some(b) = &bias {
            assert_eq!(
                b.shape(),
                weight.shape(),
                "LayerNorm: bias {:?} does not match weight {:?}",
                b.shape(),
                weight.shape()
            );
            assert!(b.device() == weight.device(), "LayerNorm: bias and weight are on different devices");
        }
        LayerNorm {
            normalized_shape: weight.shape().to_vec(),
            eps: 1e-5,
            device: weight.device().clone(),
            elementwise_affine: true,
            use_bias: bias.is_some(),
            weight: Some(weight),
            bias,
        }
    }

    /// Creates the parameters the flags ask for that do not exist yet (weight ones, bias
    /// zeros, as PyTorch's `reset_parameters`) and drops those they no longer ask for.
    fn sync_parameters(&mut self) {
        let shape = self.normalized_shape.clone();
        if self.elementwise_affine {
            if self.weight.is_none() {
                self.weight = Some(Tensor::ones(&shape, &self.device).requires_grad());
            }
        } else {
            self.weight = None;
        }
        if self.elementwise_affine && self.use_bias {
            if self.bias.is_none() {
                self.bias = Some(Tensor::zeros(&shape, &self.device).requires_grad());
            }
        } else {
            self.bias = None;
        }
    }

    /// The value added to the variance before its square root, for numerical stability
    /// (default `1e-5`). Panics unless it is finite and non-negative.
    pub fn eps(mut self, eps: f32) -> LayerNorm {
        assert!(eps >= 0.0 && eps.is_finite(), "LayerNorm: eps must be a finite non-negative number, got {eps}");
        self.eps = eps;
        self
    }

    /// With `true` (the default) the layer learns a `weight` and (unless [`LayerNorm::bias`]
    /// turned it off) a `bias` of shape `normalized_shape`; with `false` it has no parameters.
    pub fn elementwise_affine(mut self, elementwise_affine: bool) -> LayerNorm {
        self.elementwise_affine = elementwise_affine;
        self.sync_parameters();
        self
    }

    /// With `false` the affine transform has no additive `bias` (PyTorch's `bias=False`);
    /// default `true`. Has no effect without `elementwise_affine`.
    pub fn bias(mut self, bias: bool) -> LayerNorm {
        self.use_bias = bias;
        self.sync_parameters();
        self
    }

    /// The trailing dimensions normalised over.
    pub fn normalized_shape(&self) -> &[usize] {
        &self.normalized_shape
    }

    /// The value added to the variance.
    pub fn epsilon(&self) -> f32 {
        self.eps
    }

    /// The learned elementwise scale, `None` without `elementwise_affine`.
    pub fn weight(&self) -> Option<&Tensor> {
        self.weight.as_ref()
    }

    /// The learned elementwise shift, `None` without `elementwise_affine` or with
    /// `bias(false)`.
    pub fn bias_parameter(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

impl Module for LayerNorm {
    fn visit(&self, v: &mut Visitor<'_>) {
        if let Some(w) = &self.weight {
            v.parameter("weight", w);
        }
        if let Some(b) = &self.bias {
            v.parameter("bias", b);
        }
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        if let Some(w) = &mut self.weight {
            v.parameter("weight", w);
        }
        if let Some(b) = &mut self.bias {
            v.parameter("bias", b);
        }
        if let Some(t) = self.weight.as_ref().or(self.bias.as_ref()) {
            self.device = t.device().clone();
        }
    }

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let dims: Vec<String> = self.normalized_shape.iter().map(|d| d.to_string()).collect();
        // A Python tuple: a one-element tuple keeps its trailing comma.
        let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
        let affine = if self.elementwise_affine { "True" } else { "False" };
        format!("LayerNorm({shape}, eps={}, elementwise_affine={affine})", python_float(self.eps))
    }
}

impl Forward for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(&self.normalized_shape, self.weight.as_ref(), self.bias.as_ref(), self.eps)
    }
}
