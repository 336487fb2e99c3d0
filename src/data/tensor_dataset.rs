//! A data set made of two tensors, as PyTorch's `TensorDataset`, and the host buffer the
//! loader gathers batches of any dtype into.
//!
//! The tensors are copied to the host once, when the data set is made: a batch is then a
//! gather of host rows and one upload, the same path as every other data set, and the
//! shuffled order never costs a device-side index kernel or a readback.

use super::Samples;
use crate::device::Device;
use crate::dtype::DType;
use crate::tensor::Tensor;

/// Values of one dtype on the host, `f32` or `i32`: what a [`Samples`] appends a sample to
/// and what becomes one batch tensor.
///
/// ```
/// use wgrad::data::HostBuffer;
/// use wgrad::{DType, Device};
/// let mut b = HostBuffer::new(DType::I32);
/// b.extend_i32(&[4, 5, 6]);
/// assert_eq!(b.len(), 3);
/// assert_eq!(b.to_tensor(&[3], &Device::cpu()).to_vec::<i32>(), [4, 5, 6]);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum HostBuffer {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl HostBuffer {
    /// An empty buffer of `dtype`. Panics for `f16`, which data sets do not hold.
    ///
    /// ```
    /// use wgrad::{data::HostBuffer, DType};
    /// assert_eq!(HostBuffer::new(DType::F32), HostBuffer::F32(vec![]));
    /// ```
    pub fn new(dtype: DType) -> HostBuffer {
        match dtype {
            DType::F32 => HostBuffer::F32(Vec::new()),
            DType::I32 => HostBuffer::I32(Vec::new()),
            DType::F16 => panic!("HostBuffer: data sets hold f32 or i32 values, not f16"),
        }
    }

    /// The values of `tensor`, read back to the host in row-major order: `f32` and `i32`
    /// as they are, `f16` widened to `f32`.
    ///
    /// ```
    /// use wgrad::{data::HostBuffer, Device, Tensor};
    /// let t = Tensor::from_slice(&[1.5f32, 2.5], &[2], &Device::cpu());
    /// assert_eq!(HostBuffer::from_tensor(&t), HostBuffer::F32(vec![1.5, 2.5]));
    /// ```
    pub fn from_tensor(tensor: &Tensor) -> HostBuffer {
        match tensor.dtype() {
            DType::F32 => HostBuffer::F32(tensor.to_vec()),
            DType::I32 => HostBuffer::I32(tensor.to_vec()),
            DType::F16 => HostBuffer::F32(tensor.to_dtype(DType::F32).to_vec()),
        }
    }

    /// The dtype of the values.
    ///
    /// ```
    /// use wgrad::{data::HostBuffer, DType};
    /// assert_eq!(HostBuffer::I32(vec![1]).dtype(), DType::I32);
    /// ```
    pub fn dtype(&self) -> DType {
        match self {
            HostBuffer::F32(_) => DType::F32,
            HostBuffer::I32(_) => DType::I32,
        }
    }

    /// How many values the buffer holds.
    ///
    /// ```
    /// assert_eq!(wgrad::data::HostBuffer::F32(vec![0.0; 3]).len(), 3);
    /// ```
    pub fn len(&self) -> usize {
        match self {
            HostBuffer::F32(v) => v.len(),
            HostBuffer::I32(v) => v.len(),
        }
    }

    /// True when the buffer holds no values.
    ///
    /// ```
    /// assert!(wgrad::data::HostBuffer::I32(vec![]).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every value, keeping the allocation (the loader reuses its buffers).
    ///
    /// ```
    /// let mut b = wgrad::data::HostBuffer::F32(vec![1.0]);
    /// b.clear();
    /// assert!(b.is_empty());
    /// ```
    pub fn clear(&mut self) {
        match self {
            HostBuffer::F32(v) => v.clear(),
            HostBuffer::I32(v) => v.clear(),
        }
    }

    /// The `f32` values, to append to. Panics, naming the dtype, on an `i32` buffer.
    ///
    /// ```
    /// let mut b = wgrad::data::HostBuffer::F32(vec![]);
    /// b.as_f32_mut().push(2.0);
    /// assert_eq!(b.len(), 1);
    /// ```
    pub fn as_f32_mut(&mut self) -> &mut Vec<f32> {
        match self {
            HostBuffer::F32(v) => v,
            HostBuffer::I32(_) => panic!("HostBuffer: an f32 sample was written to an i32 buffer"),
        }
    }

    /// The `i32` values, to append to. Panics, naming the dtype, on an `f32` buffer.
    ///
    /// ```
    /// let mut b = wgrad::data::HostBuffer::I32(vec![]);
    /// b.as_i32_mut().push(3);
    /// assert_eq!(b.len(), 1);
    /// ```
    pub fn as_i32_mut(&mut self) -> &mut Vec<i32> {
        match self {
            HostBuffer::I32(v) => v,
            HostBuffer::F32(_) => panic!("HostBuffer: an i32 sample was written to an f32 buffer"),
        }
    }

    /// Appends `f32` values. Panics on an `i32` buffer.
    ///
    /// ```
    /// let mut b = wgrad::data::HostBuffer::F32(vec![]);
    /// b.extend_f32(&[1.0, 2.0]);
    /// assert_eq!(b, wgrad::data::HostBuffer::F32(vec![1.0, 2.0]));
    /// ```
    pub fn extend_f32(&mut self, values: &[f32]) {
        self.as_f32_mut().extend_from_slice(values);
    }

    /// Appends `i32` values. Panics on an `f32` buffer.
    ///
    /// ```
    /// let mut b = wgrad::data::HostBuffer::I32(vec![]);
    /// b.extend_i32(&[7]);
    /// assert_eq!(b, wgrad::data::HostBuffer::I32(vec![7]));
    /// ```
    pub fn extend_i32(&mut self, values: &[i32]) {
        self.as_i32_mut().extend_from_slice(values);
    }

    /// Appends values `range` of `other`, which must have this buffer's dtype.
    fn extend_from_range(&mut self, other: &HostBuffer, range: std::ops::Range<usize>) {
        match other {
            HostBuffer::F32(v) => self.extend_f32(&v[range]),
            HostBuffer::I32(v) => self.extend_i32(&v[range]),
        }
    }

    /// The values as a tensor of `shape` on `device`: one upload. Panics when `shape` does
    /// not hold exactly `len()` values.
    ///
    /// ```
    /// use wgrad::{data::HostBuffer, Device};
    /// let t = HostBuffer::F32(vec![1.0, 2.0, 3.0, 4.0]).to_tensor(&[2, 2], &Device::cpu());
    /// assert_eq!(t.shape(), &[2, 2]);
    /// ```
    pub fn to_tensor(&self, shape: &[usize], device: &Device) -> Tensor {
        match self {
            HostBuffer::F32(v) => Tensor::from_slice(v, shape, device),
            HostBuffer::I32(v) => Tensor::from_slice(v, shape, device),
        }
    }
}

