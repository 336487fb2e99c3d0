//! Matmul against the CPU reference on shapes chosen around the kernels' tiles (64x64 with
//! a K step of 16, 128x128 with a K step of 8, the 8x64 and 4x128 blocks of the kernels
//! without workgroup memory): 1x1x1, primes, exact tiles, one past a tile, a long K with
//! M = N = 1, and K = 0; 1-D operands; broadcast batch dimensions; transposed and strided
//! operands taken without a copy. Every tile configuration is forced in turn, and the
//! tuning pass is checked to choose one that can read the operands. One case is checked
//! against a triple loop written here.
//!
//! `Tensor::linear`, the fused bias + activation epilogue, is checked against the composed
//! matmul, add and activation on every device and configuration, forward and gradient.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::{dev_name, devices, gpu, randn, MATMUL_TOL};
use wgrad::gpu::tuning::{matmul_config, tuned_matmul_configs, with_matmul_config, MATMUL_CONFIGS};
use wgrad::nn::{Forward, Linear, Module};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{Activation, Device, Tensor};

/// Fused against composed linear: the product's rounding (the fused bias add is one more
/// rounding in a different place), then activations whose slope is at most 1.
const LINEAR_TOL: Tolerance = Tolerance::Normalized { tol: 1e-6 };

type Build = fn(&Device) -> [Tensor; 2];

const CASES: &[(&str, Build)] = &[
    ("1x1 by 1x1", |d| [randn(&[1, 1], 1, d), randn(&[1, 1], 2, d)]),
    ("5x7 by 7x11", |d| [randn(&[5, 7], 3, d), randn(&[7, 11], 4, d)]),
    ("45x65 by 65x13", |d| [randn(&[45, 65], 5, d), randn(&[65, 13], 6, d)]),
    ("64x64 by 64x64 (one exact tile, four K steps)", |d| [randn(&[64, 64], 7, d), randn(&[64, 64], 8, d)]),
    ("65x129 by 129x67 (a tile and one more each way)", |d| [randn(&[65, 129], 9, d), randn(&[129, 67], 10, d)]),
    ("1x300 by 300x1 (a long K)", |d| [randn(&[1, 300], 11, d), randn(&[300, 1], 12, d)]),
    ("3x17 by 17x130 (K one past a step, N past two tiles)", |d| [randn(&[3, 17], 13, d), randn(&[17, 130], 14, d)]),
    ("1-D [7] by 2-D [7, 11]", |d| [randn(&[7], 15, d), randn(&[7, 11], 16, d)]),
    ("2-D [5, 7] by 1-D [7]", |d| [randn(&[5, 7], 17, d), randn(&[7], 18, d)]),
    ("1-D [13] by 1-D [13] (a dot product)", |d| [randn(&[13], 19, d), randn(&[13], 20, d)]),
    ("batched [3, 5, 7] by [3, 7, 11]", |d| [randn(&[3, 5, 7], 21, d), randn(&[3, 7, 11], 22, d)]),
    ("broadcast batch [2, 1, 5, 7] by [3, 7, 11]", |d| [randn(&[2, 1, 5, 7], 23, d), randn(&[3, 7, 11], 24, d)]),
    ("broadcast batch [4, 5, 7] by 2-D [7, 3]", |d| [randn(&[4, 5, 7], 25, d), randn(&[7, 3], 26, d)]),
    ("2-D [5, 7] by batched [2, 3, 7, 11]", |d| [randn(&[5, 7], 27, d), randn(&[2, 3, 7, 11], 28, d)]),
    ("batched [2, 3, 7] by 1-D [7]", |d| [randn(&[2, 3, 7], 29, d), randn(&[7], 30, d)]),
    ("1-D [7] by batched [2, 7, 3]", |d| [randn(&[7], 31, d), randn(&[2, 7, 3], 32, d)]),
    ("lhs transposed: [7, 5].t() by [7, 11]", |d| [randn(&[7, 5], 33, d).t(), randn(&[7, 11], 34, d)]),
    ("rhs transposed: [5, 7] by [11, 7].t()", |d| [randn(&[5, 7], 35, d), randn(&[11, 7], 36, d).t()]),
    ("both transposed: [65, 45].t() by [13, 65].t()", |d| [randn(&[65, 45], 37, d).t(), randn(&[13, 65], 38, d).t()]),
    ("batched transposed [3, 7, 5].t() by [3, 11, 7].t()", |d| {
        [randn(&[3, 7, 5], 39, d).t(), randn(&[3, 11, 7], 40, d).t()]
    }),
    ("narrowed operands with offsets", |d| {
        [
            randn(&[9, 20], 41, d).narrow(0, 2, 5).narrow(1, 3, 7),
            randn(&[10, 12], 42, d).narrow(0, 1, 7).narrow(1, 1, 11),
        ]
    }),
    ("permuted batch [5, 2, 7].permute([1, 0, 2]) by [2, 7, 3]", |d| {
        [randn(&[5, 2, 7], 43, d).permute(&[1, 0, 2]), randn(&[2, 7, 3], 44, d)]
    }),
    ("stride-0 rows: [7] broadcast to [5, 7] by [7, 3]", |d| {
        [randn(&[7], 45, d).broadcast_to(&[5, 7]), randn(&[7, 3], 46, d)]
    }),
    ("K = 0: [5, 0] by [0, 7]", |d| [randn(&[5, 0], 47, d), randn(&[0, 7], 48, d)]),
    ("batched K = 0: [2, 3, 0] by [0, 4]", |d| [randn(&[2, 3, 0], 49, d), randn(&[0, 4], 50, d)]),
    ("M = 0: [0, 7] by [7, 5]", |d| [randn(&[0, 7], 51, d), randn(&[7, 5], 52, d)]),
    ("N = 0: [5, 7] by [7, 0]", |d| [randn(&[5, 7], 53, d), randn(&[7, 0], 54, d)]),
    ("empty batch: [0, 5, 7] by [7, 3]", |d| [randn(&[0, 5, 7], 55, d), randn(&[7, 3], 56, d)]),
];

