//! Metrics: streaming [`Metric`]s a training loop updates batch by batch on the device,
//! and host-side helpers: accuracy and a confusion matrix with precision, recall and F1.
//!
//! # Streaming metrics
//!
//! [`Metric`] is `update` / `compute` / `reset`, as torchmetrics (Keras' `update_state` /
//! `result` / `reset_state`): [`MeanLoss`], [`Accuracy`], [`TopKAccuracy`],
//! [`BinaryAccuracy`], [`Precision`], [`Recall`], [`F1`] and [`MeanAbsoluteError`].
//!
//! On a GPU, `update` never waits for the device: each metric turns a batch into a small
//! tensor of sums (correct predictions, per-class true positives, absolute errors) with
//! ordinary tensor ops and adds it to a running sum that stays on the device; only
//! `compute` reads back, once. A loop that updates every step and computes once per epoch
//! adds no synchronisation. Counts are summed in `f32`, exact up to 2^24: before a count
//! could pass that, `update` folds the running sum into an `f64` on the host (one
//! read-back per 16.7 million samples). Sums of real values (losses, absolute errors) are
//! `f32` sums, as torchmetrics and Keras keep them. A label outside `0..num_classes`
//! panics on the CPU, naming the metric; on a GPU, where a kernel cannot raise, it makes
//! `compute` return NaN.
//!
//! The macro averages of [`Precision`], [`Recall`] and [`F1`] follow torchmetrics (and
//! scikit-learn's default labels): classes that were neither present nor predicted are
//! left out of the mean. [`ConfusionMatrix`]'s macro averages, below, take every class.
//!
//! # Host-side helpers
//!
//! The helpers count on the host, over `i32` class indices in slices; the functions that
//! take [`Tensor`]s reduce logits to predicted classes on the tensor's device
//! (`argmax(-1)`) and read back only those indices, one `i32` per sample. Counting a few
//! thousand integers is not worth a kernel, and host counts are exact at any size.
//!
//! Conventions follow scikit-learn: confusion-matrix rows are true classes and columns
//! predicted ones; a ratio whose denominator is zero (precision of a class never
//! predicted, recall of a class never present) is 0.0, as `zero_division=0`; macro
//! averages are unweighted means over all `num_classes` classes.
//!
//! ```
//! use wgrad::metrics::{accuracy, ConfusionMatrix};
//! let labels = [0, 0, 1, 1, 2];
//! let predicted = [0, 1, 1, 1, 0];
//! assert_eq!(accuracy(&predicted, &labels), 0.6);
//! let mut cm = ConfusionMatrix::new(3);
//! cm.update(&predicted, &labels);
//! assert_eq!(cm.count(0, 1), 1); // one true 0 predicted as 1
//! assert_eq!(cm.recall(1), 1.0);
//! assert_eq!(cm.precision(2), 0.0); // class 2 was never predicted
//! ```

mod streaming;

use std::fmt::{self, Write};

use crate::tensor::Tensor;

pub use streaming::{
    Accuracy, BinaryAccuracy, LossFn, MeanAbsoluteError, MeanLoss, Metric, Precision, Recall, TopKAccuracy, F1,
};

/// How many predictions equal their labels. Panics when the lengths differ.
pub fn count_correct(predictions: &[i32], labels: &[i32]) -> usize {
    assert_eq!(
        predictions.len(),
        labels.len(),
        "count_correct: {} predictions for {} labels",
        predictions.len(),
        labels.len()
    );
    predictions.iter().zip(labels).filter(|(p, l)| p == l).count()
}

/// The fraction of predictions that equal their labels; 0.0 for no samples. Panics when
/// the lengths differ.
pub fn accuracy(predictions: &[i32], labels: &[i32]) -> f64 {
    ratio(count_correct(predictions, labels) as u64, labels.len() as u64)
}

/// The index of the largest value in each row of `logits`, a row-major `[rows, num_classes]`
/// array: the first on ties, and a NaN counts as largest, as [`Tensor::argmax`] (and
/// PyTorch) decide. Panics when `logits.len()` is not a multiple of `num_classes`.
pub fn argmax_rows(logits: &[f32], num_classes: usize) -> Vec<i32> {
    assert!(
        num_classes > 0 && logits.len().is_multiple_of(num_classes),
        "argmax_rows: {} logits do not split into rows of {num_classes} classes",
        logits.len()
    );
    logits
        .chunks_exact(num_classes)
        .map(|row| {
            let mut best = 0;
            for (i, &x) in row.iter().enumerate() {
                if row[best].is_nan() {
                    break;
                }
                if x.is_nan() || x > row[best] {
                    best = i;
                }
            }
            best as i32
        })
        .collect()
}

