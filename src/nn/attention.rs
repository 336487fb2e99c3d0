//! Multi-head attention, as `torch.nn.MultiheadAttention` with `batch_first=True`.
//!
//! The heads are views: the projected `[N, L, E]` tensors are reshaped to
//! `[N, L, H, E/H]` and permuted to `[N, H, L, E/H]` without a copy, and the batched
//! matmuls of [`Tensor::scaled_dot_product_attention`]'s composition read them through
//! their strides. Only the merge of the heads back to `[N, L, E]` copies.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{python_float, Forward, Linear, Module, Visitor, VisitorMut};
use crate::tensor::attention_with_weights;
use crate::{init, random, AttnMask, DType, Device, Tensor};

/// Multi-head attention, as
/// `torch.nn.MultiheadAttention(embed_dim, num_heads, dropout=0.0, bias=True,
/// batch_first=True)`: the query, key and value are projected by `in_proj_weight`
/// (`[3E, E]`, the three projections stacked in that order) and `in_proj_bias` (`[3E]`),
/// split into `num_heads` heads of `E / num_heads` features, attended with scaled
/// dot-product attention per head, merged and projected by `out_proj`.
///
/// Inputs are batch-first, `[N, L, E]` (or unbatched `[L, E]`); the key and value must
/// have `embed_dim` features too (PyTorch's `kdim` and `vdim` equal to `embed_dim`), and
/// there are no `add_bias_kv` or `add_zero_attn` options. Parameters are named and
/// initialised as PyTorch's: `in_proj_weight` Xavier-uniform, `in_proj_bias` zeros,
/// `out_proj.weight` uniform in `[-1/sqrt(E), 1/sqrt(E)]` (the default of a linear layer)
/// and `out_proj.bias` zeros.
///
/// [`MultiheadAttention::attend`] is PyTorch's `forward`, with its arguments;
/// [`Forward::forward`] is the self-attention of `x` without masks, so the layer also fits
/// in a [`Sequential`](super::Sequential).
///
/// ```
/// use wgrad::nn::{Forward, Module, MultiheadAttention};
/// use wgrad::{AttnMask, Device, Tensor};
/// let dev = Device::cpu();
/// let mha = MultiheadAttention::new(8, 2, &dev);
/// let x = Tensor::randn(&[3, 5, 8], 0, &dev);
/// let (y, weights) = mha.attend(&x, &x, &x, None, true, Some(AttnMask::Causal), true);
/// assert_eq!(y.shape(), &[3, 5, 8]);
/// assert_eq!(weights.unwrap().shape(), &[3, 5, 5]);
/// assert_eq!(mha.forward(&x).shape(), &[3, 5, 8]);
/// let names: Vec<String> = mha.named_parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]);
/// ```
pub struct MultiheadAttention {
    embed_dim: usize,
    num_heads: usize,
    dropout: f32,
    device: Device,
    in_proj_weight: Tensor,
    in_proj_bias: Option<Tensor>,
    out_proj: Linear,
    /// Seed of the attention-weight dropout; with the call counter it gives every
    /// training forward its own mask, reproducibly.
    seed: u64,
    calls: AtomicU64,
    training: bool,
}

impl MultiheadAttention {
    /// A layer of `num_heads` heads over `embed_dim` features on `device`, with biases and
    /// no dropout, initialised from this thread's seed stream (see [`crate::manual_seed`]).
    /// Panics unless `embed_dim` is a positive multiple of `num_heads`.
    pub fn new(embed_dim: usize, num_heads: usize, device: &Device) -> MultiheadAttention {
        check_heads(embed_dim, num_heads);
        let e = embed_dim;
        let in_proj_weight = init::xavier_uniform(&[3 * e, e], 1.0, random::next_seed(), device).requires_grad();
        let bound = 1.0 / (e as f32).sqrt();
        let out_weight = init::uniform(&[e, e], -bound, bound, random::next_seed(), device).requires_grad();
        MultiheadAttention {
            embed_dim,
            num_heads,
            dropout: 0.0,
            device: device.clone(),
            in_proj_weight,
            in_proj_bias: Some(Tensor::zeros(&[3 * e], device).requires_grad()),
            out_proj: Linear::from_parameters(out_weight, Some(Tensor::zeros(&[e], device).requires_grad())),
            seed: random::next_seed(),
            calls: AtomicU64::new(0),
            training: true,
        }
    }

