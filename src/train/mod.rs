//! A training loop in the library, as Keras' `fit` and PyTorch Lightning's `Trainer`:
//! [`Trainer::fit`] trains a model for some epochs over a [`Loader`], with an optional
//! validation loader, metrics ([`crate::metrics::Metric`]), a learning-rate schedule,
//! gradient clipping and accumulation, and [`Callback`]s (early stopping, checkpoints, a
//! CSV history, learning-rate logging, reduce-on-plateau), and returns the [`History`] of
//! every value per epoch. [`Trainer::evaluate`] and [`Trainer::predict`] run a loader
//! without recording a graph.
//!
//! On a GPU an epoch never waits for the device except to report: the loss of each batch
//! is added to a running sum on the device, and metrics keep their sums there too; both
//! are read once per progress refresh (every [`Trainer::refresh_every`] batches) and at
//! the end of the epoch.
//!
//! ```
//! use wgrad::metrics::Accuracy;
//! use wgrad::nn::{self, Module};
//! use wgrad::optim::Adam;
//! use wgrad::train::{EarlyStopping, Trainer};
//! use wgrad::data::{DataLoader, InMemoryDataset};
//! use wgrad::{loss, Device};
//!
//! let dev = Device::cpu();
//! // Two separable blobs: x > 0 is class 1.
//! let xs: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 8.0).collect();
//! let labels: Vec<i32> = xs.iter().map(|&x| (x > 0.0) as i32).collect();
//! let data = InMemoryDataset::new(xs, &[1], labels);
//! let (train, val) = (DataLoader::new(&data, 16).shuffle(0), DataLoader::new(&data, 64));
//!
//! let mut model = nn::Sequential::new().add(nn::Linear::new(1, 2, &dev));
//! let mut trainer = Trainer::new(Adam::new(model.parameters(), 0.1), loss::cross_entropy)
//!     .metric(Accuracy::new())
//!     .callback(EarlyStopping::new("val_loss").patience(3))
//!     .quiet(true);
//! let history = trainer.fit(&mut model, &train, Some(&val), 20, &dev)?;
//! assert!(history.last("val_accuracy").unwrap() > 0.9);
//! # Ok::<(), wgrad::Error>(())
//! ```

mod callbacks;
mod data_parallel;
#[cfg(feature = "plot")]
pub mod plot;
mod resume;

pub use callbacks::{
    Callback, CallbackState, CsvLogger, EarlyStopping, JsonLogger, LrLogger, ModelCheckpoint, Monitor,
    ReduceLrOnPlateau,
};
pub use data_parallel::DataParallel;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Instant;

use resume::Progress;

use crate::amp::GradScaler;
use crate::autograd::{no_grad, Gradients};
use crate::data::text::TextLoader;
use crate::data::transforms::Transform;
use crate::data::{DataLoader, Samples};
use crate::metrics::{MeanLoss, Metric};
use crate::nn::{Forward, Module};
use crate::optim::clip::clip_grad_norm;
use crate::optim::scheduler::LrScheduler;
use crate::optim::Optimizer;
use crate::{Device, Error, Result, Tensor};

/// What a trainer reads batches from: `(inputs, targets)` on a device, an epoch at a time,
/// the order of an epoch fixed by its number (so a resumed run sees the batches an
/// uninterrupted one would have). The inputs are a tensor (`Loader`, what a
/// [`DataLoader`] serves) or whatever the model's [`Forward<I>`] takes: a [`TextLoader`]
/// serves token ids with each text's length, `(Tensor, Vec<usize>)`. The targets are one
/// tensor, whose first dimension counts the samples.
pub trait Loader<I = Tensor> {
    /// Batches per epoch.
    fn num_batches(&self) -> usize;
    /// Samples per epoch (the progress bar's rate and ETA count them).
    fn num_samples(&self) -> usize;
    /// The batches of epoch `epoch`, on `device`. A resumed run skips the first batches
    /// with `Iterator::nth`: an iterator that implements it without building the skipped
    /// batches (as the library's loaders do) makes resuming cost nothing.
    fn batches_of_epoch<'a>(&'a self, epoch: u64, device: &Device) -> Box<dyn Iterator<Item = (I, Tensor)> + 'a>;
}

impl<D: Samples> Loader for DataLoader<D> {
    fn num_batches(&self) -> usize {
        DataLoader::num_batches(self)
    }
    fn num_samples(&self) -> usize {
        DataLoader::num_samples(self)
    }
    fn batches_of_epoch<'a>(&'a self, epoch: u64, device: &Device) -> Box<dyn Iterator<Item = (Tensor, Tensor)> + 'a> {
        Box::new(self.batches(epoch, device))
    }
}

/// Token ids `[B, T]` with each text's length: the input of a model trained on a
/// [`TextLoader`] (`Forward<(Tensor, Vec<usize>)>`); the targets are the labels `[B]`.
impl Loader<(Tensor, Vec<usize>)> for TextLoader {
    fn num_batches(&self) -> usize {
        TextLoader::num_batches(self)
    }
    fn num_samples(&self) -> usize {
        TextLoader::num_samples(self)
    }
    fn batches_of_epoch<'a>(
        &'a self,
        epoch: u64,
        device: &Device,
    ) -> Box<dyn Iterator<Item = ((Tensor, Vec<usize>), Tensor)> + 'a> {
        let split = |b: crate::data::text::TextBatch| ((b.tokens, b.lengths), b.labels);
        Box::new(MapBatches { batches: self.batches(epoch, device), f: split })
    }
}

