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
    },
    ShaderFile { name: "copy", body: include_str!("../../shaders/copy.wgsl"), storage: &[Read, ReadWrite] },
    ShaderFile { name: "creation", body: include_str!("../../shaders/creation.wgsl"), storage: &[ReadWrite] },
    ShaderFile { name: "reduce", body: include_str!("../../shaders/reduce.wgsl"), storage: &[Read, ReadWrite] },
    ShaderFile { name: "argreduce", body: include_str!("../../shaders/argreduce.wgsl"), storage: &[Read, ReadWrite] },
    ShaderFile { name: "softmax", body: include_str!("../../shaders/softmax.wgsl"), storage: &[Read, ReadWrite] },
    ShaderFile {
        name: "matmul",
        body: include_str!("../../shaders/matmul.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
    },
    ShaderFile {
        name: "matmul_vec4",
        body: include_str!("../../shaders/matmul_vec4.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
    },
    ShaderFile {
        name: "optim",
        body: include_str!("../../shaders/optim.wgsl"),
        storage: &[Read, Read, Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
    },
    ShaderFile { name: "scatter", body: include_str!("../../shaders/scatter.wgsl"), storage: &[Read, Read, ReadWrite] },
    ShaderFile { name: "index", body: include_str!("../../shaders/index.wgsl"), storage: &[Read, Read, ReadWrite] },
    ShaderFile { name: "conv", body: include_str!("../../shaders/conv.wgsl"), storage: &[Read, ReadWrite] },
    ShaderFile {
        name: "conv_direct",
        body: include_str!("../../shaders/conv_direct.wgsl"),
        storage: &[Read, Read, Read, ReadWrite],
    },
    ShaderFile {
        name: "pool",
        body: include_str!("../../shaders/pool.wgsl"),
        storage: &[Read, Read, ReadWrite, ReadWrite],
    },
    ShaderFile {
        name: "batch_norm",
        body: include_str!("../../shaders/batch_norm.wgsl"),
        storage: &[Read, Read, Read, Read, ReadWrite],
    },
    ShaderFile { name: "augment", body: include_str!("../../shaders/augment.wgsl"), storage: &[Read, Read, ReadWrite] },
    ShaderFile {
        name: "embedding",
        body: include_str!("../../shaders/embedding.wgsl"),
        storage: &[Read, Read, ReadWrite, ReadWrite],
    },
    ShaderFile {
        name: "layer_norm",
        body: include_str!("../../shaders/layer_norm.wgsl"),
        storage: &[Read, Read, Read, Read, ReadWrite, ReadWrite],
    },
    ShaderFile {
        name: "rnn",
        body: include_str!("../../shaders/rnn.wgsl"),
        storage: &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
    },
    ShaderFile {
        name: "loss",
        body: include_str!("../../shaders/loss.wgsl"),
        storage: &[Read, Read, Read, Read, Read, ReadWrite],
    },
    ShaderFile { name: "half", body: include_str!("../../shaders/half.wgsl"), storage: &[Read, ReadWrite] },
    ShaderFile {
        name: "half_matmul",
        body: include_str!("../../shaders/half_matmul.wgsl"),
        storage: &[Read, Read, ReadWrite],
    },
];

/// The file with this stem. Panics on an unknown name: kernel references are compile-time
/// constants, so a miss is a bug in wgrad, caught by the op coverage test.
pub fn file(name: &str) -> &'static ShaderFile {
    FILES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no shader file named '{name}'"))
}

/// The full source handed to wgpu: the common prelude, then the file.
pub fn full_source(file: &ShaderFile) -> String {
    format!("{COMMON}\n// ---- {}.wgsl ----\n{}", file.name, file.body)
}
