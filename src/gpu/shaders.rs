//! The WGSL sources, embedded at compile time, and the binding signature of each file.
//!
//! Every file starts with `shaders/common.wgsl` (dispatch folding and shared helpers),
//! prepended here because WGSL has no `#include`. All entry points of one file share its
//! bindings: binding 0 is the params uniform, then the storage buffers in the order the
//! signature lists them. An entry point that does not use an input is still given a buffer
//! for it (the launcher repeats one it has), so one explicit bind group layout serves the
//! whole file.

/// How one binding of a kernel file is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// A storage buffer the kernel only reads.
    Read,
    /// A storage buffer the kernel writes.
    ReadWrite,
}

/// One WGSL file of `shaders/`.
#[derive(Debug)]
pub struct ShaderFile {
    /// File stem, matching [`crate::op::KernelRef::file`].
    pub name: &'static str,
    /// The file's own text, without the common prelude.
    pub body: &'static str,
    /// Storage bindings 1.. in order (binding 0 is always the params uniform).
    pub storage: &'static [Access],
    /// Definitions placed between the common prelude and the body: how two files that
    /// share one body differ (see `elementwise_contiguous`).
    pub defines: &'static str,
}

/// Shared helpers prepended to every file.
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

use Access::{Read, ReadWrite};

/// Every kernel file. The naga test validates each and translates it to every back-end.
pub const FILES: &[ShaderFile] = &[
    ShaderFile {
        name: "elementwise",
        body: include_str!("../../shaders/elementwise.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
        defines: "const CONTIGUOUS: bool = false;",
    },
    // The same kernels for operands that are all contiguous, chosen by the launcher: with
    // the strided index path folded away at compile time, not skipped at run time, a
    // software adapter runs them several times faster (lavapipe compiles both sides of a
    // uniform branch).
    ShaderFile {
        name: "elementwise_contiguous",
        body: include_str!("../../shaders/elementwise.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
        defines: "const CONTIGUOUS: bool = true;",
    },
    ShaderFile {
        name: "copy",
        body: include_str!("../../shaders/copy.wgsl"),
        storage: &[Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "creation",
        body: include_str!("../../shaders/creation.wgsl"),
        storage: &[ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "reduce",
        body: include_str!("../../shaders/reduce.wgsl"),
        storage: &[Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "argreduce",
        body: include_str!("../../shaders/argreduce.wgsl"),
        storage: &[Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "softmax",
        body: include_str!("../../shaders/softmax.wgsl"),
        storage: &[Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "matmul",
        body: include_str!("../../shaders/matmul.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "matmul_vec4",
        body: include_str!("../../shaders/matmul_vec4.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "optim",
        body: include_str!("../../shaders/optim.wgsl"),
        storage: &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "scatter",
        body: include_str!("../../shaders/scatter.wgsl"),
        storage: &[Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "index",
        body: include_str!("../../shaders/index.wgsl"),
        storage: &[Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "conv",
        body: include_str!("../../shaders/conv.wgsl"),
        storage: &[Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "conv_direct",
        body: include_str!("../../shaders/conv_direct.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "pool",
        body: include_str!("../../shaders/pool.wgsl"),
        storage: &[Read, Read, ReadWrite, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "batch_norm",
        body: include_str!("../../shaders/batch_norm.wgsl"),
        storage: &[Read, Read, Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "augment",
        body: include_str!("../../shaders/augment.wgsl"),
        storage: &[Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "embedding",
        body: include_str!("../../shaders/embedding.wgsl"),
        storage: &[Read, Read, ReadWrite, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "layer_norm",
        body: include_str!("../../shaders/layer_norm.wgsl"),
        storage: &[Read, Read, Read, Read, ReadWrite, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "rnn",
        body: include_str!("../../shaders/rnn.wgsl"),
        storage: &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "loss",
        body: include_str!("../../shaders/loss.wgsl"),
        storage: &[Read, Read, Read, Read, Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "half",
        body: include_str!("../../shaders/half.wgsl"),
        storage: &[Read, ReadWrite],
        defines: "",
    },
    ShaderFile {
        name: "half_matmul",
        body: include_str!("../../shaders/half_matmul.wgsl"),
        storage: &[Read, Read, ReadWrite],
        defines: "",
    },
];

/// The file with this stem. Panics on an unknown name: kernel references are compile-time
/// constants, so a miss is a bug in wgrad, caught by the op coverage test.
pub fn file(name: &str) -> &'static ShaderFile {
    FILES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no shader file named '{name}'"))
}

/// The full source handed to wgpu: the common prelude, the file's defines, then the file.
pub fn full_source(file: &ShaderFile) -> String {
    format!("{COMMON}\n{}\n// ---- {}.wgsl ----\n{}", file.defines, file.name, file.body)
}
