//! `crop_flip`: the one kernel behind random crops, shifts and flips of image batches.
//!
//! The per-image windows are an `i32` tensor rather than host values so that the op is an
//! ordinary tensor op on either device; `data::transforms` draws them on the host and
//! uploads three integers per image per batch.

use super::{Size2, Tensor};
use crate::dtype::DType;

impl Tensor {
    /// Reads each image of an `[N, C, H, W]` batch through its own window and returns the
    /// `[N, C, out_h, out_w]` result.
    ///
    /// `windows` is an `i32` tensor of shape `[N, 3]` on this tensor's device; row `n` is
    /// `dy, dx, flip` for image `n`. The window is the `out_h x out_w` rectangle whose
    /// top-left corner lies at row `dy`, column `dx` of the image; offsets may be negative
    /// or reach past the far edges, and window pixels outside the image are 0. A nonzero
    /// `flip` mirrors the window left to right, so output column `x` reads window column
    /// `out_w - 1 - x`. A random crop with zero padding `p` is a window at offsets in
    /// `[-p, H + p - out_h]`; a shift by `s` pixels is offset `-s` with the input's size.
    ///
    /// This is a data op: it records no gradient, and the result is untracked even when
    /// `self` is tracked.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::arange(0.0, 6.0, 1.0, &dev).reshape(&[1, 1, 2, 3]); // [[0 1 2] [3 4 5]]
    /// let windows = Tensor::from_slice(&[-1i32, 1, 1], &[1, 3], &dev);
    /// let y = x.crop_flip(&windows, (2, 2));
    /// assert_eq!(y.to_vec::<f32>(), vec![0.0, 0.0, 2.0, 1.0]);
    /// ```
    pub fn crop_flip(&self, windows: &Tensor, out_size: impl Into<Size2>) -> Tensor {
        let Size2([out_h, out_w]) = out_size.into();
        self.expect_dtype(DType::F32, "crop_flip");
        windows.expect_dtype(DType::I32, "crop_flip");
        self.same_device(windows, "crop_flip");
        assert_eq!(self.rank(), 4, "crop_flip: expected an [N, C, H, W] batch, got shape {:?}", self.shape());
        let n = self.shape()[0];
        assert_eq!(
            windows.shape(),
            [n, 3],
            "crop_flip: windows must have shape [{n}, 3] (dy, dx, flip per image) for a batch of shape {:?}, got {:?}",
            self.shape(),
            windows.shape()
        );
        let out_shape = [n, self.shape()[1], out_h, out_w];
        let windows = windows.contiguous();
        let out = self.storage.crop_flip(&self.layout, (&windows.storage, windows.layout.offset), [out_h, out_w]);
        Tensor::from_storage(out, &out_shape, DType::F32)
    }
}
