//! Helpers for checking kernels against the CPU reference, used by wgrad's own tests and
//! available to anyone who writes a kernel of their own.
//!
//! The habit they encode: a fixed seed, the same op on the CPU and on the GPU, compared
//! with `|a - b| <= atol + rtol * |b|` elementwise, or with the normalised error
//! `||a - b|| / ||b||` for ops that sum many products (matmul, reductions), where
//! elementwise tolerances are either too loose or fail on cancellation.

use crate::device::Device;
use crate::dtype::DType;
use crate::error::Error;
use crate::gpu::context::POISON_BITS;
use crate::Tensor;

/// The device GPU tests run on: a hardware adapter when there is one, else the software
/// adapter. `None` (after a loud message) when neither exists; but when the environment
/// variable `CI` is `true`, a missing adapter is a panic, so CI can never pass by skipping.
pub fn gpu_test_device() -> Option<Device> {
    let found = Device::gpu().or_else(|_| Device::software());
    match found {
        Ok(dev) => {
            dev.set_poison(true);
            Some(dev)
        }
        Err(e) => {
            let in_ci = std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false);
            if in_ci {
                panic!("CI=true but no GPU adapter, hardware or software, is available: {e}");
            }
            eprintln!("SKIPPING GPU checks: {e}");
            if let Error::NoAdapter { .. } = e {
                eprintln!("(install mesa-vulkan-drivers for the software Vulkan adapter)");
            }
            None
        }
    }
}

/// How close a GPU result must be to the CPU reference.
#[derive(Clone, Copy, Debug)]
pub enum Tolerance {
    /// `|a - b| <= atol + rtol * |b|` for every element; NaN must match NaN.
    Elementwise { atol: f32, rtol: f32 },
    /// `||a - b||_2 <= tol * ||b||_2` (plus a tiny absolute floor for all-zero results).
    Normalized { tol: f32 },
    /// Bit-for-bit equality (copies, indexing, comparisons).
    Exact,
}

/// Compares `actual` against `expected` and returns a description of the first failure.
pub fn compare(actual: &[f32], expected: &[f32], tol: Tolerance) -> Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!("length {} vs expected {}", actual.len(), expected.len()));
    }
    match tol {
        Tolerance::Exact => {
            for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
                if a.to_bits() != b.to_bits() && !(a.is_nan() && b.is_nan()) {
                    return Err(format!("element {i}: {a} vs expected {b}"));
                }
            }
        }
        Tolerance::Elementwise { atol, rtol } => {
            for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
                let same_special = (a.is_nan() && b.is_nan()) || (a.is_infinite() && a == b);
                let within = (a - b).abs() <= atol + rtol * b.abs(); // false for NaN
                if !same_special && !within {
                    return Err(format!(
                        "element {i}: {a} vs expected {b} (|diff| {} > {atol} + {rtol}*|b|)",
                        (a - b).abs()
                    ));
                }
            }
        }
        Tolerance::Normalized { tol } => {
            let mut diff = 0.0f64;
            let mut norm = 0.0f64;
            for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
                if a.is_nan() != b.is_nan() {
                    return Err(format!("element {i}: {a} vs expected {b}"));
                }
                if !a.is_nan() {
                    diff += ((a - b) as f64).powi(2);
                    norm += (b as f64).powi(2);
                }
            }
            let (diff, norm) = (diff.sqrt(), norm.sqrt());
            if diff > tol as f64 * norm + 1e-30 {
                return Err(format!(
                    "normalised error {:.3e} > {tol:e} (||diff|| {diff:.3e}, ||expected|| {norm:.3e})",
                    diff / norm
                ));
            }
        }
    }
    Ok(())
}

/// Checks that a GPU result was fully written and stayed inside its buffer: no element
/// still holds the poison pattern, and the guard region behind the data is untouched.
/// Passes trivially on the CPU.
pub fn check_poison(t: &Tensor) -> Result<(), String> {
    let Some((words, used)) = t.debug_raw_buffer() else { return Ok(()) };
    // Only the elements this (contiguous, offset-0) tensor owns are checked for writes.
    if t.is_contiguous() && t.layout.offset == 0 && t.dtype() == DType::F32 {
        if let Some(i) = words[..t.numel()].iter().position(|&w| w == POISON_BITS) {
            return Err(format!("element {i} of {:?} was never written", t.shape()));
        }
    }
    // f16 elements are half words: element i holds the low (even i) or high (odd i) half
    // of the poison pattern until written. The high half is a NaN no conversion produces;
    // the low half is an ordinary f16 value (-0.85), so an even element counts as unwritten
    // only when its whole word still holds the pattern.
    if t.is_contiguous() && t.layout.offset == 0 && t.dtype() == DType::F16 {
        let high = (POISON_BITS >> 16) as u16;
        let unwritten = |i: usize| {
            if i.is_multiple_of(2) {
                words[i / 2] == POISON_BITS
            } else {
                (words[i / 2] >> 16) as u16 == high
            }
        };
        if let Some(i) = (0..t.numel()).find(|&i| unwritten(i)) {
            return Err(format!("f16 element {i} of {:?} was never written", t.shape()));
        }
    }
    if let Some(i) = words[used..].iter().position(|&w| w != POISON_BITS) {
        return Err(format!("word {} past the end of a {}-element buffer was overwritten", used + i, used));
    }
    Ok(())
}

