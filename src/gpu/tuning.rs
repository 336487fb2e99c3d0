//! Which matmul kernel runs on which adapter: the tile configurations and the short tuning
//! pass that picks one per adapter and shape class.
//!
//! No single tiling is fastest everywhere. GPUs with fast workgroup memory want large
//! shared-memory tiles and many multiply-adds per invocation (`vec4_tile128`); a CPU-based
//! Vulkan adapter such as lavapipe runs a workgroup on one CPU thread, where barriers and
//! workgroup memory are expensive and plain global loads hit the CPU caches, so the
//! register-blocked kernels without workgroup memory (`rows8`, `vec4_rows4`) win there.
//! Shape matters too: a product with a handful of rows cannot fill a 128x128 tile.
//!
//! So the first matmul of a [`ShapeClass`] on an adapter times every configuration that can
//! run it, on a slice of the real problem (its first rows, or its first batch entries)
//! grown until the fastest candidate takes about a millisecond, and remembers the winner
//! for that adapter and class, for the rest of the process and in a file in the user's
//! cache folder keyed by adapter and driver ([`tuning_cache_path`];
//! `WGRAD_TUNING_CACHE=0` keeps it in memory only), so a later process on the same
//! adapter and driver compiles only the winner. The pass waits for the GPU, so it costs a
//! few milliseconds of GPU time once per class; on a software adapter, where a millisecond
//! of work is a small slice, it is the driver's compilation of the candidate pipelines
//! that dominates (seconds each on llvmpipe's GL back-end). A budget bounds it
//! (`WGRAD_TUNING_BUDGET_MS`, default 1000, for all the passes of a process): once spent,
//! the best candidate timed so far is chosen and the others are never compiled, and the
//! classes met later take their first candidate untimed and are tuned by a later process;
//! a software adapter times the configurations without workgroup memory, its usual
//! winners, first. Each candidate runs once on one row before it is timed, since some
//! drivers (llvmpipe) compile a pipeline on its first dispatch.
//!
//! Every configuration computes each output element as one dot product over K in
//! ascending order, accumulated in f32; they differ only in whether a multiply and add are
//! fused, so a choice changes results by summation-order rounding at most (within the
//! normalised tolerance the cross-checks use against the CPU).
//!
//! `WGRAD_MATMUL_CONFIG=<name>` (one of [`MATMUL_CONFIGS`]) skips the pass and forces a
//! configuration process-wide; [`with_matmul_config`] does the same for one closure on the
//! current thread (what the tests use). A vec4 configuration forced on operands it cannot
//! read (not row-major or not aligned to 4 elements) falls back to its scalar twin.
//!
//! A configuration can be kept away from an adapter: [`exclude_matmul_config`] for the
//! rest of the process (the conformance run does this for each configuration that fails
//! on the adapter), and `WGRAD_EXCLUDE_CONFIGS=<path>` across processes. The file holds one
//! configuration per line, `name` for every adapter or `name @ text` for the adapters
//! whose [`adapter_key`] contains `text` (`# comments` and blank lines are skipped);
//! [`crate::conformance::Report::exclusions`] writes such lines. The tuner never times or
//! chooses an excluded configuration; a configuration forced by name is still used, with
//! a warning.
//!
//! A run can also be pinned to the configurations another run used, class by class:
//! [`used_matmul_configs`] lists them (a reproducibility receipt records this list),
//! [`pin_matmul_config`] pins one, and `WGRAD_MATMUL_RECEIPT=<checkpoint>` pins those of
//! the receipt in a checkpoint (see [`crate::receipt`]). Pins apply on the adapter they
//! were recorded on, before the tuner's cache; a forced configuration still wins.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::context::GpuContext;
use crate::op::KernelRef;

/// One way of tiling the matmul: a WGSL entry point and the block of the output one
/// workgroup computes.
#[derive(Debug, PartialEq, Eq)]
pub struct MatmulConfig {
    /// The name `WGRAD_MATMUL_CONFIG` and [`with_matmul_config`] take.
    pub name: &'static str,
    /// The entry point that runs it.
    pub kernel: KernelRef,
    /// Output rows per workgroup.
    pub tile_m: usize,
    /// Output columns per workgroup.
    pub tile_n: usize,
    /// Needs row-major operands whose rows start on 4-element boundaries (`matmul_vec4.wgsl`).
    pub vec4: bool,
    /// The configuration used instead when a vec4 one is forced on operands it cannot read.
    pub fallback: &'static str,
    /// Stages operands through workgroup memory. Those without it are timed first on a
    /// software adapter, where they win and where a tuning budget may stop the pass
    /// before the others are compiled.
    pub workgroup_memory: bool,
}

