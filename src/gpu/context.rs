//! The wgpu device and everything that lives as long as it: the pipeline cache, the
//! buffer pool and the batch of recorded dispatches.
//!
//! Work is recorded, not run: every launcher appends a compute pass to one shared command
//! encoder, and the encoder is submitted only when the host needs a value (a read-back,
//! `synchronize`) or when [`MAX_DISPATCHES_PER_BATCH`] passes have been recorded. The
//! params of every dispatch in a batch go into one uniform buffer, written once at submit.
//!
//! The context also counts what it is given (dispatches, submits, copies, uploads,
//! read-backs: [`DeviceStats`], always on) and, when [`crate::profile`] is on, times each
//! dispatch: with timestamp queries, one pair per compute pass in a query set as large as
//! a batch, resolved into a read-back buffer at each submit and mapped asynchronously, so
//! profiling neither breaks batching nor waits for the GPU; or, without them, by waiting
//! for each dispatch on its own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::pool::BufferPool;
use super::shaders::{self, Access, COOPERATIVE_F16_FEATURES, HALF_MATMUL_COOP_BUILDS};
use crate::error::{Error, Result};
use crate::op::KernelRef;
use crate::profile::{Clock, DeviceProfile, ProfileSums};

/// Dispatches recorded before the batch is submitted without being asked.
pub const MAX_DISPATCHES_PER_BATCH: usize = 256;
/// Room reserved for one dispatch's params; every params struct fits in it.
pub const PARAMS_SLOT: usize = 256;
/// Workgroup size of every 1-D kernel (must match `WG` in `shaders/common.wgsl`).
pub const WORKGROUP_SIZE: u32 = 256;
/// The bit pattern written into outputs before kernels run when poisoning is on: a quiet
/// NaN with a payload no arithmetic produces.
pub const POISON_BITS: u32 = 0x7FC0_BAD0;

/// Facts about the adapter a device was opened on.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
    pub driver_info: String,
}

