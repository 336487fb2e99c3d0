//! Layer normalisation, forward and backward, as three fused kernels over `[rows, len]`
//! views (a row is one normalised block).
//!
//! `Forward` computes each row's mean and variance and writes the normalised, scaled and
//! shifted row in one dispatch, keeping the mean and `rstd` in a small `[2, rows]` table
//! for the backward pass. `Backward` writes the input gradient row by row from that table,
//! and `ParamBackward` sums the weight and bias gradients over the rows in chunks; the few
//! chunk partials are added up with the generic sum. Composed from generic ops the same
//! computation would be a dozen dispatches each way with several `[rows, len]`
//! temporaries.

use crate::autograd::FusedGrad;
use crate::autograd::GradOp;
use crate::dtype::DType;
use crate::op::norm::LnDims;
use crate::op::LayerNormOp;
use crate::storage::Storage;
use crate::Tensor;

/// Rows per chunk of the parameter gradient: enough work per workgroup to hide memory
/// latency, and enough chunks that a few long columns still fill a GPU.
const PARAM_CHUNK_ROWS: usize = 256;

/// The gradient rule of [`Tensor::layer_norm`]. Inputs are `[x, statistics table,
/// weight (when present), bias (when present)]`; the table is a saved constant.
#[derive(Clone, Debug)]
pub(crate) struct LayerNormGrad {
    normalized_shape: Vec<usize>,
    has_weight: bool,
    has_bias: bool,
}

impl FusedGrad for LayerNormGrad {
    fn backward(&self, g: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let (x, stats) = (&inputs[0], &inputs[1]);
        let len: usize = self.normalized_shape.iter().product();
        let d = LnDims { rows: x.numel() / len, len };
        let matrix = [d.rows as isize, d.len as isize];
        let x2 = x.detach().reshape(&matrix).contiguous();
        let dy = g.detach().reshape(&matrix).contiguous();
        let mut grads: Vec<Option<Tensor>> = vec![None; inputs.len()];
        let weight = self.has_weight.then(|| inputs[2].detach().reshape(&[len as isize]).contiguous());
        if x.is_tracked() {
            let dx = kernel(LayerNormOp::Backward, d, [Some(&x2), Some(&dy), weight.as_ref(), Some(stats)], 0.0);
            grads[0] = Some(dx.0.reshape(&shape_isize(x.shape())));
        }
        let bias_index = 2 + self.has_weight as usize;
        let weight_wanted = self.has_weight && inputs[2].is_tracked();
        let bias_wanted = self.has_bias && inputs[bias_index].is_tracked();
        if weight_wanted || bias_wanted {
            let (partials, _) = kernel(LayerNormOp::ParamBackward, d, [Some(&x2), Some(&dy), None, Some(stats)], 0.0);
            let table = if partials.dim(0) == 1 { partials.squeeze(0) } else { partials.sum(&[0], false) };
            let param_shape = shape_isize(&self.normalized_shape);
            let row = |r: usize| table.narrow(0, r, 1).reshape(&param_shape);
            if weight_wanted {
                grads[2] = Some(row(0));
            }
            if bias_wanted {
                grads[bias_index] = Some(row(1));
            }
        }
        grads
    }
}

fn shape_isize(shape: &[usize]) -> Vec<isize> {
    shape.iter().map(|&d| d as isize).collect()
}

/// Runs one of the three kernels on contiguous operands (any offset): `operands` are
/// `[x, dy, weight, bias or statistics]` as layer_norm.wgsl numbers them, `None` where the
/// op does not read one (and for an absent weight or bias). Returns the output and, for
/// `Forward`, the statistics table.
fn kernel(op: LayerNormOp, d: LnDims, operands: [Option<&Tensor>; 4], eps: f32) -> (Tensor, Option<Tensor>) {
    debug_assert!(operands.iter().flatten().all(|t| t.is_contiguous() && t.dtype == DType::F32));
    let shape: Vec<usize> = match op {
        LayerNormOp::Forward | LayerNormOp::Backward => vec![d.rows, d.len],
        LayerNormOp::ParamBackward => vec![d.chunks(PARAM_CHUNK_ROWS), 2, d.len],
    };
    let at = operands.map(|t| t.map(|t| (&*t.storage, t.layout.offset)));
    let (out, stats) = Storage::layer_norm(op, d, eps, PARAM_CHUNK_ROWS, at);
    let stats = stats.map(|s| Tensor::from_storage(s, &[2, d.rows], DType::F32));
    (Tensor::from_storage(out, &shape, DType::F32), stats)
}

