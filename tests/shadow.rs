//! Shadow mode: a short training loop on the GPU with every op also run on the CPU
//! reference. A clean run reports nothing; a kernel made wrong on purpose (through the
//! test-only fault hook) is reported by op, phase and parameter.
//!
//! Shadow mode belongs to the shared device, so the tests here take turns.

use std::sync::Mutex;

use wgrad::nn::{self, Forward, Module};
use wgrad::op::{Op, OptimOp, RnnOp};
use wgrad::optim::{Adam, Optimizer};
use wgrad::shadow::{inject, OnMismatch, ShadowOptions};
use wgrad::testing::gpu_test_device;
use wgrad::{loss, Device, Error, Tensor};

static TURN: Mutex<()> = Mutex::new(());

fn model(dev: &Device) -> nn::Sequential {
    nn::Sequential::new()
        .add(nn::Linear::with_seed(12, 16, true, 7, dev))
        .add(nn::ReLU)
        .add(nn::Linear::with_seed(16, 5, true, 8, dev))
}

/// `steps` Adam steps of `model` on fixed random batches.
fn train(model: &nn::Sequential, opt: &mut Adam, dev: &Device, steps: u64) {
    for step in 0..steps {
        let x = Tensor::randn(&[9, 12], 100 + step, dev);
        let targets: Vec<i32> = (0..9).map(|i| (i * 7 + step as i32) % 5).collect();
        let t = Tensor::from_slice(&targets, &[9], dev);
        let loss = loss::cross_entropy(&model.forward(&x), &t);
        let grads = loss.backward();
        opt.step(&grads);
        dev.synchronize();
    }
}

/// The shared GPU device in shadow mode with `options`, and the model registered.
fn shadowed(options: ShadowOptions) -> Option<(Device, nn::Sequential, Adam)> {
    let dev = gpu_test_device()?.with_shadow(options);
    let m = model(&dev);
    wgrad::shadow::register(&m);
    let opt = Adam::new(m.parameters(), 1e-2);
    Some((dev, m, opt))
}

const LOG: ShadowOptions = ShadowOptions { every: 1, on_mismatch: OnMismatch::Log, tolerance_scale: 1.0 };

#[test]
fn a_clean_training_loop_agrees_op_by_op() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some((dev, m, mut opt)) = shadowed(LOG) else { return };
    train(&m, &mut opt, &dev, 3);
    let reports = dev.shadow_reports();
    let checked = dev.shadow_checked_ops();
    dev.without_shadow();
    assert!(reports.is_empty(), "a correct run was reported:\n{}", reports[0]);
    // Forward, backward and the optimizer of three steps: dozens of ops.
    assert!(checked > 40, "only {checked} ops were compared");
}

#[test]
fn a_wrong_gradient_kernel_is_named_with_its_parameter() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some((dev, m, mut opt)) = shadowed(LOG) else { return };
    train(&m, &mut opt, &dev, 1);
    // The last layer's gradient rule runs first in step 1's backward pass: its first
    // matmul is the gradient of its input, its second that of its weight.
    inject::perturb_next(Op::Matmul, true, 0);
    train(&m, &mut opt, &dev, 1);
    inject::perturb_next(Op::Matmul, true, 1);
    train(&m, &mut opt, &dev, 1);
    let reports = dev.shadow_reports();
    dev.without_shadow();
    assert!(!inject::pending(), "no backward matmul ran");
    let [input, weight] = &reports[..2] else { panic!("expected two reports, got {}", reports.len()) };
    for (report, step) in [(input, 1), (weight, 2)] {
        assert_eq!(report.op, "matmul", "{report}");
        assert_eq!(report.step, step, "{report}");
        assert!(report.phase.starts_with("backward of") && report.phase.contains("`2.weight`"), "{report}");
        assert!(report.gpu_value != report.cpu_value, "{report}");
    }
    assert_eq!(input.gradient_of.as_deref(), Some("input 0 of the rule"), "{input}");
    assert_eq!(weight.gradient_of.as_deref(), Some("`2.weight`"), "{weight}");
    let text = weight.to_string();
    assert!(text.contains("computing the gradient of `2.weight`") && text.contains("device:"), "{text}");
}