#[test]
fn matmul_on_shapes_around_the_tiles() {
    let Some(gpu) = gpu("matmul_on_shapes_around_the_tiles") else { return };
    let _serial = gpu_serial();
    for &(name, build) in CASES {
        cross_check(&format!("matmul {name}"), &gpu, MATMUL_TOL, |d| build(d).to_vec(), |x| x[0].matmul(&x[1]));
    }
}

#[test]
fn result_shapes_follow_torch_matmul() {
    let d = Device::cpu();
    let shape = |a: &[usize], b: &[usize]| Tensor::zeros(a, &d).matmul(&Tensor::zeros(b, &d)).shape().to_vec();
    assert_eq!(shape(&[7], &[7, 11]), vec![11]);
    assert_eq!(shape(&[5, 7], &[7]), vec![5]);
    assert_eq!(shape(&[13], &[13]), Vec::<usize>::new());
    assert_eq!(shape(&[2, 1, 5, 7], &[3, 7, 11]), vec![2, 3, 5, 11]);
    assert_eq!(shape(&[2, 3, 7], &[7]), vec![2, 3]);
    assert_eq!(shape(&[7], &[2, 7, 3]), vec![2, 3]);
    assert_eq!(shape(&[5, 0], &[0, 7]), vec![5, 7]);
}

