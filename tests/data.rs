//! The data layer: IDX reading and its failures, MNIST-style loading, the built-in data set
//! and the batch loader. Everything here runs on the CPU device; batches on a GPU are
//! covered by the runtime tests.

mod common;
use common::{gzip, idx, TempDir};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use wgrad::data::{read_idx, read_idx_images, read_idx_labels, DataLoader, Dataset, InMemoryDataset, Mnist, Pixels};
use wgrad::{DType, Device, Error};

// ---- helpers ----

/// `count` images of `rows x cols` whose pixels count up from `first` (mod 256).
fn images_idx(count: u32, rows: u32, cols: u32, first: u8) -> Vec<u8> {
    let n = (count * rows * cols) as usize;
    let pixels: Vec<u8> = (0..n).map(|i| first.wrapping_add(i as u8)).collect();
    idx(0x803, &[count, rows, cols], &pixels)
}

fn labels_idx(labels: &[u8]) -> Vec<u8> {
    idx(0x801, &[labels.len() as u32], labels)
}

/// A complete small MNIST-style folder: 5 train and 3 test images of 4x3, gzip-compressed.
fn write_small_mnist(dir: &TempDir) {
    dir.write("train-images-idx3-ubyte.gz", &gzip(&images_idx(5, 4, 3, 0)));
    dir.write("train-labels-idx1-ubyte.gz", &gzip(&labels_idx(&[0, 1, 2, 9, 4])));
    dir.write("t10k-images-idx3-ubyte.gz", &gzip(&images_idx(3, 4, 3, 100)));
    dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&labels_idx(&[7, 8, 3])));
}

/// The error's message, after checking it is a `Format` error about `path`.
fn format_error(result: wgrad::Result<impl std::fmt::Debug>, path: &Path) -> String {
    let err = result.expect_err("a bad file must be an error");
    let message = err.to_string();
    match &err {
        Error::Format { path: p, .. } => assert_eq!(p, &path.display().to_string(), "{message}"),
        other => panic!("expected Error::Format, got {other:?}"),
    }
    assert!(message.contains(&path.display().to_string()), "message does not name the file: {message}");
    message
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "message lacks {part:?}: {message}");
    }
}

// ---- the built-in data set ----

#[test]
fn builtin_mnist_has_8000_train_and_2000_test_digits() {
    let mnist = Mnist::builtin().unwrap();
    for (split, data, expected) in [("train", &mnist.train, 8000), ("test", &mnist.test, 2000)] {
        assert_eq!(data.len(), expected, "{split}");
        assert_eq!(data.sample_shape(), &[1, 28, 28], "{split}");
        assert_eq!(data.features().len(), expected * 784, "{split}");
        assert!(data.features().iter().all(|&p| (0.0..=1.0).contains(&p)), "{split}: a pixel outside [0, 1]");
        assert_eq!(data.features().iter().cloned().fold(f32::MIN, f32::max), 1.0, "{split}: no full-ink pixel");

        // Every class present and none far from a tenth of the split (real counts: 685..916
        // of 8000 and 178..220 of 2000).
        let counts = data.class_counts(10);
        let tenth = expected as f64 / 10.0;
        for (class, &n) in counts.iter().enumerate() {
            assert!((n as f64 - tenth).abs() < 0.25 * tenth, "{split}: class {class} has {n} of {expected} samples");
        }
    }
    // MNIST's ink covers about 13% of the picture.
    let mean = mnist.train.features().iter().map(|&p| p as f64).sum::<f64>() / mnist.train.features().len() as f64;
    assert!((mean - 0.1307).abs() < 0.01, "mean pixel {mean}");
}

