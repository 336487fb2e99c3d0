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

// The layer families.
use std::sync::RwLock;

use super::{batch_norm, layer_norm};
use super::{embedding, loss, optim, pool};
use crate::backend::{At, CrossEntropyOperands, OptimSegment};
use crate::op::loss::{CrossEntropyRows, Reduction};
use crate::op::norm::{
    BnDims, LnDims, BATCH_NORM_HAS_BIAS, BATCH_NORM_HAS_WEIGHT, BATCH_NORM_TRAINING, GRAD_ROWS, STATS_ROWS,
};
use crate::op::optim::OptimScalars;
use crate::op::pool::PoolGeometry;
use crate::op::{BatchNormOp, LayerNormOp, OptimOp, PoolOp};

// Convolution.
use super::conv::{self, Groups};
use crate::op::conv::{ColumnLayout, ConvAlgorithm, ConvChannels, ConvGeometry};

// Recurrent layers.
use super::rnn::{self, BackwardInputs, ForwardInputs};
use crate::backend::{LstmLayerBackward, LstmLayerForward, RnnCellOperands, View};
use crate::op::rnn::{CellStep, RNN_RELU};
use crate::op::RnnOp;

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

    /// One pass, `g * mask(x > 0)` per element: the composed form's arithmetic.
    fn relu_backward(&self, (g, lg): (&CpuData, &Layout), (x, lx): (&CpuData, &Layout)) -> Option<CpuData> {
        Some(CpuData::F32(elementwise::relu_backward(g.as_f32(), lg, x.as_f32(), lx)))
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

    // ---- pooling, layer and batch norm, embedding, cross-entropy, optimizer step ----

    type Shared = RwLock<CpuData>;

    fn pool(
        &self,
        op: PoolOp,
        g: &PoolGeometry,
        src: At<CpuData>,
        indices: Option<At<CpuData>>,
    ) -> (CpuData, Option<CpuData>) {
        let (in_len, out_len) = (g.planes * g.in_plane(), g.planes * g.out_plane());
        // Forward ops read the input planes, backward ones the output gradient.
        let s = |len| f32s(src, len);
        let (values, idx) = match op {
            PoolOp::MaxPool2d => {
                let (v, i) = pool::max_pool2d(s(in_len), g);
                (v, Some(i))
            }
            PoolOp::MaxPool2dBackward => {
                let i = i32s(indices.expect("max_pool2d_backward needs the forward's indices"), out_len);
                (pool::max_pool2d_backward(s(out_len), i, g), None)
            }
            PoolOp::AvgPool2d => (pool::avg_pool2d(s(in_len), g), None),
            PoolOp::AvgPool2dBackward => (pool::avg_pool2d_backward(s(out_len), g), None),
            PoolOp::AdaptiveAvgPool2d => (pool::adaptive_avg_pool2d(s(in_len), g), None),
            PoolOp::AdaptiveAvgPool2dBackward => (pool::adaptive_avg_pool2d_backward(s(out_len), g), None),
        };
        (CpuData::F32(values), idx.map(CpuData::I32))
    }

    fn layer_norm(
        &self,
        op: LayerNormOp,
        d: LnDims,
        eps: f32,
        chunk_rows: usize,
        operands: [Option<At<CpuData>>; 4],
    ) -> (CpuData, Option<CpuData>) {
        let slice = |k: usize, len: usize| operands[k].map(|x| f32s(x, len));
        let (numel, stats_len) = (d.numel(), 2 * d.rows);
        match op {
            LayerNormOp::Forward => {
                let x = slice(0, numel).expect("x");
                let (y, stats) = layer_norm::forward(x, d, slice(2, d.len), slice(3, d.len), eps);
                (CpuData::F32(y), Some(CpuData::F32(stats)))
            }
            LayerNormOp::Backward => {
                let (x, dy) = (slice(0, numel).expect("x"), slice(1, numel).expect("dy"));
                let stats = slice(3, stats_len).expect("statistics");
                (CpuData::F32(layer_norm::backward(x, dy, d, slice(2, d.len), stats)), None)
            }
            LayerNormOp::ParamBackward => {
                let (x, dy) = (slice(0, numel).expect("x"), slice(1, numel).expect("dy"));
                let stats = slice(3, stats_len).expect("statistics");
                (CpuData::F32(layer_norm::param_backward(x, dy, d, stats, chunk_rows)), None)
            }
        }
    }

    fn batch_norm(&self, op: BatchNormOp, d: BnDims, flags: u32, eps: f32, inputs: [At<CpuData>; 4]) -> CpuData {
        let slice = |k: usize, len: usize| f32s(inputs[k], len);
        let has = |bit: u32| flags & bit != 0;
        let (c, numel) = (d.c, d.numel());
        CpuData::F32(match op {
            BatchNormOp::Stats => {
                batch_norm::stats(slice(0, numel), d, has(BATCH_NORM_HAS_WEIGHT).then(|| slice(1, c)), eps)
            }
            BatchNormOp::Apply => batch_norm::apply(
                slice(0, numel),
                d,
                slice(1, c),
                slice(2, c),
                has(BATCH_NORM_HAS_BIAS).then(|| slice(3, c)),
            ),
            BatchNormOp::BackwardReduce => batch_norm::backward_reduce(
                slice(0, numel),
                slice(1, numel),
                d,
                slice(2, STATS_ROWS * c),
                has(BATCH_NORM_TRAINING),
            ),
            BatchNormOp::BackwardApply => {
                batch_norm::backward_apply(slice(0, numel), slice(1, numel), d, slice(2, GRAD_ROWS * c))
            }
        })
    }

    fn embedding(&self, weight: &CpuData, lw: &Layout, indices: At<CpuData>, n: usize) -> CpuData {
        CpuData::F32(embedding::embedding(weight.as_f32(), lw, i32s(indices, n)))
    }

    fn embedding_backward(
        &self,
        grad: At<CpuData>,
        indices: At<CpuData>,
        n: usize,
        [rows, dim]: [usize; 2],
        padding_idx: Option<usize>,
    ) -> CpuData {
        let (grad, indices) = (f32s(grad, n * dim), i32s(indices, n));
        CpuData::F32(embedding::embedding_backward(grad, indices, rows, dim, padding_idx))
    }

    fn group_by_index(&self, indices: At<CpuData>, n: usize, groups: usize) -> (CpuData, CpuData) {
        let (order, offsets) = embedding::group_by_index(i32s(indices, n), groups);
        (CpuData::I32(order), CpuData::I32(offsets))
    }

    fn cross_entropy_forward(
        &self,
        op: &str,
        spec: &CrossEntropyRows,
        logits: At<CpuData>,
        targets: At<CpuData>,
        weight: Option<At<CpuData>>,
    ) -> CpuData {
        let (rows, classes) = (spec.rows, spec.classes);
        let (logits, targets) = (f32s(logits, rows * classes), i32s(targets, rows));
        loss::check_targets(op, targets, classes, spec.ignore_index);
        let spec = CrossEntropyRows { weight: weight.map(|w| f32s(w, classes)), ..*spec };
        CpuData::F32(loss::cross_entropy_forward(&spec, logits, targets))
    }

    fn cross_entropy_backward(
        &self,
        spec: &CrossEntropyRows,
        (logits, targets, weight): CrossEntropyOperands<CpuData>,
        aux: At<CpuData>,
        grad: At<CpuData>,
    ) -> CpuData {
        let (rows, classes) = (spec.rows, spec.classes);
        // The incoming gradient is one value per row without reduction, else one value.
        let grad_len = if spec.reduction == Reduction::None { rows } else { 1 };
        let (logits, targets) = (f32s(logits, rows * classes), i32s(targets, rows));
        let (aux, grad) = (f32s(aux, rows + 1), f32s(grad, grad_len));
        let spec = CrossEntropyRows { weight: weight.map(|w| f32s(w, classes)), ..*spec };
        CpuData::F32(loss::cross_entropy_backward(&spec, logits, targets, aux, grad))
    }

    fn optim_step(
        &self,
        op: OptimOp,
        s: &OptimScalars,
        used: [bool; 3],
        segments: &[OptimSegment<RwLock<CpuData>>],
        arena: &RwLock<CpuData>,
    ) {
        let mut arena = arena.write().unwrap();
        let arena = f32_mut(&mut arena);
        let blocks = used.iter().filter(|&&u| u).count();
        for seg in segments {
            let n = seg.numel;
            let g = seg.grad.read().unwrap();
            let g = &g.as_f32()[seg.grad_offset..seg.grad_offset + n];
            let mut p = seg.param.write().unwrap();
            // The parameter's own elements: its storage may be longer (a prefix view).
            let p = &mut f32_mut(&mut p)[..n];
            let block = &mut arena[seg.state_offset..seg.state_offset + blocks * n];
            let mut chunks = block.chunks_mut(n);
            let state = used.map(|u| if u { chunks.next().expect("one chunk per state") } else { Default::default() });
            optim::update(op, s, g, p, state);
        }
    }

    // ---- convolution and its two gradients ----

    fn im2col(&self, x: &CpuData, lx: &Layout, g: &ConvGeometry, layout: ColumnLayout) -> CpuData {
        CpuData::F32(conv::im2col(x.as_f32(), lx, g, layout))
    }

    fn col2im(&self, (cols, offset): At<CpuData>, layout: ColumnLayout, g: &ConvGeometry) -> CpuData {
        CpuData::F32(conv::col2im(cols.as_f32(), offset, layout, g))
    }

    /// Always fused: im2col into a per-thread buffer and a GEMM onto the bias-prefilled
    /// output, image by image, whatever the algorithm.
    fn conv2d(
        &self,
        (x, lx): (&CpuData, &Layout),
        (w, w_at): At<CpuData>,
        bias: Option<At<CpuData>>,
        g: &ConvGeometry,
        ch: ConvChannels,
        _algorithm: ConvAlgorithm,
    ) -> Option<CpuData> {
        let gr = Groups::new(g, ch.groups, ch.out_channels);
        let bias = bias.map(|(b, at)| &b.as_f32()[at..]);
        Some(CpuData::F32(conv::conv2d(x.as_f32(), lx, &w.as_f32()[w_at..], bias, g, gr)))
    }

    /// The fused per-image passes of `cpu::conv`, which need no column matrix of the
    /// whole batch.
    fn conv2d_backward(
        &self,
        (gy, gy_at): At<CpuData>,
        (x, lx): (&CpuData, &Layout),
        (w, w_at): At<CpuData>,
        g: &ConvGeometry,
        ch: ConvChannels,
        [want_dx, want_dw]: [bool; 2],
    ) -> Option<[Option<CpuData>; 2]> {
        let gr = Groups::new(g, ch.groups, ch.out_channels);
        let gy = &gy.as_f32()[gy_at..];
        let dx = want_dx.then(|| CpuData::F32(conv::conv2d_input_grad(gy, &w.as_f32()[w_at..], g, gr)));
        let dw = want_dw.then(|| CpuData::F32(conv::conv2d_weight_grad(x.as_f32(), lx, gy, g, gr)));
        Some([dx, dw])
    }

    // ---- recurrent step and whole layer ----

    fn rnn_cell(&self, op: RnnOp, step: &CellStep, flags: u32, x: RnnCellOperands<CpuData, RwLock<CpuData>>) {
        let [a, b, c, d] = x.inputs.map(|v| v.map(f32_view));
        let lengths = x.lengths.map(i32_view);
        let [out0, out1] = x.outputs;
        let (out0, relu) = (out0.expect("every cell writes its first output"), flags & RNN_RELU != 0);
        match op {
            RnnOp::LstmCellForward | RnnOp::GruCellForward | RnnOp::RnnCellForward => {
                let (xw, hw) = (a.expect("xw"), b.expect("hw"));
                let inputs = ForwardInputs { xw, hw, bias: c.zip(d), lengths };
                with_view_mut(out0, |state| match op {
                    RnnOp::LstmCellForward => {
                        with_view_mut(out1.expect("workspace"), |ws| rnn::lstm_cell_forward(step, &inputs, state, ws))
                    }
                    RnnOp::GruCellForward => {
                        with_view_mut(out1.expect("workspace"), |ws| rnn::gru_cell_forward(step, &inputs, state, ws))
                    }
                    _ => rnn::rnn_cell_forward(step, &inputs, relu, state),
                });
            }
            RnnOp::LstmCellBackward | RnnOp::GruCellBackward | RnnOp::RnnCellBackward => {
                let (d_state, dhw, state) = (a.expect("d_state"), b.expect("dhw"), d.expect("state"));
                // The Elman cell keeps no workspace and reads none.
                let inputs = BackwardInputs { d_state, dhw, ws: c.unwrap_or(&[]), state, lengths };
                with_view_mut(out0, |dgates| {
                    with_view_mut(out1.expect("carry"), |carry| match op {
                        RnnOp::LstmCellBackward => rnn::lstm_cell_backward(step, &inputs, dgates, carry),
                        RnnOp::GruCellBackward => rnn::gru_cell_backward(step, &inputs, dgates, carry),
                        _ => rnn::rnn_cell_backward(step, &inputs, relu, dgates, carry),
                    })
                });
            }
            RnnOp::LstmSequenceForward | RnnOp::LstmSequenceBackward => {
                panic!("{}: a whole-layer pass, not a cell step (see `lstm_layer_forward`)", op.name())
            }
        }
    }

    /// The whole sequence in one pass, the batch split across threads (see
    /// `rnn::forward_by_sequence` for when).
    fn lstm_layer_forward(&self, x: LstmLayerForward<CpuData, RwLock<CpuData>>) -> bool {
        rnn::forward_by_sequence(x.steps[0].batch) && self.whole_lstm_layer_forward(x)
    }

    /// The whole-sequence pass skips the workspace's stores when its view is empty.
    fn lstm_forward_without_workspace(&self) -> bool {
        true
    }

    /// Back through the whole sequence in one pass, the batch split across threads, where
    /// the batch is large enough to split.
    fn lstm_layer_backward(&self, x: LstmLayerBackward<CpuData, RwLock<CpuData>>) -> bool {
        rnn::splits_by_sequence(x.steps[0].batch) && {
            self.whole_lstm_layer_backward(x);
            true
        }
    }
}

