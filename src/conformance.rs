//! The conformance run: every op and every matmul tile configuration cross-checked against
//! the CPU reference on the user's own adapter and driver.
//!
//! The test suite cross-checks each kernel on the adapters CI has. A user's driver may
//! compile a kernel differently; [`run`] repeats the check where it matters, on their
//! device: each op of [`Op::all`] runs in [shadow mode](crate::shadow) on small shapes
//! chosen to break kernels (odd sizes, partial workgroups, strided views), so every GPU
//! result is compared with the CPU backend's on the same input bits, and so does each
//! [matmul configuration](crate::gpu::tuning::MATMUL_CONFIGS) of the tuner, forced in turn.
//! A configuration that fails is excluded from the tuner for that adapter for the rest of
//! the process ([`crate::gpu::tuning::exclude_matmul_config`]); [`Report::exclusions`]
//! gives the lines of a file that `WGRAD_EXCLUDE_CONFIGS` reads to exclude it in later
//! processes too.
//!
//! `cargo run --release --example conformance -- --device gpu` prints the table and writes
//! it as JSON.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use crate::gpu::tuning::{self, MATMUL_CONFIGS};
use crate::op::{
    AugmentOp, BatchNormOp, BinaryOp, ConvOp, CreationOp, EmbeddingOp, HalfOp, IndexOp, LayerNormOp, LossOp, Op,
    OptimOp, PoolOp, ReduceOp, RnnOp, SoftmaxOp, UnaryOp,
};
use crate::optim::{Adagrad, AdamW, Optimizer, RmsProp, Sgd};
use crate::shadow::{OnMismatch, ShadowOptions};
use crate::{
    with_conv_algorithm, AvgPool2dOptions, ConvAlgorithm, ConvOptions, DType, Device, MaxPool2dOptions, RnnMode,
    RnnWeights, Tensor,
};

/// What one line of the table checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// One op of [`Op::all`].
    Op(Op),
    /// One matmul tile configuration, by name.
    MatmulConfig(&'static str),
}

impl Subject {
    /// `op` or `matmul config`.
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::Op(_) => "op",
            Subject::MatmulConfig(_) => "matmul config",
        }
    }

    /// The op's name ([`Op::name`]) or the configuration's.
    pub fn name(&self) -> &'static str {
        match self {
            Subject::Op(op) => op.name(),
            Subject::MatmulConfig(name) => name,
        }
    }
}

/// One line of the table.
#[derive(Clone, Debug)]
pub struct Entry {
    /// What was checked.
    pub subject: Subject,
    /// Whether it agreed with the CPU everywhere (`failure` is `None`).
    pub passed: bool,
    /// How many GPU results were compared with the CPU's.
    pub compared: u64,
    /// How long the check took, in milliseconds.
    pub millis: f64,
    /// Why it failed: the first shadow report, a panic's message, or an op that was
    /// never compared.
    pub failure: Option<String>,
}