impl AdapterSummary {
    pub fn from_info(info: &wgpu::AdapterInfo) -> Self {
        AdapterSummary {
            name: info.name.clone(),
            backend: info.backend,
            device_type: info.device_type,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }

    /// Software rasterisers: Mesa's llvmpipe/lavapipe, Microsoft WARP, SwiftShader.
    pub fn is_software(&self) -> bool {
        let name = self.name.to_lowercase();
        self.device_type == wgpu::DeviceType::Cpu
            || ["llvmpipe", "lavapipe", "swiftshader", "basic render driver", "warp"].iter().any(|s| name.contains(s))
    }

    pub fn line(&self) -> String {
        format!("{} | {:?} | {:?}", self.name, self.backend, self.device_type)
    }
}

/// Recorded but not yet submitted work.
struct Batch {
    encoder: Option<wgpu::CommandEncoder>,
    /// Params of each recorded dispatch, one [`PARAMS_SLOT`] each.
    params: Vec<u8>,
    dispatches: usize,
    /// The kernels of this batch whose passes write timestamps, in order: the `i`-th wrote
    /// queries `2i` (begin) and `2i + 1` (end). Never longer than `dispatches`.
    timed: Vec<KernelRef>,
    /// Timestamp profiling state, made on the first timed dispatch.
    timestamps: Option<Timestamps>,
}

/// Queries of a whole batch and the read-backs of their values.
struct Timestamps {
    /// Two queries per dispatch of a full batch: a batch is submitted before it holds more
    /// than [`MAX_DISPATCHES_PER_BATCH`] dispatches, so the set never overflows.
    query_set: wgpu::QuerySet,
    /// Where the queries are resolved to, then copied from into a mappable buffer.
    resolve: wgpu::Buffer,
    /// Mappable buffers not in use, each large enough for a full batch.
    free: Vec<wgpu::Buffer>,
    /// Submitted batches whose timestamps are on their way to the host, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Nanoseconds per tick.
    period_ns: f32,
}

const MAP_PENDING: u8 = 0;
const MAP_DONE: u8 = 1;
const MAP_FAILED: u8 = 2;

/// One submitted batch's timestamps being mapped.
struct InFlight {
    staging: wgpu::Buffer,
    kernels: Vec<KernelRef>,
    /// Set by the map callback: [`MAP_DONE`] or [`MAP_FAILED`].
    state: Arc<AtomicU8>,
}

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
struct Counters {
    dispatches: AtomicU64,
    submits: AtomicU64,
    copies: AtomicU64,
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    read_backs: AtomicU64,
    read_back_bytes: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn snapshot(&self) -> DeviceStats {
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

    fn reset(&self) {
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
    layouts: Mutex<HashMap<&'static str, Arc<wgpu::BindGroupLayout>>>,
    pipelines: Mutex<HashMap<KernelRef, Arc<wgpu::ComputePipeline>>>,
    batch: Mutex<Batch>,
    /// The uniform buffer that holds the params of the batch being recorded.
    params_buffer: wgpu::Buffer,
    params_stride: usize,
    poison: AtomicBool,
    counters: Counters,
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

/// The optional features wgrad uses when an adapter has them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP
}

/// The tile size of the f16 matmul on cooperative matrices for this adapter, if it runs
/// there: the adapter has [`COOPERATIVE_F16_FEATURES`] and a subgroup-scoped configuration
/// of one of [`shaders::HALF_MATMUL_COOP_BUILDS`]' square tile sizes with f16 inputs and an
/// f32 accumulator (the larger preferred).
///
/// `WGRAD_COOPERATIVE_MATRIX=0` keeps every adapter on the portable kernel, `=1` lets a
/// software adapter use it too; by default only hardware adapters do, where the units are
/// real (a software adapter emulates them, more slowly than the portable kernel runs).
pub fn cooperative_f16_tile(adapter: &wgpu::Adapter, software: bool) -> Option<u32> {
    let wanted = match std::env::var("WGRAD_COOPERATIVE_MATRIX").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => !software,
    };
    if !wanted || !adapter.features().contains(COOPERATIVE_F16_FEATURES) {
        return None;
    }
    let props = adapter.cooperative_matrix_properties();
    HALF_MATMUL_COOP_BUILDS.into_iter().map(|(t, _)| t).find(|&t| {
        props.iter().any(|c| {
            (c.m_size, c.n_size, c.k_size) == (t, t, t)
                && c.ab_type == wgpu::CooperativeScalarType::F16
                && c.cr_type == wgpu::CooperativeScalarType::F32
        })
    })
}

impl GpuContext {
    /// Opens a device on `adapter` with the adapter's own limits and whichever optional
    /// features it has.
    pub fn open(adapter: &wgpu::Adapter) -> Result<GpuContext> {
        let info = adapter.get_info();
        let summary = AdapterSummary::from_info(&info);
        let limits = adapter.limits();
        let cooperative_f16_tile = cooperative_f16_tile(adapter, summary.is_software());
        let mut features = adapter.features() & wanted_features();
        let mut experimental_features = wgpu::ExperimentalFeatures::disabled();
        if cooperative_f16_tile.is_some() {
            features |= COOPERATIVE_F16_FEATURES;
            // SAFETY: wgpu marks cooperative matrices experimental: its validation of them
            // is incomplete. The one kernel that uses them (half_matmul_coop.wgsl) stages
            // every operand through bounds-checked workgroup tiles, and its results are
            // cross-checked against the portable kernel by the tests.
            experimental_features = unsafe { wgpu::ExperimentalFeatures::enabled() };
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features,
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice { adapter: summary.line(), reason: e.to_string() })?;
        let params_stride = PARAMS_SLOT.max(limits.min_uniform_buffer_offset_alignment as usize);
        let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad params"),
            size: (params_stride * MAX_DISPATCHES_PER_BATCH) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // wgpu's default handler panics on any error not caught by an error scope, from
        // whichever call noticed it, often with the batch lock held. Errors are kept
        // instead and reported by the next fallible call as `Error::Gpu`.
        let errors = Arc::new(Mutex::new(GpuErrors::default()));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("GPU error: {e}");
            lock(&sink).push(e.to_string());
        }));
        let sink = errors.clone();
        device.set_device_lost_callback(move |reason, message| {
            if reason != wgpu::DeviceLostReason::Destroyed || !message.is_empty() {
                log::error!("GPU device lost ({reason:?}): {message}");
            }
            lock(&sink).lost.get_or_insert(format!("the device was lost ({reason:?}): {message}"));
        });
        log::info!("opened {} (driver {} {})", summary.line(), summary.driver, summary.driver_info);
        crate::profile::env_mode();
        Ok(GpuContext {
            device,
            queue,
            adapter: summary,
            limits,
            features,
            cooperative_f16_tile,
            pool: Mutex::new(BufferPool::default()),
            layouts: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            batch: Mutex::new(Batch {
                encoder: None,
                params: Vec::new(),
                dispatches: 0,
                timed: Vec::new(),
                timestamps: None,
            }),
            params_buffer,
            params_stride,
            poison: AtomicBool::new(false),
            counters: Counters::default(),
            profile: Mutex::new(ProfileSums::default()),
            errors,
        })
    }

    /// Turns output poisoning on or off: every buffer handed to a kernel as output is first
    /// filled with [`POISON_BITS`], so an element a kernel forgets to write shows up as NaN.
    pub fn set_poison(&self, on: bool) {
        self.poison.store(on, Ordering::Relaxed);
    }

    pub fn poison_enabled(&self) -> bool {
        self.poison.load(Ordering::Relaxed)
    }

    /// What this device has been given so far; see [`DeviceStats`].
    pub fn stats(&self) -> DeviceStats {
        self.counters.snapshot()
    }

    /// Sets every [`DeviceStats`] counter back to zero.
    pub fn reset_stats(&self) {
        self.counters.reset();
    }

    /// The clock this device times dispatches with right now, if profiling is on.
    pub fn profile_clock(&self) -> Option<Clock> {
        match crate::profile::requested_clock()? {
            Clock::Timestamps if self.features.contains(wgpu::Features::TIMESTAMP_QUERY) => Some(Clock::Timestamps),
            _ => Some(Clock::Host),
        }
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

    /// The batch being recorded. If a thread panicked while recording, the half-recorded
    /// work is dropped (its encoder may hold an unfinished pass), the loss is reported to
    /// the next fallible call, and recording starts afresh, so the device stays usable.
    fn batch(&self) -> MutexGuard<'_, Batch> {
        match self.batch.lock() {
            Ok(batch) => batch,
            Err(poisoned) => {
                let mut batch = poisoned.into_inner();
                self.batch.clear_poison();
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

    /// Fails with [`Error::TooLarge`] when `bytes` cannot be bound as one storage buffer.
    pub fn check_size(&self, bytes: u64) -> Result<()> {
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::TooLarge { bytes, limit, adapter: self.adapter.line() });
        }
        Ok(())
    }

    fn bind_group_layout(&self, file: &'static str) -> Arc<wgpu::BindGroupLayout> {
        let mut layouts = lock(&self.layouts);
        layouts
            .entry(file)
            .or_insert_with(|| {
                let spec = shaders::file(file);
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                }];
                for (i, access) in spec.storage.iter().enumerate() {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: i as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: *access == Access::Read },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                }
                Arc::new(self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(file),
                    entries: &entries,
                }))
            })
            .clone()
    }

    /// The compiled pipeline for a kernel, compiling it on first use.
    fn pipeline(&self, kernel: KernelRef) -> Arc<wgpu::ComputePipeline> {
        if let Some(p) = lock(&self.pipelines).get(&kernel) {
            return p.clone();
        }
        let spec = shaders::file(kernel.file);
        assert!(
            self.features.contains(spec.features),
            "{}.wgsl needs {:?}, which {} was not opened with (a launcher chose a kernel the device cannot run)",
            kernel.file,
            spec.features - self.features,
            self.adapter.line()
        );
        let source = shaders::full_source(spec);
        if std::env::var_os("WGRAD_LOG_WGSL").is_some() {
            log::debug!("WGSL of {}.wgsl:\n{source}", kernel.file);
        }
        log::debug!("creating pipeline {}::{}", kernel.file, kernel.entry);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.file),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let layout = self.bind_group_layout(kernel.file);
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = Arc::new(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        lock(&self.pipelines).insert(kernel, pipeline.clone());
        pipeline
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

    /// Records one dispatch of `kernel`. `buffers` are the storage bindings in the order
    /// of the file's signature; `params` is the kernel's params struct as bytes.
    pub fn dispatch(&self, kernel: KernelRef, params: &[u8], buffers: &[&wgpu::Buffer], workgroups: [u32; 3]) {
        assert!(params.len() <= PARAMS_SLOT, "params of {} exceed {PARAMS_SLOT} bytes", kernel.entry);
        let spec = shaders::file(kernel.file);
        assert_eq!(buffers.len(), spec.storage.len(), "{}: wrong number of buffers", kernel.entry);
        if workgroups.contains(&0) {
            return;
        }
        let pipeline = self.pipeline(kernel);
        let layout = self.bind_group_layout(kernel.file);
        log::trace!("dispatch {}::{} {:?}", kernel.file, kernel.entry, workgroups);
        let clock = self.profile_clock();

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

        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_buffer,
                offset: slot as u64,
                size: wgpu::BufferSize::new(PARAMS_SLOT as u64),
            }),
        }];
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.entry),
            layout: &layout,
            entries: &entries,
        });
        let query = (clock == Some(Clock::Timestamps)).then(|| {
            self.timestamps(&mut batch);
            batch.timed.push(kernel);
            2 * (batch.timed.len() - 1) as u32
        });
        {
            let Batch { encoder, timestamps, .. } = &mut *batch;
            let encoder = encoder.get_or_insert_with(|| self.new_encoder());
            let timestamp_writes = query.map(|q| wgpu::ComputePassTimestampWrites {
                query_set: &timestamps.as_ref().expect("timestamp state made above").query_set,
                beginning_of_pass_write_index: Some(q),
                end_of_pass_write_index: Some(q + 1),
            });
            let mut pass = encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.entry), timestamp_writes });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
        }
        if clock == Some(Clock::Host) {
            let start = Instant::now();
            self.submit_locked(&mut batch);
            self.wait_idle();
            let ns = start.elapsed().as_secs_f64() * 1e9;
            lock(&self.profile).add(Clock::Host, kernel, ns);
        }
    }

    /// The timestamp state, made on first use: a query set and resolve buffer for a full batch.
    fn timestamps<'a>(&self, batch: &'a mut Batch) -> &'a mut Timestamps {
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

    fn new_encoder(&self) -> wgpu::CommandEncoder {
        self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgrad batch") })
    }

    /// Waits until the device has finished everything submitted.
    fn try_wait_idle(&self) -> Result<()> {
        match self.device.poll(wgpu::PollType::wait_indefinitely()) {
            Ok(_) => Ok(()),
            // A lost device says why in its callback; prefer that message.
            Err(e) => {
                Err(self.take_error().err().unwrap_or_else(|| Error::Gpu(format!("waiting for the device: {e}"))))
            }
        }
    }

    fn wait_idle(&self) {
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

    fn encoder<'a>(&self, batch: &'a mut Batch) -> &'a mut wgpu::CommandEncoder {
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

    fn submit_locked(&self, batch: &mut Batch) {
        let timed = std::mem::take(&mut batch.timed);
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
    }

    /// Adds the kernel times of every batch whose timestamps have reached the host.
    fn collect_timestamps(&self, batch: &mut Batch) {
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
    fn settle_profile(&self) {
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
