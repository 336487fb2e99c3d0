//! 2-D max, average and adaptive average pooling.
//!
//! 1. Both devices against a direct reference written here from PyTorch's definitions
//!    (every window tap by tap, f64 sums, gradients scattered rather than gathered), and
//!    against small cases worked out by hand: ceil mode, `count_include_pad=false`,
//!    divisor overrides, NaN, ties, adaptive windows that overlap.
//! 2. GPU against CPU, forward and backward, on shapes chosen to break kernels: odd sizes,
//!    strides that do not divide, padding, dilation, ceil mode, windows as large as the
//!    input, 1x1 windows, batch 1, 3 and 5 channels, more than one workgroup, views.
//! 3. Every gradient against finite differences on both devices.
//! 4. Modules, unbatched inputs, empty batches, and the argument checks.

mod common;

use common::{dev_name, devices, gpu, integers, randn, uniform_values, within};
use wgrad::nn::{AdaptiveAvgPool2d, AvgPool2d, Forward, MaxPool2d, Module, Sequential};
use wgrad::testing::{compare, cross_check, gradcheck, GradTolerance, Tolerance};
use wgrad::{AvgPool2dOptions, Device, MaxPool2dOptions, Tensor};

// ---- tolerances ----

/// Max pooling picks elements and its gradient sums the same f32 values in the same order
/// on both devices: exact.
const MAX_TOL: Tolerance = Tolerance::Exact;
/// Average forward: the same f32 sum on both devices, then one division (WGSL: 2.5 ulp).
const AVG_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-7, rtol: 1e-6 };
/// Adaptive forward: two divisions (by the height, then the width): 5 ulp.
const ADAPTIVE_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-7, rtol: 2e-6 };
/// Average gradients: a sum of up to a dozen quotients, each off by 2.5 ulp (twice that
/// for adaptive pooling); terms of mixed sign can cancel, hence the absolute part.
const AVG_GRAD_TOL: Tolerance = Tolerance::Elementwise { atol: 1e-6, rtol: 1e-5 };
/// Against the f64 reference: f32 sums of up to 42 elements of size ~1 and one or two
/// f32 divisions.
const REFERENCE_TOL: Tolerance = Tolerance::Elementwise { atol: 2e-6, rtol: 1e-5 };
/// The gradcheck tolerance of tests/autograd.rs: default step, a quarter of the default
/// tolerances. Pooling is piecewise linear, so finite differences are exact up to f32
/// rounding wherever no argmax changes within the step.
const GRAD_TOL: GradTolerance = GradTolerance { eps: 1e-3, atol: 5e-4, rtol: 5e-3 };

// ---- the reference, written from PyTorch's definitions ----

/// One window configuration: kernel, stride, padding, dilation, ceil mode.
#[derive(Clone, Copy, Debug)]
struct Window {
    k: [usize; 2],
    s: [usize; 2],
    p: [usize; 2],
    d: [usize; 2],
    ceil: bool,
}

impl Window {
    fn max_options(&self) -> MaxPool2dOptions {
        MaxPool2dOptions::new(self.k).stride(self.s).padding(self.p).dilation(self.d).ceil_mode(self.ceil)
    }

    fn avg_options(&self) -> AvgPool2dOptions {
        assert_eq!(self.d, [1, 1], "average pooling has no dilation");
        AvgPool2dOptions::new(self.k).stride(self.s).padding(self.p).ceil_mode(self.ceil)
    }

    /// Number of windows along `axis` of an input `len` long, counted one by one. Floor
    /// mode: the windows that fit in the padded input. Ceil mode: the windows that start
    /// less than one stride past the last start of a window that fits, provided they start
    /// in the input or the left padding (not in the right padding).
    fn out_len(&self, axis: usize, len: usize) -> usize {
        let (k, s, p, d) = (self.k[axis], self.s[axis], self.p[axis], self.d[axis]);
        let (span, padded) = ((d * (k - 1) + 1) as isize, (len + 2 * p) as isize);
        let last_fitting_start = padded - span;
        (0..)
            .take_while(|&o| {
                let start = (o * s) as isize;
                if self.ceil {
                    start < last_fitting_start + s as isize && start < (len + p) as isize
                } else {
                    start <= last_fitting_start
                }
            })
            .count()
    }
}

const fn win(k: [usize; 2], s: [usize; 2], p: [usize; 2], d: [usize; 2], ceil: bool) -> Window {
    Window { k, s, p, d, ceil }
}

/// Shapes and windows that break kernels. Each entry is used for max pooling; those with
/// dilation 1 also for average pooling.
const CONFIGS: &[([usize; 4], Window)] = &[
    // Odd sizes, overlapping windows, padding.
    ([2, 3, 7, 9], win([3, 3], [2, 2], [1, 1], [1, 1], false)),
    // Rectangular kernel, dilation on one axis, strides that do not divide, ceil mode.
    ([1, 5, 8, 6], win([2, 3], [3, 2], [1, 1], [2, 1], true)),
    // A window as large as the input: one output per plane.
    ([2, 3, 6, 7], win([6, 7], [1, 1], [0, 0], [1, 1], false)),
    // 1x1 windows: the identity, and a subsampling.
    ([1, 3, 5, 5], win([1, 1], [1, 1], [0, 0], [1, 1], false)),
    ([1, 3, 5, 5], win([1, 1], [2, 2], [0, 0], [1, 1], false)),
    // 1200 outputs and 1430 inputs: five workgroups, the last partial.
    ([2, 5, 13, 11], win([2, 2], [1, 1], [0, 0], [1, 1], false)),
    // Ceil mode with a last window that overhangs the padded edge.
    ([1, 4, 9, 7], win([3, 3], [3, 3], [1, 1], [1, 1], true)),
    // Dilation on both axes, ceil mode, padding on one axis only.
    ([3, 2, 9, 9], win([3, 2], [2, 3], [1, 0], [3, 2], true)),
    // Ceil mode where the rule that windows must start before the right padding drops one.
    ([1, 1, 3, 3], win([2, 2], [2, 2], [1, 1], [1, 1], true)),
    // Stride larger than the kernel: inputs that no window reads.
    ([2, 3, 11, 10], win([2, 3], [4, 3], [1, 0], [1, 1], false)),
];

