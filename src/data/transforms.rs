//! Seeded data augmentation of NCHW image batches, on the batch's own device.
//!
//! The transforms follow torchvision's ([`RandomCrop`] with zero padding,
//! [`RandomHorizontalFlip`], [`Normalize`], [`Compose`]) plus a Keras-style whole-pixel
//! [`RandomShift`], but act on a whole batch at once, with fresh random parameters for
//! every image.
//!
//! Geometric transforms never move pixels through the host. Each call draws three small
//! integers per image on the host (a window offset and a flip bit, see
//! [`Tensor::crop_flip`]) from the transform's seed and a count of its calls, with the
//! counter-based generator the random tensors use; it uploads them and runs one
//! crop-flip kernel over the batch. So a seed gives the same augmented batches on the CPU
//! and on any GPU, and successive batches get new draws. A crop, a shift and a flip are
//! all the same kernel with different windows, which is why [`Compose`] folds consecutive
//! geometric transforms into a single launch: a crop followed by a flip costs one kernel,
//! not two (see [`CropFlipPlan::then`]). [`Normalize`] is two broadcast tensor ops.
//!
//! Transforms prepare data; they are not part of a model. Their outputs are never tracked
//! by autograd, even when the input batch is.
//!
//! Random transforms built without [`seed`](RandomCrop::seed) take their seed from the
//! thread's seed stream, so [`manual_seed`](crate::manual_seed) makes a run repeatable
//! as it does for layer initialisation.
//!
//! In a training loop (MNIST digits are not mirror-symmetric, so no flip here):
//!
//! ```
//! use wgrad::data::transforms::{Compose, Normalize, RandomCrop, Transform};
//! use wgrad::data::{DataLoader, Mnist};
//! use wgrad::nn::{self, Forward, Module};
//! use wgrad::optim::{Optimizer, Sgd};
//! use wgrad::{loss, Device};
//!
//! let dev = Device::cpu();
//! let mnist = Mnist::builtin()?;
//! // Pad by 2 pixels, cut a 28 x 28 crop at a random place, then standardise.
//! let mut augment = Compose::new()
//!     .then(RandomCrop::new(28).padding(2).seed(1))
//!     .then(Normalize::new(&[0.1307], &[0.3081]));
//! let model = nn::Linear::with_seed(784, 10, true, 7, &dev);
//! let mut opt = Sgd::new(model.parameters(), 0.1);
//! let mut loader = DataLoader::new(&mnist.train, 64).shuffle(42);
//! for (images, labels) in loader.epoch(&dev).take(3) {
//!     let x = augment.apply(&images); // new crop positions for every batch
//!     assert_eq!(x.shape(), &[64, 1, 28, 28]);
//!     let loss = loss::cross_entropy(&model.forward(&x.flatten_from(1)), &labels);
//!     opt.step(&loss.backward());
//! }
//! # Ok::<(), wgrad::Error>(())
//! ```

use crate::device::Device;
use crate::dtype::DType;
use crate::random;
use crate::random::Generator;
use crate::tensor::{Size2, Tensor};

/// A transformation of `[N, C, H, W]` batches.
pub trait Transform {
    /// The transformed batch, on the batch's device. Random transforms draw new parameters
    /// on every call. The result is never tracked by autograd.
    fn apply(&mut self, batch: &Tensor) -> Tensor;

    /// For a geometric transform: the windows it would apply to a batch of shape
    /// `input_shape`, drawn exactly as [`apply`](Transform::apply) draws them (the call
    /// counts as one application). [`Compose`] runs the plans of consecutive geometric
    /// transforms as one kernel. Any other transform returns `None` and draws nothing,
    /// which is the default.
    fn plan(&mut self, input_shape: &[usize]) -> Option<CropFlipPlan> {
        let _ = input_shape;
        None
    }

    /// Makes the next call draw as call number `calls` (counting from 0) would, so a
    /// resumed run, or a loader that serves batch `b` of epoch `e` as call
    /// `e * batches + b`, sees the augmentations it would have seen. A transform that
    /// draws nothing ignores it, which is the default.
    fn set_calls(&mut self, calls: u64) {
        let _ = calls;
    }
}

impl<T: Transform + ?Sized> Transform for Box<T> {
    fn apply(&mut self, batch: &Tensor) -> Tensor {
        (**self).apply(batch)
    }

