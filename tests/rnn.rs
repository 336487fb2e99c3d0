//! Recurrent layers: the fused LSTM, GRU and Elman kernels against the same cells composed
//! from generic tensor ops (forward and gradients), the GPU against the CPU, gradients
//! against finite differences on both devices, padded batches against each sequence run
//! alone, stacked bidirectional modules against a composed reference, values computed
//! independently in float64, and the modules' names, initialisation, options and errors.

mod common;

use common::{dev_name, devices, gpu, randn, uniform};
use wgrad::nn::{Forward, Linear, Module, RnnNonlinearity, RnnOptions, GRU, LSTM, RNN};
use wgrad::optim::{Adam, Optimizer};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{Device, RnnLayerOutput, RnnMode, RnnWeights, Tensor};

const MODES: [RnnMode; 4] = [RnnMode::Lstm, RnnMode::Gru, RnnMode::RnnTanh, RnnMode::RnnRelu];

/// Fused against composed on one device: the cells differ only in the rounding of
/// sigmoid (the composed one rounds from f64) and in the order the bias terms are added,
/// a few ulp per step; the largest difference measured is 1.5e-7.
const VALUE_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-6, rtol: 1e-5 };
/// Gradients sum products over every step and sequence, so they are compared by
/// normalised error; measured at most 2e-7.
const GRAD_TOL: Tolerance = Tolerance::Normalized { tol: 2e-6 };
/// Finite differences, as tests/autograd.rs: f32 evaluations with step 1e-3.
const FD_TOL: GradTolerance = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };

fn assert_close(what: &str, actual: &Tensor, expected: &Tensor, tol: Tolerance) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes differ");
    if let Err(e) = compare(&actual.to_vec(), &expected.to_vec(), tol) {
        panic!("{what}: {e}");
    }
}

/// The parameters of one layer and direction, owned.
struct Params {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias: Option<(Tensor, Tensor)>,
}

impl Params {
    /// Uniform in [-0.6, 0.6]: large enough that gates saturate unevenly.
    fn random(mode: RnnMode, input: usize, hidden: usize, bias: bool, seed: u64, dev: &Device) -> Params {
        let rows = mode.gates() * hidden;
        Params {
            weight_ih: uniform(&[rows, input], -0.6, 0.6, seed, dev),
            weight_hh: uniform(&[rows, hidden], -0.6, 0.6, seed + 1, dev),
            bias: bias
                .then(|| (uniform(&[rows], -0.6, 0.6, seed + 2, dev), uniform(&[rows], -0.6, 0.6, seed + 3, dev))),
        }
    }

    fn from_weights(w: &RnnWeights) -> Params {
        Params {
            weight_ih: w.weight_ih.clone(),
            weight_hh: w.weight_hh.clone(),
            bias: w.bias_ih.zip(w.bias_hh).map(|(a, b)| (a.clone(), b.clone())),
        }
    }

    /// Fresh leaves that require gradients, with the same values.
    fn tracked(&self) -> Params {
        let leaf = |t: &Tensor| t.detach().requires_grad();
        Params {
            weight_ih: leaf(&self.weight_ih),
            weight_hh: leaf(&self.weight_hh),
            bias: self.bias.as_ref().map(|(a, b)| (leaf(a), leaf(b))),
        }
    }

    fn weights(&self) -> RnnWeights<'_> {
        RnnWeights {
            weight_ih: &self.weight_ih,
            weight_hh: &self.weight_hh,
            bias_ih: self.bias.as_ref().map(|b| &b.0),
            bias_hh: self.bias.as_ref().map(|b| &b.1),
        }
    }

    fn all(&self) -> Vec<&Tensor> {
        let mut v = vec![&self.weight_ih, &self.weight_hh];
        if let Some((a, b)) = &self.bias {
            v.extend([a, b]);
        }
        v
    }
}

// ---- the composed reference ----

/// One step of the cell written with matmul, sigmoid, tanh, relu, mul and add.
fn composed_cell(
    mode: RnnMode,
    x: &Tensor,
    h: &Tensor,
    c: Option<&Tensor>,
    w: &RnnWeights,
) -> (Tensor, Option<Tensor>) {
    let hidden = h.dim(1);
    let mut xp = x.matmul(&w.weight_ih.t());
    let mut hp = h.matmul(&w.weight_hh.t());
    if let (Some(b_ih), Some(b_hh)) = (w.bias_ih, w.bias_hh) {
        xp = xp.add(b_ih);
        hp = hp.add(b_hh);
    }
    let gate = |t: &Tensor, k: usize| t.narrow(1, k * hidden, hidden);
    match mode {
        RnnMode::Lstm => {
            let pre = xp.add(&hp);
            let (i, f) = (gate(&pre, 0).sigmoid(), gate(&pre, 1).sigmoid());
            let (g, o) = (gate(&pre, 2).tanh(), gate(&pre, 3).sigmoid());
            let c = f.mul(c.expect("an LSTM step needs c")).add(&i.mul(&g));
            (o.mul(&c.tanh()), Some(c))
        }
        RnnMode::Gru => {
            let r = gate(&xp, 0).add(&gate(&hp, 0)).sigmoid();
            let z = gate(&xp, 1).add(&gate(&hp, 1)).sigmoid();
            let n = gate(&xp, 2).add(&r.mul(&gate(&hp, 2))).tanh();
            (z.affine(-1.0, 1.0).mul(&n).add(&z.mul(h)), None)
        }
        RnnMode::RnnTanh => (xp.add(&hp).tanh(), None),
        RnnMode::RnnRelu => (xp.add(&hp).relu(), None),
    }
}

/// One layer and direction of composed cells over a full `[T, B, I]` sequence.
fn composed_layer(
    mode: RnnMode,
    x: &Tensor,
    w: &RnnWeights,
    h0: &Tensor,
    c0: Option<&Tensor>,
    reverse: bool,
) -> RnnLayerOutput {
    let steps = x.dim(0);
    let (mut h, mut c) = (h0.clone(), c0.cloned());
    let mut outputs: Vec<Option<Tensor>> = vec![None; steps];
    for k in 0..steps {
        let t = if reverse { steps - 1 - k } else { k };
        let (h_next, c_next) = composed_cell(mode, &x.narrow(0, t, 1).squeeze(0), &h, c.as_ref(), w);
        outputs[t] = Some(h_next.clone());
        (h, c) = (h_next, c_next);
    }
    let outputs: Vec<Tensor> = outputs.into_iter().map(|o| o.expect("every step ran")).collect();
    RnnLayerOutput { output: Tensor::stack(&outputs, 0), h_n: h, c_n: c }
}

