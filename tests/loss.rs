//! The losses of `wgrad::loss` on the CPU and on the GPU device, checked against:
//! - values PyTorch gives for simple inputs, where they follow in closed form from the
//!   definition (each one derived in a comment next to it);
//! - independent host references in f64, written loop by loop from PyTorch's documented
//!   formulas (cross-entropy as its C++ composes it: the reduced NLL plus the reduced
//!   smoothing term), not from the tensor ops under test;
//! - `gradcheck` (finite differences, the loss mid-graph) with respect to the input, and
//!   to the target wherever PyTorch differentiates it;
//! - logits of ±1000, exact zeros and ones for the probability losses, and the shape checks.

use std::sync::OnceLock;

use wgrad::loss::{
    binary_cross_entropy, binary_cross_entropy_with_logits, cosine_embedding_loss, cross_entropy, gaussian_nll_loss,
    hinge_embedding_loss, huber_loss, kl_div, l1_loss, margin_ranking_loss, mse_loss, multi_margin_loss,
    multilabel_soft_margin_loss, nll_loss, poisson_nll_loss, smooth_l1_loss, soft_margin_loss, triplet_margin_loss,
    CrossEntropy, Reduction,
};
use wgrad::testing::{gpu_test_device, gradcheck, GradTolerance};
use wgrad::{Device, Tensor};

// ---- helpers ----

fn gpu() -> Option<Device> {
    static DEVICE: OnceLock<Option<Device>> = OnceLock::new();
    DEVICE.get_or_init(gpu_test_device).clone()
}

/// The CPU, and the GPU device when there is one.
fn devices() -> Vec<Device> {
    let mut v = vec![Device::cpu()];
    v.extend(gpu());
    v
}

fn name(d: &Device) -> &'static str {
    if d.is_cpu() {
        "cpu"
    } else {
        "gpu"
    }
}

fn f32s(values: &[f32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(values, shape, dev)
}

fn i32s(values: &[i32], shape: &[usize], dev: &Device) -> Tensor {
    Tensor::from_slice(values, shape, dev)
}

/// `n` values uniform in `[low, high)` from a splitmix64 stream: independent of wgrad.
fn values(n: usize, seed: u64, low: f32, high: f32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    (0..n)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let u = (z >> 40) as f32 / (1u64 << 24) as f32;
            low + (high - low) * u
        })
        .collect()
}

/// `|actual - expected| <= tol * (1 + |expected|)` elementwise, and the same length.
fn assert_close(label: &str, actual: &Tensor, expected: &[f64], tol: f64) {
    let a = actual.to_vec::<f32>();
    assert_eq!(a.len(), expected.len(), "{label}: {} values, expected {}", a.len(), expected.len());
    for (i, (&a, &e)) in a.iter().zip(expected).enumerate() {
        assert!((a as f64 - e).abs() <= tol * (1.0 + e.abs()), "{label}: element {i} is {a}, expected {e}");
    }
}

const REDUCTIONS: [Reduction; 3] = [Reduction::Mean, Reduction::Sum, Reduction::None];

/// A reduction applied on the host to per-element reference values.
fn reduce_ref(per_element: &[f64], r: Reduction) -> Vec<f64> {
    match r {
        Reduction::Mean => vec![per_element.iter().sum::<f64>() / per_element.len() as f64],
        Reduction::Sum => vec![per_element.iter().sum()],
        Reduction::None => per_element.to_vec(),
        Reduction::BatchMean => unreachable!(),
    }
}

fn expected_shape(r: Reduction, shape: &[usize]) -> Vec<usize> {
    if r == Reduction::None {
        shape.to_vec()
    } else {
        vec![]
    }
}

