//! Batch normalisation: the functional op against a reference composed from generic
//! tensor ops and against values worked out by hand, the GPU kernels against the CPU on
//! shapes chosen to break them, running statistics against a host computation, evaluation
//! mode, gradients by finite differences on both devices, the modules' options, names and
//! checks, checkpoints with buffers, and a small network that learns through the layer.

mod common;

use common::{dev_name, devices, gpu, randn, uniform_values, within};
use wgrad::nn::{BatchNorm1d, BatchNorm2d, Forward, Linear, Module, ReLU, Sequential};
use wgrad::optim::{Optimizer, Sgd};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{checkpoint, no_grad, Device, Tensor};

const EPS: f32 = 1e-5;

/// The axes batch norm reduces over: all but the channel axis 1.
fn stat_axes(rank: usize) -> Vec<isize> {
    std::iter::once(0).chain(2..rank as isize).collect()
}

/// A `[C]` vector shaped to broadcast against `[N, C, ...]` of rank `rank`.
fn per_channel(v: &Tensor, rank: usize) -> Tensor {
    let mut shape = vec![1isize; rank];
    shape[1] = v.numel() as isize;
    v.reshape(&shape)
}

/// Batch norm written with the generic mean, var, sqrt and broadcasting ops.
fn reference(
    x: &Tensor,
    stats: Option<(&Tensor, &Tensor)>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f32,
) -> Tensor {
    let rank = x.rank();
    let (mean, var) = match stats {
        Some((m, v)) => (per_channel(m, rank), per_channel(v, rank)),
        None => {
            let axes = stat_axes(rank);
            (x.mean(&axes, true), x.var(&axes, 0.0, true))
        }
    };
    let mut y = x.sub(&mean).div(&var.add_scalar(eps).sqrt());
    if let Some(w) = weight {
        y = y.mul(&per_channel(w, rank));
    }
    if let Some(b) = bias {
        y = y.add(&per_channel(b, rank));
    }
    y
}

/// `[C]` values uniform in `[low, high)`, drawn on the CPU and uploaded.
fn channel_values(c: usize, low: f32, high: f32, seed: u64, dev: &Device) -> Tensor {
    Tensor::from_slice(&uniform_values(c, low, high, seed), &[c], dev)
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
    for dev in devices("forward_matches_a_reference_composed_from_generic_ops") {
        for (k, shape) in [vec![6, 5], vec![4, 3, 7], vec![2, 3, 5, 6]].into_iter().enumerate() {
            let c = shape[1];
            let seed = 10 * k as u64;
            let x = randn(&shape, seed, &dev).affine(2.0, 0.5);
            let w = channel_values(c, 0.5, 1.5, seed + 1, &dev);
            let b = channel_values(c, -1.0, 1.0, seed + 2, &dev);
            let rm = channel_values(c, -0.5, 0.5, seed + 3, &dev);
            let rv = channel_values(c, 0.5, 2.0, seed + 4, &dev);
            let name = format!("{shape:?} on {}", dev_name(&dev));
            // Normalised values are O(1); f32 statistics against the generic reductions
            // differ by a few ulp of the spread.
            let tol = within(2e-6, 2e-5);

            let y = x.batch_norm(None, None, Some(&w), Some(&b), true, 0.1, EPS);
            assert_close(&format!("training {name}"), &y, &reference(&x, None, Some(&w), Some(&b), EPS), tol);
            let y = x.batch_norm(None, None, None, None, true, 0.1, EPS);
            assert_close(&format!("training, no affine, {name}"), &y, &reference(&x, None, None, None, EPS), tol);

            let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), false, 0.1, EPS);
            let expected = reference(&x, Some((&rm, &rv)), Some(&w), Some(&b), EPS);
            assert_close(&format!("evaluation {name}"), &y, &expected, tol);
            let y = x.batch_norm(Some(&rm), Some(&rv), None, Some(&b), false, 0.1, EPS);
            let expected = reference(&x, Some((&rm, &rv)), None, Some(&b), EPS);
            assert_close(&format!("evaluation, bias only, {name}"), &y, &expected, tol);
        }
    }
}

