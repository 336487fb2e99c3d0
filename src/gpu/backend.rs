//! The wgpu backend's side of [`Backend`]: each method allocates its output from the
//! buffer pool and records the launches of its family. The context is the backend, since
//! every buffer and dispatch belongs to it.

use std::sync::Arc;

use super::context::GpuContext;
use super::kernels::{augment, creation, elementwise, half, index, matmul, reduce, softmax};
use super::pool::GpuBuffer;
use crate::backend::Backend;
use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::op::layout::Layout;
use crate::op::matmul::{Epilogue, MatmulDims};
use crate::op::{BinaryOp, Creation, CreationOp, HalfOp, IndexOp, ReduceOp, SoftmaxOp, UnaryOp};
use crate::random;

/// A new pooled buffer for `numel` f32 elements.
fn f32_output(ctx: &Arc<GpuContext>, numel: usize) -> GpuBuffer {
    GpuBuffer::new(ctx, (numel * 4) as u64)
}

impl Backend for Arc<GpuContext> {
    type Buffer = GpuBuffer;
    type BufferMut<'a> = &'a GpuBuffer;

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

    // ---- creation, upload, read-back and copies ----

    fn alloc(&self, dtype: DType, n: usize, _op: &str) -> GpuBuffer {
        GpuBuffer::new(self, dtype.buffer_bytes(n) as u64)
    }

    fn try_upload<T: Element>(&self, data: &[T], op: &str) -> Result<GpuBuffer> {
        self.take_error()?;
        let bytes: &[u8] = bytemuck::cast_slice(data);
        // Whole 32-bit words: an odd number of f16 elements ends in half a word.
        let buf = GpuBuffer::try_new(self, T::DTYPE.buffer_bytes(data.len()) as u64, op)?;
        self.try_record_upload(buf.buffer(), 0, bytes, op)?;
        Ok(buf)
    }

    fn try_create(&self, c: Creation, n: usize, op: &str) -> Result<GpuBuffer> {
        self.take_error()?;
        let buf = GpuBuffer::try_new(self, DType::F32.buffer_bytes(n) as u64, op)?;
        let p = creation_params(c);
        creation::creation(self, c.op(), creation::CreationParams { numel: n as u32, ..p }, buf.buffer());
        Ok(buf)
    }

