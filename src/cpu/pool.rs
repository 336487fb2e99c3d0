//! 2-D max, average and adaptive average pooling over the planes of an NCHW tensor, and
//! their gradients.
//!
//! A plane is the `H x W` image of one channel of one sample; planes are pooled
//! independently, so every function walks `planes` of them laid out one after another.
//! The window arithmetic follows PyTorch's CPU kernels line by line (including where a
//! window may start and end in ceil mode, and which elements an average divides by).
//!
//! The backward functions gather: every input position sums the output gradients of the
//! windows that cover it, in increasing output order, instead of scattering each output
//! gradient over its window. That is what the WGSL kernels must do (WGSL has no float
//! atomics), and doing the same here makes both devices add in the same order.
//!
//! Planes are computed in parallel, each by one thread (see [`super::parallel`]).

use super::alloc;
use std::ops::Range;

use super::parallel;
pub use crate::op::pool::PoolGeometry;

impl PoolGeometry {
    /// Input length along `axis` (0 height, 1 width).
    fn input_len(&self, axis: usize) -> usize {
        [self.in_h, self.in_w][axis]
    }

    /// Output length along `axis` (0 height, 1 width).
    fn output_len(&self, axis: usize) -> usize {
        [self.out_h, self.out_w][axis]
    }

    /// Where the window of output `o` starts along `axis`, padding included (may be negative).
    fn window_start(&self, axis: usize, o: usize) -> isize {
        (o * self.stride[axis]) as isize - self.padding[axis] as isize
    }

    /// The taps of max-pooling window `o` along `axis` that fall inside the input: the
    /// first tap at or after 0 and the end (exclusive); step by the dilation between them.
    /// As in PyTorch the first tap can lie past the end when every tap is padding.
    pub fn max_taps(&self, axis: usize, o: usize) -> (usize, usize) {
        let d = self.dilation[axis] as isize;
        let start = self.window_start(axis, o);
        let first = if start < 0 { start + (-start + d - 1) / d * d } else { start };
        let span = ((self.kernel[axis] - 1) * self.dilation[axis] + 1) as isize;
        let end = (start + span).min(self.input_len(axis) as isize);
        (first as usize, end.max(0) as usize)
    }

    /// Average-pooling window `o` along `axis`: the input range it sums and its length
    /// counted with padding (but not past the padded edge, where ceil mode lets the last
    /// window hang over).
    pub fn avg_window(&self, axis: usize, o: usize) -> (Range<usize>, usize) {
        let len = self.input_len(axis) as isize;
        let start = self.window_start(axis, o);
        let end = (start + self.kernel[axis] as isize).min(len + self.padding[axis] as isize);
        let padded_len = (end - start) as usize;
        (start.max(0) as usize..end.min(len).max(0) as usize, padded_len)
    }

    /// What the sum of average-pooling window `(oh, ow)` is divided by, as PyTorch's
    /// `avg_pool2d`: the override, else the window size with padding, else the number of
    /// input elements in the window.
    pub fn avg_divisor(&self, oh: usize, ow: usize) -> f32 {
        if let Some(d) = self.divisor_override {
            return d as f32;
        }
        let (rows, padded_rows) = self.avg_window(0, oh);
        let (cols, padded_cols) = self.avg_window(1, ow);
        if self.count_include_pad {
            (padded_rows * padded_cols) as f32
        } else {
            (rows.len() * cols.len()) as f32
        }
    }

    /// The outputs along `axis` whose windows, `span` elements long from their start,
    /// cover input position `i`.
    pub fn covering_outputs(&self, axis: usize, i: usize, span: usize) -> Range<usize> {
        let s = self.stride[axis];
        let reach = i + self.padding[axis];
        // o * s - p <= i  and  o * s - p + span - 1 >= i.
        let lo = if reach + 1 > span { (reach + 1 - span).div_ceil(s) } else { 0 };
        let hi = (reach / s + 1).min(self.output_len(axis));
        lo..hi.max(lo)
    }
}

/// Start of adaptive window `o` of `out` over `len` inputs: `floor(o * len / out)`,
/// written as PyTorch does so that the product cannot overflow.
pub fn adaptive_start(o: usize, out: usize, len: usize) -> usize {
    (o / out) * len + ((o % out) * len) / out
}

/// End (exclusive) of adaptive window `o`: `ceil((o + 1) * len / out)`.
pub fn adaptive_end(o: usize, out: usize, len: usize) -> usize {
    ((o + 1) * len).div_ceil(out)
}