/// Values whose statistics are exact in binary: channel 0 holds {1, 3} (mean 2, biased
/// variance 1, unbiased 2), channel 1 {-4, 4} (mean 0, biased variance 16, unbiased 32),
/// so with eps = 0, weight [2, 0.5] and bias [0.5, -1] the outputs are
/// (x - mean) / std * w + b = [-1.5, 2.5] and [-1.5, -0.5], and momentum 0.5 moves the
/// running statistics from (0, 1) to mean [1, 0] and variance [1.5, 16.5].
#[test]
fn small_values_worked_out_by_hand() {
    for dev in devices("small_values_worked_out_by_hand") {
        // The same numbers as [N=2, C=2] (one value per image) and as [N=1, C=2, L=2].
        let layouts = [(vec![1.0f32, -4.0, 3.0, 4.0], vec![2, 2]), (vec![1.0f32, 3.0, -4.0, 4.0], vec![1, 2, 2])];
        for (values, shape) in layouts {
            let x = Tensor::from_slice(&values, &shape, &dev);
            let w = Tensor::from_slice(&[2.0f32, 0.5], &[2], &dev);
            let b = Tensor::from_slice(&[0.5f32, -1.0], &[2], &dev);
            let (rm, rv) = (Tensor::zeros(&[2], &dev), Tensor::ones(&[2], &dev));
            let y = x.batch_norm(Some(&rm), Some(&rv), Some(&w), Some(&b), true, 0.5, 0.0);
            let expected: Vec<f32> =
                if shape.len() == 2 { vec![-1.5, -1.5, 2.5, -0.5] } else { vec![-1.5, 2.5, -1.5, -0.5] };
            let name = format!("{shape:?} on {}", dev_name(&dev));
            // sqrt and division are the only inexact steps on a GPU (a few ulp).
            compare(&y.to_vec::<f32>(), &expected, within(1e-6, 1e-6)).unwrap_or_else(|e| panic!("{name}: {e}"));
            compare(&rm.to_vec::<f32>(), &[1.0, 0.0], within(1e-6, 1e-6)).unwrap_or_else(|e| panic!("{name}: {e}"));
            compare(&rv.to_vec::<f32>(), &[1.5, 16.5], within(1e-6, 1e-6)).unwrap_or_else(|e| panic!("{name}: {e}"));

            // Evaluation with those running statistics: (x - [1, 0]) / sqrt([1.5, 16.5]).
            let y = x.batch_norm(Some(&rm), Some(&rv), None, None, false, 0.5, 0.0);
            let expected: Vec<f32> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let ch = if shape.len() == 2 { i % 2 } else { i / 2 };
                    let (m, var) = [(1.0f64, 1.5f64), (0.0, 16.5)][ch];
                    ((v as f64 - m) / var.sqrt()) as f32
                })
                .collect();
            compare(&y.to_vec::<f32>(), &expected, within(1e-6, 1e-6)).unwrap_or_else(|e| panic!("eval {name}: {e}"));
        }
    }
}

