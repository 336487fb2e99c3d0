//! The streaming [`Metric`]s; the design is described in the module documentation of
//! [`crate::metrics`].
//!
//! ```
//! use wgrad::metrics::{Accuracy, Metric};
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let mut acc = Accuracy::new();
//! // Two batches of logits over three classes, and their labels.
//! let logits = Tensor::from_slice(&[2.0f32, 0.0, 1.0, 0.0, 3.0, 1.0], &[2, 3], &dev);
//! acc.update(&logits, &Tensor::from_slice(&[0i32, 2], &[2], &dev));
//! let logits = Tensor::from_slice(&[0.0f32, 0.5, 0.2], &[1, 3], &dev);
//! acc.update(&logits, &Tensor::from_slice(&[1i32], &[1], &dev));
//! assert!((acc.compute() - 2.0 / 3.0).abs() < 1e-12);
//! acc.reset(); // a new epoch
//! assert_eq!(acc.compute(), 0.0);
//! ```

use crate::dtype::DType;
use crate::{Device, Tensor};

/// A quantity accumulated over batches: a loss, an accuracy, an error.
///
/// Implement it for a metric of your own by keeping running sums as tensors on the
/// batch's device (see the module documentation) and reading them back in `compute`.
pub trait Metric: Send {
    /// The name a training log prints: `"accuracy"`, `"top5_accuracy"`, `"mae"`, `"loss"`.
    fn name(&self) -> &str;

    /// Adds one batch: the model's `outputs` and the `targets` they are scored against.
    /// Does not wait for the device. Panics, naming the metric and both shapes, when they
    /// do not fit the metric.
    fn update(&mut self, outputs: &Tensor, targets: &Tensor);

    /// The metric over every batch since the last [`Metric::reset`]: reads the running
    /// sums back from the device. 0.0 before the first update.
    fn compute(&self) -> f64;

    /// Forgets every batch (to start a new epoch).
    fn reset(&mut self);

    /// True when a larger value is better (accuracy), false when smaller is (a loss, an
    /// error): the direction early stopping and checkpointing watch by default.
    fn higher_is_better(&self) -> bool;
}

/// A count summed in `f32` is exact up to this.
const EXACT_F32_COUNT: u64 = 1 << 24;

/// A running sum of same-shape `f32` tensors that stays on their device, with an `f64`
/// part on the host that earlier sums were folded into.
#[derive(Clone, Debug, Default)]
struct RunningSum {
    /// Sum of the tensors added since the last fold, on their device.
    device: Option<Tensor>,
    /// Sum of the folded tensors, element by element.
    host: Vec<f64>,
    /// For counts: how much any element of `device` may have grown since the last fold.
    pending: u64,
    /// For counts: fold before `pending` would pass this, so `f32` stays exact.
    exact_limit: Option<u64>,
}

impl RunningSum {
    /// A sum of integer counts, kept exact by folding to the host before 2^24.
    fn counts() -> RunningSum {
        RunningSum { exact_limit: Some(EXACT_F32_COUNT), ..RunningSum::default() }
    }

    /// A sum of real values, accumulated in `f32` on the device.
    fn values() -> RunningSum {
        RunningSum::default()
    }

    /// Adds `batch` (detached, `f32`), which grows any count by at most `bound`. Reads
    /// back only to fold a count nearing 2^24, or when the batch is on another device.
    fn add(&mut self, batch: Tensor, bound: u64) {
        let other_device = self.device.as_ref().is_some_and(|s| s.device() != batch.device());
        let count_full = self.exact_limit.is_some_and(|limit| self.pending + bound > limit);
        if other_device || count_full {
            self.fold();
        }
        self.device = Some(match self.device.take() {
            Some(sum) => sum.add(&batch),
            None => batch,
        });
        self.pending += bound;
    }

    /// Moves the device part into the host part.
    fn fold(&mut self) {
        let values = self.read_device();
        self.device = None;
        self.pending = 0;
        add_into(&mut self.host, &values);
    }

    fn read_device(&self) -> Vec<f64> {
        self.device.as_ref().map_or_else(Vec::new, |s| s.to_vec::<f32>().into_iter().map(f64::from).collect())
    }

