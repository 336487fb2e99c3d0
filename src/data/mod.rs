//! Data sets and the loader that turns them into batches of device tensors.
//!
//! Two traits describe data sets. [`Samples`] is the general one: numbered
//! `(input, target)` pairs whose inputs share one shape and dtype and whose targets share
//! another, of any shape, `f32` or `i32` (a class label, a regression vector, the next
//! steps of a series). [`Dataset`] is the common special case of `f32` features with an
//! `i32` class label; every `Dataset` is a `Samples` whose target has shape `[]`.
//!
//! A data set hands out a sample by appending it to buffers the caller owns, so the
//! [`DataLoader`] can gather a whole batch into one host vector and upload it with a
//! single [`Tensor::from_slice`]: one transfer per batch tensor, not one per sample, which
//! is what keeps a GPU fed. [`InMemoryDataset`] holds everything in one `Vec<f32>`;
//! [`Mnist`] reads the IDX files of MNIST-style data sets into two of them;
//! [`TensorDataset`] holds a pair of tensors of any dtype and shape on the host (PyTorch's
//! `TensorDataset`), and [`TensorDataset::windows`] cuts a time series into forecasting
//! samples. [`random_split`] divides any of them into disjoint [`Subset`]s, which are data
//! sets too. Every random choice here draws from a seeded [`Generator`], so an order can
//! be reproduced and resumed.
//!
//! ```
//! use wgrad::data::{DataLoader, Mnist};
//! use wgrad::Device;
//!
//! let mnist = Mnist::builtin()?;
//! let mut loader = DataLoader::new(&mnist.train, 64).shuffle(42);
//! assert_eq!(loader.num_batches(), 125); // 8,000 images
//! for (images, labels) in loader.epoch(&Device::cpu()).take(2) {
//!     assert_eq!(images.shape(), &[64, 1, 28, 28]);
//!     assert_eq!(labels.shape(), &[64]);
//! }
//! # Ok::<(), wgrad::Error>(())
//! ```

pub mod idx;
mod mnist;
mod sampler;
mod split;
mod tensor_dataset;
pub mod text;
pub mod transforms;

pub use crate::random::Generator;
pub use idx::{read_idx, read_idx_images, read_idx_labels, IdxArray, IdxImages};
pub use mnist::{Mnist, Pixels};
pub use sampler::DistributedSampler;
pub use split::{random_split, random_split_with, validation_split, SplitSize, Subset};
pub use tensor_dataset::{HostBuffer, TensorDataset};

use crate::device::Device;
use crate::dtype::DType;
use crate::tensor::Tensor;

/// A numbered collection of labelled samples whose features all have one shape.
pub trait Dataset {
    /// How many samples there are; they are numbered `0..len()`.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one sample's features, without the batch dimension: `[1, 28, 28]`
    /// for an MNIST image (channels, height, width).
    fn sample_shape(&self) -> &[usize];

    /// Appends the features of sample `index` to `out`, exactly `sample_numel()` values in
    /// row-major order, and returns its label. Panics when `index >= len()`.
    fn append_sample(&self, index: usize, out: &mut Vec<f32>) -> i32;

    /// The number of feature values in one sample: the product of `sample_shape()`.
    fn sample_numel(&self) -> usize {
        self.sample_shape().iter().product()
    }

    /// Sample `index` as an owned feature vector and its label.
    fn get(&self, index: usize) -> (Vec<f32>, i32) {
        let mut features = Vec::with_capacity(self.sample_numel());
        let label = self.append_sample(index, &mut features);
        (features, label)
    }
}

/// A reference to a data set is a data set, so a loader can borrow one.
impl<D: Dataset + ?Sized> Dataset for &D {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn sample_shape(&self) -> &[usize] {
        (**self).sample_shape()
    }
    fn append_sample(&self, index: usize, out: &mut Vec<f32>) -> i32 {
        (**self).append_sample(index, out)
    }
}

