//! Unary, binary and where kernels against the CPU reference, on shapes chosen to break
//! them: scalars, size 1, primes, several workgroups, transposed, narrowed, broadcast
//! (stride 0) and permuted views, and empty tensors. Then the operator overloads against
//! their definitions, and special values (NaN, infinities, signed zeros, large arguments)
//! against what PyTorch gives.

mod common;

use common::{apply_binary, apply_unary, binary_spec, gpu, integers, unary_spec, uniform, within, EXACT};
use wgrad::op::{BinaryOp, UnaryOp};
use wgrad::testing::{compare, cross_check, Tolerance};
use wgrad::{Device, Tensor};

/// A view to feed an op: a name for failure messages and a builder from an input domain.
type ViewCase = (&'static str, fn(&Device, f32, f32) -> Tensor);

/// Layouts every unary op is tried on.
const UNARY_VIEWS: &[ViewCase] = &[
    ("0-dim scalar", |d, lo, hi| uniform(&[], lo, hi, 1, d)),
    ("[1]", |d, lo, hi| uniform(&[1], lo, hi, 2, d)),
    ("[7]", |d, lo, hi| uniform(&[7], lo, hi, 3, d)),
    // 2925 elements: twelve workgroups, the last one partial.
    ("[45, 65]", |d, lo, hi| uniform(&[45, 65], lo, hi, 4, d)),
    ("transpose of [13, 11]", |d, lo, hi| uniform(&[13, 11], lo, hi, 5, d).t()),
    ("narrow of [13, 20] to columns 3..14", |d, lo, hi| uniform(&[13, 20], lo, hi, 6, d).narrow(1, 3, 11)),
    ("[7] broadcast to [5, 7] (stride 0)", |d, lo, hi| uniform(&[7], lo, hi, 7, d).broadcast_to(&[5, 7])),
    ("[2, 3, 5, 7] permuted to [7, 3, 2, 5]", |d, lo, hi| uniform(&[2, 3, 5, 7], lo, hi, 8, d).permute(&[3, 1, 0, 2])),
    ("row 1..4 of a transposed [11, 5]", |d, lo, hi| uniform(&[11, 5], lo, hi, 9, d).t().narrow(0, 1, 3)),
    ("empty [0, 5]", |d, lo, hi| uniform(&[0, 5], lo, hi, 10, d)),
    ("empty transposed [5, 0]", |d, lo, hi| uniform(&[0, 5], lo, hi, 11, d).t()),
];

#[test]
fn every_unary_op_on_every_layout() {
    let Some(gpu) = gpu("every_unary_op_on_every_layout") else { return };
    for &op in UnaryOp::ALL {
        let spec = unary_spec(op);
        for &(view, build) in UNARY_VIEWS {
            let name = format!("{} of {view}", op.name());
            cross_check(&name, &gpu, spec.tol, |d| vec![build(d, spec.low, spec.high)], |x| apply_unary(op, &x[0]));
        }
    }
}

/// Operand pairs every binary op is tried on: name, lhs builder, rhs builder.
type PairCase = (&'static str, fn(&Device, (f32, f32), u64) -> Tensor, fn(&Device, (f32, f32), u64) -> Tensor);

fn u(shape: &[usize], r: (f32, f32), seed: u64, d: &Device) -> Tensor {
    uniform(shape, r.0, r.1, seed, d)
}

const BINARY_PAIRS: &[PairCase] = &[
    ("[3, 1, 5] with [4, 1]", |d, r, s| u(&[3, 1, 5], r, s, d), |d, r, s| u(&[4, 1], r, s, d)),
    ("[] with []", |d, r, s| u(&[], r, s, d), |d, r, s| u(&[], r, s, d)),
    ("[] with [7]", |d, r, s| u(&[], r, s, d), |d, r, s| u(&[7], r, s, d)),
    ("[13] with []", |d, r, s| u(&[13], r, s, d), |d, r, s| u(&[], r, s, d)),
    ("[1] with [11]", |d, r, s| u(&[1], r, s, d), |d, r, s| u(&[11], r, s, d)),
    // The contiguous build (every operand contiguous or one broadcast value) with a
    // broadcast value that is not at the start of its buffer.
    (
        "[45, 65] with element 4 of a [9]",
        |d, r, s| u(&[45, 65], r, s, d),
        |d, r, s| u(&[9], r, s, d).narrow(0, 4, 1).reshape(&[1, 1]),
    ),
    ("[6, 7] narrowed from [6, 10] with []", |d, r, s| u(&[6, 10], r, s, d).narrow(1, 2, 7), |d, r, s| u(&[], r, s, d)),
    // 2925 elements over twelve workgroups, the rhs repeated per row.
    ("[45, 65] with [65]", |d, r, s| u(&[45, 65], r, s, d), |d, r, s| u(&[65], r, s, d)),
    ("[45, 1] with [1, 65]", |d, r, s| u(&[45, 1], r, s, d), |d, r, s| u(&[1, 65], r, s, d)),
    (
        "transposed [13, 11] with narrowed [11, 20]",
        |d, r, s| u(&[13, 11], r, s, d).t(),
        |d, r, s| u(&[11, 20], r, s, d).narrow(1, 4, 13),
    ),
    (
        "strided [5, 1, 7] with permuted [5, 3, 7]",
        |d, r, s| u(&[7, 5], r, s, d).t().unsqueeze(1),
        |d, r, s| u(&[3, 7, 5], r, s, d).permute(&[2, 0, 1]),
    ),
    (
        "explicit stride-0 broadcast with a 4-D permutation",
        |d, r, s| u(&[1, 5, 1], r, s, d).broadcast_to(&[2, 3, 5, 7]),
        |d, r, s| u(&[7, 5, 2, 3], r, s, d).permute(&[2, 3, 1, 0]),
    ),
    ("empty [0, 5] with [5]", |d, r, s| u(&[0, 5], r, s, d), |d, r, s| u(&[5], r, s, d)),
    ("[4, 1] with empty [4, 0]", |d, r, s| u(&[4, 1], r, s, d), |d, r, s| u(&[4, 0], r, s, d)),
];

#[test]
fn every_binary_op_with_broadcasting_and_views() {
    let Some(gpu) = gpu("every_binary_op_with_broadcasting_and_views") else { return };
    for &op in BinaryOp::ALL {
        let spec = binary_spec(op);
        for (i, &(pair, lhs, rhs)) in BINARY_PAIRS.iter().enumerate() {
            let name = format!("{} of {pair}", op.name());
            let seed = 100 + 2 * i as u64;
            cross_check(
                &name,
                &gpu,
                spec.tol,
                |d| vec![lhs(d, spec.a, seed), rhs(d, spec.b, seed + 1)],
                |x| apply_binary(op, &x[0], &x[1]),
            );
        }
    }
}

#[test]
fn binary_ops_on_operands_with_many_ties() {
    // Random floats are almost never equal; small integers are, often.
    let Some(gpu) = gpu("binary_ops_on_operands_with_many_ties") else { return };
    for &op in BinaryOp::ALL {
        let tol = binary_spec(op).tol;
        let inputs = |d: &Device| vec![integers(&[13, 17], 3, 20, d), integers(&[17], 3, 21, d)];
        cross_check(op.name(), &gpu, tol, inputs, |x| apply_binary(op, &x[0], &x[1]));
    }
}

#[test]
fn comparisons_give_masks_that_match_their_definition() {
    let a = [1.0f32, 2.0, 3.0, f32::NAN, -0.0, f32::INFINITY];
    let b = [2.0f32, 2.0, 2.0, 1.0, 0.0, f32::INFINITY];
    type Definition = (BinaryOp, fn(f32, f32) -> bool);
    let defs: [Definition; 6] = [
        (BinaryOp::Eq, |x, y| x == y),
        (BinaryOp::Ne, |x, y| x != y),
        (BinaryOp::Lt, |x, y| x < y),
        (BinaryOp::Le, |x, y| x <= y),
        (BinaryOp::Gt, |x, y| x > y),
        (BinaryOp::Ge, |x, y| x >= y),
    ];
    for dev in devices() {
        let (ta, tb) = (Tensor::from_slice(&a, &[6], &dev), Tensor::from_slice(&b, &[6], &dev));
        for (op, def) in defs {
            let got: Vec<f32> = apply_binary(op, &ta, &tb).to_vec();
            let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| if def(x, y) { 1.0 } else { 0.0 }).collect();
            assert_eq!(got, want, "{} on {}", op.name(), dev_name(&dev));
        }
    }
}

#[test]
fn where_with_three_way_broadcasting_and_views() {
    let Some(gpu) = gpu("where_with_three_way_broadcasting_and_views") else { return };
    type Build = fn(&Device) -> [Tensor; 3];
    let cases: [(&str, Build); 5] = [
        ("cond [3, 1, 5], a [4, 1], b [5]", |d| {
            [integers(&[3, 1, 5], 2, 1, d), uniform(&[4, 1], -1.0, 1.0, 2, d), uniform(&[5], -1.0, 1.0, 3, d)]
        }),
        ("scalar cond, a [45, 65], b []", |d| {
            [Tensor::scalar(1.0, d), uniform(&[45, 65], -1.0, 1.0, 4, d), Tensor::scalar(7.0, d)]
        }),
        ("transposed cond, narrowed a, broadcast b", |d| {
            [
                integers(&[11, 13], 2, 5, d).t(),
                uniform(&[13, 20], -1.0, 1.0, 6, d).narrow(1, 2, 11),
                uniform(&[11], -1.0, 1.0, 7, d).broadcast_to(&[13, 11]),
            ]
        }),
        ("cond of NaN, -0.0 and 0.5", |d| {
            [
                Tensor::from_slice(&[f32::NAN, -0.0, 0.5, 0.0], &[4], d),
                Tensor::full(&[4], 1.0, d),
                Tensor::full(&[4], 2.0, d),
            ]
        }),
        ("empty", |d| [integers(&[0, 3], 2, 8, d), uniform(&[3], -1.0, 1.0, 9, d), uniform(&[1], -1.0, 1.0, 10, d)]),
    ];
    for (name, build) in cases {
        // Picks one of two values: exact.
        cross_check(&format!("where: {name}"), &gpu, EXACT, |d| build(d).to_vec(), |x| x[1].where_cond(&x[0], &x[2]));
    }
    // NaN is non-zero, so it selects `a`; so does 0.5; both zeros select `b`.
    for dev in devices() {
        let [c, a, b] = cases[3].1(&dev);
        assert_eq!(a.where_cond(&c, &b).to_vec::<f32>(), vec![1.0, 2.0, 1.0, 2.0], "where on {}", dev_name(&dev));
    }
}

/// The CPU, and the GPU when there is one.
fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu("devices"));
    v
}

