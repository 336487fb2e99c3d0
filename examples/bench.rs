//! Throughput of the workloads that bound the examples' training runs, on one device:
//!
//! - `matmul`: square matmul, n = 256, 512, 1024, 2048 (GFLOP/s, `2 n^3` flops);
//! - `hmatmul`: the same with f16 operands accumulated in f32 (`half_matmul`), on
//!   cooperative matrices where the device runs it there (see `Device::info`);
//! - `conv`: `conv2d` forward at batch 64, 1->32 channels at 28x28 and 32->64 at 13x13
//!   (3x3 kernel, stride 1, no padding), then each as forward+backward of `sum(y * dy)`
//!   with respect to the input and the weight (GFLOP/s, `2 N O Ho Wo C kh kw` flops
//!   forward, three times that forward+backward);
//! - `lstm`: a batch-first LSTM layer, batch 64, 28 steps, input 28, hidden 128, forward
//!   and forward+backward (GFLOP/s of the gate matmuls);
//! - `step`: one training step (forward, cross-entropy, backward, Adam step) at batch 64
//!   of the MNIST CNN, MLP and LSTM of the examples (images/s);
//! - `add`: elementwise add of two 16M-element tensors (GB/s, `3 * 4 * n` bytes moved).
//!
//! ```text
//! cargo run --release --example bench -- [--device auto|gpu|software|cpu|noop]
//!     [--workloads matmul,hmatmul,conv,lstm,step,add] [--sizes 256,512,...] [--models cnn,mlp,lstm]
//!     [--runs 5] [--elements 16777216] [--json PATH]
//! ```
//!
//! Each figure is the median (and minimum) of `--runs` timed runs after one warm-up run;
//! every run ends with `Device::synchronize()`, so GPU figures include the whole kernel,
//! not only its recording. On a GPU device the table also gives the kernel dispatches one
//! run records (from `Device::stats()`, counted over the last timed run): for a training
//! step, the launches per step that fusing kernels cuts down. The workloads themselves
//! live in `examples/common/workloads.rs`, which `cargo bench` (benches/workloads.rs)
//! measures too.
//!
//! `--device noop` (with `--features noop-device`) opens wgpu's noop back-end, which does
//! all of wgpu-core's validation and tracking but runs nothing: the times are then the
//! host's cost of the GPU path, and a table splits it per dispatch between wgrad's
//! recording layer, wgpu and the rest of wgrad (tensors, autograd, buffer pool). Values
//! read back from it are meaningless and nothing checks them.
//!
//! With `WGRAD_PROFILE=1` the per-kernel time table of everything the run dispatched
//! (warm-up included) follows on stderr (see `wgrad::profile`).

mod common;

use std::cell::{Cell, RefCell};

use common::workloads::{Family, Model, Spec, Work, Workload, FAMILIES, MODELS};
use common::{is_software_gpu, median, open_device, parse_args, sample_ms, usage_or};
use wgrad::{Device, DeviceStats, HostTimes};

const USAGE: &str = "usage: bench [--device auto|gpu|software|cpu|noop] [--workloads W,W,...] [--sizes N,N,...]
             [--models M,M,...] [--runs R] [--elements E] [--json PATH]

Measures matmul, conv2d, LSTM, training-step and elementwise-add throughput on one device.
  --device     auto (default): WGRAD_DEVICE if set, else the best hardware GPU, else the CPU;
               gpu, software (e.g. Mesa lavapipe) or cpu; noop (built with --features noop-device):
               wgpu's noop back-end, which runs no kernel, to time the host's cost of the GPU
               path (30 runs by default, and a per-dispatch breakdown of the host time)
  --workloads  the families to run, from matmul, hmatmul (f16 operands), conv, lstm, step,
               add (default all)
  --sizes      matmul and hmatmul sizes n (n x n times n x n); default 256,512,1024,2048, and only 256
               on a software adapter
  --models     the training-step models, from cnn, mlp, lstm (default all)
  --runs       timed runs per workload after one warm-up run (default 5; on a software
               adapter the training steps default to 1); the median is reported
  --elements   elements per tensor of the add (default 16777216 = 16M; 1M on a software adapter)
  --json       also write the figures as JSON to this path (written atomically)

On a GPU device the dispatches column counts the kernels one run launches. With
WGRAD_PROFILE=1 a per-kernel time table follows on stderr.";

const DEFAULT_RUNS: usize = 5;

/// Timed runs per workload on the noop device, where a run costs microseconds.
const NOOP_RUNS: usize = 30;

/// One measured workload.
struct Row {
    spec: Spec,
    runs: usize,
    median_ms: f64,
    min_ms: f64,
    work: Work,
    /// What the last timed run gave the device (GPU devices only).
    per_run: Option<DeviceStats>,
    /// The host time of recording and submitting, by phase: the median of each phase over
    /// the timed runs (the noop device only).
    host: Option<HostTimes>,
}

