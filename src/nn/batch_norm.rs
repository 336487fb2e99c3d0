//! Batch normalisation layers: [`BatchNorm1d`] and [`BatchNorm2d`], as PyTorch's.
//!
//! Both are one implementation that differs only in the input ranks it accepts. A layer
//! owns parameters (`weight`, `bias`) and buffers (`running_mean`, `running_var`,
//! `num_batches_tracked`), all named as PyTorch names them so checkpoints carry over.
//!
//! `forward` takes `&self`, as every module's does, yet training changes the buffers: the
//! running statistics are overwritten in place on the module's device by
//! [`Tensor::batch_norm`], and `num_batches_tracked` is a one-element `i32` tensor kept in
//! host memory whatever the device, incremented under its storage lock. The count is only
//! ever read on the host (for the cumulative average of `momentum(None)`), so keeping it
//! there means a GPU model never waits for the device to learn it.

use super::{python_float, Forward, Module, Visitor, VisitorMut};
use crate::{Device, Tensor};

/// What the batch-norm layers share: `BatchNorm1d`, `BatchNorm2d` and, with the `mpi`
/// feature, `distributed::SyncBatchNorm`.
pub(crate) struct BatchNormCore {
    /// The layer's type name, for messages and `describe`.
    pub(crate) kind: &'static str,
    pub(crate) num_features: usize,
    pub(crate) eps: f32,
    pub(crate) momentum: Option<f32>,
    pub(crate) device: Device,
    pub(crate) weight: Option<Tensor>,
    pub(crate) bias: Option<Tensor>,
    pub(crate) running_mean: Option<Tensor>,
    pub(crate) running_var: Option<Tensor>,
    pub(crate) num_batches_tracked: Option<Tensor>,
    pub(crate) training: bool,
}

impl BatchNormCore {
    fn new(kind: &'static str, num_features: usize, device: &Device) -> BatchNormCore {
        assert!(num_features > 0, "{kind}: num_features must be positive");
        BatchNormCore {
            kind,
            num_features,
            eps: 1e-5,
            momentum: Some(0.1),
            device: device.clone(),
            weight: None,
            bias: None,
            running_mean: None,
            running_var: None,
            num_batches_tracked: None,
            training: true,
        }
        .affine(true)
        .track_running_stats(true)
    }

    /// A layer over the given tensors: weight and bias both or neither, running mean and
    /// variance both or neither, at least one pair, each of shape `[C]`, f32, contiguous,
    /// on one device. The count starts at zero.
    fn from_parameters(
        kind: &'static str,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        running_mean: Option<Tensor>,
        running_var: Option<Tensor>,
    ) -> BatchNormCore {
        assert_eq!(
            weight.is_some(),
            bias.is_some(),
            "{kind}: weight and bias come together (affine) or not at all, got weight {:?} and bias {:?}",
            weight.as_ref().map(Tensor::shape),
            bias.as_ref().map(Tensor::shape)
        );
        assert_eq!(
            running_mean.is_some(),
            running_var.is_some(),
            "{kind}: running_mean and running_var come together (track_running_stats) or not at all, \
             got running_mean {:?} and running_var {:?}",
            running_mean.as_ref().map(Tensor::shape),
            running_var.as_ref().map(Tensor::shape)
        );
        let given =
            [("weight", &weight), ("bias", &bias), ("running_mean", &running_mean), ("running_var", &running_var)];
        let given: Vec<(&str, &Tensor)> = given.iter().filter_map(|(n, t)| t.as_ref().map(|t| (*n, t))).collect();
        let Some(&(first_name, first)) = given.first() else {
            panic!("{kind}: from_parameters needs weight and bias, running statistics, or both; got none")
        };
        let c = first.shape().first().copied().unwrap_or(0);
        for &(name, t) in &given {
            assert!(
                t.rank() == 1 && t.dim(0) == c && c > 0,
                "{kind}: {name} of shape {:?} does not match {first_name} of shape {:?}; every tensor must be [C]",
                t.shape(),
                first.shape()
            );
            assert_eq!(
                t.dtype(),
                crate::DType::F32,
                "{kind}: {name} of shape {:?} must be f32, got {}",
                t.shape(),
                t.dtype()
            );
            assert!(t.is_contiguous(), "{kind}: {name} of shape {:?} must be contiguous", t.shape());
            assert!(
                t.device() == first.device(),
                "{kind}: {name} is on {} but {first_name} on {}",
                t.device().info(),
                first.device().info()
            );
        }
        let track = running_mean.is_some();
        BatchNormCore {
            kind,
            num_features: c,
            eps: 1e-5,
            momentum: Some(0.1),
            device: first.device().clone(),
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked: track.then(|| Tensor::from_slice(&[0i32], &[], &Device::cpu())),
            training: true,
        }
    }