fn dev_name(d: &Device) -> &'static str {
    if d.is_cpu() {
        "the CPU"
    } else {
        "the GPU"
    }
}

/// Checks a tensor expression against a scalar definition applied to the host values.
fn check_definition(
    what: &str,
    x: &[f32],
    y: &[f32],
    dev: &Device,
    tol: Tolerance,
    tensor: impl Fn(&Tensor, &Tensor) -> Tensor,
    scalar: impl Fn(f32, f32) -> f32,
) {
    let n = x.len();
    let (tx, ty) = (Tensor::from_slice(x, &[n], dev), Tensor::from_slice(y, &[n], dev));
    let got: Vec<f32> = tensor(&tx, &ty).to_vec();
    let want: Vec<f32> = x.iter().zip(y).map(|(&a, &b)| scalar(a, b)).collect();
    if let Err(e) = compare(&got, &want, tol) {
        panic!("{what} on {}: {e}", dev_name(dev));
    }
}

#[test]
fn scalar_ops_and_operator_overloads_follow_their_definitions() {
    let x = common::uniform_values(300, -4.0, 4.0, 30);
    // Divisors and bases of `s / x` away from zero.
    let y: Vec<f32> = common::uniform_values(300, 0.5, 3.0, 31).iter().zip(&x).map(|(v, s)| v.copysign(*s)).collect();
    let s = 2.7f32;
    // Adding, subtracting or multiplying by a scalar is one correctly rounded operation.
    let one_op = EXACT;
    // `t / s` multiplies by the rounded 1/s: within 1.5 ulp of x / s.
    let by_recip = within(0.0, 2e-7);
    // `s / t` is a GPU reciprocal (2.5 ulp) then a multiply: 3.5 ulp, plus the reference's half.
    let recip_then_mul = within(0.0, 5e-7);
    for dev in devices() {
        let d = &dev;
        check_definition("&t + s", &x, &y, d, one_op, |t, _| t + s, |a, _| a + s);
        check_definition("t - s", &x, &y, d, one_op, |t, _| t.clone() - s, |a, _| a - s);
        check_definition("&t * s", &x, &y, d, one_op, |t, _| t * s, |a, _| a * s);
        check_definition("&t / s", &y, &x, d, by_recip, |t, _| t / s, |a, _| a / s);
        check_definition("s + &t", &x, &y, d, one_op, |t, _| s + t, |a, _| s + a);
        check_definition("s - &t", &x, &y, d, one_op, |t, _| s - t, |a, _| s - a);
        check_definition("s - t", &x, &y, d, one_op, |t, _| s - t.clone(), |a, _| s - a);
        check_definition("s * t", &x, &y, d, one_op, |t, _| s * t.clone(), |a, _| s * a);
        check_definition("s / &t", &y, &x, d, recip_then_mul, |t, _| s / t, |a, _| s / a);
        check_definition("s / t", &y, &x, d, recip_then_mul, |t, _| s / t.clone(), |a, _| s / a);
        check_definition("-&t", &x, &y, d, EXACT, |t, _| -t, |a, _| -a);
        check_definition("-t", &x, &y, d, EXACT, |t, _| -t.clone(), |a, _| -a);
        check_definition("add_scalar", &x, &y, d, one_op, |t, _| t.add_scalar(s), |a, _| a + s);
        check_definition("mul_scalar", &x, &y, d, one_op, |t, _| t.mul_scalar(s), |a, _| a * s);
        check_definition("&a + &b", &x, &y, d, EXACT, |a, b| a + b, |a, b| a + b);
        check_definition("a - b", &x, &y, d, EXACT, |a, b| a.clone() - b.clone(), |a, b| a - b);
        check_definition("&a * b", &x, &y, d, EXACT, |a, b| a * b.clone(), |a, b| a * b);
        check_definition("a / &b", &x, &y, d, binary_spec(BinaryOp::Div).tol, |a, b| a.clone() / b, |a, b| a / b);
        // An expression mixing all of them, as model code writes it.
        check_definition(
            "(1 - a) * b / 2 + 3",
            &x,
            &y,
            d,
            within(1e-6, 1e-6),
            |a, b| (1.0 - a) * b / 2.0 + 3.0,
            |a, b| (1.0 - a) * b / 2.0 + 3.0,
        );
    }
}

