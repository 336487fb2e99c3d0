//! `Tensor`: a shape and strides over a storage on one device.
//!
//! Tensors are immutable values: every op returns a new tensor, and views (transpose,
//! narrow, broadcast, reshape where possible) share the input's storage. Cloning is cheap.
//! On a GPU device an op records a kernel dispatch and returns at once; the host waits only
//! in `to_vec`, `item` and `Device::synchronize`.

mod assign;
mod attention;
mod augment;
mod batch_norm;
mod conv;
mod embedding;
mod half;
mod layer_norm;
mod linear;
mod math;
mod pool;
mod rnn;
mod view;

pub use crate::op::layout::{broadcast_shapes, Layout, MAX_DIMS};
pub use crate::op::matmul::Activation;
pub(crate) use attention::attention_with_weights;
pub use attention::AttnMask;
pub use conv::{conv_algorithm, with_conv_algorithm, ConvAlgorithm};
pub use conv::{im2col_budget, set_im2col_budget, Conv1dOptions, ConvOptions, Size2};
pub use embedding::{embedding_index_checks, set_embedding_index_checks};
pub use pool::{AvgPool2dOptions, MaxPool2dOptions};
pub use rnn::{RnnLayerOutput, RnnMode, RnnWeights};

use std::sync::Arc;

use crate::autograd::AutogradMeta;
use crate::device::Device;
use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::op::layout;
use crate::op::Creation;
use crate::storage::Storage;

/// An n-dimensional array of `f32` (or `i32` indices) on a [`Device`].
///
/// ```
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2], &dev);
/// let y = (&x * 2.0 + 1.0).sum_all();
/// assert_eq!(y.item(), 24.0); // 3 + 5 + 7 + 9
/// ```
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// Present when the tensor takes part in differentiation (see `autograd`).
    pub(crate) autograd: Option<Arc<AutogradMeta>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {})",
            self.layout.shape,
            self.dtype,
            if self.device.is_cpu() { "cpu" } else { "gpu" }
        )
    }
}

impl Tensor {
    // ---- construction helpers used by every op ----

    /// A contiguous tensor of `shape` over new storage, on the device that holds it.
    pub(crate) fn from_storage(storage: Storage, shape: &[usize], dtype: DType) -> Tensor {
        let device = storage.device();
        Tensor { storage: Arc::new(storage), layout: Layout::contiguous(shape), dtype, device, autograd: None }
    }

