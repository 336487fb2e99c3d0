//! Criterion benchmarks of the workloads `examples/bench.rs` measures (matmul, conv2d,
//! LSTM, whole training steps, elementwise add), from the same definitions in
//! `examples/common/workloads.rs`.
//!
//! ```sh
//! cargo bench --bench workloads                 # every workload, CPU then hardware GPU
//! cargo bench --bench workloads -- 'cpu/step'   # criterion's filter: a subset
//! ```
//!
//! Every workload runs on the CPU backend, and again on the GPU when `Device::gpu()` opens
//! a hardware adapter; software adapters (lavapipe, WARP) are skipped, since they run well
//! under 1 GFLOP/s and the CPU backend is the faster device there. Samples are few and
//! short (10 flat samples, 2 s each workload) so a whole run takes a few minutes on two
//! cores; criterion's `--sample-size` and `--measurement-time` raise them. Each iteration
//! ends with `Device::synchronize()`, so GPU figures include the kernels, not only their
//! recording. Throughput is reported as elements per second where an element is a flop
//! (matmul, conv, LSTM) or an image (training step), and in bytes per second for the add.

#[path = "../examples/common/models.rs"]
mod models;
#[path = "../examples/common/workloads.rs"]
mod workloads;

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use wgrad::Device;
use workloads::{Spec, Work, Workload, FAMILIES};

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_device(&mut c, "cpu", &Device::cpu());
    match Device::gpu() {
        Ok(dev) if dev.gpu_context().is_some_and(|ctx| !ctx.adapter.is_software()) => bench_device(&mut c, "gpu", &dev),
        Ok(dev) => eprintln!("skipping the GPU benchmarks: {} is a software adapter", dev.info()),
        Err(e) => eprintln!("skipping the GPU benchmarks: no hardware adapter ({e})"),
    }
    c.final_summary();
}

/// One criterion group per workload family on `dev`, named `{device}/{family}`.
fn bench_device(c: &mut Criterion, device: &str, dev: &Device) {
    for family in FAMILIES {
        let mut group = c.benchmark_group(format!("{device}/{}", family.name()));
        // Flat sampling runs the same iteration count in each sample; criterion's linear
        // default needs 55 iterations at 10 samples, too many for a training step.
        group.sampling_mode(SamplingMode::Flat);
        for spec in Spec::defaults(&[family], false) {
            let mut workload = Workload::new(spec, dev);
            group.throughput(match spec.work() {
                Work::Bytes(_) => Throughput::Bytes(spec.work().amount()),
                work => Throughput::Elements(work.amount()),
            });
            group.bench_function(BenchmarkId::new(spec.name(), spec.size()), |b| {
                b.iter(|| {
                    let out = workload.run();
                    dev.synchronize();
                    out
                })
            });
        }
        group.finish();
    }
}
