//! Optimizers against PyTorch's documented algorithms.
//!
//! Each optimizer runs 5 steps on a small parameter with scripted gradients: the loss of
//! step t is `sum(param * g_t)`, whose gradient is exactly `g_t`. The trajectory is
//! compared after every step with a reference written below in f64, straight from the
//! pseudo-code of the `torch.optim` docs (copied into the comments), on the CPU and on
//! the GPU device. A reference that shared code with the kernels could share their bugs.

use wgrad::nn::{self, Forward, Module};
use wgrad::optim::{Adagrad, Adam, AdamW, Optimizer, RmsProp, Sgd};
use wgrad::Tensor;

mod common;
use common::{dev_name, devices, ForgotParameters};

/// The starting parameter, shape [2, 3]: signs, a zero, magnitudes from 0.25 to 3.
const THETA0: [f32; 6] = [1.0, -2.0, 0.5, 3.0, -0.25, 0.0];

/// g_1 .. g_5: changing signs, a zero gradient (element 4 at t = 1), magnitudes from 0.05 to 3.
const GRADS: [[f32; 6]; 5] = [
    [0.5, -1.0, 2.0, -0.1, 0.0, 3.0],
    [0.4, 1.5, -0.5, -0.2, 0.7, 2.5],
    [-0.3, 0.8, 1.0, 0.05, -1.2, -3.0],
    [0.1, -0.6, 0.25, 0.3, 0.9, 1.0],
    [-0.2, 0.2, -2.0, -0.4, 0.1, 0.5],
];

/// f32 against an f64 reference over 5 steps: 1e-5 relative, with an absolute floor for
/// elements that pass near zero.
fn close(actual: f32, expected: f64) -> bool {
    (actual as f64 - expected).abs() <= 1e-6 + 1e-5 * expected.abs()
}

/// Runs `make`'s optimizer on `THETA0` with the `GRADS` script on every device and
/// checks each step against `expected` (the reference's parameter after each step).
fn check_trajectory(name: &str, make: impl Fn(Tensor) -> Box<dyn Optimizer>, expected: &[Vec<f64>]) {
    for dev in devices(name) {
        let param = Tensor::from_slice(&THETA0, &[2, 3], &dev).requires_grad();
        let mut opt = make(param.clone());
        for (t, g_t) in GRADS.iter().enumerate() {
            let g = Tensor::from_slice(g_t, &[2, 3], &dev);
            let grads = param.mul(&g).sum_all().backward();
            assert_eq!(grads.wrt(&param).to_vec::<f32>(), g_t, "the scripted gradient must be exact");
            opt.step(&grads);
            let got = param.to_vec::<f32>();
            for (i, (&a, &b)) in got.iter().zip(&expected[t]).enumerate() {
                assert!(close(a, b), "{name} on {}: step {}, element {i}: {a} vs reference {b}", dev_name(&dev), t + 1);
            }
        }
    }
}

fn theta0() -> Vec<f64> {
    THETA0.iter().map(|&v| v as f64).collect()
}

fn grad(t: usize, i: usize) -> f64 {
    GRADS[t][i] as f64
}

// ---------------------------------------------------------------------------------------
// SGD. torch.optim.SGD docs:
//
//   for t = 1 to ... do
//       g_t <- grad f_t(theta_{t-1})
//       if lambda != 0:  g_t <- g_t + lambda theta_{t-1}
//       if mu != 0:
//           if t > 1:  b_t <- mu b_{t-1} + (1 - tau) g_t
//           else:      b_t <- g_t
//           if nesterov:  g_t <- g_t + mu b_t
//           else:         g_t <- b_t
//       if maximize:  theta_t <- theta_{t-1} + gamma g_t
//       else:         theta_t <- theta_{t-1} - gamma g_t
//
// With maximize, the docs flip the sign at the end, but the implementation
// (`_single_tensor_sgd`: `grad = grad if not maximize else -grad`, then weight decay)
// negates the gradient first, so weight decay still shrinks the weights. The two agree
// when lambda = 0; with weight decay, wgrad (and this reference) follow the code.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Default)]
struct SgdConfig {
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    maximize: bool,
}

fn sgd_reference(c: SgdConfig) -> Vec<Vec<f64>> {
    let mut theta = theta0();
    let mut b = vec![0.0; theta.len()];
    let mut out = Vec::new();
    for t in 0..GRADS.len() {
        for i in 0..theta.len() {
            let mut g = if c.maximize { -grad(t, i) } else { grad(t, i) };
            if c.weight_decay != 0.0 {
                g += c.weight_decay * theta[i];
            }
            if c.momentum != 0.0 {
                b[i] = if t > 0 { c.momentum * b[i] + (1.0 - c.dampening) * g } else { g };
                g = if c.nesterov { g + c.momentum * b[i] } else { b[i] };
            }
            theta[i] -= c.lr * g;
        }
        out.push(theta.clone());
    }
    out
}

fn sgd(c: SgdConfig) -> impl Fn(Tensor) -> Box<dyn Optimizer> {
    move |p| {
        Box::new(
            Sgd::new([p], c.lr as f32)
                .momentum(c.momentum as f32)
                .dampening(c.dampening as f32)
                .weight_decay(c.weight_decay as f32)
                .nesterov(c.nesterov)
                .maximize(c.maximize),
        )
    }
}

