//! Streaming metrics on every device: values worked out by hand, several batches against
//! one batch of the concatenated data, the GPU against the CPU, and no read-back in
//! `update`.

mod common;

use wgrad::loss::{self, Reduction};
use wgrad::metrics::{
    Accuracy, BinaryAccuracy, ConfusionMatrix, MeanAbsoluteError, MeanLoss, Metric, Precision, Recall, TopKAccuracy, F1,
};
use wgrad::{Device, Tensor};

fn assert_close(what: &str, got: f64, expected: f64, tol: f64) {
    assert!((got - expected).abs() <= tol, "{what}: got {got}, expected {expected}");
}

/// One-hot logits (with a little noise-free offset) whose argmax is `predicted`.
fn logits_predicting(predicted: &[i32], classes: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; predicted.len() * classes];
    for (i, &p) in predicted.iter().enumerate() {
        for c in 0..classes {
            v[i * classes + c] = -(c as f32) * 0.1;
        }
        v[i * classes + p as usize] = 2.0;
    }
    v
}

/// The worked example of `tests/metrics.rs`, over four classes (class 3 neither occurs
/// nor is predicted, so the macro averages leave it out):
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

fn multiclass_metrics() -> Vec<Box<dyn Metric>> {
    vec![
        Box::new(Accuracy::new()),
        Box::new(TopKAccuracy::new(1)),
        Box::new(TopKAccuracy::new(2)),
        Box::new(Precision::multiclass()),
        Box::new(Recall::multiclass()),
        Box::new(F1::multiclass()),
        Box::new(MeanLoss::new("loss", loss::cross_entropy)),
    ]
}

fn binary_metrics() -> Vec<Box<dyn Metric>> {
    vec![
        Box::new(BinaryAccuracy::from_logits()),
        Box::new(BinaryAccuracy::new(0.5)),
        Box::new(Precision::binary()),
        Box::new(Recall::binary()),
        Box::new(F1::binary()),
        Box::new(MeanLoss::new("bce", |o, t| loss::binary_cross_entropy_with_logits(o, t, None, Reduction::Mean))),
    ]
}

#[test]
fn multiclass_scores_match_the_worked_example() {
    for dev in common::devices("multiclass_scores_match_the_worked_example") {
        let name = common::dev_name(&dev);
        let logits = Tensor::from_slice(&logits_predicting(&PREDICTED, 4), &[10, 4], &dev);
        let labels = Tensor::from_slice(&LABELS, &[10], &dev);
        let expected = [
            ("accuracy", 0.6),
            ("top1_accuracy", 0.6),
            ("precision", (2.0 / 3.0 + 0.5 + 2.0 / 3.0) / 3.0),
            ("recall", (0.5 + 1.0 + 0.5) / 3.0),
            ("f1", (4.0 / 7.0 + 4.0 / 6.0 + 4.0 / 7.0) / 3.0),
        ];
        for mut m in multiclass_metrics() {
            m.update(&logits, &labels);
            if let Some((_, value)) = expected.iter().find(|(n, _)| *n == m.name()) {
                assert_close(&format!("{name} {}", m.name()), m.compute(), *value, 1e-12);
            }
        }
        // The same three classes in the host confusion matrix agree.
        let mut cm = ConfusionMatrix::new(3);
        cm.update(&PREDICTED, &LABELS);
        let mut f1 = F1::multiclass();
        f1.update(&logits, &labels);
        assert_close(&format!("{name} f1 vs ConfusionMatrix"), f1.compute(), cm.macro_f1(), 1e-12);
    }
}

#[test]
fn top_k_ranks_the_label_with_ties_broken_as_argmax() {
    for dev in common::devices("top_k_ranks_the_label_with_ties_broken_as_argmax") {
        let name = common::dev_name(&dev);
        #[rustfmt::skip]
        let logits = [
            0.1f32, 0.9, 0.5, 0.3, // label 2: one larger -> rank 1
            0.7, 0.7, 0.7, 0.1,    // label 2: two equal before it -> rank 2
            0.2, 0.4, 0.4, 0.0,    // label 1: the first of the tie -> rank 0
            0.0, 1.0, 2.0, 3.0,    // label 0: rank 3
        ];
        let logits = Tensor::from_slice(&logits, &[4, 4], &dev);
        let labels = Tensor::from_slice(&[2i32, 2, 1, 0], &[4], &dev);
        for (k, expected) in [(1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0)] {
            let mut m = TopKAccuracy::new(k);
            m.update(&logits, &labels);
            assert_eq!(m.name(), format!("top{k}_accuracy"));
            assert_close(&format!("{name} top{k}"), m.compute(), expected, 1e-12);
        }
        let mut acc = Accuracy::new();
        acc.update(&logits, &labels);
        assert_close(&format!("{name} accuracy with ties"), acc.compute(), 0.25, 1e-12);
    }
}

