//! The training run every MNIST example shares: flags, data, the epoch loop with a
//! progress bar and per-epoch metrics, the confusion matrix, saving, and the last line
//! `test accuracy: NN.NN%`. An example supplies only its model and how images enter it.

use std::path::PathBuf;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgrad::data::transforms::Transform;
use wgrad::data::{DataLoader, Dataset, InMemoryDataset, Mnist, Pixels};
use wgrad::metrics::{tensor_count_correct, ConfusionMatrix};
use wgrad::nn::Forward;
use wgrad::optim::clip::clip_grad_norm;
use wgrad::optim::scheduler::{CosineAnnealingLr, LrScheduler};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{loss, no_grad, Device, Tensor};

use super::flags::{nonfinite_loss, ALLOW_NONFINITE_LOSS};

/// Flags every training example accepts, with each example's own defaults.
pub struct Defaults {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f32,
}

/// What the flags chose: the device, the data and the hyper-parameters.
pub struct Setup {
    pub dev: Device,
    pub data: Mnist,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub lr: f32,
    pub save: Option<PathBuf>,
    /// Train on when the loss is NaN or infinite, instead of stopping the run.
    pub allow_nonfinite_loss: bool,
}

impl Setup {
    /// Parses and checks every shared flag (exiting with the usage text and status 2 on a
    /// bad one), then opens the device and loads the data (exiting with status 1 when
    /// either fails), printing the device and data lines.
    pub fn from_args(example: &str, defaults: Defaults) -> Setup {
        let usage = format!(
            "usage: {example} [--device auto|gpu|software|cpu] [--data DIR] [--epochs N] [--batch-size N] \
             [--seed N] [--save PATH] [--lr RATE] [--{ALLOW_NONFINITE_LOSS}]\n\n\
             defaults: built-in MNIST, {} epochs, batch {}, lr {}; a NaN or infinite training loss stops the \
             run (exit status 1) unless --{ALLOW_NONFINITE_LOSS} is given",
            defaults.epochs, defaults.batch_size, defaults.lr
        );
        let args = super::parse_args(
            &["device", "data", "epochs", "batch-size", "seed", "save", "lr"],
            &[ALLOW_NONFINITE_LOSS],
            &usage,
        );
        // Every flag is checked before the device opens or the data loads.
        let device = super::usage_or(args.device(), &usage);
        let data_dir = super::usage_or(args.existing_dir("data"), &usage);
        let epochs = super::usage_or(args.count("epochs", defaults.epochs), &usage);
        let batch_size = super::usage_or(args.count("batch-size", defaults.batch_size), &usage);
        let seed = super::usage_or(args.seed("seed", 0), &usage);
        let lr = super::usage_or(args.learning_rate("lr", defaults.lr), &usage);
        let save = super::usage_or(args.output_file("save"), &usage);

        let dev = super::open_device(device);
        println!("device: {}", dev.info());
        let data = match &data_dir {
            Some(dir) => Mnist::load_with(dir, Pixels::mnist_standardized()),
            None => Mnist::builtin_with(Pixels::mnist_standardized()),
        }
        .unwrap_or_else(|e| super::fail(&format!("cannot load the data set: {e}")));
        println!(
            "data: {} ({} train, {} test images)",
            args.get("data").unwrap_or("built-in MNIST 10k"),
            data.train.len(),
            data.test.len()
        );
        Setup { dev, data, epochs, batch_size, seed, lr, save, allow_nonfinite_loss: args.has(ALLOW_NONFINITE_LOSS) }
    }
}

/// How a batch of `[N, 1, 28, 28]` images becomes the model's input, and what else the
/// training step does.
pub struct Recipe<'a> {
    /// Reshapes the image batch for the model (flatten for an MLP, rows as steps for an RNN).
    pub input: fn(&Tensor) -> Tensor,
    /// Applied to every training batch before `input` (never to the test set).
    pub augment: Option<&'a mut dyn Transform>,
    /// Rescales the gradients to at most this global L2 norm before each step.
    pub clip_grad_norm: Option<f32>,
}

