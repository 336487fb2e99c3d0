//! Timing each dispatch while profiling: with timestamp queries, one pair per compute pass
//! in a query set as large as a batch, resolved at each submit and mapped asynchronously;
//! or, without them, by waiting for each dispatch on its own (see `recording`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use super::recording::Batch;
use super::{lock, GpuContext, MAX_DISPATCHES_PER_BATCH};
use crate::op::KernelRef;
use crate::profile::{Clock, DeviceProfile};

/// Queries of a whole batch and the read-backs of their values.
pub(super) struct Timestamps {
    /// Two queries per dispatch of a full batch: a batch is submitted before it holds more
    /// than [`MAX_DISPATCHES_PER_BATCH`] dispatches, so the set never overflows.
    pub(super) query_set: wgpu::QuerySet,
    /// Where the queries are resolved to, then copied from into a mappable buffer.
    pub(super) resolve: wgpu::Buffer,
    /// Mappable buffers not in use, each large enough for a full batch.
    pub(super) free: Vec<wgpu::Buffer>,
    /// Submitted batches whose timestamps are on their way to the host, oldest first.
    pub(super) in_flight: VecDeque<InFlight>,
    /// Nanoseconds per tick.
    pub(super) period_ns: f32,
}

pub(super) const MAP_PENDING: u8 = 0;

pub(super) const MAP_DONE: u8 = 1;

pub(super) const MAP_FAILED: u8 = 2;

/// One submitted batch's timestamps being mapped.
pub(super) struct InFlight {
    pub(super) staging: wgpu::Buffer,
    pub(super) kernels: Vec<KernelRef>,
    /// Set by the map callback: [`MAP_DONE`] or [`MAP_FAILED`].
    pub(super) state: Arc<AtomicU8>,
}

impl GpuContext {
    /// The clock this device times dispatches with right now, if profiling is on.
    pub fn profile_clock(&self) -> Option<Clock> {
        match crate::profile::requested_clock()? {
            Clock::Timestamps if self.features.contains(wgpu::Features::TIMESTAMP_QUERY) => Some(Clock::Timestamps),
            _ => Some(Clock::Host),
        }
    }

    /// The timestamp state, made on first use: a query set and resolve buffer for a full batch.
    pub(super) fn timestamps<'a>(&self, batch: &'a mut Batch) -> &'a mut Timestamps {
        batch.timestamps.get_or_insert_with(|| {
            let queries = 2 * MAX_DISPATCHES_PER_BATCH as u32;
            debug_assert!(queries <= wgpu::QUERY_SET_MAX_QUERIES);
            Timestamps {
                query_set: self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("wgrad profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: queries,
                }),
                resolve: self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("wgrad profile resolve"),
                    size: queries as u64 * wgpu::QUERY_SIZE as u64,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                }),
                free: Vec::new(),
                in_flight: VecDeque::new(),
                period_ns: self.queue.get_timestamp_period(),
            }
        })
    }

    /// Adds the kernel times of every batch whose timestamps have reached the host.
    pub(super) fn collect_timestamps(&self, batch: &mut Batch) {
        let Some(ts) = batch.timestamps.as_mut() else { return };
        while let Some(front) = ts.in_flight.front() {
            match front.state.load(Ordering::Acquire) {
                MAP_PENDING => break,
                MAP_DONE => {
                    let done = ts.in_flight.pop_front().expect("front exists");
                    {
                        let view = done.staging.get_mapped_range(..).expect("mapped above");
                        let ticks: &[u64] = bytemuck::cast_slice(&view[..done.kernels.len() * 16]);
                        let mut sums = lock(&self.profile);
                        for (kernel, pair) in done.kernels.iter().zip(ticks.chunks_exact(2)) {
                            // A timestamp pair out of order (possible across power states on
                            // some GPUs) counts the call with no time rather than a wrapped one.
                            let ns = pair[1].saturating_sub(pair[0]) as f64 * ts.period_ns as f64;
                            sums.add(Clock::Timestamps, *kernel, ns);
                        }
                    }
                    done.staging.unmap();
                    ts.free.push(done.staging);
                }
                _ => {
                    let lost = ts.in_flight.pop_front().expect("front exists");
                    log::warn!("profile: mapping the timestamps of {} dispatches failed", lost.kernels.len());
                }
            }
        }
    }

    /// Submits the recorded work, waits for it and gathers every timestamp in flight.
    pub(super) fn settle_profile(&self) {
        self.flush();
        if let Err(e) = self.try_wait_idle() {
            log::warn!("profile: {e}");
        }
        let mut batch = self.batch();
        self.collect_timestamps(&mut batch);
    }

    /// This device's profile tables (one per clock used), after waiting for the
    /// timestamps in flight.
    pub(crate) fn profile_tables(&self) -> Vec<DeviceProfile> {
        self.settle_profile();
        let period = self.batch().timestamps.as_ref().map(|t| t.period_ns);
        let mut sums = lock(&self.profile);
        sums.unreported = false;
        sums.tables(&self.adapter.line(), period)
    }

    /// Forgets the kernel times gathered so far, in flight included.
    pub(crate) fn reset_profile(&self) {
        self.settle_profile();
        lock(&self.profile).clear();
    }
}
