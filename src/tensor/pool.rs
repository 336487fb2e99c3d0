//! 2-D pooling: max, average and adaptive average, with PyTorch's arguments, defaults,
//! output sizes and edge cases.
//!
//! Arguments are checked here, once, and turned into a [`PoolGeometry`] that the CPU
//! functions and the WGSL kernels share. A 3-D `(C, H, W)` input is pooled as a batch of
//! one and reshaped back, so the kernels only ever see NCHW. The gradient rules run the
//! backward kernels, which gather into each input position rather than scatter from each
//! output, so the GPU needs no float atomics.

use super::Size2;
use super::Tensor;
use crate::autograd::FusedGrad;
use crate::autograd::GradOp;
use crate::dtype::DType;
use crate::op::pool::PoolGeometry;
use crate::op::PoolOp;

/// Options of [`Tensor::max_pool2d`], built like PyTorch's keyword arguments:
///
/// ```
/// use wgrad::MaxPool2dOptions;
/// let o = MaxPool2dOptions::new(3).stride(2).padding(1).ceil_mode(true);
/// assert_eq!((o.kernel_size, o.stride, o.padding, o.dilation), ([3, 3], [2, 2], [1, 1], [1, 1]));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaxPool2dOptions {
    /// Window size `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// Step between windows; defaults to the kernel size (non-overlapping windows).
    pub stride: [usize; 2],
    /// Implicit `-inf` padding on each side; at most half the kernel size. Default 0.
    pub padding: [usize; 2],
    /// Spacing between the taps of a window. Default 1.
    pub dilation: [usize; 2],
    /// Round the output size up instead of down, so a last partial window is kept.
    /// Default `false`.
    pub ceil_mode: bool,
}

impl MaxPool2dOptions {
    /// A `kernel_size` window with stride `kernel_size`, no padding, dilation 1, floor mode.
    pub fn new(kernel_size: impl Into<Size2>) -> MaxPool2dOptions {
        let k = kernel_size.into().0;
        MaxPool2dOptions { kernel_size: k, stride: k, padding: [0, 0], dilation: [1, 1], ceil_mode: false }
    }

    /// Sets the step between windows.
    pub fn stride(mut self, stride: impl Into<Size2>) -> Self {
        self.stride = stride.into().0;
        self
    }

    /// Sets the implicit `-inf` padding on each side.
    pub fn padding(mut self, padding: impl Into<Size2>) -> Self {
        self.padding = padding.into().0;
        self
    }

    /// Sets the spacing between the taps of a window.
    pub fn dilation(mut self, dilation: impl Into<Size2>) -> Self {
        self.dilation = dilation.into().0;
        self
    }

    /// Rounds the output size up (`true`) or down (`false`).
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }
}

/// Options of [`Tensor::avg_pool2d`], built like PyTorch's keyword arguments:
///
/// ```
/// use wgrad::AvgPool2dOptions;
/// let o = AvgPool2dOptions::new((2, 3)).padding((1, 0)).count_include_pad(false);
/// assert_eq!((o.kernel_size, o.stride, o.padding), ([2, 3], [2, 3], [1, 0]));
/// assert_eq!(o.divisor_override, None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AvgPool2dOptions {
    /// Window size `[kh, kw]`.
    pub kernel_size: [usize; 2],
    /// Step between windows; defaults to the kernel size (non-overlapping windows).
    pub stride: [usize; 2],
    /// Implicit zero padding on each side; at most half the kernel size. Default 0.
    pub padding: [usize; 2],
    /// Round the output size up instead of down, so a last partial window is kept.
    /// Default `false`.
    pub ceil_mode: bool,
    /// Whether the padding counts in a window's divisor (it never adds to the sum).
    /// Default `true`, as PyTorch.
    pub count_include_pad: bool,
    /// Divide every window sum by this number instead of its element count. Default `None`.
    pub divisor_override: Option<usize>,
}

