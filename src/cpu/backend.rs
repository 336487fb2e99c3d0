//! The CPU backend's side of [`Backend`]: each method runs the reference kernel of its
//! family on host vectors.

use super::elementwise;
use crate::backend::Backend;
use crate::op::layout::Layout;
use crate::op::{BinaryOp, UnaryOp};
use crate::storage::CpuData;

/// The host, as a [`Backend`].
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Buffer = CpuData;

    fn unary(&self, op: UnaryOp, [s0, s1]: [f32; 2], x: &CpuData, lx: &Layout) -> CpuData {
        CpuData::F32(elementwise::unary(op, s0, s1, x.as_f32(), lx))
    }

    fn binary(&self, op: BinaryOp, a: &CpuData, la: &Layout, b: &CpuData, lb: &Layout) -> CpuData {
        CpuData::F32(elementwise::binary(op, a.as_f32(), la, b.as_f32(), lb))
    }

    fn where_select(
        &self,
        (cond, lc): (&CpuData, &Layout),
        (a, la): (&CpuData, &Layout),
        (b, lb): (&CpuData, &Layout),
    ) -> CpuData {
        CpuData::F32(elementwise::where_select(cond.as_f32(), lc, a.as_f32(), la, b.as_f32(), lb))
    }
}
