//! The shape arithmetic of a 2-D convolution and the layouts of its column matrix, which
//! the CPU loops, the GPU launchers and the tensor layer all read.

/// The shape arithmetic of one 2-D convolution over an NCHW batch, shared by the CPU
/// loops, the GPU launcher and the tensor layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    pub batch: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// Output height and width.
    pub out: [usize; 2],
}

/// Where entry `(image, row, position)` of a column matrix lives: `image * n_stride +
/// row * r_stride + position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnLayout {
    pub n_stride: usize,
    pub r_stride: usize,
}

impl ConvGeometry {
    /// Rows of the column matrix: one per (channel, kernel row, kernel column).
    pub fn rows(&self) -> usize {
        self.channels * self.kernel[0] * self.kernel[1]
    }

    /// Output positions per image.
    pub fn positions(&self) -> usize {
        self.out[0] * self.out[1]
    }

    /// `[N, rows, L]`: each image's columns together, as the forward matmul reads them.
    pub fn image_major(&self) -> ColumnLayout {
        ColumnLayout { n_stride: self.rows() * self.positions(), r_stride: self.positions() }
    }

    /// `[rows, N, L]`: each row across all images, so one matmul contracts over images and
    /// positions together (the weight gradient).
    pub fn row_major(&self) -> ColumnLayout {
        ColumnLayout { n_stride: self.positions(), r_stride: self.batch * self.positions() }
    }
}

impl ConvGeometry {
    /// A 1x1 kernel with unit stride and no padding reads every input element once, in
    /// order: its column matrix is the input itself.
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
    }
}

/// How the channels of a convolution split: `groups` independent groups, `out_channels`
/// outputs in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvChannels {
    pub groups: usize,
    pub out_channels: usize,
}

/// How `conv2d` computes a convolution's forward pass on the GPU (the CPU backend has one
/// way). [`ConvAlgorithm::Auto`] (the default) picks per shape; the others force one way,
/// to compare them or to test each.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ConvAlgorithm {
    /// The faster measured choice for the shape: see [`ConvAlgorithm::Direct`].
    #[default]
    Auto,
    /// Unfold the input into a column matrix and multiply it by the weights with the
    /// matmul kernel, in chunks of the batch.
    Im2col,
    /// The `conv2d_direct` kernel: no column matrix, the bias in its epilogue. `Auto` takes
    /// it for every forward pass except a 1x1 convolution with unit stride and no padding
    /// (a plain matmul).
    Direct,
}

impl ConvAlgorithm {
    /// Whether a backend with a direct kernel runs it for the forward pass of `g`.
    pub fn is_direct_for(self, g: &ConvGeometry) -> bool {
        match self {
            ConvAlgorithm::Direct => true,
            ConvAlgorithm::Im2col => false,
            ConvAlgorithm::Auto => !g.is_pointwise(),
        }
    }
}