/// The adaptive outputs along one axis (`out` of them over `len` inputs) whose windows
/// contain input `i`.
fn adaptive_covering(i: usize, len: usize, out: usize) -> impl Iterator<Item = usize> {
    // Every covering window lies in this range (floor(i*out/len) .. ceil((i+1)*out/len));
    // the filter drops the ones next to it that do not reach `i`.
    let lo = (i * out) / len;
    let hi = ((i + 1) * out).div_ceil(len).min(out);
    (lo..hi).filter(move |&o| adaptive_start(o, out, len) <= i && i < adaptive_end(o, out, len))
}

/// Window maxima of `src` (`planes` contiguous input planes) and the flat `h * W + w`
/// index of each maximum in its plane. NaN wins over any number (the last NaN of a
/// window, as PyTorch); among equal maxima the first in row-major window order wins.
pub fn max_pool2d(src: &[f32], g: &PoolGeometry) -> (Vec<f32>, Vec<i32>) {
    let n = g.planes * g.out_plane();
    let (mut out, mut indices) = (alloc::zeroed::<f32>(n, "pool"), alloc::zeroed::<i32>(n, "pool"));
    if n == 0 {
        return (out, indices);
    }
    let work = g.out_plane() * g.kernel[0] * g.kernel[1];
    let op = g.out_plane();
    parallel::for_each_run2(&mut out, op, &mut indices, op, work, |first, out, indices| {
        let planes = out.chunks_exact_mut(op).zip(indices.chunks_exact_mut(op));
        for (p, (out, indices)) in planes.enumerate() {
            let plane = &src[(first + p) * g.in_plane()..(first + p + 1) * g.in_plane()];
            max_pool_plane(plane, g, out, indices);
        }
    });
    (out, indices)
}

fn max_pool_plane(plane: &[f32], g: &PoolGeometry, out: &mut [f32], indices: &mut [i32]) {
    let halving = g.kernel == [2, 2] && g.stride == [2, 2] && g.padding == [0, 0] && g.dilation == [1, 1];
    if halving && 2 * g.out_h <= g.in_h && 2 * g.out_w <= g.in_w {
        return max_pool_plane_2x2(plane, g, out, indices);
    }
    if g.dilation == [1, 1] {
        return max_pool_plane_dense(plane, g, out, indices);
    }
    for oh in 0..g.out_h {
        let (h0, h1) = g.max_taps(0, oh);
        for ow in 0..g.out_w {
            let (w0, w1) = g.max_taps(1, ow);
            let mut best = f32::NEG_INFINITY;
            let mut best_index = h0 * g.in_w + w0;
            for h in (h0..h1).step_by(g.dilation[0]) {
                for w in (w0..w1).step_by(g.dilation[1]) {
                    let v = plane[h * g.in_w + w];
                    if v.is_nan() || (!best.is_nan() && v > best) {
                        best = v;
                        best_index = h * g.in_w + w;
                    }
                }
            }
            out[oh * g.out_w + ow] = best;
            indices[oh * g.out_w + ow] = best_index as i32;
        }
    }
}

/// [`max_pool_plane`] for 2x2 windows with stride 2 that all lie inside the plane (the
/// pooling of the textbook CNNs): the four taps in row-major order with the same
/// comparisons, written as selects so that the loop over a row of outputs vectorises.
fn max_pool_plane_2x2(plane: &[f32], g: &PoolGeometry, out: &mut [f32], indices: &mut [i32]) {
    let (in_w, out_w) = (g.in_w, g.out_w);
    for oh in 0..g.out_h {
        let top = 2 * oh * in_w;
        let (r0, r1) = (&plane[top..][..2 * out_w], &plane[top + in_w..][..2 * out_w]);
        let (out_row, index_row) = (&mut out[oh * out_w..][..out_w], &mut indices[oh * out_w..][..out_w]);
        for (ow, (o, index)) in out_row.iter_mut().zip(index_row.iter_mut()).enumerate() {
            let at = (top + 2 * ow) as i32;
            let taps = [
                (r0[2 * ow], at),
                (r0[2 * ow + 1], at + 1),
                (r1[2 * ow], at + in_w as i32),
                (r1[2 * ow + 1], at + in_w as i32 + 1),
            ];
            let (mut best, mut best_index) = (f32::NEG_INFINITY, at);
            for (v, i) in taps {
                let take = v.is_nan() | (!best.is_nan() & (v > best));
                best = if take { v } else { best };
                best_index = if take { i } else { best_index };
            }
            *o = best;
            *index = best_index;
        }
    }
}