fn log_softmax_ref(row: &[f64]) -> Vec<f64> {
    let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + row.iter().map(|x| (x - max).exp()).sum::<f64>().ln();
    row.iter().map(|x| x - lse).collect()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn check(label: &str, result: Result<(), String>) {
    if let Err(e) = result {
        panic!("{label}: {e}");
    }
}

// ---- regression losses ----

#[test]
fn regression_losses_by_hand() {
    // d = input - target = [0.5, 3, -2, 0].
    let input = [0.5f32, 3.0, -2.0, 1.0];
    let target = [0.0f32, 0.0, 0.0, 1.0];
    for dev in devices() {
        let (x, y) = (f32s(&input, &[4], &dev), f32s(&target, &[4], &dev));
        let n = name(&dev);
        // d^2 = [0.25, 9, 4, 0]: sum 13.25, mean 3.3125.
        assert_close(&format!("mse none {n}"), &mse_loss(&x, &y, Reduction::None), &[0.25, 9.0, 4.0, 0.0], 1e-6);
        assert_close(&format!("mse mean {n}"), &mse_loss(&x, &y, Reduction::Mean), &[3.3125], 1e-6);
        assert_close(&format!("mse sum {n}"), &mse_loss(&x, &y, Reduction::Sum), &[13.25], 1e-6);
        // |d| = [0.5, 3, 2, 0]: mean 1.375.
        assert_close(&format!("l1 mean {n}"), &l1_loss(&x, &y, Reduction::Mean), &[1.375], 1e-6);
        // delta 1: [0.5^2/2, 1*(3 - 0.5), 1*(2 - 0.5), 0] = [0.125, 2.5, 1.5, 0].
        let huber1 = [0.125, 2.5, 1.5, 0.0];
        assert_close(&format!("huber 1 {n}"), &huber_loss(&x, &y, Reduction::None, 1.0), &huber1, 1e-6);
        // delta 2: [0.125, 2*(3 - 1), 2*(2 - 1), 0] = [0.125, 4, 2, 0] (|d| = 2 is on the
        // linear side, where both pieces give 2).
        let huber2 = [0.125, 4.0, 2.0, 0.0];
        assert_close(&format!("huber 2 {n}"), &huber_loss(&x, &y, Reduction::None, 2.0), &huber2, 1e-6);
        // smooth_l1 beta 2 = huber delta 2 / 2: [0.0625, 2, 1, 0].
        let smooth2 = [0.0625, 2.0, 1.0, 0.0];
        assert_close(&format!("smooth_l1 2 {n}"), &smooth_l1_loss(&x, &y, Reduction::None, 2.0), &smooth2, 1e-6);
        // beta 1: identical to huber with delta 1; beta 0: identical to l1.
        assert_close(&format!("smooth_l1 1 {n}"), &smooth_l1_loss(&x, &y, Reduction::None, 1.0), &huber1, 1e-6);
        let l1 = [0.5, 3.0, 2.0, 0.0];
        assert_close(&format!("smooth_l1 0 {n}"), &smooth_l1_loss(&x, &y, Reduction::None, 0.0), &l1, 1e-6);
        assert_close(&format!("smooth_l1 sum {n}"), &smooth_l1_loss(&x, &y, Reduction::Sum, 2.0), &[3.0625], 1e-6);
    }
}

#[test]
fn regression_losses_match_host_reference_for_every_reduction() {
    let shape = [3, 5];
    let input = values(15, 1, -3.0, 3.0);
    let target = values(15, 2, -3.0, 3.0);
    let diffs: Vec<f64> = input.iter().zip(&target).map(|(&a, &b)| a as f64 - b as f64).collect();
    let huber = |d: f64, delta: f64| if d.abs() < delta { 0.5 * d * d } else { delta * (d.abs() - 0.5 * delta) };
    let smooth = |d: f64, beta: f64| if d.abs() < beta { 0.5 * d * d / beta } else { d.abs() - 0.5 * beta };
    type Loss = Box<dyn Fn(&Tensor, &Tensor, Reduction) -> Tensor>;
    let cases: Vec<(&str, Loss, Vec<f64>)> = vec![
        ("mse", Box::new(mse_loss), diffs.iter().map(|d| d * d).collect()),
        ("l1", Box::new(l1_loss), diffs.iter().map(|d| d.abs()).collect()),
        ("huber 1", Box::new(|x, y, r| huber_loss(x, y, r, 1.0)), diffs.iter().map(|&d| huber(d, 1.0)).collect()),
        ("huber 0.7", Box::new(|x, y, r| huber_loss(x, y, r, 0.7)), diffs.iter().map(|&d| huber(d, 0.7)).collect()),
        (
            "smooth_l1 1",
            Box::new(|x, y, r| smooth_l1_loss(x, y, r, 1.0)),
            diffs.iter().map(|&d| smooth(d, 1.0)).collect(),
        ),
        (
            "smooth_l1 2.5",
            Box::new(|x, y, r| smooth_l1_loss(x, y, r, 2.5)),
            diffs.iter().map(|&d| smooth(d, 2.5)).collect(),
        ),
    ];
    for dev in devices() {
        let (x, y) = (f32s(&input, &shape, &dev), f32s(&target, &shape, &dev));
        for (label, loss, per_element) in &cases {
            for r in REDUCTIONS {
                let out = loss(&x, &y, r);
                let label = format!("{label} {r:?} on {}", name(&dev));
                assert_eq!(out.shape(), expected_shape(r, &shape), "{label}");
                assert_close(&label, &out, &reduce_ref(per_element, r), 1e-5);
            }
        }
    }
}

#[test]
fn regression_losses_gradcheck_input_and_target() {
    // |input - target| stays at least 0.1 away from the kinks at 0 and at delta / beta.
    let input = vec![0.3f32, -1.2, 2.5, 0.8, -0.4, 1.9];
    let target = vec![0.0f32, 0.1, 0.2, -0.9, 0.5, 0.6];
    let inputs = [(input, vec![2, 3]), (target, vec![2, 3])];
    let tol = GradTolerance::default();
    for dev in devices() {
        let n = name(&dev);
        for r in REDUCTIONS {
            check(&format!("mse {r:?} {n}"), gradcheck("mse", &dev, &inputs, tol, |t| mse_loss(&t[0], &t[1], r)));
            check(&format!("l1 {r:?} {n}"), gradcheck("l1", &dev, &inputs, tol, |t| l1_loss(&t[0], &t[1], r)));
            check(
                &format!("huber {r:?} {n}"),
                gradcheck("huber", &dev, &inputs, tol, |t| huber_loss(&t[0], &t[1], r, 1.0)),
            );
            check(
                &format!("smooth_l1 {r:?} {n}"),
                gradcheck("smooth_l1", &dev, &inputs, tol, |t| smooth_l1_loss(&t[0], &t[1], r, 0.5)),
            );
        }
    }
}

#[test]
fn l1_gradient_at_zero_difference_is_zero() {
    // PyTorch's sign(0) = 0.
    for dev in devices() {
        let x = f32s(&[1.0, 2.0], &[2], &dev).requires_grad();
        let y = f32s(&[1.0, 0.0], &[2], &dev);
        let g = l1_loss(&x, &y, Reduction::Sum).backward();
        assert_eq!(g.wrt(&x).to_vec::<f32>(), vec![0.0, 1.0], "on {}", name(&dev));
    }
}

// ---- cross-entropy ----

/// PyTorch's cross_entropy with class indices on logits `[N, C, D]` (row-major) and
/// targets `[N, D]`, as its C++ composes it: `(1 - eps) * nll_loss(...) + (eps / C) *
/// smooth`, each reduced on its own (with the weighted mean's denominator `Σ w[y]` over the
/// targets not ignored).
fn cross_entropy_ref(
    logits: &[f32],
    (n, c, d): (usize, usize, usize),
    targets: &[i32],
    weight: Option<&[f32]>,
    eps: f64,
    ignore: Option<i32>,
    r: Reduction,
) -> Vec<f64> {
    let w = |k: usize| weight.map_or(1.0, |w| w[k] as f64);
    let (mut nll, mut smooth, mut weight_sum) = (vec![], vec![], 0.0);
    for i in 0..n {
        for j in 0..d {
            let row: Vec<f64> = (0..c).map(|k| logits[(i * c + k) * d + j] as f64).collect();
            let lp = log_softmax_ref(&row);
            let y = targets[i * d + j];
            if Some(y) == ignore {
                nll.push(0.0);
                smooth.push(0.0);
                continue;
            }
            let y = y as usize;
            nll.push(-w(y) * lp[y]);
            smooth.push(-(0..c).map(|k| w(k) * lp[k]).sum::<f64>());
            weight_sum += w(y);
        }
    }
    let mix = |a: f64, b: f64| (1.0 - eps) * a + eps / c as f64 * b;
    match r {
        Reduction::None => nll.iter().zip(&smooth).map(|(&a, &b)| mix(a, b)).collect(),
        Reduction::Sum => vec![mix(nll.iter().sum(), smooth.iter().sum())],
        Reduction::Mean => vec![mix(nll.iter().sum::<f64>() / weight_sum, smooth.iter().sum::<f64>() / weight_sum)],
        Reduction::BatchMean => unreachable!(),
    }
}

#[test]
fn cross_entropy_matches_known_pytorch_values() {
    for dev in devices() {
        let n = name(&dev);
        let logits = f32s(&[1.0, 2.0, 3.0], &[1, 3], &dev);
        let target = i32s(&[2], &[1], &dev);
        // F.cross_entropy(tensor([[1., 2., 3.]]), tensor([2])) = log(e + e^2 + e^3) - 3 = 0.40760596.
        assert_close(&format!("plain {n}"), &cross_entropy(&logits, &target), &[0.40760596], 1e-6);
        // label_smoothing=0.1: 0.9 * 0.40760596 + 0.1 * mean_c(-log_softmax) where the mean of
        // -log_softmax is lse - mean(x) = 3.40760596 - 2, so 0.36684536 + 0.14076060 = 0.50760596.
        let smoothed = CrossEntropy::new().label_smoothing(0.1).forward(&logits, &target);
        assert_close(&format!("smoothed {n}"), &smoothed, &[0.50760596], 1e-6);
        // Equal logits: log C for any target. Two rows, mean: log 4 = 1.38629436.
        let flat = f32s(&[0.5; 8], &[2, 4], &dev);
        assert_close(&format!("uniform {n}"), &cross_entropy(&flat, &i32s(&[3, 0], &[2], &dev)), &[1.38629436], 1e-6);
        // Unbatched: logits [3], 0-dim target; Reduction::None gives a 0-dim tensor.
        let unbatched = f32s(&[1.0, 2.0, 3.0], &[3], &dev);
        let target0 = i32s(&[2], &[], &dev);
        let none = CrossEntropy::new().reduction(Reduction::None).forward(&unbatched, &target0);
        assert_eq!(none.shape(), &[] as &[usize]);
        assert_close(&format!("unbatched {n}"), &none, &[0.40760596], 1e-6);
    }
}

#[test]
fn cross_entropy_class_weights_by_hand() {
    // Logits [1, 2, 3] twice; -log_softmax = [2.40760596, 1.40760596, 0.40760596].
    // Targets [2, 0], weights [1, 2, 3]: per sample [3 * 0.40760596, 1 * 2.40760596] =
    // [1.22281788, 2.40760596]; sum 3.63042384; weighted mean divides by w[2] + w[0] = 4.
    for dev in devices() {
        let n = name(&dev);
        let logits = f32s(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 3], &dev);
        let targets = i32s(&[2, 0], &[2], &dev);
        let w = f32s(&[1.0, 2.0, 3.0], &[3], &dev);
        let ce = CrossEntropy::new().weight(&w);
        assert_close(&format!("mean {n}"), &ce.forward(&logits, &targets), &[0.90760596], 1e-6);
        let sum = ce.clone().reduction(Reduction::Sum).forward(&logits, &targets);
        assert_close(&format!("sum {n}"), &sum, &[3.63042384], 1e-6);
        let none = ce.clone().reduction(Reduction::None).forward(&logits, &targets);
        assert_close(&format!("none {n}"), &none, &[1.22281788, 2.40760596], 1e-6);
        // With label smoothing 0.1 the smoothing term of each sample is Σ_c w_c (-lp_c) =
        // 2.40760596 + 2 * 1.40760596 + 3 * 0.40760596 = 6.44563576, and PyTorch divides it by
        // the same Σ w[y] = 4: (0.9 * 3.63042384 + (0.1 / 3) * 2 * 6.44563576) / 4 = 0.92427263.
        let smoothed = ce.label_smoothing(0.1).forward(&logits, &targets);
        assert_close(&format!("weighted smoothed mean {n}"), &smoothed, &[0.92427263], 1e-6);
    }
}

#[test]
fn cross_entropy_options_match_host_reference() {
    let (n, c) = (5, 4);
    let logits = values(n * c, 3, -4.0, 4.0);
    let targets = [3, 0, 1, 3, 2];
    let weight = [0.5f32, 2.0, 1.0, 3.0];
    for dev in devices() {
        let x = f32s(&logits, &[n, c], &dev);
        let y = i32s(&targets, &[n], &dev);
        let w = f32s(&weight, &[c], &dev);
        for eps in [0.0, 0.1, 0.35, 1.0] {
            for use_weight in [false, true] {
                for r in REDUCTIONS {
                    let mut ce = CrossEntropy::new().label_smoothing(eps).reduction(r);
                    if use_weight {
                        ce = ce.weight(&w);
                    }
                    let label = format!("eps {eps} weight {use_weight} {r:?} on {}", name(&dev));
                    let expected = cross_entropy_ref(
                        &logits,
                        (n, c, 1),
                        &targets,
                        use_weight.then_some(&weight[..]),
                        eps as f64,
                        None,
                        r,
                    );
                    let out = ce.forward(&x, &y);
                    assert_eq!(out.shape(), expected_shape(r, &[n]), "{label}");
                    assert_close(&label, &out, &expected, 2e-6);
                }
            }
        }
    }
}

