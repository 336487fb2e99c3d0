//! Transfer learning, as the textbook's fine-tuning chapter does it: a Keras CNN trained on
//! MNIST digits (here, or loaded with `--from`) gets a new head, its convolutional layers
//! are frozen, and it is fine-tuned on Fashion-MNIST clothing with a lower learning rate
//! for the pretrained dense layer than for the new head. The same network trained from
//! scratch on the same images for the same number of epochs is the comparison.
//!
//! ```sh
//! cargo run --release --example fine_tune -- --data ../shared/data/fashion-mnist
//! cargo run --release --example mnist_cnn -- --save cnn.safetensors   # a better backbone
//! cargo run --release --example fine_tune -- --from cnn.safetensors --train-size 6000
//! ```
//!
//! Flags: `--device auto|gpu|software|cpu`, `--data DIR` (the Fashion-MNIST folder; default
//! `../shared/data/fashion-mnist`), `--from PATH` (a Keras CNN checkpoint, as `mnist_cnn
//! --save` writes; default: pretrain here on the built-in MNIST), `--pretrain-epochs N`
//! (3), `--epochs N` (fine-tuning and scratch epochs, 3), `--train-size N` (Fashion-MNIST
//! training images to use, from the start of the set; default all 60,000), `--batch-size
//! N` (64), `--seed N`, `--lr RATE` (the new head's and the scratch run's rate, 1e-3),
//! `--backbone-lr RATE` (the pretrained dense layer's rate; default a tenth of `--lr`),
//! `--save PATH` (the fine-tuned model),
//! `--allow-nonfinite-loss`. Every flag is checked before the device opens or the data
//! loads. The last line printed is the fine-tuned model's `test accuracy: NN.NN%`.

mod common;

use common::classifier::Setup;
use common::models;
use common::ranks::Ranks;
use common::training::TrainingFlags;
use wgrad::data::{Dataset, InMemoryDataset, Mnist, Pixels};
use wgrad::metrics::Accuracy;
use wgrad::nn::{Linear, Module, Sequential};
use wgrad::optim::scheduler::CosineAnnealingLr;
use wgrad::optim::{Adam, Optimizer, ParamGroup};
use wgrad::train::{StepEvery, Trainer};
use wgrad::{checkpoint, loss};

/// The Keras CNN's children (`models::keras_cnn`), by the position names its checkpoints use.
const CONVOLUTIONS: [&str; 3] = ["0", "3", "6"];
const DENSE: &str = "9";
const HEAD: &str = "11";

/// What the flags chose.
struct Flags {
    device: String,
    data: std::path::PathBuf,
    from: Option<std::path::PathBuf>,
    pretrain_epochs: usize,
    epochs: usize,
    train_size: Option<usize>,
    batch_size: usize,
    seed: u64,
    lr: f32,
    backbone_lr: f32,
    save: Option<std::path::PathBuf>,
    allow_nonfinite_loss: bool,
}

fn parse_flags() -> Flags {
    let allow = common::flags::ALLOW_NONFINITE_LOSS;
    let usage = format!(
        "usage: fine_tune [--device auto|gpu|software|cpu] [--data DIR] [--from PATH] [--pretrain-epochs N] \
         [--epochs N] [--train-size N] [--batch-size N] [--seed N] [--lr RATE] [--backbone-lr RATE] [--save PATH] [--{allow}]\n\n\
         defaults: --data ../shared/data/fashion-mnist, pretraining on the built-in MNIST for 3 epochs, 3 epochs \
         of fine-tuning and of training from scratch on all 60,000 images, batch 64, lr 1e-3 (a tenth of it for \
         the pretrained dense layer)"
    );
    let args = common::parse_args(
        &[
            "device",
            "data",
            "from",
            "pretrain-epochs",
            "epochs",
            "train-size",
            "batch-size",
            "seed",
            "lr",
            "backbone-lr",
            "save",
        ],
        &[allow],
        &usage,
    );
    let lr = common::usage_or(args.learning_rate("lr", 1e-3), &usage);
    let flags = Flags {
        device: common::usage_or(args.device(), &usage).to_string(),
        from: common::usage_or(args.existing_file("from"), &usage),
        pretrain_epochs: common::usage_or(args.count("pretrain-epochs", 3), &usage),
        epochs: common::usage_or(args.count("epochs", 3), &usage),
        train_size: args.get("train-size").map(|_| common::usage_or(args.count("train-size", 1), &usage)),
        batch_size: common::usage_or(args.count("batch-size", 64), &usage),
        seed: common::usage_or(args.seed("seed", 0), &usage),
        lr,
        backbone_lr: common::usage_or(args.learning_rate("backbone-lr", lr / 10.0), &usage),
        save: common::usage_or(args.output_file("save"), &usage),
        allow_nonfinite_loss: args.has(allow),
        data: std::path::PathBuf::new(),
    };
    // The default folder is checked last, so a bad flag is reported as such wherever it runs.
    let data =
        common::usage_or(args.existing_dir("data"), &usage).unwrap_or_else(|| "../shared/data/fashion-mnist".into());
    if !data.is_dir() {
        common::usage_or::<()>(
            Err(format!("the Fashion-MNIST folder {} does not exist; give it with --data DIR", data.display())),
            &usage,
        );
    }
    Flags { data, ..flags }
}