    fn try_read<T: Element>(&self, x: &GpuBuffer, offset: usize, n: usize) -> Result<Vec<T>> {
        let size = T::DTYPE.size_bytes();
        let bytes = self.try_read_bytes(x.buffer(), (offset * size) as u64, (n * size) as u64)?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    fn write_host(&self, dst: &GpuBuffer, offset: usize, bytes: &[u8]) -> bool {
        // Uploads move whole 32-bit words: an f16 range is written only where it owns
        // them, from an even offset to an even length or the end of its storage.
        let end = offset + bytes.len();
        let whole_words =
            offset.is_multiple_of(4) && (end.is_multiple_of(4) || end.div_ceil(4) * 4 >= dst.len_bytes as usize);
        if whole_words {
            self.record_upload(dst.buffer(), offset as u64, bytes);
        }
        whole_words
    }

    fn copy_into(&self, dtype: DType, src: &GpuBuffer, ls: &Layout, dst: &GpuBuffer, ld: &Layout) {
        if ls.numel() == 0 {
            return;
        }
        if dtype == DType::F16 {
            // Two f16 elements share a 32-bit word: the word copy does not apply.
            half::half_copy(self, src.buffer(), ls, dst.buffer(), ld);
        } else {
            elementwise::copy(self, src.buffer(), ls, dst.buffer(), ld);
        }
    }

    // ---- reductions and softmax ----

    fn reduce(
        &self,
        op: ReduceOp,
        x: &GpuBuffer,
        offset: usize,
        rows: usize,
        len: usize,
        correction: f32,
    ) -> GpuBuffer {
        // f32 or i32 results: four bytes each.
        let out = f32_output(self, rows);
        if rows > 0 {
            reduce::reduce(self, op, x.buffer(), offset, rows, len, correction, out.buffer());
        }
        out
    }

    fn softmax(&self, op: SoftmaxOp, x: &GpuBuffer, offset: usize, rows: usize, len: usize) -> GpuBuffer {
        let out = f32_output(self, rows * len);
        if rows * len > 0 {
            softmax::softmax(self, op, x.buffer(), offset, rows, len, out.buffer());
        }
        out
    }

    // ---- matmul ----

    fn matmul(
        &self,
        (a, la): (&GpuBuffer, &Layout),
        (b, lb): (&GpuBuffer, &Layout),
        MatmulDims { batch, m, k, n }: MatmulDims<'_>,
        epilogue: Epilogue<'_, GpuBuffer>,
    ) -> GpuBuffer {
        let total = batch.iter().product::<usize>() * m * n;
        let out = f32_output(self, total);
        if total > 0 && k == 0 && epilogue.is_none() {
            // An empty sum: zeros, by the fill kernel rather than a product of nothing.
            let p = creation::CreationParams { numel: total as u32, ..Default::default() };
            creation::creation(self, CreationOp::Fill, p, out.buffer());
        } else if total > 0 {
            let epilogue = matmul::MatmulEpilogue {
                bias: epilogue.bias.map(|(bias, offset, axis)| (bias.buffer(), offset, axis)),
                activation: epilogue.activation,
            };
            matmul::matmul_fused(self, a.buffer(), la, b.buffer(), lb, batch, m, k, n, epilogue, out.buffer());
        }
        out
    }

    // ---- the index family ----

    fn index(
        &self,
        op: IndexOp,
        (src, ls): (&GpuBuffer, &Layout),
        axis: usize,
        indices: &GpuBuffer,
        index_offset: usize,
        _index_len: usize,
        out_shape: &[usize],
    ) -> GpuBuffer {
        let numel = out_shape.iter().product();
        let out = f32_output(self, numel);
        if numel > 0 {
            index::index(self, op, src.buffer(), ls, axis, indices.buffer(), index_offset, out_shape, out.buffer());
        }
        out
    }

    // ---- half precision ----

    fn cast(&self, op: HalfOp, x: &GpuBuffer, lx: &Layout) -> GpuBuffer {
        let dtype = if op == HalfOp::ToHalf { DType::F16 } else { DType::F32 };
        let out = GpuBuffer::new(self, dtype.buffer_bytes(lx.numel()) as u64);
        if lx.numel() > 0 {
            half::half_cast(self, op, x.buffer(), lx, out.buffer());
        }
        out
    }

    fn half_matmul(
        &self,
        (a, la): (&GpuBuffer, &Layout),
        (b, lb): (&GpuBuffer, &Layout),
        MatmulDims { batch, m, k, n }: MatmulDims<'_>,
    ) -> GpuBuffer {
        let total = batch.iter().product::<usize>() * m * n;
        let out = f32_output(self, total);
        if total > 0 && k == 0 {
            let p = creation::CreationParams { numel: total as u32, ..Default::default() };
            creation::creation(self, CreationOp::Fill, p, out.buffer());
        } else if total > 0 {
            half::half_matmul(self, a.buffer(), la, b.buffer(), lb, batch, m, k, n, out.buffer());
        }
        out
    }

    // ---- augmentation ----

    fn crop_flip(
        &self,
        (src, ls): (&GpuBuffer, &Layout),
        windows: &GpuBuffer,
        windows_offset: usize,
        [out_h, out_w]: [usize; 2],
    ) -> GpuBuffer {
        let numel = ls.shape[0] * ls.shape[1] * out_h * out_w;
        let out = f32_output(self, numel);
        if numel > 0 {
            augment::crop_flip(self, src.buffer(), ls, windows.buffer(), windows_offset, [out_h, out_w], out.buffer());
        }
        out
    }
}

/// The creation kernel's scalars for `c`; the caller sets the element count.
fn creation_params(c: Creation) -> creation::CreationParams {
    use creation::CreationParams as P;
    match c {
        Creation::Fill(value) => P { a: value, ..Default::default() },
        Creation::Arange { start, step } => P { a: start, b: step, ..Default::default() },
        Creation::Eye { rows, cols } => P { rows: rows as u32, cols: cols as u32, ..Default::default() },
        Creation::RandUniform { seed, low, high } => {
            let (key0, key1) = random::seed_keys(seed);
            P { key0, key1, a: low, b: high, ..Default::default() }
        }
        Creation::RandNormal { seed, mean, std } => {
            let (key0, key1) = random::seed_keys(seed);
            P { key0, key1, a: mean, b: std, ..Default::default() }
        }
    }
}