/// Accuracy of host logits `[rows, num_classes]` against `rows` labels.
pub fn logits_accuracy(logits: &[f32], num_classes: usize, labels: &[i32]) -> f64 {
    accuracy(&argmax_rows(logits, num_classes), labels)
}

/// The predicted class of each row of `logits` (`[..., num_classes]`, f32): `argmax`
/// over the last axis on the tensor's device, read back as `i32`s.
pub fn predicted_classes(logits: &Tensor) -> Vec<i32> {
    logits.argmax(-1, false).to_vec::<i32>()
}

/// How many rows of `logits` (`[B, num_classes]`) have their largest value at the class
/// in `labels` (`[B]`, i32). Sum it over batches for an epoch's accuracy.
pub fn tensor_count_correct(logits: &Tensor, labels: &Tensor) -> usize {
    count_correct(&predicted_classes(logits), &labels.to_vec::<i32>())
}

/// The accuracy of `logits` (`[B, num_classes]`) against `labels` (`[B]`, i32).
///
/// ```
/// use wgrad::{metrics::tensor_accuracy, Device, Tensor};
/// let dev = Device::cpu();
/// let logits = Tensor::from_slice(&[2.0f32, 1.0, 0.1, 0.9, 0.3, 0.7], &[3, 2], &dev);
/// let labels = Tensor::from_slice(&[0i32, 1, 0], &[3], &dev);
/// assert!((tensor_accuracy(&logits, &labels) - 2.0 / 3.0).abs() < 1e-12);
/// ```
pub fn tensor_accuracy(logits: &Tensor, labels: &Tensor) -> f64 {
    ratio(tensor_count_correct(logits, labels) as u64, labels.numel() as u64)
}

/// `numerator / denominator`, or 0.0 when the denominator is zero.
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Counts of (true class, predicted class) pairs over `num_classes` classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    num_classes: usize,
    /// Row-major `[num_classes, num_classes]`: `counts[t * num_classes + p]` samples of
    /// true class `t` were predicted as `p`.
    counts: Vec<u64>,
    /// Labels for the rows and columns of the printed table; class indices when `None`.
    class_names: Option<Vec<String>>,
}

impl ConfusionMatrix {
    /// An empty matrix over classes `0..num_classes`. Panics when `num_classes` is zero.
    pub fn new(num_classes: usize) -> ConfusionMatrix {
        assert!(num_classes > 0, "ConfusionMatrix::new: num_classes must be at least 1");
        ConfusionMatrix { num_classes, counts: vec![0; num_classes * num_classes], class_names: None }
    }

    /// An empty matrix with one class per name; the names label the printed tables.
    pub fn with_class_names(names: &[&str]) -> ConfusionMatrix {
        let mut cm = ConfusionMatrix::new(names.len());
        cm.class_names = Some(names.iter().map(|n| n.to_string()).collect());
        cm
    }

    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Adds one count per (prediction, label) pair. Panics when the lengths differ or a
    /// class is outside `0..num_classes`.
    pub fn update(&mut self, predictions: &[i32], labels: &[i32]) {
        assert_eq!(
            predictions.len(),
            labels.len(),
            "ConfusionMatrix::update: {} predictions for {} labels",
            predictions.len(),
            labels.len()
        );
        let n = self.num_classes;
        let class = |c: i32, what: &str, i: usize| -> usize {
            assert!(
                c >= 0 && (c as usize) < n,
                "ConfusionMatrix::update: {what} {c} at index {i} is outside the classes 0..{n}"
            );
            c as usize
        };
        for (i, (&p, &l)) in predictions.iter().zip(labels).enumerate() {
            let (t, p) = (class(l, "label", i), class(p, "prediction", i));
            self.counts[t * n + p] += 1;
        }
    }

    /// Adds the predictions of `logits` (`[B, num_classes]`) against `labels` (`[B]`, i32).
    pub fn update_from_logits(&mut self, logits: &Tensor, labels: &Tensor) {
        self.update(&predicted_classes(logits), &labels.to_vec::<i32>());
    }

    /// Forgets every count (to start a new epoch).
    pub fn reset(&mut self) {
        self.counts.fill(0);
    }

    /// How many samples of true class `actual` were predicted as `predicted`.
    pub fn count(&self, actual: usize, predicted: usize) -> u64 {
        self.check_class(actual);
        self.check_class(predicted);
        self.counts[actual * self.num_classes + predicted]
    }

    /// All counts, row-major `[num_classes (true), num_classes (predicted)]`.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// How many samples have been counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// How many samples were predicted correctly: the diagonal.
    pub fn correct(&self) -> u64 {
        (0..self.num_classes).map(|c| self.counts[c * self.num_classes + c]).sum()
    }

    /// `correct / total`; 0.0 before any update.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }

    /// How many samples truly are of `class`: its row sum.
    pub fn support(&self, class: usize) -> u64 {
        self.check_class(class);
        self.counts[class * self.num_classes..(class + 1) * self.num_classes].iter().sum()
    }