fn plane_index(shape: [usize; 4], plane: usize, h: usize, w: usize) -> usize {
    plane * shape[2] * shape[3] + h * shape[3] + w
}

/// Max pooling tap by tap: values, flat indices and the output plane size. NaN wins (the
/// last NaN), ties keep the first tap; padding taps are skipped (they are -inf).
fn reference_max(x: &[f32], shape: [usize; 4], win: Window) -> (Vec<f32>, Vec<i32>, [usize; 2]) {
    let (oh, ow) = (win.out_len(0, shape[2]), win.out_len(1, shape[3]));
    let (mut values, mut indices) = (Vec::new(), Vec::new());
    for plane in 0..shape[0] * shape[1] {
        for i in 0..oh {
            for j in 0..ow {
                let mut best: Option<(f32, usize)> = None;
                for a in 0..win.k[0] {
                    for b in 0..win.k[1] {
                        let h = (i * win.s[0] + a * win.d[0]) as isize - win.p[0] as isize;
                        let w = (j * win.s[1] + b * win.d[1]) as isize - win.p[1] as isize;
                        if h < 0 || w < 0 || h >= shape[2] as isize || w >= shape[3] as isize {
                            continue;
                        }
                        let at = h as usize * shape[3] + w as usize;
                        let v = x[plane * shape[2] * shape[3] + at];
                        let better = match best {
                            None => true,
                            Some((b, _)) => v.is_nan() || (!b.is_nan() && v > b),
                        };
                        if better {
                            best = Some((v, at));
                        }
                    }
                }
                let (v, at) = best.expect("every window of the reference configs has an input tap");
                values.push(v);
                indices.push(at as i32);
            }
        }
    }
    (values, indices, [oh, ow])
}

/// Gradient of max pooling: each output gradient added at its recorded index.
fn reference_max_backward(g: &[f32], indices: &[i32], shape: [usize; 4], out: [usize; 2]) -> Vec<f32> {
    let mut gx = vec![0.0f64; shape.iter().product()];
    for (o, (&gv, &at)) in g.iter().zip(indices).enumerate() {
        let plane = o / (out[0] * out[1]);
        gx[plane * shape[2] * shape[3] + at as usize] += gv as f64;
    }
    gx.iter().map(|&v| v as f32).collect()
}

/// One average window: the `(h, w)` input taps it sums, and its divisor.
type AvgWindow = (Vec<(usize, usize)>, f64);

/// For each average window: the input taps it sums and its divisor. The padded count
/// takes the taps that lie in the padded input (in ceil mode the last window may hang
/// past it); the valid count those in the input itself.
fn avg_windows(
    shape: [usize; 4],
    win: Window,
    count_include_pad: bool,
    divisor_override: Option<usize>,
) -> (Vec<AvgWindow>, [usize; 2]) {
    let (oh, ow) = (win.out_len(0, shape[2]), win.out_len(1, shape[3]));
    let mut windows = Vec::new();
    for i in 0..oh {
        for j in 0..ow {
            let (mut taps, mut padded) = (Vec::new(), 0usize);
            for a in 0..win.k[0] {
                for b in 0..win.k[1] {
                    let (ph, pw) = (i * win.s[0] + a, j * win.s[1] + b); // padded coordinates
                    if ph < shape[2] + 2 * win.p[0] && pw < shape[3] + 2 * win.p[1] {
                        padded += 1;
                    }
                    let (h, w) = (ph as isize - win.p[0] as isize, pw as isize - win.p[1] as isize);
                    if h >= 0 && w >= 0 && h < shape[2] as isize && w < shape[3] as isize {
                        taps.push((h as usize, w as usize));
                    }
                }
            }
            let divisor = match divisor_override {
                Some(d) => d,
                None if count_include_pad => padded,
                None => taps.len(),
            };
            windows.push((taps, divisor as f64));
        }
    }
    (windows, [oh, ow])
}

fn reference_avg(x: &[f32], shape: [usize; 4], win: Window, include_pad: bool, divisor: Option<usize>) -> Vec<f32> {
    let (windows, _) = avg_windows(shape, win, include_pad, divisor);
    let mut out = Vec::new();
    for plane in 0..shape[0] * shape[1] {
        for (taps, div) in &windows {
            let sum: f64 = taps.iter().map(|&(h, w)| x[plane_index(shape, plane, h, w)] as f64).sum();
            out.push((sum / div) as f32);
        }
    }
    out
}

fn reference_avg_backward(
    g: &[f32],
    shape: [usize; 4],
    win: Window,
    include_pad: bool,
    div: Option<usize>,
) -> Vec<f32> {
    let (windows, _) = avg_windows(shape, win, include_pad, div);
    let mut gx = vec![0.0f64; shape.iter().product()];
    for plane in 0..shape[0] * shape[1] {
        for (o, (taps, div)) in windows.iter().enumerate() {
            for &(h, w) in taps {
                gx[plane_index(shape, plane, h, w)] += g[plane * windows.len() + o] as f64 / div;
            }
        }
    }
    gx.iter().map(|&v| v as f32).collect()
}

/// Adaptive window `o` of `out` over `len`, from real division.
fn adaptive_range(o: usize, out: usize, len: usize) -> std::ops::Range<usize> {
    let start = (o as f64 * len as f64 / out as f64).floor() as usize;
    let end = ((o + 1) as f64 * len as f64 / out as f64).ceil() as usize;
    start..end
}