/// Samples that are the rows of two tensors, as `torch.utils.data.TensorDataset`: sample
/// `i` is `(inputs[i], targets[i])`. Held on the host; `f32` or `i32` on either side, of
/// any shape.
///
/// ```
/// use wgrad::data::{DataLoader, TensorDataset};
/// use wgrad::{Device, Tensor};
///
/// let cpu = Device::cpu();
/// // y = 2x + 1 with 3 features and 2 outputs per sample.
/// let x = Tensor::randn(&[100, 3], 0, &cpu);
/// let y = x.sum(&[1], true).affine(2.0, 1.0).broadcast_to(&[100, 2]);
/// let data = TensorDataset::new(&x, &y);
/// assert_eq!((data.len(), data.input_shape(), data.target_shape()), (100, &[3][..], &[2][..]));
/// let (xb, yb) = DataLoader::new(&data, 32).shuffle(1).epoch(&cpu).next().unwrap();
/// assert_eq!((xb.shape(), yb.shape()), (&[32, 3][..], &[32, 2][..]));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct TensorDataset {
    inputs: HostBuffer,
    input_shape: Vec<usize>,
    targets: HostBuffer,
    target_shape: Vec<usize>,
    len: usize,
}

impl TensorDataset {
    /// The samples along the first axis of `inputs` and `targets`, copied to the host.
    /// Panics, naming both shapes, when the tensors disagree on the number of samples or
    /// one of them has no first axis.
    ///
    /// ```
    /// use wgrad::data::TensorDataset;
    /// use wgrad::{DType, Device, Tensor};
    /// let cpu = Device::cpu();
    /// let tokens = Tensor::from_slice(&[1i32, 2, 3, 4, 5, 6], &[3, 2], &cpu);
    /// let labels = Tensor::from_slice(&[0i32, 1, 0], &[3], &cpu);
    /// let data = TensorDataset::new(&tokens, &labels);
    /// assert_eq!((data.len(), data.target_shape()), (3, &[][..]));
    /// assert_eq!(data.inputs().dtype(), DType::I32);
    /// ```
    pub fn new(inputs: &Tensor, targets: &Tensor) -> TensorDataset {
        let ok = inputs.rank() >= 1 && targets.rank() >= 1 && inputs.shape()[0] == targets.shape()[0];
        assert!(
            ok,
            "TensorDataset::new: inputs of shape {:?} and targets of shape {:?} need the same number of samples along their first axis",
            inputs.shape(),
            targets.shape()
        );
        TensorDataset {
            inputs: HostBuffer::from_tensor(inputs),
            input_shape: inputs.shape()[1..].to_vec(),
            targets: HostBuffer::from_tensor(targets),
            target_shape: targets.shape()[1..].to_vec(),
            len: inputs.shape()[0],
        }
    }

