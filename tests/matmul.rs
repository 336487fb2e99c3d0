//! Matmul against the CPU reference on shapes chosen around the kernel's 64x64 tiles and
//! K step of 16: 1x1x1, primes, exact tiles, one past a tile, a long K with M = N = 1, and
//! K = 0; 1-D operands; broadcast batch dimensions; transposed and strided operands taken
//! without a copy. One case is checked against a triple loop written here.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::{gpu, randn, MATMUL_TOL};
use wgrad::testing::{compare, cross_check, Tolerance};
use wgrad::{Device, Tensor};

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
