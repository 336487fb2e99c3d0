//! The conformance run: every op and every matmul tile configuration cross-checked against
//! the CPU reference on this machine's adapter and driver (see `wgrad::conformance`).
//!
//! ```text
//! cargo run --release --example conformance -- [--device auto|gpu|software|cpu]
//!     [--json conformance.json] [--exclusions path]
//! ```
//!
//! Prints a pass/fail table headed by the adapter line and writes it as JSON. With
//! `--exclusions`, the failing matmul configurations are appended to that file, which
//! `WGRAD_EXCLUDE_CONFIGS=path` then keeps away from the tuner in later runs. Exits with
//! status 1 when anything failed.

mod common;

use std::io::Write;

use common::{fail, open_device, parse_args, usage_or};

const USAGE: &str = "usage: conformance [--device auto|gpu|software|cpu] [--json PATH] [--exclusions PATH]

Runs every op and every matmul tile configuration on the device in shadow mode, each GPU
result compared with the CPU reference on the same inputs, and prints a pass/fail table.
  --device      auto (default): WGRAD_DEVICE if set, else the best hardware GPU, else the CPU;
                gpu: a hardware adapter; software: a software adapter (e.g. Mesa lavapipe)
  --json        where to write the table as JSON (default conformance.json)
  --exclusions  a file to append the failing matmul configurations to, for
                WGRAD_EXCLUDE_CONFIGS";

fn main() {
    env_logger::init();
    let args = parse_args(&["device", "json", "exclusions"], &[], USAGE);
    let device = open_device(usage_or(args.device(), USAGE));
    let json = usage_or(args.output_file("json"), USAGE).unwrap_or_else(|| "conformance.json".into());
    let exclusions = usage_or(args.output_file("exclusions"), USAGE);
    if device.is_cpu() {
        println!("{}", device.info());
        println!("the CPU backend is the reference itself: there is nothing to compare (try --device software)");
        return;
    }
    let report = wgrad::conformance::run(&device);
    print!("{}", report.table());
    if let Err(e) = wgrad::checkpoint::write_atomically(&json, report.to_json().as_bytes()) {
        fail(&format!("cannot write the report: {e}"));
    }
    println!("wrote {}", json.display());
    if let Some(path) = exclusions {
        let lines = report.exclusions();
        if !lines.is_empty() {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .and_then(|mut f| f.write_all(lines.as_bytes()));
            if let Err(e) = appended {
                fail(&format!("cannot append to {}: {e}", path.display()));
            }
            println!("excluded {} in {}", report.failed_matmul_configs().join(", "), path.display());
        }
    }
    if !report.passed() {
        std::process::exit(1);
    }
}
