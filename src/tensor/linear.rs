//! The fully connected product `activation(x W^T + b)` as one GEMM with a fused epilogue.
//!
//! Composed, a linear layer followed by ReLU is three ops (matmul, add, relu) and two
//! intermediate tensors; here it is one dispatch on the GPU (the matmul kernels add the
//! bias and apply the activation before storing each element) and one pass over the
//! output on the CPU (sgemm accumulates into a bias-filled output, then the activation
//! runs in place). The results equal the composed ops' up to the matmul's own rounding:
//! the activations use the elementwise kernels' formulas.
//!
//! The gradient rule works from the output, as the composed rules do: ReLU passes the
//! gradient where the output is positive, sigmoid multiplies by `y (1 - y)`, tanh by
//! `1 - y^2`. So no pre-activation tensor is kept.

use super::Tensor;
use crate::autograd::{FusedGrad, GradOp};
use crate::dtype::DType;
use crate::op::matmul::{Activation, BiasAxis, Epilogue, MatmulDims};

/// The gradient rule of [`Tensor::linear`]: inputs are `[x as [rows, in], weight, bias
/// (when present)]`, the saved output is `activation(x W^T + b)` as `[rows, out]`.
#[derive(Clone, Debug)]
pub(crate) struct LinearGrad {
    activation: Activation,
}

impl FusedGrad for LinearGrad {
    fn backward(&self, g: &Tensor, inputs: &[Tensor], out: &Tensor) -> Vec<Option<Tensor>> {
        let (x, w) = (&inputs[0], &inputs[1]);
        // The gradient with respect to the pre-activation `x W^T + b`.
        let dz = match self.activation {
            Activation::None => g.clone(),
            Activation::Relu => g.mul(&out.gt(&Tensor::scalar(0.0, out.device()))),
            Activation::Sigmoid => g.mul(&out.mul(&out.affine(-1.0, 1.0))),
            Activation::Tanh => g.mul(&out.square().affine(-1.0, 1.0)),
        };
        let mut grads = vec![x.is_tracked().then(|| dz.matmul(w)), w.is_tracked().then(|| dz.t().matmul(x))];
        if let Some(b) = inputs.get(2) {
            grads.push(b.is_tracked().then(|| dz.sum(&[0], false)));
        }
        grads
    }
}