/// `Iterator::map` that keeps the inner iterator's `nth`, so skipped batches stay
/// unbuilt (std's `Map` skips by building each one).
struct MapBatches<B, F> {
    batches: B,
    f: F,
}

impl<B: Iterator, T, F: FnMut(B::Item) -> T> Iterator for MapBatches<B, F> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.batches.next().map(&mut self.f)
    }

    fn nth(&mut self, n: usize) -> Option<T> {
        self.batches.nth(n).map(&mut self.f)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.batches.size_hint()
    }
}

/// A loader of augmented batches: `loader`'s batches with `transform` applied to the
/// inputs, as torchvision's training-set transforms (keep the validation loader plain).
/// Batch `b` of epoch `e` is the transform's call `e * num_batches + b`
/// ([`Transform::set_calls`]), so the augmentations depend only on where a batch falls,
/// and a resumed run sees the ones the uninterrupted run would have.
///
/// ```
/// use wgrad::data::transforms::RandomShift;
/// use wgrad::data::{DataLoader, InMemoryDataset};
/// use wgrad::train::{Augmented, Loader};
/// let data = InMemoryDataset::new(vec![0.5; 4 * 28 * 28], &[1, 28, 28], vec![0, 1, 2, 3]);
/// let train = Augmented::new(DataLoader::new(&data, 2).shuffle(0), RandomShift::new(2, 2).seed(0));
/// assert_eq!(train.num_batches(), 2);
/// ```
pub struct Augmented<L, T> {
    loader: L,
    transform: RefCell<T>,
}

impl<L: Loader, T: Transform> Augmented<L, T> {
    pub fn new(loader: L, transform: T) -> Augmented<L, T> {
        Augmented { loader, transform: RefCell::new(transform) }
    }
}

impl<L: Loader, T: Transform> Loader for Augmented<L, T> {
    fn num_batches(&self) -> usize {
        self.loader.num_batches()
    }
    fn num_samples(&self) -> usize {
        self.loader.num_samples()
    }
    fn batches_of_epoch<'a>(&'a self, epoch: u64, device: &Device) -> Box<dyn Iterator<Item = (Tensor, Tensor)> + 'a> {
        Box::new(AugmentedBatches {
            batches: self.loader.batches_of_epoch(epoch, device),
            transform: &self.transform,
            next_call: epoch * self.loader.num_batches() as u64,
        })
    }
}

/// The batches of one epoch of an [`Augmented`] loader.
struct AugmentedBatches<'a, T> {
    batches: Box<dyn Iterator<Item = (Tensor, Tensor)> + 'a>,
    transform: &'a RefCell<T>,
    /// The transform's call number of the next batch.
    next_call: u64,
}

impl<T: Transform> Iterator for AugmentedBatches<'_, T> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<(Tensor, Tensor)> {
        self.nth(0)
    }

    /// Skips `n` batches without transforming them, and as the inner loader allows
    /// without gathering them (a resumed run starts this way).
    fn nth(&mut self, n: usize) -> Option<(Tensor, Tensor)> {
        let (inputs, targets) = self.batches.nth(n)?;
        let mut transform = self.transform.borrow_mut();
        transform.set_calls(self.next_call + n as u64);
        self.next_call += n as u64 + 1;
        Some((transform.apply(&inputs), targets))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.batches.size_hint()
    }
}

impl<I, L: Loader<I> + ?Sized> Loader<I> for Box<L> {
    fn num_batches(&self) -> usize {
        (**self).num_batches()
    }
    fn num_samples(&self) -> usize {
        (**self).num_samples()
    }
    fn batches_of_epoch<'a>(&'a self, epoch: u64, device: &Device) -> Box<dyn Iterator<Item = (I, Tensor)> + 'a> {
        (**self).batches_of_epoch(epoch, device)
    }
}

impl<I, L: Loader<I> + ?Sized> Loader<I> for &L {
    fn num_batches(&self) -> usize {
        (**self).num_batches()
    }
    fn num_samples(&self) -> usize {
        (**self).num_samples()
    }
    fn batches_of_epoch<'a>(&'a self, epoch: u64, device: &Device) -> Box<dyn Iterator<Item = (I, Tensor)> + 'a> {
        (**self).batches_of_epoch(epoch, device)
    }
}

/// The values of one epoch by name: `loss` and each metric on the training data,
/// `val_loss` and `val_<metric>` on the validation data, `lr`, and whatever callbacks add.
pub type Logs = BTreeMap<String, f64>;

/// Every value of every epoch, by name, as Keras' `History.history`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    values: BTreeMap<String, Vec<f64>>,
    epochs: usize,
}

