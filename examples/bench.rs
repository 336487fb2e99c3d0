//! Throughput of the two workloads that bound most models: square matmul (GFLOP/s, counting
//! `2 n^3` flops) and an elementwise add of two large tensors (GB/s, counting the bytes of
//! both inputs and the output, `3 * 4 * n`).
//!
//! ```text
//! cargo run --release --example bench -- [--device auto|gpu|software|cpu]
//!     [--sizes 256,512,...] [--runs 5] [--elements 16777216] [--json PATH]
//! ```
//!
//! Each figure is the median of `--runs` timed runs after one warm-up run; every run ends
//! with `Device::synchronize()`, so GPU figures include the whole kernel, not only its
//! recording.

mod common;

use std::fmt::Write as _;
use std::io::Write as _;

use common::{is_hardware_gpu, is_software_gpu, median, open_device, sample_ms, Args};
use wgrad::{Device, Tensor};

const USAGE: &str =
    "usage: bench [--device auto|gpu|software|cpu] [--sizes N,N,...] [--runs R] [--elements E] [--json PATH]

Measures square matmul GFLOP/s and elementwise add GB/s on one device.
  --device    auto (default): WGRAD_DEVICE if set, else the best hardware GPU, else the CPU;
              gpu, software (e.g. Mesa lavapipe) or cpu
  --sizes     matmul sizes n (n x n times n x n); default 256,512,1024,2048, plus 4096 on a
              hardware GPU, and only 256,512 on a software adapter
  --runs      timed runs per workload after one warm-up run (default 5); the median is reported
  --elements  elements per tensor of the add (default 16777216 = 16M)
  --json      also write the figures as JSON to this path (written atomically)";

const DEFAULT_RUNS: usize = 5;
const DEFAULT_ELEMENTS: usize = 16 << 20;

/// One measured workload.
struct Row {
    workload: &'static str,
    /// Human-readable size: `n` for matmul, the element count for add.
    size: String,
    /// `n` for matmul, elements for add.
    n: usize,
    median_ms: f64,
    min_ms: f64,
    /// GFLOP/s for matmul, GB/s for add.
    rate: f64,
    unit: &'static str,
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

fn parse_one(flag: &str, text: Option<&str>, default: usize) -> usize {
    match text {
        None => default,
        Some(t) => match parse_list(flag, t).as_slice() {
            [n] => *n,
            _ => {
                eprintln!("error: --{flag} takes one positive integer, not '{t}'");
                std::process::exit(2);
            }
        },
    }
}

fn main() {
    env_logger::init();
    let args = Args::parse(&["device", "sizes", "runs", "elements", "json"], USAGE);
    let dev = open_device(args.get("device").unwrap_or("auto"));
    let runs = parse_one("runs", args.get("runs"), DEFAULT_RUNS);
    let elements = parse_one("elements", args.get("elements"), DEFAULT_ELEMENTS);
    let json_path = args.get("json");

    println!("{}", dev.info());
    let sizes = match args.get("sizes") {
        Some(text) => parse_list("sizes", text),
        None if is_software_gpu(&dev) => {
            println!("software adapter: matmul sizes 256 and 512 only by default (it runs well under 1 GFLOP/s); --sizes overrides");
            vec![256, 512]
        }
        None if is_hardware_gpu(&dev) => vec![256, 512, 1024, 2048, 4096],
        None => vec![256, 512, 1024, 2048],
    };
    println!("median of {runs} runs after 1 warm-up run; every run ends with Device::synchronize()");
    println!();

    let mut rows = Vec::new();
    println!("{:<10} {:>12} {:>12} {:>12}  unit", "workload", "size", "median ms", "rate");
    for &n in &sizes {
        let row = bench_matmul(&dev, n, runs);
        print_row(&row);
        rows.push(row);
    }
    let row = bench_add(&dev, elements, runs);
    print_row(&row);
    rows.push(row);

    if let Some(path) = json_path {
        match write_atomically(path, &to_json(&dev, runs, &rows)) {
            Ok(()) => println!("\nwrote {path}"),
            Err(e) => {
                eprintln!("error: cannot write {path}: {e}");
                std::process::exit(1);
            }
        }
    }
}

fn print_row(r: &Row) {
    println!("{:<10} {:>12} {:>12.3} {:>12.2}  {}", r.workload, r.size, r.median_ms, r.rate, r.unit);
}

fn bench_matmul(dev: &Device, n: usize, runs: usize) -> Row {
    // Inputs are drawn on the device itself, and finished before the clock starts.
    let a = Tensor::rand(&[n, n], 1, dev);
    let b = Tensor::rand(&[n, n], 2, dev);
    dev.synchronize();
    let times = sample_ms(dev, 1, runs, || a.matmul(&b));
    let median_ms = median(&times);
    let flops = 2.0 * (n as f64).powi(3);
    Row {
        workload: "matmul",
        size: format!("{n}x{n}x{n}"),
        n,
        median_ms,
        min_ms: times[0],
        rate: flops / (median_ms * 1e-3) / 1e9,
        unit: "GFLOP/s",
    }
}

fn bench_add(dev: &Device, elements: usize, runs: usize) -> Row {
    let a = Tensor::rand(&[elements], 3, dev);
    let b = Tensor::rand(&[elements], 4, dev);
    dev.synchronize();
    let times = sample_ms(dev, 1, runs, || a.add(&b));
    let median_ms = median(&times);
    // Two inputs read and one output written, 4 bytes each.
    let bytes = 3.0 * 4.0 * elements as f64;
    Row {
        workload: "add",
        size: elements.to_string(),
        n: elements,
        median_ms,
        min_ms: times[0],
        rate: bytes / (median_ms * 1e-3) / 1e9,
        unit: "GB/s",
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A finite JSON number (JSON has no NaN or infinity; a zero-time run would give one).
fn json_number(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".to_string()
    }
}

fn to_json(dev: &Device, runs: usize, rows: &[Row]) -> String {
    let mut out = String::new();
    writeln!(out, "{{").unwrap();
    writeln!(out, "  \"device\": {},", json_string(&dev.info())).unwrap();
    writeln!(out, "  \"runs\": {runs},").unwrap();
    writeln!(out, "  \"warmup_runs\": 1,").unwrap();
    writeln!(out, "  \"results\": [").unwrap();
    for (i, r) in rows.iter().enumerate() {
        let (size_key, rate_key) = if r.workload == "matmul" { ("n", "gflops") } else { ("elements", "gb_per_s") };
        write!(
            out,
            "    {{\"workload\": {}, \"{size_key}\": {}, \"median_ms\": {}, \"min_ms\": {}, \"{rate_key}\": {}}}",
            json_string(r.workload),
            r.n,
            json_number(r.median_ms),
            json_number(r.min_ms),
            json_number(r.rate)
        )
        .unwrap();
        out.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    writeln!(out, "  ]").unwrap();
    writeln!(out, "}}").unwrap();
    out
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`, so a
/// reader never sees a half-written file.
fn write_atomically(path: &str, text: &str) -> std::io::Result<()> {
    let target = std::path::Path::new(path);
    let name = target.file_name().ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = target.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, target)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
