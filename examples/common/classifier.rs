//! What every MNIST example shares around its model and its `Trainer`: the flags, the
//! data, the loaders (a validation split by flag), and the report at the end (the test
//! accuracy, the confusion matrix, the saved weights, the last line
//! `test accuracy: NN.NN%`).

use std::path::PathBuf;

use wgrad::data::{validation_split, DataLoader, Dataset, DistributedSampler, InMemoryDataset, Mnist, Pixels, Samples};
use wgrad::metrics::ConfusionMatrix;
use wgrad::nn::Forward;
use wgrad::train::{History, Loader, Trainer};
use wgrad::Device;

use super::ranks::{self, Ranks};
use super::training::{self, TrainingFlags};

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
    pub training: TrainingFlags,
    /// This process's place in a data-parallel run (`mpirun`, `--distributed`).
    pub ranks: Ranks,
}

impl Setup {
    /// Parses and checks every shared flag (exiting with the usage text and status 2 on a
    /// bad one), then opens the device and loads the data (exiting with status 1 when
    /// either fails), printing the device and data lines.
    pub fn from_args(example: &str, defaults: Defaults) -> Setup {
        let usage = format!(
            "usage: {example} [--device auto|gpu|software|cpu] [--data DIR] [--epochs N] [--batch-size N] \
             [--seed N] [--save PATH] [--lr RATE] [--distributed] {}\n\n\
             defaults: built-in MNIST, {} epochs, batch {}, lr {}, the test set evaluated after every epoch; a NaN \
             or infinite training loss stops the run (exit status 1) unless --allow-nonfinite-loss is given",
            training::USAGE,
            defaults.epochs,
            defaults.batch_size,
            defaults.lr
        );
        let with_value =
            [&["device", "data", "epochs", "batch-size", "seed", "save", "lr"][..], &training::WITH_VALUE].concat();
        let switches = [&training::SWITCHES[..], &[ranks::DISTRIBUTED]].concat();
        let args = super::parse_args(&with_value, &switches, &usage);
        // Every flag is checked before the device opens or the data loads.
        let device = super::usage_or(args.device(), &usage);
        let data_dir = super::usage_or(args.existing_dir("data"), &usage);
        let epochs = super::usage_or(args.count("epochs", defaults.epochs), &usage);
        let batch_size = super::usage_or(args.count("batch-size", defaults.batch_size), &usage);
        let seed = super::usage_or(args.seed("seed", 0), &usage);
        let lr = super::usage_or(args.learning_rate("lr", defaults.lr), &usage);
        let save = super::usage_or(args.output_file("save"), &usage);
        let mut training = super::usage_or(TrainingFlags::from_args(&args), &usage);
        let ranks = super::usage_or(Ranks::join(args.has(ranks::DISTRIBUTED)), &usage);
        // In a data-parallel run rank 0 reports; every rank names its device.
        training.silent = !ranks.is_root();
        training.processes = ranks.size();

        let dev = ranks.open_device(device);
        println!("device{}: {}", ranks.tag(), dev.info());
        let data = match &data_dir {
            Some(dir) => Mnist::load_with(dir, Pixels::mnist_standardized()),
            None => Mnist::builtin_with(Pixels::mnist_standardized()),
        }
        .unwrap_or_else(|e| super::fail(&format!("cannot load the data set: {e}")));
        if ranks.is_parallel() && ranks.is_root() {
            println!(
                "data-parallel: {} processes, batch {batch_size} each ({} per step), gradients averaged over MPI",
                ranks.size(),
                ranks.size() * batch_size
            );
        }
        if ranks.is_root() {
            println!(
                "data: {} ({} train, {} test images)",
                args.get("data").unwrap_or("built-in MNIST 10k"),
                data.train.len(),
                data.test.len()
            );
        }
        Setup { dev, data, epochs, batch_size, seed, lr, save, training, ranks }
    }

