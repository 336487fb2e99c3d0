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
//! in about 6 s each on two CPU cores (`--device cpu`, release build).
//!
//! ```sh
//! cargo run --release --example text_classifier
//! cargo run --release --example text_classifier -- --train my/train.csv --test my/test.csv --epochs 10
//! ```
//!
//! Flags: `--device auto|gpu|software|cpu`, `--train PATH` and `--test PATH` (CSV with a
//! header `text,label`, labels 0 or 1), `--epochs N`, `--batch-size N`, `--seed N`,
//! `--lr RATE`, `--save PATH` (the weights as safetensors, and the vocabulary, one token a
//! line, beside them as `PATH` with the extension `vocab.txt`), and the training flags of
//! the MNIST examples: `--validation-split F` (validate on a held-out part of the training
//! texts instead of the test set), `--early-stopping PATIENCE`, `--checkpoint-dir DIR`
//! with `--resume`, `--plot DIR` (with `--features plot`), `--allow-nonfinite-loss` (train on when the loss is NaN or infinite;
//! by default the run stops with status 1, naming the epoch and step). Every flag is
//! checked before the device opens or the data loads; a bad one exits with status 2. The
//! last line printed is `test accuracy: NN.NN%`.

mod common;

use std::path::Path;

use common::training::{self, TrainingFlags};
use wgrad::data::text::{TextDataset, TextLoader, Vocab, VocabOptions};
use wgrad::loss::{self, Reduction};
use wgrad::metrics::{BinaryAccuracy, ConfusionMatrix};
use wgrad::nn::{Embedding, Forward, Linear, Module, RnnOptions, LSTM};
use wgrad::optim::Adam;
use wgrad::train::Trainer;
use wgrad::{Device, Tensor};

const EMBEDDING_DIM: usize = 64;
const HIDDEN_SIZE: usize = 64;
const LAYERS: usize = 2;
const DROPOUT: f32 = 0.3;
const MAX_GRAD_NORM: f32 = 1.0;

/// Embedding, bidirectional LSTM stack, linear read-out of the final states. Its input is
/// the token ids with each text's length, as a `TextLoader` serves them.
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
}

impl Forward<(Tensor, Vec<usize>)> for SentimentLstm {
    /// Token ids `[B, T]` whose row `b` is `lengths[b]` tokens long, to logits `[B]`.
    fn forward(&self, (tokens, lengths): &(Tensor, Vec<usize>)) -> Tensor {
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

fn read_data(path: &Path, what: &str) -> TextDataset {
    TextDataset::read_csv(path).unwrap_or_else(|e| common::fail(&format!("cannot read the {what} data: {e}")))
}

fn main() {
    env_logger::init();
    let sentiment = Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("sentiment");
    let (default_epochs, default_batch, default_lr) = (8usize, 32usize, 3e-3f32);
    let usage = format!(
        "usage: text_classifier [--device auto|gpu|software|cpu] [--train PATH] [--test PATH] [--epochs N] \
         [--batch-size N] [--seed N] [--lr RATE] [--save PATH] {}\n\n\
         defaults: data/sentiment/train.csv and test.csv, {default_epochs} epochs, batch {default_batch}, \
         lr {default_lr}, seed 0, the test set evaluated after every epoch; a NaN or infinite training loss stops \
         the run (exit status 1) unless --allow-nonfinite-loss is given",
        training::USAGE
    );
    let with_value =
        [&["device", "train", "test", "epochs", "batch-size", "seed", "lr", "save"][..], &training::WITH_VALUE]
            .concat();
    let args = common::parse_args(&with_value, &training::SWITCHES, &usage);
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
    let flags = common::usage_or(TrainingFlags::from_args(&args), &usage);

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
    let (train, validation) = match flags.validation_split {
        Some(fraction) => {
            let (train, held_out) = train
                .validation_split(fraction, seed)
                .unwrap_or_else(|e| common::fail(&format!("--validation-split: {e}")));
            println!("validation: {} of the training texts, held out", held_out.len());
            (train, held_out)
        }
        None => (train, test.clone()),
    };

    wgrad::manual_seed(seed);
    let mut model = SentimentLstm::new(vocab.len(), &dev);
    println!("model: {} ({} parameters)", model.describe(), model.num_parameters());
    let train_loader = TextLoader::new(&train, &vocab, batch_size).shuffle(seed);
    let bce = |logits: &Tensor, labels: &Tensor| {
        loss::binary_cross_entropy_with_logits(logits, labels, None, Reduction::Mean)
    };
    let trainer = Trainer::new(Adam::new(model.parameters(), lr), bce)
        .metric(BinaryAccuracy::from_logits())
        .clip_grad_norm(MAX_GRAD_NORM)
        .refresh_every(10);
    let validation_loader = TextLoader::new(&validation, &vocab, 256);
    flags.fit(trainer, &mut model, &train_loader, &validation_loader, epochs, &dev);

    // The test texts in file order: a positive logit predicts label 1.
    let logits: Vec<f32> = Trainer::predict(&mut model, &TextLoader::new(&test, &vocab, 256), &dev)
        .unwrap_or_else(|e| common::fail(&format!("cannot evaluate on the test set: {e}")))
        .to_vec();
    let predicted: Vec<i32> = logits.iter().map(|&z| (z > 0.0) as i32).collect();
    let labels: Vec<i32> = test.labels().map(|y| (y > 0.5) as i32).collect();
    let mut confusion = ConfusionMatrix::with_class_names(&["negative", "positive"]);
    confusion.update(&predicted, &labels);
    println!("confusion matrix (rows: true class, columns: predicted):\n{confusion}");
    training::plot_confusion(&flags, &confusion);
    if let (Some(path), Some(vocab_path)) = (&save, &vocab_path) {
        if let Err(e) = wgrad::checkpoint::save(&model, path).and_then(|()| vocab.write(vocab_path)) {
            common::fail(&format!("cannot save the model: {e}"));
        }
        println!("saved weights to {} and the vocabulary to {}", path.display(), vocab_path.display());
    }
    println!("test accuracy: {:.2}%", 100.0 * confusion.accuracy());
}
