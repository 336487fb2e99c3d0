//! Accuracy and the confusion matrix, against values worked out by hand.

use wgrad::metrics::{
    accuracy, argmax_rows, count_correct, logits_accuracy, predicted_classes, tensor_accuracy, tensor_count_correct,
    ConfusionMatrix,
};
use wgrad::{Device, Tensor};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

macro_rules! assert_close {
    ($a:expr, $b:expr) => {{
        let (a, b): (f64, f64) = ($a, $b);
        assert!(close(a, b), "{} = {a}, expected {b}", stringify!($a));
    }};
}

/// Ten samples over three classes:
///
/// ```text
/// true\pred  0  1  2   support
///         0  2  1  1   4
///         1  0  2  0   2
///         2  1  1  2   4
/// predicted  3  4  3
/// ```
const LABELS: [i32; 10] = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2];
const PREDICTED: [i32; 10] = [0, 0, 1, 2, 1, 1, 1, 2, 2, 0];

fn worked_example() -> ConfusionMatrix {
    let mut cm = ConfusionMatrix::new(3);
    cm.update(&PREDICTED, &LABELS);
    cm
}

#[test]
fn confusion_matrix_counts_true_rows_and_predicted_columns() {
    let cm = worked_example();
    assert_eq!(cm.num_classes(), 3);
    assert_eq!(cm.counts(), &[2, 1, 1, 0, 2, 0, 1, 1, 2]);
    assert_eq!(cm.count(0, 2), 1);
    assert_eq!(cm.count(2, 0), 1);
    assert_eq!(cm.count(1, 0), 0);
    assert_eq!((cm.total(), cm.correct()), (10, 6));
    assert_eq!([cm.support(0), cm.support(1), cm.support(2)], [4, 2, 4]);
    assert_eq!([cm.predicted(0), cm.predicted(1), cm.predicted(2)], [3, 4, 3]);
    assert_close!(cm.accuracy(), 0.6);
}

#[test]
fn precision_recall_and_f1_per_class() {
    let cm = worked_example();
    // Class 0: TP 2, FP 1 (a true 2), FN 2.
    assert_close!(cm.precision(0), 2.0 / 3.0);
    assert_close!(cm.recall(0), 0.5);
    assert_close!(cm.f1(0), 4.0 / 7.0);
    // Class 1: TP 2, FP 2, FN 0.
    assert_close!(cm.precision(1), 0.5);
    assert_close!(cm.recall(1), 1.0);
    assert_close!(cm.f1(1), 2.0 / 3.0);
    // Class 2: TP 2, FP 1, FN 2.
    assert_close!(cm.precision(2), 2.0 / 3.0);
    assert_close!(cm.recall(2), 0.5);
    assert_close!(cm.f1(2), 4.0 / 7.0);
    // F1 is the harmonic mean of precision and recall.
    for c in 0..3 {
        let (p, r) = (cm.precision(c), cm.recall(c));
        assert_close!(cm.f1(c), 2.0 * p * r / (p + r));
    }
}

#[test]
fn macro_averages_are_unweighted_means_over_classes() {
    let cm = worked_example();
    assert_close!(cm.macro_precision(), 11.0 / 18.0);
    assert_close!(cm.macro_recall(), 2.0 / 3.0);
    // The mean of the per-class F1 scores, not the F1 of the macro precision and recall.
    assert_close!(cm.macro_f1(), 38.0 / 63.0);
    let f1_of_means = 2.0 * (11.0 / 18.0) * (2.0 / 3.0) / (11.0 / 18.0 + 2.0 / 3.0);
    assert!(!close(cm.macro_f1(), f1_of_means));
}

