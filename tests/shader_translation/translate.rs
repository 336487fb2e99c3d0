//! Every WGSL file in `shaders/` is parsed, validated and translated by naga to every
//! back-end wgpu can use (SPIR-V for Vulkan, MSL for Metal, HLSL for DX12, GLSL for GL), so
//! a kernel that only one driver would reject fails here, on any machine, without a GPU.
//!
//! The options mirror what wgpu-hal hands naga: validation with the capabilities a device
//! without optional features has, bounds checks with the `Restrict` policy, real binding
//! maps (no faked bindings), and one entry point at a time after `process_overrides`.

use std::collections::BTreeMap;

use naga::back::{self, PipelineConstants};
use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ResourceBinding, ShaderStage, StorageAccess};
use wgrad::gpu::shaders::{full_source, Access, ShaderFile, FILES};

/// wgpu's `Limits::default()` (the WebGPU defaults): what every adapter offers.
const MAX_INVOCATIONS_PER_WORKGROUP: u32 = 256;
const MAX_WORKGROUP_STORAGE_BYTES: u32 = 16384;

/// One shader file, parsed and validated.
struct Compiled {
    file: &'static ShaderFile,
    module: Module,
    info: ModuleInfo,
}

/// The capabilities a compute shader may use on a device opened without optional features,
/// plus those of the features the file declares. wgrad asks for `SHADER_F16`, `SUBGROUP`
/// and cooperative matrices only when an adapter has them, and creates a file that needs
/// them only on such a device; every other file must do with `Capabilities::default()`.
fn capabilities(file: &ShaderFile) -> Capabilities {
    let mut caps = Capabilities::default();
    for (feature, cap) in [
        (wgpu::Features::SHADER_F16, Capabilities::SHADER_FLOAT16),
        (wgpu::Features::SUBGROUP, Capabilities::SUBGROUP),
        (wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX, Capabilities::COOPERATIVE_MATRIX),
    ] {
        if file.features.contains(feature) {
            caps |= cap;
        }
    }
    caps
}

/// Whether wgpu offers every feature `file` needs on this back-end: cooperative matrices
/// exist on Vulkan and Metal only.
fn backend_offers(backend: &str, file: &ShaderFile) -> bool {
    let vulkan_or_metal = backend == "SPIR-V" || backend == "MSL";
    vulkan_or_metal || !file.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
}

/// Parses and validates one file; the error names the file and maps line numbers back to it.
fn compile(file: &'static ShaderFile) -> Result<Compiled, String> {
    let source = full_source(file);
    // naga reports lines of the full source; the file's own lines start after the prelude.
    let prelude_lines = source[..source.find(file.body).unwrap_or(0)].lines().count();
    let path = format!("{}.wgsl after the common.wgsl prelude (subtract {prelude_lines} from line numbers)", file.name);
    let module = naga::front::wgsl::parse_str(&source)
        .map_err(|e| format!("{}.wgsl does not parse:\n{}", file.name, e.emit_to_string_with_path(&source, &path)))?;
    let info = Validator::new(ValidationFlags::all(), capabilities(file)).validate(&module).map_err(|e| {
        format!("{}.wgsl does not validate:\n{}", file.name, e.emit_to_string_with_path(&source, &path))
    })?;
    Ok(Compiled { file, module, info })
}

/// Every file that parses and validates, and one message for each that does not.
fn compile_all() -> (Vec<Compiled>, Vec<String>) {
    assert!(!FILES.is_empty(), "shaders::FILES is empty");
    let (mut ok, mut failures) = (Vec::new(), Vec::new());
    for file in FILES {
        match compile(file) {
            Ok(c) => ok.push(c),
            Err(e) => failures.push(e),
        }
    }
    (ok, failures)
}

