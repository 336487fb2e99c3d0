//! Convolution layers.

use super::{Forward, Module, Visitor, VisitorMut};
use crate::{init, random, Conv1dOptions, ConvOptions, Device, Size2, Tensor};

/// Weight and bias drawn as PyTorch's `_ConvNd.reset_parameters`: both uniform in
/// `[-1/sqrt(fan_in), 1/sqrt(fan_in)]` with `fan_in = in_channels / groups * kernel area`
/// (what `kaiming_uniform_(a=sqrt(5))` gives).
fn conv_parameters(weight_shape: &[usize], bias: bool, seed: u64, device: &Device) -> (Tensor, Option<Tensor>) {
    let fan_in: usize = weight_shape[1..].iter().product();
    let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
    let weight = init::uniform(weight_shape, -bound, bound, seed, device).requires_grad();
    let bias = bias.then(|| init::uniform(&weight_shape[..1], -bound, bound, seed ^ 0xb1a5, device).requires_grad());
    (weight, bias)
}

fn check_channels(layer: &str, in_channels: usize, out_channels: usize, groups: usize) {
    assert!(
        groups >= 1 && in_channels.is_multiple_of(groups) && out_channels.is_multiple_of(groups),
        "{layer}: in_channels={in_channels} and out_channels={out_channels} must both be divisible by groups={groups}"
    );
}

/// 2-D convolution over `[N, C, H, W]` batches (or one `[C, H, W]` image), as
/// `torch.nn.Conv2d` with zero padding: `weight` is `[out, in / groups, kh, kw]`, `bias`
/// `[out]`.
///
/// ```
/// use wgrad::nn::{Conv2d, Forward, Module};
/// use wgrad::{ConvOptions, Device, Tensor};
/// let dev = Device::cpu();
/// let conv = Conv2d::with_options(3, 16, 3, ConvOptions::new().stride(2).padding(1), &dev);
/// let y = conv.forward(&Tensor::randn(&[8, 3, 32, 32], 0, &dev));
/// assert_eq!(y.shape(), &[8, 16, 16, 16]);
/// assert_eq!(conv.describe(), "Conv2d(3, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))");
/// ```
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub options: ConvOptions,
}

impl Conv2d {
    /// A layer with stride 1, no padding and a bias, initialised from this thread's seed
    /// stream (see [`crate::manual_seed`]).
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Into<Size2>, device: &Device) -> Conv2d {
        Conv2d::with_options(in_channels, out_channels, kernel_size, ConvOptions::new(), device)
    }

    /// A layer with the given stride, padding, dilation and groups, and a bias.
    pub fn with_options(
        in_channels: usize,
        out_channels: usize,
        kernel_size: impl Into<Size2>,
        options: ConvOptions,
        device: &Device,
    ) -> Conv2d {
        Conv2d::with_seed(in_channels, out_channels, kernel_size, options, true, random::next_seed(), device)
    }

    /// A layer initialised from an explicit seed, with or without a bias.
    pub fn with_seed(
        in_channels: usize,
        out_channels: usize,
        kernel_size: impl Into<Size2>,
        options: ConvOptions,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Conv2d {
        check_channels("Conv2d", in_channels, out_channels, options.groups);
        let [kh, kw] = kernel_size.into().0;
        let (weight, bias) = conv_parameters(&[out_channels, in_channels / options.groups, kh, kw], bias, seed, device);
        Conv2d { weight, bias, options }
    }

    /// A layer with the given parameters (which should require gradients).
    pub fn from_parameters(weight: Tensor, bias: Option<Tensor>, options: ConvOptions) -> Conv2d {
        assert_eq!(weight.rank(), 4, "Conv2d: weight must be [out, in / groups, kh, kw], got {:?}", weight.shape());
        if let Some(b) = &bias {
            assert_eq!(
                b.shape(),
                &weight.shape()[..1],
                "Conv2d: bias {:?} does not match weight {:?}",
                b.shape(),
                weight.shape()
            );
        }
        Conv2d { weight, bias, options }
    }
}

/// `(a, b)` as Python prints a tuple.
fn pair(v: [usize; 2]) -> String {
    format!("({}, {})", v[0], v[1])
}

