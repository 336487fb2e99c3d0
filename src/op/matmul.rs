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

/// The sizes of a batched product `[batch.., m, k] x [batch.., k, n]`: the batch shape
/// both operands' views have been broadcast to, and the matrix sizes.
#[derive(Clone, Copy, Debug)]
pub struct MatmulDims<'a> {
    pub batch: &'a [usize],
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// The fused epilogue of a product over buffers of type `B`: an optional bias (its buffer,
/// the element offset it starts at, the axis it follows) and an activation.
#[derive(Debug)]
pub struct Epilogue<'a, B> {
    pub bias: Option<(&'a B, usize, BiasAxis)>,
    pub activation: Activation,
}

impl<B> Epilogue<'_, B> {
    /// The plain product: no bias, no activation.
    pub const NONE: Self = Epilogue { bias: None, activation: Activation::None };

    /// Whether this epilogue leaves the product unchanged.
    pub fn is_none(&self) -> bool {
        self.bias.is_none() && self.activation == Activation::None
    }
}

impl<B> Clone for Epilogue<'_, B> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B> Copy for Epilogue<'_, B> {}