fn reference_adaptive(x: &[f32], shape: [usize; 4], out: [usize; 2]) -> Vec<f32> {
    let mut y = Vec::new();
    for plane in 0..shape[0] * shape[1] {
        for i in 0..out[0] {
            for j in 0..out[1] {
                let (rows, cols) = (adaptive_range(i, out[0], shape[2]), adaptive_range(j, out[1], shape[3]));
                let count = (rows.len() * cols.len()) as f64;
                let mut sum = 0.0f64;
                for h in rows {
                    for w in cols.clone() {
                        sum += x[plane_index(shape, plane, h, w)] as f64;
                    }
                }
                y.push((sum / count) as f32);
            }
        }
    }
    y
}

fn reference_adaptive_backward(g: &[f32], shape: [usize; 4], out: [usize; 2]) -> Vec<f32> {
    let mut gx = vec![0.0f64; shape.iter().product()];
    for plane in 0..shape[0] * shape[1] {
        for i in 0..out[0] {
            for j in 0..out[1] {
                let (rows, cols) = (adaptive_range(i, out[0], shape[2]), adaptive_range(j, out[1], shape[3]));
                let share = g[(plane * out[0] + i) * out[1] + j] as f64 / (rows.len() * cols.len()) as f64;
                for h in rows {
                    for w in cols.clone() {
                        gx[plane_index(shape, plane, h, w)] += share;
                    }
                }
            }
        }
    }
    gx.iter().map(|&v| v as f32).collect()
}

// ---- helpers ----

fn cpu() -> Device {
    Device::cpu()
}

fn assert_close(what: &str, actual: &[f32], expected: &[f32], tol: Tolerance) {
    if let Err(e) = compare(actual, expected, tol) {
        panic!("{what}: {e}\n actual   {actual:?}\n expected {expected:?}");
    }
}

/// The gradient of `sum(f(x) * gy)` with respect to `x`, through autograd.
fn grad_of(x: &Tensor, gy: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let x = x.detach().requires_grad();
    let y = f(&x);
    y.backward_with(gy).wrt(&x).clone()
}

/// Random inputs with many exact ties (small integers), some NaN and some -inf: for the
/// max pooling cross-checks, where every tie-break and NaN rule must agree.
fn awkward(shape: [usize; 4], seed: u64, dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = integers(&[n], 5, seed, &cpu())
        .to_vec::<f32>()
        .iter()
        .enumerate()
        .map(|(i, &v)| match i % 29 {
            7 => f32::NAN,
            13 => f32::NEG_INFINITY,
            _ => v,
        })
        .collect();
    Tensor::from_slice(&v, &shape, dev)
}

// ---- 1. against the reference and hand-worked values ----

#[test]
fn max_pool_matches_the_reference_on_every_config() {
    for dev in devices("max_pool_matches_the_reference_on_every_config") {
        for (c, &(shape, win)) in CONFIGS.iter().enumerate() {
            for (kind, x) in
                [("normal", randn(&shape, 100 + c as u64, &dev)), ("awkward", awkward(shape, c as u64, &dev))]
            {
                let what = format!("max_pool2d {kind} {shape:?} {win:?} on {}", dev_name(&dev));
                let xv = x.to_vec::<f32>();
                let (values, indices, out) = reference_max(&xv, shape, win);
                let (y, idx) = x.max_pool2d_with_indices(&win.max_options());
                assert_eq!(y.shape(), &[shape[0], shape[1], out[0], out[1]], "{what}: output shape");
                assert_eq!(idx.shape(), y.shape(), "{what}: indices shape");
                assert_close(&what, &y.to_vec::<f32>(), &values, Tolerance::Exact);
                assert_eq!(idx.to_vec::<i32>(), indices, "{what}: indices");

                let gy = randn(y.shape(), 200 + c as u64, &dev);
                let gx = grad_of(&x, &gy, |x| x.max_pool2d(&win.max_options()));
                let expected = reference_max_backward(&gy.to_vec::<f32>(), &indices, shape, out);
                assert_close(&format!("{what} gradient"), &gx.to_vec::<f32>(), &expected, REFERENCE_TOL);
            }
        }
    }
}

#[test]
fn avg_pool_matches_the_reference_on_every_config() {
    for dev in devices("avg_pool_matches_the_reference_on_every_config") {
        for (c, &(shape, win)) in CONFIGS.iter().enumerate().filter(|(_, (_, w))| w.d == [1, 1]) {
            let x = randn(&shape, 300 + c as u64, &dev);
            let xv = x.to_vec::<f32>();
            for (include_pad, divisor) in [(true, None), (false, None), (true, Some(5)), (false, Some(2))] {
                let what = format!(
                    "avg_pool2d {shape:?} {win:?} count_include_pad={include_pad} divisor={divisor:?} on {}",
                    dev_name(&dev)
                );
                let options = win.avg_options().count_include_pad(include_pad).divisor_override(divisor);
                let y = x.avg_pool2d(&options);
                let out = [win.out_len(0, shape[2]), win.out_len(1, shape[3])];
                assert_eq!(y.shape(), &[shape[0], shape[1], out[0], out[1]], "{what}: output shape");
                let expected = reference_avg(&xv, shape, win, include_pad, divisor);
                assert_close(&what, &y.to_vec::<f32>(), &expected, REFERENCE_TOL);

                let gy = randn(y.shape(), 400 + c as u64, &dev);
                let gx = grad_of(&x, &gy, |x| x.avg_pool2d(&options));
                let expected = reference_avg_backward(&gy.to_vec::<f32>(), shape, win, include_pad, divisor);
                assert_close(&format!("{what} gradient"), &gx.to_vec::<f32>(), &expected, REFERENCE_TOL);
            }
        }
    }
}

/// Input and output sizes whose adaptive windows overlap, do not, cover the whole
/// input, or repeat inputs (output larger than the input).
const ADAPTIVE_CONFIGS: &[([usize; 4], [usize; 2])] = &[
    ([2, 3, 7, 11], [3, 5]),
    ([1, 5, 9, 9], [1, 1]),
    ([2, 3, 4, 6], [9, 13]),
    ([1, 3, 10, 8], [5, 4]),
    ([2, 5, 13, 11], [13, 11]),
    ([1, 3, 5, 7], [1, 6]),
    ([3, 2, 1, 1], [4, 3]),
    ([2, 5, 17, 16], [6, 7]),
];

