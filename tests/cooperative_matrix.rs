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

    // The ends of f16's range. Subnormals (k * 2^-24) times small integers: every product
    // and every partial sum is a multiple of 2^-24 far below 2^24 of them, exact in f32 in
    // any order, so the result must match exactly; a unit or a conversion that flushes
    // f16 subnormals to zero fails here.
    let subnormals: Vec<f32> = (0..9 * 11).map(|i| ((i * 37 % 1023) as f32 - 511.0) * 2f32.powi(-24)).collect();
    let integers: Vec<f32> = (0..11 * 13).map(|i| (i * 5 % 9) as f32 - 4.0).collect();
    exact_on_both(&gpu, &subnormals, &[9, 11], &integers, &[11, 13], "f16 subnormals");
    // The largest finite f16 and signed zeros: products up to 65504^2, finite in f32.
    let large: Vec<f32> = (0..8 * 8).map(|i| [65504.0, -0.0, 0.0, -65504.0, 1.0][i % 5]).collect();
    let signs: Vec<f32> = (0..8 * 8).map(|i| [1.0, -1.0, 0.0][i % 3]).collect();
    exact_on_both(&gpu, &large, &[8, 8], &signs, &[8, 8], "the largest f16 and signed zeros");
}

/// `a x b` of f16 values whose f32 sums are exact in any order: the device's result must
/// equal the CPU's (zero tolerance; a zero's sign may depend on the order of the sum).
fn exact_on_both(gpu: &Device, a: &[f32], sa: &[usize], b: &[f32], sb: &[usize], what: &str) {
    let cpu = Device::cpu();
    let (a, b) = (Tensor::from_slice(a, sa, &cpu).half(), Tensor::from_slice(b, sb, &cpu).half());
    let want = a.half_matmul(&b, DType::F32).to_vec::<f32>();
    assert!(want.iter().any(|&v| v != 0.0), "{what}: the reference is all zeros, the test would prove nothing");
    let got = a.to_device(gpu).half_matmul(&b.to_device(gpu), DType::F32).to_vec::<f32>();
    compare(&got, &want, Tolerance::Elementwise { atol: 0.0, rtol: 0.0 }).unwrap_or_else(|e| panic!("{what}: {e}"));
}
