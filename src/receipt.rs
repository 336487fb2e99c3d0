//! Reproducibility receipts: what a checkpoint needs to carry for a run to be repeated
//! and checked.
//!
//! A [`Receipt`] records the wgrad version, the seed, the device line (adapter, driver,
//! back-end), the matmul tile configuration used for each shape class, and a hash of every
//! parameter and buffer. [`crate::checkpoint::save_with_receipt`] writes it into the
//! safetensors `__metadata__` (PyTorch's `load_file` ignores it) and
//! [`crate::checkpoint::load_receipt`] reads it back.
//!
//! Two uses:
//!
//! - **Repeating a run bit for bit.** Every kernel is deterministic on a given adapter and
//!   driver except in one choice: the matmul tuner times its candidates, and timing noise
//!   may pick another configuration in another process. [`Receipt::pin`] (or
//!   `WGRAD_MATMUL_RECEIPT=<checkpoint>` for the whole process) makes the tuner use the
//!   receipt's configurations on the receipt's adapter, so a second run from the same seed
//!   gives the same bits.
//! - **Measuring drift.** [`verify`] replays a short run on the CPU reference, compares its
//!   parameters with the GPU run's, and reports the largest absolute and relative
//!   difference per parameter, and whether the GPU parameters still hash as the receipt
//!   says.
//!
//! The trainer's resumable checkpoints and `ModelCheckpoint` write a receipt into every
//! model file they save, with the seed given to [`crate::train::Trainer::seed`].

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::tuning;
use crate::nn::Module;
use crate::{DType, Device, Tensor};

/// The prefix of the receipt's keys in a checkpoint's `__metadata__`.
const PREFIX: &str = "wgrad.receipt.";

/// What a checkpoint records about the run that wrote it (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// `CARGO_PKG_VERSION` of the wgrad that wrote it.
    pub wgrad_version: String,
    /// The seed the run was started from, as the program reports it.
    pub seed: Option<u64>,
    /// [`Device::info`] of the device the run trained on.
    pub device: String,
    /// The adapter, driver and driver version, as the tuner keys its choices (`CPU` on
    /// the CPU backend).
    pub adapter_key: String,
    /// The matmul configuration used for each shape class, sorted by class.
    pub matmul_configs: Vec<(String, String)>,
    /// The hash of each parameter and buffer ([`hash_tensor`]), by name, sorted by name.
    pub hashes: Vec<(String, String)>,
}

impl Receipt {
    /// The receipt of `module` trained on `device` from `seed`: the matmul configurations
    /// used so far on `device`, and the hash of each of `module`'s parameters and buffers
    /// now (which waits for the GPU work recorded so far).
    pub fn new(module: &dyn Module, device: &Device, seed: Option<u64>) -> Receipt {
        let (adapter_key, matmul_configs) = match device.gpu_context() {
            Some(ctx) => (
                tuning::adapter_key(ctx),
                tuning::used_matmul_configs(ctx).into_iter().map(|(c, n)| (c, n.to_string())).collect(),
            ),
            None => ("CPU".to_string(), Vec::new()),
        };
        Receipt {
            wgrad_version: env!("CARGO_PKG_VERSION").to_string(),
            seed,
            device: device.info(),
            adapter_key,
            matmul_configs,
            hashes: hashes(module),
        }
    }

    /// The receipt as `__metadata__` entries.
    pub fn to_metadata(&self) -> HashMap<String, String> {
        let mut out = HashMap::from([
            (format!("{PREFIX}wgrad_version"), self.wgrad_version.clone()),
            (format!("{PREFIX}device"), self.device.clone()),
            (format!("{PREFIX}adapter_key"), self.adapter_key.clone()),
        ]);
        if let Some(seed) = self.seed {
            out.insert(format!("{PREFIX}seed"), seed.to_string());
        }
        for (class, name) in &self.matmul_configs {
            out.insert(format!("{PREFIX}matmul.{class}"), name.clone());
        }
        for (tensor, hash) in &self.hashes {
            out.insert(format!("{PREFIX}hash.{tensor}"), hash.clone());
        }
        out
    }

