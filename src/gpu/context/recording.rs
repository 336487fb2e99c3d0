//! Recording and submitting: dispatches and copies go into one command encoder and their
//! params into one uniform buffer, submitted when the host needs a value or the batch is
//! full; read-backs and uploads are ordered with them.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, MutexGuard};
use std::time::Instant;

use super::stats::Counters;
use super::timestamps::{InFlight, Timestamps, MAP_DONE, MAP_FAILED, MAP_PENDING};
use super::{lock, GpuContext, MAX_DISPATCHES_PER_BATCH, PARAMS_SLOT};
use crate::error::{Error, Result};
use crate::op::KernelRef;
use crate::profile::Clock;

/// Recorded but not yet submitted work.
pub(super) struct Batch {
    /// The compute pass consecutive dispatches share, open on `encoder` until a copy, a
    /// timed dispatch or the submit needs the encoder itself: one pass per run of
    /// dispatches rather than one per dispatch, which is most of wgpu's per-dispatch
    /// encoding cost. wgpu inserts the barriers between the dispatches of a pass. Declared
    /// before `encoder`, so it ends before the encoder drops.
    pub(super) pass: Option<wgpu::ComputePass<'static>>,
    pub(super) encoder: Option<wgpu::CommandEncoder>,
    /// Params of each recorded dispatch, one [`PARAMS_SLOT`] each.
    pub(super) params: Vec<u8>,
    pub(super) dispatches: usize,
    /// The kernels of this batch whose passes write timestamps, in order: the `i`-th wrote
    /// queries `2i` (begin) and `2i + 1` (end). Never longer than `dispatches`.
    pub(super) timed: Vec<KernelRef>,
    /// Timestamp profiling state, made on the first timed dispatch.
    pub(super) timestamps: Option<Timestamps>,
}

