//! Checks and measures data-parallel training over MPI (`wgrad::distributed`); needs the
//! `mpi` feature.
//!
//! ```sh
//! cargo build --release --features mpi --example data_parallel
//! ex=target/release/examples/data_parallel
//! # Equivalence: 2 ranks with batch 16 each against 1 process with batch 32.
//! mpirun -np 2 $ex train --model mlp --batch 16 --out two.safetensors
//! $ex train --model mlp --batch 32 --out one.safetensors
//! $ex compare two.safetensors one.safetensors
//! # Benchmark: all-reduce bandwidth and training-step time, one thread per rank.
//! RAYON_NUM_THREADS=1 $ex bench --model cnn --batch 64
//! mpirun -np 2 -x RAYON_NUM_THREADS=1 $ex bench --model cnn --batch 64
//! ```
//!
//! `train` trains the MLP, the Keras CNN (without batch norm or augmentation) or a small
//! CNN with batch norm (`bncnn`: `SyncBatchNorm` on several ranks, `BatchNorm2d` in one
//! process, so the batch statistics are those of the whole global batch either way;
//! `--local-norm` keeps `BatchNorm2d` on the ranks, per-rank statistics) with SGD
//! for `--steps` steps on the first `steps · batch · ranks` training images of the
//! built-in MNIST, in order (`--shuffle SEED` to shuffle), each rank on its
//! `DistributedSampler` share, through `Trainer::fit` with `DistributedDataParallel`, and
//! rank 0 saves the parameters. Since rank `r` of `R` takes every `R`-th sample of the
//! order, the `R` ranks' batch `k` together are batch `k` of one process with an `R` times
//! larger batch, so the two runs should end at the same parameters up to float32
//! rounding. `compare` checks that (exit status 1 if not), printing each tensor's largest
//! difference; `--expect-differ` inverts it, to show that a run that is not equivalent
//! fails the check.
//!
//! `bench` times, on every rank, the blocking all-reduce of gradient-sized buffers (the
//! MLP's and the CNN's gradients, 4 MiB and a 25 MiB bucket) and the training step of the
//! model at `--batch` per rank; rank 0 prints them.

mod common;

use std::time::Instant;

use common::{models, usage_or, Args};
use wgrad::data::{DataLoader, Dataset, DistributedSampler, InMemoryDataset, Mnist, Pixels};
use wgrad::distributed::{DdpOptions, DistributedDataParallel, SyncBatchNorm, World};
use wgrad::nn::{self, BatchNorm2d, Conv2d, Forward, Linear, MaxPool2d, Module};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::train::Trainer;
use wgrad::{loss, DType, Device};

const USAGE: &str = "usage: data_parallel train --model mlp|cnn|bncnn [--device cpu|software|gpu|auto] [--batch N] \
                     [--steps N] [--seed N] [--shuffle SEED] [--lr RATE] [--momentum M] [--accumulate N] [--fault KIND] [--local-norm] [--out PATH]\n       \
                     data_parallel compare A.safetensors B.safetensors [--tolerance T] [--expect-differ]\n       \
                     data_parallel bench --model mlp|cnn [--device ...] [--batch N] [--steps N]";

fn main() {
    env_logger::init();
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() || argv[0] == "-h" || argv[0] == "--help" {
        println!("{USAGE}");
        return;
    }
    let command = argv.remove(0);
    match command.as_str() {
        "train" | "bench" => {
            let args = parse(
                argv,
                &[
                    "model",
                    "device",
                    "batch",
                    "steps",
                    "seed",
                    "shuffle",
                    "lr",
                    "out",
                    "accumulate",
                    "momentum",
                    "fault",
                ],
                &["local-norm"],
            );
            let model = usage_or(model_name(&args), USAGE);
            let device = usage_or(args.device(), USAGE);
            let batch = usage_or(args.count("batch", 16), USAGE);
            let steps = usage_or(args.count("steps", if command == "train" { 250 } else { 30 }), USAGE);
            let seed = usage_or(args.seed("seed", 0), USAGE);
            let lr = usage_or(args.learning_rate("lr", 0.05), USAGE);
            let out = usage_or(args.output_file("out"), USAGE);
            let accumulate = usage_or(args.count("accumulate", 1), USAGE);
            let momentum = usage_or(momentum(&args), USAGE);
            let fault = usage_or(fault(&args), USAGE);
            let shuffle = usage_or(args.get("shuffle").map(|_| args.seed("shuffle", 0)).transpose(), USAGE);
            let world = World::init().unwrap_or_else(|e| common::fail(&e.to_string()));
            let dev = open_device(&world, device);
            if command == "train" {
                let local_norm = args.has("local-norm");
                let run = TrainRun { model, batch, steps, seed, shuffle, lr, momentum, accumulate, fault, local_norm };
                train(&world, &dev, &run, out.as_deref());
            } else {
                bench(&world, &dev, model, batch, steps);
            }
        }
        "compare" => {
            let files: Vec<String> = argv.iter().take_while(|a| !a.starts_with("--")).cloned().collect();
            let args = parse(argv[files.len()..].to_vec(), &["tolerance"], &["expect-differ"]);
            if files.len() != 2 {
                usage_or::<()>(Err("compare takes two safetensors files".into()), USAGE);
            }
            let tolerance = usage_or(args.learning_rate("tolerance", 2e-4), USAGE);
            compare(&files[0], &files[1], tolerance, args.has("expect-differ"));
        }
        other => usage_or::<()>(Err(format!("unknown command '{other}' (train, compare or bench)")), USAGE),
    }
}

