//! The profiler (`wgrad::profile`) and the device counters (`Device::stats`) on the GPU
//! device: exact counts for known sequences of ops, and tables that hold exactly the
//! kernels that ran, with their call counts, under both clocks.
//!
//! Counters and profile tables are per device and per process, so the tests of this file
//! take turns (`serial`), and each works with differences or resets under its turn.

mod common;

use std::sync::{Mutex, MutexGuard};

use wgrad::gpu::context::MAX_DISPATCHES_PER_BATCH;
use wgrad::op::{BinaryOp, Op, UnaryOp};
use wgrad::profile::{self, Clock, DeviceProfile};
use wgrad::{Device, DeviceStats, Tensor};

static SERIAL: Mutex<()> = Mutex::new(());

/// The GPU device with poisoning off (its fills are dispatches too, and would blur the
/// counts), held for the caller alone until the guard drops.
struct Turn {
    dev: Device,
    _guard: MutexGuard<'static, ()>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        profile::disable();
        self.dev.set_poison(true);
    }
}

fn turn(test: &str) -> Option<Turn> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dev = common::gpu(test)?;
    dev.set_poison(false);
    dev.synchronize();
    Some(Turn { dev, _guard: guard })
}

/// The profile's name for `op`'s kernel on contiguous operands, as every tensor here is:
/// elementwise ops then run the `elementwise_contiguous` build of their file.
fn kernel_name(op: Op) -> String {
    let k = op.kernel();
    let file = if k.file == "elementwise" { "elementwise_contiguous" } else { k.file };
    format!("{file}::{}", k.entry)
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    common::uniform_values(n, -2.0, 2.0, seed)
}

/// This device's table under `clock`, which must exist.
fn table(dev: &Device, clock: Clock) -> DeviceProfile {
    let line = dev.gpu_context().unwrap().adapter.line();
    let report = profile::report();
    report
        .devices
        .iter()
        .find(|d| d.device == line && d.clock == clock)
        .cloned()
        .unwrap_or_else(|| panic!("no {clock:?} table for {line} in:\n{report}"))
}

#[test]
fn counters_count_a_known_sequence_exactly() {
    let Some(t) = turn("counters_count_a_known_sequence_exactly") else { return };
    let dev = &t.dev;
    assert_eq!(Device::cpu().stats(), None);

    // 300 elements: two workgroups of 256, the second partial.
    let n = 300;
    let before = dev.stats().unwrap();
    let a = Tensor::from_slice(&values(n, 1), &[n], dev);
    let b = Tensor::from_slice(&values(n, 2), &[n], dev);
    let c = a.add(&b).relu();
    let d = Tensor::from_slice(&values(6, 3), &[2, 3], dev).t().contiguous();
    let recorded = dev.stats().unwrap() - before;
    // Nothing has been submitted yet: the work waits in the batch.
    assert_eq!(
        recorded,
        DeviceStats {
            dispatches: 3,
            copies: 3,
            uploads: 3,
            upload_bytes: 4 * (2 * n as u64 + 6),
            ..Default::default()
        }
    );

    let got = c.to_vec::<f32>();
    let after = dev.stats().unwrap() - before;
    assert_eq!(after.read_backs, 1);
    assert_eq!(after.read_back_bytes, 4 * n as u64);
    assert_eq!(after.copies, 4, "three uploads and the read-back's copy");
    assert_eq!(after.submits, 1, "one batch, submitted by the read-back");
    assert_eq!(after.dispatches, 3);
    let want: Vec<f32> = values(n, 1).iter().zip(values(n, 2)).map(|(x, y)| (x + y).max(0.0)).collect();
    assert_eq!(got, want);
    assert_eq!(d.to_vec::<f32>().len(), 6);

    dev.reset_stats();
    assert_eq!(dev.stats().unwrap(), DeviceStats::default());
}

#[test]
fn a_long_chain_is_submitted_in_full_batches() {
    let Some(t) = turn("a_long_chain_is_submitted_in_full_batches") else { return };
    let dev = &t.dev;
    let mut x = Tensor::from_slice(&values(7, 4), &[7], dev);
    dev.synchronize();
    let before = dev.stats().unwrap();
    let ops = MAX_DISPATCHES_PER_BATCH + 44;
    for _ in 0..ops {
        x = x.affine(1.0, 0.5);
    }
    let _ = x.to_vec::<f32>();
    let s = dev.stats().unwrap() - before;
    assert_eq!(s.dispatches, ops as u64);
    assert_eq!(s.submits, 2, "a full batch, then the rest with the read-back");
}

