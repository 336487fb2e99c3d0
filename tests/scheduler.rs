//! Learning-rate schedulers against PyTorch's semantics.
//!
//! The schedulers evaluate PyTorch's closed forms (`_get_closed_form_lr`). The references
//! here are computed another way: with the chainable recurrences of PyTorch's `get_lr()`
//! (torch/optim/lr_scheduler.py), which is what `scheduler.step()` runs and what
//! `get_last_lr()` reports, in f64 as Python does. ReduceLROnPlateau has no formula to
//! recompute; its tests script a metric sequence and list the expected rates, worked out
//! by hand from PyTorch's `step` (comments say why each rate changes).

use wgrad::optim::scheduler::{
    CosineAnnealingLr, ExponentialLr, LinearLr, LinearWarmup, LrScheduler, MultiStepLr, PlateauMode, ReduceLrOnPlateau,
    SequentialLr, StepLr, ThresholdMode,
};

const STEPS: usize = 30;

/// `|actual - expected| <= 1e-6 * |expected| + 1e-12`: the f32 rounding of an f64 rate.
fn assert_rate(actual: f32, expected: f64, what: &str) {
    let tol = 1e-6 * expected.abs() + 1e-12;
    assert!((actual as f64 - expected).abs() <= tol, "{what}: rate {actual}, expected {expected}");
}

/// The rates of `sched` at epochs `0..=STEPS`, checking `last_epoch` on the way.
fn rates(sched: &mut dyn LrScheduler) -> Vec<f32> {
    let mut out = vec![sched.lr()];
    assert_eq!(sched.last_epoch(), 0);
    for epoch in 1..=STEPS {
        sched.step();
        assert_eq!(sched.last_epoch(), epoch);
        out.push(sched.lr());
    }
    out
}

/// Runs PyTorch's recurrence `next(epoch, previous lr) -> lr` from `initial` (the epoch-0 rate).
fn recurrence(initial: f64, next: impl Fn(usize, f64) -> f64) -> Vec<f64> {
    let mut out = vec![initial];
    for epoch in 1..=STEPS {
        let prev = *out.last().unwrap();
        out.push(next(epoch, prev));
    }
    out
}

fn assert_rates(actual: &[f32], expected: &[f64], name: &str) {
    assert_eq!(actual.len(), expected.len());
    for (epoch, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert_rate(a, e, &format!("{name} at epoch {epoch}"));
    }
}

#[test]
fn step_lr() {
    // StepLR.get_lr: lr * gamma when epoch != 0 and epoch % step_size == 0, else lr.
    let (base, step_size, gamma) = (0.1, 7, 0.5);
    let expected = recurrence(base, |e, lr| if e % step_size == 0 { lr * gamma } else { lr });
    let mut sched = StepLr::new(base as f32, step_size, gamma as f32);
    assert_rates(&rates(&mut sched), &expected, "StepLR");
    // By hand: epochs 0..6 at 0.1, 7..13 at 0.05, 28.. at 0.1 / 16.
    assert_rate(StepLr::new(0.1, 7, 0.5).lr_at(6) as f32, 0.1, "StepLR epoch 6");
    assert_rate(StepLr::new(0.1, 7, 0.5).lr_at(13) as f32, 0.05, "StepLR epoch 13");
    assert_rate(StepLr::new(0.1, 7, 0.5).lr_at(28) as f32, 0.1 / 16.0, "StepLR epoch 28");
}

#[test]
fn multi_step_lr_with_repeated_milestones() {
    // MultiStepLR.get_lr: lr * gamma^(times epoch appears in milestones), else lr.
    // PyTorch keeps milestones in a Counter, so a milestone listed twice decays twice.
    let milestones = [12, 7, 3, 7];
    let (base, gamma) = (1.0, 0.1);
    let expected = recurrence(base, |e, lr| {
        let count = milestones.iter().filter(|&&m| m == e).count();
        lr * f64::powi(gamma, count as i32)
    });
    let mut sched = MultiStepLr::new(base as f32, &milestones, gamma as f32);
    assert_rates(&rates(&mut sched), &expected, "MultiStepLR");
    // By hand: 1 until epoch 3, 0.1 from 3, 0.001 from 7 (7 listed twice), 1e-4 from 12.
    let s = MultiStepLr::new(1.0, &milestones, 0.1);
    for (epoch, lr) in [(2, 1.0), (3, 0.1), (6, 0.1), (7, 1e-3), (11, 1e-3), (12, 1e-4), (30, 1e-4)] {
        assert_rate(s.lr_at(epoch) as f32, lr, &format!("MultiStepLR by hand at {epoch}"));
    }
}

