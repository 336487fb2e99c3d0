//! Every [`Op`] has a cross-check case, a WGSL entry point that naga can parse, and a
//! place in [`Op::all`].
//!
//! [`case`] is an exhaustive `match` without a wildcard arm: adding a variant to `Op` or to
//! any of its sub-enums stops this file from compiling until the new op has a case. The
//! cases are deliberately plain (one odd-sized shape each); `elementwise.rs`, `reduce.rs`,
//! `matmul.rs`, `shape_ops.rs` and `softmax.rs` try the shapes that break kernels.

mod common;

use common::{
    apply_binary, apply_reduce, apply_unary, binary_spec, integers, randn, reduce_tolerance, unary_spec, uniform,
    EXACT, LOG_SOFTMAX_TOL, MATMUL_TOL, RANDN_TOL, SOFTMAX_TOL,
};
use wgrad::gpu::shaders;
use wgrad::op::{
    AugmentOp, BatchNormOp, BinaryOp, ConvOp, CreationOp, EmbeddingOp, IndexOp, LayerNormOp, Op, OptimOp, PoolOp,
    ReduceOp, RnnOp, SoftmaxOp, UnaryOp,
};
use wgrad::optim::{Adagrad, AdamW, Optimizer, RmsProp, Sgd};
use wgrad::testing::{cross_check, Tolerance};
use wgrad::{with_conv_algorithm, ConvAlgorithm};
use wgrad::{ConvOptions, Device, RnnMode, RnnWeights, Tensor};

type Inputs = Box<dyn Fn(&Device) -> Vec<Tensor>>;
type Call = Box<dyn Fn(&[Tensor]) -> Tensor>;

/// One cross-check: how to build the inputs on a device, the tensor-level call that runs
/// the op, and how closely the GPU must follow the CPU.
struct Case {
    tol: Tolerance,
    inputs: Inputs,
    call: Call,
}

fn case_of(
    tol: Tolerance,
    inputs: impl Fn(&Device) -> Vec<Tensor> + 'static,
    call: impl Fn(&[Tensor]) -> Tensor + 'static,
) -> Case {
    Case { tol, inputs: Box::new(inputs), call: Box::new(call) }
}

/// Creation ops take no tensor; a one-element anchor carries the device into the call.
fn creation(tol: Tolerance, call: impl Fn(&Device) -> Tensor + 'static) -> Case {
    case_of(tol, |d| vec![Tensor::scalar(0.0, d)], move |x| call(x[0].device()))
}

fn unary(op: UnaryOp) -> Case {
    let spec = unary_spec(op);
    let (low, high) = (spec.low, spec.high);
    // 385 elements: two workgroups, the second partial.
    case_of(spec.tol, move |d| vec![uniform(&[5, 7, 11], low, high, 1, d)], move |x| apply_unary(op, &x[0]))
}

fn binary(op: BinaryOp) -> Case {
    let spec = binary_spec(op);
    let (a, b) = (spec.a, spec.b);
    case_of(
        spec.tol,
        move |d| vec![uniform(&[5, 7, 11], a.0, a.1, 2, d), uniform(&[7, 1], b.0, b.1, 3, d)],
        move |x| apply_binary(op, &x[0], &x[1]),
    )
}

fn reduce(op: ReduceOp) -> Case {
    // Rows of 300 (longer than a workgroup) along the middle axis, which needs a copy.
    case_of(reduce_tolerance(op), |d| vec![randn(&[3, 300, 5], 4, d)], move |x| apply_reduce(op, &x[0], &[1], false))
}

