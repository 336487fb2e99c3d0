//! Pooling layers: thin modules over [`Tensor::max_pool2d`], [`Tensor::avg_pool2d`] and
//! [`Tensor::adaptive_avg_pool2d`], so pooling can sit in a [`super::Sequential`]. They
//! have no parameters and behave the same in training and evaluation.

use super::{Forward, Module, Visitor, VisitorMut};
use crate::{AvgPool2dOptions, MaxPool2dOptions, Size2, Tensor};

/// A pair as PyTorch prints the argument it was given: one number when both are equal
/// (PyTorch shows what the user passed; an equal pair is almost always a single int).
fn pair(v: [usize; 2]) -> String {
    if v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("({}, {})", v[0], v[1])
    }
}

fn python_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

/// 2-D max pooling over `(N, C, H, W)` or `(C, H, W)` inputs, as `torch.nn.MaxPool2d`.
///
/// ```
/// use wgrad::nn::{Forward, MaxPool2d, Module};
/// use wgrad::{Device, MaxPool2dOptions, Tensor};
/// let pool = MaxPool2d::with_options(MaxPool2dOptions::new(3).stride(2).padding(1));
/// let y = pool.forward(&Tensor::randn(&[2, 4, 9, 9], 0, &Device::cpu()));
/// assert_eq!(y.shape(), &[2, 4, 5, 5]);
/// assert_eq!(pool.describe(), "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)");
/// ```
#[derive(Clone, Debug)]
pub struct MaxPool2d {
    options: MaxPool2dOptions,
}

impl MaxPool2d {
    /// Non-overlapping `kernel_size` windows (stride = kernel size), no padding.
    pub fn new(kernel_size: impl Into<Size2>) -> MaxPool2d {
        MaxPool2d::with_options(MaxPool2dOptions::new(kernel_size))
    }

    /// A layer with every option given.
    pub fn with_options(options: MaxPool2dOptions) -> MaxPool2d {
        MaxPool2d { options }
    }

    /// The options the layer pools with.
    pub fn options(&self) -> &MaxPool2dOptions {
        &self.options
    }

    /// The pooled output and the flat `h * W + w` index of each maximum in its input plane,
    /// as PyTorch's `return_indices=True`.
    pub fn forward_with_indices(&self, input: &Tensor) -> (Tensor, Tensor) {
        input.max_pool2d_with_indices(&self.options)
    }
}

impl Module for MaxPool2d {
    fn visit(&self, _v: &mut Visitor<'_>) {}

    fn visit_mut(&mut self, _v: &mut VisitorMut<'_>) {}

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let o = &self.options;
        format!(
            "MaxPool2d(kernel_size={}, stride={}, padding={}, dilation={}, ceil_mode={})",
            pair(o.kernel_size),
            pair(o.stride),
            pair(o.padding),
            pair(o.dilation),
            python_bool(o.ceil_mode)
        )
    }
}

impl Forward for MaxPool2d {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.max_pool2d(&self.options)
    }
}

/// 2-D average pooling over `(N, C, H, W)` or `(C, H, W)` inputs, as `torch.nn.AvgPool2d`.
///
/// ```
/// use wgrad::nn::{AvgPool2d, Forward, Module};
/// use wgrad::AvgPool2dOptions;
/// assert_eq!(AvgPool2d::new(2).describe(), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
/// let pool = AvgPool2d::with_options(AvgPool2dOptions::new((3, 2)).ceil_mode(true).count_include_pad(false));
/// assert_eq!(
///     pool.describe(),
///     "AvgPool2d(kernel_size=(3, 2), stride=(3, 2), padding=0, ceil_mode=True, count_include_pad=False)"
/// );
/// ```
#[derive(Clone, Debug)]
pub struct AvgPool2d {
    options: AvgPool2dOptions,
}

impl AvgPool2d {
    /// Non-overlapping `kernel_size` windows (stride = kernel size), no padding.
    pub fn new(kernel_size: impl Into<Size2>) -> AvgPool2d {
        AvgPool2d::with_options(AvgPool2dOptions::new(kernel_size))
    }

    /// A layer with every option given.
    pub fn with_options(options: AvgPool2dOptions) -> AvgPool2d {
        AvgPool2d { options }
    }

    /// The options the layer pools with.
    pub fn options(&self) -> &AvgPool2dOptions {
        &self.options
    }
}

impl Module for AvgPool2d {
    fn visit(&self, _v: &mut Visitor<'_>) {}

    fn visit_mut(&mut self, _v: &mut VisitorMut<'_>) {}

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    /// PyTorch's repr shows kernel size, stride and padding only; the other options are
    /// appended here when they differ from their defaults, so that two differently
    /// configured layers never print alike.
    fn describe(&self) -> String {
        let o = &self.options;
        let mut s = format!(
            "AvgPool2d(kernel_size={}, stride={}, padding={}",
            pair(o.kernel_size),
            pair(o.stride),
            pair(o.padding)
        );
        if o.ceil_mode {
            s.push_str(", ceil_mode=True");
        }
        if !o.count_include_pad {
            s.push_str(", count_include_pad=False");
        }
        if let Some(d) = o.divisor_override {
            s.push_str(&format!(", divisor_override={d}"));
        }
        s.push(')');
        s
    }
}

impl Forward for AvgPool2d {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.avg_pool2d(&self.options)
    }
}

/// 2-D adaptive average pooling to a fixed output size, whatever the input size, as
/// `torch.nn.AdaptiveAvgPool2d`; `AdaptiveAvgPool2d::new(1)` is global average pooling.
///
/// ```
/// use wgrad::nn::{AdaptiveAvgPool2d, Forward, Module};
/// use wgrad::{Device, Tensor};
/// let pool = AdaptiveAvgPool2d::new((5, 7));
/// assert_eq!(pool.forward(&Tensor::randn(&[3, 10, 10], 0, &Device::cpu())).shape(), &[3, 5, 7]);
/// assert_eq!(pool.describe(), "AdaptiveAvgPool2d(output_size=(5, 7))");
/// ```
#[derive(Clone, Debug)]
pub struct AdaptiveAvgPool2d {
    output_size: [usize; 2],
}

impl AdaptiveAvgPool2d {
    /// Pools every input plane to `output_size` `(oh, ow)`.
    pub fn new(output_size: impl Into<Size2>) -> AdaptiveAvgPool2d {
        AdaptiveAvgPool2d { output_size: output_size.into().0 }
    }

    /// The output plane size `[oh, ow]`.
    pub fn output_size(&self) -> [usize; 2] {
        self.output_size
    }
}

impl Module for AdaptiveAvgPool2d {
    fn visit(&self, _v: &mut Visitor<'_>) {}

    fn visit_mut(&mut self, _v: &mut VisitorMut<'_>) {}

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("AdaptiveAvgPool2d(output_size={})", pair(self.output_size))
    }
}

impl Forward for AdaptiveAvgPool2d {
    fn forward(&self, input: &Tensor) -> Tensor {
        input.adaptive_avg_pool2d(self.output_size)
    }
}