#[test]
fn sgd_follows_the_pytorch_algorithm() {
    let base = SgdConfig { lr: 0.1, ..Default::default() };
    let cases = [
        ("sgd", base),
        ("sgd momentum", SgdConfig { momentum: 0.9, ..base }),
        ("sgd momentum dampening", SgdConfig { momentum: 0.9, dampening: 0.5, ..base }),
        ("sgd nesterov", SgdConfig { momentum: 0.9, nesterov: true, ..base }),
        ("sgd weight decay", SgdConfig { weight_decay: 0.1, ..base }),
        ("sgd momentum weight decay", SgdConfig { momentum: 0.8, weight_decay: 0.05, ..base }),
        ("sgd maximize", SgdConfig { maximize: true, ..base }),
        ("sgd maximize momentum weight decay", SgdConfig { maximize: true, momentum: 0.9, weight_decay: 0.1, ..base }),
        ("sgd nesterov weight decay", SgdConfig { momentum: 0.5, nesterov: true, weight_decay: 0.2, ..base }),
    ];
    for (name, c) in cases {
        check_trajectory(name, sgd(c), &sgd_reference(c));
    }
}

// ---------------------------------------------------------------------------------------
// Adam and AdamW. torch.optim.Adam docs (amsgrad off):
//
//   m_0 <- 0, v_0 <- 0
//   for t = 1 to ... do
//       if maximize:  g_t <- -grad f_t(theta_{t-1})
//       else:         g_t <-  grad f_t(theta_{t-1})
//       if lambda != 0:  g_t <- g_t + lambda theta_{t-1}
//       m_t <- beta1 m_{t-1} + (1 - beta1) g_t
//       v_t <- beta2 v_{t-1} + (1 - beta2) g_t^2
//       m^_t <- m_t / (1 - beta1^t)
//       v^_t <- v_t / (1 - beta2^t)
//       theta_t <- theta_{t-1} - gamma m^_t / (sqrt(v^_t) + eps)
//
// torch.optim.AdamW docs: the same, except that instead of adding lambda theta to the
// gradient it first decays the weights, theta_t <- theta_{t-1} - gamma lambda theta_{t-1},
// and then applies the update to that theta_t.
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct AdamConfig {
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    maximize: bool,
}

const ADAM: AdamConfig =
    AdamConfig { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false, maximize: false };

fn adam_reference(c: AdamConfig) -> Vec<Vec<f64>> {
    let mut theta = theta0();
    let (mut m, mut v) = (vec![0.0; theta.len()], vec![0.0; theta.len()]);
    let mut out = Vec::new();
    for t in 0..GRADS.len() {
        let step = (t + 1) as i32;
        for i in 0..theta.len() {
            let mut g = if c.maximize { -grad(t, i) } else { grad(t, i) };
            if c.decoupled {
                theta[i] -= c.lr * c.weight_decay * theta[i];
            } else if c.weight_decay != 0.0 {
                g += c.weight_decay * theta[i];
            }
            m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
            v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
            let m_hat = m[i] / (1.0 - c.beta1.powi(step));
            let v_hat = v[i] / (1.0 - c.beta2.powi(step));
            theta[i] -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
        }
        out.push(theta.clone());
    }
    out
}

fn adam(c: AdamConfig) -> impl Fn(Tensor) -> Box<dyn Optimizer> {
    move |p| {
        let opt = if c.decoupled { AdamW::new([p], c.lr as f32) } else { Adam::new([p], c.lr as f32) };
        Box::new(
            opt.betas(c.beta1 as f32, c.beta2 as f32)
                .eps(c.eps as f32)
                .weight_decay(c.weight_decay as f32)
                .maximize(c.maximize),
        )
    }
}

#[test]
fn adam_follows_the_pytorch_algorithm() {
    let cases = [
        ("adam", ADAM),
        ("adam lr 0.01", AdamConfig { lr: 0.01, ..ADAM }),
        ("adam betas eps", AdamConfig { beta1: 0.8, beta2: 0.99, eps: 1e-3, ..ADAM }),
        ("adam weight decay", AdamConfig { weight_decay: 0.1, ..ADAM }),
        ("adam maximize weight decay", AdamConfig { maximize: true, weight_decay: 0.1, ..ADAM }),
    ];
    for (name, c) in cases {
        check_trajectory(name, adam(c), &adam_reference(c));
    }
}

#[test]
fn adamw_follows_the_pytorch_algorithm() {
    let adamw = AdamConfig { decoupled: true, weight_decay: 0.01, ..ADAM };
    let cases = [
        ("adamw default decay", adamw),
        ("adamw decay 0.5", AdamConfig { weight_decay: 0.5, ..adamw }),
        ("adamw maximize", AdamConfig { maximize: true, weight_decay: 0.2, ..adamw }),
    ];
    for (name, c) in cases {
        check_trajectory(name, adam(c), &adam_reference(c));
    }
    // AdamW's default weight decay is PyTorch's 0.01: without calling weight_decay, the
    // trajectory is the 0.01 one.
    check_trajectory(
        "adamw defaults",
        |p| Box::new(AdamW::new([p], 0.1)),
        &adam_reference(AdamConfig { decoupled: true, weight_decay: 0.01, ..ADAM }),
    );
}

