//! Loss functions, with PyTorch's definitions, argument conventions and defaults.
//!
//! Every loss here is composed of tensor ops (elementwise arithmetic, `log_softmax`,
//! `gather`, reductions, `where_cond`) rather than given a kernel of its own, so each one
//! runs on every device and differentiates through the tape with the ops' own gradient
//! rules: nothing here can disagree between the CPU and a GPU, and nothing here needs a
//! backward of its own. The one exception is the most common loss of all: cross-entropy
//! of `[N, C]` logits against class indices without label smoothing runs as one fused
//! kernel forward and one backward (`Backend::cross_entropy_forward` and `_backward`:
//! `shaders/loss.wgsl` on the GPU, `cpu::loss` on the host), where the composed
//! version would cost a dozen dispatches and, with an `ignore_index` outside the classes,
//! a read-back of the targets. The composed version stays for the other cases and is what
//! the fused one is tested against. Where a naive formula would overflow or produce `0 * inf`, the
//! composition is chosen to stay finite (cross-entropy through `log_softmax`, BCE with
//! logits through `softplus(-|x|)`, logs of zero masked with `where_cond` before the log
//! so that no NaN reaches the gradient).
//!
//! What is here, by family:
//! - regression: [`mse_loss`], [`l1_loss`], [`huber_loss`], [`smooth_l1_loss`];
//! - classification: [`cross_entropy`] (options in [`CrossEntropy`]), [`nll_loss`],
//!   [`binary_cross_entropy_with_logits`], [`binary_cross_entropy`],
//!   [`multilabel_soft_margin_loss`], [`multi_margin_loss`] (the multi-class SVM hinge),
//!   [`soft_margin_loss`];
//! - distributions and likelihoods: [`kl_div`], [`gaussian_nll_loss`], [`poisson_nll_loss`];
//! - ranking and embeddings: [`margin_ranking_loss`], [`hinge_embedding_loss`],
//!   [`cosine_embedding_loss`], [`triplet_margin_loss`].
//!
//! Conventions, as PyTorch's `torch.nn.functional`:
//! - arguments in PyTorch's order, without the deprecated `size_average` and `reduce`
//!   (Rust has no default arguments: PyTorch's defaults are given in each doc comment);
//! - the first argument is the prediction (`input`), the second the `target`;
//! - [`Reduction::Mean`] is the default; weighted class losses divide by the sum of the
//!   weights of the targets, not by the number of elements;
//! - gradients flow to the target too wherever PyTorch differentiates it (regression
//!   losses, binary cross-entropy, KL divergence); class indices carry none.
//!
//! Where we differ, on purpose:
//! - `input` and `target` must have one shape (PyTorch broadcasts them with a warning, a
//!   classic source of silent bugs: `[N, 1]` against `[N]` becomes `[N, N]`). A mismatch
//!   panics with a message that names the loss and both shapes.
//! - [`CrossEntropy`] ignores no class unless asked (PyTorch's default `ignore_index` is
//!   -100, which only matters when a target is -100; set `.ignore_index(-100)` for that).
//! - Class-index targets are checked against the number of classes on the CPU; on a GPU
//!   (where checking would mean waiting for the device) an out-of-range index makes the
//!   kernel yield NaN, so the loss is NaN rather than silently wrong.
//!
//! ```
//! use wgrad::loss::{cross_entropy, CrossEntropy, Reduction};
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let logits = Tensor::from_slice(&[1.0f32, 2.0, 3.0], &[1, 3], &dev);
//! let target = Tensor::from_slice(&[2i32], &[1], &dev);
//! // -log_softmax([1, 2, 3])[2] = log(e^1 + e^2 + e^3) - 3, torch.nn.functional gives 0.40760596.
//! assert!((cross_entropy(&logits, &target).item() - 0.40760596).abs() < 1e-6);
//! let smoothed = CrossEntropy::new().label_smoothing(0.1).reduction(Reduction::Sum);
//! assert!((smoothed.forward(&logits, &target).item() - 0.50760596).abs() < 1e-6);
//! ```

use crate::autograd::FusedGrad;
use crate::autograd::GradOp;
use crate::cpu::loss::check_targets;
use crate::op::loss::CrossEntropyRows;
use crate::tensor::Layout;
use crate::{broadcast_shapes, DType, Device, Tensor};

pub use crate::op::loss::Reduction;

// ---- validation shared by the losses ----

fn device_name(d: &Device) -> &'static str {
    if d.is_cpu() {
        "cpu"
    } else {
        "gpu"
    }
}

fn expect_f32(loss: &str, what: &str, t: &Tensor) {
    assert!(
        t.dtype() == DType::F32,
        "{loss}: {what} must be an f32 tensor, got {} of shape {:?}",
        t.dtype(),
        t.shape()
    );
}

fn expect_same_device(loss: &str, what_a: &str, a: &Tensor, what_b: &str, b: &Tensor) {
    assert!(
        a.device() == b.device(),
        "{loss}: {what_a} is on the {} and {what_b} on the {}; move one with to_device",
        device_name(a.device()),
        device_name(b.device())
    );
}

/// Checks an `input` / `target` pair of one shape, both `f32`, on one device.
fn expect_pair(loss: &str, input: &Tensor, target: &Tensor) {
    expect_f32(loss, "input", input);
    expect_f32(loss, "target", target);
    expect_same_device(loss, "input", input, "target", target);
    assert!(
        input.shape() == target.shape(),
        "{loss}: input of shape {:?} and target of shape {:?} differ; give them one shape \
         (losses do not broadcast the target)",
        input.shape(),
        target.shape()
    );
}

/// Applies `reduction` to per-element losses.
fn reduce(loss: &str, per_element: Tensor, reduction: Reduction) -> Tensor {
    match reduction {
        Reduction::Mean => per_element.mean_all(),
        Reduction::Sum => per_element.sum_all(),
        Reduction::None => per_element,
        Reduction::BatchMean => {
            panic!("{loss}: Reduction::BatchMean is defined only for kl_div; use Mean, Sum or None")
        }
    }
}

fn scalar_like(value: f32, like: &Tensor) -> Tensor {
    Tensor::scalar(value, like.device())
}

// ---- regression ----

