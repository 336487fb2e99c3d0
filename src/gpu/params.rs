//! Kernel params structs, declared once on the Rust side and checked against WGSL.
//!
//! Each kernel reads its shapes and scalars from a uniform struct declared at the top of
//! its WGSL file; the launcher fills a `#[repr(C)]` Rust twin and copies its bytes. The two
//! must agree field for field, and nothing at compile time says they do. So every twin is
//! declared through [`kernel_params!`], which records its WGSL name (the Rust name), size,
//! and each field's offset, size and scalar type; a test parses every shader with naga and
//! compares each uniform struct with its twin: a field added, moved, resized or retyped on
//! one side only fails it, and so does a uniform struct without a twin.
//!
//! Fields whose names start with `_` are padding: the WGSL side splits `_pad: [u32; 3]`
//! into `_pad0`, `_pad1`, `_pad2`, so they are left out of the comparison (the sizes of
//! the structs and the offsets of every named field still pin them down).

/// The scalar type a params field is made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scalar {
    U32,
    I32,
    F32,
}

/// A type a params field may have: a 32-bit scalar, or a (nested) array of them, which
/// WGSL declares as `vec4<u32>` or `array<vec4<u32>, 2>`.
pub(crate) trait ParamsField {
    const SCALAR: Scalar;
}

impl ParamsField for u32 {
    const SCALAR: Scalar = Scalar::U32;
}

impl ParamsField for i32 {
    const SCALAR: Scalar = Scalar::I32;
}

impl ParamsField for f32 {
    const SCALAR: Scalar = Scalar::F32;
}

impl<T: ParamsField, const N: usize> ParamsField for [T; N] {
    const SCALAR: Scalar = T::SCALAR;
}

/// Where one field of a params struct lies and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct FieldLayout {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
    pub scalar: Scalar,
}

/// The memory layout of one params struct, named as its WGSL twin is. Only the test below
/// reads it.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct ParamsLayout {
    pub name: &'static str,
    pub size: usize,
    pub fields: &'static [FieldLayout],
}

/// Declares a kernel's params struct: `#[repr(C)]`, `Pod`, and a `LAYOUT` constant for the
/// test that compares it with the WGSL struct of the same name.
macro_rules! kernel_params {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $($(#[$field_meta])* $field_vis $field: $ty,)*
        }

        impl $name {
            /// This struct's layout, for the comparison with its WGSL twin.
            #[allow(dead_code)]
            pub(crate) const LAYOUT: $crate::gpu::params::ParamsLayout = $crate::gpu::params::ParamsLayout {
                name: stringify!($name),
                size: ::std::mem::size_of::<$name>(),
                fields: &[$($crate::gpu::params::FieldLayout {
                    name: stringify!($field),
                    offset: ::std::mem::offset_of!($name, $field),
                    size: ::std::mem::size_of::<$ty>(),
                    scalar: <$ty as $crate::gpu::params::ParamsField>::SCALAR,
                },)*],
            };
        }
    };
}

pub(crate) use kernel_params;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::{FieldLayout, ParamsLayout, Scalar};
    use crate::gpu::kernels::PARAMS;
    use crate::gpu::shaders;

    /// The scalar a WGSL type is made of, if it is a 32-bit scalar, a vector or an array.
    fn scalar_of(module: &naga::Module, ty: naga::Handle<naga::Type>) -> Option<Scalar> {
        let scalar = match &module.types[ty].inner {
            naga::TypeInner::Scalar(s) | naga::TypeInner::Vector { scalar: s, .. } => *s,
            naga::TypeInner::Array { base, .. } => return scalar_of(module, *base),
            _ => return None,
        };
        match (scalar.kind, scalar.width) {
            (naga::ScalarKind::Uint, 4) => Some(Scalar::U32),
            (naga::ScalarKind::Sint, 4) => Some(Scalar::I32),
            (naga::ScalarKind::Float, 4) => Some(Scalar::F32),
            _ => None,
        }
    }

    /// The named (non-padding) fields of a layout, as the comparison sees them.
    fn named(fields: impl IntoIterator<Item = (String, usize, usize, Option<Scalar>)>) -> Vec<String> {
        fields
            .into_iter()
            .filter(|(name, ..)| !name.starts_with('_'))
            .map(|(name, offset, size, scalar)| format!("{name} at {offset} ({size} bytes, {scalar:?})"))
            .collect()
    }

    fn rust_fields(p: &ParamsLayout) -> Vec<String> {
        named(p.fields.iter().map(|f: &FieldLayout| (f.name.to_string(), f.offset, f.size, Some(f.scalar))))
    }

    #[test]
    fn every_uniform_struct_matches_its_rust_twin() {
        let mut covered = BTreeSet::new();
        for file in shaders::FILES {
            let source = shaders::full_source(file);
            let module = naga::front::wgsl::parse_str(&source)
                .unwrap_or_else(|e| panic!("{}.wgsl does not parse:\n{}", file.name, e.emit_to_string(&source)));
            for (_, var) in module.global_variables.iter() {
                if var.space != naga::AddressSpace::Uniform {
                    continue;
                }
                let ty = &module.types[var.ty];
                let name = ty.name.as_deref().unwrap_or_else(|| panic!("{}.wgsl: an unnamed uniform", file.name));
                let naga::TypeInner::Struct { members, span } = &ty.inner else {
                    panic!("{}.wgsl: the uniform {name} is not a struct", file.name);
                };
                let rust = PARAMS.iter().find(|p| p.name == name).unwrap_or_else(|| {
                    panic!("{}.wgsl: the uniform struct {name} has no Rust twin in gpu::kernels::PARAMS", file.name)
                });
                let wgsl = named(members.iter().map(|m| {
                    let size = module.types[m.ty].inner.size(module.to_ctx()) as usize;
                    (m.name.clone().unwrap_or_default(), m.offset as usize, size, scalar_of(&module, m.ty))
                }));
                assert_eq!(
                    wgsl,
                    rust_fields(rust),
                    "{}.wgsl: the fields of {name} (left) and of its Rust twin (right) differ",
                    file.name
                );
                assert_eq!(
                    *span as usize, rust.size,
                    "{}.wgsl: {name} is {span} bytes, its Rust twin {}",
                    file.name, rust.size
                );
                covered.insert(name.to_string());
            }
        }
        for p in PARAMS {
            assert!(
                covered.contains(p.name),
                "{} is in gpu::kernels::PARAMS but no shader has a uniform of it",
                p.name
            );
        }
    }

    #[test]
    fn params_twins_are_listed_once() {
        let names: BTreeSet<&str> = PARAMS.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), PARAMS.len(), "a params struct is listed twice in gpu::kernels::PARAMS");
    }
}