    fn plan(&mut self, input_shape: &[usize]) -> Option<CropFlipPlan> {
        (**self).plan(input_shape)
    }
}

/// The windows of one geometric augmentation of one batch: for image `n`, `windows[n]`
/// is `[dy, dx, flip]` as [`Tensor::crop_flip`] takes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CropFlipPlan {
    /// `[H, W]` of the images the plan reads.
    pub in_size: [usize; 2],
    /// `[H, W]` of the images it produces.
    pub out_size: [usize; 2],
    /// `[dy, dx, flip]` per image: the top-left corner of the window in input
    /// coordinates, and 1 to mirror the window left to right, else 0.
    pub windows: Vec<[i32; 3]>,
}

impl CropFlipPlan {
    /// True when the plan leaves every image as it is.
    pub fn is_identity(&self) -> bool {
        self.in_size == self.out_size && self.windows.iter().all(|w| *w == [0, 0, 0])
    }

    /// Runs the plan on `batch`: one crop-flip kernel, or no work at all for an identity
    /// plan. Panics unless `batch` is `[windows.len(), C, in_size[0], in_size[1]]`.
    pub fn apply(&self, batch: &Tensor) -> Tensor {
        let shape = batch.shape();
        assert!(
            shape.len() == 4 && shape[0] == self.windows.len() && shape[2..] == self.in_size,
            "CropFlipPlan::apply: the plan is for {} images of {:?} pixels, got a batch of shape {shape:?}",
            self.windows.len(),
            self.in_size
        );
        if self.is_identity() {
            return batch.detach();
        }
        let flat: Vec<i32> = self.windows.iter().flatten().copied().collect();
        let windows = Tensor::from_slice(&flat, &[self.windows.len(), 3], batch.device());
        batch.crop_flip(&windows, self.out_size)
    }

    /// One plan that does what `self` followed by `next` does, when a single window per
    /// image can express it exactly; `None` when it cannot, that is when, for some image,
    /// `next`'s window reaches outside `self`'s output (where the result must be zero)
    /// while `self`'s window is not the whole input (so one window would read real pixels
    /// there). So a flip composes with anything on either side, and any window that stays
    /// inside the image it reads composes with whatever came before it.
    ///
    /// Panics unless `next` reads images of `self`'s output size, as many as `self` makes.
    pub fn then(&self, next: &CropFlipPlan) -> Option<CropFlipPlan> {
        assert!(
            next.in_size == self.out_size && next.windows.len() == self.windows.len(),
            "CropFlipPlan::then: the next plan reads {} images of {:?} pixels, but this one makes {} of {:?}",
            next.windows.len(),
            next.in_size,
            self.windows.len(),
            self.out_size
        );
        let [h1, w1] = self.out_size.map(|v| v as i64);
        let [h2, w2] = next.out_size.map(|v| v as i64);
        let mut windows = Vec::with_capacity(self.windows.len());
        for (a, b) in self.windows.iter().zip(&next.windows) {
            let [dy1, dx1, f1] = a.map(i64::from);
            let [dy2, dx2, f2] = b.map(i64::from);
            // `self` maps its input onto its output one to one: out-of-image reads agree.
            let first_is_bijective = dy1 == 0 && dx1 == 0 && self.in_size == self.out_size;
            let second_inside = dy2 >= 0 && dy2 + h2 <= h1 && dx2 >= 0 && dx2 + w2 <= w1;
            if !first_is_bijective && !second_inside {
                return None;
            }
            // Output column x of `next` reads its input at dx2 + x (or dx2 + w2 - 1 - x);
            // a mirrored `self` reads that column at dx1 + w1 - 1 - column.
            let dx = if f1 != 0 { dx1 + w1 - w2 - dx2 } else { dx1 + dx2 };
            let flip = (f1 != 0) != (f2 != 0);
            windows.push([i32::try_from(dy1 + dy2).ok()?, i32::try_from(dx).ok()?, flip as i32]);
        }
        Some(CropFlipPlan { in_size: self.in_size, out_size: next.out_size, windows })
    }
}

/// The seed of a random transform and how many calls it has served.
#[derive(Clone, Debug)]
struct Draws {
    seed: u64,
    calls: u64,
}

impl Draws {
    fn new() -> Draws {
        Draws { seed: random::next_seed(), calls: 0 }
    }

