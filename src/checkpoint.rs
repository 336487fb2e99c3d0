//! Checkpoints: a module's named parameters as a [safetensors] file, laid out exactly as
//! PyTorch's `safetensors.torch.save_file(model.state_dict(), path)` writes them: one F32
//! tensor per parameter, named as `named_parameters` names it (`0.weight`, `2.bias`), its
//! shape row-major (`[out, in]` for a Linear weight), no `__metadata__`. A file written
//! here loads into the same PyTorch model with `model.load_state_dict(load_file(path))`,
//! and the other way round.
//!
//! Two guarantees shape the code:
//!
//! - [`save`] never leaves a half-written file at `path`: it writes a temporary file in
//!   the same directory, flushes it to disk and renames it over `path`, so a crash leaves
//!   either the old checkpoint or the new one.
//! - [`load`] checks every tensor of the file against every parameter (names, dtype,
//!   shapes) before it writes any, so a file that does not fit the model changes nothing.
//!   It then overwrites the parameters' storage in place, so an optimizer built from
//!   `module.parameters()` keeps updating the loaded values.
//!
//! Wrong or unreadable files are `Err`s: a missing file is [`Error::Io`]; a truncated or
//! corrupt file, or one whose tensors do not match the model, is [`Error::Format`] with a
//! reason that names each offending tensor and its shapes.
//!
//! ```
//! use wgrad::nn::{self, Module};
//! use wgrad::{checkpoint, Device};
//! let dev = Device::cpu();
//! let model = nn::Sequential::new().add(nn::Linear::new(4, 3, &dev));
//! let path = std::env::temp_dir().join(format!("wgrad-doc-{}.safetensors", std::process::id()));
//! checkpoint::save(&model, &path)?;
//! let other = nn::Sequential::new().add(nn::Linear::new(4, 3, &dev));
//! checkpoint::load(&other, &path)?;
//! assert_eq!(other.parameters()[0].to_vec::<f32>(), model.parameters()[0].to_vec::<f32>());
//! let state = checkpoint::load_state(&path)?;
//! assert_eq!(state[0].0, "0.bias"); // sorted by name, as in the file
//! # std::fs::remove_file(&path).unwrap();
//! # Ok::<(), wgrad::Error>(())
//! ```
//!
//! [safetensors]: https://github.com/huggingface/safetensors

use std::borrow::Cow;
use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::{Dtype, SafeTensors, View};

use crate::error::{Error, Result};
use crate::nn::Module;
use crate::DType;

/// One tensor of a checkpoint as [`load_state`] returns it: name, shape, row-major values.
pub type NamedArray = (String, Vec<usize>, Vec<f32>);

/// Writes every named parameter of `module` to `path` as a safetensors file, replacing
/// the file atomically (temporary file in the same directory, fsync, rename).
///
/// GPU parameters are read back first, which waits for the work recorded so far.
pub fn save(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let params = module.named_parameters();
    check_unique_names(params.iter().map(|(n, _)| n.as_str()), "save");
    let arrays: Vec<(String, F32Array)> = params
        .iter()
        .map(|(name, t)| {
            assert_eq!(t.dtype(), DType::F32, "checkpoint::save: parameter '{name}' holds {}, not f32", t.dtype());
            let bytes = t.to_vec::<f32>().iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), F32Array { shape: t.shape().to_vec(), bytes })
        })
        .collect();
    let bytes = safetensors::serialize(arrays, None)
        .map_err(|e| Error::Format { path: display(path), reason: format!("could not serialise the tensors: {e}") })?;
    write_atomically(path, &bytes)
}

