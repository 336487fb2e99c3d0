//! Shadow mode: every op a GPU device runs is run again on the CPU reference backend, on
//! the same input bits, and the two results are compared.
//!
//! wgrad's tests cross-check every kernel against its CPU twin on shapes chosen to break
//! it. Shadow mode puts the same check in a user's hands, on their own adapter and driver
//! and their own model: a driver that miscompiles one kernel, or a kernel that is wrong
//! only for the user's shapes, shows up as the first op whose GPU result leaves the op's
//! tolerance, with a [`ShadowReport`] naming the op, its operands' shapes and layouts, the
//! step, the parameter it touches (when the model was registered), and the worst element
//! on both devices.
//!
//! Turn it on with [`Device::with_shadow`], or for [`Device::auto`], [`Device::gpu`] and
//! [`Device::software`] with the environment variable `WGRAD_SHADOW=1` (with
//! `WGRAD_SHADOW_EVERY=N` to check every Nth optimizer step and
//! `WGRAD_SHADOW_ON_MISMATCH=panic|log|error`).
//!
//! How it works: the storage methods (the one place that hands work to a backend) ask
//! `begin` before a GPU op; when the device is shadowed and the step is sampled, the
//! operands are read back into host copies first (so ops that write in place, like the
//! optimizer step, are compared from the same starting bits), the GPU op runs, the same
//! storage method runs on the host copies with the CPU backend, and the outputs (new
//! buffers, or the buffers written in place) are read back and compared with
//! [`tolerance`].
//!
//! Cost: every op runs twice, once on the CPU, and each one waits for the GPU to finish
//! and reads its operands and outputs back, so batching of GPU work is lost while a step
//! is checked. Expect a checked step to take about as long as the same step on the CPU
//! backend plus one read-back per operand. `every` bounds the average cost: with
//! `every: 10`, nine steps in ten run at full speed. When shadow mode is off the cost is
//! one relaxed atomic load per op.
//!
//! Shadow mode lives on the device's shared context: every clone of that device, every
//! later `Device::gpu()` returning it, is shadowed until [`Device::without_shadow`].

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use half::f16;

use crate::device::Device;
use crate::dtype::DType;
use crate::gpu::context::{lock, GpuContext};
use crate::nn::Module;
use crate::op::{BinaryOp, CreationOp, Op, ReduceOp, SoftmaxOp, UnaryOp};
use crate::storage::{CpuData, Storage};
use crate::testing::Tolerance;

/// What shadow mode does on the first disagreement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnMismatch {
    /// Panic with the report, stopping the run at the op that disagreed.
    #[default]
    Panic,
    /// Log the report (`log::error!`), keep it for [`Device::shadow_reports`] and go on.
    Log,
    /// Keep the report and go on; the next [`Device::try_synchronize`] returns it as
    /// [`crate::Error::ShadowMismatch`], once.
    Error,
}

/// Options of shadow mode (see the [module documentation](self)).
#[derive(Clone, Copy, Debug)]
pub struct ShadowOptions {
    /// Check the ops of every `every`th optimizer step (1: all). Steps are counted by the
    /// optimizers; ops before the first step belong to step 0, which is always checked.
    pub every: u64,
    /// What to do when an op disagrees.
    pub on_mismatch: OnMismatch,
    /// Multiplies every tolerance of [`tolerance`]: above 1 to accept a driver's looser
    /// transcendental functions, below 1 to look for smaller drifts.
    pub tolerance_scale: f32,
}

impl Default for ShadowOptions {
    fn default() -> Self {
        ShadowOptions { every: 1, on_mismatch: OnMismatch::Panic, tolerance_scale: 1.0 }
    }
}

