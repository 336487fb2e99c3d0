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
use common::models::RowLstm;
use wgrad::data::transforms::RandomShift;
use wgrad::loss;
use wgrad::metrics::Accuracy;
use wgrad::nn::Module;
use wgrad::optim::scheduler::CosineAnnealingLr;
use wgrad::optim::Adam;
use wgrad::train::{Augmented, StepEvery, Trainer};

fn main() {
    env_logger::init();
    let run = Setup::from_args("mnist_lstm", Defaults { epochs: 20, batch_size: 64, lr: 2e-3 });
    wgrad::manual_seed(run.seed);
    let mut model = RowLstm::new(&run.dev);
    let (train, validation) = run.loaders();
    // Every training batch shifted by up to 2 pixels each way: digits are not all centred.
    let train = Augmented::new(train, RandomShift::new(2, 2).seed(run.seed));
    let trainer = Trainer::new(Adam::new(model.parameters(), run.lr), loss::cross_entropy)
        .metric(Accuracy::new())
        .clip_grad_norm(1.0)
        // Cosine decay to zero over the run: the last epochs settle instead of bouncing.
        .scheduler(CosineAnnealingLr::new(run.lr, run.epochs, 0.0), StepEvery::Epoch);
    run.fit(trainer, &mut model, &train, &validation);
    println!("test accuracy: {:.2}%", 100.0 * run.test(&mut model));
}
