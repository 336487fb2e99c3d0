//! Batch normalisation over contiguous `[N, C, L]` data: the CPU twins of the four kernels
//! of `shaders/batch_norm.wgsl`, with the same inputs and the same table layouts.
//!
//! Element `(n, c, l)` is at `(n * C + c) * L + l`, so one channel's `M = N * L` elements
//! are `N` runs of `L`. Per-channel sums are accumulated in f64, so the reference is more
//! accurate than the f32 kernels it checks; each run is summed with the interleaved
//! accumulators of [`super::reduce`], and channels run in parallel, one thread each.
//!
//! The statistics table (`[4, C]`) holds per channel: mean, biased variance,
//! `invstd = 1 / sqrt(var + eps)` and `scale = weight * invstd`. The gradient table
//! (`[6, C]`) holds: `sum(dy)` (the bias gradient), `invstd * sum(dy * (x - mean))` (the
//! weight gradient), mean, `mean(dy)`, `proj = invstd^2 * mean(dy * (x - mean))` and scale;
//! in evaluation mode `mean(dy)` and `proj` are zero, since the statistics are constants.

use super::alloc;
use super::parallel;
use super::reduce::sum_f64_indices;

pub use crate::op::norm::{BnDims, GRAD_ROWS, STATS_ROWS};

impl BnDims {
    /// `sum(term(i))` over the elements `i` of channel `ch`: each of its `N` runs summed
    /// by [`sum_f64`], the run sums added in order.
    fn channel_sum(&self, ch: usize, term: impl Fn(usize) -> f64) -> f64 {
        (0..self.n)
            .map(|n| {
                let start = (n * self.c + ch) * self.l;
                sum_f64_indices(start..start + self.l, &term)
            })
            .fold(0.0, |a, b| a + b)
    }
}

/// The `[4, C]` statistics table of `x` (contiguous `[N, C, L]`): mean and biased
/// variance by two passes, then `invstd` and `scale` (weight 1 when `weight` is `None`).
/// Channels are reduced in parallel, each by one thread.
pub fn stats(x: &[f32], d: BnDims, weight: Option<&[f32]>, eps: f32) -> Vec<f32> {
    let count = d.per_channel() as f64;
    let per_channel = parallel::map_indices(d.c, 2 * d.per_channel(), |ch| {
        let mean = d.channel_sum(ch, |i| x[i] as f64) / count;
        let var = d.channel_sum(ch, |i| (x[i] as f64 - mean).powi(2)) / count;
        let invstd = 1.0 / (var + eps as f64).sqrt();
        let w = weight.map_or(1.0, |w| w[ch] as f64);
        [mean as f32, var as f32, invstd as f32, (w * invstd) as f32]
    });
    transpose_table(&per_channel, d.c)
}

/// The `[R, C]` table whose column `ch` is `columns[ch]`.
fn transpose_table<const R: usize>(columns: &[[f32; R]], c: usize) -> Vec<f32> {
    let mut table = alloc::zeroed::<f32>(R * c, "batch_norm");
    for (ch, column) in columns.iter().enumerate() {
        for (r, &v) in column.iter().enumerate() {
            table[r * c + ch] = v;
        }
    }
    table
}

/// `out[i] = f(i, channel of i)` over contiguous `[N, C, L]` data, computed in parallel
/// runs of whole `L`-element rows (one channel each).
fn per_element(d: BnDims, f: impl Fn(usize, usize) -> f32 + Sync) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(d.numel(), "batch_norm");
    if d.l == 0 {
        return out;
    }
    parallel::for_each_run(&mut out, d.l, d.l, |first_row, run| {
        for (r, row) in run.chunks_exact_mut(d.l).enumerate() {
            let (row_index, ch) = (first_row + r, (first_row + r) % d.c);
            for (k, o) in row.iter_mut().enumerate() {
                *o = f(row_index * d.l + k, ch);
            }
        }
    });
    out
}

/// `y = (x - mean[c]) * scale[c] + bias[c]` over contiguous `[N, C, L]` `x`, with
/// per-channel `mean` and `scale` and an optional `bias` (zero when `None`).
pub fn apply(x: &[f32], d: BnDims, mean: &[f32], scale: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    per_element(d, |i, ch| (x[i] - mean[ch]) * scale[ch] + bias.map_or(0.0, |b| b[ch]))
}

/// The `[6, C]` gradient table from the output gradient `dy` and input `x` (both
/// contiguous `[N, C, L]`) and the statistics table `stats` the forward pass used.
/// Channels are reduced in parallel, each by one thread.
pub fn backward_reduce(dy: &[f32], x: &[f32], d: BnDims, stats: &[f32], training: bool) -> Vec<f32> {
    let count = d.per_channel() as f64;
    let per_channel = parallel::map_indices(d.c, 2 * d.per_channel(), |ch| {
        let mean = stats[ch] as f64;
        let invstd = stats[2 * d.c + ch] as f64;
        let sum_dy = d.channel_sum(ch, |i| dy[i] as f64);
        let sum_dy_xmu = d.channel_sum(ch, |i| dy[i] as f64 * (x[i] as f64 - mean));
        let (mean_dy, proj) =
            if training { (sum_dy / count, sum_dy_xmu / count * invstd * invstd) } else { (0.0, 0.0) };
        [sum_dy as f32, (sum_dy_xmu * invstd) as f32, mean as f32, mean_dy as f32, proj as f32, stats[3 * d.c + ch]]
    });
    transpose_table(&per_channel, d.c)
}

/// `dx = (dy - mean(dy)[c] - (x - mean[c]) * proj[c]) * scale[c]` from the gradient table.
pub fn backward_apply(dy: &[f32], x: &[f32], d: BnDims, table: &[f32]) -> Vec<f32> {
    let row = |r: usize, ch: usize| table[r * d.c + ch];
    per_element(d, |i, ch| (dy[i] - row(3, ch) - (x[i] - row(2, ch)) * row(4, ch)) * row(5, ch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_runs_of_l_per_image() {
        let d = BnDims { n: 2, c: 3, l: 2 };
        // Channel 1 is elements 2, 3, 8 and 9.
        assert_eq!(d.channel_sum(1, |i| (1u64 << i) as f64), (4 + 8 + 256 + 512) as f64);
        assert_eq!(per_element(d, |_, ch| ch as f32), [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(per_element(d, |i, _| i as f32), (0..12).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn stats_of_a_large_offset_do_not_cancel() {
        // Mean 1e4 and spread 1: E[x^2] - E[x]^2 in f32 would lose every digit.
        let x = [1e4f32 - 1.0, 1e4 + 1.0, 1e4 - 1.0, 1e4 + 1.0];
        let t = stats(&x, BnDims { n: 4, c: 1, l: 1 }, None, 0.0);
        assert_eq!(t, [1e4, 1.0, 1.0, 1.0]);
    }
}
