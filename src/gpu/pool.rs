//! Reuse of device buffers by size class.
//!
//! Requests are rounded up to a size class (four classes per power of two, so at most 25%
//! is wasted) and served from the free list of that class when it has a buffer. Dropping a
//! [`GpuBuffer`] returns its buffer to the free list at once: later work that reuses it is
//! recorded after all earlier work that read it, and the GPU runs recorded work in order,
//! so the reuse is safe without waiting.

use std::collections::HashMap;
use std::sync::Arc;

use super::context::{lock, GpuContext, POISON_BITS};
use crate::error::{Error, Result};

/// Extra bytes kept after every buffer while poisoning is on, filled with the poison
/// pattern; a kernel that writes past its output's end changes them, and the tests look.
pub const GUARD_BYTES: u64 = 256;

/// Free buffers keyed by size class, plus counters the tests and the profiler read.
#[derive(Default)]
pub struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    /// Buffers created since the device was opened.
    pub created: u64,
    /// Bytes held by live and free buffers together.
    pub bytes_allocated: u64,
    /// Requests served from the free lists.
    pub reused: u64,
}

/// The size class a request of `bytes` falls into.
pub fn size_class(bytes: u64) -> u64 {
    let bytes = bytes.max(16);
    let top = 63 - bytes.leading_zeros() as u64; // floor(log2)
    let step = if top >= 2 { 1u64 << (top - 2) } else { 4 };
    bytes.div_ceil(step) * step
}

/// Statistics of a device's buffer pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub buffers_created: u64,
    pub bytes_allocated: u64,
    pub buffers_reused: u64,
    pub buffers_free: u64,
}

impl BufferPool {
    /// Releases every free buffer to the device (after an out-of-memory error: cached
    /// buffers of other sizes are memory the failed request could use).
    fn release_free(&mut self) {
        for (class, buffers) in self.free.drain() {
            self.bytes_allocated -= class * buffers.len() as u64;
        }
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            buffers_created: self.created,
            bytes_allocated: self.bytes_allocated,
            buffers_reused: self.reused,
            buffers_free: self.free.values().map(|v| v.len() as u64).sum(),
        }
    }
}

/// A pooled storage buffer owned by one tensor's storage.
pub struct GpuBuffer {
    buffer: Option<wgpu::Buffer>,
    class: u64,
    /// Bytes the tensor uses (the buffer itself may be larger).
    pub len_bytes: u64,
    pub ctx: Arc<GpuContext>,
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({} bytes)", self.len_bytes)
    }
}

impl GpuBuffer {
    /// A buffer of at least `len_bytes` bytes with unspecified contents (poisoned when
    /// poisoning is on). Panics with [`GpuBuffer::try_new`]'s error.
    pub fn new(ctx: &Arc<GpuContext>, len_bytes: u64) -> GpuBuffer {
        GpuBuffer::try_new(ctx, len_bytes, "tensor").unwrap_or_else(|e| panic!("{e}"))
    }

    /// A buffer of at least `len_bytes` bytes for `op`: [`Error::TooLarge`] when the size
    /// is over the adapter's binding limit, [`Error::OutOfMemory`] when the device has no
    /// room even after the pool has released its free buffers.
    pub fn try_new(ctx: &Arc<GpuContext>, len_bytes: u64, op: &str) -> Result<GpuBuffer> {
        ctx.check_size(len_bytes)?;
        let poison = ctx.poison_enabled();
        let class = size_class(len_bytes + if poison { GUARD_BYTES } else { 0 });
        let reused = {
            let mut pool = lock(&ctx.pool);
            let b = pool.free.get_mut(&class).and_then(|v| v.pop());
            if b.is_some() {
                pool.reused += 1;
            }
            b
        };
        let buffer = match reused {
            Some(b) => b,
            None => {
                log::trace!("new device buffer of {class} bytes");
                let desc = wgpu::BufferDescriptor {
                    label: Some("wgrad tensor"),
                    size: class,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                };
                let buffer = match ctx.try_create_buffer(&desc, op) {
                    Err(Error::OutOfMemory { .. }) => {
                        // The free lists may hold the memory this request needs.
                        lock(&ctx.pool).release_free();
                        // Cached bind groups hold buffers too, free ones among them.
                        ctx.clear_bind_groups();
                        ctx.try_create_buffer(&desc, op)?
                    }
                    other => other?,
                };
                let mut pool = lock(&ctx.pool);
                pool.created += 1;
                pool.bytes_allocated += class;
                buffer
            }
        };
        let out = GpuBuffer { buffer: Some(buffer), class, len_bytes, ctx: ctx.clone() };
        if poison {
            super::launch::fill_bits(ctx, out.buffer(), POISON_BITS, class / 4);
        }
        Ok(out)
    }

    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer taken")
    }

    /// Size of the underlying buffer, guard region included.
    pub fn capacity_bytes(&self) -> u64 {
        self.class
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            lock(&self.ctx.pool).free.entry(self.class).or_default().push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_waste_at_most_a_quarter() {
        for bytes in [1u64, 4, 16, 17, 100, 1000, 4097, 1 << 20, (1 << 20) + 1, 123_456_789] {
            let c = size_class(bytes);
            assert!(c >= bytes);
            assert!(c <= 16 || (c - bytes) * 4 <= c, "{bytes} -> {c}");
        }
        assert_eq!(size_class(1000), size_class(1001));
    }
}