/// Three steps of an optimizer on a 300-element parameter (two workgroups) with a
/// different gradient each step; the result is the parameter after the last step, which
/// depends on every state buffer. Optimizer arithmetic is a handful of f32 operations
/// with one sqrt per element, so GPU and CPU agree to a few ulp.
fn optimizer_case(make: fn(Tensor) -> Box<dyn Optimizer>) -> Case {
    case_of(
        common::within(1e-6, 1e-5),
        |d| vec![uniform(&[300], -1.0, 1.0, 20, d), uniform(&[3, 300], -2.0, 2.0, 21, d)],
        move |x| {
            let param = x[0].detach().contiguous().affine(1.0, 0.0).detach().requires_grad();
            let mut opt = make(param.clone());
            for step in 0..3 {
                let direction = x[1].narrow(0, step, 1).reshape(&[300]);
                let grads = param.mul(&direction).sum_all().backward();
                opt.step(&grads);
            }
            param.detach()
        },
    )
}

/// The cross-check case of `op`.
fn case(op: Op) -> Case {
    match op {
        Op::Creation(c) => match c {
            CreationOp::Fill => creation(EXACT, |d| Tensor::full(&[13, 45], -2.5, d)),
            // start + i * step in f32, the same expression on both sides.
            CreationOp::Arange => creation(EXACT, |d| Tensor::arange(-3.3, 40.0, 0.37, d)),
            CreationOp::Eye => creation(EXACT, |d| Tensor::eye(7, 11, d)),
            // The same counter-based bits on every device.
            CreationOp::RandUniform => creation(EXACT, |d| Tensor::rand_uniform(&[5, 7, 11], -2.0, 3.0, 9, d)),
            // Box-Muller: see RANDN_TOL for the samples where log's error shows.
            CreationOp::RandNormal => creation(RANDN_TOL, |d| Tensor::normal(&[45, 65], 1.0, 2.0, 10, d)),
        },
        Op::Unary(u) => match u {
            UnaryOp::Copy => {
                // A transposed view, so that `contiguous` has to copy.
                case_of(EXACT, |d| vec![randn(&[11, 13], 5, d)], |x| x[0].t().contiguous())
            }
            UnaryOp::Neg
            | UnaryOp::Abs
            | UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Sqrt
            | UnaryOp::Rsqrt
            | UnaryOp::Square
            | UnaryOp::Recip
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Affine
            | UnaryOp::PowScalar
            | UnaryOp::Clamp
            | UnaryOp::Relu
            | UnaryOp::LeakyRelu
            | UnaryOp::Elu
            | UnaryOp::Sigmoid
            | UnaryOp::Tanh
            | UnaryOp::Gelu
            | UnaryOp::Softplus
            | UnaryOp::Silu
            | UnaryOp::GeluGrad => unary(u),
        },
        Op::Binary(b) => match b {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Pow
            | BinaryOp::Maximum
            | BinaryOp::Minimum
            | BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Le
            | BinaryOp::Gt
            | BinaryOp::Ge => binary(b),
        },
        // Picks one of two values: exact.
        Op::Where => case_of(
            EXACT,
            |d| vec![integers(&[5, 1, 11], 2, 6, d), randn(&[7, 11], 7, d), randn(&[5, 7, 1], 8, d)],
            |x| x[1].where_cond(&x[0], &x[2]),
        ),
        Op::Reduce(r) => match r {
            ReduceOp::Sum
            | ReduceOp::Mean
            | ReduceOp::Max
            | ReduceOp::Min
            | ReduceOp::Var
            | ReduceOp::ArgMax
            | ReduceOp::ArgMin => reduce(r),
        },
        Op::Matmul => {
            case_of(MATMUL_TOL, |d| vec![randn(&[45, 65], 11, d), randn(&[65, 13], 12, d)], |x| x[0].matmul(&x[1]))
        }
        Op::Softmax(s) => match s {
            SoftmaxOp::Softmax => case_of(SOFTMAX_TOL, |d| vec![randn(&[13, 300], 13, d)], |x| x[0].softmax(1)),
            SoftmaxOp::LogSoftmax => {
                case_of(LOG_SOFTMAX_TOL, |d| vec![randn(&[13, 300], 14, d)], |x| x[0].log_softmax(1))
            }
        },
        Op::Index(i) => match i {
            // Copies elements: exact.
            IndexOp::IndexSelect => case_of(
                EXACT,
                |d| vec![randn(&[5, 7, 11], 15, d), Tensor::from_slice(&[3i32, 0, 3, 6, 1], &[5], d)],
                |x| x[0].index_select(1, &x[1]),
            ),
            IndexOp::Gather => case_of(
                EXACT,
                |d| {
                    let idx: Vec<i32> = (0..5 * 9).map(|i| i * 7 % 11).collect();
                    vec![randn(&[5, 11], 16, d), Tensor::from_slice(&idx, &[5, 9], d)]
                },
                |x| x[0].gather(1, &x[1]),
            ),
            // Sums in a fixed order (increasing source index) on both devices: small
            // integers keep every partial sum exact, so the results match bit for bit.
            IndexOp::IndexAdd => case_of(
                EXACT,
                |d| {
                    let src =
                        Tensor::from_slice(&(0..5 * 6 * 3).map(|i| (i % 7) as f32).collect::<Vec<_>>(), &[5, 6, 3], d);
                    vec![src, Tensor::from_slice(&[3i32, 0, 3, 6, 3, 1], &[6], d)]
                },
                |x| Tensor::zeros(&[5, 7, 3], x[0].device()).index_add(1, &x[1], &x[0]),
            ),
            IndexOp::ScatterAdd => case_of(
                EXACT,
                |d| {
                    let idx: Vec<i32> = (0..5 * 9).map(|i| i * 7 % 4).collect();
                    let src =
                        Tensor::from_slice(&(0..5 * 9).map(|i| (i % 5) as f32 - 2.0).collect::<Vec<_>>(), &[5, 9], d);
                    vec![src, Tensor::from_slice(&idx, &[5, 9], d)]
                },
                |x| Tensor::ones(&[6, 4], x[0].device()).scatter_add(1, &x[1], &x[0]),
            ),
        },
        // Each with the options that switch on every branch of its kernel.
        Op::Optim(o) => match o {
            OptimOp::Sgd => {
                optimizer_case(|p| Box::new(Sgd::new([p], 0.1).momentum(0.9).nesterov(true).weight_decay(0.01)))
            }
            OptimOp::Adam => optimizer_case(|p| Box::new(AdamW::new([p], 0.01))),
            OptimOp::Adagrad => optimizer_case(|p| {
                Box::new(Adagrad::new([p], 0.1).lr_decay(0.01).weight_decay(0.1).initial_accumulator_value(0.1))
            }),
            OptimOp::RmsProp => {
                optimizer_case(|p| Box::new(RmsProp::new([p], 0.01).momentum(0.9).centered(true).weight_decay(0.01)))
            }
        },
        Op::Conv(c) => conv_case(c),
        Op::Pool(p) => pool_case(p),
        Op::BatchNorm(b) => batch_norm_case(b),
        Op::Augment(a) => augment_case(a),
        Op::Embedding(e) => embedding_case(e),
        Op::Rnn(r) => rnn_case(r),
        Op::LayerNorm(l) => layer_norm_case(l),
        // ---- half precision ----
        Op::Half(h) => half_case(h),
        // ---- loss ----
        Op::Loss(l) => loss_case(l),
    }
}

