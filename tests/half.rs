//! Half precision: `f16` storage on both devices, the cast, copy and matmul kernels against
//! their CPU twins (and the matmul against the `f32` kernel), the gradients through casts
//! and the `f16` matmul, mixed-precision training and the loss scaler.
//!
//! Casts and copies are exact (the WGSL rounding reproduces the `half` crate bit for bit).
//! The `f16` matmul sums exact `f32` products in `f32`, in the same order on both devices.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{dev_name, devices, gpu, randn, uniform};
use half::f16;
use wgrad::amp::{self, AutocastLinear, GradScaler};
use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adam, Sgd};
use wgrad::testing::{check_poison, compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{loss, DType, Device, Tensor};

/// `f32` values that exercise every branch of the `f32 -> f16` rounding: ties at both
/// ends of the subnormal range and in the normal range, the overflow threshold, infinities,
/// NaN, signed zeros, `f32` subnormals, and a sweep over the exponents around `f16`'s range.
fn rounding_probes() -> Vec<f32> {
    let p = |e: i32| 2f32.powi(e);
    let mut v = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.1,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        1e6,
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        p(-24),
        p(-25),
        1.5 * p(-25),
        p(-25) * 1.000001,
        3.0 * p(-25),
        5.0 * p(-25),
        p(-14),
        p(-14) - p(-25),
        p(-14) - p(-26),
        1.0 + p(-11),
        1.0 + 3.0 * p(-11),
        1.0 + p(-11) + p(-20),
        2047.0 * p(-11),
        1e-40,
        -1e-45,
        p(-26),
    ];
    // A sweep: mantissas from a fixed sequence, exponents from 2^-28 to 2^17, both signs.
    let mantissas = common::uniform_values(460, 1.0, 2.0, 99);
    for (i, m) in mantissas.iter().enumerate() {
        let e = -28 + (i % 46) as i32;
        let s = if i % 3 == 0 { -1.0 } else { 1.0 };
        v.push(s * m * p(e));
    }
    v
}

/// A view taken of a test tensor.
type View = fn(&Tensor) -> Tensor;
/// A gradcheck input: row-major values and a shape.
type Input = (Vec<f32>, Vec<usize>);
/// The function a gradcheck differentiates.
type Op = Box<dyn Fn(&[Tensor]) -> Tensor>;
/// A call that is expected to panic.
type Call<'a> = Box<dyn Fn() + 'a>;

#[test]
fn dtype_facts() {
    assert_eq!(DType::F16.size_bytes(), 2);
    assert_eq!(DType::F32.size_bytes(), 4);
    assert_eq!(DType::F16.to_string(), "f16");
    assert_eq!(DType::F16.buffer_bytes(3), 8);
    assert_eq!(DType::F16.buffer_bytes(4), 8);
    let t = Tensor::from_slice(&[f16::from_f32(1.5)], &[1], &Device::cpu());
    assert_eq!(format!("{t:?}"), "Tensor([1], f16, cpu)");
    assert_eq!(t.item(), 1.5);
}

#[test]
fn casts_round_like_the_half_crate_on_every_device() {
    let probes = rounding_probes();
    let expected: Vec<f16> = probes.iter().map(|&x| f16::from_f32(x)).collect();
    for dev in devices("casts_round_like_the_half_crate_on_every_device") {
        let x = Tensor::from_slice(&probes, &[probes.len()], &dev);
        let h = x.half();
        assert_eq!(h.dtype(), DType::F16);
        check_poison(&h).unwrap_or_else(|e| panic!("to_half on {}: {e}", dev_name(&dev)));
        let got = h.to_vec::<f16>();
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            let same = g.to_bits() == e.to_bits() || (g.is_nan() && e.is_nan());
            assert!(
                same,
                "{}: {} rounds to {:#06x}, expected {:#06x}",
                dev_name(&dev),
                probes[i],
                g.to_bits(),
                e.to_bits()
            );
        }
        // Back to f32: exact, infinities and NaN included.
        let back = h.float();
        check_poison(&back).unwrap_or_else(|e| panic!("to_float on {}: {e}", dev_name(&dev)));
        for (i, (b, e)) in back.to_vec::<f32>().iter().zip(&expected).enumerate() {
            let e = e.to_f32();
            assert!(b.to_bits() == e.to_bits() || (b.is_nan() && e.is_nan()), "element {i}: {b} vs {e}");
        }
    }
}

