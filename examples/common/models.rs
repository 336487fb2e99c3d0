//! The models of the MNIST examples, defined once: the examples train them and the
//! benchmark workloads time their training steps.

use wgrad::nn::{self, Conv2d, Forward, Linear, MaxPool2d, Module, RnnOptions, LSTM};
use wgrad::{Activation, Device, Tensor};

/// The textbook MLP: 784-128-10 with ReLU, on flattened images.
pub fn mlp(dev: &Device) -> Mlp {
    Mlp { hidden: Linear::new(784, 128, dev).with_activation(Activation::Relu), out: Linear::new(128, 10, dev) }
}

/// `Linear(784, 128)`, ReLU, `Linear(128, 10)`, with the ReLU fused into the first layer's
/// GEMM. Its parameters keep the names of the equivalent `Sequential` (`0.weight`,
/// `0.bias`, `2.weight`, `2.bias`), so checkpoints of either load into the other.
#[derive(Module)]
pub struct Mlp {
    #[module(rename = "0")]
    hidden: Linear,
    #[module(rename = "2")]
    out: Linear,
}

impl Forward for Mlp {
    /// `[N, 1, 28, 28]` images (or `[N, 784]` rows of pixels) to `[N, 10]` logits.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.out.forward(&self.hidden.forward(&x.flatten_from(1)))
    }
}

/// The classic Keras MNIST CNN: Conv(32, 3x3, relu), MaxPool(2), Conv(64, 3x3, relu),
/// MaxPool(2), Conv(64, 3x3, relu), Flatten, Dense(64, relu), Dense(10), on `[N, 1, 28, 28]`.
pub fn keras_cnn(dev: &Device) -> nn::Sequential {
    nn::Sequential::new()
        .add(Conv2d::new(1, 32, 3, dev))
        .add(nn::ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(32, 64, 3, dev))
        .add(nn::ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(64, 64, 3, dev))
        .add(nn::ReLU)
        .add(nn::Flatten::new())
        .add(Linear::new(64 * 3 * 3, 64, dev))
        .add(nn::ReLU)
        .add(Linear::new(64, 10, dev))
}

/// LSTM(28, 128) over the rows of `[N, 28, 28]` images, then a linear read-out of the
/// last step's hidden state.
#[derive(Module)]
pub struct RowLstm {
    lstm: LSTM,
    head: Linear,
}

impl RowLstm {
    pub fn new(dev: &Device) -> RowLstm {
        RowLstm {
            lstm: LSTM::with_options(28, 128, RnnOptions::new().batch_first(true), dev),
            head: Linear::new(128, 10, dev),
        }
    }
}

impl Forward for RowLstm {
    /// `[N, 1, 28, 28]` images (or `[N, 28, 28]`: batch, rows, pixels) to `[N, 10]` logits,
    /// each image read as 28 steps of one row.
    fn forward(&self, images: &Tensor) -> Tensor {
        let (_, (h_n, _)) = self.lstm.forward(&images.reshape(&[-1, 28, 28]));
        // h_n is [layers, N, hidden]: the last (only) layer's final state.
        self.head.forward(&h_n.squeeze(0))
    }
}