impl History {
    /// The values of `name`, one per epoch (an epoch that did not log it is NaN).
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.values.get(name).map(Vec::as_slice)
    }

    /// The value of `name` in the last epoch.
    pub fn last(&self, name: &str) -> Option<f64> {
        self.get(name).and_then(|v| v.last().copied())
    }

    /// The names logged, in alphabetical order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Epochs recorded.
    pub fn epochs(&self) -> usize {
        self.epochs
    }

    /// Appends one epoch's logs.
    pub fn push(&mut self, logs: &Logs) {
        for (name, &value) in logs {
            let column = self.values.entry(name.clone()).or_insert_with(|| vec![f64::NAN; self.epochs]);
            column.push(value);
        }
        self.epochs += 1;
        for column in self.values.values_mut() {
            column.resize(self.epochs, f64::NAN);
        }
    }

    /// The history as CSV: a header `epoch,<names...>` and one row per epoch (epochs
    /// counted from 1), each value as Rust's shortest round-trip decimal.
    pub fn to_csv(&self) -> String {
        let mut out = String::from("epoch");
        for name in self.values.keys() {
            out.push(',');
            out.push_str(name);
        }
        out.push('\n');
        for epoch in 0..self.epochs {
            out.push_str(&(epoch + 1).to_string());
            for column in self.values.values() {
                out.push(',');
                out.push_str(&column[epoch].to_string());
            }
            out.push('\n');
        }
        out
    }

    /// The history as JSON, as Keras' `history.history` dumps: an object with `"epochs"`
    /// and, per name, the list of its values (`null` for NaN and infinities, which JSON
    /// cannot hold).
    ///
    /// ```
    /// use wgrad::train::{History, Logs};
    /// let mut h = History::default();
    /// h.push(&Logs::from([("loss".to_string(), 0.5), ("val_loss".to_string(), f64::NAN)]));
    /// assert_eq!(h.to_json(), r#"{"epochs": 1, "loss": [0.5], "val_loss": [null]}"#);
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = format!("{{\"epochs\": {}", self.epochs);
        for (name, values) in &self.values {
            let values: Vec<String> =
                values.iter().map(|v| if v.is_finite() { format!("{v:?}") } else { "null".into() }).collect();
            let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
            out.push_str(&format!(", \"{escaped}\": [{}]", values.join(", ")));
        }
        out.push('}');
        out
    }

    /// Reads what [`History::to_csv`] wrote. A malformed text is an `Err` naming the line.
    pub fn from_csv(text: &str) -> std::result::Result<History, String> {
        let mut lines = text.lines();
        let header = lines.next().ok_or("the history is empty (no header line)")?;
        let mut names = header.split(',');
        if names.next() != Some("epoch") {
            return Err(format!("the header '{header}' does not start with 'epoch'"));
        }
        let names: Vec<String> = names.map(str::to_string).collect();
        let mut history = History::default();
        for (i, line) in lines.enumerate() {
            let fields: Vec<&str> = line.split(',').collect();
            if fields.len() != names.len() + 1 || fields[0] != (i + 1).to_string() {
                return Err(format!("line {} ('{line}') is not epoch {} with {} values", i + 2, i + 1, names.len()));
            }
            let mut logs = Logs::new();
            for (name, field) in names.iter().zip(&fields[1..]) {
                let value: f64 = field.parse().map_err(|_| format!("line {}: '{field}' is not a number", i + 2))?;
                logs.insert(name.clone(), value);
            }
            history.push(&logs);
        }
        Ok(history)
    }
}

/// Set by Ctrl-C (once a trainer with a checkpoint folder has installed its handler) or by
/// [`interrupt`]; a running `fit` finishes its batch, writes its checkpoint and returns.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks a running [`Trainer::fit`] (with a checkpoint folder) to stop after its current
/// batch and write a resumable checkpoint, as Ctrl-C does. Safe to call from any thread.
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes Ctrl-C to [`interrupt`], once per process. A second Ctrl-C, while the first is
/// being handled, ends the process at once.
fn install_ctrl_c_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let installed = ctrlc::set_handler(|| {
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing the current batch, then writing a resumable checkpoint");
        });
        if let Err(e) = installed {
            log::warn!("Trainer: Ctrl-C will stop the process without a checkpoint: {e}");
        }
    });
}

/// When a [`Trainer`]'s scheduler steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepEvery {
    Epoch,
    Batch,
}

/// What a callback sees: the model, the optimizer, where training is, the history so far,
/// and a flag that stops training at the end of the epoch.
pub struct Context<'a> {
    pub model: &'a dyn Module,
    pub optimizer: &'a mut dyn Optimizer,
    /// The epoch running or just finished, counting from 0.
    pub epoch: usize,
    /// Epochs `fit` was asked for.
    pub epochs: usize,
    /// Optimizer steps taken since `fit` began.
    pub step: u64,
    pub history: &'a History,
    /// Set to stop after the current epoch (Keras' `model.stop_training`).
    pub stop: bool,
    /// The seed given to [`Trainer::seed`], for the receipts of checkpoints.
    pub seed: Option<u64>,
}

/// A loss of `(outputs, targets)`: a scalar.
type Loss = Box<dyn Fn(&Tensor, &Tensor) -> Tensor>;

/// Trains models: an optimizer, a loss, and what goes around the steps.
pub struct Trainer {
    optimizer: Box<dyn Optimizer>,
    loss: Loss,
    scheduler: Option<(Box<dyn LrScheduler>, StepEvery)>,
    metrics: Vec<Box<dyn Metric>>,
    callbacks: Vec<Box<dyn Callback>>,
    clip_grad_norm: Option<f32>,
    grad_scaler: Option<GradScaler>,
    accumulate: usize,
    refresh_every: usize,
    quiet: bool,
    allow_nonfinite_loss: bool,
    step: u64,
    scheduler_steps: u64,
    checkpoint_dir: Option<PathBuf>,
    resume_from: Option<PathBuf>,
    /// The other processes of a data-parallel run, if any (see [`Trainer::data_parallel`]).
    data_parallel: Option<Box<dyn DataParallel>>,
    /// See [`Trainer::seed`].
    seed: Option<u64>,
}