impl CpuBackend {
    /// The view `ls` of `src` as new contiguous storage, written into fresh memory without
    /// zeroing it first; `None` for `f16`, whose copy goes through [`Backend::copy_into`].
    pub(crate) fn copy_new(&self, dtype: DType, src: &CpuData, ls: &Layout, op: &str) -> Option<CpuData> {
        match dtype {
            DType::F32 => Some(CpuData::F32(elementwise::gather(src.as_f32(), ls, op))),
            DType::I32 => Some(CpuData::I32(elementwise::gather(src.as_i32(), ls, op))),
            DType::F16 => None,
        }
    }

    /// [`Backend::lstm_layer_forward`] whatever the batch (the reference a GPU's
    /// whole-sequence pass is checked against in shadow mode); `false`, having done
    /// nothing, when the input projection is left to it and it cannot fuse it.
    pub(crate) fn whole_lstm_layer_forward(&self, x: LstmLayerForward<CpuData, RwLock<CpuData>>) -> bool {
        let projection = match x.xw {
            Some(xw) => rnn::Projection::Computed(f32_view(xw)),
            None if rnn::fused_projection() => {
                let input = x.w_ih.1.shape[1];
                rnn::Projection::Fused { x: f32_view(x.x), w_ih: f32_view(x.w_ih), input }
            }
            None => return false,
        };
        let inputs = rnn::SequenceInputs {
            projection,
            w_hh_t: f32_view(x.w_hh_t),
            bias: x.bias.map(|(a, b)| (f32_view(a), f32_view(b))),
            lengths: x.lengths.map(i32_view),
        };
        with_view_mut(x.state, |state| with_view_mut(x.ws, |ws| rnn::lstm_layer_forward(x.steps, &inputs, state, ws)));
        true
    }

