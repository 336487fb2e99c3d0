//! Parameter initialisers with PyTorch's definitions (`torch.nn.init`), all seeded.
//!
//! Fan-in and fan-out follow `_calculate_fan_in_and_fan_out`: for a weight of shape
//! `[out, in, k...]`, fan_in = in * prod(k) and fan_out = out * prod(k).

use crate::{Device, Tensor};

/// `(fan_in, fan_out)` of a weight shape, as PyTorch computes them.
pub fn fans(shape: &[usize]) -> (usize, usize) {
    assert!(shape.len() >= 2, "init: fan in and fan out need at least 2 dimensions, got shape {shape:?}");
    let receptive: usize = shape[2..].iter().product();
    (shape[1] * receptive, shape[0] * receptive)
}

/// The gain PyTorch's `calculate_gain` gives a nonlinearity.
#[derive(Clone, Copy, Debug)]
pub enum Nonlinearity {
    Linear,
    Sigmoid,
    Tanh,
    Relu,
    /// Leaky ReLU with this negative slope.
    LeakyRelu(f32),
}

impl Nonlinearity {
    pub fn gain(self) -> f32 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => std::f32::consts::SQRT_2,
            Nonlinearity::LeakyRelu(slope) => (2.0 / (1.0 + slope * slope)).sqrt(),
        }
    }
}

/// Which fan Kaiming initialisation preserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    FanIn,
    FanOut,
}

pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
    Tensor::zeros(shape, device)
}

pub fn ones(shape: &[usize], device: &Device) -> Tensor {
    Tensor::ones(shape, device)
}

pub fn constant(shape: &[usize], value: f32, device: &Device) -> Tensor {
    Tensor::full(shape, value, device)
}

/// Uniform in `[-bound, bound]` with `bound = gain * sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(shape: &[usize], gain: f32, seed: u64, device: &Device) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    let bound = gain * (6.0 / (fan_in + fan_out) as f32).sqrt();
    Tensor::rand_uniform(shape, -bound, bound, seed, device)
}

/// Normal with `std = gain * sqrt(2 / (fan_in + fan_out))`.
pub fn xavier_normal(shape: &[usize], gain: f32, seed: u64, device: &Device) -> Tensor {
    let (fan_in, fan_out) = fans(shape);
    let std = gain * (2.0 / (fan_in + fan_out) as f32).sqrt();
    Tensor::normal(shape, 0.0, std, seed, device)
}

fn kaiming_std(shape: &[usize], mode: FanMode, nonlinearity: Nonlinearity) -> f32 {
    let (fan_in, fan_out) = fans(shape);
    let fan = if mode == FanMode::FanIn { fan_in } else { fan_out };
    nonlinearity.gain() / (fan as f32).sqrt()
}

/// Uniform in `[-bound, bound]` with `bound = gain * sqrt(3 / fan)`.
pub fn kaiming_uniform(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    seed: u64,
    device: &Device,
) -> Tensor {
    let bound = 3f32.sqrt() * kaiming_std(shape, mode, nonlinearity);
    Tensor::rand_uniform(shape, -bound, bound, seed, device)
}

/// Normal with `std = gain / sqrt(fan)`.
pub fn kaiming_normal(
    shape: &[usize],
    mode: FanMode,
    nonlinearity: Nonlinearity,
    seed: u64,
    device: &Device,
) -> Tensor {
    Tensor::normal(shape, 0.0, kaiming_std(shape, mode, nonlinearity), seed, device)
}

/// Uniform in `[low, high)`.
pub fn uniform(shape: &[usize], low: f32, high: f32, seed: u64, device: &Device) -> Tensor {
    Tensor::rand_uniform(shape, low, high, seed, device)
}

/// Normal with the given mean and standard deviation.
pub fn normal(shape: &[usize], mean: f32, std: f32, seed: u64, device: &Device) -> Tensor {
    Tensor::normal(shape, mean, std, seed, device)
}
