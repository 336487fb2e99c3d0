//! Resumable training: what [`super::Trainer`] writes to its checkpoint folder after each
//! epoch and on Ctrl-C, and reads back to continue.
//!
//! The folder holds `model.safetensors` (`checkpoint::save_with_receipt`, with the run's
//! reproducibility receipt), `optimizer.safetensors`
//! (`checkpoint::save_optimizer`: every group's rate and options, every state tensor),
//! `history.csv` ([`History::to_csv`]), `callbacks.safetensors` (the tensors of the
//! callbacks' states, when there are any: early stopping's best weights, each name
//! prefixed with the callback's key) and `progress`, a short text file:
//!
//! ```text
//! wgrad.train.v2
//! epoch 3
//! batch 40
//! step 415
//! scheduler_steps 3
//! grad_scale 32768 120
//! random_stream lstm.dropout.rng 1245
//! callbacks 2
//! callback EarlyStopping#0 best 0.0712
//! callback EarlyStopping#0 best_epoch 4
//! callback EarlyStopping#0 wait 1
//! callback ReduceLrOnPlateau#0 best 0.0712
//! ...
//! ```
//!
//! (the epoch in progress, the batches of it already trained, the optimizer steps taken,
//! the scheduler steps taken; the loss scale and its count of clean steps under mixed
//! precision; each random stream of the model, [`Module::random_streams`]; and each
//! numbers of each callback that keeps a state, [`Callback::state`](super::Callback::state),
//! under a key made of its type's name and its place among callbacks of that type). The
//! data order needs nothing more: a loader's order (and an
//! [`Augmented`](super::Augmented) loader's draws) is a function of its seed and the
//! epoch number. A new folder is written beside the old one and swapped in by two
//! renames, so a failed write leaves the previous checkpoint whole, and a crash between
//! the renames leaves it under `<folder>.old`, where loading finds it. Version 1 files
//! (no random streams, callbacks or loss scale) still load.

use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use super::{CallbackState, History};
use crate::nn::{Module, StateDict};
use crate::optim::Optimizer;
use crate::{checkpoint, Error, Result};

const FORMAT: &str = "wgrad.train.v2";
/// The format before random streams, callbacks and the loss scale were saved.
const FORMAT_V1: &str = "wgrad.train.v1";

/// Where a run stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    pub epoch: usize,
    pub batch: usize,
    pub step: u64,
    pub scheduler_steps: u64,
}

/// What a checkpoint holds besides the model's tensors, the optimizer and the progress.
#[derive(Clone, Debug, Default)]
pub(super) struct Extra {
    /// The loss scale and its count of clean steps, under mixed precision.
    pub grad_scale: Option<(f32, u32)>,
    /// The state of each callback that keeps one, by key (`EarlyStopping#0`), in the
    /// trainer's order.
    pub callbacks: Vec<(String, CallbackState)>,
    /// The run's seed, for the model file's receipt.
    pub seed: Option<u64>,
}

/// A callback's key and the numbers of its state.
type CallbackValues = (String, BTreeMap<String, f64>);

/// The progress file's contents.
#[derive(Debug, Default)]
struct ProgressFile {
    progress: Progress,
    grad_scale: Option<(f32, u32)>,
    /// `None` in a version 1 file, which saved neither.
    random_streams: Option<Vec<(String, u64)>>,
    callbacks: Option<Vec<CallbackValues>>,
}

fn with_suffix(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    dir.with_file_name(name)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.display().to_string(), source }
}