// ---- convolution ----

/// im2col through a convolution forward (odd sizes, uneven stride, padding), col2im
/// through the input gradient of the same convolution, the direct kernel through the
/// same forward with a bias (5 output channels: a full and a partial block of 4).
fn conv_case(op: ConvOp) -> Case {
    let opts = ConvOptions::new().stride((2, 1)).padding((1, 2));
    let inputs = |d: &Device| vec![randn(&[2, 3, 9, 7], 30, d), randn(&[5, 3, 3, 2], 31, d)];
    match op {
        ConvOp::Im2col => case_of(MATMUL_TOL, inputs, move |x| {
            with_conv_algorithm(ConvAlgorithm::Im2col, || x[0].conv2d(&x[1], None, &opts))
        }),
        ConvOp::Conv2dDirect => case_of(
            MATMUL_TOL,
            |d: &Device| vec![randn(&[2, 3, 9, 7], 30, d), randn(&[5, 3, 3, 2], 31, d), randn(&[5], 32, d)],
            move |x| with_conv_algorithm(ConvAlgorithm::Direct, || x[0].conv2d(&x[1], Some(&x[2]), &opts)),
        ),
        ConvOp::Col2im => case_of(MATMUL_TOL, inputs, move |x| {
            let input = x[0].detach().requires_grad();
            let grads = input.conv2d(&x[1], None, &opts).square().sum_all().backward();
            grads.get(&input).expect("the input's gradient").clone()
        }),
    }
}

