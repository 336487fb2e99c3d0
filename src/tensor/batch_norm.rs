//! Batch normalisation, forward and backward, as four kernels over `[N, C, L]` views.
//!
//! Training mode makes two passes over the input: `Stats` reduces each channel to a small
//! statistics table (mean, biased variance, `invstd`, `scale = weight * invstd`), then
//! `Apply` writes `y = (x - mean) * scale + bias`. The backward pass mirrors it:
//! `BackwardReduce` sums `dy` and `dy * (x - mean)` per channel into a gradient table that
//! holds the weight and bias gradients and the per-channel factors of the input gradient,
//! and `BackwardApply` writes the input gradient from it. Keeping the per-channel
//! arithmetic inside the two reduction kernels keeps a training step at two dispatches
//! each way instead of a dozen small elementwise ops on `[C]` vectors.
//!
//! The running statistics are updated in place on the device (`Tensor::assign`), from the
//! statistics table, so training never waits for the host.

use crate::autograd::FusedGrad;
use crate::autograd::{is_grad_enabled, GradOp};
use crate::dtype::DType;
use crate::op::norm::{BnDims, BATCH_NORM_HAS_BIAS, BATCH_NORM_HAS_WEIGHT, BATCH_NORM_TRAINING, GRAD_ROWS, STATS_ROWS};
use crate::op::BatchNormOp;
use crate::storage::Storage;
use crate::Tensor;

/// The gradient rule of [`Tensor::batch_norm`]. Inputs are `[x, statistics table,
/// weight (when present), bias (when present)]`; the table is a saved constant.
#[derive(Clone, Debug)]
pub(crate) struct BatchNormGrad {
    /// Batch statistics (which depend on `x`) rather than running statistics (constants).
    training: bool,
    has_weight: bool,
    has_bias: bool,
}

impl FusedGrad for BatchNormGrad {
    fn backward(&self, g: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let (x, stats) = (&inputs[0], &inputs[1]);
        let d = dims_of(x.shape());
        let mut grads: Vec<Option<Tensor>> = vec![None; inputs.len()];
        let shape3 = [d.n as isize, d.c as isize, d.l as isize];
        let dy = g.detach().reshape(&shape3).contiguous();
        let x3 = x.detach().reshape(&shape3).contiguous();
        let flags = if self.training { BATCH_NORM_TRAINING } else { 0 };
        let table = kernel(BatchNormOp::BackwardReduce, d, flags, 0.0, [&dy, &x3, stats, &dy]);
        if x.is_tracked() {
            let dx = kernel(BatchNormOp::BackwardApply, d, 0, 0.0, [&dy, &x3, &table, &dy]);
            grads[0] = Some(dx.reshape(&shape_isize(x.shape())));
        }
        let mut next = 2;
        if self.has_weight {
            grads[next] = inputs[next].is_tracked().then(|| row(&table, 1));
            next += 1;
        }
        if self.has_bias {
            grads[next] = inputs[next].is_tracked().then(|| row(&table, 0));
        }
        grads
    }
}

fn shape_isize(shape: &[usize]) -> Vec<isize> {
    shape.iter().map(|&d| d as isize).collect()
}

/// `[N, C, ...]` seen as `[N, C, L]`.
fn dims_of(shape: &[usize]) -> BnDims {
    BnDims { n: shape[0], c: shape[1], l: shape[2..].iter().product() }
}

/// Row `r` of a `[rows, C]` table, as a `[C]` view.
fn row(table: &Tensor, r: usize) -> Tensor {
    let c = table.dim(1);
    table.narrow(0, r, 1).reshape(&[c as isize])
}

