//! Bounded, deterministic fuzzing of the file readers: the IDX reader (raw and gzip) and
//! the MNIST loader, the safetensors checkpoint loader and the CSV reader. Each starts
//! from a small valid file made here (the checkpoint by `checkpoint::save` itself),
//! mutates it a few thousand times with fixed seeds and asserts that every read returns
//! `Ok` or `Err`, never panics, and never allocates more than the file could describe:
//! a global allocator in this test binary records the largest single allocation of the
//! reading thread, which must stay within a small multiple of the file's size plus a
//! constant (for gzip, of the most the file could decompress to).
//!
//! The hand-made bad files of the hardening issue are kept below as regression cases,
//! with the errors they must give.

mod common;
use common::{gzip, idx, TempDir};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};

use wgrad::data::text::TextDataset;
use wgrad::data::{read_idx, read_idx_images, read_idx_labels, Mnist};
use wgrad::nn;
use wgrad::{checkpoint, Device, Error};

// ---- the largest allocation ----

/// `System`, recording the largest single allocation (or reallocation) the current thread
/// asks for while its recording is on. Thread-local, so tests running beside each other
/// do not disturb each other's figures.
struct LargestAllocation;

thread_local! {
    /// `None` when not recording; else the largest size seen so far.
    static LARGEST: Cell<Option<usize>> = const { Cell::new(None) };
}

fn record(size: usize) {
    // `try_with`: the slot may be gone while the thread shuts down.
    let _ = LARGEST.try_with(|largest| {
        if let Some(seen) = largest.get() {
            largest.set(Some(seen.max(size)));
        }
    });
}

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Runs `f`, returning its result and the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(Some(0)));
    let out = f();
    let largest = LARGEST.with(|l| l.replace(None)).expect("recording was on");
    (out, largest)
}

/// What a reader may allocate at once besides what the file holds: the csv crate's 8 KiB
/// buffer, the inflater's state (about 43 KiB: its window and tables), small vectors.
const SLACK: usize = 64 << 10;

/// Deflate's largest compression ratio: a gzip file of `n` bytes decompresses to at most
/// about `1032 n` bytes.
const MAX_DEFLATE_RATIO: usize = 1032;

#[test]
fn the_recorder_sees_the_largest_allocation_of_its_own_thread_only() {
    let (v, largest) = largest_allocation(|| vec![1u8; 3 << 20]);
    assert!(largest >= 3 << 20, "recorded {largest}");
    drop(v);
    let (_, largest) = largest_allocation(|| std::thread::spawn(|| vec![1u8; 5 << 20].len()).join().unwrap());
    assert!(largest < 5 << 20, "another thread's allocation was recorded: {largest}");
}

// ---- mutation ----

/// xorshift64*: a few lines for reproducible mutations, no dependency needed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A few random edits of `base`: bytes flipped, set or inserted (often from `specials`,
/// the bytes that matter to the format), ranges deleted or repeated, the file cut short,
/// or a 4- or 8-byte integer (either endianness) overwritten with an edge value. Edits
/// land in the first `header` bytes half of the time, where the sizes live.
fn mutate(base: &[u8], rng: &mut Rng, header: usize, specials: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    let edits = 1 + rng.below(4);
    for _ in 0..edits {
        let len = out.len();
        let at = if rng.below(2) == 0 { rng.below(header.min(len.max(1))) } else { rng.below(len.max(1)) };
        match rng.below(8) {
            0 if len > 0 => out[at.min(len - 1)] ^= 1 << rng.below(8),
            1 if len > 0 => out[at.min(len - 1)] = *rng.pick(&[0x00, 0x01, 0x7f, 0x80, 0xff]),
            2 if len > 0 => out[at.min(len - 1)] = *rng.pick(specials),
            3 => {
                let byte = if rng.below(2) == 0 { *rng.pick(specials) } else { rng.next() as u8 };
                out.insert(at.min(len), byte);
            }
            4 if len > 0 => {
                let end = (at + 1 + rng.below(16)).min(len);
                out.drain(at.min(len - 1)..end);
            }
            5 if len > 0 => {
                let end = (at + 1 + rng.below(64)).min(len);
                let chunk = out[at.min(len - 1)..end].to_vec();
                let place = rng.below(len);
                out.splice(place..place, chunk);
            }
            6 => out.truncate(rng.below(len + 1)),
            _ => {
                let value: u64 = *rng.pick(&[
                    0,
                    1,
                    len as u64,
                    0x7fff_ffff,
                    0x8000_0000,
                    0xffff_ffff,
                    1 << 40,
                    i64::MAX as u64,
                    u64::MAX,
                ]);
                let bytes: Vec<u8> = match rng.below(4) {
                    0 => (value as u32).to_be_bytes().to_vec(),
                    1 => (value as u32).to_le_bytes().to_vec(),
                    2 => value.to_be_bytes().to_vec(),
                    _ => value.to_le_bytes().to_vec(),
                };
                let start = (at / 4 * 4).min(len.saturating_sub(bytes.len()));
                for (i, b) in bytes.into_iter().enumerate() {
                    if let Some(slot) = out.get_mut(start + i) {
                        *slot = b;
                    }
                }
            }
        }
    }
    out
}

