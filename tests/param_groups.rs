//! Parameter groups: one optimizer over several groups with their own rates and options
//! against one optimizer per group (bit for bit, on the CPU and the GPU device), the
//! defaults that fill what a group does not set, schedulers that scale every group as
//! PyTorch's do (expected rates by formula, per group), the group structure in optimizer
//! states and files, and every error.

use std::f64::consts::PI;

use wgrad::loss::{self, Reduction};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::scheduler::{
    CosineAnnealingLr, ExponentialLr, LinearLr, LrScheduler, PlateauMode, ReduceLrOnPlateau, SequentialLr, StepLr,
};
use wgrad::optim::{Adagrad, Adam, AdamW, Optimizer, OptimizerState, ParamGroup, RmsProp, Sgd};
use wgrad::{checkpoint, Device, Error, Tensor};

mod common;
use common::{dev_name, devices, TempDir};

// ---------------------------------------------------------------------------------------
// One optimizer with groups against one optimizer per group.
// ---------------------------------------------------------------------------------------

type Make = fn(Vec<Tensor>) -> Box<dyn Optimizer>;
type MakeGroups = fn(Vec<ParamGroup>) -> Box<dyn Optimizer>;

/// An optimizer configuration for the comparison: `grouped` builds the optimizer over two
/// groups with the defaults `plain` has, `overrides` sets group 1's own options, and
/// `overridden` is an optimizer of one group with those options.
struct Case {
    name: &'static str,
    grouped: MakeGroups,
    overrides: fn(ParamGroup) -> ParamGroup,
    plain: Make,
    overridden: Make,
}

/// Every optimizer, with group 1 setting every option it can (and, for Sgd and RmsProp,
/// turning momentum on or off, so the groups keep different state vectors). The defaults
/// are set after the groups are given, as they may be.
fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "sgd",
            grouped: |g| Box::new(Sgd::with_groups(g, 0.05).momentum(0.9).weight_decay(0.1)),
            overrides: |g| g.lr(0.02).momentum(0.5).dampening(0.1).weight_decay(0.0),
            plain: |p| Box::new(Sgd::new(p, 0.05).momentum(0.9).weight_decay(0.1)),
            overridden: |p| Box::new(Sgd::new(p, 0.02).momentum(0.5).dampening(0.1).weight_decay(0.0)),
        },
        Case {
            name: "sgd-nesterov",
            grouped: |g| Box::new(Sgd::with_groups(g, 0.05).momentum(0.9).nesterov(true)),
            overrides: |g| g.lr(0.02).momentum(0.6).weight_decay(0.01),
            plain: |p| Box::new(Sgd::new(p, 0.05).momentum(0.9).nesterov(true)),
            overridden: |p| Box::new(Sgd::new(p, 0.02).momentum(0.6).weight_decay(0.01).nesterov(true)),
        },
        Case {
            name: "sgd-momentum-in-one-group",
            grouped: |g| Box::new(Sgd::with_groups(g, 0.05)),
            overrides: |g| g.momentum(0.9),
            plain: |p| Box::new(Sgd::new(p, 0.05)),
            overridden: |p| Box::new(Sgd::new(p, 0.05).momentum(0.9)),
        },
        Case {
            name: "adam",
            grouped: |g| Box::new(Adam::with_groups(g, 0.05).weight_decay(0.1)),
            overrides: |g| g.lr(0.01).betas(0.8, 0.99).eps(1e-6).weight_decay(0.0),
            plain: |p| Box::new(Adam::new(p, 0.05).weight_decay(0.1)),
            overridden: |p| Box::new(Adam::new(p, 0.01).betas(0.8, 0.99).eps(1e-6).weight_decay(0.0)),
        },
        Case {
            name: "adamw",
            grouped: |g| Box::new(AdamW::with_groups(g, 0.05)),
            overrides: |g| g.lr(0.01).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1),
            plain: |p| Box::new(AdamW::new(p, 0.05)),
            overridden: |p| Box::new(AdamW::new(p, 0.01).betas(0.8, 0.99).eps(1e-6).weight_decay(0.1)),
        },
        Case {
            name: "rmsprop",
            grouped: |g| Box::new(RmsProp::with_groups(g, 0.01).momentum(0.9).centered(true).weight_decay(0.1)),
            overrides: |g| g.lr(0.005).momentum(0.0).alpha(0.9).eps(1e-6),
            plain: |p| Box::new(RmsProp::new(p, 0.01).momentum(0.9).centered(true).weight_decay(0.1)),
            overridden: |p| Box::new(RmsProp::new(p, 0.005).alpha(0.9).eps(1e-6).centered(true).weight_decay(0.1)),
        },
        Case {
            name: "adagrad",
            grouped: |g| {
                Box::new(Adagrad::with_groups(g, 0.05).lr_decay(0.1).weight_decay(0.1).initial_accumulator_value(0.1))
            },
            overrides: |g| g.lr(0.2).eps(1e-6).weight_decay(0.0),
            plain: |p| Box::new(Adagrad::new(p, 0.05).lr_decay(0.1).weight_decay(0.1).initial_accumulator_value(0.1)),
            overridden: |p| {
                Box::new(Adagrad::new(p, 0.2).lr_decay(0.1).eps(1e-6).weight_decay(0.0).initial_accumulator_value(0.1))
            },
        },
    ]
}

/// Parameter shapes: over a workgroup, odd sizes, a single element.
const SHAPES: [&[usize]; 6] = [&[300], &[7], &[1], &[13, 11], &[2, 3], &[5]];
/// The parameters of each group, interleaved in the list above.
const GROUP_0: [usize; 3] = [0, 3, 4];
const GROUP_1: [usize; 3] = [1, 2, 5];

fn params(dev: &Device) -> Vec<Tensor> {
    SHAPES.iter().enumerate().map(|(i, s)| common::uniform(s, -1.0, 1.0, 700 + i as u64, dev).requires_grad()).collect()
}

fn pick(params: &[Tensor], which: &[usize]) -> Vec<Tensor> {
    which.iter().map(|&i| params[i].clone()).collect()
}