/// Serialises this file's GPU tests, so that one of them can count buffer allocations.
fn gpu_serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[test]
fn transposed_operands_are_multiplied_without_a_copy() {
    let Some(gpu) = gpu("transposed_operands_are_multiplied_without_a_copy") else { return };
    let _serial = gpu_serial();
    let (a, b) = (randn(&[7, 5], 1, &gpu).t(), randn(&[3, 11, 7], 2, &gpu).permute(&[0, 2, 1]));
    assert!(!a.is_contiguous() && !b.is_contiguous());
    let before = gpu.pool_stats().unwrap();
    let c = a.matmul(&b);
    let after = gpu.pool_stats().unwrap();
    let buffers = |s: wgrad::PoolStats| s.buffers_created + s.buffers_reused;
    // One buffer for the product; a contiguous copy of an operand would take another.
    assert_eq!(buffers(after) - buffers(before), 1, "matmul of transposed views allocated {before:?} -> {after:?}");
    let cpu = Device::cpu();
    let want: Vec<f32> = a.to_device(&cpu).matmul(&b.to_device(&cpu)).to_vec();
    compare(&c.to_vec::<f32>(), &want, MATMUL_TOL).unwrap_or_else(|e| panic!("{e}"));
}

/// `[.., M, K] x [.., K, N]` by the definition, in f64, on contiguous row-major data.
fn triple_loop(a: &[f32], b: &[f32], batch: usize, m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; batch * m * n];
    for p in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for l in 0..k {
                    acc += a[p * m * k + i * k + l] as f64 * b[p * k * n + l * n + j] as f64;
                }
                out[p * m * n + i * n + j] = acc as f32;
            }
        }
    }
    out
}

#[test]
fn matmul_matches_a_triple_loop() {
    let (batch, m, k, n) = (2, 65, 129, 67);
    let a: Vec<f32> = Tensor::randn(&[batch, m, k], 60, &Device::cpu()).to_vec();
    let b: Vec<f32> = Tensor::randn(&[batch, k, n], 61, &Device::cpu()).to_vec();
    let want = triple_loop(&a, &b, batch, m, k, n);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu("matmul_matches_a_triple_loop"));
    let _serial = gpu_serial();
    for dev in devices {
        let ta = Tensor::from_slice(&a, &[batch, m, k], &dev);
        let tb = Tensor::from_slice(&b, &[batch, k, n], &dev);
        let got: Vec<f32> = ta.matmul(&tb).to_vec();
        if let Err(e) = compare(&got, &want, MATMUL_TOL) {
            panic!(
                "matmul on {} disagrees with the triple loop: {e}",
                if dev.is_cpu() { "the CPU" } else { "the GPU" }
            );
        }
        // The same product through transposed views of the transposed data.
        let at: Vec<f32> = ta.t().contiguous().to_vec();
        let bt: Vec<f32> = tb.t().contiguous().to_vec();
        let via_views = Tensor::from_slice(&at, &[batch, k, m], &dev)
            .t()
            .matmul(&Tensor::from_slice(&bt, &[batch, n, k], &dev).t());
        compare(&via_views.to_vec::<f32>(), &want, MATMUL_TOL).unwrap_or_else(|e| panic!("via transposed views: {e}"));
    }
}

#[test]
fn small_integer_products_are_exact() {
    // Products and sums of small integers are exact in f32 in any order.
    let a: Vec<f32> = (0..5 * 17).map(|i| (i % 7) as f32 - 3.0).collect();
    let b: Vec<f32> = (0..17 * 66).map(|i| (i % 5) as f32 - 2.0).collect();
    let want = triple_loop(&a, &b, 1, 5, 17, 66);
    let mut devices = vec![Device::cpu()];
    devices.extend(gpu("small_integer_products_are_exact"));
    let _serial = gpu_serial();
    for dev in devices {
        let got: Vec<f32> =
            Tensor::from_slice(&a, &[5, 17], &dev).matmul(&Tensor::from_slice(&b, &[17, 66], &dev)).to_vec();
        compare(&got, &want, Tolerance::Exact).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_batch_spanning_several_workgroup_rows_of_tiles() {
    let Some(gpu) = gpu("a_batch_spanning_several_workgroup_rows_of_tiles") else { return };
    let _serial = gpu_serial();
    // Six batches of 130x70 by 70x129: 3x3 tiles each, K in five steps (the last partial).
    cross_check(
        "matmul [6, 130, 70] x [70, 129]",
        &gpu,
        MATMUL_TOL,
        |d| vec![randn(&[6, 130, 70], 70, d), randn(&[70, 129], 71, d)],
        |x| x[0].matmul(&x[1]),
    );
}

#[test]
#[should_panic(expected = "matmul: lhs [32, 784] and rhs [128, 10] disagree on the inner dimension (784 vs 128)")]
fn inner_dimension_mismatch_names_both_shapes() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[32, 784], &d).matmul(&Tensor::zeros(&[128, 10], &d));
}

