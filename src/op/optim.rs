//! The scalars and flags of one fused optimizer update, which `optim` computes once per
//! step and parameter group and both backends' update kernels read.

/// The scalars of one update, shared by the kernel's params struct (see `gpu::kernels::optim`).
/// Parameters whose scalars are equal can share one multi-tensor dispatch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct OptimScalars {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// The step size (Adam: divided by the first bias correction; Adagrad: after decay).
    pub lr: f32,
    pub weight_decay: f32,
    /// SGD and RMSprop: the momentum; Adam: beta1.
    pub beta1: f32,
    /// SGD: the dampening; Adam: beta2; RMSprop: alpha.
    pub beta2: f32,
    pub eps: f32,
    /// Adam: `sqrt(1 - beta2^t)`.
    pub bias_correction2_sqrt: f32,
    /// AdamW: the plain learning rate, for the decoupled decay.
    pub decoupled_lr: f32,
}

/// SGD: Nesterov momentum.
pub const FLAG_NESTEROV: u32 = 1;
/// SGD: the momentum buffer starts as the gradient.
pub const FLAG_FIRST_STEP: u32 = 2;
/// Adam: decoupled weight decay (AdamW).
pub const FLAG_DECOUPLED: u32 = 4;
/// RMSprop: the centered variant.
pub const FLAG_CENTERED: u32 = 8;
/// SGD and RMSprop: the momentum is non-zero.
pub const FLAG_MOMENTUM: u32 = 16;
/// Ascend instead of descend.
pub const FLAG_MAXIMIZE: u32 = 32;