    /// Forecasting samples cut from a time series `[T, ...features]`: sample `i` has the
    /// `input_len` steps starting at `i * step` as input and the `target_len` steps right
    /// after them as target, so inputs are `[input_len, ...features]` and targets
    /// `[target_len, ...features]`. There are `(T - input_len - target_len) / step + 1`
    /// samples (none when the series is shorter than one window). Panics when `input_len`,
    /// `target_len` or `step` is zero, or the series has no time axis.
    ///
    /// Each sample is `series.unfold(0, input_len + target_len, step)` split in two; the
    /// windows are copied to the host, so overlapping windows cost memory.
    ///
    /// ```
    /// use wgrad::data::TensorDataset;
    /// use wgrad::{Device, Tensor};
    /// let series = Tensor::arange(0.0, 10.0, 1.0, &Device::cpu()); // 0, 1, ..., 9
    /// let data = TensorDataset::windows(&series, 3, 2, 2);
    /// assert_eq!(data.len(), 3);
    /// let (x, y) = data.get(1);
    /// assert_eq!((x.to_vec::<f32>(), y.to_vec::<f32>()), (vec![2., 3., 4.], vec![5., 6.]));
    /// ```
    pub fn windows(series: &Tensor, input_len: usize, target_len: usize, step: usize) -> TensorDataset {
        assert!(
            input_len > 0 && target_len > 0 && step > 0,
            "TensorDataset::windows: input_len {input_len}, target_len {target_len} and step {step} must all be at least 1"
        );
        assert!(
            series.rank() >= 1,
            "TensorDataset::windows: the series needs a time axis, got shape {:?}",
            series.shape()
        );
        let steps = series.shape()[0];
        let features = &series.shape()[1..];
        let per_step: usize = features.iter().product();
        let window = input_len + target_len;
        let count = if steps >= window { (steps - window) / step + 1 } else { 0 };
        let values = HostBuffer::from_tensor(series);
        let mut inputs = HostBuffer::new(values.dtype());
        let mut targets = HostBuffer::new(values.dtype());
        for i in 0..count {
            let start = i * step * per_step;
            let split = start + input_len * per_step;
            inputs.extend_from_range(&values, start..split);
            targets.extend_from_range(&values, split..split + target_len * per_step);
        }
        let shape_with = |len: usize| -> Vec<usize> { std::iter::once(len).chain(features.iter().copied()).collect() };
        TensorDataset {
            inputs,
            input_shape: shape_with(input_len),
            targets,
            target_shape: shape_with(target_len),
            len: count,
        }
    }