    /// The whole sum, element by element; empty before the first `add`.
    fn total(&self) -> Vec<f64> {
        let mut total = self.host.clone();
        add_into(&mut total, &self.read_device());
        total
    }

    fn reset(&mut self) {
        *self = RunningSum { exact_limit: self.exact_limit, ..RunningSum::default() };
    }
}

fn add_into(into: &mut Vec<f64>, values: &[f64]) {
    if into.is_empty() {
        into.resize(values.len(), 0.0);
    }
    for (a, b) in into.iter_mut().zip(values) {
        *a += b;
    }
}

/// `numerator / denominator`, 0.0 when the denominator is zero (torchmetrics'
/// `zero_division=0`).
fn safe_div(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 {
        0.0
    } else {
        numerator / denominator
    }
}

/// A tensor built once per device and reused across updates (class indices, a threshold).
#[derive(Clone, Debug, Default)]
struct Cached(Option<Tensor>);

impl Cached {
    fn get(&mut self, device: &Device, build: impl FnOnce() -> Tensor) -> Tensor {
        match &self.0 {
            Some(t) if t.device() == device => t.clone(),
            _ => {
                let t = build();
                self.0 = Some(t.clone());
                t
            }
        }
    }
}

/// Checks multiclass inputs, `[..., C]` f32 logits against `[...]` i32 labels, and returns
/// them flattened to `[n, C]` and `[n]` (detached).
fn class_inputs(metric: &str, outputs: &Tensor, targets: &Tensor) -> (Tensor, Tensor) {
    let fits = outputs.dtype() == DType::F32
        && targets.dtype() == DType::I32
        && outputs.rank() >= 2
        && outputs.shape()[..outputs.rank() - 1] == *targets.shape()
        && outputs.shape()[outputs.rank() - 1] > 0;
    assert!(
        fits,
        "{metric}: outputs {:?} ({}) and targets {:?} ({}) do not fit; expected f32 logits [..., num_classes] \
         and i32 labels of the same shape without the class axis",
        outputs.shape(),
        outputs.dtype(),
        targets.shape(),
        targets.dtype()
    );
    let classes = outputs.shape()[outputs.rank() - 1];
    if targets.device().is_cpu() {
        // Free on the CPU: a label outside the classes panics here, naming the metric.
        if let Some(bad) = targets.to_vec::<i32>().into_iter().find(|&l| l < 0 || l as usize >= classes) {
            panic!("{metric}: label {bad} is outside the classes 0..{classes} of outputs {:?}", outputs.shape());
        }
    }
    (outputs.detach().reshape(&[-1, classes as isize]), targets.detach().reshape(&[-1]))
}

/// Checks binary inputs: f32 scores and f32 0/1 targets of one shape, or scores `[..., 1]`
/// against targets `[...]` (a one-unit output layer). Returns both flattened (detached).
fn binary_inputs(metric: &str, outputs: &Tensor, targets: &Tensor) -> (Tensor, Tensor) {
    let same = outputs.shape() == targets.shape();
    let unit_axis = outputs.rank() == targets.rank() + 1
        && outputs.shape()[..targets.rank()] == *targets.shape()
        && outputs.shape()[targets.rank()] == 1;
    assert!(
        outputs.dtype() == DType::F32 && targets.dtype() == DType::F32 && (same || unit_axis),
        "{metric}: outputs {:?} ({}) and targets {:?} ({}) do not fit; expected f32 scores and f32 0/1 targets \
         of the same shape (or outputs with one more axis of size 1)",
        outputs.shape(),
        outputs.dtype(),
        targets.shape(),
        targets.dtype()
    );
    (outputs.detach().reshape(&[-1]), targets.detach().reshape(&[-1]))
}

/// How binary scores become predictions: `score > threshold`.
fn binary_predictions(scores: &Tensor, threshold: &mut Cached, value: f32) -> Tensor {
    let t = threshold.get(scores.device(), || Tensor::scalar(value, scores.device()));
    scores.gt(&t)
}

/// Class indices `0..C` as `f32`, for turning `i32` labels into values with
/// `index_select` (there is no `i32` to `f32` cast).
fn class_values(classes: usize, device: &Device) -> Tensor {
    Tensor::arange(0.0, classes as f32, 1.0, device)
}

