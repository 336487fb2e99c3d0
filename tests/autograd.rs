//! The gradient test suite: every gradient rule against central finite differences on
//! the CPU and on the GPU, the semantics of the tape (detach, no_grad, accumulation,
//! single use), the release of what backward consumed, and GPU gradients against CPU ones.
//!
//! [`gradcheck`] puts each op mid-graph (`loss = sum(c * f(x) + d)`), so a rule that
//! ignores or mishandles its incoming gradient fails. Inputs are kept small (at most a
//! few dozen elements: every element costs two CPU evaluations) and drawn away from the
//! points where an op is not differentiable (the kink of relu at 0, clamp's bounds, near
//! ties of max), where a finite-difference step straddles the kink and sees neither side's
//! slope. (Exact ties of two are tested on purpose: there the central difference is the
//! mean of the two slopes, which is what the rules give.)
//!
//! Each test collects every failing case before it panics, so one broken rule does not
//! hide the others.

mod common;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use common::{gpu, uniform_values};
use wgrad::autograd::is_grad_enabled;
use wgrad::op::{BinaryOp, UnaryOp};
use wgrad::testing::{compare, gradcheck, GradTolerance, Tolerance};
use wgrad::{no_grad, Device, NoGradGuard, Tensor};

// ---- harness ----

/// A gradcheck input: row-major values and a shape.
type Input = (Vec<f32>, Vec<usize>);

/// Values uniform in `[low, high)` from `seed`.
fn uniform_input(shape: &[usize], low: f32, high: f32, seed: u64) -> Input {
    (uniform_values(shape.iter().product(), low, high, seed), shape.to_vec())
}

/// Magnitudes uniform in `[low, high)` with random signs: at least `low` away from 0,
/// where relu, abs, leaky_relu and elu have their kink and recip, div and log their pole.
fn signed_input(shape: &[usize], low: f32, high: f32, seed: u64) -> Input {
    let n = shape.iter().product();
    let signs = uniform_values(n, -1.0, 1.0, seed ^ 0x51_6e);
    let v =
        uniform_values(n, low, high, seed).iter().zip(&signs).map(|(&m, &s)| if s < 0.0 { -m } else { m }).collect();
    (v, shape.to_vec())
}

/// Values uniform in `[low, high)`, with any value within `margin` of one of `kinks` moved
/// out to `margin` from it, on the side it was on.
fn avoiding(shape: &[usize], low: f32, high: f32, seed: u64, kinks: &[f32], margin: f32) -> Input {
    let (mut v, shape) = uniform_input(shape, low, high, seed);
    for x in &mut v {
        for &k in kinks {
            if (*x - k).abs() < margin {
                *x = if *x < k { k - margin } else { k + margin };
            }
        }
    }
    (v, shape)
}

/// Distinct multiples of 0.1 in random order, plus `offset`: no two elements are within
/// 0.1 of each other, and two inputs with offsets 0 and 0.05 never come within 0.05, so
/// max, min, maximum and minimum see no (near) ties.
fn distinct_input(shape: &[usize], offset: f32, seed: u64) -> Input {
    let n: usize = shape.iter().product();
    let keys = uniform_values(n, 0.0, 1.0, seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| keys[i].total_cmp(&keys[j]));
    let mut v = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        v[i] = (rank as f32 - (n / 2) as f32) * 0.1 + offset;
    }
    (v, shape.to_vec())
}

/// Fixed values: for the cases where the exact numbers matter (ties, kinks avoided by hand).
fn fixed(values: &[f32], shape: &[usize]) -> Input {
    (values.to_vec(), shape.to_vec())
}

/// An `i32` index tensor on the device of `like`.
fn indices(values: &[i32], shape: &[usize], like: &Tensor) -> Tensor {
    Tensor::from_slice(values, shape, like.device())
}

/// An `f32` constant (a condition, a mask) on the device of `like`.
fn constant(values: &[f32], shape: &[usize], like: &Tensor) -> Tensor {
    Tensor::from_slice(values, shape, like.device())
}

/// GPU tests take this lock shared; the memory tests take it alone, so the buffer-pool
/// counters they read move only with their own work. (Every test binary shares one
/// device, and the tests of one binary run in parallel.)
static GPU_EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared_gpu(test: &str) -> Option<(RwLockReadGuard<'static, ()>, Device)> {
    let dev = gpu(test)?;
    Some((GPU_EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner()), dev))
}

fn exclusive_gpu(test: &str) -> Option<(RwLockWriteGuard<'static, ()>, Device)> {
    let dev = gpu(test)?;
    Some((GPU_EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner()), dev))
}

/// The tolerance of every gradcheck here: the default step, and a quarter of the default
/// tolerances (2e-3 absolute, 2e-2 relative). The default lets through rules that are a
/// few percent off, such as a variance over 24 elements that forgets its correction
/// (4%) or a matmul gradient scaled by 1.01; these are caught. The finite differences run
/// in f32 on the CPU (the same bits on every run); their worst error in this suite is
/// 1.3e-4 on a log_softmax gradient of 0.015 (rounding of the f32 outputs, divided by the
/// step), and every case passes with 1.5e-4 and 1.5e-3, a margin of three.
const SUITE_TOL: GradTolerance = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };

/// Runs gradchecks on the CPU and on the GPU and remembers every failure.
struct Checks {
    devices: Vec<Device>,
    failures: Vec<String>,
    count: usize,
}

impl Checks {
    /// Checks `f` against finite differences with [`SUITE_TOL`] on every device.
    fn check(&mut self, name: &str, inputs: &[Input], f: impl Fn(&[Tensor]) -> Tensor) {
        for dev in &self.devices {
            self.count += 1;
            if let Err(e) = gradcheck(name, dev, inputs, SUITE_TOL, &f) {
                self.failures.push(e);
            }
        }
    }
}

