//! The embedding layer: a table of learned vectors looked up by integer index, as
//! `torch.nn.Embedding`. The lookup and its deterministic gradient are
//! [`Tensor::embedding`]'s.

use super::{Forward, Module, Visitor, VisitorMut};
use crate::autograd::no_grad;
use crate::{init, random, DType, Device, Tensor};

/// A lookup table of `num_embeddings` vectors of `embedding_dim` values, as
/// `torch.nn.Embedding`: `forward` takes an `i32` tensor of indices of any shape and
/// returns `indices.shape() + [embedding_dim]`.
///
/// The table is initialised N(0, 1), as PyTorch's. [`Embedding::padding_idx()`] names a row
/// that is zeroed at initialisation and never receives a gradient, so it stays a constant
/// (typically the padding token's) under any optimizer without weight decay. A table made
/// with [`Embedding::from_pretrained`] and `freeze = true` does not require a gradient;
/// since a parameter here is by definition a tensor that does, such a table is listed by
/// `named_buffers` rather than `named_parameters`, under the same name `weight`, so an
/// optimizer built from `parameters()` leaves it alone and checkpoints still hold it.
/// PyTorch's `max_norm`, `scale_grad_by_freq` and `sparse` options are not offered.
///
/// ```
/// use wgrad::nn::{Embedding, Forward, Module};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let emb = Embedding::new(1000, 64, &dev).padding_idx(Some(0));
/// let tokens = Tensor::from_slice(&[5i32, 0, 999, 5, 17, 0], &[2, 3], &dev);
/// let y = emb.forward(&tokens);
/// assert_eq!(y.shape(), &[2, 3, 64]);
/// assert!(y.narrow(0, 0, 1).narrow(1, 1, 1).to_vec::<f32>().iter().all(|&v| v == 0.0));
/// assert_eq!(emb.describe(), "Embedding(1000, 64, padding_idx=0)");
/// ```
pub struct Embedding {
    /// The table, `[num_embeddings, embedding_dim]`.
    pub weight: Tensor,
    /// The row that receives no gradient, in `0..num_embeddings`.
    pub padding_idx: Option<usize>,
    /// Whether setting `padding_idx` zeroes that row: true for a table this layer drew,
    /// false for a pretrained one, whose row PyTorch's `from_pretrained` keeps.
    zero_padding_row: bool,
}

impl Embedding {
    /// A table drawn from this thread's seed stream (see [`crate::manual_seed`]).
    pub fn new(num_embeddings: usize, embedding_dim: usize, device: &Device) -> Embedding {
        Embedding::with_seed(num_embeddings, embedding_dim, random::next_seed(), device)
    }

    /// A table drawn N(0, 1) from an explicit seed.
    pub fn with_seed(num_embeddings: usize, embedding_dim: usize, seed: u64, device: &Device) -> Embedding {
        let weight = init::normal(&[num_embeddings, embedding_dim], 0.0, 1.0, seed, device).requires_grad();
        Embedding { weight, padding_idx: None, zero_padding_row: true }
    }

    /// A layer around an existing `[num_embeddings, embedding_dim]` table, as PyTorch's
    /// `Embedding.from_pretrained(embeddings, freeze)`: with `freeze` the table gets no
    /// gradient. The layer shares the table's storage when the table owns it (contiguous,
    /// starting at its first element), and copies it otherwise, since parameters must own
    /// their storage. A `padding_idx` set afterwards keeps the pretrained values of its row.
    pub fn from_pretrained(weight: Tensor, freeze: bool) -> Embedding {
        assert!(
            weight.rank() == 2,
            "Embedding::from_pretrained: embeddings must be [num_embeddings, embedding_dim], got shape {:?}",
            weight.shape()
        );
        assert_eq!(
            weight.dtype(),
            DType::F32,
            "Embedding::from_pretrained: embeddings must be f32, got {} of shape {:?}",
            weight.dtype(),
            weight.shape()
        );
        let table = if weight.is_contiguous() && weight.layout.offset == 0 {
            weight.detach()
        } else {
            let own = Tensor::zeros(weight.shape(), weight.device());
            own.assign(&weight.detach());
            own
        };
        let weight = if freeze { table } else { table.requires_grad() };
        Embedding { weight, padding_idx: None, zero_padding_row: false }
    }

    /// Sets the row that receives no gradient; negative values count from the end, as in
    /// PyTorch (`-1` is the last row). On a table this layer drew, the row is zeroed, as
    /// PyTorch's constructor does. `None` clears it (the row keeps its values). Panics
    /// unless `-num_embeddings <= padding_idx < num_embeddings`.
    pub fn padding_idx(mut self, padding_idx: Option<isize>) -> Embedding {
        let rows = self.num_embeddings();
        self.padding_idx = padding_idx.map(|p| {
            let n = rows as isize;
            assert!(
                (-n..n).contains(&p),
                "Embedding: padding_idx {p} must be within num_embeddings ({rows}), in {}..{rows}",
                -n
            );
            if p < 0 {
                (p + n) as usize
            } else {
                p as usize
            }
        });
        if let (Some(row), true) = (self.padding_idx, self.zero_padding_row) {
            let dim = self.embedding_dim();
            no_grad(|| self.weight.detach().narrow(0, row, 1).assign(&Tensor::zeros(&[1, dim], self.weight.device())));
        }
        self
    }

    /// Rows of the table.
    pub fn num_embeddings(&self) -> usize {
        self.weight.dim(0)
    }

    /// Length of each vector.
    pub fn embedding_dim(&self) -> usize {
        self.weight.dim(1)
    }
}

impl Module for Embedding {
    fn visit(&self, v: &mut Visitor<'_>) {
        // A table without a gradient (a frozen pretrained one) is saved and loaded, never
        // trained: a buffer. A frozen parameter stays a parameter.
        if self.weight.grad_id().is_some() {
            v.parameter("weight", &self.weight);
        } else {
            v.buffer("weight", &self.weight);
        }
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        if self.weight.grad_id().is_some() {
            v.parameter("weight", &mut self.weight);
        } else {
            v.buffer("weight", &mut self.weight);
        }
    }

    fn set_training(&mut self, _training: bool) {}

    fn is_training(&self) -> bool {
        true
    }

    /// PyTorch's repr: `Embedding(1000, 64, padding_idx=0)`.
    fn describe(&self) -> String {
        let padding = self.padding_idx.map(|p| format!(", padding_idx={p}")).unwrap_or_default();
        format!("Embedding({}, {}{padding})", self.num_embeddings(), self.embedding_dim())
    }
}

impl Forward for Embedding {
    fn forward(&self, indices: &Tensor) -> Tensor {
        self.weight.embedding(indices, self.padding_idx)
    }
}
