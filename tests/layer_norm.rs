//! Layer normalisation: the fused op against a reference composed from generic tensor ops
//! (mean, var, sqrt) and against values worked out by hand, the three GPU kernels against
//! the CPU on shapes chosen to break them, gradients by finite differences on both
//! devices, input checks, and the module's defaults, builders, names and description.

mod common;

use common::{dev_name, devices, gpu, randn, uniform_values, within};
use wgrad::nn::{Forward, LayerNorm, Module};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{Device, Tensor};

const EPS: f32 = 1e-5;

/// The last `k` axes, as `isize`.
fn trailing_axes(rank: usize, k: usize) -> Vec<isize> {
    (rank - k..rank).map(|a| a as isize).collect()
}

/// Layer norm written with the generic mean, var, sqrt and broadcasting ops.
fn reference(
    x: &Tensor,
    normalized_shape: &[usize],
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Tensor {
    let axes = trailing_axes(x.rank(), normalized_shape.len());
    let mean = x.mean(&axes, true);
    let var = x.var(&axes, 0.0, true);
    let mut y = x.sub(&mean).div(&var.add_scalar(eps).sqrt());
    if let Some(w) = weight {
        y = y.mul(w);
    }
    if let Some(b) = bias {
        y = y.add(b);
    }
    y
}

/// Values uniform in `[low, high)` of the given shape, drawn on the CPU and uploaded.
fn values(shape: &[usize], low: f32, high: f32, seed: u64, dev: &Device) -> Tensor {
    Tensor::from_slice(&uniform_values(shape.iter().product(), low, high, seed), shape, dev)
}

fn assert_close(name: &str, actual: &Tensor, expected: &Tensor, tol: Tolerance) {
    assert_eq!(actual.shape(), expected.shape(), "{name}: shapes");
    if let Err(e) = compare(&actual.to_vec::<f32>(), &expected.to_vec::<f32>(), tol) {
        panic!("{name}: {e}");
    }
}

// ---- the functional op ----

#[test]
fn forward_matches_a_reference_composed_from_generic_ops() {
    let cases: [(&[usize], &[usize]); 5] =
        [(&[4, 7], &[7]), (&[2, 3, 5], &[3, 5]), (&[3, 300], &[300]), (&[5, 1], &[1]), (&[6], &[6])];
    for dev in devices("forward_matches_a_reference_composed_from_generic_ops") {
        for (k, (shape, normalized)) in cases.into_iter().enumerate() {
            let seed = 10 * k as u64;
            let x = randn(shape, seed, &dev).affine(2.0, 0.5);
            let w = values(normalized, 0.5, 1.5, seed + 1, &dev);
            let b = values(normalized, -1.0, 1.0, seed + 2, &dev);
            let name = format!("{shape:?} over {normalized:?} on {}", dev_name(&dev));
            // Normalised values are O(1); the f32 statistics of the fused kernel and of the
            // generic reductions differ by a few ulp of the spread.
            let tol = within(2e-6, 2e-5);
            let cases = [(Some(&w), Some(&b), "affine"), (None, None, "plain"), (Some(&w), None, "weight only")];
            for (weight, bias, what) in cases {
                let y = x.layer_norm(normalized, weight, bias, EPS);
                let expected = reference(&x, normalized, weight, bias, EPS);
                assert_close(&format!("{what} {name}"), &y, &expected, tol);
            }
        }
    }
}

/// Rows {1, 3} and {10, 30} have means 2 and 20 and biased variances 1 and 100, so with
/// eps = 0 both normalise to [-1, 1]; weight [2, 0.5] and bias [0, 1] give [-2, 1.5]. A
/// one-element block has variance 0 and normalises to 0, leaving the bias.
#[test]
fn small_values_worked_out_by_hand() {
    for dev in devices("small_values_worked_out_by_hand") {
        let name = dev_name(&dev);
        let x = Tensor::from_slice(&[1.0f32, 3.0, 10.0, 30.0], &[2, 2], &dev);
        let w = Tensor::from_slice(&[2.0f32, 0.5], &[2], &dev);
        let b = Tensor::from_slice(&[0.0f32, 1.0], &[2], &dev);
        // sqrt and division are the only inexact steps on a GPU (a few ulp).
        let tol = within(1e-6, 1e-6);
        let y = x.layer_norm(&[2], None, None, 0.0).to_vec::<f32>();
        compare(&y, &[-1.0, 1.0, -1.0, 1.0], tol).unwrap_or_else(|e| panic!("{name}: {e}"));
        let y = x.layer_norm(&[2], Some(&w), Some(&b), 0.0).to_vec::<f32>();
        compare(&y, &[-2.0, 1.5, -2.0, 1.5], tol).unwrap_or_else(|e| panic!("{name}: {e}"));
        let single = Tensor::from_slice(&[5.0f32, -3.0], &[2, 1], &dev);
        let bias = Tensor::from_slice(&[0.25f32], &[1], &dev);
        let y = single.layer_norm(&[1], None, Some(&bias), EPS).to_vec::<f32>();
        compare(&y, &[0.25, 0.25], Tolerance::Exact).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// A mean of 1e4 with a spread of 1: E[x^2] - E[x]^2 in f32 would lose every digit, the
/// two-pass statistics keep them.
#[test]
fn a_large_mean_does_not_cancel_the_variance() {
    for dev in devices("a_large_mean_does_not_cancel_the_variance") {
        let x = randn(&[3, 50], 7, &dev).add_scalar(1e4);
        let centred = x.sub(&Tensor::scalar(1e4, &dev));
        let y = x.layer_norm(&[50], None, None, EPS);
        // The reference normalises the same values centred first (an exact subtraction),
        // where f32 statistics are accurate. The fused kernel's f32 mean of values near
        // 1e4 is good to about ulp(1e4) = 1e-3, which moves each output by as much; the
        // cancelling formula would get the variance wrong by ulp(1e8) = 8, i.e. entirely.
        let expected = reference(&centred, &[50], None, None, EPS);
        assert_close(&format!("offset 1e4 on {}", dev_name(&dev)), &y, &expected, within(5e-3, 0.0));
    }
}

#[test]
fn strided_and_empty_inputs() {
    for dev in devices("strided_and_empty_inputs") {
        let name = dev_name(&dev);
        // A transposed view is normalised along its own last axis.
        let x = randn(&[7, 5], 3, &dev);
        let y = x.t().layer_norm(&[7], None, None, EPS);
        let expected = reference(&x.t().contiguous(), &[7], None, None, EPS);
        assert_close(&format!("transposed on {name}"), &y, &expected, within(2e-6, 2e-5));

        // No rows: an empty result, and zero gradients for the parameters.
        let empty = Tensor::zeros(&[0, 4], &dev);
        let w = Tensor::ones(&[4], &dev).requires_grad();
        let b = Tensor::zeros(&[4], &dev).requires_grad();
        let y = empty.layer_norm(&[4], Some(&w), Some(&b), EPS);
        assert_eq!(y.shape(), &[0, 4], "{name}");
        let grads = y.sum_all().backward();
        assert_eq!(grads.wrt(&w).to_vec::<f32>(), [0.0; 4], "{name}");
        assert_eq!(grads.wrt(&b).to_vec::<f32>(), [0.0; 4], "{name}");
    }
}

// ---- GPU against CPU ----

/// The forward output, the input gradient and the parameter gradients of one case, joined
/// into one vector (so one cross-check covers all three kernels). The output gradient is
/// random, so the backward kernels see a general `dy`.
fn forward_and_gradients(x: &[Tensor], normalized: &[usize], affine: bool, bias: bool) -> Tensor {
    let input = x[0].detach().requires_grad();
    let w = x[1].detach().requires_grad();
    let b = x[2].detach().requires_grad();
    let y = input.layer_norm(normalized, affine.then_some(&w), (affine && bias).then_some(&b), EPS);
    let grads = y.mul(&x[3]).sum_all().backward();
    let mut parts = vec![y.detach().reshape(&[-1]), grads.wrt(&input).reshape(&[-1])];
    if affine {
        parts.push(grads.wrt(&w).reshape(&[-1]));
    }
    if affine && bias {
        parts.push(grads.wrt(&b).reshape(&[-1]));
    }
    Tensor::cat(&parts, 0)
}

/// Rows longer than a workgroup (300, 513), odd lengths, one-element rows, a single row,
/// more rows than one parameter-gradient chunk holds (600 rows: three chunks, the last
/// partial), more columns than one column tile (40: two tiles, the second partial), and
/// the weight and bias switched off in turn. The row kernels and the chunked column sums
/// add in f32 and in another order than the f64 reference; measured on lavapipe within
/// 4e-7 normalised (the 600-row case, whose column sums are longest), 1e-7 elsewhere.
#[test]
fn gpu_kernels_agree_with_the_cpu_on_awkward_shapes() {
    let Some(gpu) = gpu("gpu_kernels_agree_with_the_cpu_on_awkward_shapes") else { return };
    let cases: [(&[usize], &[usize]); 8] = [
        (&[3, 300], &[300]),
        (&[2, 513], &[513]),
        (&[7, 13], &[13]),
        (&[5, 1], &[1]),
        (&[1, 257], &[257]),
        (&[600, 3], &[3]),
        (&[2, 3, 40], &[40]),
        (&[2, 5, 3, 3], &[3, 3]),
    ];
    for (k, (shape, normalized)) in cases.into_iter().enumerate() {
        for (affine, bias) in [(true, true), (true, false), (false, false)] {
            let seed = 100 + 10 * k as u64;
            let name = format!("layer_norm {shape:?} over {normalized:?}, affine {affine}, bias {bias}");
            let inputs = move |d: &Device| {
                vec![
                    randn(shape, seed, d).affine(1.5, 0.3),
                    values(normalized, 0.5, 1.5, seed + 1, d),
                    values(normalized, -1.0, 1.0, seed + 2, d),
                    randn(shape, seed + 3, d),
                ]
            };
            cross_check(&name, &gpu, Tolerance::Normalized { tol: 2e-6 }, inputs, move |x| {
                forward_and_gradients(x, normalized, affine, bias)
            });
        }
    }
}

/// The forward output alone, elementwise: every element within a few ulp of the f64
/// reference (the statistics are shared by a row, so a wrong one would show everywhere).
#[test]
fn gpu_forward_agrees_elementwise() {
    let Some(gpu) = gpu("gpu_forward_agrees_elementwise") else { return };
    for (shape, normalized) in [(vec![4, 300], vec![300]), (vec![9, 11], vec![11])] {
        let name = format!("layer_norm forward {shape:?}");
        let s = shape.clone();
        let n = normalized.clone();
        let inputs = move |d: &Device| vec![randn(&s, 5, d), values(&n, 0.5, 1.5, 6, d), values(&n, -1.0, 1.0, 7, d)];
        cross_check(&name, &gpu, within(2e-6, 2e-5), inputs, move |x| {
            x[0].layer_norm(&normalized, Some(&x[1]), Some(&x[2]), EPS)
        });
    }
}

// ---- gradients ----

const GRAD_TOL: GradTolerance = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };

/// Gradients of the input, weight and bias against finite differences, mid-graph, on both
/// devices: a 2-D block, a 1-D block, and without a weight or a bias.
#[test]
fn gradients_match_finite_differences() {
    let input = |shape: &[usize], low: f32, high: f32, seed: u64| {
        (uniform_values(shape.iter().product(), low, high, seed), shape.to_vec())
    };
    for dev in devices("gradients_match_finite_differences") {
        let mut failures = Vec::new();
        let affine = [input(&[3, 2, 3], -2.0, 2.0, 1), input(&[2, 3], 0.5, 1.5, 2), input(&[2, 3], -1.0, 1.0, 3)];
        let result = gradcheck("layer_norm over [2, 3]", &dev, &affine, GRAD_TOL, |x| {
            x[0].layer_norm(&[2, 3], Some(&x[1]), Some(&x[2]), EPS)
        });
        failures.extend(result.err());
        let rows = [input(&[4, 5], -2.0, 2.0, 4), input(&[5], 0.5, 1.5, 5), input(&[5], -1.0, 1.0, 6)];
        let result = gradcheck("layer_norm over [5]", &dev, &rows, GRAD_TOL, |x| {
            x[0].layer_norm(&[5], Some(&x[1]), Some(&x[2]), EPS)
        });
        failures.extend(result.err());
        let result = gradcheck("layer_norm without parameters", &dev, &rows[..1], GRAD_TOL, |x| {
            x[0].layer_norm(&[5], None, None, EPS)
        });
        failures.extend(result.err());
        let result =
            gradcheck("layer_norm with a bias only", &dev, &[rows[0].clone(), rows[2].clone()], GRAD_TOL, |x| {
                x[0].layer_norm(&[5], None, Some(&x[1]), EPS)
            });
        failures.extend(result.err());
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

/// Only the inputs that require a gradient get one; a parameter alone is enough to
/// record the op.
#[test]
fn gradients_flow_only_where_asked() {
    for dev in devices("gradients_flow_only_where_asked") {
        let x = randn(&[3, 4], 1, &dev);
        let w = Tensor::ones(&[4], &dev).requires_grad();
        let b = Tensor::zeros(&[4], &dev);
        let y = x.layer_norm(&[4], Some(&w), Some(&b), EPS);
        assert!(y.is_tracked());
        let grads = y.mul(&randn(&[3, 4], 2, &dev)).sum_all().backward();
        assert_eq!(grads.len(), 1, "{}: only the weight requires a gradient", dev_name(&dev));
        assert_eq!(grads.wrt(&w).shape(), &[4]);
    }
}

// ---- checks ----

#[test]
#[should_panic(
    expected = "layer_norm: given normalized_shape=[4], expected input with shape [*, 4], but got input of shape [3, 5]"
)]
fn a_mismatched_input_is_rejected() {
    Tensor::zeros(&[3, 5], &Device::cpu()).layer_norm(&[4], None, None, EPS);
}

#[test]
#[should_panic(expected = "layer_norm: normalized_shape must have at least one dimension")]
fn an_empty_normalized_shape_is_rejected() {
    Tensor::zeros(&[3, 5], &Device::cpu()).layer_norm(&[], None, None, EPS);
}

#[test]
#[should_panic(expected = "layer_norm: weight of shape [5, 1] does not match normalized_shape [5]")]
fn a_mismatched_weight_is_rejected() {
    let dev = Device::cpu();
    Tensor::zeros(&[3, 5], &dev).layer_norm(&[5], Some(&Tensor::ones(&[5, 1], &dev)), None, EPS);
}

#[test]
#[should_panic(expected = "layer_norm: eps must be a finite non-negative number, got -1")]
fn a_negative_eps_is_rejected() {
    Tensor::zeros(&[3, 5], &Device::cpu()).layer_norm(&[5], None, None, -1.0);
}

// ---- the module ----

#[test]
fn module_defaults_names_and_description() {
    let dev = Device::cpu();
    let ln = LayerNorm::new(&[64], &dev);
    assert_eq!(ln.describe(), "LayerNorm((64,), eps=1e-05, elementwise_affine=True)");
    let params = ln.named_parameters();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["weight", "bias"]);
    assert_eq!(params[0].1.to_vec::<f32>(), vec![1.0; 64]);
    assert_eq!(params[1].1.to_vec::<f32>(), vec![0.0; 64]);
    assert!(params.iter().all(|(_, t)| t.is_tracked()));
    assert_eq!(ln.num_parameters(), 128);
    assert_eq!(ln.normalized_shape(), [64]);
    assert_eq!(ln.epsilon(), 1e-5);

    let ln = LayerNorm::new(&[3, 4], &dev).eps(1e-6).elementwise_affine(false);
    assert_eq!(ln.describe(), "LayerNorm((3, 4), eps=1e-06, elementwise_affine=False)");
    assert!(ln.named_parameters().is_empty());

    let ln = LayerNorm::new(&[3, 4], &dev).bias(false);
    let names: Vec<String> = ln.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight"]);
    assert_eq!(ln.weight().map(|w| w.shape().to_vec()), Some(vec![3, 4]));
    assert!(ln.bias_parameter().is_none());
}

/// Builders switch parameters on and off; a parameter that exists is kept, not created
/// again, so an optimizer built before or after a builder sees the same tensor.
#[test]
fn builders_keep_existing_parameters() {
    let dev = Device::cpu();
    let ln = LayerNorm::new(&[5], &dev);
    let (w, b) = (ln.weight().unwrap().grad_id(), ln.bias_parameter().unwrap().grad_id());
    let ln = ln.eps(1e-3).elementwise_affine(true).bias(true);
    assert_eq!(ln.weight().unwrap().grad_id(), w);
    assert_eq!(ln.bias_parameter().unwrap().grad_id(), b);
    // Switched off and on again: a fresh bias (zeros), the weight untouched.
    let ln = ln.bias(false).bias(true);
    assert_eq!(ln.weight().unwrap().grad_id(), w);
    assert_ne!(ln.bias_parameter().unwrap().grad_id(), b);
    assert_eq!(ln.bias_parameter().unwrap().to_vec::<f32>(), vec![0.0; 5]);
    // Without the affine transform the bias flag has nothing to act on.
    let ln = LayerNorm::new(&[5], &dev).elementwise_affine(false).bias(true);
    assert!(ln.named_parameters().is_empty());
}

/// The module is the functional op with its parameters; its gradients reach them.
#[test]
fn module_forward_and_gradients() {
    for dev in devices("module_forward_and_gradients") {
        let ln = LayerNorm::new(&[6], &dev).eps(1e-4);
        let x = randn(&[2, 3, 6], 4, &dev);
        let y = ln.forward(&x);
        assert_close(
            &format!("module on {}", dev_name(&dev)),
            &y,
            &reference(&x, &[6], None, None, 1e-4),
            within(2e-6, 2e-5),
        );
        let target = randn(&[2, 3, 6], 5, &dev);
        let grads = y.mul(&target).sum_all().backward();
        // The bias gradient is the sum of the output gradient over the rows.
        let expected_bias = target.sum(&[0, 1], false);
        assert_close("bias gradient", grads.wrt(ln.bias_parameter().unwrap()), &expected_bias, within(1e-5, 1e-5));
        assert_eq!(grads.wrt(ln.weight().unwrap()).shape(), &[6]);
    }
}