    /// How many samples were predicted as `class`: its column sum.
    pub fn predicted(&self, class: usize) -> u64 {
        self.check_class(class);
        (0..self.num_classes).map(|t| self.counts[t * self.num_classes + class]).sum()
    }

    /// Of the samples predicted as `class`, the fraction that are: `TP / (TP + FP)`, 0.0
    /// when `class` was never predicted.
    pub fn precision(&self, class: usize) -> f64 {
        ratio(self.count(class, class), self.predicted(class))
    }

    /// Of the samples of `class`, the fraction predicted as it: `TP / (TP + FN)`, 0.0
    /// when no sample is of `class`.
    pub fn recall(&self, class: usize) -> f64 {
        ratio(self.count(class, class), self.support(class))
    }

    /// The harmonic mean of precision and recall, `2 TP / (2 TP + FP + FN)`; 0.0 when
    /// `class` was neither present nor predicted.
    pub fn f1(&self, class: usize) -> f64 {
        let tp = self.count(class, class);
        let false_positives = self.predicted(class) - tp;
        let false_negatives = self.support(class) - tp;
        ratio(2 * tp, 2 * tp + false_positives + false_negatives)
    }

    /// The unweighted mean of [`precision`](ConfusionMatrix::precision) over all classes.
    pub fn macro_precision(&self) -> f64 {
        self.macro_average(ConfusionMatrix::precision)
    }

    /// The unweighted mean of [`recall`](ConfusionMatrix::recall) over all classes.
    pub fn macro_recall(&self) -> f64 {
        self.macro_average(ConfusionMatrix::recall)
    }

    /// The unweighted mean of the per-class [`f1`](ConfusionMatrix::f1) (not the F1 of
    /// the macro precision and recall), as scikit-learn's `f1_score(average="macro")`.
    pub fn macro_f1(&self) -> f64 {
        self.macro_average(ConfusionMatrix::f1)
    }

    fn macro_average(&self, metric: fn(&ConfusionMatrix, usize) -> f64) -> f64 {
        (0..self.num_classes).map(|c| metric(self, c)).sum::<f64>() / self.num_classes as f64
    }

    /// A per-class table of precision, recall, F1 and support with the macro averages
    /// and the accuracy below it, as scikit-learn's `classification_report`.
    pub fn report(&self) -> String {
        let names: Vec<String> = (0..self.num_classes).map(|c| self.class_name(c)).collect();
        let width = names.iter().map(String::len).chain(["macro avg".len()]).max().unwrap_or(0);
        let mut out = format!("{:>width$}  precision     recall         f1    support\n", "");
        for (c, name) in names.iter().enumerate() {
            let (p, r, f1, support) = (self.precision(c), self.recall(c), self.f1(c), self.support(c));
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{name:>width$}  {p:>9.4}  {r:>9.4}  {f1:>9.4}  {support:>9}");
        }
        let (p, r, f1, total) = (self.macro_precision(), self.macro_recall(), self.macro_f1(), self.total());
        let _ = writeln!(out, "{:>width$}  {p:>9.4}  {r:>9.4}  {f1:>9.4}  {total:>9}", "macro avg");
        let _ = writeln!(out, "{:>width$}  {:>9}  {:>9}  {:>9.4}  {total:>9}", "accuracy", "", "", self.accuracy());
        out
    }

    pub(crate) fn class_name(&self, class: usize) -> String {
        match &self.class_names {
            Some(names) => names[class].clone(),
            None => class.to_string(),
        }
    }

    fn check_class(&self, class: usize) {
        assert!(class < self.num_classes, "ConfusionMatrix: class {class} is outside 0..{}", self.num_classes);
    }
}

/// The matrix as a table with right-aligned columns, true classes down the side and
/// predicted classes across the top:
///
/// ```text
/// true\pred  0  1  2
///         0  1  1  0
///         1  0  2  0
///         2  1  0  0
/// ```
impl fmt::Display for ConfusionMatrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const CORNER: &str = "true\\pred";
        let names: Vec<String> = (0..self.num_classes).map(|c| self.class_name(c)).collect();
        let label_width = names.iter().map(String::len).chain([CORNER.len()]).max().unwrap_or(0);
        let cell_width =
            names.iter().map(String::len).chain(self.counts.iter().map(|c| c.to_string().len())).max().unwrap_or(1);
        write!(f, "{CORNER:>label_width$}")?;
        for name in &names {
            write!(f, "  {name:>cell_width$}")?;
        }
        for (t, name) in names.iter().enumerate() {
            write!(f, "\n{name:>label_width$}")?;
            for p in 0..self.num_classes {
                write!(f, "  {:>cell_width$}", self.counts[t * self.num_classes + p])?;
            }
        }
        Ok(())
    }
}
