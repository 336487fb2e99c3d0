//! The library's training loop, on the CPU and on the GPU: `fit` takes exactly the steps a
//! hand-written loop takes, its history holds the right means, callbacks stop, restore,
//! save and log, gradient accumulation equals a larger batch, and bad input is an error.

mod common;

use common::{dev_name, devices, TempDir};
use wgrad::data::{DataLoader, InMemoryDataset};
use wgrad::metrics::Accuracy;
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::scheduler::StepLr;
use wgrad::optim::{Adam, Optimizer, Sgd};
use wgrad::train::{
    Callback, Context, CsvLogger, EarlyStopping, JsonLogger, Logs, ModelCheckpoint, Monitor, StepEvery, Trainer,
};
use wgrad::{checkpoint, loss, Device, Error, Tensor};

/// 48 points of 3 features in 3 classes, the class a function of the features.
fn data() -> InMemoryDataset {
    let n = 48;
    let features: Vec<f32> = (0..n * 3).map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0).collect();
    let labels: Vec<i32> = features
        .chunks(3)
        .map(|f| {
            if f[0] + f[1] > 0.3 {
                2
            } else if f[2] > 0.0 {
                1
            } else {
                0
            }
        })
        .collect();
    InMemoryDataset::new(features, &[3], labels)
}

fn model(dev: &Device) -> nn::Sequential {
    nn::Sequential::new()
        .add(nn::Linear::with_seed(3, 8, true, 1, dev))
        .add(nn::ReLU)
        .add(nn::Linear::with_seed(8, 3, true, 2, dev))
}

fn values(model: &impl Module) -> Vec<Vec<f32>> {
    model.parameters().iter().map(|p| p.to_vec::<f32>()).collect()
}

/// `fit` is the hand-written loop: the same parameters after the same steps, bit for bit,
/// and the history's loss is the sample-weighted mean of the batch losses.
#[test]
fn fit_takes_the_steps_a_hand_written_loop_takes() {
    let data = data();
    for dev in devices("fit_takes_the_steps_a_hand_written_loop_takes") {
        let loader = DataLoader::new(&data, 10).shuffle(3);
        let mut fitted = model(&dev);
        let mut trainer = Trainer::new(Adam::new(fitted.parameters(), 0.01), loss::cross_entropy)
            .metric(Accuracy::new())
            .scheduler(StepLr::new(0.01, 1, 0.5), StepEvery::Epoch)
            .quiet(true);
        let history = trainer.fit(&mut fitted, &loader, Some(&loader), 3, &dev).unwrap();

        let by_hand = model(&dev);
        let mut opt = Adam::new(by_hand.parameters(), 0.01);
        let mut epoch_losses = Vec::new();
        for epoch in 0..3 {
            let (mut sum, mut n) = (0.0f64, 0usize);
            for (x, y) in loader.batches(epoch, &dev) {
                let loss = loss::cross_entropy(&by_hand.forward(&x), &y);
                sum += loss.item() as f64 * y.dim(0) as f64;
                n += y.dim(0);
                opt.step(&loss.backward());
            }
            epoch_losses.push(sum / n as f64);
            opt.set_lr(0.01 * 0.5f32.powi(epoch as i32 + 1));
        }
        assert_eq!(values(&fitted), values(&by_hand), "{}", dev_name(&dev));
        let logged = history.get("loss").unwrap();
        for (a, b) in logged.iter().zip(&epoch_losses) {
            assert!((a - b).abs() < 1e-6 * b.abs().max(1.0), "{}: {logged:?} vs {epoch_losses:?}", dev_name(&dev));
        }
        assert_eq!(history.get("lr").unwrap(), [0.01f32 as f64, 0.005f32 as f64, 0.0025f32 as f64]);
        assert_eq!(history.epochs(), 3);
        let names: Vec<&str> = history.names().collect();
        assert_eq!(names, ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]);
        // Validation ran in evaluation mode on the final weights of each epoch.
        let logits = wgrad::no_grad(|| fitted.forward(&Tensor::from_slice(data.features(), &[48, 3], &dev)));
        let expected = wgrad::metrics::tensor_accuracy(&logits, &Tensor::from_slice(data.labels(), &[48], &dev));
        assert!((history.last("val_accuracy").unwrap() - expected).abs() < 1e-12);
    }
}