impl ShadowOptions {
    /// The options `WGRAD_SHADOW=1` asks for, or `None` when it is unset or `0`:
    /// `WGRAD_SHADOW_EVERY` (default 1) and `WGRAD_SHADOW_ON_MISMATCH` (`panic`, the
    /// default, `log` or `error`). A value that does not parse is logged and ignored.
    pub fn from_env() -> Option<ShadowOptions> {
        let on = std::env::var("WGRAD_SHADOW").ok()?;
        if matches!(on.trim(), "" | "0" | "false" | "off") {
            return None;
        }
        let mut options = ShadowOptions::default();
        if let Ok(v) = std::env::var("WGRAD_SHADOW_EVERY") {
            match v.trim().parse::<u64>() {
                Ok(n) if n > 0 => options.every = n,
                _ => log::warn!("WGRAD_SHADOW_EVERY={v} is not a positive integer; checking every step"),
            }
        }
        if let Ok(v) = std::env::var("WGRAD_SHADOW_ON_MISMATCH") {
            match v.trim().to_ascii_lowercase().as_str() {
                "panic" => options.on_mismatch = OnMismatch::Panic,
                "log" => options.on_mismatch = OnMismatch::Log,
                "error" => options.on_mismatch = OnMismatch::Error,
                _ => log::warn!("WGRAD_SHADOW_ON_MISMATCH={v} is not panic, log or error; panicking on a mismatch"),
            }
        }
        Some(options)
    }
}

/// One op whose GPU result left its tolerance around the CPU reference.
#[derive(Clone, Debug)]
pub struct ShadowReport {
    /// The op, as [`Op::name`] spells it (`matmul`, `relu`, `adam`, ...).
    pub op: String,
    /// Where the op ran: `forward`, `backward of <gradient rule>` or `optimizer step`.
    pub phase: String,
    /// The optimizer step the op belongs to (0 before the first step).
    pub step: u64,
    /// The op's arguments: shapes, layouts (strides, offsets) and geometry.
    pub arguments: String,
    /// Registered parameters and buffers among the op's operands (`fc1.weight`).
    pub parameters: Vec<String>,
    /// In the backward pass, whose gradient the disagreeing result is or becomes: a
    /// registered name (`lstm.weight_hh_l0`), or `input i of the rule` for an unnamed
    /// input; `None` for an intermediate of the rule, or outside the backward pass.
    pub gradient_of: Option<String>,
    /// Which result disagreed (`output`, `indices`, `fc1.weight (written in place)`).
    pub output: String,
    /// The element of that result with the largest disagreement.
    pub worst_index: usize,
    /// Its value on the GPU.
    pub gpu_value: f32,
    /// Its value on the CPU reference.
    pub cpu_value: f32,
    /// The tolerance that was applied.
    pub tolerance: Tolerance,
    /// The comparison's own account of the failure.
    pub failure: String,
    /// The device line of the GPU.
    pub device: String,
}

impl fmt::Display for ShadowReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "shadow mode: `{}` disagrees with the CPU reference", self.op)?;
        writeln!(f, "  step {}, {}", self.step, self.phase)?;
        writeln!(f, "  arguments: {}", self.arguments)?;
        if let Some(g) = &self.gradient_of {
            writeln!(f, "  computing the gradient of {g}")?;
        }
        if !self.parameters.is_empty() {
            writeln!(f, "  parameters among its operands: {}", self.parameters.join(", "))?;
        }
        writeln!(
            f,
            "  {}: worst element {}: GPU {:e}, CPU {:e} ({:?}: {})",
            self.output, self.worst_index, self.gpu_value, self.cpu_value, self.tolerance, self.failure
        )?;
        write!(f, "  device: {}", self.device)
    }
}

