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

// The layer families.
use super::kernels::layer_norm::{self, LAYER_NORM_HAS_BIAS, LAYER_NORM_HAS_WEIGHT};
use super::kernels::{batch_norm, embedding, loss, optim, pool};
use crate::backend::{At, CrossEntropyOperands, OptimSegment};
use crate::op::loss::CrossEntropyRows;
use crate::op::norm::{BnDims, LnDims, GRAD_ROWS, STATS_ROWS};
use crate::op::optim::OptimScalars;
use crate::op::pool::PoolGeometry;
use crate::op::{BatchNormOp, LayerNormOp, OptimOp, PoolOp};

// Convolution.
use super::kernels::conv;
use crate::op::conv::{ColumnLayout, ConvAlgorithm, ConvChannels, ConvGeometry};

// Recurrent layers.
use super::kernels::lstm_sequence::{lstm_sequence, lstm_sequence_fits};
use super::kernels::rnn::{self, RNN_HAS_BIAS, RNN_HAS_LENGTHS};
use crate::backend::{LstmLayerBackward, LstmLayerForward, RnnCellOperands, View};
use crate::op::rnn::CellStep;
use crate::op::RnnOp;

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

    // ---- pooling, layer and batch norm, embedding, cross-entropy, optimizer step ----

    type Shared = GpuBuffer;

    fn pool(
        &self,
        op: PoolOp,
        g: &PoolGeometry,
        (src, src_offset): At<GpuBuffer>,
        indices: Option<At<GpuBuffer>>,
    ) -> (GpuBuffer, Option<GpuBuffer>) {
        let backward =
            matches!(op, PoolOp::MaxPool2dBackward | PoolOp::AvgPool2dBackward | PoolOp::AdaptiveAvgPool2dBackward);
        let numel = g.planes * if backward { g.in_plane() } else { g.out_plane() };
        let out = f32_output(self, numel);
        let out_index = (op == PoolOp::MaxPool2d).then(|| GpuBuffer::new(self, (numel * 4) as u64));
        // A binding the op does not read takes the source.
        let (idx_buf, idx_offset) = indices.map_or((src.buffer(), 0), |(i, at)| (i.buffer(), at));
        if numel > 0 {
            let index_out = out_index.as_ref().map_or(self.unused_binding(0), GpuBuffer::buffer);
            pool::pool(self, op, g, src.buffer(), src_offset, idx_buf, idx_offset, out.buffer(), index_out);
        }
        (out, out_index)
    }

    fn layer_norm(
        &self,
        op: LayerNormOp,
        d: LnDims,
        eps: f32,
        chunk_rows: usize,
        operands: [Option<At<GpuBuffer>>; 4],
    ) -> (GpuBuffer, Option<GpuBuffer>) {
        let mut flags = 0;
        if operands[2].is_some() {
            flags |= LAYER_NORM_HAS_WEIGHT;
        }
        if op == LayerNormOp::Forward && operands[3].is_some() {
            flags |= LAYER_NORM_HAS_BIAS;
        }
        let numel = match op {
            LayerNormOp::Forward | LayerNormOp::Backward => d.rows * d.len,
            LayerNormOp::ParamBackward => d.chunks(chunk_rows) * 2 * d.len,
        };
        let out = f32_output(self, numel);
        // Only the forward pass writes the second output, the statistics.
        let out2 = (op == LayerNormOp::Forward).then(|| f32_output(self, 2 * d.rows));
        // An absent operand's binding takes `x`, which every kernel reads.
        let x = operands[0].expect("every layer_norm kernel reads x");
        let bindings = operands.map(|t| {
            let (t, at) = t.unwrap_or(x);
            (t.buffer(), at)
        });
        let out2_binding = out2.as_ref().map_or(self.unused_binding(0), GpuBuffer::buffer);
        layer_norm::layer_norm(self, op, [d.rows, d.len], flags, eps, chunk_rows, bindings, out.buffer(), out2_binding);
        (out, out2)
    }

    fn batch_norm(&self, op: BatchNormOp, d: BnDims, flags: u32, eps: f32, inputs: [At<GpuBuffer>; 4]) -> GpuBuffer {
        let numel = match op {
            BatchNormOp::Stats => STATS_ROWS * d.c,
            BatchNormOp::BackwardReduce => GRAD_ROWS * d.c,
            BatchNormOp::Apply | BatchNormOp::BackwardApply => d.numel(),
        };
        let out = f32_output(self, numel);
        let bindings = inputs.map(|(t, at)| (t.buffer(), at));
        batch_norm::batch_norm(self, op, [d.n, d.c, d.l], flags, eps, bindings, out.buffer());
        out
    }

    fn embedding(&self, weight: &GpuBuffer, lw: &Layout, (indices, at): At<GpuBuffer>, n: usize) -> GpuBuffer {
        let numel = n * lw.shape[1];
        let out = f32_output(self, numel);
        if numel > 0 {
            embedding::embedding(self, weight.buffer(), lw, indices.buffer(), at, n, out.buffer());
        }
        out
    }

    fn embedding_backward(
        &self,
        (grad, grad_offset): At<GpuBuffer>,
        (indices, at): At<GpuBuffer>,
        n: usize,
        [rows, dim]: [usize; 2],
        padding_idx: Option<usize>,
    ) -> GpuBuffer {
        let work = GpuBuffer::new(self, (embedding::embedding_work_words(n, rows) * 4) as u64);
        embedding::embedding_groups(self, indices.buffer(), at, n, rows, work.buffer());
        let out = f32_output(self, rows * dim);
        let grad = grad.buffer();
        embedding::embedding_backward(self, grad, grad_offset, work.buffer(), n, rows, dim, padding_idx, out.buffer());
        out
    }

    fn group_by_index(&self, (indices, at): At<GpuBuffer>, n: usize, groups: usize) -> (GpuBuffer, GpuBuffer) {
        let padded = embedding::embedding_sort_len(n);
        let words = embedding::embedding_work_words(n, groups);
        let work = GpuBuffer::new(self, (words * 4) as u64);
        embedding::embedding_groups(self, indices.buffer(), at, n, groups, work.buffer());
        // The positions are every second word of the sorted pairs; the row starts follow
        // the pairs. Both are copied out so the work buffer can go back.
        let copy_out = |layout: Layout| {
            let out = GpuBuffer::new(self, (layout.numel() * 4) as u64);
            if layout.numel() > 0 {
                elementwise::copy(self, work.buffer(), &layout, out.buffer(), &Layout::contiguous(&layout.shape));
            }
            out
        };
        let order = copy_out(Layout { shape: vec![n], strides: vec![2], offset: 1 });
        let offsets = copy_out(Layout { shape: vec![groups + 1], strides: vec![1], offset: 2 * padded });
        (order, offsets)
    }

    fn cross_entropy_forward(
        &self,
        _op: &str,
        spec: &CrossEntropyRows,
        logits: At<GpuBuffer>,
        targets: At<GpuBuffer>,
        weight: Option<At<GpuBuffer>>,
    ) -> GpuBuffer {
        let out = f32_output(self, spec.forward_len());
        loss::cross_entropy_forward(self, &loss_operands(spec, logits, targets, weight), out.buffer());
        out
    }

    fn cross_entropy_backward(
        &self,
        spec: &CrossEntropyRows,
        (logits, targets, weight): CrossEntropyOperands<GpuBuffer>,
        (aux, aux_at): At<GpuBuffer>,
        (grad, grad_at): At<GpuBuffer>,
    ) -> GpuBuffer {
        let out = f32_output(self, spec.rows * spec.classes);
        let operands = loss_operands(spec, logits, targets, weight);
        loss::cross_entropy_backward(self, &operands, (aux.buffer(), aux_at), (grad.buffer(), grad_at), out.buffer());
        out
    }

    fn optim_step(
        &self,
        op: OptimOp,
        s: &OptimScalars,
        used: [bool; 3],
        segments: &[OptimSegment<GpuBuffer>],
        arena: &GpuBuffer,
    ) {
        // Where each state vector starts within a parameter's state block.
        let mut state_pos = [0; 3];
        let mut count = 0;
        for (k, &u) in used.iter().enumerate() {
            state_pos[k] = count;
            count += u as u32;
        }
        let segments: Vec<optim::OptimSegment> = segments
            .iter()
            .map(|seg| optim::OptimSegment {
                param: seg.param.buffer(),
                grad: seg.grad.buffer(),
                grad_offset: seg.grad_offset,
                state_offset: seg.state_offset,
                numel: seg.numel,
            })
            .collect();
        optim::optim(self, op, s, state_pos, &segments, arena.buffer());
    }

    // ---- convolution and its two gradients ----

    fn im2col(&self, x: &GpuBuffer, lx: &Layout, g: &ConvGeometry, layout: ColumnLayout) -> GpuBuffer {
        let numel = g.batch * g.rows() * g.positions();
        let out = f32_output(self, numel);
        if numel > 0 {
            conv::im2col(self, x.buffer(), lx, g, layout, out.buffer());
        }
        out
    }

    fn col2im(&self, (cols, offset): At<GpuBuffer>, layout: ColumnLayout, g: &ConvGeometry) -> GpuBuffer {
        let numel = g.batch * g.channels * g.height * g.width;
        let out = f32_output(self, numel);
        if numel > 0 {
            conv::col2im(self, cols.buffer(), offset, layout, g, out.buffer());
        }
        out
    }

    /// The direct kernel when `algorithm` picks it and the weights and bias start their
    /// buffers (the kernel reads them from element 0); else the composed im2col path.
    fn conv2d(
        &self,
        (x, lx): (&GpuBuffer, &Layout),
        (w, w_at): At<GpuBuffer>,
        bias: Option<At<GpuBuffer>>,
        g: &ConvGeometry,
        ch: ConvChannels,
        algorithm: ConvAlgorithm,
    ) -> Option<GpuBuffer> {
        if !algorithm.is_direct_for(g) || w_at != 0 || bias.is_some_and(|(_, at)| at != 0) {
            return None;
        }
        let numel = g.batch * ch.out_channels * g.positions();
        let out = f32_output(self, numel);
        if numel > 0 {
            let bias = bias.map(|(b, _)| b.buffer());
            let (x, w) = (x.buffer(), w.buffer());
            conv::conv2d_direct(self, x, lx, g, w, ch.out_channels, ch.groups, bias, out.buffer());
        }
        Some(out)
    }

    // ---- recurrent step and whole layer ----

    fn rnn_cell(&self, op: RnnOp, step: &CellStep, flags: u32, x: RnnCellOperands<GpuBuffer, GpuBuffer>) {
        let first = at(x.inputs[0].expect("every cell reads its first input"));
        // A read binding the kernel skips repeats another operand: the first input, or
        // in a backward step the state in place of the Elman cell's absent workspace.
        let fallback = match op {
            RnnOp::LstmCellBackward | RnnOp::GruCellBackward | RnnOp::RnnCellBackward => x.inputs[3].map_or(first, at),
            _ => first,
        };
        let inputs = x.inputs.map(|v| v.map_or(fallback, at));
        let lengths = x.lengths.map_or(fallback, at);
        // A read-write binding the Elman forward kernel never touches takes a scratch buffer.
        let [out0, out1] = x.outputs.map(|v| v.map(|(b, _)| b.buffer()));
        let outputs = [out0.expect("every cell writes its first output"), out1.unwrap_or(self.unused_binding(0))];
        rnn::rnn_cell(self, op, step, flags, inputs, lengths, outputs);
    }

    /// The whole sequence in one dispatch (one workgroup per sequence, looping over the
    /// steps) where the hidden size fits one workgroup: two dispatches per step fewer.
    fn lstm_layer_forward(&self, x: LstmLayerForward<GpuBuffer, GpuBuffer>) -> bool {
        let Some(direction) = self.whole_sequence_lstm().then(|| lstm_sequence_fits(self, x.steps)).flatten() else {
            return false;
        };
        let Some(xw) = x.xw.map(at) else { return false };
        let (b_ih, b_hh) = x.bias.map_or((xw, xw), |(a, b)| (at(a), at(b)));
        let lengths = x.lengths.map_or(xw, at);
        let flags = direction
            | if x.bias.is_some() { RNN_HAS_BIAS } else { 0 }
            | if x.lengths.is_some() { RNN_HAS_LENGTHS } else { 0 };
        let inputs = [xw, at(x.w_hh_t), b_ih, b_hh];
        let outputs = [at(x.state), at(x.ws)];
        lstm_sequence(self, RnnOp::LstmSequenceForward, &x.steps[0], flags, inputs, lengths, outputs);
        true
    }

    /// Back through the whole sequence in one dispatch, as [`Backend::lstm_layer_forward`].
    fn lstm_layer_backward(&self, x: LstmLayerBackward<GpuBuffer, GpuBuffer>) -> bool {
        let Some(direction) = self.whole_sequence_lstm().then(|| lstm_sequence_fits(self, x.steps)).flatten() else {
            return false;
        };
        let d_state = at(x.d_state);
        let lengths = x.lengths.map_or(d_state, at);
        let flags = direction | if x.lengths.is_some() { RNN_HAS_LENGTHS } else { 0 };
        let inputs = [d_state, at(x.w_hh), at(x.ws), at(x.state)];
        let outputs = [at(x.dgates), at(x.carry)];
        lstm_sequence(self, RnnOp::LstmSequenceBackward, &x.steps[0], flags, inputs, lengths, outputs);
        true
    }
}

// ---- helpers of the layer families ----

/// The cross-entropy kernels' view of contiguous logits, targets and weights.
fn loss_operands<'a>(
    spec: &CrossEntropyRows,
    (logits, logits_at): At<'a, GpuBuffer>,
    (targets, targets_at): At<'a, GpuBuffer>,
    weight: Option<At<'a, GpuBuffer>>,
) -> loss::CrossEntropyOperands<'a> {
    loss::CrossEntropyOperands {
        rows: spec.rows,
        classes: spec.classes,
        logits: (logits.buffer(), logits_at),
        targets: (targets.buffer(), targets_at),
        weight: weight.map(|(w, at)| (w.buffer(), at)),
        ignore_index: spec.ignore_index,
        reduction: spec.reduction,
    }
}

/// A view's buffer and the element it starts at.
fn at<'a>((b, l): View<'a, GpuBuffer>) -> (&'a wgpu::Buffer, usize) {
    (b.buffer(), l.offset)
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