impl Trainer {
    /// A trainer stepping `optimizer` (built over the model's parameters) on
    /// `loss(outputs, targets)`, a scalar (any of `wgrad::loss`' functions with the mean
    /// reduction).
    pub fn new(optimizer: impl Optimizer + 'static, loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'static) -> Trainer {
        Trainer {
            optimizer: Box::new(optimizer),
            loss: Box::new(loss),
            scheduler: None,
            metrics: Vec::new(),
            callbacks: Vec::new(),
            clip_grad_norm: None,
            grad_scaler: None,
            accumulate: 1,
            refresh_every: 20,
            quiet: false,
            allow_nonfinite_loss: false,
            step: 0,
            scheduler_steps: 0,
            checkpoint_dir: None,
            resume_from: None,
            data_parallel: None,
            seed: None,
        }
    }

    /// The seed the program started the run from (what it gave its initialisers, loaders
    /// and augmentations), recorded in the reproducibility receipt of every model file the
    /// trainer's checkpoints and [`ModelCheckpoint`] write (see [`crate::receipt`]); the
    /// receipt has no seed without it.
    pub fn seed(mut self, seed: u64) -> Trainer {
        self.seed = Some(seed);
        self
    }

    /// Trains as one process of a data-parallel run: gradients averaged across the
    /// processes every step, the epoch's loss and metrics averaged so every process logs
    /// the same values, the batch counts checked at each epoch, and the progress bar,
    /// epoch lines and resumable checkpoint on rank 0 only (see [`DataParallel`];
    /// `wgrad::distributed::DistributedDataParallel` with the `mpi` feature). Give each
    /// process's training loader its share of the data
    /// ([`crate::data::DataLoader::sampler`]).
    pub fn data_parallel(mut self, data_parallel: impl DataParallel + 'static) -> Trainer {
        self.data_parallel = Some(Box::new(data_parallel));
        self
    }

    /// Whether this process reports (prints, draws, writes checkpoints): always, unless
    /// it is a data-parallel process other than rank 0.
    fn is_root(&self) -> bool {
        self.data_parallel.as_ref().is_none_or(|dp| dp.rank() == 0)
    }

    /// Replaces each value of `logs` except the learning rate by its mean over the
    /// data-parallel processes, each weighted by its `samples`.
    fn average_logs(&mut self, logs: &mut Logs, samples: usize) {
        let Some(dp) = &mut self.data_parallel else { return };
        let names: Vec<String> = logs.keys().filter(|n| !n.starts_with("lr")).cloned().collect();
        let mut sums: Vec<f64> = names.iter().map(|n| logs[n] * samples as f64).collect();
        sums.push(samples as f64);
        dp.sum(&mut sums);
        let total = sums.pop().expect("the sample count was pushed");
        for (name, sum) in names.into_iter().zip(sums) {
            logs.insert(name, sum / total);
        }
    }

    /// A metric computed on the training data (`name`) and the validation data
    /// (`val_name`) every epoch.
    pub fn metric(mut self, metric: impl Metric + 'static) -> Trainer {
        self.metrics.push(Box::new(metric));
        self
    }

    pub fn callback(mut self, callback: impl Callback + 'static) -> Trainer {
        self.callbacks.push(Box::new(callback));
        self
    }

    /// A schedule whose rate is applied to every parameter group
    /// ([`LrScheduler::apply`]) before the first step and after each epoch or batch.
    pub fn scheduler(mut self, scheduler: impl LrScheduler + 'static, every: StepEvery) -> Trainer {
        self.scheduler = Some((Box::new(scheduler), every));
        self
    }

    /// Rescales the gradients to at most this global L2 norm before each step.
    pub fn clip_grad_norm(mut self, max_norm: f32) -> Trainer {
        assert!(max_norm > 0.0, "Trainer: clip_grad_norm must be positive, got {max_norm}");
        self.clip_grad_norm = Some(max_norm);
        self
    }

    /// Mixed-precision training ([`crate::amp`]): each loss is multiplied by `scaler`'s
    /// scale before backward, the gradients are divided by it before clipping and the
    /// step, a step whose gradients overflowed is skipped, and the scale adapts, as
    /// PyTorch's `GradScaler` in a training loop. Which products run in `f16` is the
    /// model's choice ([`crate::amp::AutocastLinear`] layers). The overflow check reads
    /// one value back per step. The scale is saved in the training checkpoint.
    pub fn mixed_precision(mut self, scaler: GradScaler) -> Trainer {
        self.grad_scaler = Some(scaler);
        self
    }

    /// The loss scaler of [`Trainer::mixed_precision`], to read its scale.
    pub fn grad_scaler(&self) -> Option<&GradScaler> {
        self.grad_scaler.as_ref()
    }

    /// Sums the gradients of `batches` consecutive batches (each loss divided by
    /// `batches`) before each optimizer step, for an effective batch `batches` times
    /// larger; a last incomplete group of an epoch still steps.
    pub fn accumulate(mut self, batches: usize) -> Trainer {
        assert!(batches >= 1, "Trainer: accumulate must be at least 1");
        self.accumulate = batches;
        self
    }

    /// How often (in batches) the running loss is read back to refresh the progress bar:
    /// the only times an epoch waits for the device.
    pub fn refresh_every(mut self, batches: usize) -> Trainer {
        assert!(batches >= 1, "Trainer: refresh_every must be at least 1");
        self.refresh_every = batches;
        self
    }