#[test]
fn scalar_ops_cross_check_on_views() {
    let Some(gpu) = gpu("scalar_ops_cross_check_on_views") else { return };
    type Call = fn(&Tensor) -> Tensor;
    let calls: [(&str, Call); 8] = [
        ("t + 2.5", |t| t + 2.5),
        ("t - 2.5", |t| t - 2.5),
        ("t * 2.5", |t| t * 2.5),
        ("t / 2.5", |t| t / 2.5),
        ("2.5 + t", |t| 2.5 + t),
        ("2.5 - t", |t| 2.5 - t),
        ("2.5 * t", |t| 2.5 * t),
        ("2.5 / t", |t| 2.5 / t),
    ];
    for (name, call) in calls {
        for &(view, build) in UNARY_VIEWS {
            // Same kernels on both sides: a reciprocal may differ by 2.5 ulp, the rest is exact
            // up to FMA contraction of the affine kernel.
            cross_check(
                &format!("{name} of {view}"),
                &gpu,
                within(1e-6, 1e-6),
                |d| vec![build(d, 0.5, 4.0)],
                |x| call(&x[0]),
            );
        }
    }
}

const NAN: f32 = f32::NAN;
const INF: f32 = f32::INFINITY;

/// Runs `f` on `input` on every device; checks each result against `want` (NaN must be
/// NaN, infinities equal, the rest within `tol`) and cross-checks the GPU against the CPU.
fn special(name: &str, input: &[f32], want: &[f32], tol: Tolerance, f: impl Fn(&Tensor) -> Tensor) {
    for dev in devices() {
        let got: Vec<f32> = f(&Tensor::from_slice(input, &[input.len()], &dev)).to_vec();
        if let Err(e) = compare(&got, want, tol) {
            panic!("{name} on {} of {input:?}: {e}\n got {got:?}", dev_name(&dev));
        }
    }
    if let Some(gpu) = gpu(name) {
        cross_check(name, &gpu, tol, |d| vec![Tensor::from_slice(input, &[input.len()], d)], |x| f(&x[0]));
    }
}

