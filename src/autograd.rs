//! Reverse-mode automatic differentiation, recorded as the program runs (define-by-run).
//!
//! A tensor that requires a gradient carries an [`AutogradMeta`]: an id, and for results
//! of ops a `Node` that names the op (a `GradOp`) and holds its inputs. Ops record a node
//! only when gradients are enabled (see [`no_grad`]) and some input requires a gradient,
//! so inference and data handling never build a graph.
//!
//! `loss.backward()` walks the graph once in reverse topological order and applies one
//! gradient rule per op. Every rule is written with tensor ops, so backward runs on the
//! device the forward ran on. A node's saved tensors are released as soon as its rule has
//! run, and the gradients of intermediate results as soon as they have been passed on:
//! like PyTorch without `retain_graph`, a graph can be walked once.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::op::{BinaryOp, ReduceOp, SoftmaxOp, UnaryOp};
use crate::Tensor;

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// True unless the current thread is inside [`no_grad`].
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Runs `f` without recording any op, as `with torch.no_grad():`. Use it for evaluation
/// and for parameter updates.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Disables recording on this thread until dropped (then restores the previous state).
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> NoGradGuard {
        let previous = GRAD_ENABLED.with(|g| g.replace(false));
        NoGradGuard { previous }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        NoGradGuard::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Identity of a tensor in the autograd graph. Views of one storage have different ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

fn next_id() -> TensorId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
}

/// What a tensor that takes part in differentiation carries.
pub struct AutogradMeta {
    pub(crate) id: TensorId,
    /// `None` for a leaf (a tensor the user marked with `requires_grad`).
    pub(crate) node: Option<Node>,
    /// A frozen leaf ([`Tensor::freeze`]) keeps its identity, so an optimizer holding it
    /// still knows it, but takes no part in differentiation until it is unfrozen. Shared
    /// by every clone of the leaf, so freezing a module's parameter freezes the optimizer's
    /// handle on it too. Always false on op results.
    frozen: AtomicBool,
}

impl AutogradMeta {
    fn leaf() -> AutogradMeta {
        AutogradMeta { id: next_id(), node: None, frozen: AtomicBool::new(false) }
    }
}

/// How a tensor was computed: the op and what its gradient rule needs.
pub(crate) struct Node {
    op: GradOp,
    /// Inputs and saved tensors, taken (and so freed) by backward.
    saved: Mutex<Option<Saved>>,
}

struct Saved {
    /// The op's tensor inputs, in order, with their autograd identity.
    inputs: Vec<Tensor>,
    /// The op's output without its node (sharing storage, so no copy and no cycle), for
    /// rules written in terms of the result (exp, sigmoid, softmax, ...).
    output: Tensor,
}

/// The differentiable ops, with the non-tensor arguments their gradient rules need.
#[derive(Clone, Debug)]
pub(crate) enum GradOp {
    Unary {
        op: UnaryOp,
        s0: f32,
        s1: f32,
    },
    Binary(BinaryOp),
    /// `where_cond(self = a, cond, b)`: inputs are `[a, cond, b]`.
    Where,
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        correction: f32,
    },
    /// 2-D or batched matmul whose operands already have at least 2 dimensions.
    Matmul,
    Softmax {
        op: SoftmaxOp,
        axis: usize,
    },
    IndexSelect {
        axis: usize,
    },
    Gather {
        axis: usize,
    },
    /// `index_add(self, axis, indices, src)`: inputs are `[self, indices, src]`.
    IndexAdd {
        axis: usize,
    },
    /// `scatter_add(self, axis, index, src)`: inputs are `[self, index, src]`.
    ScatterAdd {
        axis: usize,
    },
    /// Any view or copy that keeps the elements and only changes the shape.
    Reshape,
    Permute(Vec<usize>),
    Narrow {
        axis: usize,
        start: usize,
    },
    BroadcastTo,
    Cat {
        axis: usize,
    },
    /// A fused op whose rule lives beside its forward code (see [`FusedGrad`]).
    Fused(Arc<dyn FusedGrad>),
}

