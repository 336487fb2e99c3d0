//! What the examples share: hand-rolled flag parsing and checking (no CLI crate for a
//! handful of flags; `flags.rs`), opening the device `--device` names, and timing GPU
//! work correctly.
//!
//! GPU work is recorded and submitted lazily, so a timing must end with
//! `Device::synchronize()`; otherwise it measures only the recording.

// Each example uses a part of this module.
#![allow(dead_code)]

pub mod classifier;
pub mod flags;
pub mod models;
pub mod ranks;
pub mod training;
pub mod workloads;

use std::time::Instant;

use wgrad::{Device, Tensor};

pub use flags::Args;

/// Parses `std::env::args()` with [`Args::from_iter`]: `--help` prints `usage` and exits
/// with status 0, anything wrong prints the error and `usage` and exits with status 2.
pub fn parse_args(with_value: &[&str], switches: &[&str], usage: &str) -> Args {
    match usage_or(Args::from_iter(std::env::args().skip(1), with_value, switches), usage) {
        Some(args) => args,
        None => {
            println!("{usage}");
            std::process::exit(0);
        }
    }
}

/// The value of a flag check, or the error and `usage` on stderr and exit status 2.
pub fn usage_or<T>(checked: Result<T, String>, usage: &str) -> T {
    checked.unwrap_or_else(|message| {
        eprintln!("error: {message}\n\n{usage}");
        std::process::exit(2);
    })
}

/// Opens the device `--device` named (`auto`, `gpu`, `software` or `cpu`, as
/// [`Args::device`] checked), or exits with wgrad's error message (which lists the
/// adapters found) and status 1.
pub fn open_device(name: &str) -> Device {
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