/// Runs one of the four kernels on contiguous operands (any offset). `inputs` follow
/// batch_norm.wgsl; entries the op does not read may be any tensor on the device.
fn kernel(op: BatchNormOp, d: BnDims, flags: u32, eps: f32, inputs: [&Tensor; 4]) -> Tensor {
    let shape: Vec<usize> = match op {
        BatchNormOp::Stats => vec![STATS_ROWS, d.c],
        BatchNormOp::BackwardReduce => vec![GRAD_ROWS, d.c],
        BatchNormOp::Apply | BatchNormOp::BackwardApply => vec![d.n, d.c, d.l],
    };
    debug_assert!(inputs.iter().all(|t| t.is_contiguous() && t.dtype == DType::F32));
    let at = inputs.map(|t| (&*t.storage, t.layout.offset));
    Tensor::from_storage(Storage::batch_norm(op, d, flags, eps, at), &shape, DType::F32)
}

impl Tensor {
    /// Panics, as PyTorch does, when batch statistics of this `[N, C, ...]` input would
    /// come from one value per channel: the variance of one value is zero and the
    /// normalised output would be all zeros. `op` names the caller in the message.
    pub(crate) fn check_batch_norm_values(&self, op: &str) {
        let shape = self.shape();
        let values = shape[0] * shape[2..].iter().product::<usize>();
        assert!(
            values != 1,
            "{op}: expected more than 1 value per channel when training, got input of shape {shape:?}"
        );
    }

