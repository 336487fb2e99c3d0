//! Attention: scaled dot-product attention against a reference written here as host loops
//! in f64 (no masks, causal masks, keep and additive masks, fully masked rows, an explicit
//! scale), broadcasting, dropout, GPU against CPU, gradients by finite differences on both
//! devices; and multi-head attention: shapes, parameter names and initialisation, a case
//! worked out by hand with identity projections, values computed independently in float64
//! by `scripts/mha_reference.py` (NumPy, following the published equations of PyTorch's
//! `F.multi_head_attention_forward`), mask equivalences, dropout, gradients and checks.

mod common;

use common::{dev_name, devices, gpu, randn, uniform_values, within};
use wgrad::nn::{Forward, Module, MultiheadAttention, Sequential};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{manual_seed, AttnMask, Device, Tensor};

fn assert_close(name: &str, actual: &Tensor, expected: &[f32], tol: Tolerance) {
    if let Err(e) = compare(&actual.to_vec::<f32>(), expected, tol) {
        panic!("{name}: {e}");
    }
}

// ---- the host reference ----

/// Sizes of one attention problem with a flat batch: q `[b, l, e]`, k `[b, s, e]`,
/// v `[b, s, ev]`.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    l: usize,
    s: usize,
    e: usize,
    ev: usize,
}

/// Attention written out with loops in f64. `mask(b, i, j)` is `None` where query `i` may
/// not see key `j`, else a value added to the score. A query that sees no key gets zeros.
fn reference(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    d: Dims,
    scale: f64,
    mask: impl Fn(usize, usize, usize) -> Option<f64>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; d.b * d.l * d.ev];
    for b in 0..d.b {
        for i in 0..d.l {
            let scores: Vec<Option<f64>> = (0..d.s)
                .map(|j| {
                    let dot: f64 =
                        (0..d.e).map(|c| q[(b * d.l + i) * d.e + c] as f64 * k[(b * d.s + j) * d.e + c] as f64).sum();
                    mask(b, i, j).map(|add| dot * scale + add).filter(|x| *x != f64::NEG_INFINITY)
                })
                .collect();
            let max = scores.iter().flatten().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
            if max == f64::NEG_INFINITY {
                continue;
            }
            let exps: Vec<f64> = scores.iter().map(|x| x.map_or(0.0, |x| (x - max).exp())).collect();
            let total: f64 = exps.iter().sum();
            for c in 0..d.ev {
                let acc: f64 = (0..d.s).map(|j| exps[j] / total * v[(b * d.s + j) * d.ev + c] as f64).sum();
                out[(b * d.l + i) * d.ev + c] = acc as f32;
            }
        }
    }
    out
}

/// Random q, k, v of the given sizes as host vectors.
fn host_qkv(d: Dims, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    (
        uniform_values(d.b * d.l * d.e, -1.5, 1.5, seed),
        uniform_values(d.b * d.s * d.e, -1.5, 1.5, seed + 1),
        uniform_values(d.b * d.s * d.ev, -2.0, 2.0, seed + 2),
    )
}

/// f32 matmuls and softmax against f64 loops: a few ulp of O(1) values.
const SDPA_TOL: Tolerance = Tolerance::Elementwise { atol: 2e-6, rtol: 2e-5 };

// ---- scaled dot-product attention ----