fn special2(name: &str, a: &[f32], b: &[f32], want: &[f32], f: impl Fn(&Tensor, &Tensor) -> Tensor) {
    for dev in devices() {
        let (ta, tb) = (Tensor::from_slice(a, &[a.len()], &dev), Tensor::from_slice(b, &[b.len()], &dev));
        let got: Vec<f32> = f(&ta, &tb).to_vec();
        // Values are exact here; the tolerance only forgives pow's last bits on 1/3.
        if let Err(e) = compare(&got, want, within(0.0, 1e-6)) {
            panic!("{name} on {} of {a:?}, {b:?}: {e}\n got {got:?}", dev_name(&dev));
        }
    }
}

#[test]
fn maximum_and_minimum_propagate_nan_and_order_infinities() {
    let a = [NAN, 1.0, NAN, INF, -INF, 2.0, -3.0, 3e38];
    let b = [1.0, NAN, NAN, -INF, 5.0, INF, -INF, -3e38];
    special2("maximum", &a, &b, &[NAN, NAN, NAN, INF, 5.0, INF, -3.0, 3e38], |x, y| x.maximum(y));
    special2("minimum", &a, &b, &[NAN, NAN, NAN, -INF, -INF, 2.0, -INF, -3e38], |x, y| x.minimum(y));
}