/// Panics with every message in `failures`, under `what`.
fn report(what: &str, failures: &[String]) {
    assert!(failures.is_empty(), "{what}: {} failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

/// What wgpu-hal uses when the adapter lacks robust buffer access.
fn bounds_checks() -> BoundsCheckPolicies {
    BoundsCheckPolicies {
        index: BoundsCheckPolicy::Restrict,
        buffer: BoundsCheckPolicy::Restrict,
        image_load: BoundsCheckPolicy::Restrict,
        binding_array: BoundsCheckPolicy::Unchecked,
    }
}

/// Every `(group, binding)` of the file's signature: binding 0 the params uniform, then
/// one per storage buffer.
fn resource_bindings(file: &ShaderFile) -> Vec<ResourceBinding> {
    (0..=file.storage.len() as u32).map(|binding| ResourceBinding { group: 0, binding }).collect()
}

/// Runs `write` for every entry point of every file, on the module `process_overrides`
/// gives for that entry point (as wgpu does), and panics listing every failure with its
/// file and entry point.
fn for_each_entry_point(
    backend: &str,
    mut write: impl FnMut(&Compiled, &Module, &ModuleInfo, &str) -> Result<(), String>,
) {
    let (compiled, mut failures) = compile_all();
    let mut translated = 0;
    for c in compiled.into_iter().filter(|c| backend_offers(backend, c.file)) {
        for ep in &c.module.entry_points {
            let name = ep.name.as_str();
            let result = back::pipeline_constants::process_overrides(
                &c.module,
                &c.info,
                Some((ShaderStage::Compute, name)),
                &PipelineConstants::default(),
            )
            .map_err(|e| format!("process_overrides: {e}"))
            .and_then(|(module, info)| write(&c, &module, &info, name));
            match result {
                Ok(()) => translated += 1,
                Err(e) => failures.push(format!("{}.wgsl, entry point `{name}`: {e}", c.file.name)),
            }
        }
    }
    report(backend, &failures);
    assert!(translated > 0, "{backend}: no entry points found");
}

#[test]
fn every_file_validates_and_fits_default_limits() {
    let (compiled, mut failures) = compile_all();
    for c in compiled {
        let name = c.file.name;
        if c.module.entry_points.is_empty() {
            failures.push(format!("{name}.wgsl has no entry point"));
        }
        for (i, ep) in c.module.entry_points.iter().enumerate() {
            let at = format!("{name}.wgsl, entry point `{}`", ep.name);
            if ep.stage != ShaderStage::Compute {
                failures.push(format!("{at} is a {:?} shader, not a compute shader", ep.stage));
            }
            let invocations: u32 = ep.workgroup_size.iter().product();
            if invocations > MAX_INVOCATIONS_PER_WORKGROUP {
                failures.push(format!(
                    "{at}: workgroup size {:?} has {invocations} invocations, more than the default limit {MAX_INVOCATIONS_PER_WORKGROUP}",
                    ep.workgroup_size
                ));
            }
            // Workgroup memory the entry point actually touches.
            let ep_info = c.info.get_entry_point(i);
            let workgroup_bytes: u32 = c
                .module
                .global_variables
                .iter()
                .filter(|(h, g)| g.space == AddressSpace::WorkGroup && !ep_info[*h].is_empty())
                .map(|(_, g)| c.module.types[g.ty].inner.size(c.module.to_ctx()))
                .sum();
            if workgroup_bytes > MAX_WORKGROUP_STORAGE_BYTES {
                failures.push(format!(
                    "{at} uses {workgroup_bytes} bytes of workgroup memory, more than the default limit {MAX_WORKGROUP_STORAGE_BYTES}"
                ));
            }
        }
    }
    report("parse, validate, default limits", &failures);
}

/// How one file's declared bindings differ from its signature in `FILES`, if they do.
fn binding_mismatches(c: &Compiled) -> Vec<String> {
    let name = c.file.name;
    let mut problems = Vec::new();
    let mut declared: BTreeMap<u32, (String, AddressSpace)> = BTreeMap::new();
    for (_, g) in c.module.global_variables.iter() {
        let Some(rb) = g.binding else { continue };
        let var = g.name.clone().unwrap_or_default();
        if rb.group != 0 {
            problems.push(format!("{name}.wgsl: `{var}` is in group {}, but wgrad binds only group 0", rb.group));
        }
        if declared.insert(rb.binding, (var, g.space)).is_some() {
            problems.push(format!("{name}.wgsl: binding {} is declared twice", rb.binding));
        }
    }
    let expected: Vec<u32> = (0..=c.file.storage.len() as u32).collect();
    let found: Vec<u32> = declared.keys().copied().collect();
    if found != expected {
        problems.push(format!(
            "{name}.wgsl declares bindings {found:?}, but its signature in shaders::FILES (the params uniform + {} storage buffers) needs {expected:?}",
            c.file.storage.len()
        ));
    }
    if let Some((var, space)) = declared.get(&0) {
        if *space != AddressSpace::Uniform {
            problems.push(format!("{name}.wgsl: binding 0 (`{var}`) must be the params uniform, found {space:?}"));
        }
    }
    for (i, access) in c.file.storage.iter().enumerate() {
        let binding = i as u32 + 1;
        let Some((var, space)) = declared.get(&binding) else { continue };
        match *space {
            AddressSpace::Storage { access: declared_access } => {
                let writable = declared_access.contains(StorageAccess::STORE);
                if writable != (*access == Access::ReadWrite) {
                    problems.push(format!(
                        "{name}.wgsl: binding {binding} (`{var}`) is declared {}, but shaders::FILES says {access:?}",
                        if writable { "read_write" } else { "read" }
                    ));
                }
            }
            other => problems.push(format!(
                "{name}.wgsl: binding {binding} (`{var}`) must be a storage buffer ({access:?}), found {other:?}"
            )),
        }
    }
    problems
}

#[test]
fn bindings_match_signatures() {
    let (compiled, mut failures) = compile_all();
    for c in &compiled {
        failures.extend(binding_mismatches(c));
    }
    report("bindings vs shaders::FILES", &failures);
}

#[test]
fn translates_to_spirv() {
    for_each_entry_point("SPIR-V", |c, module, info, entry| {
        // Vulkan's descriptor bindings are wgpu's bindings, one set per bind group.
        let binding_map = resource_bindings(c.file)
            .into_iter()
            .map(|rb| {
                let target =
                    back::spv::BindingInfo { descriptor_set: rb.group, binding: rb.binding, binding_array_size: None };
                (rb, target)
            })
            .collect();
        let options = back::spv::Options {
            lang_version: (1, 0),
            fake_missing_bindings: false,
            binding_map,
            bounds_check_policies: bounds_checks(),
            ..Default::default()
        };
        let pipeline =
            back::spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: entry.to_string() };
        let words = back::spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| e.to_string())?;
        if words.first() != Some(&0x0723_0203) {
            return Err("output does not start with the SPIR-V magic number".into());
        }
        Ok(())
    });
}