#[test]
fn sdpa_matches_host_loops_with_and_without_masks() {
    for dev in devices("sdpa_matches_host_loops_with_and_without_masks") {
        let name = dev_name(&dev);
        for (case, d) in
            [Dims { b: 2, l: 4, s: 5, e: 3, ev: 6 }, Dims { b: 3, l: 5, s: 3, e: 4, ev: 2 }].into_iter().enumerate()
        {
            let (qh, kh, vh) = host_qkv(d, 10 * case as u64);
            let q = Tensor::from_slice(&qh, &[d.b, d.l, d.e], &dev);
            let k = Tensor::from_slice(&kh, &[d.b, d.s, d.e], &dev);
            let v = Tensor::from_slice(&vh, &[d.b, d.s, d.ev], &dev);
            let default_scale = 1.0 / (d.e as f64).sqrt();

            let out = q.scaled_dot_product_attention(&k, &v, None, 0.0, None);
            assert_eq!(out.shape(), &[d.b, d.l, d.ev]);
            let expected = reference(&qh, &kh, &vh, d, default_scale, |_, _, _| Some(0.0));
            assert_close(&format!("no mask, case {case} on {name}"), &out, &expected, SDPA_TOL);

            // Top-left aligned: query i sees keys 0..=i, whether L < S or L > S.
            let out = q.scaled_dot_product_attention(&k, &v, Some(AttnMask::Causal), 0.0, None);
            let expected = reference(&qh, &kh, &vh, d, default_scale, |_, i, j| (j <= i).then_some(0.0));
            assert_close(&format!("causal, case {case} on {name}"), &out, &expected, SDPA_TOL);

            // A keep mask over [L, S] in which query 1 sees no key at all: its output is zero.
            let keep = |i: usize, j: usize| i != 1 && !(i + 2 * j).is_multiple_of(3);
            let keep_values: Vec<f32> =
                (0..d.l * d.s).map(|x| if keep(x / d.s, x % d.s) { 1.0 } else { 0.0 }).collect();
            let mask = Tensor::from_slice(&keep_values, &[d.l, d.s], &dev);
            let out = q.scaled_dot_product_attention(&k, &v, Some(AttnMask::Allowed(&mask)), 0.0, Some(0.3));
            let expected = reference(&qh, &kh, &vh, d, 0.3, |_, i, j| keep(i, j).then_some(0.0));
            assert_close(&format!("keep mask, case {case} on {name}"), &out, &expected, SDPA_TOL);
            assert!(out.to_vec::<f32>()[d.ev..2 * d.ev].iter().all(|&x| x == 0.0), "a fully masked row is zero");

            // An additive mask per batch, broadcast over the queries, with one -inf.
            let add: Vec<f32> = (0..d.b * d.s)
                .map(|x| if x == 1 { f32::NEG_INFINITY } else { uniform_values(1, -1.0, 1.0, x as u64)[0] })
                .collect();
            let mask = Tensor::from_slice(&add, &[d.b, 1, d.s], &dev);
            let out = q.scaled_dot_product_attention(&k, &v, Some(AttnMask::Additive(&mask)), 0.0, None);
            let expected = reference(&qh, &kh, &vh, d, default_scale, |b, _, j| Some(add[b * d.s + j] as f64));
            assert_close(&format!("additive mask, case {case} on {name}"), &out, &expected, SDPA_TOL);
        }
    }
}

/// Leading dimensions broadcast between query, key and value (and masks), as in matmul.
#[test]
fn sdpa_broadcasts_batch_dimensions() {
    for dev in devices("sdpa_broadcasts_batch_dimensions") {
        let q = randn(&[2, 3, 4, 5], 1, &dev);
        let k = randn(&[1, 3, 6, 5], 2, &dev);
        let v = randn(&[6, 2], 3, &dev);
        let mask = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 1.0, 0.0, 1.0], &[6], &dev);
        let out = q.scaled_dot_product_attention(&k, &v, Some(AttnMask::Allowed(&mask)), 0.0, None);
        assert_eq!(out.shape(), &[2, 3, 4, 2]);
        let (kb, vb) = (k.broadcast_to(&[2, 3, 6, 5]).contiguous(), v.broadcast_to(&[2, 3, 6, 2]).contiguous());
        let mb = mask.broadcast_to(&[2, 3, 4, 6]).contiguous();
        let expected = q.scaled_dot_product_attention(&kb, &vb, Some(AttnMask::Allowed(&mb)), 0.0, None);
        assert_close(&format!("broadcast on {}", dev_name(&dev)), &out, &expected.to_vec::<f32>(), within(1e-6, 1e-6));
    }
}

/// With the value an identity matrix the output is the attention weights themselves, so
/// dropout can be seen: every weight is zero or scaled by 1 / (1 - p), about p of them
/// zero, the same mask on both devices for the same seed, and a fresh mask per call.
#[test]
fn sdpa_dropout_zeroes_and_rescales_weights() {
    let (b, l, s, e) = (4, 16, 16, 8);
    let run = |dev: &Device, p: f32, seed: Option<u64>| {
        if let Some(seed) = seed {
            manual_seed(seed);
        }
        let q = randn(&[b, l, e], 1, dev);
        let k = randn(&[b, s, e], 2, dev);
        q.scaled_dot_product_attention(&k, &Tensor::eye(s, s, dev), None, p, None).to_vec::<f32>()
    };
    let mut masks = Vec::new();
    for dev in devices("sdpa_dropout_zeroes_and_rescales_weights") {
        let name = dev_name(&dev);
        let plain = run(&dev, 0.0, None);
        let dropped = run(&dev, 0.5, Some(7));
        let mut zeros = 0;
        for (i, (&w, &d)) in plain.iter().zip(&dropped).enumerate() {
            if d == 0.0 {
                zeros += 1;
            } else {
                assert!((d - 2.0 * w).abs() <= 1e-6 + 1e-5 * w, "{name}: weight {i} is {d}, expected 0 or {}", 2.0 * w);
            }
        }
        let fraction = zeros as f64 / plain.len() as f64;
        assert!((0.4..0.6).contains(&fraction), "{name}: {fraction} of the weights dropped with p = 0.5");
        assert_eq!(run(&dev, 0.5, Some(7)), dropped, "{name}: the same seed gives the same mask");
        manual_seed(7);
        let q = randn(&[b, l, e], 1, &dev);
        let k = randn(&[b, s, e], 2, &dev);
        let eye = Tensor::eye(s, s, &dev);
        let first = q.scaled_dot_product_attention(&k, &eye, None, 0.5, None).to_vec::<f32>();
        let second = q.scaled_dot_product_attention(&k, &eye, None, 0.5, None).to_vec::<f32>();
        assert_ne!(first, second, "{name}: each call draws a new mask");
        assert!(run(&dev, 1.0, Some(3)).iter().all(|&x| x == 0.0), "{name}: p = 1 drops everything");
        masks.push(dropped.iter().map(|&x| x == 0.0).collect::<Vec<_>>());
    }
    if masks.len() == 2 {
        assert_eq!(masks[0], masks[1], "CPU and GPU draw the same dropout mask from the same seed");
    }
}

