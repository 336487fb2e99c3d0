//! Optimizer state: a run that stops after 3 steps, saves the model and the optimizer,
//! and continues with a fresh model and a fresh optimizer must end bit-identical to a run
//! of 6 steps straight, for every optimizer, on the CPU and on the GPU device, in memory
//! and through files. A state that does not fit is an error that changes nothing.

use wgrad::loss::{self, Reduction};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::scheduler::{ExponentialLr, LrScheduler};
use wgrad::optim::{Adagrad, Adam, AdamW, Optimizer, OptimizerState, RmsProp, Sgd};
use wgrad::{checkpoint, Device, Error, Tensor};

mod common;
use common::TempDir;
use common::{dev_name, devices, randn};

type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

/// Every optimizer with the options that give it the most state.
const OPTIMIZERS: [(&str, Make); 7] = [
    ("sgd-momentum", |p| Box::new(Sgd::new(p, 0.05).momentum(0.9).dampening(0.1).weight_decay(1e-3))),
    ("sgd-nesterov", |p| Box::new(Sgd::new(p, 0.05).momentum(0.9).nesterov(true))),
    ("adam", |p| Box::new(Adam::new(p, 0.01).weight_decay(1e-3))),
    ("adamw", |p| Box::new(AdamW::new(p, 0.01))),
    ("rmsprop-momentum", |p| Box::new(RmsProp::new(p, 0.01).momentum(0.9))),
    ("rmsprop-centered", |p| Box::new(RmsProp::new(p, 0.01).momentum(0.5).centered(true))),
    ("adagrad", |p| Box::new(Adagrad::new(p, 0.05).lr_decay(0.01).initial_accumulator_value(0.1))),
];

/// A tiny MLP whose initial weights come from `seed`.
fn model(seed: u64, dev: &Device) -> nn::Sequential {
    wgrad::manual_seed(seed);
    nn::Sequential::new().add(nn::Linear::new(3, 4, dev)).add(nn::Tanh).add(nn::Linear::new(4, 2, dev))
}

/// The fixed batch every step trains on.
fn batch(dev: &Device) -> (Tensor, Tensor) {
    (randn(&[5, 3], 11, dev), randn(&[5, 2], 12, dev))
}

fn train(model: &nn::Sequential, opt: &mut dyn Optimizer, steps: usize, dev: &Device) {
    let (x, y) = batch(dev);
    for _ in 0..steps {
        let loss = loss::mse_loss(&model.forward(&x), &y, Reduction::Mean);
        opt.step(&loss.backward());
    }
}

fn bits(model: &nn::Sequential) -> Vec<Vec<u32>> {
    model.parameters().iter().map(|p| p.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()).collect()
}

/// One parameter's step and its state tensors as bits.
type ParamBits = (u64, Vec<(String, Vec<u32>)>);

/// Every state tensor as bits, for comparing two states exactly.
fn state_bits(state: &OptimizerState) -> Vec<Option<ParamBits>> {
    state
        .params
        .iter()
        .map(|p| {
            p.as_ref().map(|p| {
                let tensors = p
                    .tensors
                    .iter()
                    .map(|(n, t)| (n.clone(), t.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()))
                    .collect();
                (p.step, tensors)
            })
        })
        .collect()
}

/// The parameters after 6 steps straight.
fn straight(make: Make, dev: &Device) -> Vec<Vec<u32>> {
    let m = model(1, dev);
    let mut opt = make(m.parameters());
    train(&m, opt.as_mut(), 6, dev);
    bits(&m)
}

#[test]
fn resume_in_memory_is_bit_identical() {
    for dev in devices("resume_in_memory_is_bit_identical") {
        let dir = TempDir::new(&format!("memory-{}", dev_name(&dev)));
        for (name, make) in OPTIMIZERS {
            let expected = straight(make, &dev);

            let m = model(1, &dev);
            let mut opt = make(m.parameters());
            train(&m, opt.as_mut(), 3, &dev);
            let state = opt.state_dict();
            checkpoint::save(&m, dir.path("model.safetensors")).unwrap();
            drop((m, opt));

            let m = model(2, &dev); // other initial weights, overwritten by the load
            checkpoint::load(&m, dir.path("model.safetensors")).unwrap();
            let mut opt = make(m.parameters());
            opt.load_state_dict(&state).unwrap();
            assert_eq!(state_bits(&opt.state_dict()), state_bits(&state), "{name} on {}", dev_name(&dev));
            train(&m, opt.as_mut(), 3, &dev);
            assert_eq!(bits(&m), expected, "{name} on {}: resumed run differs from the straight run", dev_name(&dev));
        }
    }
}