#[test]
fn relu_and_clamp_keep_nan_and_handle_infinities() {
    let x = [NAN, INF, -INF, -0.0, 0.0, -1e-30, 1e-30, 5.0, -5.0, 0.5];
    special("relu", &x, &[NAN, INF, 0.0, 0.0, 0.0, 0.0, 1e-30, 5.0, 0.0, 0.5], EXACT, |t| t.relu());
    special("clamp", &x, &[NAN, 2.0, -1.0, -0.0, 0.0, -1e-30, 1e-30, 2.0, -1.0, 0.5], EXACT, |t| t.clamp(-1.0, 2.0));
    // One multiply by alpha on the negative side (and -0.0 stays -0.0).
    let leaky: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.1 * v }).collect();
    assert!(leaky[0].is_nan() && leaky[2] == -INF && leaky[8] == -0.5);
    special("leaky_relu", &x, &leaky, EXACT, |t| t.leaky_relu(0.1));
}

/// The CPU's fused ReLU gradient (one pass) gives the bits of the composed
/// `g * (x > 0)`: -0 for a negative gradient at `x <= 0`, NaN for a NaN or infinite
/// gradient there, NaN inputs counted as not positive; on a strided view of `x` too.
#[test]
fn relu_gradient_is_the_composed_product_bit_for_bit() {
    let cpu = Device::cpu();
    let xs = [NAN, INF, -INF, -0.0, 0.0, -1e-30, 1e-30, 5.0, -5.0, 0.5, -2.0, 3.0];
    let gs = [1.0, -2.0, -3.0, -4.0, NAN, INF, -INF, NAN, -0.5, 0.25, -INF, -1.0];
    let bits = |t: &Tensor| t.to_vec::<f32>().into_iter().map(f32::to_bits).collect::<Vec<u32>>();
    // [3, 4] stored transposed, so the fused pass reads `x` through strides.
    let x = Tensor::from_slice(&xs, &[4, 3], &cpu).t().requires_grad();
    let g = Tensor::from_slice(&gs, &[3, 4], &cpu);
    let fused = x.relu().backward_with(&g).wrt(&x).clone();
    let composed = g.mul(&x.detach().gt(&Tensor::scalar(0.0, &cpu)));
    assert_eq!(bits(&fused), bits(&composed));
    let got = fused.to_vec::<f32>();
    // x^T[0][0] is NaN (not positive) under a gradient of 1; x^T[0][1] is -0 under -2.
    assert_eq!((got[0].to_bits(), got[1].to_bits()), (0.0f32.to_bits(), (-0.0f32).to_bits()));
}

