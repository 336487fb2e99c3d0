//! Resumable training (its own test binary: an interrupt is process-wide, so no other
//! `fit` may run beside these): a run stopped in the middle of an epoch and resumed from
//! its checkpoint folder reaches the weights of the run that never stopped, bit for bit;
//! a checkpoint that does not fit, or a truncated one, is an error before anything runs.

mod common;

use common::{dev_name, devices, TempDir};
use wgrad::data::{DataLoader, InMemoryDataset};
use wgrad::metrics::Accuracy;
use wgrad::nn::{self, Module};
use wgrad::optim::scheduler::StepLr;
use wgrad::optim::Adam;
use wgrad::train::{Callback, Context, Logs, StepEvery, Trainer};
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