/// `sum(output * r1) + sum(h_n * r2) (+ sum(c_n * r3))`: a loss that weighs every result
/// differently, so a rule that mixes up steps or states fails.
fn weighted_loss(out: &RnnLayerOutput, seed: u64) -> Tensor {
    let dev = out.output.device();
    let mut loss = out.output.mul(&randn(out.output.shape(), seed, dev)).sum_all();
    loss = loss.add(&out.h_n.mul(&randn(out.h_n.shape(), seed + 1, dev)).sum_all());
    if let Some(c) = &out.c_n {
        loss = loss.add(&c.mul(&randn(c.shape(), seed + 2, dev)).sum_all());
    }
    loss
}

// ---- fused against composed ----

/// Every cell, both directions, with and without biases, on both devices: the fused layer
/// and the composed cells give the same outputs, final states and gradients of every
/// input (sequence, weights, biases, initial states). Hidden size 7: not a multiple of 4.
#[test]
fn fused_layer_matches_the_composed_cells_forward_and_backward() {
    let (steps, batch, input, hidden) = (5, 3, 4, 7);
    for dev in devices("fused_layer_matches_the_composed_cells_forward_and_backward") {
        for (m, mode) in MODES.into_iter().enumerate() {
            for reverse in [false, true] {
                let what = format!("{mode:?} reverse={reverse} on {}", dev_name(&dev));
                let seed = 100 * m as u64 + 10 * reverse as u64;
                let params = Params::random(mode, input, hidden, !reverse, seed, &dev);
                let x = randn(&[steps, batch, input], seed + 5, &dev);
                let h0 = randn(&[batch, hidden], seed + 6, &dev);
                let c0 = (mode == RnnMode::Lstm).then(|| randn(&[batch, hidden], seed + 7, &dev));
                let run = |fused: bool| {
                    let p = params.tracked();
                    let (x, h0) = (x.detach().requires_grad(), h0.detach().requires_grad());
                    let c0 = c0.as_ref().map(|c| c.detach().requires_grad());
                    let out = if fused {
                        x.rnn_layer(mode, &p.weights(), Some(&h0), c0.as_ref(), reverse, None)
                    } else {
                        composed_layer(mode, &x, &p.weights(), &h0, c0.as_ref(), reverse)
                    };
                    let grads = weighted_loss(&out, seed + 8).backward();
                    let mut leaves = vec![x, h0];
                    leaves.extend(c0);
                    leaves.extend(p.all().into_iter().cloned());
                    let g: Vec<Tensor> = leaves.iter().map(|l| grads.wrt(l).clone()).collect();
                    (out, g)
                };
                let (fused, fused_grads) = run(true);
                let (composed, composed_grads) = run(false);
                assert_close(&format!("{what}: output"), &fused.output, &composed.output, VALUE_TOL);
                assert_close(&format!("{what}: h_n"), &fused.h_n, &composed.h_n, VALUE_TOL);
                assert_eq!(fused.c_n.is_some(), mode == RnnMode::Lstm, "{what}: c_n");
                if let (Some(a), Some(b)) = (&fused.c_n, &composed.c_n) {
                    assert_close(&format!("{what}: c_n"), a, b, VALUE_TOL);
                }
                for (i, (a, b)) in fused_grads.iter().zip(&composed_grads).enumerate() {
                    assert_close(&format!("{what}: gradient of leaf {i}"), a, b, GRAD_TOL);
                }
            }
        }
    }
}

// ---- GPU against CPU ----

/// The GPU against the CPU on shapes that break kernels: everything of size 1; odd sizes
/// with padding in both directions; 270 hidden units per step (two workgroups, the second
/// partial). The result joins the outputs, the final states and the gradients of the
/// input, every parameter and the initial states.
#[test]
fn gpu_agrees_with_cpu_on_shapes_that_break_kernels() {
    let Some(gpu) = gpu("gpu_agrees_with_cpu_on_shapes_that_break_kernels") else { return };
    // (T, B, I, H, reverse)
    let shapes = [(1, 1, 1, 1, false), (5, 3, 6, 7, true), (3, 3, 5, 90, true)];
    let all_lengths: [Option<&[usize]>; 3] = [None, Some(&[5, 2, 3]), None];
    for mode in MODES {
        for (s, (&(steps, batch, input, hidden, reverse), &lengths)) in shapes.iter().zip(&all_lengths).enumerate() {
            let seed = 300 + 10 * s as u64;
            let inputs = move |d: &Device| {
                let p = Params::random(mode, input, hidden, true, seed, d);
                let mut v = vec![randn(&[steps, batch, input], seed + 5, d), randn(&[batch, hidden], seed + 6, d)];
                v.push(randn(&[batch, hidden], seed + 7, d));
                v.extend(p.all().into_iter().cloned());
                v
            };
            let call = move |x: &[Tensor]| {
                let leaves: Vec<Tensor> = x.iter().map(|t| t.detach().requires_grad()).collect();
                let weights = RnnWeights {
                    weight_ih: &leaves[3],
                    weight_hh: &leaves[4],
                    bias_ih: Some(&leaves[5]),
                    bias_hh: Some(&leaves[6]),
                };
                let c0 = (mode == RnnMode::Lstm).then_some(&leaves[2]);
                let out = leaves[0].rnn_layer(mode, &weights, Some(&leaves[1]), c0, reverse, lengths);
                let grads = weighted_loss(&out, seed + 8).backward();
                let mut parts = vec![out.output.reshape(&[-1]), out.h_n.reshape(&[-1])];
                parts.extend(out.c_n.map(|c| c.reshape(&[-1])));
                for (i, leaf) in leaves.iter().enumerate() {
                    if i != 2 || mode == RnnMode::Lstm {
                        parts.push(grads.wrt(leaf).reshape(&[-1]));
                    }
                }
                Tensor::cat(&parts, 0)
            };
            let name = format!("{mode:?} [T={steps}, B={batch}, I={input}, H={hidden}] reverse={reverse}");
            // Matmuls and WGSL's exp/tanh: the normalised difference measures at most 5e-7.
            cross_check(&name, &gpu, Tolerance::Normalized { tol: 2e-6 }, inputs, call);
        }
    }
}

