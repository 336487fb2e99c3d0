//! Where the GPU time goes: a per-kernel table of calls, total and mean time.
//!
//! Profiling is off by default and costs one relaxed atomic load per dispatch then. Turn it
//! on with the environment variable `WGRAD_PROFILE`, read once, when the first GPU device
//! of the process opens:
//!
//! - `WGRAD_PROFILE=1` times every dispatch with GPU timestamp queries where the adapter
//!   has `TIMESTAMP_QUERY` (one begin/end pair per compute pass, resolved and read back
//!   asynchronously when each batch is submitted, so batching is kept and the kernel times
//!   are the GPU's own), and with the host clock where it has not;
//! - `WGRAD_PROFILE=host` always uses the host clock: the batch is submitted and waited for
//!   before and after every dispatch, and the wait is timed. That perturbs the run (no
//!   batching, no overlap of recording and execution, submission overhead counted in each
//!   kernel), so its figures are upper bounds, useful mainly where timestamps are missing.
//!
//! or from code with [`enable`], [`enable_with`] and [`disable`], which take precedence
//! over the variable from then on.
//!
//! [`report`] gathers the table (it submits recorded work and waits for the timestamps
//! still in flight), [`print_report`] prints it to stderr, [`reset`] starts over. A kernel
//! is named `file::entry` after its WGSL file in `shaders/` and its entry point.
//!
//! Rust runs no destructors for statics at process exit, and the devices `Device::gpu()`
//! and `Device::software()` return live in statics, so nothing prints the table by itself
//! at exit: call [`print_report`] at the end of `main` (it prints nothing when profiling is
//! off, so it can stay there unconditionally). The examples do so: the MNIST examples at
//! the end of their shared training loop, `examples/bench.rs` after its table. A GPU
//! context that is dropped (one opened with `GpuContext::open` and not shared through a
//! static) prints the part of the table that nobody asked for before it goes.
//!
//! Only GPU dispatches are timed. The CPU backend's ops are plain function calls with no
//! common entry point to time them at; a sampling profiler (`perf record`) attributes their
//! time by function name instead.
//!
//! ```no_run
//! wgrad::profile::enable();
//! let dev = wgrad::Device::software().unwrap();
//! let x = wgrad::Tensor::randn(&[256, 256], 1, &dev);
//! let y = x.matmul(&x).relu();
//! let report = wgrad::profile::report();
//! eprintln!("{report}");
//! # drop(y);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use crate::gpu::context::GpuContext;
use crate::op::KernelRef;

/// How dispatches are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Clock {
    /// GPU timestamp queries written at the beginning and end of each dispatch's compute
    /// pass. Adapters without `TIMESTAMP_QUERY` fall back to [`Clock::Host`].
    Timestamps,
    /// The host clock around a submit-and-wait of each dispatch on its own (perturbing).
    Host,
}

impl fmt::Display for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Clock::Timestamps => "GPU timestamp queries (a begin/end pair around each dispatch's compute pass)",
            Clock::Host => {
                "host clock around a submit-and-wait of each dispatch (perturbing: no batching, submission overhead included)"
            }
        })
    }
}

/// 0: off; 1: timestamps where available; 2: host clock.
static MODE: AtomicU8 = AtomicU8::new(0);

/// Turns profiling on for every GPU device, open or opened later, timing with GPU
/// timestamp queries where the adapter supports them and with the host clock elsewhere.
pub fn enable() {
    enable_with(Clock::Timestamps);
}

/// Turns profiling on with a chosen clock. [`Clock::Timestamps`] still falls back to the
/// host clock on adapters without timestamp queries.
pub fn enable_with(clock: Clock) {
    env_mode();
    MODE.store(if clock == Clock::Timestamps { 1 } else { 2 }, Ordering::Relaxed);
}

/// Turns profiling off. What was gathered stays until [`reset`].
pub fn disable() {
    env_mode();
    MODE.store(0, Ordering::Relaxed);
}

/// Whether dispatches are being timed.
pub fn is_enabled() -> bool {
    MODE.load(Ordering::Relaxed) != 0
}

/// The clock asked for, if profiling is on.
pub(crate) fn requested_clock() -> Option<Clock> {
    match MODE.load(Ordering::Relaxed) {
        0 => None,
        1 => Some(Clock::Timestamps),
        _ => Some(Clock::Host),
    }
}

