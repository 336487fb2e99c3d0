//! The conformance run on the test adapter: every op of `Op::all()` has a case that runs
//! it on the GPU and agrees with the CPU; every matmul configuration passes; and a
//! configuration that fails is excluded from the tuner on that adapter.
//!
//! The run turns shadow mode on for the shared device, so the tests here take turns.

use std::sync::Mutex;

use wgrad::conformance::{run_only, Subject};
use wgrad::gpu::tuning::{allowed_matmul_configs, tuned_matmul_configs, MATMUL_CONFIGS};
use wgrad::op::Op;
use wgrad::shadow::inject;
use wgrad::testing::gpu_test_device;
use wgrad::Tensor;

static TURN: Mutex<()> = Mutex::new(());

#[test]
fn every_op_has_a_conformance_case_that_runs_it_and_passes() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let report = run_only(&dev, &Op::all(), false);
    assert!(!dev.is_shadowed(), "the run left shadow mode on");
    for op in Op::all() {
        let entry = report.entries.iter().find(|e| e.subject == Subject::Op(op));
        let entry = entry.unwrap_or_else(|| panic!("{op:?} has no conformance case"));
        assert!(entry.passed, "{}: {}", op.name(), entry.failure.as_deref().unwrap_or(""));
        assert!(entry.compared > 0, "{}: nothing was compared", op.name());
    }
    let json = report.to_json();
    assert!(json.contains("\"passed\": true") && json.contains("\"name\": \"lstm_cell_backward\""), "{json}");
    assert!(report.table().contains(&dev.info()));
}

#[test]
fn every_matmul_configuration_passes() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let report = run_only(&dev, &[], true);
    assert_eq!(report.entries.len(), MATMUL_CONFIGS.len());
    for e in &report.entries {
        assert!(e.passed, "{}: {}", e.subject.name(), e.failure.as_deref().unwrap_or(""));
    }
    assert!(report.exclusions().is_empty());
}

#[test]
fn a_failing_matmul_configuration_is_reported_and_never_chosen_again() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(dev) = gpu_test_device() else { return };
    let ctx = dev.gpu_context().unwrap();
    // The configurations are checked in MATMUL_CONFIGS order: the fault lands in the first.
    let victim = MATMUL_CONFIGS[0].name;
    inject::perturb_next(Op::Matmul, false, 0);
    let report = run_only(&dev, &[], true);
    assert!(!inject::pending());
    assert_eq!(report.failed_matmul_configs(), vec![victim], "{}", report.table());
    let failure = report.entries[0].failure.as_deref().unwrap_or("");
    assert!(failure.contains("`matmul` disagrees"), "{failure}");
    assert!(report.exclusions().starts_with(&format!("{victim} @ ")), "{}", report.exclusions());
    assert!(!allowed_matmul_configs(ctx).contains(&victim));
    // Fresh shape classes tune without it.
    for (m, k, n) in [(70, 33, 50), (5, 129, 260), (260, 16, 8)] {
        let y = Tensor::randn(&[m, k], 1, &dev).matmul(&Tensor::randn(&[k, n], 2, &dev));
        assert_eq!(y.shape(), &[m, n]);
    }
    let tuned = tuned_matmul_configs(ctx);
    assert!(!tuned.is_empty());
    assert!(tuned.iter().all(|(_, name)| *name != victim), "{tuned:?}");
}