    /// A layer with the given parameters (which should require gradients): `in_proj_weight`
    /// `[3E, E]`, `in_proj_bias` `[3E]`, `out_proj_weight` `[E, E]` and `out_proj_bias`
    /// `[E]`, in PyTorch's layout. Panics when the shapes disagree or `E` is not a multiple
    /// of `num_heads`.
    pub fn from_parameters(
        num_heads: usize,
        in_proj_weight: Tensor,
        in_proj_bias: Option<Tensor>,
        out_proj_weight: Tensor,
        out_proj_bias: Option<Tensor>,
    ) -> MultiheadAttention {
        let op = "MultiheadAttention";
        let shape = in_proj_weight.shape().to_vec();
        assert!(
            shape.len() == 2 && shape[0] == 3 * shape[1],
            "{op}: in_proj_weight must be [3 * embed_dim, embed_dim], got {shape:?}"
        );
        let e = shape[1];
        check_heads(e, num_heads);
        if let Some(b) = &in_proj_bias {
            assert_eq!(b.shape(), [3 * e], "{op}: in_proj_bias of shape {:?} does not match embed_dim {e}", b.shape());
        }
        assert_eq!(
            out_proj_weight.shape(),
            [e, e],
            "{op}: out_proj.weight of shape {:?} does not match embed_dim {e}",
            out_proj_weight.shape()
        );
        if let Some(b) = &out_proj_bias {
            assert_eq!(b.shape(), [e], "{op}: out_proj.bias of shape {:?} does not match embed_dim {e}", b.shape());
        }
        for t in [Some(&out_proj_weight), in_proj_bias.as_ref(), out_proj_bias.as_ref()].into_iter().flatten() {
            in_proj_weight.same_device(t, op);
        }
        MultiheadAttention {
            embed_dim: e,
            num_heads,
            dropout: 0.0,
            device: in_proj_weight.device().clone(),
            in_proj_weight,
            in_proj_bias,
            out_proj: Linear::from_parameters(out_proj_weight, out_proj_bias),
            seed: random::next_seed(),
            calls: AtomicU64::new(0),
            training: true,
        }
    }

    /// The probability of zeroing each attention weight in training (default 0). Panics
    /// unless it is in `[0, 1]`.
    pub fn dropout(mut self, p: f32) -> MultiheadAttention {
        assert!((0.0..=1.0).contains(&p), "MultiheadAttention: dropout probability {p} is not in [0, 1]");
        self.dropout = p;
        self
    }

    /// With `false`, neither the input nor the output projection has a bias (PyTorch's
    /// `bias=False`); with `true` (the default) missing biases are created as zeros and
    /// existing ones kept.
    pub fn bias(mut self, bias: bool) -> MultiheadAttention {
        let e = self.embed_dim;
        if !bias {
            self.in_proj_bias = None;
            self.out_proj.bias = None;
        } else {
            if self.in_proj_bias.is_none() {
                self.in_proj_bias = Some(Tensor::zeros(&[3 * e], &self.device).requires_grad());
            }
            if self.out_proj.bias.is_none() {
                self.out_proj.bias = Some(Tensor::zeros(&[e], &self.device).requires_grad());
            }
        }
        self
    }

    pub fn embed_dim(&self) -> usize {
        self.embed_dim
    }

    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// Features per head, `embed_dim / num_heads`.
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// The stacked query, key and value projections, `[3E, E]`.
    pub fn in_proj_weight(&self) -> &Tensor {
        &self.in_proj_weight
    }

    /// The stacked projection biases, `[3E]`; `None` with `bias(false)`.
    pub fn in_proj_bias(&self) -> Option<&Tensor> {
        self.in_proj_bias.as_ref()
    }