/// Three steps of `opts` on the loss `sum_i sum(p_i * d_i,t)`; parameter 2 (in group 1)
/// is left out of the loss at the first step, so it has no gradient then.
fn run(params: &[Tensor], opts: &mut [Box<dyn Optimizer>], dev: &Device) -> Vec<Vec<u32>> {
    for t in 0..3u64 {
        let mut loss = Tensor::scalar(0.0, dev);
        for (i, p) in params.iter().enumerate() {
            if t == 0 && i == 2 {
                continue;
            }
            let d = common::uniform(p.shape(), -2.0, 2.0, 1000 + 10 * t + i as u64, dev);
            loss = loss.add(&p.mul(&d).sum_all());
        }
        let grads = loss.backward();
        for opt in opts.iter_mut() {
            opt.step(&grads);
        }
    }
    params.iter().map(|p| p.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()).collect()
}

#[test]
fn two_groups_are_bit_identical_to_two_optimizers() {
    for dev in devices("two_groups_are_bit_identical_to_two_optimizers") {
        for case in cases() {
            let together = params(&dev);
            let groups = vec![
                ParamGroup::new(pick(&together, &GROUP_0)),
                (case.overrides)(ParamGroup::new(pick(&together, &GROUP_1))),
            ];
            let mut grouped = (case.grouped)(groups);
            assert_eq!(grouped.num_groups(), 2);
            let expected_lrs =
                [(case.plain)(vec![together[0].clone()]).lr(), (case.overridden)(vec![together[0].clone()]).lr()];
            assert_eq!([grouped.group_lr(0), grouped.group_lr(1)], expected_lrs, "{}", case.name);
            let got = run(&together, std::slice::from_mut(&mut grouped), &dev);

            let apart = params(&dev);
            let mut separate = vec![(case.plain)(pick(&apart, &GROUP_0)), (case.overridden)(pick(&apart, &GROUP_1))];
            let expected = run(&apart, &mut separate, &dev);
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                assert_eq!(g, e, "{} on {}: parameter {i} of shape {:?}", case.name, dev_name(&dev), SHAPES[i]);
            }
            // The state is the two optimizers' states, group after group.
            let state = grouped.state_dict();
            let parts = [separate[0].state_dict(), separate[1].state_dict()];
            assert_eq!(state_bits(&state), [state_bits(&parts[0]), state_bits(&parts[1])].concat(), "{}", case.name);
            assert_eq!(state.groups[0].options, parts[0].groups[0].options, "{}", case.name);
            assert_eq!(state.groups[1].options, parts[1].groups[0].options, "{}", case.name);
        }
    }
}