/// NaN when any label was outside the classes (a GPU `index_select` yields NaN there),
/// else 0.0: added to a count, it makes a bad label loud instead of silently wrong.
fn label_poison(label_values: &Tensor) -> Tensor {
    label_values.mul_scalar(0.0).sum_all()
}

// ---- the mean of a loss ----

/// A loss function a [`MeanLoss`] evaluates on each batch.
pub type LossFn = Box<dyn Fn(&Tensor, &Tensor) -> Tensor + Send + Sync>;

/// The mean of per-batch loss values weighted by batch size: the epoch loss a training
/// log prints (Keras' `loss` metric, torchmetrics' `MeanMetric` with batch sizes as
/// weights). Lower is better.
///
/// Feed it either the loss a training step already computed, with [`MeanLoss::record`],
/// or let [`Metric::update`] compute it from outputs and targets with the loss function
/// it was built with (under `no_grad`). The batch size is the first axis of `outputs` (1
/// for a 0-d output).
///
/// ```
/// use wgrad::metrics::{MeanLoss, Metric};
/// use wgrad::{loss, Device, Tensor};
/// let dev = Device::cpu();
/// let mut val_loss = MeanLoss::new("val_loss", loss::cross_entropy);
/// val_loss.record(&Tensor::scalar(1.0, &dev), 3); // a batch of 3 with mean loss 1.0
/// val_loss.record(&Tensor::scalar(3.0, &dev), 1); // a batch of 1 with mean loss 3.0
/// assert_eq!(val_loss.compute(), 1.5); // (3 * 1.0 + 1 * 3.0) / 4
/// ```
pub struct MeanLoss {
    name: String,
    /// `None` for a mean fed only through [`MeanLoss::record`].
    loss: Option<LossFn>,
    sum: RunningSum,
    samples: u64,
}

impl MeanLoss {
    /// A mean of `loss(outputs, targets)` over batches, printed as `name`.
    pub fn new(name: impl Into<String>, loss: impl Fn(&Tensor, &Tensor) -> Tensor + Send + Sync + 'static) -> MeanLoss {
        MeanLoss { name: name.into(), loss: Some(Box::new(loss)), sum: RunningSum::values(), samples: 0 }
    }

    /// A mean of losses a training loop computes itself and gives with
    /// [`MeanLoss::record`]; [`Metric::update`] on it panics, as it has no loss function.
    pub fn recorded(name: impl Into<String>) -> MeanLoss {
        MeanLoss { name: name.into(), loss: None, sum: RunningSum::values(), samples: 0 }
    }

    /// Adds a batch's loss already computed (a 0-d or one-element tensor, the mean over
    /// the batch) for `batch_size` samples, without waiting for the device. Panics when
    /// `loss` has more than one element.
    pub fn record(&mut self, loss: &Tensor, batch_size: usize) {
        assert!(
            loss.numel() == 1 && loss.dtype() == DType::F32,
            "{}: a loss value is one f32, got shape {:?} ({})",
            self.name,
            loss.shape(),
            loss.dtype()
        );
        self.sum.add(loss.detach().reshape(&[]).mul_scalar(batch_size as f32), 0);
        self.samples += batch_size as u64;
    }

    /// How many samples have been recorded since the last reset.
    pub fn samples(&self) -> u64 {
        self.samples
    }
}

impl Metric for MeanLoss {
    fn name(&self) -> &str {
        &self.name
    }

    fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
        let Some(loss_fn) = &self.loss else {
            panic!("{}: built with MeanLoss::recorded, so it takes losses through record, not update", self.name)
        };
        let loss = crate::no_grad(|| loss_fn(outputs, targets));
        let batch = if outputs.rank() == 0 { 1 } else { outputs.shape()[0] };
        self.record(&loss, batch);
    }

    fn compute(&self) -> f64 {
        safe_div(self.sum.total().first().copied().unwrap_or(0.0), self.samples as f64)
    }

    fn reset(&mut self) {
        self.sum.reset();
        self.samples = 0;
    }

    fn higher_is_better(&self) -> bool {
        false
    }
}

