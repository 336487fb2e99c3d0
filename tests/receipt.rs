//! Reproducibility receipts: written into a checkpoint's metadata and read back; a run
//! pinned to a receipt's matmul configurations repeats the receipt's run bit for bit; and
//! `verify` measures a GPU run's drift from its CPU replay.
//!
//! The pins and the record of used configurations are process-wide, so the tests here
//! take turns.

use std::sync::Mutex;

use wgrad::gpu::tuning::{used_matmul_configs, with_matmul_config};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Optimizer};
use wgrad::receipt::{hash_tensor, verify, Receipt};
use wgrad::testing::gpu_test_device;
use wgrad::{checkpoint, loss, Device, Tensor};

static TURN: Mutex<()> = Mutex::new(());

/// Three Adam steps of a small MLP from `seed` on fixed batches, on `dev`.
fn run(dev: &Device, seed: u64) -> nn::Sequential {
    let model = nn::Sequential::new()
        .add(nn::Linear::with_seed(24, 36, true, seed, dev))
        .add(nn::ReLU)
        .add(nn::Linear::with_seed(36, 5, true, seed + 1, dev));
    let mut opt = Adam::new(model.parameters(), 1e-2);
    for step in 0..3 {
        let x = Tensor::randn(&[33, 24], 100 + step, &Device::cpu()).to_device(dev);
        let targets: Vec<i32> = (0..33).map(|i| (i * 3 + step as i32) % 5).collect();
        let t = Tensor::from_slice(&targets, &[33], dev);
        let grads = loss::cross_entropy(&model.forward(&x), &t).backward();
        opt.step(&grads);
    }
    model
}

fn bits(model: &nn::Sequential) -> Vec<Vec<u32>> {
    model.parameters().iter().map(|p| p.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn a_checkpoint_carries_its_receipt() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let model = run(&dev, 7);
    let receipt = Receipt::new(&model, &dev, Some(7));
    assert_eq!(receipt.seed, Some(7));
    assert!(receipt.device.contains("driver"), "{receipt:?}");
    assert!(!receipt.matmul_configs.is_empty(), "{receipt:?}");
    let names: Vec<&str> = receipt.hashes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["0.bias", "0.weight", "2.bias", "2.weight"]);

    let path = std::env::temp_dir().join(format!("wgrad-receipt-{}.safetensors", std::process::id()));
    checkpoint::save_with_receipt(&model, &path, &receipt).unwrap();
    let back = checkpoint::load_receipt(&path).unwrap().expect("the receipt was not written");
    assert_eq!(back, receipt);
    // The tensors load as from any checkpoint; one saved without a receipt has none.
    let other = run(&Device::cpu(), 99);
    checkpoint::load(&other, &path).unwrap();
    assert_eq!(hash_tensor(&other.parameters()[0]), hash_tensor(&model.parameters()[0]));
    checkpoint::save(&other, &path).unwrap();
    assert!(checkpoint::load_receipt(&path).unwrap().is_none());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_run_pinned_to_a_receipt_repeats_its_bits() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let ctx = dev.gpu_context().unwrap();
    // The first run with one configuration everywhere, then a run the tuner chooses for
    // (on lavapipe it picks rows8 for these classes).
    let first = with_matmul_config("tile64", || run(&dev, 11));
    let receipt = Receipt::new(&first, &dev, Some(11));
    assert!(receipt.matmul_configs.iter().all(|(_, name)| name == "tile64"), "{receipt:?}");
    let _tuned = run(&dev, 11);
    // Pinned to the receipt, the tuner's own choices give way.
    receipt.pin(&dev).unwrap();
    let again = run(&dev, 11);
    assert_eq!(bits(&again), bits(&first), "a pinned run differs from the receipt's run");
    let used = used_matmul_configs(ctx);
    for (class, name) in &receipt.matmul_configs {
        assert!(
            used.contains(&(class.clone(), "tile64")),
            "{class} ran with another configuration than {name}: {used:?}"
        );
    }
    assert_eq!(Receipt::new(&again, &dev, Some(11)).hashes, receipt.hashes);
    // A receipt of another adapter is refused.
    let foreign = Receipt { adapter_key: "another adapter".into(), ..receipt };
    assert!(foreign.pin(&dev).unwrap_err().to_string().contains("another adapter"));
}

#[test]
fn verify_measures_the_drift_from_the_cpu_replay() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let model = run(&dev, 21);
    let receipt = Receipt::new(&model, &dev, Some(21));
    let drift = verify(&receipt, &model, |cpu| run(cpu, receipt.seed.unwrap()));
    assert!(drift.hashes_match(), "{drift}");
    assert_eq!(drift.parameters.len(), 4, "{drift}");
    // Three Adam steps: rounding differences only, far below the learning rate.
    assert!(drift.max_abs() < 1e-4, "{drift}");
    // A replay from another seed is far away; a hash that differs is reported.
    assert!(verify(&receipt, &model, |cpu| run(cpu, 5)).max_abs() > 1e-2);
    let mut forged = receipt.clone();
    forged.hashes[1].1 = "0".repeat(16);
    let tampered = verify(&forged, &model, |cpu| run(cpu, 21));
    assert!(!tampered.hashes_match(), "{tampered}");
    assert!(tampered.parameters.iter().any(|p| p.name == "0.weight" && !p.hash_matches), "{tampered}");
}

#[test]
fn the_trainers_checkpoints_carry_the_runs_receipt() {
    use wgrad::data::{DataLoader, InMemoryDataset};
    use wgrad::train::{ModelCheckpoint, Trainer};
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::env::temp_dir().join(format!("wgrad-receipt-trainer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let features: Vec<f32> = (0..30 * 4).map(|i| ((i * 37 % 23) as f32 / 11.0) - 1.0).collect();
    let labels: Vec<i32> = (0..30).map(|i| i % 3).collect();
    let data = InMemoryDataset::new(features, &[4], labels);
    let loader = DataLoader::new(&data, 8).shuffle(3);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu_test_device());
    for dev in devices {
        for seed in [Some(42), None] {
            let mut model = nn::Sequential::new().add(nn::Linear::with_seed(4, 3, true, 5, &dev));
            let mut trainer = Trainer::new(Adam::new(model.parameters(), 1e-2), loss::cross_entropy)
                .checkpoint_dir(dir.join("run"))
                .callback(ModelCheckpoint::last(dir.join("last.safetensors")))
                .quiet(true);
            if let Some(seed) = seed {
                trainer = trainer.seed(seed);
            }
            trainer.fit(&mut model, &loader, None, 2, &dev).unwrap();
            let expected = Receipt::new(&model, &dev, seed);
            for file in [dir.join("run").join("model.safetensors"), dir.join("last.safetensors")] {
                let receipt =
                    checkpoint::load_receipt(&file).unwrap().unwrap_or_else(|| panic!("{file:?}: no receipt"));
                assert_eq!(receipt, expected, "{file:?} on {}", dev.info());
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
