//! Optimizers, learning-rate schedules, gradient clipping and regularisers.
//!
//! Every optimizer updates each parameter with one fused kernel (`shaders/optim.wgsl`, and
//! its CPU twin in `cpu::optim`): the parameter and the optimizer's state are rewritten in
//! place, so a step allocates nothing after the first. Semantics and defaults are
//! PyTorch's (`torch.optim`, single-tensor implementation); a parameter without a gradient
//! is skipped, as one whose `.grad` is `None`.
//!
//! ```
//! use wgrad::optim::{Optimizer, Sgd};
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu();
//! let w = Tensor::from_slice(&[1.0f32, -2.0], &[2], &dev).requires_grad();
//! let mut opt = Sgd::new([w.clone()], 0.1);
//! let grads = w.square().sum_all().backward(); // d/dw = 2w
//! opt.step(&grads);
//! assert_eq!(w.to_vec::<f32>(), vec![0.8, -1.6]);
//! ```

mod adagrad;
mod adam;
mod rmsprop;
mod sgd;

pub mod clip;
pub mod regularize;
pub mod scheduler;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use rmsprop::RmsProp;
pub use sgd::Sgd;

use std::sync::Arc;

use crate::autograd::Gradients;
use crate::cpu::optim::OptimScalars;
use crate::gpu::launch;
use crate::op::{OptimOp, UnaryOp};
use crate::storage::{CpuData, Storage};
use crate::Tensor;

/// What every optimizer offers: one update from a set of gradients, and its learning rate
/// (which schedulers set between steps).
pub trait Optimizer {
    /// Updates every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &Gradients);
    /// The learning rate the next step uses.
    fn lr(&self) -> f32;
    fn set_lr(&mut self, lr: f32);
}

/// One parameter and the optimizer state that follows it.
struct Slot {
    param: Tensor,
    /// Up to three state tensors of the parameter's shape, created on the first step.
    state: Option<[Tensor; 3]>,
    /// Steps taken for this parameter (PyTorch counts per parameter).
    steps: u64,
}

impl Slot {
    fn new(param: Tensor) -> Slot {
        assert!(
            param.is_tracked() && param.grad_id().is_some(),
            "optimizer: a parameter of shape {:?} does not require a gradient; call requires_grad() on it",
            param.shape()
        );
        assert!(
            param.is_contiguous() && param.layout.offset == 0,
            "optimizer: a parameter of shape {:?} is a view; parameters must own their storage",
            param.shape()
        );
        Slot { param, state: None, steps: 0 }
    }

    /// The state tensors, created on first use: those marked `used` filled with `init` in
    /// the parameter's shape, the rest one-element placeholders that the kernel never
    /// reads (each distinct, since a buffer may be bound for writing only once).
    fn state(&mut self, used: [bool; 3], init: f32) -> &[Tensor; 3] {
        let param = &self.param;
        self.state.get_or_insert_with(|| {
            let make = |i: usize| {
                crate::autograd::no_grad(|| {
                    if used[i] {
                        Tensor::full(param.shape(), init, param.device())
                    } else {
                        Tensor::zeros(&[1], param.device())
                    }
                })
            };
            [make(0), make(1), make(2)]
        })
    }
}

fn slots(params: impl IntoIterator<Item = Tensor>) -> Vec<Slot> {
    params.into_iter().map(Slot::new).collect()
}

/// Runs one fused update of `param` and `state` in place.
fn fused_update(op: OptimOp, s: &OptimScalars, param: &Tensor, grad: &Tensor, state: &[Tensor; 3]) {
    assert_eq!(
        grad.shape(),
        param.shape(),
        "{}: gradient of shape {:?} for a parameter of shape {:?}",
        op.name(),
        grad.shape(),
        param.shape()
    );
    let mut grad = grad.detach().contiguous();
    // A gradient may share the parameter's storage (`p.backward_with(&p)`, or one inserted
    // by hand): reading it while the parameter is written would deadlock on the CPU lock
    // and bind one buffer twice on the GPU, so it is copied first.
    if Arc::ptr_eq(&grad.storage, &param.storage) {
        grad = grad.unary_op(UnaryOp::Copy, 0.0, 0.0);
    }
    let n = param.numel();
    match (&*param.storage, &*grad.storage) {
        (Storage::Cpu(p), Storage::Cpu(g)) => {
            let g = g.read().unwrap();
            let g = &g.as_f32()[grad.layout.offset..grad.layout.offset + n];
            let mut p = p.write().unwrap();
            let mut locks: Vec<_> = state
                .iter()
                .map(|t| match &*t.storage {
                    Storage::Cpu(d) => d.write().unwrap(),
                    Storage::Gpu(_) => unreachable!("state lives with its parameter"),
                })
                .collect();
            let [s0, s1, s2] = &mut locks[..] else { unreachable!() };
            // The parameter's own elements: its storage may be longer (a prefix view).
            let p = &mut f32_mut(&mut p)[..n];
            crate::cpu::optim::update(op, s, g, p, [f32_mut(s0), f32_mut(s1), f32_mut(s2)]);
        }
        (Storage::Gpu(p), Storage::Gpu(g)) => {
            let st: Vec<&wgpu::Buffer> = state.iter().map(|t| t.gpu_buffer().buffer()).collect();
            if n > 0 {
                launch::optim(&p.ctx, op, s, g.buffer(), grad.layout.offset, p.buffer(), [st[0], st[1], st[2]], n);
            }
        }
        _ => panic!("{}: the gradient is on another device than its parameter", op.name()),
    }
}

fn f32_mut(d: &mut CpuData) -> &mut [f32] {
    match d {
        CpuData::F32(v) => v,
        other => panic!("optimizer: expected f32 storage, found {}", other.dtype()),
    }
}