// ---- pooling ----

/// Each pooling over [2, 3, 9, 7] (odd sizes; 378 inputs: two workgroups, the second
/// partial) with overlapping windows, padding, a stride that does not divide and ceil
/// mode; backward kernels through the input gradient against a random output gradient.
/// Max pooling picks and moves values: exact. Average pooling divides once (WGSL: 2.5
/// ulp), adaptive twice, and their gradients sum a few such quotients.
fn pool_case(p: PoolOp) -> Case {
    let max = wgrad::MaxPool2dOptions::new(3).stride(2).padding(1).ceil_mode(true);
    let avg = wgrad::AvgPool2dOptions::new((3, 2)).stride((2, 1)).padding(1).count_include_pad(false);
    let x = |d: &Device| vec![randn(&[2, 3, 9, 7], 60, d)];
    // The input gradient of `pool` against a fixed random output gradient.
    let grad = |x: &Tensor, pool: &dyn Fn(&Tensor) -> Tensor| {
        let input = x.detach().requires_grad();
        let y = pool(&input);
        let gy = randn(y.shape(), 61, &Device::cpu()).to_device(x.device());
        y.backward_with(&gy).wrt(&input).clone()
    };
    match p {
        PoolOp::MaxPool2d => case_of(EXACT, x, move |x| x[0].max_pool2d(&max)),
        PoolOp::MaxPool2dBackward => case_of(EXACT, x, move |x| grad(&x[0], &|t| t.max_pool2d(&max))),
        PoolOp::AvgPool2d => case_of(common::within(1e-7, 1e-6), x, move |x| x[0].avg_pool2d(&avg)),
        PoolOp::AvgPool2dBackward => {
            case_of(common::within(1e-6, 1e-5), x, move |x| grad(&x[0], &|t| t.avg_pool2d(&avg)))
        }
        PoolOp::AdaptiveAvgPool2d => case_of(common::within(1e-7, 2e-6), x, |x| x[0].adaptive_avg_pool2d((4, 5))),
        PoolOp::AdaptiveAvgPool2dBackward => {
            case_of(common::within(1e-6, 1e-5), x, move |x| grad(&x[0], &|t| t.adaptive_avg_pool2d((4, 5))))
        }
    }
}

// ---- batch normalisation ----

/// Batch norm over [5, 3, 7, 11] (385 values per channel, in runs of 77): the statistics
/// kernel through the running statistics a training step leaves (nothing else reads
/// them), apply through an evaluation forward, and the two backward kernels through the
/// parameter gradients (the per-channel sums) and the input gradient of a training step.
/// Measured on lavapipe: outputs within 5e-7, reductions within 2e-7 normalised.
fn batch_norm_case(b: BatchNormOp) -> Case {
    let inputs = |d: &Device| {
        vec![
            randn(&[5, 3, 7, 11], 50, d).affine(1.5, 0.3),
            uniform(&[3], 0.5, 1.5, 51, d),
            uniform(&[3], -1.0, 1.0, 52, d),
            randn(&[5, 3, 7, 11], 53, d),
        ]
    };
    let reduced = Tolerance::Normalized { tol: 5e-6 };
    // The gradients of a training step of `x`, weight and bias against the output gradient.
    let grads = |x: &[Tensor], input: bool| {
        let (inp, w, bias) =
            (x[0].detach().requires_grad(), x[1].detach().requires_grad(), x[2].detach().requires_grad());
        let y = inp.batch_norm(None, None, Some(&w), Some(&bias), true, 0.1, 1e-5);
        let g = y.mul(&x[3]).sum_all().backward();
        if input {
            g.wrt(&inp).clone()
        } else {
            Tensor::cat(&[g.wrt(&w).clone(), g.wrt(&bias).clone()], 0)
        }
    };
    match b {
        BatchNormOp::Stats => case_of(reduced, inputs, |x| {
            let (mean, var) = (Tensor::zeros(&[3], x[0].device()), Tensor::ones(&[3], x[0].device()));
            x[0].batch_norm(Some(&mean), Some(&var), None, None, true, 0.3, 1e-5);
            Tensor::cat(&[mean, var], 0)
        }),
        BatchNormOp::Apply => case_of(common::within(2e-6, 2e-6), inputs, |x| {
            let (mean, var) = (x[2].affine(0.5, 0.0), x[1].add_scalar(0.25));
            x[0].batch_norm(Some(&mean), Some(&var), Some(&x[1]), Some(&x[2]), false, 0.1, 1e-5)
        }),
        BatchNormOp::BackwardReduce => case_of(reduced, inputs, move |x| grads(x, false)),
        BatchNormOp::BackwardApply => case_of(reduced, inputs, move |x| grads(x, true)),
    }
}