fn parse(argv: Vec<String>, with_value: &[&str], switches: &[&str]) -> Args {
    match usage_or(Args::from_iter(argv, with_value, switches), USAGE) {
        Some(args) => args,
        None => {
            println!("{USAGE}");
            std::process::exit(0);
        }
    }
}

/// `--momentum M`: SGD's momentum, from 0 up to (not including) 1; 0.9 by default.
fn momentum(args: &Args) -> Result<f32, String> {
    match args.get("momentum") {
        None => Ok(0.9),
        Some(v) => match v.trim().parse::<f32>() {
            Ok(m) if (0.0..1.0).contains(&m) => Ok(m),
            _ => Err(format!("--momentum must be a number from 0 up to 1, not '{v}'")),
        },
    }
}

/// `--fault KIND`: rank 1 builds its model from another seed (`differing-init`) or
/// builds the other model (`differing-model`), or gets one batch fewer
/// (`uneven-batches`), or the run trains two epochs with a checkpoint folder rank 0
/// cannot create (`unwritable-checkpoint`); each run must end with an error on every
/// rank, not hang.
fn fault(args: &Args) -> Result<Option<&'static str>, String> {
    const KINDS: [&str; 4] = ["differing-init", "differing-model", "uneven-batches", "unwritable-checkpoint"];
    match args.get("fault") {
        None => Ok(None),
        Some(v) => KINDS
            .into_iter()
            .find(|k| *k == v)
            .map(Some)
            .ok_or_else(|| format!("--fault must be one of {}, not '{v}'", KINDS.join(", "))),
    }
}

/// The checkpoint folder of `--fault unwritable-checkpoint`: under a file, so creating it
/// fails.
const UNWRITABLE_CHECKPOINT: &str = "/dev/null/wgrad-checkpoint";

fn model_name(args: &Args) -> Result<&'static str, String> {
    match args.get("model") {
        Some("mlp") => Ok("mlp"),
        Some("cnn") => Ok("cnn"),
        Some("bncnn") => Ok("bncnn"),
        Some(other) => Err(format!("--model must be mlp, cnn or bncnn, not '{other}'")),
        None => Err("--model mlp|cnn|bncnn is required".into()),
    }
}

/// The device `--device` names; with several hardware GPUs, adapter `local rank mod count`.
fn open_device(world: &World, name: &str) -> Device {
    let opened = match name {
        "gpu" => Device::gpu_for_rank(world.local_rank()),
        _ => Device::by_name(name),
    };
    opened.unwrap_or_else(|e| common::fail(&format!("cannot open the '{name}' device: {e}")))
}

/// The model `name` on `dev`, its weights drawn from `seed`'s stream; `sync` makes the
/// batch-norm layers `SyncBatchNorm`.
fn build(name: &str, seed: u64, dev: &Device, sync: bool) -> Box<dyn Forward> {
    wgrad::manual_seed(seed);
    match name {
        "mlp" => Box::new(models::mlp(dev)),
        "cnn" => Box::new(models::keras_cnn(dev)),
        _ => Box::new(bn_cnn(dev, sync)),
    }
}

/// Conv(8, 3x3), batch norm, ReLU, MaxPool(2), Conv(16, 3x3), batch norm, ReLU,
/// MaxPool(2), Flatten, Dense(10), on `[N, 1, 28, 28]`. The batch-norm layers are
/// `SyncBatchNorm` with `sync` and `BatchNorm2d` without; both have the same parameter
/// and buffer names, so the checkpoints compare.
fn bn_cnn(dev: &Device, sync: bool) -> nn::Sequential {
    let norm = |c: usize| -> Box<dyn Forward> {
        let bn = BatchNorm2d::new(c, dev);
        if sync {
            Box::new(SyncBatchNorm::from(bn))
        } else {
            Box::new(bn)
        }
    };
    nn::Sequential::new()
        .add(Conv2d::new(1, 8, 3, dev))
        .add(norm(8))
        .add(nn::ReLU)
        .add(MaxPool2d::new(2))
        .add(Conv2d::new(8, 16, 3, dev))
        .add(norm(16))
        .add(nn::ReLU)
        .add(MaxPool2d::new(2))
        .add(nn::Flatten::new())
        .add(Linear::new(16 * 5 * 5, 10, dev))
}

