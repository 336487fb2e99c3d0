//! Counting the work a device is given: always on, one relaxed atomic add per event.

use std::sync::atomic::{AtomicU64, Ordering};

use super::GpuContext;

/// Counts of the work a device has been given since it opened (or since
/// [`GpuContext::reset_stats`]): the figures that say whether a workload is bound by
/// kernel launches and host round trips rather than by the kernels themselves.
///
/// Counting is always on and costs one relaxed atomic add per event. Differences of two
/// snapshots (`after - before`) count the work in between; a device shared by several
/// threads counts all of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// Compute dispatches recorded (one per kernel launch; launches of zero workgroups are
    /// skipped and not counted).
    pub dispatches: u64,
    /// Command buffers submitted to the queue: one per batch, so one per
    /// [`MAX_DISPATCHES_PER_BATCH`] dispatches at best, plus one per read-back or
    /// synchronisation (and one per dispatch while profiling with the host clock).
    ///
    /// [`MAX_DISPATCHES_PER_BATCH`]: super::MAX_DISPATCHES_PER_BATCH
    pub submits: u64,
    /// Buffer-to-buffer copies recorded, those of uploads and read-backs included.
    pub copies: u64,
    /// Uploads of host data into device buffers.
    pub uploads: u64,
    /// Bytes uploaded.
    pub upload_bytes: u64,
    /// Read-backs of device data to the host; each waits until the device is idle.
    pub read_backs: u64,
    /// Bytes read back.
    pub read_back_bytes: u64,
}

impl std::ops::Sub for DeviceStats {
    type Output = DeviceStats;

    /// The work done between two snapshots (saturating, in case of a reset in between).
    fn sub(self, earlier: DeviceStats) -> DeviceStats {
        DeviceStats {
            dispatches: self.dispatches.saturating_sub(earlier.dispatches),
            submits: self.submits.saturating_sub(earlier.submits),
            copies: self.copies.saturating_sub(earlier.copies),
            uploads: self.uploads.saturating_sub(earlier.uploads),
            upload_bytes: self.upload_bytes.saturating_sub(earlier.upload_bytes),
            read_backs: self.read_backs.saturating_sub(earlier.read_backs),
            read_back_bytes: self.read_back_bytes.saturating_sub(earlier.read_back_bytes),
        }
    }
}

/// The atomic twin of [`DeviceStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) dispatches: AtomicU64,
    pub(super) submits: AtomicU64,
    pub(super) copies: AtomicU64,
    pub(super) uploads: AtomicU64,
    pub(super) upload_bytes: AtomicU64,
    pub(super) read_backs: AtomicU64,
    pub(super) read_back_bytes: AtomicU64,
}

impl Counters {
    pub(super) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> DeviceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DeviceStats {
            dispatches: get(&self.dispatches),
            submits: get(&self.submits),
            copies: get(&self.copies),
            uploads: get(&self.uploads),
            upload_bytes: get(&self.upload_bytes),
            read_backs: get(&self.read_backs),
            read_back_bytes: get(&self.read_back_bytes),
        }
    }

    pub(super) fn reset(&self) {
        for c in [
            &self.dispatches,
            &self.submits,
            &self.copies,
            &self.uploads,
            &self.upload_bytes,
            &self.read_backs,
            &self.read_back_bytes,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

impl GpuContext {
    /// What this device has been given so far; see [`DeviceStats`].
    pub fn stats(&self) -> DeviceStats {
        self.counters.snapshot()
    }

    /// Sets every [`DeviceStats`] counter back to zero.
    pub fn reset_stats(&self) {
        self.counters.reset();
    }
}

/// Where the host's time went while recording GPU work, summed since
/// [`GpuContext::set_host_timing`] turned timing on: the figures that split the cost of
/// a dispatch between wgrad's own recording and wgpu's. Times are nanoseconds of the
/// calling thread's wall clock. What a step costs beyond their sum is wgrad's bookkeeping
/// above the recording layer (tensors, autograd, buffer pool).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostTimes {
    /// Finding the dispatch's shader file, compiled pipeline and bind group layout.
    pub lookup_ns: u64,
    /// Taking the batch and copying the dispatch's params into it.
    pub params_ns: u64,
    /// Creating (or finding) the dispatch's bind group: wgpu-core's validation of every binding.
    pub bind_group_ns: u64,
    /// Recording the compute pass: pipeline, bind group and dispatch (wgpu-core's encoding
    /// and resource tracking).
    pub encode_ns: u64,
    /// Submitting batches: the params upload, finishing the encoder and the queue submit.
    pub submit_ns: u64,
}

impl std::ops::Sub for HostTimes {
    type Output = HostTimes;
    fn sub(self, earlier: HostTimes) -> HostTimes {
        HostTimes {
            lookup_ns: self.lookup_ns.saturating_sub(earlier.lookup_ns),
            params_ns: self.params_ns.saturating_sub(earlier.params_ns),
            bind_group_ns: self.bind_group_ns.saturating_sub(earlier.bind_group_ns),
            encode_ns: self.encode_ns.saturating_sub(earlier.encode_ns),
            submit_ns: self.submit_ns.saturating_sub(earlier.submit_ns),
        }
    }
}

/// The atomic twin of [`HostTimes`], with its switch.
#[derive(Default)]
pub(super) struct HostTimers {
    pub(super) on: std::sync::atomic::AtomicBool,
    pub(super) lookup: AtomicU64,
    pub(super) params: AtomicU64,
    pub(super) bind_group: AtomicU64,
    pub(super) encode: AtomicU64,
    pub(super) submit: AtomicU64,
}

impl HostTimers {
    /// The current instant when timing is on: the start of a phase.
    pub(super) fn start(&self) -> Option<std::time::Instant> {
        self.on.load(Ordering::Relaxed).then(std::time::Instant::now)
    }

    /// Adds the time since `start` to `phase` and returns the new start.
    pub(super) fn lap(&self, phase: &AtomicU64, start: Option<std::time::Instant>) -> Option<std::time::Instant> {
        let start = start?;
        let now = std::time::Instant::now();
        phase.fetch_add((now - start).as_nanos() as u64, Ordering::Relaxed);
        Some(now)
    }
}

impl GpuContext {
    /// Turns the host-time breakdown of [`GpuContext::host_times`] on or off (off by
    /// default: it reads the clock a few times per dispatch).
    pub fn set_host_timing(&self, on: bool) {
        self.host_timers.on.store(on, Ordering::Relaxed);
    }

    /// The host time spent recording and submitting, by phase, while timing was on.
    pub fn host_times(&self) -> HostTimes {
        let t = &self.host_timers;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HostTimes {
            lookup_ns: get(&t.lookup),
            params_ns: get(&t.params),
            bind_group_ns: get(&t.bind_group),
            encode_ns: get(&t.encode),
            submit_ns: get(&t.submit),
        }
    }
}