// ---- harness ----

/// Mutated inputs per reader and seed: with the fixed seeds below, a few seconds in all.
const CASES: usize = 300;
const SEEDS: [u64; 2] = [0x9e37_79b9_7f4a_7c15, 0xd1b5_4a32_d192_ed03];

/// Reads `bytes` with `read` and checks the two promises: no panic (a panic names the
/// case and keeps the input at `keep` for a look), and no allocation above
/// `factor * bytes.len() + SLACK`. Returns whether the read succeeded.
fn check<T>(
    what: &str,
    case: &str,
    bytes: &[u8],
    factor: usize,
    keep: &Path,
    read: impl FnOnce() -> wgrad::Result<T>,
) -> bool {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| largest_allocation(read)));
    let Ok((result, largest)) = outcome else {
        let _ = std::fs::write(keep, bytes);
        panic!("{what} panicked on {case} ({} bytes, kept at {})", bytes.len(), keep.display());
    };
    let limit = factor * bytes.len() + SLACK;
    if largest > limit {
        let _ = std::fs::write(keep, bytes);
        panic!(
            "{what} allocated {largest} bytes at once on {case}, a {}-byte file (limit {limit}; kept at {})",
            bytes.len(),
            keep.display()
        );
    }
    if let Err(e) = &result {
        // Every failure names its file.
        assert!(matches!(e, Error::Format { .. } | Error::Io { .. }), "{what} on {case}: unexpected {e:?}");
    }
    result.is_ok()
}

/// The place a failing input is kept: beside the other test outputs, not in a temp dir
/// that is removed on the way out.
fn keep_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Fuzzes one reader: `CASES` mutations of `base` per seed, each written to `path` and
/// read with `read`. Returns how many reads succeeded, to show the mutations are not all
/// rejected at the first byte.
fn fuzz(
    what: &str,
    base: &[u8],
    header: usize,
    specials: &[u8],
    factor: usize,
    path: &Path,
    read: impl Fn(&Path) -> wgrad::Result<()>,
) -> usize {
    // The valid file itself reads.
    std::fs::write(path, base).unwrap();
    assert!(
        check(what, "the valid file", base, factor, &keep_path(what), || read(path)),
        "{what}: the valid file fails"
    );
    let mut succeeded = 0;
    for seed in SEEDS {
        let mut rng = Rng(seed);
        for case in 0..CASES {
            let bytes = mutate(base, &mut rng, header, specials);
            std::fs::write(path, &bytes).unwrap();
            let name = format!("seed {seed:#x}, case {case}");
            let keep = keep_path(&format!("{what}-{seed:x}-{case}"));
            succeeded += usize::from(check(what, &name, &bytes, factor, &keep, || read(path)));
        }
    }
    succeeded
}

// ---- valid inputs ----

/// `count` images of 4x3 and their labels, both IDX.
fn idx_pair(count: u32, first: u8) -> (Vec<u8>, Vec<u8>) {
    let pixels: Vec<u8> = (0..count * 12).map(|i| first.wrapping_add((i * 37) as u8)).collect();
    let labels: Vec<u8> = (0..count).map(|i| (i % 10) as u8).collect();
    (idx(0x803, &[count, 4, 3], &pixels), idx(0x801, &[count], &labels))
}

/// What IDX headers are made of.
const IDX_SPECIALS: [u8; 6] = [0x00, 0x01, 0x03, 0x08, 0x1f, 0x8b];