/// The composition on the GPU against the CPU, with rows longer than a workgroup would
/// hold in one pass of some kernels, a keep mask with dead rows and a non-multiple-of-4
/// feature size. Matmul and softmax dominate: normalised error as for matmul.
#[test]
fn sdpa_gpu_agrees_with_the_cpu() {
    let Some(gpu) = gpu("sdpa_gpu_agrees_with_the_cpu") else { return };
    let inputs = |d: &Device| {
        let keep: Vec<f32> = (0..19 * 263).map(|x| if x / 263 == 4 || x % 7 == 0 { 0.0 } else { 1.0 }).collect();
        vec![
            randn(&[2, 19, 5], 1, d),
            randn(&[2, 263, 5], 2, d),
            randn(&[2, 263, 3], 3, d),
            Tensor::from_slice(&keep, &[19, 263], d),
        ]
    };
    let tol = Tolerance::Normalized { tol: 1e-5 };
    cross_check("sdpa keep mask", &gpu, tol, inputs, |x| {
        x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Allowed(&x[3])), 0.0, None)
    });
    cross_check("sdpa causal", &gpu, tol, inputs, |x| {
        x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Causal), 0.0, Some(0.7))
    });
}

const GRAD_TOL: GradTolerance = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };

/// Gradients of q, k and v (and of an additive mask) against finite differences, on both
/// devices, including a query with no visible key (whose gradient is zero both ways).
#[test]
fn sdpa_gradients_match_finite_differences() {
    let input = |shape: &[usize], seed: u64| (uniform_values(shape.iter().product(), -1.5, 1.5, seed), shape.to_vec());
    let qkv = [input(&[2, 3, 4], 1), input(&[2, 5, 4], 2), input(&[2, 5, 3], 3)];
    for dev in devices("sdpa_gradients_match_finite_differences") {
        let mut failures = Vec::new();
        failures.extend(
            gradcheck("sdpa", &dev, &qkv, GRAD_TOL, |x| {
                x[0].scaled_dot_product_attention(&x[1], &x[2], None, 0.0, None)
            })
            .err(),
        );
        failures.extend(
            gradcheck("sdpa causal", &dev, &qkv, GRAD_TOL, |x| {
                x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Causal), 0.0, None)
            })
            .err(),
        );
        failures.extend(
            gradcheck("sdpa keep mask with a dead row", &dev, &qkv, GRAD_TOL, |x| {
                let keep = [1.0f32, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0];
                let mask = Tensor::from_slice(&keep, &[3, 5], x[0].device());
                x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Allowed(&mask)), 0.0, Some(0.8))
            })
            .err(),
        );
        let mut with_mask = qkv.to_vec();
        with_mask.push(input(&[3, 5], 4));
        failures.extend(
            gradcheck("sdpa additive mask", &dev, &with_mask, GRAD_TOL, |x| {
                x[0].scaled_dot_product_attention(&x[1], &x[2], Some(AttnMask::Additive(&x[3])), 0.0, None)
            })
            .err(),
        );
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}

#[test]
#[should_panic(
    expected = "scaled_dot_product_attention: query [2, 3, 4] and key [2, 5, 3] disagree on the feature dimension (4 vs 3)"
)]
fn sdpa_rejects_mismatched_features() {
    let dev = Device::cpu();
    let (q, k) = (Tensor::zeros(&[2, 3, 4], &dev), Tensor::zeros(&[2, 5, 3], &dev));
    q.scaled_dot_product_attention(&k, &k, None, 0.0, None);
}