    fn eps(mut self, eps: f32) -> Self {
        assert!(eps >= 0.0 && eps.is_finite(), "{}: eps must be a finite non-negative number, got {eps}", self.kind);
        self.eps = eps;
        self
    }

    fn momentum(mut self, momentum: Option<f32>) -> Self {
        if let Some(m) = momentum {
            assert!((0.0..=1.0).contains(&m), "{}: momentum must be in [0, 1] or None, got {m}", self.kind);
        }
        self.momentum = momentum;
        self
    }

    /// Fresh parameters (weight ones, bias zeros, as PyTorch's `reset_parameters`), or none.
    fn affine(mut self, affine: bool) -> Self {
        let c = self.num_features;
        self.weight = affine.then(|| Tensor::ones(&[c], &self.device).requires_grad());
        self.bias = affine.then(|| Tensor::zeros(&[c], &self.device).requires_grad());
        self
    }

    /// Fresh buffers (mean zeros, variance ones, count zero), or none.
    fn track_running_stats(mut self, track: bool) -> Self {
        let c = self.num_features;
        self.running_mean = track.then(|| Tensor::zeros(&[c], &self.device));
        self.running_var = track.then(|| Tensor::ones(&[c], &self.device));
        self.num_batches_tracked = track.then(|| Tensor::from_slice(&[0i32], &[], &Device::cpu()));
        self
    }

    fn check_input(&self, x: &Tensor, ranks: &[usize], expected: &str) {
        assert!(ranks.contains(&x.rank()), "{}: expected {expected} input, got shape {:?}", self.kind, x.shape());
        assert_eq!(
            x.dim(1),
            self.num_features,
            "{}({}): input of shape {:?} has {} channels in dimension 1, expected {}",
            self.kind,
            self.num_features,
            x.shape(),
            x.dim(1),
            self.num_features
        );
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        // PyTorch's rule: batch statistics in training, and always when there are no
        // running statistics to use instead.
        let batch_stats = self.training || self.running_mean.is_none();
        if batch_stats {
            // Checked before the count moves, so a rejected batch changes nothing.
            x.check_batch_norm_values(self.kind);
        }
        let mut factor = self.momentum.unwrap_or(0.0);
        if self.training {
            if let Some(counter) = &self.num_batches_tracked {
                let count = counter.increment_counter();
                if self.momentum.is_none() {
                    // The cumulative moving average: the n-th batch gets weight 1/n.
                    factor = 1.0 / count as f32;
                }
            }
        }
        x.batch_norm(
            self.running_mean.as_ref(),
            self.running_var.as_ref(),
            self.weight.as_ref(),
            self.bias.as_ref(),
            batch_stats,
            factor,
            self.eps,
        )
    }

    pub(crate) fn visit(&self, v: &mut Visitor<'_>) {
        for (name, t) in [("weight", &self.weight), ("bias", &self.bias)] {
            if let Some(t) = t {
                v.parameter(name, t);
            }
        }
        let buffers = [
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
            ("num_batches_tracked", &self.num_batches_tracked),
        ];
        for (name, t) in buffers {
            if let Some(t) = t {
                v.buffer(name, t);
            }
        }
    }