#[test]
fn binary_scores_match_hand_counts() {
    for dev in common::devices("binary_scores_match_hand_counts") {
        let name = common::dev_name(&dev);
        // Logits [6, 1] (a one-unit head) against targets [6]:
        // predicted 1 1 0 1 0 0, actual 1 0 0 1 1 0 -> TP 2, FP 1, FN 1, TN 2.
        let logits = Tensor::from_slice(&[2.0f32, 0.1, -0.5, 3.0, -2.0, 0.0], &[6, 1], &dev);
        let targets = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0], &[6], &dev);
        let expected = [("precision", 2.0 / 3.0), ("recall", 2.0 / 3.0), ("f1", 4.0 / 6.0)];
        for mut m in
            [Box::new(Precision::binary()) as Box<dyn Metric>, Box::new(Recall::binary()), Box::new(F1::binary())]
        {
            m.update(&logits, &targets);
            let (_, value) = expected.iter().find(|(n, _)| *n == m.name()).unwrap();
            assert_close(&format!("{name} {}", m.name()), m.compute(), *value, 1e-12);
        }
        let mut from_logits = BinaryAccuracy::from_logits();
        from_logits.update(&logits, &targets);
        assert_close(&format!("{name} binary_accuracy"), from_logits.compute(), 4.0 / 6.0, 1e-12);
        // The same scores read as probabilities above 0.5: only 2.0 and 3.0 -> 1 0 0 1 0 0.
        let mut probabilities = BinaryAccuracy::new(0.5);
        probabilities.update(&logits, &targets);
        assert_close(&format!("{name} binary_accuracy@0.5"), probabilities.compute(), 5.0 / 6.0, 1e-12);
        let mut recall = Recall::binary_with_threshold(0.5);
        recall.update(&logits, &targets);
        assert_close(&format!("{name} recall@0.5"), recall.compute(), 2.0 / 3.0, 1e-12);
        let mut precision = Precision::binary_with_threshold(0.5);
        precision.update(&logits, &targets);
        assert_close(&format!("{name} precision@0.5"), precision.compute(), 1.0, 1e-12);
        // No positive predicted and none present: zero_division = 0.
        let mut nothing = Precision::binary();
        nothing.update(&Tensor::from_slice(&[-1.0f32], &[1], &dev), &Tensor::from_slice(&[0.0f32], &[1], &dev));
        assert_eq!(nothing.compute(), 0.0);
    }
}

#[test]
fn mean_absolute_error_and_mean_loss_weight_by_elements_and_batch_size() {
    for dev in common::devices("mean_absolute_error_and_mean_loss_weight_by_elements_and_batch_size") {
        let name = common::dev_name(&dev);
        let mut mae = MeanAbsoluteError::new();
        // [2, 2] with errors 1, 2, 0, 3 and [1, 2] with errors 0.5, 0.5: 7 / 6.
        mae.update(
            &Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2], &dev),
            &Tensor::from_slice(&[0.0f32, 4.0, 3.0, 1.0], &[2, 2], &dev),
        );
        mae.update(&Tensor::from_slice(&[0.5f32, -0.5], &[1, 2], &dev), &Tensor::zeros(&[1, 2], &dev));
        assert_close(&format!("{name} mae"), mae.compute(), 7.0 / 6.0, 1e-6);
        assert!(!mae.higher_is_better());

        let mut mean = MeanLoss::new("loss", loss::cross_entropy);
        mean.record(&Tensor::scalar(0.5, &dev), 6);
        mean.record(&Tensor::from_slice(&[2.0f32], &[1], &dev), 2);
        assert_close(&format!("{name} mean loss"), mean.compute(), (6.0 * 0.5 + 2.0 * 2.0) / 8.0, 1e-6);
        assert_eq!(mean.samples(), 8);
        mean.reset();
        assert_eq!((mean.compute(), mean.samples()), (0.0, 0));
    }
}

/// Cuts `[n, ...]` data into batches of the given sizes.
fn batches(data: &[f32], row: usize, sizes: &[usize]) -> Vec<(Vec<f32>, usize)> {
    let mut start = 0;
    sizes
        .iter()
        .map(|&s| {
            let part = data[start * row..(start + s) * row].to_vec();
            start += s;
            (part, s)
        })
        .collect()
}