#[test]
#[should_panic(
    expected = "scaled_dot_product_attention: attention mask of shape [3, 4] does not broadcast to the scores' shape [2, 3, 5]"
)]
fn sdpa_rejects_a_mask_of_the_wrong_shape() {
    let dev = Device::cpu();
    let (q, k) = (Tensor::zeros(&[2, 3, 4], &dev), Tensor::zeros(&[2, 5, 4], &dev));
    let mask = Tensor::ones(&[3, 4], &dev);
    q.scaled_dot_product_attention(&k, &k, Some(AttnMask::Allowed(&mask)), 0.0, None);
}

#[test]
#[should_panic(expected = "scaled_dot_product_attention: dropout probability 1.5 is not in [0, 1]")]
fn sdpa_rejects_a_bad_dropout_probability() {
    let q = Tensor::zeros(&[3, 4], &Device::cpu());
    q.scaled_dot_product_attention(&q, &q, None, 1.5, None);
}

// ---- multi-head attention ----

/// `det(n, a, b, c)[i] = c * sin(a * i + b)` rounded to f32: the closed-form inputs that
/// `scripts/mha_reference.py` evaluates the same way.
fn det(n: usize, a: f64, b: f64, c: f64) -> Vec<f32> {
    (0..n).map(|i| (c * (a * i as f64 + b).sin()) as f32).collect()
}

/// The layer and inputs of the NumPy reference: E = 6, 2 heads, N = 2, L = 3, S = 4.
fn reference_layer(dev: &Device) -> (MultiheadAttention, Tensor, Tensor, Tensor) {
    let (e, n, l, s) = (6, 2, 3, 4);
    let t = |v: Vec<f32>, shape: &[usize]| Tensor::from_slice(&v, shape, dev);
    let mha = MultiheadAttention::from_parameters(
        2,
        t(det(3 * e * e, 0.37, 0.11, 0.5), &[3 * e, e]),
        Some(t(det(3 * e, 0.9, 0.3, 0.2), &[3 * e])),
        t(det(e * e, 0.61, -0.7, 0.4), &[e, e]),
        Some(t(det(e, 1.7, 0.5, 0.1), &[e])),
    );
    let query = t(det(n * l * e, 0.53, 0.2, 1.0), &[n, l, e]);
    let key = t(det(n * s * e, 0.71, -0.4, 1.0), &[n, s, e]);
    let value = t(det(n * s * e, 0.29, 1.1, 1.5), &[n, s, e]);
    (mha, query, key, value)
}

// Output of `python3 scripts/mha_reference.py` (float64 NumPy), pasted verbatim.
#[rustfmt::skip]
const CROSS_OUTPUT: [f64; 36] = [3.214799341e-01, 2.717554128e-02, -2.490703207e-01, 3.037570785e-01, -3.720199712e-01, 4.683476936e-01, 5.539478084e-02, -7.825624570e-02, 2.001728975e-01, -3.712449574e-01, 3.513630420e-01, -1.133249320e-01, 4.078291644e-01, -2.650444424e-03, -2.836052859e-01, 3.935778624e-01, -4.935233556e-01, 5.896048896e-01, 2.742117247e-02, 6.168962886e-02, -1.497006893e-02, -1.374403873e-01, 1.603362944e-01, -1.527423986e-02, 4.854443402e-01, -2.308066260e-01, 3.513671831e-02, 6.800939875e-02, -2.466816754e-01, 4.863553316e-01, 3.077077704e-02, 9.391589140e-02, -7.430374012e-02, -6.659107377e-02, 9.658920306e-02, 2.461909904e-02];
#[rustfmt::skip]
const CROSS_WEIGHTS: [f64; 24] = [3.757618862e-01, 4.371226129e-02, 2.398551766e-01, 3.406706759e-01, 3.285563695e-02, 7.458525028e-01, 1.738421397e-01, 4.744972055e-02, 1.843308242e-01, 1.483263169e-02, 2.079414484e-01, 5.928950957e-01, 7.022969158e-01, 2.443787425e-01, 5.332434170e-02, 0.000000000e+00, 1.747664402e-02, 1.761494917e-01, 8.063738643e-01, 0.000000000e+00, 7.638580566e-01, 1.485265197e-01, 8.761542374e-02, 0.000000000e+00];
#[rustfmt::skip]
const CAUSAL_OUTPUT: [f64; 36] = [2.568774502e-01, 6.589465561e-02, -2.517313946e-01, 2.696608416e-01, -3.101262824e-01, 3.949210299e-01, 2.717990212e-01, -2.005790126e-01, 1.962700616e-01, -2.421421088e-01, 1.309859995e-01, 1.404153989e-01, 2.413838850e-01, 6.952265452e-02, -2.425404592e-01, 2.500661742e-01, -2.852769936e-01, 3.713470434e-01, 3.000672609e-01, -2.188159646e-01, 1.996833959e-01, -2.298348661e-01, 1.061922946e-01, 1.711802517e-01, 2.029513165e-01, 8.003733198e-02, -2.223741878e-01, 2.045182665e-01, -2.263165852e-01, 3.144678140e-01, 3.124598426e-01, -2.181947876e-01, 1.862116947e-01, -2.070527482e-01, 8.008647258e-02, 1.937496617e-01];
#[rustfmt::skip]
const CAUSAL_WEIGHTS: [f64; 36] = [1.000000000e+00, 0.000000000e+00, 0.000000000e+00, 3.443770798e-02, 9.655622920e-01, 0.000000000e+00, 4.680541643e-01, 2.687293445e-02, 5.050729013e-01, 1.000000000e+00, 0.000000000e+00, 0.000000000e+00, 2.842256330e-02, 9.715774367e-01, 0.000000000e+00, 4.738542106e-01, 1.106566264e-02, 5.150801268e-01, 1.000000000e+00, 0.000000000e+00, 0.000000000e+00, 5.462114455e-02, 9.453788554e-01, 0.000000000e+00, 4.711139080e-01, 2.105691399e-02, 5.078291780e-01, 1.000000000e+00, 0.000000000e+00, 0.000000000e+00, 2.281014306e-02, 9.771898569e-01, 0.000000000e+00, 4.762018122e-01, 1.861656449e-02, 5.051816234e-01];

