//! Reads each MNIST image row by row, as a sequence of 28 steps of 28 pixels, with an LSTM
//! (hidden size 128) and classifies it from the last hidden state with a linear layer.
//! Adam, cross-entropy, gradients clipped to a global L2 norm of 1. Training images are
//! shifted by up to two pixels each way: without it the model fits the 8,000 built-in
//! training images exactly within a few epochs and test accuracy stalls near 97.5%.
//!
//! ```sh
//! cargo run --release --example mnist_lstm                     # built-in 10k MNIST
//! cargo run --release --example mnist_lstm -- --data ../shared/data/fashion-mnist
//! ```
//!
//! Flags (shared by every training example): `--device auto|gpu|software|cpu`,
//! `--data DIR` (any MNIST-format directory; default the built-in set), `--epochs N`,
//! `--batch-size N`, `--seed N`, `--lr RATE`, `--save PATH` (safetensors). The last line
//! printed is `test accuracy: NN.NN%`.

mod common;

use common::classifier::{self, Defaults, Recipe, Setup};
use wgrad::data::transforms::RandomShift;
use wgrad::nn::{Linear, Module, RnnOptions, LSTM};
use wgrad::{Device, Tensor};

/// LSTM over the rows, then a linear read-out of the last step's hidden state.
struct RowLstm {
    lstm: LSTM,
    head: Linear,
}

impl RowLstm {
    fn new(dev: &Device) -> RowLstm {
        RowLstm {
            lstm: LSTM::with_options(28, 128, RnnOptions::new().batch_first(true), dev),
            head: Linear::new(128, 10, dev),
        }
    }
}

impl Module for RowLstm {
    /// `[N, 28, 28]` (batch, rows, pixels) to `[N, 10]` logits.
    fn forward(&self, rows: &Tensor) -> Tensor {
        let (_, (h_n, _)) = self.lstm.forward(rows);
        // h_n is [layers, N, hidden]: the last (only) layer's final state.
        self.head.forward(&h_n.squeeze(0))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let prefixed = |prefix: &str, m: &dyn Module| {
            m.named_parameters().into_iter().map(|(n, t)| (format!("{prefix}.{n}"), t)).collect::<Vec<_>>()
        };
        let mut all = prefixed("lstm", &self.lstm);
        all.extend(prefixed("head", &self.head));
        all
    }

    fn set_training(&mut self, training: bool) {
        self.lstm.set_training(training);
    }

    fn is_training(&self) -> bool {
        self.lstm.is_training()
    }

    fn describe(&self) -> String {
        format!("RowLstm(\n  (lstm): {}\n  (head): {}\n)", self.lstm.describe(), self.head.describe())
    }
}

fn main() {
    env_logger::init();
    let setup = Setup::from_args("mnist_lstm", Defaults { epochs: 20, batch_size: 64, lr: 2e-3 });
    wgrad::manual_seed(setup.seed);
    let mut model = RowLstm::new(&setup.dev);
    let mut shift = RandomShift::new(2, 2).seed(setup.seed);
    let recipe = Recipe {
        // [N, 1, 28, 28] images as [N, 28, 28]: 28 steps of one row each.
        input: |images| images.reshape(&[-1, 28, 28]),
        augment: Some(&mut shift),
        clip_grad_norm: Some(1.0),
    };
    classifier::train(&mut model, &setup, recipe);
}
