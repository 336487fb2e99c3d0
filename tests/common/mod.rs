//! Shared by the kernel cross-check tests: the GPU device, input builders, and for each op
//! family the one tensor-level call, input domain and tolerance every test uses.
//!
//! Inputs are always drawn on the CPU and uploaded, so the GPU and the CPU see the same
//! bits and only the op under test can make them disagree. The tolerance tables are
//! exhaustive `match`es: a new op does not compile until someone writes down how closely
//! its kernel must follow the reference, and why.

#![allow(dead_code)]

mod files;
#[allow(unused_imports)] // only the tests that write files use them
pub use files::{gzip, idx, TempDir};

use std::f32::consts::PI;
use std::sync::OnceLock;

use wgrad::op::{BinaryOp, ReduceOp, UnaryOp};
use wgrad::testing::{gpu_test_device, Tolerance};
use wgrad::{Device, Tensor};

/// The device GPU tests run on, opened once per test binary. `None` (with a message
/// naming the test) when there is no adapter and `CI` is not `true`.
pub fn gpu(test: &str) -> Option<Device> {
    static DEVICE: OnceLock<Option<Device>> = OnceLock::new();
    let dev = DEVICE.get_or_init(gpu_test_device).clone();
    if dev.is_none() {
        eprintln!("{test}: no GPU adapter, skipping the GPU cross-check");
    }
    dev
}

/// The CPU, then the GPU device when there is one: the devices a both-device test runs on.
pub fn devices(test: &str) -> Vec<Device> {
    let mut devs = vec![Device::cpu()];
    devs.extend(gpu(test));
    devs
}

/// `"cpu"` or `"gpu"`, for failure messages.
pub fn dev_name(dev: &Device) -> &'static str {
    if dev.is_cpu() {
        "cpu"
    } else {
        "gpu"
    }
}

/// `n` values uniform in `[low, high)` from `seed`, drawn on the CPU.
pub fn uniform_values(n: usize, low: f32, high: f32, seed: u64) -> Vec<f32> {
    Tensor::rand_uniform(&[n], low, high, seed, &Device::cpu()).to_vec()
}

/// A tensor of uniform values drawn on the CPU and uploaded to `dev`.
pub fn uniform(shape: &[usize], low: f32, high: f32, seed: u64, dev: &Device) -> Tensor {
    Tensor::rand_uniform(shape, low, high, seed, &Device::cpu()).to_device(dev)
}

/// A tensor of standard normal values drawn on the CPU and uploaded to `dev`.
pub fn randn(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    Tensor::randn(shape, seed, &Device::cpu()).to_device(dev)
}

/// Small integers in `[0, levels)` as f32: many exact ties for comparisons and arg-reductions.
pub fn integers(shape: &[usize], levels: u32, seed: u64, dev: &Device) -> Tensor {
    let n = shape.iter().product();
    let v: Vec<f32> = uniform_values(n, 0.0, levels as f32, seed).iter().map(|x| x.floor()).collect();
    Tensor::from_slice(&v, shape, dev)
}

/// `|a - b| <= atol + rtol * |b|`.
pub const fn within(atol: f32, rtol: f32) -> Tolerance {
    Tolerance::Elementwise { atol, rtol }
}

pub const EXACT: Tolerance = Tolerance::Exact;

/// Where a unary op's inputs are drawn from, and how closely the GPU must agree.
pub struct UnarySpec {
    pub low: f32,
    pub high: f32,
    pub tol: Tolerance,
}