/// The result of [`run`].
#[derive(Clone, Debug)]
pub struct Report {
    /// The device line ([`Device::info`]).
    pub device: String,
    /// The adapter, driver and driver version, as the tuner keys its choices.
    pub adapter_key: String,
    /// The version of wgrad that ran the checks.
    pub wgrad_version: &'static str,
    /// One line per op, then one per matmul configuration.
    pub entries: Vec<Entry>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.entries.iter().all(|e| e.passed)
    }

    /// The names of the matmul configurations that failed.
    pub fn failed_matmul_configs(&self) -> Vec<&'static str> {
        self.entries
            .iter()
            .filter_map(|e| match e.subject {
                Subject::MatmulConfig(name) if !e.passed => Some(name),
                _ => None,
            })
            .collect()
    }

    /// Lines for a `WGRAD_EXCLUDE_CONFIGS` file that keep the failed configurations away
    /// from this adapter in later processes (see [`crate::gpu::tuning`]).
    pub fn exclusions(&self) -> String {
        self.failed_matmul_configs().iter().map(|name| format!("{name} @ {}\n", self.adapter_key)).collect()
    }

    /// The pass/fail table, headed by the device line.
    pub fn table(&self) -> String {
        let mut out = format!("wgrad {} conformance on {}\n", self.wgrad_version, self.device);
        let width = self.entries.iter().map(|e| e.subject.name().len()).max().unwrap_or(4).max(4);
        let _ = writeln!(out, "{:<14} {:<width$} {:>6} {:>9} {:>9}", "kind", "name", "result", "compared", "ms");
        for e in &self.entries {
            let _ = writeln!(
                out,
                "{:<14} {:<width$} {:>6} {:>9} {:>9.1}",
                e.subject.kind(),
                e.subject.name(),
                if e.passed { "pass" } else { "FAIL" },
                e.compared,
                e.millis
            );
        }
        let failed: Vec<&Entry> = self.entries.iter().filter(|e| !e.passed).collect();
        let _ = writeln!(out, "{} of {} passed", self.entries.len() - failed.len(), self.entries.len());
        for e in failed {
            let _ =
                writeln!(out, "\n{} {}:\n{}", e.subject.kind(), e.subject.name(), e.failure.as_deref().unwrap_or(""));
        }
        out
    }

    /// The report as a JSON object: `device`, `adapter_key`, `wgrad_version`, `passed`
    /// and `entries` (`kind`, `name`, `passed`, `compared`, `ms`, `failure`).
    pub fn to_json(&self) -> String {
        let entries: Vec<serde_json::Value> = self
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "kind": e.subject.kind(),
                    "name": e.subject.name(),
                    "passed": e.passed,
                    "compared": e.compared,
                    "ms": e.millis,
                    "failure": e.failure,
                })
            })
            .collect();
        let report = serde_json::json!({
            "device": self.device,
            "adapter_key": self.adapter_key,
            "wgrad_version": self.wgrad_version,
            "passed": self.passed(),
            "entries": entries,
        });
        let mut text = serde_json::to_string_pretty(&report).expect("a JSON value always serialises");
        text.push('\n');
        text
    }
}

/// Runs the conformance checks on `device` (see the module documentation). On the CPU
/// device, the reference itself, there is nothing to compare and the report is empty.
/// Shadow mode is on while it runs; afterwards it is on again with its previous options
/// (in a fresh state: registered names, counts and kept reports start anew) or off; a
/// failing matmul configuration is excluded from the tuner for this adapter.
pub fn run(device: &Device) -> Report {
    run_only(device, &Op::all(), true)
}

/// [`run`] for the ops `ops` only, and the matmul configurations if `matmul_configs`.
pub fn run_only(device: &Device, ops: &[Op], matmul_configs: bool) -> Report {
    let Some(ctx) = device.gpu_context() else {
        return Report {
            device: device.info(),
            adapter_key: "CPU".into(),
            wgrad_version: env!("CARGO_PKG_VERSION"),
            entries: Vec::new(),
        };
    };
    let previous = crate::shadow::options(ctx);
    let options = ShadowOptions { every: 1, on_mismatch: OnMismatch::Log, tolerance_scale: 1.0 };
    let mut entries = Vec::new();
    for &op in ops {
        entries.push(check(device, options, Subject::Op(op), Some(compared_as(op)), || exercise(op, device)));
    }
    if matmul_configs {
        for config in MATMUL_CONFIGS {
            let subject = Subject::MatmulConfig(config.name);
            let entry = check(device, options, subject, Some(Op::Matmul), || {
                tuning::with_matmul_config(config.name, || matmul_shapes(device))
            });
            if !entry.passed {
                tuning::exclude_matmul_config(ctx, config.name);
            }
            entries.push(entry);
        }
    }
    match previous {
        Some(options) => crate::shadow::enable(ctx, options),
        None => crate::shadow::disable(ctx),
    }
    Report {
        device: device.info(),
        adapter_key: tuning::adapter_key(ctx),
        wgrad_version: env!("CARGO_PKG_VERSION"),
        entries,
    }
}

