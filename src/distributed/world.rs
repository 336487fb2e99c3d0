//! [`World`]: MPI, started once per process, and the few collectives the rest of
//! `wgrad::distributed` and the training loop need.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;

use crate::{Error, Result};

/// The ranks of a data-parallel run: MPI's world communicator, with this process's rank
/// and the number of ranks. Cheap to clone (one MPI start per process is shared).
///
/// Keep one alive until the end of `main`: MPI is shut down (`MPI_Finalize`) when the
/// last clone is dropped, and `mpirun` reports a process that exits without it as failed.
#[derive(Clone)]
pub struct World {
    inner: Rc<Inner>,
}

struct Inner {
    /// Dropping it finalises MPI; kept only for that.
    _universe: Universe,
    comm: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// The rank among the ranks on this machine.
    local_rank: usize,
}

thread_local! {
    /// The world this thread started, while a clone of it lives. MPI may be started only
    /// once per process; `World::init` hands out that one again.
    static CURRENT: RefCell<Weak<Inner>> = const { RefCell::new(Weak::new()) };
}

/// Whether this process was started by `mpirun` (Open MPI, MPICH's Hydra, or a PMIx
/// launcher such as Slurm's `srun --mpi=pmix`), judged by the variables they set. The
/// examples join a data-parallel run automatically when it is true.
pub fn launched_by_mpirun() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
}

impl World {
    /// Starts MPI in this process (or returns the world already started) and reads the
    /// rank and the number of ranks. Without `mpirun`, MPI starts as a world of one
    /// (a "singleton"). Starting it again after the last `World` was dropped is an error:
    /// MPI cannot be restarted in a process.
    pub fn init() -> Result<World> {
        if let Some(inner) = CURRENT.with(|c| c.borrow().upgrade()) {
            return Ok(World { inner });
        }
        let universe = mpi::initialize().ok_or_else(|| {
            Error::Distributed(
                "MPI was already started and shut down in this process (a World was dropped); keep one World \
                 alive for the whole run"
                    .into(),
            )
        })?;
        let comm = universe.world();
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        // The ranks that share this machine's memory are this machine's ranks.
        let local_rank = comm.split_shared(rank as i32).rank() as usize;
        let inner = Rc::new(Inner { _universe: universe, comm, rank, size, local_rank });
        CURRENT.with(|c| *c.borrow_mut() = Rc::downgrade(&inner));
        Ok(World { inner })
    }

    /// The world started on this thread, while a clone of it lives: how code that cannot
    /// hold a `World` (a gradient rule, a module, both shared across threads) reaches it.
    pub(crate) fn current() -> Option<World> {
        CURRENT.with(|c| c.borrow().upgrade()).map(|inner| World { inner })
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        self.inner.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// This process's rank among the ranks on its machine: which of the machine's GPUs
    /// it takes ([`crate::Device::gpu_for_rank`]).
    pub fn local_rank(&self) -> usize {
        self.inner.local_rank
    }

    /// The name of the machine this rank runs on, as MPI reports it.
    pub fn processor_name(&self) -> String {
        mpi::environment::processor_name().unwrap_or_else(|_| "unknown".into())
    }

    /// The MPI library's version line (`Open MPI v4.1.4, ...`).
    pub fn library_version(&self) -> String {
        mpi::environment::library_version().unwrap_or_else(|_| "unknown".into())
    }

    /// Waits until every rank has called it.
    pub fn barrier(&self) {
        self.inner.comm.barrier();
    }

    /// Sums `send` element-wise across the ranks into `recv` on every rank (a blocking
    /// `MPI_Allreduce`). Panics when the lengths differ.
    pub fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(send.len(), recv.len(), "all_reduce_sum: send has {} values, recv {}", send.len(), recv.len());
        self.inner.comm.all_reduce_into(send, recv, SystemOperation::sum());
    }

    /// Sums `values` element-wise across the ranks, in place.
    pub fn sum_f64(&self, values: &mut [f64]) {
        let send = values.to_vec();
        self.inner.comm.all_reduce_into(&send[..], values, SystemOperation::sum());
    }

    /// The smallest of every rank's `value`.
    pub fn min_u64(&self, value: u64) -> u64 {
        let mut out = 0u64;
        self.inner.comm.all_reduce_into(&value, &mut out, SystemOperation::min());
        out
    }

    /// Every rank's `value`, by rank.
    pub fn gather_u64(&self, value: u64) -> Vec<u64> {
        let mut out = vec![0u64; self.size()];
        self.inner.comm.all_gather_into(&value, &mut out[..]);
        out
    }

    /// Overwrites `buffer` on every rank with rank 0's.
    pub fn broadcast_u64(&self, buffer: &mut [u64]) {
        self.inner.comm.process_at_rank(0).broadcast_into(buffer);
    }

    /// Overwrites `buffer` on every rank with rank 0's.
    pub fn broadcast_f32(&self, buffer: &mut [f32]) {
        self.inner.comm.process_at_rank(0).broadcast_into(buffer);
    }

    /// Overwrites `buffer` on every rank with rank 0's.
    pub fn broadcast_i32(&self, buffer: &mut [i32]) {
        self.inner.comm.process_at_rank(0).broadcast_into(buffer);
    }

    /// Overwrites `buffer` on every rank with rank 0's.
    pub fn broadcast_u16(&self, buffer: &mut [u16]) {
        self.inner.comm.process_at_rank(0).broadcast_into(buffer);
    }

    /// Ends every rank of the run with exit status `code` (`MPI_Abort`): what a rank that
    /// cannot go on calls, so that the others do not wait for it forever.
    pub fn abort(&self, code: i32) -> ! {
        self.inner.comm.abort(code)
    }

    /// The communicator, for the gradient all-reduces.
    pub(super) fn comm(&self) -> &SimpleCommunicator {
        &self.inner.comm
    }
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("rank", &self.rank()).field("size", &self.size()).finish()
    }
}