/// How closely a GPU op must agree with the CPU reference on the same inputs.
///
/// The values are those of the test suite's cross-checks where those hold for any input
/// (`tests/common/mod.rs`), and a little wider where the tests bound an input range that
/// a model does not (the transcendental functions, whose WGSL error grows with the
/// argument). Sums of products (matmul, convolution, reductions, normalisations, the
/// fused losses) are compared by normalised error, elementwise ops elementwise, and ops
/// that only move or pick elements bit for bit.
pub fn tolerance(op: Op) -> Tolerance {
    use Tolerance::{Elementwise, Exact, Normalized};
    let within = |atol, rtol| Elementwise { atol, rtol };
    match op {
        Op::Creation(CreationOp::RandNormal) => Normalized { tol: 2e-5 },
        Op::Creation(CreationOp::RandUniform) => within(1e-6, 1e-6),
        Op::Creation(_) => within(0.0, 1e-6),
        Op::Unary(UnaryOp::Copy | UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Clamp) => Exact,
        Op::Unary(UnaryOp::Square | UnaryOp::Affine | UnaryOp::Recip | UnaryOp::Sqrt | UnaryOp::Rsqrt) => {
            within(1e-6, 1e-6)
        }
        Op::Unary(UnaryOp::LeakyRelu) => within(0.0, 1e-6),
        Op::Unary(_) => within(2e-6, 1e-5),
        Op::Binary(BinaryOp::Pow) => within(1e-6, 1e-5),
        Op::Binary(BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div) => within(0.0, 1e-6),
        Op::Binary(_) | Op::Where => Exact,
        Op::Reduce(ReduceOp::Sum | ReduceOp::Mean) => Normalized { tol: 1e-5 },
        Op::Reduce(ReduceOp::Var) => Normalized { tol: 2e-5 },
        Op::Reduce(_) => Exact,
        Op::Softmax(SoftmaxOp::Softmax) => within(1e-9, 2e-5),
        Op::Softmax(_) => within(4e-6, 4e-6),
        Op::Index(_) | Op::Embedding(_) | Op::Augment(_) => Normalized { tol: 1e-6 },
        Op::Half(crate::op::HalfOp::Matmul) => Normalized { tol: 1e-3 },
        Op::Half(_) => Exact,
        Op::Pool(_) => within(1e-6, 1e-5),
        Op::Optim(_) => within(1e-7, 1e-5),
        Op::Matmul | Op::Conv(_) | Op::BatchNorm(_) | Op::LayerNorm(_) | Op::Rnn(_) | Op::Loss(_) => {
            Normalized { tol: 1e-5 }
        }
    }
}

// ---- the state of each shadowed device ----

/// A shadowed device's options, step counter, names and reports.
struct State {
    options: ShadowOptions,
    step: AtomicU64,
    /// Storages of registered parameters and buffers, by name. The weak references keep
    /// the allocation, so an address is never reused by another storage while named.
    names: Mutex<Vec<(Weak<Storage>, String)>>,
    reports: Mutex<Vec<ShadowReport>>,
    /// Reports of [`OnMismatch::Error`] not yet returned by `try_synchronize`.
    unreported: Mutex<Option<ShadowReport>>,
    /// Ops compared so far, and which.
    checked: AtomicU64,
    seen: Mutex<HashSet<Op>>,
}

/// Set while any device is shadowed: the one load a storage method pays otherwise.
static ANY: AtomicBool = AtomicBool::new(false);
static STATES: Mutex<Vec<(usize, Arc<State>)>> = Mutex::new(Vec::new());

fn key(ctx: &Arc<GpuContext>) -> usize {
    Arc::as_ptr(ctx) as usize
}

fn state(ctx: &Arc<GpuContext>) -> Option<Arc<State>> {
    if !ANY.load(Ordering::Relaxed) {
        return None;
    }
    lock(&STATES).iter().find(|(k, _)| *k == key(ctx)).map(|(_, s)| s.clone())
}

pub(crate) fn enable(ctx: &Arc<GpuContext>, options: ShadowOptions) {
    let mut states = lock(&STATES);
    states.retain(|(k, _)| *k != key(ctx));
    let options = ShadowOptions { every: options.every.max(1), ..options };
    log::info!("shadow mode on for {} ({options:?})", ctx.adapter.line());
    states.push((
        key(ctx),
        Arc::new(State {
            options,
            step: AtomicU64::new(0),
            names: Mutex::new(Vec::new()),
            reports: Mutex::new(Vec::new()),
            unreported: Mutex::new(None),
            checked: AtomicU64::new(0),
            seen: Mutex::new(HashSet::new()),
        }),
    ));
    ANY.store(true, Ordering::Relaxed);
}

pub(crate) fn disable(ctx: &Arc<GpuContext>) {
    let mut states = lock(&STATES);
    states.retain(|(k, _)| *k != key(ctx));
    ANY.store(!states.is_empty(), Ordering::Relaxed);
}