/// Runs `work` in a fresh shadow state and makes its line: passed when nothing
/// disagreed, nothing panicked and `must_see` was compared at least once.
fn check(
    device: &Device,
    options: ShadowOptions,
    subject: Subject,
    must_see: Option<Op>,
    work: impl FnOnce(),
) -> Entry {
    let ctx = device.gpu_context().expect("a GPU device");
    crate::shadow::enable(ctx, options);
    let start = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        work();
        device.synchronize();
    }));
    let millis = start.elapsed().as_secs_f64() * 1e3;
    let reports = crate::shadow::reports(ctx);
    let seen: HashSet<Op> = crate::shadow::seen_ops(ctx);
    let compared = crate::shadow::checked_ops(ctx);
    let failure = match (outcome, reports.first()) {
        (Err(payload), _) => Some(format!("panicked: {}", panic_message(&*payload))),
        (Ok(()), Some(report)) => Some(report.to_string()),
        (Ok(()), None) => match must_see {
            Some(op) if !seen.contains(&op) => Some(format!("`{}` never ran on the GPU in this check", op.name())),
            _ => None,
        },
    };
    Entry { subject, passed: failure.is_none(), compared, millis, failure }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(no message)".into())
}

/// The op shadow mode compares when `op` runs: the embedding grouping runs its sort and
/// merge kernels as one storage call, which shadow mode checks as a whole.
fn compared_as(op: Op) -> Op {
    match op {
        Op::Embedding(
            EmbeddingOp::SortKeys
            | EmbeddingOp::SortBlock
            | EmbeddingOp::MergeGlobal
            | EmbeddingOp::MergeLocal
            | EmbeddingOp::RowStarts,
        ) => Op::Embedding(EmbeddingOp::SortKeys),
        op => op,
    }
}

// ---- the workloads ----

/// Inputs are drawn on the CPU and uploaded, so the creation kernels are checked only by
/// their own cases.
fn randn(shape: &[usize], seed: u64, d: &Device) -> Tensor {
    Tensor::randn(shape, seed, &Device::cpu()).to_device(d)
}

fn uniform(shape: &[usize], low: f32, high: f32, seed: u64, d: &Device) -> Tensor {
    Tensor::rand_uniform(shape, low, high, seed, &Device::cpu()).to_device(d)
}

/// Values in {0, 1, 2} as f32, scrambled by `seed`: ties for comparisons, masks for `where`.
fn small_integers(shape: &[usize], seed: u64, d: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n as u64).map(|i| ((i * 7 + seed * 13 + i * i) % 3) as f32).collect();
    Tensor::from_slice(&values, shape, d)
}

fn indices(values: &[i32], shape: &[usize], d: &Device) -> Tensor {
    Tensor::from_slice(values, shape, d)
}

/// Sets whether a GPU's LSTM layers run the whole-sequence kernels, and restores the
/// setting when dropped.
struct WholeSequenceLstm<'a> {
    ctx: &'a crate::gpu::GpuContext,
    previous: bool,
}

impl<'a> WholeSequenceLstm<'a> {
    fn set(ctx: &'a crate::gpu::GpuContext, on: bool) -> Self {
        let previous = ctx.whole_sequence_lstm();
        ctx.set_whole_sequence_lstm(on);
        WholeSequenceLstm { ctx, previous }
    }
}

impl Drop for WholeSequenceLstm<'_> {
    fn drop(&mut self) {
        self.ctx.set_whole_sequence_lstm(self.previous);
    }
}

/// Forces the GPU work of `t` to run and be read (a read-back also surfaces GPU errors).
fn done(t: Tensor) {
    let _ = t.to_device(&Device::cpu());
}