/// Mean squared error: `l_i = (input_i - target_i)^2`, reduced by `reduction`
/// (`torch.nn.functional.mse_loss`). Differentiable in both arguments.
///
/// Panics when the shapes differ.
pub fn mse_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    expect_pair("mse_loss", input, target);
    reduce("mse_loss", input.sub(target).square(), reduction)
}

/// Mean absolute error: `l_i = |input_i - target_i|`, reduced by `reduction`
/// (`torch.nn.functional.l1_loss`). The gradient at `input_i == target_i` is 0, as PyTorch's.
///
/// Panics when the shapes differ.
pub fn l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    expect_pair("l1_loss", input, target);
    reduce("l1_loss", input.sub(target).abs(), reduction)
}

/// `quadratic_scale * d^2 / 2` where `|d| < threshold`, else
/// `linear_scale * (|d| - threshold / 2)`: the shape Huber and smooth L1 share.
fn quadratic_then_linear(diff: &Tensor, threshold: f32, quadratic_scale: f32, linear_scale: f32) -> Tensor {
    let abs = diff.abs();
    let quadratic = diff.square().mul_scalar(0.5 * quadratic_scale);
    let linear = abs.affine(linear_scale, -0.5 * threshold * linear_scale);
    let inside = abs.lt(&scalar_like(threshold, diff));
    quadratic.where_cond(&inside, &linear)
}

/// Huber loss with threshold `delta` (PyTorch's default is 1.0), reduced by `reduction`
/// (`torch.nn.functional.huber_loss`). With `d = input - target`:
///
/// `l_i = d^2 / 2` if `|d| < delta`, else `delta * (|d| - delta / 2)`.
///
/// Quadratic near zero, linear (slope `delta`) in the tails; value and slope are continuous.
/// Panics when the shapes differ or `delta <= 0`.
pub fn huber_loss(input: &Tensor, target: &Tensor, reduction: Reduction, delta: f32) -> Tensor {
    expect_pair("huber_loss", input, target);
    assert!(delta > 0.0, "huber_loss: delta must be positive, got {delta}");
    reduce("huber_loss", quadratic_then_linear(&input.sub(target), delta, 1.0, delta), reduction)
}

/// Smooth L1 loss with threshold `beta` (PyTorch's default is 1.0), reduced by `reduction`
/// (`torch.nn.functional.smooth_l1_loss`). With `d = input - target`:
///
/// `l_i = d^2 / (2 beta)` if `|d| < beta`, else `|d| - beta / 2`.
///
/// This is [`huber_loss`] with `delta = beta`, divided by `beta`: the tails have slope 1
/// whatever `beta` is. `beta = 0` is exactly [`l1_loss`], as in PyTorch.
/// Panics when the shapes differ or `beta < 0`.
pub fn smooth_l1_loss(input: &Tensor, target: &Tensor, reduction: Reduction, beta: f32) -> Tensor {
    expect_pair("smooth_l1_loss", input, target);
    assert!(beta >= 0.0, "smooth_l1_loss: beta must not be negative, got {beta}");
    let diff = input.sub(target);
    let per_element = if beta == 0.0 { diff.abs() } else { quadratic_then_linear(&diff, beta, 1.0 / beta, 1.0) };
    reduce("smooth_l1_loss", per_element, reduction)
}

// ---- binary classification ----

/// Binary cross-entropy on logits, computed stably (`torch.nn.functional.
/// binary_cross_entropy_with_logits`). With `x` the logits, `y` the targets in `[0, 1]` and
/// `p` the optional `pos_weight` (a weight of the positive term, broadcast against `x`,
/// typically one per class of shape `[C]`):
///
/// `l_i = -(p * y_i * log sigmoid(x_i) + (1 - y_i) * log(1 - sigmoid(x_i)))`
///
/// computed as `(1 - y) x + (1 + (p - 1) y) softplus(-x)`, which for `p = 1` is the
/// textbook `max(x, 0) - x y + log(1 + exp(-|x|))`. The exponential only ever sees
/// `-|x|`, so logits of any size give finite values. `max(x, 0)` and `max(-x, 0)` are
/// written `(|x| ± x) / 2`, whose gradient at `x = 0` is 1/2 (not the 0 or 1 of a ReLU),
/// so the gradient is `sigmoid(x) - y` everywhere, at 0 included.
///
/// Differentiable in the logits and the targets. PyTorch's per-element `weight` is
/// `binary_cross_entropy_with_logits(x, y, p, Reduction::None).mul(&w)` followed by the
/// reduction (its mean is the plain mean of the weighted terms).
/// Panics when the shapes differ or `pos_weight` does not broadcast to the logits.
pub fn binary_cross_entropy_with_logits(
    logits: &Tensor,
    targets: &Tensor,
    pos_weight: Option<&Tensor>,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "binary_cross_entropy_with_logits";
    expect_pair(LOSS, logits, targets);
    if let Some(p) = pos_weight {
        expect_f32(LOSS, "pos_weight", p);
        expect_same_device(LOSS, "pos_weight", p, "logits", logits);
        assert!(
            broadcast_shapes(p.shape(), logits.shape()).as_deref() == Some(logits.shape()),
            "{LOSS}: pos_weight of shape {:?} does not broadcast to logits of shape {:?}",
            p.shape(),
            logits.shape()
        );
    }
    reduce(LOSS, bce_with_logits_elementwise(logits, targets, pos_weight), reduction)
}

/// The per-element binary cross-entropy on logits, `(1 - y) x + (1 + (p - 1) y) softplus(-x)`.
fn bce_with_logits_elementwise(logits: &Tensor, targets: &Tensor, pos_weight: Option<&Tensor>) -> Tensor {
    let abs = logits.abs();
    // softplus(-x) = -log sigmoid(x) = max(-x, 0) + log(1 + exp(-|x|)).
    let neg_log_sigmoid = abs.sub(logits).mul_scalar(0.5).add(&abs.neg().softplus());
    let negative_term = logits.mul(&targets.affine(-1.0, 1.0));
    match pos_weight {
        None => negative_term.add(&neg_log_sigmoid),
        Some(p) => {
            let log_weight = p.add_scalar(-1.0).mul(targets).add_scalar(1.0);
            negative_term.add(&log_weight.mul(&neg_log_sigmoid))
        }
    }
}