/// Every configuration, scalar (any strides) first.
pub const MATMUL_CONFIGS: &[MatmulConfig] = &[
    MatmulConfig {
        name: "tile64",
        kernel: KernelRef { file: "matmul", entry: "matmul" },
        tile_m: 64,
        tile_n: 64,
        vec4: false,
        fallback: "tile64",
        workgroup_memory: true,
    },
    MatmulConfig {
        name: "rows8",
        kernel: KernelRef { file: "matmul", entry: "matmul_rows8" },
        tile_m: 8,
        tile_n: 64,
        vec4: false,
        fallback: "rows8",
        workgroup_memory: false,
    },
    MatmulConfig {
        name: "vec4_tile64",
        kernel: KernelRef { file: "matmul_vec4", entry: "matmul_vec4" },
        tile_m: 64,
        tile_n: 64,
        vec4: true,
        fallback: "tile64",
        workgroup_memory: true,
    },
    MatmulConfig {
        name: "vec4_tile128",
        kernel: KernelRef { file: "matmul_vec4", entry: "matmul_vec4_tile128" },
        tile_m: 128,
        tile_n: 128,
        vec4: true,
        fallback: "tile64",
        workgroup_memory: true,
    },
    MatmulConfig {
        name: "vec4_rows4",
        kernel: KernelRef { file: "matmul_vec4", entry: "matmul_vec4_rows4" },
        tile_m: 4,
        tile_n: 128,
        vec4: true,
        fallback: "rows8",
        workgroup_memory: false,
    },
];

/// The configuration with this name. Panics on an unknown name, listing the known ones.
pub fn matmul_config(name: &str) -> &'static MatmulConfig {
    MATMUL_CONFIGS.iter().find(|c| c.name == name).unwrap_or_else(|| {
        let names: Vec<&str> = MATMUL_CONFIGS.iter().map(|c| c.name).collect();
        panic!("matmul: no tile configuration named '{name}' (known: {})", names.join(", "))
    })
}

thread_local! {
    static FORCED_HERE: Cell<Option<&'static MatmulConfig>> = const { Cell::new(None) };
}

/// Runs `f` with every GPU matmul launched from this thread forced to the configuration
/// `name` (see the module documentation), then restores the previous choice. Panics on an
/// unknown name.
pub fn with_matmul_config<R>(name: &str, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<&'static MatmulConfig>);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED_HERE.with(|c| c.set(self.0));
        }
    }
    let config = matmul_config(name);
    let _restore = Restore(FORCED_HERE.with(|c| c.replace(Some(config))));
    f()
}

/// Configurations excluded by [`exclude_matmul_config`], as (adapter key, name).
static EXCLUDED: Mutex<Vec<(String, &'static str)>> = Mutex::new(Vec::new());

/// Keeps the configuration `name` away from `ctx`'s adapter for the rest of the process:
/// the tuner neither times nor chooses it there, and shape classes that had chosen it
/// are tuned again. Panics on an unknown name.
pub fn exclude_matmul_config(ctx: &GpuContext, name: &str) {
    let config = matmul_config(name);
    let key = adapter_key(ctx);
    log::warn!("matmul: the {} configuration is excluded on {key}", config.name);
    {
        let mut excluded = crate::gpu::context::lock(&EXCLUDED);
        if !excluded.iter().any(|(k, n)| *k == key && *n == config.name) {
            excluded.push((key.clone(), config.name));
        }
    }
    crate::gpu::context::lock(cache()).retain(|(adapter, _), chosen| !(*adapter == key && chosen.name == config.name));
}

/// The exclusions of the `WGRAD_EXCLUDE_CONFIGS` file: (adapter text, name) pairs, the
/// text empty for every adapter. Read once; a file that cannot be read or a name that is
/// not a configuration is logged and skipped.
fn excluded_by_file() -> &'static [(String, &'static str)] {
    static FROM_FILE: OnceLock<Vec<(String, &'static str)>> = OnceLock::new();
    FROM_FILE.get_or_init(|| {
        let Some(path) = std::env::var_os("WGRAD_EXCLUDE_CONFIGS").filter(|p| !p.is_empty()) else {
            return Vec::new();
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                log::error!("WGRAD_EXCLUDE_CONFIGS: cannot read {}: {e}", path.to_string_lossy());
                return Vec::new();
            }
        };
        parse_exclusions(&text)
    })
}