/// A numbered collection of `(input, target)` samples, what a [`DataLoader`] batches: the
/// general form of [`Dataset`], with targets of any shape and either dtype.
///
/// All inputs share [`input_shape`](Samples::input_shape) and
/// [`input_dtype`](Samples::input_dtype); all targets share
/// [`target_shape`](Samples::target_shape) and [`target_dtype`](Samples::target_dtype).
/// A batch of `B` samples becomes the tensors `[B, ...input_shape]` and
/// `[B, ...target_shape]`. Every [`Dataset`] is one, with `f32` inputs and a target of
/// shape `[]` and dtype `i32` (its label), so a loader over a `Dataset` yields
/// `(features [B, ...], labels [B])`.
///
/// The method names differ from those of [`Dataset`] so that both traits can be in scope.
///
/// ```
/// use wgrad::data::{DataLoader, HostBuffer, Samples};
/// use wgrad::{DType, Device};
///
/// /// `x` and the point `(sin x, cos x)` it maps to, for x = 0, 0.1, 0.2, ...
/// struct Circle;
///
/// impl Samples for Circle {
///     fn sample_count(&self) -> usize { 50 }
///     fn input_shape(&self) -> &[usize] { &[1] }
///     fn target_shape(&self) -> &[usize] { &[2] }
///     fn target_dtype(&self) -> DType { DType::F32 }
///     fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer) {
///         let x = index as f32 * 0.1;
///         inputs.extend_f32(&[x]);
///         targets.extend_f32(&[x.sin(), x.cos()]);
///     }
/// }
///
/// let (x, y) = DataLoader::new(Circle, 16).epoch(&Device::cpu()).next().unwrap();
/// assert_eq!((x.shape(), y.shape()), (&[16, 1][..], &[16, 2][..]));
/// ```
pub trait Samples {
    /// How many samples there are; they are numbered `0..sample_count()`.
    fn sample_count(&self) -> usize;

    /// The shape of one sample's input, without the batch dimension.
    fn input_shape(&self) -> &[usize];

    /// The dtype of the inputs: `f32` unless overridden (`i32` for token ids, say).
    fn input_dtype(&self) -> DType {
        DType::F32
    }

    /// The shape of one sample's target, without the batch dimension: `[]` for a class
    /// label or a scalar, `[k]` for `k` regression outputs.
    fn target_shape(&self) -> &[usize];

    /// The dtype of the targets: `f32` or `i32`.
    fn target_dtype(&self) -> DType;

    /// Appends the input of sample `index` to `inputs` and its target to `targets`, each in
    /// row-major order and exactly as many values as its shape holds. The buffers have the
    /// dtypes [`input_dtype`](Samples::input_dtype) and
    /// [`target_dtype`](Samples::target_dtype) say. Panics when `index` is out of range.
    fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer);
}

/// A class-labelled [`Dataset`] is a [`Samples`] whose target is its `i32` label, shape `[]`.
impl<D: Dataset + ?Sized> Samples for D {
    fn sample_count(&self) -> usize {
        self.len()
    }
    fn input_shape(&self) -> &[usize] {
        self.sample_shape()
    }
    fn target_shape(&self) -> &[usize] {
        &[]
    }
    fn target_dtype(&self) -> DType {
        DType::I32
    }
    fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer) {
        let label = self.append_sample(index, inputs.as_f32_mut());
        targets.as_i32_mut().push(label);
    }
}

/// Samples held in host memory: all features in one `Vec<f32>`, sample after sample.
#[derive(Clone, Debug, PartialEq)]
pub struct InMemoryDataset {
    features: Vec<f32>,
    sample_shape: Vec<usize>,
    labels: Vec<i32>,
}

impl InMemoryDataset {
    /// A data set of `labels.len()` samples whose features, each of `sample_shape`, lie
    /// one after another in `features`. Panics when the lengths disagree.
    ///
    /// ```
    /// use wgrad::data::{Dataset, InMemoryDataset};
    /// let xor = InMemoryDataset::new(vec![0., 0., 0., 1., 1., 0., 1., 1.], &[2], vec![0, 1, 1, 0]);
    /// assert_eq!(xor.len(), 4);
    /// assert_eq!(xor.sample(2), (&[1.0f32, 0.0][..], 1));
    /// ```
    pub fn new(features: Vec<f32>, sample_shape: &[usize], labels: Vec<i32>) -> InMemoryDataset {
        let numel: usize = sample_shape.iter().product();
        assert_eq!(
            features.len(),
            labels.len() * numel,
            "InMemoryDataset::new: {} labels of samples shaped {sample_shape:?} need {} feature values, got {}",
            labels.len(),
            labels.len() * numel,
            features.len()
        );
        InMemoryDataset { features, sample_shape: sample_shape.to_vec(), labels }
    }

    /// Features of sample `index` and its label, borrowed. Panics when out of range.
    pub fn sample(&self, index: usize) -> (&[f32], i32) {
        assert!(index < self.labels.len(), "InMemoryDataset: index {index} is out of range for {} samples", self.len());
        let numel = self.sample_numel();
        (&self.features[index * numel..(index + 1) * numel], self.labels[index])
    }

