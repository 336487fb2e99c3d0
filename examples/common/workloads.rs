//! The benchmark workloads, shared by `examples/bench.rs` (one table of figures) and
//! `benches/workloads.rs` (criterion), so both measure exactly the same work.
//!
//! Each workload builds its inputs and model once from fixed seeds, then [`Workload::run`]
//! records one repetition of the timed work and returns a tensor of its result. Timing
//! belongs to the caller, which must end every timed run with `Device::synchronize()`:
//! GPU work is recorded and submitted lazily, so without it only the recording is timed.

// The example and the bench each use a part of this module.
#![allow(dead_code)]

use super::models;
use wgrad::nn::{Forward, Module, RnnOptions, LSTM};
use wgrad::optim::{Adam, Optimizer};
use wgrad::{loss, ConvOptions, DType, Device, Tensor};

/// Batch size of the conv, LSTM and training-step workloads (the MNIST examples' batch).
pub const BATCH: usize = 64;
/// Elements per tensor of the default elementwise add (16M).
pub const ADD_ELEMENTS: usize = 16 << 20;
/// Matmul sizes `n` measured by default.
pub const MATMUL_SIZES: [usize; 4] = [256, 512, 1024, 2048];
/// The workload families, as `--workloads` names them.
pub const FAMILIES: [Family; 6] =
    [Family::Matmul, Family::HalfMatmul, Family::Conv, Family::Lstm, Family::Step, Family::Add];
/// The models of the training-step workloads, as `--models` names them.
pub const MODELS: [Model; 3] = [Model::Cnn, Model::Mlp, Model::Lstm];

/// A group of related workloads, selected together by `--workloads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Matmul,
    HalfMatmul,
    Conv,
    Lstm,
    Step,
    Add,
}

impl Family {
    /// The name `--workloads` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Family::Matmul => "matmul",
            Family::HalfMatmul => "hmatmul",
            Family::Conv => "conv",
            Family::Lstm => "lstm",
            Family::Step => "step",
            Family::Add => "add",
        }
    }

    /// The family called `name`, if any.
    pub fn parse(name: &str) -> Option<Family> {
        FAMILIES.into_iter().find(|f| f.name() == name.trim())
    }
}

/// The model of a training-step workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// The Keras MNIST CNN of `examples/mnist_cnn.rs`.
    Cnn,
    /// The 784-128-10 MLP of `examples/mnist_mlp.rs`.
    Mlp,
    /// LSTM(28, 128) over the 28 image rows and Linear(128, 10) on `h_n`, as `examples/mnist_lstm.rs`.
    Lstm,
}

impl Model {
    /// The name `--models` accepts and tables show (`step cnn`).
    pub fn name(self) -> &'static str {
        match self {
            Model::Cnn => "cnn",
            Model::Mlp => "mlp",
            Model::Lstm => "lstm",
        }
    }

    /// The model called `name`, if any.
    pub fn parse(name: &str) -> Option<Model> {
        MODELS.into_iter().find(|m| m.name() == name.trim())
    }
}

/// One workload and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// `[n, n] @ [n, n]`.
    Matmul { n: usize },
    /// `[n, n] @ [n, n]` of f16 tensors accumulated in f32 (`half_matmul`), the f32 result
    /// included.
    HalfMatmul { n: usize },
    /// `conv2d` of `[BATCH, in_ch, hw, hw]` with a `[out_ch, in_ch, 3, 3]` kernel and a
    /// bias, stride 1, no padding; with `backward`, also the gradients of `sum(y * dy)`
    /// with respect to the input and the weight.
    Conv { in_ch: usize, out_ch: usize, hw: usize, backward: bool },
    /// A one-layer batch-first LSTM over `[BATCH, steps, input]`; with `backward`, also the
    /// gradients of `sum(out * dy)` with respect to the input and every weight.
    Lstm { steps: usize, input: usize, hidden: usize, backward: bool },
    /// One training step (forward, cross-entropy, backward, Adam step) at batch [`BATCH`].
    Step(Model),
    /// Elementwise add of two `[elements]` tensors.
    Add { elements: usize },
}

/// What one run of a workload amounts to, for its rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    /// Floating-point operations (rate in GFLOP/s).
    Flops(f64),
    /// Images trained on (rate in images/s).
    Images(f64),
    /// Bytes read and written (rate in GB/s).
    Bytes(f64),
}

impl Work {
    /// The rate at `ms` milliseconds per run, in the unit [`Work::unit`] names.
    pub fn rate(self, ms: f64) -> f64 {
        let secs = ms * 1e-3;
        match self {
            Work::Flops(f) => f / secs / 1e9,
            Work::Images(n) => n / secs,
            Work::Bytes(b) => b / secs / 1e9,
        }
    }