impl Module for Conv2d {
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

    /// PyTorch's repr: options at their defaults are left out.
    fn describe(&self) -> String {
        let s = self.weight.shape();
        let o = &self.options;
        let mut text = format!(
            "Conv2d({}, {}, kernel_size={}, stride={}",
            s[1] * o.groups,
            s[0],
            pair([s[2], s[3]]),
            pair(o.stride)
        );
        if o.padding != [0, 0] {
            text += &format!(", padding={}", pair(o.padding));
        }
        if o.dilation != [1, 1] {
            text += &format!(", dilation={}", pair(o.dilation));
        }
        if o.groups != 1 {
            text += &format!(", groups={}", o.groups);
        }
        if self.bias.is_none() {
            text += ", bias=False";
        }
        text + ")"
    }
}

impl Forward for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, self.bias.as_ref(), &self.options)
    }
}

/// 1-D convolution over `[N, C, L]` batches (or one `[C, L]` sequence), as
/// `torch.nn.Conv1d` with zero padding: `weight` is `[out, in / groups, k]`, `bias` `[out]`.
///
/// ```
/// use wgrad::nn::{Conv1d, Forward, Module};
/// use wgrad::{Conv1dOptions, Device, Tensor};
/// let dev = Device::cpu();
/// let conv = Conv1d::with_options(4, 6, 5, Conv1dOptions::new().padding(2), &dev);
/// assert_eq!(conv.forward(&Tensor::randn(&[2, 4, 10], 0, &dev)).shape(), &[2, 6, 10]);
/// ```
pub struct Conv1d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub options: Conv1dOptions,
}

impl Conv1d {
    /// A layer with stride 1, no padding and a bias, initialised from this thread's seed
    /// stream.
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: usize, device: &Device) -> Conv1d {
        Conv1d::with_options(in_channels, out_channels, kernel_size, Conv1dOptions::new(), device)
    }

    /// A layer with the given stride, padding, dilation and groups, and a bias.
    pub fn with_options(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv1dOptions,
        device: &Device,
    ) -> Conv1d {
        Conv1d::with_seed(in_channels, out_channels, kernel_size, options, true, random::next_seed(), device)
    }

    /// A layer initialised from an explicit seed, with or without a bias.
    pub fn with_seed(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        options: Conv1dOptions,
        bias: bool,
        seed: u64,
        device: &Device,
    ) -> Conv1d {
        check_channels("Conv1d", in_channels, out_channels, options.groups);
        let (weight, bias) =
            conv_parameters(&[out_channels, in_channels / options.groups, kernel_size], bias, seed, device);
        Conv1d { weight, bias, options }
    }

    /// A layer with the given parameters (which should require gradients).
    pub fn from_parameters(weight: Tensor, bias: Option<Tensor>, options: Conv1dOptions) -> Conv1d {
        assert_eq!(weight.rank(), 3, "Conv1d: weight must be [out, in / groups, k], got {:?}", weight.shape());
        if let Some(b) = &bias {
            assert_eq!(
                b.shape(),
                &weight.shape()[..1],
                "Conv1d: bias {:?} does not match weight {:?}",
                b.shape(),
                weight.shape()
            );
        }
        Conv1d { weight, bias, options }
    }
}

impl Module for Conv1d {
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

    /// PyTorch's repr: options at their defaults are left out.
    fn describe(&self) -> String {
        let s = self.weight.shape();
        let o = &self.options;
        let mut text = format!("Conv1d({}, {}, kernel_size=({},), stride=({},)", s[1] * o.groups, s[0], s[2], o.stride);
        if o.padding != 0 {
            text += &format!(", padding=({},)", o.padding);
        }
        if o.dilation != 1 {
            text += &format!(", dilation=({},)", o.dilation);
        }
        if o.groups != 1 {
            text += &format!(", groups={}", o.groups);
        }
        if self.bias.is_none() {
            text += ", bias=False";
        }
        text + ")"
    }
}

impl Forward for Conv1d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.conv1d(&self.weight, self.bias.as_ref(), &self.options)
    }
}