#[test]
fn builtin_pixels_are_the_idx_bytes_over_255() {
    let dir = Mnist::builtin_dir();
    let raw = read_idx_images(dir.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = read_idx_labels(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((raw.count, raw.rows, raw.cols), (2000, 28, 28));
    let mnist = Mnist::builtin().unwrap();
    for i in [0, 1, 1234, 1999] {
        let (features, label) = mnist.test.sample(i);
        assert_eq!(label, i32::from(labels[i]));
        let expected: Vec<f32> = raw.image(i).iter().map(|&p| p as f32 / 255.0).collect();
        assert_eq!(features, &expected[..], "image {i}");
    }
}

#[test]
fn standardized_pixels_are_an_explicit_option() {
    assert_eq!(Pixels::default(), Pixels::Unit);
    let unit = Mnist::builtin().unwrap();
    let standardized = Mnist::builtin_with(Pixels::mnist_standardized()).unwrap();
    assert_eq!(unit.train.labels(), standardized.train.labels());
    for (&u, &s) in unit.train.features().iter().zip(standardized.train.features()).step_by(97) {
        let expected = (u - 0.1307) / 0.3081;
        assert!((s - expected).abs() < 1e-5, "{u} became {s}, expected {expected}");
    }
    // Background pixels map to -mean/std, and the set is roughly centred.
    assert!(standardized.test.features().contains(&(-0.1307f32 / 0.3081)));
    let mean = standardized.train.features().iter().map(|&p| p as f64).sum::<f64>()
        / standardized.train.features().len() as f64;
    assert!(mean.abs() < 0.05, "standardized mean {mean}");
}

/// Where Fashion-MNIST may lie: `$WGRAD_FASHION_MNIST`, else the project's `shared/` folder
/// beside the checkout (as on CI), else its usual absolute place.
fn fashion_mnist_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("WGRAD_FASHION_MNIST").map(PathBuf::from),
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/fashion-mnist")),
        Some(PathBuf::from("/work/shared/data/fashion-mnist")),
    ];
    candidates.into_iter().flatten().find(|dir| dir.is_dir())
}

#[test]
fn fashion_mnist_loads_when_present() {
    let Some(dir) = fashion_mnist_dir() else {
        println!("skipped: no Fashion-MNIST folder (it is not part of the repository; set WGRAD_FASHION_MNIST)");
        return;
    };
    let fashion = Mnist::load(&dir).unwrap();
    assert_eq!((fashion.train.len(), fashion.test.len()), (60_000, 10_000));
    assert_eq!(fashion.train.sample_shape(), &[1, 28, 28]);
    for (split, data) in [("train", &fashion.train), ("test", &fashion.test)] {
        let counts = data.class_counts(10);
        let tenth = data.len() as f64 / 10.0;
        assert!(counts.iter().all(|&n| (n as f64 - tenth).abs() < 0.1 * tenth), "{split}: {counts:?}");
    }
}

// ---- file variants ----

#[test]
fn plain_and_gzip_files_load_alike_whatever_their_names_say() {
    let gz = TempDir::new("variants-gz");
    write_small_mnist(&gz);
    let expected = Mnist::load(gz.root()).unwrap();
    assert_eq!(expected.train.labels(), &[0, 1, 2, 9, 4]);
    assert_eq!(expected.test.labels(), &[7, 8, 3]);
    assert_eq!(expected.train.sample_shape(), &[1, 4, 3]);
    assert_eq!(expected.train.sample(1).0[0], 12.0 / 255.0); // pixel 12 is image 1's first
    assert_eq!(expected.test.sample(0).0[0], 100.0 / 255.0);

    // Un-gzipped files under the plain names.
    let plain = TempDir::new("variants-plain");
    plain.write("train-images-idx3-ubyte", &images_idx(5, 4, 3, 0));
    plain.write("train-labels-idx1-ubyte", &labels_idx(&[0, 1, 2, 9, 4]));
    plain.write("t10k-images-idx3-ubyte", &images_idx(3, 4, 3, 100));
    plain.write("t10k-labels-idx1-ubyte", &labels_idx(&[7, 8, 3]));
    let loaded = Mnist::load(plain.root()).unwrap();
    assert_eq!((&loaded.train, &loaded.test), (&expected.train, &expected.test));

    // Names that lie: a raw file called .gz and gzip data without the extension. The
    // reader goes by the gzip magic bytes.
    let mixed = TempDir::new("variants-mixed");
    mixed.write("train-images-idx3-ubyte.gz", &images_idx(5, 4, 3, 0));
    mixed.write("train-labels-idx1-ubyte", &gzip(&labels_idx(&[0, 1, 2, 9, 4])));
    mixed.write("t10k-images-idx3-ubyte", &gzip(&images_idx(3, 4, 3, 100)));
    mixed.write("t10k-labels-idx1-ubyte.gz", &labels_idx(&[7, 8, 3]));
    let loaded = Mnist::load(mixed.root()).unwrap();
    assert_eq!((&loaded.train, &loaded.test), (&expected.train, &expected.test));
}