/// `log(x)` floored at -100, as PyTorch's binary cross-entropy. Where `x` is 0 the log
/// is taken of 1 instead and replaced by the floor, so neither `-inf` nor the `0 / 0` of
/// its gradient appears; NaN and negative `x` still give NaN.
fn log_floored(x: &Tensor) -> Tensor {
    let zero = x.eq(&scalar_like(0.0, x));
    let safe = scalar_like(1.0, x).where_cond(&zero, x);
    scalar_like(-100.0, x).where_cond(&zero, &safe.log()).clamp(-100.0, f32::MAX)
}

/// Binary cross-entropy on probabilities (`torch.nn.functional.binary_cross_entropy`):
///
/// `l_i = -(y_i * max(log x_i, -100) + (1 - y_i) * max(log(1 - x_i), -100))`
///
/// with PyTorch's clamp of each log at -100, so probabilities of exactly 0 or 1 give a
/// finite loss. Prefer [`binary_cross_entropy_with_logits`], which never rounds the
/// probability to 0 or 1 in the first place.
///
/// Differentiable in both arguments. The gradient is the exact derivative of the formula
/// above: `(x - y) / (x (1 - x))` inside `(0, 1)`, and no contribution from a clamped log.
/// PyTorch's hand-written backward instead divides by `max(x (1 - x), 1e-12)`; the two
/// differ only where `x (1 - x) < 1e-12`. Probabilities outside `[0, 1]` are not checked
/// (on a GPU that would mean waiting for the device) and give NaN. For PyTorch's
/// per-element `weight`, multiply the [`Reduction::None`] result and reduce it.
/// Panics when the shapes differ.
pub fn binary_cross_entropy(probs: &Tensor, targets: &Tensor, reduction: Reduction) -> Tensor {
    const LOSS: &str = "binary_cross_entropy";
    expect_pair(LOSS, probs, targets);
    let positive = targets.mul(&log_floored(probs));
    let negative = targets.affine(-1.0, 1.0).mul(&log_floored(&probs.affine(-1.0, 1.0)));
    reduce(LOSS, positive.add(&negative).neg(), reduction)
}

// ---- distributions ----

/// `t * log(t)`, 0 where `t` is 0 (PyTorch's `xlogy(t, t)`), with a finite gradient there.
fn xlogx(t: &Tensor) -> Tensor {
    let zero = t.eq(&scalar_like(0.0, t));
    let safe = scalar_like(1.0, t).where_cond(&zero, t);
    t.mul(&safe.log())
}

/// Kullback-Leibler divergence `KL(target || model)` with the model given as
/// log-probabilities `input` (`torch.nn.functional.kl_div`):
///
/// - `log_target = false`: `l_i = target_i * (log target_i - input_i)`, computed as
///   `xlogy(target_i, target_i) - target_i * input_i`, so a zero target contributes 0;
/// - `log_target = true` (target given as log-probabilities too):
///   `l_i = exp(target_i) * (target_i - input_i)`.
///
/// Reductions: [`Reduction::BatchMean`] (the sum divided by `input.shape[0]`) gives the
/// true KL divergence per sample and is what one almost always wants; [`Reduction::Mean`]
/// divides by the number of elements, PyTorch's default, kept for compatibility.
/// Differentiable in both arguments. Panics when the shapes differ.
pub fn kl_div(input: &Tensor, target: &Tensor, reduction: Reduction, log_target: bool) -> Tensor {
    expect_pair("kl_div", input, target);
    let per_element =
        if log_target { target.exp().mul(&target.sub(input)) } else { xlogx(target).sub(&target.mul(input)) };
    match reduction {
        Reduction::BatchMean => {
            // A 0-dimensional input is one sample, as in PyTorch.
            let batch = if input.rank() == 0 { 1 } else { input.shape()[0] };
            per_element.sum_all().mul_scalar(1.0 / batch as f32)
        }
        r => reduce("kl_div", per_element, r),
    }
}

// ---- multi-class classification ----

/// Options of the cross-entropy loss, built as PyTorch's `nn.CrossEntropyLoss(...)`:
///
/// ```
/// use wgrad::loss::{CrossEntropy, Reduction};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let class_weights = Tensor::from_slice(&[1.0f32, 2.0, 0.5], &[3], &dev);
/// let loss_fn = CrossEntropy::new().weight(&class_weights).label_smoothing(0.1).reduction(Reduction::Mean);
/// let logits = Tensor::randn(&[4, 3], 0, &dev);
/// let targets = Tensor::from_slice(&[0i32, 2, 1, 1], &[4], &dev);
/// let loss = loss_fn.forward(&logits, &targets);
/// assert!(loss.item().is_finite());
/// ```
///
/// Defaults: no class weights, no ignored class, no label smoothing, [`Reduction::Mean`].
#[derive(Clone, Debug, Default)]
pub struct CrossEntropy {
    weight: Option<Tensor>,
    ignore_index: Option<i32>,
    label_smoothing: f32,
    reduction: Reduction,
}

impl CrossEntropy {
    pub fn new() -> CrossEntropy {
        CrossEntropy::default()
    }

    /// A rescaling weight per class, an `f32` tensor of shape `[C]` (PyTorch's `weight`).
    /// The loss of a sample is scaled by the weight of its target class, and
    /// [`Reduction::Mean`] divides by the sum of the weights of the targets.
    pub fn weight(mut self, weight: &Tensor) -> CrossEntropy {
        self.weight = Some(weight.clone());
        self
    }

    /// Targets equal to `index` contribute nothing and are left out of the mean's
    /// denominator (PyTorch's `ignore_index`, e.g. -100 for padding). An index outside
    /// `0..C` (such as -100) is found by reading the targets back to the host, which on a
    /// GPU waits for them; an index inside `0..C` (a padding class) is handled on the device.
    pub fn ignore_index(mut self, index: i32) -> CrossEntropy {
        self.ignore_index = Some(index);
        self
    }

    /// Mixes the one-hot target with the uniform distribution over the `C` classes:
    /// the target becomes `(1 - epsilon) * one_hot + epsilon / C` (PyTorch's
    /// `label_smoothing`). Panics unless `0 <= epsilon <= 1`.
    pub fn label_smoothing(mut self, epsilon: f32) -> CrossEntropy {
        assert!((0.0..=1.0).contains(&epsilon), "cross_entropy: label_smoothing must lie in [0, 1], got {epsilon}");
        self.label_smoothing = epsilon;
        self
    }

