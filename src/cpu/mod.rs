//! The CPU backend: every op in plain Rust, written to be obviously correct. It is the
//! reference every WGSL kernel is checked against, and the device users without a GPU
//! train on. Inputs arrive as a slice of the whole storage plus a [`Layout`]; outputs are
//! new contiguous vectors.
//!
//! # Threads
//!
//! Kernels whose work is large enough ([`parallel::MIN_PARALLEL_WORK`]) split their
//! output across rayon's global thread pool: elementwise ops and copies by runs of
//! elements, reductions and softmax by rows, pooling by planes, batch norm by channels
//! (statistics) and rows (the normalisation), layer norm by rows, embeddings by rows,
//! the recurrent cells by batch rows, augmentation by images, random fills by elements.
//! The pool has one thread per logical core unless `RAYON_NUM_THREADS` says otherwise
//! (or the application configures rayon's global pool before the first op runs).
//!
//! Every output element is computed by one thread with the same operations in the same
//! order as on one thread, so results are bit-identical for every thread count: the CPU
//! backend stays a deterministic reference. No kernel sums partial results across threads.
//!
//! Matrix products go to `matrixmultiply`, which has its own threads (up to 4, set by
//! `MATMUL_NUM_THREADS`, default the number of physical cores). It is only ever called
//! from the thread that runs the op, never from inside a rayon task, so the two pools take
//! turns instead of competing for the cores: while a GEMM runs the rayon workers are idle,
//! and the GEMM's workers are idle while a rayon kernel runs.
//!
//! [`Layout`]: crate::tensor::Layout

pub mod augment;
pub mod batch_norm;
pub mod conv;
pub mod creation;
pub mod elementwise;
pub mod embedding;
pub mod half;
pub mod index;
pub mod layer_norm;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod softmax;