/// `state_dict` is a copy: steps after it change the optimizer, not the returned state.
#[test]
fn a_state_dict_is_a_snapshot() {
    for dev in devices("a_state_dict_is_a_snapshot") {
        for (name, make) in OPTIMIZERS {
            let m = model(1, &dev);
            let mut opt = make(m.parameters());
            train(&m, opt.as_mut(), 3, &dev);
            let state = opt.state_dict();
            let taken = state_bits(&state);
            train(&m, opt.as_mut(), 2, &dev);
            assert_eq!(state_bits(&state), taken, "{name} on {}: later steps changed the state dict", dev_name(&dev));
            assert_ne!(
                state_bits(&opt.state_dict()),
                taken,
                "{name} on {}: the steps changed no state",
                dev_name(&dev)
            );
        }
    }
}

#[test]
fn resume_through_files_is_bit_identical() {
    for dev in devices("resume_through_files_is_bit_identical") {
        let dir = TempDir::new(&format!("files-{}", dev_name(&dev)));
        for (name, make) in OPTIMIZERS {
            let expected = straight(make, &dev);

            let m = model(1, &dev);
            let mut opt = make(m.parameters());
            train(&m, opt.as_mut(), 3, &dev);
            checkpoint::save(&m, dir.path("model.safetensors")).unwrap();
            checkpoint::save_optimizer(opt.as_ref(), dir.path("optim.safetensors")).unwrap();
            drop((m, opt));

            let m = model(2, &dev);
            checkpoint::load(&m, dir.path("model.safetensors")).unwrap();
            let mut opt = make(m.parameters());
            checkpoint::load_optimizer(opt.as_mut(), dir.path("optim.safetensors")).unwrap();
            train(&m, opt.as_mut(), 3, &dev);
            assert_eq!(bits(&m), expected, "{name} on {}: resumed run differs from the straight run", dev_name(&dev));
        }
    }
}

/// The file holds PyTorch's state names and the scalars in its metadata.
#[test]
fn file_layout() {
    let dev = Device::cpu();
    let dir = TempDir::new("layout");
    let m = model(1, &dev);
    let mut opt = Adam::new(m.parameters(), 0.01);
    train(&m, &mut opt, 2, &dev);
    let path = dir.path("optim.safetensors");
    checkpoint::save_optimizer(&opt, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    assert_eq!(meta["optimizer"], "Adam");
    assert_eq!(meta["lr"], "0.01");
    assert_eq!(meta["num_params"], "4");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names.len(), 12);
    assert!(names.contains(&"state.0.exp_avg") && names.contains(&"state.3.exp_avg_sq"), "{names:?}");
    assert_eq!(file.tensor("state.0.exp_avg").unwrap().shape(), &[4, 3]);
    assert_eq!(file.tensor("state.2.step").unwrap().data(), &2i64.to_le_bytes());
    assert_eq!(file.tensor("state.2.step").unwrap().shape(), &[] as &[usize]);
    // No temporary file is left behind.
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
}

/// A state saved on one device loads onto the other, with the same values.
#[test]
fn state_moves_between_devices() {
    let Some(gpu) = common::gpu("state_moves_between_devices") else { return };
    let cpu = Device::cpu();
    for (name, make) in OPTIMIZERS {
        let m = model(1, &gpu);
        let mut opt = make(m.parameters());
        train(&m, opt.as_mut(), 3, &gpu);
        let on_gpu = opt.state_dict();
        assert!(on_gpu.params.iter().flatten().flat_map(|p| p.tensors.values()).all(|t| !t.device().is_cpu()));

        let cpu_model = model(1, &cpu);
        let mut cpu_opt = make(cpu_model.parameters());
        cpu_opt.load_state_dict(&on_gpu).unwrap();
        let on_cpu = cpu_opt.state_dict();
        assert!(on_cpu.params.iter().flatten().flat_map(|p| p.tensors.values()).all(|t| t.device().is_cpu()));
        assert_eq!(state_bits(&on_cpu), state_bits(&on_gpu), "{name}: GPU to CPU");

        let back = model(1, &gpu);
        let mut back_opt = make(back.parameters());
        back_opt.load_state_dict(&on_cpu).unwrap();
        assert_eq!(state_bits(&back_opt.state_dict()), state_bits(&on_gpu), "{name}: CPU to GPU");
    }
}