/// The gradient rule of a fused op, written beside the op's forward code and recorded
/// with [`GradOp::fused`], so that this module needs to know nothing about the op. Each
/// rule's documentation says what its inputs are.
pub(crate) trait FusedGrad: std::fmt::Debug + Send + Sync {
    /// The gradient with respect to each of `inputs`, given the gradient `g` of the
    /// output `out`; `None` for inputs that have none (indices, saved statistics).
    fn backward(&self, g: &Tensor, inputs: &[Tensor], out: &Tensor) -> Vec<Option<Tensor>>;
}

impl GradOp {
    /// The node of a fused op with the gradient rule `rule`.
    pub(crate) fn fused(rule: impl FusedGrad + 'static) -> GradOp {
        GradOp::Fused(Arc::new(rule))
    }
}

impl Tensor {
    /// Marks this tensor as a leaf whose gradient `backward` computes (PyTorch's
    /// `requires_grad_()`). Returns the tensor for chaining; the returned tensor is the
    /// one gradients are reported for.
    ///
    /// On a frozen leaf it unfreezes it ([`Tensor::unfreeze`]), as `requires_grad_(True)`
    /// does on a parameter whose `requires_grad` was switched off.
    pub fn requires_grad(mut self) -> Tensor {
        match &self.autograd {
            Some(meta) if meta.node.is_none() => meta.frozen.store(false, Ordering::Relaxed),
            _ => self.autograd = Some(Arc::new(AutogradMeta::leaf())),
        }
        self
    }

    /// True when this tensor is a leaf that requires a gradient (and is not frozen) or the
    /// result of an op on one.
    pub fn is_tracked(&self) -> bool {
        self.tracked_meta().is_some()
    }

    /// The autograd metadata of a tensor that takes part in differentiation now: `None`
    /// for untracked tensors and frozen leaves.
    fn tracked_meta(&self) -> Option<&Arc<AutogradMeta>> {
        self.autograd.as_ref().filter(|m| !m.frozen.load(Ordering::Relaxed))
    }

    /// Stops this leaf from requiring a gradient, as PyTorch's `requires_grad_(False)` on
    /// a parameter: ops no longer record it, `backward` computes no gradient for it, and an
    /// optimizer holding it skips it. Every clone of the leaf (the module's field, the
    /// optimizer's handle) is frozen at once, and [`Tensor::unfreeze`] undoes it. Panics on
    /// a tensor that is not a leaf made with [`Tensor::requires_grad`].
    ///
    /// Freezing takes effect for the graphs recorded afterwards and for the `backward` of
    /// a graph already recorded.
    pub fn freeze(&self) {
        self.set_frozen(true, "freeze");
    }

    /// Makes a frozen leaf require its gradient again. Panics as [`Tensor::freeze`].
    pub fn unfreeze(&self) {
        self.set_frozen(false, "unfreeze");
    }

    /// True for a leaf frozen with [`Tensor::freeze`].
    pub fn is_frozen(&self) -> bool {
        self.autograd.as_ref().is_some_and(|m| m.frozen.load(Ordering::Relaxed))
    }

    fn set_frozen(&self, frozen: bool, op: &str) {
        match &self.autograd {
            Some(meta) if meta.node.is_none() => meta.frozen.store(frozen, Ordering::Relaxed),
            Some(_) => panic!(
                "{op}: the tensor of shape {:?} is the result of an op, not a parameter; only leaves made with \
                 requires_grad() can be frozen",
                self.shape()
            ),
            None => panic!(
                "{op}: the tensor of shape {:?} does not require a gradient; only leaves made with \
                 requires_grad() can be frozen",
                self.shape()
            ),
        }
    }

