//! MNIST-style data sets: four IDX files of 10-class u8 images in one folder.
//!
//! The same reader serves MNIST, the repository's built-in `data/mnist-10k`, Fashion-MNIST
//! and any other set laid out with MNIST's file names, gzip-compressed or not. Everything
//! is checked while loading (counts of images and labels agree, neither split is empty,
//! labels are classes 0..9, train and test images have one size) so that a training loop
//! never meets a bad sample.

use std::path::{Path, PathBuf};

use super::idx::{read_idx_images, read_idx_labels, IdxImages};
use super::InMemoryDataset;
use crate::error::{Error, Result};

/// How u8 pixels become `f32` features.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Pixels {
    /// `p / 255`, in `[0, 1]`, as torchvision's `ToTensor`. The default.
    #[default]
    Unit,
    /// `(p / 255 - mean) / std`, as `ToTensor` followed by `Normalize(mean, std)`.
    Standardized { mean: f32, std: f32 },
}

impl Pixels {
    /// The mean of MNIST's training pixels in `[0, 1]` scale.
    pub const MNIST_MEAN: f32 = 0.1307;
    /// The standard deviation of MNIST's training pixels in `[0, 1]` scale.
    pub const MNIST_STD: f32 = 0.3081;

    /// Standardized by MNIST's customary mean 0.1307 and standard deviation 0.3081 (the
    /// statistics of the full 60,000 training digits; other data sets have their own).
    pub fn mnist_standardized() -> Pixels {
        Pixels::Standardized { mean: Pixels::MNIST_MEAN, std: Pixels::MNIST_STD }
    }

    /// The feature value of every pixel value 0..=255.
    fn table(self) -> [f32; 256] {
        std::array::from_fn(|p| {
            let unit = p as f32 / 255.0;
            match self {
                Pixels::Unit => unit,
                Pixels::Standardized { mean, std } => (unit - mean) / std,
            }
        })
    }
}

/// The train and test splits of an MNIST-style data set, in memory.
///
/// Each sample is one image shaped `[1, rows, cols]` (channels, height, width; `[1, 28, 28]`
/// for MNIST) with a label in `0..10`.
///
/// ```
/// use wgrad::data::{Dataset, Mnist};
/// let mnist = Mnist::builtin()?;
/// assert_eq!((mnist.train.len(), mnist.test.len()), (8000, 2000));
/// assert_eq!(mnist.train.sample_shape(), &[1, 28, 28]);
/// # Ok::<(), wgrad::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: InMemoryDataset,
    pub test: InMemoryDataset,
}

impl Mnist {
    pub const NUM_CLASSES: usize = 10;
    /// The standard file names, without the `.gz` that they usually carry.
    pub const TRAIN_IMAGES: &'static str = "train-images-idx3-ubyte";
    pub const TRAIN_LABELS: &'static str = "train-labels-idx1-ubyte";
    pub const TEST_IMAGES: &'static str = "t10k-images-idx3-ubyte";
    pub const TEST_LABELS: &'static str = "t10k-labels-idx1-ubyte";

    /// Loads the four standard files from `dir` (each `NAME.gz` or plain `NAME`), with
    /// pixels scaled to `[0, 1]`.
    pub fn load(dir: impl AsRef<Path>) -> Result<Mnist> {
        Mnist::load_with(dir, Pixels::Unit)
    }

    /// As [`Mnist::load`], with pixels turned into features as `pixels` says. Panics when a
    /// standardizing `std` is not positive.
    pub fn load_with(dir: impl AsRef<Path>, pixels: Pixels) -> Result<Mnist> {
        if let Pixels::Standardized { std, .. } = pixels {
            assert!(std > 0.0 && std.is_finite(), "Mnist: Pixels::Standardized needs a positive std, got {std}");
        }
        let dir = dir.as_ref();
        let table = pixels.table();
        let train = Split::load(dir, Mnist::TRAIN_IMAGES, Mnist::TRAIN_LABELS)?;
        let test = Split::load(dir, Mnist::TEST_IMAGES, Mnist::TEST_LABELS)?;
        let (train_size, test_size) = ((train.images.rows, train.images.cols), (test.images.rows, test.images.cols));
        if train_size != test_size {
            return Err(Error::Format {
                path: test.images_path.display().to_string(),
                reason: format!(
                    "images are {}x{} but the training images in {} are {}x{}",
                    test_size.0,
                    test_size.1,
                    train.images_path.display(),
                    train_size.0,
                    train_size.1
                ),
            });
        }
        Ok(Mnist { train: train.into_dataset(&table), test: test.into_dataset(&table) })
    }