/// A learning rate a scheduler set survives the round trip, in memory and through a file.
#[test]
fn scheduled_lr_survives() {
    for dev in devices("scheduled_lr_survives") {
        let dir = TempDir::new(&format!("lr-{}", dev_name(&dev)));
        let (x, y) = batch(&dev);
        let step = |m: &nn::Sequential, opt: &mut dyn Optimizer| {
            opt.step(&loss::mse_loss(&m.forward(&x), &y, Reduction::Mean).backward());
        };
        // Straight: the scheduler decays the rate for 3 steps, then the run goes on at it.
        let m = model(1, &dev);
        let mut opt = Adam::new(m.parameters(), 0.05);
        let mut sched = ExponentialLr::new(0.05, 0.7);
        for t in 0..6 {
            step(&m, &mut opt);
            if t < 3 {
                sched.step();
                opt.set_lr(sched.lr());
            }
        }
        let expected = bits(&m);

        let m = model(1, &dev);
        let mut opt = Adam::new(m.parameters(), 0.05);
        let mut sched = ExponentialLr::new(0.05, 0.7);
        for _ in 0..3 {
            step(&m, &mut opt);
            sched.step();
            opt.set_lr(sched.lr());
        }
        let scheduled = opt.lr();
        assert_ne!(scheduled, 0.05);
        let state = opt.state_dict();
        assert_eq!(state.lr().to_bits(), scheduled.to_bits());
        checkpoint::save(&m, dir.path("model.safetensors")).unwrap();
        checkpoint::save_optimizer(&opt, dir.path("optim.safetensors")).unwrap();

        let mut fresh = Adam::new(m.parameters(), 0.05);
        fresh.load_state_dict(&state).unwrap();
        assert_eq!(fresh.lr().to_bits(), scheduled.to_bits());

        let m = model(2, &dev);
        checkpoint::load(&m, dir.path("model.safetensors")).unwrap();
        let mut opt = Adam::new(m.parameters(), 0.05);
        checkpoint::load_optimizer(&mut opt, dir.path("optim.safetensors")).unwrap();
        assert_eq!(opt.lr().to_bits(), scheduled.to_bits(), "on {}", dev_name(&dev));
        for _ in 0..3 {
            step(&m, &mut opt);
        }
        assert_eq!(bits(&m), expected, "on {}", dev_name(&dev));
    }
}

/// A parameter without a gradient has no entry, as in PyTorch, and keeps none after a load.
#[test]
fn parameter_never_updated_has_no_entry() {
    for dev in devices("parameter_never_updated_has_no_entry") {
        let m = model(1, &dev);
        let unused = Tensor::from_slice(&[1.0f32, 2.0], &[2], &dev).requires_grad();
        let mut params = m.parameters();
        params.push(unused.clone());
        let mut opt = Sgd::new(params.clone(), 0.1).momentum(0.9);
        assert!(opt.state_dict().params.iter().all(Option::is_none), "no step, no state");
        train(&m, &mut opt, 2, &dev);
        let state = opt.state_dict();
        assert_eq!(state.params.len(), 5);
        assert!(state.params[..4].iter().all(|p| p.as_ref().is_some_and(|p| p.step == 2)));
        assert!(state.params[4].is_none());
        let mut other = Sgd::new(params, 0.1).momentum(0.9);
        other.load_state_dict(&state).unwrap();
        assert_eq!(state_bits(&other.state_dict()), state_bits(&state));
    }
}

fn trained_adam(dev: &Device) -> (nn::Sequential, Adam) {
    let m = model(1, dev);
    let mut opt = Adam::new(m.parameters(), 0.01);
    train(&m, &mut opt, 2, dev);
    (m, opt)
}

fn message(e: Error) -> String {
    match e {
        Error::OptimizerState(reason) => reason,
        other => panic!("expected Error::OptimizerState, got {other:?}"),
    }
}