    /// All features, `[len, ...sample_shape]` in row-major order.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    pub fn labels(&self) -> &[i32] {
        &self.labels
    }

    /// How many samples carry each label `0..num_classes`. Panics on a label outside it.
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for (i, &label) in self.labels.iter().enumerate() {
            assert!(
                (0..num_classes as i32).contains(&label),
                "class_counts: sample {i} has label {label}, outside 0..{num_classes}"
            );
            counts[label as usize] += 1;
        }
        counts
    }

    /// Takes the data set apart: features, sample shape, labels.
    pub fn into_parts(self) -> (Vec<f32>, Vec<usize>, Vec<i32>) {
        (self.features, self.sample_shape, self.labels)
    }
}

impl Dataset for InMemoryDataset {
    fn len(&self) -> usize {
        self.labels.len()
    }
    fn sample_shape(&self) -> &[usize] {
        &self.sample_shape
    }
    fn append_sample(&self, index: usize, out: &mut Vec<f32>) -> i32 {
        let (features, label) = self.sample(index);
        out.extend_from_slice(features);
        label
    }
}

/// Cuts a data set into batches of device tensors, optionally in a fresh shuffled order
/// each epoch.
///
/// It batches any [`Samples`]: a class-labelled [`Dataset`] (`&mnist.train`) gives
/// `(features [B, ...], labels [B] i32)`; a [`TensorDataset`] or a [`Subset`] gives
/// `(inputs [B, ...input_shape], targets [B, ...target_shape])` in their own dtypes.
///
/// The order of epoch `e` depends only on the seed and `e` (Fisher-Yates driven by
/// [`Generator::for_epoch`]`(seed, e)`, the same on every machine), so a run restarted from
/// a checkpoint with [`set_epoch`](DataLoader::set_epoch) sees the batches it would have
/// seen.
///
/// ```
/// use wgrad::data::{DataLoader, TensorDataset};
/// use wgrad::{Device, Tensor};
///
/// let cpu = Device::cpu();
/// let x = Tensor::randn(&[10, 3], 1, &cpu);
/// let y = Tensor::randn(&[10, 2], 2, &cpu);
/// let data = TensorDataset::new(&x, &y);
/// let mut loader = DataLoader::new(&data, 4).shuffle(7).drop_last(true);
/// for (inputs, targets) in loader.epoch(&cpu) {
///     assert_eq!((inputs.shape(), targets.shape()), (&[4, 3][..], &[4, 2][..]));
/// }
/// ```
#[derive(Clone, Debug)]
pub struct DataLoader<D> {
    dataset: D,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    drop_last: bool,
    next_epoch: u64,
    /// This process's share of each epoch in a data-parallel run; `None` serves it all.
    sampler: Option<DistributedSampler>,
}

impl<D: Samples> DataLoader<D> {
    /// A loader over `dataset` (often `&dataset`) in order, keeping the last partial
    /// batch. Panics when `batch_size` is zero.
    ///
    /// ```
    /// use wgrad::data::{DataLoader, Mnist};
    /// let mnist = Mnist::builtin()?;
    /// assert_eq!(DataLoader::new(&mnist.test, 300).num_batches(), 7);
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn new(dataset: D, batch_size: usize) -> DataLoader<D> {
        assert!(batch_size > 0, "DataLoader::new: batch_size must be at least 1");
        DataLoader { dataset, batch_size, shuffle_seed: None, drop_last: false, next_epoch: 0, sampler: None }
    }

    /// Visits the samples in a new random order each epoch, drawn from `seed`.
    #[must_use = "shuffle returns the changed loader"]
    pub fn shuffle(mut self, seed: u64) -> DataLoader<D> {
        self.shuffle_seed = Some(seed);
        self
    }

    /// With `true`, leaves out the last batch of an epoch when it would be smaller than
    /// the batch size (as PyTorch's `drop_last`), so every batch has the same shape.
    #[must_use = "drop_last returns the changed loader"]
    pub fn drop_last(mut self, drop_last: bool) -> DataLoader<D> {
        self.drop_last = drop_last;
        self
    }

    /// Serves only `sampler`'s share of each epoch's order, for one process of a
    /// data-parallel run (see [`DistributedSampler`]): every process gives its loader the
    /// same data set and seed and its own rank, and gets a disjoint share of the same
    /// shuffled order, padded so that every process has as many batches.
    #[must_use = "sampler returns the changed loader"]
    pub fn sampler(mut self, sampler: DistributedSampler) -> DataLoader<D> {
        self.sampler = Some(sampler);
        self
    }

    /// The data set this loader batches.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The number of samples in a full batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch: `len / batch_size`, rounded up unless `drop_last` (`len` being
    /// the sampler's share with [`DataLoader::sampler`]).
    pub fn num_batches(&self) -> usize {
        let n = self.epoch_len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
    }