    /// How the per-sample losses are combined (default [`Reduction::Mean`]).
    pub fn reduction(mut self, reduction: Reduction) -> CrossEntropy {
        self.reduction = reduction;
        self
    }

    /// The cross-entropy of `logits` against `targets` (`torch.nn.functional.cross_entropy`).
    ///
    /// Shapes, with the classes on axis 1 as in PyTorch:
    /// - `logits [N, C]` with `i32` class indices `targets [N]`; or `[N, C, d1, ...]` with
    ///   `[N, d1, ...]` (a loss per pixel or per time step); or an unbatched `[C]` with a
    ///   0-dimensional target;
    /// - or `f32` class probabilities `targets` of the logits' shape (soft labels).
    ///
    /// With `lp = log_softmax(logits)` over the classes, `w` the class weights (1 when
    /// absent), `ε` the label smoothing and `y_i` the target class of sample `i`:
    ///
    /// `l_i = (1 - ε) * w[y_i] * (-lp[i, y_i]) + (ε / C) * Σ_c w[c] * (-lp[i, c])`
    ///
    /// and [`Reduction::Mean`] is `Σ_i l_i / Σ_i w[y_i]` over the samples not ignored, as
    /// PyTorch computes it (so with weights it is not the plain mean of `l_i`). For
    /// probability targets `t`: `l_i = -Σ_c w[c] * t'[i, c] * lp[i, c]` with
    /// `t' = (1 - ε) t + ε / C`, and the mean divides by the number of samples.
    ///
    /// `log_softmax` subtracts each row's maximum, so logits of any size give a finite
    /// loss; the gradient with respect to the logits is `softmax(logits) - target` (scaled).
    /// Panics when the shapes, dtypes or weight do not fit, naming `cross_entropy`.
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let spec = self.spec("cross_entropy");
        check_class_shapes(&spec, logits, targets);
        if let Some(loss) = fused_cross_entropy(&spec, logits, targets) {
            return loss;
        }
        let class_axis = if logits.rank() == 1 { 0 } else { 1 };
        class_loss(&spec, &logits.log_softmax(class_axis), targets)
    }

    fn spec(&self, name: &'static str) -> ClassLoss<'_> {
        ClassLoss {
            name,
            weight: self.weight.as_ref(),
            ignore_index: self.ignore_index,
            label_smoothing: self.label_smoothing,
            reduction: self.reduction,
        }
    }
}

/// Cross-entropy of `logits [N, C]` against `i32` class indices `targets [N]` with
/// PyTorch's defaults (mean over the samples, no weights, no smoothing):
/// `mean_i(-log_softmax(logits)[i, targets_i])`. See [`CrossEntropy`] for the options and
/// [`CrossEntropy::forward`] for the other shapes it accepts.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Tensor {
    CrossEntropy::new().forward(logits, targets)
}

/// Negative log-likelihood of `log_probs [N, C]` (for example from `log_softmax`) against
/// `i32` class indices `targets [N]` (`torch.nn.functional.nll_loss`):
///
/// `l_i = -w[y_i] * log_probs[i, y_i]`, and [`Reduction::Mean`] is `Σ_i l_i / Σ_i w[y_i]`
///
/// with `w` the optional class weights of shape `[C]` (1 when absent). Also accepts
/// `[N, C, d1, ...]` with `[N, d1, ...]`, and an unbatched `[C]` with a 0-dimensional
/// target. `cross_entropy(x, y)` is `nll_loss(x.log_softmax(1), y, None, Reduction::Mean)`.
/// Use [`CrossEntropy::ignore_index`] on logits for ignored targets.
/// Panics when the shapes, dtypes or weight do not fit, naming `nll_loss`.
pub fn nll_loss(log_probs: &Tensor, targets: &Tensor, weight: Option<&Tensor>, reduction: Reduction) -> Tensor {
    assert!(
        targets.dtype() == DType::I32,
        "nll_loss: targets must be i32 class indices, got {} of shape {:?}",
        targets.dtype(),
        targets.shape()
    );
    let spec = ClassLoss { name: "nll_loss", weight, ignore_index: None, label_smoothing: 0.0, reduction };
    check_class_shapes(&spec, log_probs, targets);
    class_loss(&spec, log_probs, targets)
}

// ---- fused cross-entropy ----

/// The fused cross-entropy of `logits [N, C]` (or `[C]`) against class indices, or `None`
/// when the case is one the kernel does not cover (label smoothing, probability targets,
/// extra dimensions, class weights that require a gradient): those take the composed path.
fn fused_cross_entropy(spec: &ClassLoss, logits: &Tensor, targets: &Tensor) -> Option<Tensor> {
    if targets.dtype() != DType::I32
        || spec.label_smoothing != 0.0
        || logits.rank() > 2
        || spec.reduction == Reduction::BatchMean
        || spec.weight.is_some_and(|w| w.is_tracked())
    {
        return None;
    }
    if logits.rank() == 1 {
        // Unbatched: a batch of one, and a 0-dimensional result for Reduction::None.
        let batched = fused_cross_entropy(spec, &logits.unsqueeze(0), &targets.unsqueeze(0))?;
        return Some(if spec.reduction == Reduction::None { batched.squeeze(0) } else { batched });
    }
    let (rows, classes) = (logits.shape()[0], logits.shape()[1]);
    let x = logits.detach().contiguous();
    let t = targets.contiguous();
    let w = spec.weight.map(|w| w.contiguous());
    let shape =
        CrossEntropyRows { rows, classes, weight: None, ignore_index: spec.ignore_index, reduction: spec.reduction };
    let len = shape.forward_len();
    let weight = w.as_ref().map(|w| (&*w.storage, w.layout.offset));
    let targets_at = (&*t.storage, t.layout.offset);
    let saved = x.storage.cross_entropy_forward(spec.name, &shape, x.layout.offset, targets_at, weight);
    let saved = Tensor::from_storage(saved, &[len], DType::F32);
    let loss_shape: &[usize] = if spec.reduction == Reduction::None { &[rows] } else { &[] };
    let loss = saved.with_layout(Layout::contiguous(loss_shape));
    let mut aux = Layout::contiguous(&[rows + 1]);
    aux.offset = shape.lse_at();
    let aux = saved.with_layout(aux);
    let rule = CrossEntropyGrad { ignore_index: spec.ignore_index, reduction: spec.reduction };
    let mut inputs = vec![logits, targets, &aux];
    inputs.extend(spec.weight);
    Some(Tensor::record(loss, GradOp::fused(rule), &inputs))
}