#[test]
fn f16_tensors_upload_read_back_and_move_between_devices() {
    // Odd lengths end in half a word.
    for n in [1usize, 2, 3, 257, 513] {
        let values: Vec<f16> = (0..n).map(|i| f16::from_f32(i as f32 * 0.25 - 7.0)).collect();
        for dev in devices("f16_tensors_upload_read_back") {
            let t = Tensor::from_slice(&values, &[n], &dev);
            assert_eq!(t.to_vec::<f16>(), values, "{} n={n}", dev_name(&dev));
            // Views at odd offsets read back the right halves.
            if n > 2 {
                assert_eq!(t.narrow(0, 1, n - 2).to_vec::<f16>(), values[1..n - 1], "{}", dev_name(&dev));
            }
            let cpu = t.to_device(&Device::cpu());
            assert_eq!(cpu.dtype(), DType::F16);
            assert_eq!(cpu.to_vec::<f16>(), values);
        }
    }
}

#[test]
fn casts_of_strided_views_match_the_cpu() {
    let Some(gpu) = gpu("casts_of_strided_views_match_the_cpu") else { return };
    // [5, 7, 11] permuted and narrowed: 385 elements and more, odd strides and offsets,
    // several workgroups with a partial last one.
    let views: [(&str, View); 4] = [
        ("contiguous", |t| t.clone()),
        ("permuted", |t| t.permute(&[2, 0, 1])),
        ("narrowed", |t| t.narrow(2, 3, 7)),
        ("broadcast", |t| t.narrow(0, 1, 1).broadcast_to(&[3, 5, 7, 11])),
    ];
    for (name, view) in views {
        cross_check(
            &format!("to_half of a {name} view"),
            &gpu,
            Tolerance::Exact,
            |d| vec![randn(&[5, 7, 11], 1, d).affine(3.0, 0.0)],
            |x| view(&x[0]).half(),
        );
        cross_check(
            &format!("to_float of a {name} view"),
            &gpu,
            Tolerance::Exact,
            |d| vec![Tensor::randn(&[5, 7, 11], 2, &Device::cpu()).half().to_device(d)],
            |x| view(&x[0]).float(),
        );
        cross_check(
            &format!("contiguous copy of a {name} f16 view"),
            &gpu,
            Tolerance::Exact,
            |d| vec![Tensor::randn(&[5, 7, 11], 3, &Device::cpu()).half().to_device(d)],
            |x| view(&x[0]).contiguous(),
        );
    }
}

#[test]
fn cat_and_reshape_of_f16_views_match_the_cpu() {
    let Some(gpu) = gpu("cat_and_reshape_of_f16_views_match_the_cpu") else { return };
    let inputs = |d: &Device| {
        let cpu = Device::cpu();
        vec![
            Tensor::randn(&[5, 7, 11], 4, &cpu).half().to_device(d),
            Tensor::randn(&[7, 5, 3], 5, &cpu).half().to_device(d),
            Tensor::randn(&[7, 5, 1], 6, &cpu).half().to_device(d),
        ]
    };
    // Parts of odd widths at odd offsets: neighbouring elements of one 32-bit word come
    // from different parts written by different invocations.
    cross_check("cat of f16 views", &gpu, Tolerance::Exact, inputs, |x| {
        Tensor::cat(&[x[0].permute(&[1, 0, 2]), x[1].clone(), x[2].clone(), x[1].narrow(2, 1, 1)], 2)
    });
    cross_check("stack and reshape of f16 views", &gpu, Tolerance::Exact, inputs, |x| {
        let t = x[0].t(); // [5, 11, 7]
        Tensor::stack(&[t.narrow(1, 0, 5).reshape(&[-1]), x[0].reshape(&[-1]).narrow(0, 3, 175)], 0)
    });
}