#[test]
fn cross_entropy_ignore_index_outside_and_inside_the_classes() {
    let (n, c) = (4, 3);
    let logits = values(n * c, 4, -2.0, 2.0);
    let weight = [2.0f32, 0.5, 1.5];
    for dev in devices() {
        let x = f32s(&logits, &[n, c], &dev);
        let w = f32s(&weight, &[c], &dev);
        // -100 (PyTorch's padding default) read on the host, and class 1 as a padding class.
        for (ignored, targets) in [(-100, [2, -100, 0, -100]), (1, [2, 1, 0, 1])] {
            for eps in [0.0, 0.2] {
                for use_weight in [false, true] {
                    for r in REDUCTIONS {
                        let mut ce = CrossEntropy::new().ignore_index(ignored).label_smoothing(eps).reduction(r);
                        if use_weight {
                            ce = ce.weight(&w);
                        }
                        let label = format!("ignore {ignored} eps {eps} weight {use_weight} {r:?} on {}", name(&dev));
                        let out = ce.forward(&x, &i32s(&targets, &[n], &dev));
                        let expected = cross_entropy_ref(
                            &logits,
                            (n, c, 1),
                            &targets,
                            use_weight.then_some(&weight[..]),
                            eps as f64,
                            Some(ignored),
                            r,
                        );
                        assert_close(&label, &out, &expected, 2e-6);
                    }
                }
            }
        }
        // Independently: the mean over the samples kept equals the loss of those rows alone.
        let kept = Tensor::cat(&[x.narrow(0, 0, 1), x.narrow(0, 2, 1)], 0);
        let alone = cross_entropy(&kept, &i32s(&[2, 0], &[2], &dev)).item();
        let ignoring = CrossEntropy::new().ignore_index(-100).forward(&x, &i32s(&[2, -100, 0, -100], &[n], &dev));
        assert!((ignoring.item() - alone).abs() < 1e-6, "ignored rows change the mean on {}", name(&dev));
    }
}

#[test]
fn cross_entropy_over_extra_dimensions() {
    // [N, C, D] = [2, 3, 4] with targets [N, D]: a loss per position.
    let (n, c, d) = (2, 3, 4);
    let logits = values(n * c * d, 5, -3.0, 3.0);
    let targets = [0, 2, 1, 1, 2, 2, 0, 1];
    let weight = [1.0f32, 0.25, 2.0];
    for dev in devices() {
        let x = f32s(&logits, &[n, c, d], &dev);
        let y = i32s(&targets, &[n, d], &dev);
        let w = f32s(&weight, &[c], &dev);
        for r in REDUCTIONS {
            let ce = CrossEntropy::new().weight(&w).label_smoothing(0.1).reduction(r);
            let out = ce.forward(&x, &y);
            let label = format!("[2, 3, 4] {r:?} on {}", name(&dev));
            assert_eq!(out.shape(), expected_shape(r, &[n, d]), "{label}");
            let expected = cross_entropy_ref(&logits, (n, c, d), &targets, Some(&weight), 0.1, None, r);
            assert_close(&label, &out, &expected, 2e-6);
            // The same as moving the classes last and flattening to [N * D, C].
            let flat = x.permute(&[0, 2, 1]).reshape(&[-1, c as isize]);
            let flat_out = ce.forward(&flat, &y.reshape(&[-1]));
            assert_close(
                &format!("{label} flattened"),
                &flat_out.reshape(&[-1]),
                &out.to_vec::<f32>().iter().map(|&v| v as f64).collect::<Vec<_>>(),
                2e-6,
            );
        }
    }
}

#[test]
fn cross_entropy_with_probability_targets() {
    let (n, c) = (3, 4);
    let logits = values(n * c, 6, -3.0, 3.0);
    let targets = [1, 3, 0];
    let mut one_hot = vec![0.0f32; n * c];
    for (i, &t) in targets.iter().enumerate() {
        one_hot[i * c + t as usize] = 1.0;
    }
    // Soft labels: each row normalised.
    let raw = values(n * c, 7, 0.1, 1.0);
    let soft: Vec<f32> =
        raw.chunks(c).flat_map(|r| r.iter().map(|v| v / r.iter().sum::<f32>()).collect::<Vec<_>>()).collect();
    let weight = [1.0f32, 2.0, 0.5, 1.5];
    for dev in devices() {
        let x = f32s(&logits, &[n, c], &dev);
        let label = |what: &str| format!("{what} on {}", name(&dev));
        // One-hot probabilities give the index loss (unweighted, with or without smoothing).
        for eps in [0.0, 0.2] {
            let ce = CrossEntropy::new().label_smoothing(eps);
            let by_index = ce.forward(&x, &i32s(&targets, &[n], &dev)).item() as f64;
            assert_close(&label("one-hot"), &ce.forward(&x, &f32s(&one_hot, &[n, c], &dev)), &[by_index], 1e-6);
        }
        // Soft labels with weights and smoothing: l_i = -Σ_c w_c t'_ic lp_ic, and the mean
        // divides by N (not by any weights).
        let eps = 0.1;
        let per_sample: Vec<f64> = (0..n)
            .map(|i| {
                let row: Vec<f64> = logits[i * c..(i + 1) * c].iter().map(|&v| v as f64).collect();
                let lp = log_softmax_ref(&row);
                -(0..c)
                    .map(|k| weight[k] as f64 * ((1.0 - eps) * soft[i * c + k] as f64 + eps / c as f64) * lp[k])
                    .sum::<f64>()
            })
            .collect();
        let w = f32s(&weight, &[c], &dev);
        for r in REDUCTIONS {
            let ce = CrossEntropy::new().weight(&w).label_smoothing(eps as f32).reduction(r);
            let out = ce.forward(&x, &f32s(&soft, &[n, c], &dev));
            assert_close(&label(&format!("soft {r:?}")), &out, &reduce_ref(&per_sample, r), 2e-6);
        }
    }
}

#[test]
fn cross_entropy_is_finite_for_logits_of_1000() {
    // Row 0: logsumexp = 1000 (the others underflow), target 1 at -1000: loss 2000.
    // Row 1: logsumexp = 1000, target 1 at 1000: loss 0. Row 2: target 0 at 1000 - 0: loss 0.
    let logits = [1000.0f32, -1000.0, 0.0, -1000.0, 1000.0, 500.0, 1000.0, -1000.0, -1000.0];
    for dev in devices() {
        let x = f32s(&logits, &[3, 3], &dev).requires_grad();
        let y = i32s(&[1, 1, 0], &[3], &dev);
        let per = CrossEntropy::new().reduction(Reduction::None).forward(&x, &y);
        assert_close(&format!("per sample on {}", name(&dev)), &per, &[2000.0, 0.0, 0.0], 1e-6);
        // Gradient of the mean: (softmax - one_hot) / 3, softmax saturated to one-hot rows.
        let smoothed = CrossEntropy::new().label_smoothing(0.1).forward(&x, &y);
        assert!(smoothed.item().is_finite(), "smoothed loss {} on {}", smoothed.item(), name(&dev));
        let g = cross_entropy(&x, &y).backward();
        let expected = [1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0].map(|v: f64| v / 3.0);
        assert_close(&format!("gradient on {}", name(&dev)), g.wrt(&x), &expected, 1e-6);
    }
}

#[test]
fn cross_entropy_and_nll_gradcheck() {
    let (n, c) = (3, 4);
    let logits = values(n * c, 8, -2.0, 2.0);
    let tol = GradTolerance::default();
    for dev in devices() {
        let dn = name(&dev);
        let inputs = [(logits.clone(), vec![n, c])];
        for r in REDUCTIONS {
            check(
                &format!("cross_entropy {r:?} {dn}"),
                gradcheck("cross_entropy", &dev, &inputs, tol, |t| {
                    let y = i32s(&[3, 0, 2], &[n], t[0].device());
                    CrossEntropy::new().reduction(r).forward(&t[0], &y)
                }),
            );
            check(
                &format!("cross_entropy weighted smoothed ignoring {r:?} {dn}"),
                gradcheck("cross_entropy options", &dev, &inputs, tol, |t| {
                    let d = t[0].device();
                    let w = f32s(&[0.5, 2.0, 1.0, 1.5], &[c], d);
                    let y = i32s(&[3, -100, 2], &[n], d);
                    CrossEntropy::new()
                        .weight(&w)
                        .label_smoothing(0.2)
                        .ignore_index(-100)
                        .reduction(r)
                        .forward(&t[0], &y)
                }),
            );
            check(
                &format!("nll_loss weighted {r:?} {dn}"),
                gradcheck("nll_loss", &dev, &inputs, tol, |t| {
                    let d = t[0].device();
                    let w = f32s(&[0.5, 2.0, 1.0, 1.5], &[c], d);
                    nll_loss(&t[0].log_softmax(1), &i32s(&[1, 1, 0], &[n], d), Some(&w), r)
                }),
            );
        }
        // [N, C, D] with an in-range ignored class, and soft targets (logits and targets).
        let nd = [(values(2 * 3 * 2, 9, -2.0, 2.0), vec![2, 3, 2])];
        check(
            &format!("cross_entropy [2, 3, 2] {dn}"),
            gradcheck("cross_entropy nd", &dev, &nd, tol, |t| {
                let y = i32s(&[0, 2, 1, 2], &[2, 2], t[0].device());
                CrossEntropy::new().ignore_index(1).label_smoothing(0.1).forward(&t[0], &y)
            }),
        );
        let soft = [(logits.clone(), vec![n, c]), (values(n * c, 10, 0.0, 0.5), vec![n, c])];
        check(
            &format!("cross_entropy soft targets {dn}"),
            gradcheck("cross_entropy soft", &dev, &soft, tol, |t| {
                CrossEntropy::new().label_smoothing(0.1).forward(&t[0], &t[1])
            }),
        );
    }
}