/// Every metric fed in batches of 5, 8 and 10 equals the metric of all 23 samples at
/// once, on each device; the GPU's values equal the CPU's.
#[test]
fn streaming_over_batches_equals_one_batch_of_everything() {
    let (n, c) = (23usize, 7usize);
    let sizes = [5, 8, 10];
    let logits = common::uniform_values(n * c, -2.0, 2.0, 3);
    let labels: Vec<i32> = common::uniform_values(n, 0.0, c as f32, 4).iter().map(|v| v.floor() as i32).collect();
    let scores = common::uniform_values(n, -2.0, 2.0, 5);
    let targets: Vec<f32> = common::uniform_values(n, 0.0, 1.0, 6).iter().map(|v| (*v > 0.5) as u8 as f32).collect();
    let regression = common::uniform_values(n * 3, -1.0, 1.0, 7);
    let regression_targets = common::uniform_values(n * 3, -1.0, 1.0, 8);

    let mut per_device: Vec<Vec<(String, f64)>> = Vec::new();
    for dev in common::devices("streaming_over_batches_equals_one_batch_of_everything") {
        let name = common::dev_name(&dev);
        let label_batches: Vec<Tensor> = {
            let mut start = 0;
            sizes
                .iter()
                .map(|&s| {
                    start += s;
                    Tensor::from_slice(&labels[start - s..start], &[s], &dev)
                })
                .collect()
        };
        let run = |make: &dyn Fn() -> Vec<Box<dyn Metric>>,
                   all: (Tensor, Tensor),
                   parts: Vec<(Tensor, Tensor)>,
                   values: &mut Vec<(String, f64)>| {
            for (mut whole, mut streamed) in make().into_iter().zip(make()) {
                whole.update(&all.0, &all.1);
                for (o, t) in &parts {
                    streamed.update(o, t);
                }
                let what = format!("{name} {}", whole.name());
                assert_close(&what, streamed.compute(), whole.compute(), 1e-6);
                values.push((whole.name().to_string(), whole.compute()));
            }
        };
        let mut values = Vec::new();
        let class_parts = batches(&logits, c, &sizes)
            .into_iter()
            .zip(&label_batches)
            .map(|((l, s), t)| (Tensor::from_slice(&l, &[s, c], &dev), t.clone()))
            .collect();
        let all = (Tensor::from_slice(&logits, &[n, c], &dev), Tensor::from_slice(&labels, &[n], &dev));
        run(&multiclass_metrics, all, class_parts, &mut values);

        let binary_parts = batches(&scores, 1, &sizes)
            .into_iter()
            .zip(batches(&targets, 1, &sizes))
            .map(|((o, s), (t, _))| (Tensor::from_slice(&o, &[s], &dev), Tensor::from_slice(&t, &[s], &dev)))
            .collect();
        let all = (Tensor::from_slice(&scores, &[n], &dev), Tensor::from_slice(&targets, &[n], &dev));
        run(&binary_metrics, all, binary_parts, &mut values);

        let mae = || -> Vec<Box<dyn Metric>> { vec![Box::new(MeanAbsoluteError::new())] };
        let regression_parts = batches(&regression, 3, &sizes)
            .into_iter()
            .zip(batches(&regression_targets, 3, &sizes))
            .map(|((o, s), (t, _))| (Tensor::from_slice(&o, &[s, 3], &dev), Tensor::from_slice(&t, &[s, 3], &dev)))
            .collect();
        let all =
            (Tensor::from_slice(&regression, &[n, 3], &dev), Tensor::from_slice(&regression_targets, &[n, 3], &dev));
        run(&mae, all, regression_parts, &mut values);
        per_device.push(values);
    }
    if let [cpu, gpu] = &per_device[..] {
        for ((name, a), (_, b)) in cpu.iter().zip(gpu) {
            assert_close(&format!("gpu vs cpu {name}"), *b, *a, 1e-5);
        }
    }
    // The top-1 accuracy is the accuracy, on data without ties.
    let cpu = &per_device[0];
    let value = |n: &str| cpu.iter().find(|(m, _)| m == n).unwrap().1;
    assert_eq!(value("top1_accuracy"), value("accuracy"));
}

#[test]
fn per_step_outputs_count_every_step() {
    let dev = Device::cpu();
    // [N=1, T=3, C=2] against [1, 3]: steps predict 0, 1, 1 against 0, 0, 1.
    let logits = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.0, 1.0], &[1, 3, 2], &dev);
    let mut acc = Accuracy::new();
    acc.update(&logits, &Tensor::from_slice(&[0i32, 0, 1], &[1, 3], &dev));
    assert_close("per-step accuracy", acc.compute(), 2.0 / 3.0, 1e-12);
}

#[test]
fn reset_forgets_and_directions_are_declared() {
    let dev = Device::cpu();
    for mut m in multiclass_metrics() {
        m.update(&Tensor::from_slice(&[1.0f32, 0.0], &[1, 2], &dev), &Tensor::from_slice(&[0i32], &[1], &dev));
        assert!(m.compute() != 0.0 || m.name() == "loss", "{}", m.name());
        m.reset();
        assert_eq!(m.compute(), 0.0, "{} after reset", m.name());
        assert_eq!(m.higher_is_better(), m.name() != "loss", "{}", m.name());
    }
}