    /// Batch normalisation of an `[N, C]`, `[N, C, L]` or `[N, C, H, W]` (any `[N, C, ...]`)
    /// tensor over every axis but the channel axis 1, as `torch.nn.functional.batch_norm`:
    /// `y = (x - mean) / sqrt(var + eps) * weight + bias`, per channel.
    ///
    /// With `training`, the mean and biased variance of this batch normalise it, and when
    /// `running_mean` and `running_var` are given they are updated in place (on the
    /// device, recorded like any op) with the unbiased variance:
    /// `running = (1 - momentum) * running + momentum * batch_statistic`. Without
    /// `training`, the running statistics normalise the input and must be given. `weight`
    /// and `bias` (`[C]` each) are optional, as with `affine=False`. The result is
    /// differentiable with respect to the input, weight and bias; the running statistics
    /// are buffers, never differentiated.
    ///
    /// Panics when an argument does not fit the input's `C` channels, when `training` is
    /// set but a channel has only one value (PyTorch's "Expected more than 1 value per
    /// channel when training"), when evaluation has no running statistics, when training
    /// would update running statistics that are non-contiguous views, or when `eps` is
    /// negative.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let x = Tensor::from_slice(&[1.0f32, 10.0, 3.0, 30.0], &[2, 2], &dev);
    /// let (mean, var) = (Tensor::zeros(&[2], &dev), Tensor::ones(&[2], &dev));
    /// let y = x.batch_norm(Some(&mean), Some(&var), None, None, true, 0.1, 0.0);
    /// assert_eq!(y.to_vec::<f32>(), [-1.0, -1.0, 1.0, 1.0]);
    /// // Means 2 and 20, unbiased variances 2 and 200, moved 10% of the way.
    /// assert_eq!(mean.to_vec::<f32>(), [0.2, 2.0]);
    /// assert_eq!(var.to_vec::<f32>(), [1.1, 20.9]);
    /// ```
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        running_mean: Option<&Tensor>,
        running_var: Option<&Tensor>,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        training: bool,
        momentum: f32,
        eps: f32,
    ) -> Tensor {
        let op = "batch_norm";
        assert!(
            self.rank() >= 2,
            "{op}: input must be [N, C, ...] with at least 2 dimensions, got shape {:?}",
            self.shape()
        );
        self.expect_dtype(DType::F32, op);
        let d = dims_of(self.shape());
        let per_channel =
            [("running_mean", running_mean), ("running_var", running_var), ("weight", weight), ("bias", bias)];
        for (name, t) in per_channel {
            let Some(t) = t else { continue };
            assert_eq!(
                t.shape(),
                [d.c],
                "{op}: {name} of shape {:?} does not match the {} channels of the input of shape {:?}",
                t.shape(),
                d.c,
                self.shape()
            );
            t.expect_dtype(DType::F32, op);
            self.same_device(t, op);
        }
        assert_eq!(
            running_mean.is_some(),
            running_var.is_some(),
            "{op}: running_mean and running_var must be given together"
        );
        assert!(
            training || running_mean.is_some(),
            "{op}: evaluation (training = false) normalises with running_mean and running_var, and none were given \
             for the input of shape {:?}",
            self.shape()
        );
        if training {
            for (name, t) in [("running_mean", running_mean), ("running_var", running_var)] {
                assert!(
                    t.is_none_or(Tensor::is_contiguous),
                    "{op}: {name} is a non-contiguous view (strides {:?}); running statistics are updated in place",
                    t.map(|t| t.strides().to_vec()).unwrap_or_default()
                );
            }
            self.check_batch_norm_values(op);
        }
        assert!(eps >= 0.0, "{op}: eps must be non-negative, got {eps}");
        if self.numel() == 0 {
            // Nothing to normalise and no statistics to update, as in PyTorch.
            return self.affine(1.0, 0.0);
        }

        let x = self.detach().reshape(&[d.n as isize, d.c as isize, d.l as isize]).contiguous();
        let weight_c = weight.map(|w| w.detach().contiguous());
        let bias_c = bias.map(|b| b.detach().contiguous());
        let mut flags = 0;
        if weight.is_some() {
            flags |= BATCH_NORM_HAS_WEIGHT;
        }
        if bias.is_some() {
            flags |= BATCH_NORM_HAS_BIAS;
        }
        let bias_or_x = bias_c.as_ref().unwrap_or(&x);

        let (y, stats) = if training {
            let stats = kernel(BatchNormOp::Stats, d, flags, eps, [&x, weight_c.as_ref().unwrap_or(&x), &x, &x]);
            let y = kernel(BatchNormOp::Apply, d, flags, 0.0, [&x, &row(&stats, 0), &row(&stats, 3), bias_or_x]);
            if let (Some(rm), Some(rv)) = (running_mean, running_var) {
                update_running(rm, rv, &stats, momentum, d.per_channel());
            }
            (y, Some(stats))
        } else {
            let (rm, rv) =
                (running_mean.expect("checked above").detach(), running_var.expect("checked above").detach());
            let (rm, rv) = (rm.contiguous(), rv.contiguous());
            let invstd = rv.add_scalar(eps).rsqrt();
            let scale = match &weight_c {
                Some(w) => w.mul(&invstd),
                None => invstd.clone(),
            };
            let y = kernel(BatchNormOp::Apply, d, flags, 0.0, [&x, &rm, &scale, bias_or_x]);
            // The backward pass needs the statistics as they are now: the running buffers
            // may be overwritten in place before it runs, so they are copied into a table.
            let tracked =
                self.is_tracked() || weight.is_some_and(Tensor::is_tracked) || bias.is_some_and(Tensor::is_tracked);
            let stats = (is_grad_enabled() && tracked).then(|| Tensor::stack(&[rm, rv, invstd, scale], 0));
            (y, stats)
        };

        let y = y.reshape(&shape_isize(self.shape()));
        let Some(stats) = stats else { return y };
        let grad = BatchNormGrad { training, has_weight: weight.is_some(), has_bias: bias.is_some() };
        let mut inputs = vec![self, &stats];
        inputs.extend(weight);
        inputs.extend(bias);
        Tensor::record(y, GradOp::fused(grad), &inputs)
    }
}

/// `running = (1 - momentum) * running + momentum * batch_statistic` for the mean and the
/// unbiased variance (the statistics table holds the biased one), in place.
fn update_running(running_mean: &Tensor, running_var: &Tensor, stats: &Tensor, momentum: f32, count: usize) {
    crate::autograd::no_grad(|| {
        let bessel = (count as f64 / (count as f64 - 1.0)) as f32;
        let mean = running_mean.detach().affine(1.0 - momentum, 0.0).add(&row(stats, 0).mul_scalar(momentum));
        let var = running_var.detach().affine(1.0 - momentum, 0.0).add(&row(stats, 1).mul_scalar(momentum * bessel));
        running_mean.assign(&mean);
        running_var.assign(&var);
    });
}