    /// The receipt in `metadata`, `None` when it holds none; a receipt with a missing
    /// field or a seed that is not a number is an [`Error::Format`] naming `path`.
    pub fn from_metadata(metadata: &HashMap<String, String>, path: &str) -> Result<Option<Receipt>> {
        if !metadata.keys().any(|k| k.starts_with(PREFIX)) {
            return Ok(None);
        }
        let bad = |reason: String| Error::Format { path: path.to_string(), reason };
        let field = |name: &str| {
            metadata.get(&format!("{PREFIX}{name}")).cloned().ok_or_else(|| bad(format!("the receipt has no {name}")))
        };
        let seed = match metadata.get(&format!("{PREFIX}seed")) {
            Some(s) => Some(s.parse().map_err(|_| bad(format!("the receipt's seed '{s}' is not a number")))?),
            None => None,
        };
        let mut matmul_configs = Vec::new();
        let mut hashes = Vec::new();
        for (key, value) in metadata {
            if let Some(class) = key.strip_prefix(PREFIX).and_then(|k| k.strip_prefix("matmul.")) {
                matmul_configs.push((class.to_string(), value.clone()));
            } else if let Some(tensor) = key.strip_prefix(PREFIX).and_then(|k| k.strip_prefix("hash.")) {
                hashes.push((tensor.to_string(), value.clone()));
            }
        }
        matmul_configs.sort();
        hashes.sort();
        Ok(Some(Receipt {
            wgrad_version: field("wgrad_version")?,
            seed,
            device: field("device")?,
            adapter_key: field("adapter_key")?,
            matmul_configs,
            hashes,
        }))
    }

    /// Makes the matmul tuner use this receipt's configurations for their shape classes on
    /// `device`, for the rest of the process, when `device` is the adapter and driver the
    /// receipt was written on; an [`Error::Training`] naming both adapters otherwise,
    /// since another adapter's choices need not be the fastest there, or even correct.
    /// Classes the receipt does not list are tuned as usual. A no-op on the CPU.
    pub fn pin(&self, device: &Device) -> Result<()> {
        let Some(ctx) = device.gpu_context() else { return Ok(()) };
        let here = tuning::adapter_key(ctx);
        if here != self.adapter_key {
            return Err(Error::Training(format!(
                "the receipt's matmul configurations were chosen on {}, not on this adapter ({here})",
                self.adapter_key
            )));
        }
        for (class, name) in &self.matmul_configs {
            tuning::pin_matmul_config(ctx, class, name)
                .map_err(|e| Error::Training(format!("receipt: matmul configuration for {class}: {e}")))?;
        }
        Ok(())
    }
}

/// Saves `module` to `path` with the receipt of a run from `seed` on the device its
/// parameters (or buffers) live on; a module with neither is saved without one. What the
/// trainer's checkpoints and `ModelCheckpoint` write.
pub(crate) fn save_with_receipt_of_run(module: &dyn Module, path: &Path, seed: Option<u64>) -> Result<()> {
    let first =
        module.parameters().into_iter().next().or_else(|| module.named_buffers().into_iter().next().map(|(_, t)| t));
    match first {
        Some(t) => crate::checkpoint::save_with_receipt(module, path, &Receipt::new(module, t.device(), seed)),
        None => crate::checkpoint::save(module, path),
    }
}

/// A 64-bit FNV-1a hash of a tensor's dtype, shape and row-major elements, as 16 hex
/// digits: equal for equal bits, on any device.
pub fn hash_tensor(t: &Tensor) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(t.dtype().to_string().as_bytes());
    for &d in t.shape() {
        eat(&(d as u64).to_le_bytes());
    }
    match t.dtype() {
        DType::F32 => t.to_vec::<f32>().iter().for_each(|v| eat(&v.to_le_bytes())),
        DType::I32 => t.to_vec::<i32>().iter().for_each(|v| eat(&v.to_le_bytes())),
        DType::F16 => t.to_vec::<half::f16>().iter().for_each(|v| eat(&v.to_le_bytes())),
    }
    format!("{h:016x}")
}

/// The hash of every parameter and buffer of `module`, sorted by name.
fn hashes(module: &dyn Module) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = module
        .named_parameters()
        .into_iter()
        .chain(module.named_buffers())
        .map(|(name, t)| (name, hash_tensor(&t)))
        .collect();
    out.sort();
    out
}

/// How far one parameter of a GPU run is from the CPU reference's replay.
#[derive(Clone, Debug)]
pub struct ParameterDrift {
    /// The parameter's or buffer's name, as the state dict spells it.
    pub name: String,
    /// `max |gpu - cpu|` over the elements.
    pub max_abs: f32,
    /// `max |gpu - cpu| / max(|cpu|, 1e-12)` over the elements.
    pub max_rel: f32,
    /// Whether the GPU run's tensor still hashes as the receipt says.
    pub hash_matches: bool,
}

/// The result of [`verify`].
#[derive(Clone, Debug)]
pub struct Drift {
    /// One entry per parameter, then per buffer, in the model's order.
    pub parameters: Vec<ParameterDrift>,
    /// Receipt hashes with no tensor in the GPU run, and GPU tensors without a hash or
    /// without a counterpart in the replay.
    pub unmatched: Vec<String>,
}

impl Drift {
    /// The largest absolute difference over every parameter.
    pub fn max_abs(&self) -> f32 {
        self.parameters.iter().map(|p| p.max_abs).fold(0.0, f32::max)
    }