    pub(crate) fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        for (name, t) in [("weight", &mut self.weight), ("bias", &mut self.bias)] {
            if let Some(t) = t {
                v.parameter(name, t);
            }
        }
        let buffers = [
            ("running_mean", &mut self.running_mean),
            ("running_var", &mut self.running_var),
            ("num_batches_tracked", &mut self.num_batches_tracked),
        ];
        for (name, t) in buffers {
            if let Some(t) = t {
                v.buffer(name, t);
            }
        }
        // The visitor may have moved the tensors (`to_device`): the layer's device follows
        // them, and the count goes back to host memory, where `forward` increments it.
        if let Some(t) = [&self.weight, &self.running_mean].into_iter().flatten().next() {
            self.device = t.device().clone();
        }
        if let Some(count) = &mut self.num_batches_tracked {
            if !count.device().is_cpu() {
                *count = count.to_device(&Device::cpu());
            }
        }
    }

    pub(crate) fn describe(&self) -> String {
        let python_bool = |b: bool| if b { "True" } else { "False" };
        format!(
            "{}({}, eps={}, momentum={}, affine={}, track_running_stats={})",
            self.kind,
            self.num_features,
            python_float(self.eps),
            self.momentum.map_or("None".to_string(), python_float),
            python_bool(self.weight.is_some()),
            python_bool(self.running_mean.is_some())
        )
    }
}