// ---- augmentation ----

/// Crop-flip copies values: exact. Two images of [3, 7, 9] read through 6 x 11 windows
/// (wider than the input, 396 outputs: two workgroups, the second partial) that overhang
/// different edges, one mirrored.
fn augment_case(a: AugmentOp) -> Case {
    match a {
        AugmentOp::CropFlip => case_of(
            EXACT,
            |d| vec![randn(&[2, 3, 7, 9], 40, d), Tensor::from_slice(&[-2i32, 3, 0, 4, -1, 1], &[2, 3], d)],
            |x| x[0].crop_flip(&x[1], (6, 11)),
        ),
    }
}

// ---- embedding ----

/// `n` values from -2 to `groups + 1` in a scrambled order, with repeats: some fall
/// outside `0..groups` on either side.
fn embedding_indices(n: usize, groups: usize) -> Vec<i32> {
    (0..n).map(|p| ((p * 7919 + 13) % (groups + 4)) as i32 - 2).collect()
}

/// Everything here moves or sums values in a fixed order: exact. The lookup reads a
/// [13, 5] table at 87 positions (435 outputs: two workgroups, the second partial). The
/// sort kernels are checked through the grouping they compute for 1100 positions (a sort
/// of 2048 pairs, whose merges of 1024 and 2048 run both the global and the block-local
/// stages), the row search through the offsets of 300 rows (more than a workgroup), and
/// the gradient through a lookup's backward with a padding row, in position order on
/// both devices.
fn embedding_case(e: EmbeddingOp) -> Case {
    match e {
        EmbeddingOp::Lookup => case_of(
            EXACT,
            |d| {
                let idx: Vec<i32> = (0..87).map(|p| p * 5 % 13).collect();
                vec![randn(&[13, 5], 60, d), Tensor::from_slice(&idx, &[3, 29], d)]
            },
            |x| x[0].embedding(&x[1], None),
        ),
        EmbeddingOp::SortKeys | EmbeddingOp::SortBlock | EmbeddingOp::MergeGlobal | EmbeddingOp::MergeLocal => case_of(
            EXACT,
            |d| vec![Tensor::from_slice(&embedding_indices(1100, 13), &[1100], d)],
            |x| x[0].group_by_index(13).0,
        ),
        EmbeddingOp::RowStarts => case_of(
            EXACT,
            |d| vec![Tensor::from_slice(&embedding_indices(1100, 300), &[1100], d)],
            |x| x[0].group_by_index(300).1,
        ),
        EmbeddingOp::Backward => case_of(
            EXACT,
            |d| {
                let idx: Vec<i32> = (0..1100).map(|p| p * p % 13).collect();
                vec![randn(&[13, 5], 61, d), Tensor::from_slice(&idx, &[1100], d), randn(&[1100, 5], 62, d)]
            },
            |x| {
                let w = x[0].detach().requires_grad();
                let grads = w.embedding(&x[1], Some(3)).mul(&x[2]).sum_all().backward();
                grads.wrt(&w).clone()
            },
        ),
    }
}