// ---- accuracy ----

/// Multiclass accuracy from logits: the fraction of samples whose largest logit is at
/// their label (`argmax`, the first on ties), as torchmetrics' `MulticlassAccuracy(average=
/// "micro")` and Keras' `SparseCategoricalAccuracy`.
///
/// `outputs` are f32 logits (or probabilities) `[..., C]`, `targets` i32 labels of the
/// same shape without the class axis (`[N]` for `[N, C]`, `[N, T]` for per-step outputs
/// `[N, T, C]`). Named `"accuracy"`.
#[derive(Clone, Debug)]
pub struct Accuracy {
    correct: RunningSum,
    samples: u64,
    classes: Cached,
}

impl Accuracy {
    /// An accuracy with no batches yet.
    pub fn new() -> Accuracy {
        Accuracy { correct: RunningSum::counts(), samples: 0, classes: Cached::default() }
    }
}

impl Default for Accuracy {
    fn default() -> Accuracy {
        Accuracy::new()
    }
}

impl Metric for Accuracy {
    fn name(&self) -> &str {
        "accuracy"
    }

    fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
        let (logits, labels) = class_inputs("accuracy", outputs, targets);
        let (n, c) = (labels.numel(), logits.shape()[1]);
        let classes = self.classes.get(logits.device(), || class_values(c, logits.device()));
        let predicted = classes.index_select(0, &logits.argmax(1, false));
        let label_values = classes.index_select(0, &labels);
        let correct = predicted.eq(&label_values).sum_all().add(&label_poison(&label_values));
        self.correct.add(correct, n as u64);
        self.samples += n as u64;
    }

    fn compute(&self) -> f64 {
        safe_div(self.correct.total().first().copied().unwrap_or(0.0), self.samples as f64)
    }

    fn reset(&mut self) {
        self.correct.reset();
        self.samples = 0;
    }

    fn higher_is_better(&self) -> bool {
        true
    }
}

/// Top-k accuracy: the fraction of samples whose label is among the `k` classes with the
/// largest logits, as Keras' `SparseTopKCategoricalAccuracy(k)` and torchmetrics'
/// `MulticlassAccuracy(top_k=k, average="micro")`. Ties are broken as `argmax` does (a
/// class ranks after the equal classes of smaller index), so `TopKAccuracy::new(1)`
/// equals [`Accuracy`]. Logits that are NaN rank unspecified.
///
/// Inputs as [`Accuracy`]; named `"top{k}_accuracy"`.
#[derive(Clone, Debug)]
pub struct TopKAccuracy {
    k: usize,
    name: String,
    correct: RunningSum,
    samples: u64,
    classes: Cached,
    k_value: Cached,
}

impl TopKAccuracy {
    /// Panics when `k` is zero.
    pub fn new(k: usize) -> TopKAccuracy {
        assert!(k > 0, "TopKAccuracy: k must be at least 1");
        TopKAccuracy {
            k,
            name: format!("top{k}_accuracy"),
            correct: RunningSum::counts(),
            samples: 0,
            classes: Cached::default(),
            k_value: Cached::default(),
        }
    }

    /// How many of the largest logits may hold the label.
    pub fn k(&self) -> usize {
        self.k
    }
}

impl Metric for TopKAccuracy {
    fn name(&self) -> &str {
        &self.name
    }

