//! Generating the cached function and its helpers from the parsed options and signature.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Ident, ItemFn, Lifetime, Type};

use crate::attr::{BackendChoice, Options};
use crate::sig::{Analysis, ReturnKind};

/// One part of the key: how to borrow it for a lookup, and its owned type.
struct KeyPart {
    borrow: TokenStream,
    owned: Type,
    assert: TokenStream,
    /// For a remote key: the check that the value (behind any reference) serializes.
    remote_assert: TokenStream,
}

/// The pieces shared by the function and its helpers.
struct Plan<'a> {
    function: &'a ItemFn,
    options: &'a Options,
    analysis: &'a Analysis,
    key_parts: Vec<KeyPart>,
}

pub(crate) fn expand(function: &ItemFn, options: &Options, analysis: &Analysis) -> TokenStream {
    let key_parts = key_parts(analysis);
    let plan = Plan {
        function,
        options,
        analysis,
        key_parts,
    };
    if analysis.is_method {
        plan.method()
    } else {
        plan.free_function()
    }
}

fn key_parts(analysis: &Analysis) -> Vec<KeyPart> {
    let mut parts = Vec::new();
    if let Some(receiver) = analysis.receiver.as_ref().filter(|r| !r.skipped) {
        let span = receiver.span;
        parts.push(KeyPart {
            borrow: quote_spanned!(span=> self),
            owned: syn::parse_quote_spanned!(span=> Self),
            assert: quote_spanned!(span=> ::cachemere::__private::assert_receiver_key_part::<Self>();),
            remote_assert: quote_spanned!(span=> ::cachemere::__private::assert_remote_key_part::<Self>();),
        });
    }
    for arg in analysis.args.iter().filter(|a| !a.skipped) {
        let ident = &arg.ident;
        // Point errors at the referent (`Client` of `&Client`): a stable span covers one token.
        let span = match &arg.ty {
            Type::Reference(reference) => reference.elem.span(),
            other => other.span(),
        };
        let (borrow, owned): (TokenStream, Type) = match &arg.ty {
            Type::Reference(reference) => {
                let referent = with_static_lifetimes(&reference.elem);
                (
                    quote!(#ident),
                    syn::parse_quote_spanned!(span=> <#referent as ::std::borrow::ToOwned>::Owned),
                )
            }
            other => (quote!(&#ident), with_static_lifetimes(other)),
        };
        let assert = quote_spanned!(span=> ::cachemere::__private::assert_key_part::<#owned>(););
        let referent = match &arg.ty {
            Type::Reference(reference) => with_static_lifetimes(&reference.elem),
            other => with_static_lifetimes(other),
        };
        let remote_assert =
            quote_spanned!(span=> ::cachemere::__private::assert_remote_key_part::<#referent>(););
        parts.push(KeyPart {
            borrow,
            owned,
            assert,
            remote_assert,
        });
    }
    parts
}

/// An identifier of generated code, invisible to (and unable to shadow) the user's names.
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// Replaces named lifetimes with `'static`: key types are stored in a `'static` cache.
fn with_static_lifetimes(ty: &Type) -> Type {
    struct Static;
    impl VisitMut for Static {
        fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
            if lifetime.ident != "static" {
                *lifetime = Lifetime::new("'static", lifetime.span());
            }
        }
    }
    let mut ty = ty.clone();
    Static.visit_type_mut(&mut ty);
    ty
}

/// Replaces named lifetimes with `'_`, for the parameters of a helper that declares none.
fn with_elided_lifetimes(ty: &Type) -> Type {
    struct Elide;
    impl VisitMut for Elide {
        fn visit_lifetime_mut(&mut self, lifetime: &mut Lifetime) {
            if lifetime.ident != "static" {
                *lifetime = Lifetime::new("'_", lifetime.span());
            }
        }
    }
    let mut ty = ty.clone();
    Elide.visit_type_mut(&mut ty);
    ty
}

impl Plan<'_> {
    fn is_async(&self) -> bool {
        self.function.sig.asyncness.is_some()
    }

    fn output(&self) -> Type {
        with_static_lifetimes(&self.analysis.output)
    }

    fn policy(&self) -> TokenStream {
        let span = self.analysis.output.span();
        let caches_none = self.options.cache_none.as_ref().is_some_and(|f| f.value);
        let caches_err = self.options.cache_err.as_ref().is_some_and(|f| f.value);
        match self.analysis.return_kind {
            ReturnKind::Option if !caches_none => {
                quote_spanned!(span=> ::cachemere::__private::SomeOnly)
            }
            ReturnKind::Result if !caches_err => {
                quote_spanned!(span=> ::cachemere::__private::OkOnly)
            }
            _ => quote_spanned!(span=> ::cachemere::__private::Everything),
        }
    }

    /// The key type, the stored type and the number of tags.
    fn cache_types(&self) -> (TokenStream, TokenStream, usize) {
        let key = match (&self.options.key, &self.options.key_type) {
            (Some(_), Some(key_type)) => {
                let ty = with_static_lifetimes(key_type);
                quote!(#ty)
            }
            (Some(_), None) => quote!(::std::string::String),
            (None, _) => {
                let owned = self.key_parts.iter().map(|p| &p.owned);
                quote!((#(#owned,)*))
            }
        };
        let output = self.output();
        let policy = self.policy();
        let span = self.analysis.output.span();
        let stored =
            quote_spanned!(span=> <#policy as ::cachemere::__private::Policy<#output>>::Stored);
        let tags = self.options.tags.as_ref().map_or(0, Vec::len);
        (key, stored, tags)
    }

    /// The lookup key (borrowed where possible) and the statement that builds it.
    fn lookup(&self) -> (TokenStream, TokenStream) {
        let (key_var, lookup_var) = (local("__cachemere_key"), local("__cachemere_lookup"));
        match &self.options.key {
            Some(expr) => {
                let (key_type, _, _) = self.cache_types();
                (
                    quote_spanned!(expr.span()=> let #key_var: #key_type = #expr;),
                    quote!(&#key_var),
                )
            }
            None => {
                let borrows = self.key_parts.iter().map(|p| &p.borrow);
                (
                    quote!(let #lookup_var = ::cachemere::__private::KeyRef((#(#borrows,)*));),
                    quote!(&#lookup_var),
                )
            }
        }
    }

    fn body(&self, accessor: TokenStream) -> TokenStream {
        if self.options.is_remote() {
            return self.remote_body(accessor);
        }
        let cache_var = local("__cachemere_cache");
        let key_var = local("__cachemere_key");
        let tags_var = local("__cachemere_tags");
        let value_var = local("__cachemere_value");
        let (setup, lookup) = self.lookup();
        let policy = self.policy();
        let output = &self.analysis.output;
        let output_static = self.output();
        let owned_key = match &self.options.key {
            Some(_) => quote!(),
            None => {
                let borrows = self.key_parts.iter().map(|p| &p.borrow);
                quote!(let #key_var = (#(::std::borrow::ToOwned::to_owned(#borrows),)*);)
            }
        };
        let tags = self.options.tags.iter().flatten();
        let block = &self.function.block;
        let compute = if self.is_async() {
            quote! {
                #cache_var.compute_async(
                    #key_var,
                    #tags_var,
                    <#policy as ::cachemere::__private::Policy<#output_static>>::store,
                    <#policy as ::cachemere::__private::Policy<#output_static>>::load,
                    ::cachemere::__private::typed_future::<#output, _>(async move #block),
                ).await
            }
        } else {
            quote! {
                #cache_var.compute(
                    #key_var,
                    #tags_var,
                    <#policy as ::cachemere::__private::Policy<#output_static>>::store,
                    <#policy as ::cachemere::__private::Policy<#output_static>>::load,
                    ::cachemere::__private::typed_closure::<#output, _>(move || #block),
                )
            }
        };
        quote! {
            let #cache_var = #accessor;
            #setup
            if let ::core::option::Option::Some(#value_var) = #cache_var.get(#lookup) {
                return <#policy as ::cachemere::__private::Policy<#output_static>>::load(#value_var);
            }
            #owned_key
            let #tags_var = [#(::cachemere::__private::TagStamp::of(::core::format_args!(#tags)),)*];
            #compute
        }
    }

    /// The typed accessor: creates the cache in its slot on first use.
    fn accessor(&self, name: &Ident, cache_name: TokenStream) -> TokenStream {
        if self.options.is_remote() {
            return self.remote_accessor(name, cache_name);
        }
        let slot_var = local("__CACHEMERE_SLOT");
        let config_var = local("__cachemere_config");
        let backend_var = local("__cachemere_backend");
        let (key, stored, tags) = self.cache_types();
        let asserts: Vec<TokenStream> = if self.options.key.is_none() {
            self.key_parts.iter().map(|p| p.assert.clone()).collect()
        } else {
            Vec::new()
        };
        let policy = self.policy();
        let output = self.output();
        let output_span = self.analysis.output.span();
        let assert_value = quote_spanned!(output_span=> ::cachemere::__private::assert_cacheable::<#policy, #output>(););
        let maxsize = match &self.options.maxsize {
            Some(maxsize) => {
                let value = maxsize.value;
                quote!(#value)
            }
            None => quote!(::cachemere::DEFAULT_MAXSIZE),
        };
        let ttl = match &self.options.ttl {
            Some(ttl) => {
                let ms = ttl.value;
                quote!(::core::option::Option::Some(::cachemere::__private::Duration::from_millis(#ms)))
            }
            None => quote!(::core::option::Option::None),
        };
        let single_flight = self.options.single_flight.as_ref().is_none_or(|f| f.value);
        let entry = quote!(::cachemere::__private::Entry<#stored, #tags>);
        // Built-in stores are named, which keeps type checking cheap; a user's constructor
        // returns a type the macro cannot name, so it becomes an opaque `impl Backend`.
        let (constructor, backend_type) = match self.options.backend.as_ref() {
            None => (
                quote!(::cachemere::__private::memory_backend),
                quote!(::cachemere::MemoryBackend<#key, #entry>),
            ),
            Some(choice) => match &choice.value {
                BackendChoice::Memory => (
                    quote_spanned!(choice.span=> ::cachemere::__private::memory_backend),
                    quote!(::cachemere::MemoryBackend<#key, #entry>),
                ),
                BackendChoice::Moka => (
                    quote_spanned!(choice.span=> ::cachemere::__private::moka_backend),
                    quote!(::cachemere::__private::MokaStore<#key, #entry>),
                ),
                BackendChoice::Custom(path) => (
                    quote_spanned!(path.span()=> #path),
                    quote!(impl ::cachemere::Backend<#key, #entry>),
                ),
                BackendChoice::Redis(_) | BackendChoice::Remote(_) => {
                    unreachable!("remote caches have their own accessor")
                }
            },
        };
        quote! {
            #[doc(hidden)]
            #[inline]
            fn #name() -> &'static ::cachemere::__private::Cache<
                #key,
                #stored,
                #tags,
                #backend_type,
            > {
                #(#asserts)*
                #assert_value
                static #slot_var: ::cachemere::__private::CacheSlot = ::cachemere::__private::CacheSlot::new();
                #slot_var.get_or_init(|| {
                    let #config_var = ::cachemere::__private::CacheConfig::new(#cache_name)
                        .with_maxsize(#maxsize)
                        .with_ttl(#ttl)
                        .with_single_flight(#single_flight);
                    let #backend_var = #constructor(&#config_var);
                    ::cachemere::__private::Cache::new(#config_var, #backend_var)
                })
            }
        }
    }

    /// `cache_info`, `cache_clear` and `invalidate`, named with `prefix`.
    fn helpers(&self, prefix: &str, accessor: &TokenStream) -> TokenStream {
        let vis = &self.function.vis;
        let fn_name = &self.function.sig.ident;
        let asyncness = self.function.sig.asyncness;
        let info = format_ident!("{prefix}cache_info");
        let clear = format_ident!("{prefix}cache_clear");
        let invalidate = format_ident!("{prefix}invalidate");
        let receiver = self
            .analysis
            .receiver
            .as_ref()
            .filter(|r| !r.skipped)
            .map(|_| quote!(&self,));
        let params = self.analysis.args.iter().filter(|a| !a.skipped).map(|arg| {
            let ident = &arg.ident;
            let ty = with_elided_lifetimes(&arg.ty);
            quote!(#ident: #ty)
        });
        let (setup, lookup) = if self.options.is_remote() {
            let (setup, arguments) = self.remote_arguments();
            let invalidate = if asyncness.is_some() {
                quote!(#accessor.invalidate_async(#accessor.arguments(#arguments)).await)
            } else {
                quote!(#accessor.invalidate(#accessor.arguments(#arguments)))
            };
            (setup, invalidate)
        } else {
            let (setup, lookup) = self.lookup();
            (setup, quote!(#accessor.invalidate(#lookup)))
        };
        let clear_call = match (self.options.is_remote(), asyncness.is_some()) {
            (true, true) => quote!(#accessor.clear_async().await),
            _ => quote!(#accessor.clear()),
        };
        let info_doc = format!("Statistics of the cache of `{fn_name}`.");
        let clear_doc = format!(
            "Removes every entry of the cache of `{fn_name}` and resets its statistics (as Python's `cache_clear()`); `Queued` if a remote store could not be reached (retried in the background)."
        );
        let invalidate_doc = format!(
            "Removes the entry of `{fn_name}` for these arguments (the skipped ones left out): `Removed` if there was one, `Absent` if not, `Queued` if a remote store could not be reached (retried in the background; this process does not serve the entry meanwhile)."
        );
        quote! {
            #[doc = #info_doc]
            #[allow(dead_code)]
            #vis fn #info() -> ::cachemere::CacheInfo {
                #accessor.info()
            }

            #[doc = #clear_doc]
            #[allow(dead_code)]
            #vis #asyncness fn #clear() -> ::cachemere::Invalidation {
                #clear_call
            }

            #[doc = #invalidate_doc]
            #[allow(dead_code)]
            #[allow(unused_variables)]
            #vis #asyncness fn #invalidate(#receiver #(#params),*) -> ::cachemere::Invalidation {
                #setup
                #lookup
            }
        }
    }

    /// For a remote cache: the statement before, and the expression of, what the key encodes.
    fn remote_arguments(&self) -> (TokenStream, TokenStream) {
        match &self.options.key {
            Some(expr) => {
                let key_var = local("__cachemere_key");
                let (key_type, _, _) = self.cache_types();
                (
                    quote_spanned!(expr.span()=> let #key_var: #key_type = #expr;),
                    quote!(&#key_var),
                )
            }
            None => {
                let borrows = self.key_parts.iter().map(|p| &p.borrow);
                (quote!(), quote!(&(#(#borrows,)*)))
            }
        }
    }

    /// The accessor of a remote cache (`backend = "redis"` or `"remote"`).
    fn remote_accessor(&self, name: &Ident, cache_name: TokenStream) -> TokenStream {
        let slot_var = local("__CACHEMERE_SLOT");
        let (_, stored, _) = self.cache_types();
        let asserts: Vec<TokenStream> = match (&self.options.key, &self.options.key_type) {
            (None, _) => self
                .key_parts
                .iter()
                .map(|p| p.remote_assert.clone())
                .collect(),
            (Some(_), Some(key_type)) => {
                let ty = with_static_lifetimes(key_type);
                vec![
                    quote_spanned!(key_type.span()=> ::cachemere::__private::assert_remote_key_part::<#ty>();),
                ]
            }
            (Some(_), None) => Vec::new(),
        };
        let policy = self.policy();
        let output = self.output();
        let output_span = self.analysis.output.span();
        let assert_value = quote_spanned!(output_span=> ::cachemere::__private::assert_remote_value::<#policy, #output>(););
        let feature_check = match self.options.backend.as_ref().map(|b| &b.value) {
            Some(BackendChoice::Redis(span)) => {
                quote_spanned!(*span=> ::cachemere::__private::assert_redis_feature::<()>();)
            }
            Some(BackendChoice::Remote(span)) => {
                quote_spanned!(*span=> ::cachemere::__private::assert_remote_feature::<()>();)
            }
            _ => quote!(),
        };
        let ttl = match &self.options.ttl {
            Some(ttl) => {
                let ms = ttl.value;
                quote!(::core::option::Option::Some(::cachemere::__private::Duration::from_millis(#ms)))
            }
            None => quote!(::core::option::Option::None),
        };
        let version = self.options.version.as_ref().map_or(1, |v| v.value);
        let with_remote = self.options.remote.as_ref().map(|remote| {
            let path = &remote.value;
            quote_spanned!(path.span()=> .with_remote(#path))
        });
        let single_flight = self.options.single_flight.as_ref().is_none_or(|f| f.value);
        quote! {
            #[doc(hidden)]
            #[inline]
            fn #name() -> &'static ::cachemere::__private::RemoteCache<#stored> {
                #feature_check
                #(#asserts)*
                #assert_value
                static #slot_var: ::cachemere::__private::CacheSlot = ::cachemere::__private::CacheSlot::new();
                #slot_var.get_or_init(|| {
                    ::cachemere::__private::RemoteCache::new(#cache_name, #version, #ttl, #single_flight)
                        #with_remote
                })
            }
        }
    }

    /// The body of a remotely cached function.
    fn remote_body(&self, accessor: TokenStream) -> TokenStream {
        let cache_var = local("__cachemere_cache");
        let arguments_var = local("__cachemere_arguments");
        let tags_var = local("__cachemere_tags");
        let (setup, arguments) = self.remote_arguments();
        let policy = self.policy();
        let output = &self.analysis.output;
        let output_static = self.output();
        let tags = self.options.tags.iter().flatten();
        let tag_count = self.options.tags.as_ref().map_or(0, Vec::len);
        let block = &self.function.block;
        let store = quote!(<#policy as ::cachemere::__private::Policy<#output_static>>::store);
        let load = quote!(<#policy as ::cachemere::__private::Policy<#output_static>>::load);
        let compute = if self.is_async() {
            quote! {
                #cache_var.compute_async(
                    #arguments_var,
                    &#tags_var,
                    #store,
                    #load,
                    ::cachemere::__private::typed_future::<#output, _>(async move #block),
                ).await
            }
        } else {
            quote! {
                #cache_var.compute(
                    #arguments_var,
                    &#tags_var,
                    #store,
                    #load,
                    ::cachemere::__private::typed_closure::<#output, _>(move || #block),
                )
            }
        };
        quote! {
            let #cache_var = #accessor;
            #setup
            let #arguments_var = #cache_var.arguments(#arguments);
            let #tags_var: [::std::string::String; #tag_count] = [#(::std::format!(#tags),)*];
            #compute
        }
    }

    /// A free function `f` gets a companion `enum f {}` whose associated functions are the
    /// helpers. A braced enum lives in the type namespace only, so it does not clash with the
    /// function, and sits in the function's own scope, so every type the function names
    /// (including types local to an enclosing function body) resolves the same way.
    fn free_function(&self) -> TokenStream {
        let function = self.function;
        let attrs = &function.attrs;
        let vis = &function.vis;
        let sig = &function.sig;
        let name = &sig.ident;
        let accessor_name = Ident::new("__cachemere_cache", Span::call_site());
        let cache_name = match &self.options.name {
            Some(lit) => quote!(#lit),
            None => {
                let text = name.to_string();
                quote!(::core::concat!(::core::module_path!(), "::", #text))
            }
        };
        let accessor = self.accessor(&accessor_name, cache_name);
        let body = self.body(quote!(#name::#accessor_name()));
        let helpers = self.helpers("", &quote!(Self::#accessor_name()));
        let companion_doc = format!(
            "Cache helpers generated by `#[cached]` for the function `{name}`: \
             `{name}::cache_info()`, `{name}::cache_clear()` and `{name}::invalidate(..)`."
        );
        // The companion comes first: its key and value checks then report before any error
        // the function body would cascade into.
        quote! {
            #[doc = #companion_doc]
            #[allow(non_camel_case_types)]
            #vis enum #name {}

            impl #name {
                #accessor

                #helpers
            }

            #(#attrs)*
            #vis #sig {
                #body
            }
        }
    }

    fn method(&self) -> TokenStream {
        let function = self.function;
        let attrs = &function.attrs;
        let vis = &function.vis;
        let sig = &function.sig;
        let name = &sig.ident;
        let accessor_name = format_ident!("__cachemere_{}_cache", name);
        let cache_name = match &self.options.name {
            Some(lit) => quote!(#lit),
            None => {
                let text = name.to_string();
                quote!(::cachemere::__private::method_cache_name(::core::any::type_name::<Self>(), #text))
            }
        };
        let accessor = self.accessor(&accessor_name, cache_name);
        let body = self.body(quote!(Self::#accessor_name()));
        let helpers = self.helpers(&format!("{name}_"), &quote!(Self::#accessor_name()));
        quote! {
            #accessor

            #(#attrs)*
            #vis #sig {
                #body
            }

            #helpers
        }
    }
}
