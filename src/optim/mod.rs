//! Optimizers, learning-rate schedules, gradient clipping and regularisers.
//!
//! Every optimizer updates its parameters with one fused kernel (`shaders/optim.wgsl`,
//! and its CPU twin in `cpu::optim`) that rewrites the parameters and the optimizer's
//! state in place, so a step allocates nothing after the first. Semantics and defaults
//! are PyTorch's (`torch.optim`, single-tensor formulas); a parameter without a gradient
//! is skipped, as one whose `.grad` is `None`.
//!
//! On a GPU one dispatch updates up to three parameters (a multi-tensor apply), so a
//! model with `P` parameter tensors costs `ceil(P / 3)` dispatches per step instead of
//! `P`. Parameters belong to the model and each owns its buffer, so they cannot be moved
//! into one arena; they are bound side by side instead, and three (gradient, parameter)
//! pairs plus the state arena stay within WebGPU's default of eight storage buffers per
//! shader stage, which every adapter offers. The optimizer's own state (momentum
//! buffers, `exp_avg`, ...) does live in one arena per device, allocated at the first
//! step, which is what lets any three parameters share a dispatch. Each element still
//! goes through exactly the arithmetic of a one-parameter update, so grouping changes
//! no bit of the result.
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
mod state;

pub mod clip;
pub mod regularize;
pub mod scheduler;

pub use adagrad::Adagrad;
pub use adam::{Adam, AdamW};
pub use rmsprop::RmsProp;
pub use sgd::Sgd;
pub use state::{OptimizerState, ParamState};

use std::sync::Arc;

use crate::autograd::{no_grad, Gradients};
use crate::cpu::optim::OptimScalars;
use crate::gpu::launch;
use crate::op::{OptimOp, UnaryOp};
use crate::storage::{CpuData, Storage};
use crate::{Device, Tensor};

/// What every optimizer offers: one update from a set of gradients, its learning rate
/// (which schedulers set between steps), and its state as a value to save and restore.
pub trait Optimizer {
    /// Updates every parameter that has a gradient in `grads`.
    fn step(&mut self, grads: &Gradients);
    /// The learning rate the next step uses.
    fn lr(&self) -> f32;
    /// Sets the learning rate of the following steps.
    fn set_lr(&mut self, lr: f32);
    /// A copy of the optimizer's state: its learning rate and, for each parameter it has
    /// updated, the step count and state tensors under PyTorch's names (see
    /// [`OptimizerState`]). The tensors are copies on the parameters' devices, made without
    /// waiting for the GPU; later steps do not change them.
    fn state_dict(&self) -> OptimizerState;
    /// Replaces the optimizer's state and learning rate with `state`, copying its tensors
    /// onto the parameters' devices, so the next step is the one the saved optimizer would
    /// have taken. `state` must come from the same kind of optimizer (with the same state
    /// vectors: Sgd's momentum, RmsProp's momentum and centering) over parameters of the
    /// same shapes, in the same order; everything is checked first, and on
    /// [`Error::OptimizerState`](crate::Error::OptimizerState) nothing has changed.
    fn load_state_dict(&mut self, state: &OptimizerState) -> crate::Result<()>;
}

/// One parameter and where its optimizer state lies.
struct Slot {
    param: Tensor,
    /// Steps taken for this parameter (PyTorch counts per parameter).
    steps: u64,
    /// Which of [`ParamSet::arenas`] holds the state, and from which element.
    arena: usize,
    state_offset: usize,
}

impl Slot {
    fn new(param: Tensor) -> Slot {
        assert!(
            param.grad_id().is_some(),
            "optimizer: a parameter of shape {:?} does not require a gradient; call requires_grad() on it",
            param.shape()
        );
        assert!(
            param.is_contiguous() && param.layout.offset == 0,
            "optimizer: a parameter of shape {:?} is a view; parameters must own their storage",
            param.shape()
        );
        Slot { param, steps: 0, arena: 0, state_offset: 0 }
    }
}

