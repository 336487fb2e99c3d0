//! Mixed-precision training: `f16` matmuls on `f32` master weights, with loss scaling.
//!
//! The policy is chosen per layer, not by a thread-wide autocast scope. A [`Linear`]
//! wrapped in [`AutocastLinear`] keeps its parameters in `f32` (the master weights: what
//! the optimizer updates, clipping measures and checkpoints save), and each forward pass
//! rounds the input and the weight to `f16`, multiplies them with `f32` accumulation
//! ([`Tensor::half_matmul`]) and returns `f32`, adding the bias in `f32`. Backward runs
//! through the casts: the output gradient is rounded to `f16`, the two gradient products
//! run in `f16` with `f32` accumulation, and the gradients reach the master weights in
//! `f32`. This is what PyTorch's autocast does for `linear`/`matmul`; the ops autocast keeps
//! in `f32` (softmax, losses, norms, reductions) stay there simply because they are not
//! wrapped. A per-layer policy keeps the model definition the one place that says which
//! products run in half precision, and leaves `Tensor::matmul` meaning one thing.
//!
//! Rounding the gradient to `f16` loses values below 2^-24 (about 6e-8) and turns values
//! above 65504 into infinity. [`GradScaler`] multiplies the loss by a large factor so that
//! small gradients survive, divides it out of the gradients before the optimizer sees them,
//! and skips a step (and lowers the factor) whenever a gradient overflowed, with PyTorch's
//! `torch.amp.GradScaler` semantics and defaults.
//!
//! ```
//! use wgrad::amp::{AutocastLinear, GradScaler};
//! use wgrad::nn::{self, Forward, Module};
//! use wgrad::optim::Sgd;
//! use wgrad::{loss, Device, Tensor};
//! let dev = Device::cpu();
//! let model = nn::Sequential::new()
//!     .add(AutocastLinear::new(nn::Linear::with_seed(4, 8, true, 1, &dev)))
//!     .add(nn::ReLU)
//!     .add(AutocastLinear::new(nn::Linear::with_seed(8, 1, true, 2, &dev)));
//! let mut opt = Sgd::new(model.parameters(), 0.1);
//! let mut scaler = GradScaler::new();
//! let (x, y) = (Tensor::randn(&[16, 4], 3, &dev), Tensor::randn(&[16, 1], 4, &dev));
//! let loss = loss::mse_loss(&model.forward(&x), &y, loss::Reduction::Mean);
//! let mut grads = scaler.scale(&loss).backward();
//! let stepped = scaler.step(&mut opt, &mut grads);
//! scaler.update();
//! assert!(stepped && scaler.scale_factor() == 65536.0);
//! ```

use crate::autograd::Gradients;
use crate::nn::{Forward, Linear, Module, Visitor, VisitorMut};
use crate::optim::Optimizer;
use crate::{DType, Tensor};

/// `a x b` with both operands rounded to `f16` and the products summed in `f32`; the
/// result is `f32`. Differentiable: the gradients of `a` and `b` arrive in `f32` (see the
/// module documentation). `a` and `b` may be `f32` or already `f16`.
pub fn matmul(a: &Tensor, b: &Tensor) -> Tensor {
    a.half().half_matmul(&b.half(), DType::F32)
}

/// `x W^T + b` as [`Linear`] computes it, with the product in half precision: `x` and
/// `weight` rounded to `f16`, `f32` accumulation, the bias added in `f32`. The result is
/// `f32`.
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let y = matmul(x, &weight.t());
    match bias {
        Some(b) => y.add(b),
        None => y,
    }
}

/// A [`Linear`] layer whose product runs in half precision on its `f32` parameters (see
/// the module documentation). Its parameters and their names are the wrapped layer's, so
/// optimizers and checkpoints treat it as that layer.
pub struct AutocastLinear {
    layer: Linear,
}

impl AutocastLinear {
    /// Wraps `layer`; its parameters stay `f32`.
    pub fn new(layer: Linear) -> AutocastLinear {
        assert!(
            layer.weight.dtype() == DType::F32,
            "AutocastLinear: the weight must be f32 master weights, got {}",
            layer.weight.dtype()
        );
        AutocastLinear { layer }
    }