    /// The unit of [`Work::rate`].
    pub fn unit(self) -> &'static str {
        match self {
            Work::Flops(_) => "GFLOP/s",
            Work::Images(_) => "images/s",
            Work::Bytes(_) => "GB/s",
        }
    }

    /// The amount itself, for criterion's throughput (elements stand for flops, images or bytes).
    pub fn amount(self) -> u64 {
        match self {
            Work::Flops(x) | Work::Images(x) | Work::Bytes(x) => x as u64,
        }
    }
}

impl Spec {
    /// The family the workload belongs to.
    pub fn family(&self) -> Family {
        match self {
            Spec::Matmul { .. } => Family::Matmul,
            Spec::HalfMatmul { .. } => Family::HalfMatmul,
            Spec::Conv { .. } => Family::Conv,
            Spec::Lstm { .. } => Family::Lstm,
            Spec::Step(_) => Family::Step,
            Spec::Add { .. } => Family::Add,
        }
    }

    /// The `n x n x n` workload of a matmul family (`Matmul` or `HalfMatmul`).
    pub fn square_matmul(family: Family, n: usize) -> Spec {
        match family {
            Family::Matmul => Spec::Matmul { n },
            Family::HalfMatmul => Spec::HalfMatmul { n },
            other => panic!("{} is not a matmul family", other.name()),
        }
    }

    /// The workload's name in tables, e.g. `conv fwd+bwd` or `step cnn`.
    pub fn name(&self) -> String {
        let pass = |backward: bool| if backward { "fwd+bwd" } else { "fwd" };
        match *self {
            Spec::Matmul { .. } => "matmul".to_string(),
            Spec::HalfMatmul { .. } => "matmul f16".to_string(),
            Spec::Conv { backward, .. } => format!("conv {}", pass(backward)),
            Spec::Lstm { backward, .. } => format!("lstm {}", pass(backward)),
            Spec::Step(model) => format!("step {}", model.name()),
            Spec::Add { .. } => "add".to_string(),
        }
    }

    /// The workload's size in tables.
    pub fn size(&self) -> String {
        match *self {
            Spec::Matmul { n } | Spec::HalfMatmul { n } => format!("{n}x{n}x{n}"),
            Spec::Conv { in_ch, out_ch, hw, .. } => format!("{BATCH}x{in_ch}x{hw}x{hw} k3 ->{out_ch}"),
            Spec::Lstm { steps, input, hidden, .. } => format!("{BATCH}x{steps}x{input} h{hidden}"),
            Spec::Step(_) => format!("batch {BATCH}"),
            Spec::Add { elements } => elements.to_string(),
        }
    }

    /// The work of one run. A backward pass counts twice its forward's flops (the input
    /// gradient and the weight gradient each cost one forward), so `fwd+bwd` is 3x forward.
    pub fn work(&self) -> Work {
        let passes = |backward: bool| if backward { 3.0 } else { 1.0 };
        match *self {
            Spec::Matmul { n } | Spec::HalfMatmul { n } => Work::Flops(2.0 * (n as f64).powi(3)),
            Spec::Conv { in_ch, out_ch, hw, backward } => {
                let out_hw = (hw - 2) as f64;
                let fwd = 2.0 * (BATCH * out_ch * in_ch * 9) as f64 * out_hw * out_hw;
                Work::Flops(fwd * passes(backward))
            }
            Spec::Lstm { steps, input, hidden, backward } => {
                // The four gates' matmuls against the input and the previous hidden state;
                // the elementwise gate arithmetic is a few percent of that and not counted.
                let fwd = 2.0 * (BATCH * steps * 4 * hidden * (input + hidden)) as f64;
                Work::Flops(fwd * passes(backward))
            }
            Spec::Step(_) => Work::Images(BATCH as f64),
            // Two inputs read and one output written, 4 bytes each.
            Spec::Add { elements } => Work::Bytes(3.0 * 4.0 * elements as f64),
        }
    }

    /// The default workloads of `families`, in table order. `small` (a software adapter)
    /// keeps only matmul 256 and a 1M-element add, as such an adapter runs well under
    /// 1 GFLOP/s.
    pub fn defaults(families: &[Family], small: bool) -> Vec<Spec> {
        let mut specs = Vec::new();
        for family in FAMILIES.into_iter().filter(|f| families.contains(f)) {
            match family {
                Family::Matmul | Family::HalfMatmul => {
                    let sizes: &[usize] = if small { &MATMUL_SIZES[..1] } else { &MATMUL_SIZES };
                    specs.extend(sizes.iter().map(|&n| Spec::square_matmul(family, n)));
                }
                Family::Conv => {
                    for backward in [false, true] {
                        specs.push(Spec::Conv { in_ch: 1, out_ch: 32, hw: 28, backward });
                        specs.push(Spec::Conv { in_ch: 32, out_ch: 64, hw: 13, backward });
                    }
                }
                Family::Lstm => {
                    for backward in [false, true] {
                        specs.push(Spec::Lstm { steps: 28, input: 28, hidden: 128, backward });
                    }
                }
                Family::Step => specs.extend(MODELS.map(Spec::Step)),
                Family::Add => specs.push(Spec::Add { elements: if small { 1 << 20 } else { ADD_ELEMENTS } }),
            }
        }
        specs
    }
}

