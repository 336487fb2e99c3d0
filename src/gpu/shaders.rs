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
    /// The file's own text, without the common prelude; for a file that uses a shared piece
    /// (the matmul params and epilogue, a workgroup reduction), that piece and then the
    /// file (see `shader_body!`).
    pub body: &'static str,
    /// Storage bindings 1.. in order (binding 0 is always the params uniform).
    pub storage: &'static [Access],
    /// Definitions placed between the common prelude and the body: how two files that
    /// share one body differ (see `elementwise_contiguous`).
    pub defines: &'static str,
    /// WGSL `enable` directives, which must open the module, before the common prelude.
    pub enables: &'static str,
    /// The optional device features the file needs; its pipelines are only created on a
    /// device that has all of them, and the launchers choose it only there.
    pub features: wgpu::Features,
}

impl ShaderFile {
    /// A file of its own body that needs no optional feature.
    const fn plain(name: &'static str, body: &'static str, storage: &'static [Access]) -> ShaderFile {
        ShaderFile { name, body, storage, defines: "", enables: "", features: wgpu::Features::empty() }
    }
}

/// Shared helpers prepended to every file.
pub const COMMON: &str = include_str!("../../shaders/common.wgsl");

use Access::{Read, ReadWrite};

/// A body made of WGSL files of `shaders/` in order: the shared pieces a kernel file uses
/// (params, helpers or workgroup memory that several files share, each written once),
/// then the kernel file itself.
macro_rules! shader_body {
    ($($file:literal),+) => {
        concat!($(include_str!(concat!("../../shaders/", $file))),+)
    };
}

/// A body of the f32 matmul: the shared params, bindings and epilogue, then the kernel `$file`.
macro_rules! matmul_body {
    ($file:literal) => {
        shader_body!("matmul_epilogue.wgsl", $file)
    };
}

/// A body of the f16 matmul: the shared params and bindings, then the kernel `$file`.
macro_rules! half_matmul_body {
    ($file:literal) => {
        shader_body!("half_matmul_params.wgsl", $file)
    };
}

/// The build of half_matmul_coop.wgsl for cooperative tiles of `$t` x `$t`.
#[rustfmt::skip]
macro_rules! half_matmul_coop {
    ($t:literal) => {
        ShaderFile {
            name: concat!("half_matmul_coop", $t),
            body: half_matmul_body!("half_matmul_coop.wgsl"),
            storage: &[Read, Read, ReadWrite],
            defines: concat!(
                "const T: u32 = ", $t, "u;\n",
                "alias CoopA = coop_mat", $t, "x", $t, "<f16, A>;\n",
                "alias CoopB = coop_mat", $t, "x", $t, "<f16, B>;\n",
                "alias CoopC = coop_mat", $t, "x", $t, "<f32, C>;",
            ),
            enables: "enable f16;\nenable wgpu_cooperative_matrix;",
            features: COOPERATIVE_F16_FEATURES,
        }
    };
}

/// The features the cooperative-matrix f16 matmul needs.
/// The bindings of one build of optim.wgsl that updates up to `$segments` parameter
/// tensors per dispatch, and the functions that pick a segment's binding: for each
/// segment `(s, grad binding, param binding)`, then the state arena's binding. WGSL cannot
/// index separate bindings, so the selection is a `switch` over the segments.
macro_rules! optim_segments {
    ($segments:literal; $(($s:literal, $g:literal, $p:literal)),+; $state:literal) => {
        concat!(
            "const SEGMENTS: u32 = ", $segments, "u;\n",
            $(
                "@group(0) @binding(", $g, ") var<storage, read> grad", $s, ": array<f32>;\n",
                "@group(0) @binding(", $p, ") var<storage, read_write> param", $s, ": array<f32>;\n",
            )+
            "@group(0) @binding(", $state, ") var<storage, read_write> state: array<f32>;\n",
            "fn grad_at(s: u32, j: u32) -> f32 {\n    var g = 0.0;\n    switch s {\n",
            $("        case ", $s, "u: { g = grad", $s, "[j]; }\n",)+
            "        default: {}\n    }\n    return g;\n}\n",
            "fn param_at(s: u32, i: u32) -> f32 {\n    var x = 0.0;\n    switch s {\n",
            $("        case ", $s, "u: { x = param", $s, "[i]; }\n",)+
            "        default: {}\n    }\n    return x;\n}\n",
            "fn set_param(s: u32, i: u32, v: f32) {\n    switch s {\n",
            $("        case ", $s, "u: { param", $s, "[i] = v; }\n",)+
            "        default: {}\n    }\n}\n",
        )
    };
}