pub(crate) fn is_enabled(ctx: &Arc<GpuContext>) -> bool {
    state(ctx).is_some()
}

pub(crate) fn reports(ctx: &Arc<GpuContext>) -> Vec<ShadowReport> {
    state(ctx).map(|s| lock(&s.reports).clone()).unwrap_or_default()
}

pub(crate) fn checked_ops(ctx: &Arc<GpuContext>) -> u64 {
    state(ctx).map_or(0, |s| s.checked.load(Ordering::Relaxed))
}

/// The ops compared so far on `ctx` (for the conformance run, which must see each one).
pub(crate) fn seen_ops(ctx: &Arc<GpuContext>) -> HashSet<Op> {
    state(ctx).map(|s| lock(&s.seen).clone()).unwrap_or_default()
}

/// The options `ctx` is shadowed with, if it is.
pub(crate) fn options(ctx: &Arc<GpuContext>) -> Option<ShadowOptions> {
    state(ctx).map(|s| s.options)
}

/// The report [`OnMismatch::Error`] kept for `try_synchronize`, once.
pub(crate) fn take_unreported(ctx: &Arc<GpuContext>) -> Option<ShadowReport> {
    state(ctx).and_then(|s| lock(&s.unreported).take())
}

/// Names the parameters and buffers of `model` (by `named_parameters` and
/// `named_buffers`) in the reports of the shadowed device they live on, so a report says
/// `lstm.weight_hh_l0` instead of a shape. [`crate::train::Trainer::fit`] registers its
/// model; a hand-written loop calls this once after building the model. A no-op when no
/// device is shadowed.
pub fn register(model: &dyn Module) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    let named = model.named_parameters().into_iter().chain(model.named_buffers());
    for (name, t) in named {
        let Some(ctx) = t.device().gpu_context() else { continue };
        let Some(s) = state(ctx) else { continue };
        let mut names = lock(&s.names);
        names.retain(|(w, _)| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(&t.storage)));
        names.push((Arc::downgrade(&t.storage), name));
    }
}

/// Counts one optimizer step on the device of `param`.
pub(crate) fn optimizer_stepped(param: &Device) {
    if let Some(ctx) = param.gpu_context() {
        if let Some(s) = state(ctx) {
            s.step.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn name_of(s: &State, storage: &Storage) -> Option<String> {
    lock(&s.names).iter().find(|(w, _)| std::ptr::eq(w.as_ptr(), storage)).map(|(_, n)| n.clone())
}

// ---- phases: forward, backward of a rule, optimizer step ----

/// What the current thread is doing, for the reports.
#[derive(Clone)]
enum Phase {
    Backward { rule: String, inputs: Vec<Arc<Storage>> },
    OptimizerStep,
}

thread_local! {
    static PHASE: RefCell<Option<Phase>> = const { RefCell::new(None) };
}

/// Restores the previous phase when dropped.
pub(crate) struct PhaseGuard(Option<Option<Phase>>);

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            PHASE.with(|p| *p.borrow_mut() = previous);
        }
    }
}

fn enter(phase: impl FnOnce() -> Phase) -> PhaseGuard {
    if !ANY.load(Ordering::Relaxed) {
        return PhaseGuard(None);
    }
    // A report held by a rule that panicked before returning is dropped with it.
    PENDING.with(|p| p.borrow_mut().take());
    let phase = phase();
    PhaseGuard(Some(PHASE.with(|p| p.borrow_mut().replace(phase))))
}

/// Marks the ops until the guard drops as the gradient rule `rule` of a node whose
/// inputs hold `inputs`: their gradients are what these ops compute.
pub(crate) fn enter_backward(rule: impl FnOnce() -> String, inputs: &[crate::Tensor]) -> PhaseGuard {
    enter(|| Phase::Backward { rule: rule(), inputs: inputs.iter().map(|t| t.storage.clone()).collect() })
}

/// Marks the ops until the guard drops as an optimizer step.
pub(crate) fn enter_optimizer_step() -> PhaseGuard {
    enter(|| Phase::OptimizerStep)
}