fn parse_list(flag: &str, text: &str) -> Vec<usize> {
    let parsed: Result<Vec<usize>, _> =
        text.split(',').filter(|s| !s.trim().is_empty()).map(|s| s.trim().parse()).collect();
    match parsed {
        Ok(v) if !v.is_empty() && v.iter().all(|&n| n > 0) => v,
        _ => {
            eprintln!("error: --{flag} takes positive integers separated by commas, not '{text}'");
            std::process::exit(2);
        }
    }
}

fn parse_one(flag: &str, text: Option<&str>) -> Option<usize> {
    let t = text?;
    match parse_list(flag, t).as_slice() {
        [n] => Some(*n),
        _ => {
            eprintln!("error: --{flag} takes one positive integer, not '{t}'");
            std::process::exit(2);
        }
    }
}

fn parse_models(text: &str) -> Vec<Model> {
    let parsed: Option<Vec<Model>> = text.split(',').filter(|s| !s.trim().is_empty()).map(Model::parse).collect();
    match parsed {
        Some(v) if !v.is_empty() => v,
        _ => {
            let names: Vec<&str> = MODELS.iter().map(|m| m.name()).collect();
            eprintln!("error: --models takes names from {} separated by commas, not '{text}'", names.join(", "));
            std::process::exit(2);
        }
    }
}

fn parse_families(text: &str) -> Vec<Family> {
    let parsed: Option<Vec<Family>> = text.split(',').filter(|s| !s.trim().is_empty()).map(Family::parse).collect();
    match parsed {
        Some(v) if !v.is_empty() => v,
        _ => {
            let names: Vec<&str> = FAMILIES.iter().map(|f| f.name()).collect();
            eprintln!("error: --workloads takes names from {} separated by commas, not '{text}'", names.join(", "));
            std::process::exit(2);
        }
    }
}

fn main() {
    env_logger::init();
    let args = parse_args(&["device", "workloads", "sizes", "models", "runs", "elements", "json"], &[], USAGE);
    // Every flag is checked before the device opens.
    // `noop` is the benchmark-only device of the `noop-device` feature: it times the host's
    // share of the GPU path (see the usage text).
    let noop = args.get("device") == Some("noop");
    let device = if noop { "noop" } else { usage_or(args.device(), USAGE) };
    let families = args.get("workloads").map_or_else(|| FAMILIES.to_vec(), parse_families);
    let runs = parse_one("runs", args.get("runs"));
    let elements = parse_one("elements", args.get("elements"));
    let sizes = args.get("sizes").map(|t| parse_list("sizes", t));
    let models = args.get("models").map_or_else(|| MODELS.to_vec(), parse_models);
    let json_path = usage_or(args.output_file("json"), USAGE);
    if noop && !cfg!(feature = "noop-device") {
        eprintln!("error: --device noop needs the noop-device feature: cargo run --release --features noop-device --example bench -- --device noop");
        std::process::exit(2);
    }
    let dev = open_device(device);

    println!("{}", dev.info());
    if noop {
        println!(
            "noop device: wgpu validates, tracks and submits every command but runs no kernel, so the times are \
             the host's cost of the GPU path alone and no value computed is checked (read-backs return zeros)"
        );
        if let Some(ctx) = dev.gpu_context() {
            ctx.set_host_timing(true);
        }
    }
    let small = is_software_gpu(&dev);
    let mut specs = Spec::defaults(&families, small);
    if let Some(sizes) = sizes {
        // The matmuls lead the table, as they lead the defaults.
        specs.retain(|s| !matches!(s.family(), Family::Matmul | Family::HalfMatmul));
        let matmuls = [Family::Matmul, Family::HalfMatmul].into_iter().filter(|f| families.contains(f));
        let matmuls: Vec<Spec> = matmuls.flat_map(|f| sizes.iter().map(move |&n| Spec::square_matmul(f, n))).collect();
        specs.splice(0..0, matmuls);
    }
    specs.retain(|s| match s {
        Spec::Step(model) => models.contains(model),
        _ => true,
    });
    if let Some(elements) = elements {
        for s in &mut specs {
            if let Spec::Add { elements: e } = s {
                *e = elements;
            }
        }
    }
    if small {
        println!(
            "software adapter: small defaults (matmul 256, add 1M, one timed training step), as it runs well \
             under 1 GFLOP/s; --sizes, --elements and --runs override"
        );
    }
    println!("median and minimum of the timed runs after 1 warm-up run; every run ends with Device::synchronize()");
    println!();

    println!(
        "{:<13} {:<20} {:>5} {:>11} {:>11} {:>11}  {:<9} {:>10}",
        "workload", "size", "runs", "median ms", "min ms", "rate", "unit", "dispatches"
    );
    let mut rows = Vec::new();
    for spec in specs {
        let default_runs = if noop {
            NOOP_RUNS
        } else if small && spec.family() == Family::Step {
            1
        } else {
            DEFAULT_RUNS
        };
        let row = measure(&dev, spec, runs.unwrap_or(default_runs), noop);
        print_row(&row);
        rows.push(row);
    }
    if noop {
        print_host_breakdown(&rows);
    }

    if let Some(path) = json_path {
        match wgrad::checkpoint::write_atomically(&path, to_json(&dev, &rows).as_bytes()) {
            Ok(()) => println!("\nwrote {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write the figures: {e}");
                std::process::exit(1);
            }
        }
    }
    wgrad::profile::print_report();
}

