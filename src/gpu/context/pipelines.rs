//! Pipelines and bind groups: one explicit bind group layout per WGSL file (the params
//! uniform, bound with a dynamic offset into the one params buffer, then the storage
//! bindings of the file's signature), one compute pipeline per entry point, each compiled
//! on first use and cached for the device's life, and a cache of bind groups keyed by the
//! buffers they bind.
//!
//! A dispatch finds its pipeline by the addresses of its kernel's names rather than by
//! hashing their text, and reuses the bind group of an earlier dispatch over the same
//! buffers: creating a bind group is wgpu's validation of every binding, the largest
//! share of a dispatch's host cost, and a training step binds the same parameters,
//! gradients and pooled activations step after step.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use super::{lock, GpuContext, PARAMS_SLOT};
use crate::gpu::shaders::{self, Access};
use crate::op::KernelRef;

/// A compiled kernel with what a dispatch of it needs.
pub(super) struct Kernel {
    pub(super) pipeline: wgpu::ComputePipeline,
    pub(super) layout: wgpu::BindGroupLayout,
    /// The number of storage bindings of its file.
    pub(super) storage: usize,
}

/// A kernel's key in the fast cache: the address and length of its file and entry names.
/// Names are `&'static str` constants, so each kernel has one address in practice; the
/// same text at another address only misses this cache once and is then found by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct KernelKey([usize; 4]);

impl KernelKey {
    fn of(kernel: KernelRef) -> KernelKey {
        KernelKey([
            kernel.file.as_ptr() as usize,
            kernel.file.len(),
            kernel.entry.as_ptr() as usize,
            kernel.entry.len(),
        ])
    }
}

/// Compiled kernels, found by address ([`KernelKey`]) and, on a miss there, by name.
#[derive(Default)]
pub(super) struct Kernels {
    by_address: HashMap<KernelKey, Arc<Kernel>>,
    by_name: HashMap<KernelRef, Arc<Kernel>>,
}

/// Bind groups made so far, by a hash of their layout and buffers; each entry keeps its
/// buffers to compare on a hit (and alive, as the bind group does anyway).
#[derive(Default)]
pub(super) struct BindGroups {
    map: HashMap<u64, Vec<BindGroupEntry>>,
    len: usize,
    hasher: std::collections::hash_map::RandomState,
}

struct BindGroupEntry {
    layout: wgpu::BindGroupLayout,
    buffers: Box<[wgpu::Buffer]>,
    bind_group: wgpu::BindGroup,
}

/// Cached bind groups kept at most; past it the cache starts afresh. Each keeps its
/// buffers alive, so the bound is on memory the buffer pool could not otherwise release.
const MAX_BIND_GROUPS: usize = 4096;

impl BindGroups {
    /// Forgets every bind group (and so its hold on its buffers).
    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.len = 0;
    }
}

impl GpuContext {
    pub(super) fn bind_group_layout(&self, file: &'static str) -> wgpu::BindGroupLayout {
        let mut layouts = lock(&self.layouts);
        layouts
            .entry(file)
            .or_insert_with(|| {
                let spec = shaders::file(file);
                let mut entries = vec![wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        // The dispatch's slot of the params buffer.
                        has_dynamic_offset: true,
                        min_binding_size: wgpu::BufferSize::new(PARAMS_SLOT as u64),
                    },
                    count: None,
                }];
                for (i, access) in spec.storage.iter().enumerate() {
                    entries.push(wgpu::BindGroupLayoutEntry {
                        binding: i as u32 + 1,
                        visibility: wgpu::ShaderStages::COMPUTE,
                        ty: wgpu::BindingType::Buffer {
                            ty: wgpu::BufferBindingType::Storage { read_only: *access == Access::Read },
                            has_dynamic_offset: false,
                            min_binding_size: None,
                        },
                        count: None,
                    });
                }
                self.device
                    .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(file), entries: &entries })
            })
            .clone()
    }

    /// The compiled kernel, compiling it on first use.
    pub(super) fn kernel(&self, kernel: KernelRef) -> Arc<Kernel> {
        let key = KernelKey::of(kernel);
        let mut kernels = lock(&self.kernels);
        if let Some(k) = kernels.by_address.get(&key) {
            return k.clone();
        }
        let compiled = match kernels.by_name.get(&kernel) {
            Some(k) => k.clone(),
            None => {
                let k = Arc::new(self.compile(kernel));
                kernels.by_name.insert(kernel, k.clone());
                k
            }
        };
        kernels.by_address.insert(key, compiled.clone());
        compiled
    }

    fn compile(&self, kernel: KernelRef) -> Kernel {
        let spec = shaders::file(kernel.file);
        assert!(
            self.features.contains(spec.features),
            "{}.wgsl needs {:?}, which {} was not opened with (a launcher chose a kernel the device cannot run)",
            kernel.file,
            spec.features - self.features,
            self.adapter.line()
        );
        let source = shaders::full_source(spec);
        if std::env::var_os("WGRAD_LOG_WGSL").is_some() {
            log::debug!("WGSL of {}.wgsl:\n{source}", kernel.file);
        }
        log::debug!("creating pipeline {}::{}", kernel.file, kernel.entry);
        let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(kernel.file),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let layout = self.bind_group_layout(kernel.file);
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        Kernel { pipeline, layout, storage: spec.storage.len() }
    }

    /// The bind group of `layout` over the params buffer (at a dynamic offset) and
    /// `buffers`, made once and then reused for every dispatch over the same buffers.
    pub(super) fn bind_group(
        &self,
        file: &'static str,
        layout: &wgpu::BindGroupLayout,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let mut cache = lock(&self.bind_groups);
        let mut hasher = cache.hasher.build_hasher();
        layout.hash(&mut hasher);
        for b in buffers {
            b.hash(&mut hasher);
        }
        let hash = hasher.finish();
        if let Some(entries) = cache.map.get(&hash) {
            let hit = entries.iter().find(|e| {
                e.layout == *layout
                    && e.buffers.len() == buffers.len()
                    && e.buffers.iter().zip(buffers).all(|(a, b)| a == *b)
            });
            if let Some(e) = hit {
                return e.bind_group.clone();
            }
        }
        let mut entries = Vec::with_capacity(buffers.len() + 1);
        entries.push(wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.params_buffer,
                offset: 0,
                size: wgpu::BufferSize::new(PARAMS_SLOT as u64),
            }),
        });
        for (i, b) in buffers.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource: b.as_entire_binding() });
        }
        let bind_group =
            self.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(file), layout, entries: &entries });
        if cache.len >= MAX_BIND_GROUPS {
            cache.clear();
        }
        cache.len += 1;
        cache.map.entry(hash).or_default().push(BindGroupEntry {
            layout: layout.clone(),
            buffers: buffers.iter().map(|b| (*b).clone()).collect(),
            bind_group: bind_group.clone(),
        });
        bind_group
    }

    /// Forgets the cached bind groups, letting go of the buffers they hold.
    pub(crate) fn clear_bind_groups(&self) {
        lock(&self.bind_groups).clear();
    }
}