    /// Trains on when the running loss becomes NaN or infinite. By default `fit` stops with
    /// an [`Error::NonFiniteLoss`] naming the epoch and the batch by which it happened
    /// (checked where the loss is read anyway: each progress refresh and each epoch's end).
    pub fn allow_nonfinite_loss(mut self, allow: bool) -> Trainer {
        self.allow_nonfinite_loss = allow;
        self
    }

    /// No progress bar and no epoch lines (for logs and tests).
    pub fn quiet(mut self, quiet: bool) -> Trainer {
        self.quiet = quiet;
        self
    }

    /// Writes a resumable training checkpoint to the folder `dir` after every epoch, and
    /// makes Ctrl-C (or [`interrupt`]) finish the current batch, write one, and return an
    /// [`Error::Interrupted`] that says how to resume. See [`Trainer::resume_from`].
    pub fn checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Trainer {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Makes the next `fit` continue the run whose checkpoint is in `dir`: the model's
    /// parameters and buffers and its random streams (dropout's masks), the optimizer's
    /// state and rates, the scheduler's position, the loss scale of
    /// [`Trainer::mixed_precision`], each callback's state ([`Callback::state`]: early
    /// stopping's best value and patience count, a plateau schedule's counters), the
    /// history, and the epoch and batch to continue from. Given the same model,
    /// optimizer, schedule, callbacks, loaders and epochs, the resumed run reaches the
    /// weights the uninterrupted one would have, bit for bit on the CPU. When the run
    /// stopped inside an epoch, that epoch's training loss and metrics cover the batches
    /// after the resume point. A checkpoint of another model or optimizer, callbacks that
    /// differ from the checkpoint's, or a truncated file, is an error and the run does not
    /// start.
    pub fn resume_from(mut self, dir: impl Into<PathBuf>) -> Trainer {
        self.resume_from = Some(dir.into());
        self
    }

    /// The optimizer, to read its rates or save its state.
    pub fn optimizer(&self) -> &dyn Optimizer {
        &*self.optimizer
    }

    /// Trains `model` for `epochs` epochs of `train`, evaluating on `validation` after
    /// each, and returns every epoch's values. Callbacks may stop it early. An empty
    /// loader, and a callback that monitors a value no metric produces, are errors, as are
    /// a callback's failures (a checkpoint that cannot be written).
    pub fn fit<I>(
        &mut self,
        model: &mut dyn Forward<I>,
        train: &dyn Loader<I>,
        validation: Option<&dyn Loader<I>>,
        epochs: usize,
        device: &Device,
    ) -> Result<History> {
        if train.num_batches() == 0 {
            return Err(Error::Training("fit: the training loader has no batches".into()));
        }
        if validation.is_some_and(|v| v.num_batches() == 0) {
            return Err(Error::Training("fit: the validation loader has no batches".into()));
        }
        let params = model.parameters();
        crate::shadow::register(&*model as &dyn Module);
        let mut callbacks = std::mem::take(&mut self.callbacks);
        let resumed = match self.resume_from.take() {
            Some(dir) => {
                match resume::load(&dir, &*model as &dyn Module, &mut *self.optimizer, &state_keys(&callbacks)) {
                    Ok(loaded) => Some((dir, loaded)),
                    Err(e) => {
                        self.callbacks = callbacks;
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        let (mut history, start, callback_states) = match resumed {
            Some((dir, (history, progress, extra))) => {
                self.step = progress.step;
                if let Some((scheduler, _)) = &mut self.scheduler {
                    scheduler.restart();
                    for _ in 0..progress.scheduler_steps {
                        scheduler.step();
                    }
                }
                self.scheduler_steps = progress.scheduler_steps;
                if let (Some(scaler), Some((scale, growth_tracker))) = (&mut self.grad_scaler, extra.grad_scale) {
                    scaler.restore(scale, growth_tracker);
                }
                if !self.quiet && self.is_root() {
                    println!(
                        "resuming from {} at epoch {}, batch {}",
                        dir.display(),
                        progress.epoch + 1,
                        progress.batch
                    );
                }
                (history, progress, Some(extra.callbacks))
            }
            None => (History::default(), Progress::default(), None),
        };
        if let Some((scheduler, _)) = &self.scheduler {
            scheduler.apply(&mut *self.optimizer);
        }
        if self.checkpoint_dir.is_some() {
            install_ctrl_c_handler();
            INTERRUPTED.store(false, Ordering::SeqCst);
        }
        let result = (|| {
            let mut ctx = self.context(&*model, start.epoch, epochs, &history);
            for c in &mut callbacks {
                c.on_train_begin(&mut ctx)?;
            }
            if let Some(states) = callback_states {
                // In the order of `state_keys`: index by index, the callbacks that keep a state.
                let stateful: Vec<usize> = keyed_states(&callbacks).into_iter().map(|(i, _, _)| i).collect();
                for (i, (_, state)) in stateful.into_iter().zip(states) {
                    callbacks[i].load_state(state)?;
                }
            }
            for epoch in start.epoch..epochs {
                let started = Instant::now();
                let skip = if epoch == start.epoch { start.batch } else { 0 };
                let mut logs = match self.train_epoch(model, &params, train, epoch, epochs, skip, device)? {
                    EpochEnd::Done(logs) => logs,
                    EpochEnd::Interrupted { batch } => {
                        return Err(self.interrupted(&*model, &callbacks, &history, epoch, batch))
                    }
                };
                if let Some(validation) = validation {
                    let mut val_logs = self.run_evaluation(model, validation, device);
                    self.average_logs(&mut val_logs, validation.num_samples());
                    for (name, value) in val_logs {
                        logs.insert(format!("val_{name}"), value);
                    }
                }
                if let Some((scheduler, StepEvery::Epoch)) = &mut self.scheduler {
                    scheduler.step();
                    self.scheduler_steps += 1;
                    scheduler.apply(&mut *self.optimizer);
                }
                let mut ctx = self.context(&*model, epoch, epochs, &history);
                for c in &mut callbacks {
                    c.on_epoch_end(&mut ctx, &mut logs)?;
                }
                let stop = ctx.stop;
                history.push(&logs);
                if !self.quiet && self.is_root() {
                    println!("{}", epoch_line(epoch, epochs, &logs, started.elapsed().as_secs_f64()));
                }
                if let Some(dir) = self.checkpoint_dir.clone() {
                    let saved = if self.is_root() {
                        let progress = Progress {
                            epoch: epoch + 1,
                            batch: 0,
                            step: self.step,
                            scheduler_steps: self.scheduler_steps,
                        };
                        let extra = self.checkpoint_extra(&callbacks);
                        resume::save(&dir, &*model as &dyn Module, &*self.optimizer, &history, progress, &extra)
                    } else {
                        Ok(())
                    };
                    self.failed_anywhere(saved, || {
                        format!("rank 0 could not write the checkpoint in {}: its error says why", dir.display())
                    })?;
                }
                if stop {
                    if !self.quiet && self.is_root() {
                        println!("a callback stopped training after epoch {}/{epochs}", epoch + 1);
                    }
                    break;
                }
            }
            let mut ctx = self.context(&*model, history.epochs().saturating_sub(1), epochs, &history);
            for c in &mut callbacks {
                c.on_train_end(&mut ctx)?;
            }
            Ok(())
        })();
        self.callbacks = callbacks;
        result.map(|()| history)
    }

    /// Writes the checkpoint of a run stopped after `batch` batches of `epoch`, and the
    /// error that says how to resume (or why no checkpoint could be written).
    fn interrupted(
        &mut self,
        model: &dyn Module,
        callbacks: &[Box<dyn Callback>],
        history: &History,
        epoch: usize,
        batch: usize,
    ) -> Error {
        INTERRUPTED.store(false, Ordering::SeqCst);
        let dir = self.checkpoint_dir.clone().expect("only a trainer with a checkpoint folder stops on interrupt");
        let progress = Progress { epoch, batch, step: self.step, scheduler_steps: self.scheduler_steps };
        let extra = self.checkpoint_extra(callbacks);
        // In a data-parallel run every process stops at the same batch; rank 0 writes.
        let saved = if self.is_root() {
            resume::save(&dir, model, &*self.optimizer, history, progress, &extra)
        } else {
            Ok(())
        };
        match saved {
            Ok(()) => Error::Interrupted(format!(
                "training interrupted after batch {batch} of epoch {}; a resumable checkpoint is in {}: build the \
                 same model, optimizer and trainer and call .resume_from({:?}) before fit to continue",
                epoch + 1,
                dir.display(),
                dir.display().to_string()
            )),
            Err(e) => e,
        }
    }

    /// What a checkpoint holds besides the model, the optimizer and the progress.
    fn checkpoint_extra(&self, callbacks: &[Box<dyn Callback>]) -> resume::Extra {
        resume::Extra {
            grad_scale: self.grad_scaler.as_ref().map(|s| (s.scale_factor(), s.growth_tracker())),
            callbacks: keyed_states(callbacks).into_iter().map(|(_, key, state)| (key, state)).collect(),
            seed: self.seed,
        }
    }

    fn context<'a>(
        &'a mut self,
        model: &'a dyn Module,
        epoch: usize,
        epochs: usize,
        history: &'a History,
    ) -> Context<'a> {
        let seed = self.seed;
        Context { model, optimizer: &mut *self.optimizer, epoch, epochs, step: self.step, history, stop: false, seed }
    }

    /// One epoch of training, from batch `skip` on: the loss (mean over samples) and each
    /// metric, or where an interrupt stopped it.
    #[allow(clippy::too_many_arguments)]
    fn train_epoch<I>(
        &mut self,
        model: &mut dyn Forward<I>,
        params: &[Tensor],
        train: &dyn Loader<I>,
        epoch: usize,
        epochs: usize,
        skip: usize,
        device: &Device,
    ) -> Result<EpochEnd> {
        model.set_training(true);
        for m in &mut self.metrics {
            m.reset();
        }
        let batches = train.num_batches();
        if let Some(dp) = &mut self.data_parallel {
            // Every process learns every count, so all of them fail together, none hangs.
            let counts = dp.gather(batches as u64);
            if let Some(rank) = counts.iter().position(|&c| c != counts[0]) {
                return Err(Error::Training(format!(
                    "fit: the data-parallel processes disagree on the batches of epoch {}: rank 0 has {}, rank \
                     {rank} has {} (batches by rank: {counts:?}); every process must take as many steps: give each \
                     training loader a DistributedSampler (DataLoader::sampler), which pads the shares to one length",
                    epoch + 1,
                    counts[0],
                    counts[rank]
                )));
            }
        }
        let bar = progress_bar(self.quiet || !self.is_root(), train.num_samples(), epoch, epochs);
        // The bar counts samples, so its rate is samples (images, texts) per second; a
        // resumed epoch starts it at the batches already trained, by the average size.
        if let Some(bar) = &bar {
            bar.set_position((train.num_samples() * skip / batches) as u64);
            bar.reset_eta();
        }
        let mut running_loss = MeanLoss::recorded("loss");
        let mut pending: Option<Gradients> = None;
        let mut in_group = 0;
        let watch_interrupts = self.checkpoint_dir.is_some();
        let mut seen = 0;
        for (index, (inputs, targets)) in train.batches_of_epoch(epoch as u64, device).enumerate().skip(skip) {
            let outputs = model.forward(&inputs);
            let loss = (self.loss)(&outputs, &targets);
            assert_eq!(loss.numel(), 1, "Trainer: the loss must be a scalar, got shape {:?}", loss.shape());
            let samples = targets.dim(0);
            seen += samples;
            running_loss.record(&loss, samples);
            for m in &mut self.metrics {
                m.update(&outputs.detach(), &targets);
            }
            let scaled = if self.accumulate > 1 { loss.mul_scalar(1.0 / self.accumulate as f32) } else { loss };
            let scaled = match &self.grad_scaler {
                Some(scaler) => scaler.scale(&scaled),
                None => scaled,
            };
            // A data-parallel step averages the gradients as backward runs; accumulated
            // batches are summed first and averaged once, before the step.
            let grads = match &mut self.data_parallel {
                Some(dp) if self.accumulate == 1 => dp.backward(&scaled),
                _ => scaled.backward(),
            };
            pending = Some(match pending {
                None => grads,
                Some(mut sum) => {
                    add_gradients(&mut sum, grads, params);
                    sum
                }
            });
            in_group += 1;
            if in_group == self.accumulate || index + 1 == batches {
                let mut grads = pending.take().expect("a batch was added");
                if let Some(dp) = self.data_parallel.as_mut().filter(|_| self.accumulate > 1) {
                    dp.average_gradients(&mut grads);
                }
                match &mut self.grad_scaler {
                    Some(scaler) => {
                        // Clipping measures the true gradients: unscale first.
                        if let Some(max_norm) = self.clip_grad_norm {
                            scaler.unscale(&mut grads);
                            clip_grad_norm(&mut grads, params, max_norm, 2.0);
                        }
                        scaler.step(&mut *self.optimizer, &mut grads);
                        scaler.update();
                    }
                    None => {
                        if let Some(max_norm) = self.clip_grad_norm {
                            clip_grad_norm(&mut grads, params, max_norm, 2.0);
                        }
                        self.optimizer.step(&grads);
                    }
                }
                self.step += 1;
                in_group = 0;
                if let Some((scheduler, StepEvery::Batch)) = &mut self.scheduler {
                    scheduler.step();
                    self.scheduler_steps += 1;
                    scheduler.apply(&mut *self.optimizer);
                }
            }
            let last = index + 1 == batches;
            if (index + 1) % self.refresh_every == 0 || last {
                // The one read of the epoch's loss until the next refresh.
                let mut mean = running_loss.compute();
                if let Some(dp) = &mut self.data_parallel {
                    // Averaged, so that every process sees a non-finite loss at once.
                    let mut sums = [mean * seen as f64, seen as f64];
                    dp.sum(&mut sums);
                    mean = sums[0] / sums[1];
                }
                if !mean.is_finite() && !self.allow_nonfinite_loss {
                    if let Some(bar) = &bar {
                        bar.abandon();
                    }
                    return Err(Error::NonFiniteLoss {
                        loss: mean,
                        epoch: epoch + 1,
                        epochs,
                        step: index + 1,
                        steps: batches,
                    });
                }
                if let Some(bar) = &bar {
                    // Metrics are read with the loss, so the bar shows them live.
                    let mut message = format!("{mean:.4}");
                    for m in &self.metrics {
                        message.push_str(&format!(", {} {:.4}", m.name(), m.compute()));
                    }
                    bar.set_message(message);
                }
            }
            if let Some(bar) = &bar {
                bar.inc(samples as u64);
            }
            // Only between optimizer steps, so the checkpoint holds no half-accumulated step.
            if watch_interrupts && in_group == 0 && index + 1 < batches && self.interrupted_everywhere() {
                if let Some(bar) = bar {
                    bar.abandon();
                }
                return Ok(EpochEnd::Interrupted { batch: index + 1 });
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let mut logs = Logs::new();
        logs.insert("loss".into(), running_loss.compute());
        for m in &self.metrics {
            logs.insert(m.name().to_string(), m.compute());
        }
        self.average_logs(&mut logs, seen);
        logs.insert("lr".into(), self.optimizer.lr() as f64);
        Ok(EpochEnd::Done(logs))
    }

    /// `result` here, or in a data-parallel run an error on every process when it failed
    /// on any (`elsewhere` describes it), so that none waits for the others in its next
    /// step.
    fn failed_anywhere(&mut self, result: Result<()>, elsewhere: impl FnOnce() -> String) -> Result<()> {
        let failed = self.on_any_process(result.is_err());
        match result {
            Err(e) => Err(e),
            Ok(()) if failed => Err(Error::Training(elsewhere())),
            Ok(()) => Ok(()),
        }
    }

    /// `here`, or in a data-parallel run whether it holds on any process (a collective:
    /// every process must ask).
    fn on_any_process(&mut self, here: bool) -> bool {
        match &mut self.data_parallel {
            Some(dp) => {
                let mut flag = [if here { 1.0 } else { 0.0 }];
                dp.sum(&mut flag);
                flag[0] > 0.0
            }
            None => here,
        }
    }

    /// Whether Ctrl-C (or [`interrupt`]) asked to stop: here, or in a data-parallel run on
    /// any process, so that all of them stop after the same step.
    fn interrupted_everywhere(&mut self) -> bool {
        self.on_any_process(INTERRUPTED.load(Ordering::SeqCst))
    }

    /// The loss and each metric of `model` over `data`, in evaluation mode and without a
    /// graph, by name (`loss`, `accuracy`, ...). The model is left in evaluation mode.
    /// In a data-parallel run ([`Trainer::data_parallel`]) every process must call it, each
    /// with its share of the data: the values are averaged over the processes, weighted by
    /// their samples, so every process returns the same ones.
    pub fn evaluate<I>(&mut self, model: &mut dyn Forward<I>, data: &dyn Loader<I>, device: &Device) -> Result<Logs> {
        if data.num_batches() == 0 {
            return Err(Error::Training("evaluate: the loader has no batches".into()));
        }
        let mut logs = self.run_evaluation(model, data, device);
        self.average_logs(&mut logs, data.num_samples());
        Ok(logs)
    }

    fn run_evaluation<I>(&mut self, model: &mut dyn Forward<I>, data: &dyn Loader<I>, device: &Device) -> Logs {
        model.set_training(false);
        for m in &mut self.metrics {
            m.reset();
        }
        let mut running_loss = MeanLoss::recorded("loss");
        no_grad(|| {
            for (inputs, targets) in data.batches_of_epoch(0, device) {
                let outputs = model.forward(&inputs);
                running_loss.record(&(self.loss)(&outputs, &targets), targets.dim(0));
                for m in &mut self.metrics {
                    m.update(&outputs, &targets);
                }
            }
        });
        let mut logs = Logs::new();
        logs.insert("loss".into(), running_loss.compute());
        for m in &self.metrics {
            logs.insert(m.name().to_string(), m.compute());
        }
        logs
    }

    /// The model's outputs for every batch of `data`, in order, as one tensor on `device`
    /// (logits for a classifier; `.softmax(1)` gives probabilities), computed in evaluation
    /// mode without a graph.
    pub fn predict<I>(model: &mut dyn Forward<I>, data: &dyn Loader<I>, device: &Device) -> Result<Tensor> {
        if data.num_batches() == 0 {
            return Err(Error::Training("predict: the loader has no batches".into()));
        }
        model.set_training(false);
        let outputs: Vec<Tensor> =
            no_grad(|| data.batches_of_epoch(0, device).map(|(inputs, _)| model.forward(&inputs)).collect());
        Ok(Tensor::cat(&outputs, 0))
    }
}

/// How an epoch of training ended.
enum EpochEnd {
    Done(Logs),
    /// Stopped by an interrupt after `batch` batches.
    Interrupted {
        batch: usize,
    },
}

/// The key of each callback that keeps a state ([`Callback::state`]), in order: its type's
/// name and its place among the callbacks of that type (`EarlyStopping#0`), so a resumed
/// trainer may add or drop callbacks that keep none.
fn state_keys(callbacks: &[Box<dyn Callback>]) -> Vec<String> {
    keyed_states(callbacks).into_iter().map(|(_, key, _)| key).collect()
}

/// Each callback that keeps a state: its index in `callbacks`, its key (see
/// [`state_keys`]) and the state, read once.
fn keyed_states(callbacks: &[Box<dyn Callback>]) -> Vec<(usize, String, CallbackState)> {
    let mut out: Vec<(usize, String, CallbackState)> = Vec::new();
    for (i, c) in callbacks.iter().enumerate() {
        if let Some(state) = c.state() {
            let name = c.name();
            let same = out.iter().filter(|(_, k, _)| k.rsplit_once('#').is_some_and(|(n, _)| n == name)).count();
            out.push((i, format!("{name}#{same}"), state));
        }
    }
    out
}

/// Adds `more` into `sum`, parameter by parameter.
fn add_gradients(sum: &mut Gradients, mut more: Gradients, params: &[Tensor]) {
    for p in params {
        if let Some(g) = more.remove(p) {
            let total = match sum.remove(p) {
                Some(prev) => prev.add(&g),
                None => g,
            };
            sum.insert(p, total);
        }
    }
}

/// The bar of one epoch, counting samples; hidden when stderr is not a terminal (indicatif
/// draws nothing then), so logs get only the epoch lines.
fn progress_bar(quiet: bool, samples: usize, epoch: usize, epochs: usize) -> Option<indicatif::ProgressBar> {
    if quiet {
        return None;
    }
    let bar = indicatif::ProgressBar::new(samples as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} samples, loss {msg} ({rate} samples/s, eta {eta})",
        )
        .expect("a valid template")
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0}", state.per_sec());
        })
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    Some(bar)
}

/// `epoch 3/10: accuracy 0.9800, loss 0.1234, lr 1.000e-3, val_loss ... (2.5 s)`.
fn epoch_line(epoch: usize, epochs: usize, logs: &Logs, secs: f64) -> String {
    let values: Vec<String> = logs
        .iter()
        .map(|(name, v)| if name.starts_with("lr") { format!("{name} {v:.3e}") } else { format!("{name} {v:.4}") })
        .collect();
    format!("epoch {}/{epochs}: {} ({secs:.1} s)", epoch + 1, values.join(", "))
}
