//! Callbacks: code that runs at fixed points of [`super::Trainer::fit`], as Keras'
//! callbacks, and the ones every training run wants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Context, History, Logs};
use crate::nn::StateDict;
use crate::optim::scheduler::{self, PlateauMode};
use crate::{checkpoint, Error, Result};

/// Hooks into [`super::Trainer::fit`]. Every method has a default that does nothing, so a
/// callback implements the ones it needs; an `Err` stops training and is returned by
/// `fit`.
pub trait Callback {
    fn on_train_begin(&mut self, _ctx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }
    /// After each epoch's training and validation, with the epoch's values; a callback may
    /// add values (they go into the history) or set `ctx.stop`.
    fn on_epoch_end(&mut self, _ctx: &mut Context<'_>, _logs: &mut Logs) -> Result<()> {
        Ok(())
    }
    fn on_train_end(&mut self, _ctx: &mut Context<'_>) -> Result<()> {
        Ok(())
    }
    /// The callback's name in a training checkpoint: its type's name without the path or
    /// generic arguments (`EarlyStopping`).
    fn name(&self) -> String {
        let full = std::any::type_name::<Self>();
        let path = full.split('<').next().unwrap_or(full);
        path.rsplit("::").next().unwrap_or(path).to_string()
    }
    /// What a resumed run needs to carry this callback on where it was (the best value
    /// seen, the epochs waited), saved in the trainer's checkpoint after every epoch;
    /// `None`, the default, for a callback that keeps nothing from one epoch to the next.
    fn state(&self) -> Option<CallbackState> {
        None
    }
    /// Puts back what [`Callback::state`] returned, when `fit` resumes (after
    /// `on_train_begin`). A state this callback cannot have written is an `Err`.
    fn load_state(&mut self, state: CallbackState) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// A callback's state in a training checkpoint: numbers by name, and tensors by name (a
/// copy of the best weights).
#[derive(Clone, Debug, Default)]
pub struct CallbackState {
    pub values: BTreeMap<String, f64>,
    pub tensors: StateDict,
}

impl CallbackState {
    /// The value `key`, or an error saying which callback's state lacks it.
    pub fn value(&self, key: &str, who: &str) -> Result<f64> {
        self.values.get(key).copied().ok_or_else(|| {
            Error::Training(format!("{who}: the checkpoint's state has no '{key}' (is it another callback's?)"))
        })
    }
}

/// An optional best value as a number (NaN for none).
fn best_to_value(best: Option<f64>) -> f64 {
    best.unwrap_or(f64::NAN)
}

fn value_to_best(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

/// A count saved as a number, checked.
fn value_to_count(value: f64, key: &str, who: &str) -> Result<usize> {
    if value >= 0.0 && value.fract() == 0.0 && value < 2f64.powi(53) {
        Ok(value as usize)
    } else {
        Err(Error::Training(format!("{who}: '{key}' in the checkpoint's state is {value}, not a count")))
    }
}

/// Which direction of a monitored value is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Monitor {
    /// Lower is better (a loss, an error).
    Min,
    /// Higher is better (an accuracy).
    Max,
    /// `Max` for names containing `acc`, `precision`, `recall` or `f1`, else `Min`, as Keras
    /// decides.
    Auto,
}

impl Monitor {
    fn resolve(self, name: &str) -> Monitor {
        match self {
            Monitor::Auto if ["acc", "precision", "recall", "f1"].iter().any(|k| name.contains(k)) => Monitor::Max,
            Monitor::Auto => Monitor::Min,
            m => m,
        }
    }

