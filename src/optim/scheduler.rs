//! Learning-rate schedules with PyTorch's semantics (`torch.optim.lr_scheduler`).
//!
//! A scheduler here only computes a rate; it does not hold the optimizer. PyTorch's
//! schedulers rewrite `param_group["lr"]` themselves, which ties every scheduler to one
//! optimizer type and to mutable shared state. Here the training loop hands the optimizer
//! to [`LrScheduler::apply`], once before the first epoch (the epoch-0 rate of a warm-up is
//! not the base rate) and after every `step`. `apply` sets the rate of every parameter
//! group to the schedule evaluated at that group's initial rate
//! ([`Optimizer::initial_lr`]), which is what PyTorch's schedulers do with `base_lrs`: a
//! backbone group built at 1e-4 and a head group at 1e-3 both follow the warm-up and the
//! cosine, each at its own scale.
//!
//! ```
//! use wgrad::optim::scheduler::{CosineAnnealingLr, LinearLr, LrScheduler, SequentialLr};
//! use wgrad::optim::{Optimizer, ParamGroup, Sgd};
//! use wgrad::{Device, Tensor};
//!
//! let dev = Device::cpu();
//! let backbone = Tensor::from_slice(&[1.0f32, -2.0], &[2], &dev).requires_grad();
//! let head = Tensor::from_slice(&[0.5f32], &[1], &dev).requires_grad();
//! let groups = [ParamGroup::new([backbone.clone()]).lr(0.01), ParamGroup::new([head.clone()])];
//! let mut opt = Sgd::with_groups(groups, 0.1);
//! // 5 epochs of linear warm-up from half of each group's rate, then cosine decay over 20.
//! let mut sched = SequentialLr::warmup_then(LinearLr::new(0.1, 0.5, 1.0, 5), CosineAnnealingLr::new(0.1, 20, 0.0));
//! sched.apply(&mut opt);
//! assert_eq!((opt.group_lr(0), opt.group_lr(1)), (0.005, 0.05));
//! for _epoch in 0..25 {
//!     let grads = backbone.square().sum_all().add(&head.square().sum_all()).backward(); // one epoch
//!     opt.step(&grads);
//!     sched.step();
//!     sched.apply(&mut opt);
//! }
//! ```
//!
//! The base rate given to a scheduler's constructor is the one [`LrScheduler::lr`]
//! reports; `apply` does not use it, and [`LrScheduler::lr_for`] evaluates the schedule for
//! any other. With one group, `opt.set_lr(sched.lr())` (the way before groups) and
//! `sched.apply(&mut opt)` set the same rate when the optimizer was built at the
//! scheduler's base rate. `apply` always starts from the initial rates: a rate set by hand
//! in between is overwritten, as PyTorch's closed forms do.
//!
//! Every scheduler keeps the epoch counter and evaluates PyTorch's closed form at it (in
//! f64, as Python floats, rounded to f32 on the way out), so the rate after `n` calls of
//! `step` equals PyTorch's `get_last_lr()[i]` for group `i` after `n` calls of
//! `scheduler.step()`. PyTorch's chainable `get_lr` recurrences agree with those closed
//! forms whenever one scheduler drives the rates, which is the only case a rate-computing
//! scheduler can have. The one schedule without a closed form, [`ReduceLrOnPlateau`],
//! follows PyTorch's recurrence, takes the monitored metric in
//! [`ReduceLrOnPlateau::step_with`], and has an `apply` of its own that reduces each group
//! with its own floor (`min_lrs`).

use std::collections::BTreeMap;

use super::Optimizer;

/// A learning-rate schedule over epochs (or iterations: whatever `step` is called per).
///
/// After construction the schedule is at epoch 0; each [`step`](LrScheduler::step)
/// advances one epoch, as PyTorch's `scheduler.step()`.
pub trait LrScheduler {
    /// Advances one epoch.
    fn step(&mut self);
    /// The rate for the current epoch from the base rate given to the constructor
    /// (PyTorch's `get_last_lr()[0]` for an optimizer of one group at that rate).
    fn lr(&self) -> f32;
    /// The rate for the current epoch of the same schedule started from `base_lr`: the
    /// rate of a parameter group whose initial rate is `base_lr` (PyTorch evaluates every
    /// schedule once per entry of `base_lrs`). `lr_for` of the constructor's base rate is
    /// [`lr`](LrScheduler::lr), bit for bit.
    fn lr_for(&self, base_lr: f32) -> f32;
    /// The number of `step` calls since construction or the last `restart`.
    fn last_epoch(&self) -> usize;
    /// Goes back to epoch 0, as [`SequentialLr`] does when a schedule's phase begins
    /// (PyTorch's `scheduler.step(0)`).
    fn restart(&mut self);
    /// Sets the rate of every parameter group of `optimizer` to this schedule's rate for
    /// the current epoch, evaluated at the group's [`initial_lr`](Optimizer::initial_lr)
    /// (PyTorch's `param_group["lr"] = lr` for each group after `scheduler.step()`).
    fn apply(&self, optimizer: &mut dyn Optimizer) {
        for group in 0..optimizer.num_groups() {
            let lr = self.lr_for(optimizer.initial_lr(group));
            optimizer.set_group_lr(group, lr);
        }
    }
}