#[test]
#[should_panic(expected = "matmul: lhs [7] and rhs [5] disagree on the inner dimension (7 vs 5)")]
fn inner_dimension_mismatch_of_vectors() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[7], &d).matmul(&Tensor::zeros(&[5], &d));
}

#[test]
#[should_panic(expected = "matmul: batch dimensions of [2, 5, 7] and [3, 7, 4] cannot be broadcast together")]
fn batch_mismatch_names_both_shapes() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[2, 5, 7], &d).matmul(&Tensor::zeros(&[3, 7, 4], &d));
}

#[test]
#[should_panic(expected = "matmul: both operands need at least 1 dimension, got [] and [3]")]
fn scalar_operand_panics() {
    let d = Device::cpu();
    let _ = Tensor::scalar(1.0, &d).matmul(&Tensor::zeros(&[3], &d));
}

#[test]
fn a_batch_larger_than_one_dispatch_allows() {
    let Some(gpu) = gpu("a_batch_larger_than_one_dispatch_allows") else { return };
    let _serial = gpu_serial();
    let ctx = gpu.gpu_context().unwrap();
    if ctx.adapter.is_software() {
        // 65,540 workgroups with two barriers each take over 20 s on lavapipe.
        eprintln!("a_batch_larger_than_one_dispatch_allows: skipped on the software adapter (too slow)");
        return;
    }
    // The batch walks the z dimension of the grid, at most 65,535 per dispatch: 65,540
    // products of [1, 3] by [3, 2] take two dispatches, the second starting at batch 65,535.
    let batch = ctx.limits.max_compute_workgroups_per_dimension as usize + 5;
    cross_check(
        "matmul with a batch over the z limit",
        &gpu,
        MATMUL_TOL,
        |d| vec![randn(&[batch, 1, 3], 80, d), randn(&[batch, 3, 2], 81, d)],
        |x| x[0].matmul(&x[1]),
    );
}

// ---- tile configurations and the tuning pass ----

/// Shapes the vec4 configurations accept (row-major, K and N multiples of 4) chosen around
/// their tiles: 4x128 blocks of `vec4_rows4`, 128x128 tiles and K steps of 8 of
/// `vec4_tile128`, 64x64 tiles and K steps of 16 of `vec4_tile64`.
const ALIGNED_CASES: &[(&str, Build)] = &[
    ("1x4 by 4x4", |d| [randn(&[1, 4], 101, d), randn(&[4, 4], 102, d)]),
    ("5x8 by 8x12 (M not a multiple of 4)", |d| [randn(&[5, 8], 103, d), randn(&[8, 12], 104, d)]),
    ("129x132 by 132x260 (a tile and one more, K past a step, N past two tiles)", |d| {
        [randn(&[129, 132], 105, d), randn(&[132, 260], 106, d)]
    }),
    ("3x4 by 4x516 (N past four column blocks)", |d| [randn(&[3, 4], 107, d), randn(&[4, 516], 108, d)]),
    ("batched [3, 7, 12] by [3, 12, 20]", |d| [randn(&[3, 7, 12], 109, d), randn(&[3, 12, 20], 110, d)]),
    ("broadcast batch [2, 1, 5, 8] by [3, 8, 4]", |d| [randn(&[2, 1, 5, 8], 111, d), randn(&[3, 8, 4], 112, d)]),
    ("narrowed rows at offsets that are multiples of 4", |d| {
        [randn(&[9, 16], 113, d).narrow(0, 2, 5).narrow(1, 4, 8), randn(&[12, 20], 114, d).narrow(0, 4, 8)]
    }),
];

