//! What `wgrad::train::Trainer::fit` costs over the loop it replaces: one epoch of the
//! Keras MNIST CNN (10 batches of 64 synthetic images, Adam) through `fit`, and the same
//! steps written out (forward, cross-entropy, backward, optimizer step, the loss summed on
//! the device and read at the end, as `fit` does with its defaults).
//!
//! ```sh
//! cargo bench --bench trainer
//! ```
//!
//! On the CPU backend, and on a hardware GPU when one opens (software adapters are
//! skipped, as in `workloads.rs`).

// Only the CNN of the examples' models is used here.
#[allow(dead_code)]
#[path = "../examples/common/models.rs"]
mod models;

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput};
use wgrad::data::{DataLoader, InMemoryDataset};
use wgrad::nn::{Forward, Module};
use wgrad::optim::{Adam, Optimizer};
use wgrad::train::Trainer;
use wgrad::{loss, Device, Tensor};

const IMAGES: usize = 640;
const BATCH: usize = 64;

fn data() -> InMemoryDataset {
    let pixels: Vec<f32> = (0..IMAGES * 784).map(|i| ((i * 7919 % 1013) as f32 / 1013.0) - 0.5).collect();
    let labels: Vec<i32> = (0..IMAGES).map(|i| (i * 37 % 10) as i32).collect();
    InMemoryDataset::new(pixels, &[1, 28, 28], labels)
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench_device(&mut c, "cpu", &Device::cpu());
    match Device::gpu() {
        Ok(dev) if dev.gpu_context().is_some_and(|ctx| !ctx.adapter.is_software()) => bench_device(&mut c, "gpu", &dev),
        Ok(dev) => eprintln!("skipping the GPU benchmarks: {} is a software adapter", dev.info()),
        Err(e) => eprintln!("skipping the GPU benchmarks: no hardware adapter ({e})"),
    }
    c.final_summary();
}

fn bench_device(c: &mut Criterion, device: &str, dev: &Device) {
    let data = data();
    let loader = DataLoader::new(&data, BATCH).shuffle(0);
    let mut group = c.benchmark_group(format!("{device}/trainer"));
    group.sampling_mode(SamplingMode::Flat);
    group.throughput(Throughput::Elements(IMAGES as u64));

    let mut model = models::keras_cnn(dev);
    let mut trainer = Trainer::new(Adam::new(model.parameters(), 1e-3), loss::cross_entropy).quiet(true);
    group.bench_function("cnn epoch through fit", |b| {
        b.iter(|| {
            trainer.fit(&mut model, &loader, None, 1, dev).expect("the loader has batches");
            dev.synchronize();
        })
    });

    let mut model = models::keras_cnn(dev);
    let mut opt = Adam::new(model.parameters(), 1e-3);
    let mut epoch = 0;
    group.bench_function("cnn epoch written out", |b| {
        b.iter(|| {
            model.set_training(true);
            let mut sum: Option<Tensor> = None;
            for (images, labels) in loader.batches(epoch, dev) {
                let loss = loss::cross_entropy(&model.forward(&images), &labels);
                let weighted = loss.detach().mul_scalar(labels.dim(0) as f32);
                sum = Some(match sum {
                    Some(s) => s.add(&weighted),
                    None => weighted,
                });
                opt.step(&loss.backward());
            }
            epoch += 1;
            std::hint::black_box(sum.expect("the loader has batches").item());
        })
    });
    group.finish();
}