/// Implements [`LrScheduler`] for a schedule with `base_lr: f64` and `epoch: usize` fields
/// and a closed form `closed_form(base_lr, epoch) -> f64`.
macro_rules! closed_form_scheduler {
    ($name:ident) => {
        impl $name {
            /// The rate at `epoch`, whatever the current one.
            pub fn lr_at(&self, epoch: usize) -> f64 {
                self.closed_form(self.base_lr, epoch)
            }
        }

        impl LrScheduler for $name {
            fn step(&mut self) {
                self.epoch += 1;
            }
            fn lr(&self) -> f32 {
                self.lr_at(self.epoch) as f32
            }
            fn lr_for(&self, base_lr: f32) -> f32 {
                self.closed_form(base_lr as f64, self.epoch) as f32
            }
            fn last_epoch(&self) -> usize {
                self.epoch
            }
            fn restart(&mut self) {
                self.epoch = 0;
            }
        }
    };
}

/// `base_lr * gamma^floor(epoch / step_size)`: decay by `gamma` every `step_size` epochs
/// (PyTorch's `StepLR`).
#[derive(Clone, Debug)]
pub struct StepLr {
    base_lr: f64,
    step_size: usize,
    gamma: f64,
    epoch: usize,
}

impl StepLr {
    /// Decay `base_lr` by `gamma` every `step_size` epochs; panics on a zero `step_size`.
    pub fn new(base_lr: f32, step_size: usize, gamma: f32) -> StepLr {
        assert!(step_size > 0, "StepLr: step_size must be positive");
        StepLr { base_lr: base_lr as f64, step_size, gamma: gamma as f64, epoch: 0 }
    }

    fn closed_form(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.gamma.powi((epoch / self.step_size) as i32)
    }
}

closed_form_scheduler!(StepLr);

/// `base_lr * gamma^(number of milestones <= epoch)`: decay by `gamma` at each milestone
/// (PyTorch's `MultiStepLR`). A milestone listed `k` times multiplies by `gamma^k` when it
/// is reached, as PyTorch's `Counter` of milestones does.
#[derive(Clone, Debug)]
pub struct MultiStepLr {
    base_lr: f64,
    /// Sorted, repeats kept.
    milestones: Vec<usize>,
    gamma: f64,
    epoch: usize,
}

impl MultiStepLr {
    /// `milestones` in any order; they are sorted, as PyTorch's closed form does.
    pub fn new(base_lr: f32, milestones: &[usize], gamma: f32) -> MultiStepLr {
        let mut milestones = milestones.to_vec();
        milestones.sort_unstable();
        MultiStepLr { base_lr: base_lr as f64, milestones, gamma: gamma as f64, epoch: 0 }
    }

    /// PyTorch's `bisect_right(milestones, epoch)` decays.
    fn closed_form(&self, base_lr: f64, epoch: usize) -> f64 {
        let passed = self.milestones.partition_point(|&m| m <= epoch);
        base_lr * self.gamma.powi(passed as i32)
    }
}

closed_form_scheduler!(MultiStepLr);

/// `base_lr * gamma^epoch` (PyTorch's `ExponentialLR`).
#[derive(Clone, Debug)]
pub struct ExponentialLr {
    base_lr: f64,
    gamma: f64,
    epoch: usize,
}

impl ExponentialLr {
    /// Decay `base_lr` by `gamma` every epoch.
    pub fn new(base_lr: f32, gamma: f32) -> ExponentialLr {
        ExponentialLr { base_lr: base_lr as f64, gamma: gamma as f64, epoch: 0 }
    }

    fn closed_form(&self, base_lr: f64, epoch: usize) -> f64 {
        base_lr * self.gamma.powi(epoch as i32)
    }
}