    /// The keys of the next call; image `n` of the batch draws `random_pair(n, keys)`.
    fn next_call(&mut self) -> (u32, u32) {
        // The call number goes through SplitMix64's mixer before meeting the seed, as the
        // loader's epochs do, so neighbouring calls (and seeds) get unrelated keys.
        let call_seed = Generator::for_epoch(self.seed, self.calls).next_u64();
        self.calls += 1;
        random::seed_keys(call_seed)
    }
}

/// The two random words of image `n` in a call with `keys`.
fn image_draws(n: usize, keys: (u32, u32)) -> (u32, u32) {
    random::random_pair(u32::try_from(n).expect("a batch of more than 2^32 images"), keys)
}

/// An integer in `0..range` from 32 random bits (multiply and shift; the bias of at most
/// `range / 2^32` is far below anything a training run can see).
fn below(bits: u32, range: usize) -> i64 {
    ((u64::from(bits) * range as u64) >> 32) as i64
}

/// `[H, W]` of an NCHW shape, or a panic naming the transform.
fn image_size(shape: &[usize], transform: &str) -> [usize; 2] {
    assert_eq!(shape.len(), 4, "{transform}: expected an [N, C, H, W] batch, got shape {shape:?}");
    [shape[2], shape[3]]
}

fn to_i32(v: i64, transform: &str) -> i32 {
    i32::try_from(v).unwrap_or_else(|_| panic!("{transform}: window offset {v} does not fit in 32 bits"))
}

/// Applies a geometric transform through its plan.
fn apply_plan(t: &mut impl Transform, batch: &Tensor) -> Tensor {
    let plan = t.plan(batch.shape()).expect("a geometric transform always has a plan");
    plan.apply(batch)
}

/// Generates the seed builder and the call counter accessors of a random transform.
macro_rules! seeded {
    ($name:ident) => {
        impl $name {
            /// Draws from `seed` instead of the thread's seed stream, and restarts the
            /// call count.
            #[must_use = "seed returns the changed transform"]
            pub fn seed(mut self, seed: u64) -> $name {
                self.draws = Draws { seed, calls: 0 };
                self
            }

            /// How many batches this transform has drawn for so far.
            pub fn calls(&self) -> u64 {
                self.draws.calls
            }
        }
    };
}

/// Zero padding on each side of an image, in torchvision's order: left, top, right,
/// bottom. Built from one number for every side or from `[left, top, right, bottom]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Padding {
    pub left: usize,
    pub top: usize,
    pub right: usize,
    pub bottom: usize,
}

impl From<usize> for Padding {
    fn from(p: usize) -> Padding {
        Padding { left: p, top: p, right: p, bottom: p }
    }
}

impl From<[usize; 4]> for Padding {
    fn from([left, top, right, bottom]: [usize; 4]) -> Padding {
        Padding { left, top, right, bottom }
    }
}

/// Pads each image with zeros, then cuts a `size` crop at a random position of the padded
/// image, as torchvision's `RandomCrop(size, padding, pad_if_needed)` with `fill=0`:
/// the crop's top-left corner is uniform over the positions that keep it inside the
/// padded image.
///
/// ```
/// use wgrad::data::transforms::{RandomCrop, Transform};
/// use wgrad::{Device, Tensor};
/// let batch = Tensor::rand(&[8, 3, 32, 32], 0, &Device::cpu());
/// let mut crop = RandomCrop::new(32).padding(4).seed(7); // the CIFAR-10 recipe
/// assert_eq!(crop.apply(&batch).shape(), &[8, 3, 32, 32]);
/// ```
#[derive(Clone, Debug)]
pub struct RandomCrop {
    size: [usize; 2],
    padding: Padding,
    pad_if_needed: bool,
    draws: Draws,
}

seeded!(RandomCrop);

impl RandomCrop {
    /// Crops of `size` (one number for a square, or `(h, w)`), without padding. Panics on
    /// a zero size.
    pub fn new(size: impl Into<Size2>) -> RandomCrop {
        let Size2(size) = size.into();
        assert!(size[0] > 0 && size[1] > 0, "RandomCrop: the crop size must be positive, got {size:?}");
        RandomCrop { size, padding: Padding::default(), pad_if_needed: false, draws: Draws::new() }
    }

    /// Zero padding around every image before cropping: one number for every side, or
    /// `[left, top, right, bottom]`.
    #[must_use = "padding returns the changed transform"]
    pub fn padding(mut self, padding: impl Into<Padding>) -> RandomCrop {
        self.padding = padding.into();
        self
    }