/// The gradient rule of the fused cross-entropy: one kernel from the saved log-sum-exp of
/// each row and the weight sum. The targets and the class weights get no gradient (as in
/// PyTorch; weights that require one take the composed path).
#[derive(Clone, Debug)]
pub(crate) struct CrossEntropyGrad {
    ignore_index: Option<i32>,
    reduction: Reduction,
}

impl FusedGrad for CrossEntropyGrad {
    /// Inputs are `[logits, targets, saved, weight (when present)]`.
    fn backward(&self, g: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let mut grads = vec![None; inputs.len()];
        if !inputs[0].is_tracked() {
            return grads;
        }
        let (rows, classes) = (inputs[0].shape()[0], inputs[0].shape()[1]);
        let x = inputs[0].detach().contiguous();
        let t = inputs[1].contiguous();
        let aux = &inputs[2];
        let w = inputs.get(3).map(|w| w.detach().contiguous());
        let g = g.detach().contiguous();
        let shape = CrossEntropyRows {
            rows,
            classes,
            weight: None,
            ignore_index: self.ignore_index,
            reduction: self.reduction,
        };
        let operands = ((&*t.storage, t.layout.offset), w.as_ref().map(|w| (&*w.storage, w.layout.offset)));
        let (aux, grad) = ((&*aux.storage, aux.layout.offset), (&*g.storage, g.layout.offset));
        let dx = x.storage.cross_entropy_backward(&shape, x.layout.offset, operands, aux, grad);
        let dx = Tensor::from_storage(dx, &[rows, classes], DType::F32);
        grads[0] = Some(dx);
        grads
    }
}

/// Everything a class loss needs besides its tensors.
struct ClassLoss<'a> {
    name: &'static str,
    weight: Option<&'a Tensor>,
    ignore_index: Option<i32>,
    label_smoothing: f32,
    reduction: Reduction,
}

/// Validates shapes, dtypes and devices of a class loss before any op runs, so that every
/// error names the loss.
fn check_class_shapes(spec: &ClassLoss, input: &Tensor, targets: &Tensor) {
    let name = spec.name;
    expect_f32(name, "input", input);
    expect_same_device(name, "input", input, "targets", targets);
    assert!(input.rank() >= 1, "{name}: input must have a class axis, got shape {:?}", input.shape());
    let class_axis = if input.rank() == 1 { 0 } else { 1 };
    let classes = input.shape()[class_axis];
    match targets.dtype() {
        DType::I32 => {
            let mut expected = input.shape().to_vec();
            expected.remove(class_axis);
            assert!(
                targets.shape() == expected,
                "{name}: input of shape {:?} (classes on axis {class_axis}) needs class-index targets of shape \
                 {expected:?}, got {:?}",
                input.shape(),
                targets.shape()
            );
            assert!(classes > 0, "{name}: input of shape {:?} has no classes", input.shape());
        }
        DType::F32 => assert!(
            targets.shape() == input.shape(),
            "{name}: probability targets of shape {:?} do not match input of shape {:?}",
            targets.shape(),
            input.shape()
        ),
        DType::F16 => panic!("{name}: targets must be i32 class indices or f32 probabilities, got f16; use .float()"),
    }
    if let Some(w) = spec.weight {
        expect_f32(name, "weight", w);
        expect_same_device(name, "weight", w, "input", input);
        assert!(
            w.shape() == [classes],
            "{name}: weight of shape {:?} does not fit input of shape {:?} with {classes} classes; it needs [{classes}]",
            w.shape(),
            input.shape()
        );
    }
}

/// The class loss of already-validated `log_probs` (classes on axis 1, or axis 0 when
/// unbatched) against class indices or class probabilities.
fn class_loss(spec: &ClassLoss, log_probs: &Tensor, targets: &Tensor) -> Tensor {
    if log_probs.rank() == 1 {
        // Unbatched: a batch of one, and a 0-dimensional result for Reduction::None.
        let batched = class_loss(spec, &log_probs.unsqueeze(0), &targets.unsqueeze(0));
        return if spec.reduction == Reduction::None { batched.squeeze(0) } else { batched };
    }
    if spec.reduction == Reduction::BatchMean {
        panic!("{}: Reduction::BatchMean is defined only for kl_div; use Mean, Sum or None", spec.name);
    }
    match targets.dtype() {
        DType::I32 => index_target_loss(spec, log_probs, targets),
        DType::F32 => probability_target_loss(spec, log_probs, targets),
        DType::F16 => unreachable!("{}: f16 targets are rejected by validation", spec.name),
    }
}

/// The class weights seen with the shape `[1, C, 1, ...]` of `log_probs`, to broadcast.
fn weight_along_classes(weight: &Tensor, log_probs: &Tensor) -> Tensor {
    let mut shape = vec![1isize; log_probs.rank()];
    shape[1] = log_probs.shape()[1] as isize;
    weight.reshape(&shape)
}