/// Puts a scripted value into each epoch's logs and records the model's state.
struct Script {
    scores: Vec<f64>,
    states: Vec<Vec<Vec<f32>>>,
}

impl Callback for Script {
    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> wgrad::Result<()> {
        logs.insert("score".into(), self.scores[ctx.epoch]);
        self.states.push(ctx.model.parameters().iter().map(|p| p.to_vec::<f32>()).collect());
        Ok(())
    }
}

#[test]
fn early_stopping_stops_after_its_patience_and_restores_the_best_weights() {
    let data = data();
    let dev = Device::cpu();
    let loader = DataLoader::new(&data, 16);
    let mut m = model(&dev);
    let script = std::rc::Rc::new(std::cell::RefCell::new(Script {
        scores: vec![0.1, 0.5, 0.9, 0.8, 0.7, 0.95, 0.99],
        states: Vec::new(),
    }));
    struct Shared(std::rc::Rc<std::cell::RefCell<Script>>);
    impl Callback for Shared {
        fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> wgrad::Result<()> {
            self.0.borrow_mut().on_epoch_end(ctx, logs)
        }
    }
    let mut trainer = Trainer::new(Sgd::new(m.parameters(), 0.1), loss::cross_entropy)
        .callback(Shared(script.clone()))
        .callback(EarlyStopping::new("score").mode(Monitor::Max).patience(1).restore_best_weights(true))
        .quiet(true);
    let history = trainer.fit(&mut m, &loader, None, 7, &dev).unwrap();
    // Best at epoch 2 (0.9); epochs 3 and 4 do not improve; patience 1 stops after epoch 4.
    assert_eq!(history.epochs(), 5);
    assert_eq!(history.get("score").unwrap(), [0.1, 0.5, 0.9, 0.8, 0.7]);
    assert_eq!(values(&m), script.borrow().states[2], "the weights of the best epoch are back");
    assert_ne!(script.borrow().states[4], script.borrow().states[2]);
}

#[test]
fn checkpoints_and_csv_history_are_written() {
    let data = data();
    let dev = Device::cpu();
    let dir = TempDir::new("train");
    let (best, csv, json) = (dir.path("best.safetensors"), dir.path("history.csv"), dir.path("history.json"));
    let loader = DataLoader::new(&data, 16);
    let mut m = model(&dev);
    let mut trainer = Trainer::new(Adam::new(m.parameters(), 0.05), loss::cross_entropy)
        .callback(ModelCheckpoint::best(&best, "val_loss"))
        .callback(CsvLogger::new(&csv))
        .callback(JsonLogger::new(&json))
        .quiet(true);
    let history = trainer.fit(&mut m, &loader, Some(&loader), 4, &dev).unwrap();
    let json_text = std::fs::read_to_string(&json).unwrap();
    assert_eq!(json_text, history.to_json());
    assert!(json_text.starts_with("{\"epochs\": 4, \"loss\": ["), "{json_text}");
    // The CSV reads back as the same history.
    assert_eq!(wgrad::train::History::from_csv(&history.to_csv()).unwrap(), history);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,loss,lr,val_loss");
    assert_eq!(lines.len(), 5);
    assert_eq!(text, history.to_csv());
    // The saved model is the one of the epoch with the lowest validation loss.
    let val = history.get("val_loss").unwrap();
    let best_epoch = (0..4).min_by(|&a, &b| val[a].total_cmp(&val[b])).unwrap();
    let saved = model(&dev);
    checkpoint::load(&saved, &best).unwrap();
    let mut eval = Trainer::new(Sgd::new(saved.parameters(), 0.1), loss::cross_entropy);
    let mut saved = saved;
    let logs = eval.evaluate(&mut saved, &loader, &dev).unwrap();
    assert!((logs["loss"] - val[best_epoch]).abs() < 1e-9, "{logs:?} vs {val:?}");
}