/// Runs the checks `body` adds, on the CPU and (when there is one) the GPU, and panics
/// listing every failure.
fn gradchecks(test: &str, body: impl FnOnce(&mut Checks)) {
    let gpu = shared_gpu(test);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu.as_ref().map(|(_, d)| d.clone()));
    let mut checks = Checks { devices, failures: Vec::new(), count: 0 };
    body(&mut checks);
    assert!(checks.count > 0, "{test}: no checks ran");
    assert!(
        checks.failures.is_empty(),
        "{test}: {} of {} gradchecks failed:\n{}",
        checks.failures.len(),
        checks.count,
        checks.failures.join("\n")
    );
}

/// The CPU, and the GPU when there is one (for the semantics tests).
fn devices(test: &str) -> (Option<RwLockReadGuard<'static, ()>>, Vec<Device>) {
    let gpu = shared_gpu(test);
    let mut devs = vec![Device::cpu()];
    let guard = gpu.map(|(g, d)| {
        devs.push(d);
        g
    });
    (guard, devs)
}

// ---- 1. every gradient rule against finite differences ----

type UnaryFn = fn(&Tensor) -> Tensor;

/// The gradchecks of one unary op: a name, an input drawn from the op's smooth domain,
/// and the call. An exhaustive `match`, so a new unary op does not compile without its
/// cases (or a written reason why it has none).
fn unary_cases(op: UnaryOp) -> Vec<(&'static str, Input, UnaryFn)> {
    let shape = [4, 6];
    match op {
        // Only `contiguous` and `cat` run the copy kernel, and they record `Reshape` and
        // `Cat`: see `shape_op_gradients`.
        UnaryOp::Copy => vec![],
        UnaryOp::Neg => vec![("neg", uniform_input(&shape, -2.0, 2.0, 1), |x| x.neg())],
        UnaryOp::Abs => vec![("abs", signed_input(&shape, 0.05, 2.0, 2), |x| x.abs())],
        UnaryOp::Exp => vec![("exp", uniform_input(&shape, -2.0, 2.0, 3), |x| x.exp())],
        UnaryOp::Log => vec![("log", uniform_input(&shape, 0.2, 3.0, 4), |x| x.log())],
        UnaryOp::Sqrt => vec![("sqrt", uniform_input(&shape, 0.2, 3.0, 5), |x| x.sqrt())],
        UnaryOp::Rsqrt => vec![("rsqrt", uniform_input(&shape, 0.2, 3.0, 6), |x| x.rsqrt())],
        UnaryOp::Square => vec![("square", uniform_input(&shape, -2.0, 2.0, 7), |x| x.square())],
        UnaryOp::Recip => vec![
            ("recip", signed_input(&shape, 0.3, 2.0, 8), |x| x.recip()),
            // `s / x` lowers to recip then affine.
            ("scalar / x", signed_input(&shape, 0.3, 2.0, 9), |x| 2.0 / x),
        ],
        UnaryOp::Sin => vec![("sin", uniform_input(&shape, -3.0, 3.0, 10), |x| x.sin())],
        UnaryOp::Cos => vec![("cos", uniform_input(&shape, -3.0, 3.0, 11), |x| x.cos())],
        UnaryOp::Affine => vec![
            ("affine", uniform_input(&shape, -2.0, 2.0, 12), |x| x.affine(1.7, -0.3)),
            ("add_scalar", uniform_input(&shape, -2.0, 2.0, 13), |x| x.add_scalar(0.7)),
            ("mul_scalar", uniform_input(&shape, -2.0, 2.0, 14), |x| x.mul_scalar(-1.3)),
            ("scalar - x", uniform_input(&shape, -2.0, 2.0, 15), |x| 2.0 - x),
            ("x / scalar", uniform_input(&shape, -2.0, 2.0, 16), |x| x / 4.0),
        ],
        UnaryOp::PowScalar => vec![
            ("powf 2.5", uniform_input(&shape, 0.2, 2.5, 17), |x| x.powf(2.5)),
            ("powf -1.5", uniform_input(&shape, 0.3, 2.5, 18), |x| x.powf(-1.5)),
            // An integer exponent takes negative bases too.
            ("powf 3 of mixed signs", uniform_input(&shape, -2.0, 2.0, 19), |x| x.powf(3.0)),
        ],
        UnaryOp::Clamp => {
            vec![("clamp", avoiding(&shape, -2.0, 2.0, 20, &[-0.5, 1.25], 0.05), |x| x.clamp(-0.5, 1.25))]
        }
        UnaryOp::Relu => vec![("relu", signed_input(&shape, 0.05, 2.0, 21), |x| x.relu())],
        UnaryOp::LeakyRelu => vec![("leaky_relu", signed_input(&shape, 0.05, 2.0, 22), |x| x.leaky_relu(0.1))],
        UnaryOp::Elu => vec![("elu", signed_input(&shape, 0.05, 2.0, 23), |x| x.elu(1.3))],
        UnaryOp::Sigmoid => vec![("sigmoid", uniform_input(&shape, -4.0, 4.0, 24), |x| x.sigmoid())],
        UnaryOp::Tanh => vec![("tanh", uniform_input(&shape, -3.0, 3.0, 25), |x| x.tanh())],
        UnaryOp::Gelu => vec![("gelu", uniform_input(&shape, -3.0, 3.0, 26), |x| x.gelu())],
        UnaryOp::Softplus => vec![
            ("softplus", uniform_input(&shape, -5.0, 5.0, 27), |x| x.softplus()),
            // Above the threshold of 20 softplus(x) is x itself; both sides of it.
            ("softplus above 20", avoiding(&shape, 17.0, 26.0, 28, &[20.0], 0.05), |x| x.softplus()),
        ],
        UnaryOp::Silu => vec![("silu", uniform_input(&shape, -4.0, 4.0, 29), |x| x.silu())],
        // The derivative of gelu, used by gelu's rule; it has no rule of its own (no
        // second derivatives): see `gelu_derivative_has_no_gradient_and_says_so`.
        UnaryOp::GeluGrad => vec![],
    }
}