/// A workload with its inputs (and model and optimizer) built on a device.
pub struct Workload {
    spec: Spec,
    state: State,
}

enum State {
    Binary(Tensor, Tensor),
    Conv { x: Tensor, w: Tensor, b: Tensor, dy: Tensor },
    Lstm { lstm: LSTM, x: Tensor, dy: Tensor },
    Step { model: Box<dyn Forward>, opt: Adam, input: Tensor, labels: Tensor },
}

impl Workload {
    /// Builds the inputs of `spec` on `dev` from fixed seeds, and waits for the device to
    /// finish drawing them so that no later timing includes it.
    pub fn new(spec: Spec, dev: &Device) -> Workload {
        let state = match spec {
            Spec::Matmul { n } => State::Binary(Tensor::randn(&[n, n], 1, dev), Tensor::randn(&[n, n], 2, dev)),
            Spec::HalfMatmul { n } => {
                State::Binary(Tensor::randn(&[n, n], 1, dev).half(), Tensor::randn(&[n, n], 2, dev).half())
            }
            Spec::Add { elements } => {
                State::Binary(Tensor::randn(&[elements], 3, dev), Tensor::randn(&[elements], 4, dev))
            }
            Spec::Conv { in_ch, out_ch, hw, backward } => {
                let (x, w) =
                    (Tensor::randn(&[BATCH, in_ch, hw, hw], 5, dev), Tensor::randn(&[out_ch, in_ch, 3, 3], 6, dev));
                let (x, w) = if backward { (x.requires_grad(), w.requires_grad()) } else { (x, w) };
                let b = Tensor::randn(&[out_ch], 7, dev);
                let dy = Tensor::randn(&[BATCH, out_ch, hw - 2, hw - 2], 8, dev);
                State::Conv { x, w, b, dy }
            }
            Spec::Lstm { steps, input, hidden, backward } => {
                wgrad::manual_seed(9);
                let lstm = LSTM::with_options(input, hidden, RnnOptions::new().batch_first(true), dev);
                let x = Tensor::randn(&[BATCH, steps, input], 10, dev);
                let x = if backward { x.requires_grad() } else { x };
                let dy = Tensor::randn(&[BATCH, steps, hidden], 11, dev);
                State::Lstm { lstm, x, dy }
            }
            Spec::Step(model) => {
                wgrad::manual_seed(12);
                let images = Tensor::randn(&[BATCH, 1, 28, 28], 13, dev);
                let (model, input): (Box<dyn Forward>, Tensor) = match model {
                    Model::Cnn => (Box::new(models::keras_cnn(dev)), images),
                    Model::Mlp => (Box::new(models::mlp(dev)), images.reshape(&[-1, 784])),
                    Model::Lstm => (Box::new(models::RowLstm::new(dev)), images.reshape(&[-1, 28, 28])),
                };
                // Fixed, evenly spread class labels: the step's cost does not depend on them.
                let labels: Vec<i32> = (0..BATCH as i32).map(|i| (i * 7 + 3) % 10).collect();
                let labels = Tensor::from_slice(&labels, &[BATCH], dev);
                let opt = Adam::new(model.parameters(), 1e-3);
                State::Step { model, opt, input, labels }
            }
        };
        dev.synchronize();
        Workload { spec, state }
    }

    /// The workload this was built for.
    pub fn spec(&self) -> Spec {
        self.spec
    }

    /// Records one run of the workload and returns a tensor of its result (the output, an
    /// input gradient, or the step's loss). The caller synchronizes the device.
    pub fn run(&mut self) -> Tensor {
        match &mut self.state {
            State::Binary(a, b) => match self.spec {
                Spec::Matmul { .. } => a.matmul(b),
                Spec::HalfMatmul { .. } => a.half_matmul(b, DType::F32),
                _ => a.add(b),
            },
            State::Conv { x, w, b, dy } => {
                let y = x.conv2d(w, Some(b), &ConvOptions::new());
                if !x.is_tracked() {
                    return y;
                }
                // backward_with(dy) gives the gradients of sum(y * dy).
                let mut grads = y.backward_with(dy);
                grads.remove(x).expect("the conv input requires a gradient")
            }
            State::Lstm { lstm, x, dy } => {
                if !x.is_tracked() {
                    // Inference: the weights require gradients, so record no graph for them.
                    return wgrad::no_grad(|| lstm.forward(x).0);
                }
                let (out, _) = lstm.forward(x);
                let mut grads = out.backward_with(dy);
                grads.remove(x).expect("the LSTM input requires a gradient")
            }
            State::Step { model, opt, input, labels } => {
                let loss = loss::cross_entropy(&model.forward(input), labels);
                let grads = loss.backward();
                opt.step(&grads);
                loss.detach()
            }
        }
    }
}
