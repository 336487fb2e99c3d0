//! Resumable training (its own test binary: an interrupt is process-wide, so no other
//! `fit` may run beside these): a run stopped in the middle of an epoch and resumed from
//! its checkpoint folder reaches the weights of the run that never stopped, bit for bit;
//! a checkpoint that does not fit, or a truncated one, is an error before anything runs.

mod common;

use common::{dev_name, devices, TempDir};
use wgrad::amp::{AutocastLinear, GradScaler};
use wgrad::data::transforms::RandomShift;
use wgrad::data::{DataLoader, InMemoryDataset};
use wgrad::metrics::Accuracy;
use wgrad::nn::{self, Module};
use wgrad::optim::scheduler::{self, PlateauMode, StepLr};
use wgrad::optim::Adam;
use wgrad::train::{
    Augmented, Callback, Context, EarlyStopping, Logs, ModelCheckpoint, ReduceLrOnPlateau, StepEvery, Trainer,
};
use wgrad::{loss, Device, Error};

fn data() -> InMemoryDataset {
    let n = 40;
    let features: Vec<f32> = (0..n * 3).map(|i| ((i * 53 % 97) as f32 / 48.0) - 1.0).collect();
    let labels: Vec<i32> = features
        .chunks(3)
        .map(|f| {
            if f[0] > f[1] {
                1
            } else if f[2] > 0.2 {
                2
            } else {
                0
            }
        })
        .collect();
    InMemoryDataset::new(features, &[3], labels)
}

fn model(seed: u64, dev: &Device) -> nn::Sequential {
    nn::Sequential::new().add(nn::Linear::with_seed(3, 6, true, seed, dev)).add(nn::Tanh).add(nn::Linear::with_seed(
        6,
        3,
        true,
        seed + 1,
        dev,
    ))
}

fn trainer(model: &nn::Sequential) -> Trainer {
    Trainer::new(Adam::new(model.parameters(), 0.02).weight_decay(0.01), loss::cross_entropy)
        .metric(Accuracy::new())
        .scheduler(StepLr::new(0.02, 2, 0.5), StepEvery::Epoch)
        .quiet(true)
}

/// The interrupt flag is process-wide: the tests of this binary take turns.
static ONE_FIT_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bits(model: &impl Module) -> Vec<Vec<u32>> {
    model.parameters().iter().map(|p| p.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()).collect()
}

/// Interrupts the run at the end of epoch `at` (so the next epoch stops after its first
/// batch), as Ctrl-C would.
struct InterruptAfter {
    at: usize,
}

impl Callback for InterruptAfter {
    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, _logs: &mut Logs) -> wgrad::Result<()> {
        if ctx.epoch == self.at {
            wgrad::train::interrupt();
        }
        Ok(())
    }
}