closed_form_scheduler!(ExponentialLr);

/// `eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / t_max)) / 2` (PyTorch's
/// `CosineAnnealingLR`, without restarts).
///
/// The rate reaches `eta_min` at `t_max`. Beyond it the formula keeps going, as PyTorch's
/// does: the rate climbs back to `base_lr` at `2 * t_max` and repeats with period
/// `2 * t_max`. Stop stepping (or chain a constant schedule) to stay at `eta_min`.
#[derive(Clone, Debug)]
pub struct CosineAnnealingLr {
    base_lr: f64,
    t_max: usize,
    eta_min: f64,
    epoch: usize,
}

impl CosineAnnealingLr {
    /// Anneal from `base_lr` to `eta_min` over `t_max` epochs; panics on a zero `t_max`.
    pub fn new(base_lr: f32, t_max: usize, eta_min: f32) -> CosineAnnealingLr {
        assert!(t_max > 0, "CosineAnnealingLr: t_max must be positive");
        CosineAnnealingLr { base_lr: base_lr as f64, t_max, eta_min: eta_min as f64, epoch: 0 }
    }

    /// `eta_min` is the same for every base rate, as PyTorch's one `eta_min` for all groups.
    fn closed_form(&self, base_lr: f64, epoch: usize) -> f64 {
        let phase = std::f64::consts::PI * epoch as f64 / self.t_max as f64;
        self.eta_min + (base_lr - self.eta_min) * (1.0 + phase.cos()) / 2.0
    }
}

closed_form_scheduler!(CosineAnnealingLr);

/// `base_lr * (start_factor + (end_factor - start_factor) * min(epoch, total_iters) / total_iters)`:
/// the factor moves linearly from `start_factor` to `end_factor` over `total_iters` epochs,
/// then stays (PyTorch's `LinearLR`; its defaults are 1/3, 1.0 and 5). With
/// `end_factor = 1` it is the usual linear warm-up.
#[derive(Clone, Debug)]
pub struct LinearLr {
    base_lr: f64,
    start_factor: f64,
    end_factor: f64,
    total_iters: usize,
    epoch: usize,
}

/// Linear warm-up is [`LinearLr`] with `end_factor = 1`.
pub type LinearWarmup = LinearLr;

impl LinearLr {
    /// Panics unless `0 < start_factor <= 1`, `0 <= end_factor <= 1` (PyTorch's checks)
    /// and `total_iters > 0`.
    pub fn new(base_lr: f32, start_factor: f32, end_factor: f32, total_iters: usize) -> LinearLr {
        assert!(
            start_factor > 0.0 && start_factor <= 1.0,
            "LinearLr: start_factor must be in (0, 1], got {start_factor}"
        );
        assert!((0.0..=1.0).contains(&end_factor), "LinearLr: end_factor must be in [0, 1], got {end_factor}");
        assert!(total_iters > 0, "LinearLr: total_iters must be positive");
        LinearLr {
            base_lr: base_lr as f64,
            start_factor: start_factor as f64,
            end_factor: end_factor as f64,
            total_iters,
            epoch: 0,
        }
    }

    /// Warm-up from `base_lr * start_factor` to `base_lr` over `total_iters` epochs.
    pub fn warmup(base_lr: f32, start_factor: f32, total_iters: usize) -> LinearLr {
        LinearLr::new(base_lr, start_factor, 1.0, total_iters)
    }

    /// The number of epochs the factor takes to reach `end_factor`.
    pub fn total_iters(&self) -> usize {
        self.total_iters
    }

    fn closed_form(&self, base_lr: f64, epoch: usize) -> f64 {
        let progress = epoch.min(self.total_iters) as f64 / self.total_iters as f64;
        base_lr * (self.start_factor + (self.end_factor - self.start_factor) * progress)
    }
}

closed_form_scheduler!(LinearLr);

/// Runs schedules one after another, switching at `milestones` (PyTorch's `SequentialLR`).
///
/// Schedule `i` drives the rate from epoch `milestones[i - 1]` (0 for the first) until
/// `milestones[i]`; at its milestone it starts at its own epoch 0. So with schedules `a`,
/// `b` and milestone `m`, the rate at epoch `e` is `a(e)` for `e < m` and `b(e - m)` after.
pub struct SequentialLr {
    schedulers: Vec<Box<dyn LrScheduler>>,
    milestones: Vec<usize>,
    epoch: usize,
}

