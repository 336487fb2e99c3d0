//! Tensors made from a shape and scalars; the twins of `shaders/creation.wgsl`.

use crate::random;

pub fn fill(numel: usize, value: f32) -> Vec<f32> {
    vec![value; numel]
}

/// `start + i * step`, computed in f32 exactly as the kernel does.
pub fn arange(numel: usize, start: f32, step: f32) -> Vec<f32> {
    (0..numel).map(|i| start + i as f32 * step).collect()
}

/// A stack of `[rows, cols]` identity matrices filling `numel` elements.
pub fn eye(numel: usize, rows: usize, cols: usize) -> Vec<f32> {
    (0..numel).map(|i| if (i / cols) % rows == i % cols { 1.0 } else { 0.0 }).collect()
}

pub fn rand_uniform(numel: usize, seed: u64, low: f32, high: f32) -> Vec<f32> {
    let keys = random::seed_keys(seed);
    (0..numel).map(|i| random::uniform_at(i as u32, keys, low, high)).collect()
}

pub fn rand_normal(numel: usize, seed: u64, mean: f32, std: f32) -> Vec<f32> {
    let keys = random::seed_keys(seed);
    (0..numel).map(|i| random::normal_at(i as u32, keys, mean, std)).collect()
}
