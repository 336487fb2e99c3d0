//! The error type for everything that can fail for reasons outside the caller's code:
//! no adapter, a device that cannot be opened, a buffer larger than the adapter allows,
//! memory the host or the GPU cannot provide, an error the GPU reports while running
//! recorded work or the loss of the device, a file that cannot be read. The fallible entry
//! points (`Device::auto`/`gpu`/`software`/`by_name`, `Tensor::try_*`, `try_to_vec`,
//! `Device::try_synchronize`) return these; their panicking twins and every other op
//! panic with the same message. Shape errors are programming errors and panic instead,
//! with a message that names the op and the shapes (see `GUIDE.md`, "validate once").

use std::fmt;

/// Everything that can go wrong in wgrad and is reported as a `Result`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No adapter of the requested kind exists on this machine.
    #[error("no {wanted} adapter found; adapters present: {}", AdapterList(.found))]
    NoAdapter {
        /// What was asked for: "hardware GPU" or "software".
        wanted: &'static str,
        /// One line per adapter wgpu enumerated, possibly empty.
        found: Vec<String>,
    },
    /// The adapter exists but refused to open a device.
    #[error("could not open a device on adapter '{adapter}': {reason}")]
    RequestDevice { adapter: String, reason: String },
    /// A buffer is larger than the adapter lets one storage binding be.
    #[error("a tensor of {bytes} bytes exceeds this adapter's storage binding limit of {limit} bytes ({adapter})")]
    TooLarge { bytes: u64, limit: u64, adapter: String },
    /// A device name (from `--device` or `WGRAD_DEVICE`) other than `auto`, `gpu`,
    /// `software` or `cpu`.
    #[error("'{0}' is not a device name (auto, gpu, software, cpu); check --device or WGRAD_DEVICE")]
    BadDeviceVar(String),
    /// Memory for a tensor could not be allocated: the host allocator refused (CPU) or the
    /// device reported out of memory (GPU). Nothing was allocated; freeing tensors and
    /// retrying may succeed.
    #[error("{op}: out of memory allocating {bytes} bytes on {device}")]
    OutOfMemory {
        /// The op or constructor that asked for the memory.
        op: String,
        bytes: u64,
        /// The CPU, or the adapter's line.
        device: String,
    },
    /// The GPU reported an error: a validation error or an out-of-memory condition in
    /// recorded work, or the loss of the device. Reported by the next fallible call on the
    /// device (`try_*` constructors, `try_to_vec`, `try_synchronize`); a lost device
    /// reports it to every later call.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// An optimizer state that does not fit the optimizer it is loaded into: another kind
    /// of optimizer, another number of parameters or parameter groups, a group of another
    /// size, an option the optimizer does not have or an invalid value of one, or a state
    /// tensor that is missing, extra, or of another shape or dtype than its parameter. The
    /// reason names each.
    #[error("optimizer state: {0}")]
    OptimizerState(String),
    /// A file was read but its contents are not what its format requires.
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    /// A state dict that does not fit the module it is loaded into
    /// ([`crate::nn::Module::load_state_dict`]): the reason names each offending key.
    #[error("load_state_dict: {reason}")]
    StateDict { reason: String },
    /// A name that is not part of a module: a submodule to freeze that the model does not
    /// have, or a parameter name or prefix of a parameter group
    /// ([`crate::optim::ParamGroup::from_names`], [`crate::optim::ParamGroup::with_prefix`])
    /// that matches none of its parameters. The message names the op, the name and the
    /// names the module has.
    #[error("{0}")]
    NotInModule(String),
    /// A data-parallel run that cannot go on (`wgrad::distributed`, feature `mpi`): ranks
    /// that built different models, MPI started twice. The message names what differs.
    #[error("distributed: {0}")]
    Distributed(String),
    /// A training run that cannot go on: an empty loader, a callback monitoring a value no
    /// metric produces. The message names the op and what is wrong.
    #[error("{0}")]
    Training(String),
    /// A picture that could not be drawn (`wgrad::train::plot`, with the `plot` feature):
    /// nothing to plot (a history of no epochs), or a drawing or encoding failure. `path`
    /// names the picture; writing it is an [`Error::Io`].
    #[error("{path}: {reason}")]
    Plot { path: String, reason: String },
    /// Training stopped by Ctrl-C (or `train::interrupt`) after writing a resumable
    /// checkpoint; the message says where it is and how to resume.
    #[error("{0}")]
    Interrupted(String),
    /// The training loss became NaN or infinite (`train::Trainer::fit` checks the running
    /// mean each time it reads it; `allow_nonfinite_loss(true)` trains on instead).
    #[error(
        "the training loss became {loss} at epoch {epoch}/{epochs}, step {step}/{steps} (the mean since the epoch \
         began); lower the learning rate or clip the gradients"
    )]
    NonFiniteLoss { loss: f64, epoch: usize, epochs: usize, step: usize, steps: usize },
    /// In shadow mode with [`crate::shadow::OnMismatch::Error`], an op whose GPU result
    /// disagreed with the CPU reference (returned once, by the next `try_synchronize`).
    #[error("{0}")]
    ShadowMismatch(Box<crate::shadow::ShadowReport>),
}

/// A `Result` whose error is wgrad's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

struct AdapterList<'a>(&'a [String]);

impl fmt::Display for AdapterList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none (on Linux without a GPU, install mesa-vulkan-drivers for the software adapter)");
        }
        write!(f, "{}", self.0.join("; "))
    }
}