/// On a GPU, parameters of different groups share a dispatch when their scalars agree:
/// six parameters in groups of two and four are one dispatch when the groups set nothing,
/// two (one per group) when their rates differ. On an adapter without the 25 storage
/// bindings of the twelve-parameter build, a dispatch takes three parameters: two
/// dispatches, then three (one and two).
#[test]
fn groups_with_equal_options_share_dispatches() {
    let Some(dev) = common::gpu("groups_with_equal_options_share_dispatches") else { return };
    let wide = dev.gpu_context().expect("a GPU device").limits.max_storage_buffers_per_shader_stage >= 25;
    let cases = if wide { [(None, 1), (Some(0.01), 2)] } else { [(None, 2), (Some(0.01), 3)] };
    for (rate, expected) in cases {
        let params: Vec<Tensor> =
            (0..6).map(|i| common::uniform(&[5 + i], -1.0, 1.0, 40 + i as u64, &dev).requires_grad()).collect();
        let second = ParamGroup::new(params[2..].to_vec());
        let second = if let Some(lr) = rate { second.lr(lr) } else { second };
        let mut opt = Adam::with_groups([ParamGroup::new(params[..2].to_vec()), second], 0.05);
        let loss = |t: u64| {
            let mut loss = Tensor::scalar(0.0, &dev);
            for (i, p) in params.iter().enumerate() {
                loss = loss.add(&p.mul(&common::uniform(p.shape(), -2.0, 2.0, 60 + 10 * t + i as u64, &dev)).sum_all());
            }
            loss
        };
        opt.step(&loss(0).backward()); // creates the state
                                       // Other tests share the device and can only add to the counts: take the least.
        let mut least = u64::MAX;
        for t in 1..20 {
            let grads = loss(t).backward();
            dev.synchronize();
            let before = dev.stats().expect("a GPU device counts its work");
            opt.step(&grads);
            least = least.min((dev.stats().unwrap() - before).dispatches);
            if least == expected {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(least, expected, "group 1 rate {rate:?}: dispatches of one step");
    }
}

/// A parameter in a group that gets no gradient (frozen, or not in the loss) is skipped:
/// no weight decay, no momentum, no step count; the rest of its group moves.
#[test]
fn a_parameter_without_gradient_in_a_group_is_skipped() {
    for dev in devices("a_parameter_without_gradient_in_a_group_is_skipped") {
        let a = Tensor::from_slice(&[1.0f32, -1.0], &[2], &dev).requires_grad();
        let frozen = Tensor::from_slice(&[0.5f32, 2.0], &[2], &dev).requires_grad();
        let b = Tensor::from_slice(&[3.0f32], &[1], &dev).requires_grad();
        let groups = [ParamGroup::new([a.clone(), frozen.clone()]).lr(0.1), ParamGroup::new([b.clone()])];
        let mut opt = Sgd::with_groups(groups, 0.5).momentum(0.9).weight_decay(0.1);
        for _ in 0..3 {
            opt.step(&a.sum_all().add(&b.sum_all()).backward());
        }
        assert_eq!(frozen.to_vec::<f32>(), [0.5, 2.0], "on {}", dev_name(&dev));
        assert_ne!(a.to_vec::<f32>(), [1.0, -1.0]);
        assert_ne!(b.to_vec::<f32>(), [3.0]);
        let state = opt.state_dict();
        assert!(state.params[1].is_none(), "the frozen parameter has no state");
        assert_eq!(state.params[0].as_ref().unwrap().step, 3);
    }
}

// ---------------------------------------------------------------------------------------
// Defaults, overrides and rates.
// ---------------------------------------------------------------------------------------

#[test]
fn builder_defaults_fill_what_a_group_does_not_set() {
    let dev = Device::cpu();
    let (a, b, c) = (param(&dev), param(&dev), param(&dev));
    let groups =
        [ParamGroup::new([a]).betas(0.8, 0.99).weight_decay(0.0), ParamGroup::new([b]).lr(1e-4), ParamGroup::new([c])];
    // Defaults given after the groups apply to every group that did not set them.
    let opt = Adam::with_groups(groups, 1e-3).betas(0.5, 0.9).weight_decay(0.1).eps(1e-6);
    let state = opt.state_dict();
    let options: Vec<_> =
        state.groups.iter().map(|g| (g.options.betas, g.options.weight_decay, g.options.eps)).collect();
    assert_eq!(
        options,
        [
            (Some((0.8, 0.99)), Some(0.0), Some(1e-6)),
            (Some((0.5, 0.9)), Some(0.1), Some(1e-6)),
            (Some((0.5, 0.9)), Some(0.1), Some(1e-6)),
        ]
    );
    // Adam has no momentum, dampening or alpha: the state records only its own options.
    assert!(state.groups.iter().all(|g| g.options.momentum.is_none() && g.options.alpha.is_none()));
    assert_eq!(state.groups.iter().map(|g| g.num_params).collect::<Vec<_>>(), [1, 1, 1]);
    assert_eq!([opt.group_lr(0), opt.group_lr(1), opt.group_lr(2)], [1e-3, 1e-4, 1e-3]);
    assert_eq!([opt.initial_lr(0), opt.initial_lr(1), opt.initial_lr(2)], [1e-3, 1e-4, 1e-3]);

    // AdamW's default weight decay (0.01) fills the groups too.
    let opt =
        AdamW::with_groups([ParamGroup::new([param(&dev)]), ParamGroup::new([param(&dev)]).weight_decay(0.5)], 1e-3);
    let decay: Vec<_> = opt.state_dict().groups.iter().map(|g| g.options.weight_decay).collect();
    assert_eq!(decay, [Some(0.01), Some(0.5)]);
    assert_eq!(opt.state_dict().kind, "AdamW");
}

#[test]
fn set_lr_sets_every_group_and_set_group_lr_one() {
    let dev = Device::cpu();
    let groups = [ParamGroup::new([param(&dev)]), ParamGroup::new([param(&dev)]).lr(0.01)];
    let mut opt = Sgd::with_groups(groups, 0.1);
    assert_eq!(opt.lr(), 0.1, "lr() is the first group's");
    opt.set_group_lr(1, 0.002);
    assert_eq!([opt.group_lr(0), opt.group_lr(1)], [0.1, 0.002]);
    opt.set_lr(0.3);
    assert_eq!([opt.group_lr(0), opt.group_lr(1)], [0.3, 0.3]);
    assert_eq!([opt.initial_lr(0), opt.initial_lr(1)], [0.1, 0.01], "initial rates stay");
    // A step uses each group's rate: SGD on sum(p) moves each parameter by its rate.
    let p = Tensor::from_slice(&[1.0f32], &[1], &dev).requires_grad();
    let q = Tensor::from_slice(&[1.0f32], &[1], &dev).requires_grad();
    let mut opt = Sgd::with_groups([ParamGroup::new([p.clone()]), ParamGroup::new([q.clone()])], 0.5);
    opt.set_group_lr(1, 0.25);
    opt.step(&p.add(&q).sum_all().backward());
    assert_eq!((p.to_vec::<f32>()[0], q.to_vec::<f32>()[0]), (0.5, 0.75));
}

// ---------------------------------------------------------------------------------------
// Schedulers over groups. The expected rates are PyTorch's closed forms evaluated per
// group (`base_lrs` = the groups' initial rates 0.1 and 0.01), in f64.
// ---------------------------------------------------------------------------------------

const BASES: [f64; 2] = [0.1, 0.01];
const EPOCHS: usize = 25;

fn two_group_sgd() -> Sgd {
    let dev = Device::cpu();
    Sgd::with_groups([ParamGroup::new([param(&dev)]), ParamGroup::new([param(&dev)]).lr(BASES[1] as f32)], 0.1)
}

/// `|actual - expected| <= 1e-6 * |expected| + 1e-12`: the f32 rounding of an f64 rate.
fn assert_rate(actual: f32, expected: f64, what: &str) {
    let tol = 1e-6 * expected.abs() + 1e-12;
    assert!((actual as f64 - expected).abs() <= tol, "{what}: rate {actual}, expected {expected}");
}

/// Applies `sched` at epochs `0..=EPOCHS` to a two-group Sgd and checks each group's rate
/// against `expected(base, epoch)`; also that the constructor's base rate gives `lr()`.
fn check_schedule(name: &str, mut sched: impl LrScheduler, expected: impl Fn(f64, usize) -> f64) {
    let mut opt = two_group_sgd();
    for epoch in 0..=EPOCHS {
        if epoch > 0 {
            sched.step();
        }
        sched.apply(&mut opt);
        for (g, base) in BASES.iter().enumerate() {
            assert_rate(opt.group_lr(g), expected(*base, epoch), &format!("{name}: group {g} at epoch {epoch}"));
        }
        assert_eq!(sched.lr_for(0.1).to_bits(), sched.lr().to_bits(), "{name}: lr_for(base) is lr()");
        assert_eq!([opt.initial_lr(0), opt.initial_lr(1)], [0.1, 0.01], "{name}: apply keeps the initial rates");
    }
}

#[test]
fn step_lr_scales_every_group() {
    // StepLR: base * gamma^floor(epoch / step_size).
    check_schedule("StepLR", StepLr::new(0.1, 3, 0.5), |base, e| base * 0.5f64.powi((e / 3) as i32));
}

#[test]
fn cosine_annealing_scales_every_group_with_one_eta_min() {
    // CosineAnnealingLR: eta_min + (base - eta_min) (1 + cos(pi e / T_max)) / 2, with the
    // same eta_min for every group (PyTorch's eta_min is one number).
    let (t_max, eta_min) = (10, 0.001);
    let cosine =
        move |base: f64, e: usize| eta_min + (base - eta_min) * (1.0 + (PI * e as f64 / t_max as f64).cos()) / 2.0;
    check_schedule("CosineAnnealingLR", CosineAnnealingLr::new(0.1, t_max, eta_min as f32), cosine);
    // By hand: at T_max every group is at eta_min; halfway each is halfway to it.
    let mut sched = CosineAnnealingLr::new(0.1, t_max, eta_min as f32);
    let mut opt = two_group_sgd();
    for _ in 0..5 {
        sched.step();
    }
    sched.apply(&mut opt);
    assert_rate(opt.group_lr(0), (0.1 + 0.001) / 2.0, "group 0 at T_max / 2");
    assert_rate(opt.group_lr(1), (0.01 + 0.001) / 2.0, "group 1 at T_max / 2");
    for _ in 0..5 {
        sched.step();
    }
    sched.apply(&mut opt);
    assert_rate(opt.group_lr(0), 0.001, "group 0 at T_max");
    assert_rate(opt.group_lr(1), 0.001, "group 1 at T_max");
}

#[test]
fn exponential_and_linear_scale_every_group() {
    check_schedule("ExponentialLR", ExponentialLr::new(0.1, 0.9), |base, e| base * 0.9f64.powi(e as i32));
    // LinearLR: base * (start + (end - start) * min(e, total) / total).
    check_schedule("LinearLR", LinearLr::new(0.1, 0.25, 1.0, 8), |base, e| {
        base * (0.25 + 0.75 * e.min(8) as f64 / 8.0)
    });
}

#[test]
fn sequential_delegates_for_every_group() {
    // Warm-up over 4 epochs from a tenth, then cosine over 10 to 0, each from its epoch 0.
    let sched = SequentialLr::warmup_then(LinearLr::new(0.1, 0.1, 1.0, 4), CosineAnnealingLr::new(0.1, 10, 0.0));
    check_schedule("SequentialLR", sched, |base, e| {
        if e < 4 {
            base * (0.1 + 0.9 * e as f64 / 4.0)
        } else {
            base * (1.0 + (PI * (e - 4) as f64 / 10.0).cos()) / 2.0
        }
    });
}

/// With one group built at the scheduler's base rate, `apply` is the old
/// `set_lr(sched.lr())`, bit for bit.
#[test]
fn apply_on_one_group_is_set_lr_of_lr() {
    let dev = Device::cpu();
    let mut by_apply = Adam::new([param(&dev)], 0.05);
    let mut by_set = Adam::new([param(&dev)], 0.05);
    let mut sched = SequentialLr::warmup_then(LinearLr::new(0.05, 0.2, 1.0, 3), CosineAnnealingLr::new(0.05, 7, 1e-4));
    for _ in 0..15 {
        sched.apply(&mut by_apply);
        by_set.set_lr(sched.lr());
        assert_eq!(by_apply.lr().to_bits(), by_set.lr().to_bits());
        sched.step();
    }
}

/// ReduceLROnPlateau over two groups, each with its own floor (PyTorch's `min_lr` list):
/// every reduction takes each rate to `max(lr * factor, min_lr)` unless that changes it by
/// no more than eps.
#[test]
fn plateau_reduces_every_group_to_its_own_floor() {
    let (factor, floors, eps) = (0.5, [0.005, 0.002], 1e-8);
    let mut sched = ReduceLrOnPlateau::new(0.1, PlateauMode::Min)
        .patience(0)
        .factor(factor as f32)
        .min_lrs(&[floors[0] as f32, floors[1] as f32]);
    let mut opt = two_group_sgd();
    let mut expected = BASES;
    sched.apply(&mut opt);
    for epoch in 1..=10 {
        sched.step_with(1.0f32); // flat: every epoch after the first is bad, and patience 0 reduces
        sched.apply(&mut opt);
        if epoch > 1 {
            for (lr, floor) in expected.iter_mut().zip(floors) {
                let new = (*lr * factor).max(floor);
                if *lr - new > eps {
                    *lr = new;
                }
            }
        }
        for (g, lr) in expected.iter().enumerate() {
            assert_rate(opt.group_lr(g), *lr, &format!("group {g} after epoch {epoch}"));
        }
    }
    // Both groups end at their floors, reached after different numbers of reductions.
    assert_rate(opt.group_lr(0), 0.005, "group 0 floor");
    assert_rate(opt.group_lr(1), 0.002, "group 1 floor");
    assert_eq!(sched.num_reductions(), 9);
    assert_rate(sched.lr(), 0.005, "lr() follows the first floor");

    // One floor for every group.
    let mut sched = ReduceLrOnPlateau::new(0.1, PlateauMode::Min).patience(0).min_lr(0.004);
    let mut opt = two_group_sgd();
    for _ in 0..4 {
        sched.step_with(1.0f32);
    }
    sched.apply(&mut opt);
    assert_rate(opt.group_lr(0), 0.004, "group 0: 0.1 -> 0.01 -> 0.004");
    assert_rate(opt.group_lr(1), 0.004, "group 1: 0.01 -> 0.004");
}

#[test]
#[should_panic(expected = "ReduceLrOnPlateau: expected 2 min_lrs, one per parameter group of the optimizer, got 3")]
fn plateau_min_lrs_must_match_the_groups() {
    let sched = ReduceLrOnPlateau::new(0.1, PlateauMode::Min).min_lrs(&[0.1, 0.2, 0.3]);
    sched.apply(&mut two_group_sgd());
}

// ---------------------------------------------------------------------------------------
// Construction errors.
// ---------------------------------------------------------------------------------------

fn param(dev: &Device) -> Tensor {
    Tensor::zeros(&[2], dev).requires_grad()
}

/// The message of the panic of `f`.
fn panic_message(f: impl FnOnce()) -> String {
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>().cloned().or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string())).unwrap()
}