#[test]
fn unary_and_activation_gradients() {
    gradchecks("unary_and_activation_gradients", |c| {
        for &op in UnaryOp::ALL {
            for (name, input, f) in unary_cases(op) {
                c.check(name, &[input], |x| f(&x[0]));
            }
        }
        // A rule applied to a strided view of its input.
        c.check("exp of a transposed view", &[uniform_input(&[3, 5], -2.0, 2.0, 30)], |x| x[0].t().exp());
    });
}

#[test]
#[should_panic(expected = "no second derivatives")]
fn gelu_derivative_has_no_gradient_and_says_so() {
    let x = Tensor::from_slice(&[0.5f32, -1.0], &[2], &Device::cpu()).requires_grad();
    x.gelu_derivative().sum_all().backward();
}

/// The operand domains of a binary op for its gradcheck; `None` for comparisons, which
/// carry no gradient (see `comparisons_and_arg_reductions_carry_no_gradient`).
fn binary_inputs(op: BinaryOp, a: &[usize], b: &[usize], seed: u64) -> Option<(Input, Input)> {
    Some(match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => {
            (uniform_input(a, -2.0, 2.0, seed), uniform_input(b, -2.0, 2.0, seed + 1))
        }
        BinaryOp::Div => (uniform_input(a, -2.0, 2.0, seed), signed_input(b, 0.5, 2.0, seed + 1)),
        // A positive base, so the exponent's gradient (a^b ln a) is defined.
        BinaryOp::Pow => (uniform_input(a, 0.5, 2.0, seed), uniform_input(b, -2.0, 2.0, seed + 1)),
        // Two grids 0.05 apart: no pair of operands is closer than that.
        BinaryOp::Maximum | BinaryOp::Minimum => (distinct_input(a, 0.0, seed), distinct_input(b, 0.05, seed + 1)),
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => return None,
    })
}

fn apply_binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
    match op {
        BinaryOp::Add => a.add(b),
        BinaryOp::Sub => a.sub(b),
        BinaryOp::Mul => a.mul(b),
        BinaryOp::Div => a.div(b),
        BinaryOp::Pow => a.pow(b),
        BinaryOp::Maximum => a.maximum(b),
        BinaryOp::Minimum => a.minimum(b),
        BinaryOp::Eq => a.eq(b),
        BinaryOp::Ne => a.ne(b),
        BinaryOp::Lt => a.lt(b),
        BinaryOp::Le => a.le(b),
        BinaryOp::Gt => a.gt(b),
        BinaryOp::Ge => a.ge(b),
    }
}

#[test]
fn binary_gradients_with_broadcasting() {
    // Same shapes, and broadcasting in both directions: the gradient of the smaller
    // operand must be summed back to its shape.
    let shapes: [(&[usize], &[usize]); 7] = [
        (&[2, 3], &[2, 3]),
        (&[2, 3], &[3]),
        (&[3], &[2, 3]),
        (&[2, 1, 4], &[3, 1]),
        (&[3, 1], &[2, 1, 4]),
        // A 0-dimensional operand: its gradient is the sum of everything.
        (&[2, 3], &[]),
        (&[], &[2, 3]),
    ];
    gradchecks("binary_gradients_with_broadcasting", |c| {
        for &op in BinaryOp::ALL {
            for (i, &(sa, sb)) in shapes.iter().enumerate() {
                let Some((a, b)) = binary_inputs(op, sa, sb, 100 + 10 * i as u64) else { continue };
                let name = format!("{} {sa:?} with {sb:?}", op.name());
                c.check(&name, &[a, b], |x| apply_binary(op, &x[0], &x[1]));
            }
        }
        // Operator overloads on tensors go through the same rules.
        let (a, b) = (uniform_input(&[2, 3], -2.0, 2.0, 150), signed_input(&[3], 0.5, 2.0, 151));
        c.check("a * b - a / b + b", &[a, b], |x| &(&x[0] * &x[1]) - &(&x[0] / &x[1]) + &x[1]);
        // Exact ties split the gradient evenly; a central difference at a tie sees the
        // average of the one-sided slopes, which is the same half.
        let a = fixed(&[0.5, -1.0, 2.0, 0.25, 1.5, -0.75], &[2, 3]);
        let b = fixed(&[0.5, 1.0, 2.0], &[3]);
        c.check("maximum with ties", &[a.clone(), b.clone()], |x| x[0].maximum(&x[1]));
        c.check("minimum with ties", &[a, b], |x| x[0].minimum(&x[1]));
        // The same tensor on both sides: both halves reach it.
        c.check("maximum(x, x)", &[uniform_input(&[5], -2.0, 2.0, 152)], |x| x[0].maximum(&x[0]));
    });
}

#[test]
fn where_gradients_with_broadcast_condition() {
    gradchecks("where_gradients_with_broadcast_condition", |c| {
        let a = || uniform_input(&[2, 3], -2.0, 2.0, 200);
        // The condition broadcast along rows, then along columns.
        c.check("where cond [3]", &[a(), uniform_input(&[2, 3], -2.0, 2.0, 201)], |x| {
            x[0].where_cond(&constant(&[1.0, 0.0, 1.0], &[3], &x[0]), &x[1])
        });
        c.check("where cond [2, 1], other [3]", &[a(), uniform_input(&[3], -2.0, 2.0, 202)], |x| {
            x[0].where_cond(&constant(&[0.0, 1.0], &[2, 1], &x[0]), &x[1])
        });
        // The condition alone makes the output larger than both operands: both gradients
        // are summed back over the rows it added.
        c.check(
            "where cond [2, 1], both [3]",
            &[uniform_input(&[3], -2.0, 2.0, 203), uniform_input(&[3], -2.0, 2.0, 204)],
            |x| x[0].where_cond(&constant(&[1.0, 0.0], &[2, 1], &x[0]), &x[1]),
        );
    });
}

