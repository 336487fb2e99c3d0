//! Trains the classic Keras MNIST CNN with Adam and cross-entropy:
//! Conv(32, 3x3, relu), MaxPool(2), Conv(64, 3x3, relu), MaxPool(2), Conv(64, 3x3, relu),
//! Flatten, Dense(64, relu), Dense(10).
//!
//! ```sh
//! cargo run --release --example mnist_cnn                      # built-in 10k MNIST
//! cargo run --release --example mnist_cnn -- --data ../shared/data/fashion-mnist
//! ```
//!
//! Training images are shifted by up to two pixels in each direction (zero fill), a new
//! draw per image and epoch: with 8,000 training images the network otherwise starts to
//! memorise them. The test images are never augmented.
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
use common::models;
use wgrad::data::transforms::RandomShift;

fn main() {
    env_logger::init();
    let setup = Setup::from_args("mnist_cnn", Defaults { epochs: 15, batch_size: 64, lr: 1e-3 });
    wgrad::manual_seed(setup.seed);
    let mut model = models::keras_cnn(&setup.dev);
    let mut shift = RandomShift::new(2, 2).seed(setup.seed);
    let recipe = Recipe { input: |images| images.clone(), augment: Some(&mut shift), clip_grad_norm: None };
    classifier::train(&mut model, &setup, recipe);
}