#[test]
fn nll_loss_is_cross_entropy_of_log_softmax() {
    let (n, c) = (4, 3);
    let logits = values(n * c, 11, -3.0, 3.0);
    let targets = [2, 0, 0, 1];
    let weight = [3.0f32, 1.0, 0.5];
    for dev in devices() {
        let x = f32s(&logits, &[n, c], &dev);
        let y = i32s(&targets, &[n], &dev);
        let w = f32s(&weight, &[c], &dev);
        for r in REDUCTIONS {
            for use_weight in [false, true] {
                let label = format!("{r:?} weight {use_weight} on {}", name(&dev));
                let out = nll_loss(&x.log_softmax(1), &y, use_weight.then_some(&w), r);
                let expected =
                    cross_entropy_ref(&logits, (n, c, 1), &targets, use_weight.then_some(&weight[..]), 0.0, None, r);
                assert_close(&label, &out, &expected, 2e-6);
            }
        }
        // By hand on log-probabilities given directly, targets [1, 0], weights [1, 2]:
        // -(w[1] * lp[0, 1] + w[0] * lp[1, 0]) / (w[1] + w[0]) = (2 * 0.5 + 1 * 3) / 3 = 4 / 3.
        let lp = f32s(&[-1.0, -0.5, -3.0, -2.0], &[2, 2], &dev);
        let out = nll_loss(&lp, &i32s(&[1, 0], &[2], &dev), Some(&f32s(&[1.0, 2.0], &[2], &dev)), Reduction::Mean);
        assert_close(&format!("by hand on {}", name(&dev)), &out, &[4.0 / 3.0], 1e-6);
    }
}

// ---- binary cross-entropy ----

#[test]
fn bce_with_logits_matches_host_reference() {
    let shape = [3, 4];
    let logits = values(12, 12, -6.0, 6.0);
    let targets = values(12, 13, 0.0, 1.0);
    let pos_weight = [0.5f32, 1.0, 2.0, 4.0]; // one per column, broadcast over rows
    for dev in devices() {
        let x = f32s(&logits, &shape, &dev);
        let y = f32s(&targets, &shape, &dev);
        let p = f32s(&pos_weight, &[4], &dev);
        for use_pos in [false, true] {
            // The textbook definition, straight: -(p y log σ(x) + (1 - y) log(1 - σ(x))).
            let per: Vec<f64> = (0..12)
                .map(|i| {
                    let (x, y) = (logits[i] as f64, targets[i] as f64);
                    let pw = if use_pos { pos_weight[i % 4] as f64 } else { 1.0 };
                    -(pw * y * sigmoid(x).ln() + (1.0 - y) * (1.0 - sigmoid(x)).ln())
                })
                .collect();
            for r in REDUCTIONS {
                let out = binary_cross_entropy_with_logits(&x, &y, use_pos.then_some(&p), r);
                let label = format!("pos_weight {use_pos} {r:?} on {}", name(&dev));
                assert_eq!(out.shape(), expected_shape(r, &shape), "{label}");
                assert_close(&label, &out, &reduce_ref(&per, r), 2e-6);
            }
        }
        // x = 0: log 2 whatever the target; the gradient is sigmoid(0) - y = 0.5 - y.
        let zero = f32s(&[0.0, 0.0, 0.0], &[3], &dev).requires_grad();
        let t = f32s(&[0.0, 1.0, 0.25], &[3], &dev);
        let loss = binary_cross_entropy_with_logits(&zero, &t, None, Reduction::Sum);
        assert_close(&format!("log 2 on {}", name(&dev)), &loss, &[3.0 * std::f64::consts::LN_2], 1e-6);
        assert_close(&format!("gradient at 0 on {}", name(&dev)), loss.backward().wrt(&zero), &[0.5, -0.5, 0.25], 1e-6);
    }
}

#[test]
fn bce_with_logits_is_finite_for_logits_of_1000() {
    // Confident and right: 0; confident and wrong: |x| = 1000. Gradient σ(x) - y (times the
    // positive weight on the positive term): [0, 1, -1, 0] without, [0, 1, -3, 0] with p = 3.
    let logits = [1000.0f32, 1000.0, -1000.0, -1000.0];
    let targets = [1.0f32, 0.0, 1.0, 0.0];
    for dev in devices() {
        let x = f32s(&logits, &[4], &dev).requires_grad();
        let y = f32s(&targets, &[4], &dev);
        let per = binary_cross_entropy_with_logits(&x, &y, None, Reduction::None);
        assert_close(&format!("values on {}", name(&dev)), &per, &[0.0, 1000.0, 1000.0, 0.0], 1e-6);
        let g = per.sum_all().backward();
        assert_close(&format!("gradient on {}", name(&dev)), g.wrt(&x), &[0.0, 1.0, -1.0, 0.0], 1e-6);
        let p = f32s(&[3.0], &[1], &dev);
        let weighted = binary_cross_entropy_with_logits(&x, &y, Some(&p), Reduction::None);
        assert_close(&format!("pos_weight on {}", name(&dev)), &weighted, &[0.0, 1000.0, 3000.0, 0.0], 1e-6);
        let g = weighted.sum_all().backward();
        assert_close(&format!("pos_weight gradient on {}", name(&dev)), g.wrt(&x), &[0.0, 1.0, -3.0, 0.0], 1e-6);
    }
}

#[test]
fn bce_matches_host_reference_and_clamps_the_log_at_minus_100() {
    let probs = values(10, 14, 0.02, 0.98);
    let targets = values(10, 15, 0.0, 1.0);
    let per: Vec<f64> = probs
        .iter()
        .zip(&targets)
        .map(|(&x, &y)| {
            let (x, y) = (x as f64, y as f64);
            -(y * x.ln() + (1.0 - y) * (1.0 - x).ln())
        })
        .collect();
    for dev in devices() {
        let x = f32s(&probs, &[2, 5], &dev);
        let y = f32s(&targets, &[2, 5], &dev);
        for r in REDUCTIONS {
            let label = format!("{r:?} on {}", name(&dev));
            assert_close(&label, &binary_cross_entropy(&x, &y, r), &reduce_ref(&per, r), 2e-6);
        }
        // p = 0 or 1 exactly: log(0) is clamped to -100, so a wrong certainty costs 100 and a
        // right one 0; the gradient stays finite (no 0 / 0).
        let x = f32s(&[0.0, 1.0, 0.0, 1.0, 0.0], &[5], &dev).requires_grad();
        let y = f32s(&[1.0, 0.0, 0.0, 1.0, 0.5], &[5], &dev);
        let per = binary_cross_entropy(&x, &y, Reduction::None);
        assert_close(&format!("clamped on {}", name(&dev)), &per, &[100.0, 100.0, 0.0, 0.0, 50.0], 1e-6);
        let g = per.sum_all().backward().wrt(&x).to_vec::<f32>();
        assert!(g.iter().all(|v| v.is_finite()), "gradient {g:?} on {}", name(&dev));
        // With the logits' sigmoid as input, BCE and BCE-with-logits agree.
        let logits = f32s(&values(6, 16, -4.0, 4.0), &[6], &dev);
        let t = f32s(&values(6, 17, 0.0, 1.0), &[6], &dev);
        let via_probs = binary_cross_entropy(&logits.sigmoid(), &t, Reduction::Mean).item() as f64;
        let direct = binary_cross_entropy_with_logits(&logits, &t, None, Reduction::Mean);
        assert_close(&format!("sigmoid then bce on {}", name(&dev)), &direct, &[via_probs], 1e-5);
    }
}

#[test]
fn binary_losses_gradcheck_input_and_target() {
    let tol = GradTolerance::default();
    // Logits include 0 exactly, where a ReLU-based max(x, 0) would get the gradient wrong.
    let logits = vec![0.0f32, 1.5, -2.0, 0.7, -0.3, 3.0];
    let targets = vec![0.2f32, 1.0, 0.0, 0.6, 0.9, 0.4];
    let probs = vec![0.1f32, 0.35, 0.5, 0.65, 0.9, 0.25];
    for dev in devices() {
        let dn = name(&dev);
        for r in REDUCTIONS {
            let inputs = [(logits.clone(), vec![2, 3]), (targets.clone(), vec![2, 3])];
            check(
                &format!("bce_with_logits {r:?} {dn}"),
                gradcheck("bce_with_logits", &dev, &inputs, tol, |t| {
                    binary_cross_entropy_with_logits(&t[0], &t[1], None, r)
                }),
            );
            check(
                &format!("bce_with_logits pos_weight {r:?} {dn}"),
                gradcheck("bce_with_logits pos_weight", &dev, &inputs, tol, |t| {
                    let p = f32s(&[0.5, 2.0, 3.0], &[3], t[0].device());
                    binary_cross_entropy_with_logits(&t[0], &t[1], Some(&p), r)
                }),
            );
            let inputs = [(probs.clone(), vec![2, 3]), (targets.clone(), vec![2, 3])];
            check(
                &format!("bce {r:?} {dn}"),
                gradcheck("bce", &dev, &inputs, tol, |t| binary_cross_entropy(&t[0], &t[1], r)),
            );
        }
    }
}