    /// The same values, cut out of the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Tensor { autograd: None, ..self.clone() }
    }

    /// The autograd identity of a tracked tensor.
    pub fn grad_id(&self) -> Option<TensorId> {
        self.autograd.as_ref().map(|m| m.id)
    }

    /// Attaches a node for `op` to `out` when recording is on and an input is tracked.
    pub(crate) fn record(out: Tensor, op: GradOp, inputs: &[&Tensor]) -> Tensor {
        if !is_grad_enabled() || !inputs.iter().any(|t| t.is_tracked()) {
            return out;
        }
        let saved = Saved { inputs: inputs.iter().map(|&t| t.clone()).collect(), output: out.detach() };
        let node = Node { op, saved: Mutex::new(Some(saved)) };
        let meta = AutogradMeta { id: next_id(), node: Some(node), frozen: AtomicBool::new(false) };
        Tensor { autograd: Some(Arc::new(meta)), ..out }
    }

    /// Gradients of this scalar with respect to every leaf it depends on.
    /// Panics unless the tensor has exactly one element.
    pub fn backward(&self) -> Gradients {
        assert_eq!(
            self.numel(),
            1,
            "backward: called on a tensor of shape {:?}; give a gradient with backward_with",
            self.shape()
        );
        let seed = crate::autograd::no_grad(|| Tensor::ones(self.shape(), self.device()));
        self.backward_with(&seed)
    }

    /// Gradients of `sum(self * grad)`: backward from a non-scalar with a given output gradient.
    pub fn backward_with(&self, grad: &Tensor) -> Gradients {
        self.backward_with_hook(grad, &mut |_, _| {})
    }

    /// As [`Tensor::backward_with`], calling `on_leaf(leaf, gradient)` for each leaf as
    /// soon as its gradient is complete (every node that adds to it has run), while the
    /// rest of the graph is still to run: data-parallel training starts sending a group of
    /// gradients to the other processes there (`wgrad::distributed`, feature `mpi`).
    pub fn backward_with_hook(&self, grad: &Tensor, on_leaf: &mut dyn FnMut(&Tensor, &Tensor)) -> Gradients {
        assert_eq!(
            grad.shape(),
            self.shape(),
            "backward_with: gradient of shape {:?} for a tensor of shape {:?}",
            grad.shape(),
            self.shape()
        );
        let _guard = NoGradGuard::new();
        let mut result = Gradients { grads: HashMap::new() };
        let Some(meta) = self.tracked_meta() else { return result };
        let order = topological_order(self);
        let mut pending: HashMap<TensorId, Tensor> = HashMap::new();
        pending.insert(meta.id, grad.detach());
        for t in order.iter().rev() {
            let meta = t.autograd.as_ref().expect("graph tensors are tracked");
            let Some(g) = pending.remove(&meta.id) else { continue };
            let Some(node) = &meta.node else {
                on_leaf(t, &g);
                result.grads.insert(meta.id, g);
                continue;
            };
            let saved = node.saved.lock().unwrap().take().unwrap_or_else(|| {
                panic!("backward: the graph through this {:?} was already used by an earlier backward; its saved tensors are freed", node.op)
            });
            let input_grads = {
                let _phase = crate::shadow::enter_backward(|| format!("{:?}", node.op), &saved.inputs);
                let grads = node.op.backward(&g, &saved.inputs, &saved.output);
                crate::shadow::finish_backward_rule(&saved.inputs, &grads);
                grads
            };
            for (input, ig) in saved.inputs.iter().zip(input_grads) {
                let (Some(im), Some(ig)) = (input.tracked_meta(), ig) else { continue };
                debug_assert_eq!(ig.shape(), input.shape(), "gradient rule of {:?} returned a wrong shape", node.op);
                let acc = match pending.remove(&im.id) {
                    Some(prev) => prev.add(&ig),
                    None => ig,
                };
                pending.insert(im.id, acc);
            }
        }
        result
    }
}

/// Tracked tensors reachable from `root`, each before every tensor computed from it.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative depth-first search: graphs of long sequences are too deep for recursion.
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, children_done)) = stack.pop() {
        let meta = t.autograd.as_ref().expect("only tracked tensors are pushed");
        if children_done {
            order.push(t);
            continue;
        }
        if !visited.insert(meta.id) {
            continue;
        }
        let inputs: Vec<Tensor> = match &meta.node {
            Some(node) => node.saved.lock().unwrap().as_ref().map(|s| s.inputs.clone()).unwrap_or_default(),
            None => Vec::new(),
        };
        stack.push((t.clone(), true));
        for input in inputs {
            if let Some(im) = input.tracked_meta() {
                if !visited.contains(&im.id) {
                    stack.push((input, false));
                }
            }
        }
    }
    order
}