// ---- IDX and MNIST ----

#[test]
fn fuzzed_idx_files_never_panic_or_overallocate() {
    let dir = TempDir::new("idx");
    let (images, labels) = idx_pair(6, 0);
    let path = dir.0.join("file");
    let ok = fuzz("read_idx_images", &images, 16, &IDX_SPECIALS, 2, &path, |p| read_idx_images(p).map(drop));
    assert!(ok > 0, "no mutated image file read");
    fuzz("read_idx_labels", &labels, 8, &IDX_SPECIALS, 2, &path, |p| read_idx_labels(p).map(drop));
    fuzz("read_idx", &images, 16, &IDX_SPECIALS, 2, &path, |p| read_idx(p).map(drop));
    // Mutated gzip streams: the header, the deflate data and the trailer's stated size.
    let gz = gzip(&images);
    fuzz("read_idx_images (gzip)", &gz, 16, &IDX_SPECIALS, MAX_DEFLATE_RATIO, &path, |p| read_idx_images(p).map(drop));
}

#[test]
fn fuzzed_mnist_folders_never_panic_or_overallocate() {
    let dir = TempDir::new("mnist");
    let (train_images, train_labels) = idx_pair(6, 0);
    let (test_images, test_labels) = idx_pair(4, 100);
    dir.write("train-labels-idx1-ubyte", &train_labels);
    dir.write("t10k-images-idx3-ubyte", &test_images);
    dir.write("t10k-labels-idx1-ubyte", &test_labels);
    let path = dir.0.join("train-images-idx3-ubyte");
    // Pixels become f32 features: four bytes for each byte of the file.
    let ok = fuzz("Mnist::load", &train_images, 16, &IDX_SPECIALS, 4, &path, |_| Mnist::load(&dir.0).map(drop));
    assert!(ok > 0, "no mutated folder loaded");
}

// ---- safetensors ----

/// A small model with F32 parameters and an integer buffer (batch norm's counter, I64 in
/// the file), so both decoding paths are fuzzed.
fn small_model(dev: &Device) -> nn::Sequential {
    nn::Sequential::new().add(nn::Linear::with_seed(3, 2, true, 5, dev)).add(nn::BatchNorm1d::new(2, dev))
}

#[test]
fn fuzzed_checkpoints_never_panic_or_overallocate() {
    let dir = TempDir::new("safetensors");
    let dev = Device::cpu();
    let model = small_model(&dev);
    let path = dir.0.join("model.safetensors");
    checkpoint::save(&model, &path).unwrap();
    let base = std::fs::read(&path).unwrap();
    // The header is JSON: its brackets, quotes, digits and separators.
    let specials = *b"{}[]\":,0123456789-eE.F64I32";
    let header = base.len().min(8 + 200);
    // I32 counters widen to i64 before they are checked: twice the file's bytes.
    let ok =
        fuzz("checkpoint::load_state", &base, header, &specials, 2, &path, |p| checkpoint::load_state(p).map(drop));
    assert!(ok > 0, "no mutated checkpoint read");
    let target = small_model(&dev);
    fuzz("checkpoint::load", &base, header, &specials, 2, &path, |p| checkpoint::load(&target, p));
}

// ---- CSV ----

#[test]
fn fuzzed_csv_files_never_panic_or_overallocate() {
    let dir = TempDir::new("csv");
    let base = b"text,label\n\
                 plain text,1\n\
                 \"Good, but long.\",0\n\
                 \"She said \"\"wow\"\", twice\",1\n\
                 \"two\nlines\",0\n\
                 \n\
                 caf\xC3\xA9 au lait , 1 \n";
    let specials = *b"\",\n\r01 \xEF\xBB\xBF\xE9\xC3";
    let path = dir.0.join("data.csv");
    let ok =
        fuzz("TextDataset::read_csv", base, base.len(), &specials, 2, &path, |p| TextDataset::read_csv(p).map(drop));
    assert!(ok > 0, "no mutated CSV read");
}

// ---- the hand-made bad files ----

