//! Gradient clipping against hand-computed norms, on the CPU and on the GPU test device.
//!
//! The gradients are made exact: the loss is `sum_i sum(p_i * c_i)`, so the gradient of
//! `p_i` is the constant `c_i`, chosen so every norm is a small integer:
//! `[3, 4]`, `[-12]` and `[[0, 0, -84]]` have 2-norm `sqrt(9 + 16 + 144 + 7056) = 85`,
//! 1-norm `3 + 4 + 12 + 84 = 103` and inf-norm `84`. Every test body runs on each device;
//! `gpu_versus_cpu` also compares the two on random gradients large enough to span
//! several workgroups.

use std::sync::OnceLock;

use wgrad::optim::clip::{clip_grad_norm, clip_grad_value, total_norm};
use wgrad::testing::gpu_test_device;
use wgrad::{Device, Gradients, Tensor};

/// The CPU, and the GPU test device (hardware, else lavapipe) when there is one.
fn devices() -> Vec<Device> {
    static GPU: OnceLock<Option<Device>> = OnceLock::new();
    let mut out = vec![Device::cpu()];
    match GPU.get_or_init(gpu_test_device) {
        Some(gpu) => out.push(gpu.clone()),
        None => eprintln!("clip: no GPU adapter, the GPU runs are skipped"),
    }
    out
}

const G0: [f32; 2] = [3.0, 4.0];
const G1: [f32; 1] = [-12.0];
const G2: [f32; 3] = [0.0, 0.0, -84.0];

struct Setup {
    /// Three parameters with the gradients above, one that requires a gradient but is
    /// not in the loss, and one that does not require a gradient.
    params: Vec<Tensor>,
    grads: Gradients,
}

fn setup(dev: &Device) -> Setup {
    let shapes: [&[usize]; 3] = [&[2], &[1], &[1, 3]];
    let values: [&[f32]; 3] = [&G0, &G1, &G2];
    let mut params: Vec<Tensor> = shapes.iter().map(|s| Tensor::ones(s, dev).requires_grad()).collect();
    let mut loss = Tensor::scalar(0.0, dev);
    for (p, (v, s)) in params.iter().zip(values.iter().zip(shapes)) {
        loss = loss.add(&p.mul(&Tensor::from_slice(v, s, dev)).sum_all());
    }
    let unused = Tensor::ones(&[4], dev).requires_grad();
    let frozen = Tensor::ones(&[2], dev);
    loss = loss.add(&frozen.sum_all());
    params.push(unused);
    params.push(frozen);
    let grads = loss.backward();
    Setup { params, grads }
}

fn grad_values(s: &Setup) -> Vec<Vec<f32>> {
    s.params[..3].iter().map(|p| s.grads.wrt(p).to_vec::<f32>()).collect()
}

fn close(a: f32, b: f64, rtol: f64) -> bool {
    (a as f64 - b).abs() <= rtol * b.abs() + 1e-7
}

#[test]
fn total_norms_by_hand() {
    for dev in devices() {
        let s = setup(&dev);
        assert!(s.grads.get(&s.params[3]).is_none() && s.grads.get(&s.params[4]).is_none());
        for (norm_type, expected) in [
            (2.0, 85.0),
            (1.0, 103.0),
            (f32::INFINITY, 84.0),
            // p = 3: (27 + 64 + 1728 + 592704)^(1/3)
            (3.0, f64::cbrt(27.0 + 64.0 + 1728.0 + 592704.0)),
        ] {
            let norm = total_norm(&s.grads, &s.params, norm_type).unwrap();
            assert_eq!(norm.shape(), &[] as &[usize]);
            assert_eq!(norm.device(), &dev);
            let norm = norm.item();
            assert!(close(norm, expected, 1e-6), "{dev:?} {norm_type}-norm: {norm}, expected {expected}");
        }
    }
}

#[test]
fn under_max_norm_nothing_changes() {
    for dev in devices() {
        let mut s = setup(&dev);
        let before = grad_values(&s);
        let norm = clip_grad_norm(&mut s.grads, &s.params, 85.01, 2.0).item();
        assert!(close(norm, 85.0, 1e-6), "{dev:?}: norm {norm}");
        assert_eq!(grad_values(&s), before, "{dev:?}: gradients under max_norm must be left alone");
    }
}