/// The parameters of one optimizer, their state arenas, and the grouping of updates into
/// multi-tensor dispatches.
struct ParamSet {
    slots: Vec<Slot>,
    /// The state of every slot, created at the first step: for each slot, the state
    /// vectors its update uses, one after the other. One arena per device, more when the
    /// state would not fit in one storage binding.
    arenas: Vec<Tensor>,
    /// The state vectors the update keeps (set with the arenas).
    used: [bool; 3],
    /// Where state `k` lies in a slot's block, in units of the slot's length.
    state_pos: [u32; 3],
    /// For each arena on a GPU, distinct one-element buffers on its device, bound for the
    /// parameters of missing segments.
    dummies: Vec<Option<[Tensor; launch::OPTIM_SEGMENTS - 1]>>,
}

/// One parameter's update of a step, before it is grouped.
struct Update {
    slot: usize,
    scalars: OptimScalars,
    grad: Tensor,
}

impl ParamSet {
    /// The parameters of optimizer `optimizer`. Panics on an empty list, as PyTorch's
    /// optimizers raise on one: every later step would silently change nothing, which is
    /// how a model whose `Module` impl registers no parameters would otherwise go unnoticed.
    fn new(optimizer: &str, params: impl IntoIterator<Item = Tensor>) -> ParamSet {
        let slots: Vec<Slot> = params.into_iter().map(Slot::new).collect();
        assert!(
            !slots.is_empty(),
            "{optimizer}: the parameter list is empty, so no step would change anything; \
             if it came from `model.parameters()`, the model registers no parameters \
             (does its `Module` impl return them from `named_parameters`?)"
        );
        ParamSet { slots, arenas: Vec::new(), used: [false; 3], state_pos: [0; 3], dummies: Vec::new() }
    }

