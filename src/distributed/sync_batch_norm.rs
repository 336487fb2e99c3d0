//! Batch normalisation with statistics over the samples of every rank, as PyTorch's
//! `torch.nn.SyncBatchNorm`, and the differentiable all-reduce it is composed from.
//!
//! [`SyncBatchNorm`] is built from tensor ops and [`all_reduce_sum`] rather than from the
//! fused batch-norm kernels, so autograd derives its gradient: the all-reduce's rule sums
//! the upstream gradient across the ranks, which is what makes each rank's input gradient
//! include the part that flows through the other ranks' losses.

use super::World;
use crate::autograd::{FusedGrad, GradOp};
use crate::nn::batch_norm::BatchNormCore;
use crate::nn::{BatchNorm1d, BatchNorm2d, Forward, Module, Visitor, VisitorMut};
use crate::{no_grad, DType, Device, Tensor};

/// The element-wise sum of `x` over the ranks of `world`, on every rank, differentiable.
///
/// Forward: a blocking MPI sum of `x`'s values (read back to the host), uploaded to `x`'s
/// device with `x`'s shape. Backward: the gradient with respect to `x` is the all-reduce
/// sum of the upstream gradient, because every rank's loss depends on the sum and so on
/// every rank's `x`. Every rank must call it (and run the backward pass through it) in the
/// same order with the same shape, as any MPI collective. `x` must be f32.
///
/// ```no_run
/// use wgrad::distributed::{all_reduce_sum, World};
/// use wgrad::{Device, Tensor};
/// let world = World::init()?;
/// let x = Tensor::ones(&[3], &Device::cpu());
/// // Under `mpirun -np 2`: [2, 2, 2] on both ranks.
/// let total = all_reduce_sum(&x, &world);
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn all_reduce_sum(x: &Tensor, world: &World) -> Tensor {
    all_reduce_sum_host(x, world).0
}

/// [`all_reduce_sum`], also returning the summed values as read on the host.
fn all_reduce_sum_host(x: &Tensor, world: &World) -> (Tensor, Vec<f32>) {
    x.expect_dtype(DType::F32, "all_reduce_sum");
    let send: Vec<f32> = x.to_vec();
    let mut recv = vec![0.0f32; send.len()];
    world.all_reduce_sum(&send, &mut recv);
    let out = Tensor::from_slice(&recv, x.shape(), x.device());
    (Tensor::record(out, GradOp::fused(AllReduceSumGrad), &[x]), recv)
}

/// The gradient rule of [`all_reduce_sum`]; its one input is `x`. The world is found
/// again at backward time ([`World::current`]): a rule is shared across threads and a
/// `World` may not be.
#[derive(Debug)]
struct AllReduceSumGrad;

impl FusedGrad for AllReduceSumGrad {
    fn backward(&self, g: &Tensor, _inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let world = World::current().unwrap_or_else(|| {
            panic!(
                "all_reduce_sum backward: no World is alive on this thread (gradient of shape {:?}); keep the World \
                 alive and run backward on the thread that started it",
                g.shape()
            )
        });
        vec![Some(all_reduce_sum(&g.detach(), &world))]
    }
}