fn index_target_loss(spec: &ClassLoss, log_probs: &Tensor, targets: &Tensor) -> Tensor {
    let dev = log_probs.device();
    let classes = log_probs.shape()[1];
    let shape: Vec<isize> = targets.shape().iter().map(|&d| d as isize).collect();
    let in_range = |t: i32| t >= 0 && (t as usize) < classes;

    // Reading the targets is free on the CPU, so they are checked there; on a GPU it would
    // wait for the device, so only an ignored index outside 0..C (which has to be found on
    // the host) pays for it.
    let ignore = spec.ignore_index;
    let host_targets = (dev.is_cpu() || ignore.is_some_and(|i| !in_range(i))).then(|| targets.to_vec::<i32>());
    if let Some(host) = &host_targets {
        check_targets(spec.name, host, classes, ignore);
    }

    // Which targets count: a per-class mask when the ignored index is a class (applied on
    // the device through the targets), else a per-sample mask built on the host.
    let mut targets = targets.clone();
    let mut class_mask: Option<Tensor> = None;
    let mut sample_mask: Option<Tensor> = None;
    match (ignore, &host_targets) {
        (Some(ignored), _) if in_range(ignored) => {
            let mut mask = vec![1.0f32; classes];
            mask[ignored as usize] = 0.0;
            class_mask = Some(Tensor::from_slice(&mask, &[classes], dev));
        }
        (Some(ignored), Some(host)) if host.contains(&ignored) => {
            // Ignored targets look up class 0, whose value the mask then discards.
            let safe: Vec<i32> = host.iter().map(|&t| if t == ignored { 0 } else { t }).collect();
            let mask: Vec<f32> = host.iter().map(|&t| if t == ignored { 0.0 } else { 1.0 }).collect();
            targets = Tensor::from_slice(&safe, targets.shape(), dev);
            sample_mask = Some(Tensor::from_slice(&mask, targets.shape(), dev));
        }
        _ => {}
    }

    // Per-sample factors: `counted` (1, or 0 for ignored targets) and `target_weight`
    // (w[y_i] * counted), each absent when it would be all ones.
    let flat_targets = targets.reshape(&[-1]);
    let lookup = |table: &Tensor| table.index_select(0, &flat_targets).reshape(&shape);
    let mut counted = class_mask.as_ref().map(lookup);
    if let Some(m) = &sample_mask {
        counted = Some(match counted {
            Some(c) => c.mul(m),
            None => m.clone(),
        });
    }
    let target_weight = match (spec.weight, &counted) {
        (Some(w), Some(c)) => Some(lookup(w).mul(c)),
        (Some(w), None) => Some(lookup(w)),
        (None, c) => c.clone(),
    };

    // -log p[i, y_i], weighted.
    let picked = log_probs.gather(1, &targets.unsqueeze(1)).squeeze(1);
    let mut per_sample = match &target_weight {
        Some(w) => picked.mul(w).neg(),
        None => picked.neg(),
    };
    let epsilon = spec.label_smoothing;
    if epsilon > 0.0 {
        // -Σ_c w[c] log p[i, c]: the cross-entropy against the uniform distribution (times C).
        let weighted = match spec.weight {
            Some(w) => log_probs.mul(&weight_along_classes(w, log_probs)),
            None => log_probs.clone(),
        };
        let mut smooth = weighted.sum(&[1], false).neg();
        if let Some(c) = &counted {
            smooth = smooth.mul(c);
        }
        per_sample = per_sample.mul_scalar(1.0 - epsilon).add(&smooth.mul_scalar(epsilon / classes as f32));
    }
    match (spec.reduction, &target_weight) {
        (Reduction::Mean, Some(w)) => per_sample.sum_all().div(&w.sum_all()),
        (r, _) => reduce(spec.name, per_sample, r),
    }
}

/// Panics unless every target is a class in `0..classes` or the ignored index.
fn probability_target_loss(spec: &ClassLoss, log_probs: &Tensor, targets: &Tensor) -> Tensor {
    if let Some(ignored) = spec.ignore_index {
        // PyTorch accepts only its negative default here, which then has no effect.
        assert!(ignored < 0, "{}: ignore_index is not supported for probability targets", spec.name);
    }
    let classes = log_probs.shape()[1] as f32;
    let epsilon = spec.label_smoothing;
    let targets = if epsilon > 0.0 { targets.affine(1.0 - epsilon, epsilon / classes) } else { targets.clone() };
    let mut product = log_probs.mul(&targets);
    if let Some(w) = spec.weight {
        product = product.mul(&weight_along_classes(w, log_probs));
    }
    reduce(spec.name, product.sum(&[1], false).neg(), spec.reduction)
}

// ---- probabilistic regression ----

/// Negative log-likelihood of `target` under a Gaussian with mean `input` and variance
/// `var` (`torch.nn.functional.gaussian_nll_loss`; PyTorch's defaults are `full = false`,
/// `eps = 1e-6`):
///
/// `l_i = (log(max(var_i, eps)) + (input_i - target_i)^2 / max(var_i, eps)) / 2`,
/// plus `log(2 π) / 2` when `full`.
///
/// `var` has the input's shape (one variance per element), or the input's shape without
/// its last axis, or with a last axis of 1 (one variance per sample, shared along the last
/// axis). As in PyTorch the clamp at `eps` is applied outside the graph: the gradient
/// with respect to `var` is that of the unclamped formula evaluated at the clamped value,
/// so a variance driven below `eps` still gets pushed back up. Negative variances are not
/// checked (PyTorch raises); they are clamped like any variance below `eps`.
/// Differentiable in `input`, `target` and `var`. Panics when the shapes do not fit.
pub fn gaussian_nll_loss(
    input: &Tensor,
    target: &Tensor,
    var: &Tensor,
    full: bool,
    eps: f32,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "gaussian_nll_loss";
    expect_pair(LOSS, input, target);
    expect_f32(LOSS, "var", var);
    expect_same_device(LOSS, "var", var, "input", input);
    let shape = input.shape();
    let var = if var.shape() == shape {
        var.clone()
    } else if input.rank() >= 1 && var.shape() == &shape[..shape.len() - 1] {
        var.unsqueeze(var.rank())
    } else if input.rank() >= 1
        && var.rank() == input.rank()
        && var.shape()[..var.rank() - 1] == shape[..shape.len() - 1]
        && var.shape()[var.rank() - 1] == 1
    {
        var.clone()
    } else {
        panic!(
            "{LOSS}: var of shape {:?} does not fit input of shape {shape:?}; it needs the input's shape, \
             or that shape with the last axis removed or of size 1",
            var.shape()
        )
    };
    // max(var, eps) in value, with the gradient of var itself (a straight-through clamp).
    let clamped = var.clamp(eps, f32::MAX).detach().add(&var.sub(&var.detach()));
    let mut per_element = clamped.log().add(&input.sub(target).square().div(&clamped)).mul_scalar(0.5);
    if full {
        per_element = per_element.add_scalar(0.5 * (2.0 * std::f32::consts::PI).ln());
    }
    reduce(LOSS, per_element, reduction)
}