/// Forward output, updated running statistics, and the gradients of input, weight and
/// bias, on the GPU against the CPU.
#[test]
fn gpu_matches_cpu_on_shapes_that_break_kernels() {
    let Some(gpu) = gpu("gpu_matches_cpu_on_shapes_that_break_kernels") else { return };
    let shapes: &[&[usize]] = &[
        &[2, 3, 300],   // 600 values per channel: several strides of a workgroup, the last partial
        &[7, 5, 37],    // 259 per channel, in 7 runs of 37
        &[2, 3, 1],     // two values per channel
        &[300, 5],      // 2-D: 300 values per channel, each C apart
        &[3, 5, 9, 11], // 4-D: 297 per channel
        &[1, 3, 2],     // one image
        &[2, 300, 3],   // more channels than a workgroup has invocations
        &[513, 2],      // L = 1 with more images than invocations
    ];
    // Outputs are O(1) and come from f32 statistics on the GPU against f64 ones on the
    // CPU: lavapipe is within 5e-7. The reductions (running statistics and gradient sums)
    // are compared by normalised error: within 1.3e-6, the worst at two values per
    // channel, where the input gradient nearly cancels.
    let elementwise = within(2e-6, 2e-6);
    let reduced = Tolerance::Normalized { tol: 5e-6 };
    for (k, &shape) in shapes.iter().enumerate() {
        let c = shape[1];
        let seed = 100 + 10 * k as u64;
        let inputs = move |d: &Device| {
            vec![
                randn(shape, seed, d).affine(1.5, 0.3),
                channel_values(c, 0.5, 1.5, seed + 1, d),
                channel_values(c, -1.0, 1.0, seed + 2, d),
                randn(shape, seed + 3, d),
            ]
        };
        for (affine, training) in [(true, true), (false, true), (true, false)] {
            let name = format!("{shape:?} affine={affine} training={training}");
            let run = move |t: &[Tensor], part: usize| -> Tensor {
                let (x, w, b, dy) = (t[0].detach().requires_grad(), t[1].detach().requires_grad(), &t[2], &t[3]);
                let b = b.detach().requires_grad();
                let dev = x.device().clone();
                let (rm, rv) = (channel_values(c, -0.5, 0.5, 7, &dev), channel_values(c, 0.5, 2.0, 8, &dev));
                let (wo, bo) = if affine { (Some(&w), Some(&b)) } else { (None, None) };
                let y = x.batch_norm(Some(&rm), Some(&rv), wo, bo, training, 0.3, EPS);
                let grads = y.mul(dy).sum_all().backward();
                match part {
                    0 => y.detach(),
                    1 => Tensor::cat(&[rm, rv], 0),
                    2 => grads.wrt(&x).clone(),
                    _ => Tensor::cat(&[grads.wrt(&w).clone(), grads.wrt(&b).clone()], 0),
                }
            };
            cross_check(&format!("output {name}"), &gpu, elementwise, inputs, |t| run(t, 0));
            if training {
                cross_check(&format!("running statistics {name}"), &gpu, reduced, inputs, |t| run(t, 1));
            }
            cross_check(&format!("input gradient {name}"), &gpu, reduced, inputs, |t| run(t, 2));
            if affine {
                cross_check(&format!("weight and bias gradients {name}"), &gpu, reduced, inputs, |t| run(t, 3));
            }
        }
    }
}

/// Inputs that are views: a transposed (non-contiguous) batch and a slice that starts at
/// an offset into its storage.
#[test]
fn strided_and_offset_inputs_match_their_contiguous_copies() {
    for dev in devices("strided_and_offset_inputs_match_their_contiguous_copies") {
        let base = randn(&[3, 7, 4], 5, &dev);
        let views = [base.permute(&[0, 2, 1]), base.narrow(0, 1, 2).narrow(1, 2, 5)];
        for view in views {
            let w = channel_values(view.dim(1), 0.5, 1.5, 6, &dev);
            let x = view.detach().requires_grad();
            let y = x.batch_norm(None, None, Some(&w), None, true, 0.1, EPS);
            let packed = view.contiguous().detach().requires_grad();
            let expected = packed.batch_norm(None, None, Some(&w), None, true, 0.1, EPS);
            let name = format!("{:?} view on {}", view.shape(), dev_name(&dev));
            assert_close(&name, &y, &expected, Tolerance::Exact);
            let gx = y.square().sum_all().backward();
            let gp = expected.square().sum_all().backward();
            assert_close(&format!("gradient of {name}"), gx.wrt(&x), gp.wrt(&packed), Tolerance::Exact);
        }
    }
}