/// Runs `f` on the CPU and on `gpu`, with `make_inputs` building the inputs on each device,
/// and panics with `name` and the first mismatch unless the results agree within `tol`
/// and the GPU outputs pass [`check_poison`].
pub fn cross_check(
    name: &str,
    gpu: &Device,
    tol: Tolerance,
    make_inputs: impl Fn(&Device) -> Vec<Tensor>,
    f: impl Fn(&[Tensor]) -> Tensor,
) {
    let cpu_out = f(&make_inputs(&Device::cpu()));
    let gpu_out = f(&make_inputs(gpu));
    assert_eq!(cpu_out.shape(), gpu_out.shape(), "{name}: shapes differ between CPU and GPU");
    assert_eq!(cpu_out.dtype(), gpu_out.dtype(), "{name}: dtypes differ between CPU and GPU");
    if let Err(e) = check_poison(&gpu_out) {
        panic!("{name}: {e}");
    }
    let (a, b) = match gpu_out.dtype() {
        DType::F32 => (gpu_out.to_vec::<f32>(), cpu_out.to_vec::<f32>()),
        DType::I32 => (
            gpu_out.to_vec::<i32>().iter().map(|&v| v as f32).collect(),
            cpu_out.to_vec::<i32>().iter().map(|&v| v as f32).collect(),
        ),
        DType::F16 => (
            gpu_out.to_vec::<half::f16>().iter().map(|v| v.to_f32()).collect(),
            cpu_out.to_vec::<half::f16>().iter().map(|v| v.to_f32()).collect(),
        ),
    };
    if let Err(e) = compare(&a, &b, tol) {
        panic!("{name} {:?}: GPU disagrees with CPU: {e}", cpu_out.shape());
    }
}

/// How far analytic gradients may be from finite differences in [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradTolerance {
    /// Step of the central difference.
    pub eps: f32,
    pub atol: f64,
    pub rtol: f64,
}

impl Default for GradTolerance {
    /// Central differences of f32 evaluations with step 1e-3 are good to about 1e-3
    /// relative for smooth ops of moderate size.
    fn default() -> Self {
        GradTolerance { eps: 1e-3, atol: 2e-3, rtol: 2e-2 }
    }
}

/// Checks the gradients `backward` computes for `f` on `device` against central finite
/// differences on the CPU.
///
/// The op is placed mid-graph: the loss is `sum(c * f(x) + d)` with fixed pseudo-random
/// `c` and `d`, so a backward rule that ignores its incoming gradient, or one that is
/// right only for an all-ones gradient, fails. Each input is `(values, shape)`; keep them
/// small, since every element costs two evaluations. The loss of each finite-difference
/// evaluation is accumulated in f64 on the host; the op itself runs in f32, which is why
/// the step and tolerances are those of [`GradTolerance::default`].
pub fn gradcheck(
    name: &str,
    device: &Device,
    inputs: &[(Vec<f32>, Vec<usize>)],
    tol: GradTolerance,
    f: impl Fn(&[Tensor]) -> Tensor,
) -> Result<(), String> {
    let cpu = Device::cpu();
    let weights = |shape: &[usize]| -> (Vec<f32>, Vec<f32>) {
        let n: usize = shape.iter().product();
        let keys = crate::random::seed_keys(0x5eed);
        let c = (0..n as u32).map(|i| crate::random::uniform_at(i, keys, 0.5, 1.5)).collect();
        let d = (0..n as u32).map(|i| crate::random::uniform_at(i + n as u32, keys, -1.0, 1.0)).collect();
        (c, d)
    };
    // The loss as a host f64, from CPU evaluations without a graph.
    let loss_at = |values: &[Vec<f32>]| -> f64 {
        crate::autograd::no_grad(|| {
            let xs: Vec<Tensor> =
                values.iter().zip(inputs).map(|(v, (_, shape))| Tensor::from_slice(v, shape, &cpu)).collect();
            let y = f(&xs);
            let (c, d) = weights(y.shape());
            let y = y.to_vec::<f32>();
            y.iter().zip(c.iter().zip(&d)).map(|(&y, (&c, &d))| c as f64 * y as f64 + d as f64).sum()
        })
    };

    // Analytic gradients on the device under test.
    let xs: Vec<Tensor> =
        inputs.iter().map(|(v, shape)| Tensor::from_slice(v, shape, device).requires_grad()).collect();
    let y = f(&xs);
    if !y.is_tracked() {
        return Err(format!("{name}: the output is not connected to any input"));
    }
    let (c, d) = weights(y.shape());
    let loss =
        y.mul(&Tensor::from_slice(&c, y.shape(), device)).add(&Tensor::from_slice(&d, y.shape(), device)).sum_all();
    let grads = loss.backward();

    let mut values: Vec<Vec<f32>> = inputs.iter().map(|(v, _)| v.clone()).collect();
    for (i, x) in xs.iter().enumerate() {
        let analytic = match grads.get(x) {
            Some(g) => g.to_vec::<f32>(),
            None => vec![0.0; x.numel()],
        };
        if analytic.len() != x.numel() {
            return Err(format!(
                "{name}: gradient of input {i} has {} elements, expected {}",
                analytic.len(),
                x.numel()
            ));
        }
        for j in 0..x.numel() {
            let original = values[i][j];
            values[i][j] = original + tol.eps;
            let up = loss_at(&values);
            values[i][j] = original - tol.eps;
            let down = loss_at(&values);
            values[i][j] = original;
            // The perturbed values as f32 actually seen, not the nominal step.
            let step = (original + tol.eps) as f64 - (original - tol.eps) as f64;
            let numeric = (up - down) / step;
            let a = analytic[j] as f64;
            // Written so that a NaN on either side fails: the comparison is then false.
            let close = (a - numeric).abs() <= tol.atol + tol.rtol * numeric.abs();
            if !close {
                return Err(format!(
                    "{name} on {}: d loss / d input{i}[{j}] is {a:.6} by backward but {numeric:.6} by finite differences",
                    if device.is_cpu() { "cpu" } else { "gpu" }
                ));
            }
        }
    }
    Ok(())
}