// ---- recurrent layers ----

/// One layer of `mode` over [3, 3, 5] with hidden size 90 (270 units: two workgroups, the
/// second partial), biases, initial states and lengths [3, 1, 2], so the kernels' padded
/// branch runs too. The forward kernels through the output and final states, the backward
/// kernels through the gradients of the input, the recurrent weights and h0 (each of
/// which sums the gate gradients of every step). The cells are a few f32 operations per
/// gate after the matmuls; WGSL's exp and tanh (a few ulp) and the matmuls' summation
/// order keep the normalised difference below 3e-7 on lavapipe. The LSTM cell ops and the
/// whole-sequence ones run the same layer, each with the GPU held to its path.
fn rnn_case(op: RnnOp) -> Case {
    let mode = match op {
        RnnOp::LstmCellForward | RnnOp::LstmCellBackward => RnnMode::Lstm,
        RnnOp::LstmSequenceForward | RnnOp::LstmSequenceBackward => RnnMode::Lstm,
        RnnOp::GruCellForward | RnnOp::GruCellBackward => RnnMode::Gru,
        RnnOp::RnnCellForward | RnnOp::RnnCellBackward => RnnMode::RnnTanh,
    };
    let backward = matches!(
        op,
        RnnOp::LstmCellBackward | RnnOp::LstmSequenceBackward | RnnOp::GruCellBackward | RnnOp::RnnCellBackward
    );
    let whole_sequence = matches!(op, RnnOp::LstmSequenceForward | RnnOp::LstmSequenceBackward);
    let (hidden, rows) = (90, mode.gates() * 90);
    let inputs = move |d: &Device| {
        vec![
            randn(&[3, 3, 5], 70, d),
            uniform(&[rows, 5], -0.3, 0.3, 71, d),
            uniform(&[rows, hidden], -0.1, 0.1, 72, d),
            uniform(&[rows], -0.5, 0.5, 73, d),
            uniform(&[rows], -0.5, 0.5, 74, d),
            randn(&[3, hidden], 75, d),
            randn(&[3, hidden], 76, d),
        ]
    };
    case_of(Tolerance::Normalized { tol: 2e-6 }, inputs, move |x| {
        let leaf = |t: &Tensor| t.detach().requires_grad();
        let (input, w_hh, h0) = (leaf(&x[0]), leaf(&x[2]), leaf(&x[5]));
        let weights = RnnWeights { weight_ih: &x[1], weight_hh: &w_hh, bias_ih: Some(&x[3]), bias_hh: Some(&x[4]) };
        let c0 = (mode == RnnMode::Lstm).then_some(&x[6]);
        // An LSTM layer on a GPU runs the cell kernels step by step or the whole-sequence
        // kernels, by the adapter's default: take the path of the op under test.
        let ctx = input.device().gpu_context().cloned();
        let previous = ctx.as_ref().map(|c| c.whole_sequence_lstm());
        if let Some(c) = &ctx {
            c.set_whole_sequence_lstm(whole_sequence);
        }
        let out = input.rnn_layer(mode, &weights, Some(&h0), c0, false, Some(&[3, 1, 2]));
        let mut parts = vec![out.output.reshape(&[-1]), out.h_n.reshape(&[-1])];
        parts.extend(out.c_n.map(|c| c.reshape(&[-1])));
        let result = Tensor::cat(&parts, 0);
        let result = if backward {
            let grads = result.square().sum_all().backward();
            let flat = |t: &Tensor| grads.wrt(t).reshape(&[-1]);
            Tensor::cat(&[flat(&input), flat(&w_hh), flat(&h0)], 0)
        } else {
            result
        };
        if let (Some(c), Some(previous)) = (&ctx, previous) {
            c.set_whole_sequence_lstm(previous);
        }
        result
    })
}

