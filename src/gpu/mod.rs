//! The wgpu backend: the device context with its pipeline cache, buffer pool and batch of
//! recorded work (`context`, `pool`), the embedded WGSL (`shaders`), and one launcher file
//! per kernel family (`kernels`, also reachable as `launch`), each of which declares the
//! params struct its shader expects (`params`), fills it and records the dispatch.

pub(crate) mod backend;
pub mod context;
pub mod kernels;
mod params;
pub mod pool;
pub mod shaders;
pub mod tuning;

pub use context::GpuContext;
/// Every launcher under one name (`launch::matmul`), whichever family file holds it.
pub use kernels as launch;
pub use pool::GpuBuffer;