#[test]
fn adaptive_avg_pool_matches_the_reference_on_every_config() {
    for dev in devices("adaptive_avg_pool_matches_the_reference_on_every_config") {
        for (c, &(shape, out)) in ADAPTIVE_CONFIGS.iter().enumerate() {
            let what = format!("adaptive_avg_pool2d {shape:?} to {out:?} on {}", dev_name(&dev));
            let x = randn(&shape, 500 + c as u64, &dev);
            let y = x.adaptive_avg_pool2d(out);
            assert_eq!(y.shape(), &[shape[0], shape[1], out[0], out[1]], "{what}: output shape");
            assert_close(&what, &y.to_vec::<f32>(), &reference_adaptive(&x.to_vec::<f32>(), shape, out), REFERENCE_TOL);

            let gy = randn(y.shape(), 600 + c as u64, &dev);
            let gx = grad_of(&x, &gy, |x| x.adaptive_avg_pool2d(out));
            let expected = reference_adaptive_backward(&gy.to_vec::<f32>(), shape, out);
            assert_close(&format!("{what} gradient"), &gx.to_vec::<f32>(), &expected, REFERENCE_TOL);
        }
    }
}

/// `[[0, 1, 2], [3, 4, 5], [6, 7, 8]]` with kernel 2, stride 2, padding 1 in ceil mode.
/// The output is 2x2: a third window would start at padded row 4, in the right padding,
/// so PyTorch drops it. Rows covered: [-1, 0] and [1, 2], both counted as 2 long.
#[test]
fn ceil_mode_drops_a_window_that_starts_in_the_right_padding() {
    for dev in devices("ceil_mode_drops_a_window_that_starts_in_the_right_padding") {
        let x = Tensor::arange(0.0, 9.0, 1.0, &dev).reshape(&[1, 1, 3, 3]);
        let (y, idx) = x.max_pool2d_with_indices(&MaxPool2dOptions::new(2).padding(1).ceil_mode(true));
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(y.to_vec::<f32>(), [0.0, 2.0, 6.0, 8.0], "{}", dev_name(&dev));
        assert_eq!(idx.to_vec::<i32>(), [0, 2, 6, 8], "{}", dev_name(&dev));

        let avg = AvgPool2dOptions::new(2).padding(1).ceil_mode(true);
        // With padding counted every window divides by 4.
        assert_eq!(x.avg_pool2d(&avg).to_vec::<f32>(), [0.0, 0.75, 2.25, 6.0], "{}", dev_name(&dev));
        // Without: by 1, 2, 2 and 4 input elements.
        let y = x.avg_pool2d(&avg.count_include_pad(false));
        assert_eq!(y.to_vec::<f32>(), [0.0, 1.5, 4.5, 6.0], "{}", dev_name(&dev));
    }
}

/// `arange(25)` as 5x5 with kernel 2 in ceil mode: 3x3, the last row and column of
/// windows holding a single input row or column.
#[test]
fn ceil_mode_keeps_a_last_partial_window() {
    for dev in devices("ceil_mode_keeps_a_last_partial_window") {
        let x = Tensor::arange(0.0, 25.0, 1.0, &dev).reshape(&[1, 1, 5, 5]);
        assert_eq!(x.max_pool2d(&MaxPool2dOptions::new(2)).shape(), &[1, 1, 2, 2]);
        let (y, idx) = x.max_pool2d_with_indices(&MaxPool2dOptions::new(2).ceil_mode(true));
        let expected = [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0];
        assert_eq!(y.to_vec::<f32>(), expected, "{}", dev_name(&dev));
        assert_eq!(idx.to_vec::<i32>(), expected.map(|v| v as i32), "{}", dev_name(&dev));
        // The partial windows are not padded, so both divisor rules count their elements:
        // [0, 1, 5, 6] / 4 = 3, [4, 9] / 2 = 6.5, [20, 21] / 2 = 20.5, [24] / 1 = 24.
        for include_pad in [true, false] {
            let y = x.avg_pool2d(&AvgPool2dOptions::new(2).ceil_mode(true).count_include_pad(include_pad));
            let expected = [3.0, 5.0, 6.5, 13.0, 15.0, 16.5, 20.5, 22.5, 24.0];
            assert_eq!(y.to_vec::<f32>(), expected, "{} count_include_pad={include_pad}", dev_name(&dev));
        }
    }
}

/// A row `[1, 2, 3, 4]`, kernel (1, 3), stride (1, 2), padding (0, 1), ceil mode: three
/// windows over padded columns [-1, 1], [1, 3] and [3, 5]. Column 5 lies past the padded
/// edge (which ends at 4), so with padding counted the last window divides by 2, not 3.
#[test]
fn avg_pool_divisors_in_ceil_mode_follow_pytorch() {
    for dev in devices("avg_pool_divisors_in_ceil_mode_follow_pytorch") {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 1, 1, 4], &dev);
        let o = AvgPool2dOptions::new((1, 3)).stride((1, 2)).padding((0, 1)).ceil_mode(true);
        let name = dev_name(&dev);
        assert_eq!(x.avg_pool2d(&o).to_vec::<f32>(), [1.0, 3.0, 2.0], "{name}");
        assert_eq!(x.avg_pool2d(&o.count_include_pad(false)).to_vec::<f32>(), [1.5, 3.0, 4.0], "{name}");
        assert_eq!(x.avg_pool2d(&o.divisor_override(Some(2))).to_vec::<f32>(), [1.5, 4.5, 2.0], "{name}");
        // Each input gathers 1/divisor from every window that holds it: column 1 and 3 are
        // in two windows.
        let gx = grad_of(&x, &Tensor::ones(&[1, 1, 1, 3], &dev), |x| x.avg_pool2d(&o));
        let third = 1.0f32 / 3.0;
        assert_close(name, &gx.to_vec::<f32>(), &[third, 2.0 * third, third, third + 0.5], REFERENCE_TOL);
    }
}