/// The first `n` training images of the built-in MNIST (standardised).
fn first_images(n: usize) -> InMemoryDataset {
    let mnist = Mnist::builtin_with(Pixels::mnist_standardized())
        .unwrap_or_else(|e| common::fail(&format!("cannot load MNIST: {e}")));
    let n = n.min(mnist.train.len());
    let (features, shape, labels) = mnist.train.into_parts();
    let per: usize = shape.iter().product();
    InMemoryDataset::new(features[..n * per].to_vec(), &shape, labels[..n].to_vec())
}

struct TrainRun {
    model: &'static str,
    batch: usize,
    steps: usize,
    seed: u64,
    shuffle: Option<u64>,
    lr: f32,
    momentum: f32,
    /// Batches whose gradients are summed into each step.
    accumulate: usize,
    /// A mistake rank 1 makes, to show the error it gets.
    fault: Option<&'static str>,
    /// `BatchNorm2d` (per-rank statistics) instead of `SyncBatchNorm` on several ranks.
    local_norm: bool,
}

/// `run.steps` SGD steps of batch `run.batch` per rank through `Trainer::fit`; rank 0
/// saves the parameters to `out`.
fn train(world: &World, dev: &Device, run: &TrainRun, out: Option<&std::path::Path>) {
    let faulty = world.rank() == 1;
    let mut images = run.steps * run.accumulate * run.batch * world.size();
    if faulty && run.fault == Some("uneven-batches") {
        images -= run.batch * world.size();
    }
    let data = first_images(images);
    let sync = world.size() > 1 && !run.local_norm;
    let mut model = match (faulty, run.fault) {
        (true, Some("differing-init")) => build(run.model, run.seed + 1, dev, sync),
        (true, Some("differing-model")) => build(if run.model == "mlp" { "cnn" } else { "mlp" }, run.seed, dev, sync),
        _ => build(run.model, run.seed, dev, sync),
    };
    let mut loader = DataLoader::new(&data, run.batch).drop_last(true);
    if let Some(seed) = run.shuffle {
        loader = loader.shuffle(seed);
    }
    let loader = loader.sampler(DistributedSampler::new(world.size(), world.rank()));
    let mut trainer = Trainer::new(Sgd::new(model.parameters(), run.lr).momentum(run.momentum), loss::cross_entropy)
        .metric(wgrad::metrics::Accuracy::new())
        .accumulate(run.accumulate)
        .quiet(true);
    if world.size() > 1 {
        let ddp = DistributedDataParallel::new(&*model, world).unwrap_or_else(|e| common::fail(&e.to_string()));
        trainer = trainer.data_parallel(ddp);
    }
    // Rank 0 fails to write after the first epoch; the others must not wait for it in
    // the second.
    let epochs = if run.fault == Some("unwritable-checkpoint") {
        trainer = trainer.checkpoint_dir(UNWRITABLE_CHECKPOINT);
        2
    } else {
        1
    };
    let started = Instant::now();
    let history = trainer
        .fit(&mut *model, &loader, None, epochs, dev)
        .unwrap_or_else(|e| common::fail(&format!("training failed: {e}")));
    let secs = started.elapsed().as_secs_f64();
    // Every rank logs the same (averaged) loss and accuracy.
    println!(
        "rank {} of {}: {} {} steps of batch {} on {}: loss {:.6}, accuracy {:.4} ({secs:.1} s)",
        world.rank(),
        world.size(),
        run.model,
        loader.num_batches(),
        run.batch,
        dev.info(),
        history.last("loss").unwrap_or(f64::NAN),
        history.last("accuracy").unwrap_or(f64::NAN)
    );
    if let (0, Some(path)) = (world.rank(), out) {
        wgrad::checkpoint::save(&*model, path).unwrap_or_else(|e| common::fail(&format!("cannot save: {e}")));
    }
}

