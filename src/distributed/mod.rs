//! Data-parallel training across processes and machines over MPI (feature `mpi`), as
//! PyTorch's `DistributedDataParallel` and Horovod.
//!
//! Every process (a *rank*) holds a whole copy of the model, trains on its own share of
//! each batch, and the ranks average their gradients before every optimizer step, so the
//! copies stay identical and `N` ranks with batch `B` each take the steps one process
//! would take with batch `N·B`. The pieces:
//!
//! - [`World`]: MPI started for this process; its rank and the number of ranks.
//! - [`DistributedDataParallel`]: built over a model, it checks that every rank built the
//!   same model (names, shapes, dtypes and, unless allowed otherwise, values), copies rank
//!   0's parameters and buffers to every rank, and averages the gradients of each step in
//!   buckets (25 MiB by default) with non-blocking all-reduces started during backward.
//! - [`crate::data::DistributedSampler`]: each rank's share of every epoch's order.
//! - [`crate::train::Trainer::data_parallel`]: the training loop's side (averaged
//!   metrics, one set of prints and checkpoints, the batch-count check).
//!
//! ```no_run
//! use wgrad::data::{DataLoader, DistributedSampler, Mnist};
//! use wgrad::distributed::{DistributedDataParallel, World};
//! use wgrad::nn::{self, Module};
//! use wgrad::optim::Adam;
//! use wgrad::train::Trainer;
//! use wgrad::{loss, Device};
//!
//! fn main() -> wgrad::Result<()> {
//!     let world = World::init()?; // under `mpirun -np N`: rank and size from MPI
//!     let dev = Device::cpu();
//!     let data = Mnist::builtin()?;
//!     wgrad::manual_seed(0); // the same initial weights everywhere (checked)
//!     let mut model = nn::Sequential::new()
//!         .add(nn::Flatten::new())
//!         .add(nn::Linear::new(784, 128, &dev))
//!         .add(nn::ReLU)
//!         .add(nn::Linear::new(128, 10, &dev));
//!     let ddp = DistributedDataParallel::new(&model, &world)?;
//!     let train = DataLoader::new(&data.train, 32)
//!         .shuffle(0)
//!         .sampler(DistributedSampler::new(world.size(), world.rank()));
//!     let mut trainer = Trainer::new(Adam::new(model.parameters(), 1e-3), loss::cross_entropy).data_parallel(ddp);
//!     trainer.fit(&mut model, &train, None, 5, &dev)?;
//!     Ok(())
//! }
//! ```
//!
//! Batch norm: by default each rank keeps its own running statistics, computed from its
//! own share of the batch, as PyTorch's DDP with `broadcast_buffers=False`; the batch
//! statistics of a training step are those of the rank's share.
//! [`DistributedDataParallel::broadcast_buffers`] copies rank 0's buffers to every rank,
//! for instance before evaluating or saving. [`SyncBatchNorm`] (PyTorch's `SyncBatchNorm`)
//! is the option that normalises with the statistics of the whole global batch, so that
//! `N` ranks with batch `B` train as one process with batch `N·B` does with batch norm
//! too; it costs two blocking all-reduces of about `C` floats per layer in the forward
//! pass and two in the backward pass. [`all_reduce_sum`] is its differentiable all-reduce.
//!
//! Several machines: MPI starts the processes and carries the messages, so nothing here
//! changes; `mpirun --hostfile hosts -np 8 ...` with the same binary and data on every
//! machine (see the README, "Training on several processes or machines").

mod ddp;
mod sync_batch_norm;
mod world;

pub use ddp::{DdpOptions, DistributedDataParallel};
pub use sync_batch_norm::{all_reduce_sum, SyncBatchNorm};
pub use world::{launched_by_mpirun, World};
