//! The CPU backend: every op in plain Rust, written to be obviously correct. It is the
//! reference every WGSL kernel is checked against, and the device users without a GPU
//! train on. Inputs arrive as a slice of the whole storage plus a [`Layout`]; outputs are
//! new contiguous vectors.
//!
//! [`Layout`]: crate::tensor::Layout

pub mod augment;
pub mod batch_norm;
pub mod conv;
pub mod creation;
pub mod elementwise;
pub mod embedding;
pub mod index;
pub mod layer_norm;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod softmax;