/// Compares every tensor of two checkpoints: the largest difference relative to the
/// tensor's largest value must be within `tolerance` (or, with `expect_differ`, must not).
fn compare(a: &str, b: &str, tolerance: f32, expect_differ: bool) {
    let load = |path: &str| {
        wgrad::checkpoint::load_state_dict(path).unwrap_or_else(|e| common::fail(&format!("cannot read {path}: {e}")))
    };
    let (sa, sb) = (load(a), load(b));
    let mut worst = 0.0f32;
    for (name, ta) in sa.iter() {
        let tb = sb.get(name).unwrap_or_else(|| common::fail(&format!("{b} has no tensor {name}")));
        if ta.dtype() == DType::I32 {
            // Counters (`num_batches_tracked`) must agree exactly.
            let (ca, cb) = (ta.to_vec::<i32>(), tb.to_vec::<i32>());
            println!("{name:>10}: {ca:?} and {cb:?}");
            if ca != cb {
                worst = f32::INFINITY;
            }
            continue;
        }
        let (va, vb) = (ta.to_vec::<f32>(), tb.to_vec::<f32>());
        assert_eq!(va.len(), vb.len(), "compare: {name} has {} values in {a}, {} in {b}", va.len(), vb.len());
        let scale = vb.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-6);
        let diff = va.iter().zip(&vb).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        let relative = diff / scale;
        worst = worst.max(relative);
        println!("{name:>10}: max |a - b| {diff:.3e}, max |b| {scale:.3e}, relative {relative:.3e}");
    }
    let same = worst <= tolerance;
    println!(
        "largest relative difference {worst:.3e}, tolerance {tolerance:.1e}: {}",
        if same { "same parameters" } else { "different parameters" }
    );
    if same == expect_differ {
        common::fail(if expect_differ {
            "the runs were expected to differ beyond the tolerance, and did not"
        } else {
            "the data-parallel run does not match the single-process run"
        });
    }
}

/// Median milliseconds of `runs` calls of `f` after `warmup` untimed ones, with every
/// rank starting each call together.
fn time_ms(world: &World, warmup: usize, runs: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            world.barrier();
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    common::median(&times)
}

/// All-reduce bandwidth for gradient-sized buffers, then the training-step time of
/// `model` at batch `batch` per rank.
fn bench(world: &World, dev: &Device, model_name: &str, batch: usize, steps: usize) {
    let root = world.rank() == 0;
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    if root {
        println!("{} rank(s), {threads} thread(s) per rank, {}; {}", world.size(), dev.info(), world.library_version());
    }
    let mlp_bytes = 4 * models::mlp(&Device::cpu()).num_parameters();
    let cnn_bytes = 4 * models::keras_cnn(&Device::cpu()).num_parameters();
    if world.size() > 1 {
        if root {
            println!("all-reduce (sum, f32, blocking MPI_Allreduce), median of 20:");
        }
        for (what, bytes) in [
            ("MLP gradients", mlp_bytes),
            ("CNN gradients", cnn_bytes),
            ("4 MiB", 4 << 20),
            ("25 MiB bucket", 25 << 20),
        ] {
            let send = vec![1.0f32; bytes / 4];
            let mut recv = vec![0.0f32; bytes / 4];
            let ms = time_ms(world, 3, 20, || world.all_reduce_sum(&send, &mut recv));
            let n = world.size() as f64;
            // Bus bandwidth as NCCL's tests define it: what each rank's link carries.
            let algbw = bytes as f64 / (ms * 1e-3) / 1e9;
            if root {
                println!(
                    "  {what:>14}: {:>9} bytes in {ms:8.3} ms: {algbw:6.2} GB/s algorithm, {:6.2} GB/s bus",
                    bytes,
                    algbw * 2.0 * (n - 1.0) / n
                );
            }
        }
    }
    let model = build(model_name, 0, dev, world.size() > 1);
    let data = first_images(batch * world.size());
    let (images, labels) = DataLoader::new(&data, batch)
        .sampler(DistributedSampler::new(world.size(), world.rank()))
        .epoch(dev)
        .next()
        .expect("one batch");
    // One bucket (the default 25 MiB holds either model), then 64 KiB buckets started as
    // backward finishes them, then the same buckets reduced after backward.
    let configs = [
        ("25 MiB buckets", DdpOptions::new()),
        ("64 KiB buckets, overlapped", DdpOptions::new().bucket_bytes(64 << 10)),
        ("64 KiB buckets, after backward", DdpOptions::new().bucket_bytes(64 << 10).overlap(false)),
    ];
    for (what, options) in configs {
        if world.size() == 1 && what != "25 MiB buckets" {
            continue;
        }
        let mut ddp = DistributedDataParallel::with_options(&*model, world, options)
            .unwrap_or_else(|e| common::fail(&e.to_string()));
        let mut opt = Sgd::new(model.parameters(), 0.01);
        let ms = time_ms(world, 3, steps, || {
            let grads = ddp.backward(&loss::cross_entropy(&model.forward(&images), &labels));
            opt.step(&grads);
            dev.synchronize();
        });
        if root {
            println!(
                "{model_name} training step, batch {batch} per rank ({} per step), {what} ({}): {ms:.2} ms median of \
                 {steps}, {:.0} samples/s in all; {} gradient bytes all-reduced per step",
                batch * world.size(),
                ddp.bucket_sizes().len(),
                (batch * world.size()) as f64 / (ms * 1e-3),
                ddp.gradient_bytes(),
            );
        }
    }
}