/// `(batch_a.., m, k) x (batch_b.., k, n)` shapes chosen to break kernels: 1s, primes, sizes
/// that are not multiples of the 4x4 block, enough blocks for several workgroups, broadcast
/// batches, a long inner dimension.
const MATMUL_SHAPES: &[(&[usize], &[usize])] = &[
    (&[1, 1], &[1, 1]),
    (&[1, 7], &[7, 1]),
    (&[5, 3], &[3, 7]),
    (&[37, 29], &[29, 45]),
    (&[65, 17], &[17, 66]),
    (&[3, 301], &[301, 2]),
    (&[2, 1, 5, 7], &[3, 7, 6]),
    (&[4, 9, 13], &[13, 11]),
];

/// f16 inputs of a shape, drawn on the CPU and uploaded.
fn half_randn(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    Tensor::randn(shape, seed, &Device::cpu()).half().to_device(dev)
}

/// Same summation order on both devices; allow for a compiler that reassociates.
const HALF_MATMUL_TOL: Tolerance = Tolerance::Normalized { tol: 1e-6 };

#[test]
fn half_matmul_matches_the_cpu_on_breaking_shapes() {
    let Some(gpu) = gpu("half_matmul_matches_the_cpu_on_breaking_shapes") else { return };
    for (i, &(sa, sb)) in MATMUL_SHAPES.iter().enumerate() {
        let seed = 10 * i as u64;
        let inputs = move |d: &Device| vec![half_randn(sa, seed, d), half_randn(sb, seed + 1, d)];
        cross_check(&format!("half_matmul {sa:?} x {sb:?}"), &gpu, HALF_MATMUL_TOL, inputs, |x| {
            x[0].half_matmul(&x[1], DType::F32)
        });
        // The f16 result is the f32 one rounded once: at most one f16 ulp apart when the
        // f32 sums differ in their last bit and straddle a rounding boundary.
        cross_check(
            &format!("half_matmul {sa:?} x {sb:?} to f16"),
            &gpu,
            Tolerance::Elementwise { atol: 1e-7, rtol: 1e-3 },
            inputs,
            |x| x[0].half_matmul(&x[1], DType::F16),
        );
    }
    // Transposed operands (strided, no copy), 1-D operands, an empty inner dimension.
    let inputs = |d: &Device| vec![half_randn(&[29, 37], 100, d), half_randn(&[45, 29], 101, d)];
    cross_check("half_matmul of transposed views", &gpu, HALF_MATMUL_TOL, inputs, |x| {
        x[0].t().half_matmul(&x[1].t(), DType::F32)
    });
    let inputs = |d: &Device| vec![half_randn(&[29], 102, d), half_randn(&[29, 45], 103, d)];
    cross_check("half_matmul of a vector", &gpu, HALF_MATMUL_TOL, inputs, |x| x[0].half_matmul(&x[1], DType::F32));
    let inputs = |d: &Device| vec![half_randn(&[6, 0], 104, d), half_randn(&[0, 5], 105, d)];
    cross_check("half_matmul with k = 0", &gpu, Tolerance::Exact, inputs, |x| x[0].half_matmul(&x[1], DType::F32));
}

#[test]
fn half_matmul_matches_the_f32_kernel_on_the_same_values() {
    // f16 values are exact in f32, and so are their products: the f32 kernel multiplying
    // the widened operands computes the same sums, in its own order.
    for dev in devices("half_matmul_matches_the_f32_kernel_on_the_same_values") {
        for (i, &(sa, sb)) in MATMUL_SHAPES.iter().enumerate() {
            let (a, b) = (half_randn(sa, 50 + i as u64, &dev), half_randn(sb, 60 + i as u64, &dev));
            let half = a.half_matmul(&b, DType::F32);
            let full = a.float().matmul(&b.float());
            compare(&half.to_vec::<f32>(), &full.to_vec::<f32>(), Tolerance::Normalized { tol: 1e-6 })
                .unwrap_or_else(|e| panic!("{} {sa:?} x {sb:?}: {e}", dev_name(&dev)));
        }
    }
}