/// Negative log-likelihood of a Poisson-distributed `target` with rate given by `input`
/// (`torch.nn.functional.poisson_nll_loss`; PyTorch's defaults are `log_input = true`,
/// `full = false`, `eps = 1e-8`):
///
/// - `log_input = true` (`input` is the log-rate): `l_i = exp(input_i) - target_i * input_i`;
/// - `log_input = false` (`input` is the rate): `l_i = input_i - target_i * log(input_i + eps)`;
/// - `full` adds Stirling's approximation of `log(target!)`,
///   `target * log(target) - target + log(2 π target) / 2`, for targets above 1 (0 elsewhere).
///
/// Differentiable in `input` and `target`. Panics when the shapes differ.
pub fn poisson_nll_loss(
    input: &Tensor,
    target: &Tensor,
    log_input: bool,
    full: bool,
    eps: f32,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "poisson_nll_loss";
    expect_pair(LOSS, input, target);
    let mut per_element = if log_input {
        input.exp().sub(&target.mul(input))
    } else {
        input.sub(&target.mul(&input.add_scalar(eps).log()))
    };
    if full {
        // Evaluated at 2 where the target is at most 1, so no log(0) reaches the gradient.
        let above_one = target.gt(&scalar_like(1.0, target));
        let t = target.where_cond(&above_one, &scalar_like(2.0, target));
        let stirling = t.mul(&t.log()).sub(&t).add(&t.mul_scalar(2.0 * std::f32::consts::PI).log().mul_scalar(0.5));
        per_element = per_element.add(&stirling.where_cond(&above_one, &scalar_like(0.0, target)));
    }
    reduce(LOSS, per_element, reduction)
}

// ---- margins and embeddings ----

/// Checks a `target` of the given `shape` (`f32`, one device with `like`).
fn expect_target_shape(loss: &str, target: &Tensor, shape: &[usize], like: &Tensor) {
    expect_f32(loss, "target", target);
    expect_same_device(loss, "target", target, "input", like);
    assert!(
        target.shape() == shape,
        "{loss}: target of shape {:?} does not fit; it needs {shape:?} for inputs of shape {:?}",
        target.shape(),
        like.shape()
    );
}

/// Ranking hinge (`torch.nn.functional.margin_ranking_loss`; PyTorch's default margin is
/// 0): with `y_i = 1` when `input1_i` should rank higher than `input2_i` and -1 otherwise,
///
/// `l_i = max(0, -y_i * (input1_i - input2_i) + margin)`.
///
/// Panics when the three shapes differ.
pub fn margin_ranking_loss(
    input1: &Tensor,
    input2: &Tensor,
    target: &Tensor,
    margin: f32,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "margin_ranking_loss";
    expect_pair(LOSS, input1, input2);
    expect_target_shape(LOSS, target, input1.shape(), input1);
    // clamp (not relu): its gradient at the hinge is 1, as PyTorch's clamp_min.
    let per_element = target.mul(&input1.sub(input2)).affine(-1.0, margin).clamp(0.0, f32::MAX);
    reduce(LOSS, per_element, reduction)
}

/// Hinge embedding loss (`torch.nn.functional.hinge_embedding_loss`; PyTorch's default
/// margin is 1), for `input` a distance and `target` 1 (similar) or -1 (dissimilar):
///
/// `l_i = input_i` where `y_i = 1`, `max(0, margin - input_i)` where `y_i = -1`
///
/// (as PyTorch, a target that is neither gets both terms).
/// Panics when the shapes differ.
pub fn hinge_embedding_loss(input: &Tensor, target: &Tensor, margin: f32, reduction: Reduction) -> Tensor {
    const LOSS: &str = "hinge_embedding_loss";
    expect_pair(LOSS, input, target);
    let zero = scalar_like(0.0, input);
    let hinge = input.affine(-1.0, margin).clamp(0.0, f32::MAX);
    let margin_term = hinge.where_cond(&target.ne(&scalar_like(1.0, input)), &zero);
    let self_term = input.where_cond(&target.ne(&scalar_like(-1.0, input)), &zero);
    reduce(LOSS, margin_term.add(&self_term), reduction)
}

/// Two-class logistic loss on targets 1 / -1 (`torch.nn.functional.soft_margin_loss`):
///
/// `l_i = log(1 + exp(-y_i * input_i))`,
///
/// computed as `softplus(-y x)`, finite for inputs of any size. Differentiable in both
/// arguments. Panics when the shapes differ.
pub fn soft_margin_loss(input: &Tensor, target: &Tensor, reduction: Reduction) -> Tensor {
    const LOSS: &str = "soft_margin_loss";
    expect_pair(LOSS, input, target);
    reduce(LOSS, input.mul(target).neg().softplus(), reduction)
}

/// Multi-label one-versus-all logistic loss (`torch.nn.functional.
/// multilabel_soft_margin_loss`) for `input [N, C]` (or `[C]`) and targets of that shape in
/// `[0, 1]`: the per-class binary cross-entropy on logits averaged over the classes,
///
/// `l_i = -(1 / C) Σ_c w_c (y_ic log σ(x_ic) + (1 - y_ic) log σ(-x_ic))`,
///
/// one value per sample (`[N]` for [`Reduction::None`]); `w` the optional class weights
/// `[C]`. Stable for logits of any size. Panics when the shapes do not fit.
pub fn multilabel_soft_margin_loss(
    input: &Tensor,
    target: &Tensor,
    weight: Option<&Tensor>,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "multilabel_soft_margin_loss";
    expect_pair(LOSS, input, target);
    assert!(input.rank() >= 1, "{LOSS}: input must have a class axis, got shape {:?}", input.shape());
    let classes = input.shape()[input.rank() - 1];
    let mut per_element = bce_with_logits_elementwise(input, target, None);
    if let Some(w) = weight {
        expect_f32(LOSS, "weight", w);
        expect_same_device(LOSS, "weight", w, "input", input);
        assert!(
            w.shape() == [classes],
            "{LOSS}: weight of shape {:?} does not fit input of shape {:?}; it needs [{classes}]",
            w.shape(),
            input.shape()
        );
        per_element = per_element.mul(w);
    }
    reduce(LOSS, per_element.mean(&[-1], false), reduction)
}