/// Reads `WGRAD_PROFILE` the first time it is called (when the first device opens, or on
/// the first programmatic switch, which then overrides it).
pub(crate) fn env_mode() {
    static READ: OnceLock<()> = OnceLock::new();
    READ.get_or_init(|| {
        let Ok(value) = std::env::var("WGRAD_PROFILE") else { return };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "off" | "false" | "no" => {}
            "1" | "on" | "true" | "yes" | "timestamps" => MODE.store(1, Ordering::Relaxed),
            "host" => MODE.store(2, Ordering::Relaxed),
            other => log::warn!("WGRAD_PROFILE={other} is not understood (1 or host turn profiling on); left off"),
        }
    });
}

/// Every GPU context opened through `Device`, so that [`report`] and [`reset`] can reach
/// their recorded work. Weak, so the registry keeps no device alive.
static CONTEXTS: Mutex<Vec<Weak<GpuContext>>> = Mutex::new(Vec::new());

/// Makes a shared context visible to [`report`] and [`reset`].
pub(crate) fn register(ctx: &Arc<GpuContext>) {
    let mut contexts = crate::gpu::context::lock(&CONTEXTS);
    contexts.retain(|w| w.strong_count() > 0);
    contexts.push(Arc::downgrade(ctx));
}

fn live_contexts() -> Vec<Arc<GpuContext>> {
    crate::gpu::context::lock(&CONTEXTS).iter().filter_map(Weak::upgrade).collect()
}

/// One kernel's line of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelStat {
    /// The WGSL file (in `shaders/`, without `.wgsl`) and entry point.
    pub kernel: KernelRef,
    /// Dispatches timed.
    pub calls: u64,
    /// Their summed time.
    pub total: Duration,
}

impl KernelStat {
    /// `file::entry`, the name the table shows.
    pub fn name(&self) -> String {
        format!("{}::{}", self.kernel.file, self.kernel.entry)
    }

    /// Mean time per dispatch.
    pub fn mean(&self) -> Duration {
        self.total.checked_div(self.calls.max(1) as u32).unwrap_or_default()
    }
}

/// The kernels timed on one device with one clock, by total time, longest first.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceProfile {
    /// The adapter line: name, back-end, device type.
    pub device: String,
    pub clock: Clock,
    /// Nanoseconds per timestamp tick, for [`Clock::Timestamps`].
    pub timestamp_period_ns: Option<f32>,
    pub kernels: Vec<KernelStat>,
}

impl DeviceProfile {
    /// Time summed over every kernel.
    pub fn total(&self) -> Duration {
        self.kernels.iter().map(|k| k.total).sum()
    }

    /// Dispatches timed, over every kernel.
    pub fn calls(&self) -> u64 {
        self.kernels.iter().map(|k| k.calls).sum()
    }

    /// The line of `kernel` (`file::entry`), if it ran.
    pub fn kernel(&self, name: &str) -> Option<&KernelStat> {
        self.kernels.iter().find(|k| k.name() == name)
    }

    /// Builds the table from raw `(kernel, calls, nanoseconds)` sums.
    pub(crate) fn from_sums(
        device: String,
        clock: Clock,
        timestamp_period_ns: Option<f32>,
        sums: impl IntoIterator<Item = (KernelRef, u64, f64)>,
    ) -> DeviceProfile {
        let mut kernels: Vec<KernelStat> = sums
            .into_iter()
            .map(|(kernel, calls, ns)| KernelStat { kernel, calls, total: Duration::from_nanos(ns.max(0.0) as u64) })
            .collect();
        kernels.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.name().cmp(&b.name())));
        DeviceProfile { device, clock, timestamp_period_ns, kernels }
    }
}

impl fmt::Display for DeviceProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.total();
        let total_ms = total.as_secs_f64() * 1e3;
        writeln!(f, "wgrad profile: {}", self.device)?;
        write!(f, "clock: {}", self.clock)?;
        if let Some(p) = self.timestamp_period_ns {
            write!(f, ", {p} ns per tick")?;
        }
        writeln!(f)?;
        writeln!(f, "{} dispatches, {total_ms:.3} ms in kernels", self.calls())?;
        let width = self.kernels.iter().map(|k| k.name().len()).max().unwrap_or(0).max("kernel".len());
        writeln!(f, "{:<width$} {:>9} {:>12} {:>12} {:>8}", "kernel", "calls", "total ms", "mean µs", "share %")?;
        for k in &self.kernels {
            let share = if total.is_zero() { 0.0 } else { 100.0 * k.total.as_secs_f64() / total.as_secs_f64() };
            writeln!(
                f,
                "{:<width$} {:>9} {:>12.3} {:>12.1} {:>8.1}",
                k.name(),
                k.calls,
                k.total.as_secs_f64() * 1e3,
                k.mean().as_secs_f64() * 1e6,
                share
            )?;
        }
        Ok(())
    }
}