    /// Samples per epoch: every sample, or with `drop_last` those of the full batches.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.num_batches() * self.batch_size
        } else {
            self.epoch_len()
        }
    }

    /// The samples an epoch visits: the data set, or the sampler's share of it.
    fn epoch_len(&self) -> usize {
        let n = self.dataset.sample_count();
        self.sampler.map_or(n, |s| s.num_samples(n))
    }

    /// The number of the epoch that the next call to [`epoch`](DataLoader::epoch) serves
    /// (counting from 0).
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// Makes the next call to [`epoch`](DataLoader::epoch) serve epoch `epoch`, to resume
    /// a run.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.next_epoch = epoch;
    }

    /// The batches of the next epoch on `device`, then counts that epoch as served.
    /// Each item is `(inputs [B, ...input_shape], targets [B, ...target_shape])`; for a
    /// [`Dataset`], `(features f32, labels [B] i32)`.
    pub fn epoch(&mut self, device: &Device) -> Batches<'_, D> {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.batches(epoch, device)
    }

    /// The batches of epoch `epoch` on `device`, without touching the epoch counter.
    pub fn batches(&self, epoch: u64, device: &Device) -> Batches<'_, D> {
        Batches {
            loader: self,
            order: self.order(epoch),
            next: 0,
            device: device.clone(),
            inputs: HostBuffer::new(self.dataset.input_dtype()),
            targets: HostBuffer::new(self.dataset.target_dtype()),
        }
    }

    /// The sample indices of epoch `epoch` in the order the batches visit them (all of
    /// them, including those a `drop_last` leaves out): `0..len` without shuffling. With
    /// a [`DistributedSampler`], this process's share of that order.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let n = self.dataset.sample_count();
        let order = match self.shuffle_seed {
            Some(seed) => Generator::for_epoch(seed, epoch).permutation(n),
            None => (0..n).collect(),
        };
        match &self.sampler {
            Some(sampler) => sampler.shard(&order),
            None => order,
        }
    }
}

/// The batches of one epoch, from [`DataLoader::epoch`]: `(inputs, targets)` tensors on
/// the loader's device, `[B, ...input_shape]` and `[B, ...target_shape]` (for a
/// [`Dataset`], features f32 and labels `[B]` i32).
pub struct Batches<'a, D> {
    loader: &'a DataLoader<D>,
    order: Vec<usize>,
    /// Position in `order` of the next batch's first sample.
    next: usize,
    device: Device,
    /// The host staging buffers, reused from batch to batch.
    inputs: HostBuffer,
    targets: HostBuffer,
}

impl<D: Samples> Iterator for Batches<'_, D> {
    type Item = (Tensor, Tensor);

    fn next(&mut self) -> Option<(Tensor, Tensor)> {
        let remaining = self.order.len() - self.next;
        let size = remaining.min(self.loader.batch_size);
        if size == 0 || (self.loader.drop_last && size < self.loader.batch_size) {
            return None;
        }
        let dataset = &self.loader.dataset;
        let indices = &self.order[self.next..self.next + size];
        self.next += size;

        self.inputs.clear();
        self.targets.clear();
        for &i in indices {
            dataset.append_pair(i, &mut self.inputs, &mut self.targets);
        }
        let inputs = batch_tensor(&self.inputs, size, dataset.input_shape(), "feature", &self.device);
        let targets = batch_tensor(&self.targets, size, dataset.target_shape(), "target", &self.device);
        Some((inputs, targets))
    }

    /// Skips `n` batches without gathering them (what `skip` and a resumed run use).
    fn nth(&mut self, n: usize) -> Option<(Tensor, Tensor)> {
        self.next = self.next.saturating_add(n.saturating_mul(self.loader.batch_size)).min(self.order.len());
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.order.len() - self.next;
        let batches = if self.loader.drop_last {
            remaining / self.loader.batch_size
        } else {
            remaining.div_ceil(self.loader.batch_size)
        };
        (batches, Some(batches))
    }
}

impl<D: Samples> ExactSizeIterator for Batches<'_, D> {}

/// The `[size, ...sample_shape]` tensor of a gathered batch, after checking the data set
/// appended as many values as its shape promises.
fn batch_tensor(buffer: &HostBuffer, size: usize, sample_shape: &[usize], what: &str, device: &Device) -> Tensor {
    let numel: usize = sample_shape.iter().product();
    assert_eq!(
        buffer.len(),
        size * numel,
        "DataLoader: a batch of {size} samples shaped {sample_shape:?} should hold {} {what} values, the data set appended {}",
        size * numel,
        buffer.len()
    );
    let mut shape = Vec::with_capacity(1 + sample_shape.len());
    shape.push(size);
    shape.extend_from_slice(sample_shape);
    buffer.to_tensor(&shape, device)
}
