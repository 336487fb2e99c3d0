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
//! `--batch-size N`, `--seed N`, `--lr RATE`, `--save PATH` (safetensors),
//! `--allow-nonfinite-loss` (train on when the loss is NaN or infinite; by default the run
//! stops with status 1, naming the epoch and step). Every flag is checked before the
//! device opens or the data loads; a bad one exits with status 2. The last line printed
//! is `test accuracy: NN.NN%`.

mod common;

use common::classifier::{self, Defaults, Recipe, Setup};
use common::models::RowLstm;
use wgrad::data::transforms::RandomShift;

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