#[test]
fn pow_with_negative_bases_follows_c_pow() {
    // Integer exponents keep the sign rule; non-integer ones give NaN for negative bases.
    let base = [-2.0, -2.0, -2.0, -3.0, 0.0, 0.0, 0.0, 4.0, -1.5, -2.0, 2.0, -0.5];
    let exp = [3.0, 2.0, 0.5, -1.0, 0.0, 2.0, -1.0, -0.5, 3.0, -2.0, 10.0, 0.0];
    let want = [-8.0, 4.0, NAN, -1.0 / 3.0, 1.0, 0.0, INF, 0.5, -3.375, 0.25, 1024.0, 1.0];
    special2("pow", &base, &exp, &want, |x, y| x.pow(y));
    let x = [-2.0, -1.5, 0.0, 2.0, -1.0, 3.0];
    special("powf(3)", &x, &[-8.0, -3.375, 0.0, 8.0, -1.0, 27.0], within(0.0, 1e-6), |t| t.powf(3.0));
    special("powf(2)", &x, &[4.0, 2.25, 0.0, 4.0, 1.0, 9.0], within(0.0, 1e-6), |t| t.powf(2.0));
    special("powf(-1)", &x, &[-0.5, -1.0 / 1.5, INF, 0.5, -1.0, 1.0 / 3.0], within(0.0, 1e-6), |t| t.powf(-1.0));
    let half = [NAN, NAN, 0.0, std::f32::consts::SQRT_2, NAN, 3f32.sqrt()];
    special("powf(0.5)", &x, &half, within(0.0, 1e-6), |t| t.powf(0.5));
    special("powf(0)", &x, &[1.0; 6], EXACT, |t| t.powf(0.0));
    // Random negative bases with integer exponents, against the reference.
    if let Some(gpu) = gpu("pow_with_negative_bases_follows_c_pow") {
        let tol = binary_spec(BinaryOp::Pow).tol;
        let inputs = |d: &Device| vec![uniform(&[7, 11], -3.0, 3.0, 40, d), integers(&[11], 7, 41, d) - 3.0];
        cross_check("pow of negative bases", &gpu, tol, inputs, |x| x[0].pow(&x[1]));
        cross_check("pow of negative bases, non-integer exponents", &gpu, tol, inputs, |x| x[0].pow(&(&x[1] + 0.5)));
    }
}