#[test]
fn clipping_scales_to_max_norm() {
    for dev in devices() {
        let mut s = setup(&dev);
        let norm = clip_grad_norm(&mut s.grads, &s.params, 17.0, 2.0).item();
        assert!(close(norm, 85.0, 1e-6), "{dev:?}: returns the norm before clipping, got {norm}");
        let coef = 17.0 / (85.0 + 1e-6);
        let after = grad_values(&s);
        for (g, orig) in after.iter().zip([&G0[..], &G1[..], &G2[..]]) {
            for (&a, &o) in g.iter().zip(orig) {
                assert!(close(a, o as f64 * coef, 1e-6), "{dev:?}: {a} is not {o} * {coef}");
            }
        }
        let new_norm = total_norm(&s.grads, &s.params, 2.0).unwrap().item();
        assert!(close(new_norm, 17.0, 1e-6), "{dev:?}: norm after clipping {new_norm}");
        // Clipping again changes (almost) nothing: the norm is max_norm * (1 - 6e-8).
        let again = clip_grad_norm(&mut s.grads, &s.params, 17.0, 2.0).item();
        assert!(close(again, 17.0, 1e-6));
    }
}

#[test]
fn clipping_by_the_inf_norm() {
    for dev in devices() {
        let mut s = setup(&dev);
        let norm = clip_grad_norm(&mut s.grads, &s.params, 42.0, f32::INFINITY).item();
        assert!(close(norm, 84.0, 1e-6), "{dev:?}: inf-norm {norm}");
        let after = grad_values(&s);
        let coef = 42.0 / (84.0 + 1e-6);
        assert!(close(after[2][2], -84.0 * coef, 1e-6), "{dev:?}: largest element {}", after[2][2]);
        assert!(close(after[0][1], 4.0 * coef, 1e-6), "{dev:?}: all gradients are scaled, {}", after[0][1]);
        let new_norm = total_norm(&s.grads, &s.params, f32::INFINITY).unwrap().item();
        assert!(close(new_norm, 42.0, 1e-6), "{dev:?}: inf-norm after clipping {new_norm}");
    }
}

#[test]
fn clipping_by_value() {
    for dev in devices() {
        let mut s = setup(&dev);
        clip_grad_value(&mut s.grads, &s.params, 3.5);
        assert_eq!(grad_values(&s), vec![vec![3.0, 3.5], vec![-3.5], vec![0.0, 0.0, -3.5]], "{dev:?}");
        assert!(s.grads.get(&s.params[3]).is_none(), "a parameter without a gradient stays without one");
    }
}

#[test]
fn each_parameter_counts_once_and_missing_gradients_are_skipped() {
    for dev in devices() {
        let mut s = setup(&dev);
        let p0 = s.params[0].clone();
        let twice = [p0.clone(), p0.clone(), s.params[3].clone(), s.params[4].clone()];
        let norm = clip_grad_norm(&mut s.grads, &twice, 1.0, 2.0).item();
        assert!(close(norm, 5.0, 1e-6), "{dev:?}: norm of [3, 4] listed twice: {norm}");
        let g = s.grads.wrt(&p0).to_vec::<f32>();
        assert!(close(g[0], 0.6, 1e-6) && close(g[1], 0.8, 1e-6), "{dev:?}: scaled once: {g:?}");
        // The parameters left out of the list are untouched.
        assert_eq!(s.grads.wrt(&s.params[1]).to_vec::<f32>(), G1);

        // Nothing to clip: the norm is 0 and nothing happens.
        let none = clip_grad_norm(&mut s.grads, &s.params[3..], 1.0, 2.0);
        assert_eq!((none.shape(), none.device(), none.item()), (&[] as &[usize], &dev, 0.0));
        let empty = clip_grad_norm(&mut s.grads, &[], 1.0, 2.0);
        assert_eq!((empty.shape(), empty.device(), empty.item()), (&[] as &[usize], &Device::cpu(), 0.0));
        assert!(total_norm(&s.grads, &[], 2.0).is_none());
    }
}

#[test]
fn a_nan_gradient_poisons_all_as_in_pytorch() {
    // torch.nn.utils.clip_grad_norm_ with error_if_nonfinite=False multiplies every
    // gradient by max_norm / (nan + 1e-6) = NaN.
    for dev in devices() {
        let a = Tensor::ones(&[2], &dev).requires_grad();
        let b = Tensor::ones(&[2], &dev).requires_grad();
        let c = Tensor::from_slice(&[f32::NAN, 1.0], &[2], &dev);
        let mut grads = a.mul(&c).sum_all().add(&b.sum_all()).backward();
        let norm = clip_grad_norm(&mut grads, &[a.clone(), b.clone()], 1.0, 2.0).item();
        assert!(norm.is_nan(), "{dev:?}");
        assert!(grads.wrt(&b).to_vec::<f32>().iter().all(|v| v.is_nan()), "{dev:?}");
    }
}

