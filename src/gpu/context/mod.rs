//! The wgpu device and everything that lives as long as it: the pipeline cache, the
//! buffer pool and the batch of recorded dispatches.
//!
//! Work is recorded, not run: every launcher appends a dispatch to the open compute pass of
//! one shared command encoder (a copy ends the pass; the next dispatch opens another), and
//! the encoder is submitted only when the host needs a value (a read-back, `synchronize`)
//! or when [`MAX_DISPATCHES_PER_BATCH`] dispatches have been recorded. The params of every
//! dispatch in a batch go into one uniform buffer, written once at submit, which each
//! dispatch binds at its own dynamic offset, so a bind group serves every dispatch over the
//! same buffers and is made once (see `pipelines`).
//!
//! The context also counts what it is given (dispatches, submits, copies, uploads,
//! read-backs: [`DeviceStats`], always on) and, when [`crate::profile`] is on, times each
//! dispatch: with timestamp queries, one pair per dispatch (each then in a pass of its
//! own) in a query set as large as a batch, resolved into a read-back buffer at each
//! submit and mapped asynchronously, so profiling neither breaks batching nor waits for
//! the GPU; or, without them, by waiting for each dispatch on its own.
//!
//! The context is split by concern: `adapter` opens a device on the adapter chosen,
//! `pipelines` compiles and caches each kernel's pipeline and bind groups, `recording` records
//! dispatches and copies into the batch and submits it, `stats` counts the work and
//! `timestamps` times it while profiling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::pool::BufferPool;
use crate::error::{Error, Result};
use crate::profile::ProfileSums;

mod adapter;
mod pipelines;
mod recording;
mod stats;
mod timestamps;

pub use adapter::{cooperative_f16_tile, wanted_features, AdapterSummary};
use recording::Batch;
use stats::{Counters, HostTimers};
pub use stats::{DeviceStats, HostTimes};

/// Dispatches recorded before the batch is submitted without being asked.
pub const MAX_DISPATCHES_PER_BATCH: usize = 256;

/// Room reserved for one dispatch's params; every params struct fits in it.
pub const PARAMS_SLOT: usize = 256;

/// Workgroup size of every 1-D kernel (must match `WG` in `shaders/common.wgsl`).
pub const WORKGROUP_SIZE: u32 = 256;

/// How many read-write bindings of one dispatch may be left unused (see
/// [`GpuContext::unused_binding`]): the optimizer's missing parameter segments (a
/// dispatch of four parameters on its twelve-segment build leaves eight).
pub const UNUSED_BINDINGS: usize = 8;

/// The bit pattern written into outputs before kernels run when poisoning is on: a quiet
/// NaN with a payload no arithmetic produces.
pub const POISON_BITS: u32 = 0x7FC0_BAD0;

/// Locks `m`, recovering the data when a thread panicked while holding it: no state here
/// is left half-updated by a panic in a way later calls cannot live with (the batch,
/// the one exception, is reset by [`GpuContext::batch`]), so one failed op must not make
/// every later op on the shared device panic with `PoisonError`.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Errors wgpu reported outside an error scope, and the loss of the device: set by the
/// device's callbacks (any thread), read by the next fallible call.
#[derive(Default)]
struct GpuErrors {
    /// The first error not yet reported, and how many followed it.
    pending: Option<(String, usize)>,
    /// Why the device was lost; reported to every later call.
    lost: Option<String>,
}

impl GpuErrors {
    fn push(&mut self, message: String) {
        match &mut self.pending {
            Some((_, more)) => *more += 1,
            None => self.pending = Some((message, 0)),
        }
    }
}