/// [`max_pool_plane`] for undilated windows (every pooling layer of the textbook
/// networks): the same taps in the same order with the same comparisons, as plain ranges
/// over row slices with the column windows worked out once per plane, where `step_by`
/// and the per-window tap arithmetic cost more than the comparisons themselves.
fn max_pool_plane_dense(plane: &[f32], g: &PoolGeometry, out: &mut [f32], indices: &mut [i32]) {
    let cols: Vec<(usize, usize)> = (0..g.out_w).map(|ow| g.max_taps(1, ow)).collect();
    for oh in 0..g.out_h {
        let (h0, h1) = g.max_taps(0, oh);
        let (out_row, index_row) = (&mut out[oh * g.out_w..][..g.out_w], &mut indices[oh * g.out_w..][..g.out_w]);
        for ((o, index), &(w0, w1)) in out_row.iter_mut().zip(index_row.iter_mut()).zip(&cols) {
            let mut best = f32::NEG_INFINITY;
            let mut best_index = h0 * g.in_w + w0;
            for h in h0..h1 {
                let row = &plane[h * g.in_w..][..w1];
                for (w, &v) in row.iter().enumerate().skip(w0) {
                    if v.is_nan() || (!best.is_nan() && v > best) {
                        best = v;
                        best_index = h * g.in_w + w;
                    }
                }
            }
            *o = best;
            *index = best_index as i32;
        }
    }
}

/// A contiguous output of `planes` planes of `plane_len` elements, plane `p` written by
/// `f(p, plane)`; planes are computed in parallel, `work` being the cost of one.
fn per_plane(planes: usize, plane_len: usize, work: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut out = alloc::zeroed::<f32>(planes * plane_len, "pool");
    if plane_len == 0 {
        return out;
    }
    parallel::for_each_run(&mut out, plane_len, work, |first, run| {
        for (p, dst) in run.chunks_exact_mut(plane_len).enumerate() {
            f(first + p, dst);
        }
    });
    out
}

/// Gradient of [`max_pool2d`]: each input position sums the output gradients whose
/// recorded index is this position.
pub fn max_pool2d_backward(grad_out: &[f32], indices: &[i32], g: &PoolGeometry) -> Vec<f32> {
    let span = |axis: usize| (g.kernel[axis] - 1) * g.dilation[axis] + 1;
    if (0..2).all(|axis| g.stride[axis] >= span(axis)) {
        return max_pool2d_backward_disjoint(grad_out, indices, g);
    }
    let work = g.in_plane() * g.kernel[0] * g.kernel[1];
    per_plane(g.planes, g.in_plane(), work, |plane, dst| {
        let go = &grad_out[plane * g.out_plane()..(plane + 1) * g.out_plane()];
        let idx = &indices[plane * g.out_plane()..(plane + 1) * g.out_plane()];
        for ih in 0..g.in_h {
            for iw in 0..g.in_w {
                let me = (ih * g.in_w + iw) as i32;
                let mut acc = 0.0f32;
                for oh in g.covering_outputs(0, ih, span(0)) {
                    for ow in g.covering_outputs(1, iw, span(1)) {
                        let o = oh * g.out_w + ow;
                        if idx[o] == me {
                            acc += go[o];
                        }
                    }
                }
                dst[ih * g.in_w + iw] = acc;
            }
        }
    })
}

/// [`max_pool2d_backward`] for windows that do not overlap (stride at least the window's
/// span on both axes, as in the common `MaxPool2d(2)`): every input position lies in at
/// most one window, so it receives at most one gradient, and sending each output's gradient
/// straight to its recorded index gives the gather's result exactly, in one pass over the
/// outputs instead of a window search per input. An index outside its own window (a window
/// made only of padding) sends nothing, as in the gather.
fn max_pool2d_backward_disjoint(grad_out: &[f32], indices: &[i32], g: &PoolGeometry) -> Vec<f32> {
    let span = |axis: usize| (g.kernel[axis] - 1) * g.dilation[axis] + 1;
    // Output `o`'s window along `axis` as a range of input positions (padding clipped); an
    // index outside it did not come from this window and sends nothing. Worked out once per
    // axis rather than per output.
    let windows =
        |axis: usize, outs: usize| -> Vec<(usize, usize)> { (0..outs).map(|o| g.max_taps(axis, o)).collect() };
    let (rows, cols) = (windows(0, g.out_h), windows(1, g.out_w));
    let dense = g.dilation == [1, 1];
    per_plane(g.planes, g.in_plane(), g.in_plane() + g.out_plane(), |plane, dst| {
        let base = plane * g.out_plane();
        for (oh, &(h0, h1)) in rows.iter().enumerate() {
            for (ow, &(w0, w1)) in cols.iter().enumerate() {
                let o = base + oh * g.out_w + ow;
                let Ok(at) = usize::try_from(indices[o]) else { continue };
                if at >= g.in_plane() {
                    continue;
                }
                let (ih, iw) = (at / g.in_w, at % g.in_w);
                let inside = if dense {
                    (h0..h1).contains(&ih) && (w0..w1).contains(&iw)
                } else {
                    g.covering_outputs(0, ih, span(0)).contains(&oh) && g.covering_outputs(1, iw, span(1)).contains(&ow)
                };
                if inside {
                    dst[at] += grad_out[o];
                }
            }
        }
    })
}