// ---- KL divergence ----

#[test]
fn kl_div_by_hand_and_against_host_reference() {
    for dev in devices() {
        let dn = name(&dev);
        // KL(p || q) for p = [0.5, 0.5], q = [0.25, 0.75]: 0.5 ln 2 + 0.5 ln(2/3) = 0.14384104.
        let log_q = f32s(&[0.25f32.ln(), 0.75f32.ln()], &[1, 2], &dev);
        let p = f32s(&[0.5, 0.5], &[1, 2], &dev);
        assert_close(&format!("batchmean {dn}"), &kl_div(&log_q, &p, Reduction::BatchMean, false), &[0.14384104], 1e-6);
        // 'mean' divides by the 2 elements, PyTorch's default.
        assert_close(&format!("mean {dn}"), &kl_div(&log_q, &p, Reduction::Mean, false), &[0.07192052], 1e-6);
        // A zero target contributes 0, whatever the input: [0 - 0, 1 * (0 - ln 0.5)].
        let zero_target = f32s(&[0.0, 1.0], &[2], &dev);
        let input = f32s(&[0.3f32.ln(), 0.5f32.ln()], &[2], &dev).requires_grad();
        let per = kl_div(&input, &zero_target, Reduction::None, false);
        assert_close(&format!("zero target {dn}"), &per, &[0.0, std::f64::consts::LN_2], 1e-6);
        let target = zero_target.requires_grad();
        let g = kl_div(&input, &target, Reduction::Sum, false).backward();
        assert!(g.wrt(&target).to_vec::<f32>().iter().all(|v| v.is_finite()), "target gradient at 0 on {dn}");
        assert_close(&format!("input gradient {dn}"), g.wrt(&input), &[0.0, -1.0], 1e-6);
    }

    // Random distributions over 5 classes, batch 3.
    let (n, c) = (3, 5);
    let normalise = |v: Vec<f32>| -> Vec<f32> {
        v.chunks(c).flat_map(|r| r.iter().map(|x| x / r.iter().sum::<f32>()).collect::<Vec<_>>()).collect()
    };
    let q = normalise(values(n * c, 18, 0.05, 1.0));
    let p = normalise(values(n * c, 19, 0.05, 1.0));
    let per: Vec<f64> = p.iter().zip(&q).map(|(&p, &q)| p as f64 * (p as f64 / q as f64).ln()).collect();
    for dev in devices() {
        let log_q = f32s(&q.iter().map(|v| v.ln()).collect::<Vec<_>>(), &[n, c], &dev);
        let target = f32s(&p, &[n, c], &dev);
        let log_target = f32s(&p.iter().map(|v| v.ln()).collect::<Vec<_>>(), &[n, c], &dev);
        for r in [Reduction::Mean, Reduction::Sum, Reduction::None, Reduction::BatchMean] {
            let expected = match r {
                Reduction::BatchMean => vec![per.iter().sum::<f64>() / n as f64],
                r => reduce_ref(&per, r),
            };
            let label = format!("{r:?} on {}", name(&dev));
            assert_close(&label, &kl_div(&log_q, &target, r, false), &expected, 2e-6);
            assert_close(&format!("{label} log_target"), &kl_div(&log_q, &log_target, r, true), &expected, 2e-6);
        }
    }
}

#[test]
fn kl_div_gradcheck_input_and_target() {
    let tol = GradTolerance::default();
    let input = vec![-1.2f32, -0.4, -2.0, -0.9, -1.6, -0.3];
    let target = vec![0.2f32, 0.5, 0.3, 0.6, 0.1, 0.3];
    let log_target: Vec<f32> = target.iter().map(|v| v.ln()).collect();
    for dev in devices() {
        for r in [Reduction::Mean, Reduction::Sum, Reduction::None, Reduction::BatchMean] {
            for (log, t) in [(false, &target), (true, &log_target)] {
                let inputs = [(input.clone(), vec![2, 3]), (t.clone(), vec![2, 3])];
                check(
                    &format!("kl_div {r:?} log_target {log} {}", name(&dev)),
                    gradcheck("kl_div", &dev, &inputs, tol, |t| kl_div(&t[0], &t[1], r, log)),
                );
            }
        }
    }
}

// ---- likelihoods ----

#[test]
fn gaussian_nll_matches_host_reference_for_each_variance_shape() {
    let (n, d) = (3, 4);
    let input = values(n * d, 20, -2.0, 2.0);
    let target = values(n * d, 21, -2.0, 2.0);
    let var_full = values(n * d, 22, 0.2, 2.0);
    let var_row = values(n, 23, 0.2, 2.0);
    let eps = 1e-6;
    let nll = |i: usize, v: f32, full: bool| {
        let v = (v as f64).max(eps);
        let diff = input[i] as f64 - target[i] as f64;
        0.5 * (v.ln() + diff * diff / v) + if full { 0.5 * (2.0 * std::f64::consts::PI).ln() } else { 0.0 }
    };
    for dev in devices() {
        let x = f32s(&input, &[n, d], &dev);
        let y = f32s(&target, &[n, d], &dev);
        // One variance per element, one per row given as [N], and one per row as [N, 1].
        let cases = [
            ("[3, 4]", f32s(&var_full, &[n, d], &dev), (0..n * d).map(|i| var_full[i]).collect::<Vec<_>>()),
            ("[3]", f32s(&var_row, &[n], &dev), (0..n * d).map(|i| var_row[i / d]).collect()),
            ("[3, 1]", f32s(&var_row, &[n, 1], &dev), (0..n * d).map(|i| var_row[i / d]).collect()),
        ];
        for (shape, var, per_var) in &cases {
            for full in [false, true] {
                let per: Vec<f64> = (0..n * d).map(|i| nll(i, per_var[i], full)).collect();
                for r in REDUCTIONS {
                    let label = format!("var {shape} full {full} {r:?} on {}", name(&dev));
                    let out = gaussian_nll_loss(&x, &y, var, full, eps as f32, r);
                    assert_eq!(out.shape(), expected_shape(r, &[n, d]), "{label}");
                    assert_close(&label, &out, &reduce_ref(&per, r), 2e-6);
                }
            }
        }
        // A variance below eps is clamped in value, but keeps its gradient: with eps 0.5,
        // var 0.1, diff 1: l = (ln 0.5 + 1 / 0.5) / 2 = 0.65342641, dl/dvar at 0.5 =
        // (1 / 0.5 - 1 / 0.25) / 2 = -1.
        let var = f32s(&[0.1], &[1], &dev).requires_grad();
        let out =
            gaussian_nll_loss(&f32s(&[1.0], &[1], &dev), &f32s(&[0.0], &[1], &dev), &var, false, 0.5, Reduction::Sum);
        assert_close(&format!("clamped variance on {}", name(&dev)), &out, &[0.65342641], 1e-6);
        assert_close(&format!("clamped variance gradient on {}", name(&dev)), out.backward().wrt(&var), &[-1.0], 1e-6);
    }
}

#[test]
fn poisson_nll_matches_host_reference() {
    let log_rate = values(8, 24, -2.0, 2.0);
    let rate = values(8, 25, 0.1, 4.0);
    // Counts, some at most 1 (no Stirling term) and some above.
    let counts = [0.0f32, 1.0, 2.0, 5.0, 3.0, 0.0, 7.0, 1.0];
    let stirling = |t: f64| if t > 1.0 { t * t.ln() - t + 0.5 * (2.0 * std::f64::consts::PI * t).ln() } else { 0.0 };
    for dev in devices() {
        let y = f32s(&counts, &[2, 4], &dev);
        for log_input in [true, false] {
            let input = if log_input { &log_rate } else { &rate };
            let x = f32s(input, &[2, 4], &dev);
            for full in [false, true] {
                let per: Vec<f64> = (0..8)
                    .map(|i| {
                        let (x, t) = (input[i] as f64, counts[i] as f64);
                        let base = if log_input { x.exp() - t * x } else { x - t * (x + 1e-8).ln() };
                        base + if full { stirling(t) } else { 0.0 }
                    })
                    .collect();
                for r in REDUCTIONS {
                    let label = format!("log_input {log_input} full {full} {r:?} on {}", name(&dev));
                    let out = poisson_nll_loss(&x, &y, log_input, full, 1e-8, r);
                    assert_close(&label, &out, &reduce_ref(&per, r), 2e-6);
                }
            }
        }
        // By hand: log-rate 0, count 2: exp(0) - 0 = 1, and with the Stirling term
        // 2 ln 2 - 2 + ln(4 π) / 2 = 0.65180648 more.
        let x = f32s(&[0.0], &[1], &dev);
        let y = f32s(&[2.0], &[1], &dev);
        assert_close(
            &format!("by hand on {}", name(&dev)),
            &poisson_nll_loss(&x, &y, true, true, 1e-8, Reduction::Sum),
            &[1.65180648],
            1e-6,
        );
    }
}