    /// How many samples there are.
    ///
    /// ```
    /// use wgrad::{data::TensorDataset, Device, Tensor};
    /// let x = Tensor::zeros(&[4, 2], &Device::cpu());
    /// assert_eq!(TensorDataset::new(&x, &x).len(), 4);
    /// ```
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no samples.
    ///
    /// ```
    /// use wgrad::{data::TensorDataset, Device, Tensor};
    /// let x = Tensor::zeros(&[0, 2], &Device::cpu());
    /// assert!(TensorDataset::new(&x, &x).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The shape of one input: the input tensor's shape without its first axis.
    ///
    /// ```
    /// use wgrad::{data::TensorDataset, Device, Tensor};
    /// let x = Tensor::zeros(&[4, 2, 3], &Device::cpu());
    /// assert_eq!(TensorDataset::new(&x, &x).input_shape(), &[2, 3]);
    /// ```
    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    /// The shape of one target: the target tensor's shape without its first axis.
    ///
    /// ```
    /// use wgrad::{data::TensorDataset, Device, Tensor};
    /// let (x, y) = (Tensor::zeros(&[4, 2], &Device::cpu()), Tensor::zeros(&[4], &Device::cpu()));
    /// assert_eq!(TensorDataset::new(&x, &y).target_shape(), &[] as &[usize]);
    /// ```
    pub fn target_shape(&self) -> &[usize] {
        &self.target_shape
    }

    /// All inputs, `[len, ...input_shape]` in row-major order.
    ///
    /// ```
    /// use wgrad::{data::{HostBuffer, TensorDataset}, Device, Tensor};
    /// let x = Tensor::from_slice(&[1.0f32, 2.0], &[2, 1], &Device::cpu());
    /// assert_eq!(TensorDataset::new(&x, &x).inputs(), &HostBuffer::F32(vec![1.0, 2.0]));
    /// ```
    pub fn inputs(&self) -> &HostBuffer {
        &self.inputs
    }

    /// All targets, `[len, ...target_shape]` in row-major order.
    ///
    /// ```
    /// use wgrad::{data::{HostBuffer, TensorDataset}, Device, Tensor};
    /// let x = Tensor::zeros(&[2, 1], &Device::cpu());
    /// let y = Tensor::from_slice(&[5i32, 6], &[2], &Device::cpu());
    /// assert_eq!(TensorDataset::new(&x, &y).targets(), &HostBuffer::I32(vec![5, 6]));
    /// ```
    pub fn targets(&self) -> &HostBuffer {
        &self.targets
    }

    /// Sample `index` as a pair of CPU tensors shaped `input_shape` and `target_shape`
    /// (PyTorch's `dataset[index]`). Panics when out of range.
    ///
    /// ```
    /// use wgrad::{data::TensorDataset, Device, Tensor};
    /// let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2], &Device::cpu());
    /// let (input, target) = TensorDataset::new(&x, &x).get(1);
    /// assert_eq!(input.to_vec::<f32>(), [3.0, 4.0]);
    /// ```
    pub fn get(&self, index: usize) -> (Tensor, Tensor) {
        let mut inputs = HostBuffer::new(self.inputs.dtype());
        let mut targets = HostBuffer::new(self.targets.dtype());
        self.append_pair(index, &mut inputs, &mut targets);
        let cpu = Device::cpu();
        (inputs.to_tensor(&self.input_shape, &cpu), targets.to_tensor(&self.target_shape, &cpu))
    }
}

impl Samples for TensorDataset {
    fn sample_count(&self) -> usize {
        self.len
    }
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }
    fn input_dtype(&self) -> DType {
        self.inputs.dtype()
    }
    fn target_shape(&self) -> &[usize] {
        &self.target_shape
    }
    fn target_dtype(&self) -> DType {
        self.targets.dtype()
    }
    fn append_pair(&self, index: usize, inputs: &mut HostBuffer, targets: &mut HostBuffer) {
        assert!(index < self.len, "TensorDataset: index {index} is out of range for {} samples", self.len);
        let x: usize = self.input_shape.iter().product();
        let y: usize = self.target_shape.iter().product();
        inputs.extend_from_range(&self.inputs, index * x..(index + 1) * x);
        targets.extend_from_range(&self.targets, index * y..(index + 1) * y);
    }
}

/// A borrowed `TensorDataset` is one too, so a loader or a split can borrow it.
impl Samples for &TensorDataset {
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