#[test]
fn profile_table_holds_the_kernels_that_ran_with_their_call_counts() {
    let Some(t) = turn("profile_table_holds_the_kernels_that_ran_with_their_call_counts") else { return };
    let dev = &t.dev;
    let clock = dev.gpu_context().unwrap().profile_clock();
    assert_eq!(clock, None, "profiling is off unless asked for");

    let a = Tensor::from_slice(&values(45 * 65, 5), &[45, 65], dev);
    let b = Tensor::from_slice(&values(65 * 13, 6), &[65, 13], dev);
    dev.synchronize();
    profile::enable();
    profile::reset();
    let before = dev.stats().unwrap();
    let y = a.matmul(&b).relu();
    let z = y.add(&y).relu().sigmoid();
    let _ = z.to_vec::<f32>();
    let dispatched = (dev.stats().unwrap() - before).dispatches;

    let expected_clock = if dev.gpu_context().unwrap().features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        Clock::Timestamps
    } else {
        Clock::Host
    };
    assert_eq!(dev.gpu_context().unwrap().profile_clock(), Some(expected_clock));
    let table = table(dev, expected_clock);
    assert_eq!(table.calls(), dispatched, "every dispatch is timed once:\n{table}");
    let relu = kernel_name(Op::Unary(UnaryOp::Relu));
    let add = kernel_name(Op::Binary(BinaryOp::Add));
    let sigmoid = kernel_name(Op::Unary(UnaryOp::Sigmoid));
    assert_eq!(table.kernel(&relu).map(|k| k.calls), Some(2), "{table}");
    assert_eq!(table.kernel(&add).map(|k| k.calls), Some(1), "{table}");
    assert_eq!(table.kernel(&sigmoid).map(|k| k.calls), Some(1), "{table}");
    // Whatever kernels the matmul took, they are all that is left.
    let others: u64 =
        table.kernels.iter().filter(|k| ![&relu, &add, &sigmoid].contains(&&k.name())).map(|k| k.calls).sum();
    assert_eq!(others, dispatched - 4, "{table}");
    assert!(others >= 1, "the matmul ran no kernel:\n{table}");
    assert!(!table.total().is_zero(), "no time measured:\n{table}");
    assert!(table.kernels.windows(2).all(|w| w[0].total >= w[1].total), "not sorted by total time:\n{table}");

    let text = table.to_string();
    for header in ["kernel", "calls", "total ms", "mean µs", "share %"] {
        assert!(text.contains(header), "{header} missing:\n{text}");
    }
    assert!(text.contains(&dev.gpu_context().unwrap().adapter.line()), "{text}");
    assert!(text.lines().any(|l| l.starts_with(&relu) && l.split_whitespace().nth(1) == Some("2")), "{text}");

    // Reset forgets; nothing is timed once profiling is off.
    profile::reset();
    profile::disable();
    let _ = y.relu().to_vec::<f32>();
    let line = dev.gpu_context().unwrap().adapter.line();
    assert!(profile::report().devices.iter().all(|d| d.device != line), "{}", profile::report());
}

#[test]
fn timestamps_survive_many_batches() {
    let Some(t) = turn("timestamps_survive_many_batches") else { return };
    let dev = &t.dev;
    if !dev.gpu_context().unwrap().features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        eprintln!(
            "timestamps_survive_many_batches: the adapter has no timestamp queries; the host clock is tested below"
        );
        return;
    }
    let mut x = Tensor::from_slice(&values(300, 7), &[300], dev);
    profile::enable();
    profile::reset();
    // Three full batches and a partial one: the query set is reused for each.
    let ops = 3 * MAX_DISPATCHES_PER_BATCH + 17;
    for i in 0..ops {
        x = if i % 2 == 0 { x.neg() } else { x.abs() };
    }
    // No read-back: the report itself must submit the partial batch and wait for it.
    let table = table(dev, Clock::Timestamps);
    assert_eq!(table.kernel(&kernel_name(Op::Unary(UnaryOp::Neg))).map(|k| k.calls), Some(ops.div_ceil(2) as u64));
    assert_eq!(table.kernel(&kernel_name(Op::Unary(UnaryOp::Abs))).map(|k| k.calls), Some((ops / 2) as u64));
    assert_eq!(table.calls(), ops as u64, "{table}");
    assert!(table.timestamp_period_ns.is_some_and(|p| p > 0.0));
    drop(x);
}

#[test]
fn host_clock_times_every_dispatch_on_its_own() {
    let Some(t) = turn("host_clock_times_every_dispatch_on_its_own") else { return };
    let dev = &t.dev;
    let a = Tensor::from_slice(&values(513, 8), &[513], dev);
    dev.synchronize();
    profile::enable_with(Clock::Host);
    profile::reset();
    let before = dev.stats().unwrap();
    let y = a.exp().mul(&a).tanh();
    let s = dev.stats().unwrap() - before;
    assert_eq!(s.dispatches, 3);
    assert_eq!(s.submits, 3, "each dispatch is submitted on its own");

    let table = table(dev, Clock::Host);
    assert_eq!(table.calls(), 3, "{table}");
    for op in [Op::Unary(UnaryOp::Exp), Op::Binary(BinaryOp::Mul), Op::Unary(UnaryOp::Tanh)] {
        let k = table.kernel(&kernel_name(op)).unwrap_or_else(|| panic!("{} missing:\n{table}", op.name()));
        assert_eq!(k.calls, 1);
        assert!(!k.total.is_zero(), "a waited-for dispatch took no time:\n{table}");
    }
    assert!(table.timestamp_period_ns.is_none());
    assert!(table.to_string().contains("host clock"), "{table}");
    let got = y.to_vec::<f32>();
    let want: Vec<f32> = values(513, 8).iter().map(|&x| (x.exp() * x).tanh()).collect();
    wgrad::testing::compare(&got, &want, common::within(1e-5, 1e-5)).unwrap();
}