    /// Panics when there are fewer than `k` classes.
    fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
        let (logits, labels) = class_inputs(&self.name, outputs, targets);
        let (n, c) = (labels.numel(), logits.shape()[1]);
        assert!(self.k <= c, "{}: k = {} but outputs {:?} have {c} classes", self.name, self.k, outputs.shape());
        let dev = logits.device().clone();
        let classes = self.classes.get(&dev, || class_values(c, &dev));
        let k = self.k_value.get(&dev, || Tensor::scalar(self.k as f32, &dev));
        // The label's rank among its row's logits: the classes with a larger logit, plus
        // the classes of smaller index with an equal one.
        let label_logit = logits.gather(1, &labels.reshape(&[-1, 1])); // [n, 1]
        let label_values = classes.index_select(0, &labels); // [n]
        let larger = logits.gt(&label_logit).sum(&[1], false);
        let before_label = classes.reshape(&[1, -1]).lt(&label_values.reshape(&[-1, 1])); // [n, C]
        let tied_before = logits.eq(&label_logit).mul(&before_label).sum(&[1], false);
        let rank = larger.add(&tied_before);
        let correct = rank.lt(&k).sum_all().add(&label_poison(&label_values));
        self.correct.add(correct, n as u64);
        self.samples += n as u64;
    }

    fn compute(&self) -> f64 {
        safe_div(self.correct.total().first().copied().unwrap_or(0.0), self.samples as f64)
    }

    fn reset(&mut self) {
        self.correct.reset();
        self.samples = 0;
    }

    fn higher_is_better(&self) -> bool {
        true
    }
}

/// Binary accuracy: a score above the threshold predicts 1, and the fraction of
/// predictions equal to their 0/1 target is the accuracy, as Keras' `BinaryAccuracy` and
/// torchmetrics' `BinaryAccuracy` (both `score > threshold`).
///
/// `outputs` are f32 scores, `targets` f32 0.0/1.0 of the same shape (or outputs with a
/// trailing axis of size 1, as a one-unit output layer gives). Every element counts as a
/// sample. Named `"binary_accuracy"`.
///
/// ```
/// use wgrad::metrics::{BinaryAccuracy, Metric};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let mut acc = BinaryAccuracy::from_logits(); // logit > 0, i.e. sigmoid > 0.5
/// let logits = Tensor::from_slice(&[2.0f32, -1.0, 0.5, -0.3], &[4, 1], &dev);
/// acc.update(&logits, &Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0], &[4], &dev));
/// assert_eq!(acc.compute(), 0.75);
/// ```
#[derive(Clone, Debug)]
pub struct BinaryAccuracy {
    threshold: f32,
    correct: RunningSum,
    samples: u64,
    threshold_value: Cached,
}

impl BinaryAccuracy {
    /// Scores are probabilities, a prediction is 1 when above `threshold` (Keras' default
    /// is 0.5).
    pub fn new(threshold: f32) -> BinaryAccuracy {
        BinaryAccuracy { threshold, correct: RunningSum::counts(), samples: 0, threshold_value: Cached::default() }
    }

    /// Scores are logits, a prediction is 1 when the logit is above 0 (its sigmoid above
    /// 0.5): for a model trained with `binary_cross_entropy_with_logits`.
    pub fn from_logits() -> BinaryAccuracy {
        BinaryAccuracy::new(0.0)
    }

    /// The score above which a prediction is 1.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }
}

impl Metric for BinaryAccuracy {
    fn name(&self) -> &str {
        "binary_accuracy"
    }

    fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
        let (scores, targets) = binary_inputs("binary_accuracy", outputs, targets);
        let n = targets.numel();
        let predicted = binary_predictions(&scores, &mut self.threshold_value, self.threshold);
        self.correct.add(predicted.eq(&targets).sum_all(), n as u64);
        self.samples += n as u64;
    }

    fn compute(&self) -> f64 {
        safe_div(self.correct.total().first().copied().unwrap_or(0.0), self.samples as f64)
    }

    fn reset(&mut self) {
        self.correct.reset();
        self.samples = 0;
    }

    fn higher_is_better(&self) -> bool {
        true
    }
}

// ---- precision, recall, F1 ----

/// Which score a [`ClassScores`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Score {
    Precision,
    Recall,
    F1,
}

impl Score {
    fn name(self) -> &'static str {
        match self {
            Score::Precision => "precision",
            Score::Recall => "recall",
            Score::F1 => "f1",
        }
    }
}

/// How outputs become per-class predictions.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Task {
    /// Logits `[..., C]` and i32 labels; macro average over the classes.
    Multiclass,
    /// Scores above a threshold against 0/1 targets; the positive class alone.
    Binary { threshold: f32 },
}