    /// With `true`, an image still smaller than the crop after padding gets the shortfall
    /// added on both of its sides (torchvision's `pad_if_needed`) instead of a panic.
    #[must_use = "pad_if_needed returns the changed transform"]
    pub fn pad_if_needed(mut self, pad_if_needed: bool) -> RandomCrop {
        self.pad_if_needed = pad_if_needed;
        self
    }

    /// The crop size `[h, w]`.
    pub fn size(&self) -> [usize; 2] {
        self.size
    }
}

impl Transform for RandomCrop {
    fn set_calls(&mut self, calls: u64) {
        self.draws.calls = calls;
    }

    fn apply(&mut self, batch: &Tensor) -> Tensor {
        apply_plan(self, batch)
    }

    fn plan(&mut self, input_shape: &[usize]) -> Option<CropFlipPlan> {
        let [h, w] = image_size(input_shape, "RandomCrop");
        let [th, tw] = self.size;
        let p = self.padding;
        let (mut top, mut left) = (p.top, p.left);
        let mut padded = [p.top + h + p.bottom, p.left + w + p.right];
        if self.pad_if_needed {
            // torchvision pads the shortfall on both sides, so the padded side is
            // 2 * size - side and the crop can land anywhere in it.
            if padded[1] < tw {
                left += tw - padded[1];
                padded[1] = 2 * tw - padded[1];
            }
            if padded[0] < th {
                top += th - padded[0];
                padded[0] = 2 * th - padded[0];
            }
        }
        assert!(
            padded[0] >= th && padded[1] >= tw,
            "RandomCrop: crop size {:?} is larger than the padded image {padded:?} (input {:?}, padding {p:?})",
            self.size,
            [h, w]
        );
        let keys = self.draws.next_call();
        let windows = (0..input_shape[0])
            .map(|n| {
                let (r0, r1) = image_draws(n, keys);
                let i = below(r0, padded[0] - th + 1);
                let j = below(r1, padded[1] - tw + 1);
                [to_i32(i - top as i64, "RandomCrop"), to_i32(j - left as i64, "RandomCrop"), 0]
            })
            .collect();
        Some(CropFlipPlan { in_size: [h, w], out_size: self.size, windows })
    }
}

/// Moves each image by a random whole number of pixels, up to `max_dy` rows and `max_dx`
/// columns either way, filling the uncovered border with zeros; the size stays. Keras's
/// `RandomTranslation` with `fill_mode="constant"`, in pixels rather than fractions. It
/// draws the same windows as `RandomCrop::new((H, W)).padding([max_dx, max_dy, max_dx,
/// max_dy])`, written as what it means.
///
/// ```
/// use wgrad::data::transforms::{RandomShift, Transform};
/// use wgrad::{Device, Tensor};
/// let batch = Tensor::rand(&[8, 1, 28, 28], 0, &Device::cpu());
/// let mut shift = RandomShift::new(2, 2).seed(3);
/// assert_eq!(shift.apply(&batch).shape(), &[8, 1, 28, 28]);
/// ```
#[derive(Clone, Debug)]
pub struct RandomShift {
    max_dy: usize,
    max_dx: usize,
    draws: Draws,
}

seeded!(RandomShift);

impl RandomShift {
    /// Shifts of up to `max_dy` rows and `max_dx` columns in each direction, each shift
    /// uniform over the `2 * max + 1` whole-pixel values.
    pub fn new(max_dy: usize, max_dx: usize) -> RandomShift {
        RandomShift { max_dy, max_dx, draws: Draws::new() }
    }
}

impl Transform for RandomShift {
    fn set_calls(&mut self, calls: u64) {
        self.draws.calls = calls;
    }

    fn apply(&mut self, batch: &Tensor) -> Tensor {
        apply_plan(self, batch)
    }

    fn plan(&mut self, input_shape: &[usize]) -> Option<CropFlipPlan> {
        let size = image_size(input_shape, "RandomShift");
        let keys = self.draws.next_call();
        let windows = (0..input_shape[0])
            .map(|n| {
                let (r0, r1) = image_draws(n, keys);
                // The window offset is minus the shift of the content, and as uniform.
                let dy = below(r0, 2 * self.max_dy + 1) - self.max_dy as i64;
                let dx = below(r1, 2 * self.max_dx + 1) - self.max_dx as i64;
                [to_i32(dy, "RandomShift"), to_i32(dx, "RandomShift"), 0]
            })
            .collect();
        Some(CropFlipPlan { in_size: size, out_size: size, windows })
    }
}