fn f32s(values: &[f64]) -> Vec<f32> {
    values.iter().map(|&v| v as f32).collect()
}

/// The forward pass against float64 values computed independently by
/// `scripts/mha_reference.py` from PyTorch's equations: cross-attention with an additive
/// `[L, S]` mask and a padded key (weights averaged over heads), and causal
/// self-attention (weights per head). f32 against f64 through two projections, a softmax
/// and two matmuls of a few terms each: a few ulp of O(1) values.
#[test]
fn mha_matches_an_independent_float64_reference() {
    let tol = within(2e-6, 2e-5);
    for dev in devices("mha_matches_an_independent_float64_reference") {
        let name = dev_name(&dev);
        let (mha, query, key, value) = reference_layer(&dev);
        let mask = Tensor::from_slice(&det(12, 1.3, 0.0, 0.5), &[3, 4], &dev);
        let padding = Tensor::from_slice(&[0.0f32, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 4], &dev);
        let (out, weights) =
            mha.attend(&query, &key, &value, Some(&padding), true, Some(AttnMask::Additive(&mask)), true);
        let weights = weights.expect("need_weights");
        assert_eq!((out.shape(), weights.shape()), (&[2, 3, 6][..], &[2, 3, 4][..]));
        assert_close(&format!("cross output on {name}"), &out, &f32s(&CROSS_OUTPUT), tol);
        assert_close(&format!("cross weights on {name}"), &weights, &f32s(&CROSS_WEIGHTS), tol);

        let (out, weights) = mha.attend(&query, &query, &query, None, true, Some(AttnMask::Causal), false);
        let weights = weights.expect("need_weights");
        assert_eq!(weights.shape(), &[2, 2, 3, 3]);
        assert_close(&format!("causal output on {name}"), &out, &f32s(&CAUSAL_OUTPUT), tol);
        assert_close(&format!("causal weights on {name}"), &weights, &f32s(&CAUSAL_WEIGHTS), tol);
    }
}

