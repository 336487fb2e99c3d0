//! Unary, binary and where over strided views (broadcast dimensions have stride 0).

use crate::op::{BinaryOp, UnaryOp};
use crate::tensor::Layout;

/// The value of a unary op at one element: the definition every kernel is checked against.
pub fn unary_scalar(op: UnaryOp, x: f32, s0: f32, s1: f32) -> f32 {
    match op {
        UnaryOp::Copy => x,
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Square => x * x,
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Sin => x.sin(),
        UnaryOp::Cos => x.cos(),
        UnaryOp::Affine => x * s0 + s1,
        UnaryOp::PowScalar => x.powf(s0),
        UnaryOp::Clamp => {
            if x.is_nan() {
                x
            } else {
                x.max(s0).min(s1)
            }
        }
        UnaryOp::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        UnaryOp::LeakyRelu => {
            if x > 0.0 {
                x
            } else {
                s0 * x
            }
        }
        UnaryOp::Elu => {
            if x > 0.0 {
                x
            } else {
                s0 * x.exp_m1()
            }
        }
        UnaryOp::Sigmoid => (1.0 / (1.0 + (-(x as f64)).exp())) as f32,
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Gelu => {
            let x = x as f64;
            (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
        }
        UnaryOp::Softplus => {
            // PyTorch's default threshold: above 20 the result is x itself.
            if x > 20.0 {
                x
            } else {
                (x as f64).exp().ln_1p() as f32
            }
        }
        UnaryOp::Silu => {
            let x = x as f64;
            (x / (1.0 + (-x).exp())) as f32
        }
        UnaryOp::GeluGrad => {
            let x = x as f64;
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
            (cdf + x * pdf) as f32
        }
    }
}

/// NaN-propagating maximum, as `torch.maximum`.
fn nan_max(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.max(y)
    }
}

fn nan_min(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.min(y)
    }
}

fn mask(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The value of a binary op at one pair of elements.
pub fn binary_scalar(op: BinaryOp, x: f32, y: f32) -> f32 {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
        BinaryOp::Pow => x.powf(y),
        BinaryOp::Maximum => nan_max(x, y),
        BinaryOp::Minimum => nan_min(x, y),
        BinaryOp::Eq => mask(x == y),
        BinaryOp::Ne => mask(x != y),
        BinaryOp::Lt => mask(x < y),
        BinaryOp::Le => mask(x <= y),
        BinaryOp::Gt => mask(x > y),
        BinaryOp::Ge => mask(x >= y),
    }
}

/// `op` applied to every element of the view `layout` of `src`, in row-major order.
pub fn unary(op: UnaryOp, s0: f32, s1: f32, src: &[f32], layout: &Layout) -> Vec<f32> {
    layout.storage_indices().map(|i| unary_scalar(op, src[i], s0, s1)).collect()
}

/// `op` applied to two views that already have the output's shape (broadcast by strides).
pub fn binary(op: BinaryOp, a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    la.storage_indices().zip(lb.storage_indices()).map(|(i, j)| binary_scalar(op, a[i], b[j])).collect()
}

/// `a` where `cond != 0`, else `b`; all three views have the output's shape.
pub fn where_select(cond: &[f32], lc: &Layout, a: &[f32], la: &Layout, b: &[f32], lb: &Layout) -> Vec<f32> {
    lc.storage_indices()
        .zip(la.storage_indices().zip(lb.storage_indices()))
        .map(|(c, (i, j))| if cond[c] != 0.0 { a[i] } else { b[j] })
        .collect()
}

/// Copies the view `ls` of `src` into the view `ld` of `dst` (same shape), word for word.
pub fn copy_into(src: &[u32], ls: &Layout, dst: &mut [u32], ld: &Layout) {
    debug_assert_eq!(ls.shape, ld.shape);
    for (i, j) in ls.storage_indices().zip(ld.storage_indices()) {
        dst[j] = src[i];
    }
}