/// Adam's first step by hand: m_1 = (1 - b1) g and v_1 = (1 - b2) g^2, so after bias
/// correction m^ = g and v^ = g^2, and the step is lr * g / (|g| + eps): about lr * sign(g)
/// whatever the gradient's size.
///   theta = [1, -2, 0.5], g = [0.3, -4, 1e-3], lr = 0.1:
///   1    - 0.1 * 0.3  / (0.3  + 1e-8) = 0.9                       (to 3e-9)
///   -2   - 0.1 * -4   / (4    + 1e-8) = -1.9
///   0.5  - 0.1 * 1e-3 / (1e-3 + 1e-8) = 0.5 - 0.1 / 1.00001 = 0.40000100
#[test]
fn adam_first_step_by_hand() {
    for dev in devices("adam_first_step_by_hand") {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 0.5], &[3], &dev).requires_grad();
        let mut opt = Adam::new([p.clone()], 0.1);
        let g = Tensor::from_slice(&[0.3f32, -4.0, 1e-3], &[3], &dev);
        opt.step(&p.mul(&g).sum_all().backward());
        let got = p.to_vec::<f32>();
        for (a, b) in got.iter().zip([0.9f32, -1.9, 0.400_001]) {
            assert!((a - b).abs() < 1e-6, "{} on {}: {got:?}", "adam first step", dev_name(&dev));
        }
    }
}

