//! The examples' command lines, checked whole before anything slow starts: parsing
//! (`--name value`, `--name=value`, bare switches), the checks of every value (counts of at
//! least 1, a finite positive learning rate, a known device, input paths that exist, an
//! output file whose folder can be written).
//!
//! Plain `std` and no exits here, so that `tests/example_flags.rs` can test it; the
//! examples turn an `Err` into the usage text and exit status 2 (see `common::usage_or`).

// Each example uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The devices `--device` may name.
pub const DEVICES: [&str; 4] = ["auto", "gpu", "software", "cpu"];

/// The switch that lets a run go on when its training loss is NaN or infinite.
pub const ALLOW_NONFINITE_LOSS: &str = "allow-nonfinite-loss";

/// Parsed command line: `--name value` or `--name=value` pairs, and bare `--switch`es.
#[derive(Debug)]
pub struct Args {
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Args {
    /// Parses `args` (without the program name). `with_value` lists the flags that take a
    /// value, `switches` those that take none. `Ok(None)` means `-h` or `--help` was given;
    /// `Err` says what is wrong (an unknown flag, a missing value, a value for a switch).
    pub fn from_iter(
        args: impl IntoIterator<Item = String>,
        with_value: &[&str],
        switches: &[&str],
    ) -> Result<Option<Args>, String> {
        let (mut values, mut given_switches) = (Vec::new(), Vec::new());
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                return Ok(None);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            let flag = name.strip_prefix("--").unwrap_or("");
            if switches.contains(&flag) {
                if inline.is_some() {
                    return Err(format!("--{flag} takes no value, got '{arg}'"));
                }
                given_switches.push(flag.to_string());
                continue;
            }
            if !with_value.contains(&flag) {
                return Err(format!("unknown argument '{arg}'"));
            }
            match inline.or_else(|| args.next()) {
                Some(v) => values.push((flag.to_string(), v)),
                None => return Err(format!("--{flag} needs a value")),
            }
        }
        Ok(Some(Args { values, switches: given_switches }))
    }

    /// The last value given for `--name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the switch `--name` was given.
    pub fn has(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// `--device`: one of [`DEVICES`], `auto` when absent.
    pub fn device(&self) -> Result<&str, String> {
        match self.get("device") {
            None => Ok("auto"),
            Some(name) if DEVICES.contains(&name) => Ok(name),
            Some(name) => Err(format!("--device must be auto, gpu, software or cpu, not '{name}'")),
        }
    }

    /// `--name` as a whole number of at least 1 (epochs, a batch size, runs), or `default`.
    pub fn count(&self, name: &str, default: usize) -> Result<usize, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(format!("--{name} must be a whole number of at least 1, not '{v}'")),
            },
        }
    }

    /// `--name` as a seed: any whole number from 0 to 2^64 - 1, or `default`.
    pub fn seed(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("--{name} must be a whole number from 0 to {}, not '{v}'", u64::MAX)),
        }
    }

    /// `--name` as a learning rate: a finite number above 0, or `default`.
    pub fn learning_rate(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<f32>() {
                Ok(lr) if lr.is_finite() && lr > 0.0 => Ok(lr),
                _ => Err(format!("--{name} must be a finite number above 0, not '{v}'")),
            },
        }
    }

    /// `--name` as a whole number of at least 1, if given.
    pub fn optional_count(&self, name: &str) -> Result<Option<usize>, String> {
        self.get(name).map(|_| self.count(name, 0)).transpose()
    }

    /// `--name` as a fraction strictly between 0 and 1, if given.
    pub fn fraction(&self, name: &str) -> Result<Option<f64>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        match v.trim().parse::<f64>() {
            Ok(f) if f > 0.0 && f < 1.0 => Ok(Some(f)),
            _ => Err(format!("--{name} must be a number between 0 and 1 (exclusive), not '{v}'")),
        }
    }

    /// `--name` as a folder the run will write into, if given: created now (with its
    /// parents) and checked to take a new file, so that a long run does not fail late.
    pub fn output_dir(&self, name: &str) -> Result<Option<PathBuf>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let path = PathBuf::from(v);
        if path.exists() && !path.is_dir() {
            return Err(format!("--{name} {v}: not a folder"));
        }
        std::fs::create_dir_all(&path).map_err(|e| format!("--{name} {v}: {e}"))?;
        check_writable(&path.join("file")).map_err(|reason| format!("--{name} {v}: {reason}"))?;
        Ok(Some(path))
    }

    /// `--name` as a folder that exists, if given.
    pub fn existing_dir(&self, name: &str) -> Result<Option<PathBuf>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let path = PathBuf::from(v);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(Some(path)),
            Ok(_) => Err(format!("--{name} {v}: not a folder")),
            Err(e) => Err(format!("--{name} {v}: {e}")),
        }
    }

    /// `--name` as a file that exists, if given.
    pub fn existing_file(&self, name: &str) -> Result<Option<PathBuf>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let path = PathBuf::from(v);
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Err(format!("--{name} {v}: a folder, not a file")),
            Ok(_) => Ok(Some(path)),
            Err(e) => Err(format!("--{name} {v}: {e}")),
        }
    }

    /// `--name` as a file the run will write at its end, if given: checked now, so that a
    /// long run does not fail at its last step. The path must name a file (not a folder)
    /// in a folder that exists and takes a new file, which is tried by creating one.
    pub fn output_file(&self, name: &str) -> Result<Option<PathBuf>, String> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let path = PathBuf::from(v);
        check_writable(&path).map_err(|reason| format!("--{name} {v}: {reason}"))?;
        Ok(Some(path))
    }
}

/// Why a file cannot be written at `path`, if it cannot: the path names a folder or
/// nothing, its folder is missing, or a new file cannot be created there.
pub fn check_writable(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("a folder, not a file".into());
    }
    let Some(file_name) = path.file_name() else { return Err("names no file".into()) };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("the folder {} does not exist", dir.display()));
    }
    // Whether a file can be created is only known by creating one (permissions, read-only
    // file systems, ACLs): a hidden probe beside the target, removed at once.
    let mut probe_name = std::ffi::OsString::from(".");
    probe_name.push(file_name);
    probe_name.push(format!(".{}.write-check", std::process::id()));
    let probe = dir.join(probe_name);
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(file) => {
            drop(file);
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("cannot create a file in {}: {e}", dir.display())),
    }
}