#[test]
fn likelihood_losses_gradcheck() {
    let tol = GradTolerance::default();
    let input = vec![0.3f32, -1.2, 0.9, 0.1, -0.4, 1.1];
    let target = vec![0.0f32, 0.5, 1.5, -0.9, 0.2, 0.6];
    let var = vec![0.5f32, 1.2, 0.8];
    let counts = vec![0.5f32, 2.0, 3.0, 1.5, 0.2, 4.0];
    let rate = vec![0.6f32, 1.7, 2.2, 0.9, 0.4, 3.1];
    for dev in devices() {
        let dn = name(&dev);
        let inputs = [(input.clone(), vec![3, 2]), (target.clone(), vec![3, 2]), (var.clone(), vec![3, 1])];
        check(
            &format!("gaussian_nll {dn}"),
            gradcheck("gaussian_nll", &dev, &inputs, tol, |t| {
                gaussian_nll_loss(&t[0], &t[1], &t[2], true, 1e-6, Reduction::Mean)
            }),
        );
        for log_input in [true, false] {
            let x = if log_input { input.clone() } else { rate.clone() };
            let inputs = [(x, vec![3, 2]), (counts.clone(), vec![3, 2])];
            check(
                &format!("poisson_nll log_input {log_input} {dn}"),
                gradcheck("poisson_nll", &dev, &inputs, tol, |t| {
                    poisson_nll_loss(&t[0], &t[1], log_input, true, 1e-8, Reduction::None)
                }),
            );
        }
    }
}

// ---- margins and embeddings ----

#[test]
fn margin_losses_by_hand() {
    for dev in devices() {
        let dn = name(&dev);
        // -y (x1 - x2) + 0.5 = [1 + 0.5, 0 + 0.5, -2 + 0.5] -> [1.5, 0.5, 0].
        let x1 = f32s(&[1.0, 2.0, 3.0], &[3], &dev);
        let x2 = f32s(&[2.0, 2.0, 1.0], &[3], &dev);
        let y = f32s(&[1.0, -1.0, 1.0], &[3], &dev);
        let out = margin_ranking_loss(&x1, &x2, &y, 0.5, Reduction::None);
        assert_close(&format!("margin_ranking {dn}"), &out, &[1.5, 0.5, 0.0], 1e-6);
        assert_close(
            &format!("margin_ranking mean {dn}"),
            &margin_ranking_loss(&x1, &x2, &y, 0.5, Reduction::Mean),
            &[2.0 / 3.0],
            1e-6,
        );
        // y = 1: the distance itself; y = -1: max(0, 1 - distance).
        let dist = f32s(&[0.3, 2.0, 0.25, 1.5], &[4], &dev);
        let y = f32s(&[1.0, -1.0, -1.0, 1.0], &[4], &dev);
        let out = hinge_embedding_loss(&dist, &y, 1.0, Reduction::None);
        assert_close(&format!("hinge_embedding {dn}"), &out, &[0.3, 0.0, 0.75, 1.5], 1e-6);
        // PyTorch's documented example for MultiMarginLoss: x = [0.1, 0.2, 0.4, 0.8], y = 3:
        // ((1 - 0.8 + 0.1) + (1 - 0.8 + 0.2) + (1 - 0.8 + 0.4)) / 4 = 0.3250.
        let x = f32s(&[0.1, 0.2, 0.4, 0.8], &[1, 4], &dev);
        let out = multi_margin_loss(&x, &i32s(&[3], &[1], &dev), 1, 1.0, None, Reduction::Mean);
        assert_close(&format!("multi_margin {dn}"), &out, &[0.325], 1e-6);
        // soft margin at 0 is ln 2; logits of 1000 stay finite: ln(1 + e^-1000) = 0 and
        // ln(1 + e^1000) = 1000.
        let x = f32s(&[0.0, 1000.0, 1000.0], &[3], &dev);
        let y = f32s(&[1.0, 1.0, -1.0], &[3], &dev);
        let out = soft_margin_loss(&x, &y, Reduction::None);
        assert_close(&format!("soft_margin {dn}"), &out, &[std::f64::consts::LN_2, 0.0, 1000.0], 1e-6);
    }
}

#[test]
fn margin_losses_match_host_reference() {
    let (n, c) = (4, 5);
    let x = values(n * c, 26, -2.0, 2.0);
    let soft_targets = values(n * c, 27, 0.0, 1.0);
    let signs: Vec<f32> = values(n * c, 28, -1.0, 1.0).iter().map(|v| if *v < 0.0 { -1.0 } else { 1.0 }).collect();
    let classes = [4, 0, 2, 2];
    let weight = [0.5f32, 1.0, 2.0, 1.5, 0.25];
    let log_sigmoid = |v: f64| -(1.0 + (-v).exp()).ln();
    for dev in devices() {
        let dn = name(&dev);
        let input = f32s(&x, &[n, c], &dev);
        let w = f32s(&weight, &[c], &dev);
        for r in REDUCTIONS {
            // soft_margin: ln(1 + exp(-y x)) per element.
            let per: Vec<f64> = (0..n * c).map(|i| (1.0 + (-(signs[i] as f64) * x[i] as f64).exp()).ln()).collect();
            let out = soft_margin_loss(&input, &f32s(&signs, &[n, c], &dev), r);
            assert_close(&format!("soft_margin {r:?} {dn}"), &out, &reduce_ref(&per, r), 2e-6);
            // multilabel_soft_margin: the weighted per-class BCE on logits, averaged over C.
            for use_weight in [false, true] {
                let per: Vec<f64> = (0..n)
                    .map(|i| {
                        -(0..c)
                            .map(|k| {
                                let (v, t) = (x[i * c + k] as f64, soft_targets[i * c + k] as f64);
                                let wk = if use_weight { weight[k] as f64 } else { 1.0 };
                                wk * (t * log_sigmoid(v) + (1.0 - t) * log_sigmoid(-v))
                            })
                            .sum::<f64>()
                            / c as f64
                    })
                    .collect();
                let out = multilabel_soft_margin_loss(
                    &input,
                    &f32s(&soft_targets, &[n, c], &dev),
                    use_weight.then_some(&w),
                    r,
                );
                let label = format!("multilabel_soft_margin weight {use_weight} {r:?} {dn}");
                assert_eq!(out.shape(), expected_shape(r, &[n]), "{label}");
                assert_close(&label, &out, &reduce_ref(&per, r), 2e-6);
            }
            // multi_margin, as PyTorch's loop: Σ_{j != y} w[y] max(0, margin - x[y] + x[j])^p / C.
            for p in [1, 2] {
                for use_weight in [false, true] {
                    let margin = 0.7;
                    let per: Vec<f64> = (0..n)
                        .map(|i| {
                            let y = classes[i];
                            let xy = x[i * c + y] as f64;
                            let wy = if use_weight { weight[y] as f64 } else { 1.0 };
                            (0..c)
                                .filter(|&j| j != y)
                                .map(|j| wy * (margin - xy + x[i * c + j] as f64).max(0.0).powi(p as i32))
                                .sum::<f64>()
                                / c as f64
                        })
                        .collect();
                    let targets = i32s(&classes.map(|v| v as i32), &[n], &dev);
                    let out = multi_margin_loss(&input, &targets, p, margin as f32, use_weight.then_some(&w), r);
                    let label = format!("multi_margin p {p} weight {use_weight} {r:?} {dn}");
                    assert_close(&label, &out, &reduce_ref(&per, r), 2e-6);
                }
            }
        }
    }
}

/// Host references of the embedding losses over rows of length `d`.
fn cosine_ref(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let na: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() + 1e-12;
    let nb: f64 = b.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() + 1e-12;
    dot / (na * nb).sqrt()
}

fn distance_ref(a: &[f32], b: &[f32], p: f64, eps: f64) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y as f64 + eps).abs().powf(p)).sum::<f64>().powf(1.0 / p)
}

#[test]
fn embedding_losses_match_host_reference() {
    let (n, d) = (4, 6);
    let a = values(n * d, 29, -1.0, 1.0);
    let b = values(n * d, 30, -1.0, 1.0);
    let neg = values(n * d, 31, -1.0, 1.0);
    let y = [1.0f32, -1.0, -1.0, 1.0];
    for dev in devices() {
        let dn = name(&dev);
        let (ta, tb, tn) = (f32s(&a, &[n, d], &dev), f32s(&b, &[n, d], &dev), f32s(&neg, &[n, d], &dev));
        for r in REDUCTIONS {
            let margin = 0.1;
            let per: Vec<f64> = (0..n)
                .map(|i| {
                    let cos = cosine_ref(&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d]);
                    if y[i] == 1.0 {
                        1.0 - cos
                    } else {
                        (cos - margin).max(0.0)
                    }
                })
                .collect();
            let out = cosine_embedding_loss(&ta, &tb, &f32s(&y, &[n], &dev), margin as f32, r);
            assert_close(&format!("cosine_embedding {r:?} {dn}"), &out, &reduce_ref(&per, r), 2e-6);
            for (p, swap) in [(2.0, false), (1.0, false), (3.0, false), (2.0, true)] {
                let (margin, eps) = (0.5, 1e-6);
                let per: Vec<f64> = (0..n)
                    .map(|i| {
                        let row = |v: &[f32]| v[i * d..(i + 1) * d].to_vec();
                        let pos = distance_ref(&row(&a), &row(&b), p, eps);
                        let mut negd = distance_ref(&row(&a), &row(&neg), p, eps);
                        if swap {
                            negd = negd.min(distance_ref(&row(&b), &row(&neg), p, eps));
                        }
                        (pos - negd + margin).max(0.0)
                    })
                    .collect();
                let out = triplet_margin_loss(&ta, &tb, &tn, margin as f32, p as f32, eps as f32, swap, r);
                assert_close(&format!("triplet p {p} swap {swap} {r:?} {dn}"), &out, &reduce_ref(&per, r), 2e-6);
            }
        }
    }
}

