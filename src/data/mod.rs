//! Data sets and the loader that turns them into batches of device tensors.
//!
//! A [`Dataset`] is a numbered list of samples, each a fixed-shape `f32` feature array and
//! an `i32` class label. It hands out a sample by appending its features to a buffer the
//! caller owns, so the [`DataLoader`] can gather a whole batch into one host vector and
//! upload it with a single [`Tensor::from_slice`]: one transfer per batch tensor, not one
//! per sample, which is what keeps a GPU fed. [`InMemoryDataset`] holds everything in one
//! `Vec<f32>`; [`Mnist`] reads the IDX files of MNIST-style data sets into two of them.
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
mod shuffle;
pub mod text;
pub mod transforms;

pub use idx::{read_idx, read_idx_images, read_idx_labels, IdxArray, IdxImages};
pub use mnist::{Mnist, Pixels};

use crate::device::Device;
use crate::tensor::Tensor;
use shuffle::SplitMix64;

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
/// The order of epoch `e` depends only on the seed and `e` (Fisher-Yates driven by
/// SplitMix64, the same on every machine), so a run restarted from a checkpoint with
/// [`set_epoch`](DataLoader::set_epoch) sees the batches it would have seen.
#[derive(Clone, Debug)]
pub struct DataLoader<D> {
    dataset: D,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    drop_last: bool,
    next_epoch: u64,
}

impl<D: Dataset> DataLoader<D> {
    /// A loader over `dataset` (often `&dataset`) in order, keeping the last partial
    /// batch. Panics when `batch_size` is zero.
    pub fn new(dataset: D, batch_size: usize) -> DataLoader<D> {
        assert!(batch_size > 0, "DataLoader::new: batch_size must be at least 1");
        DataLoader { dataset, batch_size, shuffle_seed: None, drop_last: false, next_epoch: 0 }
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

    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Batches per epoch: `len / batch_size`, rounded up unless `drop_last`.
    pub fn num_batches(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last {
            n / self.batch_size
        } else {
            n.div_ceil(self.batch_size)
        }
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
    /// Each item is `(features [B, ...sample_shape] f32, labels [B] i32)`.
    pub fn epoch(&mut self, device: &Device) -> Batches<'_, D> {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.batches(epoch, device)
    }

    /// The batches of epoch `epoch` on `device`, without touching the epoch counter.
    pub fn batches(&self, epoch: u64, device: &Device) -> Batches<'_, D> {
        Batches { loader: self, order: self.order(epoch), next: 0, device: device.clone(), buffer: Vec::new() }
    }

    /// The sample indices of epoch `epoch` in the order the batches visit them (all of
    /// them, including those a `drop_last` leaves out): `0..len` without shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if let Some(seed) = self.shuffle_seed {
            shuffle::fisher_yates(&mut order, &mut SplitMix64::for_epoch(seed, epoch));
        }
        order
    }
}

/// The batches of one epoch, from [`DataLoader::epoch`]: `(features, labels)` tensors on
/// the loader's device, the features `[B, ...sample_shape]` f32 and the labels `[B]` i32.
pub struct Batches<'a, D> {
    loader: &'a DataLoader<D>,
    order: Vec<usize>,
    /// Position in `order` of the next batch's first sample.
    next: usize,
    device: Device,
    /// The host staging buffer, reused from batch to batch.
    buffer: Vec<f32>,
}

impl<D: Dataset> Iterator for Batches<'_, D> {
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

        let numel = dataset.sample_numel();
        self.buffer.clear();
        self.buffer.reserve(size * numel);
        let labels: Vec<i32> = indices.iter().map(|&i| dataset.append_sample(i, &mut self.buffer)).collect();
        assert_eq!(
            self.buffer.len(),
            size * numel,
            "DataLoader: a batch of {size} samples shaped {:?} should hold {} feature values, the data set appended {}",
            dataset.sample_shape(),
            size * numel,
            self.buffer.len()
        );

        let mut shape = Vec::with_capacity(1 + dataset.sample_shape().len());
        shape.push(size);
        shape.extend_from_slice(dataset.sample_shape());
        let features = Tensor::from_slice(&self.buffer, &shape, &self.device);
        let labels = Tensor::from_slice(&labels, &[size], &self.device);
        Some((features, labels))
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

impl<D: Dataset> ExactSizeIterator for Batches<'_, D> {}
