//! Sentiment classification of short reviews with the textbook recurrent model: token ids
//! -> embedding (64, `<pad>` fixed at zero) -> two-layer bidirectional LSTM (hidden 64,
//! dropout 0.3 between the layers) run on each review's true length -> the last layer's
//! final forward and backward hidden states, concatenated -> linear -> one logit.
//! Binary cross-entropy on the logit, Adam, gradients clipped to a global L2 norm of 1.
//!
//! The default data (`data/sentiment`, made by `scripts/make_sentiment_csv.py`) is
//! synthetic and built so that word order matters: negations ("not bad"), and "but" /
//! "although" / "even though" clauses where one clause decides. A bag-of-words model stays
//! near 63% on its test set; this one learns the rules. With the defaults (8 epochs,
//! batch 32, learning rate 3e-3) it reached 99.6% to 100% test accuracy for seeds 0 to 9,
//! in about 16 s each on two CPU cores (`--device cpu`, release build).
//!
//! ```sh
//! cargo run --release --example text_classifier
//! cargo run --release --example text_classifier -- --train my/train.csv --test my/test.csv --epochs 10
//! ```
//!
//! Flags: `--device auto|gpu|software|cpu`, `--train PATH` and `--test PATH` (CSV with a
//! header `text,label`, labels 0 or 1), `--epochs N`, `--batch-size N`, `--seed N`,
//! `--lr RATE`, `--save PATH` (the weights as safetensors, and the vocabulary, one token a
//! line, beside them as `PATH` with the extension `vocab.txt`), `--allow-nonfinite-loss`
//! (train on when the loss is NaN or infinite; by default the run stops with status 1,
//! naming the epoch and step). Every flag is checked before the device opens or the data
//! loads; a bad one exits with status 2. The last line printed is `test accuracy: NN.NN%`.

mod common;

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use wgrad::data::text::{TextBatch, TextDataset, TextLoader, Vocab, VocabOptions};
use wgrad::loss::{self, Reduction};
use wgrad::nn::{Embedding, Forward, Linear, Module, RnnOptions, LSTM};
use wgrad::optim::clip::clip_grad_norm;
use wgrad::optim::{Adam, Optimizer};
use wgrad::{no_grad, Device, Tensor};

use common::flags::{nonfinite_loss, ALLOW_NONFINITE_LOSS};

const EMBEDDING_DIM: usize = 64;
const HIDDEN_SIZE: usize = 64;
const LAYERS: usize = 2;
const DROPOUT: f32 = 0.3;
const MAX_GRAD_NORM: f32 = 1.0;

/// Embedding, bidirectional LSTM stack, linear read-out of the final states. Its forward
/// pass takes the token ids and each text's length, so it is a `Module` with a forward
/// method of its own rather than a one-input `Forward`.
#[derive(Module)]
struct SentimentLstm {
    embedding: Embedding,
    lstm: LSTM,
    head: Linear,
}

impl SentimentLstm {
    fn new(vocab_size: usize, dev: &Device) -> SentimentLstm {
        let options = RnnOptions::new().num_layers(LAYERS).bidirectional(true).dropout(DROPOUT).batch_first(true);
        SentimentLstm {
            embedding: Embedding::new(vocab_size, EMBEDDING_DIM, dev).padding_idx(Some(Vocab::PAD as isize)),
            lstm: LSTM::with_options(EMBEDDING_DIM, HIDDEN_SIZE, options, dev),
            head: Linear::new(2 * HIDDEN_SIZE, 1, dev),
        }
    }

    /// Token ids `[B, T]` whose row `b` is `lengths[b]` tokens long, to logits `[B]`.
    fn forward(&self, tokens: &Tensor, lengths: &[usize]) -> Tensor {
        let embedded = self.embedding.forward(tokens);
        let (_, (h_n, _)) = self.lstm.forward_with_lengths(&embedded, lengths, None);
        // h_n is [layers * 2, B, H], layer-major: the last two rows are the last layer's
        // forward state (after each text's last token) and backward state (after its first).
        let states = h_n.dim(0);
        let last = |i| h_n.narrow(0, i, 1).squeeze(0);
        let features = Tensor::cat(&[last(states - 2), last(states - 1)], 1);
        self.head.forward(&features).reshape(&[-1])
    }
}