impl Tensor {
    /// `activation(self W^T + bias)`, PyTorch's `F.linear` followed by an activation, in one
    /// GEMM: `weight` is `[out_features, in_features]`, `bias` `[out_features]`, and `self`
    /// is `[.., in_features]` (any number of leading dimensions, or none); the result is
    /// `[.., out_features]`. Differentiable in all three. Equal to
    /// `self.matmul(&weight.t()).add(bias)` and then the activation, without the
    /// intermediate tensors.
    ///
    /// ```
    /// use wgrad::{Activation, Device, Tensor};
    /// let d = Device::cpu();
    /// let x = Tensor::from_slice(&[1.0f32, -2.0], &[1, 2], &d);
    /// let w = Tensor::from_slice(&[1.0f32, 1.0, 1.0, -1.0], &[2, 2], &d);
    /// let b = Tensor::from_slice(&[0.5f32, 0.5], &[2], &d);
    /// let y = x.linear(&w, Some(&b), Activation::Relu);
    /// assert_eq!(y.to_vec::<f32>(), vec![0.0, 3.5]); // relu([-1 + 0.5, 3 + 0.5])
    /// ```
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>, activation: Activation) -> Tensor {
        self.expect_dtype(DType::F32, "linear");
        weight.expect_dtype(DType::F32, "linear");
        self.same_device(weight, "linear");
        assert_eq!(weight.rank(), 2, "linear: weight must be [out_features, in_features], got {:?}", weight.shape());
        let (out_features, in_features) = (weight.dim(0), weight.dim(1));
        assert!(
            self.rank() >= 1 && self.dim(-1) == in_features,
            "linear: input {:?} does not end in the {in_features} features of weight {:?}",
            self.shape(),
            weight.shape()
        );
        if let Some(b) = bias {
            b.expect_dtype(DType::F32, "linear");
            self.same_device(b, "linear");
            assert_eq!(
                b.shape(),
                &[out_features],
                "linear: bias {:?} does not match weight {:?} (want [{out_features}])",
                b.shape(),
                weight.shape()
            );
        }
        // A 2-D input is used as it is, strides and all; others become [rows, in] (a view
        // when their layout allows).
        let x = if self.rank() == 2 { self.clone() } else { self.reshape(&[-1, in_features as isize]) };
        let rows = x.dim(0);
        let wt = weight.t();
        let out_shape = [rows, out_features];
        super::layout::check_shape(&out_shape, "linear");
        let bias = bias.map(|b| b.contiguous());
        let epilogue =
            Epilogue { bias: bias.as_ref().map(|b| (&*b.storage, b.layout.offset, BiasAxis::Column)), activation };
        let dims = MatmulDims { batch: &[], m: rows, k: in_features, n: out_features };
        let out = x.storage.matmul(&x.layout, (&weight.storage, &wt.layout), dims, epilogue);
        let out = Tensor::from_storage(out, &out_shape, DType::F32);
        let mut inputs = vec![&x, weight];
        inputs.extend(bias.as_ref());
        let y = Tensor::record(out, GradOp::fused(LinearGrad { activation }), &inputs);
        let mut shape: Vec<isize> = self.shape()[..self.rank() - 1].iter().map(|&d| d as isize).collect();
        shape.push(out_features as isize);
        if self.rank() == 2 {
            y
        } else {
            y.reshape(&shape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::gpu::tuning::{with_matmul_config, MATMUL_CONFIGS};
    use crate::testing::{check_poison, compare, Tolerance};

    /// The row-bias epilogue (a convolution's bias, one per output channel) on the GPU
    /// against its CPU twin, on a batched product whose left operand is broadcast over the
    /// batch, as a convolution's forward GEMM has it, for every configuration.
    #[test]
    fn row_bias_epilogue_matches_the_cpu_twin() {
        let Some(gpu) = crate::testing::gpu_test_device() else { return };
        let cpu = Device::cpu();
        // M = 5 output channels, K = 12 (aligned, so the vec4 configurations run too),
        // N = 66 positions, 3 images; the bias a view at offset 2.
        let (batch, m, k, n) = (3, 5, 12, 66);
        let w = Tensor::randn(&[m, k], 1, &cpu);
        let cols = Tensor::randn(&[batch, k, n], 2, &cpu);
        let bias = Tensor::randn(&[m + 2], 3, &cpu).narrow(0, 2, m);
        let la = w.layout.broadcast_to(&[batch, m, k]);
        let lb = cols.layout.clone();
        let (wg, colsg, biasg) = (w.to_device(&gpu), cols.to_device(&gpu), bias.to_device(&gpu));
        let dims = MatmulDims { batch: &[batch], m, k, n };
        for config in MATMUL_CONFIGS {
            for activation in [Activation::None, Activation::Relu, Activation::Tanh] {
                let on = |w: &Tensor, cols: &Tensor, bias: &Tensor| {
                    let epilogue =
                        Epilogue { bias: Some((&*bias.storage, bias.layout.offset, BiasAxis::Row)), activation };
                    let out = w.storage.matmul(&la, (&cols.storage, &lb), dims, epilogue);
                    Tensor::from_storage(out, &[batch, m, n], DType::F32)
                };
                let want = on(&w, &cols, &bias).to_vec::<f32>();
                let got = with_matmul_config(config.name, || on(&wg, &colsg, &biasg));
                let what = format!("row bias, {activation:?}, {}", config.name);
                check_poison(&got).unwrap_or_else(|e| panic!("{what}: {e}"));
                compare(&got.to_vec::<f32>(), &want, Tolerance::Normalized { tol: 1e-6 })
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
        }
    }
}
