//! Tensors made from a shape and scalars; the twins of `shaders/creation.wgsl`. Every
//! element is a function of its index alone, so large fills run in parallel runs.

use super::parallel;
use crate::random;

/// Every element of `out` set to `value`; `out` arrives zeroed, so a zero fill is free.
pub fn fill(out: &mut [f32], value: f32) {
    if value.to_bits() != 0 {
        out.fill(value);
    }
}

/// `out[i] = f(i)`, in parallel runs when there are many.
fn from_index(out: &mut [f32], work_per_element: usize, f: impl Fn(usize) -> f32 + Sync) {
    parallel::for_each_run(out, 1, work_per_element, |first, run| {
        for (i, o) in run.iter_mut().enumerate() {
            *o = f(first + i);
        }
    });
}

/// `start + i * step`, computed in f32 exactly as the kernel does.
pub fn arange(out: &mut [f32], start: f32, step: f32) {
    from_index(out, 1, |i| start + i as f32 * step)
}

/// A stack of `[rows, cols]` identity matrices filling `out`.
pub fn eye(out: &mut [f32], rows: usize, cols: usize) {
    from_index(out, 1, |i| if (i / cols) % rows == i % cols { 1.0 } else { 0.0 })
}

/// Uniform samples in `[low, high)`, element `i` from the counter-based generator at `i`.
pub fn rand_uniform(out: &mut [f32], seed: u64, low: f32, high: f32) {
    let keys = random::seed_keys(seed);
    from_index(out, 8, |i| random::uniform_at(i as u32, keys, low, high))
}

/// Normal samples, element `i` from the counter-based generator at `i`.
pub fn rand_normal(out: &mut [f32], seed: u64, mean: f32, std: f32) {
    let keys = random::seed_keys(seed);
    from_index(out, 16, |i| random::normal_at(i as u32, keys, mean, std))
}