#[test]
fn half_matmul_accumulates_in_f32() {
    // 4096 products of 1 * 1 plus one of 1 * 1/4096... summed in f16 the running sum would
    // stall at 2048 (its spacing there is 2); in f32 it reaches 4096 exactly.
    for dev in devices("half_matmul_accumulates_in_f32") {
        let k = 4096;
        let a = Tensor::ones(&[1, k], &dev).half();
        let b = Tensor::ones(&[k, 1], &dev).half();
        assert_eq!(a.half_matmul(&b, DType::F32).item(), 4096.0, "{}", dev_name(&dev));
        // Rounded once at the end: 4096 is exact in f16 too.
        assert_eq!(a.half_matmul(&b, DType::F16).to_vec::<f16>(), vec![f16::from_f32(4096.0)]);
    }
}

#[test]
fn ops_without_f16_kernels_refuse_f16_tensors() {
    for dev in devices("ops_without_f16_kernels_refuse_f16_tensors") {
        let h = Tensor::ones(&[2, 3], &dev).half();
        let f = Tensor::ones(&[3, 2], &dev);
        let cases: Vec<(&str, Call)> = vec![
            ("add", Box::new(|| drop(h.add(&h)))),
            ("affine", Box::new(|| drop(&h * 2.0))),
            ("relu", Box::new(|| drop(h.relu()))),
            ("sum", Box::new(|| drop(h.sum_all()))),
            ("matmul", Box::new(|| drop(h.matmul(&f)))),
            ("softmax", Box::new(|| drop(h.softmax(1)))),
            ("half_matmul", Box::new(|| drop(h.half_matmul(&f, DType::F32)))),
            ("to_dtype", Box::new(|| drop(h.to_dtype(DType::I32)))),
            ("half_matmul", Box::new(|| drop(h.half_matmul(&h.t(), DType::I32)))),
        ];
        for (op, run) in cases {
            let err = catch_unwind(AssertUnwindSafe(run)).expect_err(op);
            let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
            assert!(
                msg.contains(&format!("{op}: ")) && (msg.contains("f16") || msg.contains("i32")),
                "{}: the panic of {op} does not name the op and the dtype: {msg:?}",
                dev_name(&dev)
            );
        }
    }
}

/// Multiples of 1/64 in [-1, 1]: exact in f16, and so are they plus or minus the step
/// 1/64, so finite differences see no input rounding.
fn grid_input(shape: &[usize], seed: u64) -> Input {
    let n = shape.iter().product();
    let v = common::uniform_values(n, -64.0, 64.0, seed).iter().map(|x| x.round() / 64.0).collect();
    (v, shape.to_vec())
}

/// gradcheck's own tolerance in tests/autograd.rs, with a step that keeps the perturbed
/// inputs on the f16 grid. The backward rounds the incoming gradient (gradcheck's weights,
/// in [0.5, 1.5)) to f16: 2^-11 relative, inside rtol.
const GRID_TOL: GradTolerance = GradTolerance { eps: 1.0 / 64.0, atol: 5e-4, rtol: 5e-3 };