#[test]
fn a_wrong_optimizer_step_names_the_parameter_it_wrote() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some((dev, m, mut opt)) = shadowed(ShadowOptions { on_mismatch: OnMismatch::Error, ..LOG }) else {
        return;
    };
    inject::perturb_next(Op::Optim(OptimOp::Adam), false, 0);
    train(&m, &mut opt, &dev, 1);
    let result = dev.try_synchronize();
    // Returned once, then the device is clean again.
    let second = dev.try_synchronize();
    dev.without_shadow();
    match result {
        Err(Error::ShadowMismatch(report)) => {
            assert_eq!(report.op, "adam_step", "{report}");
            assert_eq!(report.phase, "optimizer step", "{report}");
            assert!(report.output.contains("0.weight"), "{report}");
        }
        other => panic!("expected a shadow mismatch, got {other:?}"),
    }
    assert!(second.is_ok(), "{second:?}");
}

#[test]
fn panic_mode_stops_at_the_wrong_op_and_sampling_skips_steps() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    // Every second step: step 1 runs unchecked, so a fault there goes unseen.
    let Some((dev, m, mut opt)) = shadowed(ShadowOptions { every: 2, ..LOG }) else { return };
    train(&m, &mut opt, &dev, 1);
    let after_step_0 = dev.shadow_checked_ops();
    inject::perturb_next(Op::Matmul, false, 0);
    train(&m, &mut opt, &dev, 1);
    assert_eq!(dev.shadow_checked_ops(), after_step_0, "ops of an unsampled step were checked");
    assert!(inject::pending(), "the fault hook runs only where ops are checked");
    // Step 2 is sampled: the forward matmul is wrong, and panic mode stops there.
    let dev = dev.with_shadow(ShadowOptions { every: 2, on_mismatch: OnMismatch::Panic, tolerance_scale: 1.0 });
    // New options start a new state: the step count is back at 0 and names are registered again.
    wgrad::shadow::register(&m);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let x = Tensor::randn(&[9, 12], 5, &dev);
        m.forward(&x).to_vec::<f32>()
    }));
    dev.without_shadow();
    let message = match caught {
        Err(payload) => payload.downcast_ref::<String>().cloned().unwrap_or_default(),
        Ok(_) => panic!("the wrong matmul did not stop the run"),
    };
    assert!(message.contains("`matmul` disagrees") && message.contains("forward"), "{message}");
    assert!(message.contains("0.weight"), "{message}");
}

#[test]
fn empty_tensors_pass_through_shadow_mode() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let dev = dev.with_shadow(LOG);
    let empty = Tensor::zeros(&[0, 4], &dev);
    let y = empty.relu().matmul(&Tensor::randn(&[4, 3], 1, &dev));
    let s = y.sum(&[0], false);
    assert_eq!(s.to_vec::<f32>(), vec![0.0; 3]);
    let reports = dev.shadow_reports();
    dev.without_shadow();
    assert!(reports.is_empty(), "{}", reports[0]);
}

#[test]
fn the_whole_sequence_lstm_passes_are_checked_and_a_wrong_one_is_named() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    // Software adapters run LSTM layers step by step by default; hardware ones take the
    // whole-sequence kernels, which this test holds the device to.
    let ctx = dev.gpu_context().expect("a GPU device").clone();
    let previous = ctx.whole_sequence_lstm();
    ctx.set_whole_sequence_lstm(true);
    let dev = dev.with_shadow(LOG);
    let lstm = nn::LSTM::new(4, 8, &dev);
    wgrad::shadow::register(&lstm);
    let run = |seed: u64| {
        let x = Tensor::randn(&[5, 3, 4], seed, &dev);
        let (out, _) = lstm.forward(&x);
        let _ = out.square().sum_all().backward();
        dev.synchronize();
    };
    run(1);
    let clean = dev.shadow_reports();
    let checked = dev.shadow_checked_ops();
    inject::perturb_next(Op::Rnn(RnnOp::LstmSequenceForward), false, 0);
    run(2);
    inject::perturb_next(Op::Rnn(RnnOp::LstmSequenceBackward), true, 0);
    run(3);
    let reports = dev.shadow_reports();
    dev.without_shadow();
    ctx.set_whole_sequence_lstm(previous);
    assert!(clean.is_empty(), "a correct run was reported:\n{}", clean[0]);
    assert!(checked > 0, "nothing was compared");
    assert!(!inject::pending(), "a whole-sequence pass did not run");
    let [forward, backward] = &reports[..] else { panic!("expected two reports, got {}", reports.len()) };
    assert_eq!(forward.op, "lstm_sequence_forward", "{forward}");
    assert_eq!(backward.op, "lstm_sequence_backward", "{backward}");
    assert!(backward.phase.starts_with("backward of"), "{backward}");
}