#[test]
fn max_pool_propagates_nan_and_takes_the_first_of_equal_maxima() {
    for dev in devices("max_pool_propagates_nan_and_takes_the_first_of_equal_maxima") {
        let nan = f32::NAN;
        let inf = f32::INFINITY;
        // Four 2x2 windows of a 2x8 plane (row-major window order: top left, top right,
        // bottom left, bottom right).
        #[rustfmt::skip]
        let v = [
            1.0, 3.0,   nan, 2.0,   -inf, -inf,   5.0, inf,
            3.0, 2.0,   9.0, nan,   -inf, -inf,   inf, 5.0,
        ];
        let x = Tensor::from_slice(&v, &[1, 1, 2, 8], &dev);
        let (y, idx) = x.max_pool2d_with_indices(&MaxPool2dOptions::new(2));
        let y = y.to_vec::<f32>();
        let name = dev_name(&dev);
        assert_eq!(y[0], 3.0, "{name}");
        assert!(y[1].is_nan(), "{name}: a NaN in the window makes the maximum NaN, got {}", y[1]);
        assert_eq!(y[2], -inf, "{name}");
        assert_eq!(y[3], inf, "{name}");
        // First 3 (not the one below it); the last NaN; the first -inf; the first +inf.
        assert_eq!(idx.to_vec::<i32>(), [1, 11, 4, 7], "{name}");
        // The gradient goes to the recorded position only.
        let gx = grad_of(&x, &Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 1, 1, 4], &dev), |x| {
            x.max_pool2d(&MaxPool2dOptions::new(2))
        });
        let mut expected = [0.0f32; 16];
        (expected[1], expected[11], expected[4], expected[7]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(gx.to_vec::<f32>(), expected, "{name}");
    }
}

/// Windows [0, 2), [1, 4) and [3, 5) of five columns, which overlap; and the output
/// larger than the input, where inputs repeat.
#[test]
fn adaptive_windows_overlap_and_repeat_as_in_pytorch() {
    for dev in devices("adaptive_windows_overlap_and_repeat_as_in_pytorch") {
        let name = dev_name(&dev);
        let x = Tensor::arange(0.0, 5.0, 1.0, &dev).reshape(&[1, 1, 5]);
        assert_eq!(x.adaptive_avg_pool2d((1, 3)).to_vec::<f32>(), [0.5, 2.0, 3.5], "{name}");
        let gx =
            grad_of(&x, &Tensor::from_slice(&[2.0f32, 3.0, 4.0], &[1, 1, 3], &dev), |x| x.adaptive_avg_pool2d((1, 3)));
        assert_close(name, &gx.to_vec::<f32>(), &[1.0, 2.0, 1.0, 3.0, 2.0], REFERENCE_TOL);

        let x = Tensor::from_slice(&[2.0f32, 6.0], &[1, 1, 2], &dev);
        assert_eq!(x.adaptive_avg_pool2d((1, 3)).to_vec::<f32>(), [2.0, 4.0, 6.0], "{name}");
        let x = Tensor::arange(0.0, 12.0, 1.0, &dev).reshape(&[1, 3, 4]);
        assert_eq!(x.adaptive_avg_pool2d(1).to_vec::<f32>(), [5.5], "{name}");
    }
}

/// An all-padding window (dilation 3 over a width of 2 with padding 1: taps at -1 and 2)
/// yields -inf as PyTorch does, and no gradient.
#[test]
fn a_max_window_of_padding_only_gives_minus_infinity() {
    for dev in devices("a_max_window_of_padding_only_gives_minus_infinity") {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[1, 1, 2, 2], &dev);
        let o = MaxPool2dOptions::new((1, 2)).stride(1).padding((0, 1)).dilation((1, 3));
        let y = x.max_pool2d(&o);
        assert_eq!(y.to_vec::<f32>(), [f32::NEG_INFINITY; 2], "{}", dev_name(&dev));
        let gx = grad_of(&x, &Tensor::ones(&[1, 1, 2, 1], &dev), |x| x.max_pool2d(&o));
        assert_eq!(gx.to_vec::<f32>(), [0.0; 4], "{}", dev_name(&dev));
    }
}

// ---- 2. GPU against CPU ----

#[test]
fn gpu_max_pool_agrees_with_cpu() {
    let Some(gpu) = gpu("gpu_max_pool_agrees_with_cpu") else { return };
    for (c, &(shape, win)) in CONFIGS.iter().enumerate() {
        let o = win.max_options();
        let name = format!("max_pool2d {shape:?} {win:?}");
        let inputs = move |d: &Device| vec![awkward(shape, 40 + c as u64, d), randn(&shape, 50 + c as u64, d)];
        cross_check(&name, &gpu, MAX_TOL, inputs, |x| x[0].max_pool2d(&o));
        cross_check(&format!("{name} indices"), &gpu, MAX_TOL, inputs, |x| x[0].max_pool2d_with_indices(&o).1);
        cross_check(&format!("{name} on normal values"), &gpu, MAX_TOL, inputs, |x| x[1].max_pool2d(&o));
        // The gradient on tied inputs: both devices must send it to the same elements.
        let grad_inputs = move |d: &Device| {
            let x = awkward(shape, 60 + c as u64, d);
            let gy = randn(x.max_pool2d(&o).shape(), 70 + c as u64, d);
            vec![x, gy]
        };
        cross_check(&format!("{name} gradient"), &gpu, MAX_TOL, grad_inputs, |x| {
            grad_of(&x[0], &x[1], |x| x.max_pool2d(&o))
        });
    }
}

