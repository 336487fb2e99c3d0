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
//! Matrix products go to [`gemm::sgemm`] (the `gemm` crate), which splits a large product
//! over blocks of its output on the same rayon pool, so GEMMs and the other kernels share
//! one set of threads. A GEMM inside a kernel that is already split across the pool (one
//! image of a convolution per task) runs on its task's thread. On a CPU with AVX-512F the
//! convolutions and the LSTM run their products on [`packed`]'s register-blocked kernels
//! instead: a right-hand operand packed once into 64-wide panels, and for the stride-1
//! convolution forward and the weight gradient a left-hand operand read straight from the
//! image at per-row starts and per-step offsets ([`packed::gemm_gathered_transposed`]),
//! so nothing is unfolded. They too give each output element one fixed order of
//! multiply-adds, so the same bits on any thread count.
//!
//! [`Layout`]: crate::op::layout::Layout

pub(crate) mod alloc;
pub mod augment;
pub(crate) mod backend;
pub mod batch_norm;
pub mod conv;
pub mod creation;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod half;
pub mod index;
pub mod layer_norm;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod packed;
pub mod parallel;
pub mod pool;
pub mod reduce;
pub mod rnn;
pub mod softmax;
