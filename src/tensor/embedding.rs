//! Embedding lookup (`torch.nn.functional.embedding`) with a deterministic gradient.
//!
//! The forward pass is a gather of table rows, one invocation per output element. The
//! backward pass is where the design lies: the gradient of the table sums the output
//! gradient rows of every position that looked up the same row, and a lookup repeats rows
//! all the time (padding, frequent words). WGSL has no float atomics, and a scatter with
//! atomics would sum in a different order on every run anyway. So the GPU does what
//! PyTorch's CUDA embedding backward does: it sorts `(index, position)` pairs by index on
//! the device (a bitonic network, its short stages in workgroup memory), finds where each
//! row's run of positions starts (a binary search per row), and lets one invocation per
//! (row, feature column) sum its run of gradient rows in position order. That costs
//! O(N log² N) for the sort of N positions and O((rows + N) · dim) for the sums, writes
//! every gradient element exactly once, and gives the same bits on every run, the bits of
//! the CPU reference, which adds the same values in the same order (see
//! `shaders/embedding.wgsl` and `cpu/embedding.rs`). The gradient is dense, `[rows, dim]`.
//!
//! Out-of-range indices panic on the CPU, naming the index and the table size. On a GPU
//! that check would cost a read-back of the indices and a wait for the device, so by
//! default the kernels check nothing on the host: an index outside the table reads no
//! memory, yields a zero output row and contributes to no gradient row. Turn on
//! [`set_embedding_index_checks`] (or set `WGRAD_CHECK_INDICES=1`) while debugging to get
//! the CPU's panic on the GPU too.

use std::sync::atomic::{AtomicU8, Ordering};

use super::Tensor;
use crate::autograd::FusedGrad;
use crate::autograd::GradOp;
use crate::cpu;
use crate::dtype::DType;
use crate::tensor::MAX_DIMS;

const CHECKS_FROM_ENV: u8 = 0;
const CHECKS_OFF: u8 = 1;
const CHECKS_ON: u8 = 2;

static INDEX_CHECKS: AtomicU8 = AtomicU8::new(CHECKS_FROM_ENV);

/// Whether [`Tensor::embedding`] validates its indices on GPU devices (the CPU always
/// does). Off unless [`set_embedding_index_checks`] turned it on or the environment
/// variable `WGRAD_CHECK_INDICES` is set to anything but `0`.
pub fn embedding_index_checks() -> bool {
    match INDEX_CHECKS.load(Ordering::Relaxed) {
        CHECKS_ON => true,
        CHECKS_OFF => false,
        _ => {
            let on = std::env::var_os("WGRAD_CHECK_INDICES").is_some_and(|v| v != "0");
            INDEX_CHECKS.store(if on { CHECKS_ON } else { CHECKS_OFF }, Ordering::Relaxed);
            on
        }
    }
}

/// Turns GPU index validation in [`Tensor::embedding`] on or off for the whole process.
/// When on, every lookup on a GPU reads its indices back to the host and panics, as the
/// CPU does, on the first one outside the table; that waits for all recorded work, so it
/// is a debugging aid, not a mode to train in.
pub fn set_embedding_index_checks(on: bool) {
    INDEX_CHECKS.store(if on { CHECKS_ON } else { CHECKS_OFF }, Ordering::Relaxed);
}

/// The gradient rule of [`Tensor::embedding`]: inputs are `[weight, indices]`.
#[derive(Clone, Debug)]
pub(crate) struct EmbeddingGrad {
    padding_idx: Option<usize>,
}

impl FusedGrad for EmbeddingGrad {
    fn backward(&self, g: &Tensor, inputs: &[Tensor], _out: &Tensor) -> Vec<Option<Tensor>> {
        let (weight, indices) = (&inputs[0], &inputs[1]);
        let dw =
            weight.is_tracked().then(|| embedding_backward(g, indices, weight.dim(0), weight.dim(1), self.padding_idx));
        vec![dw, None]
    }
}