#[test]
fn reduction_gradients() {
    // Distinct values (no two within 0.1), so max and min have no near ties.
    let x = [distinct_input(&[2, 3, 4], 0.03, 300)];
    // One axis, negative axes, several (in any order, or named twice), all.
    let axes_sets: [&[isize]; 6] = [&[1], &[-1], &[0, 2], &[1, -2], &[2, 0, 1], &[0, 1, 2]];
    gradchecks("reduction_gradients", |c| {
        for axes in axes_sets {
            for keepdim in [false, true] {
                let k = if keepdim { "keepdim" } else { "" };
                c.check(&format!("sum {axes:?} {k}"), &x, |t| t[0].sum(axes, keepdim));
                c.check(&format!("mean {axes:?} {k}"), &x, |t| t[0].mean(axes, keepdim));
                c.check(&format!("max {axes:?} {k}"), &x, |t| t[0].max(axes, keepdim));
                c.check(&format!("min {axes:?} {k}"), &x, |t| t[0].min(axes, keepdim));
                for correction in [0.0, 1.0] {
                    c.check(&format!("var {axes:?} correction {correction} {k}"), &x, |t| {
                        t[0].var(axes, correction, keepdim)
                    });
                }
            }
        }
        c.check("sum_all", &x, |t| t[0].sum_all());
        c.check("mean_all", &x, |t| t[0].mean_all());
        c.check("max_all", &x, |t| t[0].max_all());
        c.check("min_all", &x, |t| t[0].min_all());
        c.check("var_all 0", &x, |t| t[0].var_all(0.0));
        c.check("var_all 1", &x, |t| t[0].var_all(1.0));
        // A reduction of a strided view (the reduction moves axes and copies).
        c.check("sum of a permuted view", &x, |t| t[0].permute(&[2, 0, 1]).sum(&[0, 2], false));
        // Two exact ties in a row share the gradient; a central difference at such a tie
        // also sees half the slope.
        let ties = [fixed(&[1.0, 3.0, 3.0, 2.0, 0.5, 2.0], &[2, 3])];
        c.check("max with two tied elements", &ties, |t| t[0].max(&[1], false));
        c.check("min with two tied elements", &ties, |t| t[0].neg().min(&[1], false));
    });
}

#[test]
fn matmul_gradients() {
    let m = |shape: &[usize], seed| uniform_input(shape, -1.0, 1.0, seed);
    gradchecks("matmul_gradients", |c| {
        c.check("matmul 2-D", &[m(&[3, 4], 400), m(&[4, 5], 401)], |x| x[0].matmul(&x[1]));
        c.check("matmul batched, broadcast batch", &[m(&[2, 1, 3, 4], 402), m(&[3, 4, 5], 403)], |x| {
            x[0].matmul(&x[1])
        });
        c.check("matmul batched, 2-D rhs", &[m(&[2, 3, 4], 404), m(&[4, 2], 405)], |x| x[0].matmul(&x[1]));
        c.check("matmul 1-D x 2-D", &[m(&[4], 406), m(&[4, 5], 407)], |x| x[0].matmul(&x[1]));
        c.check("matmul 2-D x 1-D", &[m(&[3, 4], 408), m(&[4], 409)], |x| x[0].matmul(&x[1]));
        c.check("matmul 1-D x 1-D", &[m(&[4], 410), m(&[4], 411)], |x| x[0].matmul(&x[1]));
        c.check("matmul 1-D x batched", &[m(&[4], 412), m(&[2, 4, 3], 413)], |x| x[0].matmul(&x[1]));
        // Transposed views are multiplied without a copy.
        c.check("matmul of transposed views", &[m(&[4, 3], 414), m(&[5, 4], 415)], |x| x[0].t().matmul(&x[1].t()));
        c.check("matmul, batched transposed rhs", &[m(&[2, 3, 4], 416), m(&[2, 5, 4], 417)], |x| {
            x[0].matmul(&x[1].transpose(1, 2))
        });
        // Both operands the same tensor.
        c.check("x^T x", &[m(&[3, 4], 418)], |x| x[0].t().matmul(&x[0]));
    });
}

#[test]
fn softmax_gradients() {
    let x = [uniform_input(&[2, 3, 4], -2.0, 2.0, 500)];
    gradchecks("softmax_gradients", |c| {
        for axis in [0, 1, 2, -1] {
            c.check(&format!("softmax axis {axis}"), &x, |t| t[0].softmax(axis));
            c.check(&format!("log_softmax axis {axis}"), &x, |t| t[0].log_softmax(axis));
        }
        c.check("softmax of a transposed view", &x, |t| t[0].transpose(0, 2).softmax(1));
    });
}

#[test]
fn indexing_gradients() {
    gradchecks("indexing_gradients", |c| {
        // Repeated indices accumulate in the gradient; index 1 is never picked.
        c.check("index_select axis 0, repeats", &[uniform_input(&[4, 3], -2.0, 2.0, 600)], |x| {
            x[0].index_select(0, &indices(&[2, 0, 2, 3, 2], &[5], &x[0]))
        });
        c.check("index_select axis 1, repeats", &[uniform_input(&[3, 4], -2.0, 2.0, 601)], |x| {
            x[0].index_select(-1, &indices(&[3, 3, 0], &[3], &x[0]))
        });
        c.check("gather axis 1, repeats", &[uniform_input(&[3, 4], -2.0, 2.0, 602)], |x| {
            x[0].gather(1, &indices(&[0, 0, 3, 2, 1, 2], &[3, 2], &x[0]))
        });
        // An index smaller than the input on the other axis too.
        c.check("gather axis 0, smaller index", &[uniform_input(&[4, 3], -2.0, 2.0, 603)], |x| {
            x[0].gather(0, &indices(&[3, 0, 3, 1], &[2, 2], &x[0]))
        });
        // Gradients with respect to self and to src.
        c.check(
            "index_add axis 0, repeats",
            &[uniform_input(&[4, 3], -2.0, 2.0, 604), uniform_input(&[3, 3], -2.0, 2.0, 605)],
            |x| x[0].index_add(0, &indices(&[1, 3, 1], &[3], &x[0]), &x[1]),
        );
        c.check(
            "index_add axis 1",
            &[uniform_input(&[2, 4], -2.0, 2.0, 606), uniform_input(&[2, 2], -2.0, 2.0, 607)],
            |x| x[0].index_add(1, &indices(&[2, 0], &[2], &x[0]), &x[1]),
        );
        c.check(
            "scatter_add axis 1, repeats",
            &[uniform_input(&[3, 4], -2.0, 2.0, 608), uniform_input(&[2, 3], -2.0, 2.0, 609)],
            |x| x[0].scatter_add(1, &indices(&[0, 0, 3, 2, 1, 2], &[2, 3], &x[0]), &x[1]),
        );
        c.check(
            "scatter_add axis 0",
            &[uniform_input(&[3, 2], -2.0, 2.0, 610), uniform_input(&[2, 2], -2.0, 2.0, 611)],
            |x| x[0].scatter_add(0, &indices(&[2, 2, 0, 1], &[2, 2], &x[0]), &x[1]),
        );
    });
}