fn assert_panics(f: impl FnOnce(), expected: &str) {
    let message = panic_message(f);
    assert!(message.contains(expected), "'{message}' should contain '{expected}'");
}

#[test]
fn a_tensor_in_two_groups_panics() {
    let dev = Device::cpu();
    let shared = Tensor::zeros(&[4, 3], &dev).requires_grad();
    let groups = || {
        [
            ParamGroup::new([param(&dev)]),
            ParamGroup::new([shared.clone()]),
            ParamGroup::new([param(&dev), shared.clone()]),
        ]
    };
    assert_panics(
        || drop(Sgd::with_groups(groups(), 0.1)),
        "Sgd: some parameters appear in more than one parameter group: the tensor of shape [4, 3] is in groups 1 and 2",
    );
    assert_panics(|| drop(AdamW::with_groups(groups(), 0.1)), "AdamW: some parameters appear in more than one");
}

#[test]
fn an_option_the_optimizer_lacks_panics() {
    let dev = Device::cpu();
    let two =
        |extra: fn(ParamGroup) -> ParamGroup| [ParamGroup::new([param(&dev)]), extra(ParamGroup::new([param(&dev)]))];
    assert_panics(
        || drop(Sgd::with_groups(two(|g| g.betas(0.9, 0.99)), 0.1)),
        "Sgd: parameter group 1 sets betas, which Sgd does not have",
    );
    assert_panics(
        || drop(Adam::with_groups(two(|g| g.momentum(0.9).alpha(0.9)), 0.1)),
        "Adam: parameter group 1 sets momentum and alpha, which Adam does not have (its per-group options are lr, weight_decay, betas, eps)",
    );
    assert_panics(
        || drop(AdamW::with_groups(two(|g| g.dampening(0.1)), 0.1)),
        "AdamW: parameter group 1 sets dampening",
    );
    assert_panics(
        || drop(RmsProp::with_groups(two(|g| g.betas(0.9, 0.99)), 0.1)),
        "RmsProp: parameter group 1 sets betas",
    );
    assert_panics(
        || drop(Adagrad::with_groups(two(|g| g.momentum(0.5)), 0.1)),
        "Adagrad: parameter group 1 sets momentum",
    );
}