/// The first `n` samples of `data` (the sets are stored shuffled).
fn first(data: &InMemoryDataset, n: usize) -> InMemoryDataset {
    let n = n.min(data.len());
    let per_sample: usize = data.sample_shape().iter().product();
    InMemoryDataset::new(data.features()[..n * per_sample].to_vec(), data.sample_shape(), data.labels()[..n].to_vec())
}

/// Trains `model` with `optimizer`, cross-entropy and every group's rate decaying along
/// the cosine from its own initial rate, evaluating on the test set after every epoch;
/// returns the final test accuracy (a fraction).
fn train(model: &mut Sequential, setup: &Setup, optimizer: Adam) -> f64 {
    let (train, validation) = setup.loaders();
    let schedule = CosineAnnealingLr::new(optimizer.lr(), setup.epochs, 0.0);
    let trainer =
        Trainer::new(optimizer, loss::cross_entropy).metric(Accuracy::new()).scheduler(schedule, StepEvery::Epoch);
    setup.fit(trainer, model, &train, &validation);
    setup.test(model)
}

fn main() {
    env_logger::init();
    let flags = parse_flags();
    let dev = common::open_device(&flags.device);
    println!("device: {}", dev.info());
    let load = |dir: Option<&std::path::Path>| {
        match dir {
            Some(dir) => Mnist::load_with(dir, Pixels::mnist_standardized()),
            None => Mnist::builtin_with(Pixels::mnist_standardized()),
        }
        .unwrap_or_else(|e| common::fail(&format!("cannot load the data set: {e}")))
    };
    let mut fashion = load(Some(&flags.data));
    if let Some(n) = flags.train_size {
        fashion.train = first(&fashion.train, n);
    }
    println!("data: {} ({} train, {} test images)", flags.data.display(), fashion.train.len(), fashion.test.len());
    let setup = |data: Mnist, epochs: usize| Setup {
        dev: dev.clone(),
        data,
        epochs,
        batch_size: flags.batch_size,
        seed: flags.seed,
        lr: flags.lr,
        save: None,
        training: TrainingFlags { allow_nonfinite_loss: flags.allow_nonfinite_loss, ..TrainingFlags::default() },
        ranks: Ranks::single(),
    };

    // 1. The pretrained network: digits.
    wgrad::manual_seed(flags.seed);
    let mut model = models::keras_cnn(&dev);
    match &flags.from {
        Some(path) => {
            checkpoint::load(&model, path)
                .unwrap_or_else(|e| common::fail(&format!("cannot load the pretrained model: {e}")));
            println!("pretrained: loaded {}", path.display());
        }
        None => {
            println!("\n== pretraining on MNIST digits ({} epochs)", flags.pretrain_epochs);
            let digits = setup(load(None), flags.pretrain_epochs);
            let opt = Adam::new(model.parameters(), flags.lr);
            let accuracy = train(&mut model, &digits, opt);
            println!("pretrained: MNIST test accuracy {:.2}%", 100.0 * accuracy);
        }
    }

    // 2. From scratch on clothing: the comparison.
    println!("\n== training from scratch on Fashion-MNIST ({} epochs)", flags.epochs);
    wgrad::manual_seed(flags.seed + 1);
    let mut scratch = models::keras_cnn(&dev);
    let opt = Adam::new(scratch.parameters(), flags.lr);
    let scratch_accuracy = train(&mut scratch, &setup(fashion.clone(), flags.epochs), opt);

    // 3. Fine-tuning: a new head, the convolutions frozen, the dense layer at a tenth of the rate.
    println!("\n== fine-tuning on Fashion-MNIST ({} epochs)", flags.epochs);
    wgrad::manual_seed(flags.seed + 2);
    model.replace(HEAD, Linear::new(64, 10, &dev));
    for conv in CONVOLUTIONS {
        model.freeze_submodule(conv).expect("the Keras CNN has its convolutions at 0, 3 and 6");
    }
    let groups = [
        ParamGroup::with_prefix(&model, DENSE).expect("the Keras CNN's dense layer is child 9").lr(flags.backbone_lr),
        ParamGroup::with_prefix(&model, HEAD).expect("the head is child 11"),
    ];
    let opt = Adam::with_groups(groups, flags.lr);
    let fashion_setup = Setup { save: flags.save.clone(), ..setup(fashion, flags.epochs) };
    let fine_tuned_accuracy = train(&mut model, &fashion_setup, opt);

    println!(
        "\nFashion-MNIST test accuracy after {} epochs: from scratch {:.2}%, fine-tuned from digits {:.2}%",
        flags.epochs,
        100.0 * scratch_accuracy,
        100.0 * fine_tuned_accuracy
    );
    println!("test accuracy: {:.2}%", 100.0 * fine_tuned_accuracy);
}
