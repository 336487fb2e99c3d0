//! Resumable training: what [`super::Trainer`] writes to its checkpoint folder after each
//! epoch and on Ctrl-C, and reads back to continue.
//!
//! The folder holds `model.safetensors` (`checkpoint::save`), `optimizer.safetensors`
//! (`checkpoint::save_optimizer`: every group's rate and options, every state tensor),
//! `history.csv` ([`History::to_csv`]) and `progress`, a short text file:
//!
//! ```text
//! wgrad.train.v1
//! epoch 3
//! batch 40
//! step 415
//! scheduler_steps 3
//! ```
//!
//! (the epoch in progress, the batches of it already trained, the optimizer steps taken,
//! the scheduler steps taken). The data order needs nothing more: a loader's order is a
//! function of its seed and the epoch number. A new folder is written beside the old one
//! and swapped in by two renames, so a failed write leaves the previous checkpoint whole,
//! and a crash between the renames leaves it under `<folder>.old`, where loading finds it.

use std::path::{Path, PathBuf};

use super::History;
use crate::nn::Module;
use crate::optim::Optimizer;
use crate::{checkpoint, Error, Result};

const FORMAT: &str = "wgrad.train.v1";

/// Where a run stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Progress {
    pub epoch: usize,
    pub batch: usize,
    pub step: u64,
    pub scheduler_steps: u64,
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
) -> Result<()> {
    let new = with_suffix(dir, ".new");
    let old = with_suffix(dir, ".old");
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(io_error(&new))?;
    }
    std::fs::create_dir_all(&new).map_err(io_error(&new))?;
    checkpoint::save(model, new.join("model.safetensors"))?;
    checkpoint::save_optimizer(optimizer, new.join("optimizer.safetensors"))?;
    checkpoint::write_atomically(&new.join("history.csv"), history.to_csv().as_bytes())?;
    let Progress { epoch, batch, step, scheduler_steps } = progress;
    let text = format!("{FORMAT}\nepoch {epoch}\nbatch {batch}\nstep {step}\nscheduler_steps {scheduler_steps}\n");
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

/// Loads the checkpoint in `dir` (or in `<dir>.old` when a swap was cut short) into the
/// model and the optimizer, and returns the history and where the run stands. Everything
/// is read and checked before the model and optimizer change, except that a model that
/// loads and an optimizer that then refuses its state leave the model loaded.
pub(super) fn load(dir: &Path, model: &dyn Module, optimizer: &mut dyn Optimizer) -> Result<(History, Progress)> {
    let dir = if !dir.join("progress").exists() && with_suffix(dir, ".old").join("progress").exists() {
        with_suffix(dir, ".old")
    } else {
        dir.to_path_buf()
    };
    let progress_path = dir.join("progress");
    let text = std::fs::read_to_string(&progress_path).map_err(io_error(&progress_path))?;
    let progress =
        parse_progress(&text).map_err(|reason| Error::Format { path: progress_path.display().to_string(), reason })?;
    let history_path = dir.join("history.csv");
    let csv = std::fs::read_to_string(&history_path).map_err(io_error(&history_path))?;
    let history =
        History::from_csv(&csv).map_err(|reason| Error::Format { path: history_path.display().to_string(), reason })?;
    let optimizer_state = checkpoint::load_optimizer_state(dir.join("optimizer.safetensors"))?;
    let model_state = checkpoint::load_state_dict(dir.join("model.safetensors"))?;
    model.load_state_dict(&model_state, true)?;
    optimizer.load_state_dict(&optimizer_state)?;
    Ok((history, progress))
}

fn parse_progress(text: &str) -> std::result::Result<Progress, String> {
    let mut lines = text.lines();
    if lines.next() != Some(FORMAT) {
        return Err(format!("not a training checkpoint's progress file (expected the first line '{FORMAT}')"));
    }
    let mut progress = Progress::default();
    let mut seen = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once(' ').ok_or_else(|| format!("the line '{line}' is not 'key value'"))?;
        let number: u64 = value.trim().parse().map_err(|_| format!("'{key}' is '{value}', not a whole number"))?;
        let as_usize = || usize::try_from(number).map_err(|_| format!("'{key}' {number} is too large"));
        match key {
            "epoch" => progress.epoch = as_usize()?,
            "batch" => progress.batch = as_usize()?,
            "step" => progress.step = number,
            "scheduler_steps" => progress.scheduler_steps = number,
            other => return Err(format!("unknown key '{other}'")),
        }
        seen.push(key.to_string());
    }
    for key in ["epoch", "batch", "step", "scheduler_steps"] {
        if !seen.iter().any(|k| k == key) {
            return Err(format!("no '{key}' line (the file is truncated)"));
        }
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_files_parse_and_bad_ones_are_errors() {
        let p = parse_progress("wgrad.train.v1\nepoch 3\nbatch 4\nstep 5\nscheduler_steps 6\n").unwrap();
        assert_eq!(p, Progress { epoch: 3, batch: 4, step: 5, scheduler_steps: 6 });
        assert!(parse_progress("wgrad.train.v1\nepoch 3\nbatch 4\n").unwrap_err().contains("truncated"));
        assert!(parse_progress("epoch 3").unwrap_err().contains("not a training checkpoint"));
        assert!(parse_progress("wgrad.train.v1\nepoch x\n").unwrap_err().contains("not a whole number"));
    }
}