/// A mean far from zero against a small spread: a one-pass E[x^2] - E[x]^2 would lose
/// every digit of the variance in f32 (1000^2 against 0.01).
#[test]
fn statistics_survive_a_large_mean() {
    for dev in devices("statistics_survive_a_large_mean") {
        let x = randn(&[4, 3, 100], 9, &dev).affine(0.1, 1000.0);
        let y = x.batch_norm(None, None, None, None, true, 0.1, 0.0);
        let cpu = x.to_device(&Device::cpu());
        let expected = reference(&cpu, None, None, None, 0.0);
        // The inputs carry 6e-5 of absolute rounding at 1000, that is 6e-4 of the spread.
        assert_close(&format!("large mean on {}", dev_name(&dev)), &y, &expected, within(2e-3, 0.0));
        let var = y.var(&[0, 2], 0.0, false).to_vec::<f32>();
        assert!(var.iter().all(|v| (v - 1.0).abs() < 1e-3), "normalised variance {var:?} on {}", dev_name(&dev));
    }
}

#[test]
fn an_empty_batch_gives_an_empty_output_and_leaves_the_statistics() {
    for dev in devices("an_empty_batch_gives_an_empty_output_and_leaves_the_statistics") {
        let x = Tensor::zeros(&[0, 3, 4], &dev);
        let (rm, rv) = (Tensor::zeros(&[3], &dev), Tensor::ones(&[3], &dev));
        let y = x.batch_norm(Some(&rm), Some(&rv), None, None, true, 0.1, EPS);
        assert_eq!(y.shape(), [0, 3, 4]);
        assert_eq!(rm.to_vec::<f32>(), [0.0; 3]);
        assert_eq!(rv.to_vec::<f32>(), [1.0; 3]);
    }
}

// ---- gradients ----

const GRAD_TOL: GradTolerance = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };

#[test]
fn gradients_pass_finite_differences_in_training_and_evaluation() {
    let mut failures = Vec::new();
    for dev in devices("gradients_pass_finite_differences_in_training_and_evaluation") {
        for (k, shape) in [vec![5, 3], vec![3, 2, 4], vec![2, 2, 2, 3]].into_iter().enumerate() {
            let c = shape[1];
            let seed = 200 + 10 * k as u64;
            let x = (uniform_values(shape.iter().product(), -2.0, 2.0, seed), shape.clone());
            let w = (uniform_values(c, 0.5, 1.5, seed + 1), vec![c]);
            let b = (uniform_values(c, -1.0, 1.0, seed + 2), vec![c]);
            let rm = uniform_values(c, -0.5, 0.5, seed + 3);
            let rv = uniform_values(c, 0.5, 2.0, seed + 4);
            for training in [true, false] {
                let name = format!("{shape:?} training={training}");
                let (rm, rv) = (rm.clone(), rv.clone());
                let running = move |d: &Device| (Tensor::from_slice(&rm, &[c], d), Tensor::from_slice(&rv, &[c], d));
                let run = |checked: &str, inputs: &[(Vec<f32>, Vec<usize>)], f: &dyn Fn(&[Tensor]) -> Tensor| {
                    gradcheck(&format!("{checked} {name}"), &dev, inputs, GRAD_TOL, f).err()
                };
                let r = running.clone();
                failures.extend(run("x, weight, bias", &[x.clone(), w.clone(), b.clone()], &move |t| {
                    let (rm, rv) = r(t[0].device());
                    t[0].batch_norm(Some(&rm), Some(&rv), Some(&t[1]), Some(&t[2]), training, 0.1, EPS)
                }));
                let r = running.clone();
                failures.extend(run("x without affine", std::slice::from_ref(&x), &move |t| {
                    let (rm, rv) = r(t[0].device());
                    t[0].batch_norm(Some(&rm), Some(&rv), None, None, training, 0.1, EPS)
                }));
                let r = running.clone();
                failures.extend(run("weight only", &[x.clone(), w.clone()], &move |t| {
                    let (rm, rv) = r(t[0].device());
                    t[0].batch_norm(Some(&rm), Some(&rv), Some(&t[1]), None, training, 0.1, EPS)
                }));
            }
        }
    }
    assert!(failures.is_empty(), "{} gradient checks failed:\n{}", failures.len(), failures.join("\n"));
}

