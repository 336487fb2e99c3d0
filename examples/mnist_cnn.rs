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
//! Flags (shared by every MNIST example): `--device auto|gpu|software|cpu`, `--data DIR`
//! (any MNIST-format directory; default the built-in set), `--epochs N`, `--batch-size N`,
//! `--seed N`, `--lr RATE`, `--save PATH` (safetensors), `--validation-split F` (hold out
//! a seeded random fraction of the training set for the per-epoch validation; by default
//! the test set is evaluated after every epoch), `--early-stopping PATIENCE` (stop after
//! that many epochs without a lower validation loss, keeping the best epoch's weights),
//! `--checkpoint-dir DIR` (a resumable checkpoint after every epoch and on Ctrl-C) with
//! `--resume` (continue from it), `--plot DIR` (the history and the confusion matrix as
//! SVG and PNG; build with `--features plot`), `--allow-nonfinite-loss` (train on when the
//! loss is NaN or infinite; by default the run stops with status 1, naming the epoch and
//! step). Every flag is checked before the device opens or the data loads; a bad one
//! exits with status 2. The last line printed is `test accuracy: NN.NN%`.

mod common;

use common::classifier::{Defaults, Setup};
use common::models;
use wgrad::data::transforms::RandomShift;
use wgrad::loss;
use wgrad::metrics::Accuracy;
use wgrad::nn::Module;
use wgrad::optim::scheduler::CosineAnnealingLr;
use wgrad::optim::Adam;
use wgrad::train::{Augmented, StepEvery, Trainer};

fn main() {
    env_logger::init();
    let run = Setup::from_args("mnist_cnn", Defaults { epochs: 15, batch_size: 64, lr: 1e-3 });
    wgrad::manual_seed(run.seed);
    let mut model = models::keras_cnn(&run.dev);
    let (train, validation) = run.loaders();
    // Every training batch shifted by up to 2 pixels each way: digits are not all centred.
    let train = Augmented::new(train, RandomShift::new(2, 2).seed(run.seed));
    let trainer = Trainer::new(Adam::new(model.parameters(), run.lr), loss::cross_entropy)
        .metric(Accuracy::new())
        // Cosine decay to zero over the run: the last epochs settle instead of bouncing.
        .scheduler(CosineAnnealingLr::new(run.lr, run.epochs, 0.0), StepEvery::Epoch);
    run.fit(trainer, &mut model, &train, &validation);
    println!("test accuracy: {:.2}%", 100.0 * run.test(&mut model));
}