#[test]
fn invalid_group_values_panic_as_the_builder_does() {
    let dev = Device::cpu();
    let one = |g: fn(ParamGroup) -> ParamGroup| [g(ParamGroup::new([param(&dev)]))];
    assert_panics(
        || drop(Sgd::with_groups(one(|g| g.momentum(-0.5)), 0.1)),
        "Sgd: parameter group 0: invalid momentum -0.5",
    );
    assert_panics(
        || drop(Sgd::with_groups(one(|g| g.weight_decay(-1.0)), 0.1)),
        "Sgd: parameter group 0: invalid weight decay -1",
    );
    assert_panics(
        || drop(Adam::with_groups(one(|g| g.betas(1.0, 0.9)), 0.1)),
        "Adam: parameter group 0: invalid betas (1, 0.9)",
    );
    assert_panics(
        || drop(Adagrad::with_groups(one(|g| g.lr(-0.1)), 0.1)),
        "Adagrad: parameter group 0: invalid learning rate -0.1",
    );
    // The builder's checks of a default are the same.
    assert_panics(|| drop(Sgd::new([param(&dev)], 0.1).momentum(-0.5)), "Sgd: invalid momentum -0.5");
    assert_panics(|| drop(AdamW::new([param(&dev)], 0.1).betas(0.9, 1.5)), "AdamW: invalid betas (0.9, 1.5)");
    // Nesterov's conditions hold per group, at the step as before.
    let p = param(&dev);
    let mut opt = Sgd::with_groups([ParamGroup::new([p.clone()]).dampening(0.5)], 0.1).momentum(0.9).nesterov(true);
    assert_panics(
        || opt.step(&p.sum_all().backward()),
        "Sgd: parameter group 0: Nesterov momentum requires a momentum and zero dampening (momentum 0.9, dampening 0.5)",
    );
}

#[test]
fn empty_groups_panic_naming_the_group() {
    let dev = Device::cpu();
    assert_panics(
        || drop(Adam::with_groups([ParamGroup::new([param(&dev)]), ParamGroup::new([])], 0.1)),
        "Adam: parameter group 1 is empty",
    );
    assert_panics(|| drop(RmsProp::with_groups(Vec::new(), 0.1)), "RmsProp: no parameter groups");
    // The whole-list check of `new` stays.
    assert_panics(|| drop(Sgd::new(Vec::new(), 0.1)), "Sgd: the parameter list is empty");
}

#[test]
fn a_group_that_does_not_exist_panics() {
    let mut opt = two_group_sgd();
    assert_panics(
        || {
            let _ = opt.group_lr(2);
        },
        "Sgd: there is no parameter group 2; the optimizer has 2",
    );
    assert_panics(|| opt.set_group_lr(5, 0.1), "Sgd: there is no parameter group 5");
}

// ---------------------------------------------------------------------------------------
// Groups from a model.
// ---------------------------------------------------------------------------------------

/// Eleven layers, so that `1.weight` and `10.weight` both exist.
fn eleven_layers(dev: &Device) -> nn::Sequential {
    (0..11).fold(nn::Sequential::new(), |m, _| m.add(nn::Linear::new(2, 2, dev)))
}

fn not_in_module(e: Error) -> String {
    match e {
        Error::NotInModule(reason) => reason,
        other => panic!("expected Error::NotInModule, got {other:?}"),
    }
}

#[test]
fn groups_by_name_prefix_and_filter() {
    let dev = Device::cpu();
    let model = eleven_layers(&dev);
    let named = model.named_parameters();
    let id = |name: &str| named.iter().find(|(n, _)| n == name).unwrap().1.grad_id();
    let ids = |g: &ParamGroup| g.params().iter().map(|t| t.grad_id()).collect::<Vec<_>>();

    let by_name = ParamGroup::from_names(&model, &["10.bias", "1.weight", "10.bias"]).unwrap();
    assert_eq!(ids(&by_name), [id("10.bias"), id("1.weight")], "in the order given, once each");

    // `1` takes `1.weight` and `1.bias`, not `10.*`.
    let prefix = ParamGroup::with_prefix(&model, "1").unwrap();
    assert_eq!(ids(&prefix), [id("1.weight"), id("1.bias")]);
    let exact = ParamGroup::with_prefix(&model as &dyn Module, "10.bias").unwrap();
    assert_eq!(ids(&exact), [id("10.bias")]);

    let biases = ParamGroup::filter(&model, |n, _| n.ends_with(".bias"));
    assert_eq!(biases.len(), 11);
    assert!(biases.params().iter().all(|t| t.shape() == [2]));

    // The classic split drives a working optimizer.
    let decay = ParamGroup::filter(&model, |_, t| t.shape().len() > 1);
    let no_decay = ParamGroup::filter(&model, |_, t| t.shape().len() <= 1).weight_decay(0.0);
    let opt = AdamW::with_groups([decay, no_decay], 1e-3);
    assert_eq!(opt.state_dict().groups.iter().map(|g| g.num_params).collect::<Vec<_>>(), [11, 11]);
}