/// A gradient needed only for the parameters (the input is data) and one that comes in
/// through a broadcast (non-contiguous) output gradient.
#[test]
fn parameter_gradients_without_an_input_gradient() {
    for dev in devices("parameter_gradients_without_an_input_gradient") {
        let x = randn(&[4, 3, 5], 11, &dev);
        let w = Tensor::ones(&[3], &dev).requires_grad();
        let b = Tensor::zeros(&[3], &dev).requires_grad();
        let y = x.batch_norm(None, None, Some(&w), Some(&b), true, 0.1, EPS);
        let grads = y.sum_all().backward();
        // d sum(y) / d bias = the values per channel; d / d weight = sum of xhat = 0.
        assert_close("bias gradient", grads.wrt(&b), &Tensor::full(&[3], 20.0, &dev), within(1e-5, 0.0));
        assert_close("weight gradient", grads.wrt(&w), &Tensor::zeros(&[3], &dev), within(1e-4, 0.0));
        assert!(grads.get(&x).is_none());
    }
}

// ---- modules ----

/// The running statistics after `steps` batches on the host, in f64: the mean and the
/// unbiased variance of each batch, blended with `momentum` (the cumulative average 1/n
/// when `None`).
fn host_running_stats(batches: &[Vec<f32>], shape: &[usize], momentum: Option<f64>) -> (Vec<f64>, Vec<f64>) {
    let (n, c) = (shape[0], shape[1]);
    let l: usize = shape[2..].iter().product();
    let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
    for (step, batch) in batches.iter().enumerate() {
        let factor = momentum.unwrap_or(1.0 / (step + 1) as f64);
        for ch in 0..c {
            let values: Vec<f64> =
                (0..n).flat_map(|i| (0..l).map(move |p| (i * c + ch) * l + p)).map(|j| batch[j] as f64).collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
            rm[ch] = (1.0 - factor) * rm[ch] + factor * mean;
            rv[ch] = (1.0 - factor) * rv[ch] + factor * var;
        }
    }
    (rm, rv)
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn running_statistics_follow_a_host_computation() {
    for dev in devices("running_statistics_follow_a_host_computation") {
        for (momentum, shape) in [(Some(0.1), vec![8, 3, 5]), (None, vec![8, 3, 5]), (Some(0.25), vec![6, 4])] {
            let batches: Vec<Vec<f32>> = (0..4)
                .map(|s| {
                    let n: usize = shape.iter().product();
                    uniform_values(n, -1.0, 3.0 + s as f32, 300 + s).iter().map(|v| v * (1.0 + s as f32)).collect()
                })
                .collect();
            let bn = BatchNorm1d::new(shape[1], &dev).momentum(momentum);
            for batch in &batches {
                bn.forward(&Tensor::from_slice(batch, &shape, &dev));
            }
            let (rm, rv) = host_running_stats(&batches, &shape, momentum.map(f64::from));
            let name = format!("momentum {momentum:?} {shape:?} on {}", dev_name(&dev));
            let tol = within(1e-5, 1e-5);
            compare(&bn.running_mean().unwrap().to_vec::<f32>(), &to_f32(&rm), tol)
                .unwrap_or_else(|e| panic!("running_mean, {name}: {e}"));
            compare(&bn.running_var().unwrap().to_vec::<f32>(), &to_f32(&rv), tol)
                .unwrap_or_else(|e| panic!("running_var, {name}: {e}"));
            assert_eq!(bn.num_batches_tracked().unwrap().to_vec::<i32>(), [4], "{name}");
        }
    }
}

#[test]
fn evaluation_mode_normalises_with_the_running_statistics_and_keeps_them() {
    for dev in devices("evaluation_mode_normalises_with_the_running_statistics_and_keeps_them") {
        let mut bn = BatchNorm2d::new(3, &dev);
        // A few optimizer steps move weight and bias away from ones and zeros, so that
        // they take part in the check.
        let mut opt = Sgd::new(bn.parameters(), 0.5);
        for step in 0..3 {
            let y = bn.forward(&randn(&[2, 3, 4, 5], 400 + step, &dev).affine(2.0, 1.0));
            opt.step(&y.mul(&randn(&[2, 3, 4, 5], 420 + step, &dev)).sum_all().backward());
        }
        let (w, b) = (bn.weight().unwrap().clone(), bn.bias().unwrap().clone());
        assert!(w.to_vec::<f32>().iter().all(|&v| v != 1.0), "the weight did not train");
        let (rm, rv) = (bn.running_mean().unwrap().to_vec::<f32>(), bn.running_var().unwrap().to_vec::<f32>());
        bn.set_training(false);
        assert!(!bn.is_training());
        // One image is a valid evaluation batch.
        let x = randn(&[1, 3, 4, 5], 410, &dev);
        let y = bn.forward(&x);
        let stats = (Tensor::from_slice(&rm, &[3], &dev), Tensor::from_slice(&rv, &[3], &dev));
        let expected = reference(&x, Some((&stats.0, &stats.1)), Some(&w), Some(&b), EPS);
        assert_close(&format!("evaluation on {}", dev_name(&dev)), &y, &expected, within(2e-6, 1e-5));
        assert_eq!(bn.running_mean().unwrap().to_vec::<f32>(), rm, "evaluation must not move running_mean");
        assert_eq!(bn.running_var().unwrap().to_vec::<f32>(), rv, "evaluation must not move running_var");
        assert_eq!(bn.num_batches_tracked().unwrap().to_vec::<i32>(), [3]);

        bn.set_training(true);
        no_grad(|| bn.forward(&randn(&[2, 3, 4, 5], 411, &dev)));
        assert_eq!(bn.num_batches_tracked().unwrap().to_vec::<i32>(), [4], "training counts batches again");
    }
}

#[test]
fn without_running_statistics_every_mode_uses_the_batch() {
    for dev in devices("without_running_statistics_every_mode_uses_the_batch") {
        let mut bn = BatchNorm2d::new(3, &dev).affine(false).track_running_stats(false);
        assert!(bn.named_parameters().is_empty());
        assert!(bn.named_buffers().is_empty());
        assert!(bn.running_mean().is_none() && bn.num_batches_tracked().is_none());
        assert_eq!(bn.describe(), "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)");
        let x = randn(&[2, 3, 3, 4], 500, &dev).affine(3.0, -2.0);
        let expected = reference(&x, None, None, None, EPS);
        assert_close("training", &bn.forward(&x), &expected, within(2e-6, 2e-5));
        bn.set_training(false);
        assert_close("evaluation", &bn.forward(&x), &expected, within(2e-6, 2e-5));
    }
}

#[test]
fn names_defaults_and_descriptions_follow_pytorch() {
    let dev = Device::cpu();
    let bn = BatchNorm1d::new(4, &dev);
    let names = |pairs: Vec<(String, Tensor)>| pairs.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names(bn.named_parameters()), ["weight", "bias"]);
    assert_eq!(names(bn.named_buffers()), ["running_mean", "running_var", "num_batches_tracked"]);
    assert_eq!(bn.weight().unwrap().to_vec::<f32>(), [1.0; 4]);
    assert_eq!(bn.bias().unwrap().to_vec::<f32>(), [0.0; 4]);
    assert_eq!(bn.running_mean().unwrap().to_vec::<f32>(), [0.0; 4]);
    assert_eq!(bn.running_var().unwrap().to_vec::<f32>(), [1.0; 4]);
    assert_eq!(bn.num_batches_tracked().unwrap().shape(), [] as [usize; 0]);
    assert_eq!(bn.num_batches_tracked().unwrap().to_vec::<i32>(), [0]);
    assert!(bn.is_training());
    assert_eq!(bn.num_features(), 4);
    assert_eq!(bn.describe(), "BatchNorm1d(4, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
    let custom = BatchNorm2d::new(32, &dev).eps(1e-3).momentum(None);
    assert_eq!(custom.describe(), "BatchNorm2d(32, eps=0.001, momentum=None, affine=True, track_running_stats=True)");

    let model = Sequential::new().add(Linear::new(3, 4, &dev)).add(BatchNorm1d::new(4, &dev)).add(ReLU);
    assert_eq!(names(model.named_parameters()), ["0.weight", "0.bias", "1.weight", "1.bias"]);
    assert_eq!(names(model.named_buffers()), ["1.running_mean", "1.running_var", "1.num_batches_tracked"]);
    assert!(model.describe().contains("(1): BatchNorm1d(4, eps=1e-05"));
}

#[test]
#[should_panic(expected = "expected more than 1 value per channel when training, got input of shape [1, 3]")]
fn training_on_one_value_per_channel_panics() {
    BatchNorm1d::new(3, &Device::cpu()).forward(&Tensor::ones(&[1, 3], &Device::cpu()));
}

#[test]
fn a_rejected_batch_does_not_count() {
    let bn = BatchNorm1d::new(3, &Device::cpu());
    let x = Tensor::ones(&[1, 3, 1], &Device::cpu());
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bn.forward(&x)));
    assert!(caught.is_err());
    assert_eq!(bn.num_batches_tracked().unwrap().to_vec::<i32>(), [0]);
}