/// The (adapter text, configuration) pairs of an exclusion file's text.
fn parse_exclusions(text: &str) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, adapter) = line.split_once('@').map_or((line, ""), |(n, a)| (n.trim(), a.trim()));
        match MATMUL_CONFIGS.iter().find(|c| c.name == name) {
            Some(config) => out.push((adapter.to_string(), config.name)),
            None => log::error!("WGRAD_EXCLUDE_CONFIGS: '{name}' is not a matmul configuration; line skipped"),
        }
    }
    out
}

/// Whether `config` is excluded on the adapter with key `key`.
fn is_excluded(key: &str, config: &MatmulConfig) -> bool {
    crate::gpu::context::lock(&EXCLUDED).iter().any(|(k, n)| k == key && *n == config.name)
        || excluded_by_file().iter().any(|(text, n)| *n == config.name && key.contains(text.as_str()))
}

/// The configurations that are not excluded on `ctx`'s adapter.
pub fn allowed_matmul_configs(ctx: &GpuContext) -> Vec<&'static str> {
    let key = adapter_key(ctx);
    MATMUL_CONFIGS.iter().filter(|c| !is_excluded(&key, c)).map(|c| c.name).collect()
}

/// The configuration forced by [`with_matmul_config`] or else by `WGRAD_MATMUL_CONFIG`.
fn forced() -> Option<&'static MatmulConfig> {
    static FROM_ENV: OnceLock<Option<&'static MatmulConfig>> = OnceLock::new();
    FORCED_HERE.with(|c| c.get()).or_else(|| {
        *FROM_ENV.get_or_init(|| {
            let name = std::env::var("WGRAD_MATMUL_CONFIG").ok().filter(|s| !s.is_empty())?;
            let config = matmul_config(&name);
            log::info!("matmul: WGRAD_MATMUL_CONFIG forces the {} configuration", config.name);
            Some(config)
        })
    })
}

/// The bucket of a dimension: 0 for 1, then one per factor of 4 (2..4 -> 1, 5..16 -> 2, ...).
fn bucket(size: usize) -> u8 {
    let bits = usize::BITS - size.max(1).saturating_sub(1).leading_zeros();
    bits.div_ceil(2) as u8
}

/// Products that are expected to prefer the same configuration: sizes by factors of 4,
/// whether the batch has more than one entry, whether the vec4 kernels can read the
/// operands, and which operands are row-major (the others are read across rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShapeClass {
    m: u8,
    n: u8,
    k: u8,
    batched: bool,
    aligned: bool,
    a_row_major: bool,
    b_row_major: bool,
}

impl ShapeClass {
    /// The class of a `[batch, m, k] x [batch, k, n]` product.
    pub fn new(
        m: usize,
        n: usize,
        k: usize,
        batch: usize,
        aligned: bool,
        a_row_major: bool,
        b_row_major: bool,
    ) -> ShapeClass {
        ShapeClass { m: bucket(m), n: bucket(n), k: bucket(k), batched: batch > 1, aligned, a_row_major, b_row_major }
    }
}

impl std::fmt::Display for ShapeClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let upper = |b: u8| 1usize << (2 * b as u32);
        write!(f, "m<={} n<={} k<={}", upper(self.m), upper(self.n), upper(self.k))?;
        if self.batched {
            f.write_str(" batched")?;
        }
        f.write_str(if self.aligned { " aligned" } else { " unaligned" })?;
        let major = |row: bool| if row { "row" } else { "strided" };
        write!(f, " a:{} b:{}", major(self.a_row_major), major(self.b_row_major))
    }
}