#[test]
fn resumed_training_is_bit_identical_and_bad_checkpoints_are_errors() {
    let _turn = ONE_FIT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let data = data();
    for dev in devices("resumed_training_is_bit_identical") {
        let name = dev_name(&dev);
        let loader = DataLoader::new(&data, 8).shuffle(11);
        let dir = TempDir::new("resume");
        let folder = dir.path("run");

        let mut straight = model(1, &dev);
        let full = trainer(&straight).fit(&mut straight, &loader, Some(&loader), 5, &dev).unwrap();

        let mut first = model(1, &dev);
        let mut t = trainer(&first).checkpoint_dir(&folder).callback(InterruptAfter { at: 1 });
        let err = t.fit(&mut first, &loader, Some(&loader), 5, &dev).unwrap_err();
        let Error::Interrupted(message) = &err else { panic!("{name}: {err}") };
        assert!(message.starts_with("training interrupted after batch 1 of epoch 3"), "{message}");
        assert!(message.contains(&folder.display().to_string()), "{message}");
        let files: Vec<String> =
            std::fs::read_dir(&folder).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        for file in ["model.safetensors", "optimizer.safetensors", "history.csv", "progress"] {
            assert!(files.iter().any(|f| f == file), "{name}: {files:?}");
        }

        // A new process: the same model (initialised differently: the checkpoint decides),
        // optimizer and trainer.
        let mut resumed = model(99, &dev);
        let history =
            trainer(&resumed).resume_from(&folder).fit(&mut resumed, &loader, Some(&loader), 5, &dev).unwrap();
        assert_eq!(bits(&resumed), bits(&straight), "{name}: resumed weights differ from the uninterrupted run");
        assert_eq!(history.epochs(), 5);
        assert_eq!(history.get("lr"), full.get("lr"), "{name}");
        assert_eq!(history.get("loss").unwrap()[..2], full.get("loss").unwrap()[..2], "{name}");
        assert_eq!(history.get("val_loss").unwrap()[2..], full.get("val_loss").unwrap()[2..], "{name}");

        // Another model's checkpoint is an error, and nothing trains.
        let other = nn::Sequential::new().add(nn::Linear::with_seed(3, 3, true, 5, &dev));
        let mut other_model = other;
        let before = bits(&other_model);
        let t = Trainer::new(Adam::new(other_model.parameters(), 0.02), loss::cross_entropy).quiet(true);
        let err = t.resume_from(&folder).fit(&mut other_model, &loader, None, 5, &dev).unwrap_err();
        assert!(matches!(err, Error::StateDict { .. }), "{name}: {err}");
        assert_eq!(bits(&other_model), before);

        // A truncated progress file is an error naming it.
        let progress = folder.join("progress");
        let text = std::fs::read_to_string(&progress).unwrap();
        std::fs::write(&progress, &text[..text.len() / 2]).unwrap();
        let mut m = model(1, &dev);
        let err = trainer(&m).resume_from(&folder).fit(&mut m, &loader, None, 5, &dev).unwrap_err();
        assert!(matches!(&err, Error::Format { path, .. } if path.ends_with("progress")), "{name}: {err}");
    }
}

/// 24 images of 4x4 pixels in 3 classes, for a model with dropout fed shifted images.
fn images() -> InMemoryDataset {
    let n = 24;
    let pixels: Vec<f32> = (0..n * 16).map(|i| ((i * 29 % 83) as f32 / 41.0) - 1.0).collect();
    let labels: Vec<i32> = pixels.chunks(16).map(|p| (p[5] + p[6] > 0.0) as i32 + (p[9] > 0.5) as i32).collect();
    InMemoryDataset::new(pixels, &[1, 4, 4], labels)
}

/// Flatten, a half-precision hidden layer, dropout, a read-out: every kind of state a
/// resumed run must carry besides the weights.
fn dropout_model(seed: u64, dev: &Device) -> nn::Sequential {
    nn::Sequential::new()
        .add(nn::Flatten::new())
        .add(AutocastLinear::new(nn::Linear::with_seed(16, 12, true, seed, dev)))
        .add(nn::ReLU)
        .add(nn::Dropout::with_seed(0.4, 7))
        .add(nn::Linear::with_seed(12, 3, true, seed + 1, dev))
}

fn stateful_trainer(model: &nn::Sequential, best: &std::path::Path) -> Trainer {
    Trainer::new(Adam::new(model.parameters(), 0.03), loss::cross_entropy)
        .metric(Accuracy::new())
        .mixed_precision(GradScaler::new().init_scale(1024.0).growth_interval(4))
        .clip_grad_norm(2.0)
        .callback(EarlyStopping::new("val_loss").patience(20).restore_best_weights(true))
        // On a validation value: the training loss of the epoch a run resumes in covers
        // only the batches after the resume point.
        .callback(ReduceLrOnPlateau::new(
            "val_loss",
            scheduler::ReduceLrOnPlateau::new(0.03, PlateauMode::Min).patience(0).factor(0.7),
        ))
        .callback(ModelCheckpoint::best(best, "val_accuracy"))
        .quiet(true)
}