/// Window means of `src` (`planes` contiguous input planes), zeros standing in for the
/// padding, divided as [`PoolGeometry::avg_divisor`] says.
pub fn avg_pool2d(src: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let work = g.out_plane() * g.kernel[0] * g.kernel[1];
    per_plane(g.planes, g.out_plane(), work, |p, dst| {
        let plane = &src[p * g.in_plane()..(p + 1) * g.in_plane()];
        for oh in 0..g.out_h {
            let (rows, _) = g.avg_window(0, oh);
            for ow in 0..g.out_w {
                let (cols, _) = g.avg_window(1, ow);
                let mut sum = 0.0f32;
                for h in rows.clone() {
                    for w in cols.clone() {
                        sum += plane[h * g.in_w + w];
                    }
                }
                dst[oh * g.out_w + ow] = sum / g.avg_divisor(oh, ow);
            }
        }
    })
}

/// Gradient of [`avg_pool2d`]: each input position sums `grad / divisor` over the windows
/// that contain it.
pub fn avg_pool2d_backward(grad_out: &[f32], g: &PoolGeometry) -> Vec<f32> {
    let work = g.in_plane() * g.kernel[0] * g.kernel[1];
    per_plane(g.planes, g.in_plane(), work, |plane, dst| {
        let go = &grad_out[plane * g.out_plane()..(plane + 1) * g.out_plane()];
        for ih in 0..g.in_h {
            for iw in 0..g.in_w {
                let mut acc = 0.0f32;
                for oh in g.covering_outputs(0, ih, g.kernel[0]) {
                    for ow in g.covering_outputs(1, iw, g.kernel[1]) {
                        acc += go[oh * g.out_w + ow] / g.avg_divisor(oh, ow);
                    }
                }
                dst[ih * g.in_w + iw] = acc;
            }
        }
    })
}

/// Means over the adaptive windows `[floor(o * H / OH), ceil((o + 1) * H / OH))` (and the
/// same along the width), divided by the height and then the width as PyTorch does.
pub fn adaptive_avg_pool2d(src: &[f32], g: &PoolGeometry) -> Vec<f32> {
    // Every input element is read about once per output plane's worth of windows.
    let work = g.in_plane() + g.out_plane();
    per_plane(g.planes, g.out_plane(), work, |p, dst| {
        let plane = &src[p * g.in_plane()..(p + 1) * g.in_plane()];
        for oh in 0..g.out_h {
            let (h0, h1) = (adaptive_start(oh, g.out_h, g.in_h), adaptive_end(oh, g.out_h, g.in_h));
            for ow in 0..g.out_w {
                let (w0, w1) = (adaptive_start(ow, g.out_w, g.in_w), adaptive_end(ow, g.out_w, g.in_w));
                let mut sum = 0.0f32;
                for h in h0..h1 {
                    for w in w0..w1 {
                        sum += plane[h * g.in_w + w];
                    }
                }
                dst[oh * g.out_w + ow] = sum / (h1 - h0) as f32 / (w1 - w0) as f32;
            }
        }
    })
}

/// Gradient of [`adaptive_avg_pool2d`]: each input position sums `grad / kh / kw` over the
/// windows that contain it.
pub fn adaptive_avg_pool2d_backward(grad_out: &[f32], g: &PoolGeometry) -> Vec<f32> {
    per_plane(g.planes, g.in_plane(), g.in_plane() + g.out_plane(), |plane, dst| {
        let go = &grad_out[plane * g.out_plane()..(plane + 1) * g.out_plane()];
        for ih in 0..g.in_h {
            for iw in 0..g.in_w {
                let mut acc = 0.0f32;
                for oh in adaptive_covering(ih, g.in_h, g.out_h) {
                    let kh = adaptive_end(oh, g.out_h, g.in_h) - adaptive_start(oh, g.out_h, g.in_h);
                    for ow in adaptive_covering(iw, g.in_w, g.out_w) {
                        let kw = adaptive_end(ow, g.out_w, g.in_w) - adaptive_start(ow, g.out_w, g.in_w);
                        acc += go[oh * g.out_w + ow] / kh as f32 / kw as f32;
                    }
                }
                dst[ih * g.in_w + iw] = acc;
            }
        }
    })
}
