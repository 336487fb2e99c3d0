//! `#[derive(Module)]` for wgrad, re-exported as `wgrad::nn::Module` (see its
//! documentation there): implements `wgrad::nn::Module` for a struct by registering each
//! field under its name.
//!
//! Each field that is not skipped goes through the `wgrad::nn::ModuleField` trait
//! (modules, parameter tensors, and `Vec`s and `Option`s of them) or, marked
//! `#[module(buffer)]`, `wgrad::nn::BufferField`, so the macro needs no knowledge of
//! types: the trait impls decide what a field is, and a field of another type is a
//! compile error at that field that says to mark it `#[module(skip)]`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// How a field is registered.
enum Kind {
    /// A module, parameter tensor, or a `Vec` / `Option` of them (`ModuleField`).
    Field,
    /// `#[module(buffer)]`: a tensor saved with the state but not trained.
    Buffer,
    /// `#[module(skip)]`: configuration, not registered.
    Skip,
}

struct FieldSpec {
    /// `self.<member>`.
    member: TokenStream2,
    /// The registered name.
    name: String,
    kind: Kind,
    ty: syn::Type,
    span: Span,
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Module)] applies to structs; write `impl Module` by hand for an enum",
        ));
    };
    let fields = field_specs(&data.fields)?;
    let ident = &input.ident;
    let type_name = ident.to_string();

    let mut generics = input.generics.clone();
    if generics.type_params().next().is_some() {
        let where_clause = generics.make_where_clause();
        for f in &fields {
            let ty = &f.ty;
            match f.kind {
                Kind::Field => where_clause.predicates.push(syn::parse_quote!(#ty: ::wgrad::nn::ModuleField)),
                Kind::Buffer => where_clause.predicates.push(syn::parse_quote!(#ty: ::wgrad::nn::BufferField)),
                Kind::Skip => {}
            }
        }
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let mut visit = Vec::new();
    let mut visit_mut = Vec::new();
    let mut set_training = Vec::new();
    let mut is_training = Vec::new();
    let mut describe = Vec::new();
    for f in &fields {
        let (member, name, span) = (&f.member, &f.name, f.span);
        match f.kind {
            Kind::Field => {
                visit
                    .push(quote_spanned!(span=> ::wgrad::nn::ModuleField::visit_field(&self.#member, #name, visitor);));
                visit_mut.push(
                    quote_spanned!(span=> ::wgrad::nn::ModuleField::visit_field_mut(&mut self.#member, #name, visitor);),
                );
                set_training.push(
                    quote_spanned!(span=> ::wgrad::nn::ModuleField::set_training_field(&mut self.#member, training);),
                );
                is_training.push(quote_spanned!(span=>
                    if let ::core::option::Option::Some(mode) = ::wgrad::nn::ModuleField::is_training_field(&self.#member) {
                        training &= mode;
                    }
                ));
                describe
                    .push(quote_spanned!(span=> ::wgrad::nn::ModuleField::describe_field(&self.#member, #name, &mut children);));
            }
            Kind::Buffer => {
                visit.push(
                    quote_spanned!(span=> ::wgrad::nn::BufferField::visit_buffer(&self.#member, #name, visitor);),
                );
                visit_mut.push(
                    quote_spanned!(span=> ::wgrad::nn::BufferField::visit_buffer_mut(&mut self.#member, #name, visitor);),
                );
            }
            Kind::Skip => {}
        }
    }

    Ok(quote! {
        impl #impl_generics ::wgrad::nn::Module for #ident #ty_generics #where_clause {
            fn visit(&self, visitor: &mut ::wgrad::nn::Visitor<'_>) {
                #(#visit)*
            }

            fn visit_mut(&mut self, visitor: &mut ::wgrad::nn::VisitorMut<'_>) {
                #(#visit_mut)*
            }

            fn set_training(&mut self, training: bool) {
                let _ = training;
                #(#set_training)*
            }

            fn is_training(&self) -> bool {
                let mut training = true;
                #(#is_training)*
                training
            }

            fn describe(&self) -> ::std::string::String {
                let mut children: ::std::vec::Vec<(::std::string::String, ::std::string::String)> =
                    ::std::vec::Vec::new();
                #(#describe)*
                ::wgrad::nn::describe_children(#type_name, &children)
            }
        }
    })
}

fn field_specs(fields: &Fields) -> syn::Result<Vec<FieldSpec>> {
    let mut specs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (index, field) in fields.iter().enumerate() {
        let (member, default_name) = match &field.ident {
            Some(ident) => (quote!(#ident), ident.to_string().trim_start_matches("r#").to_string()),
            None => {
                let index = syn::Index::from(index);
                (quote!(#index), index.index.to_string())
            }
        };
        let mut kind = Kind::Field;
        let mut name = default_name;
        for attr in &field.attrs {
            if !attr.path().is_ident("module") {
                continue;
            }
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("skip") {
                    kind = Kind::Skip;
                    Ok(())
                } else if meta.path.is_ident("buffer") {
                    kind = Kind::Buffer;
                    Ok(())
                } else if meta.path.is_ident("rename") {
                    let lit: LitStr = meta.value()?.parse()?;
                    let value = lit.value();
                    if value.is_empty() || value.contains('.') {
                        return Err(meta.error("a registered name is non-empty and has no '.'"));
                    }
                    name = value;
                    Ok(())
                } else {
                    Err(meta.error("expected `skip`, `buffer` or `rename = \"...\"`"))
                }
            })?;
        }
        if !matches!(kind, Kind::Skip) && !names.insert(name.clone()) {
            return Err(syn::Error::new(field.span(), format!("two fields are registered as '{name}'")));
        }
        specs.push(FieldSpec { member, name, kind, ty: field.ty.clone(), span: field.ty.span() });
    }
    Ok(specs)
}