/// The input domain and tolerance of each unary op. Tolerances follow WGSL's accuracy
/// rules where they are tight, and what conforming drivers deliver where the spec is loose.
pub fn unary_spec(op: UnaryOp) -> UnarySpec {
    let spec = |low, high, tol| UnarySpec { low, high, tol };
    match op {
        // Moves bits: exact.
        UnaryOp::Copy => spec(-5.0, 5.0, EXACT),
        // Sign and magnitude changes are exact in IEEE arithmetic.
        UnaryOp::Neg | UnaryOp::Abs => spec(-5.0, 5.0, EXACT),
        // One correctly rounded multiply (Vulkan requires correct rounding for x * y).
        UnaryOp::Square => spec(-5.0, 5.0, EXACT),
        // WGSL allows 3 + 2|x| ulp for exp; |x| <= 10 gives 23 ulp, about 2.7e-6 relative.
        UnaryOp::Exp => spec(-10.0, 10.0, within(0.0, 3e-6)),
        // WGSL: 3 ulp outside [0.5, 2], absolute 2^-21 (4.8e-7) inside it, which lavapipe uses up.
        UnaryOp::Log => spec(0.01, 10.0, within(6e-7, 4e-7)),
        // sqrt is "inherited from 1 / inverseSqrt": 2 + 2.5 ulp, rounded up.
        UnaryOp::Sqrt => spec(0.0, 10.0, within(0.0, 6e-7)),
        // inverseSqrt: 2 ulp; the reference divides once more (half an ulp).
        UnaryOp::Rsqrt => spec(0.01, 10.0, within(0.0, 4e-7)),
        // WGSL division: 2.5 ulp, and the reference's own rounding: 3 ulp (3.6e-7).
        UnaryOp::Recip => spec(0.05, 10.0, within(0.0, 4e-7)),
        // WGSL only promises 2^-11 absolute on [-pi, pi]; drivers are within ~2^-20 there.
        UnaryOp::Sin | UnaryOp::Cos => spec(-PI, PI, within(2e-6, 0.0)),
        // x * s0 + s1: the GPU may fuse the two into one FMA, one rounding fewer.
        UnaryOp::Affine => spec(-5.0, 5.0, within(1e-6, 1e-6)),
        // pow is exp2(y * log2(x)) on GPUs: error grows with |y log2 x| (<= 5 here).
        UnaryOp::PowScalar => spec(0.1, 4.0, within(1e-6, 4e-6)),
        // Comparisons and selects only: exact.
        UnaryOp::Clamp | UnaryOp::Relu => spec(-5.0, 5.0, EXACT),
        // One correctly rounded multiply on the negative side: exact.
        UnaryOp::LeakyRelu => spec(-5.0, 5.0, EXACT),
        // exp(x) - 1 on the GPU against expm1: a few ulp of 1 absolute near 0.
        UnaryOp::Elu => spec(-5.0, 5.0, within(1e-6, 1e-5)),
        // exp-based on the GPU against an f64 reference: a few ulp.
        UnaryOp::Sigmoid | UnaryOp::Silu | UnaryOp::Softplus => spec(-8.0, 8.0, within(1e-6, 1e-5)),
        // WGSL tanh is inherited from sinh/cosh: absolute error near 0, relative elsewhere.
        UnaryOp::Tanh => spec(-5.0, 5.0, within(1e-6, 1e-5)),
        // The GPU's erf (Abramowitz-Stegun 7.1.26) has absolute error < 1.5e-7, times |x|/2 <= 2.5.
        UnaryOp::Gelu => spec(-5.0, 5.0, within(1e-6, 1e-5)),
        // Same erf approximation as Gelu, plus exp of -x^2/2.
        UnaryOp::GeluGrad => spec(-5.0, 5.0, within(1e-6, 1e-5)),
    }
}