/// Identity projections and zero biases make the layer plain attention of the input per
/// head. With E = 2, two heads of one feature each (scale 1) and x = [[1, 0], [0, 1]]:
/// head 0 sees feature 0, scores [[1, 0], [0, 0]]; head 1 feature 1, scores
/// [[0, 0], [0, 1]]. So with a = e / (e + 1) the weights are [[a, 1 - a], [1/2, 1/2]] and
/// [[1/2, 1/2], [1 - a, a]], and the output is [[a, 1/2], [1/2, a]].
#[test]
fn mha_with_identity_projections_worked_out_by_hand() {
    for dev in devices("mha_with_identity_projections_worked_out_by_hand") {
        let name = dev_name(&dev);
        let eye = Tensor::eye(2, 2, &dev);
        let mha = MultiheadAttention::from_parameters(
            2,
            Tensor::cat(&[eye.clone(), eye.clone(), eye.clone()], 0),
            Some(Tensor::zeros(&[6], &dev)),
            eye.clone(),
            Some(Tensor::zeros(&[2], &dev)),
        );
        let a = std::f32::consts::E / (std::f32::consts::E + 1.0);
        let x = eye.unsqueeze(0);
        let (out, weights) = mha.attend(&x, &x, &x, None, true, None, false);
        let tol = within(1e-6, 1e-6);
        assert_close(&format!("output on {name}"), &out, &[a, 0.5, 0.5, a], tol);
        let per_head = [a, 1.0 - a, 0.5, 0.5, 0.5, 0.5, 1.0 - a, a];
        assert_close(&format!("weights on {name}"), &weights.unwrap(), &per_head, tol);
        // Unbatched input, weights averaged over the two heads.
        let (out, weights) = mha.attend(&eye, &eye, &eye, None, true, None, true);
        assert_eq!(out.shape(), &[2, 2]);
        assert_close(&format!("unbatched output on {name}"), &out, &[a, 0.5, 0.5, a], tol);
        let averaged = [(a + 0.5) / 2.0, (1.5 - a) / 2.0, (1.5 - a) / 2.0, (a + 0.5) / 2.0];
        assert_close(&format!("averaged weights on {name}"), &weights.unwrap(), &averaged, tol);
    }
}

#[test]
fn mha_parameters_shapes_and_description() {
    let dev = Device::cpu();
    manual_seed(0);
    let mha = MultiheadAttention::new(8, 2, &dev);
    let params = mha.named_parameters();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]);
    let shapes: Vec<&[usize]> = params.iter().map(|(_, t)| t.shape()).collect();
    assert_eq!(shapes, [&[24, 8][..], &[24], &[8, 8], &[8]]);
    assert!(params.iter().all(|(_, t)| t.is_tracked()));
    assert_eq!(mha.num_parameters(), 24 * 8 + 24 + 64 + 8);
    assert_eq!((mha.embed_dim(), mha.num_heads(), mha.head_dim()), (8, 2, 4));

    // Xavier-uniform over fan_in 8 + fan_out 24, and a linear layer's default bound.
    let xavier = (6.0f32 / 32.0).sqrt();
    let w = params[0].1.to_vec::<f32>();
    assert!(w.iter().all(|x| x.abs() <= xavier), "in_proj_weight within ±{xavier}");
    assert!(w.iter().any(|x| x.abs() > 0.8 * xavier), "in_proj_weight spread over its range");
    assert!(params[2].1.to_vec::<f32>().iter().all(|x| x.abs() <= 1.0 / 8f32.sqrt()));
    assert_eq!(params[1].1.to_vec::<f32>(), vec![0.0; 24]);
    assert_eq!(params[3].1.to_vec::<f32>(), vec![0.0; 8]);
    // The same seed gives the same layer.
    manual_seed(0);
    assert_eq!(MultiheadAttention::new(8, 2, &dev).in_proj_weight().to_vec::<f32>(), w);

    assert_eq!(
        mha.describe(),
        "MultiheadAttention(\n  embed_dim=8, num_heads=2, dropout=0.0, batch_first=True\n  (out_proj): Linear(in_features=8, \
         out_features=8, bias=True)\n)"
    );
    let names: Vec<String> =
        MultiheadAttention::new(8, 4, &dev).bias(false).named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["in_proj_weight", "out_proj.weight"]);
    // Switching the bias on again keeps the other parameters.
    let id = mha.in_proj_weight().grad_id();
    let mha = mha.bias(false).bias(true).dropout(0.25);
    assert_eq!(mha.in_proj_weight().grad_id(), id);
    assert_eq!(mha.in_proj_bias().unwrap().to_vec::<f32>(), vec![0.0; 24]);
}

#[test]
fn mha_shapes_and_module_forward() {
    for dev in devices("mha_shapes_and_module_forward") {
        let name = dev_name(&dev);
        let mha = MultiheadAttention::new(6, 3, &dev);
        let x = randn(&[2, 5, 6], 1, &dev);
        let memory = randn(&[2, 7, 6], 2, &dev);
        let (out, weights) = mha.attend(&x, &memory, &memory, None, false, None, true);
        assert_eq!(out.shape(), &[2, 5, 6]);
        assert!(weights.is_none());
        let (_, weights) = mha.attend(&x, &memory, &memory, None, true, None, false);
        assert_eq!(weights.unwrap().shape(), &[2, 3, 5, 7]);
        let (out, weights) = mha.attend(
            &x.narrow(0, 0, 1).squeeze(0),
            &memory.narrow(0, 0, 1).squeeze(0),
            &memory.narrow(0, 0, 1).squeeze(0),
            None,
            true,
            None,
            true,
        );
        assert_eq!((out.shape(), weights.unwrap().shape()), (&[5, 6][..], &[5, 7][..]));
        // The module interface is self-attention without masks, and fits a container.
        let (expected, _) = mha.attend(&x, &x, &x, None, false, None, true);
        assert_close(
            &format!("Module::forward on {name}"),
            &mha.forward(&x),
            &expected.to_vec::<f32>(),
            Tolerance::Exact,
        );
        let model = Sequential::new().add(MultiheadAttention::new(6, 2, &dev));
        assert_eq!(model.forward(&x).shape(), &[2, 5, 6]);
        assert_eq!(model.named_parameters()[0].0, "0.in_proj_weight");
    }
}

