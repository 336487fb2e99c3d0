//! What the examples share: hand-rolled flag parsing (no CLI crate for three flags),
//! opening the device `--device` names, and timing GPU work correctly.
//!
//! GPU work is recorded and submitted lazily, so a timing must end with
//! `Device::synchronize()`; otherwise it measures only the recording.

// Each example uses a part of this module.
#![allow(dead_code)]

pub mod classifier;
pub mod models;
pub mod workloads;

use std::time::Instant;

use wgrad::{Device, Tensor};

/// Parsed command line: `--name value` or `--name=value` pairs, and bare `--flag`s.
pub struct Args {
    values: Vec<(String, String)>,
}

impl Args {
    /// Parses `std::env::args()`. `with_value` lists the flags that take a value; `usage`
    /// is printed for `--help` (exit 0) and for anything unknown (exit 2).
    pub fn parse(with_value: &[&str], usage: &str) -> Args {
        let mut values = Vec::new();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                println!("{usage}");
                std::process::exit(0);
            }
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (arg.clone(), None),
            };
            let Some(flag) = name.strip_prefix("--").filter(|f| with_value.contains(f)) else {
                fail_usage(&format!("unknown argument '{arg}'"), usage);
            };
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => fail_usage(&format!("--{flag} needs a value"), usage),
            };
            values.push((flag.to_string(), value));
        }
        Args { values }
    }

    /// The last value given for `--name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn fail_usage(message: &str, usage: &str) -> ! {
    eprintln!("error: {message}\n\n{usage}");
    std::process::exit(2);
}

/// Opens the device named by `--device` (`auto`, `gpu`, `software` or `cpu`), or exits
/// with wgrad's error message (which lists the adapters found) and status 1.
pub fn open_device(name: &str) -> Device {
    if !["auto", "gpu", "software", "cpu"].contains(&name) {
        eprintln!("error: --device must be auto, gpu, software or cpu, not '{name}'");
        std::process::exit(2);
    }
    match Device::by_name(name) {
        Ok(dev) => dev,
        Err(e) => {
            eprintln!("error: cannot open the '{name}' device: {e}");
            std::process::exit(1);
        }
    }
}

/// Whether the device is a wgpu adapter that is real hardware (not lavapipe, WARP, ...).
pub fn is_hardware_gpu(dev: &Device) -> bool {
    dev.gpu_context().is_some_and(|ctx| !ctx.adapter.is_software())
}

/// Whether the device is a software rasteriser.
pub fn is_software_gpu(dev: &Device) -> bool {
    dev.gpu_context().is_some_and(|ctx| ctx.adapter.is_software())
}

/// Wall-clock milliseconds of `f` including the device finishing its work.
pub fn time_ms(dev: &Device, f: impl FnOnce() -> Tensor) -> f64 {
    let start = Instant::now();
    let out = f();
    dev.synchronize();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    drop(out);
    ms
}

/// Runs `f` `warmup` times untimed, then `runs` times timed; returns the sorted timings.
pub fn sample_ms(dev: &Device, warmup: usize, runs: usize, f: impl Fn() -> Tensor) -> Vec<f64> {
    for _ in 0..warmup {
        time_ms(dev, &f);
    }
    let mut times: Vec<f64> = (0..runs.max(1)).map(|_| time_ms(dev, &f)).collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The median of sorted timings.
pub fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Prints `message` and exits with status 1.
pub fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}

/// The value of `--name` parsed as `T`, or `default`; a value that does not parse exits
/// with the usage text.
pub fn parse_or<T: std::str::FromStr>(args: &Args, name: &str, default: T, usage: &str) -> T {
    match args.get(name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| fail_usage(&format!("--{name} got '{v}', which is not valid"), usage)),
    }
}