/// Reads `bytes` written to `name` with `read` and checks that it fails within the
/// allocation bound with a format error naming the file and saying each of `needles`.
fn expect_error<T: std::fmt::Debug>(
    dir: &TempDir,
    name: &str,
    bytes: &[u8],
    read: impl FnOnce(&Path) -> wgrad::Result<T>,
    needles: &[&str],
) {
    let path = dir.write(name, bytes);
    let (result, largest) = largest_allocation(|| read(&path));
    assert!(largest <= 4 * bytes.len() + SLACK, "{name}: allocated {largest} bytes at once");
    let err = result.expect_err(name);
    let message = err.to_string();
    assert!(matches!(err, Error::Format { .. }), "{name}: {message}");
    assert!(message.contains(&path.display().to_string()), "{name}: the message does not name the file: {message}");
    for needle in needles {
        assert!(message.contains(needle), "{name}: the message lacks {needle:?}: {message}");
    }
}

#[test]
fn idx_headers_that_claim_more_than_the_file_holds_fail_before_allocating() {
    let dir = TempDir::new("idx-regressions");
    // 2^31 images of 28x28 with a 100-byte body.
    let huge = idx(0x803, &[1 << 31, 28, 28], &[7; 100]);
    expect_error(&dir, "huge-count", &huge, |p| read_idx_images(p), &["truncated data", "found 100"]);
    // Every dim at its largest: the product does not fit in a usize on 32-bit machines and
    // is far beyond the file on any.
    let widest = idx(0x803, &[u32::MAX, u32::MAX, u32::MAX], &[1; 100]);
    expect_error(&dir, "widest", &widest, |p| read_idx_images(p), &["dims"]);
    // The same, gzip-compressed, with a trailer that states 4 GiB.
    let mut gz = gzip(&huge);
    let n = gz.len();
    gz[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    expect_error(&dir, "huge-count.gz", &gz, |p| read_idx_images(p), &["corrupt gzip data"]);
    // A rank of 255 with no dims after it.
    expect_error(&dir, "rank-255", &[0, 0, 8, 255, 0, 0, 0, 1], |p| read_idx(p), &["truncated header"]);
}

#[test]
fn an_empty_training_split_is_refused_naming_its_file() {
    let dir = TempDir::new("empty-split");
    let (images, labels) = idx_pair(0, 0);
    let (test_images, test_labels) = idx_pair(3, 0);
    dir.write("train-labels-idx1-ubyte", &labels);
    dir.write("t10k-images-idx3-ubyte", &test_images);
    dir.write("t10k-labels-idx1-ubyte", &test_labels);
    let folder = dir.0.clone();
    expect_error(&dir, "train-images-idx3-ubyte", &images, |_| Mnist::load(&folder), &["no images"]);
}

#[test]
fn corrupt_safetensors_headers_fail_before_allocating() {
    let dir = TempDir::new("safetensors-regressions");
    let with_header = |json: &str, data: &[u8]| {
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(json.as_bytes());
        out.extend_from_slice(data);
        out
    };
    // A header length of 2^63 in a 16-byte file.
    let mut huge = (1u64 << 63).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}      ");
    expect_error(&dir, "huge-header", &huge, |p| checkpoint::load_state(p), &["not a valid safetensors file"]);
    // A tensor whose shape multiplies past usize.
    let overflow = with_header(
        r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}}"#,
        &[0; 4],
    );
    expect_error(&dir, "shape-overflow", &overflow, |p| checkpoint::load_state(p), &["not a valid safetensors file"]);
    // Offsets that reach past the end of the file.
    let past = with_header(r#"{"w":{"dtype":"F32","shape":[1073741824],"data_offsets":[0,4294967296]}}"#, &[0; 4]);
    expect_error(&dir, "offsets-past-the-end", &past, |p| checkpoint::load_state(p), &["not a valid safetensors file"]);
}

#[test]
fn the_bad_csv_files_of_the_issue_give_their_errors() {
    let dir = TempDir::new("csv-regressions");
    expect_error(
        &dir,
        "unterminated.csv",
        b"text,label\nfine,1\n\"never closed,0\nmore,1\n",
        |p| TextDataset::read_csv(p),
        &["line 3: a quote opened here is not closed"],
    );
    expect_error(
        &dir,
        "latin1.csv",
        b"text,label\nfine,1\ncaf\xE9,0\n",
        |p| TextDataset::read_csv(p),
        &["line 3: field 1 is not valid UTF-8"],
    );
}