/// An open wgpu device with its caches. Shared by every tensor on it through an `Arc`.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    /// The cooperative-matrix tile size (8 or 16) of the f16 matmul, when the device runs
    /// it on cooperative matrices; see [`cooperative_f16_tile`].
    pub cooperative_f16_tile: Option<u32>,
    pub(crate) pool: Mutex<BufferPool>,
    layouts: Mutex<HashMap<&'static str, wgpu::BindGroupLayout>>,
    kernels: Mutex<pipelines::Kernels>,
    bind_groups: Mutex<pipelines::BindGroups>,
    batch: Mutex<Batch>,
    /// The uniform buffer that holds the params of the batch being recorded.
    params_buffer: wgpu::Buffer,
    /// See [`GpuContext::unused_binding`].
    unused_bindings: [wgpu::Buffer; UNUSED_BINDINGS],
    params_stride: usize,
    poison: AtomicBool,
    /// See [`GpuContext::set_whole_sequence_lstm`].
    whole_sequence_lstm: AtomicBool,
    counters: Counters,
    host_timers: HostTimers,
    /// Kernel times gathered while profiling.
    profile: Mutex<ProfileSums>,
    /// GPU errors waiting to be reported (see [`GpuContext::take_error`]).
    errors: Arc<Mutex<GpuErrors>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuContext({})", self.adapter.line())
    }
}

impl GpuContext {
    /// Turns output poisoning on or off: every buffer handed to a kernel as output is first
    /// filled with [`POISON_BITS`], so an element a kernel forgets to write shows up as NaN.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    pub fn poison_enabled(&self) -> bool {
        self.poison.load(Ordering::Relaxed)
    }

    /// Whether an LSTM layer whose hidden size fits one workgroup runs as one
    /// whole-sequence dispatch per direction (lstm_sequence.wgsl) or as one recurrent
    /// matmul and one cell dispatch per step. The two agree to rounding. On by default on
    /// hardware adapters (and the noop device), where a step's cost is the dispatches';
    /// off on software adapters, where the kernel's per-thread loops run slower than the
    /// tiled matmul.
    pub fn set_whole_sequence_lstm(&self, on: bool) {
        self.whole_sequence_lstm.store(on, Ordering::Relaxed);
    }

    /// See [`GpuContext::set_whole_sequence_lstm`].
    pub fn whole_sequence_lstm(&self) -> bool {
        self.whole_sequence_lstm.load(Ordering::Relaxed)
    }

    /// The error the GPU reported since the last call, if any, as [`Error::Gpu`] (the first
    /// one, with a count of the others); a lost device is reported every time.
    pub fn take_error(&self) -> Result<()> {
        let mut errors = lock(&self.errors);
        if let Some(lost) = &errors.lost {
            return Err(Error::Gpu(format!("{lost} ({})", self.adapter.line())));
        }
        match errors.pending.take() {
            None => Ok(()),
            Some((first, 0)) => Err(Error::Gpu(first)),
            Some((first, more)) => Err(Error::Gpu(format!("{first} (and {more} more errors)"))),
        }
    }

    /// Records an error found on the host side (a poisoned batch) for the next fallible call.
    fn report_error(&self, message: String) {
        log::error!("{message}");
        lock(&self.errors).push(message);
    }

    /// A small storage buffer to bind where an entry point has a read-write binding it
    /// never touches. A written binding may not alias any other binding of the dispatch,
    /// so repeating an operand there is refused; distinct `k` (below [`UNUSED_BINDINGS`])
    /// give distinct buffers for a dispatch with several such bindings. Read-only bindings
    /// an entry point skips may simply repeat any operand.
    pub fn unused_binding(&self, k: usize) -> &wgpu::Buffer {
        &self.unused_bindings[k]
    }

    /// Fails with [`Error::TooLarge`] when `bytes` cannot be bound as one storage buffer.
    pub fn check_size(&self, bytes: u64) -> Result<()> {
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::TooLarge { bytes, limit, adapter: self.adapter.line() });
        }
        Ok(())
    }

    /// Splits a count of workgroups into a grid that respects the per-dimension limit;
    /// kernels recover the linear workgroup index with `linear_workgroup` in common.wgsl.
    pub fn fold_workgroups(&self, count: u32) -> [u32; 3] {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        if count <= max {
            [count, 1, 1]
        } else {
            let y = count.div_ceil(max);
            [max, y, 1]
        }
    }
}

impl Drop for GpuContext {
    /// A context that goes away with kernel times nobody has asked for prints them, so a
    /// profiled run that forgot `profile::print_report()` still shows its table (for
    /// contexts that are dropped at all: the shared ones live in statics).
    fn drop(&mut self) {
        let unreported = self.profile.get_mut().map(|s| s.unreported).unwrap_or(false);
        if unreported && !std::thread::panicking() {
            for table in self.profile_tables() {
                eprint!("{table}");
            }
        }
    }
}