    /// The wrapped layer.
    pub fn layer(&self) -> &Linear {
        &self.layer
    }

    /// The wrapped layer, to compute in `f32` again.
    pub fn into_inner(self) -> Linear {
        self.layer
    }
}

impl Forward for AutocastLinear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let in_features = self.layer.weight.dim(1);
        assert!(
            x.rank() >= 1 && x.dim(-1) == in_features,
            "AutocastLinear: input of shape {:?} does not end in {in_features} features",
            x.shape()
        );
        linear(x, &self.layer.weight, self.layer.bias.as_ref())
    }
}

/// The wrapped layer's parameters under their own names (`weight`, `bias`), so a model
/// saved with autocast loads without it and the other way round.
impl Module for AutocastLinear {
    fn visit(&self, v: &mut Visitor<'_>) {
        self.layer.visit(v);
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        self.layer.visit_mut(v);
    }

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("Autocast({})", self.layer.describe())
    }
}

/// Dynamic loss scaling, as `torch.amp.GradScaler`: the loss is multiplied by a scale
/// before backward; [`GradScaler::step`] divides the gradients by it and skips the
/// optimizer step when any of them is infinite or NaN; [`GradScaler::update`] halves the
/// scale after a skipped step and doubles it after `growth_interval` clean steps in a row.
///
/// One training step: `let mut grads = scaler.scale(&loss).backward();`, then optionally
/// [`GradScaler::unscale`] (to clip the true gradients), then
/// `scaler.step(&mut opt, &mut grads)` and `scaler.update()`.
///
/// Checking for overflow reads one value back from the device per step (PyTorch's `step`
/// synchronises the same way).
#[derive(Clone, Debug)]
pub struct GradScaler {
    scale: f32,
    growth_factor: f32,
    backoff_factor: f32,
    growth_interval: u32,
    enabled: bool,
    /// Clean steps since the scale last changed.
    growth_tracker: u32,
    /// Whether the gradients of the current step overflowed, once they have been unscaled.
    found_inf: Option<bool>,
}

impl Default for GradScaler {
    fn default() -> Self {
        GradScaler::new()
    }
}

impl GradScaler {
    /// PyTorch's defaults: `init_scale` 65536 (2^16), `growth_factor` 2, `backoff_factor`
    /// 0.5, `growth_interval` 2000, enabled.
    pub fn new() -> GradScaler {
        GradScaler {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            enabled: true,
            growth_tracker: 0,
            found_inf: None,
        }
    }

    /// The scale to start from. Panics unless it is positive and finite.
    pub fn init_scale(mut self, scale: f32) -> GradScaler {
        assert!(scale > 0.0 && scale.is_finite(), "GradScaler: init_scale must be positive and finite, got {scale}");
        self.scale = scale;
        self
    }

    /// The factor the scale grows by after `growth_interval` clean steps; more than 1.
    pub fn growth_factor(mut self, factor: f32) -> GradScaler {
        assert!(factor > 1.0, "GradScaler: the growth factor must be > 1.0, got {factor}");
        self.growth_factor = factor;
        self
    }

    /// The factor the scale shrinks by after a step with inf/NaN gradients; in (0, 1).
    pub fn backoff_factor(mut self, factor: f32) -> GradScaler {
        assert!(factor > 0.0 && factor < 1.0, "GradScaler: the backoff factor must be in (0, 1), got {factor}");
        self.backoff_factor = factor;
        self
    }

    /// Clean steps in a row after which the scale grows; at least 1.
    pub fn growth_interval(mut self, steps: u32) -> GradScaler {
        assert!(steps >= 1, "GradScaler: the growth interval must be at least 1");
        self.growth_interval = steps;
        self
    }