/// SGD with momentum by hand, lr 0.1, mu 0.9, theta_0 = 1 and g = 1 twice:
///   plain momentum:  b_1 = 1,  theta_1 = 0.9;  b_2 = 0.9 + 1 = 1.9, theta_2 = 0.9 - 0.19 = 0.71
///   Nesterov:        b_1 = 1,  step 1 + 0.9 = 1.9, theta_1 = 0.81;
///                    b_2 = 1.9, step 1 + 1.71 = 2.71, theta_2 = 0.81 - 0.271 = 0.539
#[test]
fn sgd_momentum_by_hand() {
    for dev in devices("sgd_momentum_by_hand") {
        for (nesterov, expected) in [(false, [0.9f32, 0.71]), (true, [0.81, 0.539])] {
            let p = Tensor::from_slice(&[1.0f32], &[1], &dev).requires_grad();
            let mut opt = Sgd::new([p.clone()], 0.1).momentum(0.9).nesterov(nesterov);
            for want in expected {
                opt.step(&p.sum_all().backward());
                let got = p.to_vec::<f32>()[0];
                assert!((got - want).abs() < 1e-6, "nesterov {nesterov} on {}: {got} vs {want}", dev_name(&dev));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Adagrad. torch.optim.Adagrad docs:
//
//   state_sum_0 <- tau (initial_accumulator_value)
//   for t = 1 to ... do
//       g_t <- grad f_t(theta_{t-1})
//       gamma~ <- gamma / (1 + (t - 1) eta)          (eta: lr_decay)
//       if lambda != 0:  g_t <- g_t + lambda theta_{t-1}
//       state_sum_t <- state_sum_{t-1} + g_t^2
//       theta_t <- theta_{t-1} - gamma~ g_t / (sqrt(state_sum_t) + eps)
//
// maximize negates g_t first (as in the implementation).
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct AdagradConfig {
    lr: f64,
    lr_decay: f64,
    weight_decay: f64,
    initial_accumulator_value: f64,
    eps: f64,
    maximize: bool,
}

const ADAGRAD: AdagradConfig = AdagradConfig {
    lr: 0.1,
    lr_decay: 0.0,
    weight_decay: 0.0,
    initial_accumulator_value: 0.0,
    eps: 1e-10,
    maximize: false,
};

fn adagrad_reference(c: AdagradConfig) -> Vec<Vec<f64>> {
    let mut theta = theta0();
    let mut sum = vec![c.initial_accumulator_value; theta.len()];
    let mut out = Vec::new();
    for t in 0..GRADS.len() {
        let clr = c.lr / (1.0 + t as f64 * c.lr_decay);
        for i in 0..theta.len() {
            let mut g = if c.maximize { -grad(t, i) } else { grad(t, i) };
            if c.weight_decay != 0.0 {
                g += c.weight_decay * theta[i];
            }
            sum[i] += g * g;
            theta[i] -= clr * g / (sum[i].sqrt() + c.eps);
        }
        out.push(theta.clone());
    }
    out
}

fn adagrad(c: AdagradConfig) -> impl Fn(Tensor) -> Box<dyn Optimizer> {
    move |p| {
        Box::new(
            Adagrad::new([p], c.lr as f32)
                .lr_decay(c.lr_decay as f32)
                .weight_decay(c.weight_decay as f32)
                .initial_accumulator_value(c.initial_accumulator_value as f32)
                .eps(c.eps as f32)
                .maximize(c.maximize),
        )
    }
}

#[test]
fn adagrad_follows_the_pytorch_algorithm() {
    let cases = [
        ("adagrad", ADAGRAD),
        ("adagrad lr decay", AdagradConfig { lr_decay: 0.1, ..ADAGRAD }),
        ("adagrad initial accumulator", AdagradConfig { initial_accumulator_value: 0.5, ..ADAGRAD }),
        (
            "adagrad lr decay, accumulator, weight decay",
            AdagradConfig { lr_decay: 0.3, initial_accumulator_value: 0.25, weight_decay: 0.05, ..ADAGRAD },
        ),
        ("adagrad maximize", AdagradConfig { maximize: true, lr_decay: 0.1, ..ADAGRAD }),
    ];
    for (name, c) in cases {
        check_trajectory(name, adagrad(c), &adagrad_reference(c));
    }
}

// ---------------------------------------------------------------------------------------
// RMSprop. torch.optim.RMSprop docs:
//
//   v_0 <- 0, b_0 <- 0, g^ave_0 <- 0
//   for t = 1 to ... do
//       g_t <- grad f_t(theta_{t-1})
//       if lambda != 0:  g_t <- g_t + lambda theta_{t-1}
//       v_t <- alpha v_{t-1} + (1 - alpha) g_t^2
//       v~_t <- v_t
//       if centered:
//           g^ave_t <- g^ave_{t-1} alpha + (1 - alpha) g_t
//           v~_t <- v~_t - (g^ave_t)^2
//       if mu > 0:
//           b_t <- mu b_{t-1} + g_t / (sqrt(v~_t) + eps)
//           theta_t <- theta_{t-1} - gamma b_t
//       else:
//           theta_t <- theta_{t-1} - gamma g_t / (sqrt(v~_t) + eps)
//
// maximize negates g_t first (as in the implementation).
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct RmsPropConfig {
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
    maximize: bool,
}

const RMSPROP: RmsPropConfig = RmsPropConfig {
    lr: 0.01,
    alpha: 0.99,
    eps: 1e-8,
    weight_decay: 0.0,
    momentum: 0.0,
    centered: false,
    maximize: false,
};

fn rmsprop_reference(c: RmsPropConfig) -> Vec<Vec<f64>> {
    let mut theta = theta0();
    let n = theta.len();
    let (mut v, mut b, mut g_ave) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut out = Vec::new();
    for t in 0..GRADS.len() {
        for i in 0..n {
            let mut g = if c.maximize { -grad(t, i) } else { grad(t, i) };
            if c.weight_decay != 0.0 {
                g += c.weight_decay * theta[i];
            }
            v[i] = c.alpha * v[i] + (1.0 - c.alpha) * g * g;
            let mut v_tilde = v[i];
            if c.centered {
                g_ave[i] = g_ave[i] * c.alpha + (1.0 - c.alpha) * g;
                v_tilde -= g_ave[i] * g_ave[i];
            }
            if c.momentum > 0.0 {
                b[i] = c.momentum * b[i] + g / (v_tilde.sqrt() + c.eps);
                theta[i] -= c.lr * b[i];
            } else {
                theta[i] -= c.lr * g / (v_tilde.sqrt() + c.eps);
            }
        }
        out.push(theta.clone());
    }
    out
}

fn rmsprop(c: RmsPropConfig) -> impl Fn(Tensor) -> Box<dyn Optimizer> {
    move |p| {
        Box::new(
            RmsProp::new([p], c.lr as f32)
                .alpha(c.alpha as f32)
                .eps(c.eps as f32)
                .weight_decay(c.weight_decay as f32)
                .momentum(c.momentum as f32)
                .centered(c.centered)
                .maximize(c.maximize),
        )
    }
}

#[test]
fn rmsprop_follows_the_pytorch_algorithm() {
    let cases = [
        ("rmsprop", RMSPROP),
        ("rmsprop momentum", RmsPropConfig { momentum: 0.9, ..RMSPROP }),
        ("rmsprop centered", RmsPropConfig { centered: true, ..RMSPROP }),
        ("rmsprop centered momentum", RmsPropConfig { centered: true, momentum: 0.9, ..RMSPROP }),
        (
            "rmsprop alpha eps weight decay",
            RmsPropConfig { alpha: 0.9, eps: 1e-4, weight_decay: 0.1, lr: 0.05, ..RMSPROP },
        ),
        ("rmsprop maximize centered", RmsPropConfig { maximize: true, centered: true, alpha: 0.8, ..RMSPROP }),
    ];
    for (name, c) in cases {
        check_trajectory(name, rmsprop(c), &rmsprop_reference(c));
    }
}

// ---------------------------------------------------------------------------------------
// Behaviour around the update itself.
// ---------------------------------------------------------------------------------------

type Builder = fn(Vec<Tensor>, f32) -> Box<dyn Optimizer>;

/// One configuration of each optimizer that would move a parameter even with a zero
/// gradient (weight decay, momentum): skipping must be real, not a zero update.
fn every_optimizer() -> Vec<(&'static str, Builder)> {
    vec![
        ("sgd", |p, lr| Box::new(Sgd::new(p, lr).momentum(0.9).weight_decay(0.1))),
        ("adam", |p, lr| Box::new(Adam::new(p, lr).weight_decay(0.1))),
        ("adamw", |p, lr| Box::new(AdamW::new(p, lr).weight_decay(0.1))),
        ("adagrad", |p, lr| Box::new(Adagrad::new(p, lr).lr_decay(0.1).weight_decay(0.1))),
        ("rmsprop", |p, lr| Box::new(RmsProp::new(p, lr).momentum(0.9).centered(true).weight_decay(0.1))),
    ]
}

/// A parameter the loss does not depend on has no gradient: PyTorch skips it (no weight
/// decay, no momentum, no step count), and so must every optimizer here. When it later
/// gets a gradient, its first update is that of a first step.
#[test]
fn parameters_without_gradients_are_untouched() {
    for dev in devices("parameters_without_gradients_are_untouched") {
        for (name, build) in every_optimizer() {
            let a = Tensor::from_slice(&[1.0f32, -1.0, 2.0], &[3], &dev).requires_grad();
            let b = Tensor::from_slice(&[0.5f32, -0.5, 4.0], &[3], &dev).requires_grad();
            let g = Tensor::from_slice(&[0.3f32, 0.6, -0.9], &[3], &dev);
            let mut opt = build(vec![a.clone(), b.clone()], 0.1);
            for _ in 0..3 {
                let grads = a.mul(&g).sum_all().backward();
                assert!(grads.get(&b).is_none());
                opt.step(&grads);
            }
            assert_ne!(a.to_vec::<f32>(), [1.0, -1.0, 2.0], "{name}: a must move");
            assert_eq!(b.to_vec::<f32>(), [0.5, -0.5, 4.0], "{name} on {}: b has no gradient", dev_name(&dev));

            // b's first real step equals a fresh optimizer's first step.
            opt.step(&b.mul(&g).sum_all().backward());
            let fresh = Tensor::from_slice(&[0.5f32, -0.5, 4.0], &[3], &dev).requires_grad();
            let mut fresh_opt = build(vec![fresh.clone()], 0.1);
            fresh_opt.step(&fresh.mul(&g).sum_all().backward());
            assert_eq!(
                b.to_vec::<f32>(),
                fresh.to_vec::<f32>(),
                "{name} on {}: b's step count advanced",
                dev_name(&dev)
            );
        }
    }
}

/// `set_lr` between steps changes the next step: SGD by hand, and for every optimizer,
/// building with one rate and setting another before the first step is the same as
/// building with the second.
#[test]
fn set_lr_takes_effect() {
    for dev in devices("set_lr_takes_effect") {
        let p = Tensor::from_slice(&[1.0f32], &[1], &dev).requires_grad();
        let mut opt = Sgd::new([p.clone()], 0.1);
        opt.step(&p.sum_all().backward()); // 1 - 0.1
        opt.set_lr(0.01);
        assert_eq!(opt.lr(), 0.01);
        opt.step(&p.sum_all().backward()); // 0.9 - 0.01
        assert!((p.to_vec::<f32>()[0] - 0.89).abs() < 1e-6, "{:?}", p.to_vec::<f32>());

        for (name, build) in every_optimizer() {
            let run = |lr: f32, set: Option<f32>| {
                let p = Tensor::from_slice(&THETA0, &[2, 3], &dev).requires_grad();
                let mut opt = build(vec![p.clone()], lr);
                for (t, g_t) in GRADS.iter().enumerate() {
                    if t == 2 {
                        if let Some(lr) = set {
                            opt.set_lr(lr);
                            assert_eq!(opt.lr(), lr);
                        }
                    }
                    let g = Tensor::from_slice(g_t, &[2, 3], &dev);
                    opt.step(&p.mul(&g).sum_all().backward());
                }
                p.to_vec::<f32>()
            };
            let changed = run(0.1, Some(0.02));
            assert_ne!(changed, run(0.1, None), "{name}: set_lr had no effect");
            assert_ne!(changed, run(0.02, None), "{name}: set_lr acted before it was called");
        }
        // Set before the first step: identical to constructing with that rate.
        for (name, build) in every_optimizer() {
            let run = |lr: f32, set: Option<f32>| {
                let p = Tensor::from_slice(&THETA0, &[2, 3], &dev).requires_grad();
                let mut opt = build(vec![p.clone()], lr);
                if let Some(lr) = set {
                    opt.set_lr(lr);
                }
                for g_t in &GRADS {
                    let g = Tensor::from_slice(g_t, &[2, 3], &dev);
                    opt.step(&p.mul(&g).sum_all().backward());
                }
                p.to_vec::<f32>()
            };
            assert_eq!(run(0.3, Some(0.05)), run(0.05, None), "{name} on {}", dev_name(&dev));
        }
    }
}

/// Every optimizer over a model's parameters drives a least-squares loss down: a
/// Linear(3, 1) fitting targets that a linear map produces exactly.
#[test]
fn optimizers_reduce_a_quadratic_loss() {
    let x_values: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 5.0).collect();
    let (w_true, b_true) = ([1.5f32, -2.0, 0.5], 0.3f32);
    let y_values: Vec<f32> =
        x_values.chunks(3).map(|r| r.iter().zip(&w_true).map(|(x, w)| x * w).sum::<f32>() + b_true).collect();
    let lrs = [("sgd", 0.1f32), ("adam", 0.05), ("adamw", 0.05), ("adagrad", 0.5), ("rmsprop", 0.01)];
    for dev in devices("optimizers_reduce_a_quadratic_loss") {
        let x = Tensor::from_slice(&x_values, &[8, 3], &dev);
        let y = Tensor::from_slice(&y_values, &[8, 1], &dev);
        for ((name, build), (_, lr)) in every_optimizer().into_iter().zip(lrs) {
            let model = nn::Linear::with_seed(3, 1, true, 42, &dev);
            let mut opt = build(model.parameters(), lr);
            let loss_of = |m: &nn::Linear| m.forward(&x).sub(&y).square().mean_all();
            let initial = loss_of(&model).item();
            for _ in 0..60 {
                let grads = loss_of(&model).backward();
                opt.step(&grads);
            }
            let last = loss_of(&model).item();
            assert!(
                last < 0.05 * initial,
                "{name} on {}: loss went from {initial} to {last} in 60 steps",
                dev_name(&dev)
            );
        }
    }
}

/// A gradient that shares the parameter's storage (here the seed of `backward_with` is
/// the parameter itself, so d/dp sum(p * p_detached) = p) is read before it is
/// overwritten, as PyTorch's `p.add_(p, alpha=-lr)` does: p - lr * p.
#[test]
fn a_gradient_aliasing_its_parameter_is_read_before_the_write() {
    for dev in devices("a_gradient_aliasing_its_parameter_is_read_before_the_write") {
        let p = Tensor::from_slice(&[1.0f32, -2.0, 4.0], &[3], &dev).requires_grad();
        let grads = p.backward_with(&p.detach());
        let mut opt = Sgd::new([p.clone()], 0.5);
        opt.step(&grads);
        assert_eq!(p.to_vec::<f32>(), [0.5, -1.0, 2.0], "on {}", dev_name(&dev));
    }
}

/// A parameter that is a contiguous prefix of a longer storage is updated over its own
/// elements only; the rest of the storage is not touched.
#[test]
fn a_parameter_viewing_a_prefix_of_its_storage() {
    for dev in devices("a_parameter_viewing_a_prefix_of_its_storage") {
        let base = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[6], &dev);
        let p = base.narrow(0, 0, 3).requires_grad();
        let mut opt = Sgd::new([p.clone()], 0.5).momentum(0.9);
        opt.step(&p.sum_all().backward());
        assert_eq!(p.to_vec::<f32>(), [0.5, 1.5, 2.5], "on {}", dev_name(&dev));
        assert_eq!(base.to_vec::<f32>(), [0.5, 1.5, 2.5, 4.0, 5.0, 6.0], "on {}", dev_name(&dev));
    }
}

/// Shapes of the parameters of the grouping tests: a tensor over two workgroups (the
/// second partial), one exactly a workgroup, odd sizes and a single element; seven
/// tensors make two full groups of three and a group of one.
const GROUP_SHAPES: [&[usize]; 7] = [&[300], &[7], &[1], &[13, 11], &[256], &[2, 3], &[5]];

/// Three steps of `opts` (built over `params`) on the loss `sum_i sum(p_i * d_i,t)`, whose
/// gradients are the directions `d_i,t`; the third parameter is left out of the loss at
/// the first step, so it has no gradient then and its step count lags the others'.
fn grouping_run(params: &[Tensor], opts: &mut [Box<dyn Optimizer>], dev: &wgrad::Device) -> Vec<Vec<f32>> {
    for t in 0..3u64 {
        let mut loss = Tensor::scalar(0.0, dev);
        for (i, p) in params.iter().enumerate() {
            if t == 0 && i == 2 {
                continue;
            }
            let d = common::uniform(p.shape(), -2.0, 2.0, 1000 + 10 * t + i as u64, dev);
            loss = loss.add(&p.mul(&d).sum_all());
        }
        let grads = loss.backward();
        for opt in opts.iter_mut() {
            opt.step(&grads);
        }
    }
    params.iter().map(|p| p.to_vec::<f32>()).collect()
}

fn grouping_params(dev: &wgrad::Device) -> Vec<Tensor> {
    GROUP_SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| common::uniform(s, -1.0, 1.0, 900 + i as u64, dev).requires_grad())
        .collect()
}

/// One optimizer over all the parameters (on a GPU, up to three per dispatch) leaves
/// every parameter bit for bit where one optimizer per parameter (one parameter per
/// dispatch, the single-tensor update) does, for every optimizer and on every device.
#[test]
fn grouped_updates_match_one_parameter_at_a_time() {
    for dev in devices("grouped_updates_match_one_parameter_at_a_time") {
        for (name, build) in every_optimizer() {
            let together = grouping_params(&dev);
            let grouped = grouping_run(&together, &mut [build(together.clone(), 0.05)], &dev);
            let apart = grouping_params(&dev);
            let mut singles: Vec<Box<dyn Optimizer>> = apart.iter().map(|p| build(vec![p.clone()], 0.05)).collect();
            let single = grouping_run(&apart, &mut singles, &dev);
            for (i, (g, s)) in grouped.iter().zip(&single).enumerate() {
                let (g, s): (Vec<u32>, Vec<u32>) =
                    (g.iter().map(|v| v.to_bits()).collect(), s.iter().map(|v| v.to_bits()).collect());
                assert_eq!(g, s, "{name} on {}: parameter {i} of shape {:?}", dev_name(&dev), GROUP_SHAPES[i]);
            }
        }
    }
}

/// Parameters of awkward sizes for the multi-tensor step: one element, fewer than a
/// workgroup, several workgroups with a partial last one (1000 = 3 * 256 + 232, 4099 =
/// 16 * 256 + 3), and more of them than one wide dispatch takes (12), so a step splits.
const AWKWARD_SHAPES: [&[usize]; 15] = [
    &[1],
    &[3],
    &[1000],
    &[4099],
    &[7, 5],
    &[257],
    &[2, 3, 4],
    &[1],
    &[255],
    &[13, 11],
    &[3],
    &[513],
    &[1],
    &[6],
    &[300],
];

/// Which of [`AWKWARD_SHAPES`] are frozen: the loss never depends on them, so they never
/// have a gradient and no step may touch them.
const FROZEN: [usize; 2] = [5, 11];

/// Four steps of `opts` over `params` on `sum_i sum(p_i * d_i,t)`, the frozen parameters
/// left out and parameter 2 also left out of the first step (its step count lags, so its
/// scalars differ from the others' and it takes another dispatch). Returns every
/// parameter after the last step.
fn awkward_run(params: &[Tensor], opts: &mut [Box<dyn Optimizer>], dev: &wgrad::Device) -> Vec<Vec<f32>> {
    for t in 0..4u64 {
        let mut loss = Tensor::scalar(0.0, dev);
        for (i, p) in params.iter().enumerate() {
            if FROZEN.contains(&i) || (t == 0 && i == 2) {
                continue;
            }
            let d = common::uniform(p.shape(), -2.0, 2.0, 3000 + 20 * t + i as u64, dev);
            loss = loss.add(&p.mul(&d).sum_all());
        }
        let grads = loss.backward();
        for opt in opts.iter_mut() {
            opt.step(&grads);
        }
    }
    params.iter().map(|p| p.to_vec::<f32>()).collect()
}

fn awkward_params(dev: &wgrad::Device) -> Vec<Tensor> {
    AWKWARD_SHAPES
        .iter()
        .enumerate()
        .map(|(i, s)| common::uniform(s, -1.0, 1.0, 2000 + i as u64, dev).requires_grad())
        .collect()
}

/// Every configuration of every optimizer the fused kernel has a flag for, each as a
/// builder of two parameter groups (the first at `lr`, the second at `2 lr` with other
/// options), and of one group at a given rate, for the one-parameter reference.
type GroupedBuilder = (
    &'static str,
    fn(Vec<Tensor>, Vec<Tensor>, f32) -> Box<dyn Optimizer>,
    fn(Vec<Tensor>, f32, bool) -> Box<dyn Optimizer>,
);

fn every_configuration() -> Vec<GroupedBuilder> {
    use wgrad::optim::ParamGroup;
    vec![
        (
            "sgd momentum dampening",
            |a, b, lr| {
                Box::new(
                    Sgd::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr).weight_decay(0.0)], lr)
                        .momentum(0.9)
                        .dampening(0.2)
                        .weight_decay(0.05),
                )
            },
            |p, lr, second| {
                Box::new(Sgd::new(p, lr).momentum(0.9).dampening(0.2).weight_decay(if second { 0.0 } else { 0.05 }))
            },
        ),
        (
            "sgd nesterov maximize",
            |a, b, lr| {
                Box::new(
                    Sgd::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr).momentum(0.5)], lr)
                        .momentum(0.9)
                        .nesterov(true)
                        .maximize(true),
                )
            },
            |p, lr, second| {
                Box::new(Sgd::new(p, lr).momentum(if second { 0.5 } else { 0.9 }).nesterov(true).maximize(true))
            },
        ),
        (
            "sgd plain",
            |a, b, lr| Box::new(Sgd::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr)], lr)),
            |p, lr, _| Box::new(Sgd::new(p, lr)),
        ),
        (
            "adam",
            |a, b, lr| {
                Box::new(
                    Adam::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr).betas(0.8, 0.99)], lr)
                        .weight_decay(0.1),
                )
            },
            |p, lr, second| {
                let adam = Adam::new(p, lr).weight_decay(0.1);
                Box::new(if second { adam.betas(0.8, 0.99) } else { adam })
            },
        ),
        (
            "adamw maximize",
            |a, b, lr| {
                Box::new(
                    AdamW::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr).weight_decay(0.0)], lr)
                        .weight_decay(0.1)
                        .maximize(true),
                )
            },
            |p, lr, second| Box::new(AdamW::new(p, lr).weight_decay(if second { 0.0 } else { 0.1 }).maximize(true)),
        ),
        (
            "rmsprop centered momentum",
            |a, b, lr| {
                Box::new(
                    RmsProp::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr).alpha(0.9)], lr)
                        .momentum(0.9)
                        .centered(true)
                        .weight_decay(0.01),
                )
            },
            |p, lr, second| {
                let r = RmsProp::new(p, lr).momentum(0.9).centered(true).weight_decay(0.01);
                Box::new(if second { r.alpha(0.9) } else { r })
            },
        ),
        (
            "rmsprop plain",
            |a, b, lr| Box::new(RmsProp::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr)], lr)),
            |p, lr, _| Box::new(RmsProp::new(p, lr)),
        ),
        (
            "adagrad",
            |a, b, lr| {
                Box::new(
                    Adagrad::with_groups([ParamGroup::new(a), ParamGroup::new(b).lr(2.0 * lr).eps(1e-8)], lr)
                        .lr_decay(0.1)
                        .weight_decay(0.1),
                )
            },
            |p, lr, second| {
                let a = Adagrad::new(p, lr).lr_decay(0.1).weight_decay(0.1);
                Box::new(if second { a.eps(1e-8) } else { a })
            },
        ),
    ]
}

