//! Layers and initialisers: Linear against a host computation, PyTorch's parameter names
//! and default initialisation, seeding, Dropout's masks, Flatten, the statistics of the
//! `init` functions with PyTorch's gains, and gradients through a Linear layer.

use wgrad::init::{self, FanMode, Nonlinearity};
use wgrad::nn::{self, Forward, Module};
use wgrad::testing::{gradcheck, GradTolerance};
use wgrad::{Device, Tensor};

mod common;
use common::{dev_name, devices, gpu};

/// `n` values in `[-1, 1)` from a fixed integer recurrence, independent of wgrad's RNG.
fn host_values(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| ((i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

// ---- Linear ----

/// `y[.., o] = sum_i x[.., i] W[o, i] + b[o]` in f64 on the host.
fn linear_host(x: &[f32], w: &[f32], b: Option<&[f32]>, in_f: usize, out_f: usize) -> Vec<f64> {
    let rows = x.len() / in_f;
    let mut y = vec![0.0f64; rows * out_f];
    for r in 0..rows {
        for o in 0..out_f {
            let dot: f64 = (0..in_f).map(|i| x[r * in_f + i] as f64 * w[o * in_f + i] as f64).sum();
            y[r * out_f + o] = dot + b.map_or(0.0, |b| b[o] as f64);
        }
    }
    y
}

#[test]
fn linear_forward_is_x_w_transposed_plus_b() {
    let (in_f, out_f) = (7, 5);
    for dev in devices("linear_forward_is_x_w_transposed_plus_b") {
        for bias in [true, false] {
            let layer = nn::Linear::with_seed(in_f, out_f, bias, 3, &dev);
            assert_eq!(layer.weight.shape(), [out_f, in_f], "PyTorch's [out, in] weight");
            let w = layer.weight.to_vec::<f32>();
            let b = layer.bias.as_ref().map(|b| b.to_vec::<f32>());
            // A batch of 3, a batch of 2x4 (leading axes), and a single vector.
            for shape in [vec![3, in_f], vec![2, 4, in_f], vec![in_f]] {
                let n: usize = shape.iter().product();
                let xv = host_values(n, shape.len() as u32);
                let y = layer.forward(&Tensor::from_slice(&xv, &shape, &dev));
                let mut out_shape = shape.clone();
                *out_shape.last_mut().unwrap() = out_f;
                assert_eq!(y.shape(), out_shape.as_slice());
                let expected = linear_host(&xv, &w, b.as_deref(), in_f, out_f);
                for (i, (&a, &e)) in y.to_vec::<f32>().iter().zip(&expected).enumerate() {
                    assert!(
                        (a as f64 - e).abs() <= 1e-6 + 1e-5 * e.abs(),
                        "Linear on {} (bias {bias}, input {shape:?}), element {i}: {a} vs {e}",
                        dev_name(&dev)
                    );
                }
            }
        }
    }
}

#[test]
#[should_panic(expected = "does not end in 4 features")]
fn linear_rejects_the_wrong_number_of_features() {
    let dev = Device::cpu();
    nn::Linear::with_seed(4, 2, true, 0, &dev).forward(&Tensor::zeros(&[3, 5], &dev));
}

#[test]
fn sequential_names_parameters_as_pytorch() {
    let dev = Device::cpu();
    let model = nn::Sequential::new().add(nn::Linear::new(4, 8, &dev)).add(nn::ReLU).add(nn::Linear::new(8, 3, &dev));
    let named: Vec<(String, Vec<usize>)> =
        model.named_parameters().into_iter().map(|(n, t)| (n, t.shape().to_vec())).collect();
    let expected = [("0.weight", vec![8, 4]), ("0.bias", vec![8]), ("2.weight", vec![3, 8]), ("2.bias", vec![3])];
    assert_eq!(named.len(), expected.len());
    for ((name, shape), (want_name, want_shape)) in named.iter().zip(&expected) {
        assert_eq!(name, want_name);
        assert_eq!(shape, want_shape, "{name}");
    }
    assert_eq!(model.num_parameters(), 8 * 4 + 8 + 3 * 8 + 3);
    assert!(model.parameters().iter().all(|p| p.is_tracked()), "parameters require gradients");
    // Nested: a Sequential inside a Sequential gets a second prefix, as in PyTorch.
    let nested =
        nn::Sequential::new().add(nn::Flatten::new()).add(nn::Sequential::new().add(nn::Linear::new(2, 2, &dev)));
    let names: Vec<String> = nested.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["1.0.weight", "1.0.bias"]);
}

/// PyTorch's Linear default: `kaiming_uniform_(a=sqrt(5))` for the weight, which is
/// uniform in +-1/sqrt(in), and the bias uniform in the same bounds.
#[test]
fn linear_default_init_is_uniform_within_one_over_sqrt_in() {
    let (in_f, out_f) = (100, 200);
    let bound = 1.0 / (in_f as f32).sqrt();
    for dev in devices("linear_default_init_is_uniform_within_one_over_sqrt_in") {
        let layer = nn::Linear::with_seed(in_f, out_f, true, 17, &dev);
        let w = layer.weight.to_vec::<f32>();
        let b = layer.bias.as_ref().unwrap().to_vec::<f32>();
        assert!(w.iter().chain(&b).all(|v| v.abs() <= bound), "a parameter outside +-{bound}");
        // Uniform: close to the bounds, mean 0, variance bound^2 / 3, flat histogram.
        let max = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.99 * bound, "largest |w| {max} for bound {bound}");
        let (mean, std) = mean_std(&w);
        let expected_std = bound as f64 / 3f64.sqrt();
        assert!(mean.abs() < 0.02 * bound as f64, "mean {mean}");
        assert!((std / expected_std - 1.0).abs() < 0.02, "std {std} vs {expected_std}");
        let mut bins = [0usize; 10];
        for v in &w {
            bins[(((v / bound + 1.0) / 2.0 * 10.0) as usize).min(9)] += 1;
        }
        for (i, &count) in bins.iter().enumerate() {
            let share = count as f64 / w.len() as f64;
            assert!((share - 0.1).abs() < 0.01, "bin {i} holds {share} of the weights on {}", dev_name(&dev));
        }
        // The bias is drawn separately: not a copy of the weight's first row.
        assert_ne!(b[..in_f.min(out_f)], w[..in_f.min(out_f)]);
        let (_, b_std) = mean_std(&b);
        assert!(b_std > 0.3 * bound as f64, "bias std {b_std}");
    }
}

#[test]
fn manual_seed_makes_models_reproducible() {
    let dev = Device::cpu();
    let build = || {
        nn::Sequential::new()
            .add(nn::Linear::new(6, 5, &dev))
            .add(nn::Dropout::new(0.5))
            .add(nn::Linear::new(5, 2, &dev))
    };
    let values = |m: &nn::Sequential| -> Vec<Vec<f32>> { m.parameters().iter().map(|p| p.to_vec::<f32>()).collect() };
    let x = Tensor::from_slice(&host_values(12, 1), &[2, 6], &dev);

    wgrad::manual_seed(1234);
    let a = build();
    wgrad::manual_seed(1234);
    let b = build();
    wgrad::manual_seed(4321);
    let c = build();
    assert_eq!(values(&a), values(&b), "same seed, same weights");
    assert_eq!(a.forward(&x).to_vec::<f32>(), b.forward(&x).to_vec::<f32>(), "same seed, same dropout masks");
    assert_ne!(values(&a), values(&c), "another seed, other weights");
    // Within one model, the layers draw different seeds.
    let a0 = a.named_parameters()[0].1.to_vec::<f32>();
    wgrad::manual_seed(1234);
    let first = nn::Linear::new(6, 5, &dev);
    let second = nn::Linear::new(6, 5, &dev);
    assert_eq!(first.weight.to_vec::<f32>(), a0);
    assert_ne!(first.weight.to_vec::<f32>(), second.weight.to_vec::<f32>());
}

#[test]
fn a_fresh_sequential_is_in_training_mode() {
    // PyTorch modules start in training mode, however they are built.
    assert!(nn::Sequential::new().is_training());
    assert!(nn::Sequential::default().is_training());
}

// ---- Dropout ----

#[test]
fn dropout_in_eval_mode_is_the_identity() {
    for dev in devices("dropout_in_eval_mode_is_the_identity") {
        let x = Tensor::from_slice(&host_values(64, 2), &[8, 8], &dev);
        let mut drop = nn::Dropout::with_seed(0.5, 1);
        assert!(drop.is_training());
        nn::eval(&mut drop);
        assert!(!drop.is_training());
        assert_eq!(drop.forward(&x).to_vec::<f32>(), x.to_vec::<f32>());
        // Inside a Sequential, eval reaches the layer.
        let mut model = nn::Sequential::new().add(nn::Dropout::with_seed(0.9, 1));
        nn::eval(&mut model);
        assert_eq!(model.forward(&x).to_vec::<f32>(), x.to_vec::<f32>());
        model.set_training(true);
        assert_ne!(model.forward(&x).to_vec::<f32>(), x.to_vec::<f32>());
    }
}

#[test]
fn dropout_zeroes_about_p_and_scales_the_rest() {
    let n = 20_000;
    for dev in devices("dropout_zeroes_about_p_and_scales_the_rest") {
        for p in [0.1f32, 0.3, 0.5, 0.8] {
            let x = Tensor::from_slice(&vec![2.0f32; n], &[100, 200], &dev);
            let y = nn::Dropout::with_seed(p, 5).forward(&x).to_vec::<f32>();
            let zeros = y.iter().filter(|&&v| v == 0.0).count();
            let share = zeros as f64 / n as f64;
            // Binomial sd is sqrt(p (1 - p) / n) <= 0.0036; allow 4 of them.
            assert!((share - p as f64).abs() < 0.015, "p {p} on {}: {share} zeroed", dev_name(&dev));
            let kept = 2.0 * (1.0 / (1.0 - p));
            assert!(y.iter().all(|&v| v == 0.0 || v == kept), "p {p}: survivors must be x / (1 - p) = {kept}");
        }
        // p = 0 and p = 1.
        let x = Tensor::from_slice(&host_values(100, 3), &[100], &dev);
        assert_eq!(nn::Dropout::with_seed(0.0, 1).forward(&x).to_vec::<f32>(), x.to_vec::<f32>());
        assert!(nn::Dropout::with_seed(1.0, 1).forward(&x).to_vec::<f32>().iter().all(|&v| v == 0.0));
    }
}

fn mask(y: &Tensor) -> Vec<bool> {
    y.to_vec::<f32>().iter().map(|&v| v != 0.0).collect()
}

#[test]
fn dropout_masks_differ_across_calls_and_repeat_with_the_seed() {
    let dev = Device::cpu();
    let x = Tensor::ones(&[1000], &dev);
    let drop = nn::Dropout::with_seed(0.5, 77);
    let masks: Vec<Vec<bool>> = (0..3).map(|_| mask(&drop.forward(&x))).collect();
    assert_ne!(masks[0], masks[1]);
    assert_ne!(masks[1], masks[2]);
    assert_ne!(masks[0], masks[2]);
    let again = nn::Dropout::with_seed(0.5, 77);
    let repeated: Vec<Vec<bool>> = (0..3).map(|_| mask(&again.forward(&x))).collect();
    assert_eq!(masks, repeated, "the same seed gives the same sequence of masks");
    assert_ne!(mask(&nn::Dropout::with_seed(0.5, 78).forward(&x)), masks[0], "another seed, another mask");
}

#[test]
fn dropout_masks_are_the_same_on_cpu_and_gpu() {
    let Some(gpu) = gpu("dropout_masks_are_the_same_on_cpu_and_gpu") else { return };
    let values = host_values(4096, 4);
    let on_cpu = nn::Dropout::with_seed(0.4, 99);
    let on_gpu = nn::Dropout::with_seed(0.4, 99);
    for call in 0..3 {
        let a = on_cpu.forward(&Tensor::from_slice(&values, &[64, 64], &Device::cpu()));
        let b = on_gpu.forward(&Tensor::from_slice(&values, &[64, 64], &gpu));
        assert_eq!(a.to_vec::<f32>(), b.to_vec::<f32>(), "call {call}");
        wgrad::testing::check_poison(&b).unwrap();
    }
}

#[test]
fn dropout_gradient_is_the_scaled_mask() {
    for dev in devices("dropout_gradient_is_the_scaled_mask") {
        let x = Tensor::from_slice(&host_values(200, 5).iter().map(|v| v + 3.0).collect::<Vec<_>>(), &[200], &dev)
            .requires_grad();
        let y = nn::Dropout::with_seed(0.25, 3).forward(&x);
        let grad = y.sum_all().backward().wrt(&x).to_vec::<f32>();
        let (yv, xv) = (y.to_vec::<f32>(), x.to_vec::<f32>());
        for i in 0..200 {
            let expected = if yv[i] == 0.0 { 0.0 } else { 1.0 / 0.75 };
            assert!((grad[i] - expected).abs() < 1e-6, "element {i}: grad {} for y {} x {}", grad[i], yv[i], xv[i]);
        }
    }
}

// ---- Flatten ----

#[test]
fn flatten_merges_trailing_axes_in_row_major_order() {
    for dev in devices("flatten_merges_trailing_axes_in_row_major_order") {
        let values: Vec<f32> = (0..120).map(|i| i as f32).collect();
        let x = Tensor::from_slice(&values, &[2, 3, 4, 5], &dev);
        let y = nn::Flatten::new().forward(&x);
        assert_eq!(y.shape(), [2, 60]);
        assert_eq!(y.to_vec::<f32>(), values);
        let y = nn::Flatten { start_dim: 2 }.forward(&x);
        assert_eq!(y.shape(), [2, 3, 20]);
        assert_eq!(y.to_vec::<f32>(), values);
        assert_eq!(nn::Flatten { start_dim: 0 }.forward(&x).shape(), [120]);
        // A transposed (non-contiguous) input flattens in its logical order.
        let xt = Tensor::from_slice(&values[..12], &[3, 4], &dev).t();
        let flat = nn::Flatten::new().forward(&xt.unsqueeze(0));
        let expected: Vec<f32> = (0..4).flat_map(|c| (0..3).map(move |r| (r * 4 + c) as f32)).collect();
        assert_eq!(flat.shape(), [1, 12]);
        assert_eq!(flat.to_vec::<f32>(), expected);
        // Gradients pass through unchanged in shape and value.
        let xg = Tensor::from_slice(&values[..24], &[2, 3, 4], &dev).requires_grad();
        let w = Tensor::from_slice(&host_values(24, 6), &[2, 12], &dev);
        let g = nn::Flatten::new().forward(&xg).mul(&w).sum_all().backward();
        assert_eq!(g.wrt(&xg).shape(), [2, 3, 4]);
        assert_eq!(g.wrt(&xg).to_vec::<f32>(), w.to_vec::<f32>());
    }
}

#[test]
#[should_panic(expected = "Flatten: start_dim 2")]
fn flatten_rejects_a_start_dim_past_the_last_axis() {
    nn::Flatten { start_dim: 2 }.forward(&Tensor::zeros(&[2, 3], &Device::cpu()));
}

// ---- init ----

/// `torch.nn.init.calculate_gain`: linear 1, sigmoid 1, tanh 5/3, relu sqrt(2),
/// leaky_relu sqrt(2 / (1 + slope^2)).
#[test]
fn gains_are_pytorchs() {
    let cases = [
        (Nonlinearity::Linear, 1.0f64),
        (Nonlinearity::Sigmoid, 1.0),
        (Nonlinearity::Tanh, 5.0 / 3.0),
        (Nonlinearity::Relu, 2f64.sqrt()),
        (Nonlinearity::LeakyRelu(0.01), (2.0 / (1.0 + 0.0001f64)).sqrt()),
        (Nonlinearity::LeakyRelu(0.2), (2.0 / 1.04f64).sqrt()),
        (Nonlinearity::LeakyRelu(5f32.sqrt()), (1.0 / 3f64).sqrt()),
    ];
    for (nl, expected) in cases {
        assert!((nl.gain() as f64 - expected).abs() < 1e-6, "{nl:?}: {} vs {expected}", nl.gain());
    }
}

#[test]
fn fans_follow_pytorch() {
    assert_eq!(init::fans(&[200, 100]), (100, 200));
    // Conv weight [out, in, kh, kw]: the receptive field multiplies both.
    assert_eq!(init::fans(&[16, 8, 3, 3]), (72, 144));
    assert_eq!(init::fans(&[4, 6, 5]), (30, 20));
}

/// Checks an initialiser's sample: mean near 0, std within 3% of `std`, and for uniform
/// ones every value within `bound` with the extremes close to it. 10k+ samples: the
/// sampling error of the std is under 1%.
fn check_stats(name: &str, t: &Tensor, std: f64, uniform_bound: Option<f64>) {
    let v = t.to_vec::<f32>();
    assert!(v.len() >= 10_000);
    let (mean, sample_std) = mean_std(&v);
    assert!(mean.abs() < 0.03 * std, "{name}: mean {mean} for std {std}");
    assert!((sample_std / std - 1.0).abs() < 0.03, "{name}: std {sample_std} vs PyTorch's {std}");
    if let Some(bound) = uniform_bound {
        let max = v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
        assert!(max <= bound * (1.0 + 1e-6) && max > 0.99 * bound, "{name}: max |x| {max} for bound {bound}");
    }
}

#[test]
fn xavier_and_kaiming_have_pytorchs_statistics() {
    let shapes: [&[usize]; 2] = [&[100, 120], &[32, 16, 5, 5]]; // fans (120, 100) and (400, 800)
    for dev in devices("xavier_and_kaiming_have_pytorchs_statistics") {
        for shape in shapes {
            let (fan_in, fan_out) = init::fans(shape);
            let (fi, fo) = (fan_in as f64, fan_out as f64);
            for (nl, gain) in [(Nonlinearity::Linear, 1.0f64), (Nonlinearity::Tanh, 5.0 / 3.0)] {
                // xavier: std = gain * sqrt(2 / (fan_in + fan_out)); uniform bound = sqrt(3) std.
                let std = gain * (2.0 / (fi + fo)).sqrt();
                let name = format!("xavier_uniform {shape:?} gain {gain} on {}", dev_name(&dev));
                check_stats(&name, &init::xavier_uniform(shape, nl.gain(), 1, &dev), std, Some(3f64.sqrt() * std));
                let name = format!("xavier_normal {shape:?} gain {gain} on {}", dev_name(&dev));
                check_stats(&name, &init::xavier_normal(shape, nl.gain(), 2, &dev), std, None);
            }
            for (nl, gain) in
                [(Nonlinearity::Relu, 2f64.sqrt()), (Nonlinearity::LeakyRelu(0.01), (2.0 / 1.0001f64).sqrt())]
            {
                for (mode, fan) in [(FanMode::FanIn, fi), (FanMode::FanOut, fo)] {
                    // kaiming: std = gain / sqrt(fan); uniform bound = sqrt(3) std.
                    let std = gain / fan.sqrt();
                    let name = format!("kaiming_uniform {shape:?} {nl:?} {mode:?} on {}", dev_name(&dev));
                    check_stats(&name, &init::kaiming_uniform(shape, mode, nl, 3, &dev), std, Some(3f64.sqrt() * std));
                    let name = format!("kaiming_normal {shape:?} {nl:?} {mode:?} on {}", dev_name(&dev));
                    check_stats(&name, &init::kaiming_normal(shape, mode, nl, 4, &dev), std, None);
                }
            }
        }
        // PyTorch's Linear default is kaiming_uniform(a = sqrt(5)), bound 1 / sqrt(fan_in).
        let t = init::kaiming_uniform(&[100, 120], FanMode::FanIn, Nonlinearity::LeakyRelu(5f32.sqrt()), 5, &dev);
        let bound = 1.0 / 120f64.sqrt();
        check_stats("kaiming_uniform(a = sqrt(5))", &t, bound / 3f64.sqrt(), Some(bound));
        // uniform / normal / constant.
        check_stats("uniform", &init::uniform(&[100, 100], -0.5, 0.5, 6, &dev), 1.0 / 12f64.sqrt(), Some(0.5));
        check_stats("normal", &init::normal(&[100, 100], 0.0, 0.02, 7, &dev), 0.02, None);
        let (m, s) = mean_std(&init::normal(&[100, 100], 3.0, 0.5, 8, &dev).to_vec::<f32>());
        assert!((m - 3.0).abs() < 0.02 && (s / 0.5 - 1.0).abs() < 0.03, "normal(3, 0.5): mean {m} std {s}");
        assert!(init::constant(&[3, 2], 0.25, &dev).to_vec::<f32>().iter().all(|&v| v == 0.25));
        assert!(init::zeros(&[4], &dev).to_vec::<f32>().iter().all(|&v| v == 0.0));
        assert!(init::ones(&[4], &dev).to_vec::<f32>().iter().all(|&v| v == 1.0));
    }
}

#[test]
fn init_is_seeded_and_device_independent() {
    let cpu = Device::cpu();
    let a = init::xavier_uniform(&[30, 40], 1.0, 9, &cpu).to_vec::<f32>();
    assert_eq!(a, init::xavier_uniform(&[30, 40], 1.0, 9, &cpu).to_vec::<f32>());
    assert_ne!(a, init::xavier_uniform(&[30, 40], 1.0, 10, &cpu).to_vec::<f32>());
    let Some(gpu) = gpu("init_is_seeded_and_device_independent") else { return };
    let b = init::xavier_uniform(&[30, 40], 1.0, 9, &gpu).to_vec::<f32>();
    wgrad::testing::compare(&b, &a, wgrad::testing::Tolerance::Elementwise { atol: 1e-7, rtol: 1e-6 }).unwrap();
    let n_cpu = init::kaiming_normal(&[30, 40], FanMode::FanIn, Nonlinearity::Relu, 9, &cpu).to_vec::<f32>();
    let n_gpu = init::kaiming_normal(&[30, 40], FanMode::FanIn, Nonlinearity::Relu, 9, &gpu).to_vec::<f32>();
    wgrad::testing::compare(&n_gpu, &n_cpu, wgrad::testing::Tolerance::Normalized { tol: 2e-5 }).unwrap();
}

// ---- gradients ----

#[test]
fn gradcheck_through_linear_weight_and_bias() {
    let (batch, in_f, out_f) = (3, 5, 4);
    let inputs = vec![
        (host_values(batch * in_f, 7), vec![batch, in_f]),
        (host_values(out_f * in_f, 8), vec![out_f, in_f]),
        (host_values(out_f, 9), vec![out_f]),
    ];
    for dev in devices("gradcheck_through_linear_weight_and_bias") {
        gradcheck("linear", &dev, &inputs, GradTolerance::default(), |xs| {
            nn::Linear::from_parameters(xs[1].clone(), Some(xs[2].clone())).forward(&xs[0])
        })
        .unwrap();
        // Through a Sequential with a nonlinearity after the layer, 3-D input.
        let inputs3 = vec![
            (host_values(2 * batch * in_f, 10), vec![2, batch, in_f]),
            (host_values(out_f * in_f, 11), vec![out_f, in_f]),
            (host_values(out_f, 12), vec![out_f]),
        ];
        gradcheck("linear + tanh", &dev, &inputs3, GradTolerance::default(), |xs| {
            nn::Sequential::new()
                .add(nn::Linear::from_parameters(xs[1].clone(), Some(xs[2].clone())))
                .add(nn::Tanh)
                .forward(&xs[0])
        })
        .unwrap();
    }
}

// ---- threads ----

fn assert_send_sync<T: Send + Sync>(_: &T) {}

/// A model moves to a worker thread, and one behind an `Arc` runs on several threads at
/// once, with the same results as on the thread that built it.
#[test]
fn models_are_send_and_sync() {
    let dev = Device::cpu();
    wgrad::manual_seed(3);
    let model = nn::Sequential::new()
        .add(nn::Linear::new(4, 8, &dev))
        .add(nn::ReLU)
        .add(nn::Dropout::new(0.5))
        .add(nn::Linear::new(8, 3, &dev));
    let boxed: Box<dyn Forward> = Box::new(nn::Linear::new(2, 2, &dev));
    assert_send_sync(&model);
    assert_send_sync(&boxed);
    let mut model = model;
    model.set_training(false);
    let x = Tensor::from_slice(&host_values(8, 1), &[2, 4], &dev);
    let here = model.forward(&x).to_vec::<f32>();
    let model = std::sync::Arc::new(model);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (model, x) = (model.clone(), x.clone());
            std::thread::spawn(move || model.forward(&x).to_vec::<f32>())
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), here);
    }
    let moved = std::thread::spawn(move || boxed.forward(&Tensor::ones(&[1, 2], &Device::cpu())).shape().to_vec());
    assert_eq!(moved.join().unwrap(), vec![1, 2]);
}
