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
use wgrad::op::{BinaryOp, CreationOp, IndexOp, Op, OptimOp, ReduceOp, SoftmaxOp, UnaryOp};
use wgrad::optim::{Adagrad, AdamW, Optimizer, RmsProp, Sgd};
use wgrad::testing::{cross_check, Tolerance};
use wgrad::{Device, Tensor};

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