#[test]
#[should_panic(expected = "accuracy: outputs [4, 3] (f32) and targets [3] (i32) do not fit")]
fn accuracy_names_the_mismatched_shapes() {
    let dev = Device::cpu();
    Accuracy::new().update(&Tensor::zeros(&[4, 3], &dev), &Tensor::from_slice(&[0i32, 1, 2], &[3], &dev));
}

#[test]
#[should_panic(expected = "mae: outputs [2, 3] (f32) and targets [3, 2] (f32) must be f32 of the same shape")]
fn mae_names_the_mismatched_shapes() {
    let dev = Device::cpu();
    MeanAbsoluteError::new().update(&Tensor::zeros(&[2, 3], &dev), &Tensor::zeros(&[3, 2], &dev));
}

#[test]
#[should_panic(expected = "binary_accuracy: outputs [4, 2] (f32) and targets [4] (f32) do not fit")]
fn binary_accuracy_names_the_mismatched_shapes() {
    let dev = Device::cpu();
    BinaryAccuracy::from_logits().update(&Tensor::zeros(&[4, 2], &dev), &Tensor::zeros(&[4], &dev));
}

#[test]
#[should_panic(expected = "top5_accuracy: k = 5 but outputs [2, 3] have 3 classes")]
fn top_k_needs_k_classes() {
    let dev = Device::cpu();
    TopKAccuracy::new(5).update(&Tensor::zeros(&[2, 3], &dev), &Tensor::from_slice(&[0i32, 1], &[2], &dev));
}

#[test]
#[should_panic(expected = "recall: label 3 is outside the classes 0..3")]
fn a_label_outside_the_classes_panics_on_the_cpu() {
    let dev = Device::cpu();
    Recall::multiclass().update(&Tensor::zeros(&[2, 3], &dev), &Tensor::from_slice(&[0i32, 3], &[2], &dev));
}

#[test]
fn a_label_outside_the_classes_is_nan_on_the_gpu() {
    let Some(dev) = common::gpu("a_label_outside_the_classes_is_nan_on_the_gpu") else { return };
    let logits = Tensor::zeros(&[2, 3], &dev);
    let labels = Tensor::from_slice(&[0i32, 3], &[2], &dev);
    let mut acc = Accuracy::new();
    acc.update(&logits, &labels);
    assert!(acc.compute().is_nan());
    let mut top2 = TopKAccuracy::new(2);
    top2.update(&logits, &labels);
    assert!(top2.compute().is_nan());
}

/// `update` records kernels and never reads back; `compute` reads back once. Other tests
/// run on the same device at the same time, so the fewest read-backs seen over a few
/// tries is what counts (as in `tests/optim.rs`).
#[test]
fn update_does_not_read_back_on_the_gpu() {
    let Some(dev) = common::gpu("update_does_not_read_back_on_the_gpu") else { return };
    let logits = Tensor::from_slice(&common::uniform_values(8 * 5, -1.0, 1.0, 1), &[8, 5], &dev);
    let labels = Tensor::from_slice(&[0i32, 1, 2, 3, 4, 0, 1, 2], &[8], &dev);
    let scores = Tensor::from_slice(&common::uniform_values(8, -1.0, 1.0, 2), &[8], &dev);
    let targets = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0], &[8], &dev);
    let mut least = u64::MAX;
    for _ in 0..10 {
        let mut metrics = multiclass_metrics();
        let mut binary = binary_metrics();
        let mut mae = MeanAbsoluteError::new();
        dev.synchronize();
        let before = dev.stats().expect("a GPU device counts its work");
        for _ in 0..3 {
            for m in &mut metrics {
                m.update(&logits, &labels);
            }
            for m in &mut binary {
                m.update(&scores, &targets);
            }
            mae.update(&scores, &targets);
        }
        least = least.min((dev.stats().unwrap() - before).read_backs);
        // compute reads back once per metric.
        let before = dev.stats().unwrap();
        let value = metrics[0].compute();
        let work = dev.stats().unwrap() - before;
        assert!(work.read_backs >= 1 && value.is_finite());
        if least == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(least, 0, "read-backs during 3 updates of every metric");
}

#[test]
#[should_panic(expected = "loss: built with MeanLoss::recorded, so it takes losses through record, not update")]
fn a_recorded_mean_loss_has_no_update() {
    let dev = wgrad::Device::cpu();
    let mut m = wgrad::metrics::MeanLoss::recorded("loss");
    m.record(&wgrad::Tensor::scalar(2.0, &dev), 4);
    assert_eq!(wgrad::metrics::Metric::compute(&m), 2.0);
    let t = wgrad::Tensor::zeros(&[1, 2], &dev);
    wgrad::metrics::Metric::update(&mut m, &t, &t);
}