    /// A view of the same storage with another layout, outside the autograd graph (the
    /// public view ops record themselves).
    pub(crate) fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor { storage: self.storage.clone(), layout, dtype: self.dtype, device: self.device.clone(), autograd: None }
    }

    // ---- creation ----

    /// A tensor holding `data` in row-major order. Panics when `data.len()` is not the
    /// product of `shape`, and with [`Tensor::try_from_slice`]'s errors.
    pub fn from_slice<T: Element>(data: &[T], shape: &[usize], device: &Device) -> Tensor {
        Tensor::try_from_slice(data, shape, device).unwrap_or_else(|e| panic!("from_slice: {e}"))
    }

    /// As [`Tensor::from_slice`], but a tensor too large for the device (its binding
    /// limit, or memory on the CPU or the GPU) is an `Err`, and so is an error the GPU
    /// reported for earlier work. Shape errors still panic.
    pub fn try_from_slice<T: Element>(data: &[T], shape: &[usize], device: &Device) -> Result<Tensor> {
        let n = layout::check_shape(shape, "from_slice");
        assert_eq!(data.len(), n, "from_slice: {} elements given for shape {shape:?} ({n} elements)", data.len());
        Ok(Tensor::from_storage(Storage::try_upload(device, data, "from_slice")?, shape, T::DTYPE))
    }

    /// A zero-dimensional tensor holding one value.
    pub fn scalar(value: f32, device: &Device) -> Tensor {
        // A fill kernel rather than an upload: gradient rules and comparisons make these
        // every step, and an upload would create a staging buffer each time.
        Tensor::full(&[], value, device)
    }

    /// A new `f32` tensor of `shape` made by one creation kernel. Allocation failures are
    /// `Err`s naming `name`; shape errors panic.
    fn try_creation(name: &str, creation: Creation, shape: &[usize], device: &Device) -> Result<Tensor> {
        let n = layout::check_shape(shape, name);
        Ok(Tensor::from_storage(Storage::try_create(device, creation, n, name)?, shape, DType::F32))
    }

    /// [`Tensor::try_creation`] for the constructors that panic: the message names the op.
    fn creation(name: &str, creation: Creation, shape: &[usize], device: &Device) -> Tensor {
        Tensor::try_creation(name, creation, shape, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every element `value`. Panics when the memory cannot be allocated; see [`Tensor::try_full`].
    pub fn full(shape: &[usize], value: f32, device: &Device) -> Tensor {
        Tensor::try_full(shape, value, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Tensor::full`], but a tensor the device cannot hold (memory, binding limit) is
    /// an `Err`, and so is an error the GPU reported for earlier work.
    ///
    /// ```
    /// use wgrad::{Device, Error, Tensor};
    /// let huge = Tensor::try_full(&[1 << 50], 1.0, &Device::cpu());
    /// assert!(matches!(huge, Err(Error::OutOfMemory { .. })));
    /// ```
    pub fn try_full(shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        Tensor::try_creation("full", Creation::Fill(value), shape, device)
    }

    pub fn zeros(shape: &[usize], device: &Device) -> Tensor {
        Tensor::try_zeros(shape, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Tensor::zeros`], with [`Tensor::try_full`]'s errors.
    pub fn try_zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::try_creation("zeros", Creation::Fill(0.0), shape, device)
    }

    pub fn ones(shape: &[usize], device: &Device) -> Tensor {
        Tensor::try_ones(shape, device).unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Tensor::ones`], with [`Tensor::try_full`]'s errors.
    pub fn try_ones(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::try_creation("ones", Creation::Fill(1.0), shape, device)
    }

    /// `[start, start + step, ...]` with `ceil((end - start) / step)` elements, as
    /// `torch.arange(start, end, step)`. Panics when `step` is zero or points away from `end`.
    pub fn arange(start: f32, end: f32, step: f32, device: &Device) -> Tensor {
        assert!(step != 0.0, "arange: step must be non-zero");
        let count = ((end - start) / step).ceil();
        assert!(count >= 0.0, "arange: step {step} does not lead from {start} towards {end}");
        let n = count as usize;
        Tensor::creation("arange", Creation::Arange { start, step }, &[n], device)
    }

    /// The `[n, m]` identity matrix (ones on the main diagonal).
    pub fn eye(n: usize, m: usize, device: &Device) -> Tensor {
        Tensor::creation("eye", Creation::Eye { rows: n, cols: m.max(1) }, &[n, m], device)
    }

    /// Uniform samples in `[low, high)` from `seed`: the same numbers on every device.
    pub fn rand_uniform(shape: &[usize], low: f32, high: f32, seed: u64, device: &Device) -> Tensor {
        Tensor::creation("rand", Creation::RandUniform { seed, low, high }, shape, device)
    }

    /// Uniform samples in `[0, 1)` from `seed`, as `torch.rand`.
    pub fn rand(shape: &[usize], seed: u64, device: &Device) -> Tensor {
        Tensor::rand_uniform(shape, 0.0, 1.0, seed, device)
    }

    /// Normal samples with the given mean and standard deviation from `seed`.
    pub fn normal(shape: &[usize], mean: f32, std: f32, seed: u64, device: &Device) -> Tensor {
        Tensor::creation("randn", Creation::RandNormal { seed, mean, std }, shape, device)
    }

    /// Standard normal samples from `seed`, as `torch.randn`.
    pub fn randn(shape: &[usize], seed: u64, device: &Device) -> Tensor {
        Tensor::normal(shape, 0.0, 1.0, seed, device)
    }

    /// A random permutation of `0..n` as a 1-D `i32` tensor, as `torch.randperm`: the
    /// same permutation for the same seed on every device and machine.
    ///
    /// The permutation is [`Generator::new(seed).permutation(n)`](crate::Generator::permutation)
    /// drawn on the host and uploaded, so it is the order `random_split` with that seed
    /// uses. A shuffle is sequential, so there is no kernel for it: one upload of `n`
    /// indices costs less than the launches a parallel shuffle would need. Panics when `n`
    /// does not fit in `i32`.
    ///
    /// ```
    /// use wgrad::{Device, Tensor};
    /// let p = Tensor::randperm(6, 42, &Device::cpu()).to_vec::<i32>();
    /// let mut sorted = p.clone();
    /// sorted.sort();
    /// assert_eq!(sorted, [0, 1, 2, 3, 4, 5]);
    /// ```
    pub fn randperm(n: usize, seed: u64, device: &Device) -> Tensor {
        assert!(i32::try_from(n).is_ok(), "randperm: n = {n} does not fit in the i32 indices it returns");
        let order: Vec<i32> =
            crate::random::Generator::new(seed).permutation(n).into_iter().map(|i| i as i32).collect();
        Tensor::from_slice(&order, &[n], device)
    }

    // ---- facts ----

    pub fn shape(&self) -> &[usize] {
        &self.layout.shape
    }

    /// Size of one dimension; negative `dim` counts from the end.
    pub fn dim(&self, dim: isize) -> usize {
        self.layout.shape[self.axis(dim, "dim")]
    }

    pub fn rank(&self) -> usize {
        self.layout.rank()
    }

    pub fn numel(&self) -> usize {
        self.layout.numel()
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The strides of this view, in elements.
    pub fn strides(&self) -> &[usize] {
        &self.layout.strides
    }

    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }

    /// Resolves a possibly negative axis for an op named `op`, panicking with the op name.
    pub(crate) fn axis(&self, axis: isize, op: &str) -> usize {
        let rank = self.rank() as isize;
        let a = if axis < 0 { axis + rank } else { axis };
        assert!(
            a >= 0 && a < rank.max(1),
            "{op}: axis {axis} is out of range for a tensor of shape {:?}",
            self.shape()
        );
        a as usize
    }

    // ---- read-out ----

    /// The elements in row-major order, copied to the host. On a GPU device this submits
    /// all recorded work and waits for it. Panics when `T` is not the tensor's dtype, and
    /// with [`Tensor::try_to_vec`]'s errors.
    pub fn to_vec<T: Element>(&self) -> Vec<T> {
        self.try_to_vec().unwrap_or_else(|e| panic!("to_vec: {e}"))
    }

    /// As [`Tensor::to_vec`], but a failure of the device is an `Err`: an error the GPU
    /// reported for the work that computed this tensor (or any work since the last
    /// fallible call on the device), a lost device, or memory for the copy that cannot be
    /// allocated. A wrong `T` still panics.
    pub fn try_to_vec<T: Element>(&self) -> Result<Vec<T>> {
        assert_eq!(T::DTYPE, self.dtype, "to_vec: the tensor holds {}, not {}", self.dtype, T::DTYPE);
        let t = self.detach().contiguous();
        t.storage.try_read(t.layout.offset, t.numel())
    }

    /// The value of a one-element tensor.
    pub fn item(&self) -> f32 {
        assert_eq!(self.numel(), 1, "item: the tensor has shape {:?}, not one element", self.shape());
        if self.dtype == DType::F16 {
            return self.to_vec::<::half::f16>()[0].to_f32();
        }
        self.to_vec::<f32>()[0]
    }

    /// A copy on `device` (the same tensor when it is already there), outside the
    /// autograd graph. Panics with [`Tensor::try_to_device`]'s errors.
    pub fn to_device(&self, device: &Device) -> Tensor {
        self.try_to_device(device).unwrap_or_else(|e| panic!("to_device: {e}"))
    }

    /// As [`Tensor::to_device`], with a failure of either device (an error the GPU
    /// reported, a tensor too large for the target, memory that cannot be allocated) as
    /// an `Err`.
    pub fn try_to_device(&self, device: &Device) -> Result<Tensor> {
        if &self.device == device {
            return Ok(self.clone());
        }
        match self.dtype {
            DType::F32 => Tensor::try_from_slice(&self.try_to_vec::<f32>()?, self.shape(), device),
            DType::I32 => Tensor::try_from_slice(&self.try_to_vec::<i32>()?, self.shape(), device),
            DType::F16 => Tensor::try_from_slice(&self.try_to_vec::<::half::f16>()?, self.shape(), device),
        }
    }

    /// The raw 32-bit words of this tensor's whole device buffer, guard region included.
    /// A debugging aid for the kernel tests' poison checks; `None` on the CPU.
    #[doc(hidden)]
    pub fn debug_raw_buffer(&self) -> Option<(Vec<u32>, usize)> {
        self.storage.debug_raw_words()
    }

    /// Panics unless `other` is on the same device, naming the op.
    pub(crate) fn same_device(&self, other: &Tensor, op: &str) {
        assert!(
            self.device == other.device,
            "{op}: operands are on different devices ({} and {}); move one with to_device",
            self.device.info(),
            other.device.info()
        );
    }

    pub(crate) fn expect_dtype(&self, dtype: DType, op: &str) {
        assert_eq!(
            self.dtype,
            dtype,
            "{op}: expected a {dtype} tensor, got {} of shape {:?}",
            self.dtype,
            self.shape()
        );
    }
}
