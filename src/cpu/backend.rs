//! The CPU backend's side of [`Backend`]: each method runs the reference kernel of its
//! family on host vectors.

use super::{alloc, augment, creation, elementwise, half, index, matmul, reduce, softmax};
use crate::backend::Backend;
use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::op::layout::Layout;
use crate::op::matmul::{BiasAxis, Epilogue, MatmulDims};
use crate::op::{BinaryOp, Creation, HalfOp, IndexOp, ReduceOp, SoftmaxOp, UnaryOp};
use crate::storage::CpuData;

/// The host, as a [`Backend`].
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Buffer = CpuData;
    type BufferMut<'a> = &'a mut CpuData;

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

    // ---- creation, upload, read-back and copies ----

    fn alloc(&self, dtype: DType, n: usize, op: &str) -> CpuData {
        CpuData::zeros(dtype, n, op)
    }

    fn try_upload<T: Element>(&self, data: &[T], op: &str) -> Result<CpuData> {
        Ok(T::into_cpu(alloc::try_copy(data, op)?))
    }

    fn try_create(&self, c: Creation, n: usize, op: &str) -> Result<CpuData> {
        // The kernels write into zeroed memory, so a fill with zero has nothing to do.
        let mut values = alloc::try_zeroed(n, op)?;
        match c {
            Creation::Fill(value) => creation::fill(&mut values, value),
            Creation::Arange { start, step } => creation::arange(&mut values, start, step),
            Creation::Eye { rows, cols } => creation::eye(&mut values, rows, cols),
            Creation::RandUniform { seed, low, high } => creation::rand_uniform(&mut values, seed, low, high),
            Creation::RandNormal { seed, mean, std } => creation::rand_normal(&mut values, seed, mean, std),
        }
        Ok(CpuData::F32(values))
    }

    fn try_read<T: Element>(&self, x: &CpuData, offset: usize, n: usize) -> Result<Vec<T>> {
        let all = T::from_cpu(x).expect("to_vec: the tensor layer checks the dtype");
        alloc::try_copy(&all[offset..offset + n], "to_vec")
    }

    fn write_host(&self, dst: &mut CpuData, offset: usize, bytes: &[u8]) -> bool {
        dst.bytes_mut()[offset..offset + bytes.len()].copy_from_slice(bytes);
        true
    }

    fn copy_into(&self, dtype: DType, src: &CpuData, ls: &Layout, dst: &mut CpuData, ld: &Layout) {
        if dtype == DType::F16 {
            // Two f16 elements share a 32-bit word: the word copy does not apply.
            let CpuData::F16(d) = dst else { panic!("copy: f16 source into {} storage", dst.dtype()) };
            half::copy_into(src.as_f16(), ls, d, ld);
        } else {
            elementwise::copy_into(src.words(), ls, dst.words_mut(), ld);
        }
    }

    // ---- reductions and softmax ----

    fn reduce(&self, op: ReduceOp, x: &CpuData, offset: usize, rows: usize, len: usize, correction: f32) -> CpuData {
        reduce::reduce(op, x.as_f32(), offset, rows, len, correction)
    }

    fn column_sums(&self, x: &CpuData, offset: usize, len: usize, cols: usize, mean: bool) -> Option<CpuData> {
        Some(CpuData::F32(reduce::column_sums(x.as_f32(), offset, len, cols, mean)))
    }

    fn softmax(&self, op: SoftmaxOp, x: &CpuData, offset: usize, rows: usize, len: usize) -> CpuData {
        CpuData::F32(softmax::softmax(op, x.as_f32(), offset, rows, len))
    }

    // ---- matmul ----

    fn matmul(
        &self,
        (a, la): (&CpuData, &Layout),
        (b, lb): (&CpuData, &Layout),
        MatmulDims { batch, m, k, n }: MatmulDims<'_>,
        epilogue: Epilogue<'_, CpuData>,
    ) -> CpuData {
        let bias = epilogue.bias.map(|(data, offset, axis)| {
            let len = if axis == BiasAxis::Column { n } else { m };
            (&data.as_f32()[offset..offset + len], axis)
        });
        CpuData::F32(matmul::matmul_fused(a.as_f32(), la, b.as_f32(), lb, batch, m, k, n, bias, epilogue.activation))
    }

    // ---- the index family ----

    fn index(
        &self,
        op: IndexOp,
        (src, ls): (&CpuData, &Layout),
        axis: usize,
        indices: &CpuData,
        index_offset: usize,
        index_len: usize,
        out_shape: &[usize],
    ) -> CpuData {
        let idx = &indices.as_i32()[index_offset..index_offset + index_len];
        let f = match op {
            IndexOp::IndexSelect => index::index_select,
            IndexOp::Gather => index::gather,
            IndexOp::IndexAdd => index::index_add,
            IndexOp::ScatterAdd => index::scatter_add,
        };
        CpuData::F32(f(src.as_f32(), ls, axis, idx, out_shape))
    }

    // ---- half precision ----

    fn cast(&self, op: HalfOp, x: &CpuData, lx: &Layout) -> CpuData {
        match op {
            HalfOp::ToHalf => CpuData::F16(half::to_half(x.as_f32(), lx)),
            _ => CpuData::F32(half::to_float(x.as_f16(), lx)),
        }
    }

    fn half_matmul(
        &self,
        (a, la): (&CpuData, &Layout),
        (b, lb): (&CpuData, &Layout),
        MatmulDims { batch, m, k, n }: MatmulDims<'_>,
    ) -> CpuData {
        CpuData::F32(half::matmul(a.as_f16(), la, b.as_f16(), lb, batch, m, k, n))
    }

    // ---- augmentation ----

    fn crop_flip(
        &self,
        (src, ls): (&CpuData, &Layout),
        windows: &CpuData,
        windows_offset: usize,
        out_size: [usize; 2],
    ) -> CpuData {
        let n = 3 * ls.shape[0];
        let w = &windows.as_i32()[windows_offset..windows_offset + n];
        CpuData::F32(augment::crop_flip(src.as_f32(), ls, w, out_size))
    }
}