/// Mirrors each image left to right with probability `p`, as torchvision's
/// `RandomHorizontalFlip(p)`; `Default` gives torchvision's `p = 0.5`.
///
/// ```
/// use wgrad::data::transforms::{RandomHorizontalFlip, Transform};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let batch = Tensor::from_slice(&[1.0f32, 2.0, 3.0], &[1, 1, 1, 3], &dev);
/// let mut flip = RandomHorizontalFlip::new(1.0);
/// assert_eq!(flip.apply(&batch).to_vec::<f32>(), vec![3.0, 2.0, 1.0]);
/// ```
#[derive(Clone, Debug)]
pub struct RandomHorizontalFlip {
    p: f32,
    draws: Draws,
}

seeded!(RandomHorizontalFlip);

impl RandomHorizontalFlip {
    /// Flips each image with probability `p`. Panics unless `0 <= p <= 1`.
    pub fn new(p: f32) -> RandomHorizontalFlip {
        assert!((0.0..=1.0).contains(&p), "RandomHorizontalFlip: p must lie in [0, 1], got {p}");
        RandomHorizontalFlip { p, draws: Draws::new() }
    }

    /// The flip probability.
    pub fn p(&self) -> f32 {
        self.p
    }
}

impl Default for RandomHorizontalFlip {
    fn default() -> Self {
        RandomHorizontalFlip::new(0.5)
    }
}

impl Transform for RandomHorizontalFlip {
    fn set_calls(&mut self, calls: u64) {
        self.draws.calls = calls;
    }

    fn apply(&mut self, batch: &Tensor) -> Tensor {
        apply_plan(self, batch)
    }

    fn plan(&mut self, input_shape: &[usize]) -> Option<CropFlipPlan> {
        let size = image_size(input_shape, "RandomHorizontalFlip");
        let keys = self.draws.next_call();
        // torchvision flips when a uniform draw in [0, 1) is below p: never for 0, always for 1.
        let windows =
            (0..input_shape[0]).map(|n| [0, 0, (random::unit_float(image_draws(n, keys).0) < self.p) as i32]).collect();
        Some(CropFlipPlan { in_size: size, out_size: size, windows })
    }
}

/// `(x - mean[c]) / std[c]` for every channel `c`, as torchvision's `Normalize(mean, std)`.
/// One value stands for every channel.
///
/// ```
/// use wgrad::data::transforms::{Normalize, Transform};
/// use wgrad::{Device, Tensor};
/// let dev = Device::cpu();
/// let batch = Tensor::from_slice(&[1.0f32, 3.0], &[1, 2, 1, 1], &dev);
/// let mut norm = Normalize::new(&[0.0, 1.0], &[2.0, 4.0]);
/// assert_eq!(norm.apply(&batch).to_vec::<f32>(), vec![0.5, 0.5]);
/// ```
#[derive(Clone, Debug)]
pub struct Normalize {
    mean: Vec<f32>,
    std: Vec<f32>,
    /// `[1, C, 1, 1]` mean and std tensors of the last batch's device and channel count,
    /// so a GPU run uploads them once, not once per batch.
    cached: Option<(Device, usize, Tensor, Tensor)>,
}

impl Normalize {
    /// Per-channel `mean` and `std`, each of one value or one per channel. Panics on an
    /// empty list or a zero standard deviation.
    pub fn new(mean: &[f32], std: &[f32]) -> Normalize {
        assert!(
            !mean.is_empty() && !std.is_empty(),
            "Normalize: mean {mean:?} and std {std:?} need at least one value each"
        );
        assert!(!std.contains(&0.0), "Normalize: std {std:?} contains a zero, which would divide by zero");
        Normalize { mean: mean.to_vec(), std: std.to_vec(), cached: None }
    }

    pub fn mean(&self) -> &[f32] {
        &self.mean
    }

    pub fn std(&self) -> &[f32] {
        &self.std
    }

    /// The values of `v` as a `[1, C, 1, 1]` tensor.
    fn per_channel(v: &[f32], channels: usize, device: &Device) -> Tensor {
        let values = if v.len() == 1 { vec![v[0]; channels] } else { v.to_vec() };
        Tensor::from_slice(&values, &[1, channels, 1, 1], device)
    }
}