#[test]
fn translates_to_msl() {
    for_each_entry_point("MSL", |c, module, info, entry| {
        // Buffer slots as wgpu-hal's Metal back-end assigns them: one per binding, then
        // the sizes buffer that runtime-sized arrays need for bounds checks.
        let resources = resource_bindings(c.file)
            .into_iter()
            .enumerate()
            .map(|(slot, rb)| {
                let mutable = rb.binding > 0 && c.file.storage[rb.binding as usize - 1] == Access::ReadWrite;
                (rb, back::msl::BindTarget { buffer: Some(slot as u8), mutable, ..Default::default() })
            })
            .collect();
        let ep_resources = back::msl::EntryPointResources {
            resources,
            immediates_buffer: None,
            sizes_buffer: Some(c.file.storage.len() as u8 + 1),
        };
        let options = back::msl::Options {
            lang_version: (2, 4),
            fake_missing_bindings: false,
            per_entry_point_map: BTreeMap::from([(entry.to_string(), ep_resources)]),
            bounds_check_policies: bounds_checks(),
            ..Default::default()
        };
        let pipeline = back::msl::PipelineOptions {
            entry_point: Some((ShaderStage::Compute, entry.to_string())),
            ..Default::default()
        };
        let (text, translation) =
            back::msl::write_string(module, info, &options, &pipeline).map_err(|e| e.to_string())?;
        for name in translation.entry_point_names {
            name.map_err(|e| e.to_string())?;
        }
        if !text.contains("kernel") {
            return Err("no kernel function in the output".into());
        }
        Ok(())
    });
}

#[test]
fn translates_to_hlsl() {
    for_each_entry_point("HLSL", |c, module, info, entry| {
        // Registers as DX12 sees them: the uniform in b0, read-only buffers as SRVs (t),
        // writable ones as UAVs (u), each class counted from 0.
        let (mut t, mut u) = (0, 0);
        let binding_map = resource_bindings(c.file)
            .into_iter()
            .map(|rb| {
                let register = match rb.binding {
                    0 => 0,
                    b if c.file.storage[b as usize - 1] == Access::Read => {
                        t += 1;
                        t - 1
                    }
                    _ => {
                        u += 1;
                        u - 1
                    }
                };
                (rb, back::hlsl::BindTarget { space: 0, register, ..Default::default() })
            })
            .collect();
        let options = back::hlsl::Options {
            shader_model: back::hlsl::ShaderModel::V6_0,
            binding_map,
            fake_missing_bindings: false,
            ..Default::default()
        };
        let pipeline = back::hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, entry.to_string())) };
        let mut text = String::new();
        let reflection = back::hlsl::Writer::new(&mut text, &options, &pipeline)
            .write(module, info, None)
            .map_err(|e| e.to_string())?;
        for name in reflection.entry_point_names {
            name.map_err(|e| e.to_string())?;
        }
        if !text.contains("[numthreads(") {
            return Err("no [numthreads] entry point in the output".into());
        }
        Ok(())
    });
}

#[test]
fn translates_to_glsl() {
    // ES 3.1 is what wgpu's GL back-end needs for compute; core 4.3 is desktop GL's first
    // version with compute shaders.
    for version in [back::glsl::Version::new_gles(310), back::glsl::Version::Desktop(430)] {
        for_each_entry_point(&format!("GLSL {version}"), |c, module, info, entry| {
            // GL numbers uniform blocks and storage blocks separately, as wgpu does.
            let binding_map = resource_bindings(c.file)
                .into_iter()
                .map(|rb| (rb, if rb.binding == 0 { 0 } else { rb.binding as u8 - 1 }))
                .collect();
            let options = back::glsl::Options { version, binding_map, ..Default::default() };
            let pipeline = back::glsl::PipelineOptions {
                shader_stage: ShaderStage::Compute,
                entry_point: entry.to_string(),
                multiview: None,
            };
            let mut text = String::new();
            back::glsl::Writer::new(&mut text, module, info, &options, &pipeline, bounds_checks())
                .and_then(|mut w| w.write())
                .map_err(|e| e.to_string())?;
            if !text.contains("layout(local_size_x") {
                return Err("no local_size layout in the output".into());
            }
            Ok(())
        });
    }
}