#[test]
fn idx_reader_returns_header_and_data() {
    let dir = TempDir::new("reader");
    let images = read_idx_images(dir.write("i.gz", &gzip(&images_idx(2, 3, 5, 7)))).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (2, 3, 5));
    assert_eq!(images.pixels, (7..37).collect::<Vec<u8>>());
    assert_eq!(images.image(1), &(22..37).collect::<Vec<u8>>()[..]);

    assert_eq!(read_idx_labels(dir.write("l", &labels_idx(&[3, 1, 4]))).unwrap(), vec![3, 1, 4]);

    // Any rank of u8, including an empty data set.
    let cube = read_idx(dir.write("c", &idx(0x804, &[2, 1, 2, 2], &[1, 2, 3, 4, 5, 6, 7, 8]))).unwrap();
    assert_eq!(cube.dims, vec![2, 1, 2, 2]);
    assert_eq!(cube.data, (1..=8).collect::<Vec<u8>>());
    let empty = read_idx_images(dir.write("e", &idx(0x803, &[0, 28, 28], &[]))).unwrap();
    assert_eq!((empty.count, empty.pixels.len()), (0, 0));

    // Several concatenated gzip members are one stream, as gzip(1) reads them.
    let whole = images_idx(2, 3, 5, 7);
    let mut two_members = gzip(&whole[..20]);
    two_members.extend(gzip(&whole[20..]));
    assert_eq!(read_idx_images(dir.write("m.gz", &two_members)).unwrap(), images);
}

// ---- failures: each names the file and the problem ----

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let dir = TempDir::new("missing");
    let path = dir.root().join("nothing-here-idx3-ubyte.gz");
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");

    // A folder that lacks one of the four files: the message names the missing file and
    // says the un-gzipped name was looked for too.
    write_small_mnist(&dir);
    std::fs::remove_file(dir.root().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let err = Mnist::load(dir.root()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, Error::Io { .. }), "{message}");
    assert_mentions(
        &message,
        &[
            &dir.root().join("t10k-labels-idx1-ubyte.gz").display().to_string(),
            "no such file",
            "t10k-labels-idx1-ubyte ",
        ],
    );

    // A folder that does not exist.
    let nowhere = dir.root().join("no-such-folder");
    let message = Mnist::load(&nowhere).unwrap_err().to_string();
    assert_mentions(&message, &["train-images-idx3-ubyte.gz", "does not exist", &nowhere.display().to_string()]);
}

#[test]
fn truncated_header_is_an_error() {
    let dir = TempDir::new("truncated-header");
    // Shorter than the magic number.
    let path = dir.write("two-bytes", &[0, 0]);
    assert_mentions(&format_error(read_idx_images(&path), &path), &["truncated header", "2 bytes"]);
    // The magic, and one and a half of the three dims.
    let path = dir.write("images.gz", &gzip(&images_idx(1, 2, 2, 0)[..10]));
    assert_mentions(&format_error(read_idx_images(&path), &path), &["truncated header", "10 bytes", "16"]);
    // A label file that ends inside its one dim.
    let path = dir.write("labels", &labels_idx(&[1])[..6]);
    assert_mentions(&format_error(read_idx_labels(&path), &path), &["truncated header", "6 bytes", "8"]);
}

#[test]
fn truncated_data_is_an_error() {
    let dir = TempDir::new("truncated-data");
    let mut bytes = images_idx(3, 28, 28, 0);
    bytes.truncate(bytes.len() - 784 - 1);
    let path = dir.write("images.gz", &gzip(&bytes));
    let message = format_error(read_idx_images(&path), &path);
    assert_mentions(&message, &["truncated data", "[3, 28, 28]", "2352 bytes", "found 1567"]);

    let path = dir.write("labels", &idx(0x801, &[10], &[1, 2, 3]));
    assert_mentions(&format_error(read_idx_labels(&path), &path), &["truncated data", "[10]", "found 3"]);
}