/// The tensor-level call behind each unary op, with the scalars the tests use.
pub fn apply_unary(op: UnaryOp, x: &Tensor) -> Tensor {
    match op {
        UnaryOp::Copy => x.contiguous(),
        UnaryOp::Neg => x.neg(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.log(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => x.rsqrt(),
        UnaryOp::Square => x.square(),
        UnaryOp::Recip => x.recip(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Affine => x.affine(1.7, -0.3),
        UnaryOp::PowScalar => x.powf(2.5),
        UnaryOp::Clamp => x.clamp(-0.5, 1.25),
        UnaryOp::Relu => x.relu(),
        UnaryOp::LeakyRelu => x.leaky_relu(0.1),
        UnaryOp::Elu => x.elu(1.3),
        UnaryOp::Sigmoid => x.sigmoid(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Gelu => x.gelu(),
        UnaryOp::Softplus => x.softplus(),
        UnaryOp::Silu => x.silu(),
        UnaryOp::GeluGrad => x.gelu_derivative(),
    }
}

/// Input domains of a binary op's two operands, and its tolerance.
pub struct BinarySpec {
    pub a: (f32, f32),
    pub b: (f32, f32),
    pub tol: Tolerance,
}

pub fn binary_spec(op: BinaryOp) -> BinarySpec {
    let spec = |a, b, tol| BinarySpec { a, b, tol };
    match op {
        // Vulkan requires add, sub and mul to be correctly rounded: exact.
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => spec((-5.0, 5.0), (-5.0, 5.0), EXACT),
        // WGSL division: 2.5 ulp, and the reference's own rounding: 3 ulp (3.6e-7). Divisors
        // kept away from zero.
        BinaryOp::Div => spec((-5.0, 5.0), (0.25, 4.0), within(0.0, 4e-7)),
        // exp2(y * log2(x)): error grows with |y log2 x| (<= 6 here).
        BinaryOp::Pow => spec((0.1, 4.0), (-3.0, 3.0), within(1e-6, 4e-6)),
        // Selects and comparisons: exact.
        BinaryOp::Maximum
        | BinaryOp::Minimum
        | BinaryOp::Eq
        | BinaryOp::Ne
        | BinaryOp::Lt
        | BinaryOp::Le
        | BinaryOp::Gt
        | BinaryOp::Ge => spec((-5.0, 5.0), (-5.0, 5.0), EXACT),
    }
}

/// The tensor-level call behind each binary op.
pub fn apply_binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Tensor {
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

/// How closely each reduction must agree with the f64 reference.
pub fn reduce_tolerance(op: ReduceOp) -> Tolerance {
    match op {
        // f32 partial sums and a tree against an f64 sum: error grows like eps * log2(len),
        // and single rows can cancel, hence a norm over all rows.
        ReduceOp::Sum | ReduceOp::Mean => Tolerance::Normalized { tol: 2e-6 },
        // Two f32 passes (mean, then squared deviations) against f64.
        ReduceOp::Var => Tolerance::Normalized { tol: 4e-6 },
        // Picks an element (or its index): exact.
        ReduceOp::Max | ReduceOp::Min | ReduceOp::ArgMax | ReduceOp::ArgMin => EXACT,
    }
}

/// The tensor-level call behind each reduction over `axes` (arg-reductions take the first).
pub fn apply_reduce(op: ReduceOp, x: &Tensor, axes: &[isize], keepdim: bool) -> Tensor {
    match op {
        ReduceOp::Sum => x.sum(axes, keepdim),
        ReduceOp::Mean => x.mean(axes, keepdim),
        ReduceOp::Max => x.max(axes, keepdim),
        ReduceOp::Min => x.min(axes, keepdim),
        ReduceOp::Var => x.var(axes, 1.0, keepdim),
        ReduceOp::ArgMax => x.argmax(axes[0], keepdim),
        ReduceOp::ArgMin => x.argmin(axes[0], keepdim),
    }
}

/// Matmul sums K products per element: compared by normalised error. f32 accumulation in
/// another order drifts like eps * sqrt(K); with K <= 300 here that is 2e-7 measured.
pub const MATMUL_TOL: Tolerance = Tolerance::Normalized { tol: 1e-6 };

/// Softmax: WGSL's exp may be off by 3 + 2|x| ulp, and x - max reaches -30 in these tests
/// (63 ulp, 7.5e-6), then one division. Relative, since probabilities span many decades.
pub const SOFTMAX_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-12, rtol: 1e-5 };
/// Log-softmax: x - max - log(sum), an ulp or two of the result; absolute near 0.
pub const LOG_SOFTMAX_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-6, rtol: 2e-6 };

/// Normal samples: most agree to a few ulp, but where the uniform u1 is within a few ulp
/// of 1, log(u1) is tiny and WGSL's absolute log error (2^-21) moves z = sqrt(-2 log u1)
/// cos(..) by up to sqrt(2 * 2^-21) = 1e-3 (lavapipe: 1e-4). One such sample in 2500
/// contributes under 2e-5 to the normalised error; any error in the transform gives ~1.
pub const RANDN_TOL: Tolerance = Tolerance::Normalized { tol: 2e-5 };

/// A model whose hand-written `Module` impl forgets to show its layer in `visit`: it
/// registers nothing, which optimizers and `checkpoint::save` must refuse rather than
/// silently accept. (`#[derive(Module)]` cannot make this mistake.)
pub struct ForgotParameters {
    pub fc: wgrad::nn::Linear,
}

impl wgrad::nn::Module for ForgotParameters {
    fn visit(&self, _visitor: &mut wgrad::nn::Visitor<'_>) {}

    fn visit_mut(&mut self, _visitor: &mut wgrad::nn::VisitorMut<'_>) {}

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "ForgotParameters".into()
    }
}

impl wgrad::nn::Forward for ForgotParameters {
    fn forward(&self, input: &Tensor) -> Tensor {
        wgrad::nn::Forward::forward(&self.fc, input)
    }
}
