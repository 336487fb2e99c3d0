//! Scaled dot-product attention, composed from matmul, where, softmax and mul so that its
//! gradient comes from their rules.
//!
//! Nothing larger than the `[.., L, S]` score matrix is materialised: masks are applied to
//! the scores by broadcasting (a causal mask is built as `[L, S]`), and the dropout mask
//! has the scores' shape. A fused kernel that never writes the scores (flash attention)
//! would save that memory too; the composition keeps every step checkable against the
//! reference kernels it is made of.

use crate::autograd::no_grad;
use crate::tensor::broadcast_shapes;
use crate::{random, DType, Device, Tensor};

/// Which key positions each query may attend to, for
/// [`Tensor::scaled_dot_product_attention`] and [`crate::nn::MultiheadAttention`].
///
/// PyTorch passes a boolean or a float tensor and tells them apart by dtype; wgrad's masks
/// are `f32` either way, so the meaning is in the variant. Tensor masks must broadcast to
/// the `[.., L, S]` shape of the attention scores (`L` queries, `S` keys) without
/// enlarging them.
#[derive(Clone, Copy, Debug)]
pub enum AttnMask<'a> {
    /// Query `i` attends to keys `j <= i`: the top-left aligned lower triangle of an
    /// `[L, S]` matrix, as PyTorch's `is_causal=True` (`ones(L, S).tril()`).
    Causal,
    /// A keep mask: a non-zero element lets the query attend to the key, zero excludes
    /// it, as a boolean `attn_mask` whose `True` means "take part".
    Allowed(&'a Tensor),
    /// Added to the scores before the softmax, as a float `attn_mask`: `-inf` excludes a
    /// position, finite values bias it.
    Additive(&'a Tensor),
}

/// The `[L, S]` keep mask of [`AttnMask::Causal`]: 1 where `i >= j`.
fn causal_mask(l: usize, s: usize, device: &Device) -> Tensor {
    let rows = Tensor::arange(0.0, l as f32, 1.0, device).reshape(&[l as isize, 1]);
    let cols = Tensor::arange(0.0, s as f32, 1.0, device).reshape(&[1, s as isize]);
    rows.ge(&cols)
}

/// Attention of `q` `[.., L, E]` over `k` `[.., S, E]` and `v` `[.., S, Ev]`: the output
/// `[.., L, Ev]` and the attention weights `[.., L, S]` it used (after dropout). Every mask
/// in `masks` applies; `dropout` is the probability and the seed of the mask; `op` names
/// the caller in panic messages.
pub(crate) fn attention_with_weights(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    masks: &[AttnMask<'_>],
    dropout: Option<(f32, u64)>,
    scale: Option<f32>,
    op: &str,
) -> (Tensor, Tensor) {
    for (name, t) in [("query", q), ("key", k), ("value", v)] {
        t.expect_dtype(DType::F32, op);
        q.same_device(t, op);
        assert!(t.rank() >= 2, "{op}: {name} must have at least 2 dimensions [.., len, features], got {:?}", t.shape());
    }
    let (l, e, s) = (q.dim(-2), q.dim(-1), k.dim(-2));
    assert_eq!(
        k.dim(-1),
        e,
        "{op}: query {:?} and key {:?} disagree on the feature dimension ({e} vs {})",
        q.shape(),
        k.shape(),
        k.dim(-1)
    );
    assert_eq!(
        v.dim(-2),
        s,
        "{op}: key {:?} and value {:?} disagree on the number of keys ({s} vs {})",
        k.shape(),
        v.shape(),
        v.dim(-2)
    );
    let batch = |t: &Tensor| t.shape()[..t.rank() - 2].to_vec();
    let score_batch = broadcast_shapes(&batch(q), &batch(k)).unwrap_or_else(|| {
        panic!("{op}: batch dimensions of query {:?} and key {:?} cannot be broadcast together", q.shape(), k.shape())
    });
    assert!(
        broadcast_shapes(&score_batch, &batch(v)).is_some(),
        "{op}: batch dimensions of value {:?} cannot be broadcast with those of query {:?} and key {:?}",
        v.shape(),
        q.shape(),
        k.shape()
    );
    let score_shape = [score_batch.as_slice(), &[l, s]].concat();
    for mask in masks {
        let (AttnMask::Allowed(m) | AttnMask::Additive(m)) = mask else { continue };
        m.expect_dtype(DType::F32, op);
        q.same_device(m, op);
        assert!(
            broadcast_shapes(m.shape(), &score_shape).as_deref() == Some(score_shape.as_slice()),
            "{op}: attention mask of shape {:?} does not broadcast to the scores' shape {score_shape:?} (query {:?}, \
             key {:?})",
            m.shape(),
            q.shape(),
            k.shape()
        );
    }
    if let Some((p, _)) = dropout {
        assert!((0.0..=1.0).contains(&p), "{op}: dropout probability {p} is not in [0, 1]");
    }
    let scale = scale.unwrap_or(1.0 / (e as f32).sqrt());
    assert!(scale.is_finite() || e == 0, "{op}: scale must be finite, got {scale}");

    let device = q.device();
    let neg_inf = Tensor::scalar(f32::NEG_INFINITY, device);
    // Scaling the queries rather than the scores: [.., L, E] is usually the smaller.
    let mut scores = q.mul_scalar(scale).matmul(&k.transpose(-2, -1));
    let mut may_mask_whole_rows = false;
    for mask in masks {
        scores = match mask {
            AttnMask::Causal => scores.where_cond(&causal_mask(l, s, device), &neg_inf),
            AttnMask::Allowed(m) => {
                may_mask_whole_rows = true;
                scores.where_cond(m, &neg_inf)
            }
            AttnMask::Additive(m) => {
                may_mask_whole_rows = true;
                scores.add(m)
            }
        };
    }

    let mut weights = if may_mask_whole_rows && scores.numel() > 0 {
        // A query with every key masked has no weights to normalise; like PyTorch's
        // `_safe_softmax` its weights are zero, so its output is zero. Those rows' scores
        // are replaced by zeros before the softmax so that neither the values nor the
        // gradients see the NaN that softmax of all -inf would give. A row that is NaN for
        // another reason stays NaN.
        let alive = no_grad(|| scores.detach().max(&[-1], true).ne(&neg_inf));
        let finite = scores.where_cond(&alive, &Tensor::scalar(0.0, device));
        finite.softmax(-1).mul(&alive)
    } else {
        scores.softmax(-1)
    };

    if let Some((p, seed)) = dropout.filter(|&(p, _)| p > 0.0) {
        let keep = no_grad(|| {
            if p >= 1.0 {
                Tensor::zeros(weights.shape(), device)
            } else {
                let u = Tensor::rand(weights.shape(), seed, device);
                u.ge(&Tensor::scalar(p, device)).mul_scalar(1.0 / (1.0 - p))
            }
        });
        weights = weights.mul(&keep);
    }
    (weights.matmul(v), weights)
}

impl Tensor {
    /// Scaled dot-product attention of the queries `self` (`[.., L, E]`) over `key`
    /// (`[.., S, E]`) and `value` (`[.., S, Ev]`), as
    /// `torch.nn.functional.scaled_dot_product_attention`:
    /// `softmax(q k^T * scale + mask) v`, of shape `[.., L, Ev]`. Leading batch dimensions
    /// broadcast.
    ///
    /// - `attn_mask`: see [`AttnMask`]; `Some(AttnMask::Causal)` is PyTorch's
    ///   `is_causal=True`.
    /// - `dropout_p`: the probability of zeroing each attention weight (survivors scaled by
    ///   `1 / (1 - p)`), applied whenever it is positive, as in PyTorch's functional form:
    ///   pass `0.0` in evaluation. The mask is drawn on the device from the next seed of
    ///   this thread's seed stream ([`crate::manual_seed`] makes runs repeatable).
    /// - `scale`: defaults to `1 / sqrt(E)`.
    ///
    /// A query whose every key is masked gets all-zero weights and a zero output (and
    /// passes no gradient), as PyTorch 2.5 and later give with its `_safe_softmax`; earlier
    /// PyTorch versions gave NaN.
    ///
    /// Composed from differentiable ops: gradients flow to the query, key, value and an
    /// additive mask. Panics when the shapes disagree (naming them), when a mask does not
    /// broadcast to `[.., L, S]`, or when `dropout_p` is not in `[0, 1]`.
    ///
    /// ```
    /// use wgrad::{AttnMask, Device, Tensor};
    /// let dev = Device::cpu();
    /// let q = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0], &[2, 2], &dev);
    /// let v = Tensor::from_slice(&[10.0f32, 20.0], &[2, 1], &dev);
    /// // Causal: the first query sees only the first key.
    /// let out = q.scaled_dot_product_attention(&q, &v, Some(AttnMask::Causal), 0.0, None);
    /// let out: Vec<f32> = out.to_vec();
    /// assert_eq!(out[0], 10.0);
    /// // The second sees both, its own key weighted by e^(1/sqrt 2) against e^0.
    /// let w = (0.5f32.sqrt()).exp();
    /// assert!((out[1] - (10.0 + 20.0 * w) / (1.0 + w)).abs() < 1e-5);
    /// ```
    pub fn scaled_dot_product_attention(
        &self,
        key: &Tensor,
        value: &Tensor,
        attn_mask: Option<AttnMask<'_>>,
        dropout_p: f32,
        scale: Option<f32>,
    ) -> Tensor {
        let dropout = (dropout_p != 0.0).then(|| (dropout_p, random::next_seed()));
        let masks: Vec<AttnMask<'_>> = attn_mask.into_iter().collect();
        attention_with_weights(self, key, value, &masks, dropout, scale, "scaled_dot_product_attention").0
    }
}