    /// Whether every tensor of the GPU run is the one the receipt hashed, and nothing is
    /// unmatched.
    pub fn hashes_match(&self) -> bool {
        self.unmatched.is_empty() && self.parameters.iter().all(|p| p.hash_matches)
    }
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<32} {:>12} {:>12} {:>6}", "parameter", "max abs", "max rel", "hash")?;
        for p in &self.parameters {
            let hash = if p.hash_matches { "ok" } else { "DIFF" };
            writeln!(f, "{:<32} {:>12.3e} {:>12.3e} {:>6}", p.name, p.max_abs, p.max_rel, hash)?;
        }
        for u in &self.unmatched {
            writeln!(f, "unmatched: {u}")?;
        }
        Ok(())
    }
}

/// Replays a short run on the CPU reference and measures how far the GPU run `trained`
/// drifted from it: `replay` runs the same steps from `receipt.seed` on the device it is
/// given (the CPU) and returns the resulting model. Each parameter and buffer of
/// `trained` is compared with the replay's of the same name, and its hash with the
/// receipt's.
pub fn verify<M: Module>(receipt: &Receipt, trained: &dyn Module, replay: impl FnOnce(&Device) -> M) -> Drift {
    let reference = replay(&Device::cpu());
    let expected: HashMap<String, Tensor> =
        reference.named_parameters().into_iter().chain(reference.named_buffers()).collect();
    let recorded: HashMap<&str, &str> = receipt.hashes.iter().map(|(n, h)| (n.as_str(), h.as_str())).collect();
    let mut parameters = Vec::new();
    let mut unmatched = Vec::new();
    let mut seen = Vec::new();
    for (name, t) in trained.named_parameters().into_iter().chain(trained.named_buffers()) {
        seen.push(name.clone());
        let hash_matches = recorded.get(name.as_str()).is_some_and(|&h| h == hash_tensor(&t));
        if !recorded.contains_key(name.as_str()) {
            unmatched.push(format!("{name}: not in the receipt"));
        }
        let Some(cpu) = expected.get(&name) else {
            unmatched.push(format!("{name}: not in the replay"));
            continue;
        };
        if t.shape() != cpu.shape() || t.dtype() != DType::F32 || cpu.dtype() != DType::F32 {
            let (a, b) = (t.to_device(&Device::cpu()), cpu);
            let same = a.shape() == b.shape() && hash_tensor(&a) == hash_tensor(b);
            let drift = if same { 0.0 } else { f32::INFINITY };
            parameters.push(ParameterDrift { name, max_abs: drift, max_rel: drift, hash_matches });
            continue;
        }
        let (gpu, cpu) = (t.to_vec::<f32>(), cpu.to_vec::<f32>());
        let mut max_abs = 0.0f32;
        let mut max_rel = 0.0f32;
        for (g, c) in gpu.iter().zip(&cpu) {
            let d = (g - c).abs();
            let d = if d.is_nan() && !(g.is_nan() && c.is_nan()) { f32::INFINITY } else { d };
            max_abs = max_abs.max(d);
            max_rel = max_rel.max(d / c.abs().max(1e-12));
        }
        parameters.push(ParameterDrift { name, max_abs, max_rel, hash_matches });
    }
    for (name, _) in &receipt.hashes {
        if !seen.contains(name) {
            unmatched.push(format!("{name}: in the receipt, not in the trained model"));
        }
    }
    Drift { parameters, unmatched }
}

/// The (adapter key, class, configuration) pins of the receipt in the checkpoint that
/// `WGRAD_MATMUL_RECEIPT` names, read once; a file without a readable receipt is logged
/// and pins nothing.
pub(crate) fn pins_from_env() -> &'static [(String, String, String)] {
    static PINS: std::sync::OnceLock<Vec<(String, String, String)>> = std::sync::OnceLock::new();
    PINS.get_or_init(|| {
        let Some(path) = std::env::var_os("WGRAD_MATMUL_RECEIPT").filter(|p| !p.is_empty()) else {
            return Vec::new();
        };
        match crate::checkpoint::load_receipt(&path) {
            Ok(Some(r)) => {
                log::info!(
                    "matmul: WGRAD_MATMUL_RECEIPT pins {} configurations on {}",
                    r.matmul_configs.len(),
                    r.adapter_key
                );
                r.matmul_configs.into_iter().map(|(class, name)| (r.adapter_key.clone(), class, name)).collect()
            }
            Ok(None) => {
                log::error!("WGRAD_MATMUL_RECEIPT: {} holds no receipt", path.to_string_lossy());
                Vec::new()
            }
            Err(e) => {
                log::error!("WGRAD_MATMUL_RECEIPT: {e}");
                Vec::new()
            }
        }
    })
}