impl Transform for Normalize {
    fn apply(&mut self, batch: &Tensor) -> Tensor {
        let shape = batch.shape();
        assert_eq!(shape.len(), 4, "Normalize: expected an [N, C, H, W] batch, got shape {shape:?}");
        assert_eq!(batch.dtype(), DType::F32, "Normalize: expected an f32 batch, got {}", batch.dtype());
        let c = shape[1];
        for (name, v) in [("means", &self.mean), ("standard deviations", &self.std)] {
            assert!(
                v.len() == 1 || v.len() == c,
                "Normalize: {} {name} for a batch of {c} channels (shape {shape:?})",
                v.len()
            );
        }
        let fresh = !matches!(&self.cached, Some((d, cc, _, _)) if d == batch.device() && *cc == c);
        if fresh {
            let dev = batch.device();
            let m = Normalize::per_channel(&self.mean, c, dev);
            let s = Normalize::per_channel(&self.std, c, dev);
            self.cached = Some((dev.clone(), c, m, s));
        }
        let (_, _, m, s) = self.cached.as_ref().expect("filled above");
        batch.detach().sub(m).div(s)
    }
}

/// Several transforms applied in order, as torchvision's `Compose`. Consecutive geometric
/// transforms run as one crop-flip kernel whenever one window per image can express them
/// (always for flips, see [`CropFlipPlan::then`]); the draws and the result are those of
/// applying them one by one. A `Compose` nested in another runs as a unit of its own.
///
/// ```
/// use wgrad::data::transforms::{Compose, Normalize, RandomCrop, RandomHorizontalFlip, Transform};
/// use wgrad::{Device, Tensor};
/// let mut augment = Compose::new()
///     .then(RandomCrop::new(32).padding(4).seed(1))
///     .then(RandomHorizontalFlip::default().seed(2)) // folded into the crop's kernel
///     .then(Normalize::new(&[0.49, 0.48, 0.45], &[0.25, 0.24, 0.26]));
/// let batch = Tensor::rand(&[4, 3, 32, 32], 0, &Device::cpu());
/// assert_eq!(augment.apply(&batch).shape(), &[4, 3, 32, 32]);
/// ```
#[derive(Default)]
pub struct Compose {
    transforms: Vec<Box<dyn Transform>>,
}

impl std::fmt::Debug for Compose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compose({} transforms)", self.transforms.len())
    }
}

impl Compose {
    /// No transforms yet: applying it returns the batch as it is (untracked).
    pub fn new() -> Compose {
        Compose::default()
    }

    /// Appends `transform`, to run after the ones already there.
    #[must_use = "then returns the changed compose"]
    pub fn then(mut self, transform: impl Transform + 'static) -> Compose {
        self.transforms.push(Box::new(transform));
        self
    }

    /// Appends a boxed transform.
    pub fn push(&mut self, transform: Box<dyn Transform>) {
        self.transforms.push(transform);
    }

    pub fn len(&self) -> usize {
        self.transforms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.transforms.is_empty()
    }
}

impl Transform for Compose {
    /// Positions every transform of the chain: each draws once per call of the chain.
    fn set_calls(&mut self, calls: u64) {
        for t in &mut self.transforms {
            t.set_calls(calls);
        }
    }

    fn apply(&mut self, batch: &Tensor) -> Tensor {
        let mut x = batch.detach();
        // Geometric transforms seen since the last kernel, folded into one plan.
        let mut pending: Option<CropFlipPlan> = None;
        for t in &mut self.transforms {
            let shape = match &pending {
                Some(p) => vec![x.shape()[0], x.shape()[1], p.out_size[0], p.out_size[1]],
                None => x.shape().to_vec(),
            };
            match t.plan(&shape) {
                Some(plan) => {
                    pending = Some(match pending.take() {
                        None => plan,
                        Some(before) => before.then(&plan).unwrap_or_else(|| {
                            x = before.apply(&x);
                            plan
                        }),
                    });
                }
                None => {
                    if let Some(before) = pending.take() {
                        x = before.apply(&x);
                    }
                    x = t.apply(&x);
                }
            }
        }
        match pending {
            Some(plan) => plan.apply(&x),
            None => x,
        }
    }
}