impl Tensor {
    /// Layer normalisation over the trailing dimensions named by `normalized_shape`, as
    /// `torch.nn.functional.layer_norm`: every block of `prod(normalized_shape)` trailing
    /// elements is normalised by its own mean and biased variance,
    /// `y = (x - mean) / sqrt(var + eps) * weight + bias`, with `weight` and `bias` of
    /// shape `normalized_shape` applied elementwise (each optional, as with
    /// `elementwise_affine=False` or `bias=False`). Unlike batch normalisation there are
    /// no running statistics: training and evaluation compute the same thing.
    ///
    /// The result is differentiable with respect to the input, weight and bias.
    ///
    /// Panics when `normalized_shape` is empty, when the input does not end in
    /// `normalized_shape`, when `weight` or `bias` does not have that shape, or when `eps`
    /// is negative or not finite.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::from_slice(&[1.0f32, 3.0, 10.0, 30.0], &[2, 2], &dev);
    /// let y = x.layer_norm(&[2], None, None, 0.0);
    /// assert_eq!(y.to_vec::<f32>(), [-1.0, 1.0, -1.0, 1.0]);
    /// let w = Tensor::from_slice(&[2.0f32, 0.5], &[2], &dev);
    /// let b = Tensor::from_slice(&[0.0f32, 1.0], &[2], &dev);
    /// let y = x.layer_norm(&[2], Some(&w), Some(&b), 0.0);
    /// assert_eq!(y.to_vec::<f32>(), [-2.0, 1.5, -2.0, 1.5]);
    /// ```
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f32,
    ) -> Tensor {
        let op = "layer_norm";
        assert!(
            !normalized_shape.is_empty(),
            "{op}: normalized_shape must have at least one dimension, got [] for the input of shape {:?}",
            self.shape()
        );
        let k = normalized_shape.len();
        assert!(
            self.rank() >= k && self.shape()[self.rank() - k..] == *normalized_shape,
            "{op}: given normalized_shape={normalized_shape:?}, expected input with shape [*, {}], but got input of \
             shape {:?}",
            normalized_shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
            self.shape()
        );
        self.expect_dtype(DType::F32, op);
        for (name, t) in [("weight", weight), ("bias", bias)] {
            let Some(t) = t else { continue };
            assert_eq!(
                t.shape(),
                normalized_shape,
                "{op}: {name} of shape {:?} does not match normalized_shape {normalized_shape:?}",
                t.shape()
            );
            t.expect_dtype(DType::F32, op);
            self.same_device(t, op);
        }
        assert!(eps >= 0.0 && eps.is_finite(), "{op}: eps must be a finite non-negative number, got {eps}");

        if self.numel() == 0 {
            // Nothing to normalise. Composed so that the weight and bias still receive
            // (empty-sum, zero) gradients, as in PyTorch.
            let mut y = self.affine(1.0, 0.0);
            if let Some(w) = weight {
                y = y.mul(w);
            }
            if let Some(b) = bias {
                y = y.add(b);
            }
            return y;
        }

        let len: usize = normalized_shape.iter().product();
        let d = LnDims { rows: self.numel() / len, len };
        let x = self.detach().reshape(&[d.rows as isize, d.len as isize]).contiguous();
        let flat = |t: &Tensor| t.detach().reshape(&[len as isize]).contiguous();
        let (weight_c, bias_c) = (weight.map(flat), bias.map(flat));
        let (y, stats) = kernel(LayerNormOp::Forward, d, [Some(&x), None, weight_c.as_ref(), bias_c.as_ref()], eps);
        let y = y.reshape(&shape_isize(self.shape()));
        let stats = stats.expect("the forward kernel writes the statistics table");
        let grad = LayerNormGrad {
            normalized_shape: normalized_shape.to_vec(),
            has_weight: weight.is_some(),
            has_bias: bias.is_some(),
        };
        let mut inputs = vec![self, &stats];
        inputs.extend(weight);
        inputs.extend(bias);
        Tensor::record(y, GradOp::fused(grad), &inputs)
    }
}