/// The per-kernel tables of every GPU device that ran timed dispatches.
#[derive(Clone, Debug, PartialEq)]
pub struct ProfileReport {
    pub devices: Vec<DeviceProfile>,
}

impl ProfileReport {
    /// The table of the device whose adapter line contains `device`, with timestamps
    /// preferred over the host clock when both were used.
    pub fn device(&self, device: &str) -> Option<&DeviceProfile> {
        self.devices.iter().filter(|d| d.device.contains(device)).min_by_key(|d| d.clock)
    }
}

impl fmt::Display for ProfileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.devices.is_empty() {
            return writeln!(
                f,
                "wgrad profile: no GPU dispatch was timed (WGRAD_PROFILE=1 or wgrad::profile::enable() turns profiling on)"
            );
        }
        for (i, d) in self.devices.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The tables so far. Submits the work recorded on every device and waits for the
/// timestamps in flight, so every dispatch recorded before the call is in it.
pub fn report() -> ProfileReport {
    let mut devices: Vec<DeviceProfile> = live_contexts().iter().flat_map(|c| c.profile_tables()).collect();
    devices.sort_by(|a, b| a.device.cmp(&b.device).then(a.clock.cmp(&b.clock)));
    ProfileReport { devices }
}

/// Prints [`report`] to stderr when profiling is on; does nothing when it is off, so a
/// program can call it unconditionally at the end of `main`.
pub fn print_report() {
    if is_enabled() {
        eprint!("{}", report());
    }
}

/// Forgets everything timed so far, on every device (after waiting for the timestamps in
/// flight, so none of them lands in the next table).
pub fn reset() {
    for ctx in live_contexts() {
        ctx.reset_profile();
    }
}

/// Accumulated `(calls, nanoseconds)` per clock and kernel: what a device keeps.
#[derive(Default)]
pub(crate) struct ProfileSums {
    sums: HashMap<(Clock, KernelRef), (u64, f64)>,
    /// Whether something was added since the last report; a dropped context prints only then.
    pub(crate) unreported: bool,
}

impl ProfileSums {
    pub(crate) fn add(&mut self, clock: Clock, kernel: KernelRef, ns: f64) {
        let e = self.sums.entry((clock, kernel)).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += ns;
        self.unreported = true;
    }

    pub(crate) fn clear(&mut self) {
        self.sums.clear();
        self.unreported = false;
    }

    /// One table per clock used.
    pub(crate) fn tables(&self, device: &str, period_ns: Option<f32>) -> Vec<DeviceProfile> {
        let mut out = Vec::new();
        for clock in [Clock::Timestamps, Clock::Host] {
            let rows: Vec<(KernelRef, u64, f64)> = self
                .sums
                .iter()
                .filter(|((c, _), _)| *c == clock)
                .map(|((_, k), &(calls, ns))| (*k, calls, ns))
                .collect();
            if !rows.is_empty() {
                let period = if clock == Clock::Timestamps { period_ns } else { None };
                out.push(DeviceProfile::from_sums(device.to_string(), clock, period, rows));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sort_by_total_and_split_by_clock() {
        let a = KernelRef { file: "matmul", entry: "matmul" };
        let b = KernelRef { file: "elementwise", entry: "unary_relu" };
        let mut sums = ProfileSums::default();
        sums.add(Clock::Timestamps, b, 1_000.0);
        sums.add(Clock::Timestamps, a, 5_000.0);
        sums.add(Clock::Timestamps, b, 3_000.0);
        sums.add(Clock::Host, a, 7_000.0);
        let tables = sums.tables("dev", Some(1.0));
        assert_eq!(tables.len(), 2);
        let t = &tables[0];
        assert_eq!(t.clock, Clock::Timestamps);
        assert_eq!(
            t.kernels.iter().map(|k| (k.name(), k.calls)).collect::<Vec<_>>(),
            [("matmul::matmul".to_string(), 1), ("elementwise::unary_relu".to_string(), 2)]
        );
        assert_eq!(t.kernel("elementwise::unary_relu").unwrap().mean(), Duration::from_nanos(2_000));
        assert_eq!(t.total(), Duration::from_nanos(9_000));
        assert_eq!(tables[1].clock, Clock::Host);
        assert_eq!(tables[1].calls(), 1);
        let text = t.to_string();
        let matmul_line = text.lines().position(|l| l.starts_with("matmul::matmul")).unwrap();
        let relu_line = text.lines().position(|l| l.starts_with("elementwise::unary_relu")).unwrap();
        assert!(matmul_line < relu_line, "{text}");
        assert!(text.contains("55.6"), "share of 5 of 9 µs missing:\n{text}");
        sums.clear();
        assert!(sums.tables("dev", None).is_empty());
    }
}