/// Correct predictions and mean loss of `model` over `data`, without recording a graph.
fn evaluate(
    model: &dyn Forward,
    input: fn(&Tensor) -> Tensor,
    data: &InMemoryDataset,
    dev: &Device,
    mut confusion: Option<&mut ConfusionMatrix>,
) -> (usize, f64) {
    let mut loader = DataLoader::new(data, 1000);
    let (mut correct, mut loss_sum, mut batches) = (0, 0.0, 0);
    no_grad(|| {
        for (images, labels) in loader.epoch(dev) {
            let logits = model.forward(&input(&images));
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

/// Trains `model` with Adam, cross-entropy and a cosine-decayed learning rate, printing
/// one line per epoch, then the confusion matrix, the run's throughput and the last line
/// `test accuracy: NN.NN%`.
pub fn train(model: &mut dyn Forward, setup: &Setup, recipe: Recipe) {
    let mut opt = Adam::new(model.parameters(), setup.lr);
    let accuracy = train_with(model, setup, recipe, &mut opt);
    println!("test accuracy: {:.2}%", 100.0 * accuracy);
    wgrad::profile::print_report(); // the per-kernel table on stderr when WGRAD_PROFILE is set
}

/// [`train`] with a given optimizer (parameter groups, frozen layers), whose every group's
/// rate decays along the cosine from its own initial rate. Prints all but the last line
/// and returns the final test accuracy (a fraction).
pub fn train_with(model: &mut dyn Forward, setup: &Setup, mut recipe: Recipe, opt: &mut dyn Optimizer) -> f64 {
    let Setup { dev, data, epochs, batch_size, seed, .. } = setup;
    let (epochs, batch_size) = (*epochs, *batch_size);
    println!(
        "model: {} ({} parameters, {} trainable)",
        model.describe(),
        model.num_parameters(),
        model.num_trainable_parameters()
    );
    let params = model.parameters();
    // Cosine decay to zero over the run: the last epochs settle instead of bouncing.
    let mut schedule = CosineAnnealingLr::new(opt.lr(), epochs, 0.0);
    let mut loader = DataLoader::new(&data.train, batch_size).shuffle(*seed);

    let started = Instant::now();
    let mut train_images = 0usize;
    for epoch in 1..=epochs {
        model.set_training(true);
        let bar = ProgressBar::new(loader.num_batches() as u64);
        bar.set_style(
            ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} batches, loss {msg} ({elapsed})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{epoch}/{epochs}"));
        let epoch_start = Instant::now();
        let (mut loss_sum, mut correct, mut seen, mut read) = (0.0f64, 0usize, 0usize, 0usize);
        let losses_per_read = 20;
        let steps = loader.num_batches();
        let mut pending = Vec::new();
        // Reads the pending losses (which waits for the device) and stops the run at the
        // first that is NaN or infinite, naming its epoch and step.
        let mut read_pending = |pending: &mut Vec<(usize, Tensor, Tensor, Tensor)>| {
            for (step, l, lg, lb) in pending.drain(..) {
                let batch_loss = l.item() as f64;
                if let Some(message) = nonfinite_loss(batch_loss, epoch, epochs, step, steps) {
                    if !setup.allow_nonfinite_loss {
                        bar.abandon();
                        super::fail(&message);
                    }
                }
                loss_sum += batch_loss;
                correct += tensor_count_correct(&lg, &lb);
                read += 1;
            }
            loss_sum / read.max(1) as f64
        };
        for (step, (images, labels)) in (1..).zip(loader.epoch(dev)) {
            let images = match recipe.augment.as_deref_mut() {
                Some(t) => t.apply(&images),
                None => images,
            };
            let logits = model.forward(&(recipe.input)(&images));
            let loss = loss::cross_entropy(&logits, &labels);
            let mut grads = loss.backward();
            if let Some(max_norm) = recipe.clip_grad_norm {
                clip_grad_norm(&mut grads, &params, max_norm, 2.0);
            }
            opt.step(&grads);
            seen += labels.numel();
            pending.push((step, loss.detach(), logits.detach(), labels));
            // Reading a value waits for the device: do it every few batches, not every one.
            if pending.len() == losses_per_read {
                let mean = read_pending(&mut pending);
                bar.set_message(format!("{mean:.4}"));
            }
            bar.inc(1);
        }
        read_pending(&mut pending);
        bar.finish_and_clear();
        let train_secs = epoch_start.elapsed().as_secs_f64();
        train_images += seen;
        schedule.step();
        schedule.apply(opt);
        model.set_training(false);
        let (test_correct, test_loss) = evaluate(model, recipe.input, &data.test, dev, None);
        println!(
            "epoch {epoch}/{epochs}: train loss {:.4}, train accuracy {:.2}%, test loss {test_loss:.4}, \
             test accuracy {:.2}% ({:.1} s, {:.0} images/s)",
            loss_sum / loader.num_batches() as f64,
            100.0 * correct as f64 / seen as f64,
            100.0 * test_correct as f64 / data.test.len() as f64,
            epoch_start.elapsed().as_secs_f64(),
            seen as f64 / train_secs
        );
    }

    model.set_training(false);
    let mut confusion = ConfusionMatrix::new(10);
    let (test_correct, _) = evaluate(model, recipe.input, &data.test, dev, Some(&mut confusion));
    let secs = started.elapsed().as_secs_f64();
    println!(
        "trained {epochs} epochs in {secs:.1} s ({:.0} training images/s, evaluation included)",
        train_images as f64 / secs
    );
    println!("confusion matrix (rows: true class, columns: predicted):\n{confusion}");
    if let Some(path) = &setup.save {
        match wgrad::checkpoint::save(model, path) {
            Ok(()) => println!("saved weights to {}", path.display()),
            Err(e) => super::fail(&format!("cannot save the weights: {e}")),
        }
    }
    test_correct as f64 / data.test.len() as f64
}