/// The state shared by [`Precision`], [`Recall`] and [`F1`]: per class, the true
/// positives, the predictions of the class and its support, as one running `[3, C]` sum.
#[derive(Clone, Debug)]
struct ClassScores {
    score: Score,
    task: Task,
    /// `[tp, predicted, support]`, each `[C]` (C = 1 for binary).
    counts: RunningSum,
    classes: Option<usize>,
    eye: Cached,
    threshold_value: Cached,
}

impl ClassScores {
    fn new(score: Score, task: Task) -> ClassScores {
        ClassScores {
            score,
            task,
            counts: RunningSum::counts(),
            classes: None,
            eye: Cached::default(),
            threshold_value: Cached::default(),
        }
    }

    fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
        let name = self.score.name();
        let (predicted, actual, n) = match self.task {
            Task::Multiclass => {
                let (logits, labels) = class_inputs(name, outputs, targets);
                let c = logits.shape()[1];
                if let Some(seen) = self.classes {
                    assert_eq!(
                        seen,
                        c,
                        "{name}: outputs {:?} have {c} classes, earlier batches had {seen}",
                        outputs.shape()
                    );
                }
                self.classes = Some(c);
                let dev = logits.device().clone();
                // One-hot rows of the identity: [n, C] each.
                let eye = self.eye.get(&dev, || Tensor::eye(c, c, &dev));
                let predicted = eye.index_select(0, &logits.argmax(1, false));
                let actual = eye.index_select(0, &labels);
                (predicted, actual, labels.numel())
            }
            Task::Binary { threshold } => {
                let (scores, targets) = binary_inputs(name, outputs, targets);
                self.classes = Some(1);
                let predicted = binary_predictions(&scores, &mut self.threshold_value, threshold);
                let n = targets.numel();
                (predicted.reshape(&[-1, 1]), targets.reshape(&[-1, 1]), n)
            }
        };
        let tp = predicted.mul(&actual).sum(&[0], false);
        let counts = Tensor::stack(&[tp, predicted.sum(&[0], false), actual.sum(&[0], false)], 0);
        self.counts.add(counts, n as u64);
    }

    fn compute(&self) -> f64 {
        let Some(c) = self.classes else { return 0.0 };
        let total = self.counts.total();
        let (tp, predicted, support) = (&total[..c], &total[c..2 * c], &total[2 * c..]);
        // Macro average over the classes that were present or predicted (those with
        // tp + fp + fn > 0), as torchmetrics and scikit-learn's default labels; for binary,
        // the positive class's score (0.0 when it was neither).
        let mut sum = 0.0;
        let mut counted = 0;
        for k in 0..c {
            if predicted[k] + support[k] == 0.0 {
                continue;
            }
            sum += match self.score {
                Score::Precision => safe_div(tp[k], predicted[k]),
                Score::Recall => safe_div(tp[k], support[k]),
                Score::F1 => safe_div(2.0 * tp[k], predicted[k] + support[k]),
            };
            counted += 1;
        }
        safe_div(sum, counted as f64)
    }

    fn reset(&mut self) {
        self.counts.reset();
        self.classes = None;
    }
}

macro_rules! class_score_metric {
    ($(#[$doc:meta])* $name:ident, $score:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name(ClassScores);

        impl $name {
            /// Multiclass, from f32 logits `[..., C]` and i32 labels `[...]`: the unweighted
            /// mean over the classes that occur among the labels or the predictions
            /// (`argmax`) of the per-class score, as torchmetrics' `average="macro"`.
            pub fn multiclass() -> $name {
                $name(ClassScores::new($score, Task::Multiclass))
            }

            /// Binary, from f32 logits (positive above 0) and f32 0/1 targets: the score of
            /// the positive class.
            pub fn binary() -> $name {
                $name::binary_with_threshold(0.0)
            }

            /// Binary, from f32 scores (positive above `threshold`, e.g. 0.5 for
            /// probabilities) and f32 0/1 targets: the score of the positive class.
            pub fn binary_with_threshold(threshold: f32) -> $name {
                $name(ClassScores::new($score, Task::Binary { threshold }))
            }
        }

        impl Metric for $name {
            fn name(&self) -> &str {
                self.0.score.name()
            }

            fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
                self.0.update(outputs, targets)
            }

            fn compute(&self) -> f64 {
                self.0.compute()
            }

            fn reset(&mut self) {
                self.0.reset()
            }

            fn higher_is_better(&self) -> bool {
                true
            }
        }
    };
}