/// Summing the gradients of two batches of 8 (each loss halved) is one batch of 16.
#[test]
fn accumulating_gradients_equals_a_larger_batch() {
    let data = data();
    for dev in devices("accumulating_gradients_equals_a_larger_batch") {
        let mut small = model(&dev);
        let mut large = model(&dev);
        let mut a = Trainer::new(Sgd::new(small.parameters(), 0.1), loss::cross_entropy).accumulate(2).quiet(true);
        let mut b = Trainer::new(Sgd::new(large.parameters(), 0.1), loss::cross_entropy).quiet(true);
        a.fit(&mut small, &DataLoader::new(&data, 8), None, 2, &dev).unwrap();
        b.fit(&mut large, &DataLoader::new(&data, 16), None, 2, &dev).unwrap();
        assert_eq!(a.optimizer().lr(), 0.1);
        for (x, y) in values(&small).iter().zip(values(&large)) {
            wgrad::testing::compare(x, &y, common::within(1e-6, 1e-5)).unwrap();
        }
    }
}

#[test]
fn predict_returns_every_output_in_order() {
    let data = data();
    for dev in devices("predict_returns_every_output_in_order") {
        let mut m = model(&dev);
        let out = Trainer::predict(&mut m, &DataLoader::new(&data, 20), &dev).unwrap();
        assert_eq!(out.shape(), &[48, 3]);
        let all = m.forward(&Tensor::from_slice(data.features(), &[48, 3], &dev));
        // Batches of 20 against one of 48: the GEMM blocks differently, so a few ulp.
        wgrad::testing::compare(&out.to_vec::<f32>(), &all.to_vec::<f32>(), common::within(1e-6, 1e-6))
            .unwrap_or_else(|e| panic!("{}: {e}", dev_name(&dev)));
        assert!(!m.is_training());
    }
}

#[test]
fn bad_input_is_an_error() {
    let data = data();
    let empty = InMemoryDataset::new(Vec::new(), &[3], Vec::new());
    let dev = Device::cpu();
    let mut m = model(&dev);
    let mut trainer = Trainer::new(Sgd::new(m.parameters(), 0.1), loss::cross_entropy)
        .callback(EarlyStopping::new("val_acuracy"))
        .quiet(true);
    let err = trainer.fit(&mut m, &DataLoader::new(&empty, 4), None, 1, &dev).unwrap_err();
    assert!(matches!(&err, Error::Training(m) if m == "fit: the training loader has no batches"), "{err}");
    let loader = DataLoader::new(&data, 16);
    let err = trainer.fit(&mut m, &loader, Some(&loader), 2, &dev).unwrap_err();
    assert_eq!(
        err.to_string(),
        "EarlyStopping: no value named 'val_acuracy' this epoch; the values are: loss, lr, val_loss"
    );
}

/// A loss that becomes NaN or infinite stops `fit` with an error naming the epoch and the
/// batch, unless allowed.
#[test]
fn a_nonfinite_loss_stops_fit() {
    let data = data();
    let dev = Device::cpu();
    let loader = DataLoader::new(&data, 8);
    let mut m = model(&dev);
    let mut trainer = Trainer::new(Sgd::new(m.parameters(), 1e30), loss::cross_entropy).refresh_every(1).quiet(true);
    let err = trainer.fit(&mut m, &loader, None, 3, &dev).unwrap_err();
    let message = err.to_string();
    let Error::NonFiniteLoss { loss, epoch: 1, epochs: 3, step, steps: 6 } = err else { panic!("{message}") };
    assert!(!loss.is_finite() && step <= 2, "{message}");
    assert!(message.starts_with("the training loss became "), "{message}");
    assert!(message.contains(&format!("at epoch 1/3, step {step}/6 ")), "{message}");
    let mut m = model(&dev);
    let mut allowed =
        Trainer::new(Sgd::new(m.parameters(), 1e30), loss::cross_entropy).allow_nonfinite_loss(true).quiet(true);
    let history = allowed.fit(&mut m, &loader, None, 2, &dev).unwrap();
    assert!(!history.last("loss").unwrap().is_finite());
}

