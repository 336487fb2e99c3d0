//! Arithmetic: elementwise ops with broadcasting, unary functions and activations,
//! reductions, matmul and softmax, and the operator overloads.

use super::layout::{self, broadcast_shapes};
use super::Tensor;
use crate::autograd::GradOp;
use crate::dtype::DType;
use crate::op::matmul::{Epilogue, MatmulDims};
use crate::op::{BinaryOp, ReduceOp, SoftmaxOp, UnaryOp};

impl Tensor {
    // ---- the three elementwise engines ----

    pub(crate) fn unary_op(&self, op: UnaryOp, s0: f32, s1: f32) -> Tensor {
        let out = self.unary_kernel(op, s0, s1);
        Tensor::record(out, GradOp::Unary { op, s0, s1 }, &[self])
    }

    fn unary_kernel(&self, op: UnaryOp, s0: f32, s1: f32) -> Tensor {
        self.expect_dtype(DType::F32, op.name());
        let out = self.storage.unary(op, [s0, s1], &self.layout);
        Tensor::from_storage(out, self.shape(), DType::F32)
    }

    /// The shape `self` and `other` broadcast to, or a panic naming `op` and both shapes.
    fn broadcast_with(&self, other: &Tensor, op: &str) -> Vec<usize> {
        self.same_device(other, op);
        let shape = broadcast_shapes(self.shape(), other.shape()).unwrap_or_else(|| {
            panic!("{op}: shapes {:?} and {:?} cannot be broadcast together", self.shape(), other.shape())
        });
        layout::check_shape(&shape, op);
        shape
    }

    pub(crate) fn binary_op(&self, other: &Tensor, op: BinaryOp) -> Tensor {
        let out = self.binary_kernel(other, op);
        // Comparisons give masks, which carry no gradient (as PyTorch's bool results).
        let is_comparison =
            matches!(op, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge);
        if is_comparison {
            return out;
        }
        Tensor::record(out, GradOp::Binary(op), &[self, other])
    }

    fn binary_kernel(&self, other: &Tensor, op: BinaryOp) -> Tensor {
        self.expect_dtype(DType::F32, op.name());
        other.expect_dtype(DType::F32, op.name());
        let shape = self.broadcast_with(other, op.name());
        let (la, lb) = (self.layout.broadcast_to(&shape), other.layout.broadcast_to(&shape));
        let out = self.storage.binary(op, &la, &other.storage, &lb);
        Tensor::from_storage(out, &shape, DType::F32)
    }

    /// The gradient of a ReLU at `x` given the gradient `self` of its output:
    /// `self * (x > 0)`, in one pass on a backend that fuses it (the CPU), else composed.
    /// Used by the ReLU's gradient rule. As in the composed form, no gradient flows to `x`
    /// (through a comparison); a tracked `self` takes the composed form, which records the
    /// product.
    pub(crate) fn relu_backward(&self, x: &Tensor) -> Tensor {
        let composed = || self.mul(&x.gt(&Tensor::scalar(0.0, x.device())));
        if self.is_tracked() || self.shape() != x.shape() || self.dtype() != DType::F32 {
            return composed();
        }
        x.expect_dtype(DType::F32, "relu_backward");
        self.same_device(x, "relu_backward");
        match self.storage.relu_backward(&self.layout, &x.storage, &x.layout) {
            Some(out) => Tensor::from_storage(out, self.shape(), DType::F32),
            None => composed(),
        }
    }

    /// `self` where `cond` is non-zero, else `other`; all three broadcast together
    /// (`torch.where(cond, self, other)`).
    pub fn where_cond(&self, cond: &Tensor, other: &Tensor) -> Tensor {
        for t in [self, cond, other] {
            t.expect_dtype(DType::F32, "where");
        }
        let shape = self.broadcast_with(other, "where");
        let shape = broadcast_shapes(&shape, cond.shape())
            .unwrap_or_else(|| panic!("where: condition of shape {:?} cannot be broadcast to {shape:?}", cond.shape()));
        self.same_device(cond, "where");
        let (lc, la, lb) =
            (cond.layout.broadcast_to(&shape), self.layout.broadcast_to(&shape), other.layout.broadcast_to(&shape));
        let out = self.storage.where_select(&la, (&cond.storage, &lc), (&other.storage, &lb));
        let out = Tensor::from_storage(out, &shape, DType::F32);
        Tensor::record(out, GradOp::Where, &[self, cond, other])
    }