/// Mean loss and the number of correct predictions (logit > 0 means positive) of one
/// batch, read back from the device.
fn batch_metrics(loss: &Tensor, logits: &Tensor, labels: &Tensor) -> (f64, usize) {
    let logits: Vec<f32> = logits.to_vec();
    let labels: Vec<f32> = labels.to_vec();
    let correct = logits.iter().zip(&labels).filter(|&(&z, &y)| (z > 0.0) == (y > 0.5)).count();
    (loss.item() as f64, correct)
}

/// Mean loss and accuracy of `model` over every batch of `loader`, without a graph.
fn evaluate(model: &SentimentLstm, loader: &TextLoader, dev: &Device) -> (f64, f64) {
    let (mut loss_sum, mut correct) = (0.0, 0);
    no_grad(|| {
        for TextBatch { tokens, lengths, labels } in loader.batches(0, dev) {
            let logits = model.forward(&tokens, &lengths);
            let loss = loss::binary_cross_entropy_with_logits(&logits, &labels, None, Reduction::Sum);
            let (l, c) = batch_metrics(&loss, &logits, &labels);
            loss_sum += l;
            correct += c;
        }
    });
    (loss_sum / loader.len() as f64, correct as f64 / loader.len() as f64)
}

fn read_data(path: &Path, what: &str) -> TextDataset {
    TextDataset::read_csv(path).unwrap_or_else(|e| common::fail(&format!("cannot read the {what} data: {e}")))
}