impl AvgPool2dOptions {
    /// A `kernel_size` window with stride `kernel_size`, no padding, floor mode, padding
    /// counted in the divisor and no divisor override.
    pub fn new(kernel_size: impl Into<Size2>) -> AvgPool2dOptions {
        let k = kernel_size.into().0;
        AvgPool2dOptions {
            kernel_size: k,
            stride: k,
            padding: [0, 0],
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }

    /// Sets the step between windows.
    pub fn stride(mut self, stride: impl Into<Size2>) -> Self {
        self.stride = stride.into().0;
        self
    }

    /// Sets the implicit zero padding on each side.
    pub fn padding(mut self, padding: impl Into<Size2>) -> Self {
        self.padding = padding.into().0;
        self
    }

    /// Rounds the output size up (`true`) or down (`false`).
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// Counts the padding in each window's divisor (`true`) or only the input elements.
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.count_include_pad = count_include_pad;
        self
    }

    /// Divides every window sum by a fixed number (`Some(d)`, `d > 0`) or by its count (`None`).
    pub fn divisor_override(mut self, divisor: Option<usize>) -> Self {
        self.divisor_override = divisor;
        self
    }
}

/// Output length of a pooling along one axis, as PyTorch's `pooling_output_shape`: floor
/// (or ceil) of `(len + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1`, and in ceil
/// mode one less when the last window would start past the input and its left padding.
/// Negative or zero when the input is too small.
fn pooled_len(len: usize, kernel: usize, stride: usize, pad: usize, dilation: usize, ceil_mode: bool) -> isize {
    // i128 holds every intermediate of usize arguments; the result is checked by the caller.
    let (len, kernel, stride, pad, dilation) =
        (len as i128, kernel as i128, stride as i128, pad as i128, dilation as i128);
    // A window past i128 is larger than any input: it leaves no output.
    let span = dilation.checked_mul(kernel - 1).map_or(i128::MAX / 4, |s| s + 1);
    let rounding = if ceil_mode { stride - 1 } else { 0 };
    let mut out = (len + 2 * pad - span + rounding).div_euclid(stride) + 1;
    if ceil_mode && (out - 1) * stride >= len + pad {
        out -= 1;
    }
    out.clamp(isize::MIN as i128, isize::MAX as i128) as isize
}