/// Batch normalisation whose training statistics are those of the whole global batch,
/// over every rank, as `torch.nn.SyncBatchNorm`: in training mode the per-channel mean
/// and biased variance are computed over the samples of all ranks (the count is the sum
/// of every rank's `N·H·W`, so ranks may hold different batch sizes), every rank
/// normalises its share with them, and the running statistics move towards the global
/// mean and unbiased variance with the layer's momentum, identically on every rank. In
/// evaluation mode it is [`BatchNorm2d`]: the running statistics normalise the input.
///
/// It accepts any `[N, C, ...]` input (as `BatchNorm1d` and `BatchNorm2d` together) and has
/// the parameters and buffers of the batch-norm layer it replaces, under the same names
/// (`weight`, `bias`, `running_mean`, `running_var`, `num_batches_tracked`), so state
/// dicts and checkpoints load into either. Build one with [`SyncBatchNorm::new`] or from
/// an existing layer with `From` (PyTorch's `convert_sync_batchnorm`, one layer at a
/// time); the converted layer keeps the original's tensors, settings and mode.
///
/// Training needs a live [`World`] on the calling thread (the one `World::init` returned);
/// every rank must run the layer the same number of times in the same order. The
/// statistics are composed in two passes, the mean and then the sum of squared deviations
/// from it, each an all-reduce of `C` values (the first carries the count too), so a
/// forward pass costs two blocking all-reduces per layer and the backward pass two more.
/// With one rank the result equals [`BatchNorm2d`]'s up to float rounding.
///
/// ```no_run
/// use wgrad::distributed::{SyncBatchNorm, World};
/// use wgrad::nn::{self, BatchNorm2d, Module};
/// use wgrad::Device;
/// let world = World::init()?;
/// let dev = Device::cpu();
/// let model = nn::Sequential::new()
///     .add(nn::Conv2d::new(3, 16, 3, &dev))
///     .add(SyncBatchNorm::from(BatchNorm2d::new(16, &dev).momentum(None)))
///     .add(nn::ReLU);
/// assert!(model.describe().contains("SyncBatchNorm(16, eps=1e-05, momentum=None"));
/// # Ok::<(), wgrad::Error>(())
/// ```
pub struct SyncBatchNorm {
    /// The batch-norm layer's settings and tensors, `kind` "SyncBatchNorm".
    core: BatchNormCore,
}

impl SyncBatchNorm {
    /// A layer over `num_features` channels on `device`, with PyTorch's defaults (those of
    /// [`BatchNorm2d::new`]). For other settings, build the batch-norm layer and convert it.
    pub fn new(num_features: usize, device: &Device) -> SyncBatchNorm {
        BatchNorm2d::new(num_features, device).into()
    }

    /// The number of channels `C`.
    pub fn num_features(&self) -> usize {
        self.core.num_features
    }

    /// The learned per-channel scale, `None` without `affine`.
    pub fn weight(&self) -> Option<&Tensor> {
        self.core.weight.as_ref()
    }

    /// The learned per-channel shift, `None` without `affine`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.core.bias.as_ref()
    }

    /// The running mean (`[C]`), `None` without `track_running_stats`.
    pub fn running_mean(&self) -> Option<&Tensor> {
        self.core.running_mean.as_ref()
    }

    /// The running unbiased variance (`[C]`), `None` without `track_running_stats`.
    pub fn running_var(&self) -> Option<&Tensor> {
        self.core.running_var.as_ref()
    }

    /// Training batches seen (a zero-dimensional `i32` tensor in host memory), `None`
    /// without `track_running_stats`.
    pub fn num_batches_tracked(&self) -> Option<&Tensor> {
        self.core.num_batches_tracked.as_ref()
    }

    /// Training mode: the statistics of the global batch, through two all-reduces.
    fn forward_synced(&self, x: &Tensor, world: &World) -> Tensor {
        let shape = x.shape().to_vec();
        let c = self.core.num_features;
        let axes: Vec<isize> = (0..shape.len()).filter(|&a| a != 1).map(|a| a as isize).collect();
        // `[1, C, 1, ...]`: a per-channel vector broadcast against the input.
        let per_channel: Vec<isize> = (0..shape.len()).map(|a| if a == 1 { c as isize } else { 1 }).collect();
        let local_count = shape[0] * shape[2..].iter().product::<usize>();

        // Pass 1: the per-channel sums and the count, in one all-reduce. The count is an
        // untracked constant, so the gradient reaches only the sums.
        let count_t = Tensor::from_slice(&[local_count as f32], &[1], x.device());
        let packed = Tensor::cat(&[x.sum(&axes, false), count_t], 0);
        let (packed, host) = all_reduce_sum_host(&packed, world);
        let count = host[c];
        // Every rank sees the same global count, so every rank stops here together.
        assert!(
            count > 1.0,
            "SyncBatchNorm: expected more than 1 value per channel when training, got {count} over all ranks \
             (input of shape {shape:?} on rank {})",
            world.rank()
        );
        let mean = packed.narrow(0, 0, c).mul_scalar(1.0 / count);

        // Pass 2: the sum of squared deviations from the global mean (no cancellation, as
        // `E[x²] - E[x]²` would have).
        let centred = x.sub(&mean.reshape(&per_channel));
        let squares = all_reduce_sum(&centred.square().sum(&axes, false), world);
        let var = squares.mul_scalar(1.0 / count);
        let invstd = var.add_scalar(self.core.eps).rsqrt();
        let scale = match &self.core.weight {
            Some(w) => invstd.mul(w),
            None => invstd,
        };
        let mut y = centred.mul(&scale.reshape(&per_channel));
        if let Some(b) = &self.core.bias {
            y = y.add(&b.reshape(&per_channel));
        }

        if let (Some(rm), Some(rv)) = (&self.core.running_mean, &self.core.running_var) {
            let counter = self.core.num_batches_tracked.as_ref().expect("running statistics come with a count");
            let batches = counter.increment_counter();
            let factor = self.core.momentum.unwrap_or(1.0 / batches as f32);
            no_grad(|| {
                let unbiased = var.detach().mul_scalar(count / (count - 1.0));
                rm.assign(&rm.mul_scalar(1.0 - factor).add(&mean.detach().mul_scalar(factor)));
                rv.assign(&rv.mul_scalar(1.0 - factor).add(&unbiased.mul_scalar(factor)));
            });
        }
        y
    }
}