#[test]
fn margin_and_embedding_losses_gradcheck() {
    let tol = GradTolerance::default();
    // Values chosen so that no hinge sits within the finite-difference step of its kink.
    let x1 = vec![0.3f32, -1.2, 0.9, 0.1, -0.4, 1.1];
    let x2 = vec![0.0f32, 0.5, 1.5, -0.9, 0.2, 0.6];
    let signs = vec![1.0f32, -1.0, 1.0, 1.0, -1.0, -1.0];
    for dev in devices() {
        let dn = name(&dev);
        let pair = [(x1.clone(), vec![2, 3]), (x2.clone(), vec![2, 3])];
        check(
            &format!("margin_ranking {dn}"),
            gradcheck("margin_ranking", &dev, &pair, tol, |t| {
                let y = f32s(&signs, &[2, 3], t[0].device());
                margin_ranking_loss(&t[0], &t[1], &y, 0.25, Reduction::None)
            }),
        );
        check(
            &format!("hinge_embedding {dn}"),
            gradcheck("hinge_embedding", &dev, &pair[..1], tol, |t| {
                let y = f32s(&signs, &[2, 3], t[0].device());
                hinge_embedding_loss(&t[0], &y, 0.8, Reduction::Sum)
            }),
        );
        check(
            &format!("soft_margin {dn}"),
            gradcheck("soft_margin", &dev, &pair, tol, |t| soft_margin_loss(&t[0], &t[1], Reduction::Mean)),
        );
        let probs = [(x1.clone(), vec![2, 3]), (vec![0.2f32, 0.9, 0.5, 0.0, 1.0, 0.4], vec![2, 3])];
        check(
            &format!("multilabel_soft_margin {dn}"),
            gradcheck("multilabel_soft_margin", &dev, &probs, tol, |t| {
                let w = f32s(&[0.5, 1.0, 2.0], &[3], t[0].device());
                multilabel_soft_margin_loss(&t[0], &t[1], Some(&w), Reduction::None)
            }),
        );
        for p in [1, 2] {
            check(
                &format!("multi_margin p {p} {dn}"),
                gradcheck("multi_margin", &dev, &pair[..1], tol, |t| {
                    let d = t[0].device();
                    let w = f32s(&[0.5, 1.0, 2.0], &[3], d);
                    multi_margin_loss(&t[0], &i32s(&[2, 0], &[2], d), p, 1.0, Some(&w), Reduction::None)
                }),
            );
        }
        let rows = [
            (values(12, 32, -1.0, 1.0), vec![3, 4]),
            (values(12, 33, -1.0, 1.0), vec![3, 4]),
            (values(12, 34, -1.0, 1.0), vec![3, 4]),
        ];
        check(
            &format!("cosine_embedding {dn}"),
            gradcheck("cosine_embedding", &dev, &rows[..2], tol, |t| {
                let y = f32s(&[1.0, -1.0, -1.0], &[3], t[0].device());
                cosine_embedding_loss(&t[0], &t[1], &y, -0.5, Reduction::None)
            }),
        );
        for (p, swap) in [(2.0, false), (1.5, true)] {
            check(
                &format!("triplet p {p} swap {swap} {dn}"),
                gradcheck("triplet", &dev, &rows, tol, |t| {
                    triplet_margin_loss(&t[0], &t[1], &t[2], 2.0, p, 1e-6, swap, Reduction::None)
                }),
            );
        }
    }
}

// ---- validation ----

#[test]
#[should_panic(expected = "mse_loss: input of shape [4, 1] and target of shape [4] differ")]
fn mse_rejects_shapes_that_would_broadcast() {
    let dev = Device::cpu();
    mse_loss(&Tensor::zeros(&[4, 1], &dev), &Tensor::zeros(&[4], &dev), Reduction::Mean);
}

#[test]
#[should_panic(
    expected = "cross_entropy: input of shape [2, 3] (classes on axis 1) needs class-index targets of shape [2], got [3]"
)]
fn cross_entropy_rejects_targets_of_the_wrong_shape() {
    let dev = Device::cpu();
    cross_entropy(&Tensor::zeros(&[2, 3], &dev), &i32s(&[0, 1, 2], &[3], &dev));
}

#[test]
#[should_panic(expected = "cross_entropy: weight of shape [2] does not fit input of shape [2, 3] with 3 classes")]
fn cross_entropy_rejects_weights_of_the_wrong_length() {
    let dev = Device::cpu();
    let w = f32s(&[1.0, 2.0], &[2], &dev);
    CrossEntropy::new().weight(&w).forward(&Tensor::zeros(&[2, 3], &dev), &i32s(&[0, 1], &[2], &dev));
}

#[test]
#[should_panic(expected = "cross_entropy: target 3 is out of range for 3 classes")]
fn cross_entropy_rejects_out_of_range_targets_on_the_cpu() {
    let dev = Device::cpu();
    cross_entropy(&Tensor::zeros(&[2, 3], &dev), &i32s(&[0, 3], &[2], &dev));
}

#[test]
#[should_panic(expected = "nll_loss: targets must be i32 class indices, got f32")]
fn nll_loss_rejects_float_targets() {
    let dev = Device::cpu();
    nll_loss(&Tensor::zeros(&[2, 3], &dev), &Tensor::zeros(&[2, 3], &dev), None, Reduction::Mean);
}

#[test]
#[should_panic(
    expected = "binary_cross_entropy_with_logits: pos_weight of shape [2] does not broadcast to logits of shape [4, 3]"
)]
fn bce_with_logits_rejects_a_pos_weight_that_does_not_broadcast() {
    let dev = Device::cpu();
    let p = f32s(&[1.0, 2.0], &[2], &dev);
    binary_cross_entropy_with_logits(
        &Tensor::zeros(&[4, 3], &dev),
        &Tensor::zeros(&[4, 3], &dev),
        Some(&p),
        Reduction::Mean,
    );
}

#[test]
#[should_panic(expected = "l1_loss: Reduction::BatchMean is defined only for kl_div")]
fn batchmean_is_only_for_kl_div() {
    let dev = Device::cpu();
    l1_loss(&Tensor::zeros(&[2], &dev), &Tensor::zeros(&[2], &dev), Reduction::BatchMean);
}

#[test]
#[should_panic(expected = "huber_loss: delta must be positive, got 0")]
fn huber_rejects_a_zero_delta() {
    let dev = Device::cpu();
    huber_loss(&Tensor::zeros(&[2], &dev), &Tensor::zeros(&[2], &dev), Reduction::Mean, 0.0);
}

#[test]
fn reduction_defaults_to_mean() {
    assert_eq!(Reduction::default(), Reduction::Mean);
}

#[test]
#[should_panic(expected = "gaussian_nll_loss: var of shape [2] does not fit input of shape [3, 2]")]
fn gaussian_nll_rejects_a_variance_of_the_wrong_shape() {
    let dev = Device::cpu();
    let x = Tensor::zeros(&[3, 2], &dev);
    gaussian_nll_loss(&x, &x, &Tensor::ones(&[2], &dev), false, 1e-6, Reduction::Mean);
}

#[test]
#[should_panic(expected = "multi_margin_loss: p must be 1 or 2, got 3")]
fn multi_margin_rejects_other_powers() {
    let dev = Device::cpu();
    multi_margin_loss(&Tensor::zeros(&[2, 3], &dev), &i32s(&[0, 1], &[2], &dev), 3, 1.0, None, Reduction::Mean);
}

// ---- the fused cross-entropy ----

/// The cross-entropy of `[N, C]` logits against class indices composed of tensor ops
/// (log_softmax, gather, weights and a mask made on the host), as the fused kernel's
/// reference: `ignore` rows count neither in the loss nor in the mean's denominator.
fn composed_cross_entropy(
    logits: &Tensor,
    targets: &[i32],
    weight: Option<&[f32]>,
    ignore: Option<i32>,
    r: Reduction,
) -> Tensor {
    let d = logits.device();
    let n = targets.len();
    let safe: Vec<i32> = targets.iter().map(|&t| if Some(t) == ignore { 0 } else { t }).collect();
    let factor: Vec<f32> =
        targets.iter().map(|&t| if Some(t) == ignore { 0.0 } else { weight.map_or(1.0, |w| w[t as usize]) }).collect();
    let factor = f32s(&factor, &[n], d);
    let picked = logits.log_softmax(1).gather(1, &i32s(&safe, &[n, 1], d)).squeeze(1);
    let per_row = picked.mul(&factor).neg();
    match r {
        Reduction::Mean => per_row.sum_all().div(&factor.sum_all()),
        Reduction::Sum => per_row.sum_all(),
        _ => per_row,
    }
}