/// The parameters of [`AWKWARD_SHAPES`] split into two groups, every other one in the
/// second (so the groups interleave in the model's order).
fn in_second_group(i: usize) -> bool {
    i % 2 == 1
}

/// The multi-tensor step (on a GPU, up to twelve parameters per dispatch, over mixed
/// groups, frozen parameters and awkward sizes) leaves every parameter bit for bit where
/// one optimizer per parameter (the one-parameter kernel) does, on every device; and the
/// GPU's parameters match the CPU reference's (bit for bit on a software adapter).
#[test]
fn the_multi_tensor_step_matches_the_per_parameter_step_on_awkward_sizes() {
    let lr = 0.05;
    let mut per_device: Vec<(String, Vec<Vec<Vec<f32>>>)> = Vec::new();
    for dev in devices("the_multi_tensor_step_matches_the_per_parameter_step_on_awkward_sizes") {
        let mut results = Vec::new();
        for (name, grouped, single) in every_configuration() {
            let together = awkward_params(&dev);
            let group = |second: bool| -> Vec<Tensor> {
                together
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| in_second_group(*i) == second)
                    .map(|(_, t)| t.clone())
                    .collect()
            };
            let opt = grouped(group(false), group(true), lr);
            let multi = awkward_run(&together, &mut [opt], &dev);
            let apart = awkward_params(&dev);
            let mut singles: Vec<Box<dyn Optimizer>> = apart
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let second = in_second_group(i);
                    single(vec![p.clone()], if second { 2.0 * lr } else { lr }, second)
                })
                .collect();
            let one_by_one = awkward_run(&apart, &mut singles, &dev);
            let start = awkward_params(&dev);
            for (i, (m, o)) in multi.iter().zip(&one_by_one).enumerate() {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                assert_eq!(
                    bits(m),
                    bits(o),
                    "{name} on {}: parameter {i} of shape {:?}",
                    dev_name(&dev),
                    AWKWARD_SHAPES[i]
                );
                if FROZEN.contains(&i) {
                    assert_eq!(bits(m), bits(&start[i].to_vec::<f32>()), "{name}: frozen parameter {i} moved");
                } else {
                    assert_ne!(bits(m), bits(&start[i].to_vec::<f32>()), "{name}: parameter {i} did not move");
                }
            }
            results.push(multi);
        }
        per_device.push((dev_name(&dev).to_string(), results));
    }
    // The GPU against the CPU reference: the same formulas in f32 in the same order. A
    // software adapter (lavapipe: LLVM's IEEE operations) rounds division and sqrt
    // correctly, as the CPU does, so the bits must agree there; a hardware GPU may round
    // them within WGSL's bounds, so within a relative tolerance.
    if let [(_, cpu), (gpu_name, gpu)] = &per_device[..] {
        let gpu_dev = common::gpu("the_multi_tensor_step_matches_the_per_parameter_step_on_awkward_sizes");
        let exact = gpu_dev.and_then(|d| d.gpu_context().map(|c| c.adapter.is_software())).unwrap_or(false);
        for (((name, ..), c), g) in every_configuration().iter().zip(cpu).zip(gpu) {
            for (i, (c, g)) in c.iter().zip(g).enumerate() {
                for (j, (x, y)) in c.iter().zip(g).enumerate() {
                    let agree = if exact { x.to_bits() == y.to_bits() } else { (x - y).abs() <= 1e-5 + 1e-5 * x.abs() };
                    assert!(agree, "{name}: parameter {i} element {j}: CPU {x}, {gpu_name} {y} (exact: {exact})");
                }
            }
        }
    }
}

