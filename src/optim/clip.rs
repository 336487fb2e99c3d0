//! Gradient clipping, as `torch.nn.utils.clip_grad_norm_` and `clip_grad_value_`.
//!
//! Clipping rewrites the gradients in a [`Gradients`] store between `backward` and the
//! optimizer's `step`. Everything stays on the gradients' device, as in PyTorch's
//! `foreach` implementation: the norm is reduced with tensor ops, the clip coefficient
//! `min(max_norm / (norm + 1e-6), 1)` is computed beside it, and every gradient is
//! multiplied by it, so a GPU training step never waits for the device here. The norm
//! comes back as a 0-dimensional tensor; reading it (`item`) is the caller's choice.
//!
//! ```
//! use wgrad::optim::clip::clip_grad_norm;
//! use wgrad::{Device, Tensor};
//! let w = Tensor::from_slice(&[3.0f32, 4.0], &[2], &Device::cpu()).requires_grad();
//! let mut grads = w.square().sum_all().mul_scalar(0.5).backward(); // gradient = w = [3, 4]
//! let norm = clip_grad_norm(&mut grads, &[w.clone()], 1.0, 2.0);
//! assert_eq!(norm.item(), 5.0); // the norm before clipping
//! let g = grads.wrt(&w).to_vec::<f32>();
//! assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6);
//! ```

use std::collections::HashSet;

use crate::autograd::{no_grad, Gradients};
use crate::{Device, Tensor};

/// The gradients in `grads` of `params`, each parameter once, skipping parameters
/// without a gradient (PyTorch skips those whose `.grad` is `None`) and empty ones.
fn present<'a>(grads: &'a Gradients, params: &'a [Tensor]) -> Vec<(&'a Tensor, &'a Tensor)> {
    let mut seen = HashSet::new();
    params
        .iter()
        .filter(|p| p.grad_id().is_some_and(|id| seen.insert(id)))
        .filter_map(|p| grads.get(p).map(|g| (p, g)))
        .filter(|(_, g)| g.numel() > 0)
        .collect()
}

/// The `norm_type`-norm of all the gradients of `params` together, as if they were
/// concatenated into one vector (PyTorch's `get_total_norm`): a 0-dimensional tensor on
/// the gradients' device, or `None` when no parameter has a gradient.
///
/// `norm_type` is a positive number or `f32::INFINITY` (the largest magnitude).
pub fn total_norm(grads: &Gradients, params: &[Tensor], norm_type: f32) -> Option<Tensor> {
    assert!(
        norm_type == f32::INFINITY || (norm_type > 0.0 && norm_type.is_finite()),
        "clip_grad_norm: norm_type must be positive or infinity, got {norm_type}"
    );
    no_grad(|| {
        let mut acc: Option<Tensor> = None;
        for (_, g) in present(grads, params) {
            // Per tensor: its largest magnitude, or its sum of |g|^p.
            let part = if norm_type == f32::INFINITY {
                g.abs().max_all()
            } else if norm_type == 2.0 {
                g.square().sum_all()
            } else if norm_type == 1.0 {
                g.abs().sum_all()
            } else {
                g.abs().powf(norm_type).sum_all()
            };
            acc = Some(match acc {
                None => part,
                Some(acc) => {
                    // Parameters normally share a device; if not, the small partial result moves.
                    let part = part.to_device(acc.device());
                    if norm_type == f32::INFINITY {
                        acc.maximum(&part)
                    } else {
                        acc.add(&part)
                    }
                }
            });
        }
        acc.map(|acc| {
            if norm_type == f32::INFINITY {
                acc
            } else if norm_type == 2.0 {
                acc.sqrt()
            } else if norm_type == 1.0 {
                acc
            } else {
                acc.powf(1.0 / norm_type)
            }
        })
    })
}

/// Scales the gradients of `params` so that their global `norm_type`-norm is at most
/// `max_norm`, and returns the norm they had before as a 0-dimensional tensor on the
/// gradients' device (PyTorch's `clip_grad_norm_`).
///
/// The norm is taken over all the gradients together, not per parameter. With
/// `total = ||grads||`, every gradient is multiplied by `min(max_norm / (total + 1e-6), 1)`,
/// computed on the device: no value is read back, so on a GPU the step goes on without
/// waiting. Multiplying by 1 changes no bit, so gradients under the limit are left as
/// they were. As in PyTorch, a non-finite norm is not an error: an infinite one makes the
/// coefficient 0 and a NaN one makes every gradient NaN, so the next loss shows the
/// problem. Parameters without a gradient, and repeats in `params`, are skipped; with no
/// gradient at all nothing changes and the result is a zero on the first parameter's
/// device (the CPU when `params` is empty).
///
/// `norm_type` is 2 (the usual choice), another positive number, or `f32::INFINITY`.
pub fn clip_grad_norm(grads: &mut Gradients, params: &[Tensor], max_norm: f32, norm_type: f32) -> Tensor {
    assert!(max_norm >= 0.0, "clip_grad_norm: max_norm must be non-negative, got {max_norm}");
    let Some(norm) = total_norm(grads, params, norm_type) else {
        let dev = params.first().map_or_else(Device::cpu, |p| p.device().clone());
        return Tensor::scalar(0.0, &dev);
    };
    no_grad(|| {
        let dev = norm.device();
        // `minimum` rather than `clamp`: it keeps a NaN coefficient NaN, as torch.clamp does.
        let coef = Tensor::scalar(max_norm, dev).div(&norm.add_scalar(1e-6)).minimum(&Tensor::scalar(1.0, dev));
        let scaled: Vec<(Tensor, Tensor)> = present(grads, params)
            .into_iter()
            .map(|(p, g)| {
                // Parameters normally share a device; if not, the coefficient moves.
                let c = if g.device() == dev { coef.clone() } else { coef.to_device(g.device()) };
                (p.clone(), g.mul(&c))
            })
            .collect();
        for (p, g) in scaled {
            grads.insert(&p, g);
        }
    });
    norm
}

/// Limits every gradient element of `params` to `[-clip_value, clip_value]` (PyTorch's
/// `clip_grad_value_`). Parameters without a gradient are skipped; NaN stays NaN.
pub fn clip_grad_value(grads: &mut Gradients, params: &[Tensor], clip_value: f32) {
    assert!(clip_value >= 0.0, "clip_grad_value: clip_value must be non-negative, got {clip_value}");
    no_grad(|| {
        let clamped: Vec<(Tensor, Tensor)> =
            present(grads, params).into_iter().map(|(p, g)| (p.clone(), g.clamp(-clip_value, clip_value))).collect();
        for (p, g) in clamped {
            grads.insert(&p, g);
        }
    });
}