    // ---- binary, with broadcasting ----

    pub fn add(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Add)
    }
    pub fn sub(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Sub)
    }
    pub fn mul(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Mul)
    }
    pub fn div(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Div)
    }
    /// Elementwise power with C's `pow` rules (a negative base needs an integer exponent).
    pub fn pow(&self, exponent: &Tensor) -> Tensor {
        self.binary_op(exponent, BinaryOp::Pow)
    }
    /// Elementwise maximum; NaN wins, as `torch.maximum`.
    pub fn maximum(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Maximum)
    }
    pub fn minimum(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Minimum)
    }
    /// `1.0` where equal, else `0.0`. Comparisons give `f32` masks that multiply and feed
    /// `where_cond` directly.
    pub fn eq(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Eq)
    }
    pub fn ne(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Ne)
    }
    pub fn lt(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Lt)
    }
    pub fn le(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Le)
    }
    pub fn gt(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Gt)
    }
    pub fn ge(&self, other: &Tensor) -> Tensor {
        self.binary_op(other, BinaryOp::Ge)
    }

    // ---- with a scalar ----

    /// `self * scale + shift` in one kernel.
    pub fn affine(&self, scale: f32, shift: f32) -> Tensor {
        self.unary_op(UnaryOp::Affine, scale, shift)
    }
    pub fn add_scalar(&self, v: f32) -> Tensor {
        self.affine(1.0, v)
    }
    pub fn mul_scalar(&self, v: f32) -> Tensor {
        self.affine(v, 0.0)
    }
    pub fn powf(&self, exponent: f32) -> Tensor {
        self.unary_op(UnaryOp::PowScalar, exponent, 0.0)
    }
    /// Each element limited to `[min, max]`; NaN stays NaN.
    pub fn clamp(&self, min: f32, max: f32) -> Tensor {
        assert!(min <= max, "clamp: min {min} is greater than max {max}");
        self.unary_op(UnaryOp::Clamp, min, max)
    }

    // ---- unary ----

    pub fn neg(&self) -> Tensor {
        self.unary_op(UnaryOp::Neg, 0.0, 0.0)
    }
    pub fn abs(&self) -> Tensor {
        self.unary_op(UnaryOp::Abs, 0.0, 0.0)
    }
    pub fn exp(&self) -> Tensor {
        self.unary_op(UnaryOp::Exp, 0.0, 0.0)
    }
    pub fn log(&self) -> Tensor {
        self.unary_op(UnaryOp::Log, 0.0, 0.0)
    }
    pub fn sqrt(&self) -> Tensor {
        self.unary_op(UnaryOp::Sqrt, 0.0, 0.0)
    }
    pub fn rsqrt(&self) -> Tensor {
        self.unary_op(UnaryOp::Rsqrt, 0.0, 0.0)
    }
    pub fn square(&self) -> Tensor {
        self.unary_op(UnaryOp::Square, 0.0, 0.0)
    }
    pub fn recip(&self) -> Tensor {
        self.unary_op(UnaryOp::Recip, 0.0, 0.0)
    }
    pub fn sin(&self) -> Tensor {
        self.unary_op(UnaryOp::Sin, 0.0, 0.0)
    }
    pub fn cos(&self) -> Tensor {
        self.unary_op(UnaryOp::Cos, 0.0, 0.0)
    }

    // ---- activations ----

    pub fn relu(&self) -> Tensor {
        self.unary_op(UnaryOp::Relu, 0.0, 0.0)
    }
    /// `x` for positive `x`, else `alpha * x` (PyTorch's default `alpha` is 0.01).
    pub fn leaky_relu(&self, alpha: f32) -> Tensor {
        self.unary_op(UnaryOp::LeakyRelu, alpha, 0.0)
    }
    /// `x` for positive `x`, else `alpha * (exp(x) - 1)` (PyTorch's default `alpha` is 1).
    pub fn elu(&self, alpha: f32) -> Tensor {
        self.unary_op(UnaryOp::Elu, alpha, 0.0)
    }
    pub fn sigmoid(&self) -> Tensor {
        self.unary_op(UnaryOp::Sigmoid, 0.0, 0.0)
    }
    pub fn tanh(&self) -> Tensor {
        self.unary_op(UnaryOp::Tanh, 0.0, 0.0)
    }
    /// The exact (erf) GELU, PyTorch's default.
    pub fn gelu(&self) -> Tensor {
        self.unary_op(UnaryOp::Gelu, 0.0, 0.0)
    }
    /// `log(1 + exp(x))`, and `x` itself above 20 (PyTorch's default threshold).
    pub fn softplus(&self) -> Tensor {
        self.unary_op(UnaryOp::Softplus, 0.0, 0.0)
    }
    /// `x * sigmoid(x)`.
    pub fn silu(&self) -> Tensor {
        self.unary_op(UnaryOp::Silu, 0.0, 0.0)
    }
    /// The derivative of [`Tensor::gelu`], `Φ(x) + x φ(x)`; its gradient rule uses it.
    pub fn gelu_derivative(&self) -> Tensor {
        self.unary_op(UnaryOp::GeluGrad, 0.0, 0.0)
    }

    // ---- reductions ----

    /// Reduces `axes` with `op`: moves them last (a copy only when the layout needs one),
    /// runs the row kernel over `[kept, reduced]`, and reshapes to the kept axes.
    fn reduce_axes(&self, op: ReduceOp, axes: &[isize], keepdim: bool, correction: f32) -> Tensor {
        self.expect_dtype(DType::F32, op.name());
        let mut reduced: Vec<usize> = axes.iter().map(|&a| self.axis(a, op.name())).collect();
        reduced.sort_unstable();
        reduced.dedup();
        if self.rank() == 0 {
            reduced.clear();
        }
        let kept: Vec<usize> = (0..self.rank()).filter(|d| !reduced.contains(d)).collect();
        let perm: Vec<usize> = kept.iter().chain(&reduced).copied().collect();
        let rows: usize = kept.iter().map(|&d| self.shape()[d]).product();
        let len: usize = reduced.iter().map(|&d| self.shape()[d]).product();
        if matches!(op, ReduceOp::Max | ReduceOp::Min | ReduceOp::ArgMax | ReduceOp::ArgMin) {
            assert!(len > 0 || rows == 0, "{}: cannot reduce an empty axis of shape {:?}", op.name(), self.shape());
        }
        let out_shape: Vec<usize> = if keepdim {
            (0..self.rank()).map(|d| if reduced.contains(&d) { 1 } else { self.shape()[d] }).collect()
        } else {
            kept.iter().map(|&d| self.shape()[d]).collect()
        };
        let out_dtype = if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) { DType::I32 } else { DType::F32 };
        // Summing the leading axes of a contiguous tensor (a bias gradient, say) reads the
        // rows in place instead of through a transposing copy, where the backend has the
        // kernel; same order, same bits.
        let leading = reduced.iter().enumerate().all(|(i, &d)| i == d) && !kept.is_empty();
        let in_place_sums = matches!(op, ReduceOp::Sum | ReduceOp::Mean) && leading && self.layout.is_contiguous();
        let sums = if in_place_sums {
            self.storage.column_sums(self.layout.offset, len, rows, op == ReduceOp::Mean)
        } else {
            None
        };
        let out = sums.unwrap_or_else(|| {
            let x = self.detach().permute(&perm).contiguous();
            x.storage.reduce(op, x.layout.offset, rows, len, correction)
        });
        let out = Tensor::from_storage(out, &out_shape, out_dtype);
        if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
            return out;
        }
        Tensor::record(out, GradOp::Reduce { op, axes: reduced, correction }, &[self])
    }

    fn all_axes(&self) -> Vec<isize> {
        (0..self.rank() as isize).collect()
    }

    /// Sum over `axes`; with `keepdim` the reduced axes stay as size 1.
    pub fn sum(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::Sum, axes, keepdim, 0.0)
    }
    pub fn mean(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::Mean, axes, keepdim, 0.0)
    }
    /// Maximum over `axes`; NaN if any element is NaN.
    pub fn max(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::Max, axes, keepdim, 0.0)
    }
    pub fn min(&self, axes: &[isize], keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::Min, axes, keepdim, 0.0)
    }
    /// Variance over `axes` dividing by `n - correction` (PyTorch's default correction is
    /// 1, the unbiased estimate).
    pub fn var(&self, axes: &[isize], correction: f32, keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::Var, axes, keepdim, correction)
    }
    /// `i32` index of the maximum along one axis; the first on ties, NaN counts as largest.
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::ArgMax, &[axis], keepdim, 0.0)
    }
    pub fn argmin(&self, axis: isize, keepdim: bool) -> Tensor {
        self.reduce_axes(ReduceOp::ArgMin, &[axis], keepdim, 0.0)
    }

    /// Sum of all elements, as a 0-dimensional tensor.
    pub fn sum_all(&self) -> Tensor {
        self.sum(&self.all_axes(), false)
    }
    pub fn mean_all(&self) -> Tensor {
        self.mean(&self.all_axes(), false)
    }
    pub fn max_all(&self) -> Tensor {
        self.max(&self.all_axes(), false)
    }
    pub fn min_all(&self) -> Tensor {
        self.min(&self.all_axes(), false)
    }
    pub fn var_all(&self, correction: f32) -> Tensor {
        self.var(&self.all_axes(), correction, false)
    }
    /// Index of the maximum in the flattened tensor, as a 0-dimensional `i32` tensor.
    pub fn argmax_all(&self) -> Tensor {
        self.reshape(&[-1]).argmax(0, false)
    }
    pub fn argmin_all(&self) -> Tensor {
        self.reshape(&[-1]).argmin(0, false)
    }

    // ---- matmul ----

    /// Matrix product with `torch.matmul`'s rules: 1-D operands are promoted to a row
    /// (left) or column (right) and the added axis removed again; leading batch axes
    /// broadcast. Transposed views are multiplied without a copy.
    pub fn matmul(&self, other: &Tensor) -> Tensor {
        self.expect_dtype(DType::F32, "matmul");
        other.expect_dtype(DType::F32, "matmul");
        let MatmulOperands { a, b, la, lb, batch, m, k, n, out_shape } = self.matmul_operands(other, "matmul");
        let dims = MatmulDims { batch: &batch, m, k, n };
        let out = a.storage.matmul(&la, (&b.storage, &lb), dims, Epilogue::NONE);
        let out = Tensor::from_storage(out, &out_shape, DType::F32);
        self.undo_matmul_promotion(other, Tensor::record(out, GradOp::Matmul, &[&a, &b]))
    }

    /// The operands of a matrix product after `torch.matmul`'s rules, checked: 1-D
    /// operands promoted to a row (left) or column (right), the batch axes broadcast. `op`
    /// names the caller in the panic messages. Shared by every matmul flavour.
    pub(super) fn matmul_operands(&self, other: &Tensor, op: &str) -> MatmulOperands {
        self.same_device(other, op);
        assert!(
            self.rank() >= 1 && other.rank() >= 1,
            "{op}: both operands need at least 1 dimension, got {:?} and {:?}",
            self.shape(),
            other.shape()
        );
        let a = if self.rank() == 1 { self.unsqueeze(0) } else { self.clone() };
        let b = if other.rank() == 1 { other.unsqueeze(1) } else { other.clone() };
        let (m, k) = (a.dim(-2), a.dim(-1));
        let (k2, n) = (b.dim(-2), b.dim(-1));
        assert_eq!(
            k,
            k2,
            "{op}: lhs {:?} and rhs {:?} disagree on the inner dimension ({k} vs {k2})",
            self.shape(),
            other.shape()
        );
        let batch = broadcast_shapes(&a.shape()[..a.rank() - 2], &b.shape()[..b.rank() - 2]).unwrap_or_else(|| {
            panic!("{op}: batch dimensions of {:?} and {:?} cannot be broadcast together", self.shape(), other.shape())
        });
        let la = a.layout.broadcast_to(&[batch.as_slice(), &[m, k]].concat());
        let lb = b.layout.broadcast_to(&[batch.as_slice(), &[k, n]].concat());
        let out_shape = [batch.as_slice(), &[m, n]].concat();
        layout::check_shape(&out_shape, op);
        MatmulOperands { a, b, la, lb, batch, m, k, n, out_shape }
    }

    /// Undoes the promotion of 1-D operands in a product `result` of `self` and `other`:
    /// the row axis added to `self` is axis -2 of the product, so it goes first, before
    /// removing the column axis shifts it to -1.
    pub(super) fn undo_matmul_promotion(&self, other: &Tensor, mut result: Tensor) -> Tensor {
        if self.rank() == 1 {
            result = result.squeeze(-2);
        }
        if other.rank() == 1 {
            result = result.squeeze(-1);
        }
        result
    }

    // ---- softmax ----

    fn softmax_op(&self, op: SoftmaxOp, axis: isize) -> Tensor {
        self.expect_dtype(DType::F32, op.name());
        let a = self.axis(axis, op.name());
        if self.rank() == 0 {
            return self.reshape(&[1]).softmax_op(op, 0).reshape(&[]);
        }
        // Move the axis last, normalise rows, and move it back (a view).
        let mut perm: Vec<usize> = (0..self.rank()).filter(|&d| d != a).collect();
        perm.push(a);
        let x = self.detach().permute(&perm).contiguous();
        let len = self.shape()[a];
        let rows = self.numel().checked_div(len).unwrap_or(0);
        let out = Tensor::from_storage(x.storage.softmax(op, x.layout.offset, rows, len), x.shape(), DType::F32);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        Tensor::record(out.permute(&inverse), GradOp::Softmax { op, axis: a }, &[self])
    }

    /// `exp(x) / sum(exp(x))` along `axis`, computed stably.
    pub fn softmax(&self, axis: isize) -> Tensor {
        self.softmax_op(SoftmaxOp::Softmax, axis)
    }

    /// `x - log(sum(exp(x)))` along `axis`, computed stably.
    pub fn log_softmax(&self, axis: isize) -> Tensor {
        self.softmax_op(SoftmaxOp::LogSoftmax, axis)
    }
}

