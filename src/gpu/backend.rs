//! The wgpu backend's side of [`Backend`]: each method allocates its output from the
//! buffer pool and records the launches of its family. The context is the backend, since
//! every buffer and dispatch belongs to it.

use std::sync::Arc;

use super::context::GpuContext;
use super::kernels::elementwise;
use super::pool::GpuBuffer;
use crate::backend::Backend;
use crate::op::layout::Layout;
use crate::op::{BinaryOp, UnaryOp};

/// A new pooled buffer for `numel` f32 elements.
fn f32_output(ctx: &Arc<GpuContext>, numel: usize) -> GpuBuffer {
    GpuBuffer::new(ctx, (numel * 4) as u64)
}

impl Backend for Arc<GpuContext> {
    type Buffer = GpuBuffer;

    fn unary(&self, op: UnaryOp, [s0, s1]: [f32; 2], x: &GpuBuffer, lx: &Layout) -> GpuBuffer {
        let out = f32_output(self, lx.numel());
        if lx.numel() > 0 {
            elementwise::unary(self, op, s0, s1, x.buffer(), lx, out.buffer());
        }
        out
    }

    fn binary(&self, op: BinaryOp, a: &GpuBuffer, la: &Layout, b: &GpuBuffer, lb: &Layout) -> GpuBuffer {
        let out = f32_output(self, la.numel());
        if la.numel() > 0 {
            elementwise::binary(self, op, a.buffer(), la, b.buffer(), lb, out.buffer());
        }
        out
    }

    fn where_select(
        &self,
        (cond, lc): (&GpuBuffer, &Layout),
        (a, la): (&GpuBuffer, &Layout),
        (b, lb): (&GpuBuffer, &Layout),
    ) -> GpuBuffer {
        let out = f32_output(self, la.numel());
        if la.numel() > 0 {
            elementwise::where_select(self, cond.buffer(), lc, a.buffer(), la, b.buffer(), lb, out.buffer());
        }
        out
    }
}