/// Parameters the wide optimizer build updates in one dispatch, or the portable build's
/// three on an adapter with fewer than its 25 storage bindings.
fn segments_per_dispatch(dev: &wgrad::Device) -> u64 {
    let ctx = dev.gpu_context().expect("a GPU device");
    if ctx.limits.max_storage_buffers_per_shader_stage >= 25 {
        12
    } else {
        3
    }
}

/// On a GPU a step of one optimizer over seven parameters with equal step counts is one
/// dispatch (three on an adapter without the wide build's bindings), and reads nothing
/// back.
///
/// The device is shared with the other tests of this file, whose work can only add to the
/// counts: the check takes the least of a few tries.
#[test]
fn a_step_over_seven_parameters_is_one_dispatch() {
    let Some(dev) = common::gpu("a_step_over_seven_parameters_is_one_dispatch") else { return };
    let expected = 7u64.div_ceil(segments_per_dispatch(&dev));
    for (name, build) in every_optimizer() {
        let params = grouping_params(&dev);
        let mut opt = build(params.clone(), 0.05);
        let loss = |t: u64| {
            let mut loss = Tensor::scalar(0.0, &dev);
            for (i, p) in params.iter().enumerate() {
                loss = loss.add(&p.mul(&common::uniform(p.shape(), -2.0, 2.0, 50 + 10 * t + i as u64, &dev)).sum_all());
            }
            loss
        };
        // The first step also creates the state.
        opt.step(&loss(0).backward());
        let mut least = None;
        for t in 1..20 {
            let grads = loss(t).backward();
            dev.synchronize();
            let before = dev.stats().expect("a GPU device counts its work");
            opt.step(&grads);
            let work = dev.stats().unwrap() - before;
            let counts = (work.dispatches, work.read_backs);
            least = Some(least.map_or(counts, |l: (u64, u64)| l.min(counts)));
            if counts == (expected, 0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(least, Some((expected, 0)), "{name}: (dispatches, read-backs) of one step");
    }
}

/// Builds one optimizer over the given parameters.
type Build = fn(Vec<Tensor>) -> Box<dyn Optimizer>;

#[test]
fn an_optimizer_over_no_parameters_is_an_error_naming_it() {
    let dev = wgrad::Device::cpu();
    let model = ForgotParameters { fc: nn::Linear::new(3, 2, &dev) };
    assert!(!model.fc.parameters().is_empty());
    let builders: [(&str, Build); 5] = [
        ("Sgd", |p| Box::new(Sgd::new(p, 0.1))),
        ("Adam", |p| Box::new(Adam::new(p, 0.1))),
        ("AdamW", |p| Box::new(AdamW::new(p, 0.1))),
        ("RmsProp", |p| Box::new(RmsProp::new(p, 0.1))),
        ("Adagrad", |p| Box::new(Adagrad::new(p, 0.1))),
    ];
    for (name, build) in builders {
        let params = model.parameters();
        let err =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || build(params))).err().unwrap_or_else(|| {
                panic!("{name} accepted an empty parameter list");
            });
        let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.starts_with(&format!("{name}: the parameter list is empty")), "{message}");
        assert!(message.contains("named_parameters"), "{message}");
    }
}