#[test]
#[should_panic(expected = "BatchNorm1d(4): input of shape [2, 3] has 3 channels in dimension 1, expected 4")]
fn a_channel_mismatch_panics_with_the_shapes() {
    BatchNorm1d::new(4, &Device::cpu()).forward(&Tensor::ones(&[2, 3], &Device::cpu()));
}

#[test]
#[should_panic(expected = "BatchNorm2d: expected [N, C, H, W] input, got shape [2, 3, 5]")]
fn batch_norm_2d_rejects_a_3d_input() {
    BatchNorm2d::new(3, &Device::cpu()).forward(&Tensor::ones(&[2, 3, 5], &Device::cpu()));
}

#[test]
#[should_panic(expected = "BatchNorm1d: expected [N, C] or [N, C, L] input, got shape [2, 3, 4, 5]")]
fn batch_norm_1d_rejects_a_4d_input() {
    BatchNorm1d::new(3, &Device::cpu()).forward(&Tensor::ones(&[2, 3, 4, 5], &Device::cpu()));
}

#[test]
#[should_panic(
    expected = "batch_norm: weight of shape [4] does not match the 3 channels of the input of shape [2, 3, 5]"
)]
fn a_weight_of_the_wrong_size_panics() {
    let dev = Device::cpu();
    Tensor::ones(&[2, 3, 5], &dev).batch_norm(None, None, Some(&Tensor::ones(&[4], &dev)), None, true, 0.1, EPS);
}