/// The ways of saying the same thing agree: a key padding mask and the equivalent keep
/// mask per head, an additive -inf mask and the equivalent keep mask; and a sequence whose
/// every key is padding attends to nothing, leaving the output projection's bias.
#[test]
fn mha_masks_agree_with_each_other() {
    for dev in devices("mha_masks_agree_with_each_other") {
        let name = dev_name(&dev);
        let (mha, query, key, value) = reference_layer(&dev);
        let padding = [0.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0];
        let padding_t = Tensor::from_slice(&padding, &[2, 4], &dev);
        // [N * H, L, S]: batch n's two heads, every query, keep where not padding.
        let keep: Vec<f32> = (0..2 * 2 * 3 * 4).map(|x| 1.0 - padding[(x / 24) * 4 + x % 4]).collect();
        let keep_t = Tensor::from_slice(&keep, &[4, 3, 4], &dev);
        let by_padding = mha.attend(&query, &key, &value, Some(&padding_t), true, None, false);
        let by_keep = mha.attend(&query, &key, &value, None, true, Some(AttnMask::Allowed(&keep_t)), false);
        assert_close(
            &format!("padding vs keep on {name}"),
            &by_padding.0,
            &by_keep.0.to_vec::<f32>(),
            Tolerance::Exact,
        );
        assert_close(
            &format!("padding vs keep weights on {name}"),
            &by_padding.1.unwrap(),
            &by_keep.1.unwrap().to_vec::<f32>(),
            Tolerance::Exact,
        );

        let causal_keep: Vec<f32> = (0..12).map(|x| if x % 4 <= x / 4 { 1.0 } else { 0.0 }).collect();
        let additive: Vec<f32> = causal_keep.iter().map(|&k| if k == 1.0 { 0.0 } else { f32::NEG_INFINITY }).collect();
        let keep_t = Tensor::from_slice(&causal_keep, &[3, 4], &dev);
        let add_t = Tensor::from_slice(&additive, &[3, 4], &dev);
        let by_add = mha.attend(&query, &key, &value, None, false, Some(AttnMask::Additive(&add_t)), true).0;
        let by_keep = mha.attend(&query, &key, &value, None, false, Some(AttnMask::Allowed(&keep_t)), true).0;
        let by_causal = mha.attend(&query, &key, &value, None, false, Some(AttnMask::Causal), true).0;
        assert_close(&format!("additive vs keep on {name}"), &by_add, &by_keep.to_vec::<f32>(), Tolerance::Exact);
        assert_close(&format!("causal vs keep on {name}"), &by_causal, &by_keep.to_vec::<f32>(), Tolerance::Exact);

        let all_padding = Tensor::from_slice(&[0.0f32, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0], &[2, 4], &dev);
        let (out, weights) = mha.attend(&query, &key, &value, Some(&all_padding), true, None, true);
        let out = out.to_vec::<f32>();
        let bias = mha.out_proj().bias.as_ref().unwrap().to_vec::<f32>();
        let second: Vec<f32> = out[18..].to_vec();
        assert_eq!(second, [bias.clone(), bias.clone(), bias].concat(), "{name}: a fully padded sequence");
        assert!(weights.unwrap().to_vec::<f32>()[12..].iter().all(|&w| w == 0.0), "{name}: its weights are zero");
        assert!(out.iter().all(|x| x.is_finite()), "{name}: no NaN anywhere");
    }
}