#[test]
fn gradients_through_casts_and_half_matmul_pass_gradcheck() {
    for dev in devices("gradients_through_casts_and_half_matmul_pass_gradcheck") {
        let checks: Vec<(&str, Vec<Input>, Op)> = vec![
            ("half().float()", vec![grid_input(&[3, 5], 1)], Box::new(|x| x[0].half().float().mul(&x[0]))),
            (
                "amp::matmul",
                vec![grid_input(&[3, 5], 2), grid_input(&[5, 4], 3)],
                Box::new(|x| amp::matmul(&x[0], &x[1])),
            ),
            (
                "half_matmul with broadcast batch",
                vec![grid_input(&[2, 3, 5], 4), grid_input(&[5, 4], 5)],
                Box::new(|x| x[0].half().half_matmul(&x[1].half(), DType::F32)),
            ),
            (
                "half_matmul of transposed views and vectors",
                vec![grid_input(&[5, 3], 6), grid_input(&[5], 7)],
                Box::new(|x| x[0].half().t().half_matmul(&x[1].half(), DType::F32)),
            ),
            (
                "amp::linear",
                vec![grid_input(&[4, 5], 8), grid_input(&[3, 5], 9), grid_input(&[3], 10)],
                Box::new(|x| amp::linear(&x[0], &x[1], Some(&x[2]))),
            ),
        ];
        for (name, inputs, f) in checks {
            gradcheck(name, &dev, &inputs, GRID_TOL, &f).unwrap_or_else(|e| panic!("{e}"));
        }
        // An f16 result: inputs on a grid of 1/8 and an inner dimension of 3 keep every
        // output exact in f16, so rounding the result moves nothing.
        let coarse = |shape: &[usize], seed| {
            let (v, s) = grid_input(shape, seed);
            (v.iter().map(|x| (x * 8.0).round() / 8.0).collect::<Vec<f32>>(), s)
        };
        let tol = GradTolerance { eps: 0.125, ..GRID_TOL };
        gradcheck("half_matmul to f16", &dev, &[coarse(&[4, 3], 11), coarse(&[3, 2], 12)], tol, |x| {
            x[0].half().half_matmul(&x[1].half(), DType::F16).float()
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }
}

/// A 12-24-3 MLP, its layers wrapped for mixed precision or not, with fixed weights.
fn mlp(dev: &Device, amp: bool) -> nn::Sequential {
    mlp_with(dev, amp, nn::ReLU)
}

fn mlp_with(dev: &Device, amp: bool, activation: impl Forward + 'static) -> nn::Sequential {
    let l1 = nn::Linear::with_seed(12, 24, true, 31, dev);
    let l2 = nn::Linear::with_seed(24, 3, true, 32, dev);
    if amp {
        nn::Sequential::new().add(AutocastLinear::new(l1)).add(activation).add(AutocastLinear::new(l2))
    } else {
        nn::Sequential::new().add(l1).add(activation).add(l2)
    }
}

/// Inputs and class labels of a small separable problem: the class is the largest of
/// three fixed projections of the input.
fn problem(dev: &Device) -> (Tensor, Tensor) {
    let cpu = Device::cpu();
    let x = Tensor::randn(&[48, 12], 40, &cpu);
    let labels = x.matmul(&Tensor::randn(&[12, 3], 41, &cpu)).argmax(1, false);
    (x.to_device(dev), labels.to_device(dev))
}

#[test]
fn amp_gradients_match_f32_gradients_within_f16_rounding() {
    for dev in devices("amp_gradients_match_f32_gradients_within_f16_rounding") {
        let (x, labels) = problem(&dev);
        // A smooth activation: with ReLU, hidden units within f16 rounding of zero switch
        // sides and move whole gradient rows, which says nothing about rounding.
        let grads_of = |amp: bool| {
            let model = mlp_with(&dev, amp, nn::Tanh);
            let grads = loss::cross_entropy(&model.forward(&x), &labels).backward();
            // Gradients arrive in f32 on the f32 master weights.
            model
                .parameters()
                .iter()
                .map(|p| {
                    let g = grads.wrt(p);
                    assert_eq!(g.dtype(), DType::F32);
                    g.to_vec::<f32>()
                })
                .collect::<Vec<_>>()
        };
        let (half, full) = (grads_of(true), grads_of(false));
        for (i, (h, f)) in half.iter().zip(&full).enumerate() {
            // Inputs, weights and output gradients each rounded to f16 (2^-11 relative):
            // a few times 5e-4 in the norm.
            compare(h, f, Tolerance::Normalized { tol: 3e-3 })
                .unwrap_or_else(|e| panic!("{}: parameter {i}: {e}", dev_name(&dev)));
        }
    }
}

/// The losses of `steps` Adam steps of the MLP, with or without mixed precision.
fn train(dev: &Device, amp: bool, steps: usize) -> Vec<f32> {
    let (x, labels) = problem(dev);
    let model = mlp(dev, amp);
    let mut opt = Adam::new(model.parameters(), 1e-2);
    let mut scaler = GradScaler::new().enabled(amp);
    let mut losses = Vec::new();
    for _ in 0..steps {
        let loss = loss::cross_entropy(&model.forward(&x), &labels);
        let mut grads = scaler.scale(&loss).backward();
        assert!(scaler.step(&mut opt, &mut grads), "a step was skipped at scale {}", scaler.scale_factor());
        scaler.update();
        losses.push(loss.item());
    }
    losses
}

#[test]
fn an_mlp_trained_with_amp_follows_the_f32_run() {
    let steps = 30;
    for dev in devices("an_mlp_trained_with_amp_follows_the_f32_run") {
        let full = train(&dev, false, steps);
        let half = train(&dev, true, steps);
        assert!(full[steps - 1] < 0.5 * full[0], "{}: the f32 run did not learn: {full:?}", dev_name(&dev));
        for (i, (h, f)) in half.iter().zip(&full).enumerate() {
            // f16 rounding of inputs, weights and gradients nudges every step a little.
            assert!(
                (h - f).abs() <= 0.02 + 0.03 * f.abs(),
                "{}: step {i}: amp loss {h}, f32 loss {f}\namp {half:?}\nf32 {full:?}",
                dev_name(&dev)
            );
        }
    }
}

#[test]
fn grad_scaler_skips_an_overflowing_step_and_backs_off() {
    for dev in devices("grad_scaler_skips_an_overflowing_step_and_backs_off") {
        let w = uniform(&[6, 4], -1.0, 1.0, 70, &dev).requires_grad();
        let x = uniform(&[5, 6], -1.0, 1.0, 71, &dev);
        let before = w.to_vec::<f32>();
        let mut opt = Sgd::new([w.clone()], 0.1).momentum(0.9);
        // A scale of 2^20 makes the output gradient 2^20 per element: over f16's 65504, so
        // the f16 backward overflows to infinity, as a real loss spike would.
        let mut scaler = GradScaler::new().init_scale(1048576.0).growth_interval(2);
        let loss = amp::matmul(&x, &w).sum_all();
        let mut grads = scaler.scale(&loss).backward();
        assert!(!scaler.step(&mut opt, &mut grads), "{}: the overflowing step was taken", dev_name(&dev));
        scaler.update();
        assert_eq!(w.to_vec::<f32>(), before, "{}: a skipped step changed the weights", dev_name(&dev));
        assert_eq!(scaler.scale_factor(), 524288.0);
        // Still too large: 2^19 > 65504. Back off until the gradients fit.
        let mut skipped = 1;
        for _ in 0..8 {
            let loss = amp::matmul(&x, &w).sum_all();
            let mut grads = scaler.scale(&loss).backward();
            let stepped = scaler.step(&mut opt, &mut grads);
            scaler.update();
            if stepped {
                break;
            }
            skipped += 1;
        }
        // 2^20 / 2^k <= 65504 first at k = 5: four more skips, then the step at 2^15.
        assert_eq!(skipped, 5, "{}", dev_name(&dev));
        assert_eq!(scaler.scale_factor(), 32768.0);
        assert_eq!(scaler.growth_tracker(), 1);
        // The step taken was the true gradient of the rounded inputs: for every column of w,
        // the sum over rows of x in f16, times the learning rate.
        let xs = x.to_vec::<f32>();
        let col_sums: Vec<f32> = (0..6).map(|r| (0..5).map(|i| f16::from_f32(xs[i * 6 + r]).to_f32()).sum()).collect();
        let after = w.to_vec::<f32>();
        for r in 0..6 {
            for c in 0..4 {
                let step = before[r * 4 + c] - after[r * 4 + c];
                let expected = 0.1 * col_sums[r];
                assert!(
                    (step - expected).abs() <= 1e-3 * expected.abs().max(1.0),
                    "w[{r}][{c}] moved {step}, expected {expected}"
                );
            }
        }
        // One more clean step completes the growth interval of 2: the scale doubles.
        let loss = amp::matmul(&x, &w).sum_all();
        let mut grads = scaler.scale(&loss).backward();
        assert!(scaler.step(&mut opt, &mut grads));
        scaler.update();
        assert_eq!((scaler.scale_factor(), scaler.growth_tracker()), (65536.0, 0));
    }
}

#[test]
fn grad_scaler_has_pytorchs_defaults_and_guards() {
    let s = GradScaler::new();
    assert_eq!((s.scale_factor(), s.growth_tracker(), s.is_enabled()), (65536.0, 0, true));
    let dev = Device::cpu();
    let w = Tensor::ones(&[2], &dev).requires_grad();
    // The scaled loss is the loss times the scale, and unscaling divides it out exactly.
    let mut scaler = GradScaler::new();
    let loss = w.mul_scalar(3.0).sum_all();
    assert_eq!(scaler.scale(&loss).item(), 6.0 * 65536.0);
    let mut grads = scaler.scale(&loss).backward();
    assert!(!scaler.unscale(&mut grads));
    assert_eq!(grads.wrt(&w).to_vec::<f32>(), vec![3.0, 3.0]);
    let twice = catch_unwind(AssertUnwindSafe(|| scaler.unscale(&mut grads)));
    assert!(twice.is_err(), "unscale twice in one step must panic");
    let mut opt = Sgd::new([w.clone()], 0.5);
    assert!(scaler.step(&mut opt, &mut grads), "step after unscale uses the recorded check");
    scaler.update();
    assert_eq!(w.to_vec::<f32>(), vec![-0.5, -0.5]);
    // update() without a step is a usage error, as in PyTorch.
    assert!(catch_unwind(AssertUnwindSafe(|| GradScaler::new().update())).is_err());
    // A NaN gradient counts as an overflow.
    let mut grads = w.sum_all().backward();
    grads.insert(&w, Tensor::from_slice(&[1.0f32, f32::NAN], &[2], &dev));
    let mut scaler = GradScaler::new();
    assert!(!scaler.step(&mut opt, &mut grads));
    scaler.update();
    assert_eq!(scaler.scale_factor(), 32768.0);
    // Disabled: a pass-through.
    let mut off = GradScaler::new().enabled(false);
    assert_eq!(off.scale(&loss).item(), 6.0);
    let mut grads = w.sum_all().backward();
    assert!(off.step(&mut opt, &mut grads));
    off.update();
    assert_eq!(off.scale_factor(), 1.0);
    assert!(catch_unwind(|| GradScaler::new().growth_factor(1.0)).is_err());
    assert!(catch_unwind(|| GradScaler::new().backoff_factor(1.0)).is_err());
}

#[test]
fn f16_parameters_survive_a_checkpoint() {
    let dev = Device::cpu();
    let values: Vec<f16> = (0..15).map(|i| f16::from_f32(i as f32 / 3.0)).collect();
    let weight = Tensor::from_slice(&values, &[5, 3], &dev).requires_grad();
    let saved = nn::Linear::from_parameters(weight, None);
    let path = std::env::temp_dir().join(format!("wgrad-half-{}.safetensors", std::process::id()));
    wgrad::checkpoint::save(&saved, &path).expect("save");
    for dev in devices("f16_parameters_survive_a_checkpoint") {
        let target = Tensor::zeros(&[5, 3], &dev).half().detach().requires_grad();
        let loaded = nn::Linear::from_parameters(target.clone(), None);
        wgrad::checkpoint::load(&loaded, &path).expect("load");
        assert_eq!(target.to_vec::<f16>(), values, "{}", dev_name(&dev));
    }
    std::fs::remove_file(&path).ok();
}