#[test]
fn trailing_data_is_an_error() {
    let dir = TempDir::new("trailing");
    let mut bytes = images_idx(2, 3, 3, 0);
    bytes.extend_from_slice(&[0; 5]);
    let path = dir.write("images.gz", &gzip(&bytes));
    assert_mentions(&format_error(read_idx_images(&path), &path), &["5 bytes of trailing data", "[2, 3, 3]"]);

    let path = dir.write("labels", &idx(0x801, &[2], &[1, 2, 3]));
    assert_mentions(&format_error(read_idx_labels(&path), &path), &["1 byte of trailing data", "[2]"]);
}

#[test]
fn wrong_magic_is_an_error() {
    let dir = TempDir::new("magic");
    // A label file where images are expected, and the reverse.
    let labels = dir.write("labels.gz", &gzip(&labels_idx(&[1, 2])));
    let message = format_error(read_idx_images(&labels), &labels);
    assert_mentions(&message, &["wrong magic number 0x00000801", "expected 0x00000803", "label file"]);
    let images = dir.write("images", &images_idx(1, 2, 2, 0));
    let message = format_error(read_idx_labels(&images), &images);
    assert_mentions(&message, &["wrong magic number 0x00000803", "expected 0x00000801", "image file"]);

    // Something that is not IDX at all.
    let text = dir.write("notes.txt", b"hello, this is not an IDX file");
    assert_mentions(&format_error(read_idx_images(&text), &text), &["wrong magic number", "not an IDX file"]);
    assert_mentions(&format_error(read_idx(&text), &text), &["wrong magic number", "two zero bytes"]);

    // IDX of a type other than u8 (0x0d is f32).
    let floats = dir.write("floats", &idx(0x0d01, &[1], &[0, 0, 128, 63]));
    assert_mentions(&format_error(read_idx(&floats), &floats), &["unsupported element type 0x0d"]);
    assert_mentions(&format_error(read_idx_labels(&floats), &floats), &["wrong magic number 0x00000d01"]);
}

#[test]
fn corrupt_gzip_is_an_error() {
    let dir = TempDir::new("gzip");
    let good = gzip(&images_idx(4, 28, 28, 0));

    // Cut off in the middle of the deflate stream.
    let path = dir.write("cut.gz", &good[..good.len() / 2]);
    assert_mentions(&format_error(read_idx_images(&path), &path), &["corrupt gzip data"]);

    // The trailer's CRC no longer matches the data.
    let mut bad_crc = good.clone();
    let crc_at = bad_crc.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    let path = dir.write("crc.gz", &bad_crc);
    assert_mentions(&format_error(read_idx_images(&path), &path), &["corrupt gzip data"]);

    // Garbage in the compressed body.
    let mut scrambled = good.clone();
    for b in &mut scrambled[12..40] {
        *b = !*b;
    }
    let path = dir.write("scrambled.gz", &scrambled);
    assert_mentions(&format_error(read_idx_images(&path), &path), &["corrupt gzip data"]);

    // Bytes after the gzip stream that are not another gzip member.
    let mut trailing = good.clone();
    trailing.extend_from_slice(b"junk at the end");
    let path = dir.write("trailing.gz", &trailing);
    assert_mentions(&format_error(read_idx_images(&path), &path), &["corrupt gzip data"]);

    // Just the gzip magic and nothing else.
    let path = dir.write("magic-only.gz", &[0x1f, 0x8b]);
    assert_mentions(&format_error(read_idx_labels(&path), &path), &["corrupt gzip data"]);
}

#[test]
fn image_and_label_counts_must_match() {
    let dir = TempDir::new("count-mismatch");
    write_small_mnist(&dir);
    let labels = dir.write("train-labels-idx1-ubyte.gz", &gzip(&labels_idx(&[0, 1, 2, 3])));
    let images = dir.root().join("train-images-idx3-ubyte.gz");
    let message = format_error(Mnist::load(dir.root()), &images);
    assert_mentions(&message, &[&labels.display().to_string(), "5 images", "4 labels"]);
}