    /// True when `value` improves on `best` by more than `min_delta`.
    fn improves(self, value: f64, best: Option<f64>, min_delta: f64) -> bool {
        match (self, best) {
            (_, None) => !value.is_nan(),
            (Monitor::Max, Some(best)) => value > best + min_delta,
            (_, Some(best)) => value < best - min_delta,
        }
    }
}

/// The value a callback monitors, or an error naming it and the values there are.
fn monitored(logs: &Logs, name: &str, who: &str) -> Result<f64> {
    logs.get(name).copied().ok_or_else(|| {
        Error::Training(format!(
            "{who}: no value named '{name}' this epoch; the values are: {}",
            logs.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })
}

/// Stops training when a monitored value has not improved for `patience` epochs, as
/// Keras' `EarlyStopping`; with `restore_best_weights`, puts back the model's state of the
/// best epoch when training ends.
pub struct EarlyStopping {
    monitor: String,
    mode: Monitor,
    patience: usize,
    min_delta: f64,
    restore_best_weights: bool,
    best: Option<f64>,
    best_epoch: usize,
    best_state: Option<StateDict>,
    wait: usize,
    stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    /// Watches `monitor` (`"val_loss"`, `"val_accuracy"`, ...) with patience 0, min delta 0,
    /// the direction from its name, and the last weights kept.
    pub fn new(monitor: &str) -> EarlyStopping {
        EarlyStopping {
            monitor: monitor.to_string(),
            mode: Monitor::Auto,
            patience: 0,
            min_delta: 0.0,
            restore_best_weights: false,
            best: None,
            best_epoch: 0,
            best_state: None,
            wait: 0,
            stopped_epoch: None,
        }
    }
    pub fn mode(mut self, mode: Monitor) -> EarlyStopping {
        self.mode = mode;
        self
    }
    /// Epochs without improvement to wait before stopping.
    pub fn patience(mut self, patience: usize) -> EarlyStopping {
        self.patience = patience;
        self
    }
    /// The smallest change that counts as an improvement.
    pub fn min_delta(mut self, min_delta: f64) -> EarlyStopping {
        assert!(min_delta >= 0.0, "EarlyStopping: min_delta must be non-negative, got {min_delta}");
        self.min_delta = min_delta;
        self
    }
    /// Restores the model's parameters and buffers of the best epoch at the end (a copy of
    /// them is kept on their device whenever the monitored value improves).
    pub fn restore_best_weights(mut self, restore: bool) -> EarlyStopping {
        self.restore_best_weights = restore;
        self
    }
    /// The epoch (counting from 0) after which training stopped, if it did.
    pub fn stopped_epoch(&self) -> Option<usize> {
        self.stopped_epoch
    }
    /// The best value seen and its epoch.
    pub fn best(&self) -> Option<(f64, usize)> {
        self.best.map(|b| (b, self.best_epoch))
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctx: &mut Context<'_>) -> Result<()> {
        (self.best, self.best_state, self.wait, self.stopped_epoch) = (None, None, 0, None);
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> Result<()> {
        let value = monitored(logs, &self.monitor, "EarlyStopping")?;
        let mode = self.mode.resolve(&self.monitor);
        if mode.improves(value, self.best, self.min_delta) {
            self.best = Some(value);
            self.best_epoch = ctx.epoch;
            self.wait = 0;
            if self.restore_best_weights {
                self.best_state =
                    Some(ctx.model.state_dict().iter().map(|(n, t)| (n.to_string(), t.snapshot())).collect());
            }
        } else {
            self.wait += 1;
            if self.wait > self.patience {
                self.stopped_epoch = Some(ctx.epoch);
                ctx.stop = true;
            }
        }
        Ok(())
    }

    fn on_train_end(&mut self, ctx: &mut Context<'_>) -> Result<()> {
        if let Some(state) = &self.best_state {
            ctx.model.load_state_dict(state, true)?;
        }
        Ok(())
    }

    fn state(&self) -> Option<CallbackState> {
        let values = BTreeMap::from([
            ("best".to_string(), best_to_value(self.best)),
            ("best_epoch".to_string(), self.best_epoch as f64),
            ("wait".to_string(), self.wait as f64),
        ]);
        Some(CallbackState { values, tensors: self.best_state.clone().unwrap_or_default() })
    }

    fn load_state(&mut self, state: CallbackState) -> Result<()> {
        let who = "EarlyStopping";
        let best = value_to_best(state.value("best", who)?);
        let best_epoch = value_to_count(state.value("best_epoch", who)?, "best_epoch", who)?;
        let wait = value_to_count(state.value("wait", who)?, "wait", who)?;
        if self.restore_best_weights && best.is_some() && state.tensors.is_empty() {
            return Err(Error::Training(
                "EarlyStopping: restore_best_weights is on but the checkpoint holds no best weights".into(),
            ));
        }
        (self.best, self.best_epoch, self.wait) = (best, best_epoch, wait);
        self.best_state = (self.restore_best_weights && !state.tensors.is_empty()).then_some(state.tensors);
        Ok(())
    }
}

/// Saves the model (`checkpoint::save_with_receipt`, an atomic write: a failed write
/// leaves the previous file intact) after every epoch, or only when a monitored value
/// improves, as Keras' `ModelCheckpoint`. The file carries the run's reproducibility
/// receipt (see [`crate::receipt`]), with the seed given to `Trainer::seed`.
pub struct ModelCheckpoint {
    path: PathBuf,
    monitor: Option<(String, Monitor)>,
    best: Option<f64>,
}

impl ModelCheckpoint {
    /// Saves the last epoch's model to `path` after every epoch.
    pub fn last(path: impl Into<PathBuf>) -> ModelCheckpoint {
        ModelCheckpoint { path: path.into(), monitor: None, best: None }
    }
    /// Saves to `path` whenever `monitor` improves (direction from its name, as
    /// [`Monitor::Auto`]).
    pub fn best(path: impl Into<PathBuf>, monitor: &str) -> ModelCheckpoint {
        ModelCheckpoint { path: path.into(), monitor: Some((monitor.to_string(), Monitor::Auto)), best: None }
    }
    pub fn mode(mut self, mode: Monitor) -> ModelCheckpoint {
        if let Some((_, m)) = &mut self.monitor {
            *m = mode;
        }
        self
    }
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, _ctx: &mut Context<'_>) -> Result<()> {
        self.best = None;
        Ok(())
    }

    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> Result<()> {
        if let Some((name, mode)) = &self.monitor {
            let value = monitored(logs, name, "ModelCheckpoint")?;
            if !mode.resolve(name).improves(value, self.best, 0.0) {
                return Ok(());
            }
            self.best = Some(value);
        }
        crate::receipt::save_with_receipt_of_run(ctx.model, &self.path, ctx.seed)
    }

    fn state(&self) -> Option<CallbackState> {
        let values = BTreeMap::from([("best".to_string(), best_to_value(self.best))]);
        Some(CallbackState { values, tensors: StateDict::default() })
    }

    fn load_state(&mut self, state: CallbackState) -> Result<()> {
        self.best = value_to_best(state.value("best", "ModelCheckpoint")?);
        Ok(())
    }
}

/// Writes the history as CSV (`History::to_csv`) after every epoch, replacing the file
/// atomically, as Keras' `CSVLogger`.
pub struct CsvLogger {
    path: PathBuf,
}

impl CsvLogger {
    pub fn new(path: impl Into<PathBuf>) -> CsvLogger {
        CsvLogger { path: path.into() }
    }
}

impl Callback for CsvLogger {
    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> Result<()> {
        write_history(&self.path, ctx, logs, History::to_csv)
    }
}

/// Writes the history so far, this epoch's `logs` included, to `path` as `render` renders
/// it, replacing the file atomically.
fn write_history(path: &Path, ctx: &Context<'_>, logs: &Logs, render: fn(&History) -> String) -> Result<()> {
    let mut history = ctx.history.clone();
    history.push(logs);
    checkpoint::write_atomically(path, render(&history).as_bytes())
}

/// Writes the history as JSON ([`History::to_json`](super::History::to_json)) after every
/// epoch, replacing the file atomically.
pub struct JsonLogger {
    path: PathBuf,
}

impl JsonLogger {
    pub fn new(path: impl Into<PathBuf>) -> JsonLogger {
        JsonLogger { path: path.into() }
    }
}

impl Callback for JsonLogger {
    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> Result<()> {
        write_history(&self.path, ctx, logs, History::to_json)
    }
}

/// Logs each parameter group's rate for the next epoch as `lr_group{i}` (the first group's
/// is always logged as `lr`).
#[derive(Default)]
pub struct LrLogger;

impl Callback for LrLogger {
    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> Result<()> {
        for g in 0..ctx.optimizer.num_groups() {
            logs.insert(format!("lr_group{g}"), ctx.optimizer.group_lr(g) as f64);
        }
        Ok(())
    }
}

/// Lowers every parameter group's rate when a monitored value stops improving
/// ([`scheduler::ReduceLrOnPlateau`], hooked to a value of the epoch's logs).
pub struct ReduceLrOnPlateau {
    monitor: String,
    schedule: scheduler::ReduceLrOnPlateau,
}

impl ReduceLrOnPlateau {
    /// Watches `monitor` with `schedule`, whose mode should match it (`Min` for a loss).
    pub fn new(monitor: &str, schedule: scheduler::ReduceLrOnPlateau) -> ReduceLrOnPlateau {
        ReduceLrOnPlateau { monitor: monitor.to_string(), schedule }
    }
    /// PyTorch's defaults (factor 0.1, patience 10) on a loss.
    pub fn on_loss(monitor: &str, base_lr: f32) -> ReduceLrOnPlateau {
        ReduceLrOnPlateau::new(monitor, scheduler::ReduceLrOnPlateau::new(base_lr, PlateauMode::Min))
    }
}

impl Callback for ReduceLrOnPlateau {
    fn on_epoch_end(&mut self, ctx: &mut Context<'_>, logs: &mut Logs) -> Result<()> {
        let value = monitored(logs, &self.monitor, "ReduceLrOnPlateau")?;
        self.schedule.step_with(value);
        self.schedule.apply(&mut *ctx.optimizer);
        Ok(())
    }

    fn state(&self) -> Option<CallbackState> {
        Some(CallbackState { values: self.schedule.state(), tensors: StateDict::default() })
    }

    fn load_state(&mut self, state: CallbackState) -> Result<()> {
        self.schedule.load_state(&state.values).map_err(Error::Training)
    }
}