#[test]
fn exponential_lr() {
    // ExponentialLR.get_lr: lr * gamma for every epoch after 0.
    let (base, gamma) = (0.5, 0.9);
    let expected = recurrence(base, |_, lr| lr * gamma);
    let mut sched = ExponentialLr::new(base as f32, gamma as f32);
    assert_rates(&rates(&mut sched), &expected, "ExponentialLR");
}

/// CosineAnnealingLR.get_lr, the recurrence PyTorch steps with:
/// - `(epoch - 1 - T_max) % (2 T_max) == 0`: `lr + (base - eta_min) * (1 - cos(pi / T_max)) / 2`
/// - otherwise: `(1 + cos(pi e / T_max)) / (1 + cos(pi (e - 1) / T_max)) * (lr - eta_min) + eta_min`
fn cosine_reference(base: f64, t_max: usize, eta_min: f64) -> Vec<f64> {
    use std::f64::consts::PI;
    let t = t_max as f64;
    recurrence(base, |e, lr| {
        if (e as i64 - 1 - t_max as i64).rem_euclid(2 * t_max as i64) == 0 {
            lr + (base - eta_min) * (1.0 - (PI / t).cos()) / 2.0
        } else {
            (1.0 + (PI * e as f64 / t).cos()) / (1.0 + (PI * (e as f64 - 1.0) / t).cos()) * (lr - eta_min) + eta_min
        }
    })
}

#[test]
fn cosine_annealing_through_t_max_and_beyond() {
    let (base, t_max, eta_min) = (0.1, 10, 0.001);
    let mut sched = CosineAnnealingLr::new(base as f32, t_max, eta_min as f32);
    let actual = rates(&mut sched);
    assert_rates(&actual, &cosine_reference(base, t_max, eta_min), "CosineAnnealingLR");
    // By hand: halfway at t_max / 2, eta_min at t_max, and PyTorch's schedule keeps
    // following the cosine past t_max: back to base at 2 t_max, eta_min again at 3 t_max.
    assert_rate(actual[5], (base + eta_min) / 2.0, "cosine at t_max / 2");
    assert_rate(actual[10], eta_min, "cosine at t_max");
    assert_rate(actual[15], (base + eta_min) / 2.0, "cosine at 1.5 t_max");
    assert_rate(actual[20], base, "cosine at 2 t_max");
    assert_rate(actual[30], eta_min, "cosine at 3 t_max");
    assert!(actual[11] > actual[10], "past t_max the rate rises again, as in PyTorch");
}

#[test]
fn cosine_annealing_to_zero() {
    let (base, t_max) = (1.0, 7);
    let mut sched = CosineAnnealingLr::new(base as f32, t_max, 0.0);
    let actual = rates(&mut sched);
    assert_rates(&actual, &cosine_reference(base, t_max, 0.0), "CosineAnnealingLR eta_min 0");
    assert!(actual[7].abs() < 1e-12, "the rate at t_max is eta_min = 0, got {}", actual[7]);
}

/// LinearLR.get_lr: `lr * start` at epoch 0; `lr` past total_iters; otherwise
/// `lr * (1 + (end - start) / (total * start + (epoch - 1) * (end - start)))`.
fn linear_reference(base: f64, start: f64, end: f64, total: usize) -> Vec<f64> {
    recurrence(base * start, |e, lr| {
        if e > total {
            lr
        } else {
            lr * (1.0 + (end - start) / (total as f64 * start + (e as f64 - 1.0) * (end - start)))
        }
    })
}

#[test]
fn linear_lr_warmup_and_decay() {
    // PyTorch's defaults: start 1/3, end 1, 5 iterations.
    let mut warmup = LinearWarmup::warmup(0.1, 1.0 / 3.0, 5);
    let actual = rates(&mut warmup);
    assert_rates(&actual, &linear_reference(0.1, 1.0 / 3.0, 1.0, 5), "LinearLR warm-up");
    assert_rate(actual[0], 0.1 / 3.0, "warm-up starts at base * start_factor");
    assert_rate(actual[5], 0.1, "warm-up reaches base at total_iters");
    assert_rate(actual[30], 0.1, "and stays there");

    // A linear decay: from the full rate down to a quarter over 12 epochs.
    let mut decay = LinearLr::new(2.0, 1.0, 0.25, 12);
    assert_rates(&rates(&mut decay), &linear_reference(2.0, 1.0, 0.25, 12), "LinearLR decay");
}

#[test]
#[should_panic(expected = "start_factor must be in (0, 1]")]
fn linear_lr_rejects_a_zero_start_factor() {
    LinearLr::new(0.1, 0.0, 1.0, 5);
}