/// Declares one public layer type over [`BatchNormCore`].
macro_rules! batch_norm_layer {
    ($(#[$meta:meta])* $name:ident, ranks $ranks:expr, expects $expected:literal) => {
        $(#[$meta])*
        pub struct $name(BatchNormCore);

        impl $name {
            /// A layer over `num_features` channels on `device`, with PyTorch's defaults:
            /// `eps = 1e-5`, `momentum = Some(0.1)`, affine (weight ones, bias zeros) and
            /// tracking running statistics (mean zeros, variance ones), in training mode.
            pub fn new(num_features: usize, device: &Device) -> $name {
                $name(BatchNormCore::new(stringify!($name), num_features, device))
            }

            /// A layer over the given tensors, as PyTorch's state dict holds them: `weight`
            /// and `bias` (the affine parameters, which should require gradients) both or
            /// neither, `running_mean` and `running_var` (the buffers, updated in place in
            /// training) both or neither, at least one pair; each of shape `[C]`, f32,
            /// contiguous and on one device, which becomes the layer's. `num_batches_tracked`
            /// starts at zero (load a state dict to set it). `eps` and `momentum` take their
            /// defaults; chain [`Self::eps`] and [`Self::momentum`] to change them (not
            /// `affine` or `track_running_stats`, which reset the tensors). Panics, naming
            /// the layer and the shapes, when the tensors do not fit together.
            pub fn from_parameters(
                weight: Option<Tensor>,
                bias: Option<Tensor>,
                running_mean: Option<Tensor>,
                running_var: Option<Tensor>,
            ) -> $name {
                $name(BatchNormCore::from_parameters(stringify!($name), weight, bias, running_mean, running_var))
            }

            /// The value added to the variance before its square root, for numerical
            /// stability (default `1e-5`).
            pub fn eps(self, eps: f32) -> $name {
                $name(self.0.eps(eps))
            }

            /// How far each training batch moves the running statistics:
            /// `running = (1 - m) * running + m * batch_statistic` (default `Some(0.1)`).
            /// `None` gives the cumulative moving average, every batch weighing the same:
            /// the n-th batch moves them by `1/n`, counted by `num_batches_tracked`.
            pub fn momentum(self, momentum: Option<f32>) -> $name {
                $name(self.0.momentum(momentum))
            }

            /// With `true` (the default) the layer learns a per-channel `weight` and `bias`
            /// after normalising; with `false` it has no parameters. Resets them.
            pub fn affine(self, affine: bool) -> $name {
                $name(self.0.affine(affine))
            }

            /// With `true` (the default) the layer keeps running statistics during training
            /// and normalises with them in evaluation mode; with `false` it has no buffers
            /// and always normalises with the statistics of the batch it is given. Resets
            /// the buffers.
            pub fn track_running_stats(self, track: bool) -> $name {
                $name(self.0.track_running_stats(track))
            }

            /// The layer's settings and tensors (shared, not copied), for layers that take
            /// this one's place (`distributed::SyncBatchNorm`).
            #[allow(dead_code)] // used only with the `mpi` feature
            pub(crate) fn into_core(self) -> BatchNormCore {
                self.0
            }

            /// The number of channels `C`.
            pub fn num_features(&self) -> usize {
                self.0.num_features
            }

            /// The learned per-channel scale, `None` without `affine`.
            pub fn weight(&self) -> Option<&Tensor> {
                self.0.weight.as_ref()
            }

            /// The learned per-channel shift, `None` without `affine`.
            pub fn bias(&self) -> Option<&Tensor> {
                self.0.bias.as_ref()
            }

            /// The running mean (`[C]`, on the layer's device), `None` without
            /// `track_running_stats`.
            pub fn running_mean(&self) -> Option<&Tensor> {
                self.0.running_mean.as_ref()
            }

            /// The running unbiased variance (`[C]`, on the layer's device), `None` without
            /// `track_running_stats`.
            pub fn running_var(&self) -> Option<&Tensor> {
                self.0.running_var.as_ref()
            }

            /// Training batches seen: a zero-dimensional `i32` tensor in host memory
            /// (see the module documentation), `None` without `track_running_stats`.
            pub fn num_batches_tracked(&self) -> Option<&Tensor> {
                self.0.num_batches_tracked.as_ref()
            }
        }

        impl Forward for $name {
            fn forward(&self, x: &Tensor) -> Tensor {
                self.0.check_input(x, &$ranks, $expected);
                self.0.forward(x)
            }
        }

        impl Module for $name {
            fn visit(&self, v: &mut Visitor<'_>) {
                self.0.visit(v);
            }

            fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
                self.0.visit_mut(v);
            }

            fn set_training(&mut self, training: bool) {
                self.0.training = training;
            }

            fn is_training(&self) -> bool {
                self.0.training
            }

            fn describe(&self) -> String {
                self.0.describe()
            }
        }
    };
}

batch_norm_layer! {
    /// Batch normalisation of `[N, C]` features or `[N, C, L]` sequences over the batch
    /// (and length), per channel, as `torch.nn.BatchNorm1d`:
    /// `y = (x - mean) / sqrt(var + eps) * weight + bias`.
    ///
    /// In training mode the statistics of each batch normalise it and update the running
    /// statistics; in evaluation mode ([`Module::set_training`]`(false)`) the running
    /// statistics normalise it. See [`Tensor::batch_norm`].
    ///
    /// ```
    /// use wgrad::nn::{BatchNorm1d, Forward, Module};
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let bn = BatchNorm1d::new(3, &dev);
    /// assert_eq!(bn.describe(), "BatchNorm1d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
    /// let y = bn.forward(&Tensor::randn(&[8, 3], 0, &dev));
    /// let means: Vec<f32> = y.mean(&[0], false).to_vec();
    /// assert!(means.iter().all(|m| m.abs() < 1e-5));
    /// let names: Vec<String> = bn.named_buffers().into_iter().map(|(n, _)| n).collect();
    /// assert_eq!(names, ["running_mean", "running_var", "num_batches_tracked"]);
    /// ```
    BatchNorm1d, ranks [2, 3], expects "[N, C] or [N, C, L]"
}

batch_norm_layer! {
    /// Batch normalisation of `[N, C, H, W]` images over the batch and both spatial axes,
    /// per channel, as `torch.nn.BatchNorm2d`:
    /// `y = (x - mean) / sqrt(var + eps) * weight + bias`.
    ///
    /// In training mode the statistics of each batch normalise it and update the running
    /// statistics; in evaluation mode ([`Module::set_training`]`(false)`) the running
    /// statistics normalise it. See [`Tensor::batch_norm`].
    ///
    /// ```
    /// use wgrad::nn::{BatchNorm2d, Forward, Module};
    /// use wgrad::Device;
    /// let bn = BatchNorm2d::new(32, &Device::cpu()).momentum(None).affine(false);
    /// assert_eq!(bn.describe(), "BatchNorm2d(32, eps=1e-05, momentum=None, affine=False, track_running_stats=True)");
    /// assert!(bn.named_parameters().is_empty());
    /// ```
    BatchNorm2d, ranks [4], expects "[N, C, H, W]"
}

#[cfg(test)]
mod tests {
    use super::python_float;

    #[test]
    fn floats_print_as_python_repr_does() {
        let cases =
            [(1e-5, "1e-05"), (0.1, "0.1"), (1.0, "1.0"), (0.001, "0.001"), (1e-4, "0.0001"), (2.5e-7, "2.5e-07")];
        for (v, expected) in cases {
            assert_eq!(python_float(v), expected);
        }
        assert_eq!(python_float(0.0), "0.0");
        assert_eq!(python_float(1e20), "1e+20");
    }
}
