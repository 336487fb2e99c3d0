//! Cold start: the time from process start to the first finished training step of the
//! Keras MNIST CNN (batch 64, cross-entropy, Adam), split into its parts, and the second
//! step for comparison.
//!
//! ```text
//! cargo run --release --example cold_start -- [--device auto|gpu|software|cpu]
//! ```
//!
//! A first step pays for opening the device, compiling every pipeline it uses and the
//! matmul tuner's timing of its candidates for each new shape class (see
//! `wgrad::gpu::tuning`); `RUST_LOG=wgrad=info` shows the tuner's choices and times.

mod common;

use std::time::Instant;

use common::workloads::{Model, Spec, Workload};
use common::{open_device, parse_args, usage_or};

const USAGE: &str = "usage: cold_start [--device auto|gpu|software|cpu]

Times process start to the first finished training step of the Keras MNIST CNN.
  --device  auto (default): WGRAD_DEVICE if set, else the best hardware GPU, else the CPU;
            gpu, software (e.g. Mesa lavapipe) or cpu";

/// Seconds since the process started, from the kernel's record of its start on Linux
/// (which includes loading the binary); since `main` began elsewhere.
fn since_process_start(main_started: Instant) -> f64 {
    process_age().unwrap_or_else(|| main_started.elapsed().as_secs_f64())
}

#[cfg(target_os = "linux")]
fn process_age() -> Option<f64> {
    // Field 22 of /proc/self/stat is the start time in clock ticks after boot; the first
    // field of /proc/uptime is now in seconds after boot. Ticks are 100 per second on
    // every Linux platform Rust targets (USER_HZ).
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let start_ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split_whitespace().next()?.parse().ok()?;
    Some(uptime - start_ticks / 100.0)
}

#[cfg(not(target_os = "linux"))]
fn process_age() -> Option<f64> {
    None
}

fn main() {
    let main_started = Instant::now();
    env_logger::init();
    let args = parse_args(&["device"], &[], USAGE);
    let name = usage_or(args.device(), USAGE);
    let at_main = since_process_start(main_started);
    let dev = open_device(name);
    let opened = since_process_start(main_started);
    let mut step = Workload::new(Spec::Step(Model::Cnn), &dev);
    let built = since_process_start(main_started);
    let loss = step.run().item();
    let first = since_process_start(main_started);
    let second_started = Instant::now();
    step.run().item();
    let second = second_started.elapsed().as_secs_f64();
    println!("{}", dev.info());
    println!("process start to main          {:8.3} s", at_main);
    println!("device opened                  {:8.3} s", opened);
    println!("model and batch built          {:8.3} s", built);
    println!(
        "first training step finished   {:8.3} s  (the step itself {:.3} s, loss {loss:.4})",
        first,
        first - built
    );
    println!("second training step           {:8.3} s", second);
}