#[test]
fn every_tile_configuration_matches_the_cpu() {
    let Some(gpu) = gpu("every_tile_configuration_matches_the_cpu") else { return };
    let _serial = gpu_serial();
    for config in MATMUL_CONFIGS {
        with_matmul_config(config.name, || {
            for &(name, build) in CASES.iter().chain(ALIGNED_CASES) {
                cross_check(
                    &format!("matmul {name} forced to {}", config.name),
                    &gpu,
                    MATMUL_TOL,
                    |d| build(d).to_vec(),
                    |x| x[0].matmul(&x[1]),
                );
            }
        });
    }
}

#[test]
fn every_tile_configuration_spans_several_dispatch_rows_of_tiles() {
    let Some(gpu) = gpu("every_tile_configuration_spans_several_dispatch_rows_of_tiles") else { return };
    let _serial = gpu_serial();
    // 300 rows by 300 columns: several tiles of every configuration in each direction, the
    // last of each partial, and a partial last K step (K = 36).
    for config in MATMUL_CONFIGS {
        with_matmul_config(config.name, || {
            cross_check(
                &format!("matmul [2, 300, 36] x [36, 300] forced to {}", config.name),
                &gpu,
                MATMUL_TOL,
                |d| vec![randn(&[2, 300, 36], 120, d), randn(&[36, 300], 121, d)],
                |x| x[0].matmul(&x[1]),
            );
        });
    }
}

#[test]
fn the_tuning_pass_picks_a_configuration_that_fits_each_shape_class() {
    let Some(gpu) = gpu("the_tuning_pass_picks_a_configuration_that_fits_each_shape_class") else { return };
    let _serial = gpu_serial();
    if std::env::var_os("WGRAD_MATMUL_CONFIG").is_some() {
        eprintln!("the tuning pass is off while WGRAD_MATMUL_CONFIG forces a configuration");
        return;
    }
    let ctx = gpu.gpu_context().unwrap();
    // An aligned product and a transposed one: two shape classes, each tuned on first use.
    let cases: [(&str, Build); 2] = [
        ("aligned [33, 64] x [64, 40]", |d| [randn(&[33, 64], 130, d), randn(&[64, 40], 131, d)]),
        ("transposed [21, 33].t() x [21, 9]", |d| [randn(&[21, 33], 132, d).t(), randn(&[21, 9], 133, d)]),
    ];
    for (name, build) in cases {
        cross_check(&format!("tuned matmul {name}"), &gpu, MATMUL_TOL, |d| build(d).to_vec(), |x| x[0].matmul(&x[1]));
    }
    let tuned = tuned_matmul_configs(ctx);
    let find = |class_part: &str| {
        tuned
            .iter()
            .find(|(class, _)| class.contains(class_part))
            .unwrap_or_else(|| panic!("no tuned configuration for a class with '{class_part}': {tuned:?}"))
    };
    let (_, aligned_choice) = find("m<=64 n<=64 k<=64 aligned a:row b:row");
    let (_, strided_choice) = find("m<=64 n<=16 k<=64 unaligned a:strided b:row");
    assert!(MATMUL_CONFIGS.iter().any(|c| c.name == *aligned_choice), "unknown choice {aligned_choice}");
    assert!(!matmul_config(strided_choice).vec4, "a vec4 configuration was chosen for strided operands");
}

#[test]
#[should_panic(expected = "matmul: no tile configuration named 'tile1024'")]
fn an_unknown_configuration_name_is_refused() {
    with_matmul_config("tile1024", || ());
}

// ---- linear: the fused bias + activation epilogue ----

