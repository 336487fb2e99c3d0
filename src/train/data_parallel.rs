//! How a [`super::Trainer`] takes part in data-parallel training: the [`DataParallel`]
//! trait, which `wgrad::distributed::DistributedDataParallel` (feature `mpi`) implements
//! over MPI. The trainer knows only this trait, so it builds without MPI.
//!
//! With [`super::Trainer::data_parallel`], `fit` on every process of the run:
//! - checks at the start of each epoch that every process has as many batches (a data-
//!   parallel step waits for all of them; without the check a loader that serves one
//!   process fewer batches would hang the others in their next step),
//! - averages the gradients of each optimizer step across the processes (through
//!   [`DataParallel::backward`], which may overlap the communication with the backward
//!   pass), so the parameters stay the same on every process,
//! - averages the epoch's loss and metrics (and the progress bar's running loss) across
//!   the processes, weighted by their samples, so every process logs the same values and
//!   its callbacks (early stopping, plateau schedules) take the same decisions,
//! - takes a Ctrl-C only at a step every process has reached,
//! - draws the progress bar, prints the epoch lines and writes the resumable checkpoint
//!   on the process of rank 0 only.

use crate::autograd::Gradients;
use crate::Tensor;

/// One process's view of a data-parallel run: its rank among the processes, and the
/// collective operations a trainer needs. Every process must make the same calls in the
/// same order (each is a collective that waits for all of them).
pub trait DataParallel {
    /// This process's place among the processes, from 0.
    fn rank(&self) -> usize;

    /// The number of processes taking part.
    fn world_size(&self) -> usize;

    /// The gradients of `loss` (a scalar) averaged across the processes: every process
    /// gets the same gradients, the mean of each process's own.
    fn backward(&mut self, loss: &Tensor) -> Gradients;

    /// Averages gradients computed otherwise (summed over accumulated batches) across the
    /// processes, in place.
    fn average_gradients(&mut self, grads: &mut Gradients);

    /// Sums `values` element-wise across the processes, in place.
    fn sum(&mut self, values: &mut [f64]);

    /// `value` of every process, by rank.
    fn gather(&mut self, value: u64) -> Vec<u64>;
}