#[test]
fn unknown_names_and_prefixes_are_errors() {
    let dev = Device::cpu();
    let model = eleven_layers(&dev);
    let msg = not_in_module(ParamGroup::from_names(&model, &["0.weight", "head.weight", "11.bias"]).unwrap_err());
    assert!(
        msg.starts_with("ParamGroup::from_names: 'head.weight', '11.bias' are not parameters of the model"),
        "{msg}"
    );
    assert!(msg.contains("'0.weight', '0.bias'") && msg.contains("(22 in all)"), "{msg}");
    let err = ParamGroup::from_names(&model, &["head"]).unwrap_err();
    assert!(err.to_string().starts_with("ParamGroup::from_names: 'head' is not a parameter of the model"), "{err}");

    let msg = not_in_module(ParamGroup::with_prefix(&model, "features").unwrap_err());
    assert!(msg.contains("no parameter of the model is named 'features' or starts with 'features.'"), "{msg}");
    // A prefix of a name that does not end at a dot matches nothing.
    assert!(ParamGroup::with_prefix(&model, "1.w").is_err());
    assert!(ParamGroup::filter(&model, |_, _| false).is_empty());
}

// ---------------------------------------------------------------------------------------
// State: in memory and through files.
// ---------------------------------------------------------------------------------------

/// A tiny MLP whose initial weights come from `seed`: parameters `0.weight`, `0.bias`,
/// `2.weight`, `2.bias`.
fn model(seed: u64, dev: &Device) -> nn::Sequential {
    wgrad::manual_seed(seed);
    nn::Sequential::new().add(nn::Linear::new(3, 4, dev)).add(nn::Tanh).add(nn::Linear::new(4, 2, dev))
}

/// Two groups: the first layer at one rate and weight decay, the second at another.
fn model_groups(m: &nn::Sequential, rates: [f32; 2], decays: [f32; 2]) -> Vec<ParamGroup> {
    vec![
        ParamGroup::with_prefix(m, "0").unwrap().lr(rates[0]).weight_decay(decays[0]),
        ParamGroup::with_prefix(m, "2").unwrap().lr(rates[1]).weight_decay(decays[1]),
    ]
}

/// Every optimizer over groups, with its defaults.
const GROUPED: [(&str, MakeGroups); 5] = [
    ("sgd", |g| Box::new(Sgd::with_groups(g, 0.1).momentum(0.9))),
    ("adam", |g| Box::new(Adam::with_groups(g, 0.1))),
    ("adamw", |g| Box::new(AdamW::with_groups(g, 0.1))),
    ("rmsprop", |g| Box::new(RmsProp::with_groups(g, 0.1).momentum(0.5).centered(true))),
    ("adagrad", |g| Box::new(Adagrad::with_groups(g, 0.1).lr_decay(0.01))),
];

/// The rates and decays of the trained run, and the other ones a fresh optimizer is built
/// with before the load restores the trained ones.
const RATES: [f32; 2] = [0.05, 0.01];
const DECAYS: [f32; 2] = [0.01, 0.0];
const OTHER_RATES: [f32; 2] = [0.5, 0.7];
const OTHER_DECAYS: [f32; 2] = [0.3, 0.3];

fn batch(dev: &Device) -> (Tensor, Tensor) {
    (common::randn(&[5, 3], 11, dev), common::randn(&[5, 2], 12, dev))
}

/// `steps` steps, each followed by an exponential decay of every group's rate.
fn train(m: &nn::Sequential, opt: &mut dyn Optimizer, sched: &mut ExponentialLr, steps: usize, dev: &Device) {
    let (x, y) = batch(dev);
    for _ in 0..steps {
        opt.step(&loss::mse_loss(&m.forward(&x), &y, Reduction::Mean).backward());
        sched.step();
        sched.apply(opt);
    }
}

fn bits(m: &nn::Sequential) -> Vec<Vec<u32>> {
    m.parameters().iter().map(|p| p.to_vec::<f32>().iter().map(|v| v.to_bits()).collect()).collect()
}

type ParamBits = (u64, Vec<(String, Vec<u32>)>);

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