/// Another kind, another count, a wrong shape, dtype or name: errors naming what
/// disagrees, and the optimizer (state and learning rate) stays as it was.
#[test]
fn mismatches_are_errors_and_change_nothing() {
    for dev in devices("mismatches_are_errors_and_change_nothing") {
        let (_m, mut opt) = trained_adam(&dev);
        let before = state_bits(&opt.state_dict());
        let good = opt.state_dict();
        let mut reject = |state: &OptimizerState, expect: &str| {
            let msg = message(opt.load_state_dict(state).unwrap_err());
            assert!(msg.contains(expect), "on {}: '{msg}' should mention '{expect}'", dev_name(&dev));
            assert_eq!(state_bits(&opt.state_dict()), before);
            assert_eq!(opt.lr(), 0.01);
        };

        let mut s = good.clone();
        s.groups[0].lr = 0.5;
        s.kind = "AdamW".into();
        reject(&s, "of a AdamW optimizer, not of a Adam");

        let mut s = good.clone();
        s.groups[0].lr = 0.5;
        s.params.pop();
        reject(&s, "the state has 3 parameters but the Adam optimizer has 4");

        let mut s = good.clone();
        s.groups[0].lr = 0.5;
        s.params[0].as_mut().unwrap().tensors.insert("exp_avg".into(), Tensor::zeros(&[3, 4], &dev));
        reject(&s, "parameter 0: 'exp_avg' has shape [3, 4] but the parameter has shape [4, 3]");

        let mut s = good.clone();
        s.groups[0].lr = 0.5;
        s.params[1]
            .as_mut()
            .unwrap()
            .tensors
            .insert("exp_avg_sq".into(), Tensor::zeros(&[4], &dev).to_dtype(wgrad::DType::F16));
        reject(&s, "parameter 1 (shape [4]): 'exp_avg_sq' is f16");

        let mut s = good.clone();
        s.groups[0].lr = 0.5;
        s.params[2].as_mut().unwrap().tensors.remove("exp_avg");
        s.params[3].as_mut().unwrap().tensors.insert("momentum_buffer".into(), Tensor::zeros(&[2], &dev));
        let msg = message(opt.load_state_dict(&s).unwrap_err());
        assert!(msg.contains("parameter 2 (shape [2, 4]): 'exp_avg' is missing"), "{msg}");
        assert!(
            msg.contains("parameter 3 (shape [2]): 'momentum_buffer' (shape [2]) is not a state this Adam keeps"),
            "{msg}"
        );
        assert_eq!(state_bits(&opt.state_dict()), before);

        // A model whose shapes differ.
        let other = nn::Sequential::new().add(nn::Linear::new(3, 5, &dev)).add(nn::Linear::new(5, 2, &dev));
        let mut wrong = Adam::new(other.parameters(), 0.01);
        let msg = message(wrong.load_state_dict(&good).unwrap_err());
        assert!(msg.contains("parameter 0: 'exp_avg' has shape [4, 3] but the parameter has shape [5, 3]"), "{msg}");
        assert!(wrong.state_dict().params.iter().all(Option::is_none));

        // The state tensors must be those the state's own options call for: a momentum
        // buffer with momentum 0 has no place.
        let m = model(1, &dev);
        let mut with = Sgd::new(m.parameters(), 0.1).momentum(0.9);
        train(&m, &mut with, 1, &dev);
        let mut without = Sgd::new(m.parameters(), 0.1);
        let mut s = with.state_dict();
        s.groups[0].options.momentum = Some(0.0);
        let msg = message(without.load_state_dict(&s).unwrap_err());
        assert!(msg.contains("'momentum_buffer' (shape [4, 3]) is not a state this Sgd keeps"), "{msg}");
        // As in PyTorch, loading restores the options: the Sgd built without momentum
        // then has the saved momentum and its buffers.
        without.load_state_dict(&with.state_dict()).unwrap();
        assert_eq!(without.state_dict().groups[0].options.momentum, Some(0.9));
        assert_eq!(state_bits(&without.state_dict()), state_bits(&with.state_dict()));
        // RmsProp's centering is the optimizer's, not the state's: its buffer has no place
        // in an RmsProp that is not centered.
        let mut centered = RmsProp::new(m.parameters(), 0.01).centered(true);
        train(&m, &mut centered, 1, &dev);
        let mut plain = RmsProp::new(m.parameters(), 0.01);
        let msg = message(plain.load_state_dict(&centered.state_dict()).unwrap_err());
        assert!(msg.contains("'grad_avg' (shape [4, 3]) is not a state this RmsProp keeps"), "{msg}");
    }
}

/// Files that are not an optimizer state, are truncated, or do not fit: `Err`s, no panic,
/// and the optimizer unchanged.
#[test]
fn bad_files_are_errors() {
    let dev = Device::cpu();
    let dir = TempDir::new("bad");
    let (m, mut opt) = trained_adam(&dev);
    let before = state_bits(&opt.state_dict());
    let good = dir.path("optim.safetensors");
    checkpoint::save_optimizer(&opt, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    assert!(matches!(checkpoint::load_optimizer(&mut opt, dir.path("missing")), Err(Error::Io { .. })));
    for cut in [0, 4, 8, 20, bytes.len() / 2, bytes.len() - 1] {
        let path = dir.path("truncated.safetensors");
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let err = checkpoint::load_optimizer(&mut opt, &path).unwrap_err();
        assert!(matches!(err, Error::Format { .. }), "cut at {cut}: {err:?}");
    }
    // A model checkpoint is not an optimizer state.
    let model_file = dir.path("model.safetensors");
    checkpoint::save(&m, &model_file).unwrap();
    let err = checkpoint::load_optimizer(&mut opt, &model_file).unwrap_err();
    assert!(err.to_string().contains("no 'format' in the metadata"), "{err}");
    // Another kind of optimizer: a Format error naming the file and the kinds.
    let mut sgd = Sgd::new(m.parameters(), 0.1).momentum(0.9);
    let err = checkpoint::load_optimizer(&mut sgd, &good).unwrap_err();
    assert!(
        matches!(&err, Error::Format { path, reason } if path.ends_with("optim.safetensors") && reason.contains("not of a Sgd")),
        "{err:?}"
    );
    assert_eq!(state_bits(&opt.state_dict()), before);
    assert!(sgd.state_dict().params.iter().all(Option::is_none));
}
