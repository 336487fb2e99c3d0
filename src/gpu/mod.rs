//! The wgpu backend: the device context with its pipeline cache, buffer pool and batch of
//! recorded work (`context`, `pool`), the embedded WGSL (`shaders`), and one launcher per
//! op family (`launch`), which fills the params struct a kernel expects and records the
//! dispatch.

pub mod context;
pub mod launch;
mod params;
pub mod pool;
pub mod shaders;
pub mod tuning;

pub use context::GpuContext;
pub use pool::GpuBuffer;