    /// Updates every parameter that has a gradient in `grads` with `op`. `scalars` gives
    /// the scalars of one parameter's update from its step count, which it advances as
    /// the optimizer counts. `used` names the state vectors the update reads and writes,
    /// created filled with `init`.
    fn step(
        &mut self,
        op: OptimOp,
        used: [bool; 3],
        init: f32,
        grads: &Gradients,
        mut scalars: impl FnMut(&mut u64) -> OptimScalars,
    ) {
        let mut updates = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(grad) = grads.get(&slot.param) else { continue };
            assert_eq!(
                grad.shape(),
                slot.param.shape(),
                "{}: gradient of shape {:?} for a parameter of shape {:?}",
                op.name(),
                grad.shape(),
                slot.param.shape()
            );
            assert!(
                grad.device() == slot.param.device(),
                "{}: the gradient of a parameter of shape {:?} is on another device than the parameter",
                op.name(),
                slot.param.shape()
            );
            let s = scalars(&mut slot.steps);
            updates.push(Update { slot: i, scalars: s, grad: grad.detach() });
        }
        if updates.is_empty() {
            return;
        }
        self.create_state(used, init);
        let mut group: Vec<Update> = Vec::with_capacity(launch::OPTIM_SEGMENTS);
        for u in updates {
            if self.slots[u.slot].param.numel() == 0 {
                continue;
            }
            if let Some(first) = group.first() {
                let slot = &self.slots[u.slot];
                let fits = group.len() < launch::OPTIM_SEGMENTS
                    && first.scalars == u.scalars
                    && self.slots[first.slot].arena == slot.arena
                    // A buffer may be bound for writing only once per dispatch.
                    && !group.iter().any(|g| Arc::ptr_eq(&self.slots[g.slot].param.storage, &slot.param.storage));
                if !fits {
                    self.run(op, &std::mem::take(&mut group));
                }
            }
            group.push(u);
        }
        if !group.is_empty() {
            self.run(op, &group);
        }
    }

    /// Creates the state arenas on the first step.
    fn create_state(&mut self, used: [bool; 3], init: f32) {
        if !self.arenas.is_empty() {
            return;
        }
        self.used = used;
        let mut count = 0;
        for (k, &u) in used.iter().enumerate() {
            self.state_pos[k] = count;
            count += u as u32;
        }
        let per_element = count as usize;
        // Sizes of the arenas to create and the device of each.
        let mut arenas: Vec<(Device, usize)> = Vec::new();
        for slot in &mut self.slots {
            let dev = slot.param.device();
            let limit = match dev {
                Device::Cpu => usize::MAX,
                Device::Gpu(ctx) => (ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size) / 4)
                    .try_into()
                    .unwrap_or(usize::MAX),
            };
            let len = per_element * slot.param.numel();
            assert!(
                len <= limit,
                "optimizer: the state of a parameter of shape {:?} ({len} elements) exceeds the device's largest \
                 storage binding ({limit} elements)",
                slot.param.shape()
            );
            match arenas.last_mut() {
                Some((d, used)) if d == dev && *used + len <= limit => {
                    slot.state_offset = *used;
                    *used += len;
                }
                _ => {
                    slot.state_offset = 0;
                    arenas.push((dev.clone(), len));
                }
            }
            slot.arena = arenas.len() - 1;
        }
        // Never empty, so an update that keeps no state still has a buffer to bind.
        no_grad(|| {
            self.arenas = arenas.iter().map(|(dev, len)| Tensor::full(&[(*len).max(1)], init, dev)).collect();
            self.dummies = arenas
                .iter()
                .map(|(dev, _)| (!dev.is_cpu()).then(|| std::array::from_fn(|_| Tensor::zeros(&[1], dev))))
                .collect();
        });
    }

    /// Runs the updates of one group: parameters on one device and arena with equal scalars.
    fn run(&self, op: OptimOp, group: &[Update]) {
        let arena_index = self.slots[group[0].slot].arena;
        let arena = self.arenas[arena_index].clone();
        let grads: Vec<Tensor> = group
            .iter()
            .map(|u| {
                let grad = u.grad.contiguous();
                // A gradient may share a parameter's storage (`p.backward_with(&p)`, or one
                // inserted by hand): reading it while that parameter is written would
                // deadlock on the CPU lock and bind one buffer twice on the GPU, so it is
                // copied first.
                if group.iter().any(|g| Arc::ptr_eq(&grad.storage, &self.slots[g.slot].param.storage)) {
                    grad.unary_op(UnaryOp::Copy, 0.0, 0.0)
                } else {
                    grad
                }
            })
            .collect();
        let s = &group[0].scalars;
        match &*arena.storage {
            Storage::Cpu(arena) => {
                let mut arena = arena.write().unwrap();
                let arena = f32_mut(&mut arena);
                for (u, grad) in group.iter().zip(&grads) {
                    let slot = &self.slots[u.slot];
                    let n = slot.param.numel();
                    let g = grad.cpu_data();
                    let g = &g.as_f32()[grad.layout.offset..grad.layout.offset + n];
                    let Storage::Cpu(p) = &*slot.param.storage else {
                        unreachable!("the arena is on the parameter's device")
                    };
                    let mut p = p.write().unwrap();
                    // The parameter's own elements: its storage may be longer (a prefix view).
                    let p = &mut f32_mut(&mut p)[..n];
                    let blocks = self.used.iter().filter(|&&u| u).count();
                    let block = &mut arena[slot.state_offset..slot.state_offset + blocks * n];
                    let mut chunks = block.chunks_mut(n);
                    let state =
                        self.used
                            .map(|u| if u { chunks.next().expect("one chunk per state") } else { Default::default() });
                    crate::cpu::optim::update(op, s, g, p, state);
                }
            }
            Storage::Gpu(arena) => {
                let ctx = &arena.ctx;
                let segments: Vec<launch::OptimSegment> = group
                    .iter()
                    .zip(&grads)
                    .map(|(u, grad)| {
                        let slot = &self.slots[u.slot];
                        launch::OptimSegment {
                            param: slot.param.gpu_buffer().buffer(),
                            grad: grad.gpu_buffer().buffer(),
                            grad_offset: grad.layout.offset,
                            state_offset: slot.state_offset,
                            numel: slot.param.numel(),
                        }
                    })
                    .collect();
                let dummies = self.dummies[arena_index].as_ref().expect("a GPU arena has its dummies");
                let dummies = dummies.each_ref().map(|d| d.gpu_buffer().buffer());
                launch::optim(ctx, op, s, self.state_pos, &segments, arena.buffer(), dummies);
            }
        }
    }
}

fn f32_mut(d: &mut CpuData) -> &mut [f32] {
    match d {
        CpuData::F32(v) => v,
        other => panic!("optimizer: expected f32 storage, found {}", other.dtype()),
    }
}