impl SequentialLr {
    /// Panics unless there is one milestone fewer than schedules and the milestones are
    /// in non-decreasing order. Every schedule is restarted.
    pub fn new(mut schedulers: Vec<Box<dyn LrScheduler>>, milestones: &[usize]) -> SequentialLr {
        assert!(!schedulers.is_empty(), "SequentialLr: no schedules");
        assert_eq!(
            milestones.len() + 1,
            schedulers.len(),
            "SequentialLr: {} schedules need {} milestones, got {}",
            schedulers.len(),
            schedulers.len() - 1,
            milestones.len()
        );
        assert!(milestones.is_sorted(), "SequentialLr: milestones {milestones:?} are not in order");
        for s in &mut schedulers {
            s.restart();
        }
        SequentialLr { schedulers, milestones: milestones.to_vec(), epoch: 0 }
    }

    /// `warmup` for its `total_iters` epochs, then `then` from its epoch 0.
    pub fn warmup_then(warmup: LinearLr, then: impl LrScheduler + 'static) -> SequentialLr {
        let milestone = warmup.total_iters();
        SequentialLr::new(vec![Box::new(warmup), Box::new(then)], &[milestone])
    }

    /// Index of the schedule in charge at the current epoch.
    fn current(&self) -> usize {
        self.milestones.partition_point(|&m| m <= self.epoch)
    }
}

impl LrScheduler for SequentialLr {
    fn step(&mut self) {
        self.epoch += 1;
        let i = self.current();
        if i > 0 && self.milestones[i - 1] == self.epoch {
            self.schedulers[i].restart();
        } else {
            self.schedulers[i].step();
        }
    }

    fn lr(&self) -> f32 {
        self.schedulers[self.current()].lr()
    }

    fn lr_for(&self, base_lr: f32) -> f32 {
        self.schedulers[self.current()].lr_for(base_lr)
    }

    fn last_epoch(&self) -> usize {
        self.epoch
    }

    fn restart(&mut self) {
        self.epoch = 0;
        self.schedulers[0].restart();
    }
}

/// Whether a smaller or a larger metric is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlateauMode {
    /// A loss: improvement is a decrease.
    Min,
    /// An accuracy: improvement is an increase.
    Max,
}

/// How `threshold` measures a significant improvement over the best metric so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdMode {
    /// Better than `best * (1 - threshold)` (`Min`) or `best * (1 + threshold)` (`Max`).
    Rel,
    /// Better than `best - threshold` (`Min`) or `best + threshold` (`Max`).
    Abs,
}

/// Multiplies the rate by `factor` when the metric has not improved for more than
/// `patience` epochs (PyTorch's `ReduceLROnPlateau`, with its defaults: factor 0.1,
/// patience 10, threshold 1e-4 relative, cooldown 0, min_lr 0, eps 1e-8).
///
/// Each [`step_with`](ReduceLrOnPlateau::step_with) is one epoch: a metric that beats the
/// best by the threshold becomes the best and clears the count of bad epochs; any other
/// (NaN included) adds one. When the count exceeds `patience` the rates are reduced, the
/// count is cleared and `cooldown` epochs follow in which bad epochs are not counted. A
/// reduction takes each rate to `max(lr * factor, min_lr)`, and leaves it alone when that
/// changes it by no more than `eps`, for each parameter group with its own `min_lr` when
/// [`min_lrs`](ReduceLrOnPlateau::min_lrs) gives one per group (PyTorch's recurrence).
///
/// The scheduler counts the reductions, and a rate is that recurrence run from a base
/// rate that many times: [`lr`](ReduceLrOnPlateau::lr) from the constructor's,
/// [`apply`](ReduceLrOnPlateau::apply) from each group's initial rate. That is the rate
/// PyTorch reaches as long as nothing else changes the rates.
///
/// ```
/// use wgrad::optim::scheduler::{PlateauMode, ReduceLrOnPlateau};
/// let mut sched = ReduceLrOnPlateau::new(0.1, PlateauMode::Min).patience(2);
/// for loss in [1.0f32, 0.9, 0.9, 0.9] {
///     sched.step_with(loss);
/// }
/// assert_eq!(sched.lr(), 0.1); // two epochs without improvement: within patience
/// sched.step_with(0.9f32);
/// assert!((sched.lr() - 0.01).abs() < 1e-9); // the third is more than patience
/// ```
#[derive(Clone, Debug)]
pub struct ReduceLrOnPlateau {
    base_lr: f64,
    mode: PlateauMode,
    factor: f64,
    patience: usize,
    threshold: f64,
    threshold_mode: ThresholdMode,
    cooldown: usize,
    /// One floor for every group, or one per group.
    min_lrs: Vec<f64>,
    eps: f64,
    best: f64,
    num_bad_epochs: usize,
    cooldown_counter: usize,
    /// Reductions so far, whether or not they changed the rate.
    reductions: usize,
    epoch: usize,
}

