//! Subsets of a data set by index, and `random_split`, as `torch.utils.data`.
//!
//! A [`Subset`] is a view: the data set (usually borrowed) and a list of indices into it,
//! so splitting 60,000 images into training and validation sets copies 60,000 indices and
//! no pixels. The split's permutation is [`Generator::permutation`] of the whole data set,
//! the same as `Tensor::randperm` with the same seed, cut into consecutive pieces as
//! PyTorch cuts its `randperm`.

use super::{HostBuffer, Samples};
use crate::dtype::DType;
use crate::random::Generator;

/// The samples of `dataset` at `indices`, in that order (`torch.utils.data.Subset`): sample
/// `i` of the subset is sample `indices[i]` of the data set. A [`Samples`] itself, so a
/// [`DataLoader`](super::DataLoader) batches it and `random_split` can split it again.
///
/// ```
/// use wgrad::data::{DataLoader, InMemoryDataset, Samples, Subset};
/// use wgrad::Device;
/// let data = InMemoryDataset::new((0..5).map(|i| i as f32).collect(), &[1], vec![0, 1, 2, 3, 4]);
/// let odd = Subset::new(&data, vec![1, 3]);
/// assert_eq!(odd.len(), 2);
/// let (_, labels) = DataLoader::new(&odd, 8).epoch(&Device::cpu()).next().unwrap();
/// assert_eq!(labels.to_vec::<i32>(), [1, 3]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Subset<D> {
    dataset: D,
    indices: Vec<usize>,
}

impl<D: Samples> Subset<D> {
    /// The samples of `dataset` at `indices` (repeats allowed). Panics, naming the index and
    /// the data set's size, when an index is out of range.
    ///
    /// ```
    /// use wgrad::data::{Samples, Subset, TensorDataset};
    /// use wgrad::{Device, Tensor};
    /// let x = Tensor::zeros(&[10, 2], &Device::cpu());
    /// let data = TensorDataset::new(&x, &x);
    /// assert_eq!(Subset::new(&data, vec![9, 0]).sample_count(), 2);
    /// ```
    pub fn new(dataset: D, indices: Vec<usize>) -> Subset<D> {
        let n = dataset.sample_count();
        if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
            panic!("Subset::new: index {bad} is out of range for a data set of {n} samples");
        }
        Subset { dataset, indices }
    }

    /// The number of samples in the subset.
    ///
    /// ```
    /// use wgrad::data::{InMemoryDataset, Subset};
    /// let data = InMemoryDataset::new(vec![0.0; 3], &[1], vec![0; 3]);
    /// assert_eq!(Subset::new(&data, vec![2]).len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when the subset holds no samples.
    ///
    /// ```
    /// use wgrad::data::{InMemoryDataset, Subset};
    /// let data = InMemoryDataset::new(vec![0.0; 3], &[1], vec![0; 3]);
    /// assert!(Subset::new(&data, vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The indices into the underlying data set, in the subset's order.
    ///
    /// ```
    /// use wgrad::data::{InMemoryDataset, Subset};
    /// let data = InMemoryDataset::new(vec![0.0; 3], &[1], vec![0; 3]);
    /// assert_eq!(Subset::new(&data, vec![2, 0]).indices(), &[2, 0]);
    /// ```
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The underlying data set.
    ///
    /// ```
    /// use wgrad::data::{Dataset, InMemoryDataset, Subset};
    /// let data = InMemoryDataset::new(vec![0.0; 3], &[1], vec![0; 3]);
    /// assert_eq!(Subset::new(&data, vec![]).dataset().len(), 3);
    /// ```
    pub fn dataset(&self) -> &D {
        &self.dataset
    }
}

impl<D: Samples> Samples for Subset<D> {
    fn sample_count(&self) -> usize {
        self.indices.len()
    }
    fn input_shape(&self) -> &[usize] {
        self.dataset.input_shape()
    }
    fn input_dtype(&self) -> DType {
        self.dataset.input_dtype()
    }
    fn target_shape(&self) -> &[usize] {
        self.dataset.target_shape()
    }
    fn target_dtype(&self) -> DType {
        self.dataset.target_dtype()
    }
    fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer) {
        assert!(index < self.indices.len(), "Subset: index {index} is out of range for {} samples", self.indices.len());
        self.dataset.append_pair(self.indices[index], inputs, targets)
    }
}