fn main() {
    env_logger::init();
    let sentiment = Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("sentiment");
    let (default_epochs, default_batch, default_lr) = (8usize, 32usize, 3e-3f32);
    let usage = format!(
        "usage: text_classifier [--device auto|gpu|software|cpu] [--train PATH] [--test PATH] [--epochs N] \
         [--batch-size N] [--seed N] [--lr RATE] [--save PATH] [--{ALLOW_NONFINITE_LOSS}]\n\n\
         defaults: data/sentiment/train.csv and test.csv, {default_epochs} epochs, batch {default_batch}, \
         lr {default_lr}, seed 0; a NaN or infinite training loss stops the run (exit status 1) unless \
         --{ALLOW_NONFINITE_LOSS} is given"
    );
    let args = common::parse_args(
        &["device", "train", "test", "epochs", "batch-size", "seed", "lr", "save"],
        &[ALLOW_NONFINITE_LOSS],
        &usage,
    );
    // Every flag is checked before the device opens or the data loads.
    let device = common::usage_or(args.device(), &usage);
    let train_path =
        common::usage_or(args.existing_file("train"), &usage).unwrap_or_else(|| sentiment.join("train.csv"));
    let test_path = common::usage_or(args.existing_file("test"), &usage).unwrap_or_else(|| sentiment.join("test.csv"));
    let epochs = common::usage_or(args.count("epochs", default_epochs), &usage);
    let batch_size = common::usage_or(args.count("batch-size", default_batch), &usage);
    let seed = common::usage_or(args.seed("seed", 0), &usage);
    let lr = common::usage_or(args.learning_rate("lr", default_lr), &usage);
    let save = common::usage_or(args.output_file("save"), &usage);
    let vocab_path = save.as_ref().map(|path| path.with_extension("vocab.txt"));
    if let Some(vocab_path) = &vocab_path {
        common::usage_or(
            common::flags::check_writable(vocab_path)
                .map_err(|reason| format!("--save: the vocabulary file {}: {reason}", vocab_path.display())),
            &usage,
        );
    }
    let allow_nonfinite_loss = args.has(ALLOW_NONFINITE_LOSS);

    let dev = common::open_device(device);
    println!("device: {}", dev.info());

    let (train, test) = (read_data(&train_path, "training"), read_data(&test_path, "test"));
    let vocab = Vocab::build(train.texts(), VocabOptions::new());
    println!(
        "data: {} training texts ({:.1}% positive) from {}, {} test texts from {}; vocabulary of {} tokens",
        train.len(),
        100.0 * train.count_positive() as f64 / train.len() as f64,
        train_path.display(),
        test.len(),
        test_path.display(),
        vocab.len()
    );

    wgrad::manual_seed(seed);
    let mut model = SentimentLstm::new(vocab.len(), &dev);
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let params = model.parameters();
    let mut opt = Adam::new(params.clone(), lr);
    let mut loader = TextLoader::new(&train, &vocab, batch_size).shuffle(seed);
    let test_loader = TextLoader::new(&test, &vocab, 256);

    let started = Instant::now();
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
        let (mut loss_sum, mut correct, mut read) = (0.0f64, 0usize, 0usize);
        // Reading a value waits for the device: do it every few batches, not every one.
        let reads_every = 10;
        let steps = loader.num_batches();
        let mut pending = Vec::new();
        // Reads the pending batches (which waits for the device) and stops the run at the
        // first loss that is NaN or infinite, naming its epoch and step.
        let mut read_pending = |pending: &mut Vec<(usize, Tensor, Tensor, Tensor)>| {
            for (step, l, z, y) in pending.drain(..) {
                let (batch_loss, batch_correct) = batch_metrics(&l, &z, &y);
                let mean = batch_loss / y.numel() as f64;
                if let Some(message) = nonfinite_loss(mean, epoch, epochs, step, steps) {
                    if !allow_nonfinite_loss {
                        bar.abandon();
                        common::fail(&message);
                    }
                }
                loss_sum += batch_loss;
                correct += batch_correct;
                read += y.numel();
            }
            loss_sum / read.max(1) as f64
        };
        for (step, TextBatch { tokens, lengths, labels }) in (1..).zip(loader.epoch(&dev)) {
            let logits = model.forward(&tokens, &lengths);
            let loss = loss::binary_cross_entropy_with_logits(&logits, &labels, None, Reduction::Mean);
            let mut grads = loss.backward();
            clip_grad_norm(&mut grads, &params, MAX_GRAD_NORM, 2.0);
            opt.step(&grads);
            pending.push((step, loss.detach().mul_scalar(lengths.len() as f32), logits.detach(), labels));
            if pending.len() == reads_every {
                let mean = read_pending(&mut pending);
                bar.set_message(format!("{mean:.4}"));
            }
            bar.inc(1);
        }
        read_pending(&mut pending);
        bar.finish_and_clear();
        model.set_training(false);
        let (test_loss, test_accuracy) = evaluate(&model, &test_loader, &dev);
        println!(
            "epoch {epoch}/{epochs}: train loss {:.4}, train accuracy {:.2}%, test loss {test_loss:.4}, \
             test accuracy {:.2}% ({:.1} s)",
            loss_sum / read as f64,
            100.0 * correct as f64 / read as f64,
            100.0 * test_accuracy,
            epoch_start.elapsed().as_secs_f64()
        );
    }

    model.set_training(false);
    let (_, test_accuracy) = evaluate(&model, &test_loader, &dev);
    println!("trained {epochs} epochs in {:.1} s (evaluation included)", started.elapsed().as_secs_f64());
    if let (Some(path), Some(vocab_path)) = (&save, &vocab_path) {
        if let Err(e) = wgrad::checkpoint::save(&model, path).and_then(|()| vocab.write(vocab_path)) {
            common::fail(&format!("cannot save the model: {e}"));
        }
        println!("saved weights to {} and the vocabulary to {}", path.display(), vocab_path.display());
    }
    println!("test accuracy: {:.2}%", 100.0 * test_accuracy);
}