impl ReduceLrOnPlateau {
    /// Reduces from `base_lr` (the rate [`lr`](ReduceLrOnPlateau::lr) reports) when the
    /// metric stops improving in the sense of `mode`.
    pub fn new(base_lr: f32, mode: PlateauMode) -> ReduceLrOnPlateau {
        ReduceLrOnPlateau {
            base_lr: base_lr as f64,
            mode,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            threshold_mode: ThresholdMode::Rel,
            cooldown: 0,
            min_lrs: vec![0.0],
            eps: 1e-8,
            best: ReduceLrOnPlateau::worst(mode),
            num_bad_epochs: 0,
            cooldown_counter: 0,
            reductions: 0,
            epoch: 0,
        }
    }

    fn worst(mode: PlateauMode) -> f64 {
        match mode {
            PlateauMode::Min => f64::INFINITY,
            PlateauMode::Max => f64::NEG_INFINITY,
        }
    }

    /// The factor the rate is multiplied by; panics unless `0 <= factor < 1`.
    pub fn factor(mut self, factor: f32) -> ReduceLrOnPlateau {
        assert!((0.0..1.0).contains(&factor), "ReduceLrOnPlateau: factor must be in [0, 1), got {factor}");
        self.factor = factor as f64;
        self
    }

    /// Epochs without improvement tolerated before the rate is reduced.
    pub fn patience(mut self, patience: usize) -> ReduceLrOnPlateau {
        self.patience = patience;
        self
    }

    /// What counts as an improvement; see [`ThresholdMode`].
    pub fn threshold(mut self, threshold: f32, mode: ThresholdMode) -> ReduceLrOnPlateau {
        self.threshold = threshold as f64;
        self.threshold_mode = mode;
        self
    }

    /// Epochs after a reduction during which bad epochs are not counted.
    pub fn cooldown(mut self, cooldown: usize) -> ReduceLrOnPlateau {
        self.cooldown = cooldown;
        self
    }

    /// No rate is ever reduced below this, in any group.
    pub fn min_lr(mut self, min_lr: f32) -> ReduceLrOnPlateau {
        self.min_lrs = vec![min_lr as f64];
        self
    }

    /// One floor per parameter group, in the optimizer's group order (PyTorch's `min_lr`
    /// as a list); [`apply`](ReduceLrOnPlateau::apply) panics on an optimizer with
    /// another number of groups. [`lr`](ReduceLrOnPlateau::lr) and
    /// [`lr_for`](ReduceLrOnPlateau::lr_for) use the first. Panics on an empty list.
    pub fn min_lrs(mut self, min_lrs: &[f32]) -> ReduceLrOnPlateau {
        assert!(!min_lrs.is_empty(), "ReduceLrOnPlateau: min_lrs needs one floor per parameter group, got none");
        self.min_lrs = min_lrs.iter().map(|&m| m as f64).collect();
        self
    }

    /// A reduction smaller than this is skipped.
    pub fn eps(mut self, eps: f32) -> ReduceLrOnPlateau {
        self.eps = eps as f64;
        self
    }