#[test]
fn shape_op_gradients() {
    let u = |shape: &[usize], seed| uniform_input(shape, -2.0, 2.0, seed);
    gradchecks("shape_op_gradients", |c| {
        c.check("reshape (view)", &[u(&[2, 6], 700)], |x| x[0].reshape(&[3, -1]));
        c.check("reshape of a transposed view (copy)", &[u(&[3, 4], 701)], |x| {
            let t = x[0].t();
            assert!(!t.is_contiguous());
            t.reshape(&[2, 6])
        });
        c.check("permute", &[u(&[2, 3, 4], 702)], |x| x[0].permute(&[2, 0, 1]));
        c.check("transpose", &[u(&[2, 3, 4], 703)], |x| x[0].transpose(0, 2));
        c.check("transpose negative axes", &[u(&[2, 3, 4], 704)], |x| x[0].transpose(-1, -2));
        c.check("t", &[u(&[3, 4], 705)], |x| x[0].t());
        // Narrow at the start, in the middle and at the end: each zero padding on its own.
        c.check("narrow at start", &[u(&[3, 5], 706)], |x| x[0].narrow(1, 0, 2));
        c.check("narrow in the middle", &[u(&[3, 5], 707)], |x| x[0].narrow(1, 1, 3));
        c.check("narrow at end", &[u(&[3, 5], 708)], |x| x[0].narrow(-1, 3, 2));
        c.check("slice", &[u(&[4, 3], 709)], |x| x[0].slice(0, 1..3));
        c.check("squeeze", &[u(&[2, 1, 3], 710)], |x| x[0].squeeze(1));
        c.check("squeeze last", &[u(&[3, 1], 711)], |x| x[0].squeeze(-1));
        c.check("unsqueeze", &[u(&[2, 3], 712)], |x| x[0].unsqueeze(1));
        c.check("unsqueeze last", &[u(&[2, 3], 713)], |x| x[0].unsqueeze(2));
        c.check("broadcast_to new leading axes", &[u(&[3], 714)], |x| x[0].broadcast_to(&[2, 4, 3]));
        c.check("broadcast_to a size-1 axis", &[u(&[2, 1, 3], 715)], |x| x[0].broadcast_to(&[2, 4, 3]));
        c.check("contiguous of a permuted view", &[u(&[2, 3, 4], 716)], |x| {
            let p = x[0].permute(&[1, 2, 0]);
            assert!(!p.is_contiguous());
            p.contiguous()
        });
        c.check("contiguous of a contiguous tensor", &[u(&[2, 3], 717)], |x| x[0].contiguous());
        // Three inputs, the middle one a transposed (non-contiguous) view.
        c.check("cat axis 0", &[u(&[2, 3], 718), u(&[3, 3], 719), u(&[1, 3], 720)], |x| {
            Tensor::cat(&[x[0].clone(), x[1].t(), x[2].clone()], 0)
        });
        c.check("cat axis 1", &[u(&[2, 3], 721), u(&[2, 4], 722), u(&[2, 1], 723)], |x| {
            Tensor::cat(&[x[0].clone(), x[1].narrow(1, 1, 2), x[2].clone()], -1)
        });
        // The same tensor twice: both slices of the gradient reach it.
        c.check("cat of x with itself", &[u(&[2, 3], 724)], |x| Tensor::cat(&[x[0].clone(), x[0].clone()], 1));
        for axis in [0, 1, 2] {
            c.check(&format!("stack axis {axis}"), &[u(&[2, 3], 725), u(&[2, 3], 726), u(&[2, 3], 727)], |x| {
                Tensor::stack(&[x[0].clone(), x[1].clone(), x[2].clone()], axis)
            });
        }
        c.check("flatten_from 1", &[u(&[2, 3, 2], 728)], |x| x[0].flatten_from(1));
        c.check("flatten_from 0 of a permuted view", &[u(&[2, 3, 2], 729)], |x| {
            x[0].permute(&[2, 1, 0]).flatten_from(0)
        });
        // A chain of views whose incoming gradients are themselves strided.
        c.check("view chain", &[u(&[2, 3, 4], 730)], |x| {
            x[0].permute(&[2, 0, 1]).narrow(0, 1, 2).reshape(&[2, 6]).t().unsqueeze(0)
        });
    });
}

/// A two-layer perceptron's loss: relu hidden layer, log_softmax, and the negative
/// log-likelihood of fixed labels picked with gather. Inputs: x, w1, b1, w2, b2.
fn mlp_loss(p: &[Tensor], labels: &[i32]) -> Tensor {
    let (x, w1, b1, w2, b2) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
    let labels = indices(labels, &[labels.len(), 1], x);
    let h = x.matmul(w1).add(b1).relu();
    let logp = h.matmul(w2).add(b2).log_softmax(1);
    logp.gather(1, &labels).mean_all().neg()
}