/// Winners of the tuning pass, by adapter (its description line, driver and version) and
/// shape class. Global rather than per context, so two devices opened on one adapter tune
/// once.
fn cache() -> &'static Mutex<HashMap<(String, ShapeClass), &'static MatmulConfig>> {
    static CACHE: OnceLock<Mutex<HashMap<(String, ShapeClass), &'static MatmulConfig>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The adapter as the tuner keys its choices and exclusions: description line, driver and
/// driver version.
pub fn adapter_key(ctx: &GpuContext) -> String {
    format!("{} | {} {}", ctx.adapter.line(), ctx.adapter.driver, ctx.adapter.driver_info)
}

/// The configurations tuned so far on `ctx`'s adapter, as (shape class, configuration
/// name) pairs sorted by class: what the tuning pass chose, in this process or in an
/// earlier one whose choices were read from [`tuning_cache_path`], for logs and benchmarks.
pub fn tuned_matmul_configs(ctx: &GpuContext) -> Vec<(String, &'static str)> {
    let key = adapter_key(ctx);
    let mut out: Vec<(String, &'static str)> = cache()
        .lock()
        .unwrap()
        .iter()
        .filter(|((adapter, _), _)| *adapter == key)
        .map(|((_, class), config)| (class.to_string(), config.name))
        .collect();
    out.sort();
    out
}

/// A slice of the real problem for timing: its first `rows` rows of its first `batches`
/// batch entries.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slice {
    pub rows: usize,
    pub batches: usize,
}

/// Multiply-adds of the first slice timed; small enough for a software adapter, and grown
/// until the fastest candidate takes [`TARGET`] on faster ones.
const FIRST_SLICE_MACS: usize = 1 << 22;
/// Long enough that the time of a submit and a wait is a small part of what is measured.
const TARGET: Duration = Duration::from_millis(1);
/// A candidate slower than this is timed once, not twice.
const SLOW: Duration = Duration::from_millis(20);

/// Configurations pinned by [`pin_matmul_config`], by adapter key and shape class (as
/// its `Display` spells it).
static PINNED: Mutex<Vec<(String, String, &'static MatmulConfig)>> = Mutex::new(Vec::new());

/// Every configuration a matmul has run with, by adapter key and shape class: what a
/// reproducibility receipt records.
static USED: Mutex<Vec<(String, ShapeClass, &'static MatmulConfig)>> = Mutex::new(Vec::new());

/// Makes the tuner use the configuration `name` for the shape class spelled `class` (as
/// [`tuned_matmul_configs`] and receipts write it) on `ctx`'s adapter, for the rest of
/// the process: what [`crate::receipt::Receipt::pin`] does for each class of a receipt.
/// An unknown configuration name is an `Err`.
pub fn pin_matmul_config(ctx: &GpuContext, class: &str, name: &str) -> Result<(), String> {
    let config = MATMUL_CONFIGS.iter().find(|c| c.name == name).ok_or_else(|| {
        let names: Vec<&str> = MATMUL_CONFIGS.iter().map(|c| c.name).collect();
        format!("no tile configuration named '{name}' (known: {})", names.join(", "))
    })?;
    let key = adapter_key(ctx);
    let mut pinned = crate::gpu::context::lock(&PINNED);
    pinned.retain(|(k, c, _)| !(*k == key && c == class));
    pinned.push((key, class.to_string(), config));
    Ok(())
}

/// The configuration each shape class has run with on `ctx`'s adapter in this process
/// (chosen by the tuner, pinned or forced; the last one for a class), sorted by class.
pub fn used_matmul_configs(ctx: &GpuContext) -> Vec<(String, &'static str)> {
    let key = adapter_key(ctx);
    let mut out: Vec<(String, &'static str)> = crate::gpu::context::lock(&USED)
        .iter()
        .filter(|(k, _, _)| *k == key)
        .map(|(_, class, config)| (class.to_string(), config.name))
        .collect();
    out.sort();
    out
}

/// A pinned configuration for `class` on the adapter with key `key`: pinned in-process,
/// or by the receipt `WGRAD_MATMUL_RECEIPT` names.
fn pinned(key: &str, class: ShapeClass) -> Option<&'static MatmulConfig> {
    let from_env = crate::receipt::pins_from_env();
    let pinned = crate::gpu::context::lock(&PINNED);
    if pinned.is_empty() && from_env.is_empty() {
        return None;
    }
    let class = class.to_string();
    pinned.iter().find(|(k, c, _)| k == key && *c == class).map(|(_, _, config)| *config).or_else(|| {
        from_env
            .iter()
            .find(|(k, c, _)| k == key && *c == class)
            .and_then(|(_, _, name)| MATMUL_CONFIGS.iter().find(|c| c.name == *name))
    })
}

/// The configuration for a `[batch, m, k] x [batch, k, n]` product of class `class` on
/// `ctx`. `record` records one dispatch of a configuration on a slice of the problem (into
/// the real output, which the real dispatch overwrites afterwards).
pub(crate) fn choose(
    ctx: &GpuContext,
    class: ShapeClass,
    dims: (usize, usize, usize, usize),
    record: &mut dyn FnMut(&'static MatmulConfig, Slice),
) -> &'static MatmulConfig {
    // Formatted once per product: this runs on every matmul.
    let key = adapter_key(ctx);
    let config = choose_unrecorded(ctx, &key, class, dims, record);
    let mut used = crate::gpu::context::lock(&USED);
    match used.iter_mut().find(|(k, c, _)| *k == key && *c == class) {
        Some(entry) => entry.2 = config,
        None => used.push((key, class, config)),
    }
    config
}

/// [`choose`] without recording what it chose.
fn choose_unrecorded(
    ctx: &GpuContext,
    adapter: &str,
    class: ShapeClass,
    (m, n, k, batch): (usize, usize, usize, usize),
    record: &mut dyn FnMut(&'static MatmulConfig, Slice),
) -> &'static MatmulConfig {
    if let Some(config) = forced() {
        let config = if !config.vec4 || class.aligned { config } else { matmul_config(config.fallback) };
        if is_excluded(adapter, config) {
            log::warn!("matmul: {} is excluded on {} but forced by name; using it", config.name, ctx.adapter.line());
        }
        return config;
    }
    if let Some(config) = pinned(adapter, class) {
        return config;
    }
    load_persisted();
    let key = (adapter.to_string(), class);
    // The cache never holds an excluded configuration: the persisted ones are filtered as
    // they are read, and `exclude_matmul_config` drops those it excludes.
    if let Some(&config) = crate::gpu::context::lock(cache()).get(&key) {
        return config;
    }
    let mut candidates: Vec<&'static MatmulConfig> =
        MATMUL_CONFIGS.iter().filter(|c| (!c.vec4 || class.aligned) && !is_excluded(&key.0, c)).collect();
    if candidates.is_empty() {
        // Every configuration that can run this class is excluded: the scalar tile64,
        // which reads any operands, is the least surprising choice.
        log::error!("matmul: every configuration for {class} is excluded on {}; using tile64", key.0);
        candidates.push(matmul_config("tile64"));
    }
    if ctx.adapter.is_software() {
        candidates.sort_by_key(|c| c.workgroup_memory);
    }
    // The budget is the process's: what earlier classes spent is gone, and once it is
    // all spent a class takes its first candidate untimed, for this process only (it is
    // not persisted, so a later process tunes it).
    let budget = tuning_budget().saturating_sub(*crate::gpu::context::lock(&SPENT));
    if budget.is_zero() {
        let config = candidates[0];
        log::info!(
            "matmul on {}: {} -> {} (untimed: the tuning budget of {} ms is spent; a later process tunes it)",
            ctx.adapter.line(),
            class,
            config.name,
            tuning_budget().as_millis()
        );
        crate::gpu::context::lock(cache()).insert(key, config);
        return config;
    }
    let started = Instant::now();
    // Work recorded before this product must not be counted against the first candidate.
    ctx.synchronize();
    let per_row = (n * k).max(1);
    let mut slice = if batch > 1 {
        Slice { rows: m, batches: (FIRST_SLICE_MACS / (per_row * m.max(1))).clamp(1, batch) }
    } else {
        Slice { rows: (FIRST_SLICE_MACS / per_row).clamp(1, m), batches: 1 }
    };
    let mut warmed = 0;
    loop {
        let mut times: Vec<Duration> = Vec::with_capacity(candidates.len());
        for (i, &config) in candidates.iter().enumerate() {
            // Past the budget, the candidates not yet timed are never compiled.
            if !times.is_empty() && started.elapsed() > budget {
                break;
            }
            if i >= warmed {
                // One row first: drivers that compile a pipeline on its first dispatch
                // (llvmpipe does) would otherwise time the compiler, not the kernel.
                record(config, Slice { rows: 1, batches: 1 });
                ctx.synchronize();
                warmed = i + 1;
            }
            let mut once = || {
                // Recording compiles the pipeline on first use, outside the timed wait.
                record(config, slice);
                let start = Instant::now();
                ctx.synchronize();
                start.elapsed()
            };
            let first = once();
            times.push(if first > SLOW { first } else { first.min(once()) });
        }
        let timed = &candidates[..times.len()];
        let fastest = times.iter().copied().min().unwrap_or_default();
        let whole = slice.rows == m && slice.batches == batch;
        let spent = started.elapsed() > budget;
        if fastest >= TARGET || whole || spent {
            let best = timed.iter().zip(&times).min_by_key(|(_, t)| **t).map(|(c, _)| *c).unwrap_or(candidates[0]);
            let report: Vec<String> =
                timed.iter().zip(&times).map(|(c, t)| format!("{} {:.3} ms", c.name, t.as_secs_f64() * 1e3)).collect();
            log::info!(
                "matmul on {}: {} -> {} (timed on {} rows x {} batch entries: {}{}; tuning took {:.0} ms)",
                ctx.adapter.line(),
                class,
                best.name,
                slice.rows,
                slice.batches,
                report.join(", "),
                if spent {
                    format!("; the budget of {} ms is spent", tuning_budget().as_millis())
                } else {
                    String::new()
                },
                started.elapsed().as_secs_f64() * 1e3
            );
            *crate::gpu::context::lock(&SPENT) += started.elapsed();
            crate::gpu::context::lock(cache()).insert(key.clone(), best);
            persist(&key.0, class, best);
            return best;
        }
        if slice.batches < batch {
            slice.batches = (slice.batches * 4).min(batch);
        } else {
            slice.rows = (slice.rows * 4).min(m);
        }
    }
}

// ---- the tuner's budget and its results across processes ----

/// The tuning time the passes of one process spent so far.
static SPENT: Mutex<Duration> = Mutex::new(Duration::ZERO);

/// How long the tuning passes of one process may take together: `WGRAD_TUNING_BUDGET_MS`,
/// default 1000. A pass that reaches it settles for the best candidate timed so far, and
/// the classes met after that take their first candidate untimed. On a hardware GPU every
/// pass takes milliseconds; on a software adapter it is the driver's compilation of each
/// candidate that costs (seconds each on llvmpipe's GL), and the candidates past the
/// budget are never compiled.
fn tuning_budget() -> Duration {
    static BUDGET: OnceLock<Duration> = OnceLock::new();
    *BUDGET.get_or_init(|| {
        let ms = match std::env::var("WGRAD_TUNING_BUDGET_MS") {
            Ok(v) => v.trim().parse::<u64>().unwrap_or_else(|_| {
                log::warn!("WGRAD_TUNING_BUDGET_MS={v} is not a number of milliseconds; using 1000");
                1000
            }),
            Err(_) => 1000,
        };
        Duration::from_millis(ms)
    })
}

/// The file the tuner's choices persist in across processes: `WGRAD_TUNING_CACHE` (a
/// path, or `0` to keep them in memory only), else `wgrad/matmul-tuning-v1.txt` in the
/// user's cache folder (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `~/Library/Caches` on
/// macOS, `%LOCALAPPDATA%` on Windows). Each line is one choice: adapter key (adapter,
/// back-end, driver and its version), shape class and configuration, tab-separated, so a
/// new driver tunes afresh.
pub fn tuning_cache_path() -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    match std::env::var_os("WGRAD_TUNING_CACHE") {
        Some(v) if v == "0" || v == "off" => return None,
        Some(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    let base = if cfg!(target_os = "windows") {
        std::env::var_os("LOCALAPPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        home().map(|h| h.join("Library").join("Caches"))
    } else {
        std::env::var_os("XDG_CACHE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| home().map(|h| h.join(".cache")))
    };
    base.map(|b| b.join("wgrad").join("matmul-tuning-v1.txt"))
}

impl ShapeClass {
    /// The class as the persisted file writes it: its seven fields as numbers.
    fn encode(&self) -> String {
        let b = |v: bool| v as u8;
        format!(
            "{} {} {} {} {} {} {}",
            self.m,
            self.n,
            self.k,
            b(self.batched),
            b(self.aligned),
            b(self.a_row_major),
            b(self.b_row_major)
        )
    }

    fn decode(text: &str) -> Option<ShapeClass> {
        let v: Vec<u8> = text.split(' ').map(|f| f.parse().ok()).collect::<Option<_>>()?;
        let flag = |x: u8| (x <= 1).then_some(x == 1);
        match v[..] {
            [m, n, k, batched, aligned, a, b] => Some(ShapeClass {
                m,
                n,
                k,
                batched: flag(batched)?,
                aligned: flag(aligned)?,
                a_row_major: flag(a)?,
                b_row_major: flag(b)?,
            }),
            _ => None,
        }
    }
}

/// Reads the persisted choices into the in-memory cache, once per process. A missing
/// file is an empty one; lines that do not parse (another version's) are skipped.
fn load_persisted() {
    static LOADED: OnceLock<()> = OnceLock::new();
    LOADED.get_or_init(|| {
        let Some(path) = tuning_cache_path() else { return };
        let Ok(text) = std::fs::read_to_string(&path) else { return };
        let mut entries = Vec::new();
        // A cache: a line it cannot read (cut short by a crash, or from another version)
        // costs one tuning pass, not the run.
        let mut unreadable = 0;
        for line in text.lines() {
            let mut fields = line.split('\t');
            let (Some(adapter), Some(class), Some(name), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                unreadable += 1;
                continue;
            };
            let (Some(class), Some(config)) =
                (ShapeClass::decode(class), MATMUL_CONFIGS.iter().find(|c| c.name == name))
            else {
                unreadable += 1;
                continue;
            };
            // A configuration excluded since it was chosen stays out.
            if !is_excluded(adapter, config) {
                entries.push(((adapter.to_string(), class), config));
            }
        }
        if unreadable > 0 {
            log::warn!(
                "matmul: skipped {unreadable} unreadable lines of {}; those classes are tuned again",
                path.display()
            );
        }
        log::info!("matmul: {} tuned configurations read from {}", entries.len(), path.display());
        crate::gpu::context::lock(cache()).extend(entries);
    });
}

/// Appends one choice to the persisted file; failures are logged and otherwise ignored
/// (the choice is still kept for this process).
fn persist(adapter: &str, class: ShapeClass, config: &MatmulConfig) {
    let Some(path) = tuning_cache_path() else { return };
    let line = format!("{adapter}\t{}\t{}\n", class.encode(), config.name);
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::OpenOptions::new().create(true).append(true).open(&path))
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
    if let Err(e) = written {
        log::warn!("matmul: could not keep the tuned configuration in {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_grow_by_factors_of_four() {
        let got: Vec<u8> = [1, 2, 4, 5, 16, 17, 64, 65, 256, 1024, 1025].iter().map(|&s| bucket(s)).collect();
        assert_eq!(got, vec![0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 6]);
        assert_eq!(bucket(0), 0);
    }

    #[test]
    fn exclusion_lines_name_a_configuration_and_optionally_an_adapter() {
        let text = "# from a conformance run\nrows8\n\n vec4_tile128 @ llvmpipe | Vulkan \nnot_a_config\n";
        let parsed = parse_exclusions(text);
        assert_eq!(parsed, vec![(String::new(), "rows8"), ("llvmpipe | Vulkan".to_string(), "vec4_tile128")]);
    }

    #[test]
    fn shape_classes_survive_the_persisted_file() {
        for class in
            [ShapeClass::new(1, 5, 300, 1, false, true, false), ShapeClass::new(700, 64, 9, 4, true, false, true)]
        {
            assert_eq!(ShapeClass::decode(&class.encode()), Some(class));
        }
        assert_eq!(ShapeClass::decode("1 2 3 0 1 1"), None);
        assert_eq!(ShapeClass::decode("1 2 3 0 1 1 2"), None);
    }

    #[test]
    fn fallbacks_are_scalar_configurations() {
        for c in MATMUL_CONFIGS {
            let f = matmul_config(c.fallback);
            assert!(!f.vec4, "{} falls back to the vec4 configuration {}", c.name, f.name);
        }
    }
}