    /// The training loader (shuffled by `--seed`; in a data-parallel run, this process's
    /// share of each epoch) and the validation loader: a held-out part of the training set
    /// with `--validation-split`, else the test set (whole on every process).
    pub fn loaders(&self) -> (Box<dyn Loader + '_>, Box<dyn Loader + '_>) {
        let (train, test) = (&self.data.train, &self.data.test);
        match self.training.validation_split {
            Some(fraction) => {
                let (train, validation) = validation_split(train, fraction, self.seed)
                    .unwrap_or_else(|e| super::fail(&format!("--validation-split: {e}")));
                if self.ranks.is_root() {
                    println!("validation: {} of the training images, held out", validation.len());
                }
                (
                    Box::new(shard(DataLoader::new(train, self.batch_size).shuffle(self.seed), self.ranks.sampler())),
                    Box::new(DataLoader::new(validation, 1000)),
                )
            }
            None => (
                Box::new(shard(DataLoader::new(train, self.batch_size).shuffle(self.seed), self.ranks.sampler())),
                Box::new(DataLoader::new(test, 1000)),
            ),
        }
    }

    /// Prints the model, then trains it with `trainer` as the flags say (see
    /// [`TrainingFlags::fit`]).
    pub fn fit(
        &self,
        trainer: Trainer,
        model: &mut dyn Forward,
        train: &dyn Loader,
        validation: &dyn Loader,
    ) -> History {
        if self.ranks.is_root() {
            println!(
                "model: {} ({} parameters, {} trainable)",
                model.describe(),
                model.num_parameters(),
                model.num_trainable_parameters()
            );
        }
        let trainer = self.ranks.data_parallel(trainer.seed(self.seed), &*model);
        self.training.fit(trainer, model, train, validation, self.epochs, &self.dev)
    }

    /// Evaluates `model` on the test set, prints its confusion matrix, saves the weights
    /// when `--save` asks, and returns the test accuracy (a fraction).
    pub fn test(&self, model: &mut dyn Forward) -> f64 {
        let confusion = test_confusion(model, &self.data.test, &self.dev);
        if !self.ranks.is_root() {
            // The weights are the same on every rank: rank 0 reports and saves them.
            return confusion.accuracy();
        }
        println!("confusion matrix (rows: true class, columns: predicted):\n{confusion}");
        training::plot_confusion(&self.training, &confusion);
        if let Some(path) = &self.save {
            // With the run's reproducibility receipt: seed, device, matmul choices, hashes.
            let receipt = wgrad::receipt::Receipt::new(&*model, &self.dev, Some(self.seed));
            match wgrad::checkpoint::save_with_receipt(model, path, &receipt) {
                Ok(()) => println!("saved weights to {}", path.display()),
                Err(e) => super::fail(&format!("cannot save the weights: {e}")),
            }
        }
        wgrad::profile::print_report(); // the per-kernel table on stderr when WGRAD_PROFILE is set
        confusion.accuracy()
    }
}

/// `loader` serving only `sampler`'s share of each epoch, when there is one.
fn shard<D: Samples>(loader: DataLoader<D>, sampler: Option<DistributedSampler>) -> DataLoader<D> {
    match sampler {
        Some(sampler) => loader.sampler(sampler),
        None => loader,
    }
}

/// The confusion matrix of `model` on `data`, from its predictions in batches of 1000.
fn test_confusion(model: &mut dyn Forward, data: &InMemoryDataset, dev: &Device) -> ConfusionMatrix {
    let logits = Trainer::predict(model, &DataLoader::new(data, 1000), dev)
        .unwrap_or_else(|e| super::fail(&format!("cannot evaluate on the test set: {e}")));
    let labels = wgrad::Tensor::from_slice(data.labels(), &[data.len()], dev);
    let mut confusion = ConfusionMatrix::new(10);
    confusion.update_from_logits(&logits, &labels);
    confusion
}
