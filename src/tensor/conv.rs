//! Convolution: fused host loops on the CPU; a direct kernel or im2col plus the batched
//! matmul kernel on the GPU. Which one runs is the backend's choice (`Backend::conv2d`
//! and `Backend::conv2d_backward`): a backend with a fused kernel for the case runs it,
//! and the others get the composed path built here from im2col, matmul and col2im.
//!
//! The CPU backend fuses every case: `conv2d` and its gradients run `cpu::conv`'s passes,
//! image by image on the thread pool (im2col into a per-thread buffer and a GEMM onto
//! bias-prefilled output), whatever the [`ConvAlgorithm`].
//!
//! On the GPU the forward pass is either the direct kernel (`ConvOp::Conv2dDirect`: an
//! implicit GEMM reading input and weights in place, bias in its epilogue, one dispatch),
//! or the composed im2col path: every receptive field of a batch is unfolded into a column
//! matrix (the `Im2col` kernel) and the weights, viewed as `[groups, out/groups, rows]`,
//! multiply it in one broadcast batched matmul. [`ConvAlgorithm`] says which; the default
//! picks by the shape. The backward pass is composed from the im2col pieces: the input
//! gradient is `W^T` times the output gradient folded back by `Col2im`; the weight
//! gradient is one matmul of the output gradient with the column matrix laid out `[rows,
//! images, positions]`, contracting over images and positions together; the bias gradient
//! is a sum over images and positions.
//!
//! The GPU column matrix is `kh * kw` times larger than the input. It is bounded by
//! [`im2col_budget`]: a batch whose columns would exceed it is processed in chunks of
//! images, so a large batch costs more dispatches rather than failing. A 1x1 convolution
//! with unit stride and no padding needs no unfolding: its column matrix is the input.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::autograd::FusedGrad;
use crate::autograd::GradOp;
use crate::device::Device;
use crate::dtype::DType;
pub use crate::op::conv::ConvAlgorithm;
use crate::op::conv::{ColumnLayout, ConvChannels, ConvGeometry};
use crate::storage::Storage;
use crate::Tensor;

/// A pair of sizes `(height, width)`, built from one number for both or from two, as
/// PyTorch's `int or tuple` arguments: `Size2::from(3)`, `Size2::from((3, 5))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Size2(pub [usize; 2]);

impl From<usize> for Size2 {
    fn from(v: usize) -> Size2 {
        Size2([v, v])
    }
}

impl From<(usize, usize)> for Size2 {
    fn from((h, w): (usize, usize)) -> Size2 {
        Size2([h, w])
    }
}

impl From<[usize; 2]> for Size2 {
    fn from(v: [usize; 2]) -> Size2 {
        Size2(v)
    }
}

/// Stride, zero padding, dilation and groups of a 2-D convolution, with PyTorch's
/// defaults (1, 0, 1, 1).
///
/// ```
/// use wgrad::ConvOptions;
/// let o = ConvOptions::new().stride(2).padding((1, 0));
/// assert_eq!((o.stride, o.padding, o.dilation, o.groups), ([2, 2], [1, 0], [1, 1], 1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvOptions {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1 }
    }
}

impl ConvOptions {
    /// PyTorch's defaults: stride 1, no padding, no dilation, one group.
    pub fn new() -> ConvOptions {
        ConvOptions::default()
    }

    pub fn stride(mut self, stride: impl Into<Size2>) -> ConvOptions {
        self.stride = stride.into().0;
        self
    }

    /// Zeros added on both sides of each spatial axis.
    pub fn padding(mut self, padding: impl Into<Size2>) -> ConvOptions {
        self.padding = padding.into().0;
        self
    }

    /// Spacing between kernel taps (1: adjacent).
    pub fn dilation(mut self, dilation: impl Into<Size2>) -> ConvOptions {
        self.dilation = dilation.into().0;
        self
    }

    /// Input and output channels split into this many independent groups
    /// (`groups == channels` is a depthwise convolution).
    pub fn groups(mut self, groups: usize) -> ConvOptions {
        self.groups = groups;
        self
    }
}

/// Stride, zero padding, dilation and groups of a 1-D convolution (PyTorch's defaults
/// 1, 0, 1, 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv1dOptions {
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
}