#[test]
fn gpu_avg_pool_agrees_with_cpu() {
    let Some(gpu) = gpu("gpu_avg_pool_agrees_with_cpu") else { return };
    for (c, &(shape, win)) in CONFIGS.iter().enumerate().filter(|(_, (_, w))| w.d == [1, 1]) {
        for (include_pad, divisor) in [(true, None), (false, None), (false, Some(3))] {
            let o = win.avg_options().count_include_pad(include_pad).divisor_override(divisor);
            let name = format!("avg_pool2d {shape:?} {win:?} count_include_pad={include_pad} divisor={divisor:?}");
            cross_check(&name, &gpu, AVG_TOL, move |d| vec![randn(&shape, 80 + c as u64, d)], |x| x[0].avg_pool2d(&o));
            let grad_inputs = move |d: &Device| {
                let x = randn(&shape, 90 + c as u64, d);
                let gy = randn(x.avg_pool2d(&o).shape(), 95 + c as u64, d);
                vec![x, gy]
            };
            cross_check(&format!("{name} gradient"), &gpu, AVG_GRAD_TOL, grad_inputs, |x| {
                grad_of(&x[0], &x[1], |x| x.avg_pool2d(&o))
            });
        }
    }
}

#[test]
fn gpu_adaptive_avg_pool_agrees_with_cpu() {
    let Some(gpu) = gpu("gpu_adaptive_avg_pool_agrees_with_cpu") else { return };
    for (c, &(shape, out)) in ADAPTIVE_CONFIGS.iter().enumerate() {
        let name = format!("adaptive_avg_pool2d {shape:?} to {out:?}");
        cross_check(
            &name,
            &gpu,
            ADAPTIVE_TOL,
            move |d| vec![randn(&shape, 110 + c as u64, d)],
            move |x| x[0].adaptive_avg_pool2d(out),
        );
        let grad_inputs = move |d: &Device| {
            vec![randn(&shape, 120 + c as u64, d), randn(&[shape[0], shape[1], out[0], out[1]], 130 + c as u64, d)]
        };
        cross_check(&format!("{name} gradient"), &gpu, AVG_GRAD_TOL, grad_inputs, move |x| {
            grad_of(&x[0], &x[1], |x| x.adaptive_avg_pool2d(out))
        });
    }
}

/// Inputs that are views (NHWC data permuted to NCHW, a narrowed batch) and unbatched
/// inputs, on both devices.
#[test]
fn gpu_pooling_of_views_and_unbatched_inputs_agrees_with_cpu() {
    let Some(gpu) = gpu("gpu_pooling_of_views_and_unbatched_inputs_agrees_with_cpu") else { return };
    let nhwc = |d: &Device| vec![randn(&[2, 7, 9, 3], 140, d).permute(&[0, 3, 1, 2])];
    let narrowed = |d: &Device| vec![randn(&[4, 5, 6, 7], 141, d).narrow(0, 1, 2)];
    let unbatched = |d: &Device| vec![randn(&[5, 7, 9], 142, d)];
    let max = MaxPool2dOptions::new(3).stride(2).padding(1);
    let avg = AvgPool2dOptions::new((2, 3)).stride((1, 2)).ceil_mode(true);
    for (name, inputs) in
        [("permuted", &nhwc as &dyn Fn(&Device) -> Vec<Tensor>), ("narrowed", &narrowed), ("unbatched", &unbatched)]
    {
        cross_check(&format!("max_pool2d of {name}"), &gpu, MAX_TOL, inputs, |x| x[0].max_pool2d(&max));
        cross_check(&format!("avg_pool2d of {name}"), &gpu, AVG_TOL, inputs, |x| x[0].avg_pool2d(&avg));
        cross_check(&format!("adaptive_avg_pool2d of {name}"), &gpu, ADAPTIVE_TOL, inputs, |x| {
            x[0].adaptive_avg_pool2d((3, 4))
        });
    }
}

// ---- 3. gradients against finite differences ----

/// A gradcheck input: row-major values and a shape.
type Input = (Vec<f32>, Vec<usize>);

/// Distinct multiples of 0.1 in random order: no two elements of a window come within 0.1
/// of each other, so the step of the finite differences never changes an argmax.
fn distinct(shape: &[usize], seed: u64) -> Input {
    let n: usize = shape.iter().product();
    let keys = uniform_values(n, 0.0, 1.0, seed);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| keys[i].total_cmp(&keys[j]));
    let mut v = vec![0.0; n];
    for (rank, &i) in order.iter().enumerate() {
        v[i] = (rank as f32 - (n / 2) as f32) * 0.1;
    }
    (v, shape.to_vec())
}

fn smooth(shape: &[usize], seed: u64) -> Input {
    (uniform_values(shape.iter().product(), -2.0, 2.0, seed), shape.to_vec())
}

type Pool = Box<dyn Fn(&Tensor) -> Tensor>;

fn gradcheck_cases() -> Vec<(&'static str, Input, Pool)> {
    let max = |o: MaxPool2dOptions| -> Pool { Box::new(move |x| x.max_pool2d(&o)) };
    let avg = |o: AvgPool2dOptions| -> Pool { Box::new(move |x| x.avg_pool2d(&o)) };
    let adaptive = |s: (usize, usize)| -> Pool { Box::new(move |x| x.adaptive_avg_pool2d(s)) };
    vec![
        ("max_pool2d k3 s2 p1", distinct(&[2, 3, 5, 6], 1), max(MaxPool2dOptions::new(3).stride(2).padding(1))),
        (
            "max_pool2d k(2,3) d2 ceil",
            distinct(&[1, 3, 7, 8], 2),
            max(MaxPool2dOptions::new((2, 3)).stride((2, 1)).dilation(2).ceil_mode(true)),
        ),
        ("max_pool2d unbatched k2", distinct(&[3, 5, 5], 3), max(MaxPool2dOptions::new(2))),
        (
            "max_pool2d indices path",
            distinct(&[2, 2, 4, 5], 4),
            Box::new(|x| x.max_pool2d_with_indices(&MaxPool2dOptions::new(2).stride(1)).0),
        ),
        ("avg_pool2d k3 s2 p1", smooth(&[2, 3, 5, 6], 5), avg(AvgPool2dOptions::new(3).stride(2).padding(1))),
        (
            "avg_pool2d ceil count_include_pad=false",
            smooth(&[1, 3, 7, 8], 6),
            avg(AvgPool2dOptions::new((3, 2)).stride(2).padding(1).ceil_mode(true).count_include_pad(false)),
        ),
        (
            "avg_pool2d divisor_override",
            smooth(&[3, 5, 6], 7),
            avg(AvgPool2dOptions::new(2).stride(1).divisor_override(Some(3))),
        ),
        ("adaptive_avg_pool2d to (3, 4)", smooth(&[2, 3, 5, 7], 8), adaptive((3, 4))),
        ("adaptive_avg_pool2d to (7, 9)", smooth(&[1, 3, 4, 5], 9), adaptive((7, 9))),
        ("adaptive_avg_pool2d to 1", smooth(&[3, 4, 5], 10), adaptive((1, 1))),
    ]
}