/// A model whose input is more than a tensor: token ids with each text's length, from a
/// `TextLoader`, trained and evaluated by the same `fit`.
#[test]
fn fit_trains_a_model_whose_input_is_token_ids_with_lengths() {
    use wgrad::data::text::{TextDataset, TextLoader, Vocab, VocabOptions};
    use wgrad::metrics::BinaryAccuracy;

    #[derive(Module)]
    struct BagOfEmbeddings {
        embedding: nn::Embedding,
        head: nn::Linear,
    }
    impl Forward<(Tensor, Vec<usize>)> for BagOfEmbeddings {
        fn forward(&self, (tokens, lengths): &(Tensor, Vec<usize>)) -> Tensor {
            // Padding embeds to zero, so the sum over positions divided by the length is the mean.
            let counts: Vec<f32> = lengths.iter().map(|&l| 1.0 / l as f32).collect();
            let inverse = Tensor::from_slice(&counts, &[lengths.len(), 1], tokens.device());
            let mean = self.embedding.forward(tokens).sum(&[1], false).mul(&inverse);
            self.head.forward(&mean).reshape(&[-1])
        }
    }

    let texts = ["good fine great", "bad awful", "great good", "awful bad bad", "fine", "bad"];
    let samples: Vec<(String, f32)> =
        (0..24).map(|i| (texts[i % 6].to_string(), [1.0, 0.0, 1.0, 0.0, 1.0, 0.0][i % 6])).collect();
    let data = TextDataset::new(samples);
    let vocab = Vocab::build(data.texts(), VocabOptions::new());
    for dev in devices("fit_trains_a_model_whose_input_is_token_ids_with_lengths") {
        let name = dev_name(&dev);
        let mut model = BagOfEmbeddings {
            embedding: nn::Embedding::new(vocab.len(), 4, &dev).padding_idx(Some(Vocab::PAD as isize)),
            head: nn::Linear::with_seed(4, 1, true, 3, &dev),
        };
        let loader = TextLoader::new(&data, &vocab, 5).shuffle(1);
        let bce = |z: &Tensor, y: &Tensor| loss::binary_cross_entropy_with_logits(z, y, None, loss::Reduction::Mean);
        let mut trainer =
            Trainer::new(Adam::new(model.parameters(), 0.1), bce).metric(BinaryAccuracy::from_logits()).quiet(true);
        let history = trainer.fit(&mut model, &loader, Some(&loader), 15, &dev).unwrap();
        assert_eq!(history.last("val_binary_accuracy"), Some(1.0), "{name}: {history:?}");
        let logits = Trainer::predict(&mut model, &TextLoader::new(&data, &vocab, 7), &dev).unwrap();
        assert_eq!(logits.shape(), &[24], "{name}");
    }
}

/// An augmented loader applies its transform to batch `b` of epoch `e` as call
/// `e * batches + b`, whichever epoch is asked for first.
#[test]
fn augmented_batches_depend_only_on_where_they_fall() {
    use wgrad::data::transforms::{RandomShift, Transform};
    use wgrad::train::{Augmented, Loader};
    let dev = Device::cpu();
    let pixels: Vec<f32> = (0..6 * 25).map(|i| i as f32).collect();
    let data = InMemoryDataset::new(pixels, &[1, 5, 5], vec![0; 6]);
    let plain = DataLoader::new(&data, 4).shuffle(2);
    let augmented = Augmented::new(DataLoader::new(&data, 4).shuffle(2), RandomShift::new(1, 1).seed(8));
    assert_eq!((augmented.num_batches(), augmented.num_samples()), (2, 6));
    let later: Vec<Vec<f32>> = augmented.batches_of_epoch(3, &dev).map(|(x, _)| x.to_vec()).collect();
    let _first: Vec<_> = augmented.batches_of_epoch(0, &dev).collect();
    let mut shift = RandomShift::new(1, 1).seed(8);
    for (b, (x, _)) in plain.batches(3, &dev).enumerate() {
        shift.set_calls(3 * 2 + b as u64);
        assert_eq!(shift.apply(&x).to_vec::<f32>(), later[b], "batch {b}");
    }
    assert_ne!(later[0], plain.batches(3, &dev).next().unwrap().0.to_vec::<f32>(), "nothing was shifted");
}