/// Reads the safetensors file at `path` and copies each tensor into the parameter of
/// `module` with the same name, in place.
///
/// Every parameter must have a tensor of the same shape and dtype F32 in the file, and
/// every tensor in the file a parameter; all of this is checked before any parameter is
/// written, so on `Err` the module is unchanged. On a GPU device the uploads are recorded
/// in the command batch, ordered after the work recorded before the call.
///
/// Load between steps, not between a forward pass and its backward: the graph keeps the
/// parameters' storage, not a copy, so its backward would see the loaded values.
pub fn load(module: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = parse(path, &bytes)?;
    let params = module.named_parameters();
    check_unique_names(params.iter().map(|(n, _)| n.as_str()), "load");

    let mut problems = Vec::new();
    let mut updates = Vec::with_capacity(params.len());
    for (name, param) in &params {
        // A parameter that cannot be overwritten is a bug in the module, not in the file.
        assert!(
            param.dtype() == DType::F32 && param.is_contiguous(),
            "checkpoint::load: parameter '{name}' of shape {:?} is not a contiguous f32 tensor",
            param.shape()
        );
        let Ok(view) = file.tensor(name) else {
            problems.push(format!("tensor '{name}' (shape {:?} in the model) is missing from the file", param.shape()));
            continue;
        };
        if view.dtype() != Dtype::F32 {
            problems.push(format!(
                "tensor '{name}' is {:?} in the file (shape {:?}) but only F32 can be loaded (shape {:?} in the model)",
                view.dtype(),
                view.shape(),
                param.shape()
            ));
        } else if view.shape() != param.shape() {
            problems.push(format!(
                "tensor '{name}' has shape {:?} in the file but {:?} in the model",
                view.shape(),
                param.shape()
            ));
        } else {
            updates.push((param, decode_f32(view.data())));
        }
    }
    let known: HashSet<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    let mut extra: Vec<(String, Vec<usize>)> = file
        .iter()
        .filter(|(name, _)| !known.contains(name))
        .map(|(name, view)| (name.to_string(), view.shape().to_vec()))
        .collect();
    extra.sort();
    for (name, shape) in extra {
        problems.push(format!("tensor '{name}' (shape {shape:?} in the file) matches no parameter of the model"));
    }
    if !problems.is_empty() {
        return Err(Error::Format { path: display(path), reason: problems.join("; ") });
    }

    for (param, values) in updates {
        param.assign_from_host(&values);
    }
    Ok(())
}

/// Every tensor of the safetensors file at `path`, sorted by name: for inspecting a
/// checkpoint without a model. Tensors other than F32 are an [`Error::Format`].
pub fn load_state(path: impl AsRef<Path>) -> Result<Vec<NamedArray>> {
    let path = path.as_ref();
    let bytes = read(path)?;
    let file = parse(path, &bytes)?;
    let mut out = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::Format {
                path: display(path),
                reason: format!(
                    "tensor '{name}' is {:?} (shape {:?}); only F32 can be loaded",
                    view.dtype(),
                    view.shape()
                ),
            });
        }
        out.push((name.to_string(), view.shape().to_vec(), decode_f32(view.data())));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// One parameter's shape and little-endian bytes, as the safetensors serialiser wants it.
struct F32Array {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for F32Array {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// The safetensors header is a map, so two parameters with one name would silently
/// become one tensor: a bug in the module, reported as such.
fn check_unique_names<'a>(names: impl Iterator<Item = &'a str>, op: &str) {
    let mut seen = HashSet::new();
    for name in names {
        assert!(seen.insert(name), "checkpoint::{op}: the module has two parameters named '{name}'");
    }
}

/// Little-endian f32s from bytes that need not be 4-byte aligned (a tensor's data starts
/// wherever the header ends).
fn decode_f32(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::Io { path: display(path), source })
}

/// Parses the header and checks that the offsets cover the data exactly; a truncated or
/// corrupt file is a `Format` error, never a panic.
fn parse<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Format {
        path: display(path),
        reason: format!("not a valid safetensors file ({} bytes): {e}", bytes.len()),
    })
}

/// Writes `bytes` to a fresh temporary file next to `path`, flushes it to disk and renames
/// it over `path`. The rename is atomic on POSIX file systems (and replaces an existing
/// file on Windows too), so readers see the old file or the new one, never a prefix.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_error = |source| Error::Io { path: display(path), source };
    let Some(file_name) = path.file_name() else {
        return Err(io_error(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = dir.join(temp_name(file_name));
    let written = (|| {
        let mut file = fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_error(e));
    }
    sync_dir(&dir);
    Ok(())
}

/// `.NAME.PID-COUNTER-NANOS.tmp`: hidden, and unique across threads and processes.
fn temp_name(file_name: &std::ffi::OsStr) -> std::ffi::OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut name = std::ffi::OsString::from(".");
    name.push(file_name);
    name.push(format!(".{}-{}-{nanos}.tmp", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
    name
}

/// Flushes the directory entry of the rename, so the new file survives a power cut. Best
/// effort: some file systems refuse to sync a directory, and the data itself is already
/// on disk.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
