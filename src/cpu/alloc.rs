//! How the CPU backend's memory returns to the allocator.
//!
//! A training step allocates and frees the same large activations (megabytes each) over
//! and over. glibc's malloc serves blocks above its mmap threshold with fresh `mmap`s and
//! trims freed memory at the top of its heaps back to the kernel, so each step's
//! activations arrive as new pages: a page fault and a zeroed 4 KiB page per page
//! touched. On the Keras MNIST CNN's training step at batch 64 that was about 40% of
//! the step (30 ms instead of 17.5 ms on two cores).
//!
//! So the first CPU tensor of a process sets glibc's mmap threshold to 32 MiB (the ceiling
//! glibc's own dynamic threshold grows to) and its trim threshold to 1 GiB: freed blocks
//! stay in the process and the next step reuses them, as a GPU framework's caching
//! allocator does. The price is that memory freed by a model is kept for reuse rather
//! than given back to the system. `WGRAD_CPU_MALLOC=system`, set before the first CPU
//! tensor is created, leaves glibc's settings alone; a program that set its own (or uses
//! another global allocator) is not affected by these, which only tune glibc's malloc.

use std::sync::Once;

use crate::error::{Error, Result};

/// Applies the settings above once per process (a no-op off glibc).
pub(crate) fn tune_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("WGRAD_CPU_MALLOC").is_ok_and(|v| v == "system") {
            return;
        }
        tune();
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune() {
    const MMAP_THRESHOLD: i32 = 32 << 20;
    const TRIM_THRESHOLD: i32 = 1 << 30;
    // SAFETY: mallopt only changes malloc's parameters; it is safe to call at any time,
    // from any thread.
    let ok = unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    };
    if !ok {
        log::info!("wgrad: glibc's mallopt refused the CPU backend's malloc thresholds");
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune() {}

/// The error of a host allocation of `n` elements of `elem_bytes` bytes for `op`.
pub(crate) fn out_of_memory(op: &str, n: usize, elem_bytes: usize) -> Error {
    Error::OutOfMemory {
        op: op.to_string(),
        bytes: (n as u64).saturating_mul(elem_bytes as u64),
        device: "the CPU".into(),
    }
}

/// `n` zero elements, or [`Error::OutOfMemory`] naming `op` when the allocator refuses
/// (where `vec![0; n]` would abort the process). Zeroed by the allocator (`calloc`), so
/// fresh pages of a large block are not touched, as with `vec!`.
pub(crate) fn try_zeroed<T: bytemuck::Zeroable>(n: usize, op: &str) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    if n == 0 || size == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| out_of_memory(op, n, size))?;
    // SAFETY: `layout` has a non-zero size (n > 0, size > 0).
    let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if ptr.is_null() {
        return Err(out_of_memory(op, n, size));
    }
    // SAFETY: `ptr` comes from the global allocator with `T`'s alignment and room for
    // exactly `n` elements (`Layout::array`), all zero bytes, which are a valid `T`
    // (`Zeroable`); the vector takes ownership and frees it with the same layout.
    Ok(unsafe { Vec::from_raw_parts(ptr, n, n) })
}

/// A copy of `data`, or [`Error::OutOfMemory`] naming `op` when the allocator refuses.
pub(crate) fn try_copy<T: Copy>(data: &[T], op: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(data.len()).map_err(|_| out_of_memory(op, data.len(), std::mem::size_of::<T>()))?;
    v.extend_from_slice(data);
    Ok(v)
}

/// As [`try_zeroed`] for a kernel's output or scratch space: panics with the
/// [`Error::OutOfMemory`] message naming `op` (a catchable panic, not `vec!`'s abort).
#[track_caller]
pub(crate) fn zeroed<T: bytemuck::Zeroable>(n: usize, op: &str) -> Vec<T> {
    try_zeroed(n, op).unwrap_or_else(|e| panic!("{e}"))
}