#[test]
fn gpu_versus_cpu() {
    let devs = devices();
    let Some(gpu) = devs.get(1) else { return };
    // Shapes that break kernels: primes, several workgroups, a single element.
    let shapes: [&[usize]; 4] = [&[45, 65], &[7], &[13, 11], &[1]];
    let run = |dev: &Device, max_norm: f32, norm_type: f32| -> (f32, Vec<Vec<f32>>) {
        let params: Vec<Tensor> = shapes.iter().map(|s| Tensor::zeros(s, dev).requires_grad()).collect();
        let mut loss = Tensor::scalar(0.0, dev);
        for (i, (p, s)) in params.iter().zip(shapes).enumerate() {
            let c = Tensor::randn(s, 100 + i as u64, &Device::cpu()).to_device(dev);
            loss = loss.add(&p.mul(&c).sum_all());
        }
        let mut grads = loss.backward();
        let norm = clip_grad_norm(&mut grads, &params, max_norm, norm_type).item();
        (norm, params.iter().map(|p| grads.wrt(p).to_vec::<f32>()).collect())
    };
    for norm_type in [2.0, 1.0, f32::INFINITY, 3.0] {
        let (cpu_norm, cpu_grads) = run(&Device::cpu(), 1.0, norm_type);
        let (gpu_norm, gpu_grads) = run(gpu, 1.0, norm_type);
        // Reductions of ~3000 terms in another order: a normalised tolerance.
        assert!(close(gpu_norm, cpu_norm as f64, 1e-5), "{norm_type}-norm: GPU {gpu_norm} vs CPU {cpu_norm}");
        for (g, c) in gpu_grads.iter().zip(&cpu_grads) {
            wgrad::testing::compare(g, c, wgrad::testing::Tolerance::Elementwise { atol: 1e-6, rtol: 1e-5 })
                .unwrap_or_else(|e| panic!("{norm_type}-norm clipped gradients: {e}"));
        }
    }
    // clip_grad_value on the same gradients.
    let value = |dev: &Device| -> Vec<f32> {
        let p = Tensor::zeros(&[45, 65], dev).requires_grad();
        let c = Tensor::randn(&[45, 65], 7, &Device::cpu()).to_device(dev);
        let mut grads = p.mul(&c).sum_all().backward();
        clip_grad_value(&mut grads, std::slice::from_ref(&p), 0.5);
        grads.wrt(&p).to_vec()
    };
    assert_eq!(value(gpu), value(&Device::cpu()), "clamping is exact");
}

/// On a GPU, clipping by norm reads nothing back: the norm stays a 0-dimensional tensor
/// on the device, the coefficient is computed beside it, and the gradients are scaled
/// there; the norm is the caller's to read.
///
/// The device is shared with the other tests of this file, whose work can only add to the
/// counts: the check takes the least of a few tries.
#[test]
fn clipping_by_norm_waits_for_nothing() {
    let Some(gpu) = devices().into_iter().find(|d| !d.is_cpu()) else { return };
    for (max_norm, norm_type) in [(17.0, 2.0), (1000.0, 2.0), (42.0, f32::INFINITY), (5.0, 3.0)] {
        let mut least = None;
        for _ in 0..20 {
            let mut s = setup(&gpu);
            gpu.synchronize();
            let before = gpu.stats().expect("a GPU device counts its work");
            let norm = clip_grad_norm(&mut s.grads, &s.params, max_norm, norm_type);
            let work = gpu.stats().unwrap() - before;
            assert_eq!((norm.shape(), norm.device()), (&[] as &[usize], &gpu));
            // The result is still the clipped one.
            let after = total_norm(&s.grads, &s.params, norm_type).unwrap().item();
            let want = norm.item().min(max_norm);
            assert!(close(after, want as f64, 1e-5), "{norm_type}-norm after clipping {after}, expected {want}");
            let waits = (work.read_backs, work.submits);
            least = Some(least.map_or(waits, |l: (u64, u64)| l.min(waits)));
            if waits == (0, 0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(least, Some((0, 0)), "{norm_type}-norm: read-backs and submits while clipping");
    }
}

/// An infinite norm makes the coefficient 0, as in PyTorch: every gradient becomes 0.
#[test]
fn an_infinite_norm_zeroes_the_gradients() {
    for dev in devices() {
        let a = Tensor::ones(&[3], &dev).requires_grad();
        let c = Tensor::from_slice(&[f32::INFINITY, 2.0, -1.0], &[3], &dev);
        let mut grads = a.mul(&c).sum_all().backward();
        let norm = clip_grad_norm(&mut grads, std::slice::from_ref(&a), 1.0, 2.0).item();
        assert_eq!(norm, f32::INFINITY, "{dev:?}");
        // inf * 0 is NaN, finite * 0 is 0, as torch's mul_ by a zero coefficient gives.
        let g = grads.wrt(&a).to_vec::<f32>();
        assert!(g[0].is_nan() && g[1] == 0.0 && g[2] == 0.0, "{dev:?}: {g:?}");
    }
}