// ---- finite differences ----

/// The loss through several steps is differentiated by finite differences in every input:
/// the sequence, both weights, both biases and the initial states, on both devices; the
/// LSTM also in reverse with a padded batch.
#[test]
fn gradients_match_finite_differences_on_both_devices() {
    let (steps, batch, input, hidden) = (3, 2, 3, 3);
    let cases: [(RnnMode, bool, Option<&[usize]>); 5] = [
        (RnnMode::Lstm, false, None),
        (RnnMode::Lstm, true, Some(&[3, 1])),
        (RnnMode::Gru, true, None),
        (RnnMode::RnnTanh, false, Some(&[2, 3])),
        (RnnMode::RnnRelu, false, None),
    ];
    for dev in devices("gradients_match_finite_differences_on_both_devices") {
        for (i, &(mode, reverse, lengths)) in cases.iter().enumerate() {
            let rows = mode.gates() * hidden;
            let seed = 500 + 10 * i as u64;
            let values = |shape: &[usize], s: u64| {
                (common::uniform_values(shape.iter().product(), -0.8, 0.8, s), shape.to_vec())
            };
            let mut inputs = vec![
                values(&[steps, batch, input], seed),
                values(&[rows, input], seed + 1),
                values(&[rows, hidden], seed + 2),
                values(&[rows], seed + 3),
                values(&[rows], seed + 4),
                values(&[batch, hidden], seed + 5),
            ];
            if mode == RnnMode::Lstm {
                inputs.push(values(&[batch, hidden], seed + 6));
            }
            let f = |t: &[Tensor]| {
                let w = RnnWeights { weight_ih: &t[1], weight_hh: &t[2], bias_ih: Some(&t[3]), bias_hh: Some(&t[4]) };
                let out = t[0].rnn_layer(mode, &w, Some(&t[5]), t.get(6), reverse, lengths);
                let mut parts = vec![out.output.reshape(&[-1]), out.h_n.reshape(&[-1])];
                parts.extend(out.c_n.map(|c| c.reshape(&[-1])));
                Tensor::cat(&parts, 0)
            };
            let name = format!("{mode:?} reverse={reverse} lengths={lengths:?}");
            gradcheck(&name, &dev, &inputs, FD_TOL, f).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

// ---- padded batches ----

/// A padded batch (padding filled with large values) gives, for each sequence, the same
/// outputs, final states and gradients as the sequence run alone: zero outputs and zero
/// input gradients at padded steps, weight gradients the sum over the sequences alone.
#[test]
fn padded_steps_change_neither_outputs_nor_gradients() {
    let (steps, input, hidden) = (5, 3, 5);
    let lengths = [5, 2, 4];
    let batch = lengths.len();
    for dev in devices("padded_steps_change_neither_outputs_nor_gradients") {
        for (m, mode) in MODES.into_iter().enumerate() {
            for reverse in [false, true] {
                let what = format!("{mode:?} reverse={reverse} on {}", dev_name(&dev));
                let seed = 700 + 10 * m as u64 + reverse as u64;
                let params = Params::random(mode, input, hidden, true, seed, &dev);
                let valid = randn(&[steps, batch, input], seed + 5, &dev);
                let mask: Vec<f32> =
                    (0..steps * batch).map(|i| ((i / batch) < lengths[i % batch]) as u8 as f32).collect();
                let mask = Tensor::from_slice(&mask, &[steps, batch, 1], &dev);
                // Padding far outside the range of real inputs: any leak would show.
                let x = valid.where_cond(&mask, &Tensor::full(&[steps, batch, input], 100.0, &dev));
                let h0 = randn(&[batch, hidden], seed + 6, &dev);
                let c0 = (mode == RnnMode::Lstm).then(|| randn(&[batch, hidden], seed + 7, &dev));
                let r_out = randn(&[steps, batch, hidden], seed + 8, &dev);
                let r_h = randn(&[batch, hidden], seed + 9, &dev);

                // The padded batch.
                let p = params.tracked();
                let (xb, h0b) = (x.detach().requires_grad(), h0.detach().requires_grad());
                let out = xb.rnn_layer(mode, &p.weights(), Some(&h0b), c0.as_ref(), reverse, Some(&lengths));
                let loss = out.output.mul(&r_out).sum_all().add(&out.h_n.mul(&r_h).sum_all());
                let grads = loss.backward();

                let mut weight_grads: Vec<Option<Tensor>> = vec![None; p.all().len()];
                for (b, &len) in lengths.iter().enumerate() {
                    let alone = params.tracked();
                    let xs = x.narrow(1, b, 1).narrow(0, 0, len).detach().requires_grad();
                    let hs = h0.narrow(0, b, 1).detach().requires_grad();
                    let cs = c0.as_ref().map(|c| c.narrow(0, b, 1));
                    let o = xs.rnn_layer(mode, &alone.weights(), Some(&hs), cs.as_ref(), reverse, None);
                    let r = r_out.narrow(1, b, 1).narrow(0, 0, len);
                    let g = o.output.mul(&r).sum_all().add(&o.h_n.mul(&r_h.narrow(0, b, 1)).sum_all()).backward();

                    let seq = |t: &Tensor| t.narrow(1, b, 1);
                    assert_close(
                        &format!("{what}: output of {b}"),
                        &seq(&out.output).narrow(0, 0, len),
                        &o.output,
                        VALUE_TOL,
                    );
                    let padded = seq(&out.output).narrow(0, len, steps - len).to_vec::<f32>();
                    assert!(padded.iter().all(|&v| v == 0.0), "{what}: outputs past length {len} are {padded:?}");
                    assert_close(&format!("{what}: h_n of {b}"), &out.h_n.narrow(0, b, 1), &o.h_n, VALUE_TOL);
                    if let (Some(cn), Some(cs)) = (&out.c_n, &o.c_n) {
                        assert_close(&format!("{what}: c_n of {b}"), &cn.narrow(0, b, 1), cs, VALUE_TOL);
                    }
                    let gx = seq(grads.wrt(&xb));
                    assert_close(&format!("{what}: dx of {b}"), &gx.narrow(0, 0, len), g.wrt(&xs), VALUE_TOL);
                    let gx_pad = gx.narrow(0, len, steps - len).to_vec::<f32>();
                    assert!(gx_pad.iter().all(|&v| v == 0.0), "{what}: input gradient past length {len}: {gx_pad:?}");
                    let dh0 = grads.wrt(&h0b).narrow(0, b, 1);
                    assert_close(&format!("{what}: dh0 of {b}"), &dh0, g.wrt(&hs), VALUE_TOL);
                    for (acc, leaf) in weight_grads.iter_mut().zip(alone.all()) {
                        let gw = g.wrt(leaf).clone();
                        *acc = Some(acc.take().map_or(gw.clone(), |a| a.add(&gw)));
                    }
                }
                for (i, (leaf, expected)) in p.all().into_iter().zip(weight_grads).enumerate() {
                    let expected = expected.expect("every sequence contributes");
                    assert_close(&format!("{what}: gradient of parameter {i}"), grads.wrt(leaf), &expected, GRAD_TOL);
                }
            }
        }
    }
}

// ---- the modules against the composed reference ----

/// The composed reference of a whole module: layers stacked, both directions, no dropout.
/// `x` is time-major; returns the output and the final states stacked as PyTorch does.
fn composed_stack(
    mode: RnnMode,
    layers: &[Vec<Params>],
    x: &Tensor,
    h0: &Tensor,
    c0: Option<&Tensor>,
) -> (Tensor, Tensor, Option<Tensor>) {
    let dirs = layers[0].len();
    let mut input = x.clone();
    let (mut h_n, mut c_n) = (Vec::new(), Vec::new());
    for (l, layer) in layers.iter().enumerate() {
        let mut outputs = Vec::new();
        for (d, p) in layer.iter().enumerate() {
            let state = |s: &Tensor| s.narrow(0, l * dirs + d, 1).squeeze(0);
            let c = c0.map(state);
            let out = composed_layer(mode, &input, &p.weights(), &state(h0), c.as_ref(), d == 1);
            outputs.push(out.output);
            h_n.push(out.h_n);
            c_n.extend(out.c_n);
        }
        input = Tensor::cat(&outputs, 2);
    }
    let c_n = (!c_n.is_empty()).then(|| Tensor::stack(&c_n, 0));
    (input, Tensor::stack(&h_n, 0), c_n)
}

/// A module's parameters per layer and direction, as the composed reference takes them.
fn module_layers(weights: impl Fn(usize, bool) -> Params, layers: usize, bidirectional: bool) -> Vec<Vec<Params>> {
    let dirs: &[bool] = if bidirectional { &[false, true] } else { &[false] };
    (0..layers).map(|l| dirs.iter().map(|&r| weights(l, r)).collect()).collect()
}

/// Two bidirectional layers with `batch_first` and given initial states: outputs, final
/// states and every parameter's gradient equal those of the composed reference, for the
/// LSTM, the GRU and the relu RNN, on both devices. Layer 1 reads 2 * H features.
#[test]
fn stacked_bidirectional_modules_match_the_composed_reference() {
    let (batch, steps, input, hidden) = (2, 4, 3, 5);
    let options = RnnOptions::new().num_layers(2).bidirectional(true).batch_first(true);
    for dev in devices("stacked_bidirectional_modules_match_the_composed_reference") {
        for (m, mode) in [RnnMode::Lstm, RnnMode::Gru, RnnMode::RnnRelu].into_iter().enumerate() {
            let what = format!("{mode:?} on {}", dev_name(&dev));
            let seed = 900 + 10 * m as u64;
            let x = randn(&[batch, steps, input], seed, &dev);
            let h0 = randn(&[4, batch, hidden], seed + 1, &dev);
            let c0 = randn(&[4, batch, hidden], seed + 2, &dev);
            let r = randn(&[batch, steps, 2 * hidden], seed + 3, &dev);
            let (module, output, h_n, c_n): (Box<dyn Module>, Tensor, Tensor, Option<Tensor>) = match mode {
                RnnMode::Lstm => {
                    let lstm = LSTM::with_seed(input, hidden, options, seed, &dev);
                    let (y, (h, c)) = lstm.forward_with_state(&x, (&h0, &c0));
                    (Box::new(lstm), y, h, Some(c))
                }
                RnnMode::Gru => {
                    let gru = GRU::with_seed(input, hidden, options, seed, &dev);
                    let (y, h) = gru.forward_with_state(&x, &h0);
                    (Box::new(gru), y, h, None)
                }
                _ => {
                    let o = options.nonlinearity(RnnNonlinearity::Relu);
                    let rnn = RNN::with_seed(input, hidden, o, seed, &dev);
                    let (y, h) = rnn.forward_with_state(&x, &h0);
                    (Box::new(rnn), y, h, None)
                }
            };
            assert_eq!(output.shape(), &[batch, steps, 2 * hidden], "{what}");
            assert_eq!(h_n.shape(), &[4, batch, hidden], "{what}");
            let named = module.named_parameters();
            let by_name = |l: usize, rev: bool| {
                let suffix = format!("l{l}{}", if rev { "_reverse" } else { "" });
                let get = |n: &str| named.iter().find(|(k, _)| *k == format!("{n}_{suffix}")).unwrap().1.detach();
                Params {
                    weight_ih: get("weight_ih"),
                    weight_hh: get("weight_hh"),
                    bias: Some((get("bias_ih"), get("bias_hh"))),
                }
            };
            let layers: Vec<Vec<Params>> = module_layers(|l, r| by_name(l, r).tracked(), 2, true);
            let c0_ref = c_n.as_ref().map(|_| &c0);
            let (ref_out, ref_h, ref_c) = composed_stack(mode, &layers, &x.transpose(0, 1), &h0, c0_ref);
            let ref_out = ref_out.transpose(0, 1);
            assert_close(&format!("{what}: output"), &output, &ref_out, VALUE_TOL);
            assert_close(&format!("{what}: h_n"), &h_n, &ref_h, VALUE_TOL);
            if let (Some(a), Some(b)) = (&c_n, &ref_c) {
                assert_close(&format!("{what}: c_n"), a, b, VALUE_TOL);
            }
            let loss = |y: &Tensor, h: &Tensor| y.mul(&r).sum_all().add(&h.square().sum_all());
            let grads = loss(&output, &h_n).backward();
            let ref_grads = loss(&ref_out, &ref_h).backward();
            let ref_leaves = layers.iter().flatten().flat_map(|p| p.all().into_iter().cloned());
            for ((name, p), leaf) in named.iter().zip(ref_leaves) {
                assert_close(&format!("{what}: gradient of {name}"), grads.wrt(p), ref_grads.wrt(&leaf), GRAD_TOL);
            }
        }
    }
}

// ---- values computed independently ----

/// `values(n, seed)` of scripts/rnn_reference.py, rounded to f32 as the script does.
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|k| {
            let (k, s) = (k as f64, seed as f64);
            (0.8 * (0.9 * k + 1.3 * s).sin() * (0.37 * k * s + 0.5).cos()) as f32
        })
        .collect()
}

// Printed by `python3 scripts/rnn_reference.py` (numpy, float64, rounded to f32).
const LSTM_OUTPUT: [f32; 16] = [
    0.10443279,
    0.14874218,
    -0.055580534,
    0.07577871,
    0.23706555,
    0.28530946,
    0.042228352,
    0.14507322,
    0.1557042,
    0.26351085,
    0.07705967,
    0.2663824,
    0.21493733,
    0.3289238,
    0.1950161,
    0.3289116,
];
const LSTM_H_N: [f32; 4] = [0.21493733, 0.3289238, 0.1950161, 0.3289116];
const LSTM_C_N: [f32; 4] = [0.357437, 0.59158015, 0.31606483, 0.64238787];
const GRU_OUTPUT: [f32; 16] = [
    0.2363248,
    0.23712806,
    0.1322615,
    0.49289924,
    0.0096528735,
    0.12280391,
    0.15433635,
    0.47679988,
    0.12863454,
    -0.11401472,
    0.051729765,
    0.48145807,
    0.16654778,
    0.08077491,
    0.14281778,
    0.18582752,
];
const GRU_H_N: [f32; 4] = [0.16654778, 0.08077491, 0.14281778, 0.18582752];
const PACKED_OUTPUT: [f32; 32] = [
    -0.08617793,
    0.0665742,
    -0.07506982,
    0.021927979,
    -0.007864979,
    -0.01200002,
    0.03477312,
    0.009006193,
    0.08676745,
    -0.07533736,
    0.10120304,
    -0.0020035442,
    0.09515356,
    -0.08950381,
    0.08820565,
    -0.035244342,
    0.022384498,
    -0.03602604,
    -0.035952207,
    -0.07707201,
    0.0,
    0.0,
    0.0,
    0.0,
    -0.039918326,
    0.018165026,
    -0.1165205,
    0.033357885,
    0.0,
    0.0,
    0.0,
    0.0,
];
const PACKED_H_N: [f32; 8] =
    [-0.039918326, 0.018165026, 0.09515356, -0.08950381, -0.07506982, 0.021927979, 0.03477312, 0.009006193];
const PACKED_C_N: [f32; 8] =
    [-0.076381594, 0.04393457, 0.19974446, -0.1497274, -0.1279848, 0.055332176, 0.06303436, 0.019131677];

/// Known weights and inputs, expected outputs computed independently: the constants were
/// printed by `scripts/rnn_reference.py`, which implements in float64 numpy the LSTM and GRU
/// equations of PyTorch's documentation (torch.nn.LSTM, torch.nn.GRU: gate orders i, f, g, o
/// and r, z, n, the reset gate applied to `W_hn h + b_hn`) and packed sequences by running
/// each sequence alone for its length. The inputs are the script's `values(n, seed)`,
/// rebuilt here. The layers are built from those parameters through the modules' public
/// constructors; f32 against float64 after a few steps agrees to a few 1e-7.
#[test]
fn modules_reproduce_values_computed_independently_in_float64() {
    let (steps, batch, input, hidden) = (4, 2, 3, 2);
    let tol = Tolerance::Elementwise { atol: 2e-6, rtol: 1e-5 };
    for dev in devices("modules_reproduce_values_computed_independently_in_float64") {
        let t = |seed: u64, shape: &[usize]| Tensor::from_slice(&values(shape.iter().product(), seed), shape, &dev);
        let check = |what: &str, actual: &Tensor, expected: &[f32]| {
            if let Err(e) = compare(&actual.to_vec(), expected, tol) {
                panic!("{what} on {}: {e}", dev_name(&dev));
            }
        };

        let params = vec![t(2, &[8, input]), t(3, &[8, hidden]), t(4, &[8]), t(5, &[8])];
        let lstm = LSTM::from_parameters(input, hidden, RnnOptions::new(), params);
        let h0 = t(6, &[batch, hidden]).reshape(&[1, 2, 2]);
        let c0 = t(7, &[batch, hidden]).reshape(&[1, 2, 2]);
        let (y, (h_n, c_n)) = lstm.forward_with_state(&t(1, &[steps, batch, input]), (&h0, &c0));
        check("LSTM output", &y, &LSTM_OUTPUT);
        check("LSTM h_n", &h_n, &LSTM_H_N);
        check("LSTM c_n", &c_n, &LSTM_C_N);

        let params = vec![t(12, &[6, input]), t(13, &[6, hidden]), t(14, &[6]), t(15, &[6])];
        let gru = GRU::from_parameters(input, hidden, RnnOptions::new(), params);
        let h0 = t(16, &[batch, hidden]).reshape(&[1, 2, 2]);
        let (y, h_n) = gru.forward_with_state(&t(11, &[steps, batch, input]), &h0);
        check("GRU output", &y, &GRU_OUTPUT);
        check("GRU h_n", &h_n, &GRU_H_N);

        let params = vec![t(22, &[8, input]), t(23, &[8, hidden]), t(24, &[8, input]), t(25, &[8, hidden])];
        let options = RnnOptions::new().bidirectional(true).bias(false);
        let packed = LSTM::from_parameters(input, hidden, options, params);
        let (y, (h_n, c_n)) = packed.forward_with_lengths(&t(21, &[steps, batch, input]), &[4, 2], None);
        check("packed bidirectional LSTM output", &y, &PACKED_OUTPUT);
        check("packed bidirectional LSTM h_n", &h_n, &PACKED_H_N);
        check("packed bidirectional LSTM c_n", &c_n, &PACKED_C_N);
    }
}

// ---- the CPU cell's functions ----

/// The CPU twin's `tanh` (Cephes' algorithm) and `sigmoid` against f64 over [-12, 12],
/// near zero where a naive `tanh` loses its digits, at the polynomial's switch point, and
/// at the extremes: within 1 and 2 ulp of the correctly rounded value; NaN passes through.
#[test]
fn cpu_cell_functions_are_within_an_ulp_or_two_of_f64() {
    let ulps = |a: f32, b: f64| (a.to_bits() as i64 - (b as f32).to_bits() as i64).abs();
    let points = (0..200_001).map(|i| (i as f32 - 100_000.0) * 1.2e-4).chain((1..2000).flat_map(|i| {
        let x = i as f32 * 1e-7;
        [x, -x, 0.625 - x, 0.625 + x, -0.625 + x]
    }));
    for x in points {
        let t = wgrad::cpu::rnn::tanh(x);
        assert!(ulps(t, (x as f64).clamp(-10.0, 10.0).tanh()) <= 1, "tanh({x}) = {t}");
        let s = wgrad::cpu::rnn::sigmoid(x);
        assert!(ulps(s, 1.0 / (1.0 + (-(x as f64)).exp())) <= 2, "sigmoid({x}) = {s}");
    }
    assert!(wgrad::cpu::rnn::tanh(f32::NAN).is_nan());
    assert_eq!(wgrad::cpu::rnn::tanh(f32::INFINITY), 1.0);
    assert_eq!(wgrad::cpu::rnn::tanh(-1e30), -1.0);
    assert_eq!(wgrad::cpu::rnn::sigmoid(-200.0), 0.0);
}

// ---- module behaviour ----

/// PyTorch's parameter names, order and shapes, its initialisation bound, its parameter
/// count and its repr.
#[test]
fn modules_have_pytorchs_names_shapes_initialisation_and_repr() {
    let dev = Device::cpu();
    let lstm = LSTM::with_seed(3, 5, RnnOptions::new().num_layers(2).bidirectional(true), 1, &dev);
    let named: Vec<(String, Vec<usize>)> =
        lstm.named_parameters().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    let expected: Vec<(String, Vec<usize>)> = [
        ("weight_ih_l0", vec![20, 3]),
        ("weight_hh_l0", vec![20, 5]),
        ("bias_ih_l0", vec![20]),
        ("bias_hh_l0", vec![20]),
        ("weight_ih_l0_reverse", vec![20, 3]),
        ("weight_hh_l0_reverse", vec![20, 5]),
        ("bias_ih_l0_reverse", vec![20]),
        ("bias_hh_l0_reverse", vec![20]),
        ("weight_ih_l1", vec![20, 10]),
        ("weight_hh_l1", vec![20, 5]),
        ("bias_ih_l1", vec![20]),
        ("bias_hh_l1", vec![20]),
        ("weight_ih_l1_reverse", vec![20, 10]),
        ("weight_hh_l1_reverse", vec![20, 5]),
        ("bias_ih_l1_reverse", vec![20]),
        ("bias_hh_l1_reverse", vec![20]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect();
    assert_eq!(named, expected);
    // torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True): per direction 200 parameters
    // in layer 0 (20 * 3 + 20 * 5 + 2 * 20) and 340 in layer 1 (20 * 10 + 20 * 5 + 2 * 20).
    assert_eq!(lstm.num_parameters(), 1080);

    // U(-1/sqrt(H), 1/sqrt(H)) for every parameter, biases included, and filling the range.
    let bound = 1.0 / 5f32.sqrt();
    for (name, p) in lstm.named_parameters() {
        let v = p.to_vec::<f32>();
        assert!(v.iter().all(|x| x.abs() <= bound), "{name} leaves [-{bound}, {bound}]");
        let (lo, hi) = v.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        assert!(lo < -0.5 * bound && hi > 0.5 * bound, "{name} spans only [{lo}, {hi}]");
        assert!(p.is_tracked(), "{name} does not require a gradient");
    }
    let first = lstm.named_parameters()[0].1.to_vec::<f32>();
    let again = LSTM::with_seed(3, 5, RnnOptions::new().num_layers(2).bidirectional(true), 1, &dev);
    assert_eq!(again.named_parameters()[0].1.to_vec::<f32>(), first, "the seed does not fix the weights");
    let other = lstm.named_parameters()[4].1.to_vec::<f32>();
    assert_ne!(first, other, "two parameters drew the same values");

    let gru = GRU::with_options(4, 6, RnnOptions::new().bias(false), &dev);
    let names: Vec<String> = gru.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight_ih_l0", "weight_hh_l0"]);
    assert_eq!(gru.weights(0, false).weight_ih.shape(), &[18, 4]);

    assert_eq!(LSTM::new(28, 128, &dev).describe(), "LSTM(28, 128)");
    assert_eq!(
        LSTM::with_options(28, 128, RnnOptions::new().batch_first(true), &dev).describe(),
        "LSTM(28, 128, batch_first=True)"
    );
    let all = RnnOptions::new().num_layers(3).bias(false).batch_first(true).dropout(0.25).bidirectional(true);
    assert_eq!(
        GRU::with_options(10, 20, all, &dev).describe(),
        "GRU(10, 20, num_layers=3, bias=False, batch_first=True, dropout=0.25, bidirectional=True)"
    );
    // PyTorch's RNN repr leaves the nonlinearity out.
    let relu = RnnOptions::new().nonlinearity(RnnNonlinearity::Relu);
    assert_eq!(RNN::with_options(2, 3, relu, &dev).describe(), "RNN(2, 3)");
}

/// Dropout acts on the outputs of every layer but the last, and only while training: in
/// evaluation mode a two-layer LSTM equals the composed reference, in training it does
/// not, and a one-layer LSTM is unaffected by its dropout.
#[test]
fn dropout_acts_between_layers_and_only_in_training() {
    let dev = Device::cpu();
    let x = randn(&[6, 3, 4], 1, &dev);
    let mut lstm = LSTM::with_seed(4, 8, RnnOptions::new().num_layers(2).dropout(0.5), 2, &dev);
    let layers = module_layers(|l, r| Params::from_weights(&lstm.weights(l, r)), 2, false);
    let zeros = Tensor::zeros(&[2, 3, 8], &dev);
    let (reference, _, _) = composed_stack(RnnMode::Lstm, &layers, &x, &zeros, Some(&zeros));
    assert!(lstm.is_training());
    let (trained, _) = lstm.forward(&x);
    assert!(
        compare(&trained.to_vec(), &reference.to_vec(), VALUE_TOL).is_err(),
        "dropout changed nothing while training"
    );
    lstm.set_training(false);
    assert!(!lstm.is_training());
    assert_close("evaluation", &Forward::forward(&lstm, &x), &reference, VALUE_TOL);

    let single = LSTM::with_seed(4, 8, RnnOptions::new().dropout(0.5), 3, &dev);
    let layers = module_layers(|l, r| Params::from_weights(&single.weights(l, r)), 1, false);
    let zeros = Tensor::zeros(&[1, 3, 8], &dev);
    let (reference, _, _) = composed_stack(RnnMode::Lstm, &layers, &x, &zeros, Some(&zeros));
    assert_close("one layer while training", &single.forward(&x).0, &reference, VALUE_TOL);
}

/// `batch_first` only transposes the input and output, and an unbatched `[T, I]` input is
/// a batch of one with the batch axis removed from the output and the states.
#[test]
fn batch_first_and_unbatched_inputs_agree_with_time_major() {
    let dev = Device::cpu();
    let gru = GRU::with_seed(3, 4, RnnOptions::new().bidirectional(true), 5, &dev);
    let params: Vec<Tensor> = gru.parameters();
    let first = GRU::from_parameters(3, 4, RnnOptions::new().bidirectional(true).batch_first(true), params);
    let x = randn(&[5, 2, 3], 6, &dev);
    let (y, h) = gru.forward(&x);
    let (yb, hb) = first.forward(&x.transpose(0, 1).contiguous());
    assert_eq!(yb.shape(), &[2, 5, 8]);
    assert_close("batch_first output", &yb.transpose(0, 1), &y, Tolerance::Exact);
    assert_close("batch_first h_n", &hb, &h, Tolerance::Exact);

    let one = x.narrow(1, 1, 1);
    let (y1, h1) = gru.forward(&one);
    let (yu, hu) = gru.forward(&one.squeeze(1));
    assert_eq!((yu.shape(), hu.shape()), (&[5, 8][..], &[2, 4][..]));
    assert_close("unbatched output", &yu, &y1.squeeze(1), Tolerance::Exact);
    assert_close("unbatched h_n", &hu, &h1.squeeze(1), Tolerance::Exact);
    // The same for the batch_first layer: unbatched input is [T, I] whatever batch_first says.
    assert_close("unbatched, batch_first", &first.forward(&one.squeeze(1)).0, &yu, Tolerance::Exact);
}

/// An LSTM and a linear head learn to output the mean of a sequence of 8 numbers from
/// its final state: a smoke test that the gradients train the layer.
#[test]
fn an_lstm_learns_to_average_a_sequence() {
    let dev = Device::cpu();
    let lstm = LSTM::with_seed(1, 12, RnnOptions::new().batch_first(true), 7, &dev);
    let head = Linear::with_seed(12, 1, true, 8, &dev);
    let mut params = lstm.parameters();
    params.extend(head.parameters());
    let mut opt = Adam::new(params, 0.02);
    let loss_at = |seed: u64| {
        let x = uniform(&[32, 8, 1], -1.0, 1.0, seed, &dev);
        let target = x.mean(&[1], false);
        let (_, (h_n, _)) = lstm.forward(&x);
        head.forward(&h_n.squeeze(0)).sub(&target).square().mean_all()
    };
    let initial = wgrad::no_grad(|| loss_at(10_000).item());
    for step in 0..150 {
        let grads = loss_at(step).backward();
        opt.step(&grads);
    }
    let last = wgrad::no_grad(|| loss_at(10_000).item());
    assert!(last < 0.1 * initial, "the loss on held-out data went from {initial} to {last}");
}

// ---- errors ----

#[test]
#[should_panic(expected = "LSTM: input of shape [5, 2, 4] has 4 features, expected input_size=3")]
fn wrong_input_size_panics() {
    let dev = Device::cpu();
    LSTM::new(3, 2, &dev).forward(&Tensor::zeros(&[5, 2, 4], &dev));
}

#[test]
#[should_panic(
    expected = "GRU: h0 of shape [1, 2, 3] should be [2, 2, 3] (num_layers * num_directions, batch, hidden_size)"
)]
fn wrong_initial_state_panics() {
    let dev = Device::cpu();
    let gru = GRU::with_options(4, 3, RnnOptions::new().bidirectional(true), &dev);
    gru.forward_with_state(&Tensor::zeros(&[5, 2, 4], &dev), &Tensor::zeros(&[1, 2, 3], &dev));
}

#[test]
#[should_panic(expected = "length 6 is outside 1..=5 (the input has 5 steps)")]
fn lengths_past_the_sequence_panic() {
    let dev = Device::cpu();
    RNN::new(4, 3, &dev).forward_with_lengths(&Tensor::zeros(&[5, 2, 4], &dev), &[2, 6], None);
}

#[test]
#[should_panic(expected = "LSTM: 3 lengths given for a batch of 2 sequences")]
fn a_length_per_sequence_is_required() {
    let dev = Device::cpu();
    LSTM::new(4, 3, &dev).forward_with_lengths(&Tensor::zeros(&[5, 2, 4], &dev), &[2, 3, 4], None);
}

#[test]
#[should_panic(expected = "LSTM: nonlinearity applies to RNN only")]
fn nonlinearity_is_for_rnn_only() {
    LSTM::with_options(4, 3, RnnOptions::new().nonlinearity(RnnNonlinearity::Relu), &Device::cpu());
}

#[test]
#[should_panic(expected = "dropout should be a number in range [0, 1]")]
fn dropout_outside_zero_one_panics() {
    GRU::with_options(4, 3, RnnOptions::new().dropout(1.5), &Device::cpu());
}

#[test]
#[should_panic(expected = "LSTM: weight_hh_l0 of shape [8, 3] should be [8, 2]")]
fn from_parameters_checks_every_shape() {
    let dev = Device::cpu();
    let params = vec![Tensor::zeros(&[8, 4], &dev), Tensor::zeros(&[8, 3], &dev)];
    LSTM::from_parameters(4, 2, RnnOptions::new().bias(false), params);
}

#[test]
#[should_panic(expected = "rnn_layer (GRU): weight_ih of shape [9, 4] does not match [9, 5]")]
fn rnn_layer_checks_the_weights_against_the_input() {
    let dev = Device::cpu();
    let (w_ih, w_hh) = (Tensor::zeros(&[9, 4], &dev), Tensor::zeros(&[9, 3], &dev));
    let w = RnnWeights { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: None, bias_hh: None };
    Tensor::zeros(&[2, 1, 5], &dev).rnn_layer(RnnMode::Gru, &w, None, None, false, None);
}

#[test]
#[should_panic(expected = "rnn_layer (RNN): only the LSTM has a cell state, but c0 was given")]
fn c0_is_for_the_lstm_only() {
    let dev = Device::cpu();
    let (w_ih, w_hh) = (Tensor::zeros(&[3, 5], &dev), Tensor::zeros(&[3, 3], &dev));
    let w = RnnWeights { weight_ih: &w_ih, weight_hh: &w_hh, bias_ih: None, bias_hh: None };
    let c0 = Tensor::zeros(&[1, 3], &dev);
    Tensor::zeros(&[2, 1, 5], &dev).rnn_layer(RnnMode::RnnTanh, &w, None, Some(&c0), false, None);
}

// ---- the GPU's whole-sequence LSTM pass ----

/// Held by the tests that switch the device's whole-sequence LSTM path, so that neither
/// runs on the other's setting. (The other tests of this file are correct on either.)
static WHOLE_SEQUENCE_SWITCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The GPU's whole-sequence LSTM kernel (one dispatch per layer and direction) against its
/// step-by-step path (a matmul and a cell dispatch per step) and against the CPU, forward
/// and every gradient: hidden sizes 1, 5, 33 (not a multiple of 4 or of a subgroup) and 64,
/// one step and seven, both directions, with and without biases and padding.
#[test]
fn the_gpus_whole_sequence_lstm_matches_its_step_by_step_path_and_the_cpu() {
    let Some(gpu) = gpu("the_gpus_whole_sequence_lstm_matches_its_step_by_step_path_and_the_cpu") else { return };
    let ctx = gpu.gpu_context().expect("a GPU device");
    let _switch = WHOLE_SEQUENCE_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let (batch, input) = (3, 4);
    let mut case = 0u64;
    for hidden in [1, 5, 33, 64] {
        for steps in [1usize, 7] {
            for reverse in [false, true] {
                case += 1;
                let seed = 700 + 20 * case;
                let padded = [steps, 1, steps.div_ceil(2)];
                let lengths: Option<&[usize]> = case.is_multiple_of(2).then_some(&padded[..]);
                let bias = !case.is_multiple_of(3);
                let run = |d: &Device| {
                    let p = Params::random(RnnMode::Lstm, input, hidden, bias, seed, d).tracked();
                    let x = randn(&[steps, batch, input], seed + 5, d).requires_grad();
                    let h0 = randn(&[batch, hidden], seed + 6, d).requires_grad();
                    let c0 = randn(&[batch, hidden], seed + 7, d).requires_grad();
                    let out = x.rnn_layer(RnnMode::Lstm, &p.weights(), Some(&h0), Some(&c0), reverse, lengths);
                    let grads = weighted_loss(&out, seed + 8).backward();
                    let mut parts = vec![out.output.reshape(&[-1]), out.h_n.reshape(&[-1])];
                    parts.extend(out.c_n.map(|c| c.reshape(&[-1])));
                    let mut leaves = vec![&x, &h0, &c0];
                    leaves.extend(p.all());
                    parts.extend(leaves.iter().map(|l| grads.wrt(l).reshape(&[-1])));
                    Tensor::cat(&parts, 0).to_vec::<f32>()
                };
                let what = format!("LSTM H={hidden} T={steps} reverse={reverse} bias={bias} lengths={lengths:?}");
                // Both paths whatever the adapter's default; the other tests of this file
                // share the device and are correct on either.
                let default = ctx.whole_sequence_lstm();
                ctx.set_whole_sequence_lstm(true);
                let whole = run(&gpu);
                ctx.set_whole_sequence_lstm(false);
                let by_step = run(&gpu);
                ctx.set_whole_sequence_lstm(default);
                let cpu = run(&Device::cpu());
                // The recurrent dot products are summed in another order than the tiled
                // matmul's, so the paths agree to rounding: normalised error, as above.
                let tol = Tolerance::Normalized { tol: 2e-6 };
                compare(&whole, &by_step, tol)
                    .unwrap_or_else(|e| panic!("{what}: whole sequence against by step: {e}"));
                compare(&whole, &cpu, tol)
                    .unwrap_or_else(|e| panic!("{what}: GPU whole sequence against the CPU: {e}"));
            }
        }
    }
}

/// With the whole-sequence kernel the dispatches of an LSTM layer's forward pass do not
/// grow with the sequence's length; step by step there are at least two per step (the
/// recurrent matmul and the cell).
///
/// The device is shared with the other tests of this file, whose work can only add to the
/// counts: each count is the least of a few tries.
#[test]
fn the_whole_sequence_lstm_is_one_dispatch_per_layer_and_direction() {
    let Some(gpu) = gpu("the_whole_sequence_lstm_is_one_dispatch_per_layer_and_direction") else { return };
    let ctx = gpu.gpu_context().expect("a GPU device");
    let _switch = WHOLE_SEQUENCE_SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let (batch, input, hidden) = (2, 3, 8);
    let p = Params::random(RnnMode::Lstm, input, hidden, true, 900, &gpu);
    let count = |whole: bool, steps: usize| {
        let x = randn(&[steps, batch, input], 901, &gpu);
        let mut least = u64::MAX;
        for _ in 0..8 {
            let default = ctx.whole_sequence_lstm();
            ctx.set_whole_sequence_lstm(whole);
            gpu.synchronize();
            let before = gpu.stats().expect("a GPU device counts its work");
            let out = x.rnn_layer(RnnMode::Lstm, &p.weights(), None, None, false, None);
            let work = gpu.stats().unwrap() - before;
            ctx.set_whole_sequence_lstm(default);
            drop(out);
            least = least.min(work.dispatches);
        }
        least
    };
    let (short, long) = (4, 32);
    let (whole_short, whole_long) = (count(true, short), count(true, long));
    assert_eq!(whole_short, whole_long, "dispatches of the forward pass over {short} and {long} steps, whole sequence");
    let (by_step_short, by_step_long) = (count(false, short), count(false, long));
    assert!(
        by_step_long >= by_step_short + 2 * (long - short) as u64,
        "dispatches step by step over {short} and {long} steps: {by_step_short} and {by_step_long}"
    );
}