#[test]
fn sequential_warmup_then_cosine() {
    // SequentialLR.step: epoch += 1; i = bisect_right(milestones, epoch); schedule i runs
    // step(0) (its epoch 0) when epoch is its milestone, else step().
    let (base, warm, t_max, eta_min) = (0.1, 5, 20, 0.0);
    let warmup = linear_reference(base, 0.1, 1.0, warm);
    let cosine = cosine_reference(base, t_max, eta_min);
    let expected: Vec<f64> = (0..=STEPS).map(|e| if e < warm { warmup[e] } else { cosine[e - warm] }).collect();
    let mut sched = SequentialLr::warmup_then(
        LinearLr::new(base as f32, 0.1, 1.0, warm),
        CosineAnnealingLr::new(base as f32, t_max, eta_min as f32),
    );
    assert_rates(&rates(&mut sched), &expected, "warm-up then cosine");
}

#[test]
fn sequential_restarts_each_schedule_at_its_milestone() {
    // Three phases whose switches are visible: exponential decay, then a step schedule
    // starting again from its base rate, then a multi-step one from its own.
    let milestones = [4, 13];
    let exp = recurrence(1.0, |_, lr| lr * 0.5);
    let step = recurrence(0.3, |e, lr| if e % 3 == 0 { lr * 0.1 } else { lr });
    let multi = recurrence(0.05, |e, lr| if e == 2 || e == 10 { lr * 0.5 } else { lr });
    let expected: Vec<f64> = (0..=STEPS)
        .map(|e| match e {
            e if e < 4 => exp[e],
            e if e < 13 => step[e - 4],
            e => multi[e - 13],
        })
        .collect();

    // A schedule handed over after some steps is restarted, as SequentialLR's constructor does.
    let mut stepped = StepLr::new(0.3, 3, 0.1);
    for _ in 0..5 {
        stepped.step();
    }
    let mut sched = SequentialLr::new(
        vec![
            Box::new(ExponentialLr::new(1.0, 0.5)),
            Box::new(stepped),
            Box::new(MultiStepLr::new(0.05, &[2, 10], 0.5)),
        ],
        &milestones,
    );
    let actual = rates(&mut sched);
    assert_rates(&actual, &expected, "SequentialLR");
    assert_rate(actual[3], 0.125, "last exponential epoch");
    assert_rate(actual[4], 0.3, "the step schedule begins at its epoch 0");
    assert_rate(actual[13], 0.05, "the multi-step schedule begins at its epoch 0");

    sched.restart();
    assert_eq!(sched.last_epoch(), 0);
    assert_rate(sched.lr(), 1.0, "restart goes back to the first schedule's epoch 0");
}

#[test]
#[should_panic(expected = "2 schedules need 1 milestones, got 2")]
fn sequential_checks_the_milestone_count() {
    SequentialLr::new(vec![Box::new(ExponentialLr::new(1.0, 0.5)), Box::new(StepLr::new(1.0, 2, 0.5))], &[3, 5]);
}

// ---- ReduceLROnPlateau ----
//
// PyTorch's step(metrics): epoch += 1; a metric better than best (by the threshold)
// becomes best and num_bad_epochs = 0, otherwise num_bad_epochs += 1; in cooldown the
// counter ticks down and num_bad_epochs is reset; when num_bad_epochs > patience the rate
// becomes max(lr * factor, min_lr) if that lowers it by more than eps, cooldown starts and
// num_bad_epochs = 0.

/// Feeds `metrics` one epoch each and checks the rate after each.
fn plateau_run(mut sched: ReduceLrOnPlateau, metrics: &[f32], expected: &[f64], name: &str) -> ReduceLrOnPlateau {
    assert_eq!(metrics.len(), expected.len());
    for (i, (&m, &lr)) in metrics.iter().zip(expected).enumerate() {
        sched.step_with(m);
        assert_eq!(sched.last_epoch(), i + 1);
        assert_rate(sched.lr(), lr, &format!("{name}: after epoch {} (metric {m})", i + 1));
    }
    sched
}

#[test]
fn plateau_defaults_wait_ten_bad_epochs() {
    // Default patience 10, factor 0.1: the 11th epoch without improvement reduces.
    let mut metrics = vec![1.0f32];
    metrics.extend([1.0f32; 11]);
    let mut expected = vec![0.1; 11];
    expected.push(0.01);
    let sched = plateau_run(ReduceLrOnPlateau::new(0.1, PlateauMode::Min), &metrics, &expected, "defaults");
    assert_eq!(sched.best(), 1.0);
    assert_eq!(sched.num_bad_epochs(), 0, "the count is cleared by the reduction");
}