// ---- the check around one op ----

/// Host copies of the GPU operands of one op, looked up by the storage they copy.
pub(crate) struct Mirror {
    pairs: Vec<(*const Storage, Storage, DType)>,
}

impl Mirror {
    /// The host copy of `s`; `s` must be one of the operands given to [`begin`].
    pub(crate) fn get(&self, s: &Storage) -> &Storage {
        match self.pairs.iter().find(|(p, _, _)| std::ptr::eq(*p, s)) {
            Some((_, copy, _)) => copy,
            None => unreachable!("shadow: an operand was not copied before the op"),
        }
    }
}

/// The whole of a GPU storage as host data of `dtype`.
fn read_all(s: &Storage, dtype: DType) -> CpuData {
    let Storage::Gpu(b) = s else { unreachable!("shadow: reading back host storage") };
    let n = (b.len_bytes as usize) / dtype.size_bytes();
    if n == 0 {
        // Empty tensors: nothing to read back (a zero-sized copy is not allowed).
        return CpuData::zeros(dtype, 0, "shadow");
    }
    let read = match dtype {
        DType::F32 => s.try_read::<f32>(0, n).map(CpuData::F32),
        DType::I32 => s.try_read::<i32>(0, n).map(CpuData::I32),
        DType::F16 => s.try_read::<f16>(0, n).map(CpuData::F16),
    };
    read.unwrap_or_else(|e| panic!("shadow mode: reading back an operand failed: {e}"))
}

fn as_f32(d: &CpuData) -> Vec<f32> {
    match d {
        CpuData::F32(v) => v.clone(),
        CpuData::I32(v) => v.iter().map(|&x| x as f32).collect(),
        CpuData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
    }
}

/// An op under check: the state of its device and the host copies of its operands.
pub(crate) struct Check {
    state: Arc<State>,
    ctx: Arc<GpuContext>,
    mirror: Mirror,
}

/// Starts checking a GPU op on `ctx` whose operands (each with its dtype) are `operands`,
/// including every storage it writes in place: `None` when the device is not shadowed or
/// the step is not sampled, else the operands' host copies, taken before the op runs.
pub(crate) fn begin<'a>(
    ctx: &Arc<GpuContext>,
    operands: impl IntoIterator<Item = (&'a Storage, DType)>,
) -> Option<Check> {
    let state = state(ctx)?;
    if !state.step.load(Ordering::Relaxed).is_multiple_of(state.options.every) {
        return None;
    }
    let mut pairs: Vec<(*const Storage, Storage, DType)> = Vec::new();
    for (s, dtype) in operands {
        if pairs.iter().any(|(p, _, _)| std::ptr::eq(*p, s)) {
            continue;
        }
        pairs.push((s as *const Storage, Storage::cpu(read_all(s, dtype)), dtype));
    }
    Some(Check { state, ctx: ctx.clone(), mirror: Mirror { pairs } })
}

/// One result of an op: what to call it, the GPU storage and its dtype.
pub(crate) type Operand<'a> = (&'a str, &'a Storage, DType);