impl Default for Conv1dOptions {
    fn default() -> Self {
        Conv1dOptions { stride: 1, padding: 0, dilation: 1, groups: 1 }
    }
}

impl Conv1dOptions {
    pub fn new() -> Conv1dOptions {
        Conv1dOptions::default()
    }

    pub fn stride(mut self, stride: usize) -> Conv1dOptions {
        self.stride = stride;
        self
    }

    pub fn padding(mut self, padding: usize) -> Conv1dOptions {
        self.padding = padding;
        self
    }

    pub fn dilation(mut self, dilation: usize) -> Conv1dOptions {
        self.dilation = dilation;
        self
    }

    pub fn groups(mut self, groups: usize) -> Conv1dOptions {
        self.groups = groups;
        self
    }

    /// The same convolution as a 2-D one over a height-1 image.
    fn as_2d(&self) -> ConvOptions {
        ConvOptions {
            stride: [1, self.stride],
            padding: [0, self.padding],
            dilation: [1, self.dilation],
            groups: self.groups,
        }
    }
}

static IM2COL_BUDGET: AtomicUsize = AtomicUsize::new(256 << 20);

/// The most bytes one im2col column matrix may take (256 MiB unless changed, and never
/// more than the GPU's largest storage binding). Convolutions of larger batches run in
/// chunks of images.
pub fn im2col_budget() -> usize {
    IM2COL_BUDGET.load(Ordering::Relaxed)
}

/// Sets [`im2col_budget`] for the whole process, to trade memory for dispatches. A
/// single image's columns are always processed, whatever the budget.
pub fn set_im2col_budget(bytes: usize) {
    IM2COL_BUDGET.store(bytes, Ordering::Relaxed);
}

thread_local! {
    static CONV_ALGORITHM: Cell<ConvAlgorithm> = const { Cell::new(ConvAlgorithm::Auto) };
}