const ACTIVATIONS: [Activation; 4] = [Activation::None, Activation::Relu, Activation::Sigmoid, Activation::Tanh];

/// `activation(x W^T + b)` composed from matmul, add and the elementwise activation.
fn composed_linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, activation: Activation) -> Tensor {
    let mut y = x.matmul(&w.t());
    if let Some(b) = b {
        y = y.add(b);
    }
    match activation {
        Activation::None => y,
        Activation::Relu => y.relu(),
        Activation::Sigmoid => y.sigmoid(),
        Activation::Tanh => y.tanh(),
    }
}

type LinearBuild = fn(&Device) -> (Tensor, Tensor, Tensor);

/// (x, weight, bias): odd sizes, an aligned one spanning several tiles, more than two
/// dimensions, a 1-D input, a transposed input, a single feature, and no input features.
const LINEAR_CASES: &[(&str, LinearBuild)] = &[
    ("x [5, 7], W [11, 7]", |d| (randn(&[5, 7], 140, d), randn(&[11, 7], 141, d), randn(&[11], 142, d))),
    ("x [1, 1], W [1, 1]", |d| (randn(&[1, 1], 143, d), randn(&[1, 1], 144, d), randn(&[1], 145, d))),
    ("x [130, 36], W [260, 36] (aligned)", |d| {
        (randn(&[130, 36], 146, d), randn(&[260, 36], 147, d), randn(&[260], 148, d))
    }),
    ("x [2, 3, 8], W [12, 8]", |d| (randn(&[2, 3, 8], 149, d), randn(&[12, 8], 150, d), randn(&[12], 151, d))),
    ("x [7] (1-D), W [3, 7]", |d| (randn(&[7], 152, d), randn(&[3, 7], 153, d), randn(&[3], 154, d))),
    ("x [9, 5].t(), W [4, 9]", |d| (randn(&[9, 5], 155, d).t(), randn(&[4, 9], 156, d), randn(&[4], 157, d))),
    ("bias a narrowed view", |d| {
        (randn(&[6, 5], 158, d), randn(&[13, 5], 159, d), randn(&[20], 160, d).narrow(0, 3, 13))
    }),
    ("x [4, 0], W [3, 0] (no input features)", |d| {
        (randn(&[4, 0], 161, d), randn(&[3, 0], 162, d), randn(&[3], 163, d))
    }),
];

