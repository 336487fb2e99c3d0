//! The sizes of a 2-D pooling over the planes of an NCHW tensor, which the tensor layer
//! checks once and both backends read.

/// The sizes of one 2-D pooling: how many planes, the input and output plane sizes, the
/// window, and for average pooling what the sum is divided by. The GPU launcher copies
/// these into the params of `shaders/pool.wgsl`; the CPU loops add the window arithmetic
/// (`cpu::pool`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolGeometry {
    /// `N * C`: the number of planes pooled independently.
    pub planes: usize,
    /// Input plane height.
    pub in_h: usize,
    /// Input plane width.
    pub in_w: usize,
    /// Output plane height.
    pub out_h: usize,
    /// Output plane width.
    pub out_w: usize,
    /// Window size `[kh, kw]` (unused by adaptive pooling, whose windows follow from the
    /// input and output sizes).
    pub kernel: [usize; 2],
    /// Step between windows `[sh, sw]`.
    pub stride: [usize; 2],
    /// Implicit padding on each side `[ph, pw]`.
    pub padding: [usize; 2],
    /// Spacing of the window's taps `[dh, dw]` (max pooling only; 1 elsewhere).
    pub dilation: [usize; 2],
    /// Average pooling: whether padded positions count in the divisor.
    pub count_include_pad: bool,
    /// Average pooling: a divisor that replaces the element count.
    pub divisor_override: Option<usize>,
}

impl PoolGeometry {
    /// Elements in one input plane.
    pub fn in_plane(&self) -> usize {
        self.in_h * self.in_w
    }

    /// Elements in one output plane.
    pub fn out_plane(&self) -> usize {
        self.out_h * self.out_w
    }
}