impl Check {
    /// Runs `cpu` (the same storage method on the host copies, returning its new outputs
    /// in the order of `outputs`) and compares: each of `outputs` against the CPU's new
    /// storage, each of `in_place` (GPU storages the op wrote, given to [`begin`]) against
    /// its host copy. `arguments` describes the call for a report.
    pub(crate) fn finish(
        self,
        op: Op,
        arguments: impl FnOnce() -> String,
        outputs: &[Operand],
        in_place: &[Operand],
        cpu: impl FnOnce(&Mirror) -> Vec<Storage>,
    ) {
        inject::apply(op, outputs.iter().chain(in_place).next());
        let cpu_outputs = cpu(&self.mirror);
        assert_eq!(cpu_outputs.len(), outputs.len(), "shadow: {} returned another number of outputs", op.name());
        let tol = scale(tolerance(op), self.state.options.tolerance_scale);
        let pairs = outputs
            .iter()
            .zip(&cpu_outputs)
            .map(|(&(what, gpu, dtype), cpu)| (what.to_string(), gpu, dtype, cpu))
            .chain(in_place.iter().map(|&(what, gpu, dtype)| (what.to_string(), gpu, dtype, self.mirror.get(gpu))));
        self.state.checked.fetch_add(1, Ordering::Relaxed);
        lock(&self.state.seen).insert(op);
        for (what, gpu, dtype, cpu) in pairs {
            let expected = as_f32(&cpu.cpu_data());
            let mut actual = as_f32(&read_all(gpu, dtype));
            actual.truncate(expected.len());
            if let Some(worst) = disagreement(&actual, &expected, tol) {
                let what = match name_of(&self.state, gpu) {
                    Some(name) => format!("{what} ({name})"),
                    None => what,
                };
                let report = self.report(op, arguments(), what, worst, tol);
                if let (Some(Phase::Backward { .. }), Storage::Gpu(out)) = (current_phase(), gpu) {
                    // Whose gradient this is shows when the rule returns: hold the report
                    // until then (see `finish_backward_rule`).
                    PENDING.with(|p| {
                        p.borrow_mut().get_or_insert(Pending {
                            report,
                            buffer: out.buffer().clone(),
                            state: self.state.clone(),
                        });
                    });
                    return;
                }
                fail(&self.state, report);
                return;
            }
        }
    }

    fn report(&self, op: Op, arguments: String, output: String, worst: Worst, tolerance: Tolerance) -> ShadowReport {
        let s = &self.state;
        // `begin` keeps each operand once, so each name comes once. The pointers are only
        // compared, never dereferenced.
        let names = lock(&s.names);
        let parameters: Vec<String> = self
            .mirror
            .pairs
            .iter()
            .filter_map(|(p, _, _)| names.iter().find(|(w, _)| std::ptr::eq(w.as_ptr(), *p)).map(|(_, n)| n.clone()))
            .collect();
        drop(names);
        let phase = match current_phase() {
            None => "forward".to_string(),
            Some(Phase::OptimizerStep) => "optimizer step".to_string(),
            Some(Phase::Backward { rule, inputs }) => {
                let described: Vec<String> = inputs
                    .iter()
                    .map(|st| match name_of(s, st) {
                        Some(n) => format!("`{n}`"),
                        None => "an activation".to_string(),
                    })
                    .collect();
                format!("backward of {rule} (inputs: {})", described.join(", "))
            }
        };
        ShadowReport {
            op: op.name().to_string(),
            phase,
            step: s.step.load(Ordering::Relaxed),
            arguments,
            parameters,
            gradient_of: None,
            output,
            worst_index: worst.index,
            gpu_value: worst.gpu,
            cpu_value: worst.cpu,
            tolerance,
            failure: worst.failure,
            device: Device::Gpu(self.ctx.clone()).info(),
        }
    }
}

/// Keeps `report` and acts on it as the options say.
fn fail(state: &State, report: ShadowReport) {
    lock(&state.reports).push(report.clone());
    match state.options.on_mismatch {
        OnMismatch::Panic => panic!("{report}"),
        OnMismatch::Log => log::error!("{report}"),
        OnMismatch::Error => {
            log::error!("{report}");
            lock(&state.unreported).get_or_insert(report);
        }
    }
}

