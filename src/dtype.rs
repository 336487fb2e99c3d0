//! Element types. Tensors carry their dtype at run time: `f32` for values, `i32` for the
//! indices that `argmax` returns and `index_select`/`gather` take, and `f16` (IEEE binary16,
//! `half::f16` on the host) for the operands of half-precision matmul and mixed-precision
//! training (see [`crate::amp`]).
//!
//! `f32` and `i32` are four bytes, so copies of them move raw 32-bit words. `f16` is two
//! bytes: on the CPU it is a `Vec<half::f16>`, on a GPU two elements share each 32-bit
//! word of the buffer (element `i` in the low half of word `i / 2` when `i` is even), and
//! only the kernels of `shaders/half*.wgsl` read or write it. Every other op checks its
//! operands' dtype and panics, naming itself, when given an `f16` tensor.

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
    /// IEEE 754 binary16: 1 sign, 5 exponent and 10 fraction bits, largest finite 65504.
    F16,
}

impl DType {
    /// Bytes one element occupies in storage.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 => 2,
        }
    }

    /// Bytes of device memory that `numel` elements take: rounded up to whole 32-bit
    /// words, because buffer copies and bindings work in units of four bytes.
    pub fn buffer_bytes(self, numel: usize) -> usize {
        // Saturates rather than wraps: an impossible size must fail the size checks.
        numel.checked_mul(self.size_bytes()).and_then(|b| b.checked_next_multiple_of(4)).unwrap_or(usize::MAX)
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
            DType::F16 => "f16",
        })
    }
}

/// A Rust type that can be the element of a tensor.
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    const DTYPE: DType;
    /// Wraps a vector of this type as CPU storage.
    fn into_cpu(v: Vec<Self>) -> crate::storage::CpuData;
    /// Borrows CPU storage as this type, or `None` on a dtype mismatch.
    fn from_cpu(d: &crate::storage::CpuData) -> Option<&[Self]>;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn into_cpu(v: Vec<Self>) -> crate::storage::CpuData {
        crate::storage::CpuData::F32(v)
    }
    fn from_cpu(d: &crate::storage::CpuData) -> Option<&[Self]> {
        match d {
            crate::storage::CpuData::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for i32 {
    const DTYPE: DType = DType::I32;
    fn into_cpu(v: Vec<Self>) -> crate::storage::CpuData {
        crate::storage::CpuData::I32(v)
    }
    fn from_cpu(d: &crate::storage::CpuData) -> Option<&[Self]> {
        match d {
            crate::storage::CpuData::I32(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
    fn into_cpu(v: Vec<Self>) -> crate::storage::CpuData {
        crate::storage::CpuData::F16(v)
    }
    fn from_cpu(d: &crate::storage::CpuData) -> Option<&[Self]> {
        match d {
            crate::storage::CpuData::F16(v) => Some(v),
            _ => None,
        }
    }
}