    /// The output projection.
    pub fn out_proj(&self) -> &Linear {
        &self.out_proj
    }

    /// Attention of `query` over `key` and `value`, as PyTorch's `forward` with
    /// `batch_first=True`: the output `[N, L, E]` and, with `need_weights`, the attention
    /// weights, averaged over the heads (`[N, L, S]`) with `average_attn_weights` or per
    /// head (`[N, H, L, S]`) without. Unbatched inputs `[L, E]` / `[S, E]` give `[L, E]`
    /// and `[L, S]` / `[H, L, S]`.
    ///
    /// - `key_padding_mask`: `[N, S]` (`[S]` unbatched); a non-zero element marks a key as
    ///   padding, ignored by every query, as PyTorch's boolean `True`. (A float padding
    ///   mask can be passed as an additive `attn_mask` of shape `[N * H, L, S]` instead.)
    /// - `attn_mask`: see [`AttnMask`], of shape `[L, S]` or `[N * H, L, S]` as in
    ///   PyTorch. Note the meaning of the tensor variants: [`AttnMask::Allowed`] is a keep
    ///   mask, the opposite of the boolean `attn_mask` of PyTorch's module, whose `True`
    ///   excludes.
    ///
    /// In training mode dropout (see [`MultiheadAttention::dropout`]) zeroes attention
    /// weights, and the returned weights are those the output was computed with, after
    /// dropout, as PyTorch returns them. A query whose every key is masked gets zero
    /// weights and a zero attention output (see [`Tensor::scaled_dot_product_attention`]).
    ///
    /// Panics when the shapes disagree with each other or with `embed_dim`, naming them.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        key_padding_mask: Option<&Tensor>,
        need_weights: bool,
        attn_mask: Option<AttnMask<'_>>,
        average_attn_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let op = "MultiheadAttention";
        let (e, h, dh) = (self.embed_dim, self.num_heads, self.head_dim());
        assert!(
            query.rank() == 2 || query.rank() == 3,
            "{op}: query must be [N, L, E] (batch first) or unbatched [L, E], got {:?}",
            query.shape()
        );
        let batched = query.rank() == 3;
        for (name, t) in [("query", query), ("key", key), ("value", value)] {
            assert_eq!(
                t.rank(),
                query.rank(),
                "{op}: {name} of shape {:?} and query of shape {:?} must both be batched or both unbatched",
                t.shape(),
                query.shape()
            );
            assert_eq!(
                t.dim(-1),
                e,
                "{op}: {name} of shape {:?} has {} features, expected embed_dim {e}",
                t.shape(),
                t.dim(-1)
            );
            self.in_proj_weight.same_device(t, op);
        }
        let as_batch = |t: &Tensor| if batched { t.clone() } else { t.unsqueeze(0) };
        let (q_in, k_in, v_in) = (as_batch(query), as_batch(key), as_batch(value));
        let (n, l, s) = (q_in.dim(0), q_in.dim(1), k_in.dim(1));
        assert!(
            k_in.dim(0) == n && v_in.dim(0) == n,
            "{op}: batch sizes of query {:?}, key {:?} and value {:?} differ",
            query.shape(),
            key.shape(),
            value.shape()
        );
        assert_eq!(
            v_in.dim(1),
            s,
            "{op}: key of shape {:?} and value of shape {:?} have different lengths",
            key.shape(),
            value.shape()
        );

        // Projections by row blocks of the stacked weight, as views, then heads as views.
        let project = |x: &Tensor, block: usize, len: usize| {
            let w = self.in_proj_weight.narrow(0, block * e, e);
            let mut y = x.matmul(&w.t());
            if let Some(b) = &self.in_proj_bias {
                y = y.add(&b.narrow(0, block * e, e));
            }
            y.reshape(&[n as isize, len as isize, h as isize, dh as isize]).permute(&[0, 2, 1, 3])
        };
        let (q, k, v) = (project(&q_in, 0, l), project(&k_in, 1, s), project(&v_in, 2, s));