/// A disagreement inside a gradient rule, held until the rule returns.
struct Pending {
    report: ShadowReport,
    /// The disagreeing result's buffer, to find among the gradients the rule returns.
    buffer: wgpu::Buffer,
    state: Arc<State>,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

fn current_phase() -> Option<Phase> {
    PHASE.with(|p| p.borrow().clone())
}

/// Called when a gradient rule with `inputs` has returned `grads`: completes and reports
/// a disagreement held from inside the rule, naming the input whose gradient shares the
/// disagreeing result's buffer (the result itself or a view of it).
pub(crate) fn finish_backward_rule(inputs: &[crate::Tensor], grads: &[Option<crate::Tensor>]) {
    if !ANY.load(Ordering::Relaxed) {
        return;
    }
    let Some(mut pending) = PENDING.with(|p| p.borrow_mut().take()) else { return };
    let owner = grads.iter().position(|g| {
        g.as_ref().is_some_and(|g| matches!(&*g.storage, Storage::Gpu(b) if *b.buffer() == pending.buffer))
    });
    pending.report.gradient_of = owner.map(|i| match name_of(&pending.state, &inputs[i].storage) {
        Some(name) => format!("`{name}`"),
        None => format!("input {i} of the rule"),
    });
    fail(&pending.state, pending.report);
}

fn scale(tol: Tolerance, k: f32) -> Tolerance {
    match tol {
        Tolerance::Elementwise { atol, rtol } => Tolerance::Elementwise { atol: atol * k, rtol: rtol * k },
        Tolerance::Normalized { tol } => Tolerance::Normalized { tol: tol * k },
        Tolerance::Exact => Tolerance::Exact,
    }
}

/// The worst element of a failed comparison.
struct Worst {
    index: usize,
    gpu: f32,
    cpu: f32,
    failure: String,
}

/// `None` when `actual` agrees with `expected` within `tol` (as
/// [`crate::testing::compare`] judges); else the element that disagrees most.
fn disagreement(actual: &[f32], expected: &[f32], tol: Tolerance) -> Option<Worst> {
    if actual.len() != expected.len() {
        let failure = format!("{} elements on the GPU, {} on the CPU", actual.len(), expected.len());
        return Some(Worst { index: actual.len().min(expected.len()), gpu: f32::NAN, cpu: f32::NAN, failure });
    }
    let failure = crate::testing::compare(actual, expected, tol).err()?;
    // The largest excess over the elementwise bound; a mismatched NaN counts as infinite.
    let (atol, rtol) = match tol {
        Tolerance::Elementwise { atol, rtol } => (atol, rtol),
        _ => (0.0, 0.0),
    };
    let excess = |(&a, &b): (&f32, &f32)| -> f32 {
        if a.is_nan() != b.is_nan() || (a.is_infinite() || b.is_infinite()) && a != b {
            f32::INFINITY
        } else if a.is_nan() || a == b {
            f32::NEG_INFINITY
        } else {
            (a - b).abs() - (atol + rtol * b.abs())
        }
    };
    let index = actual
        .iter()
        .zip(expected)
        .map(excess)
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, e)| if e > best.1 { (i, e) } else { best })
        .0;
    Some(Worst { index, gpu: actual[index], cpu: expected[index], failure })
}

/// A test-only fault: perturbs the GPU result of one op so that shadow mode has a wrong
/// kernel to find. Not part of the API.
#[doc(hidden)]
pub mod inject {
    use super::*;

    struct Fault {
        op: Op,
        in_backward: bool,
        skip: usize,
    }

    static FAULT: Mutex<Option<Fault>> = Mutex::new(None);

    /// Makes the `skip`th next GPU run of `op` (0: the next) inside a gradient rule
    /// (`in_backward`) or outside one write a wrong value into the middle of its result,
    /// once, on a shadowed device, as a miscompiled kernel would.
    pub fn perturb_next(op: Op, in_backward: bool, skip: usize) {
        *lock(&FAULT) = Some(Fault { op, in_backward, skip });
    }

    /// Whether a fault is still waiting to happen.
    pub fn pending() -> bool {
        lock(&FAULT).is_some()
    }

    pub(super) fn apply(op: Op, result: Option<&Operand>) {
        let Some(&(_, storage, DType::F32)) = result else { return };
        let mut fault = lock(&FAULT);
        let in_backward = PHASE.with(|p| matches!(*p.borrow(), Some(Phase::Backward { .. })));
        let Some(f) = fault.as_mut() else { return };
        if f.op != op || f.in_backward != in_backward {
            return;
        }
        if f.skip > 0 {
            f.skip -= 1;
            return;
        }
        *fault = None;
        let CpuData::F32(mut values) = read_all(storage, DType::F32) else { unreachable!() };
        let mid = values.len() / 2;
        values[mid] += 1.0 + values[mid].abs();
        assert!(storage.write_host(mid * 4, bytemuck::bytes_of(&values[mid])), "shadow: the fault was not written");
    }
}
