//! Layer normalisation over the rows of contiguous `[rows, len]` data: the CPU twins of
//! the three kernels of `shaders/layer_norm.wgsl`, with the same inputs and the same
//! output layouts.
//!
//! A row is one normalised block (the trailing `normalized_shape` dimensions flattened).
//! The statistics table (`[2, rows]`) holds the mean of each row, then
//! `rstd = 1 / sqrt(biased variance + eps)`. Sums are accumulated in f64, so the reference
//! is more accurate than the f32 kernels it checks.

use super::alloc;
use super::parallel;
use super::reduce::sum_f64;

pub use crate::op::norm::LnDims;

/// `y = (x - mean) * rstd * weight + bias` per row, and the `[2, rows]` statistics table.
/// Mean and biased variance come from two passes (the mean, then squared deviations from
/// it); `weight` and `bias` are `[len]` and count as ones and zeros when `None`. Rows are
/// normalised in parallel, each by one thread.
pub fn forward(x: &[f32], d: LnDims, weight: Option<&[f32]>, bias: Option<&[f32]>, eps: f32) -> (Vec<f32>, Vec<f32>) {
    let mut y = alloc::zeroed::<f32>(d.numel(), "layer_norm");
    let mut row_stats = vec![[0.0f32; 2]; d.rows];
    let count = d.len as f64;
    parallel::for_each_run2(&mut y, d.len, &mut row_stats, 1, 3 * d.len, |first, y, row_stats| {
        for (k, stats) in row_stats.iter_mut().enumerate() {
            let r = first + k;
            let row = &x[r * d.len..(r + 1) * d.len];
            let mean = sum_f64(row, f64::from) / count;
            let var = sum_f64(row, |v| (v as f64 - mean).powi(2)) / count;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for (j, (out, &v)) in y[k * d.len..(k + 1) * d.len].iter_mut().zip(row).enumerate() {
                let w = weight.map_or(1.0, |w| w[j] as f64);
                let b = bias.map_or(0.0, |b| b[j] as f64);
                *out = ((v as f64 - mean) * rstd * w + b) as f32;
            }
            *stats = [mean as f32, rstd as f32];
        }
    });
    let mut stats = alloc::zeroed::<f32>(2 * d.rows, "layer_norm");
    for (r, [mean, rstd]) in row_stats.into_iter().enumerate() {
        stats[r] = mean;
        stats[d.rows + r] = rstd;
    }
    (y, stats)
}

/// The input gradient `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))` per row, with
/// `g = dy * weight` and `xhat = (x - mean) * rstd` from the statistics table the forward
/// pass wrote. Rows are computed in parallel, each by one thread.
pub fn backward(x: &[f32], dy: &[f32], d: LnDims, weight: Option<&[f32]>, stats: &[f32]) -> Vec<f32> {
    let mut dx = alloc::zeroed::<f32>(d.numel(), "layer_norm");
    if d.len == 0 {
        return dx;
    }
    let count = d.len as f64;
    parallel::for_each_run(&mut dx, d.len, 4 * d.len, |first, run| {
        for (k, dx_row) in run.chunks_exact_mut(d.len).enumerate() {
            let r = first + k;
            let (mean, rstd) = (stats[r] as f64, stats[d.rows + r] as f64);
            let terms = |j: usize| {
                let i = r * d.len + j;
                let g = dy[i] as f64 * weight.map_or(1.0, |w| w[j] as f64);
                (g, (x[i] as f64 - mean) * rstd)
            };
            let (mut sum_g, mut sum_g_xhat) = (0.0f64, 0.0f64);
            for j in 0..d.len {
                let (g, xhat) = terms(j);
                sum_g += g;
                sum_g_xhat += g * xhat;
            }
            let (mean_g, mean_g_xhat) = (sum_g / count, sum_g_xhat / count);
            for (j, out) in dx_row.iter_mut().enumerate() {
                let (g, xhat) = terms(j);
                *out = (rstd * (g - mean_g - xhat * mean_g_xhat)) as f32;
            }
        }
    });
    dx
}

/// Partial parameter gradients: for each chunk of `chunk_rows` rows, the column sums of
/// `dy * xhat` (the weight gradient) and of `dy` (the bias gradient), as a
/// `[chunks, 2, len]` table. Summing it over the chunk axis gives the gradients. Chunks are
/// computed in parallel, each by one thread.
pub fn param_backward(x: &[f32], dy: &[f32], d: LnDims, stats: &[f32], chunk_rows: usize) -> Vec<f32> {
    assert!(chunk_rows > 0, "layer_norm: chunk_rows must be positive");
    let chunks = d.chunks(chunk_rows);
    let mut out = alloc::zeroed::<f32>(chunks * 2 * d.len, "layer_norm");
    if d.len == 0 {
        return out;
    }
    parallel::for_each_run(&mut out, 2 * d.len, 2 * chunk_rows * d.len, |first, run| {
        for (k, table) in run.chunks_exact_mut(2 * d.len).enumerate() {
            let chunk = first + k;
            let rows = chunk * chunk_rows..((chunk + 1) * chunk_rows).min(d.rows);
            let (dw_row, db_row) = table.split_at_mut(d.len);
            for j in 0..d.len {
                let (mut dw, mut db) = (0.0f64, 0.0f64);
                for r in rows.clone() {
                    let i = r * d.len + j;
                    let xhat = (x[i] as f64 - stats[r] as f64) * stats[d.rows + r] as f64;
                    dw += dy[i] as f64 * xhat;
                    db += dy[i] as f64;
                }
                dw_row[j] = dw as f32;
                db_row[j] = db as f32;
            }
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_of_a_large_offset_do_not_cancel() {
        // Mean 1e4 and spread 1: E[x^2] - E[x]^2 in f32 would lose every digit.
        let x = [1e4f32 - 1.0, 1e4 + 1.0, 1e4 - 1.0, 1e4 + 1.0];
        let (y, stats) = forward(&x, LnDims { rows: 1, len: 4 }, None, None, 0.0);
        assert_eq!(stats, [1e4, 1.0]);
        assert_eq!(y, [-1.0, 1.0, -1.0, 1.0]);
    }

    #[test]
    fn chunks_cover_every_row_once() {
        let d = LnDims { rows: 5, len: 2 };
        let x = [0.0f32, 2.0, 1.0, 3.0, 4.0, 0.0, 2.0, 3.0, 1.0, 5.0];
        let dy = [1.0f32; 10];
        let (_, stats) = forward(&x, d, None, None, 0.0);
        // Whole rows in one chunk or in chunks of 2, 2 and 1: the same column sums.
        let whole = param_backward(&x, &dy, d, &stats, 8);
        let parts = param_backward(&x, &dy, d, &stats, 2);
        assert_eq!(parts.len(), 3 * 2 * 2);
        for k in 0..4 {
            let summed: f32 = (0..3).map(|c| parts[c * 4 + k]).sum();
            assert!((summed - whole[k]).abs() < 1e-6, "entry {k}: {summed} vs {}", whole[k]);
        }
        // The bias gradient of all-ones dy counts the rows.
        assert_eq!(&whole[2..], [5.0, 5.0]);
    }
}
