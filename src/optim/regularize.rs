//! Weight penalties to add to a loss: differentiable, built from tensor ops, so
//! `backward` gives their gradients along with the loss's.
//!
//! ```
//! use wgrad::optim::regularize::l2_penalty;
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let w = Tensor::from_slice(&[1.0f32, -2.0], &[2], &dev).requires_grad();
//! let data_loss = w.sum_all(); // stands for the model's loss
//! let loss = data_loss.add(&l2_penalty(&[w.clone()]).mul_scalar(0.5 * 1e-2));
//! let g = loss.backward().wrt(&w).to_vec::<f32>();
//! assert!((g[0] - (1.0 + 1e-2 * 1.0)).abs() < 1e-6); // 1 + weight_decay * w
//! ```
//!
//! For L2 with SGD (and with Adam, but not AdamW) the optimizer's `weight_decay` is the
//! cheaper equivalent: `weight_decay = wd` adds `wd * w` to each gradient inside the
//! fused update, which is the gradient of `wd / 2 * l2_penalty(params)` without building
//! the penalty's graph. AdamW's decoupled decay has no loss-term equivalent.

use crate::Tensor;

fn penalty(name: &str, params: &[Tensor], per_param: impl Fn(&Tensor) -> Tensor) -> Tensor {
    assert!(!params.is_empty(), "{name}: no parameters");
    let mut terms = params.iter().map(per_param);
    let first = terms.next().expect("checked non-empty");
    terms.fold(first, |acc, t| acc.add(&t))
}

/// `sum_i sum(p_i^2)`: the squared L2 norm of all parameters together, as a 0-dimensional
/// tensor on their device. Multiply by the coefficient (`lambda`, or `wd / 2` to match a
/// `weight_decay` of `wd`) before adding it to the loss. Panics when `params` is empty.
pub fn l2_penalty(params: &[Tensor]) -> Tensor {
    penalty("l2_penalty", params, |p| p.square().sum_all())
}

/// `sum_i sum(|p_i|)`: the L1 norm of all parameters together, as a 0-dimensional tensor
/// on their device; its gradient is `sign(p)` (0 at 0, as PyTorch's `abs`). Multiply by
/// the coefficient before adding it to the loss. Panics when `params` is empty.
pub fn l1_penalty(params: &[Tensor]) -> Tensor {
    penalty("l1_penalty", params, |p| p.abs().sum_all())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Device;

    fn params(dev: &Device) -> Vec<Tensor> {
        vec![
            Tensor::from_slice(&[1.0f32, -2.0, 0.0], &[3], dev).requires_grad(),
            Tensor::from_slice(&[0.5f32, -0.25, 3.0, -4.0], &[2, 2], dev).requires_grad(),
        ]
    }

    #[test]
    fn l2_value_and_gradient() {
        let ps = params(&Device::cpu());
        let pen = l2_penalty(&ps);
        // 1 + 4 + 0 + 0.25 + 0.0625 + 9 + 16
        assert_eq!(pen.item(), 30.3125);
        let grads = pen.mul_scalar(3.0).backward();
        assert_eq!(grads.wrt(&ps[0]).to_vec::<f32>(), vec![6.0, -12.0, 0.0]);
        assert_eq!(grads.wrt(&ps[1]).to_vec::<f32>(), vec![3.0, -1.5, 18.0, -24.0]);
    }

    #[test]
    fn l1_value_and_gradient() {
        let ps = params(&Device::cpu());
        let pen = l1_penalty(&ps);
        assert_eq!(pen.item(), 1.0 + 2.0 + 0.5 + 0.25 + 3.0 + 4.0);
        let grads = pen.mul_scalar(0.5).backward();
        assert_eq!(grads.wrt(&ps[0]).to_vec::<f32>(), vec![0.5, -0.5, 0.0]);
        assert_eq!(grads.wrt(&ps[1]).to_vec::<f32>(), vec![0.5, -0.5, 0.5, -0.5]);
    }

    #[test]
    #[should_panic(expected = "l2_penalty: no parameters")]
    fn empty_is_an_error() {
        l2_penalty(&[]);
    }
}
