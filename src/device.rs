//! Where tensors live and ops run: a wgpu adapter (hardware or software) or the CPU.
//!
//! Opening a wgpu device is slow (tens of milliseconds to seconds), so each kind is opened
//! once per process and shared: every `Device::gpu()` returns the same device.

use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::gpu::context::{AdapterSummary, DeviceStats, GpuContext};
use crate::gpu::pool::PoolStats;
use crate::shadow::{ShadowOptions, ShadowReport};

/// A compute device. Cheap to clone; two clones compare equal.
#[derive(Clone, Debug)]
pub enum Device {
    /// The plain-Rust backend: always available, the reference for every kernel.
    Cpu,
    /// A wgpu device: WGSL kernels on a hardware GPU or a software rasteriser.
    Gpu(Arc<GpuContext>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            (Device::Gpu(a), Device::Gpu(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

/// Which adapters wgpu sees on this machine.
pub fn list_adapters() -> Vec<AdapterSummary> {
    adapters().iter().map(|a| AdapterSummary::from_info(&a.get_info())).collect()
}

/// The wgpu instance of `backends`, created once. Native and GL back-ends get separate
/// instances because creating a GL instance already initialises EGL, which is slow and
/// logs errors on headless machines.
fn instance(backends: wgpu::Backends) -> &'static wgpu::Instance {
    static NATIVE: OnceLock<wgpu::Instance> = OnceLock::new();
    static GL: OnceLock<wgpu::Instance> = OnceLock::new();
    let cell = if backends == wgpu::Backends::GL { &GL } else { &NATIVE };
    cell.get_or_init(|| {
        if backends != wgpu::Backends::GL {
            quiet_device_select_layer();
        }
        // WGPU_BACKEND and the other wgpu variables still apply, for debugging.
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
        desc.backends &= backends;
        wgpu::Instance::new(desc)
    })
}

/// Turns off Mesa's `VK_LAYER_MESA_device_select` for this process when
/// `XDG_RUNTIME_DIR` is unset (containers, CI, ssh sessions) and nobody configured the layer.
///
/// The layer, which `mesa-vulkan-drivers` installs as an implicit Vulkan layer, only
/// reorders the adapter list by the display server's default GPU; wgrad ranks adapters
/// itself. Without `XDG_RUNTIME_DIR` its attempt to reach Wayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice on stderr,
/// which is the first thing a run that ends on the CPU would show. The layer's own switch,
/// `NODEVICE_SELECT=1`, is set before the Vulkan instance exists; it is left alone when
/// the user set it or asked the layer for a device (`MESA_VK_DEVICE_SELECT`).
fn quiet_device_select_layer() {
    let unset = |name: &str| std::env::var_os(name).is_none_or(|v| v.is_empty());
    if unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") && unset("MESA_VK_DEVICE_SELECT") {
        log::debug!(
            "XDG_RUNTIME_DIR is unset: NODEVICE_SELECT=1 keeps Mesa's device_select layer from probing Wayland"
        );
        // Set once, inside the instance's `OnceLock`, before the Vulkan loader reads it.
        // The environment is process-wide; this is the first GPU call of the process.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

/// The adapters of the native back-ends (Vulkan, Metal, DX12), or GL's when those offer
/// none at all. Probing GL is slow and logs EGL errors on headless machines, so it is
/// left out whenever a native back-end answers, even with only a software adapter.
///
/// Enumerated once per process and kept for its lifetime. wgpu's GL back-end shares one
/// EGL context between its instance and every adapter it hands out, and makes it current
/// on the calling thread while it enumerates, while an adapter is dropped and while a
/// device opened on one of its adapters records work, each under a different lock: two
/// threads enumerating at once, or one enumerating while another runs kernels, fail in
/// `eglMakeCurrent` with `BadAccess` (a panic inside wgpu-hal). One enumeration whose
/// adapters are never dropped leaves the device's own lock as the only user of the context.
fn adapters() -> &'static [wgpu::Adapter] {
    static ADAPTERS: OnceLock<Vec<wgpu::Adapter>> = OnceLock::new();
    ADAPTERS.get_or_init(|| {
        let native = instance(wgpu::Backends::PRIMARY);
        let found = pollster::block_on(native.enumerate_adapters(wgpu::Backends::PRIMARY));
        if !found.is_empty() {
            return found;
        }
        let gl = instance(wgpu::Backends::GL);
        pollster::block_on(gl.enumerate_adapters(wgpu::Backends::GL))
    })
}

/// Preference among hardware adapters: discrete, then integrated, then virtual; among
/// back-ends the native ones before GL.
fn hardware_rank(s: &AdapterSummary) -> Option<(u8, u8)> {
    if s.is_software() {
        return None;
    }
    let kind = match s.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    };
    let backend = if s.backend == wgpu::Backend::Gl { 1 } else { 0 };
    Some((kind, backend))
}

type Slot = Mutex<Option<Arc<GpuContext>>>;

/// Opens (once) the best adapter that `choose` picks out of the enumerated ones.
fn open_cached(
    slot: &'static Slot,
    wanted: &'static str,
    choose: fn(&[AdapterSummary]) -> Option<usize>,
) -> Result<Device> {
    let mut guard = crate::gpu::context::lock(slot);
    if let Some(ctx) = guard.as_ref() {
        return Ok(Device::Gpu(ctx.clone()));
    }
    let adapters = adapters();
    let summaries: Vec<AdapterSummary> = adapters.iter().map(|a| AdapterSummary::from_info(&a.get_info())).collect();
    let index = choose(&summaries)
        .ok_or_else(|| Error::NoAdapter { wanted, found: summaries.iter().map(|s| s.line()).collect() })?;
    let ctx = Arc::new(GpuContext::open(&adapters[index])?);
    crate::profile::register(&ctx);
    if let Some(options) = ShadowOptions::from_env() {
        crate::shadow::enable(&ctx, options);
    }
    *guard = Some(ctx.clone());
    Ok(Device::Gpu(ctx))
}

fn best_hardware(s: &[AdapterSummary]) -> Option<usize> {
    (0..s.len()).filter_map(|i| hardware_rank(&s[i]).map(|r| (r, i))).min().map(|(_, i)| i)
}

fn best_software(s: &[AdapterSummary]) -> Option<usize> {
    // Vulkan's lavapipe before GL's llvmpipe: it supports compute without GL's limits.
    (0..s.len())
        .filter(|&i| s[i].is_software())
        .min_by_key(|&i| if s[i].backend == wgpu::Backend::Vulkan { 0 } else { 1 })
}

impl Device {
    /// The device `WGRAD_DEVICE` names (`gpu`, `software` or `cpu`); without it, the best
    /// hardware adapter, or the CPU when there is none. Software adapters are never picked
    /// here: on them the CPU backend is many times faster, and the choice is logged. A
    /// value of `WGRAD_DEVICE` that is not a device name is an [`Error::BadDeviceVar`].
    pub fn auto() -> Result<Device> {
        match std::env::var("WGRAD_DEVICE") {
            Ok(v) if !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("auto") => {
                log::info!("WGRAD_DEVICE={v} chooses the device");
                Device::by_explicit_name(&v)
            }
            _ => Device::best_hardware_or_cpu(),
        }
    }

    /// The best hardware adapter, else the CPU (never a software rasteriser).
    fn best_hardware_or_cpu() -> Result<Device> {
        match Device::gpu() {
            Ok(d) => Ok(d),
            Err(Error::NoAdapter { found, .. }) => {
                if found.is_empty() {
                    log::info!("no GPU adapter found; using the CPU backend");
                } else {
                    log::info!(
                        "only software adapters found ({}); using the CPU backend, which is faster than a software rasteriser",
                        found.join("; ")
                    );
                }
                Ok(Device::Cpu)
            }
            Err(e) => Err(e),
        }
    }

    /// `"gpu"`, `"software"`, `"cpu"` or `"auto"`: the names `--device` and
    /// `WGRAD_DEVICE` accept. `"auto"` is [`Device::auto`], so it honours `WGRAD_DEVICE`
    /// (the default `--device auto` of the examples does too); any other name is an
    /// [`Error::BadDeviceVar`] that lists the valid ones.
    pub fn by_name(name: &str) -> Result<Device> {
        if name.trim().eq_ignore_ascii_case("auto") {
            return Device::auto();
        }
        Device::by_explicit_name(name)
    }

    /// A name other than `auto` (which `auto` itself resolves, without recursion).
    fn by_explicit_name(name: &str) -> Result<Device> {
        match name.trim().to_ascii_lowercase().as_str() {
            "gpu" => Device::gpu(),
            "software" => Device::software(),
            "cpu" => Ok(Device::cpu()),
            #[cfg(feature = "noop-device")]
            "noop" => Device::noop(),
            _ => Err(Error::BadDeviceVar(name.to_string())),
        }
    }

    /// The best hardware adapter (discrete, integrated, virtual) on any back-end; an error
    /// listing the adapters found when there is none.
    pub fn gpu() -> Result<Device> {
        static SLOT: Slot = Mutex::new(None);
        open_cached(&SLOT, "hardware GPU", best_hardware)
    }

    /// The hardware adapter of process `local_rank` among the processes of a data-parallel
    /// run on one machine: the hardware adapters in [`Device::gpu`]'s order of preference,
    /// number `local_rank % count`, so that the processes spread over the machine's GPUs
    /// (with one GPU, every process shares [`Device::gpu`]'s). An error listing the
    /// adapters when there is no hardware adapter.
    pub fn gpu_for_rank(local_rank: usize) -> Result<Device> {
        let adapters = adapters();
        let summaries: Vec<AdapterSummary> =
            adapters.iter().map(|a| AdapterSummary::from_info(&a.get_info())).collect();
        let mut ranked: Vec<((u8, u8), usize)> =
            (0..summaries.len()).filter_map(|i| hardware_rank(&summaries[i]).map(|r| (r, i))).collect();
        ranked.sort();
        match ranked.len() {
            0 => Err(Error::NoAdapter { wanted: "hardware GPU", found: summaries.iter().map(|s| s.line()).collect() }),
            1 => Device::gpu(),
            count => {
                let ctx = Arc::new(GpuContext::open(&adapters[ranked[local_rank % count].1])?);
                crate::profile::register(&ctx);
                Ok(Device::Gpu(ctx))
            }
        }
    }

    /// A software adapter (Mesa lavapipe/llvmpipe, WARP, SwiftShader): slow, but runs the
    /// same WGSL kernels anywhere, which is what CI tests them on.
    pub fn software() -> Result<Device> {
        static SLOT: Slot = Mutex::new(None);
        open_cached(&SLOT, "software", best_software)
    }

    /// wgpu's noop back-end, for measuring the host's cost of the GPU path: every op is
    /// recorded, validated and submitted as on a real GPU, but no kernel runs, so whatever
    /// is read back is meaningless (zeros). Only with the `noop-device` cargo feature, which
    /// benchmarks turn on (`cargo run --release --features noop-device --example bench --
    /// --device noop`); never use it to compute anything.
    ///
    /// The adapter has wgpu's most permissive limits and the optional features wgrad asks
    /// for (timestamps, f16, subgroups; no cooperative matrices), and wgrad treats it as a
    /// hardware GPU (not a software one), so it takes the code paths of a desktop GPU. Its
    /// device type reads `Cpu`: wgpu 30.0 ignores the type asked for here.
    #[cfg(feature = "noop-device")]
    pub fn noop() -> Result<Device> {
        static SLOT: Slot = Mutex::new(None);
        let mut guard = crate::gpu::context::lock(&SLOT);
        if let Some(ctx) = guard.as_ref() {
            return Ok(Device::Gpu(ctx.clone()));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::NOOP;
        desc.backend_options.noop = wgpu::NoopBackendOptions {
            enable: true,
            limits: None,
            features: Some(crate::gpu::context::wanted_features()),
            device_type: Some(wgpu::DeviceType::DiscreteGpu),
            subgroup_min_size: Some(32),
            subgroup_max_size: Some(32),
        };
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::NOOP));
        let adapter = adapters.first().ok_or(Error::NoAdapter { wanted: "noop", found: Vec::new() })?;
        let ctx = Arc::new(GpuContext::open(adapter)?);
        *guard = Some(ctx.clone());
        Ok(Device::Gpu(ctx))
    }

    /// The CPU backend.
    pub fn cpu() -> Device {
        Device::Cpu
    }

    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }

