//! Half precision tensors: conversions between `f32` and `f16` and the `f16` matmul that
//! accumulates in `f32`. Copies of `f16` views are the backends' `copy_into`.
//!
//! `f16` is a storage format here, not an arithmetic type: the one op that computes on it
//! is [`Tensor::half_matmul`], whose products are exact in `f32` and whose sums run in
//! `f32`. Every other op checks its operands and panics, naming itself, on an `f16` tensor;
//! convert with [`Tensor::float`] first. Views (reshape, transpose, narrow, ...) work on
//! any dtype.
//!
//! Gradients: the gradient with respect to an `f16` tensor is kept in `f32`, whatever the
//! tensor's own dtype, so that gradients meeting at a tensor add up in `f32` and reach the
//! `f32` master weights of mixed-precision training (see [`crate::amp`]) without a
//! rounding on the way. The backward of `half_matmul` rounds the incoming gradient to
//! `f16` and runs the two gradient products in `f16` with `f32` accumulation, as PyTorch's
//! autocast does; that rounding is why loss scaling exists.

use super::math::MatmulOperands;
use super::Tensor;
use crate::autograd::{sum_to_shape, FusedGrad, GradOp};
use crate::dtype::DType;
use crate::op::matmul::MatmulDims;
use crate::op::HalfOp;

/// The differentiable half-precision ops, their rules beside them.
#[derive(Clone, Debug)]
pub(crate) enum HalfGrad {
    /// `to_dtype` between `f32` and `f16`: the gradient passes through (in `f32`).
    Cast,
    /// `half_matmul` of `[a, b]`, both with at least two dimensions.
    Matmul,
}

impl FusedGrad for HalfGrad {
    /// The gradient of each input, in `f32` (see the module documentation).
    fn backward(&self, g: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let g = g.float();
        match self {
            HalfGrad::Cast => vec![Some(g)],
            HalfGrad::Matmul => {
                let (a, b) = (&inputs[0], &inputs[1]);
                let g16 = g.half();
                let ga = g16.half_matmul(&b.detach().t(), DType::F32);
                let gb = a.detach().t().half_matmul(&g16, DType::F32);
                vec![Some(sum_to_shape(&ga, a.shape())), Some(sum_to_shape(&gb, b.shape()))]
            }
        }
    }
}

impl Tensor {
    /// The same values as `dtype`: `f32` to `f16` rounds to nearest (ties to even) and
    /// gives infinity beyond ±65504 (from ±65520 on), `f16` to `f32` is exact; the same
    /// tensor when it already has that dtype. Differentiable; the gradient arrives in
    /// `f32`. Panics for conversions involving `i32`, which wgrad does not offer.
    ///
    /// ```
    /// use wgrad::{DType, Device, Tensor};
    /// let x = Tensor::from_slice(&[1.0f32, 0.1, 70000.0], &[3], &Device::cpu());
    /// let h = x.to_dtype(DType::F16);
    /// assert_eq!(h.dtype(), DType::F16);
    /// assert_eq!(h.float().to_vec::<f32>(), vec![1.0, 0.099975586, f32::INFINITY]);
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        if self.dtype == dtype {
            return self.clone();
        }
        let op = match (self.dtype, dtype) {
            (DType::F32, DType::F16) => HalfOp::ToHalf,
            (DType::F16, DType::F32) => HalfOp::ToFloat,
            (from, to) => panic!(
                "to_dtype: no conversion from {from} to {to} for the tensor of shape {:?} (only f32 <-> f16)",
                self.shape()
            ),
        };
        let out = Tensor::from_storage(self.storage.cast(op, &self.layout), self.shape(), dtype);
        Tensor::record(out, GradOp::fused(HalfGrad::Cast), &[self])
    }

    /// `self.to_dtype(DType::F16)`, as PyTorch's `.half()`.
    pub fn half(&self) -> Tensor {
        self.to_dtype(DType::F16)
    }

    /// `self.to_dtype(DType::F32)`, as PyTorch's `.float()`.
    pub fn float(&self) -> Tensor {
        self.to_dtype(DType::F32)
    }

    /// Matrix product of two `f16` tensors with `torch.matmul`'s shape rules (1-D operands
    /// promoted and the added axis removed, batch axes broadcast, transposed views taken
    /// without a copy), accumulated in `f32` and returned as `out_dtype` (`F32`, or `F16`
    /// rounded once at the end). Differentiable, with gradients in `f32`.
    ///
    /// ```
    /// use wgrad::{DType, Device, Tensor};
    /// let dev = Device::cpu();
    /// let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2], &dev).half();
    /// let b = Tensor::from_slice(&[0.5f32, -1.0], &[2, 1], &dev).half();
    /// let c = a.half_matmul(&b, DType::F32);
    /// assert_eq!(c.to_vec::<f32>(), vec![-1.5, -2.5]);
    /// ```
    pub fn half_matmul(&self, other: &Tensor, out_dtype: DType) -> Tensor {
        self.expect_dtype(DType::F16, "half_matmul");
        other.expect_dtype(DType::F16, "half_matmul");
        assert!(
            matches!(out_dtype, DType::F32 | DType::F16),
            "half_matmul: the result can be f32 or f16, not {out_dtype}"
        );
        let MatmulOperands { a, b, la, lb, batch, m, k, n, out_shape } = self.matmul_operands(other, "half_matmul");
        let dims = MatmulDims { batch: &batch, m, k, n };
        let out = Tensor::from_storage(a.storage.half_matmul(&la, (&b.storage, &lb), dims), &out_shape, DType::F32);
        let result = Tensor::record(out, GradOp::fused(HalfGrad::Matmul), &[&a, &b]).to_dtype(out_dtype);
        self.undo_matmul_promotion(other, result)
    }
}