#[test]
fn mlp_gradients() {
    let inputs = [
        uniform_input(&[4, 3], -1.0, 1.0, 800),
        uniform_input(&[3, 5], -1.0, 1.0, 801),
        uniform_input(&[5], -0.5, 0.5, 802),
        uniform_input(&[5, 3], -1.0, 1.0, 803),
        uniform_input(&[3], -0.5, 0.5, 804),
    ];
    let labels = [2, 0, 1, 2];
    // The check is only meaningful away from relu's kink: with these seeds no
    // pre-activation is near 0, so no finite-difference step crosses it.
    let pre = no_grad(|| {
        let cpu = Device::cpu();
        let t = |i: usize| Tensor::from_slice(&inputs[i].0, &inputs[i].1, &cpu);
        t(0).matmul(&t(1)).add(&t(2)).to_vec::<f32>()
    });
    let nearest = pre.iter().map(|v| v.abs()).fold(f32::INFINITY, f32::min);
    assert!(nearest > 0.01, "a relu pre-activation is {nearest}, too close to the kink; pick other seeds");
    gradchecks("mlp_gradients", |c| {
        c.check("mlp with relu, log_softmax and gather", &inputs, |p| mlp_loss(p, &labels));
    });
}

#[test]
fn gradcheck_rejects_a_wrong_gradient() {
    // x.detach() * x has gradient x by the tape but 2x by finite differences.
    let x = uniform_input(&[3], 0.5, 2.0, 900);
    let err = gradcheck("wrong", &Device::cpu(), &[x], GradTolerance::default(), |t| t[0].detach().mul(&t[0]));
    assert!(err.is_err(), "gradcheck accepted a gradient that is half the true one");
    // The suite's tolerance also rejects a gradient 1% off: x^2 + 0.02 x.detach() x has
    // gradient 2.04 x, the tape gives 2.02 x.
    let x = uniform_input(&[3], 0.5, 2.0, 901);
    let err = gradcheck("1% off", &Device::cpu(), &[x], SUITE_TOL, |t| {
        t[0].square().add(&t[0].detach().mul(&t[0]).mul_scalar(0.02))
    });
    assert!(err.is_err(), "the suite's tolerance accepted a gradient 1% off");
}

// ---- 2. semantics of the tape ----

#[test]
fn detach_stops_the_gradient() {
    let (_guard, devs) = devices("detach_stops_the_gradient");
    for dev in devs {
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0], &[3], &dev).requires_grad();
        let d = x.detach();
        assert!(!d.is_tracked());
        // Only the tracked factor contributes: d(x.detach() * x)/dx = x, not 2x.
        let grads = d.mul(&x).sum_all().backward();
        assert_eq!(grads.wrt(&x).to_vec::<f32>(), vec![1.0, -2.0, 3.0]);
        // A loss that depends on x only through a detached copy gives it no gradient.
        let y = Tensor::from_slice(&[0.5f32, 0.5, 0.5], &[3], &dev).requires_grad();
        let grads = x.exp().detach().mul(&y).sum_all().backward();
        assert!(grads.get(&x).is_none());
        assert_eq!(grads.wrt(&y).to_vec::<f32>(), x.exp().to_vec::<f32>());
    }
}

#[test]
fn no_grad_records_nothing_and_nesting_restores_the_state() {
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &Device::cpu()).requires_grad();
    assert!(is_grad_enabled());
    let y = no_grad(|| {
        assert!(!is_grad_enabled());
        x.exp().mul(&x).sum_all()
    });
    assert!(!y.is_tracked(), "an op under no_grad was recorded");
    assert!(is_grad_enabled(), "no_grad did not restore recording");
    {
        let _outer = NoGradGuard::new();
        assert!(!x.square().is_tracked());
        no_grad(|| assert!(!x.sin().is_tracked()));
        // Leaving the inner scope must not switch recording back on.
        assert!(!is_grad_enabled(), "leaving a nested no_grad re-enabled recording");
        assert!(!x.add(&x).is_tracked());
        {
            let _inner = NoGradGuard::new();
            assert!(!is_grad_enabled());
        }
        assert!(!is_grad_enabled(), "dropping a nested guard re-enabled recording");
    }
    assert!(is_grad_enabled(), "dropping the outer guard did not restore recording");
    assert!(x.square().is_tracked());
    // requires_grad under no_grad still marks a leaf; only ops are not recorded.
    let z = no_grad(|| Tensor::ones(&[2], &Device::cpu()).requires_grad());
    assert!(z.is_tracked());
    // A panic inside no_grad still restores recording (the guard is dropped on unwind).
    let _ = std::panic::catch_unwind(|| no_grad(|| panic!("inside no_grad")));
    assert!(is_grad_enabled(), "a panic inside no_grad left recording off");
}

#[test]
fn a_tensor_used_twice_accumulates_both_contributions() {
    let (_guard, devs) = devices("a_tensor_used_twice_accumulates_both_contributions");
    for dev in devs {
        let v = [1.5f32, -2.0, 0.25];
        let x = Tensor::from_slice(&v, &[3], &dev).requires_grad();
        let grads = x.mul(&x).sum_all().backward();
        assert_eq!(grads.wrt(&x).to_vec::<f32>(), v.iter().map(|a| 2.0 * a).collect::<Vec<_>>());
        // Two different paths that meet again: d(exp(x) + 3 sin(x))/dx = exp(x) + 3 cos(x).
        let grads = x.exp().add(&x.sin().mul_scalar(3.0)).sum_all().backward();
        let want: Vec<f32> = v.iter().map(|a| a.exp() + 3.0 * a.cos()).collect();
        compare(&grads.wrt(&x).to_vec::<f32>(), &want, Tolerance::Elementwise { atol: 1e-5, rtol: 1e-5 })
            .unwrap_or_else(|e| panic!("exp(x) + 3 sin(x) on {dev}: {e}"));
    }
}

#[test]
fn a_leaf_the_loss_does_not_depend_on_has_no_gradient() {
    let dev = Device::cpu();
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &dev).requires_grad();
    let unused = Tensor::from_slice(&[3.0f32], &[1], &dev).requires_grad();
    let untracked = Tensor::from_slice(&[4.0f32, 5.0], &[2], &dev);
    let grads = x.mul(&untracked).sum_all().backward();
    assert!(grads.get(&unused).is_none());
    assert!(grads.get(&untracked).is_none());
    assert_eq!(grads.wrt(&x).to_vec::<f32>(), vec![4.0, 5.0]);
    assert_eq!(grads.len(), 1, "only the leaf the loss depends on has a gradient");
    // `wrt` says why there is none.
    let msg = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grads.wrt(&unused);
    }))
    .expect_err("wrt of an unused leaf did not panic");
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("does not depend on it"), "unhelpful message: {msg}");
    // A loss computed from no tracked tensor at all gives no gradients.
    assert!(untracked.sum_all().backward().is_empty());
}