/// Dropout acts in training mode only, and the returned weights are the ones applied.
#[test]
fn mha_dropout_in_training_only() {
    for dev in devices("mha_dropout_in_training_only") {
        let name = dev_name(&dev);
        let mut mha = MultiheadAttention::new(4, 2, &dev).dropout(0.5);
        let x = randn(&[2, 8, 4], 3, &dev);
        let (_, w1) = mha.attend(&x, &x, &x, None, true, None, false);
        let (_, w2) = mha.attend(&x, &x, &x, None, true, None, false);
        let (w1, w2) = (w1.unwrap().to_vec::<f32>(), w2.unwrap().to_vec::<f32>());
        assert!(w1.contains(&0.0), "{name}: training drops weights");
        assert!(w1.iter().any(|&w| w > 1.0 / 8.0), "{name}: and rescales the kept ones");
        assert_ne!(w1, w2, "{name}: a new mask every call");
        mha.set_training(false);
        assert!(!mha.is_training());
        let (out1, w1) = mha.attend(&x, &x, &x, None, true, None, false);
        let (out2, _) = mha.attend(&x, &x, &x, None, true, None, false);
        assert_eq!(out1.to_vec::<f32>(), out2.to_vec::<f32>(), "{name}: evaluation is deterministic");
        let sums: Vec<f32> = w1.unwrap().sum(&[-1], false).to_vec();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-5), "{name}: evaluation weights are a distribution");
    }
}

/// The whole layer on the GPU against the CPU, with both kinds of mask.
#[test]
fn mha_gpu_agrees_with_the_cpu() {
    let Some(gpu) = gpu("mha_gpu_agrees_with_the_cpu") else { return };
    let inputs = |d: &Device| {
        let (mha, query, key, value) = reference_layer(d);
        let mut v: Vec<Tensor> = mha.parameters();
        v.extend([query, key, value, Tensor::from_slice(&[0.0f32, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0], &[2, 4], d)]);
        v
    };
    cross_check("multihead attention", &gpu, Tolerance::Normalized { tol: 1e-5 }, inputs, |x| {
        let mha =
            MultiheadAttention::from_parameters(2, x[0].clone(), Some(x[1].clone()), x[2].clone(), Some(x[3].clone()));
        let (out, weights) = mha.attend(&x[4], &x[5], &x[6], Some(&x[7]), true, Some(AttnMask::Causal), false);
        Tensor::cat(&[out.reshape(&[-1]), weights.unwrap().reshape(&[-1])], 0)
    });
}

/// Gradients of the input and of every parameter against finite differences, on both
/// devices: cross-attention of 2 queries over 3 keys with 2 heads of 2 features.
#[test]
fn mha_gradients_match_finite_differences() {
    let input = |shape: &[usize], seed: u64| (uniform_values(shape.iter().product(), -1.0, 1.0, seed), shape.to_vec());
    let inputs = [
        input(&[1, 2, 4], 1),
        input(&[1, 3, 4], 2),
        input(&[12, 4], 3),
        input(&[12], 4),
        input(&[4, 4], 5),
        input(&[4], 6),
    ];
    for dev in devices("mha_gradients_match_finite_differences") {
        let result = gradcheck("multihead attention", &dev, &inputs, GRAD_TOL, |x| {
            let mha = MultiheadAttention::from_parameters(
                2,
                x[2].clone(),
                Some(x[3].clone()),
                x[4].clone(),
                Some(x[5].clone()),
            );
            let padding = Tensor::from_slice(&[0.0f32, 1.0, 0.0], &[1, 3], x[0].device());
            mha.attend(&x[0], &x[1], &x[1], Some(&padding), false, None, true).0
        });
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}

#[test]
#[should_panic(expected = "MultiheadAttention: embed_dim (10) must be a positive multiple of num_heads (4)")]
fn mha_rejects_heads_that_do_not_divide_the_embedding() {
    MultiheadAttention::new(10, 4, &Device::cpu());
}

#[test]
#[should_panic(expected = "MultiheadAttention: key of shape [2, 5, 7] has 7 features, expected embed_dim 8")]
fn mha_rejects_a_key_of_the_wrong_width() {
    let dev = Device::cpu();
    let mha = MultiheadAttention::new(8, 2, &dev);
    let (x, k) = (Tensor::zeros(&[2, 3, 8], &dev), Tensor::zeros(&[2, 5, 7], &dev));
    mha.attend(&x, &k, &k, None, false, None, true);
}

#[test]
#[should_panic(
    expected = "MultiheadAttention: attn_mask of shape [3, 3] must be [L, S] = [3, 5] or [N * num_heads, L, S] = [4, 3, 5]"
)]
fn mha_rejects_a_mask_of_the_wrong_shape() {
    let dev = Device::cpu();
    let mha = MultiheadAttention::new(8, 2, &dev);
    let (x, k) = (Tensor::zeros(&[2, 3, 8], &dev), Tensor::zeros(&[2, 5, 8], &dev));
    let mask = Tensor::ones(&[3, 3], &dev);
    mha.attend(&x, &k, &k, None, false, Some(AttnMask::Allowed(&mask)), true);
}
