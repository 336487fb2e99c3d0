//! Checks that a device works: runs a matmul and a softmax on it and on the CPU reference,
//! compares the results, and reports the differences and timings.
//!
//! ```text
//! cargo run --release --example device_check -- [--device auto|gpu|software|cpu]
//! ```
//!
//! Exits with status 1 when the device cannot be opened or disagrees with the CPU.

mod common;

use common::{median, open_device, parse_args, sample_ms, time_ms, usage_or};
use wgrad::testing::{compare, Tolerance};
use wgrad::{Device, Tensor};

const USAGE: &str = "usage: device_check [--device auto|gpu|software|cpu]

Runs a matmul and a softmax on the device and on the CPU reference backend and compares them.
  --device  auto (default): WGRAD_DEVICE if set, else the best hardware GPU, else the CPU;
            gpu: a hardware adapter; software: a software adapter (e.g. Mesa lavapipe);
            cpu: the CPU backend (then the CPU is compared with itself)";

/// Timed runs after the first (which includes pipeline creation on a GPU).
const RUNS: usize = 5;

/// One workload: a name for the report, how to build its inputs and the op itself.
struct Check {
    name: String,
    inputs: Vec<Tensor>,
    op: fn(&[Tensor]) -> Tensor,
    tol: Tolerance,
}

fn main() {
    env_logger::init();
    let args = parse_args(&["device"], &[], USAGE);
    let name = usage_or(args.device(), USAGE);
    let dev = open_device(name);
    let cpu = Device::cpu();

    println!("{}", dev.info());
    if dev.is_cpu() {
        if name == "cpu" {
            println!("--device cpu: comparing the CPU backend with itself (this checks that the example runs; no GPU kernel is tested)");
        } else {
            match std::env::var("WGRAD_DEVICE") {
                Ok(v) if !v.is_empty() => {
                    println!("--device {name} chose the CPU backend (WGRAD_DEVICE={v}): comparing the CPU backend with itself")
                }
                _ => {
                    println!("--device {name} chose the CPU backend (no hardware GPU adapter; software adapters are used only with --device software): comparing the CPU backend with itself");
                    if let Some(sw) = wgrad::list_adapters().into_iter().find(|a| a.is_software()) {
                        println!(
                            "hint: a software adapter is present ({}); --device software runs the WGSL kernels on it",
                            sw.line()
                        );
                    }
                }
            }
        }
    } else {
        println!("reference: {}", cpu.info());
    }

    // Inputs are drawn on the CPU and uploaded, so both devices see the same bits and only
    // the op itself can make them disagree.
    let checks = [
        Check {
            name: "matmul [256, 784] x [784, 128]".to_string(),
            inputs: vec![Tensor::randn(&[256, 784], 1, &cpu), Tensor::randn(&[784, 128], 2, &cpu)],
            op: |t| t[0].matmul(&t[1]),
            // A sum of 784 products: compare norms, since elementwise tolerances fail on
            // cancellation. Looser than the kernel tests, for any driver's summation order.
            tol: Tolerance::Normalized { tol: 1e-5 },
        },
        Check {
            name: "softmax [512, 1000] over axis 1".to_string(),
            // Logits with a spread of about 4, like a classifier's.
            inputs: vec![Tensor::randn(&[512, 1000], 3, &cpu).mul_scalar(4.0)],
            op: |t| t[0].softmax(1),
            tol: Tolerance::Elementwise { atol: 1e-6, rtol: 1e-5 },
        },
    ];

    let mut failed = Vec::new();
    for check in &checks {
        let on_dev: Vec<Tensor> = check.inputs.iter().map(|t| t.to_device(&dev)).collect();
        dev.synchronize();

        // The first call creates the pipeline on a GPU; report it apart from the steady state.
        let first_ms = time_ms(&dev, || (check.op)(&on_dev));
        let dev_ms = median(&sample_ms(&dev, 0, RUNS, || (check.op)(&on_dev)));
        let cpu_ms = median(&sample_ms(&cpu, 1, RUNS, || (check.op)(&check.inputs)));

        let actual: Vec<f32> = (check.op)(&on_dev).to_vec();
        let expected: Vec<f32> = (check.op)(&check.inputs).to_vec();
        let max_abs = actual.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| (x as f64).powi(2)).sum::<f64>().sqrt();
        let rel = norm(&mut actual.iter().zip(&expected).map(|(a, b)| a - b)) / norm(&mut expected.iter().copied());
        let verdict = compare(&actual, &expected, check.tol);

        println!("{}", check.name);
        println!("  device: {dev_ms:9.3} ms median of {RUNS} (first call {first_ms:.3} ms)");
        println!("  cpu:    {cpu_ms:9.3} ms median of {RUNS}");
        println!(
            "  max |device - cpu| = {max_abs:.3e}, ||device - cpu|| / ||cpu|| = {rel:.3e}; tolerance {:?}: {}",
            check.tol,
            if verdict.is_ok() { "agree" } else { "DISAGREE" }
        );
        if let Err(e) = verdict {
            failed.push(format!("{}: {e}", check.name));
        }
    }

    if !failed.is_empty() {
        eprintln!("device_check: the device disagrees with the CPU reference:");
        for f in &failed {
            eprintln!("  {f}");
        }
        std::process::exit(1);
    }
    println!("OK: the device agrees with the CPU reference");
}
