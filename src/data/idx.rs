//! The IDX file format of MNIST and its relatives (Fashion-MNIST, EMNIST, KMNIST).
//!
//! An IDX file is a 4-byte magic number `00 00 TT NN` (TT the element type, NN the number
//! of dimensions), then NN big-endian `u32` sizes, then the elements in row-major order.
//! MNIST images are `0x00000803` (u8, 3 dims: count, rows, cols) and labels `0x00000801`
//! (u8, 1 dim: count).
//!
//! Files are read whole and checked whole: the header must be complete, the magic the one
//! asked for, and the data exactly as long as the dims say. A file that is gzip-compressed
//! is recognised by its first two bytes (`1f 8b`), not by its name, so a `.gz` that was
//! decompressed without renaming (or the reverse) still reads. Every failure is an
//! [`Error`] that names the file and what is wrong with it; nothing is padded or cut to fit.

use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use crate::error::{Error, Result};

/// The element type code of unsigned bytes, the only one MNIST-style files use.
const TYPE_U8: u8 = 0x08;

/// The magic number of an IDX file of u8 images: count, rows, cols.
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of u8 labels: count.
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The first two bytes of every gzip stream.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// A u8 IDX array of any rank, as read from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The sizes from the header, outermost first.
    pub dims: Vec<usize>,
    /// The elements in row-major order; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// A stack of u8 images read from an IDX file with magic `0x00000803`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `count * rows * cols` pixels, image after image, each row-major (0 is background
    /// for MNIST, 255 full ink).
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The `rows * cols` pixels of image `index`. Panics when `index >= count`.
    pub fn image(&self, index: usize) -> &[u8] {
        assert!(index < self.count, "IdxImages::image: index {index} is out of range for {} images", self.count);
        let size = self.rows * self.cols;
        &self.pixels[index * size..(index + 1) * size]
    }
}

/// Reads an IDX file of u8 images (magic `0x00000803`), gzip-compressed or raw.
///
/// ```no_run
/// let images = wgrad::data::read_idx_images("data/mnist-10k/t10k-images-idx3-ubyte.gz")?;
/// assert_eq!((images.rows, images.cols), (28, 28));
/// # Ok::<(), wgrad::Error>(())
/// ```
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    let array = read_idx_with_magic(path, IMAGES_MAGIC, "u8 images: count, rows, cols")?;
    let [count, rows, cols] = array.dims[..] else { unreachable!("the magic fixes three dims") };
    Ok(IdxImages { count, rows, cols, pixels: array.data })
}

/// Reads an IDX file of u8 labels (magic `0x00000801`), gzip-compressed or raw.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    Ok(read_idx_with_magic(path, LABELS_MAGIC, "u8 labels: count")?.data)
}

/// Reads a u8 IDX file of any rank, gzip-compressed or raw. Element types other than u8
/// (the IDX format also defines i8, i16, i32, f32 and f64) are a [`Error::Format`].
pub fn read_idx(path: impl AsRef<Path>) -> Result<IdxArray> {
    let path = path.as_ref();
    parse_idx(read_maybe_gzip(path)?, None).map_err(|reason| format_error(path, reason))
}

fn read_idx_with_magic(path: &Path, magic: u32, what: &str) -> Result<IdxArray> {
    parse_idx(read_maybe_gzip(path)?, Some((magic, what))).map_err(|reason| format_error(path, reason))
}

fn format_error(path: &Path, reason: String) -> Error {
    Error::Format { path: path.display().to_string(), reason }
}

/// The file's bytes, decompressed when they start with the gzip magic.
fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    if !raw.starts_with(&GZIP_MAGIC) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(gzip_size_hint(&raw));
    // MultiGzDecoder also reads files made of several concatenated gzip members (as
    // `cat a.gz b.gz` makes), and rejects bytes after the last member that are not one.
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| format_error(path, format!("corrupt gzip data: {e}")))?;
    Ok(out)
}

/// The uncompressed size a gzip stream's trailer states (ISIZE, the size modulo 2^32),
/// capped by deflate's largest possible ratio so that a corrupt trailer cannot make us
/// reserve gigabytes. Only a capacity hint: the decoder checks the real size itself.
fn gzip_size_hint(gz: &[u8]) -> usize {
    const MAX_DEFLATE_RATIO: usize = 1032;
    let Some(trailer) = gz.len().checked_sub(4).map(|start| &gz[start..]) else { return 0 };
    let stated = u32::from_le_bytes(trailer.try_into().expect("four bytes")) as usize;
    stated.min(gz.len().saturating_mul(MAX_DEFLATE_RATIO))
}

/// Parses decompressed IDX bytes, keeping their buffer for the data; the error is the
/// reason, without the file name. `expected` is the magic the caller needs and a
/// description of it for messages.
fn parse_idx(mut bytes: Vec<u8>, expected: Option<(u32, &str)>) -> std::result::Result<IdxArray, String> {
    let Some(magic_bytes) = bytes.get(..4) else {
        return Err(format!(
            "truncated header: the file holds {}, fewer than the 4 of an IDX magic number",
            count_bytes(bytes.len())
        ));
    };
    let magic = u32::from_be_bytes(magic_bytes.try_into().expect("four bytes"));
    if let Some((want, what)) = expected {
        if magic != want {
            return Err(format!(
                "wrong magic number 0x{magic:08x}, expected 0x{want:08x} ({what}){}",
                magic_hint(magic)
            ));
        }
    } else {
        if magic_bytes[..2] != [0, 0] {
            return Err(format!("wrong magic number 0x{magic:08x}: an IDX file starts with two zero bytes"));
        }
        if magic_bytes[2] != TYPE_U8 {
            return Err(format!(
                "unsupported element type 0x{:02x} (magic 0x{magic:08x}); only u8 (0x08) is read",
                magic_bytes[2]
            ));
        }
    }

    let rank = magic_bytes[3] as usize;
    let header_len = 4 + 4 * rank;
    if bytes.len() < header_len {
        return Err(format!(
            "truncated header: the file holds {}, but the header of a {rank}-dimensional IDX file is {header_len} bytes",
            count_bytes(bytes.len())
        ));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|d| u32::from_be_bytes(d.try_into().expect("four bytes")) as usize)
        .collect();
    let Some(data_len) = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d)) else {
        return Err(format!("dims {dims:?} describe more elements than this machine can address"));
    };

    let found = bytes.len() - header_len;
    if found < data_len {
        return Err(format!(
            "truncated data: dims {dims:?} need {data_len} bytes after the {header_len}-byte header, found {found}"
        ));
    }
    if found > data_len {
        return Err(format!(
            "{} of trailing data after the {data_len} bytes that dims {dims:?} describe",
            count_bytes(found - data_len)
        ));
    }
    bytes.drain(..header_len);
    Ok(IdxArray { dims, data: bytes })
}

/// A hint for the usual mix-ups: labels read as images and the reverse.
fn magic_hint(magic: u32) -> &'static str {
    match magic {
        IMAGES_MAGIC => "; this is an image file",
        LABELS_MAGIC => "; this is a label file",
        _ if magic >> 16 != 0 => "; this is not an IDX file",
        _ => "",
    }
}

/// "1 byte", "2 bytes".
fn count_bytes(n: usize) -> String {
    if n == 1 {
        "1 byte".to_string()
    } else {
        format!("{n} bytes")
    }
}