/// The storage bindings of optim.wgsl built for `(B - 1) / 2` segments: each segment's
/// gradient (read) and parameter (read-write), then the state arena (read-write).
const fn optim_access<const B: usize>() -> [Access; B] {
    let mut access = [ReadWrite; B];
    let mut i = 0;
    while i + 1 < B {
        access[i] = Read;
        i += 2;
    }
    access
}

const OPTIM_ACCESS: [Access; 7] = optim_access();

/// Storage bindings of the wide optimizer build; an adapter whose
/// `max_storage_buffers_per_shader_stage` is at least this runs it.
pub const OPTIM_WIDE_BINDINGS: usize = 25;
const OPTIM_WIDE_ACCESS: [Access; OPTIM_WIDE_BINDINGS] = optim_access();

pub const COOPERATIVE_F16_FEATURES: wgpu::Features =
    wgpu::Features::SHADER_F16.union(wgpu::Features::SUBGROUP).union(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);

/// The builds of half_matmul_coop.wgsl in the order a device prefers them: the tile size
/// (square, f16 inputs, f32 accumulator) and the file.
pub const HALF_MATMUL_COOP_BUILDS: [(u32, &str); 2] = [(16, "half_matmul_coop16"), (8, "half_matmul_coop8")];

/// The build of half_matmul_coop.wgsl for tiles of `tile` x `tile`. Panics on a size
/// without a build: tile sizes come from [`HALF_MATMUL_COOP_BUILDS`].
pub fn half_matmul_coop_file(tile: u32) -> &'static str {
    HALF_MATMUL_COOP_BUILDS
        .iter()
        .find(|&&(t, _)| t == tile)
        .map(|&(_, file)| file)
        .unwrap_or_else(|| panic!("no half_matmul_coop build for {tile}x{tile} tiles"))
}

