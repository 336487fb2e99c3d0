//! Batch normalisation over contiguous `[N, C, L]` data: the CPU twins of the four kernels
//! of `shaders/batch_norm.wgsl`, with the same inputs and the same table layouts.
//!
//! Element `(n, c, l)` is at `(n * C + c) * L + l`, so one channel's `M = N * L` elements
//! are `N` runs of `L`. Per-channel sums are accumulated in f64, so the reference is more
//! accurate than the f32 kernels it checks.
//!
//! The statistics table (`[4, C]`) holds per channel: mean, biased variance,
//! `invstd = 1 / sqrt(var + eps)` and `scale = weight * invstd`. The gradient table
//! (`[6, C]`) holds: `sum(dy)` (the bias gradient), `invstd * sum(dy * (x - mean))` (the
//! weight gradient), mean, `mean(dy)`, `proj = invstd^2 * mean(dy * (x - mean))` and scale;
//! in evaluation mode `mean(dy)` and `proj` are zero, since the statistics are constants.

/// Rows of the statistics table.
pub const STATS_ROWS: usize = 4;
/// Rows of the gradient table.
pub const GRAD_ROWS: usize = 6;

/// The shape of a batch-normalisation operand viewed as `[N, C, L]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnDims {
    pub n: usize,
    pub c: usize,
    pub l: usize,
}

impl BnDims {
    /// Values per channel, `N * L`.
    pub fn per_channel(&self) -> usize {
        self.n * self.l
    }

    pub fn numel(&self) -> usize {
        self.n * self.c * self.l
    }

    /// The channel of flat element `i`.
    fn channel_of(&self, i: usize) -> usize {
        (i / self.l) % self.c
    }

    /// Flat indices of the elements of channel `ch`, in memory order.
    fn channel(&self, ch: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.n).flat_map(move |n| {
            let start = (n * self.c + ch) * self.l;
            start..start + self.l
        })
    }
}

/// The `[4, C]` statistics table of `x` (contiguous `[N, C, L]`): mean and biased
/// variance by two passes, then `invstd` and `scale` (weight 1 when `weight` is `None`).
pub fn stats(x: &[f32], d: BnDims, weight: Option<&[f32]>, eps: f32) -> Vec<f32> {
    let mut table = vec![0.0f32; STATS_ROWS * d.c];
    let count = d.per_channel() as f64;
    for ch in 0..d.c {
        let mean = d.channel(ch).map(|i| x[i] as f64).sum::<f64>() / count;
        let var = d.channel(ch).map(|i| (x[i] as f64 - mean).powi(2)).sum::<f64>() / count;
        let invstd = 1.0 / (var + eps as f64).sqrt();
        let w = weight.map_or(1.0, |w| w[ch] as f64);
        table[ch] = mean as f32;
        table[d.c + ch] = var as f32;
        table[2 * d.c + ch] = invstd as f32;
        table[3 * d.c + ch] = (w * invstd) as f32;
    }
    table
}

/// `y = (x - mean[c]) * scale[c] + bias[c]` over contiguous `[N, C, L]` `x`, with
/// per-channel `mean` and `scale` and an optional `bias` (zero when `None`).
pub fn apply(x: &[f32], d: BnDims, mean: &[f32], scale: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    (0..d.numel())
        .map(|i| {
            let ch = d.channel_of(i);
            (x[i] - mean[ch]) * scale[ch] + bias.map_or(0.0, |b| b[ch])
        })
        .collect()
}

/// The `[6, C]` gradient table from the output gradient `dy` and input `x` (both
/// contiguous `[N, C, L]`) and the statistics table `stats` the forward pass used.
pub fn backward_reduce(dy: &[f32], x: &[f32], d: BnDims, stats: &[f32], training: bool) -> Vec<f32> {
    let mut table = vec![0.0f32; GRAD_ROWS * d.c];
    let count = d.per_channel() as f64;
    for ch in 0..d.c {
        let mean = stats[ch] as f64;
        let invstd = stats[2 * d.c + ch] as f64;
        let sum_dy: f64 = d.channel(ch).map(|i| dy[i] as f64).sum();
        let sum_dy_xmu: f64 = d.channel(ch).map(|i| dy[i] as f64 * (x[i] as f64 - mean)).sum();
        let (mean_dy, proj) =
            if training { (sum_dy / count, sum_dy_xmu / count * invstd * invstd) } else { (0.0, 0.0) };
        table[ch] = sum_dy as f32;
        table[d.c + ch] = (sum_dy_xmu * invstd) as f32;
        table[2 * d.c + ch] = mean as f32;
        table[3 * d.c + ch] = mean_dy as f32;
        table[4 * d.c + ch] = proj as f32;
        table[5 * d.c + ch] = stats[3 * d.c + ch];
    }
    table
}

/// `dx = (dy - mean(dy)[c] - (x - mean[c]) * proj[c]) * scale[c]` from the gradient table.
pub fn backward_apply(dy: &[f32], x: &[f32], d: BnDims, table: &[f32]) -> Vec<f32> {
    let row = |r: usize, ch: usize| table[r * d.c + ch];
    (0..d.numel())
        .map(|i| {
            let ch = d.channel_of(i);
            (dy[i] - row(3, ch) - (x[i] - row(2, ch)) * row(4, ch)) * row(5, ch)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_runs_of_l_per_image() {
        let d = BnDims { n: 2, c: 3, l: 2 };
        assert_eq!(d.channel(1).collect::<Vec<_>>(), [2, 3, 8, 9]);
        assert_eq!((0..12).map(|i| d.channel_of(i)).collect::<Vec<_>>(), [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn stats_of_a_large_offset_do_not_cancel() {
        // Mean 1e4 and spread 1: E[x^2] - E[x]^2 in f32 would lose every digit.
        let x = [1e4f32 - 1.0, 1e4 + 1.0, 1e4 - 1.0, 1e4 + 1.0];
        let t = stats(&x, BnDims { n: 4, c: 1, l: 1 }, None, 0.0);
        assert_eq!(t, [1e4, 1.0, 1.0, 1.0]);
    }
}
