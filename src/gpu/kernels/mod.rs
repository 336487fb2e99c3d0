//! One launcher file per kernel family, beside the WGSL file it drives: each declares the
//! params struct of its shader (with `gpu::params::kernel_params!`, so a test compares the
//! two layouts), fills it and records the dispatch. Launchers assume validated input: the
//! tensor layer has checked shapes and dtypes.
//!
//! Every launcher is also re-exported here, and this module as `gpu::launch`, so callers
//! write `launch::matmul(..)` without naming the family.

use super::context::{GpuContext, WORKGROUP_SIZE};
use super::params::ParamsLayout;
use crate::op::layout::MAX_DIMS;

pub mod augment;
pub mod batch_norm;
pub mod conv;
pub mod creation;
pub mod elementwise;
pub mod embedding;
pub mod half;
pub mod index;
pub mod layer_norm;
pub mod loss;
pub mod lstm_sequence;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod softmax;

pub use augment::*;
pub use batch_norm::*;
pub use conv::*;
pub use creation::*;
pub use elementwise::*;
pub use embedding::*;
pub use half::*;
pub use index::*;
pub use layer_norm::*;
pub use loss::*;
pub use lstm_sequence::*;
pub use matmul::*;
pub use optim::*;
pub use pool::*;
pub use reduce::*;
pub use rnn::*;
pub use softmax::*;

/// Packs up to eight dimensions for a `array<vec4<u32>, 2>` uniform field.
fn pack(values: &[usize]) -> [u32; MAX_DIMS] {
    let mut out = [0u32; MAX_DIMS];
    for (o, &v) in out.iter_mut().zip(values) {
        *o = u32::try_from(v).expect("dimension or stride does not fit in 32 bits");
    }
    out
}

fn u32_of(v: usize) -> u32 {
    u32::try_from(v).expect("size does not fit in 32 bits")
}

fn linear_groups(ctx: &GpuContext, items: usize) -> [u32; 3] {
    ctx.fold_workgroups(u32_of(items.div_ceil(WORKGROUP_SIZE as usize)))
}

/// Every params struct of the launchers, for the test that compares each with its
/// WGSL twin (see [`crate::gpu::params`]).
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) const PARAMS: &[ParamsLayout] = &[
    elementwise::ElementwiseParams::LAYOUT,
    creation::CreationParams::LAYOUT,
    reduce::ReduceParams::LAYOUT,
    softmax::SoftmaxParams::LAYOUT,
    matmul::MatmulParams::LAYOUT,
    index::IndexParams::LAYOUT,
    optim::OptimParams::LAYOUT,
    lstm_sequence::LstmSequenceParams::LAYOUT,
    conv::ConvParams::LAYOUT,
    conv::DirectParams::LAYOUT,
    pool::PoolParams::LAYOUT,
    batch_norm::BatchNormParams::LAYOUT,
    augment::CropFlipParams::LAYOUT,
    embedding::EmbeddingParams::LAYOUT,
    layer_norm::LayerNormParams::LAYOUT,
    rnn::RnnParams::LAYOUT,
    half::HalfParams::LAYOUT,
    half::HalfMatmulParams::LAYOUT,
    loss::LossParams::LAYOUT,
];
