//! Element types. Tensors carry their dtype at run time: `f32` for values, `i32` for the
//! indices that `argmax` returns and `index_select`/`gather` take. Every dtype is four
//! bytes today, which lets copies move raw words; `f16` will follow behind `SHADER_F16`.

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    I32,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        4
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::I32 => "i32",
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
