//! Batch augmentation (augment.wgsl): the fused crop-and-flip of a batch of images.

use std::sync::Arc;

use super::{linear_groups, u32_of};
use crate::gpu::context::GpuContext;
use crate::gpu::params::kernel_params;
use crate::op::layout::Layout;
use crate::op::Op;

kernel_params! {
    /// `CropFlipParams` of augment.wgsl.
    pub(super) struct CropFlipParams {
        numel: u32,
        channels: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        src_offset: u32,
        windows_offset: u32,
        src_strides: [u32; 4],
    }
}

/// Crop-flip of the `[N, C, H, W]` view `ls` of `src` through the contiguous i32 windows
/// (`dy, dx, flip` per image) starting at element `windows_offset` of `windows`, into the
/// contiguous `[N, C, out_h, out_w]` `out`.
pub fn crop_flip(
    ctx: &Arc<GpuContext>,
    src: &wgpu::Buffer,
    ls: &Layout,
    windows: &wgpu::Buffer,
    windows_offset: usize,
    [out_h, out_w]: [usize; 2],
    out: &wgpu::Buffer,
) {
    let numel = ls.shape[0] * ls.shape[1] * out_h * out_w;
    let p = CropFlipParams {
        numel: u32_of(numel),
        channels: u32_of(ls.shape[1]),
        in_h: u32_of(ls.shape[2]),
        in_w: u32_of(ls.shape[3]),
        out_h: u32_of(out_h),
        out_w: u32_of(out_w),
        src_offset: u32_of(ls.offset),
        windows_offset: u32_of(windows_offset),
        src_strides: [u32_of(ls.strides[0]), u32_of(ls.strides[1]), u32_of(ls.strides[2]), u32_of(ls.strides[3])],
    };
    let kernel = Op::Augment(crate::op::AugmentOp::CropFlip).kernel();
    ctx.dispatch(kernel, bytemuck::bytes_of(&p), &[src, windows, out], linear_groups(ctx, numel));
}