fn measure(dev: &Device, spec: Spec, runs: usize, host_timing: bool) -> Row {
    // The training step updates its optimizer, so the runs borrow the workload mutably.
    let workload = RefCell::new(Workload::new(spec, dev));
    let per_run = Cell::new(None);
    // Host-time readings at the start of each timed run and after the last: run i's
    // phases are readings i+1 minus i (its final synchronize included). The warm-up run,
    // which compiles the pipelines, is left out.
    let ctx = dev.gpu_context().filter(|_| host_timing);
    let readings = RefCell::new(Vec::new());
    let warmed_up = Cell::new(false);
    let times = sample_ms(dev, 1, runs, || {
        if warmed_up.replace(true) {
            if let Some(c) = ctx {
                readings.borrow_mut().push(c.host_times());
            }
        }
        // Work is counted when it is recorded, so the counts of the run are complete when
        // it returns; the final submit of its batch happens in the synchronize after.
        let before = dev.stats();
        let out = workload.borrow_mut().run();
        per_run.set(dev.stats().zip(before).map(|(after, before)| after - before));
        out
    });
    if let Some(c) = ctx {
        readings.borrow_mut().push(c.host_times());
    }
    let readings = readings.into_inner();
    let host = (readings.len() > 1).then(|| {
        let runs: Vec<HostTimes> = readings.windows(2).map(|w| w[1] - w[0]).collect();
        let median_of = |phase: fn(&HostTimes) -> u64| {
            let mut v: Vec<u64> = runs.iter().map(phase).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        HostTimes {
            lookup_ns: median_of(|t| t.lookup_ns),
            params_ns: median_of(|t| t.params_ns),
            bind_group_ns: median_of(|t| t.bind_group_ns),
            encode_ns: median_of(|t| t.encode_ns),
            submit_ns: median_of(|t| t.submit_ns),
        }
    });
    Row { spec, runs, median_ms: median(&times), min_ms: times[0], work: spec.work(), per_run: per_run.get(), host }
}

/// Where the host time of each workload went, per dispatch: wgrad's recording layer and
/// wgpu (lookup, params, bind group, encode, submit) and the rest of the run (wgrad's
/// tensors, autograd and buffer pool, and the final synchronize).
fn print_host_breakdown(rows: &[Row]) {
    println!();
    println!("host time per dispatch in us (median run time / dispatches; each phase the median over the timed runs;");
    println!("rest: the time the phases leave, wgrad's tensors, autograd and buffer pool)");
    println!(
        "{:<13} {:<20} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "workload", "size", "dispatches", "total", "lookup", "params", "bindgrp", "encode", "submit", "rest"
    );
    for r in rows {
        let (Some(stats), Some(host)) = (r.per_run, r.host) else { continue };
        if stats.dispatches == 0 {
            continue;
        }
        let per = |ns: u64| ns as f64 / 1e3 / stats.dispatches as f64;
        let total = r.median_ms * 1e3 / stats.dispatches as f64;
        let phases = [host.lookup_ns, host.params_ns, host.bind_group_ns, host.encode_ns, host.submit_ns];
        let rest = total - phases.iter().map(|&ns| per(ns)).sum::<f64>();
        print!("{:<13} {:<20} {:>10} {:>8.2}", r.spec.name(), r.spec.size(), stats.dispatches, total);
        for ns in phases {
            print!(" {:>8.2}", per(ns));
        }
        println!(" {rest:>8.2}");
    }
}

fn print_row(r: &Row) {
    let dispatches = r.per_run.map_or_else(|| "-".to_string(), |s| s.dispatches.to_string());
    println!(
        "{:<13} {:<20} {:>5} {:>11.3} {:>11.3} {:>11.2}  {:<9} {:>10}",
        r.spec.name(),
        r.spec.size(),
        r.runs,
        r.median_ms,
        r.min_ms,
        r.work.rate(r.median_ms),
        r.work.unit(),
        dispatches
    );
}

/// The figures as a JSON object: `device`, `warmup_runs` and `results`, one object per
/// workload (a time or rate that is not finite, or a count the CPU does not keep, is
/// `null`).
fn to_json(dev: &Device, rows: &[Row]) -> String {
    let results: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "workload": r.spec.name(),
                "size": r.spec.size(),
                "runs": r.runs,
                "median_ms": r.median_ms,
                "min_ms": r.min_ms,
                "rate": r.work.rate(r.median_ms),
                "unit": r.work.unit(),
                "dispatches_per_run": r.per_run.map(|s| s.dispatches),
                "read_backs_per_run": r.per_run.map(|s| s.read_backs),
            })
        })
        .collect();
    let figures = serde_json::json!({ "device": dev.info(), "warmup_runs": 1, "results": results });
    let mut text = serde_json::to_string_pretty(&figures).expect("a JSON value always serialises");
    text.push('\n');
    text
}