// ---- layer normalisation ----

/// Layer norm of [2, 151, 45] over its last axis: 302 rows of 45 (two parameter-gradient
/// chunks and two column tiles, each second one partial). The forward kernel through the
/// output, the backward kernel through the input gradient, the parameter kernel through
/// the weight and bias gradients, against a random output gradient. f32 sums in another
/// order than the f64 reference: measured on lavapipe within 4e-7 normalised.
fn layer_norm_case(l: LayerNormOp) -> Case {
    let inputs = |d: &Device| {
        vec![
            randn(&[2, 151, 45], 80, d).affine(1.5, 0.3),
            uniform(&[45], 0.5, 1.5, 81, d),
            uniform(&[45], -1.0, 1.0, 82, d),
            randn(&[2, 151, 45], 83, d),
        ]
    };
    case_of(Tolerance::Normalized { tol: 2e-6 }, inputs, move |x| {
        let (input, w, b) =
            (x[0].detach().requires_grad(), x[1].detach().requires_grad(), x[2].detach().requires_grad());
        let y = input.layer_norm(&[45], Some(&w), Some(&b), 1e-5);
        let grads = || y.mul(&x[3]).sum_all().backward();
        match l {
            LayerNormOp::Forward => y.detach(),
            LayerNormOp::Backward => grads().wrt(&input).clone(),
            LayerNormOp::ParamBackward => {
                let g = grads();
                Tensor::cat(&[g.wrt(&w).clone(), g.wrt(&b).clone()], 0)
            }
        }
    })
}

// ---- loss ----

/// The fused cross-entropy over 300 rows of 7 classes (more rows than the forward's
/// workgroup has invocations, so some invocations take two rows; 2100 logits for the
/// backward, a partial last workgroup) with class weights and an ignored class: the
/// forward's loss, and the backward through the gradient of the logits. Both devices sum
/// the rows in the same order; exp and log differ by a few ulp.
fn loss_case(op: wgrad::op::LossOp) -> Case {
    use wgrad::loss::CrossEntropy;
    let inputs = |d: &Device| {
        let targets: Vec<i32> = (0..300).map(|i| i * 5 % 7).collect();
        vec![randn(&[300, 7], 110, d), Tensor::from_slice(&targets, &[300], d), uniform(&[7], 0.5, 2.0, 111, d)]
    };
    let loss_fn = |x: &[Tensor]| CrossEntropy::new().weight(&x[2]).ignore_index(3);
    match op {
        wgrad::op::LossOp::CrossEntropyForward => {
            case_of(common::within(1e-6, 1e-5), inputs, move |x| loss_fn(x).forward(&x[0], &x[1]))
        }
        wgrad::op::LossOp::CrossEntropyBackward => case_of(common::within(1e-7, 1e-5), inputs, move |x| {
            let logits = x[0].detach().requires_grad();
            let grads = loss_fn(x).forward(&logits, &x[1]).backward();
            grads.wrt(&logits).clone()
        }),
    }
}

// ---- half precision ----

/// f16 inputs drawn on the CPU and uploaded, so both devices start from the same bits.
fn half_input(shape: &[usize], seed: u64, d: &Device) -> Tensor {
    Tensor::randn(shape, seed, &Device::cpu()).half().to_device(d)
}

/// Casts and copies of strided views (385 elements, odd, so the last word is half used),
/// exact; the f16 matmul on a transposed operand with a broadcast batch, whose f32 sums run
/// in the same order on both devices.
fn half_case(h: wgrad::op::HalfOp) -> Case {
    use wgrad::op::HalfOp;
    match h {
        HalfOp::ToHalf => {
            case_of(EXACT, |d| vec![randn(&[5, 7, 11], 90, d).affine(4.0, 0.0)], |x| x[0].permute(&[2, 0, 1]).half())
        }
        HalfOp::ToFloat => {
            case_of(EXACT, |d| vec![half_input(&[5, 7, 11], 91, d)], |x| x[0].permute(&[1, 2, 0]).float())
        }
        HalfOp::Copy => case_of(
            EXACT,
            |d| vec![half_input(&[5, 7, 11], 92, d), half_input(&[7, 5, 3], 93, d)],
            |x| Tensor::cat(&[x[0].permute(&[1, 0, 2]), x[1].clone()], 2),
        ),
        HalfOp::Matmul => case_of(
            Tolerance::Normalized { tol: 1e-6 },
            |d| vec![half_input(&[3, 37, 29], 94, d), half_input(&[45, 29], 95, d)],
            |x| x[0].half_matmul(&x[1].t(), wgrad::DType::F32),
        ),
    }
}

