//! Trains the textbook MLP (784-128-10, ReLU) on MNIST with Adam and cross-entropy.
//!
//! ```sh
//! cargo run --release --example mnist_mlp                      # built-in 10k MNIST
//! cargo run --release --example mnist_mlp -- --data ../shared/data/fashion-mnist --epochs 10
//! ```
//!
//! Flags (shared by every training example): `--device auto|gpu|software|cpu`,
//! `--data DIR` (any MNIST-format directory; default the built-in set), `--epochs N`,
//! `--batch-size N`, `--seed N`, `--save PATH` (safetensors). The last line printed is
//! `test accuracy: NN.NN%`.

mod common;

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgrad::data::{DataLoader, Dataset, InMemoryDataset, Mnist, Pixels};
use wgrad::metrics::{tensor_count_correct, ConfusionMatrix};
use wgrad::nn::{self, Module};
use wgrad::optim::scheduler::{CosineAnnealingLr, LrScheduler};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{loss, no_grad, Device};

const USAGE: &str = "usage: mnist_mlp [--device auto|gpu|software|cpu] [--data DIR] [--epochs N] \
[--batch-size N] [--seed N] [--save PATH] [--lr RATE]";

/// Correct predictions and mean loss of `model` over `data`, without recording a graph.
fn evaluate(
    model: &dyn Module,
    data: &InMemoryDataset,
    dev: &Device,
    confusion: Option<&mut ConfusionMatrix>,
) -> (usize, f64) {
    let mut loader = DataLoader::new(data, 1000);
    let mut confusion = confusion;
    let (mut correct, mut loss_sum, mut batches) = (0, 0.0, 0);
    no_grad(|| {
        for (images, labels) in loader.epoch(dev) {
            let logits = model.forward(&images.flatten_from(1));
            correct += tensor_count_correct(&logits, &labels);
            loss_sum += loss::cross_entropy(&logits, &labels).item() as f64;
            batches += 1;
            if let Some(cm) = confusion.as_deref_mut() {
                cm.update_from_logits(&logits, &labels);
            }
        }
    });
    (correct, loss_sum / batches.max(1) as f64)
}

fn main() {
    env_logger::init();
    let args = common::Args::parse(&["device", "data", "epochs", "batch-size", "seed", "save", "lr"], USAGE);
    let dev = common::open_device(args.get("device").unwrap_or("auto"));
    println!("device: {}", dev.info());
    let epochs: usize = common::parse_or(&args, "epochs", 20, USAGE);
    let batch_size: usize = common::parse_or(&args, "batch-size", 32, USAGE);
    let seed: u64 = common::parse_or(&args, "seed", 0, USAGE);
    let lr: f32 = common::parse_or(&args, "lr", 2e-3, USAGE);

    let data = match args.get("data") {
        Some(dir) => Mnist::load_with(dir, Pixels::mnist_standardized()),
        None => Mnist::builtin_with(Pixels::mnist_standardized()),
    }
    .unwrap_or_else(|e| common::fail(&format!("cannot load the data set: {e}")));
    println!(
        "data: {} ({} train, {} test images)",
        args.get("data").unwrap_or("built-in MNIST 10k"),
        data.train.len(),
        data.test.len()
    );

    wgrad::manual_seed(seed);
    let model =
        nn::Sequential::new().add(nn::Linear::new(784, 128, &dev)).add(nn::ReLU).add(nn::Linear::new(128, 10, &dev));
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let mut opt = Adam::new(model.parameters(), lr);
    // Cosine decay to zero over the run: the last epochs settle instead of bouncing.
    let mut schedule = CosineAnnealingLr::new(lr, epochs, 0.0);
    let mut loader = DataLoader::new(&data.train, batch_size).shuffle(seed);

    let started = Instant::now();
    for epoch in 1..=epochs {
        let bar = ProgressBar::new(loader.num_batches() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches, loss {msg} ({elapsed})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        let epoch_start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        let losses_per_read = 20;
        let mut pending = Vec::new();
        for (images, labels) in loader.epoch(&dev) {
            let logits = model.forward(&images.flatten_from(1));
            let loss = loss::cross_entropy(&logits, &labels);
            let grads = loss.backward();
            opt.step(&grads);
            seen += labels.numel();
            pending.push((loss.detach(), logits.detach(), labels));
            // Reading a value waits for the device: do it every few batches, not every one.
            if pending.len() == losses_per_read {
                for (l, lg, lb) in pending.drain(..) {
                    loss_sum += l.item() as f64;
                    correct += tensor_count_correct(&lg, &lb);
                }
                bar.set_message(format!("{:.4}", loss_sum / (seen as f64 / batch_size as f64)));
            }
            bar.inc(1);
        }
        for (l, lg, lb) in pending.drain(..) {
            loss_sum += l.item() as f64;
            correct += tensor_count_correct(&lg, &lb);
        }
        bar.finish_and_clear();
        schedule.step();
        opt.set_lr(schedule.lr());
        let train_loss = loss_sum / loader.num_batches() as f64;
        let (test_correct, test_loss) = evaluate(&model, &data.test, &dev, None);
        let secs = epoch_start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}/{epochs}: train loss {train_loss:.4}, train accuracy {:.2}%, test loss {test_loss:.4}, test accuracy {:.2}% ({secs:.1} s, {:.0} images/s)",
            100.0 * correct as f64 / seen as f64,
            100.0 * test_correct as f64 / data.test.len() as f64,
            seen as f64 / secs
        );
    }

    let mut confusion = ConfusionMatrix::new(10);
    let (test_correct, _) = evaluate(&model, &data.test, &dev, Some(&mut confusion));
    println!("trained {epochs} epochs in {:.1} s", started.elapsed().as_secs_f64());
    println!("confusion matrix (rows: true class, columns: predicted):\n{confusion}");
    if let Some(path) = args.get("save") {
        match wgrad::checkpoint::save(&model, path) {
            Ok(()) => println!("saved weights to {path}"),
            Err(e) => common::fail(&format!("cannot save the weights: {e}")),
        }
    }
    println!("test accuracy: {:.2}%", 100.0 * test_correct as f64 / data.test.len() as f64);
}