/// Takes the layer's tensors (shared, not copied: an optimizer already holding the
/// parameters keeps updating this layer's), settings and mode.
macro_rules! from_batch_norm {
    ($bn:ty) => {
        impl From<$bn> for SyncBatchNorm {
            fn from(bn: $bn) -> SyncBatchNorm {
                SyncBatchNorm { core: BatchNormCore { kind: "SyncBatchNorm", ..bn.into_core() } }
            }
        }
    };
}

from_batch_norm!(BatchNorm1d);
from_batch_norm!(BatchNorm2d);

impl Forward for SyncBatchNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        assert!(x.rank() >= 2, "SyncBatchNorm: expected an [N, C, ...] input, got shape {:?}", x.shape());
        assert_eq!(
            x.dim(1),
            self.core.num_features,
            "SyncBatchNorm({}): input of shape {:?} has {} channels in dimension 1, expected {}",
            self.core.num_features,
            x.shape(),
            x.dim(1),
            self.core.num_features
        );
        x.expect_dtype(DType::F32, "SyncBatchNorm");
        assert!(
            x.device() == &self.core.device,
            "SyncBatchNorm: input of shape {:?} is on {} but the layer on {}",
            x.shape(),
            x.device().info(),
            self.core.device.info()
        );
        if self.core.training {
            let world = World::current().unwrap_or_else(|| {
                panic!(
                    "SyncBatchNorm: training needs a live World on this thread (World::init), input of shape {:?}",
                    x.shape()
                )
            });
            return self.forward_synced(x, &world);
        }
        // Evaluation, as PyTorch: the running statistics, or without them the statistics
        // of this rank's batch (nothing to synchronise outside training).
        let batch_stats = self.core.running_mean.is_none();
        if batch_stats {
            x.check_batch_norm_values("SyncBatchNorm");
        }
        x.batch_norm(
            self.core.running_mean.as_ref(),
            self.core.running_var.as_ref(),
            self.core.weight.as_ref(),
            self.core.bias.as_ref(),
            batch_stats,
            0.0,
            self.core.eps,
        )
    }
}

impl Module for SyncBatchNorm {
    fn visit(&self, v: &mut Visitor<'_>) {
        self.core.visit(v);
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        self.core.visit_mut(v);
    }

    fn set_training(&mut self, training: bool) {
        self.core.training = training;
    }

    fn is_training(&self) -> bool {
        self.core.training
    }

    fn describe(&self) -> String {
        self.core.describe()
    }
}