#[test]
#[should_panic(expected = "already used")]
fn backward_twice_through_one_graph_panics() {
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &Device::cpu()).requires_grad();
    let loss = x.exp().sum_all();
    let grads = loss.backward();
    assert!(grads.get(&x).is_some());
    loss.backward();
}

#[test]
#[should_panic(expected = "already used")]
fn a_second_loss_through_a_consumed_subgraph_panics() {
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &Device::cpu()).requires_grad();
    let shared = x.exp();
    let first = shared.sum_all();
    let second = shared.mean_all();
    first.backward();
    second.backward();
}

#[test]
fn comparisons_and_arg_reductions_carry_no_gradient() {
    let (_guard, devs) = devices("comparisons_and_arg_reductions_carry_no_gradient");
    for dev in devs {
        let x = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 0.5], &[2, 2], &dev).requires_grad();
        let y = Tensor::from_slice(&[0.0f32, 0.0, 4.0, 0.5], &[2, 2], &dev).requires_grad();
        for &op in BinaryOp::ALL {
            let is_comparison =
                matches!(op, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge);
            if is_comparison {
                assert!(!apply_binary(op, &x, &y).is_tracked(), "{} of tracked tensors was recorded", op.name());
            }
        }
        assert!(!x.argmax(1, false).is_tracked());
        assert!(!x.argmin(0, true).is_tracked());
        assert!(!x.argmax_all().is_tracked());
        // A mask from a comparison is a constant factor: d(x * (x > 0))/dx = (x > 0).
        let zero = Tensor::scalar(0.0, &dev);
        let grads = x.mul(&x.gt(&zero)).sum_all().backward();
        assert_eq!(grads.wrt(&x).to_vec::<f32>(), vec![1.0, 0.0, 1.0, 1.0]);
        // Using the argmax to pick elements passes the gradient only through the values.
        let picked = x.gather(1, &x.argmax(1, true));
        let grads = picked.sum_all().backward();
        assert_eq!(grads.wrt(&x).to_vec::<f32>(), vec![1.0, 0.0, 1.0, 0.0]);
    }
}

#[test]
#[should_panic(expected = "backward_with")]
fn backward_on_a_non_scalar_panics() {
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &Device::cpu()).requires_grad();
    x.exp().backward();
}

#[test]
fn backward_with_gives_the_gradient_of_a_weighted_sum() {
    let (_guard, devs) = devices("backward_with_gives_the_gradient_of_a_weighted_sum");
    for dev in devs {
        let v = [1.0f32, -2.0, 3.0, 0.5, 2.0, -1.0];
        let w = [0.5f32, 1.0, -1.0, 2.0, 0.0, 3.0];
        let x = Tensor::from_slice(&v, &[2, 3], &dev).requires_grad();
        let y = x.square();
        let grads = y.backward_with(&Tensor::from_slice(&w, &[2, 3], &dev));
        let want: Vec<f32> = v.iter().zip(&w).map(|(a, g)| 2.0 * a * g).collect();
        assert_eq!(grads.wrt(&x).to_vec::<f32>(), want);
        // Through a view and a broadcast: y = x^T + b with b of shape [2].
        let b = Tensor::from_slice(&[1.0f32, 2.0], &[2], &dev).requires_grad();
        let y = x.t().add(&b);
        let g: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let grads = y.backward_with(&Tensor::from_slice(&g, &[3, 2], &dev));
        assert_eq!(grads.wrt(&x).to_vec::<f32>(), vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        assert_eq!(grads.wrt(&b).to_vec::<f32>(), vec![6.0, 9.0]);
    }
}

#[test]
#[should_panic(expected = "backward_with: gradient of shape")]
fn backward_with_a_gradient_of_the_wrong_shape_panics() {
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &Device::cpu()).requires_grad();
    x.exp().backward_with(&Tensor::ones(&[3], &Device::cpu()));
}

#[test]
fn requires_grad_on_a_result_makes_a_new_leaf() {
    let dev = Device::cpu();
    let x = Tensor::from_slice(&[1.0f32, 2.0], &[2], &dev).requires_grad();
    // Marking a leaf again keeps its identity.
    assert_eq!(x.clone().requires_grad().grad_id(), x.grad_id());
    let y = x.exp();
    let y_id = y.grad_id();
    let leaf = y.requires_grad();
    assert!(leaf.is_tracked());
    assert_ne!(leaf.grad_id(), y_id, "requires_grad on an op result kept the op's node");
    let grads = leaf.mul_scalar(3.0).sum_all().backward();
    // The new leaf has its gradient; nothing flows past it to x.
    assert_eq!(grads.wrt(&leaf).to_vec::<f32>(), vec![3.0, 3.0]);
    assert!(grads.get(&x).is_none());
    // An untracked tensor becomes a leaf too.
    let z = Tensor::from_slice(&[1.0f32], &[1], &dev);
    assert!(!z.is_tracked());
    assert!(z.requires_grad().is_tracked());
}

// ---- 3. backward frees what it consumed ----

/// A training-like step on the GPU: forward through a small MLP, backward, and an SGD
/// update under no_grad that builds new parameter leaves. Returns the loss tensor (the
/// root of the graph backward has walked) and its value.
fn sgd_step(params: &mut Vec<Tensor>, x: &Tensor, labels: &[i32], lr: f32) -> (Tensor, f32) {
    let mut inputs = vec![x.clone()];
    inputs.extend(params.iter().cloned());
    let loss = mlp_loss(&inputs, labels);
    let grads = loss.backward();
    let updated: Vec<Tensor> =
        no_grad(|| params.iter().map(|p| p.sub(&grads.wrt(p).mul_scalar(lr))).collect::<Vec<_>>());
    *params = updated.into_iter().map(|p| p.detach().requires_grad()).collect();
    let value = loss.item();
    (loss, value)
}