    /// With `false`, every method is a pass-through: `scale` returns the loss, `step` is a
    /// plain optimizer step, `update` does nothing (PyTorch's `enabled=False`).
    pub fn enabled(mut self, enabled: bool) -> GradScaler {
        self.enabled = enabled;
        self
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The current scale (PyTorch's `get_scale()`); 1 when disabled.
    pub fn scale_factor(&self) -> f32 {
        if self.enabled {
            self.scale
        } else {
            1.0
        }
    }

    /// Clean steps counted towards the next growth of the scale.
    pub fn growth_tracker(&self) -> u32 {
        self.growth_tracker
    }

    /// Puts back a scale and a count of clean steps read from [`GradScaler::scale_factor`]
    /// and [`GradScaler::growth_tracker`], to resume a run. Panics unless the scale is
    /// positive and finite.
    pub fn restore(&mut self, scale: f32, growth_tracker: u32) {
        assert!(
            scale > 0.0 && scale.is_finite(),
            "GradScaler::restore: the scale must be positive and finite, got {scale}"
        );
        (self.scale, self.growth_tracker, self.found_inf) = (scale, growth_tracker, None);
    }

    /// `loss` multiplied by the current scale, to call `backward` on.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        if !self.enabled {
            return loss.clone();
        }
        loss.mul_scalar(self.scale)
    }

    /// Divides every gradient in `grads` by the scale, in place, and records whether any
    /// of them holds an infinity or NaN. Call it before clipping or inspecting gradients;
    /// [`GradScaler::step`] calls it when it has not been called since the last update.
    /// Returns whether an overflow was found. Panics when called twice in one step, as
    /// PyTorch's `unscale_`.
    pub fn unscale(&mut self, grads: &mut Gradients) -> bool {
        if !self.enabled {
            return false;
        }
        assert!(self.found_inf.is_none(), "GradScaler::unscale: already called since the last update()");
        // PyTorch computes the reciprocal in double precision and rounds it once.
        let inv_scale = (1.0 / self.scale as f64) as f32;
        let mut worst: Option<Tensor> = None;
        crate::autograd::no_grad(|| {
            for g in grads.values_mut() {
                *g = g.mul_scalar(inv_scale);
                // The largest magnitude is infinite or NaN exactly when some element is
                // (`max` propagates NaN), and one read-back serves all gradients.
                let m = g.abs().max_all();
                worst = Some(match worst.take() {
                    Some(w) => w.maximum(&m),
                    None => m,
                });
            }
        });
        let found = worst.is_some_and(|w| !w.item().is_finite());
        self.found_inf = Some(found);
        found
    }

    /// Unscales `grads` (unless [`GradScaler::unscale`] already did) and runs
    /// `optimizer.step` on them, unless a gradient is infinite or NaN: then the step is
    /// skipped, so the parameters and the optimizer state stay as they were. Returns
    /// whether the optimizer stepped.
    pub fn step(&mut self, optimizer: &mut dyn Optimizer, grads: &mut Gradients) -> bool {
        if !self.enabled {
            optimizer.step(grads);
            return true;
        }
        let found_inf = match self.found_inf {
            Some(found) => found,
            None => self.unscale(grads),
        };
        if !found_inf {
            optimizer.step(grads);
        }
        !found_inf
    }

    /// Adjusts the scale after a step: times `backoff_factor` when that step's gradients
    /// overflowed (and the count of clean steps restarts), else one more clean step, and
    /// times `growth_factor` after `growth_interval` of them (when the grown scale is
    /// finite). Panics when no step or unscale happened since the last update, as PyTorch.
    pub fn update(&mut self) {
        if !self.enabled {
            return;
        }
        let found_inf = self
            .found_inf
            .take()
            .expect("GradScaler::update: no inf checks were recorded prior to update (call step first)");
        if found_inf {
            self.scale *= self.backoff_factor;
            self.growth_tracker = 0;
        } else {
            self.growth_tracker += 1;
            if self.growth_tracker == self.growth_interval {
                let grown = self.scale * self.growth_factor;
                if grown.is_finite() {
                    self.scale = grown;
                }
                self.growth_tracker = 0;
            }
        }
    }
}