/// Fused linear equals the composed ops on the same device, on every device, with and
/// without a bias, for every activation, and on the GPU for every tile configuration.
#[test]
fn linear_equals_matmul_add_activation() {
    let mut runs: Vec<(String, Device, Option<&'static str>)> = vec![("cpu".into(), Device::cpu(), None)];
    if let Some(gpu) = gpu("linear_equals_matmul_add_activation") {
        for config in MATMUL_CONFIGS {
            runs.push((format!("gpu {}", config.name), gpu.clone(), Some(config.name)));
        }
    }
    let _serial = gpu_serial();
    for (label, dev, config) in &runs {
        let check = || {
            for &(name, build) in LINEAR_CASES {
                let (x, w, b) = build(dev);
                for activation in ACTIVATIONS {
                    for bias in [Some(&b), None] {
                        let what = format!("linear {name}, {activation:?}, bias {} on {label}", bias.is_some());
                        let got = x.linear(&w, bias, activation);
                        let want = composed_linear(&x, &w, bias, activation);
                        assert_eq!(got.shape(), want.shape(), "{what}: shape");
                        if let Err(e) = wgrad::testing::check_poison(&got) {
                            panic!("{what}: {e}");
                        }
                        compare(&got.to_vec::<f32>(), &want.to_vec::<f32>(), LINEAR_TOL)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                    }
                }
            }
        };
        match config {
            Some(name) => with_matmul_config(name, check),
            None => check(),
        }
    }
}

/// The fused product adds the bias before the activation, and ReLU passes NaN through, as
/// the composed ops do: values small enough that every sum is exact.
#[test]
fn linear_applies_bias_then_activation_exactly() {
    for dev in devices("linear_applies_bias_then_activation_exactly") {
        let x = Tensor::from_slice(&[1.0f32, 2.0, -1.0, 0.5, f32::NAN, 1.0], &[3, 2], &dev);
        let w = Tensor::from_slice(&[1.0f32, 1.0, 2.0, -1.0], &[2, 2], &dev);
        let b = Tensor::from_slice(&[-3.5f32, 0.25], &[2], &dev);
        let got: Vec<f32> = x.linear(&w, Some(&b), Activation::Relu).to_vec();
        // Row 0: [3 - 3.5, 0 + 0.25]; row 1: [-0.5 - 3.5, -2.5 + 0.25]; row 2: NaN in both.
        assert_eq!(got[..4], [0.0, 0.25, 0.0, 0.0], "on {}", dev_name(&dev));
        assert!(got[4].is_nan() && got[5].is_nan(), "relu must pass NaN through on {}: {got:?}", dev_name(&dev));
    }
}

/// A gradcheck input: row-major values and a shape.
type GradInput = (Vec<f32>, Vec<usize>);

#[test]
fn linear_gradients_pass_gradcheck() {
    // The suite's tolerance of tests/autograd.rs.
    let tol = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };
    let input = |shape: &[usize], seed: u64| -> GradInput {
        (Tensor::randn(shape, seed, &Device::cpu()).to_vec(), shape.to_vec())
    };
    let mut failures = Vec::new();
    for dev in devices("linear_gradients_pass_gradcheck") {
        let _serial = gpu_serial();
        for activation in ACTIVATIONS {
            let cases: [(&str, Vec<GradInput>); 3] = [
                ("x [3, 5], W [4, 5], b [4]", vec![input(&[3, 5], 170), input(&[4, 5], 171), input(&[4], 172)]),
                ("x [2, 2, 3], W [5, 3], b [5]", vec![input(&[2, 2, 3], 173), input(&[5, 3], 174), input(&[5], 175)]),
                ("x [3, 4], W [2, 4], no bias", vec![input(&[3, 4], 176), input(&[2, 4], 177)]),
            ];
            for (name, inputs) in cases {
                let what = format!("linear {name} {activation:?} on {}", dev_name(&dev));
                let result = gradcheck(&what, &dev, &inputs, tol, |t| t[0].linear(&t[1], t.get(2), activation));
                if let Err(e) = result {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} gradcheck failure(s):\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn linear_layer_with_activation_is_linear_then_activation() {
    for dev in devices("linear_layer_with_activation_is_linear_then_activation") {
        let plain = Linear::with_seed(6, 5, true, 7, &dev);
        let fused = Linear::with_seed(6, 5, true, 7, &dev).with_activation(Activation::Relu);
        assert_eq!(fused.named_parameters().len(), 2);
        assert!(fused.describe().contains("activation=Relu"), "{}", fused.describe());
        let x = randn(&[4, 6], 180, &dev);
        let want: Vec<f32> = plain.forward(&x).relu().to_vec();
        compare(&fused.forward(&x).to_vec::<f32>(), &want, LINEAR_TOL).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
#[should_panic(expected = "linear: input [3, 4] does not end in the 5 features of weight [2, 5]")]
fn linear_feature_mismatch_names_the_shapes() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[3, 4], &d).linear(&Tensor::zeros(&[2, 5], &d), None, Activation::None);
}

#[test]
#[should_panic(expected = "linear: bias [3] does not match weight [2, 5] (want [2])")]
fn linear_bias_mismatch_names_the_shapes() {
    let d = Device::cpu();
    let _ = Tensor::zeros(&[3, 5], &d).linear(
        &Tensor::zeros(&[2, 5], &d),
        Some(&Tensor::zeros(&[3], &d)),
        Activation::Relu,
    );
}