#[test]
#[should_panic(expected = "batch_norm: evaluation (training = false) normalises with running_mean and running_var")]
fn evaluation_without_running_statistics_panics() {
    Tensor::ones(&[2, 3], &Device::cpu()).batch_norm(None, None, None, None, false, 0.1, EPS);
}

#[test]
#[should_panic(expected = "momentum must be in [0, 1] or None, got 1.5")]
fn a_momentum_out_of_range_panics() {
    let _ = BatchNorm1d::new(3, &Device::cpu()).momentum(Some(1.5));
}

// ---- checkpoints ----

fn bn_model(seed: u64, dev: &Device) -> Sequential {
    Sequential::new().add(Linear::with_seed(4, 3, true, seed, dev)).add(BatchNorm1d::new(3, dev)).add(ReLU)
}

fn state_values(module: &dyn Module) -> Vec<(String, Vec<f32>)> {
    let mut all = module.named_parameters();
    all.extend(module.named_buffers());
    all.into_iter()
        .map(|(n, t)| {
            let v = if n.ends_with("num_batches_tracked") {
                t.to_vec::<i32>().iter().map(|&c| c as f32).collect()
            } else {
                t.to_vec::<f32>()
            };
            (n, v)
        })
        .collect()
}

#[test]
fn checkpoints_round_trip_the_buffers() {
    let mut pairs = vec![(Device::cpu(), Device::cpu())];
    if let Some(g) = gpu("checkpoints_round_trip_the_buffers") {
        pairs.extend([(g.clone(), Device::cpu()), (Device::cpu(), g.clone()), (g.clone(), g)]);
    }
    let dir = std::env::temp_dir().join(format!("wgrad-batch-norm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (k, (from, to)) in pairs.into_iter().enumerate() {
        let path = dir.join(format!("bn-{k}.safetensors"));
        let mut saved = bn_model(1, &from);
        for step in 0..3 {
            saved.forward(&randn(&[5, 4], 600 + step, &from));
        }
        checkpoint::save(&saved, &path).unwrap();
        let mut loaded = bn_model(2, &to);
        assert_ne!(state_values(&saved), state_values(&loaded));
        checkpoint::load(&loaded, &path).unwrap();
        assert_eq!(state_values(&saved), state_values(&loaded), "{} -> {}", dev_name(&from), dev_name(&to));

        // Evaluation reads the loaded running statistics.
        saved.set_training(false);
        loaded.set_training(false);
        let x = randn(&[3, 4], 700, &Device::cpu());
        let (a, b) = (saved.forward(&x.to_device(&from)), loaded.forward(&x.to_device(&to)));
        compare(&b.to_vec::<f32>(), &a.to_vec::<f32>(), within(1e-5, 1e-5)).unwrap();
        // Training goes on counting from the loaded count.
        loaded.set_training(true);
        loaded.forward(&x.to_device(&to));
        let count = loaded.named_buffers().into_iter().find(|(n, _)| n == "1.num_batches_tracked").unwrap().1;
        assert_eq!(count.to_vec::<i32>(), [4]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- learning ----

/// Two Gaussian-ish blobs per class in 4-D, offset far from the origin and scaled
/// unevenly, which is what batch norm is for; the loss of a small network with
/// BatchNorm1d after its hidden layer must fall by half within 60 SGD steps.
#[test]
fn a_network_with_batch_norm_learns() {
    for dev in devices("a_network_with_batch_norm_learns") {
        let n = 48;
        let labels: Vec<i32> = (0..n).map(|i| (i % 3) as i32).collect();
        let noise = uniform_values(n * 4, -1.0, 1.0, 800);
        let features: Vec<f32> = (0..n * 4)
            .map(|j| {
                let (i, f) = (j / 4, j % 4);
                let centre = if f == labels[i] as usize { 3.0 } else { 0.0 };
                (centre + noise[j]) * [1.0, 10.0, 0.1, 5.0][f] + 50.0
            })
            .collect();
        let x = Tensor::from_slice(&features, &[n, 4], &dev);
        let y = Tensor::from_slice(&labels, &[n], &dev);
        let model = Sequential::new()
            .add(Linear::with_seed(4, 16, true, 801, &dev))
            .add(BatchNorm1d::new(16, &dev))
            .add(ReLU)
            .add(Linear::with_seed(16, 3, true, 802, &dev));
        let mut opt = Sgd::new(model.parameters(), 0.2);
        let mut losses = Vec::new();
        for _ in 0..60 {
            let loss = wgrad::loss::cross_entropy(&model.forward(&x), &y);
            losses.push(loss.item());
            opt.step(&loss.backward());
        }
        let (first, last) = (losses[0], *losses.last().unwrap());
        assert!(last.is_finite() && last < 0.5 * first, "loss {first} -> {last} on {}: {losses:?}", dev_name(&dev));
    }
}
