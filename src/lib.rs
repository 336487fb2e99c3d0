//! # wgrad
//!
//! A deep-learning framework whose kernels are WGSL compute shaders run through wgpu
//! (Vulkan, Metal, DX12, GL), with a plain-Rust CPU backend that is the reference for
//! every kernel.
//!
//! ```
//! use wgrad::{Device, Tensor};
//! let dev = Device::cpu(); // or Device::auto()?: the best GPU, else the CPU
//! let x = Tensor::randn(&[4, 8], 42, &dev);
//! let w = Tensor::randn(&[8, 3], 7, &dev);
//! let p = x.matmul(&w).softmax(1);
//! let rows: Vec<f32> = p.sum(&[1], false).to_vec();
//! assert!(rows.iter().all(|s| (s - 1.0).abs() < 1e-5));
//! ```
//!
//! The layout of the crate follows its architecture: [`op`] lists every op and the
//! parameter types both backends take; `cpu` holds their reference implementations, `gpu`
//! their launchers and `shaders/` their kernels, both behind one `Backend` trait that the
//! storage alone dispatches to; [`Tensor`] is the public face of all of them, [`nn`] builds
//! models from it and [`train`] trains them. With the `mpi` feature, `distributed` trains
//! one model across processes and machines (data parallelism over MPI).
//!
//! ## Building a program that uses wgrad
//!
//! Cargo applies wgrad's `[profile]` settings only to builds of wgrad's own workspace, so a
//! program's debug build compiles wgrad unoptimised, and its CPU kernels then run 20 to 30
//! times slower (one MNIST CNN epoch: 72 s instead of 2.7 s on two cores). Optimise the
//! dependencies and keep your own crate a debug build, in your `Cargo.toml`:
//!
//! ```toml
//! [profile.dev.package."*"]
//! opt-level = 3
//! debug-assertions = false
//! overflow-checks = false
//! ```

// `#[derive(Module)]` names `::wgrad`, which is this crate: the derive works inside it too.
extern crate self as wgrad;

pub mod amp;
pub mod autograd;
mod backend;
pub mod checkpoint;
pub mod conformance;
pub mod cpu;
pub mod data;
mod device;
#[cfg(feature = "mpi")]
pub mod distributed;
mod dtype;
mod error;
pub mod gpu;
pub mod init;
pub mod loss;
pub mod metrics;
pub mod nn;
pub mod op;
pub mod optim;
pub mod profile;
mod random;
pub mod receipt;
pub mod shadow;
mod storage;
mod tensor;
pub mod testing;
pub mod train;

pub use autograd::{no_grad, Gradients, NoGradGuard, TensorId};
pub use device::{list_adapters, Device};
pub use dtype::{DType, Element};
pub use error::{Error, Result};
pub use gpu::context::{DeviceStats, HostTimes};
pub use gpu::pool::PoolStats;
pub use random::{manual_seed, Generator};
pub use tensor::Activation;
pub use tensor::{
    broadcast_shapes, embedding_index_checks, im2col_budget, set_embedding_index_checks, set_im2col_budget, AttnMask,
    AvgPool2dOptions, Conv1dOptions, ConvOptions, Layout, MaxPool2dOptions, RnnLayerOutput, RnnMode, RnnWeights, Size2,
    Tensor, MAX_DIMS,
};
pub use tensor::{conv_algorithm, with_conv_algorithm, ConvAlgorithm};
