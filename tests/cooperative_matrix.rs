//! The f16 matmul on cooperative matrices (shaders/half_matmul_coop.wgsl) against the f32
//! matmul kernel and the CPU reference, on shapes chosen to break its 32x32 workgroup
//! blocks and its staging: edges in every direction, transposed and offset views,
//! broadcast batches, a long inner dimension, subnormal and extreme f16 values.
//!
//! The device is opened with `WGRAD_COOPERATIVE_MATRIX=1`, so a software adapter that
//! offers cooperative matrices (Mesa's lavapipe from 25.1 on) takes the path too. Where the
//! adapter has none (Mesa 22.3's lavapipe, as on CI), the test says so and checks only that
//! the device reports no cooperative tile; `WGRAD_REQUIRE_COOPERATIVE_MATRIX=1` turns that
//! into a failure, for runs meant to exercise the path.

use wgrad::testing::{compare, gpu_test_device, Tolerance};
use wgrad::{DType, Device, Tensor};

/// f16 products are exact in f32 and the sums run in f32, but in the hardware's order and,
/// on some matrix units, with truncated rather than rounded alignment: the difference from
/// another f32 summation of the same products grows like k ulps of the largest partial sum.
fn tolerance(k: usize) -> Tolerance {
    Tolerance::Normalized { tol: 1e-6 * (k as f32).sqrt().max(1.0) * 4.0 }
}

fn half_randn(shape: &[usize], seed: u64, dev: &Device) -> Tensor {
    Tensor::randn(shape, seed, &Device::cpu()).half().to_device(dev)
}

/// `(a, b)` builders and a name: each pair is multiplied as `a.half_matmul(b)`.
type Case = (&'static str, usize, fn(&Device) -> (Tensor, Tensor));

const CASES: &[Case] = &[
    ("[1, 1] x [1, 1]", 1, |d| (half_randn(&[1, 1], 1, d), half_randn(&[1, 1], 2, d))),
    ("[32, 32] x [32, 32], one block", 32, |d| (half_randn(&[32, 32], 3, d), half_randn(&[32, 32], 4, d))),
    ("[33, 31] x [31, 65], edges in m, k and n", 31, |d| (half_randn(&[33, 31], 5, d), half_randn(&[31, 65], 6, d))),
    ("[7, 301] x [301, 3], a long k", 301, |d| (half_randn(&[7, 301], 7, d), half_randn(&[301, 3], 8, d))),
    ("[96, 64] x [64, 160], several blocks", 64, |d| (half_randn(&[96, 64], 9, d), half_randn(&[64, 160], 10, d))),
    ("transposed [45, 37]^T x transposed [29, 45]^T", 45, |d| {
        (half_randn(&[45, 37], 11, d).t(), half_randn(&[29, 45], 12, d).t())
    }),
    ("narrowed (offset) views", 40, |d| {
        (half_randn(&[50, 41], 13, d).narrow(0, 3, 35).narrow(1, 1, 40), half_randn(&[40, 70], 14, d).narrow(1, 5, 33))
    }),
    ("broadcast batch [2, 1, 17, 19] x [3, 19, 23]", 19, |d| {
        (half_randn(&[2, 1, 17, 19], 15, d), half_randn(&[3, 19, 23], 16, d))
    }),
];

#[test]
fn half_matmul_on_cooperative_matrices_matches_the_f32_kernel_and_the_cpu() {
    // Before any device opens in this test binary, which holds this one test.
    std::env::set_var("WGRAD_COOPERATIVE_MATRIX", "1");
    let Some(gpu) = gpu_test_device() else { return };
    let ctx = gpu.gpu_context().expect("a GPU device");
    let Some(tile) = ctx.cooperative_f16_tile else {
        let required = std::env::var("WGRAD_REQUIRE_COOPERATIVE_MATRIX").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "WGRAD_REQUIRE_COOPERATIVE_MATRIX=1, but {} offers no cooperative f16 matrices with an f32 accumulator",
            gpu.info()
        );
        eprintln!("{}: no cooperative f16 matrices, the portable f16 matmul is used (tested in half.rs)", gpu.info());
        return;
    };
    eprintln!("cooperative f16 matmul on {tile}x{tile} tiles: {}", gpu.info());
    let cpu = Device::cpu();
    for &(name, k, build) in CASES {
        let (a, b) = build(&gpu);
        let coop = a.half_matmul(&b, DType::F32);
        let f32_kernel = a.float().matmul(&b.float());
        compare(&coop.to_vec::<f32>(), &f32_kernel.to_vec::<f32>(), tolerance(k))
            .unwrap_or_else(|e| panic!("{name}: cooperative f16 matmul vs the f32 kernel: {e}"));
        let (ca, cb) = build(&cpu);
        let reference = ca.half_matmul(&cb, DType::F32);
        assert_eq!(coop.shape(), reference.shape(), "{name}: shapes");
        compare(&coop.to_vec::<f32>(), &reference.to_vec::<f32>(), tolerance(k))
            .unwrap_or_else(|e| panic!("{name}: cooperative f16 matmul vs the CPU: {e}"));
        // The f16 result is the f32 one rounded once.
        let rounded = a.half_matmul(&b, DType::F16).float().to_vec::<f32>();
        let want = reference.half().float().to_vec::<f32>();
        compare(&rounded, &want, Tolerance::Elementwise { atol: 1e-6, rtol: 2e-3 })
            .unwrap_or_else(|e| panic!("{name} to f16: {e}"));
    }

    // Values at the ends of f16's range: subnormals (2^-24 and 1023 * 2^-24), the largest
    // finite value, signed zeros. Products stay finite and exact; one row of A is chosen
    // so its products with B sum exactly.
    let specials = [6.0e-8f32, 6.097e-5, -6.0e-8, 65504.0, -0.0, 0.0, 1.0, -2.0];
    let a_vals: Vec<f32> = (0..8 * 8).map(|i| specials[i % 8] * if i / 8 % 2 == 0 { 1.0 } else { 1e-4 }).collect();
    let b_vals: Vec<f32> = (0..8 * 8).map(|i| specials[(i * 3 + 1) % 8] * 1e-4).collect();
    let a = Tensor::from_slice(&a_vals, &[8, 8], &cpu).half();
    let b = Tensor::from_slice(&b_vals, &[8, 8], &cpu).half();
    let want = a.half_matmul(&b, DType::F32).to_vec::<f32>();
    let got = a.to_device(&gpu).half_matmul(&b.to_device(&gpu), DType::F32).to_vec::<f32>();
    compare(&got, &want, tolerance(8)).unwrap_or_else(|e| panic!("f16 range ends: {e}"));
}