#[test]
fn every_op_agrees_with_the_cpu_reference() {
    let Some(gpu) = common::gpu("every_op_agrees_with_the_cpu_reference") else { return };
    let ops = Op::all();
    for op in ops {
        let c = case(op);
        cross_check(op.name(), &gpu, c.tol, &c.inputs, &c.call);
    }
}

#[test]
fn every_op_names_an_entry_point_that_naga_parses() {
    let mut parsed = std::collections::HashMap::new();
    for op in Op::all() {
        let k = op.kernel();
        let module = parsed.entry(k.file).or_insert_with(|| {
            let source = shaders::full_source(shaders::file(k.file));
            naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}.wgsl does not parse:\n{}", k.file, e.emit_to_string(&source)))
        });
        let entry = module.entry_points.iter().find(|e| e.name == k.entry);
        let entry = entry.unwrap_or_else(|| panic!("{op}: {}.wgsl has no entry point `{}`", k.file, k.entry));
        assert_eq!(entry.stage, naga::ShaderStage::Compute, "{op}: `{}` is not a compute entry point", k.entry);
    }
}

#[test]
fn op_all_lists_every_variant_of_every_family_once() {
    let all = Op::all();
    let expected: Vec<Op> = CreationOp::ALL
        .iter()
        .map(|&o| Op::Creation(o))
        .chain(UnaryOp::ALL.iter().map(|&o| Op::Unary(o)))
        .chain(BinaryOp::ALL.iter().map(|&o| Op::Binary(o)))
        .chain([Op::Where])
        .chain(ReduceOp::ALL.iter().map(|&o| Op::Reduce(o)))
        .chain([Op::Matmul])
        .chain(SoftmaxOp::ALL.iter().map(|&o| Op::Softmax(o)))
        .chain(IndexOp::ALL.iter().map(|&o| Op::Index(o)))
        .chain(OptimOp::ALL.iter().map(|&o| Op::Optim(o)))
        .chain(ConvOp::ALL.iter().map(|&o| Op::Conv(o)))
        .chain(PoolOp::ALL.iter().map(|&o| Op::Pool(o)))
        .chain(BatchNormOp::ALL.iter().map(|&o| Op::BatchNorm(o)))
        .chain(AugmentOp::ALL.iter().map(|&o| Op::Augment(o)))
        .chain(EmbeddingOp::ALL.iter().map(|&o| Op::Embedding(o)))
        .chain(RnnOp::ALL.iter().map(|&o| Op::Rnn(o)))
        .chain(LayerNormOp::ALL.iter().map(|&o| Op::LayerNorm(o)))
        // ---- half precision ----
        .chain(wgrad::op::HalfOp::ALL.iter().map(|&o| Op::Half(o)))
        // ---- loss ----
        .chain(wgrad::op::LossOp::ALL.iter().map(|&o| Op::Loss(o)))
        .collect();
    for op in &expected {
        assert!(all.contains(op), "Op::all() lacks {op:?}");
    }
    assert_eq!(all.len(), expected.len(), "Op::all() has duplicates or extras: {all:?}");
    let names: std::collections::HashSet<&str> = all.iter().map(|o| o.name()).collect();
    assert_eq!(names.len(), all.len(), "two ops share a name");
    let kernels: std::collections::HashSet<_> = all.iter().map(|o| o.kernel()).collect();
    assert_eq!(kernels.len(), all.len(), "two ops share a kernel entry point");
}
