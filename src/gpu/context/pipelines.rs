//! Pipelines: one explicit bind group layout per WGSL file (the params uniform, then the
//! storage bindings of the file's signature) and one compute pipeline per entry point,
//! each compiled on first use and cached for the device's life.

use std::sync::Arc;

use super::{lock, GpuContext};
use crate::gpu::shaders::{self, Access};
use crate::op::KernelRef;

impl GpuContext {
    pub(super) fn bind_group_layout(&self, file: &'static str) -> Arc<wgpu::BindGroupLayout> {
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
                        has_dynamic_offset: false,
                        min_binding_size: None,
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
                Arc::new(self.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                    label: Some(file),
                    entries: &entries,
                }))
            })
            .clone()
    }

    /// The compiled pipeline for a kernel, compiling it on first use.
    pub(super) fn pipeline(&self, kernel: KernelRef) -> Arc<wgpu::ComputePipeline> {
        if let Some(p) = lock(&self.pipelines).get(&kernel) {
            return p.clone();
        }
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
        let pipeline = Arc::new(self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        lock(&self.pipelines).insert(kernel, pipeline.clone());
        pipeline
    }
}
