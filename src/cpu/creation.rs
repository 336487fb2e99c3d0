//! Tensors made from a shape and scalars; the twins of `shaders/creation.wgsl`. Every
//! element is a function of its index alone, so large fills run in parallel runs.

use super::parallel;
use crate::random;

/// `numel` copies of `value`.
pub fn fill(numel: usize, value: f32) -> Vec<f32> {
    vec![value; numel]
}

/// `f(i)` for `i` in `0..numel`, in parallel runs when there are many.
fn from_index(numel: usize, work_per_element: usize, f: impl Fn(usize) -> f32 + Sync) -> Vec<f32> {
    parallel::map_indices(numel, work_per_element, f)
}

/// `start + i * step`, computed in f32 exactly as the kernel does.
pub fn arange(numel: usize, start: f32, step: f32) -> Vec<f32> {
    from_index(numel, 1, |i| start + i as f32 * step)
}

/// A stack of `[rows, cols]` identity matrices filling `numel` elements.
pub fn eye(numel: usize, rows: usize, cols: usize) -> Vec<f32> {
    from_index(numel, 1, |i| if (i / cols) % rows == i % cols { 1.0 } else { 0.0 })
}

/// Uniform samples in `[low, high)`, element `i` from the counter-based generator at `i`.
pub fn rand_uniform(numel: usize, seed: u64, low: f32, high: f32) -> Vec<f32> {
    let keys = random::seed_keys(seed);
    from_index(numel, 8, |i| random::uniform_at(i as u32, keys, low, high))
}

/// Normal samples, element `i` from the counter-based generator at `i`.
pub fn rand_normal(numel: usize, seed: u64, mean: f32, std: f32) -> Vec<f32> {
    let keys = random::seed_keys(seed);
    from_index(numel, 16, |i| random::normal_at(i as u32, keys, mean, std))
}