impl Tensor {
    /// Rows of this `[num_embeddings, embedding_dim]` table picked by the `i32` tensor
    /// `indices` of any shape: the result has shape `indices.shape() + [embedding_dim]`,
    /// as `torch.nn.functional.embedding(indices, self, padding_idx)`. The row
    /// `padding_idx`, when given, receives no gradient (its value is looked up as stored).
    ///
    /// The gradient of the table is dense and deterministic: repeated indices accumulate
    /// in position order, with the same bits on every run and every device (see the
    /// module documentation). Panics on a table that is not 2-D or not `f32`, indices
    /// that are not `i32`, a `padding_idx` outside the table, and, on the CPU (and on a
    /// GPU with [`set_embedding_index_checks`]), an index outside the table; on a GPU
    /// without the checks such an index yields a zero row. PyTorch's `max_norm`,
    /// `scale_grad_by_freq` and `sparse` options are not offered.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let table = Tensor::from_slice(&[0.0f32, 1.0, 10.0, 11.0, 20.0, 21.0], &[3, 2], &dev);
    /// let idx = Tensor::from_slice(&[2i32, 0, 2], &[3], &dev);
    /// let rows = table.embedding(&idx, None);
    /// assert_eq!(rows.shape(), &[3, 2]);
    /// assert_eq!(rows.to_vec::<f32>(), vec![20.0, 21.0, 0.0, 1.0, 20.0, 21.0]);
    /// ```
    pub fn embedding(&self, indices: &Tensor, padding_idx: Option<usize>) -> Tensor {
        assert!(
            self.rank() == 2,
            "embedding: weight must be [num_embeddings, embedding_dim], got shape {:?}",
            self.shape()
        );
        self.expect_dtype(DType::F32, "embedding");
        assert_eq!(
            indices.dtype,
            DType::I32,
            "embedding: indices must be an i32 tensor, got {} of shape {:?}",
            indices.dtype,
            indices.shape()
        );
        self.same_device(indices, "embedding");
        let (rows, dim) = (self.dim(0), self.dim(1));
        if let Some(p) = padding_idx {
            assert!(p < rows, "embedding: padding_idx {p} is out of range for a weight of {rows} rows");
        }
        assert!(
            indices.rank() < MAX_DIMS,
            "embedding: indices of shape {:?} leave no room for the embedding dimension (at most {MAX_DIMS} dimensions)",
            indices.shape()
        );
        assert!(
            i32::try_from(rows).is_ok(),
            "embedding: a weight of {rows} rows has more rows than i32 indices can name"
        );
        let mut shape = indices.shape().to_vec();
        shape.push(dim);
        let out = lookup(&self.detach(), &indices.contiguous(), &shape);
        Tensor::record(out, GradOp::fused(EmbeddingGrad { padding_idx }), &[self, indices])
    }

    /// The positions of this `i32` tensor (in row-major order) grouped by value, as
    /// `(order, offsets)`, both `i32`: `order[offsets[v]..offsets[v + 1]]` lists, in
    /// increasing order, the positions holding `v`, for each `v` in `0..groups`; positions
    /// holding a value outside `0..groups` belong to no group and come last, in increasing
    /// order. `order` has one entry per element and `offsets` has `groups + 1`.
    ///
    /// This is the sort and the segment search behind the gradient of
    /// [`Tensor::embedding`] (on a GPU, a bitonic sort of `(value, position)` pairs), for
    /// code that needs the positions of each value, such as per-row statistics.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let dev = Device::cpu();
    /// let idx = Tensor::from_slice(&[2i32, 0, 2, 7, 0], &[5], &dev);
    /// let (order, offsets) = idx.group_by_index(3);
    /// assert_eq!(order.to_vec::<i32>(), vec![1, 4, 0, 2, 3]); // 0s, no 1s, 2s, then the 7
    /// assert_eq!(offsets.to_vec::<i32>(), vec![0, 2, 2, 4]);
    /// ```
    pub fn group_by_index(&self, groups: usize) -> (Tensor, Tensor) {
        assert_eq!(
            self.dtype,
            DType::I32,
            "group_by_index: needs an i32 tensor, got {} of shape {:?}",
            self.dtype,
            self.shape()
        );
        assert!(
            i32::try_from(groups).is_ok() && i32::try_from(self.numel()).is_ok(),
            "group_by_index: {groups} groups of {} positions do not fit in i32 offsets",
            self.numel()
        );
        let indices = self.contiguous();
        let n = indices.numel();
        let (order, offsets) = indices.storage.group_by_index(indices.layout.offset, n, groups);
        (Tensor::from_storage(order, &[n], DType::I32), Tensor::from_storage(offsets, &[groups + 1], DType::I32))
    }
}

/// The lookup itself on untracked operands; `indices` is contiguous and `shape` is the
/// output shape.
fn lookup(weight: &Tensor, indices: &Tensor, shape: &[usize]) -> Tensor {
    let n = indices.numel();
    let rows = weight.dim(0);
    // The CPU kernel checks every index it reads; a GPU kernel would need a read-back, so
    // the check runs here only when asked for (it then repeats the CPU's).
    if embedding_index_checks() {
        for index in indices.to_vec::<i32>() {
            cpu::embedding::check_index("embedding", index, rows);
        }
    }
    let out = weight.storage.embedding(&weight.layout, (&indices.storage, indices.layout.offset), n);
    Tensor::from_storage(out, shape, DType::F32)
}

/// The dense `[rows, dim]` gradient of the table from the output gradient `g`
/// (`indices.shape() + [dim]`).
fn embedding_backward(g: &Tensor, indices: &Tensor, rows: usize, dim: usize, padding_idx: Option<usize>) -> Tensor {
    let n = indices.numel();
    if n == 0 || rows * dim == 0 {
        return Tensor::zeros(&[rows, dim], g.device());
    }
    let g = g.detach().contiguous();
    let indices = indices.contiguous();
    let at = (&*indices.storage, indices.layout.offset);
    let dw = g.storage.embedding_backward(g.layout.offset, at, n, [rows, dim], padding_idx);
    Tensor::from_storage(dw, &[rows, dim], DType::F32)
}