/// Multi-class hinge loss, the multi-class SVM loss (`torch.nn.functional.multi_margin_loss`;
/// PyTorch's defaults are `p = 1`, `margin = 1`, no weight), for `input [N, C]` (or `[C]`)
/// and `i32` class indices `target [N]` (or 0-dimensional):
///
/// `l_i = (1 / C) Σ_{j ≠ y_i} w[y_i] * max(0, margin - x[i, y_i] + x[i, j])^p`
///
/// with `p` 1 or 2 and `w` the optional class weights `[C]` (applied after the power, as
/// PyTorch's implementation does). [`Reduction::Mean`] is the plain mean over the samples.
/// Panics when the shapes do not fit or `p` is neither 1 nor 2.
pub fn multi_margin_loss(
    input: &Tensor,
    target: &Tensor,
    p: u32,
    margin: f32,
    weight: Option<&Tensor>,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "multi_margin_loss";
    assert!(p == 1 || p == 2, "{LOSS}: p must be 1 or 2, got {p}");
    assert!(
        target.dtype() == DType::I32,
        "{LOSS}: targets must be i32 class indices, got {} of shape {:?}",
        target.dtype(),
        target.shape()
    );
    let spec = ClassLoss { name: LOSS, weight, ignore_index: None, label_smoothing: 0.0, reduction };
    check_class_shapes(&spec, input, target);
    if input.rank() == 1 {
        let batched = multi_margin_loss(&input.unsqueeze(0), &target.unsqueeze(0), p, margin, weight, reduction);
        return if reduction == Reduction::None { batched.squeeze(0) } else { batched };
    }
    assert!(input.rank() == 2, "{LOSS}: input must be [N, C] or [C], got shape {:?}", input.shape());
    let (n, classes) = (input.shape()[0], input.shape()[1]);
    let dev = input.device();
    if dev.is_cpu() {
        check_targets(LOSS, &target.to_vec::<i32>(), classes, None);
    }
    let index = target.unsqueeze(1);
    let target_score = input.gather(1, &index);
    let hinge = input.sub(&target_score).add_scalar(margin).relu();
    let hinge = if p == 2 { hinge.square() } else { hinge };
    // The target's own column (whose hinge is max(0, margin)) does not count.
    let one_hot = Tensor::zeros(&[n, classes], dev).scatter_add(1, &index, &Tensor::ones(&[n, 1], dev));
    let mut per_sample = hinge.mul(&one_hot.affine(-1.0, 1.0)).mean(&[1], false);
    if let Some(w) = weight {
        per_sample = per_sample.mul(&w.index_select(0, target));
    }
    reduce(LOSS, per_sample, reduction)
}

/// Cosine embedding loss (`torch.nn.functional.cosine_embedding_loss`; PyTorch's default
/// margin is 0) for pairs of vectors `input1`, `input2` of shape `[N, D]` (or `[D]`) and
/// `target [N]` (or 0-dimensional) of 1 (similar) or -1 (dissimilar):
///
/// `l_i = 1 - cos(x1_i, x2_i)` where `y_i = 1`, `max(0, cos(x1_i, x2_i) - margin)` where `y_i = -1`,
///
/// with `cos = Σ x1 x2 / sqrt((Σ x1^2 + 1e-12) (Σ x2^2 + 1e-12))`, PyTorch's guard against
/// zero vectors. Panics when the shapes do not fit.
pub fn cosine_embedding_loss(
    input1: &Tensor,
    input2: &Tensor,
    target: &Tensor,
    margin: f32,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "cosine_embedding_loss";
    expect_pair(LOSS, input1, input2);
    assert!(
        input1.rank() == 1 || input1.rank() == 2,
        "{LOSS}: inputs must be [N, D] or [D], got shape {:?}",
        input1.shape()
    );
    expect_target_shape(LOSS, target, &input1.shape()[..input1.rank() - 1], input1);
    let square_norm = |x: &Tensor| x.square().sum(&[-1], false).add_scalar(1e-12);
    let cos = input1.mul(input2).sum(&[-1], false).div(&square_norm(input1).mul(&square_norm(input2)).sqrt());
    let zero = scalar_like(0.0, input1);
    let similar = cos.affine(-1.0, 1.0).where_cond(&target.eq(&scalar_like(1.0, target)), &zero);
    let dissimilar =
        cos.add_scalar(-margin).clamp(0.0, f32::MAX).where_cond(&target.eq(&scalar_like(-1.0, target)), &zero);
    reduce(LOSS, similar.add(&dissimilar), reduction)
}

/// `||a - b + eps||_p` along the last axis (`torch.nn.functional.pairwise_distance`).
fn pairwise_distance(a: &Tensor, b: &Tensor, p: f32, eps: f32) -> Tensor {
    let diff = a.sub(b).add_scalar(eps);
    if p == 2.0 {
        diff.square().sum(&[-1], false).sqrt()
    } else if p == 1.0 {
        diff.abs().sum(&[-1], false)
    } else {
        diff.abs().powf(p).sum(&[-1], false).powf(1.0 / p)
    }
}

/// Triplet margin loss (`torch.nn.functional.triplet_margin_loss`; PyTorch's defaults are
/// `margin = 1`, `p = 2`, `eps = 1e-6`, `swap = false`) for `anchor`, `positive` and
/// `negative` of shape `[N, D]` (or `[D]`):
///
/// `l_i = max(0, d(a_i, p_i) - d(a_i, n_i) + margin)`, with `d(x, y) = ||x - y + eps||_p`;
///
/// with `swap`, `d(a_i, n_i)` is replaced by `min(d(a_i, n_i), d(p_i, n_i))` (the distance
/// swap of Balntas et al.). Panics when the shapes differ or `p < 1`.
pub fn triplet_margin_loss(
    anchor: &Tensor,
    positive: &Tensor,
    negative: &Tensor,
    margin: f32,
    p: f32,
    eps: f32,
    swap: bool,
    reduction: Reduction,
) -> Tensor {
    const LOSS: &str = "triplet_margin_loss";
    expect_pair(LOSS, anchor, positive);
    expect_pair(LOSS, anchor, negative);
    assert!(
        anchor.rank() == 1 || anchor.rank() == 2,
        "{LOSS}: inputs must be [N, D] or [D], got shape {:?}",
        anchor.shape()
    );
    assert!(p >= 1.0, "{LOSS}: p must be at least 1, got {p}");
    let to_positive = pairwise_distance(anchor, positive, p, eps);
    let mut to_negative = pairwise_distance(anchor, negative, p, eps);
    if swap {
        to_negative = to_negative.minimum(&pairwise_distance(positive, negative, p, eps));
    }
    reduce(LOSS, to_positive.sub(&to_negative).add_scalar(margin).clamp(0.0, f32::MAX), reduction)
}