#[test]
fn zero_division_gives_zero() {
    // Four classes: 0 is perfect, 1 is present but never predicted, 2 is predicted but
    // never present, 3 neither.
    let mut cm = ConfusionMatrix::new(4);
    cm.update(&[0, 0, 2, 2], &[0, 0, 1, 1]);
    assert_eq!((cm.precision(0), cm.recall(0), cm.f1(0)), (1.0, 1.0, 1.0));
    // Never predicted: precision 0/0, recall 0/2.
    assert_eq!((cm.precision(1), cm.recall(1), cm.f1(1)), (0.0, 0.0, 0.0));
    // Never present: precision 0/2, recall 0/0.
    assert_eq!((cm.precision(2), cm.recall(2), cm.f1(2)), (0.0, 0.0, 0.0));
    // Neither: every ratio 0/0.
    assert_eq!((cm.precision(3), cm.recall(3), cm.f1(3)), (0.0, 0.0, 0.0));
    // Absent classes still count in the macro averages.
    assert_close!(cm.macro_precision(), 0.25);
    assert_close!(cm.macro_recall(), 0.25);
    assert_close!(cm.macro_f1(), 0.25);
    assert_close!(cm.accuracy(), 0.5);

    let empty = ConfusionMatrix::new(3);
    assert_eq!(empty.total(), 0);
    assert_eq!(
        (empty.accuracy(), empty.macro_precision(), empty.macro_recall(), empty.macro_f1()),
        (0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(accuracy(&[], &[]), 0.0);
}

#[test]
fn updates_accumulate_across_batches_and_reset_clears() {
    let mut cm = ConfusionMatrix::new(3);
    for (p, l) in PREDICTED.chunks(3).zip(LABELS.chunks(3)) {
        cm.update(p, l);
    }
    assert_eq!(cm, worked_example());
    cm.reset();
    assert_eq!(cm, ConfusionMatrix::new(3));
}

#[test]
fn display_prints_an_aligned_table() {
    let expected = "\
true\\pred  0  1  2
        0  2  1  1
        1  0  2  0
        2  1  1  2";
    assert_eq!(worked_example().to_string(), expected);

    // Wide counts widen every column alike.
    let mut cm = ConfusionMatrix::new(2);
    cm.update(&vec![1; 1234], &vec![0; 1234]);
    cm.update(&[1], &[1]);
    let expected = "\
true\\pred     0     1
        0     0  1234
        1     0     1";
    assert_eq!(cm.to_string(), expected);

    // Class names label the rows and columns.
    let mut named = ConfusionMatrix::with_class_names(&["cat", "dog", "axolotl"]);
    named.update(&PREDICTED, &LABELS);
    let expected = "\
true\\pred      cat      dog  axolotl
      cat        2        1        1
      dog        0        2        0
  axolotl        1        1        2";
    assert_eq!(named.to_string(), expected);
}

#[test]
fn report_lists_every_class_and_the_averages() {
    let report = worked_example().report();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 6, "{report}");
    assert_eq!(lines[0], "           precision     recall         f1    support");
    assert_eq!(lines[1], "        0     0.6667     0.5000     0.5714          4");
    assert_eq!(lines[2], "        1     0.5000     1.0000     0.6667          2");
    assert_eq!(lines[4], "macro avg     0.6111     0.6667     0.6032         10");
    assert_eq!(lines[5], " accuracy                           0.6000         10");
}

#[test]
#[should_panic(expected = "label 3 at index 1 is outside the classes 0..3")]
fn a_label_outside_the_classes_is_rejected() {
    ConfusionMatrix::new(3).update(&[0, 0], &[0, 3]);
}

#[test]
#[should_panic(expected = "prediction -1 at index 0 is outside the classes 0..3")]
fn a_negative_prediction_is_rejected() {
    ConfusionMatrix::new(3).update(&[-1], &[0]);
}

#[test]
#[should_panic(expected = "2 predictions for 3 labels")]
fn predictions_and_labels_must_pair_up() {
    ConfusionMatrix::new(3).update(&[0, 1], &[0, 1, 2]);
}

#[test]
fn accuracy_of_predicted_indices() {
    assert_eq!(count_correct(&PREDICTED, &LABELS), 6);
    assert_close!(accuracy(&PREDICTED, &LABELS), 0.6);
    assert_close!(accuracy(&LABELS, &LABELS), 1.0);
    assert_close!(accuracy(&[1, 1], &[0, 0]), 0.0);
}

#[test]
#[should_panic(expected = "count_correct: 1 predictions for 2 labels")]
fn accuracy_needs_one_prediction_per_label() {
    accuracy(&[0], &[0, 1]);
}

#[test]
fn host_argmax_takes_the_first_maximum_and_nan_as_largest() {
    let logits = [
        0.1,
        0.7,
        0.2, // 1
        3.0,
        3.0,
        1.0, // tie: the first
        -5.0,
        -4.0,
        -4.5, // 1
        1.0,
        f32::NAN,
        9.0, // NaN wins
        f32::NAN,
        f32::NAN,
        0.0, // the first NaN
        -1.0,
        -1.0,
        -1.0, // all equal: 0
    ];
    assert_eq!(argmax_rows(&logits, 3), [1, 0, 1, 1, 0, 0]);
    assert_close!(logits_accuracy(&logits, 3, &[1, 0, 2, 1, 0, 2]), 4.0 / 6.0);
    assert!(argmax_rows(&[], 3).is_empty());
}

#[test]
fn host_argmax_agrees_with_the_tensor_argmax() {
    let cpu = Device::cpu();
    // Rounded to tenths so that ties occur, with NaNs sprinkled in.
    let mut values: Vec<f32> = Tensor::randn(&[64, 7], 3, &cpu).to_vec::<f32>();
    for (i, v) in values.iter_mut().enumerate() {
        *v = if i % 53 == 0 { f32::NAN } else { (*v * 2.0).round() / 2.0 };
    }
    let logits = Tensor::from_slice(&values, &[64, 7], &cpu);
    assert_eq!(predicted_classes(&logits), argmax_rows(&values, 7));
}

#[test]
fn tensor_helpers_match_the_host_functions() {
    let cpu = Device::cpu();
    let logits_host: Vec<f32> = Tensor::randn(&[40, 10], 11, &cpu).to_vec::<f32>();
    let logits = Tensor::from_slice(&logits_host, &[40, 10], &cpu);
    let predicted = argmax_rows(&logits_host, 10);
    // Labels that agree with the prediction on every third sample.
    let labels_host: Vec<i32> =
        predicted.iter().enumerate().map(|(i, &p)| if i % 3 == 0 { p } else { (p + 1) % 10 }).collect();
    let labels = Tensor::from_slice(&labels_host, &[40], &cpu);

    assert_eq!(predicted_classes(&logits), predicted);
    assert_eq!(tensor_count_correct(&logits, &labels), 14);
    assert_close!(tensor_accuracy(&logits, &labels), 14.0 / 40.0);

    let mut from_tensors = ConfusionMatrix::new(10);
    from_tensors.update_from_logits(&logits, &labels);
    let mut from_host = ConfusionMatrix::new(10);
    from_host.update(&predicted, &labels_host);
    assert_eq!(from_tensors, from_host);
    assert_eq!(from_tensors.correct(), 14);
}