        let mask_tensor = |m: &Tensor| -> Tensor {
            let shape = m.shape();
            if shape == [l, s] {
                m.clone()
            } else if shape == [n * h, l, s] {
                m.reshape(&[n as isize, h as isize, l as isize, s as isize])
            } else {
                panic!(
                    "{op}: attn_mask of shape {shape:?} must be [L, S] = [{l}, {s}] or [N * num_heads, L, S] = \
                     [{}, {l}, {s}]",
                    n * h
                )
            }
        };
        let attn_tensor = match attn_mask {
            Some(AttnMask::Allowed(m) | AttnMask::Additive(m)) => Some(mask_tensor(m)),
            _ => None,
        };
        let padding_keep = key_padding_mask.map(|m| {
            m.expect_dtype(DType::F32, op);
            let expected: &[usize] = if batched { &[n, s] } else { &[s] };
            assert_eq!(
                m.shape(),
                expected,
                "{op}: key_padding_mask of shape {:?} must be {} = {expected:?}",
                m.shape(),
                if batched { "[N, S]" } else { "[S]" }
            );
            m.eq(&Tensor::scalar(0.0, m.device())).reshape(&[n as isize, 1, 1, s as isize])
        });
        let mut masks = Vec::new();
        match (attn_mask, &attn_tensor) {
            (Some(AttnMask::Causal), _) => masks.push(AttnMask::Causal),
            (Some(AttnMask::Allowed(_)), Some(t)) => masks.push(AttnMask::Allowed(t)),
            (Some(AttnMask::Additive(_)), Some(t)) => masks.push(AttnMask::Additive(t)),
            _ => {}
        }
        if let Some(keep) = &padding_keep {
            masks.push(AttnMask::Allowed(keep));
        }

        let dropout = (self.training && self.dropout > 0.0).then(|| (self.dropout, self.next_dropout_seed()));
        let (heads, weights) = attention_with_weights(&q, &k, &v, &masks, dropout, None, op);
        let merged = heads.permute(&[0, 2, 1, 3]).reshape(&[n as isize, l as isize, e as isize]);
        let mut out = self.out_proj.forward(&merged);
        let mut weights = need_weights.then(|| if average_attn_weights { weights.mean(&[1], false) } else { weights });
        if !batched {
            out = out.squeeze(0);
            weights = weights.map(|w| w.squeeze(0));
        }
        (out, weights)
    }

    fn next_dropout_seed(&self) -> u64 {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        self.seed ^ random::hash32(call as u32) as u64 ^ (call << 32)
    }
}

fn check_heads(embed_dim: usize, num_heads: usize) {
    assert!(
        embed_dim > 0 && num_heads > 0 && embed_dim.is_multiple_of(num_heads),
        "MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
    );
}

impl Forward for MultiheadAttention {
    /// Self-attention of `x` (`[N, L, E]` or `[L, E]`) without masks.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.attend(x, x, x, None, false, None, true).0
    }
}

impl Module for MultiheadAttention {
    fn visit(&self, v: &mut Visitor<'_>) {
        v.parameter("in_proj_weight", &self.in_proj_weight);
        if let Some(b) = &self.in_proj_bias {
            v.parameter("in_proj_bias", b);
        }
        v.module("out_proj", &self.out_proj);
        v.random_stream("dropout_rng", &self.calls);
    }

    fn visit_mut(&mut self, v: &mut VisitorMut<'_>) {
        v.parameter("in_proj_weight", &mut self.in_proj_weight);
        if let Some(b) = &mut self.in_proj_bias {
            v.parameter("in_proj_bias", b);
        }
        v.module("out_proj", &mut self.out_proj);
        self.device = self.in_proj_weight.device().clone();
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn is_training(&self) -> bool {
        self.training
    }

    fn describe(&self) -> String {
        format!(
            "MultiheadAttention(\n  embed_dim={}, num_heads={}, dropout={}, batch_first=True\n  (out_proj): {}\n)",
            self.embed_dim,
            self.num_heads,
            python_float(self.dropout),
            self.out_proj.describe()
        )
    }
}