    /// The repository's built-in `data/mnist-10k` (8,000 train and 2,000 test digits,
    /// CC BY-SA 3.0; see its README) with pixels in `[0, 1]`.
    pub fn builtin() -> Result<Mnist> {
        Mnist::load(Mnist::builtin_dir())
    }

    /// As [`Mnist::builtin`], with pixels turned into features as `pixels` says.
    pub fn builtin_with(pixels: Pixels) -> Result<Mnist> {
        Mnist::load_with(Mnist::builtin_dir(), pixels)
    }

    /// Where the built-in data set lies: `data/mnist-10k` in the crate's source tree.
    pub fn builtin_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("mnist-10k")
    }
}

/// One split as read from its two files, before its pixels become features.
struct Split {
    images: IdxImages,
    images_path: PathBuf,
    labels: Vec<u8>,
}

impl Split {
    fn load(dir: &Path, images_name: &str, labels_name: &str) -> Result<Split> {
        let images_path = find_file(dir, images_name)?;
        let labels_path = find_file(dir, labels_name)?;
        let images = read_idx_images(&images_path)?;
        let labels = read_idx_labels(&labels_path)?;
        if images.count != labels.len() {
            return Err(Error::Format {
                path: images_path.display().to_string(),
                reason: format!(
                    "holds {} images but {} holds {} labels; the counts must match",
                    images.count,
                    labels_path.display(),
                    labels.len()
                ),
            });
        }
        // An empty split would train on nothing (a NaN mean loss) or test on nothing.
        if images.count == 0 {
            return Err(Error::Format {
                path: images_path.display().to_string(),
                reason: format!(
                    "holds no images (and {} no labels); a split needs at least one",
                    labels_path.display()
                ),
            });
        }
        if images.rows == 0 || images.cols == 0 {
            return Err(Error::Format {
                path: images_path.display().to_string(),
                reason: format!("images are {}x{}; an image needs at least one pixel", images.rows, images.cols),
            });
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= Mnist::NUM_CLASSES) {
            return Err(Error::Format {
                path: labels_path.display().to_string(),
                reason: format!("label {label} at index {index} is not a class 0..{}", Mnist::NUM_CLASSES - 1),
            });
        }
        Ok(Split { images, images_path, labels })
    }

    fn into_dataset(self, table: &[f32; 256]) -> InMemoryDataset {
        let features = self.images.pixels.iter().map(|&p| table[usize::from(p)]).collect();
        let labels = self.labels.iter().map(|&l| i32::from(l)).collect();
        InMemoryDataset::new(features, &[1, self.images.rows, self.images.cols], labels)
    }
}

/// `dir/NAME.gz` if it exists, else `dir/NAME`; when neither does, an error naming both.
fn find_file(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(format!("{name}.gz"));
    let plain = dir.join(name);
    // A file that exists but cannot be inspected (no permission) is chosen too, so that
    // reading it reports the real cause rather than "no such file".
    let present = |p: &Path| std::fs::metadata(p).map_or_else(|e| e.kind() != std::io::ErrorKind::NotFound, |_| true);
    if present(&gz) {
        return Ok(gz);
    }
    if present(&plain) {
        return Ok(plain);
    }
    let reason = if dir.is_dir() {
        format!("no such file, nor {name} beside it")
    } else {
        format!("no such file: the folder {} does not exist", dir.display())
    };
    Err(Error::Io { path: gz.display().to_string(), source: std::io::Error::new(std::io::ErrorKind::NotFound, reason) })
}