#[test]
fn pooling_gradients_match_finite_differences() {
    let mut failures = Vec::new();
    let mut count = 0;
    for dev in devices("pooling_gradients_match_finite_differences") {
        for (name, input, f) in gradcheck_cases() {
            count += 1;
            if let Err(e) = gradcheck(name, &dev, &[input], GRAD_TOL, |x| f(&x[0])) {
                failures.push(e);
            }
        }
    }
    assert!(failures.is_empty(), "{} of {count} gradchecks failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn max_pool_indices_carry_no_gradient_and_the_values_do() {
    let x = Tensor::randn(&[1, 2, 4, 4], 3, &cpu()).requires_grad();
    let (y, idx) = x.max_pool2d_with_indices(&MaxPool2dOptions::new(2));
    assert!(y.is_tracked());
    assert!(!idx.is_tracked(), "indices are integers: no gradient flows through them");
    assert_eq!(idx.dtype(), wgrad::DType::I32);
    let grads = y.sum_all().backward();
    // Each of the 8 windows sends 1 to its maximum.
    assert_eq!(grads.wrt(&x).sum_all().item(), 8.0);
}

// ---- 4. modules, shapes and argument checks ----

#[test]
fn modules_describe_themselves_like_pytorch_and_pool_like_the_functions() {
    let x = Tensor::randn(&[2, 3, 9, 8], 5, &cpu());
    let m = MaxPool2d::new(2);
    assert_eq!(m.describe(), "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
    assert_eq!(m.forward(&x).to_vec::<f32>(), x.max_pool2d(&MaxPool2dOptions::new(2)).to_vec::<f32>());
    let o = MaxPool2dOptions::new((3, 2)).stride(1).padding((1, 0)).dilation((1, 2)).ceil_mode(true);
    let m = MaxPool2d::with_options(o);
    assert_eq!(
        m.describe(),
        "MaxPool2d(kernel_size=(3, 2), stride=1, padding=(1, 0), dilation=(1, 2), ceil_mode=True)"
    );
    assert_eq!(m.options(), &o);
    let (y, idx) = m.forward_with_indices(&x);
    assert_eq!(y.to_vec::<f32>(), x.max_pool2d(&o).to_vec::<f32>());
    assert_eq!(idx.to_vec::<i32>(), x.max_pool2d_with_indices(&o).1.to_vec::<i32>());

    let a = AvgPool2d::new(3);
    assert_eq!(a.describe(), "AvgPool2d(kernel_size=3, stride=3, padding=0)");
    let o = AvgPool2dOptions::new(3).stride(2).padding(1).count_include_pad(false).divisor_override(Some(4));
    let a = AvgPool2d::with_options(o);
    assert_eq!(
        a.describe(),
        "AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False, divisor_override=4)"
    );
    assert_eq!(a.options(), &o);
    assert_eq!(a.forward(&x).to_vec::<f32>(), x.avg_pool2d(&o).to_vec::<f32>());

    let g = AdaptiveAvgPool2d::new(1);
    assert_eq!(g.describe(), "AdaptiveAvgPool2d(output_size=1)");
    assert_eq!(g.output_size(), [1, 1]);
    let global = (g.forward(&x).to_vec::<f32>(), x.mean(&[2, 3], true).to_vec::<f32>());
    assert_close("AdaptiveAvgPool2d(1)", &global.0, &global.1, within(1e-6, 1e-5));
    assert_eq!(AdaptiveAvgPool2d::new((5, 7)).describe(), "AdaptiveAvgPool2d(output_size=(5, 7))");

    for m in [&MaxPool2d::new(2) as &dyn Module, &AvgPool2d::new(2), &AdaptiveAvgPool2d::new(2)] {
        assert_eq!(m.num_parameters(), 0, "{} has no parameters", m.describe());
    }
    let net = Sequential::new().add(MaxPool2d::new(2)).add(AvgPool2d::new(2)).add(AdaptiveAvgPool2d::new(1));
    assert_eq!(net.forward(&x).shape(), &[2, 3, 1, 1]);
}

#[test]
fn global_adaptive_pooling_is_the_mean_over_the_plane() {
    for dev in devices("global_adaptive_pooling_is_the_mean_over_the_plane") {
        let x = randn(&[3, 5, 7, 9], 9, &dev);
        let y = x.adaptive_avg_pool2d(1).to_vec::<f32>();
        let mean = x.mean(&[2, 3], true).to_vec::<f32>();
        assert_close(dev_name(&dev), &y, &mean, within(1e-6, 1e-5));
    }
}

#[test]
fn unbatched_inputs_pool_like_a_batch_of_one() {
    for dev in devices("unbatched_inputs_pool_like_a_batch_of_one") {
        let x = randn(&[3, 7, 6], 11, &dev);
        let batched = x.reshape(&[1, 3, 7, 6]);
        let o = MaxPool2dOptions::new(3).stride(2).padding(1);
        let (y, idx) = x.max_pool2d_with_indices(&o);
        let (yb, idxb) = batched.max_pool2d_with_indices(&o);
        assert_eq!(y.shape(), &[3, 4, 3]);
        assert_eq!(idx.shape(), &[3, 4, 3]);
        assert_eq!(y.to_vec::<f32>(), yb.to_vec::<f32>());
        assert_eq!(idx.to_vec::<i32>(), idxb.to_vec::<i32>());
        let a = AvgPool2dOptions::new(2).ceil_mode(true);
        assert_eq!(x.avg_pool2d(&a).shape(), &[3, 4, 3]);
        assert_eq!(x.avg_pool2d(&a).to_vec::<f32>(), batched.avg_pool2d(&a).to_vec::<f32>());
        assert_eq!(x.adaptive_avg_pool2d((2, 5)).shape(), &[3, 2, 5]);
        let gx = grad_of(&x, &randn(&[3, 2, 5], 12, &dev), |x| x.adaptive_avg_pool2d((2, 5)));
        assert_eq!(gx.shape(), &[3, 7, 6]);
    }
}

/// An empty batch pools to an empty batch (as PyTorch allows), and so does an adaptive
/// output size of 0; their gradients are zeros of the input's shape.
#[test]
fn empty_batches_and_empty_outputs() {
    for dev in devices("empty_batches_and_empty_outputs") {
        let x = Tensor::zeros(&[0, 3, 4, 4], &dev);
        assert_eq!(x.max_pool2d(&MaxPool2dOptions::new(2)).shape(), &[0, 3, 2, 2]);
        assert_eq!(x.max_pool2d_with_indices(&MaxPool2dOptions::new(2)).1.shape(), &[0, 3, 2, 2]);
        assert_eq!(x.avg_pool2d(&AvgPool2dOptions::new(2)).shape(), &[0, 3, 2, 2]);
        assert_eq!(x.adaptive_avg_pool2d(3).shape(), &[0, 3, 3, 3]);
        let x = randn(&[2, 3, 4, 4], 13, &dev);
        let gx = grad_of(&x, &Tensor::zeros(&[2, 3, 0, 3], &dev), |x| x.adaptive_avg_pool2d((0, 3)));
        assert_eq!(gx.to_vec::<f32>(), vec![0.0; 96], "{}", dev_name(&dev));
    }
}

#[test]
#[should_panic(expected = "max_pool2d: padding [2, 1] must be at most half of kernel_size [3, 3]")]
fn padding_over_half_the_kernel_panics() {
    Tensor::zeros(&[1, 1, 8, 8], &cpu()).max_pool2d(&MaxPool2dOptions::new(3).padding((2, 1)));
}

#[test]
#[should_panic(expected = "avg_pool2d: padding [1, 1] must be at most half of kernel_size [1, 1]")]
fn avg_padding_over_half_the_kernel_panics() {
    Tensor::zeros(&[1, 1, 8, 8], &cpu()).avg_pool2d(&AvgPool2dOptions::new(1).padding(1));
}

#[test]
#[should_panic(expected = "max_pool2d: stride must be positive, got [0, 2]")]
fn zero_stride_panics() {
    Tensor::zeros(&[1, 1, 8, 8], &cpu()).max_pool2d(&MaxPool2dOptions::new(2).stride((0, 2)));
}

#[test]
#[should_panic(expected = "avg_pool2d: kernel_size must be positive, got [2, 0]")]
fn zero_kernel_panics() {
    Tensor::zeros(&[1, 1, 8, 8], &cpu()).avg_pool2d(&AvgPool2dOptions::new((2, 0)));
}

#[test]
#[should_panic(expected = "max_pool2d: dilation must be positive, got [0, 0]")]
fn zero_dilation_panics() {
    Tensor::zeros(&[1, 1, 8, 8], &cpu()).max_pool2d(&MaxPool2dOptions::new(2).dilation(0));
}

#[test]
#[should_panic(expected = "max_pool2d: input of spatial size 4x4 is too small for kernel_size [3, 3], stride [3, 3], \
                           padding [0, 0], dilation [2, 2]: the output would be 0x0")]
fn input_smaller_than_the_window_panics() {
    Tensor::zeros(&[1, 1, 4, 4], &cpu()).max_pool2d(&MaxPool2dOptions::new(3).dilation(2));
}

#[test]
#[should_panic(expected = "avg_pool2d: input of spatial size 5x2 is too small")]
fn avg_input_smaller_than_the_window_panics() {
    Tensor::zeros(&[2, 5, 2], &cpu()).avg_pool2d(&AvgPool2dOptions::new(3));
}

#[test]
#[should_panic(expected = "avg_pool2d: divisor_override must be non-zero")]
fn zero_divisor_override_panics() {
    Tensor::zeros(&[1, 1, 4, 4], &cpu()).avg_pool2d(&AvgPool2dOptions::new(2).divisor_override(Some(0)));
}

#[test]
#[should_panic(expected = "max_pool2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape [4, 4]")]
fn a_2d_input_panics() {
    Tensor::zeros(&[4, 4], &cpu()).max_pool2d(&MaxPool2dOptions::new(2));
}

#[test]
#[should_panic(
    expected = "adaptive_avg_pool2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape [1, 2, 3, 4, 5]"
)]
fn a_5d_input_panics() {
    Tensor::zeros(&[1, 2, 3, 4, 5], &cpu()).adaptive_avg_pool2d(2);
}

#[test]
#[should_panic(
    expected = "adaptive_avg_pool2d: input of shape [2, 3, 0, 4] has an empty channel, height or width dimension"
)]
fn an_empty_plane_panics() {
    Tensor::zeros(&[2, 3, 0, 4], &cpu()).adaptive_avg_pool2d(2);
}

#[test]
#[should_panic(expected = "max_pool2d: expected a f32 tensor")]
fn an_integer_input_panics() {
    Tensor::from_slice(&[1i32; 16], &[1, 1, 4, 4], &cpu()).max_pool2d(&MaxPool2dOptions::new(2));
}
