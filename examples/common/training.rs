//! The flags every training example gives its `wgrad::train::Trainer`, and the run of
//! `fit` that turns its errors into messages and exit statuses.
//!
//! `--validation-split F` holds out a seeded random fraction of the training set for
//! validation (otherwise the test set is evaluated after every epoch, as Keras'
//! `validation_data`); `--early-stopping N` stops after N epochs without a lower
//! validation loss and restores the best epoch's weights; `--checkpoint-dir DIR` writes a
//! resumable checkpoint there after every epoch (and on Ctrl-C), which `--resume`
//! continues from; `--plot DIR` draws the run's history (and the examples' confusion
//! matrices) there as SVG and PNG, in a build with the `plot` feature;
//! `--allow-nonfinite-loss` trains on when the loss is NaN or infinite.

use std::path::PathBuf;
use std::time::Instant;

use wgrad::nn::Forward;
use wgrad::train::{EarlyStopping, History, Loader, Trainer};
use wgrad::{Device, Error};

use super::flags::ALLOW_NONFINITE_LOSS;
use super::Args;

/// Draws `confusion` under `--plot DIR` as `confusion_matrix.svg` and `.png`, if asked.
pub fn plot_confusion(flags: &TrainingFlags, confusion: &wgrad::metrics::ConfusionMatrix) {
    #[cfg(feature = "plot")]
    if let Some(dir) = &flags.plot {
        match wgrad::train::plot::plot_confusion_matrix(confusion, dir.join("confusion_matrix"), None) {
            Ok(files) => println!("confusion matrix chart: {}", files[0].display()),
            Err(e) => super::fail(&format!("cannot draw the confusion matrix: {e}")),
        }
    }
    #[cfg(not(feature = "plot"))]
    let _ = (flags, confusion);
}

/// The flags of [`TrainingFlags`] that take a value, and the switches.
pub const WITH_VALUE: [&str; 4] = ["validation-split", "early-stopping", "checkpoint-dir", "plot"];
pub const SWITCHES: [&str; 2] = [ALLOW_NONFINITE_LOSS, "resume"];

/// The usage text of these flags.
pub const USAGE: &str = "[--validation-split F] [--early-stopping PATIENCE] [--checkpoint-dir DIR] [--resume] \
                         [--plot DIR] [--allow-nonfinite-loss]";

/// What the trainer-related flags chose.
#[derive(Clone, Debug, Default)]
pub struct TrainingFlags {
    /// The fraction of the training set held out for validation.
    pub validation_split: Option<f64>,
    /// Epochs without a lower validation loss before training stops.
    pub early_stopping: Option<usize>,
    pub checkpoint_dir: Option<PathBuf>,
    pub resume: bool,
    /// Where to draw the pictures of the run.
    pub plot: Option<PathBuf>,
    pub allow_nonfinite_loss: bool,
    /// Prints nothing (a data-parallel process other than rank 0); the trainer itself
    /// prints on rank 0 only.
    pub silent: bool,
    /// The processes of a data-parallel run (0 or 1: one), each training on its share.
    pub processes: usize,
}

impl TrainingFlags {
    /// Reads and checks the flags (`Err` says which is wrong).
    pub fn from_args(args: &Args) -> Result<TrainingFlags, String> {
        let flags = TrainingFlags {
            validation_split: args.fraction("validation-split")?,
            early_stopping: args.optional_count("early-stopping")?,
            checkpoint_dir: args.output_dir("checkpoint-dir")?,
            resume: args.has("resume"),
            plot: match args.get("plot") {
                Some(_) if !cfg!(feature = "plot") => {
                    return Err("--plot draws with the plot feature: build the example with --features plot".into())
                }
                _ => args.output_dir("plot")?,
            },
            allow_nonfinite_loss: args.has(ALLOW_NONFINITE_LOSS),
            silent: false,
            processes: 1,
        };
        if flags.resume && flags.checkpoint_dir.is_none() {
            return Err("--resume continues from --checkpoint-dir DIR: give that too".into());
        }
        if flags.resume && !flags.checkpoint_dir.as_ref().is_some_and(|d| d.join("progress").exists()) {
            let dir = flags.checkpoint_dir.as_ref().expect("checked above").display();
            return Err(format!("--resume: {dir} holds no training checkpoint"));
        }
        Ok(flags)
    }

    /// `trainer` with what the flags ask for.
    pub fn configure(&self, mut trainer: Trainer) -> Trainer {
        if let Some(patience) = self.early_stopping {
            trainer = trainer.callback(EarlyStopping::new("val_loss").patience(patience).restore_best_weights(true));
        }
        if let Some(dir) = &self.checkpoint_dir {
            trainer = trainer.checkpoint_dir(dir);
            if self.resume {
                trainer = trainer.resume_from(dir);
            }
        }
        trainer.allow_nonfinite_loss(self.allow_nonfinite_loss)
    }

    /// Trains `model` with `trainer` (configured by the flags) for `epochs` epochs, then
    /// prints the run's time and throughput. A training error ends the process: a NaN or
    /// infinite loss with status 1 and a hint, Ctrl-C with status 130 and how to resume,
    /// anything else with status 1.
    pub fn fit<I>(
        &self,
        trainer: Trainer,
        model: &mut dyn Forward<I>,
        train: &dyn Loader<I>,
        validation: &dyn Loader<I>,
        epochs: usize,
        dev: &Device,
    ) -> History {
        let mut trainer = self.configure(trainer);
        // The epochs a resumed run has behind it, for this run's throughput.
        let done_before = match (&self.checkpoint_dir, self.resume) {
            (Some(dir), true) => std::fs::read_to_string(dir.join("history.csv"))
                .ok()
                .and_then(|csv| History::from_csv(&csv).ok())
                .map_or(0, |h| h.epochs()),
            _ => 0,
        };
        let started = Instant::now();
        let history = match trainer.fit(model, train, Some(validation), epochs, dev) {
            Ok(history) => history,
            Err(e @ Error::NonFiniteLoss { .. }) => {
                super::fail(&format!("{e}; or pass --{ALLOW_NONFINITE_LOSS} to train on regardless"))
            }
            Err(Error::Interrupted(message)) => {
                eprintln!("{message} (with these flags, add --resume)");
                std::process::exit(130);
            }
            Err(e) => super::fail(&format!("training failed: {e}")),
        };
        let secs = started.elapsed().as_secs_f64();
        if self.silent {
            return history;
        }
        #[cfg(feature = "plot")]
        if let Some(dir) = &self.plot {
            match wgrad::train::plot::plot_history(&history, dir.join("history")) {
                Ok(files) => println!("history chart: {}", files[0].display()),
                Err(e) => super::fail(&format!("cannot draw the history: {e}")),
            }
        }
        let trained = history.epochs().saturating_sub(done_before);
        println!(
            "trained {trained} epochs in {secs:.1} s ({:.0} training samples/s, evaluation included)",
            (train.num_samples() * self.processes.max(1) * trained) as f64 / secs
        );
        history
    }
}