/// A run of 3 steps, saved (model and optimizer), continued in a fresh model and a fresh
/// optimizer built with other rates and decays: the load restores each group's rate,
/// initial rate and decay, so 3 more steps end bit-identical to 6 steps straight. In
/// memory and through files, for every optimizer, on both devices.
#[test]
fn resume_with_two_groups_is_bit_identical() {
    for dev in devices("resume_with_two_groups_is_bit_identical") {
        let dir = TempDir::new(&format!("groups-{}", dev_name(&dev)));
        for (name, make) in GROUPED {
            let m = model(1, &dev);
            let mut opt = make(model_groups(&m, RATES, DECAYS));
            train(&m, opt.as_mut(), &mut ExponentialLr::new(1.0, 0.8), 6, &dev);
            let expected = bits(&m);

            let m = model(1, &dev);
            let mut opt = make(model_groups(&m, RATES, DECAYS));
            let mut sched = ExponentialLr::new(1.0, 0.8);
            train(&m, opt.as_mut(), &mut sched, 3, &dev);
            let state = opt.state_dict();
            let rates: Vec<u32> = (0..2).map(|g| opt.group_lr(g).to_bits()).collect();
            for (g, rate) in RATES.iter().enumerate() {
                assert!((opt.group_lr(g) / rate - 0.512).abs() < 1e-5, "{name}: each group decayed by 0.8^3");
            }
            checkpoint::save(&m, dir.path("model.safetensors")).unwrap();
            checkpoint::save_optimizer(opt.as_ref(), dir.path("optim.safetensors")).unwrap();

            for through_file in [false, true] {
                let what = format!("{name} on {}, {}", dev_name(&dev), if through_file { "file" } else { "memory" });
                let m = model(2, &dev);
                checkpoint::load(&m, dir.path("model.safetensors")).unwrap();
                let mut opt = make(model_groups(&m, OTHER_RATES, OTHER_DECAYS));
                if through_file {
                    checkpoint::load_optimizer(opt.as_mut(), dir.path("optim.safetensors")).unwrap();
                } else {
                    opt.load_state_dict(&state).unwrap();
                }
                let loaded = opt.state_dict();
                assert_eq!(state_bits(&loaded), state_bits(&state), "{what}");
                assert_eq!(loaded.groups, state.groups, "{what}: groups");
                assert_eq!((0..2).map(|g| opt.group_lr(g).to_bits()).collect::<Vec<_>>(), rates, "{what}");
                assert_eq!([opt.initial_lr(0), opt.initial_lr(1)], RATES, "{what}: initial rates");
                let mut sched = ExponentialLr::new(1.0, 0.8);
                for _ in 0..3 {
                    sched.step();
                }
                train(&m, opt.as_mut(), &mut sched, 3, &dev);
                assert_eq!(bits(&m), expected, "{what}: resumed run differs from the straight run");
            }
        }
    }
}

/// A frozen submodule's group stays in the optimizer and is skipped (no decoupled decay,
/// no state) until it is unfrozen, when its first update is a first step.
#[test]
fn a_frozen_group_is_skipped_until_unfrozen() {
    for dev in devices("a_frozen_group_is_skipped_until_unfrozen") {
        let m = model(1, &dev);
        let before = bits(&m);
        let mut opt = AdamW::with_groups(model_groups(&m, RATES, DECAYS), 0.1);
        assert_eq!(m.freeze_submodule("0").unwrap(), 2);
        let mut constant = ExponentialLr::new(1.0, 1.0);
        train(&m, &mut opt, &mut constant, 2, &dev);
        let after = bits(&m);
        assert_eq!(after[..2], before[..2], "on {}: the frozen layer moved", dev_name(&dev));
        assert_ne!(after[2..], before[2..]);
        let steps = |opt: &dyn Optimizer| -> Vec<Option<u64>> {
            opt.state_dict().params.iter().map(|p| p.as_ref().map(|p| p.step)).collect()
        };
        assert_eq!(steps(&opt), vec![None, None, Some(2), Some(2)]);
        m.unfreeze_submodule("0").unwrap();
        train(&m, &mut opt, &mut constant, 1, &dev);
        assert_ne!(bits(&m)[..2], before[..2]);
        assert_eq!(steps(&opt), vec![Some(1), Some(1), Some(3), Some(3)]);
    }
}