    /// [`Backend::lstm_layer_backward`] whatever the batch (see
    /// [`CpuBackend::whole_lstm_layer_forward`]).
    pub(crate) fn whole_lstm_layer_backward(&self, x: LstmLayerBackward<CpuData, RwLock<CpuData>>) {
        let inputs = rnn::SequenceBackwardInputs {
            d_state: f32_view(x.d_state),
            ws: f32_view(x.ws),
            state: f32_view(x.state),
            w_hh: f32_view(x.w_hh),
            lengths: x.lengths.map(i32_view),
        };
        with_view_mut(x.dgates, |dg| with_view_mut(x.carry, |c| rnn::lstm_layer_backward(x.steps, &inputs, dg, c)));
    }
}

// ---- helpers of the layer families ----

/// `len` f32 elements of `x` from its offset.
fn f32s<'a>((x, at): At<'a, CpuData>, len: usize) -> &'a [f32] {
    &x.as_f32()[at..at + len]
}

/// `len` i32 elements of `x` from its offset.
fn i32s<'a>((x, at): At<'a, CpuData>, len: usize) -> &'a [i32] {
    &x.as_i32()[at..at + len]
}

fn f32_mut(d: &mut CpuData) -> &mut [f32] {
    match d {
        CpuData::F32(v) => v,
        other => panic!("optimizer: expected f32 storage, found {}", other.dtype()),
    }
}

/// The f32 elements of a contiguous view.
fn f32_view<'a>((x, l): View<'a, CpuData>) -> &'a [f32] {
    &x.as_f32()[l.offset..l.offset + l.numel()]
}

/// The i32 elements of a contiguous view.
fn i32_view<'a>((x, l): View<'a, CpuData>) -> &'a [i32] {
    &x.as_i32()[l.offset..l.offset + l.numel()]
}

/// Runs `f` on the f32 elements of a contiguous view, mutably, under the storage's lock.
fn with_view_mut<R>((lock, l): View<RwLock<CpuData>>, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut data = lock.write().unwrap();
    f(&mut f32_mut(&mut data)[l.offset..l.offset + l.numel()])
}