#[test]
fn saturating_functions_at_large_arguments() {
    let x = [-100.0, -20.5, -20.0, 0.0, 20.0, 20.5, 100.0];
    // Absolute tolerance: results that underflow towards 0 may be flushed on the GPU.
    let tol = within(1e-6, 1e-6);
    let sig = |v: f64| (1.0 / (1.0 + (-v).exp())) as f32;
    let want: Vec<f32> = x.iter().map(|&v| sig(v as f64)).collect();
    assert_eq!(want[6], 1.0);
    special("sigmoid", &x, &want, tol, |t| t.sigmoid());
    let want: Vec<f32> = x.iter().map(|&v| (v as f64).tanh() as f32).collect();
    assert_eq!((want[0], want[6]), (-1.0, 1.0));
    special("tanh", &x, &want, tol, |t| t.tanh());
    // Softplus is x itself above 20 (PyTorch's threshold), log(1 + e^x) below.
    let want: Vec<f32> = x.iter().map(|&v| if v > 20.0 { v } else { (v as f64).exp().ln_1p() as f32 }).collect();
    assert_eq!((want[5], want[6]), (20.5, 100.0));
    special("softplus", &x, &want, tol, |t| t.softplus());
    let want: Vec<f32> = x.iter().map(|&v| v * sig(v as f64)).collect();
    special("silu", &x, &want, tol, |t| t.silu());
    let want = [0.0, -0.0, -0.0, 0.0, 20.0, 20.5, 100.0];
    special("gelu", &x, &want, tol, |t| t.gelu());
    let want = [-1.5, -1.5, -1.5, 0.0, 20.0, 20.5, 100.0];
    special("elu", &x, &want, tol, |t| t.elu(1.5));
    let big = [-1e4, -100.0, 100.0, 1e4];
    special("exp", &big, &[0.0, (-100f64).exp() as f32, INF, INF], within(1e-40, 1e-5), |t| t.exp());
}

#[test]
fn every_unary_op_propagates_nan() {
    // A NaN that disappears inside a model hides the bug that made it.
    for &op in UnaryOp::ALL {
        special(
            &format!("{} of NaN", op.name()),
            &[NAN, 1.0],
            &[NAN, apply_unary_one(op, 1.0)],
            within(1e-6, 1e-5),
            |t| apply_unary(op, t),
        );
    }
}

/// The CPU reference's value of `op` at `x`: used only for the finite companion element.
fn apply_unary_one(op: UnaryOp, x: f32) -> f32 {
    apply_unary(op, &Tensor::scalar(x, &Device::cpu())).item()
}

#[test]
fn unary_ops_at_infinities_and_zeros_agree_with_the_reference() {
    let Some(gpu) = gpu("unary_ops_at_infinities_and_zeros_agree_with_the_reference") else { return };
    let all = [INF, -INF, 0.0, -0.0, 1e-30, -1e-30, 80.0, -80.0];
    for &op in UnaryOp::ALL {
        let spec = unary_spec(op);
        // Negative arguments of log, sqrt, rsqrt and pow are domain errors, whose results
        // WGSL leaves to the implementation; those ops see only the non-negative values.
        let x: Vec<f32> = all.iter().copied().filter(|v| spec.low < 0.0 || !v.is_sign_negative()).collect();
        let name = format!("{} at {x:?}", op.name());
        cross_check(&name, &gpu, spec.tol, |d| vec![Tensor::from_slice(&x, &[x.len()], d)], |t| apply_unary(op, &t[0]));
    }
}

#[test]
#[should_panic(expected = "add: shapes [3] and [4] cannot be broadcast together")]
fn broadcast_failure_names_the_op_and_shapes() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[3], &d) + Tensor::zeros(&[4], &d);
}

#[test]
#[should_panic(expected = "maximum: shapes [2, 3] and [3, 2] cannot be broadcast together")]
fn broadcast_failure_of_a_named_binary_op() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[2, 3], &d).maximum(&Tensor::zeros(&[3, 2], &d));
}

#[test]
#[should_panic(expected = "where: condition of shape [4] cannot be broadcast to [2, 3]")]
fn where_with_a_condition_of_the_wrong_shape() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[2, 3], &d).where_cond(&Tensor::zeros(&[4], &d), &Tensor::zeros(&[3], &d));
}

#[test]
#[should_panic(expected = "clamp: min 2 is greater than max 1")]
fn clamp_with_crossed_bounds() {
    let _ = Tensor::zeros(&[2], &Device::cpu()).clamp(2.0, 1.0);
}