#[test]
fn labels_must_be_classes_0_to_9() {
    let dir = TempDir::new("bad-label");
    write_small_mnist(&dir);
    let labels = dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&labels_idx(&[7, 8, 10])));
    let message = format_error(Mnist::load(dir.root()), &labels);
    assert_mentions(&message, &["label 10 at index 2", "0..9"]);
}

#[test]
fn train_and_test_images_must_have_one_size() {
    let dir = TempDir::new("sizes");
    write_small_mnist(&dir);
    let test_images = dir.write("t10k-images-idx3-ubyte.gz", &gzip(&images_idx(3, 3, 4, 0)));
    let message = format_error(Mnist::load(dir.root()), &test_images);
    assert_mentions(&message, &["3x4", "4x3", "train-images-idx3-ubyte.gz"]);
}

#[test]
fn an_empty_split_is_an_error_naming_the_file() {
    // A valid IDX pair holding no images would train on nothing and print a NaN loss.
    let dir = TempDir::new("empty-train");
    write_small_mnist(&dir);
    let images = dir.write("train-images-idx3-ubyte.gz", &gzip(&images_idx(0, 4, 3, 0)));
    dir.write("train-labels-idx1-ubyte.gz", &gzip(&labels_idx(&[])));
    let message = format_error(Mnist::load(dir.root()), &images);
    assert_mentions(&message, &["no images"]);

    let dir = TempDir::new("empty-test");
    write_small_mnist(&dir);
    let images = dir.write("t10k-images-idx3-ubyte.gz", &gzip(&images_idx(0, 4, 3, 0)));
    dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&labels_idx(&[])));
    let message = format_error(Mnist::load(dir.root()), &images);
    assert_mentions(&message, &["no images"]);

    // Images of no pixels are as empty.
    let dir = TempDir::new("empty-images");
    write_small_mnist(&dir);
    let images = dir.write("train-images-idx3-ubyte.gz", &gzip(&images_idx(5, 0, 3, 0)));
    let message = format_error(Mnist::load(dir.root()), &images);
    assert_mentions(&message, &["0x3"]);
}

// ---- InMemoryDataset and the Dataset trait ----

/// `n` samples of shape [2]; sample i holds [i, -i] and label i.
fn numbered(n: usize) -> InMemoryDataset {
    let features = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    InMemoryDataset::new(features, &[2], (0..n as i32).collect())
}

#[test]
fn in_memory_dataset_hands_out_samples() {
    let data = numbered(4);
    assert_eq!((data.len(), data.is_empty(), data.sample_numel()), (4, false, 2));
    assert_eq!(data.sample(3), (&[3.0f32, -3.0][..], 3));
    assert_eq!(data.get(2), (vec![2.0, -2.0], 2));
    let mut buffer = vec![9.0];
    assert_eq!(data.append_sample(1, &mut buffer), 1);
    assert_eq!(buffer, [9.0, 1.0, -1.0]);
    let (features, shape, labels) = data.into_parts();
    assert_eq!((features.len(), shape, labels), (8, vec![2], vec![0, 1, 2, 3]));
}

#[test]
#[should_panic(expected = "3 labels of samples shaped [2, 2] need 12 feature values, got 11")]
fn in_memory_dataset_rejects_mismatched_lengths() {
    InMemoryDataset::new(vec![0.0; 11], &[2, 2], vec![0, 1, 2]);
}

#[test]
#[should_panic(expected = "index 4 is out of range for 4 samples")]
fn in_memory_dataset_rejects_an_index_out_of_range() {
    numbered(4).sample(4);
}

// ---- DataLoader ----

/// The sample indices of every batch of one epoch, read back from the batch tensors, after
/// checking that features and labels agree.
fn epoch_indices(batches: impl Iterator<Item = (wgrad::Tensor, wgrad::Tensor)>) -> Vec<Vec<i32>> {
    batches
        .map(|(x, y)| {
            let labels = y.to_vec::<i32>();
            let features = x.to_vec::<f32>();
            for (k, &label) in labels.iter().enumerate() {
                assert_eq!(&features[2 * k..2 * k + 2], &[label as f32, -(label as f32)], "sample {label}");
            }
            labels
        })
        .collect()
}