impl GpuContext {
    /// The batch being recorded. If a thread panicked while recording, the half-recorded
    /// work is dropped (its encoder may hold an unfinished pass), the loss is reported to
    /// the next fallible call, and recording starts afresh, so the device stays usable.
    pub(super) fn batch(&self) -> MutexGuard<'_, Batch> {
        match self.batch.lock() {
            Ok(batch) => batch,
            Err(poisoned) => {
                let mut batch = poisoned.into_inner();
                self.batch.clear_poison();
                batch.pass = None;
                if batch.encoder.take().is_some() {
                    self.report_error(
                        "an op panicked while recording GPU work; the work recorded since the last submit was dropped"
                            .into(),
                    );
                }
                batch.params.clear();
                batch.dispatches = 0;
                batch.timed.clear();
                batch
            }
        }
    }

    /// Test hook: panics while holding the batch lock, as a failing op could.
    #[doc(hidden)]
    pub fn debug_panic_while_recording(&self) {
        let _batch = self.batch();
        panic!("debug_panic_while_recording: a panic with the batch lock held");
    }

    /// Records one dispatch of `kernel`. `buffers` are the storage bindings in the order
    /// of the file's signature; `params` is the kernel's params struct as bytes.
    ///
    /// The per-dispatch cost on the host is what bounds small training steps on a fast GPU,
    /// so the common path allocates nothing: the pipeline and layout come from caches keyed
    /// by the kernel, the params go into the batch's slot of the one params buffer (bound
    /// with a dynamic offset), the bind group of the same buffers is reused from
    /// `GpuContext::bind_group`, and the dispatch joins the batch's open compute pass.
    pub fn dispatch(&self, kernel: KernelRef, params: &[u8], buffers: &[&wgpu::Buffer], workgroups: [u32; 3]) {
        assert!(params.len() <= PARAMS_SLOT, "params of {} exceed {PARAMS_SLOT} bytes", kernel.entry);
        let timer = self.host_timers.start();
        let compiled = self.kernel(kernel);
        assert_eq!(buffers.len(), compiled.storage, "{}: wrong number of buffers", kernel.entry);
        if workgroups.contains(&0) {
            return;
        }
        log::trace!("dispatch {}::{} {:?}", kernel.file, kernel.entry, workgroups);
        let clock = self.profile_clock();
        let timer = self.host_timers.lap(&self.host_timers.lookup, timer);

        let mut batch = self.batch();
        if batch.dispatches == MAX_DISPATCHES_PER_BATCH {
            self.submit_locked(&mut batch);
        }
        if clock == Some(Clock::Host) {
            // Earlier work must not be counted in this kernel's time.
            self.submit_locked(&mut batch);
            self.wait_idle();
        }
        Counters::bump(&self.counters.dispatches, 1);
        let slot = batch.dispatches * self.params_stride;
        batch.params.resize(slot + self.params_stride, 0);
        batch.params[slot..slot + params.len()].copy_from_slice(params);
        batch.dispatches += 1;
        let timer = self.host_timers.lap(&self.host_timers.params, timer);

        let bind_group = self.bind_group(kernel.file, &compiled.layout, buffers);
        let timer = self.host_timers.lap(&self.host_timers.bind_group, timer);
        let offsets = [slot as u32];
        if clock == Some(Clock::Timestamps) {
            // A timed dispatch gets a pass of its own, whose begin and end write its queries.
            self.timestamps(&mut batch);
            batch.timed.push(kernel);
            let q = 2 * (batch.timed.len() - 1) as u32;
            batch.pass = None;
            let Batch { encoder, timestamps, .. } = &mut *batch;
            let encoder = encoder.get_or_insert_with(|| self.new_encoder());
            let timestamp_writes = wgpu::ComputePassTimestampWrites {
                query_set: &timestamps.as_ref().expect("timestamp state made above").query_set,
                beginning_of_pass_write_index: Some(q),
                end_of_pass_write_index: Some(q + 1),
            };
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(kernel.entry),
                timestamp_writes: Some(timestamp_writes),
            });
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, &bind_group, &offsets);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        } else {
            let pass = self.pass(&mut batch);
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, &bind_group, &offsets);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        self.host_timers.lap(&self.host_timers.encode, timer);
        if clock == Some(Clock::Host) {
            let start = Instant::now();
            self.submit_locked(&mut batch);
            self.wait_idle();
            let ns = start.elapsed().as_secs_f64() * 1e9;
            lock(&self.profile).add(Clock::Host, kernel, ns);
        }
    }

    /// The batch's open compute pass, begun on its encoder if there is none.
    fn pass<'a>(&self, batch: &'a mut Batch) -> &'a mut wgpu::ComputePass<'static> {
        let Batch { encoder, pass, .. } = batch;
        pass.get_or_insert_with(|| {
            let encoder = encoder.get_or_insert_with(|| self.new_encoder());
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("wgrad dispatches"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        })
    }

    pub(super) fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgrad batch") })
    }

    /// Waits until the device has finished everything submitted.
    pub(super) fn try_wait_idle(&self) -> Result<()> {
        match self.device.poll(wgpu::PollType::wait_indefinitely()) {
            Ok(_) => Ok(()),
            // A lost device says why in its callback; prefer that message.
            Err(e) => {
                Err(self.take_error().err().unwrap_or_else(|| Error::Gpu(format!("waiting for the device: {e}"))))
            }
        }
    }

    pub(super) fn wait_idle(&self) {
        self.try_wait_idle().unwrap_or_else(|e| panic!("{e}"));
    }

    /// A new buffer, with out-of-memory and validation errors caught in error scopes:
    /// [`Error::OutOfMemory`] naming `op` and the size, or [`Error::Gpu`].
    pub fn try_create_buffer(&self, desc: &wgpu::BufferDescriptor<'_>, op: &str) -> Result<wgpu::Buffer> {
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out_of_memory = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = self.device.create_buffer(desc);
        // Popped in reverse order of pushing; native back-ends answer at once.
        let out_of_memory = pollster::block_on(out_of_memory.pop());
        let validation = pollster::block_on(validation.pop());
        if let Some(e) = out_of_memory {
            log::debug!("{op}: {e}");
            return Err(Error::OutOfMemory { op: op.to_string(), bytes: desc.size, device: self.adapter.line() });
        }
        if let Some(e) = validation {
            return Err(Error::Gpu(format!("{op}: creating a buffer of {} bytes: {e}", desc.size)));
        }
        Ok(buffer)
    }

    /// The batch's encoder, for commands outside compute passes: ends the open pass first,
    /// so what follows is ordered after the dispatches recorded so far.
    pub(super) fn encoder<'a>(&self, batch: &'a mut Batch) -> &'a mut wgpu::CommandEncoder {
        batch.pass = None;
        batch.encoder.get_or_insert_with(|| self.new_encoder())
    }

    /// Records a buffer-to-buffer copy in the current batch (so it is ordered with the
    /// dispatches around it).
    pub fn record_copy(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut batch = self.batch();
        Counters::bump(&self.counters.copies, 1);
        self.encoder(&mut batch).copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    pub(super) fn submit_locked(&self, batch: &mut Batch) {
        let timer = self.host_timers.start();
        let timed = std::mem::take(&mut batch.timed);
        // The pass must end before its encoder finishes.
        batch.pass = None;
        if let Some(mut encoder) = batch.encoder.take() {
            if batch.dispatches > 0 {
                // Ordered before the command buffer below on the queue timeline, and after
                // every earlier submission that read the previous batch's params.
                self.queue.write_buffer(&self.params_buffer, 0, &batch.params);
            }
            let read_back = (!timed.is_empty()).then(|| {
                let ts = self.timestamps(batch);
                let bytes = 2 * timed.len() as u64 * wgpu::QUERY_SIZE as u64;
                let staging = ts.free.pop().unwrap_or_else(|| {
                    self.device.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("wgrad profile read-back"),
                        size: ts.resolve.size(),
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                });
                encoder.resolve_query_set(&ts.query_set, 0..2 * timed.len() as u32, &ts.resolve, 0);
                encoder.copy_buffer_to_buffer(&ts.resolve, 0, &staging, 0, bytes);
                staging
            });
            self.queue.submit([encoder.finish()]);
            Counters::bump(&self.counters.submits, 1);
            log::trace!("submitted a batch of {} dispatches", batch.dispatches);
            if let Some(staging) = read_back {
                let state = Arc::new(AtomicU8::new(MAP_PENDING));
                let signal = state.clone();
                staging.map_async(wgpu::MapMode::Read, .., move |r| {
                    signal.store(if r.is_ok() { MAP_DONE } else { MAP_FAILED }, Ordering::Release);
                });
                let ts = self.timestamps(batch);
                ts.in_flight.push_back(InFlight { staging, kernels: timed, state });
                // Gathers the batches the device has finished, without waiting for any.
                let _ = self.device.poll(wgpu::PollType::Poll);
                self.collect_timestamps(batch);
            }
        }
        batch.params.clear();
        batch.dispatches = 0;
        self.host_timers.lap(&self.host_timers.submit, timer);
    }

    /// Submits everything recorded so far without waiting for it.
    pub fn flush(&self) {
        let mut batch = self.batch();
        self.submit_locked(&mut batch);
    }

    /// Submits everything recorded and waits until the GPU has finished it. Panics with
    /// the message of [`GpuContext::try_synchronize`]'s error.
    pub fn synchronize(&self) {
        self.try_synchronize().unwrap_or_else(|e| panic!("synchronize: {e}"));
    }

    /// Submits everything recorded, waits until the GPU has finished it, and reports any
    /// error the GPU raised meanwhile (or since the last fallible call) as an `Err`.
    pub fn try_synchronize(&self) -> Result<()> {
        self.take_error()?;
        self.flush();
        self.try_wait_idle()?;
        self.take_error()
    }

    /// As [`GpuContext::try_read_bytes`], panicking with its error's message.
    pub fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Vec<u8> {
        self.try_read_bytes(src, offset, bytes).unwrap_or_else(|e| panic!("reading back from the GPU: {e}"))
    }

    /// Copies `bytes` bytes at `offset` of `src` to the host, after all recorded work. An
    /// error the GPU reported for that work (or since the last fallible call), a lost
    /// device or a read-back buffer that cannot be allocated is an `Err`.
    pub fn try_read_bytes(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Result<Vec<u8>> {
        self.take_error()?;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        // Copies must start and end on 4-byte boundaries; widen the window and trim after.
        let start = offset & !3;
        let end = (offset + bytes).div_ceil(4) * 4;
        let staging = self.try_create_buffer(
            &wgpu::BufferDescriptor {
                label: Some("wgrad read-back"),
                size: end - start,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            },
            "to_vec",
        )?;
        {
            let mut batch = self.batch();
            Counters::bump(&self.counters.read_backs, 1);
            Counters::bump(&self.counters.read_back_bytes, bytes);
            Counters::bump(&self.counters.copies, 1);
            self.encoder(&mut batch).copy_buffer_to_buffer(src, start, &staging, 0, end - start);
            self.submit_locked(&mut batch);
        }
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.try_wait_idle()?;
        self.take_error()?;
        let mapped = pollster::block_on(rx.receive())
            .ok_or_else(|| Error::Gpu("the read-back's map callback was dropped".into()))?;
        mapped.map_err(|e| Error::Gpu(format!("mapping the read-back buffer: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| Error::Gpu(format!("reading the mapped read-back buffer: {e}")))?;
        let lo = (offset - start) as usize;
        let out = view[lo..lo + bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Records an upload of `data` into `dst` at `offset`. The data goes through a staging
    /// buffer and a copy recorded in the batch, so a pooled `dst` that earlier recorded
    /// work still reads is not overwritten ahead of that work (as `queue.write_buffer`,
    /// which runs before the whole batch, would do).
    pub fn record_upload(&self, dst: &wgpu::Buffer, offset: u64, data: &[u8]) {
        self.try_record_upload(dst, offset, data, "upload").unwrap_or_else(|e| panic!("{e}"));
    }

    /// As [`GpuContext::record_upload`], with the staging buffer's allocation failure as
    /// an `Err` naming `op`.
    pub fn try_record_upload(&self, dst: &wgpu::Buffer, offset: u64, data: &[u8], op: &str) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let padded = data.len().div_ceil(4) * 4;
        let staging = self.try_create_buffer(
            &wgpu::BufferDescriptor {
                label: Some("wgrad upload"),
                size: padded as u64,
                usage: wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            },
            op,
        )?;
        {
            let mut view = staging
                .get_mapped_range_mut(..)
                .map_err(|e| Error::Gpu(format!("{op}: writing the upload buffer: {e}")))?;
            view.slice(..data.len()).copy_from_slice(data);
        }
        staging.unmap();
        Counters::bump(&self.counters.uploads, 1);
        Counters::bump(&self.counters.upload_bytes, data.len() as u64);
        self.record_copy(&staging, 0, dst, offset, padded as u64);
        Ok(())
    }
}