fn mlp_params(dev: &Device) -> (Tensor, Vec<i32>, Vec<Tensor>) {
    let cpu = Device::cpu();
    let x = Tensor::randn(&[8, 6], 1, &cpu).to_device(dev);
    let labels = vec![0, 1, 2, 3, 0, 1, 2, 3];
    let params = vec![
        Tensor::randn(&[6, 16], 2, &cpu).mul_scalar(0.4),
        Tensor::zeros(&[16], &cpu),
        Tensor::randn(&[16, 4], 3, &cpu).mul_scalar(0.4),
        Tensor::zeros(&[4], &cpu),
    ];
    let params = params.into_iter().map(|p| p.to_device(dev).requires_grad()).collect();
    (x, labels, params)
}

#[test]
fn training_steps_keep_the_gpu_buffer_pool_flat() {
    let Some((_exclusive, dev)) = exclusive_gpu("training_steps_keep_the_gpu_buffer_pool_flat") else { return };
    let (x, labels, mut params) = mlp_params(&dev);
    let mut losses = Vec::new();
    // Warm up so every size class a step needs exists.
    for _ in 0..3 {
        losses.push(sgd_step(&mut params, &x, &labels, 0.5).1);
    }
    let before = dev.pool_stats().unwrap();
    let steps = 27;
    for _ in 0..steps {
        losses.push(sgd_step(&mut params, &x, &labels, 0.5).1);
    }
    let after = dev.pool_stats().unwrap();
    // A step runs dozens of kernels, each with a fresh output: without reuse the loop
    // would create hundreds of buffers.
    let created = after.buffers_created - before.buffers_created;
    assert!(created < 4, "{created} buffers created over {steps} identical steps: {before:?} -> {after:?}");
    assert!(after.buffers_reused > before.buffers_reused + 20 * steps);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(losses[losses.len() - 1] < 0.8 * losses[0], "training did not reduce the loss: {losses:?}");
}

#[test]
fn backward_releases_the_saved_tensors_even_while_the_loss_lives() {
    let Some((_exclusive, dev)) = exclusive_gpu("backward_releases_the_saved_tensors_even_while_the_loss_lives") else {
        return;
    };
    let (x, labels, mut params) = mlp_params(&dev);
    // Every step's loss tensor, the root of its graph, is kept (as a careless training
    // loop that collects losses would). After backward it must pin only its own scalar:
    // a graph that still held its saved tensors would pin every activation, gradient
    // input and old parameter of the step (14 more buffers a step, measured).
    let mut roots = Vec::new();
    for _ in 0..3 {
        roots.push(sgd_step(&mut params, &x, &labels, 0.5).0);
    }
    let before = dev.pool_stats().unwrap();
    let steps = 20;
    for _ in 0..steps {
        roots.push(sgd_step(&mut params, &x, &labels, 0.5).0);
    }
    let after = dev.pool_stats().unwrap();
    let created = after.buffers_created - before.buffers_created;
    assert!(
        created <= steps + 3,
        "{created} buffers created over {steps} steps while their losses live: {before:?} -> {after:?}"
    );
    assert!(roots.iter().all(|r| r.is_tracked()));
}

// ---- 4. the GPU's gradients against the CPU's ----

/// A composite of smooth ops: a layer with gelu, a normalisation by mean and variance,
/// a tanh layer, softmax-weighted features and a log_softmax + gather loss.
/// Inputs: x [N, C], w1 [C, H], b1 [H], w2 [H, K], b2 [K].
fn composite_loss(p: &[Tensor]) -> Tensor {
    let (x, w1, b1, w2, b2) = (&p[0], &p[1], &p[2], &p[3], &p[4]);
    let h = x.matmul(w1).add(b1).gelu();
    let centered = h.sub(&h.mean(&[1], true));
    let h = centered.mul(&h.var(&[1], 0.0, true).add_scalar(1e-5).rsqrt());
    let attn = h.softmax(0);
    let h = h.mul(&attn).add(&h.sigmoid()).tanh();
    let logits = h.matmul(w2).add(b2);
    let n = x.dim(0);
    let labels: Vec<i32> = (0..n as i32).map(|i| (i * 7 + 3) % b2.dim(0) as i32).collect();
    let nll = logits.log_softmax(-1).gather(1, &indices(&labels, &[n, 1], x)).mean_all().neg();
    nll.add(&w1.square().sum_all().mul_scalar(1e-3))
}

#[test]
fn gpu_gradients_match_cpu_gradients() {
    let Some((_guard, gpu_dev)) = shared_gpu("gpu_gradients_match_cpu_gradients") else { return };
    let shapes: [&[usize]; 5] = [&[13, 9], &[9, 20], &[20], &[20, 5], &[5]];
    let grads_on = |dev: &Device| -> (f32, Vec<Vec<f32>>) {
        let params: Vec<Tensor> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Tensor::randn(s, 40 + i as u64, &Device::cpu()).to_device(dev).requires_grad())
            .collect();
        let loss = composite_loss(&params);
        let grads = loss.backward();
        (loss.item(), params.iter().map(|p| grads.wrt(p).to_vec::<f32>()).collect())
    };
    let (cpu_loss, cpu_grads) = grads_on(&Device::cpu());
    let (gpu_loss, gpu_grads) = grads_on(&gpu_dev);
    assert!((cpu_loss - gpu_loss).abs() <= 1e-5 * cpu_loss.abs(), "loss {gpu_loss} on the GPU, {cpu_loss} on the CPU");
    for (i, (g, c)) in gpu_grads.iter().zip(&cpu_grads).enumerate() {
        assert!(c.iter().any(|&v| v != 0.0), "the gradient of input {i} is all zero");
        if let Err(e) = compare(g, c, Tolerance::Normalized { tol: 1e-5 }) {
            panic!("gradient of input {i} {:?}: GPU disagrees with CPU: {e}", shapes[i]);
        }
    }
}