    /// The wgpu context, for GPU devices.
    pub fn gpu_context(&self) -> Option<&Arc<GpuContext>> {
        match self {
            Device::Gpu(c) => Some(c),
            Device::Cpu => None,
        }
    }

    /// One line for logs: adapter, back-end, device type, driver and the limits in force.
    /// `NVIDIA H100 | Vulkan | DiscreteGpu | driver NVIDIA 550.54 | ...`.
    pub fn info(&self) -> String {
        match self {
            Device::Cpu => format!(
                "CPU | wgrad reference backend | {} threads | {} {}",
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
                std::env::consts::ARCH,
                std::env::consts::OS
            ),
            Device::Gpu(ctx) => {
                let l = &ctx.limits;
                let mut features = Vec::new();
                for (f, name) in [
                    (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
                    (wgpu::Features::SHADER_F16, "shader-f16"),
                    (wgpu::Features::SUBGROUP, "subgroup"),
                ] {
                    if ctx.features.contains(f) {
                        features.push(name.to_string());
                    }
                }
                if let Some(t) = ctx.cooperative_f16_tile {
                    features.push(format!("cooperative-matrix (f16 matmul on {t}x{t} tiles)"));
                }
                let a = &ctx.adapter;
                format!(
                    "{} | driver {} {} | max storage binding {} MiB, max buffer {} MiB, workgroup storage {} KiB, {} invocations | features: {}",
                    a.line(),
                    a.driver,
                    a.driver_info,
                    l.max_storage_buffer_binding_size >> 20,
                    l.max_buffer_size >> 20,
                    l.max_compute_workgroup_storage_size >> 10,
                    l.max_compute_invocations_per_workgroup,
                    if features.is_empty() { "none".to_string() } else { features.join(", ") }
                )
            }
        }
    }

    /// Waits until all work recorded on this device has finished. Panics with
    /// [`Device::try_synchronize`]'s error.
    pub fn synchronize(&self) {
        if let Device::Gpu(ctx) = self {
            ctx.synchronize();
        }
    }

    /// Waits until all work recorded on this device has finished, and returns the first
    /// error the GPU reported since the last fallible call (a validation error, out of
    /// memory in recorded work, a lost device) as [`Error::Gpu`]. Always `Ok` on the CPU.
    pub fn try_synchronize(&self) -> Result<()> {
        match self {
            Device::Gpu(ctx) => {
                ctx.try_synchronize()?;
                match crate::shadow::take_unreported(ctx) {
                    Some(report) => Err(Error::ShadowMismatch(Box::new(report))),
                    None => Ok(()),
                }
            }
            Device::Cpu => Ok(()),
        }
    }

    /// This device in shadow mode (see [`crate::shadow`]): from now on every op it runs is
    /// also run on the CPU reference backend on the same input bits and compared. The
    /// mode belongs to the device's shared context, so every clone of it is shadowed too;
    /// new options replace old ones. On the CPU device, which is the reference itself,
    /// nothing changes.
    ///
    /// ```no_run
    /// use wgrad::shadow::{OnMismatch, ShadowOptions};
    /// let dev = wgrad::Device::gpu()?.with_shadow(ShadowOptions { every: 10, ..Default::default() });
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn with_shadow(self, options: ShadowOptions) -> Device {
        if let Device::Gpu(ctx) = &self {
            crate::shadow::enable(ctx, options);
        }
        self
    }

    /// Turns shadow mode off for this device (and its clones), forgetting its reports.
    pub fn without_shadow(&self) {
        if let Device::Gpu(ctx) = self {
            crate::shadow::disable(ctx);
        }
    }

    /// Whether this device is in shadow mode.
    pub fn is_shadowed(&self) -> bool {
        self.gpu_context().is_some_and(crate::shadow::is_enabled)
    }

    /// Every disagreement shadow mode found on this device, oldest first (with
    /// [`crate::shadow::OnMismatch::Panic`], at most the one it panicked with).
    pub fn shadow_reports(&self) -> Vec<ShadowReport> {
        self.gpu_context().map(crate::shadow::reports).unwrap_or_default()
    }

    /// How many ops shadow mode has compared on this device.
    pub fn shadow_checked_ops(&self) -> u64 {
        self.gpu_context().map_or(0, crate::shadow::checked_ops)
    }

    /// Buffer pool statistics of a GPU device (`None` on the CPU).
    pub fn pool_stats(&self) -> Option<PoolStats> {
        self.gpu_context().map(|c| crate::gpu::context::lock(&c.pool).stats())
    }

    /// Counts of the dispatches, submits, copies, uploads and read-backs this GPU device
    /// has been given since it opened or since [`Device::reset_stats`] (`None` on the CPU).
    /// Always on; subtract two snapshots to count the work of a step:
    ///
    /// ```no_run
    /// # let dev = wgrad::Device::gpu().unwrap();
    /// let before = dev.stats().unwrap();
    /// let y = wgrad::Tensor::ones(&[8], &dev).relu();
    /// let per_op = dev.stats().unwrap() - before;
    /// # drop(y);
    /// ```
    pub fn stats(&self) -> Option<DeviceStats> {
        self.gpu_context().map(|c| c.stats())
    }

    /// Sets this GPU device's [`Device::stats`] counters back to zero (no-op on the CPU).
    pub fn reset_stats(&self) {
        if let Some(c) = self.gpu_context() {
            c.reset_stats();
        }
    }

    /// Debugging aid: fill every new output buffer with a NaN sentinel before its kernel
    /// runs, with a guard region behind it, so unwritten or overrun elements show.
    pub fn set_poison(&self, on: bool) {
        if let Device::Gpu(ctx) = self {
            ctx.set_poison(on);
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.info())
    }
}

impl Device {
    /// The most bytes one kernel may bind as a storage buffer on this device, or `None`
    /// on the CPU, which has no such limit: the size that splits large work (im2col
    /// columns, optimizer state) into parts.
    pub(crate) fn max_binding_bytes(&self) -> Option<usize> {
        match self {
            Device::Cpu => None,
            Device::Gpu(ctx) => {
                let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
                Some(usize::try_from(limit).unwrap_or(usize::MAX))
            }
        }
    }
}