/// Runs `f` with every `conv2d` (and `conv1d`) on this thread using `algorithm` on the
/// GPU, then restores the previous choice (also when `f` panics). The setting is per
/// thread because the ops a thread records run on that thread. The CPU backend has one
/// algorithm (per-image im2col and GEMM) and ignores it.
///
/// ```
/// use wgrad::{with_conv_algorithm, ConvAlgorithm, ConvOptions, Device, Tensor};
/// let dev = Device::cpu();
/// let (x, w) = (Tensor::randn(&[2, 3, 8, 8], 0, &dev), Tensor::randn(&[4, 3, 3, 3], 1, &dev));
/// let y = with_conv_algorithm(ConvAlgorithm::Direct, || x.conv2d(&w, None, &ConvOptions::new()));
/// assert_eq!(y.shape(), &[2, 4, 6, 6]);
/// ```
pub fn with_conv_algorithm<R>(algorithm: ConvAlgorithm, f: impl FnOnce() -> R) -> R {
    struct Restore(ConvAlgorithm);
    impl Drop for Restore {
        fn drop(&mut self) {
            CONV_ALGORITHM.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(CONV_ALGORITHM.with(|c| c.replace(algorithm)));
    f()
}

/// The algorithm this thread's convolutions use (see [`with_conv_algorithm`]).
pub fn conv_algorithm() -> ConvAlgorithm {
    CONV_ALGORITHM.with(|c| c.get())
}

/// The gradient rule of `conv2d`: inputs are `[x, weight]` or `[x, weight, bias]`.
#[derive(Clone, Debug)]
pub(crate) struct ConvGrad {
    options: ConvOptions,
}

impl FusedGrad for ConvGrad {
    fn backward(&self, gy: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let (x, w) = (&inputs[0], &inputs[1]);
        let geom = geometry("conv2d", x.shape(), w.shape(), &self.options);
        let groups = self.options.groups;
        let (out_channels, rows) = (w.dim(0), geom.rows() / groups);
        let per_group = out_channels / groups;
        let positions = geom.positions();
        // The bias gradient sums the output gradient over images and positions.
        let db = inputs.get(2).filter(|b| b.is_tracked()).map(|_| gy.sum(&[0, 2, 3], false));
        if geom.batch == 0 {
            let (dx, dw) = (Tensor::zeros(x.shape(), x.device()), Tensor::zeros(w.shape(), w.device()));
            return [Some(dx), Some(dw)].into_iter().chain(inputs.get(2).map(|_| db)).collect();
        }
        // A backend with fused gradient passes (the CPU) runs them; the others take the
        // composed path below, built from im2col, the batched matmul and col2im.
        let ch = ConvChannels { groups, out_channels };
        if let Some([dx, dw]) = fused_backward(gy, x, w, &geom, ch) {
            let mut grads = vec![dx, dw];
            if inputs.len() > 2 {
                grads.push(db);
            }
            return grads;
        }
        let gy = gy.reshape(&[geom.batch as isize, groups as isize, per_group as isize, positions as isize]);
        let chunks = batch_chunks(&geom, x.device());

        // Gradients are computed only for inputs that take part in differentiation: the
        // images of a first layer need none, which saves a matmul and a col2im per step.
        let dx = x.is_tracked().then(|| {
            let wt = w.reshape(&[groups as isize, per_group as isize, rows as isize]).transpose(-1, -2);
            let parts: Vec<Tensor> = chunks
                .iter()
                .map(|&(start, len)| {
                    let g = ConvGeometry { batch: len, ..geom };
                    let cols = wt.matmul(&gy.narrow(0, start, len));
                    if g.is_pointwise() {
                        cols.reshape(&shape_of(&[len, g.channels, g.height, g.width]))
                    } else {
                        cols.col2im(&g, g.image_major())
                    }
                })
                .collect();
            concat(parts)
        });

        let dw = w.is_tracked().then(|| {
            let parts = chunks.iter().map(|&(start, len)| {
                let g = ConvGeometry { batch: len, ..geom };
                let cols = x.narrow(0, start, len).columns(&g, g.row_major());
                let cols = cols.reshape(&shape_of(&[groups, rows, len * positions]));
                let gy = gy.narrow(0, start, len).permute(&[1, 2, 0, 3]).contiguous();
                let gy = gy.reshape(&shape_of(&[groups, per_group, len * positions]));
                gy.matmul(&cols.transpose(-1, -2))
            });
            let total = parts.reduce(|a, b| a.add(&b)).expect("a batch has at least one chunk");
            total.reshape(&shape_of(w.shape()))
        });
        let mut grads = vec![dx, dw];
        if inputs.len() > 2 {
            grads.push(db);
        }
        grads
    }
}

/// The input and weight gradients from the backend's fused passes, each only where its
/// input is tracked, or `None` when the backend composes them.
fn fused_backward(
    gy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    geom: &ConvGeometry,
    ch: ConvChannels,
) -> Option<[Option<Tensor>; 2]> {
    let wanted = [x.is_tracked(), w.is_tracked()];
    let (gy, w_data) = (gy.contiguous(), w.contiguous());
    let [dx, dw] = Storage::conv2d_backward(
        (&gy.storage, gy.layout.offset),
        (&x.storage, &x.layout),
        (&w_data.storage, w_data.layout.offset),
        geom,
        ch,
        wanted,
    )?;
    Some([
        dx.map(|dx| Tensor::from_storage(dx, x.shape(), DType::F32)),
        dw.map(|dw| Tensor::from_storage(dw, w.shape(), DType::F32)),
    ])
}

fn shape_of(dims: &[usize]) -> Vec<isize> {
    dims.iter().map(|&d| d as isize).collect()
}

fn concat(mut parts: Vec<Tensor>) -> Tensor {
    if parts.len() == 1 {
        parts.pop().unwrap()
    } else {
        Tensor::cat(&parts, 0)
    }
}

/// `(first image, count)` chunks of the batch whose column matrices fit the budget.
fn batch_chunks(g: &ConvGeometry, device: &Device) -> Vec<(usize, usize)> {
    let budget = device.max_binding_bytes().map_or(im2col_budget(), |limit| im2col_budget().min(limit));
    let per_image = (g.rows() * g.positions() * 4).max(1);
    let per_chunk = (budget / per_image).clamp(1, g.batch.max(1));
    (0..g.batch).step_by(per_chunk).map(|start| (start, per_chunk.min(g.batch - start))).collect()
}

/// Checks a convolution's operands and works out its output size, panicking with the
/// op's name and the shapes on any mismatch.
fn geometry(op: &str, x: &[usize], w: &[usize], o: &ConvOptions) -> ConvGeometry {
    assert!(x.len() == 4, "{op}: input must be [N, C, H, W], got shape {x:?}");
    assert!(w.len() == 4, "{op}: weight must be [out_channels, in_channels / groups, kh, kw], got shape {w:?}");
    let groups = o.groups;
    assert!(groups >= 1, "{op}: groups must be at least 1");
    assert!(
        o.stride.iter().all(|&s| s >= 1) && o.dilation.iter().all(|&d| d >= 1),
        "{op}: stride {:?} and dilation {:?} must be at least 1",
        o.stride,
        o.dilation
    );
    let channels = x[1];
    assert!(
        channels.is_multiple_of(groups) && w[0].is_multiple_of(groups),
        "{op}: {channels} input channels and {} output channels must both be divisible by groups={groups}",
        w[0]
    );
    assert!(
        w[1] * groups == channels,
        "{op}: weight of shape {w:?} expects {} input channels (groups={groups}), but the input of shape {x:?} has {channels}",
        w[1] * groups
    );
    assert!(w[0] > 0 && w[2] > 0 && w[3] > 0, "{op}: weight of shape {w:?} is empty");
    let mut out = [0; 2];
    for a in 0..2 {
        let too_large = || -> ! {
            panic!(
                "{op}: input {x:?} with padding {:?}, kernel {:?} and dilation {:?} gives sizes past usize::MAX",
                o.padding,
                &w[2..],
                o.dilation
            )
        };
        let padded = o.padding[a].checked_mul(2).and_then(|p| p.checked_add(x[2 + a])).unwrap_or_else(|| too_large());
        let span =
            o.dilation[a].checked_mul(w[2 + a] - 1).and_then(|s| s.checked_add(1)).unwrap_or_else(|| too_large());
        assert!(
            span <= padded,
            "{op}: kernel {:?} (dilation {:?}) is larger than the input {:?} padded by {:?}",
            &w[2..],
            o.dilation,
            &x[2..],
            o.padding
        );
        out[a] = (padded - span) / o.stride[a] + 1;
    }
    ConvGeometry {
        batch: x[0],
        channels,
        height: x[2],
        width: x[3],
        kernel: [w[2], w[3]],
        stride: o.stride,
        padding: o.padding,
        dilation: o.dilation,
        out,
    }
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as in every framework) of an `[N, C, H, W]` batch,
    /// or one `[C, H, W]` image, with `weight` of shape `[out_channels, C / groups, kh, kw]`
    /// and an optional `[out_channels]` bias: `torch.nn.functional.conv2d`.
    ///
    /// ```
    /// use wgrad::{ConvOptions, Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::ones(&[1, 1, 4, 4], &dev);
    /// let w = Tensor::ones(&[2, 1, 3, 3], &dev);
    /// let y = x.conv2d(&w, None, &ConvOptions::new().padding(1));
    /// assert_eq!(y.shape(), &[1, 2, 4, 4]);
    /// assert_eq!(y.to_vec::<f32>()[..4], [4.0, 6.0, 6.0, 4.0]); // corners see 4 ones
    /// ```
    pub fn conv2d(&self, weight: &Tensor, bias: Option<&Tensor>, options: &ConvOptions) -> Tensor {
        if self.rank() == 3 {
            return self.unsqueeze(0).conv2d(weight, bias, options).squeeze(0);
        }
        let geom = geometry("conv2d", self.shape(), weight.shape(), options);
        self.expect_dtype(DType::F32, "conv2d");
        weight.expect_dtype(DType::F32, "conv2d");
        self.same_device(weight, "conv2d");
        let out_channels = weight.dim(0);
        if let Some(b) = bias {
            assert_eq!(
                b.shape(),
                [out_channels],
                "conv2d: bias of shape {:?} does not match {out_channels} output channels",
                b.shape()
            );
            b.expect_dtype(DType::F32, "conv2d");
            self.same_device(b, "conv2d");
        }
        let out = conv2d_forward(&self.detach(), &weight.detach(), bias.map(|b| b.detach()).as_ref(), &geom, options);
        let grad = GradOp::fused(ConvGrad { options: *options });
        match bias {
            Some(b) => Tensor::record(out, grad, &[self, weight, b]),
            None => Tensor::record(out, grad, &[self, weight]),
        }
    }

    /// 1-D convolution of an `[N, C, L]` batch, or one `[C, L]` sequence, with `weight` of
    /// shape `[out_channels, C / groups, k]`: `torch.nn.functional.conv1d`. It runs as a
    /// 2-D convolution over a height-1 image.
    pub fn conv1d(&self, weight: &Tensor, bias: Option<&Tensor>, options: &Conv1dOptions) -> Tensor {
        if self.rank() == 2 {
            return self.unsqueeze(0).conv1d(weight, bias, options).squeeze(0);
        }
        assert!(self.rank() == 3, "conv1d: input must be [N, C, L], got shape {:?}", self.shape());
        assert!(
            weight.rank() == 3,
            "conv1d: weight must be [out_channels, in_channels / groups, k], got shape {:?}",
            weight.shape()
        );
        self.unsqueeze(2).conv2d(&weight.unsqueeze(2), bias, &options.as_2d()).squeeze(2)
    }

    /// The column matrix of this `[N, C, H, W]` tensor: `[N, rows, L]` for the image-major
    /// layout, `[rows, N, L]` for the row-major one.
    fn columns(&self, g: &ConvGeometry, layout: ColumnLayout) -> Tensor {
        let (rows, positions) = (g.rows(), g.positions());
        if g.is_pointwise() {
            let x = self.reshape(&shape_of(&[g.batch, rows, positions]));
            return if layout == g.image_major() { x } else { x.permute(&[1, 0, 2]).contiguous() };
        }
        let shape = if layout == g.image_major() { [g.batch, rows, positions] } else { [rows, g.batch, positions] };
        Tensor::from_storage(self.storage.im2col(&self.layout, g, layout), &shape, DType::F32)
    }

    /// Folds this column matrix (contiguous, in `layout`) back into an `[N, C, H, W]` batch,
    /// summing the entries read from each position.
    fn col2im(&self, g: &ConvGeometry, layout: ColumnLayout) -> Tensor {
        let cols = self.contiguous();
        let shape = [g.batch, g.channels, g.height, g.width];
        Tensor::from_storage(cols.storage.col2im(cols.layout.offset, layout, g), &shape, DType::F32)
    }
}

/// The convolution itself, on untracked operands, with the bias (if any) added.
fn conv2d_forward(x: &Tensor, w: &Tensor, b: Option<&Tensor>, geom: &ConvGeometry, options: &ConvOptions) -> Tensor {
    let (groups, out_channels) = (options.groups, w.dim(0));
    let out_shape = [geom.batch, out_channels, geom.out[0], geom.out[1]];
    let w = w.contiguous();
    let b = b.map(|b| b.contiguous());
    let ch = ConvChannels { groups, out_channels };
    let bias = b.as_ref().map(|b| (&*b.storage, b.layout.offset));
    let weights = (&*w.storage, w.layout.offset);
    // A backend's fused kernel when it has one for the case, else the composed path.
    if let Some(out) = Storage::conv2d((&x.storage, &x.layout), weights, bias, geom, ch, conv_algorithm()) {
        return Tensor::from_storage(out, &out_shape, DType::F32);
    }
    let y = im2col_forward(x, &w, geom, groups);
    match b {
        Some(b) => y.add(&b.reshape(&[1, out_channels as isize, 1, 1])),
        None => y,
    }
}

/// The composed forward pass: per chunk of images, the column matrix
/// `[n, groups, rows, L]` times the weights `[groups, out/groups, rows]`, broadcast over
/// images in one batched matmul that writes `[n, out, L]`, which is NCHW already.
fn im2col_forward(x: &Tensor, w: &Tensor, geom: &ConvGeometry, groups: usize) -> Tensor {
    let out_channels = w.dim(0);
    if geom.batch == 0 {
        return Tensor::zeros(&[0, out_channels, geom.out[0], geom.out[1]], x.device());
    }
    let rows = geom.rows() / groups;
    let wmat = w.reshape(&shape_of(&[groups, out_channels / groups, rows]));
    let parts = batch_chunks(geom, x.device())
        .into_iter()
        .map(|(start, len)| {
            let g = ConvGeometry { batch: len, ..*geom };
            let cols = x.narrow(0, start, len).columns(&g, g.image_major());
            let cols = cols.reshape(&shape_of(&[len, groups, rows, g.positions()]));
            wmat.matmul(&cols).reshape(&shape_of(&[len, out_channels, g.out[0], g.out[1]]))
        })
        .collect();
    concat(parts)
}