/// Writes a checkpoint of the run into `dir`, replacing the previous one only once the
/// new one is complete.
pub(super) fn save(
    dir: &Path,
    model: &dyn Module,
    optimizer: &dyn Optimizer,
    history: &History,
    progress: Progress,
    extra: &Extra,
) -> Result<()> {
    let new = with_suffix(dir, ".new");
    let old = with_suffix(dir, ".old");
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(io_error(&new))?;
    }
    std::fs::create_dir_all(&new).map_err(io_error(&new))?;
    crate::receipt::save_with_receipt_of_run(model, &new.join("model.safetensors"), extra.seed)?;
    checkpoint::save_optimizer(optimizer, new.join("optimizer.safetensors"))?;
    checkpoint::write_atomically(&new.join("history.csv"), history.to_csv().as_bytes())?;
    let mut callback_tensors = StateDict::new();
    for (key, state) in &extra.callbacks {
        callback_tensors.extend(state.tensors.prefixed(&format!("{key}.")));
    }
    if !callback_tensors.is_empty() {
        checkpoint::save_state_dict(&callback_tensors, new.join("callbacks.safetensors"))?;
    }
    let text = progress_text(progress, extra, &model.random_streams());
    checkpoint::write_atomically(&new.join("progress"), text.as_bytes())?;
    if dir.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
        }
        std::fs::rename(dir, &old).map_err(io_error(dir))?;
    }
    std::fs::rename(&new, dir).map_err(io_error(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
    }
    Ok(())
}

fn progress_text(progress: Progress, extra: &Extra, random_streams: &[(String, u64)]) -> String {
    let Progress { epoch, batch, step, scheduler_steps } = progress;
    let mut text = format!("{FORMAT}\nepoch {epoch}\nbatch {batch}\nstep {step}\nscheduler_steps {scheduler_steps}\n");
    if let Some((scale, growth_tracker)) = extra.grad_scale {
        text.push_str(&format!("grad_scale {scale:?} {growth_tracker}\n"));
    }
    for (name, position) in random_streams {
        text.push_str(&format!("random_stream {name} {position}\n"));
    }
    text.push_str(&format!("callbacks {}\n", extra.callbacks.len()));
    for (key, state) in &extra.callbacks {
        // `{:?}` writes the shortest decimal that reads back to the same f64 (and NaN, inf).
        for (name, value) in &state.values {
            text.push_str(&format!("callback {key} {name} {value:?}\n"));
        }
        if state.values.is_empty() {
            text.push_str(&format!("callback {key} empty\n"));
        }
    }
    text
}

/// Loads the checkpoint in `dir` (or in `<dir>.old` when a swap was cut short) into the
/// model (its tensors and random streams) and the optimizer, and returns the history,
/// where the run stands, and the rest for the trainer (the loss scale, the states of the
/// callbacks whose keys are `callbacks`, in that order). Everything is read and checked before the model and optimizer
/// change, except that a model that loads and an optimizer that then refuses its state
/// leave the model loaded.
pub(super) fn load(
    dir: &Path,
    model: &dyn Module,
    optimizer: &mut dyn Optimizer,
    callbacks: &[String],
) -> Result<(History, Progress, Extra)> {
    let dir = if !dir.join("progress").exists() && with_suffix(dir, ".old").join("progress").exists() {
        with_suffix(dir, ".old")
    } else {
        dir.to_path_buf()
    };
    let progress_path = dir.join("progress");
    let text = std::fs::read_to_string(&progress_path).map_err(io_error(&progress_path))?;
    let file =
        parse_progress(&text).map_err(|reason| Error::Format { path: progress_path.display().to_string(), reason })?;
    let mut extra = Extra { grad_scale: file.grad_scale, callbacks: Vec::new(), seed: None };
    if let Some(mut states) = file.callbacks {
        let saved: Vec<&str> = states.iter().map(|(k, _)| k.as_str()).collect();
        let mut sorted_saved = saved.clone();
        sorted_saved.sort_unstable();
        let mut sorted_mine: Vec<&str> = callbacks.iter().map(String::as_str).collect();
        sorted_mine.sort_unstable();
        if sorted_saved != sorted_mine {
            return Err(Error::Training(format!(
                "resume: the checkpoint in {} holds the states of the callbacks {saved:?}, this trainer's callbacks \
                 that keep a state are {callbacks:?}; add the same ones, so that none restarts from scratch",
                dir.display()
            )));
        }
        let tensors_path = dir.join("callbacks.safetensors");
        let tensors =
            if tensors_path.exists() { checkpoint::load_state_dict(&tensors_path)? } else { StateDict::new() };
        for key in callbacks {
            let at = states.iter().position(|(k, _)| k == key).expect("the keys were compared");
            let (key, values) = states.swap_remove(at);
            let tensors = tensors.with_prefix(&format!("{key}."));
            extra.callbacks.push((key, CallbackState { values, tensors }));
        }
    }
    let history_path = dir.join("history.csv");
    let csv = std::fs::read_to_string(&history_path).map_err(io_error(&history_path))?;
    let history =
        History::from_csv(&csv).map_err(|reason| Error::Format { path: history_path.display().to_string(), reason })?;
    let optimizer_state = checkpoint::load_optimizer_state(dir.join("optimizer.safetensors"))?;
    let model_state = checkpoint::load_state_dict(dir.join("model.safetensors"))?;
    if let Some(streams) = &file.random_streams {
        // Checked before anything changes; the positions are set last.
        let mine: Vec<String> = model.random_streams().into_iter().map(|(n, _)| n).collect();
        let theirs: Vec<String> = streams.iter().map(|(n, _)| n.clone()).collect();
        if mine != theirs {
            return Err(Error::StateDict {
                reason: format!(
                    "the checkpoint in {} has the random streams {theirs:?}, the model {mine:?} (is it another model?)",
                    dir.display()
                ),
            });
        }
    }
    model.load_state_dict(&model_state, true)?;
    optimizer.load_state_dict(&optimizer_state)?;
    if let Some(streams) = &file.random_streams {
        model.load_random_streams(streams)?;
    }
    Ok((history, file.progress, extra))
}