/// `mixed_precision` is the hand-written `GradScaler` loop: scale, backward, unscale and
/// step (skipped on overflow), update; the same weights and the same final scale.
#[test]
fn mixed_precision_takes_the_steps_of_a_grad_scaler_loop() {
    use wgrad::amp::{AutocastLinear, GradScaler};
    let data = data();
    for dev in devices("mixed_precision_takes_the_steps_of_a_grad_scaler_loop") {
        let name = dev_name(&dev);
        let half_model = || {
            nn::Sequential::new()
                .add(AutocastLinear::new(nn::Linear::with_seed(3, 8, true, 1, &dev)))
                .add(nn::ReLU)
                .add(AutocastLinear::new(nn::Linear::with_seed(8, 3, true, 2, &dev)))
        };
        // A scale so large that the first steps overflow and are skipped.
        let scaler = || GradScaler::new().init_scale(1e38).growth_interval(2);
        let loader = DataLoader::new(&data, 8).shuffle(5);

        let mut fitted = half_model();
        let mut trainer = Trainer::new(Adam::new(fitted.parameters(), 0.01), loss::cross_entropy)
            .mixed_precision(scaler())
            .quiet(true);
        trainer.fit(&mut fitted, &loader, None, 2, &dev).unwrap();

        let by_hand = half_model();
        let mut opt = Adam::new(by_hand.parameters(), 0.01);
        let mut s = scaler();
        let mut skipped = 0;
        for epoch in 0..2 {
            for (x, y) in loader.batches(epoch, &dev) {
                let loss = loss::cross_entropy(&by_hand.forward(&x), &y);
                let mut grads = s.scale(&loss).backward();
                skipped += !s.step(&mut opt, &mut grads) as usize;
                s.update();
            }
        }
        assert!(skipped > 0, "{name}: no step overflowed, so skipping is untested");
        assert_eq!(values(&fitted), values(&by_hand), "{name}");
        assert_eq!(trainer.grad_scaler().unwrap().scale_factor(), s.scale_factor(), "{name}");
    }
}

/// The other process of a pretend world of two, for `evaluate`: its sums are given.
struct OtherProcess {
    sums: Vec<f64>,
}

impl wgrad::train::DataParallel for OtherProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        2
    }
    fn backward(&mut self, loss: &Tensor) -> wgrad::Gradients {
        loss.backward()
    }
    fn average_gradients(&mut self, _grads: &mut wgrad::Gradients) {}
    fn sum(&mut self, values: &mut [f64]) {
        assert_eq!(values.len(), self.sums.len(), "another number of values to sum");
        for (v, o) in values.iter_mut().zip(&self.sums) {
            *v += o;
        }
    }
    fn gather(&mut self, value: u64) -> Vec<u64> {
        vec![value, value]
    }
}