class_score_metric!(
    /// Precision, `TP / (TP + FP)`: of the samples predicted as a class, the fraction that
    /// are (0.0 for a class never predicted). Named `"precision"`.
    ///
    /// ```
    /// use wgrad::metrics::{Metric, Precision};
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let mut precision = Precision::binary(); // logits, positive above 0
    /// let logits = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5], &[4], &dev);
    /// precision.update(&logits, &Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0], &[4], &dev));
    /// assert!((precision.compute() - 2.0 / 3.0).abs() < 1e-12); // 3 predicted positive, 2 are
    /// ```
    Precision,
    Score::Precision
);

class_score_metric!(
    /// Recall, `TP / (TP + FN)`: of the samples of a class, the fraction predicted as it
    /// (0.0 for a class never present). Named `"recall"`.
    Recall,
    Score::Recall
);

class_score_metric!(
    /// F1, the harmonic mean of precision and recall, `2 TP / (2 TP + FP + FN)`, per class
    /// (for multiclass, the mean of the per-class F1, not the F1 of the mean precision and
    /// recall). Named `"f1"`.
    F1,
    Score::F1
);

// ---- regression ----

/// Mean absolute error, `mean(|outputs - targets|)` over every element of every batch, as
/// torchmetrics' `MeanAbsoluteError` and Keras' `MeanAbsoluteError`. `outputs` and
/// `targets` are f32 of the same shape (any shape). Named `"mae"`; lower is better.
///
/// ```
/// use wgrad::metrics::{MeanAbsoluteError, Metric};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let mut mae = MeanAbsoluteError::new();
/// mae.update(&Tensor::from_slice(&[1.0f32, 2.0], &[2], &dev), &Tensor::from_slice(&[1.5f32, 0.0], &[2], &dev));
/// mae.update(&Tensor::from_slice(&[3.0f32], &[1], &dev), &Tensor::from_slice(&[3.0f32], &[1], &dev));
/// assert!((mae.compute() - 2.5 / 3.0).abs() < 1e-6);
/// ```
#[derive(Clone, Debug, Default)]
pub struct MeanAbsoluteError {
    sum: RunningSum,
    elements: u64,
}

impl MeanAbsoluteError {
    /// An error with no batches yet.
    pub fn new() -> MeanAbsoluteError {
        MeanAbsoluteError { sum: RunningSum::values(), elements: 0 }
    }
}

impl Metric for MeanAbsoluteError {
    fn name(&self) -> &str {
        "mae"
    }

    fn update(&mut self, outputs: &Tensor, targets: &Tensor) {
        assert!(
            outputs.shape() == targets.shape() && outputs.dtype() == DType::F32 && targets.dtype() == DType::F32,
            "mae: outputs {:?} ({}) and targets {:?} ({}) must be f32 of the same shape",
            outputs.shape(),
            outputs.dtype(),
            targets.shape(),
            targets.dtype()
        );
        let error = outputs.detach().sub(&targets.detach()).abs().sum_all();
        self.sum.add(error, 0);
        self.elements += targets.numel() as u64;
    }

    fn compute(&self) -> f64 {
        safe_div(self.sum.total().first().copied().unwrap_or(0.0), self.elements as f64)
    }

    fn reset(&mut self) {
        self.sum.reset();
        self.elements = 0;
    }

    fn higher_is_better(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_folds_to_the_host_before_f32_stops_being_exact() {
        let dev = Device::cpu();
        let mut sum = RunningSum::counts();
        // Each add claims a bound of 2^23: the third must fold the first two.
        for _ in 0..3 {
            sum.add(Tensor::from_slice(&[1.0f32, 2.0], &[2], &dev), 1 << 23);
        }
        assert_eq!(sum.host, vec![2.0, 4.0]);
        assert_eq!(sum.pending, 1 << 23);
        assert_eq!(sum.total(), vec![3.0, 6.0]);
        sum.reset();
        assert!(sum.total().is_empty());
        assert_eq!(sum.exact_limit, Some(EXACT_F32_COUNT));
    }
}