/// Runs `op` on `d` on shapes that break kernels: sizes that are odd, prime, not
/// multiples of a tile, spanning a partial workgroup, and strided views. An exhaustive
/// `match`: a new op does not compile until it has a case here.
fn exercise(op: Op, d: &Device) {
    match op {
        Op::Creation(c) => done(match c {
            CreationOp::Fill => Tensor::full(&[13, 45], -2.5, d),
            CreationOp::Arange => Tensor::arange(-3.3, 40.0, 0.37, d),
            CreationOp::Eye => Tensor::eye(7, 11, d),
            CreationOp::RandUniform => Tensor::rand_uniform(&[5, 7, 11], -2.0, 3.0, 9, d),
            CreationOp::RandNormal => Tensor::normal(&[45, 65], 1.0, 2.0, 10, d),
        }),
        Op::Unary(UnaryOp::Copy) => done(randn(&[11, 13], 5, d).t().contiguous()),
        Op::Unary(u) => {
            let positive =
                matches!(u, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip | UnaryOp::PowScalar);
            let (low, high) = if positive { (0.05, 4.0) } else { (-4.0, 4.0) };
            let (s0, s1) = match u {
                UnaryOp::Affine => (1.5, -0.25),
                UnaryOp::PowScalar => (1.7, 0.0),
                UnaryOp::Clamp => (-0.5, 0.75),
                UnaryOp::LeakyRelu => (0.01, 0.0),
                UnaryOp::Elu => (1.0, 0.0),
                _ => (0.0, 0.0),
            };
            // 385 elements through a transposed view: two workgroups, the second partial.
            done(uniform(&[5, 7, 11], low, high, 1, d).permute(&[2, 0, 1]).unary_op(u, s0, s1))
        }
        Op::Binary(b) => {
            let (a_low, a_high) = if b == BinaryOp::Pow { (0.1, 4.0) } else { (-4.0, 4.0) };
            let (b_low, b_high) = match b {
                BinaryOp::Div => (0.25, 4.0),
                BinaryOp::Pow => (-3.0, 3.0),
                _ => (-4.0, 4.0),
            };
            // Small integers as well for the comparisons, so that ties occur.
            let a = uniform(&[5, 7, 11], a_low, a_high, 2, d);
            let other = uniform(&[7, 1], b_low, b_high, 3, d);
            done(a.binary_op(&other, b));
            if matches!(b, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Le | BinaryOp::Ge) {
                done(small_integers(&[13, 9], 4, d).binary_op(&small_integers(&[13, 9], 5, d), b));
            }
        }
        Op::Where => {
            let cond = small_integers(&[5, 1, 11], 6, d);
            done(randn(&[7, 11], 7, d).where_cond(&cond, &randn(&[5, 7, 1], 8, d)))
        }
        Op::Reduce(r) => {
            // Rows of 300 (longer than a workgroup) along the middle axis.
            let x = randn(&[3, 300, 5], 4, d);
            done(match r {
                ReduceOp::Sum => x.sum(&[1], false),
                ReduceOp::Mean => x.mean(&[1], false),
                ReduceOp::Max => x.max(&[1], false),
                ReduceOp::Min => x.min(&[1], false),
                ReduceOp::Var => x.var(&[1], 1.0, false),
                ReduceOp::ArgMax => x.argmax(1, false),
                ReduceOp::ArgMin => x.argmin(1, false),
            })
        }
        Op::Matmul => matmul_shapes(d),
        Op::Softmax(s) => {
            let x = randn(&[13, 300], 13, d).affine(3.0, 0.0);
            done(match s {
                SoftmaxOp::Softmax => x.softmax(1),
                SoftmaxOp::LogSoftmax => x.log_softmax(1),
            })
        }
        Op::Index(i) => done(match i {
            IndexOp::IndexSelect => randn(&[5, 7, 11], 15, d).index_select(1, &indices(&[3, 0, 3, 6, 1], &[5], d)),
            IndexOp::Gather => {
                let idx: Vec<i32> = (0..5 * 9).map(|i| i * 7 % 11).collect();
                randn(&[5, 11], 16, d).gather(1, &indices(&idx, &[5, 9], d))
            }
            IndexOp::IndexAdd => {
                let src = randn(&[5, 6, 3], 17, d);
                Tensor::zeros(&[5, 7, 3], d).index_add(1, &indices(&[3, 0, 3, 6, 3, 1], &[6], d), &src)
            }
            IndexOp::ScatterAdd => {
                let idx: Vec<i32> = (0..5 * 9).map(|i| i * 7 % 4).collect();
                Tensor::ones(&[6, 4], d).scatter_add(1, &indices(&idx, &[5, 9], d), &randn(&[5, 9], 18, d))
            }
        }),
        Op::Optim(o) => {
            let param = randn(&[300], 20, d).detach().requires_grad();
            let mut opt: Box<dyn Optimizer> = match o {
                OptimOp::Sgd => {
                    Box::new(Sgd::new([param.clone()], 0.1).momentum(0.9).nesterov(true).weight_decay(0.01))
                }
                OptimOp::Adam => Box::new(AdamW::new([param.clone()], 0.01)),
                OptimOp::Adagrad => Box::new(
                    Adagrad::new([param.clone()], 0.1).lr_decay(0.01).weight_decay(0.1).initial_accumulator_value(0.1),
                ),
                OptimOp::RmsProp => {
                    Box::new(RmsProp::new([param.clone()], 0.01).momentum(0.9).centered(true).weight_decay(0.01))
                }
            };
            let directions = uniform(&[3, 300], -2.0, 2.0, 21, d);
            for step in 0..3 {
                let direction = directions.narrow(0, step, 1).reshape(&[300]);
                opt.step(&param.mul(&direction).sum_all().backward());
            }
            done(param.detach())
        }
        Op::Conv(c) => {
            let opts = ConvOptions::new().stride((2, 1)).padding((1, 2));
            let (x, w, b) = (randn(&[2, 3, 9, 7], 30, d), randn(&[5, 3, 3, 2], 31, d), randn(&[5], 32, d));
            match c {
                ConvOp::Im2col => done(with_conv_algorithm(ConvAlgorithm::Im2col, || x.conv2d(&w, None, &opts))),
                ConvOp::Conv2dDirect => {
                    done(with_conv_algorithm(ConvAlgorithm::Direct, || x.conv2d(&w, Some(&b), &opts)))
                }
                ConvOp::Col2im => {
                    let input = x.detach().requires_grad();
                    let grads = with_conv_algorithm(ConvAlgorithm::Im2col, || {
                        input.conv2d(&w, None, &opts).square().sum_all().backward()
                    });
                    done(grads.wrt(&input).clone())
                }
            }
        }
        Op::Pool(p) => {
            let max = MaxPool2dOptions::new(3).stride(2).padding(1).ceil_mode(true);
            let avg = AvgPool2dOptions::new((3, 2)).stride((2, 1)).padding(1).count_include_pad(false);
            let x = randn(&[2, 3, 9, 7], 60, d);
            let pool = |x: &Tensor| match p {
                PoolOp::MaxPool2d | PoolOp::MaxPool2dBackward => x.max_pool2d(&max),
                PoolOp::AvgPool2d | PoolOp::AvgPool2dBackward => x.avg_pool2d(&avg),
                PoolOp::AdaptiveAvgPool2d | PoolOp::AdaptiveAvgPool2dBackward => x.adaptive_avg_pool2d((4, 5)),
            };
            let backward =
                matches!(p, PoolOp::MaxPool2dBackward | PoolOp::AvgPool2dBackward | PoolOp::AdaptiveAvgPool2dBackward);
            if backward {
                let input = x.detach().requires_grad();
                let y = pool(&input);
                let gy = randn(y.shape(), 61, d);
                done(y.backward_with(&gy).wrt(&input).clone())
            } else {
                done(pool(&x))
            }
        }
        Op::BatchNorm(b) => {
            let x = randn(&[5, 3, 7, 11], 50, d).affine(1.5, 0.3);
            let (w, bias) = (uniform(&[3], 0.5, 1.5, 51, d), uniform(&[3], -1.0, 1.0, 52, d));
            match b {
                BatchNormOp::Stats => {
                    let (mean, var) = (Tensor::zeros(&[3], d), Tensor::ones(&[3], d));
                    done(x.batch_norm(Some(&mean), Some(&var), None, None, true, 0.3, 1e-5));
                    done(Tensor::cat(&[mean, var], 0))
                }
                BatchNormOp::Apply => {
                    let (mean, var) = (bias.affine(0.5, 0.0), w.add_scalar(0.25));
                    done(x.batch_norm(Some(&mean), Some(&var), Some(&w), Some(&bias), false, 0.1, 1e-5))
                }
                BatchNormOp::BackwardReduce | BatchNormOp::BackwardApply => {
                    let (inp, w, bias) = (x.requires_grad(), w.requires_grad(), bias.requires_grad());
                    let y = inp.batch_norm(None, None, Some(&w), Some(&bias), true, 0.1, 1e-5);
                    let g = y.mul(&randn(&[5, 3, 7, 11], 53, d)).sum_all().backward();
                    done(Tensor::cat(&[g.wrt(&inp).reshape(&[-1]), g.wrt(&w).clone(), g.wrt(&bias).clone()], 0))
                }
            }
        }
        Op::Augment(AugmentOp::CropFlip) => {
            let windows = indices(&[-2, 3, 0, 4, -1, 1], &[2, 3], d);
            done(randn(&[2, 3, 7, 9], 40, d).crop_flip(&windows, (6, 11)))
        }
        Op::Embedding(e) => match e {
            EmbeddingOp::Lookup => {
                let idx: Vec<i32> = (0..87).map(|p| p * 5 % 13).collect();
                done(randn(&[13, 5], 60, d).embedding(&indices(&idx, &[3, 29], d), None))
            }
            EmbeddingOp::SortKeys
            | EmbeddingOp::SortBlock
            | EmbeddingOp::MergeGlobal
            | EmbeddingOp::MergeLocal
            | EmbeddingOp::RowStarts => {
                // 1100 positions: a sort of 2048 pairs, whose merges run both stages.
                let idx: Vec<i32> = (0..1100).map(|p: i32| (p * 7919 + 13) % 304 - 2).collect();
                let (order, starts) = indices(&idx, &[1100], d).group_by_index(300);
                done(order);
                done(starts)
            }
            EmbeddingOp::Backward => {
                let idx: Vec<i32> = (0..1100).map(|p| p * p % 13).collect();
                let w = randn(&[13, 5], 61, d).requires_grad();
                let y = w.embedding(&indices(&idx, &[1100], d), Some(3));
                done(y.mul(&randn(&[1100, 5], 62, d)).sum_all().backward().wrt(&w).clone())
            }
        },
        Op::Rnn(r) => {
            let (mode, whole_sequence) = match r {
                RnnOp::LstmCellForward | RnnOp::LstmCellBackward => (RnnMode::Lstm, false),
                RnnOp::LstmSequenceForward | RnnOp::LstmSequenceBackward => (RnnMode::Lstm, true),
                RnnOp::GruCellForward | RnnOp::GruCellBackward => (RnnMode::Gru, false),
                RnnOp::RnnCellForward | RnnOp::RnnCellBackward => (RnnMode::RnnTanh, false),
            };
            // An LSTM layer runs either the cell kernels step by step or the whole-sequence
            // kernels, by the adapter's default: take the path of the op under test.
            let _path = d.gpu_context().map(|ctx| WholeSequenceLstm::set(ctx, whole_sequence));
            // Hidden size 90 (270 units: two workgroups, the second partial), lengths
            // [3, 1, 2] so the padded branch runs too.
            let (hidden, rows) = (90, mode.gates() * 90);
            let input = randn(&[3, 3, 5], 70, d).requires_grad();
            let w_ih = uniform(&[rows, 5], -0.3, 0.3, 71, d);
            let w_hh = uniform(&[rows, hidden], -0.1, 0.1, 72, d).requires_grad();
            let (b_ih, b_hh) = (uniform(&[rows], -0.5, 0.5, 73, d), uniform(&[rows], -0.5, 0.5, 74, d));
            let (h0, c0) = (randn(&[3, hidden], 75, d).requires_grad(), randn(&[3, hidden], 76, d));
            let weights = RnnWeights { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: Some(&b_ih), bias_hh: Some(&b_hh) };
            let c0 = (mode == RnnMode::Lstm).then_some(&c0);
            let out = input.rnn_layer(mode, &weights, Some(&h0), c0, false, Some(&[3, 1, 2]));
            let grads = out.output.square().sum_all().add(&out.h_n.sum_all()).backward();
            done(grads.wrt(&w_hh).clone())
        }
        Op::LayerNorm(l) => {
            // 302 rows of 45: two parameter-gradient chunks, the second partial.
            let x = randn(&[2, 151, 45], 80, d).affine(1.5, 0.3).requires_grad();
            let w = uniform(&[45], 0.5, 1.5, 81, d).requires_grad();
            let b = uniform(&[45], -1.0, 1.0, 82, d).requires_grad();
            let y = x.layer_norm(&[45], Some(&w), Some(&b), 1e-5);
            match l {
                LayerNormOp::Forward => done(y.detach()),
                LayerNormOp::Backward | LayerNormOp::ParamBackward => {
                    let g = y.mul(&randn(&[2, 151, 45], 83, d)).sum_all().backward();
                    done(Tensor::cat(&[g.wrt(&x).reshape(&[-1]), g.wrt(&w).clone(), g.wrt(&b).clone()], 0))
                }
            }
        }
        Op::Loss(l) => {
            use crate::loss::CrossEntropy;
            let targets: Vec<i32> = (0..300).map(|i| i * 5 % 7).collect();
            let (logits, targets) = (randn(&[300, 7], 110, d).requires_grad(), indices(&targets, &[300], d));
            let weight = uniform(&[7], 0.5, 2.0, 111, d);
            let loss = CrossEntropy::new().weight(&weight).ignore_index(3).forward(&logits, &targets);
            match l {
                LossOp::CrossEntropyForward => done(loss.detach()),
                LossOp::CrossEntropyBackward => done(loss.backward().wrt(&logits).clone()),
            }
        }
        Op::Half(h) => {
            let half = |shape: &[usize], seed| Tensor::randn(shape, seed, &Device::cpu()).half().to_device(d);
            match h {
                HalfOp::ToHalf => done(randn(&[5, 7, 11], 90, d).affine(4.0, 0.0).permute(&[2, 0, 1]).half()),
                HalfOp::ToFloat => done(half(&[5, 7, 11], 91).permute(&[1, 2, 0]).float()),
                HalfOp::Copy => {
                    done(Tensor::cat(&[half(&[5, 7, 11], 92).permute(&[1, 0, 2]), half(&[7, 5, 3], 93)], 2))
                }
                HalfOp::Matmul => done(half(&[3, 37, 29], 94).half_matmul(&half(&[45, 29], 95).t(), DType::F32)),
            }
        }
    }
}

/// Products that break matmul tilings: sizes that are not multiples of any tile, a row
/// count below one tile, a transposed (strided) operand, a broadcast batch, operands the
/// vec4 kernels can read (row-major, aligned to 4), and a fused bias and activation.
fn matmul_shapes(d: &Device) {
    done(randn(&[45, 65], 11, d).matmul(&randn(&[65, 13], 12, d)));
    done(randn(&[3, 130], 13, d).matmul(&randn(&[130, 67], 14, d)));
    done(randn(&[37, 29], 15, d).t().matmul(&randn(&[37, 41], 16, d)));
    done(randn(&[3, 37, 28], 17, d).matmul(&randn(&[28, 44], 18, d)));
    done(randn(&[133, 64], 19, d).matmul(&randn(&[64, 136], 20, d)));
    let (x, w, b) = (randn(&[9, 64], 21, d), randn(&[36, 64], 22, d), randn(&[36], 23, d));
    done(x.linear(&w, Some(&b), crate::Activation::Relu));
}