/// Every kernel file. The naga test validates each and translates it to every back-end.
pub const FILES: &[ShaderFile] = &[
    ShaderFile {
        defines: "const CONTIGUOUS: bool = false;",
        ..ShaderFile::plain(
            "elementwise",
            shader_body!("elementwise_params.wgsl", "elementwise.wgsl"),
            &[Read, Read, Read, ReadWrite],
        )
    },
    // The same kernels for operands that are all contiguous, chosen by the launcher: with
    // the strided index path folded away at compile time, not skipped at run time, a
    // software adapter runs them several times faster (lavapipe compiles both sides of a
    // uniform branch).
    ShaderFile {
        defines: "const CONTIGUOUS: bool = true;",
        ..ShaderFile::plain(
            "elementwise_contiguous",
            shader_body!("elementwise_params.wgsl", "elementwise.wgsl"),
            &[Read, Read, Read, ReadWrite],
        )
    },
    ShaderFile {
        defines: "const DST_CONTIGUOUS: bool = false;",
        ..ShaderFile::plain("copy", shader_body!("elementwise_params.wgsl", "copy.wgsl"), &[Read, ReadWrite])
    },
    ShaderFile {
        defines: "const DST_CONTIGUOUS: bool = true;",
        ..ShaderFile::plain(
            "copy_to_contiguous",
            shader_body!("elementwise_params.wgsl", "copy.wgsl"),
            &[Read, ReadWrite],
        )
    },
    ShaderFile::plain("creation", include_str!("../../shaders/creation.wgsl"), &[ReadWrite]),
    ShaderFile::plain(
        "reduce",
        shader_body!("reduce_params.wgsl", "workgroup_reduce.wgsl", "reduce.wgsl"),
        &[Read, ReadWrite],
    ),
    ShaderFile::plain("argreduce", shader_body!("reduce_params.wgsl", "argreduce.wgsl"), &[Read, ReadWrite]),
    ShaderFile::plain("softmax", shader_body!("workgroup_reduce.wgsl", "softmax.wgsl"), &[Read, ReadWrite]),
    ShaderFile::plain("matmul", matmul_body!("matmul.wgsl"), &[Read, Read, Read, ReadWrite]),
    ShaderFile::plain("matmul_vec4", matmul_body!("matmul_vec4.wgsl"), &[Read, Read, Read, ReadWrite]),
    // Three parameter tensors per dispatch: seven storage bindings, for every adapter.
    ShaderFile {
        defines: optim_segments!(3; (0, 1, 2), (1, 3, 4), (2, 5, 6); 7),
        ..ShaderFile::plain("optim", include_str!("../../shaders/optim.wgsl"), &OPTIM_ACCESS)
    },
    // Twelve per dispatch: 25 storage bindings, for adapters that allow them
    // (`OPTIM_WIDE_BINDINGS`).
    ShaderFile {
        defines: optim_segments!(12;
            (0, 1, 2), (1, 3, 4), (2, 5, 6), (3, 7, 8), (4, 9, 10), (5, 11, 12),
            (6, 13, 14), (7, 15, 16), (8, 17, 18), (9, 19, 20), (10, 21, 22), (11, 23, 24); 25),
        ..ShaderFile::plain("optim_wide", include_str!("../../shaders/optim.wgsl"), &OPTIM_WIDE_ACCESS)
    },
    ShaderFile::plain("scatter", shader_body!("index_params.wgsl", "scatter.wgsl"), &[Read, Read, ReadWrite]),
    ShaderFile::plain("index", shader_body!("index_params.wgsl", "index.wgsl"), &[Read, Read, ReadWrite]),
    ShaderFile::plain("conv", include_str!("../../shaders/conv.wgsl"), &[Read, ReadWrite]),
    ShaderFile::plain("conv_direct", include_str!("../../shaders/conv_direct.wgsl"), &[Read, Read, Read, ReadWrite]),
    ShaderFile::plain("pool", include_str!("../../shaders/pool.wgsl"), &[Read, Read, ReadWrite, ReadWrite]),
    ShaderFile::plain(
        "batch_norm",
        shader_body!("workgroup_sum_vec2.wgsl", "batch_norm.wgsl"),
        &[Read, Read, Read, Read, ReadWrite],
    ),
    ShaderFile::plain("augment", include_str!("../../shaders/augment.wgsl"), &[Read, Read, ReadWrite]),
    ShaderFile::plain("embedding", include_str!("../../shaders/embedding.wgsl"), &[Read, Read, ReadWrite, ReadWrite]),
    ShaderFile::plain(
        "layer_norm",
        shader_body!("workgroup_sum_vec2.wgsl", "layer_norm.wgsl"),
        &[Read, Read, Read, Read, ReadWrite, ReadWrite],
    ),
    ShaderFile::plain(
        "rnn",
        include_str!("../../shaders/rnn.wgsl"),
        &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
    ),
    ShaderFile::plain(
        "lstm_sequence",
        include_str!("../../shaders/lstm_sequence.wgsl"),
        &[Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
    ),
    ShaderFile::plain(
        "loss",
        shader_body!("workgroup_sum_vec2.wgsl", "loss.wgsl"),
        &[Read, Read, Read, Read, Read, ReadWrite],
    ),
    ShaderFile::plain("half", include_str!("../../shaders/half.wgsl"), &[Read, ReadWrite]),
    ShaderFile::plain("half_matmul", half_matmul_body!("half_matmul.wgsl"), &[Read, Read, ReadWrite]),
    half_matmul_coop!(8),
    half_matmul_coop!(16),
];

/// The file with this stem. Panics on an unknown name: kernel references are compile-time
/// constants, so a miss is a bug in wgrad, caught by the op coverage test.
pub fn file(name: &str) -> &'static ShaderFile {
    FILES.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no shader file named '{name}'"))
}

/// The full source handed to wgpu: the file's enables, the common prelude, the file's
/// defines, then the file.
pub fn full_source(file: &ShaderFile) -> String {
    format!("{}\n{COMMON}\n{}\n// ---- {}.wgsl ----\n{}", file.enables, file.defines, file.name, file.body)
}