/// A borrowed subset is one too, so a loader can borrow it.
impl<D: Samples> Samples for &Subset<D> {
    fn sample_count(&self) -> usize {
        (**self).sample_count()
    }
    fn input_shape(&self) -> &[usize] {
        (**self).input_shape()
    }
    fn input_dtype(&self) -> DType {
        (**self).input_dtype()
    }
    fn target_shape(&self) -> &[usize] {
        (**self).target_shape()
    }
    fn target_dtype(&self) -> DType {
        (**self).target_dtype()
    }
    fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer) {
        (**self).append_pair(index, inputs, targets)
    }
}

/// What [`random_split`] accepts as sizes: whole numbers are lengths, floating-point numbers
/// are fractions of the data set.
///
/// PyTorch decides from the values (sizes that add up to 1 are fractions, even `[1, 0]`);
/// here the type decides, so `&[1, 0]` always means one sample and none.
///
/// ```
/// use wgrad::data::SplitSize;
/// assert_eq!(0.25f64.size(), (0.25, true));
/// assert_eq!(7usize.size(), (7.0, false));
/// ```
pub trait SplitSize: Copy + std::fmt::Debug {
    /// The value as `f64`, and whether it is a fraction.
    fn size(self) -> (f64, bool);
}

macro_rules! split_sizes {
    ($fraction:expr => $($t:ty),*) => {
        $(impl SplitSize for $t {
            fn size(self) -> (f64, bool) {
                (self as f64, $fraction)
            }
        })*
    };
}
split_sizes!(false => usize, u64, u32, i64, i32);
split_sizes!(true => f64, f32);

/// Splits `dataset` into disjoint random subsets of the given sizes, which together cover
/// it (`torch.utils.data.random_split`). `sizes` are lengths adding up to the number of
/// samples, or fractions adding up to 1: each fraction gives `floor(n * fraction)` samples
/// and the samples left over go one at a time to the subsets in turn, from the first, as in
/// PyTorch. The order is `Generator::new(seed).permutation(n)`, cut into consecutive pieces.
///
/// Panics with the sizes and the data set's length when the lengths do not add up to it,
/// when the fractions do not add up to 1, or when a size is negative or NaN.
///
/// ```
/// use wgrad::data::{random_split, DataLoader, Dataset, Mnist};
/// let mnist = Mnist::builtin()?;
/// let [train, val] = <[_; 2]>::try_from(random_split(&mnist.train, &[0.9, 0.1], 42)).unwrap();
/// assert_eq!((train.len(), val.len()), (7200, 800));
/// let mut loader = DataLoader::new(&train, 64).shuffle(0);
/// assert_eq!(loader.num_batches(), 113);
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn random_split<D: Samples + Clone, S: SplitSize>(dataset: D, sizes: &[S], seed: u64) -> Vec<Subset<D>> {
    random_split_with(dataset, sizes, &mut Generator::new(seed))
}

/// Holds out a random `fraction` of `dataset` for validation, as Keras' `validation_split`
/// (but drawn at random, like [`random_split`] with `[1 - fraction, fraction]` and
/// `seed`): `(training, validation)`. A fraction outside (0, 1), or one that leaves either
/// part empty, is an [`Error::Training`](crate::Error::Training) saying so.
///
/// ```
/// use wgrad::data::{validation_split, Dataset, Mnist};
/// let mnist = Mnist::builtin()?;
/// let (train, val) = validation_split(&mnist.train, 0.1, 0)?;
/// assert_eq!((train.len(), val.len()), (7200, 800));
/// assert!(validation_split(&mnist.train, 1.5, 0).is_err());
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn validation_split<D: Samples + Clone>(
    dataset: D,
    fraction: f64,
    seed: u64,
) -> crate::Result<(Subset<D>, Subset<D>)> {
    let n = dataset.sample_count();
    let held_out = held_out(n, fraction)?;
    let mut parts = random_split(dataset, &[n - held_out, held_out], seed).into_iter();
    let train = parts.next().expect("two parts");
    let validation = parts.next().expect("two parts");
    Ok((train, validation))
}

