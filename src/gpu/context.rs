//! The wgpu device and everything that lives as long as it: the pipeline cache, the
//! buffer pool and the batch of recorded dispatches.
//!
//! Work is recorded, not run: every launcher appends a compute pass to one shared command
//! encoder, and the encoder is submitted only when the host needs a value (a read-back,
//! `synchronize`) or when [`MAX_DISPATCHES_PER_BATCH`] passes have been recorded. The
//! params of every dispatch in a batch go into one uniform buffer, written once at submit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::pool::BufferPool;
use super::shaders::{self, Access};
use crate::error::{Error, Result};
use crate::op::KernelRef;

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
}

/// An open wgpu device with its caches. Shared by every tensor on it through an `Arc`.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    pub limits: wgpu::Limits,
    pub features: wgpu::Features,
    pub(crate) pool: Mutex<BufferPool>,
    layouts: Mutex<HashMap<&'static str, Arc<wgpu::BindGroupLayout>>>,
    pipelines: Mutex<HashMap<KernelRef, Arc<wgpu::ComputePipeline>>>,
    batch: Mutex<Batch>,
    /// The uniform buffer that holds the params of the batch being recorded.
    params_buffer: wgpu::Buffer,
    params_stride: usize,
    poison: AtomicBool,
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

impl GpuContext {
    /// Opens a device on `adapter` with the adapter's own limits and whichever optional
    /// features it has.
    pub fn open(adapter: &wgpu::Adapter) -> Result<GpuContext> {
        let info = adapter.get_info();
        let summary = AdapterSummary::from_info(&info);
        let limits = adapter.limits();
        let features = adapter.features() & wanted_features();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("wgrad"),
            required_features: features,
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
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
        log::info!("opened {} (driver {} {})", summary.line(), summary.driver, summary.driver_info);
        Ok(GpuContext {
            device,
            queue,
            adapter: summary,
            limits,
            features,
            pool: Mutex::new(BufferPool::default()),
            layouts: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            batch: Mutex::new(Batch { encoder: None, params: Vec::new(), dispatches: 0 }),
            params_buffer,
            params_stride,
            poison: AtomicBool::new(false),
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

    /// Fails with [`Error::TooLarge`] when `bytes` cannot be bound as one storage buffer.
    pub fn check_size(&self, bytes: u64) -> Result<()> {
        let limit = self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size);
        if bytes > limit {
            return Err(Error::TooLarge { bytes, limit, adapter: self.adapter.line() });
        }
        Ok(())
    }

    fn bind_group_layout(&self, file: &'static str) -> Arc<wgpu::BindGroupLayout> {
        let mut layouts = self.layouts.lock().unwrap();
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
        if let Some(p) = self.pipelines.lock().unwrap().get(&kernel) {
            return p.clone();
        }
        let spec = shaders::file(kernel.file);
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
        self.pipelines.lock().unwrap().insert(kernel, pipeline.clone());
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

        let mut batch = self.batch.lock().unwrap();
        if batch.dispatches == MAX_DISPATCHES_PER_BATCH {
            self.submit_locked(&mut batch);
        }
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
        let encoder = self.encoder(&mut batch);
        let mut pass = encoder
            .begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(kernel.entry), timestamp_writes: None });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(workgroups[0], workgroups[1], workgroups[2]);
    }

    fn encoder<'a>(&self, batch: &'a mut Batch) -> &'a mut wgpu::CommandEncoder {
        batch.encoder.get_or_insert_with(|| {
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgrad batch") })
        })
    }

    /// Records a buffer-to-buffer copy in the current batch (so it is ordered with the
    /// dispatches around it).
    pub fn record_copy(&self, src: &wgpu::Buffer, src_offset: u64, dst: &wgpu::Buffer, dst_offset: u64, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut batch = self.batch.lock().unwrap();
        self.encoder(&mut batch).copy_buffer_to_buffer(src, src_offset, dst, dst_offset, bytes);
    }

    fn submit_locked(&self, batch: &mut Batch) {
        if let Some(encoder) = batch.encoder.take() {
            if batch.dispatches > 0 {
                // Ordered before the command buffer below on the queue timeline, and after
                // every earlier submission that read the previous batch's params.
                self.queue.write_buffer(&self.params_buffer, 0, &batch.params);
            }
            self.queue.submit([encoder.finish()]);
            log::trace!("submitted a batch of {} dispatches", batch.dispatches);
        }
        batch.params.clear();
        batch.dispatches = 0;
    }

    /// Submits everything recorded so far without waiting for it.
    pub fn flush(&self) {
        let mut batch = self.batch.lock().unwrap();
        self.submit_locked(&mut batch);
    }

    /// Submits everything recorded and waits until the GPU has finished it.
    pub fn synchronize(&self) {
        self.flush();
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("wgpu device lost while waiting");
    }

    /// Copies `bytes` bytes at `offset` of `src` to the host, after all recorded work.
    pub fn read_bytes(&self, src: &wgpu::Buffer, offset: u64, bytes: u64) -> Vec<u8> {
        if bytes == 0 {
            return Vec::new();
        }
        // Copies must start and end on 4-byte boundaries; widen the window and trim after.
        let start = offset & !3;
        let end = (offset + bytes).div_ceil(4) * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad read-back"),
            size: end - start,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut batch = self.batch.lock().unwrap();
            self.encoder(&mut batch).copy_buffer_to_buffer(src, start, &staging, 0, end - start);
            self.submit_locked(&mut batch);
        }
        let (tx, rx) = futures_intrusive::channel::shared::oneshot_channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.device.poll(wgpu::PollType::wait_indefinitely()).expect("wgpu device lost while reading back");
        pollster::block_on(rx.receive()).expect("map callback dropped").expect("mapping the read-back buffer failed");
        let view = staging.get_mapped_range(..).expect("read-back buffer not mapped");
        let lo = (offset - start) as usize;
        let out = view[lo..lo + bytes as usize].to_vec();
        drop(view);
        staging.unmap();
        out
    }

    /// Records an upload of `data` into `dst` at `offset`. The data goes through a staging
    /// buffer and a copy recorded in the batch, so a pooled `dst` that earlier recorded
    /// work still reads is not overwritten ahead of that work (as `queue.write_buffer`,
    /// which runs before the whole batch, would do).
    pub fn record_upload(&self, dst: &wgpu::Buffer, offset: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let padded = data.len().div_ceil(4) * 4;
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgrad upload"),
            size: padded as u64,
            usage: wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: true,
        });
        {
            let mut view = staging.get_mapped_range_mut(..).expect("upload buffer not mapped");
            view.slice(..data.len()).copy_from_slice(data);
        }
        staging.unmap();
        self.record_copy(&staging, 0, dst, offset, padded as u64);
    }
}