#[test]
fn plateau_patience() {
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(2).factor(0.5);
    let metrics = [10.0, 9.0, 9.0, 9.0, 9.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0];
    let expected = [
        1.0, 1.0, // 10 and 9 are improvements
        1.0, 1.0, // 1 and 2 bad epochs: not more than patience
        0.5, // 3 bad epochs > 2: halve, count cleared
        0.5, // 8 improves
        0.5, 0.5, 0.25, // three more bad epochs
        0.25, 0.25, 0.125,
    ];
    let sched = plateau_run(sched, &metrics, &expected, "patience 2");
    assert_eq!(sched.best(), 8.0);
}

#[test]
fn plateau_relative_and_absolute_thresholds() {
    // Relative 1e-4 (default): better means below best * 0.9999.
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(0).factor(0.5);
    let metrics = [1.0, 0.99995, 0.9998, 0.99975];
    let expected = [
        1.0,  // first metric is always best
        0.5,  // 0.99995 is not below 0.9999: bad, and patience 0 reduces at once
        0.5,  // 0.9998 < 0.9999: improvement
        0.25, // 0.99975 is not below 0.9998 * 0.9999 = 0.99970002
    ];
    let sched = plateau_run(sched, &metrics, &expected, "relative threshold");
    assert_rate(sched.best() as f32, 0.9998, "best");

    // Absolute 0.1: better means below best - 0.1.
    let sched =
        ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(0).factor(0.5).threshold(0.1, ThresholdMode::Abs);
    let metrics = [1.0, 0.95, 0.85, 0.8, 0.7];
    let expected = [1.0, 0.5, 0.5, 0.25, 0.25];
    plateau_run(sched, &metrics, &expected, "absolute threshold");
}

#[test]
fn plateau_max_mode() {
    // An accuracy: better means above best * 1.0001.
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Max).patience(1);
    let metrics = [0.5, 0.6, 0.6, 0.6, 0.7, 0.70001, 0.65];
    let expected = [
        1.0, 1.0,  // improvements
        1.0,  // 1 bad epoch
        0.1,  // 2 > patience 1
        0.1,  // 0.7 improves
        0.1,  // 0.70001 is not above 0.7 * 1.0001: bad 1
        0.01, // bad 2
    ];
    let sched = plateau_run(sched, &metrics, &expected, "max mode");
    assert_rate(sched.best() as f32, 0.7, "best");
}

#[test]
fn plateau_cooldown() {
    // A flat metric, patience 1, cooldown 2: after each reduction two epochs are ignored.
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(1).cooldown(2).factor(0.5);
    let metrics = [5.0f32; 12];
    let expected = [
        1.0, // best
        1.0, // bad 1
        0.5, // bad 2 > 1: reduce, cooldown 2
        0.5, 0.5,  // cooldown: bad epochs not counted
        0.5,  // bad 1
        0.25, // bad 2: reduce, cooldown 2
        0.25, 0.25, // cooldown
        0.25, 0.125, // bad 1, bad 2
        0.125, // cooldown
    ];
    let sched = plateau_run(sched, &metrics, &expected, "cooldown 2");
    assert!(sched.in_cooldown());

    // The same without cooldown reduces every other epoch.
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(1).factor(0.5);
    let expected = [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125, 0.0625, 0.0625, 0.03125, 0.03125];
    plateau_run(sched, &metrics, &expected, "no cooldown");
}

#[test]
fn plateau_min_lr_and_eps() {
    // The rate stops at min_lr.
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(0).min_lr(0.015);
    let metrics = [3.0f32; 6];
    let expected = [1.0, 0.1, 0.015, 0.015, 0.015, 0.015];
    plateau_run(sched, &metrics, &expected, "min_lr");

    // A reduction by no more than eps (1e-8) is skipped: from 1.25e-8 halving would
    // lower the rate by 6.25e-9.
    let sched = ReduceLrOnPlateau::new(1e-7, PlateauMode::Min).patience(0).factor(0.5);
    let metrics = [3.0f32; 6];
    let expected = [1e-7, 5e-8, 2.5e-8, 1.25e-8, 1.25e-8, 1.25e-8];
    plateau_run(sched, &metrics, &expected, "eps");
}

#[test]
fn plateau_nan_is_a_bad_epoch() {
    let sched = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).patience(0);
    let metrics = [2.0, f32::NAN, 1.0];
    let expected = [1.0, 0.1, 0.1];
    let sched = plateau_run(sched, &metrics, &expected, "NaN metric");
    assert_eq!(sched.best(), 1.0);
}

#[test]
#[should_panic(expected = "factor must be in [0, 1)")]
fn plateau_rejects_a_factor_of_one() {
    let _ = ReduceLrOnPlateau::new(1.0, PlateauMode::Min).factor(1.0);
}