fn parse_progress(text: &str) -> std::result::Result<ProgressFile, String> {
    let mut lines = text.lines();
    let version = match lines.next() {
        Some(FORMAT) => 2,
        Some(FORMAT_V1) => 1,
        _ => return Err(format!("not a training checkpoint's progress file (expected the first line '{FORMAT}')")),
    };
    let mut file = ProgressFile::default();
    let mut streams = Vec::new();
    // The announced count, and the states read so far.
    let mut callbacks: Option<(usize, Vec<CallbackValues>)> = None;
    let mut seen = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> std::result::Result<u64, String> {
            let field = fields.get(i).ok_or_else(|| format!("the line '{line}' is cut short"))?;
            field.parse().map_err(|_| format!("'{field}' in the line '{line}' is not a whole number"))
        };
        let as_usize = |n: u64| usize::try_from(n).map_err(|_| format!("{n} in the line '{line}' is too large"));
        let expect_fields = |n: usize| {
            if fields.len() == n {
                Ok(())
            } else {
                Err(format!("the line '{line}' should have {n} fields"))
            }
        };
        match fields[0] {
            "epoch" | "batch" | "step" | "scheduler_steps" => {
                expect_fields(2)?;
                let n = number(1)?;
                match fields[0] {
                    "epoch" => file.progress.epoch = as_usize(n)?,
                    "batch" => file.progress.batch = as_usize(n)?,
                    "step" => file.progress.step = n,
                    _ => file.progress.scheduler_steps = n,
                }
            }
            "grad_scale" if version >= 2 => {
                expect_fields(3)?;
                let scale: f32 = fields[1].parse().map_err(|_| format!("'{}' is not a loss scale", fields[1]))?;
                if !(scale > 0.0 && scale.is_finite()) {
                    return Err(format!("the loss scale {scale} is not positive and finite"));
                }
                let tracker = u32::try_from(number(2)?).map_err(|_| format!("the line '{line}' is out of range"))?;
                file.grad_scale = Some((scale, tracker));
            }
            "random_stream" if version >= 2 => {
                expect_fields(3)?;
                streams.push((fields[1].to_string(), number(2)?));
            }
            "callbacks" if version >= 2 => {
                expect_fields(2)?;
                callbacks = Some((as_usize(number(1)?)?, Vec::new()));
            }
            "callback" if version >= 2 => {
                let (_, list) =
                    callbacks.as_mut().ok_or_else(|| format!("the line '{line}' comes before 'callbacks'"))?;
                let key = fields.get(1).ok_or_else(|| format!("the line '{line}' names no callback"))?.to_string();
                let state = match list.iter().position(|(k, _)| *k == key) {
                    Some(at) => &mut list[at].1,
                    None => {
                        list.push((key, BTreeMap::new()));
                        &mut list.last_mut().expect("just pushed").1
                    }
                };
                match fields.get(2..) {
                    Some(["empty"]) => {}
                    Some([name, value]) => {
                        let value: f64 =
                            value.parse().map_err(|_| format!("'{value}' in the line '{line}' is not a number"))?;
                        state.insert(name.to_string(), value);
                    }
                    _ => return Err(format!("the line '{line}' is not 'callback <key> <name> <value>'")),
                }
            }
            other => return Err(format!("unknown key '{other}'")),
        }
        seen.push(fields[0].to_string());
    }
    let mut required = vec!["epoch", "batch", "step", "scheduler_steps"];
    if version >= 2 {
        required.push("callbacks");
        file.random_streams = Some(streams);
        if let Some((count, list)) = callbacks {
            if list.len() != count {
                return Err(format!("{count} callbacks announced, {} found (the file is truncated)", list.len()));
            }
            file.callbacks = Some(list);
        }
    }
    for key in required {
        if !seen.iter().any(|k| k == key) {
            return Err(format!("no '{key}' line (the file is truncated)"));
        }
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_files_parse_and_bad_ones_are_errors() {
        let p = parse_progress("wgrad.train.v1\nepoch 3\nbatch 4\nstep 5\nscheduler_steps 6\n").unwrap();
        assert_eq!(p.progress, Progress { epoch: 3, batch: 4, step: 5, scheduler_steps: 6 });
        assert!(p.random_streams.is_none() && p.callbacks.is_none());
        assert!(parse_progress("wgrad.train.v1\nepoch 3\nbatch 4\n").unwrap_err().contains("truncated"));
        assert!(parse_progress("epoch 3").unwrap_err().contains("not a training checkpoint"));
        assert!(parse_progress("wgrad.train.v1\nepoch x\n").unwrap_err().contains("not a whole number"));
        // A version 1 file cannot hold the newer lines.
        assert!(parse_progress("wgrad.train.v1\nrandom_stream a.rng 3\n").unwrap_err().contains("unknown key"));
    }

    #[test]
    fn version_2_files_round_trip() {
        let extra = Extra {
            grad_scale: Some((32768.0, 17)),
            callbacks: vec![
                (
                    "EarlyStopping#0".to_string(),
                    CallbackState {
                        values: BTreeMap::from([("best".to_string(), 0.25), ("wait".to_string(), 2.0)]),
                        tensors: StateDict::new(),
                    },
                ),
                (
                    "ModelCheckpoint#0".to_string(),
                    CallbackState {
                        values: BTreeMap::from([("best".to_string(), f64::NAN)]),
                        tensors: StateDict::new(),
                    },
                ),
                ("Mine#0".to_string(), CallbackState::default()),
            ],
            seed: None,
        };
        let progress = Progress { epoch: 1, batch: 7, step: 40, scheduler_steps: 1 };
        let streams = vec![("drop.rng".to_string(), 9), ("lstm.dropout.rng".to_string(), 123)];
        let file = parse_progress(&progress_text(progress, &extra, &streams)).unwrap();
        assert_eq!(file.progress, progress);
        assert_eq!(file.grad_scale, Some((32768.0, 17)));
        assert_eq!(file.random_streams, Some(streams));
        let callbacks = file.callbacks.unwrap();
        let keys: Vec<&str> = callbacks.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["EarlyStopping#0", "ModelCheckpoint#0", "Mine#0"]);
        assert_eq!(callbacks[0].1["wait"], 2.0);
        assert!(callbacks[1].1["best"].is_nan());
        assert!(callbacks[2].1.is_empty());
        // Cut before the callbacks: truncated.
        let text = progress_text(progress, &Extra::default(), &[]);
        let cut = &text[..text.find("callbacks").unwrap()];
        assert!(parse_progress(cut).unwrap_err().contains("truncated"));
        assert!(parse_progress("wgrad.train.v2\ncallback A#0 best 1\n").unwrap_err().contains("before 'callbacks'"));
        let short = "wgrad.train.v2\nepoch 0\nbatch 0\nstep 0\nscheduler_steps 0\ncallbacks 2\ncallback A#0 x 1\n";
        assert!(parse_progress(short).unwrap_err().contains("truncated"));
        assert!(parse_progress("wgrad.train.v2\ngrad_scale -1 0\n").unwrap_err().contains("positive"));
    }
}