#[test]
fn every_sample_appears_once_per_epoch() {
    let data = numbered(23);
    let cpu = Device::cpu();
    let mut loader = DataLoader::new(&data, 5).shuffle(7);
    for epoch in 0..4 {
        let batches = epoch_indices(loader.epoch(&cpu));
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [5, 5, 5, 5, 3], "epoch {epoch}");
        let mut seen: Vec<i32> = batches.concat();
        seen.sort_unstable();
        assert_eq!(seen, (0..23).collect::<Vec<_>>(), "epoch {epoch}");
    }
}

#[test]
fn without_shuffle_the_order_is_the_data_set_order() {
    let data = numbered(7);
    let loader = DataLoader::new(&data, 3);
    assert_eq!(loader.order(0), (0..7).collect::<Vec<_>>());
    assert_eq!(loader.order(5), (0..7).collect::<Vec<_>>());
    assert_eq!(epoch_indices(loader.batches(3, &Device::cpu())), [vec![0, 1, 2], vec![3, 4, 5], vec![6]]);
}

#[test]
fn shuffle_is_deterministic_per_seed_and_epoch() {
    let data = numbered(50);
    let a = DataLoader::new(&data, 8).shuffle(42);
    let b = DataLoader::new(&data, 8).shuffle(42);
    let other_seed = DataLoader::new(&data, 8).shuffle(43);
    let identity: Vec<usize> = (0..50).collect();
    let mut orders = HashSet::new();
    for epoch in 0..10 {
        let order = a.order(epoch);
        assert_eq!(order, b.order(epoch), "same seed, epoch {epoch}");
        assert_ne!(order, other_seed.order(epoch), "seeds 42 and 43, epoch {epoch}");
        assert_ne!(order, identity, "epoch {epoch} left the data unshuffled");
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, identity, "epoch {epoch} is not a permutation");
        orders.insert(order);
    }
    assert_eq!(orders.len(), 10, "two epochs shared a permutation");
}

#[test]
fn epoch_advances_and_set_epoch_resumes() {
    let data = numbered(30);
    let cpu = Device::cpu();
    let reference = DataLoader::new(&data, 4).shuffle(9);
    let mut loader = DataLoader::new(&data, 4).shuffle(9);
    assert_eq!(loader.next_epoch(), 0);
    for epoch in 0..3 {
        let served = epoch_indices(loader.epoch(&cpu));
        assert_eq!(served, epoch_indices(reference.batches(epoch, &cpu)), "epoch {epoch}");
    }
    assert_eq!(loader.next_epoch(), 3);
    loader.set_epoch(1);
    assert_eq!(epoch_indices(loader.epoch(&cpu)), epoch_indices(reference.batches(1, &cpu)));
    assert_eq!(loader.next_epoch(), 2);
}

#[test]
fn fisher_yates_makes_every_permutation_equally_likely() {
    // 6,000 epochs over three samples: each of the 6 orders expects 1,000 (sd about 29).
    let data = numbered(3);
    let loader = DataLoader::new(&data, 3).shuffle(2024);
    let mut counts: HashMap<Vec<usize>, usize> = HashMap::new();
    for epoch in 0..6000 {
        *counts.entry(loader.order(epoch)).or_default() += 1;
    }
    assert_eq!(counts.len(), 6, "{counts:?}");
    for (order, n) in &counts {
        assert!((880..=1120).contains(n), "order {order:?} came {n} times in 6000");
    }
    // Each sample lands in each position about a third of the time.
    for position in 0..3 {
        for sample in 0..3 {
            let n: usize = counts.iter().filter(|(o, _)| o[position] == sample).map(|(_, n)| n).sum();
            assert!((1850..=2150).contains(&n), "sample {sample} at {position}: {n} of 6000");
        }
    }
}