/// Checks the window arguments of `op` against the input's plane size `[h, w]` and
/// returns the output plane size. Panics with PyTorch's conditions, naming the op.
fn window_output(
    op: &str,
    plane: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> [usize; 2] {
    assert!(kernel.iter().all(|&k| k > 0), "{op}: kernel_size must be positive, got {kernel:?}");
    assert!(stride.iter().all(|&s| s > 0), "{op}: stride must be positive, got {stride:?}");
    assert!(dilation.iter().all(|&d| d > 0), "{op}: dilation must be positive, got {dilation:?}");
    assert!(
        padding[0] <= kernel[0] / 2 && padding[1] <= kernel[1] / 2,
        "{op}: padding {padding:?} must be at most half of kernel_size {kernel:?}"
    );
    let out: [isize; 2] =
        std::array::from_fn(|a| pooled_len(plane[a], kernel[a], stride[a], padding[a], dilation[a], ceil_mode));
    assert!(
        out[0] >= 1 && out[1] >= 1,
        "{op}: input of spatial size {}x{} is too small for kernel_size {kernel:?}, stride {stride:?}, \
         padding {padding:?}, dilation {dilation:?}: the output would be {}x{}",
        plane[0],
        plane[1],
        out[0],
        out[1]
    );
    [out[0] as usize, out[1] as usize]
}

fn is_backward(op: PoolOp) -> bool {
    matches!(op, PoolOp::MaxPool2dBackward | PoolOp::AvgPool2dBackward | PoolOp::AdaptiveAvgPool2dBackward)
}

/// The gradient rule of a pooling: the forward op and its geometry. Inputs are `[x]`, or
/// `[x, indices]` for max pooling (the indices get no gradient).
#[derive(Clone, Debug)]
pub(crate) struct PoolGrad {
    op: PoolOp,
    geometry: PoolGeometry,
}

impl FusedGrad for PoolGrad {
    fn backward(&self, g: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let geometry = &self.geometry;
        match self.op {
            PoolOp::MaxPool2d => {
                let (gx, _) = run_pool(PoolOp::MaxPool2dBackward, g, Some(&inputs[1]), geometry);
                vec![Some(gx), None]
            }
            PoolOp::AvgPool2d => vec![Some(run_pool(PoolOp::AvgPool2dBackward, g, None, geometry).0)],
            PoolOp::AdaptiveAvgPool2d => vec![Some(run_pool(PoolOp::AdaptiveAvgPool2dBackward, g, None, geometry).0)],
            PoolOp::MaxPool2dBackward | PoolOp::AvgPool2dBackward | PoolOp::AdaptiveAvgPool2dBackward => {
                unreachable!("pooling gradients are computed without recording")
            }
        }
    }
}

/// Runs one pooling kernel on an NCHW `src`: the input of a forward op or the output
/// gradient of a backward one, with the indices of max pooling for its backward. Returns
/// the `[N, C, out_h, out_w]` output (forward) or `[N, C, in_h, in_w]` input gradient
/// (backward), and the indices for `MaxPool2d`. Nothing is recorded.
fn run_pool(op: PoolOp, src: &Tensor, indices: Option<&Tensor>, g: &PoolGeometry) -> (Tensor, Option<Tensor>) {
    let src = src.detach().contiguous();
    let indices = indices.map(|t| t.detach().contiguous());
    let (n, c) = (src.shape()[0], src.shape()[1]);
    let shape = if is_backward(op) { [n, c, g.in_h, g.in_w] } else { [n, c, g.out_h, g.out_w] };
    let indices = indices.as_ref().map(|t| (&*t.storage, t.layout.offset));
    let (out, out_index) = src.storage.pool(op, g, src.layout.offset, indices);
    (Tensor::from_storage(out, &shape, DType::F32), out_index.map(|i| Tensor::from_storage(i, &shape, DType::I32)))
}

impl Tensor {
    /// This tensor as `(N, C, H, W)` for pooling op `op`, and whether it was an unbatched
    /// `(C, H, W)` input. Panics unless it is a 3-D or 4-D f32 tensor with non-empty C, H
    /// and W (N may be 0, as in PyTorch).
    fn pooling_input(&self, op: &str) -> (Tensor, bool) {
        self.expect_dtype(DType::F32, op);
        let shape = self.shape();
        assert!(
            shape.len() == 3 || shape.len() == 4,
            "{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {shape:?}"
        );
        assert!(
            shape[shape.len() - 3..].iter().all(|&d| d > 0),
            "{op}: input of shape {shape:?} has an empty channel, height or width dimension"
        );
        if shape.len() == 3 {
            let batched: Vec<isize> = [1].iter().chain(shape).map(|&d| d as isize).collect();
            (self.reshape(&batched), true)
        } else {
            (self.clone(), false)
        }
    }

    /// Drops the batch dimension of a pooling result that [`Tensor::pooling_input`] added.
    fn unbatched(t: Tensor, unbatched: bool) -> Tensor {
        if unbatched {
            let s = t.shape();
            let shape = [s[1] as isize, s[2] as isize, s[3] as isize];
            t.reshape(&shape)
        } else {
            t
        }
    }

    /// 2-D max pooling of an `(N, C, H, W)` or `(C, H, W)` tensor, as
    /// `torch.nn.functional.max_pool2d`. The padding is `-inf`; a NaN in a window makes its
    /// maximum NaN. Gradients flow to the (first) maximum of each window.
    ///
    /// ```
    /// use wgrad::{Device, MaxPool2dOptions, Tensor};
    /// let x = Tensor::arange(0.0, 16.0, 1.0, &Device::cpu()).reshape(&[1, 1, 4, 4]);
    /// let y = x.max_pool2d(&MaxPool2dOptions::new(2));
    /// assert_eq!(y.to_vec::<f32>(), [5.0, 7.0, 13.0, 15.0]);
    /// ```
    pub fn max_pool2d(&self, options: &MaxPool2dOptions) -> Tensor {
        self.max_pool2d_with_indices(options).0
    }

    /// [`Tensor::max_pool2d`] together with the `i32` position of each maximum, flat
    /// (`h * W + w`) within its input plane, as PyTorch's `return_indices=True`. Among
    /// equal maxima the first in row-major window order is taken.
    pub fn max_pool2d_with_indices(&self, options: &MaxPool2dOptions) -> (Tensor, Tensor) {
        let op = "max_pool2d";
        let (x, unbatched) = self.pooling_input(op);
        let s = x.shape();
        let o = options;
        let [out_h, out_w] =
            window_output(op, [s[2], s[3]], o.kernel_size, o.stride, o.padding, o.dilation, o.ceil_mode);
        let geometry = PoolGeometry {
            planes: s[0] * s[1],
            in_h: s[2],
            in_w: s[3],
            out_h,
            out_w,
            kernel: o.kernel_size,
            stride: o.stride,
            padding: o.padding,
            dilation: o.dilation,
            count_include_pad: false,
            divisor_override: None,
        };
        let (out, indices) = run_pool(PoolOp::MaxPool2d, &x, None, &geometry);
        let indices = indices.expect("max_pool2d returns indices");
        let out = Tensor::record(out, GradOp::fused(PoolGrad { op: PoolOp::MaxPool2d, geometry }), &[&x, &indices]);
        (Tensor::unbatched(out, unbatched), Tensor::unbatched(indices, unbatched))
    }

    /// 2-D average pooling of an `(N, C, H, W)` or `(C, H, W)` tensor, as
    /// `torch.nn.functional.avg_pool2d`: zero padding, and each window sum divided by the
    /// window size with padding (`count_include_pad`, the default), by the number of input
    /// elements in the window, or by `divisor_override`. In ceil mode the part of the last
    /// window that hangs past the padding does not count.
    ///
    /// ```
    /// use wgrad::{AvgPool2dOptions, Device, Tensor};
    /// let x = Tensor::arange(0.0, 16.0, 1.0, &Device::cpu()).reshape(&[1, 4, 4]);
    /// let y = x.avg_pool2d(&AvgPool2dOptions::new(2));
    /// assert_eq!(y.to_vec::<f32>(), [2.5, 4.5, 10.5, 12.5]);
    /// ```
    pub fn avg_pool2d(&self, options: &AvgPool2dOptions) -> Tensor {
        let op = "avg_pool2d";
        let (x, unbatched) = self.pooling_input(op);
        let s = x.shape();
        let o = options;
        assert!(o.divisor_override != Some(0), "{op}: divisor_override must be non-zero");
        let [out_h, out_w] = window_output(op, [s[2], s[3]], o.kernel_size, o.stride, o.padding, [1, 1], o.ceil_mode);
        let geometry = PoolGeometry {
            planes: s[0] * s[1],
            in_h: s[2],
            in_w: s[3],
            out_h,
            out_w,
            kernel: o.kernel_size,
            stride: o.stride,
            padding: o.padding,
            dilation: [1, 1],
            count_include_pad: o.count_include_pad,
            divisor_override: o.divisor_override,
        };
        let (out, _) = run_pool(PoolOp::AvgPool2d, &x, None, &geometry);
        let out = Tensor::record(out, GradOp::fused(PoolGrad { op: PoolOp::AvgPool2d, geometry }), &[&x]);
        Tensor::unbatched(out, unbatched)
    }

    /// 2-D adaptive average pooling of an `(N, C, H, W)` or `(C, H, W)` tensor to
    /// `output_size` `(oh, ow)`, as `torch.nn.functional.adaptive_avg_pool2d`: output row
    /// `i` averages input rows `floor(i * H / oh)` to `ceil((i + 1) * H / oh)` (exclusive),
    /// and likewise for columns. Windows may overlap, and the output may be larger than the
    /// input; `adaptive_avg_pool2d(1)` is global average pooling.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let x = Tensor::arange(0.0, 6.0, 1.0, &Device::cpu()).reshape(&[1, 1, 2, 3]);
    /// assert_eq!(x.adaptive_avg_pool2d(1).to_vec::<f32>(), [2.5]);
    /// assert_eq!(x.adaptive_avg_pool2d((1, 2)).to_vec::<f32>(), [2.0, 3.0]);
    /// ```
    pub fn adaptive_avg_pool2d(&self, output_size: impl Into<Size2>) -> Tensor {
        let op = "adaptive_avg_pool2d";
        let (x, unbatched) = self.pooling_input(op);
        let s = x.shape();
        let [out_h, out_w] = output_size.into().0;
        let geometry = PoolGeometry {
            planes: s[0] * s[1],
            in_h: s[2],
            in_w: s[3],
            out_h,
            out_w,
            // Adaptive windows follow from the sizes alone; these are not read.
            kernel: [1, 1],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            count_include_pad: true,
            divisor_override: None,
        };
        let (out, _) = run_pool(PoolOp::AdaptiveAvgPool2d, &x, None, &geometry);
        let out = Tensor::record(out, GradOp::fused(PoolGrad { op: PoolOp::AdaptiveAvgPool2d, geometry }), &[&x]);
        Tensor::unbatched(out, unbatched)
    }
}