// ---- operator overloads on tensors and references, and with f32 ----

macro_rules! binary_operator {
    ($trait:ident, $method:ident, $op:expr, $scalar:expr, $scalar_lhs:expr) => {
        impl std::ops::$trait<&Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.binary_op(rhs, $op)
            }
        }
        impl std::ops::$trait<Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                self.binary_op(&rhs, $op)
            }
        }
        impl std::ops::$trait<&Tensor> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                self.binary_op(rhs, $op)
            }
        }
        impl std::ops::$trait<Tensor> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                self.binary_op(&rhs, $op)
            }
        }
        impl std::ops::$trait<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                let f: fn(&Tensor, f32) -> Tensor = $scalar;
                f(self, rhs)
            }
        }
        impl std::ops::$trait<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                let f: fn(&Tensor, f32) -> Tensor = $scalar;
                f(&self, rhs)
            }
        }
        impl std::ops::$trait<&Tensor> for f32 {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                let f: fn(f32, &Tensor) -> Tensor = $scalar_lhs;
                f(self, rhs)
            }
        }
        impl std::ops::$trait<Tensor> for f32 {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                let f: fn(f32, &Tensor) -> Tensor = $scalar_lhs;
                f(self, &rhs)
            }
        }
    };
}

binary_operator!(Add, add, BinaryOp::Add, |t, s| t.affine(1.0, s), |s, t| t.affine(1.0, s));
binary_operator!(Sub, sub, BinaryOp::Sub, |t, s| t.affine(1.0, -s), |s, t| t.affine(-1.0, s));
binary_operator!(Mul, mul, BinaryOp::Mul, |t, s| t.affine(s, 0.0), |s, t| t.affine(s, 0.0));
// Division by a scalar multiplies by its reciprocal: one kernel, within one ulp of `x / s`.
binary_operator!(Div, div, BinaryOp::Div, |t, s| t.affine(1.0 / s, 0.0), |s, t| t.recip().affine(s, 0.0));

impl std::ops::Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}

impl std::ops::Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}

/// What [`Tensor::matmul_operands`] returns: the promoted operands, their views broadcast
/// to `[batch.., m, k]` and `[batch.., k, n]`, and the product's shape `[batch.., m, n]`.
pub(super) struct MatmulOperands {
    pub a: Tensor,
    pub b: Tensor,
    pub la: super::Layout,
    pub lb: super::Layout,
    pub batch: Vec<usize>,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub out_shape: Vec<usize>,
}