/// In a data-parallel run `evaluate` returns the mean over the processes' shares,
/// weighted by their samples: what one process evaluating all of the data returns.
#[test]
fn evaluate_averages_over_the_data_parallel_processes() {
    let data = data();
    let dev = Device::cpu();
    let (first, second) =
        (wgrad::data::Subset::new(&data, (0..30).collect()), wgrad::data::Subset::new(&data, (30..48).collect()));
    let evaluate = |d: &dyn wgrad::train::Loader, dp: Option<OtherProcess>| {
        let mut m = model(&dev);
        let mut t =
            Trainer::new(Sgd::new(m.parameters(), 0.1), loss::cross_entropy).metric(Accuracy::new()).quiet(true);
        if let Some(dp) = dp {
            t = t.data_parallel(dp);
        }
        t.evaluate(&mut m, d, &dev).unwrap()
    };
    let whole = evaluate(&DataLoader::new(&data, 7), None);
    let theirs = evaluate(&DataLoader::new(&second, 7), None);
    // The other process's sums, in the order of the names: accuracy, loss, samples.
    let sums = vec![theirs["accuracy"] * 18.0, theirs["loss"] * 18.0, 18.0];
    let averaged = evaluate(&DataLoader::new(&first, 7), Some(OtherProcess { sums }));
    for name in ["accuracy", "loss"] {
        assert!((averaged[name] - whole[name]).abs() < 1e-6, "{name}: {} against {}", averaged[name], whole[name]);
    }
}

/// Counts the samples gathered, over [`data`].
struct CountingSamples {
    data: InMemoryDataset,
    gathered: std::rc::Rc<std::cell::Cell<usize>>,
}

impl wgrad::data::Samples for CountingSamples {
    fn sample_count(&self) -> usize {
        wgrad::data::Samples::sample_count(&self.data)
    }
    fn input_shape(&self) -> &[usize] {
        wgrad::data::Samples::input_shape(&self.data)
    }
    fn target_shape(&self) -> &[usize] {
        wgrad::data::Samples::target_shape(&self.data)
    }
    fn target_dtype(&self) -> wgrad::DType {
        wgrad::data::Samples::target_dtype(&self.data)
    }
    fn append_pair(&self, index: usize, inputs: &mut wgrad::data::HostBuffer, targets: &mut wgrad::data::HostBuffer) {
        self.gathered.set(self.gathered.get() + 1);
        self.data.append_pair(index, inputs, targets);
    }
}

/// Counts the batches transformed, and remembers each call number.
#[derive(Default)]
struct CountingTransform {
    calls: std::rc::Rc<std::cell::RefCell<Vec<u64>>>,
    next: u64,
}

impl wgrad::data::transforms::Transform for CountingTransform {
    fn apply(&mut self, batch: &Tensor) -> Tensor {
        self.calls.borrow_mut().push(self.next);
        self.next += 1;
        batch.affine(1.0, self.next as f32)
    }
    fn set_calls(&mut self, calls: u64) {
        self.next = calls;
    }
}

/// A resumed run skips the batches before its resume point without gathering or
/// transforming them, and gets the same batches the whole epoch has from there.
#[test]
fn skipped_batches_are_neither_gathered_nor_transformed() {
    use wgrad::train::{Augmented, Loader};
    let dev = Device::cpu();
    let gathered = std::rc::Rc::new(std::cell::Cell::new(0));
    let loader = DataLoader::new(CountingSamples { data: data(), gathered: gathered.clone() }, 10).shuffle(5);
    let transform = CountingTransform::default();
    let calls = transform.calls.clone();
    let augmented = Augmented::new(&loader, transform);
    let all: Vec<(usize, Vec<f32>)> =
        augmented.batches_of_epoch(2, &dev).enumerate().map(|(i, (x, _))| (i, x.to_vec::<f32>())).collect();
    assert_eq!(all.len(), 5);
    gathered.set(0);
    let rest: Vec<(usize, Vec<f32>)> =
        augmented.batches_of_epoch(2, &dev).enumerate().skip(3).map(|(i, (x, _))| (i, x.to_vec::<f32>())).collect();
    assert_eq!(rest, all[3..], "the batches after the skip differ from the whole epoch's");
    // 48 samples in batches of 10: the last two batches hold 10 and 8.
    assert_eq!(gathered.get(), 18, "skipped batches were gathered");
    // Five calls for the whole epoch 2 (calls 10 to 14), then the last two again.
    assert_eq!(*calls.borrow(), vec![10, 11, 12, 13, 14, 13, 14]);
}