    /// Ends one epoch whose monitored quantity was `metric`.
    pub fn step_with(&mut self, metric: impl Into<f64>) {
        let current = metric.into();
        self.epoch += 1;
        if self.is_better(current) {
            self.best = current;
            self.num_bad_epochs = 0;
        } else {
            self.num_bad_epochs += 1;
        }
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.num_bad_epochs = 0; // bad epochs during cooldown are ignored
        }
        if self.num_bad_epochs > self.patience {
            self.reductions += 1;
            self.cooldown_counter = self.cooldown;
            self.num_bad_epochs = 0;
        }
    }

    /// Where the schedule stands, by name (`best`, `num_bad_epochs`, `cooldown_counter`,
    /// `reductions`, `epoch`), as PyTorch's `state_dict()` holds it: what a resumed run
    /// gives back to [`ReduceLrOnPlateau::load_state`].
    pub fn state(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("best".to_string(), self.best),
            ("num_bad_epochs".to_string(), self.num_bad_epochs as f64),
            ("cooldown_counter".to_string(), self.cooldown_counter as f64),
            ("reductions".to_string(), self.reductions as f64),
            ("epoch".to_string(), self.epoch as f64),
        ])
    }

    /// Puts back what [`ReduceLrOnPlateau::state`] returned. A missing or malformed entry
    /// is an `Err` naming it, and changes nothing.
    pub fn load_state(&mut self, state: &BTreeMap<String, f64>) -> std::result::Result<(), String> {
        let get =
            |key: &str| state.get(key).copied().ok_or_else(|| format!("ReduceLrOnPlateau: no '{key}' in the state"));
        let count = |key: &str| {
            let v = get(key)?;
            if v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) {
                Ok(v as usize)
            } else {
                Err(format!("ReduceLrOnPlateau: '{key}' is {v}, not a count"))
            }
        };
        let best = get("best")?;
        let (bad, cooldown, reductions, epoch) =
            (count("num_bad_epochs")?, count("cooldown_counter")?, count("reductions")?, count("epoch")?);
        (self.best, self.num_bad_epochs, self.cooldown_counter, self.reductions, self.epoch) =
            (best, bad, cooldown, reductions, epoch);
        Ok(())
    }

    /// PyTorch's `is_better`; false for a NaN metric.
    fn is_better(&self, a: f64) -> bool {
        match (self.mode, self.threshold_mode) {
            (PlateauMode::Min, ThresholdMode::Rel) => a < self.best * (1.0 - self.threshold),
            (PlateauMode::Min, ThresholdMode::Abs) => a < self.best - self.threshold,
            (PlateauMode::Max, ThresholdMode::Rel) => a > self.best * (1.0 + self.threshold),
            (PlateauMode::Max, ThresholdMode::Abs) => a > self.best + self.threshold,
        }
    }

    /// The rate after every reduction so far from `base_lr`, with the floor `min_lr`:
    /// PyTorch's `_reduce_lr` for one group, once per reduction.
    fn reduced(&self, base_lr: f64, min_lr: f64) -> f64 {
        let mut lr = base_lr;
        for _ in 0..self.reductions {
            let new = (lr * self.factor).max(min_lr);
            if lr - new > self.eps {
                lr = new;
            }
        }
        lr
    }

    /// The current rate, from the constructor's base rate.
    pub fn lr(&self) -> f32 {
        self.reduced(self.base_lr, self.min_lrs[0]) as f32
    }

    /// The current rate of a parameter group whose rate was `base_lr` before the first
    /// reduction, with the first (or only) floor. `lr_for` of the constructor's base rate
    /// is [`lr`](ReduceLrOnPlateau::lr).
    pub fn lr_for(&self, base_lr: f32) -> f32 {
        self.reduced(base_lr as f64, self.min_lrs[0]) as f32
    }

    /// Sets the rate of every parameter group of `optimizer` to its current rate from the
    /// group's [`initial_lr`](Optimizer::initial_lr), each with its own floor when
    /// [`min_lrs`](ReduceLrOnPlateau::min_lrs) gave one per group. Call it after each
    /// [`step_with`](ReduceLrOnPlateau::step_with).
    ///
    /// Panics, as PyTorch raises, when `min_lrs` gave another number of floors than the
    /// optimizer has groups.
    pub fn apply(&self, optimizer: &mut dyn Optimizer) {
        let groups = optimizer.num_groups();
        assert!(
            self.min_lrs.len() == 1 || self.min_lrs.len() == groups,
            "ReduceLrOnPlateau: expected {groups} min_lrs, one per parameter group of the optimizer, got {}",
            self.min_lrs.len()
        );
        for group in 0..groups {
            let min_lr = self.min_lrs[if self.min_lrs.len() == 1 { 0 } else { group }];
            let lr = self.reduced(optimizer.initial_lr(group) as f64, min_lr) as f32;
            optimizer.set_group_lr(group, lr);
        }
    }

    /// The number of `step_with` calls so far.
    pub fn last_epoch(&self) -> usize {
        self.epoch
    }

    /// The number of reductions so far, counting those every rate was too close to its
    /// floor to take.
    pub fn num_reductions(&self) -> usize {
        self.reductions
    }

    /// The best metric seen (infinitely bad before the first).
    pub fn best(&self) -> f64 {
        self.best
    }

    /// Epochs since the last improvement, not counting cooldown.
    pub fn num_bad_epochs(&self) -> usize {
        self.num_bad_epochs
    }

    /// True while bad epochs are not being counted after a reduction.
    pub fn in_cooldown(&self) -> bool {
        self.cooldown_counter > 0
    }
}