/// Class weights, the ignored index and the targets of one fused cross-entropy case.
type FusedOptions<'a> = (Option<&'a [f32]>, Option<i32>, &'a [i32]);

/// The fused kernels (forward and backward) against the composed cross-entropy, on both
/// devices, over shapes chosen to break them: one row, one class, more rows than the
/// forward's 256 invocations (and more than twice as many), class counts that are not
/// multiples of 4, a backward with a partial last workgroup; with and without weights,
/// with an ignored class inside and an ignored index outside the classes, for every
/// reduction. The two sum the rows in different orders: 1e-5 relative.
#[test]
fn fused_cross_entropy_matches_the_composed_one() {
    let shapes = [(1usize, 1usize), (1, 10), (5, 3), (300, 7), (600, 10), (37, 129)];
    for dev in devices() {
        for (case, &(n, c)) in shapes.iter().enumerate() {
            let x = values(n * c, 40 + case as u64, -4.0, 4.0);
            let w = values(c, 60 + case as u64, 0.25, 2.0);
            let targets: Vec<i32> = (0..n).map(|i| ((i * 5 + i / 7 + case) % c) as i32).collect();
            // Every fourth target replaced by -100, for the ignored index outside the classes.
            let padded: Vec<i32> =
                targets.iter().enumerate().map(|(i, &t)| if i % 4 == 1 { -100 } else { t }).collect();
            // With one class the ignored class would be every target: that case has its own test.
            let inside = if c > 1 { Some((c / 2) as i32) } else { None };
            let options: [FusedOptions; 4] = [
                (None, None, &targets),
                (Some(&w), None, &targets),
                (Some(&w), inside, &targets),
                (None, Some(-100), &padded),
            ];
            for (weight, ignore, t) in options {
                for r in REDUCTIONS {
                    let label =
                        format!("{} [{n}, {c}] weight {} ignore {ignore:?} {r:?}", name(&dev), weight.is_some());
                    let run = |fused: bool| {
                        let logits = f32s(&x, &[n, c], &dev).requires_grad();
                        let loss = if fused {
                            let mut f = CrossEntropy::new().reduction(r);
                            if let Some(w) = weight {
                                f = f.weight(&f32s(w, &[c], &dev));
                            }
                            if let Some(i) = ignore {
                                f = f.ignore_index(i);
                            }
                            f.forward(&logits, &i32s(t, &[n], &dev))
                        } else {
                            composed_cross_entropy(&logits, t, weight, ignore, r)
                        };
                        let seed = f32s(&values(loss.numel(), 7, 0.5, 1.5), loss.shape(), &dev);
                        let grad = loss.backward_with(&seed).wrt(&logits).to_vec::<f32>();
                        (loss.shape().to_vec(), loss.to_vec::<f32>(), grad)
                    };
                    let (fused, composed) = (run(true), run(false));
                    assert_eq!(fused.0, composed.0, "{label}: shape");
                    let tol = wgrad::testing::Tolerance::Elementwise { atol: 1e-6, rtol: 1e-5 };
                    if let Err(e) = wgrad::testing::compare(&fused.1, &composed.1, tol) {
                        panic!("{label}: loss: {e}");
                    }
                    if let Err(e) = wgrad::testing::compare(&fused.2, &composed.2, tol) {
                        panic!("{label}: gradient: {e}");
                    }
                }
            }
        }
    }
}

/// The fused cross-entropy's gradient rule against finite differences on both devices,
/// with the loss mid-graph, for every reduction, with weights and an ignored class, and
/// unbatched. The suite tolerance of tests/autograd.rs.
#[test]
fn fused_cross_entropy_gradcheck() {
    let tol = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };
    let (n, c) = (5, 3);
    let inputs = [(values(n * c, 70, -2.0, 2.0), vec![n, c])];
    for dev in devices() {
        let dn = name(&dev);
        for r in REDUCTIONS {
            check(
                &format!("fused cross_entropy {r:?} {dn}"),
                gradcheck("fused cross_entropy", &dev, &inputs, tol, |t| {
                    CrossEntropy::new().reduction(r).forward(&t[0], &i32s(&[2, 0, 1, 1, 2], &[n], t[0].device()))
                }),
            );
            check(
                &format!("fused cross_entropy weighted, ignoring {r:?} {dn}"),
                gradcheck("fused cross_entropy options", &dev, &inputs, tol, |t| {
                    let d = t[0].device();
                    CrossEntropy::new()
                        .weight(&f32s(&[0.5, 2.0, 1.25], &[c], d))
                        .ignore_index(-100)
                        .reduction(r)
                        .forward(&t[0], &i32s(&[2, -100, 1, 0, 2], &[n], d))
                }),
            );
        }
        let unbatched = [(values(7, 71, -2.0, 2.0), vec![7])];
        check(
            &format!("fused cross_entropy unbatched {dn}"),
            gradcheck("fused cross_entropy unbatched", &dev, &unbatched, tol, |t| {
                CrossEntropy::new().reduction(Reduction::None).forward(&t[0], &i32s(&[4], &[], t[0].device()))
            }),
        );
    }
}

/// On a GPU the fused cross-entropy is one dispatch forward and one backward (beside the
/// seed of `backward`), and an ignored index outside the classes reads nothing back.
///
/// The device is shared with the other tests of this file, whose work can only add to the
/// counts: the check takes the least of a few tries. Outputs are poisoned there, and each
/// poisoning fill is one more dispatch: one per output buffer.
#[test]
fn fused_cross_entropy_is_one_dispatch_each_way() {
    let Some(gpu) = gpu() else { return };
    let (n, c) = (64, 10);
    let logits = f32s(&values(n * c, 80, -3.0, 3.0), &[n, c], &gpu).requires_grad();
    let targets: Vec<i32> = (0..n as i32).map(|i| if i % 9 == 0 { -100 } else { i % 10 }).collect();
    let targets = i32s(&targets, &[n], &gpu);
    let seed = Tensor::ones(&[], &gpu);
    let fills = gpu.gpu_context().is_some_and(|ctx| ctx.poison_enabled()) as u64;
    let mut least = None;
    for _ in 0..20 {
        gpu.synchronize();
        let before = gpu.stats().expect("a GPU device counts its work");
        let loss = CrossEntropy::new().ignore_index(-100).forward(&logits, &targets);
        let middle = gpu.stats().unwrap();
        let grads = loss.backward_with(&seed);
        let after = gpu.stats().unwrap();
        let (forward, backward) = (middle - before, after - middle);
        let counts = (forward.dispatches, backward.dispatches, forward.read_backs + backward.read_backs);
        least = Some(least.map_or(counts, |l: (u64, u64, u64)| l.min(counts)));
        assert!(grads.wrt(&logits).to_vec::<f32>().iter().all(|v| v.is_finite()));
        if counts == (1 + fills, 1 + fills, 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(least, Some((1 + fills, 1 + fills, 0)), "(forward dispatches, backward dispatches, read-backs)");
}

/// A target outside the classes that is not ignored makes the loss and its row's gradient
/// NaN on a GPU (checking would mean waiting for the device), never a read out of bounds.
#[test]
fn fused_cross_entropy_marks_a_bad_target_with_nan_on_a_gpu() {
    let Some(gpu) = gpu() else { return };
    let logits = f32s(&values(12, 81, -1.0, 1.0), &[3, 4], &gpu).requires_grad();
    let loss = cross_entropy(&logits, &i32s(&[1, 4, 0], &[3], &gpu));
    assert!(loss.item().is_nan());
    let g = loss.backward().wrt(&logits).to_vec::<f32>();
    assert!(g[4..8].iter().all(|v| v.is_nan()), "the bad row: {g:?}");
}

/// When every target is ignored the mean is 0 / 0 = NaN, as in PyTorch, and the gradient
/// is 0, as PyTorch's NLL backward leaves ignored rows at zero (the composed version would
/// spread the NaN of the denominator instead).
#[test]
fn fused_cross_entropy_with_every_target_ignored() {
    for dev in devices() {
        let logits = f32s(&values(6, 82, -1.0, 1.0), &[2, 3], &dev).requires_grad();
        let targets = i32s(&[-100, -100], &[2], &dev);
        let loss = CrossEntropy::new().ignore_index(-100).forward(&logits, &targets);
        assert!(loss.item().is_nan(), "{}", name(&dev));
        let g = loss.backward().wrt(&logits).to_vec::<f32>();
        assert_eq!(g, vec![0.0; 6], "{}", name(&dev));
        let sum = CrossEntropy::new().ignore_index(-100).reduction(Reduction::Sum).forward(&logits, &targets);
        assert_eq!(sum.item(), 0.0, "{}", name(&dev));
    }
}