/// Dropout masks, augmentations, the loss scale, early stopping's best weights and the
/// plateau schedule's counters all continue where they were: a resumed run is the
/// uninterrupted one, bit for bit.
#[test]
fn resumed_runs_carry_random_streams_callbacks_and_the_loss_scale() {
    let _turn = ONE_FIT_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let data = images();
    for dev in devices("resumed_runs_carry_random_streams_callbacks_and_the_loss_scale") {
        let name = dev_name(&dev);
        let dir = TempDir::new("resume-state");
        let (folder, best) = (dir.path("run"), dir.path("best.safetensors"));
        let train = Augmented::new(DataLoader::new(&data, 5).shuffle(4), RandomShift::new(1, 1).seed(9));
        let val = DataLoader::new(&data, 24);

        let mut straight = dropout_model(1, &dev);
        let mut t = stateful_trainer(&straight, &best);
        let full = t.fit(&mut straight, &train, Some(&val), 6, &dev).unwrap();
        let full_scale = t.grad_scaler().unwrap().scale_factor();
        let rates = full.get("lr").unwrap();
        assert!(rates.windows(2).any(|w| w[1] < w[0]), "{name}: the plateau never lowered the rate: {rates:?}");

        let mut first = dropout_model(1, &dev);
        let mut t = stateful_trainer(&first, &best).checkpoint_dir(&folder).callback(InterruptAfter { at: 2 });
        let err = t.fit(&mut first, &train, Some(&val), 6, &dev).unwrap_err();
        assert!(matches!(err, Error::Interrupted(_)), "{name}: {err}");
        let progress = std::fs::read_to_string(folder.join("progress")).unwrap();
        for line in [
            "random_stream 3.rng ",
            "grad_scale ",
            "callback EarlyStopping#0 wait ",
            "callback ModelCheckpoint#0 best ",
        ] {
            assert!(progress.contains(line), "{name}: no '{line}' in\n{progress}");
        }
        assert!(folder.join("callbacks.safetensors").exists(), "{name}: the best weights were not saved");

        // Without the interrupting callback (it keeps no state), from another initialisation.
        let mut resumed = dropout_model(50, &dev);
        let mut t = stateful_trainer(&resumed, &best).resume_from(&folder);
        let history = t.fit(&mut resumed, &train, Some(&val), 6, &dev).unwrap();
        assert_eq!(bits(&resumed), bits(&straight), "{name}: the resumed run's weights differ");
        assert_eq!(t.grad_scaler().unwrap().scale_factor(), full_scale, "{name}");
        assert_eq!(history.get("lr"), full.get("lr"), "{name}: the plateau schedule restarted");
        assert_eq!(history.get("val_loss").unwrap()[3..], full.get("val_loss").unwrap()[3..], "{name}");

        // A trainer without the callbacks whose states the checkpoint holds is an error
        // naming them, before anything changes.
        let mut other = dropout_model(50, &dev);
        let before = bits(&other);
        let plain = Trainer::new(Adam::new(other.parameters(), 0.03), loss::cross_entropy).quiet(true);
        let err = plain.resume_from(&folder).fit(&mut other, &train, None, 6, &dev).unwrap_err();
        assert!(matches!(&err, Error::Training(m) if m.contains("EarlyStopping#0")), "{name}: {err}");
        assert_eq!(bits(&other), before, "{name}");

        // A model with other random streams is another model.
        let mut no_dropout = nn::Sequential::new()
            .add(nn::Flatten::new())
            .add(AutocastLinear::new(nn::Linear::with_seed(16, 12, true, 1, &dev)))
            .add(nn::ReLU)
            .add(nn::Linear::with_seed(12, 3, true, 2, &dev));
        let err = stateful_trainer(&no_dropout, &best)
            .resume_from(&folder)
            .fit(&mut no_dropout, &train, None, 6, &dev)
            .unwrap_err();
        assert!(matches!(err, Error::StateDict { .. }), "{name}: {err}");
    }
}