#[test]
fn drop_last_and_the_last_partial_batch() {
    let data = numbered(10);
    let cpu = Device::cpu();

    let keep = DataLoader::new(&data, 4);
    assert_eq!(keep.num_batches(), 3);
    let batches = epoch_indices(keep.batches(0, &cpu));
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);

    let drop = DataLoader::new(&data, 4).drop_last(true).shuffle(1);
    assert_eq!(drop.num_batches(), 2);
    let batches = epoch_indices(drop.batches(0, &cpu));
    assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);
    // The samples left out are the last two of that epoch's order.
    let order = drop.order(0);
    let served: Vec<usize> = batches.concat().iter().map(|&i| i as usize).collect();
    assert_eq!(served, order[..8]);

    // Exact multiples lose nothing; a batch larger than the data set yields one partial
    // batch, or none with drop_last.
    assert_eq!(DataLoader::new(&data, 5).drop_last(true).num_batches(), 2);
    assert_eq!(DataLoader::new(&data, 5).num_batches(), 2);
    assert_eq!(epoch_indices(DataLoader::new(&data, 64).batches(0, &cpu)), [(0..10).collect::<Vec<i32>>()]);
    let none = DataLoader::new(&data, 64).drop_last(true);
    assert_eq!((none.num_batches(), none.batches(0, &cpu).count()), (0, 0));

    let empty = InMemoryDataset::new(vec![], &[2], vec![]);
    let loader = DataLoader::new(&empty, 3).shuffle(5);
    assert_eq!((loader.num_batches(), loader.batches(0, &cpu).count()), (0, 0));
}

#[test]
fn batches_report_their_count_as_they_go() {
    let data = numbered(10);
    let loader = DataLoader::new(&data, 3);
    let mut batches = loader.batches(0, &Device::cpu());
    assert_eq!(batches.len(), 4);
    batches.next();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches.count(), 3);
}

#[test]
fn batches_are_tensors_on_the_requested_device() {
    let mnist = Mnist::builtin().unwrap();
    let cpu = Device::cpu();
    let mut loader = DataLoader::new(&mnist.test, 300);
    assert_eq!(loader.num_batches(), 7);
    let mut start = 0;
    for (images, labels) in loader.epoch(&cpu) {
        let b = labels.numel();
        assert_eq!(images.shape(), &[b, 1, 28, 28]);
        assert_eq!(labels.shape(), &[b]);
        assert_eq!((images.dtype(), labels.dtype()), (DType::F32, DType::I32));
        assert_eq!((images.device(), labels.device()), (&cpu, &cpu));
        assert_eq!(labels.to_vec::<i32>(), mnist.test.labels()[start..start + b]);
        assert_eq!(images.to_vec::<f32>(), mnist.test.features()[start * 784..(start + b) * 784]);
        start += b;
    }
    assert_eq!(start, 2000);
}

/// A data set that computes its samples instead of storing them.
struct Squares;

impl Dataset for Squares {
    fn len(&self) -> usize {
        6
    }
    fn sample_shape(&self) -> &[usize] {
        &[1, 3]
    }
    fn append_sample(&self, index: usize, out: &mut Vec<f32>) -> i32 {
        let x = index as f32;
        out.extend_from_slice(&[x, x * x, x * x * x]);
        (index % 2) as i32
    }
}

#[test]
fn a_computed_data_set_loads_like_a_stored_one() {
    let mut loader = DataLoader::new(Squares, 4);
    assert_eq!(Squares.get(3), (vec![3.0, 9.0, 27.0], 1));
    let batches: Vec<_> = loader.epoch(&Device::cpu()).collect();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].0.shape(), &[2, 1, 3]);
    assert_eq!(batches[1].0.to_vec::<f32>(), [4.0, 16.0, 64.0, 5.0, 25.0, 125.0]);
    assert_eq!(batches[1].1.to_vec::<i32>(), [0, 1]);
}

/// A data set whose samples are shorter than its shape says.
struct Liar;

impl Dataset for Liar {
    fn len(&self) -> usize {
        2
    }
    fn sample_shape(&self) -> &[usize] {
        &[3]
    }
    fn append_sample(&self, _: usize, out: &mut Vec<f32>) -> i32 {
        out.push(1.0);
        0
    }
}

#[test]
#[should_panic(expected = "should hold 6 feature values, the data set appended 2")]
fn a_data_set_that_appends_the_wrong_amount_is_caught() {
    DataLoader::new(Liar, 2).epoch(&Device::cpu()).next();
}

#[test]
#[should_panic(expected = "batch_size must be at least 1")]
fn batch_size_zero_is_rejected() {
    DataLoader::new(numbered(3), 0);
}
