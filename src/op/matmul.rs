//! What a matmul applies to each finished element before storing it: the fused epilogue
//! `activation(sum + bias[..])` of `Tensor::linear` and of a convolution's bias.

use super::UnaryOp;

/// An activation applied inside a GEMM's epilogue (see [`Tensor::linear`]).
///
/// [`Tensor::linear`]: crate::Tensor::linear
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activation {
    /// The product plus bias, unchanged.
    #[default]
    None,
    /// `max(x, 0)` (NaN passes through), as [`Tensor::relu`](crate::Tensor::relu).
    Relu,
    /// `1 / (1 + exp(-x))`, as [`Tensor::sigmoid`](crate::Tensor::sigmoid).
    Sigmoid,
    /// As [`Tensor::tanh`](crate::Tensor::tanh).
    Tanh,
}

impl Activation {
    /// The elementwise op this activation is, if any.
    pub(crate) fn unary_op(self) -> Option<UnaryOp> {
        match self {
            Activation::None => None,
            Activation::Relu => Some(UnaryOp::Relu),
            Activation::Sigmoid => Some(UnaryOp::Sigmoid),
            Activation::Tanh => Some(UnaryOp::Tanh),
        }
    }
}

/// Which output index a fused bias is indexed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BiasAxis {
    /// One bias per output column (`N`): a linear layer's bias, `x W^T + b`.
    Column,
    /// One bias per output row (`M`): a convolution's bias when the product is
    /// `[C_out, C_in*kh*kw] x [C_in*kh*kw, L]` per image.
    Row,
}