/// The gradients `backward` computed, one per leaf tensor that requires a gradient.
pub struct Gradients {
    grads: HashMap<TensorId, Tensor>,
}

impl Gradients {
    /// The gradient of `leaf`, or `None` when the loss does not depend on it.
    pub fn get(&self, leaf: &Tensor) -> Option<&Tensor> {
        leaf.grad_id().and_then(|id| self.grads.get(&id))
    }

    /// The gradient of `leaf`, or a panic that says it has none.
    pub fn wrt(&self, leaf: &Tensor) -> &Tensor {
        self.get(leaf).unwrap_or_else(|| panic!("no gradient for the tensor of shape {:?}: it does not require a gradient or the loss does not depend on it", leaf.shape()))
    }

    pub fn len(&self) -> usize {
        self.grads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// Takes the gradient of `leaf` out of the store.
    pub fn remove(&mut self, leaf: &Tensor) -> Option<Tensor> {
        leaf.grad_id().and_then(|id| self.grads.remove(&id))
    }

    /// Every stored gradient, in no particular order, for transforms that apply to all of
    /// them alike (the unscaling of a loss-scaled backward, in `amp`).
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut Tensor> {
        self.grads.values_mut()
    }

    /// Stores `grad` as the gradient of `leaf` (gradient clipping and regularisers use it).
    pub fn insert(&mut self, leaf: &Tensor, grad: Tensor) {
        let id = leaf.grad_id().expect("insert: the tensor does not require a gradient");
        self.grads.insert(id, grad);
    }
}

/// `grad` summed over the axes that broadcasting added or stretched, back to `shape`.
pub(crate) fn sum_to_shape(grad: &Tensor, shape: &[usize]) -> Tensor {
    if grad.shape() == shape {
        return grad.clone();
    }
    let lead = grad.rank() - shape.len();
    let axes: Vec<isize> = (0..grad.rank())
        .filter(|&d| d < lead || (shape[d - lead] == 1 && grad.shape()[d] != 1))
        .map(|d| d as isize)
        .collect();
    let summed = grad.sum(&axes, true);
    summed.reshape(&shape.iter().map(|&d| d as isize).collect::<Vec<_>>())
}

/// `grad` of a reduced tensor, reshaped so it broadcasts against the input again.
fn unreduce(grad: &Tensor, input_shape: &[usize], axes: &[usize]) -> Tensor {
    let shape: Vec<isize> =
        input_shape.iter().enumerate().map(|(d, &n)| if axes.contains(&d) { 1 } else { n as isize }).collect();
    grad.reshape(&shape)
}

impl GradOp {
    /// The gradient with respect to each input, given the gradient `g` of the output;
    /// `None` for inputs that have no gradient (conditions, indices).
    fn backward(&self, g: &Tensor, inputs: &[Tensor], out: &Tensor) -> Vec<Option<Tensor>> {
        let x = inputs.first();
        match self {
            GradOp::Unary { op, s0, s1 } => {
                let x = x.unwrap();
                let zero = || Tensor::scalar(0.0, x.device());
                let d = match op {
                    UnaryOp::Copy => g.clone(),
                    UnaryOp::Neg => g.neg(),
                    UnaryOp::Abs => g.mul(&x.gt(&zero()).sub(&x.lt(&zero()))),
                    UnaryOp::Exp => g.mul(out),
                    UnaryOp::Log => g.div(x),
                    UnaryOp::Sqrt => g.div(out).mul_scalar(0.5),
                    UnaryOp::Rsqrt => g.mul(&out.powf(3.0)).mul_scalar(-0.5),
                    UnaryOp::Square => g.mul(x).mul_scalar(2.0),
                    UnaryOp::Recip => g.mul(&out.square()).neg(),
                    UnaryOp::Sin => g.mul(&x.cos()),
                    UnaryOp::Cos => g.mul(&x.sin()).neg(),
                    UnaryOp::Affine => g.mul_scalar(*s0),
                    UnaryOp::PowScalar => g.mul(&x.powf(s0 - 1.0)).mul_scalar(*s0),
                    // Gradient 1 inside [min, max] (bounds included, as PyTorch), else 0.
                    UnaryOp::Clamp => {
                        let inside =
                            x.ge(&Tensor::scalar(*s0, x.device())).mul(&x.le(&Tensor::scalar(*s1, x.device())));
                        g.mul(&inside)
                    }
                    UnaryOp::Relu => g.relu_backward(x),
                    UnaryOp::LeakyRelu => {
                        let pos = x.gt(&zero());
                        g.mul(&pos.affine(1.0 - s0, *s0))
                    }
                    // For x <= 0, d/dx alpha*(exp(x)-1) = alpha*exp(x) = out + alpha.
                    UnaryOp::Elu => {
                        let pos = x.gt(&zero());
                        g.mul(&pos.where_cond(&pos, &out.add_scalar(*s0)))
                    }
                    UnaryOp::Sigmoid => g.mul(&out.mul(&out.affine(-1.0, 1.0))),
                    UnaryOp::Tanh => g.mul(&out.square().affine(-1.0, 1.0)),
                    UnaryOp::Gelu => g.mul(&x.gelu_derivative()),
                    UnaryOp::GeluGrad => panic!("backward: gelu_grad is not differentiable (no second derivatives)"),
                    UnaryOp::Softplus => {
                        // sigmoid(x), and exactly 1 above the threshold where softplus(x) = x.
                        g.mul(&x.sigmoid())
                    }
                    UnaryOp::Silu => {
                        let s = x.sigmoid();
                        g.mul(&s.mul(&x.mul(&s.affine(-1.0, 1.0)).add_scalar(1.0)))
                    }
                };
                vec![Some(d)]
            }
            GradOp::Binary(op) => {
                let (a, b) = (&inputs[0], &inputs[1]);
                let (ga, gb) = match op {
                    BinaryOp::Add => (Some(g.clone()), Some(g.clone())),
                    BinaryOp::Sub => (Some(g.clone()), Some(g.neg())),
                    BinaryOp::Mul => (Some(g.mul(b)), Some(g.mul(a))),
                    BinaryOp::Div => (Some(g.div(b)), Some(g.mul(out).div(b).neg())),
                    BinaryOp::Pow => {
                        let ga = g.mul(b).mul(&a.pow(&b.add_scalar(-1.0)));
                        // d/db a^b = a^b ln a, taken as 0 where a^b is 0 (PyTorch's convention).
                        let ln_a = a.log();
                        let zero = Tensor::scalar(0.0, a.device());
                        let gb = g.mul(&out.mul(&ln_a)).where_cond(&out.ne(&zero), &zero);
                        (Some(ga), Some(gb))
                    }
                    // Ties split the gradient evenly, as PyTorch does.
                    BinaryOp::Maximum | BinaryOp::Minimum => {
                        let wins = if *op == BinaryOp::Maximum { a.gt(b) } else { a.lt(b) };
                        let share_a = wins.add(&a.eq(b).mul_scalar(0.5));
                        (Some(g.mul(&share_a)), Some(g.mul(&share_a.affine(-1.0, 1.0))))
                    }
                    // Comparisons are piecewise constant: no gradient flows.
                    BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                        (None, None)
                    }
                };
                vec![ga.map(|t| sum_to_shape(&t, a.shape())), gb.map(|t| sum_to_shape(&t, b.shape()))]
            }
            GradOp::Where => {
                let (a, cond, b) = (&inputs[0], &inputs[1], &inputs[2]);
                let zero = Tensor::scalar(0.0, g.device());
                let ga = g.where_cond(cond, &zero);
                let gb = zero.where_cond(cond, g);
                vec![Some(sum_to_shape(&ga, a.shape())), None, Some(sum_to_shape(&gb, b.shape()))]
            }
            GradOp::Reduce { op, axes, correction } => {
                let x = x.unwrap();
                let g = unreduce(g, x.shape(), axes);
                let count: usize = axes.iter().map(|&d| x.shape()[d]).product::<usize>().max(1);
                let d = match op {
                    ReduceOp::Sum => g.broadcast_to(x.shape()).contiguous(),
                    ReduceOp::Mean => g.mul_scalar(1.0 / count as f32).broadcast_to(x.shape()).contiguous(),
                    // The gradient goes to the extreme elements, split evenly among ties.
                    ReduceOp::Max | ReduceOp::Min => {
                        let hits = x.eq(&unreduce(out, x.shape(), axes));
                        let ties = hits.sum(&axes.iter().map(|&d| d as isize).collect::<Vec<_>>(), true);
                        hits.mul(&g.div(&ties))
                    }
                    ReduceOp::Var => {
                        let axes_i: Vec<isize> = axes.iter().map(|&d| d as isize).collect();
                        let centered = x.sub(&x.mean(&axes_i, true));
                        let scale = 2.0 / (count as f32 - correction).max(0.0);
                        centered.mul(&g).mul_scalar(scale)
                    }
                    ReduceOp::ArgMax | ReduceOp::ArgMin => unreachable!("arg reductions are not recorded"),
                };
                vec![Some(d)]
            }
            GradOp::Matmul => {
                let (a, b) = (&inputs[0], &inputs[1]);
                let ga = g.matmul(&b.t());
                let gb = a.t().matmul(g);
                vec![Some(sum_to_shape(&ga, a.shape())), Some(sum_to_shape(&gb, b.shape()))]
            }
            GradOp::Softmax { op, axis } => {
                let a = *axis as isize;
                let d = match op {
                    SoftmaxOp::Softmax => out.mul(&g.sub(&g.mul(out).sum(&[a], true))),
                    SoftmaxOp::LogSoftmax => g.sub(&out.exp().mul(&g.sum(&[a], true))),
                };
                vec![Some(d)]
            }
            GradOp::IndexSelect { axis } => {
                let (src, idx) = (&inputs[0], &inputs[1]);
                vec![Some(g.index_add_into(src.shape(), *axis, idx)), None]
            }
            GradOp::Gather { axis } => {
                let (src, idx) = (&inputs[0], &inputs[1]);
                vec![Some(g.scatter_add_into(src.shape(), *axis, idx)), None]
            }
            GradOp::IndexAdd { axis } => {
                let idx = &inputs[1];
                vec![Some(g.clone()), None, Some(g.index_select(*axis as isize, idx))]
            }
            GradOp::ScatterAdd { axis } => {
                let idx = &inputs[1];
                vec![Some(g.clone()), None, Some(g.gather(*axis as isize, idx))]
            }
            GradOp::Reshape => {
                let x = x.unwrap();
                vec![Some(g.reshape(&x.shape().iter().map(|&d| d as isize).collect::<Vec<_>>()))]
            }
            GradOp::Permute(perm) => {
                let mut inverse = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inverse[p] = i;
                }
                vec![Some(g.permute(&inverse))]
            }
            GradOp::Narrow { axis, start } => {
                let x = x.unwrap();
                let full = x.shape()[*axis];
                let len = g.shape()[*axis];
                let mut parts = Vec::new();
                let pad = |n: usize| {
                    let mut shape = x.shape().to_vec();
                    shape[*axis] = n;
                    Tensor::zeros(&shape, g.device())
                };
                if *start > 0 {
                    parts.push(pad(*start));
                }
                parts.push(g.clone());
                if start + len < full {
                    parts.push(pad(full - start - len));
                }
                vec![Some(Tensor::cat(&parts, *axis as isize))]
            }
            GradOp::BroadcastTo => vec![Some(sum_to_shape(g, x.unwrap().shape()))],
            GradOp::Fused(rule) => rule.backward(g, inputs, out),
            GradOp::Cat { axis } => {
                let mut start = 0;
                inputs
                    .iter()
                    .map(|t| {
                        let len = t.shape()[*axis];
                        let part = g.narrow(*axis as isize, start, len);
                        start += len;
                        Some(part)
                    })
                    .collect()
            }
        }
    }
}