/// The groups are in the file's metadata, every value exact.
#[test]
fn file_metadata_holds_the_groups() {
    let dev = Device::cpu();
    let dir = TempDir::new("metadata");
    let m = model(1, &dev);
    let groups = model_groups(&m, [0.05, 0.01], [0.01, 0.0]);
    let mut opt = Adam::with_groups(groups, 0.1).betas(0.8, 0.995);
    opt.set_group_lr(1, 0.003);
    let path = dir.path("optim.safetensors");
    checkpoint::save_optimizer(&opt, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = header.metadata().clone().unwrap();
    let get = |k: &str| meta.get(k).map(String::as_str);
    assert_eq!(get("format"), Some("wgrad.optimizer.v2"));
    assert_eq!((get("num_params"), get("num_groups"), get("lr")), (Some("4"), Some("2"), Some("0.05")));
    assert_eq!((get("group.0.num_params"), get("group.1.num_params")), (Some("2"), Some("2")));
    assert_eq!((get("group.1.lr"), get("group.1.initial_lr")), (Some("0.003"), Some("0.01")));
    assert_eq!((get("group.0.weight_decay"), get("group.1.weight_decay")), (Some("0.01"), Some("0.0")));
    assert_eq!((get("group.0.betas"), get("group.0.eps")), (Some("[0.8, 0.995]"), Some("1e-8")));
    assert_eq!(get("group.0.momentum"), None, "Adam has no momentum");
    let read = checkpoint::load_optimizer_state(&path).unwrap();
    assert_eq!(read.groups, opt.state_dict().groups);
}

/// A file of the format before groups (`wgrad.optimizer.v1`: `lr` and `num_params`, no
/// groups) loads as one group whose options the optimizer keeps.
#[test]
fn a_v1_file_loads_as_one_group() {
    let dev = Device::cpu();
    let dir = TempDir::new("v1");
    let m = model(1, &dev);
    let mut opt = Sgd::new(m.parameters(), 0.1).momentum(0.9).weight_decay(0.01);
    train(&m, &mut opt, &mut ExponentialLr::new(0.1, 0.5), 2, &dev);
    let path = dir.path("v2.safetensors");
    checkpoint::save_optimizer(&opt, &path).unwrap();
    // The same tensors with the metadata a v1 file had.
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    let metadata = std::collections::HashMap::from([
        ("format".to_string(), "wgrad.optimizer.v1".to_string()),
        ("optimizer".to_string(), "Sgd".to_string()),
        ("lr".to_string(), "0.025".to_string()),
        ("num_params".to_string(), "4".to_string()),
    ]);
    let v1 = dir.path("v1.safetensors");
    std::fs::write(&v1, safetensors::serialize(tensors, Some(metadata)).unwrap()).unwrap();

    let state = checkpoint::load_optimizer_state(&v1).unwrap();
    assert_eq!(state.groups.len(), 1);
    assert_eq!((state.groups[0].num_params, state.groups[0].lr, state.groups[0].initial_lr), (4, 0.025, 0.025));
    assert_eq!(state.groups[0].options, Default::default(), "a v1 file records no options");
    let mut resumed = Sgd::new(m.parameters(), 0.1).momentum(0.9).weight_decay(0.02);
    checkpoint::load_optimizer(&mut resumed, &v1).unwrap();
    assert_eq!(resumed.lr(), 0.025);
    assert_eq!(state_bits(&resumed.state_dict()), state_bits(&opt.state_dict()));
    assert_eq!(resumed.state_dict().groups[0].options.weight_decay, Some(0.02), "the optimizer's own decay stays");
}

fn optimizer_state_error(e: Error) -> String {
    match e {
        Error::OptimizerState(reason) => reason,
        other => panic!("expected Error::OptimizerState, got {other:?}"),
    }
}

/// Another number of groups, groups of other sizes, an option the optimizer lacks or an
/// invalid one: errors naming what differs, and nothing changes.
#[test]
fn a_state_of_other_groups_is_an_error_that_changes_nothing() {
    for dev in devices("a_state_of_other_groups_is_an_error_that_changes_nothing") {
        let m = model(1, &dev);
        let mut opt = Sgd::with_groups(model_groups(&m, RATES, DECAYS), 0.1).momentum(0.9);
        train(&m, &mut opt, &mut ExponentialLr::new(1.0, 0.5), 2, &dev);
        let before = opt.state_dict();
        let reject = |opt: &mut Sgd, state: &OptimizerState, expect: &str| {
            let msg = optimizer_state_error(opt.load_state_dict(state).unwrap_err());
            assert!(msg.contains(expect), "on {}: '{msg}' should mention '{expect}'", dev_name(&dev));
            let after = opt.state_dict();
            assert_eq!(state_bits(&after), state_bits(&before));
            assert_eq!(after.groups, before.groups);
        };

        // One group over the same four parameters.
        let one = Sgd::new(m.parameters(), 0.1).momentum(0.9).state_dict();
        reject(
            &mut opt,
            &one,
            "the state has 1 parameter groups (of sizes [4]) but the Sgd optimizer has 2 (of sizes [2, 2])",
        );

        // Two groups of other sizes: the first layer's weight alone, then the rest.
        let named = m.named_parameters();
        let other_split = [
            ParamGroup::from_names(&m, &["0.weight"]).unwrap(),
            ParamGroup::new(named[1..].iter().map(|(_, t)| t.clone())),
        ];
        let mut other = Sgd::with_groups(other_split, 0.1).momentum(0.9);
        let mut s = other.state_dict();
        s.groups[1].lr = 0.5;
        reject(&mut opt, &s, "parameter group 0 has 1 parameters in the state but 2 in the Sgd optimizer");
        reject(&mut opt, &s, "parameter group 1 has 3 parameters in the state but 2");
        // And the other way round.
        let msg = optimizer_state_error(other.load_state_dict(&before).unwrap_err());
        assert!(msg.contains("parameter group 0 has 2 parameters in the state but 1"), "{msg}");

        // An option Sgd does not have, an invalid value, an invalid rate.
        let mut s = before.clone();
        s.groups[1].options.betas = Some((0.9, 0.99));
        reject(&mut opt, &s, "parameter group 1 sets betas, which Sgd does not have");
        let mut s = before.clone();
        s.groups[0].options.momentum = Some(-1.0);
        reject(&mut opt, &s, "parameter group 0: invalid momentum -1");
        let mut s = before.clone();
        s.groups[1].initial_lr = f32::NAN;
        reject(&mut opt, &s, "parameter group 1: invalid initial learning rate NaN");
        let mut s = before.clone();
        s.groups.push(s.groups[1].clone());
        reject(&mut opt, &s, "the state has 3 parameter groups");

        // A group of the state with momentum 0 in an Sgd built with momentum: its buffers
        // are not a state that group keeps.
        let mut s = before.clone();
        s.groups[1].options.momentum = Some(0.0);
        reject(&mut opt, &s, "parameter 2 (shape [2, 4]): 'momentum_buffer' (shape [2, 4]) is not a state this Sgd keeps in parameter group 1");
    }
}

/// Groups that do not add up in a file are format errors.
#[test]
fn a_file_whose_groups_do_not_add_up_is_an_error() {
    let dev = Device::cpu();
    let dir = TempDir::new("bad-groups");
    let m = model(1, &dev);
    let mut opt = Adam::with_groups(model_groups(&m, RATES, DECAYS), 0.1);
    train(&m, &mut opt, &mut ExponentialLr::new(1.0, 0.5), 1, &dev);
    let path = dir.path("optim.safetensors");
    checkpoint::save_optimizer(&opt, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let good = header.metadata().clone().unwrap();
    let write = |edit: &dyn Fn(&mut std::collections::HashMap<String, String>)| {
        let mut meta = good.clone();
        edit(&mut meta);
        let tensors: Vec<(String, safetensors::tensor::TensorView)> =
            file.tensors().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
        let bad = dir.path("bad.safetensors");
        std::fs::write(&bad, safetensors::serialize(tensors, Some(meta)).unwrap()).unwrap();
        checkpoint::load_optimizer_state(&bad).unwrap_err().to_string()
    };
    let msg = write(&|m| {
        m.insert("group.1.num_params".into(), "3".into());
    });
    assert!(msg.contains("the groups hold 5 parameters ([2, 3]) but num_params is 4"), "{msg}");
    let msg = write(&|m| {
        m.insert("group.2.lr".into(), "0.1".into());
    });
    assert!(msg.contains("metadata 'group.2.lr' is not a key of one of the 2 groups"), "{msg}");
    let msg = write(&|m| {
        m.insert("group.0.betas".into(), "0.9".into());
    });
    assert!(msg.contains("group.0.betas '0.9' is not a pair [beta1, beta2]"), "{msg}");
    let msg = write(&|m| {
        m.remove("group.1.initial_lr");
    });
    assert!(msg.contains("no 'group.1.initial_lr' in the metadata"), "{msg}");
    let msg = write(&|m| {
        m.insert("format".into(), "wgrad.optimizer.v9".into());
    });
    assert!(
        msg.contains("format 'wgrad.optimizer.v9' is neither 'wgrad.optimizer.v2' nor 'wgrad.optimizer.v1'"),
        "{msg}"
    );
}