/// How many of `n` samples a validation `fraction` holds out (rounded to the nearest), or
/// the error when the fraction is outside (0, 1) or leaves either part empty.
pub(crate) fn held_out(n: usize, fraction: f64) -> crate::Result<usize> {
    if !(fraction > 0.0 && fraction < 1.0) {
        return Err(crate::Error::Training(format!("validation_split: the fraction {fraction} is not in (0, 1)")));
    }
    let held_out = (n as f64 * fraction).round() as usize;
    if held_out == 0 || held_out == n {
        return Err(crate::Error::Training(format!(
            "validation_split: a fraction of {fraction} of {n} samples leaves {} for training and {held_out} for \
             validation; both need at least one",
            n - held_out
        )));
    }
    Ok(held_out)
}

/// [`random_split`] drawing from `generator`, as PyTorch's `generator=` argument; it
/// advances the generator, so two calls with one generator split differently.
///
/// ```
/// use wgrad::data::{random_split_with, TensorDataset};
/// use wgrad::{Device, Generator, Tensor};
/// let x = Tensor::zeros(&[10, 1], &Device::cpu());
/// let data = TensorDataset::new(&x, &x);
/// let mut g = Generator::new(3);
/// let parts = random_split_with(&data, &[3, 3, 4], &mut g);
/// assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [3, 3, 4]);
/// ```
pub fn random_split_with<D: Samples + Clone, S: SplitSize>(
    dataset: D,
    sizes: &[S],
    generator: &mut Generator,
) -> Vec<Subset<D>> {
    let n = dataset.sample_count();
    let lengths = split_lengths(n, sizes);
    let order = generator.permutation(n);
    let mut start = 0;
    lengths
        .into_iter()
        .map(|len| {
            let indices = order[start..start + len].to_vec();
            start += len;
            Subset { dataset: dataset.clone(), indices }
        })
        .collect()
}

/// The length of each piece of a split of `n` samples, by PyTorch's rules.
fn split_lengths<S: SplitSize>(n: usize, sizes: &[S]) -> Vec<usize> {
    let values: Vec<(f64, bool)> = sizes.iter().map(|s| s.size()).collect();
    if let Some(bad) = sizes.iter().zip(&values).find(|(_, (v, _))| v.is_nan() || *v < 0.0) {
        panic!("random_split: size {:?} in {sizes:?} is negative or not a number", bad.0);
    }
    let fractions = values.iter().any(|&(_, fraction)| fraction);
    if !fractions {
        let lengths: Vec<usize> = values.iter().map(|&(v, _)| v as usize).collect();
        let total: usize = lengths.iter().sum();
        assert_eq!(total, n, "random_split: lengths {sizes:?} add up to {total}, but the data set has {n} samples");
        return lengths;
    }
    let total: f64 = values.iter().map(|&(v, _)| v).sum();
    // PyTorch's test: math.isclose(sum, 1) (relative 1e-9) and sum <= 1.
    let ok = values.iter().all(|&(v, _)| v <= 1.0) && (total - 1.0).abs() <= 1e-9 && total <= 1.0;
    assert!(ok, "random_split: fractions {sizes:?} add up to {total}, not 1 (splitting a data set of {n} samples)");
    let mut lengths: Vec<usize> = values.iter().map(|&(v, _)| (n as f64 * v).floor() as usize).collect();
    let remainder = n - lengths.iter().sum::<usize>();
    for i in 0..remainder {
        let k = i % lengths.len();
        lengths[k] += 1;
    }
    lengths
}

#[cfg(test)]
mod tests {
    use super::split_lengths;

    #[test]
    fn fractions_follow_pytorch_remainder_rule() {
        // torch: random_split(range(10), [0.33, 0.33, 0.34]) has lengths [4, 3, 3].
        assert_eq!(split_lengths(10, &[0.33, 0.33, 0.34]), [4, 3, 3]);
        assert_eq!(split_lengths(8000, &[0.9, 0.1]), [7200, 800]);
        assert_eq!(split_lengths(5, &[0.5, 0.5]), [3, 2]);
        assert_eq!(split_lengths(0, &[0.5, 0.5]), [0, 0]);
        assert_eq!(split_lengths(7, &[3usize, 4]), [3, 4]);
    }
}
