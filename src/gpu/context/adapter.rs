//! Opening a device: what the adapter is, which optional features wgrad asks of it, and
//! whether its f16 matmul runs on cooperative matrices.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::recording::Batch;
use super::stats::Counters;
use super::{lock, GpuContext, GpuErrors, MAX_DISPATCHES_PER_BATCH, PARAMS_SLOT};
use crate::error::{Error, Result};
use crate::gpu::pool::BufferPool;
use crate::gpu::shaders::{COOPERATIVE_F16_FEATURES, HALF_MATMUL_COOP_BUILDS};
use crate::profile::ProfileSums;

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
    /// wgpu's noop back-end (see `Device::noop`) is none of these: it stands for a GPU.
    pub fn is_software(&self) -> bool {
        if self.backend == wgpu::Backend::Noop {
            return false;
        }
        let name = self.name.to_lowercase();
        self.device_type == wgpu::DeviceType::Cpu
            || ["llvmpipe", "lavapipe", "swiftshader", "basic render driver", "warp"].iter().any(|s| name.contains(s))
    }

    pub fn line(&self) -> String {
        format!("{} | {:?} | {:?}", self.name, self.backend, self.device_type)
    }
}

/// The optional features wgrad uses when an adapter has them.
pub fn wanted_features() -> wgpu::Features {
    wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP
}

/// The tile size of the f16 matmul on cooperative matrices for this adapter, if it runs
/// there: the adapter has [`COOPERATIVE_F16_FEATURES`] and a subgroup-scoped configuration
/// of one of [`HALF_MATMUL_COOP_BUILDS`]' square tile sizes with f16 inputs and an
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
        // On a software adapter the whole-sequence LSTM kernel's long per-thread loops run
        // several times slower than the tiled matmul of the step-by-step path (lavapipe:
        // an LSTM training step at batch 64, hidden 128 takes 2.5 s against 0.5-0.9 s);
        // on a GPU, where the per-dispatch cost dominates, one dispatch per layer wins.
        let whole_sequence_lstm = !summary.is_software();
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
        let unused_bindings = std::array::from_fn(|_| {
            device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("wgrad unused binding"),
                size: 16,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            })
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
            kernels: Mutex::default(),
            bind_groups: Mutex::default(),
            batch: Mutex::new(Batch {
                pass: None,
                encoder: None,
                params: Vec::new(),
                dispatches: 0,
                timed: Vec::new(),
                timestamps: None,
            }),
            params_buffer,
            unused_bindings,
            params_stride,
            poison: AtomicBool::new(false),
            whole_sequence_lstm: AtomicBool::new(whole_sequence_lstm),
            counters: Counters::default(),
            host_timers: Default::default(),
            profile: Mutex::new(ProfileSums::default()),
            errors,
        })
    }
}
