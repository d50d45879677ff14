//! Generating the cached function and its helpers from the parsed options and signature.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::visit_mut::VisitMut;
use syn::{Attribute, FnArg, Ident, ItemFn, Lifetime, Meta, Pat, Type};

use crate::attr::{At, BackendChoice, Duration, Options};
use crate::shape::{Background, Shape, background, shape};
use crate::sig::{Analysis, ReturnKind};

/// One part of the key: how it is looked up borrowed, owned on a miss, and serialized.
struct KeyPart {
    /// A statement binding the lookup view, for the shapes that need one.
    setup: TokenStream,
    /// A reference to the argument as a `KeyView` of `owned`.
    view: TokenStream,
    /// The owned key part's type through its gate (see the runtime's `gate`): the type itself
    /// when the part can be a key, a type rustc leaves unknown (reporting once) when not.
    gated_owned: TokenStream,
    /// The gate, as `<T as Gate<_>>`, whose `pass` the cache and the view go through.
    gate: TokenStream,
    /// Where its errors point.
    span: Span,
    /// For a remote key: a reference to what is serialized.
    remote_borrow: TokenStream,
    /// For a remote key: the gate checking that the value (behind any reference) serializes.
    remote_gate: TokenStream,
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
            setup: quote!(),
            view: quote_spanned!(span=> self),
            gated_owned: quote_spanned!(span=> <Self as ::cachemere::__private::ReceiverGate<_>>::Is),
            gate: quote_spanned!(span=> <Self as ::cachemere::__private::ReceiverGate<_>>),
            span,
            remote_borrow: quote_spanned!(span=> self),
            remote_gate: quote_spanned!(span=> <Self as ::cachemere::__private::RemoteKeyGate<_>>),
        });
    }
    for (index, arg) in analysis.args.iter().filter(|a| !a.skipped).enumerate() {
        let ident = &arg.ident;
        let view_var = local(&format!("__cachemere_view_{index}"));
        let private = quote!(::cachemere::__private);
        let owned_of = |elem: &Type, span: Span| -> TokenStream {
            let elem = with_static_lifetimes(elem);
            quote_spanned!(span=> <#elem as #private::BorrowedKeyGate<_>>::Is)
        };
        let borrowed_gate = |elem: &Type, span: Span| -> TokenStream {
            let elem = with_static_lifetimes(elem);
            quote_spanned!(span=> <#elem as #private::BorrowedKeyGate<_>>)
        };
        // Errors point at the referent (`Client` of `&Client`): a stable span covers one token.
        let (setup, view, gated_owned, gate, span, referent) = match shape(&arg.ty) {
            Shape::Owned => {
                let span = arg.ty.span();
                let ty = with_static_lifetimes(&arg.ty);
                (
                    quote!(),
                    quote!(&#ident),
                    quote_spanned!(span=> <#ty as #private::KeyGate<_>>::Is),
                    quote_spanned!(span=> <#ty as #private::KeyGate<_>>),
                    span,
                    ty,
                )
            }
            Shape::Ref(elem) => {
                let span = elem.span();
                (
                    quote!(),
                    quote!(#ident),
                    owned_of(elem, span),
                    borrowed_gate(elem, span),
                    span,
                    with_static_lifetimes(elem),
                )
            }
            Shape::Cow(elem) => {
                let span = elem.span();
                (
                    quote!(),
                    quote!(&*#ident),
                    owned_of(elem, span),
                    borrowed_gate(elem, span),
                    span,
                    with_static_lifetimes(elem),
                )
            }
            Shape::OptionRef(elem) | Shape::OptionCow(elem) => {
                let span = elem.span();
                let option = match shape(&arg.ty) {
                    Shape::OptionCow(_) => quote!(#ident.as_deref()),
                    _ => quote!(#ident),
                };
                let owned = owned_of(elem, span);
                (
                    quote!(let #view_var = #private::OptionRef(#option);),
                    quote!(&#view_var),
                    quote_spanned!(span=> ::core::option::Option<#owned>),
                    borrowed_gate(elem, span),
                    span,
                    with_static_lifetimes(&arg.ty),
                )
            }
            Shape::SliceOfRefs(elem) | Shape::VecOfRefs(elem) => {
                let span = elem.span();
                let slice = match shape(&arg.ty) {
                    Shape::VecOfRefs(_) => quote!(#ident.as_slice()),
                    _ => quote!(#ident),
                };
                let owned = owned_of(elem, span);
                (
                    quote!(let #view_var = #private::SliceRef(#slice);),
                    quote!(&#view_var),
                    quote_spanned!(span=> ::cachemere::__private::SliceKey<#owned>),
                    borrowed_gate(elem, span),
                    span,
                    with_static_lifetimes(&arg.ty),
                )
            }
        };
        let remote_borrow = match &arg.ty {
            Type::Reference(_) => quote!(#ident),
            _ => quote!(&#ident),
        };
        let remote_gate = quote_spanned!(span=> <#referent as #private::RemoteKeyGate<_>>);
        parts.push(KeyPart {
            setup,
            view,
            gated_owned,
            gate,
            span,
            remote_borrow,
            remote_gate,
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

    /// The type of the key of `key = ...`.
    fn key_type(&self) -> TokenStream {
        match &self.options.key_type {
            Some(key_type) => {
                let ty = with_static_lifetimes(key_type);
                quote!(#ty)
            }
            None => quote!(::std::string::String),
        }
    }

    /// The stored type.
    fn stored(&self) -> TokenStream {
        let output = self.output();
        let policy = self.policy();
        let span = self.analysis.output.span();
        quote_spanned!(span=> <#policy as ::cachemere::__private::Policy<#output>>::Stored)
    }

    fn tag_count(&self) -> usize {
        self.options.tags.as_ref().map_or(0, Vec::len)
    }

    /// Whether the store is one of the built-in in-process stores, which share each value
    /// between threads (a user's store may lock it).
    fn shares_values(&self) -> bool {
        matches!(
            self.options.backend.as_ref().map(|b| &b.value),
            None | Some(BackendChoice::Memory | BackendChoice::Moka)
        )
    }

    /// The gates of the key's parts (`<T as Gate<_>>`), for the kind of cache.
    fn key_gates(&self) -> Vec<(Span, TokenStream)> {
        let remote = self.options.is_remote();
        // A near cache's local level is keyed as a memory cache is: its key passes both.
        let local = self.options.local.is_some();
        match (&self.options.key, &self.options.key_type) {
            (None, _) => self
                .key_parts
                .iter()
                .flat_map(|p| {
                    let remote_gate = remote.then(|| (p.span, p.remote_gate.clone()));
                    let gate = (!remote || local).then(|| (p.span, p.gate.clone()));
                    remote_gate.into_iter().chain(gate)
                })
                .collect(),
            (Some(_), Some(key_type)) => {
                let ty = with_static_lifetimes(key_type);
                let span = key_type.span();
                let remote_gate = remote.then(|| quote!(RemoteKeyGate));
                let gate = (!remote || local).then(|| quote!(KeyGate));
                remote_gate
                    .into_iter()
                    .chain(gate)
                    .map(|gate| {
                        (
                            span,
                            quote_spanned!(span=> <#ty as ::cachemere::__private::#gate<_>>),
                        )
                    })
                    .collect()
            }
            (Some(_), None) => Vec::new(),
        }
    }

    /// The gates of the stored value (`<T as Gate<_>>`), for the kind of cache.
    fn value_gates(&self) -> Vec<(Span, TokenStream)> {
        let stored = self.stored();
        let span = self.analysis.output.span();
        let mut gates = if self.options.is_remote() {
            vec![quote!(RemoteValueGate)]
        } else {
            vec![quote!(ValueGate)]
        };
        if !self.options.is_remote() && self.shares_values() {
            gates.push(quote!(SharedGate));
        }
        gates
            .into_iter()
            .map(|gate| {
                (
                    span,
                    quote_spanned!(span=> <::cachemere::__private::Check as ::cachemere::__private::#gate<#stored, _>>),
                )
            })
            .collect()
    }

    /// The key type as the cache is instantiated with: through the parts' gates.
    fn gated_key(&self) -> TokenStream {
        match (&self.options.key, &self.options.key_type) {
            (Some(_), Some(key_type)) => {
                let ty = with_static_lifetimes(key_type);
                quote_spanned!(key_type.span()=> <#ty as ::cachemere::__private::KeyGate<_>>::Is)
            }
            (Some(_), None) => quote!(::std::string::String),
            (None, _) => {
                let owned = self.key_parts.iter().map(|p| &p.gated_owned);
                quote!((#(#owned,)*))
            }
        }
    }

    /// The stored type as the cache is instantiated with: through the value's gates.
    fn gated_stored(&self) -> TokenStream {
        let span = self.analysis.output.span();
        let stored = self.stored();
        quote_spanned!(span=> <::cachemere::__private::Check as ::cachemere::__private::ValueGate<#stored, _>>::Is)
    }

    /// `cache` passed through every gate: if any fails, rustc reports it once and types the
    /// result as unknown, so nothing done with the cache reports again.
    fn gate_cache(&self, cache: TokenStream) -> TokenStream {
        let mut gated = cache;
        // Spanned whole, so that the same failure reported from every helper is one error.
        for (span, gate) in self.value_gates().into_iter().chain(self.key_gates()).rev() {
            gated = quote_spanned!(span=> #gate::pass(#gated));
        }
        gated
    }

    /// The expression of the cache, from the accessor at `path`.
    fn cache_expr(&self, path: &TokenStream) -> TokenStream {
        if self.options.is_remote() {
            return self.gate_cache(quote!(#path()));
        }
        let key = self.gated_key();
        let stored = self.gated_stored();
        let constructor = match self.options.backend.as_ref() {
            None => quote!(::cachemere::__private::memory_backend),
            Some(choice) => match &choice.value {
                BackendChoice::Memory => {
                    quote_spanned!(choice.span=> ::cachemere::__private::memory_backend)
                }
                BackendChoice::Moka => {
                    quote_spanned!(choice.span=> ::cachemere::__private::moka_backend)
                }
                BackendChoice::Custom(path) => quote_spanned!(path.span()=> #path),
                BackendChoice::Redis(_) | BackendChoice::Remote(_) => {
                    unreachable!("remote caches have their own accessor")
                }
            },
        };
        // A store sharing values between threads needs them `Sync`: its constructor goes through
        // that gate (the stored type already goes through the value's), so that the stored
        // type is gated once, not nested, and either failure is reported once.
        let constructor = if self.shares_values() {
            let span = self.analysis.output.span();
            let stored = self.stored();
            quote_spanned!(span=> <::cachemere::__private::Check as ::cachemere::__private::SharedGate<#stored, _>>::pass(#constructor))
        } else {
            constructor
        };
        let ttl_from = self.ttl_from();
        self.gate_cache(quote!(#path::<#key, #stored, _>(#constructor #ttl_from)))
    }

    /// The statements that bind the lookup key, and the expression of a reference to it.
    fn lookup(&self) -> (TokenStream, TokenStream) {
        let (key_var, lookup_var) = (local("__cachemere_key"), local("__cachemere_lookup"));
        match &self.options.key {
            Some(expr) => {
                let key_type = self.key_type();
                (
                    quote_spanned!(expr.span()=> let #key_var: #key_type = #expr;),
                    quote!(&#key_var),
                )
            }
            None => {
                let setups = self.key_parts.iter().map(|p| &p.setup);
                let views = self.key_parts.iter().map(|p| &p.view);
                (
                    quote! {
                        #(#setups)*
                        let #lookup_var = ::cachemere::__private::KeyRef((#(#views,)*));
                    },
                    quote!(&#lookup_var),
                )
            }
        }
    }

    /// After [`lookup`](Self::lookup): the statement binding the owned key, made on a miss.
    fn owned_key(&self) -> TokenStream {
        let key_var = local("__cachemere_key");
        match &self.options.key {
            Some(_) => quote!(),
            None => {
                // Each view through its part's gate, as the cache is: nothing is reported twice.
                let views = self.key_parts.iter().map(|p| {
                    let (gate, view) = (&p.gate, &p.view);
                    quote_spanned!(p.span=> #gate::pass(#view))
                });
                quote! {
                    let #key_var = (#(::cachemere::__private::KeyView::to_owned_key(#views),)*);
                }
            }
        }
    }

    /// The statement binding the tags: stamps for a memory cache, keys for a remote one.
    fn tags(&self) -> TokenStream {
        let tags_var = local("__cachemere_tags");
        let tags = self.options.tags.iter().flatten();
        if self.options.is_remote() {
            let tag_count = self.options.tags.as_ref().map_or(0, Vec::len);
            quote!(let #tags_var: [::std::string::String; #tag_count] = [#(::std::format!(#tags),)*];)
        } else {
            quote!(let #tags_var = [#(::cachemere::__private::TagStamp::of(::core::format_args!(#tags)),)*];)
        }
    }

    /// `<Policy as Policy<R>>::<function>`.
    fn policy_fn(&self, function: &str) -> TokenStream {
        let policy = self.policy();
        let output = self.output();
        let function = Ident::new(function, Span::call_site());
        quote!(<#policy as ::cachemere::__private::Policy<#output>>::#function)
    }

    /// The call of the function's body without the cache (`uncached`), with every argument.
    fn uncached_call(&self, uncached: &TokenStream) -> TokenStream {
        let args = self.function.sig.inputs.iter().map(|input| match input {
            FnArg::Receiver(receiver) => {
                let token = receiver.self_token;
                quote!(#token)
            }
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) => {
                    let ident = &pat.ident;
                    quote!(#ident)
                }
                other => quote!(#other),
            },
        });
        quote!(#uncached(#(#args),*))
    }

    /// The body of the function or of `call` / `refresh`: look up, and on a miss run the body.
    fn compute_body(
        &self,
        accessor: &TokenStream,
        uncached: &TokenStream,
        call: Call,
    ) -> TokenStream {
        if self.options.is_remote() {
            return self.remote_compute_body(accessor, uncached, call);
        }
        let cache_var = local("__cachemere_cache");
        let key_var = local("__cachemere_key");
        let tags_var = local("__cachemere_tags");
        let value_var = local("__cachemere_value");
        let (setup, lookup) = self.lookup();
        let owned_key = self.owned_key();
        let tags = self.tags();
        let keep = self.policy_fn("stored");
        let load = self.policy_fn("load");
        let compute = self.compute_expr(uncached, call);
        let fresh = self.options.runs_in_background();
        let (method, first) = match call {
            Call::Plain => (
                if fresh { "compute_fresh" } else { "compute" },
                quote! {
                    // The hit front when the key can be copied (see `__private::Lookup`).
                    #[allow(unused_imports)]
                    use ::cachemere::__private::{HitViaFront as _, HitViaStore as _};
                    if let ::core::option::Option::Some(#value_var) = (&#cache_var.probe(#lookup)).__cachemere_hit() {
                        return #load(#value_var);
                    }
                },
            ),
            Call::Observed => (
                if fresh {
                    "compute_fresh_observed"
                } else {
                    "compute_observed"
                },
                quote! {
                    if let ::core::option::Option::Some(#value_var) = #cache_var.get_observed(#lookup, #load) {
                        return #value_var;
                    }
                },
            ),
            Call::Refresh => ("refresh", quote!()),
        };
        let method = self.engine_method(method);
        let miss =
            self.miss_call(quote!(#cache_var.#method(#key_var, #tags_var, #keep, #load, #compute)));
        quote! {
            let #cache_var = #accessor;
            #setup
            #first
            #owned_key
            #tags
            #miss
        }
    }

    /// `name` or, for an `async fn`, `name_async`.
    fn engine_method(&self, name: &str) -> Ident {
        if self.is_async() {
            format_ident!("{name}_async")
        } else {
            Ident::new(name, Span::call_site())
        }
    }

    /// How the engine's miss call is finished: for an `async fn`, its future is boxed and
    /// awaited. The miss path's state (the body's future, single flight, the store) is many
    /// times the size of a hit's, and unboxed it would make the caller's future that large:
    /// every call, hits included, would move and zero it (measured: half a hit's
    /// instructions were that `memcpy`). One allocation on a miss instead.
    fn miss_call(&self, call: TokenStream) -> TokenStream {
        if self.is_async() {
            quote!(::std::boxed::Box::pin(#call).await)
        } else {
            call
        }
    }

    fn awaited(&self) -> TokenStream {
        if self.is_async() {
            quote!(.await)
        } else {
            quote!()
        }
    }

    /// What an engine runs on a miss: a closure, or (for an `async fn`) the body's future.
    /// With `stale_while_revalidate` or `timeout` a lookup's computation may run in the
    /// background: it owns copies of the arguments (`&T` as `T::Owned`, `&self` as a clone).
    fn compute_expr(&self, uncached: &TokenStream, call: Call) -> TokenStream {
        let owned = self.options.runs_in_background() && call != Call::Refresh;
        let (copies, call) = if owned {
            self.owned_uncached_call(uncached)
        } else {
            (quote!(), self.uncached_call(uncached))
        };
        let traced = self.trace_args();
        let compute = match (self.is_async(), traced, owned) {
            (true, None, false) => call,
            (true, None, true) => quote!(async move { #call.await }),
            (true, Some(traced), _) => quote!(async move { #traced #call.await }),
            (false, None, _) => quote!(move || #call),
            (false, Some(traced), _) => quote!(move || { #traced #call }),
        };
        if owned {
            quote!({ #copies #compute })
        } else {
            compute
        }
    }

    /// The statements making owned copies of the arguments (shadowing them), and the call of
    /// the body lending them.
    fn owned_uncached_call(&self, uncached: &TokenStream) -> (TokenStream, TokenStream) {
        let this = local("__cachemere_this");
        let mut copies = Vec::new();
        let args = self.function.sig.inputs.iter().map(|input| match input {
            FnArg::Receiver(receiver) => {
                let span = receiver.self_token.span;
                copies.push(quote_spanned! {span=>
                    let #this = ::core::clone::Clone::clone(self);
                });
                quote!(&#this)
            }
            FnArg::Typed(typed) => {
                let Pat::Ident(pat) = &*typed.pat else {
                    let other = &typed.pat;
                    return quote!(#other);
                };
                let ident = &pat.ident;
                match background(&typed.ty) {
                    Some(Background::Owned) => {
                        copies.push(quote_spanned! {typed.ty.span()=>
                            let #ident = ::std::borrow::ToOwned::to_owned(#ident);
                        });
                        quote!(::std::borrow::Borrow::borrow(&#ident))
                    }
                    // Moved (a borrowing type is refused by `sig`).
                    _ => quote!(#ident),
                }
            }
        });
        let args: Vec<TokenStream> = args.collect();
        (quote!(#(#copies)*), quote!(#uncached(#(#args),*)))
    }

    /// With `trace_args = true`: records the arguments that are not skipped in the span of
    /// the computation (each must be `Debug`; the error points at the one that is not).
    fn trace_args(&self) -> Option<TokenStream> {
        if !self
            .options
            .trace_args
            .as_ref()
            .is_some_and(|flag| flag.value)
        {
            return None;
        }
        let args = self
            .analysis
            .args
            .iter()
            .filter(|arg| !arg.skipped)
            .map(|arg| {
                let ident = &arg.ident;
                quote_spanned!(ident.span()=> &#ident as &dyn ::core::fmt::Debug)
            });
        Some(quote! {
            ::cachemere::__private::trace_args(&[#(#args),*]);
        })
    }

    /// For a remote cache: the statement before, and the expression of, what the key encodes.
    fn remote_arguments(&self) -> (TokenStream, TokenStream) {
        match &self.options.key {
            Some(expr) => {
                let key_var = local("__cachemere_key");
                let key_type = self.key_type();
                (
                    quote_spanned!(expr.span()=> let #key_var: #key_type = #expr;),
                    quote!(&#key_var),
                )
            }
            None => {
                let borrows = self.key_parts.iter().map(|p| &p.remote_borrow);
                (quote!(), quote!(&(#(#borrows,)*)))
            }
        }
    }

    /// The statements binding a remote cache and its arguments' key segment.
    fn remote_setup(&self, accessor: &TokenStream) -> TokenStream {
        let cache_var = local("__cachemere_cache");
        let arguments_var = local("__cachemere_arguments");
        let (setup, arguments) = self.remote_arguments();
        quote! {
            let #cache_var = #accessor;
            #setup
            let #arguments_var = #cache_var.arguments(#arguments);
        }
    }

    /// [`compute_body`](Self::compute_body) of a remote cache.
    fn remote_compute_body(
        &self,
        accessor: &TokenStream,
        uncached: &TokenStream,
        call: Call,
    ) -> TokenStream {
        let cache_var = local("__cachemere_cache");
        let arguments_var = local("__cachemere_arguments");
        let tags_var = local("__cachemere_tags");
        let keep = self.policy_fn("stored");
        let load = self.policy_fn("load");
        let tags = self.tags();
        let compute = self.compute_expr(uncached, call);
        let fresh = self.options.runs_in_background();
        let method = self.engine_method(match call {
            Call::Plain if fresh => "compute_fresh",
            Call::Plain => "compute",
            Call::Observed if fresh => "compute_fresh_observed",
            Call::Observed => "compute_observed",
            Call::Refresh => "refresh",
        });
        if self.options.local.is_none() {
            let setup = self.remote_setup(accessor);
            let miss = self.miss_call(quote!(#cache_var.#method(#arguments_var, ::core::option::Option::None, &#tags_var, #keep, #load, #compute)));
            return quote! {
                #setup
                #tags
                #miss
            };
        }
        // A near cache: its local level is keyed by the function's own key, as a memory cache
        // is, so a local hit is answered from the borrowed arguments before the key's text is
        // built or a tag formatted; a miss hands the owned key to the engine, which copies the
        // value it reads under it.
        let local_var = local("__cachemere_local");
        let key_var = local("__cachemere_key");
        let value_var = local("__cachemere_value");
        let (lookup_setup, lookup) = self.lookup();
        let owned_key = self.owned_key();
        let gated_key = self.gated_key();
        let first = match call {
            Call::Plain => quote! {
                if let ::core::option::Option::Some(#value_var) = #local_var.and_then(|l| l.get(#lookup)) {
                    return #load(#value_var);
                }
            },
            Call::Observed => quote! {
                if let ::core::option::Option::Some(#value_var) = #local_var.and_then(|l| l.get_written(#lookup)) {
                    return #cache_var.local_observed(#value_var, #load);
                }
            },
            Call::Refresh => quote!(),
        };
        let key_part = match &self.options.key {
            // Bound once, by `lookup`: the expression is evaluated once.
            Some(_) => quote!(&#key_var),
            None => self.remote_arguments().1,
        };
        let miss = self.miss_call(quote!(#cache_var.#method(#arguments_var, #local_var.map(|l| l.key(&#key_var)), &#tags_var, #keep, #load, #compute)));
        quote! {
            let #cache_var = #accessor;
            let #local_var = #cache_var.local::<#gated_key>();
            #lookup_setup
            #first
            #owned_key
            let #arguments_var = #cache_var.arguments(#key_part);
            #tags
            #miss
        }
    }

    /// The body of `set(<key args>, value)`.
    fn set_body(&self, accessor: &TokenStream, value: &Ident) -> TokenStream {
        let cache_var = local("__cachemere_cache");
        let tags_var = local("__cachemere_tags");
        let into_stored = self.policy_fn("into_stored");
        let tags = self.tags();
        let method = self.engine_method("set");
        let awaited = self.awaited();
        if self.options.is_remote() {
            let arguments_var = local("__cachemere_arguments");
            let setup = self.remote_setup(accessor);
            quote! {
                #setup
                #tags
                #cache_var.#method(#arguments_var, &#tags_var, #into_stored(#value))#awaited
            }
        } else {
            let key_var = local("__cachemere_key");
            let (setup, _) = self.lookup();
            let owned_key = self.owned_key();
            // A memory cache's `set` does not wait: the same call serves both forms.
            let method = Ident::new("set", Span::call_site());
            quote! {
                let #cache_var = #accessor;
                #setup
                #owned_key
                #tags
                #cache_var.#method(#key_var, #tags_var, #into_stored(#value))
            }
        }
    }

    /// The body of `peek(<key args>)`.
    fn peek_body(&self, accessor: &TokenStream) -> TokenStream {
        let cache_var = local("__cachemere_cache");
        let load = self.policy_fn("load");
        if self.options.is_remote() {
            let arguments_var = local("__cachemere_arguments");
            let tags_var = local("__cachemere_tags");
            let setup = self.remote_setup(accessor);
            let tags = self.tags();
            let method = self.engine_method("peek");
            let awaited = self.awaited();
            quote! {
                #setup
                #tags
                #cache_var.#method(#arguments_var, &#tags_var)#awaited.map(#load)
            }
        } else {
            let (setup, lookup) = self.lookup();
            quote! {
                let #cache_var = #accessor;
                #setup
                #cache_var.peek(#lookup).map(#load)
            }
        }
    }

    /// The body of `invalidate(<key args>)`.
    fn invalidate_body(&self, accessor: &TokenStream) -> TokenStream {
        if self.options.is_remote() {
            let (setup, arguments) = self.remote_arguments();
            let awaited = self.awaited();
            let method = self.engine_method("invalidate");
            let cache_var = local("__cachemere_cache");
            quote! {
                let #cache_var = #accessor;
                #setup
                #cache_var.#method(#cache_var.arguments(#arguments))#awaited
            }
        } else {
            let (setup, lookup) = self.lookup();
            let cache_var = local("__cachemere_cache");
            quote! {
                let #cache_var = #accessor;
                #setup
                #cache_var.invalidate(#lookup)
            }
        }
    }

    fn ttl(&self) -> TokenStream {
        optional_duration(self.options.ttl.as_ref(), "checked_ttl")
    }

    /// The freshness policy the attribute declares (`Freshness::new()` without options).
    fn freshness(&self) -> TokenStream {
        let options = self.options;
        let swr = optional_duration(options.stale_while_revalidate.as_ref(), "checked_duration");
        let sie = optional_duration(options.stale_if_error.as_ref(), "checked_duration");
        let timeout = optional_duration(options.timeout.as_ref(), "checked_duration");
        let jitter = optional_duration(options.jitter.as_ref(), "checked_duration");
        let idle = optional_duration(options.idle.as_ref(), "checked_duration");
        let retry_after = options.retry_after.as_ref().map(|retry_after| {
            let retry_after = duration(&retry_after.value, "checked_duration");
            quote!(.with_retry_after(#retry_after))
        });
        quote! {
            ::cachemere::Freshness::new()
                .with_stale_while_revalidate(#swr)
                .with_stale_if_error(#sie)
                .with_timeout(#timeout)
                .with_jitter(#jitter)
                .with_idle(#idle)
                #retry_after
        }
    }

    /// The argument a memory cache's accessor takes after the constructor for `ttl_from`
    /// (none without it: a hit passes the accessor nothing it does not need).
    fn ttl_from(&self) -> TokenStream {
        match &self.options.ttl_from {
            Some(ttl_from) => {
                let path = &ttl_from.value;
                quote_spanned! {path.span()=>
                    , #path as fn(&_) -> ::core::option::Option<::cachemere::__private::Duration>
                }
            }
            None => quote!(),
        }
    }

    /// The accessor: creates the cache in its slot on first use. Generic in the key, stored and
    /// backend types, which its callers give through the gates (see `cache_expr`), so its body
    /// is checked once under the bounds the cache needs and reports nothing for a misuse.
    fn accessor(&self, name: &Ident, config: &Ident, cache_name: TokenStream) -> TokenStream {
        if self.options.is_remote() {
            return self.remote_accessor(name, cache_name);
        }
        let slot_var = local("__CACHEMERE_SLOT");
        let config_var = local("__cachemere_config");
        let backend_var = local("__cachemere_backend");
        let tags = self.tag_count();
        let maxsize = match &self.options.maxsize {
            Some(maxsize) => {
                let value = maxsize.value;
                quote!(#value)
            }
            None => quote!(::cachemere::DEFAULT_MAXSIZE),
        };
        let ttl = self.ttl();
        let freshness = self.freshness();
        let single_flight = self.options.single_flight.as_ref().is_none_or(|f| f.value);
        let (k, v, b) = (
            format_ident!("__CachemereKey"),
            format_ident!("__CachemereStored"),
            format_ident!("__CachemereBackend"),
        );
        let ttl_from_var = local("__cachemere_ttl_from");
        let (ttl_from_param, init) = if self.options.ttl_from.is_some() {
            (
                quote!(#ttl_from_var: fn(&#v) -> ::core::option::Option<::cachemere::__private::Duration>,),
                quote! {
                    #slot_var.get_or_init_with((#backend_var, #ttl_from_var), |(#backend_var, #ttl_from_var)| {
                        let #config_var = Self::#config();
                        let #backend_var = #backend_var(&#config_var);
                        ::cachemere::__private::Cache::new(#config_var, #backend_var).with_ttl_from(#ttl_from_var)
                    })
                },
            )
        } else {
            (
                quote!(),
                quote! {
                    #slot_var.get_or_init_with(#backend_var, |#backend_var| {
                        let #config_var = Self::#config();
                        let #backend_var = #backend_var(&#config_var);
                        ::cachemere::__private::Cache::new(#config_var, #backend_var)
                    })
                },
            )
        };
        quote! {
            /// The cache's configuration (not generic, so that a `ttl` constant is evaluated
            /// when the crate is checked).
            #[doc(hidden)]
            fn #config() -> ::cachemere::__private::CacheConfig {
                ::cachemere::__private::CacheConfig::new(#cache_name)
                    .with_maxsize(#maxsize)
                    .with_ttl(#ttl)
                    .with_single_flight(#single_flight)
                    .with_freshness(#freshness)
            }

            #[doc(hidden)]
            #[inline]
            fn #name<#k, #v, #b>(
                #backend_var: fn(&::cachemere::__private::CacheConfig) -> #b,
                #ttl_from_param
            ) -> &'static ::cachemere::__private::Cache<#k, #v, #tags, #b>
            where
                #k: ::cachemere::__private::KeyPart,
                #v: ::cachemere::__private::CachedValue,
                #b: ::cachemere::Backend<#k, ::cachemere::__private::Entry<#v, #tags>>,
            {
                static #slot_var: ::cachemere::__private::CacheSlot = ::cachemere::__private::CacheSlot::new();
                #init
            }
        }
    }

    /// The accessor of a remote cache (`backend = "redis"` or `"remote"`).
    fn remote_accessor(&self, name: &Ident, cache_name: TokenStream) -> TokenStream {
        let slot_var = local("__CACHEMERE_SLOT");
        let stored = self.stored();
        let feature_check = match self.options.backend.as_ref().map(|b| &b.value) {
            Some(BackendChoice::Redis(span)) => {
                quote_spanned!(*span=> ::cachemere::__private::assert_redis_feature::<()>();)
            }
            Some(BackendChoice::Remote(span)) => {
                quote_spanned!(*span=> ::cachemere::__private::assert_remote_feature::<()>();)
            }
            _ => quote!(),
        };
        let ttl = self.ttl();
        let version = self.options.version.as_ref().map_or(1, |v| v.value);
        let with_remote = self.options.remote.as_ref().map(|remote| {
            let path = &remote.value;
            quote_spanned!(path.span()=> .with_remote(#path))
        });
        let single_flight = self.options.single_flight.as_ref().is_none_or(|f| f.value);
        let lock = self
            .options
            .lock
            .as_ref()
            .filter(|lock| lock.value)
            .map(|lock| quote_spanned!(lock.span=> .with_lock(true)));
        let freshness = self.freshness();
        let ttl_from = self.options.ttl_from.as_ref().map(|ttl_from| {
            let path = &ttl_from.value;
            quote_spanned!(path.span()=> .with_ttl_from(#path))
        });
        let local = self.options.local.as_ref().map(|local| {
            let duration = duration(&local.value, "checked_duration");
            let maxsize = self
                .options
                .maxsize
                .as_ref()
                .map_or(DEFAULT_LOCAL_MAXSIZE, |maxsize| maxsize.value)
                as usize;
            quote_spanned!(local.span=> .with_local(#duration, #maxsize))
        });
        quote! {
            #[doc(hidden)]
            #[inline]
            fn #name() -> &'static ::cachemere::__private::RemoteCache<#stored> {
                #feature_check
                static #slot_var: ::cachemere::__private::CacheSlot = ::cachemere::__private::CacheSlot::new();
                #slot_var.get_or_init(|| {
                    ::cachemere::__private::RemoteCache::new(#cache_name, #version, #ttl, #single_flight)
                        #with_remote
                        .with_freshness(#freshness)
                        #ttl_from
                        #lock
                        #local
                })
            }
        }
    }

    /// The parameters of a helper that takes the key's arguments (`invalidate`, `set`,
    /// `peek`): the receiver unless skipped, the arguments not skipped, and (`with_tagged`)
    /// skipped arguments a tag names. Lifetimes elided unless `keep_lifetimes`.
    fn key_params(&self, with_tagged: bool, keep_lifetimes: bool) -> Vec<TokenStream> {
        let tagged: Vec<String> = if with_tagged {
            self.options
                .tags
                .iter()
                .flatten()
                .flat_map(|tag| crate::sig::placeholders(&tag.value()))
                .filter_map(Result::ok)
                .collect()
        } else {
            Vec::new()
        };
        let receiver = self
            .analysis
            .receiver
            .as_ref()
            .filter(|r| !r.skipped)
            .map(|_| quote!(&self));
        let args = self
            .analysis
            .args
            .iter()
            .filter(|arg| !arg.skipped || tagged.iter().any(|name| arg.ident == name))
            .map(|arg| {
                let ident = &arg.ident;
                let ty = if keep_lifetimes {
                    arg.ty.clone()
                } else {
                    with_elided_lifetimes(&arg.ty)
                };
                quote!(#ident: #ty)
            });
        receiver.into_iter().chain(args).collect()
    }

    /// Every parameter of the function, `mut` removed (the body that might mutate them is
    /// `uncached`'s).
    fn all_params(&self) -> Vec<TokenStream> {
        self.function
            .sig
            .inputs
            .iter()
            .map(|input| match input {
                FnArg::Typed(typed) => {
                    let mut typed = typed.clone();
                    if let Pat::Ident(pat) = &mut *typed.pat {
                        pat.mutability = None;
                    }
                    typed.attrs.clear();
                    quote!(#typed)
                }
                receiver => quote!(#receiver),
            })
            .collect()
    }

    /// A name for `set`'s value that no argument has.
    fn value_param(&self) -> Ident {
        let taken = |name: &str| self.analysis.args.iter().any(|arg| arg.ident == name);
        let name = ["value", "new_value", "cached_value"]
            .into_iter()
            .find(|name| !taken(name))
            .unwrap_or("__cachemere_new_value");
        Ident::new(name, Span::call_site())
    }

    /// The helpers, named with `prefix`: `cache_info`, `cache_clear`, `invalidate`, `set`,
    /// `peek`, `refresh`, `call` and `uncached`.
    fn helpers(&self, prefix: &str, accessor: &TokenStream, uncached: &TokenStream) -> TokenStream {
        let vis = &self.function.vis;
        let sig = &self.function.sig;
        let fn_name = &sig.ident;
        let asyncness = sig.asyncness;
        let generics = &sig.generics;
        let where_clause = &sig.generics.where_clause;
        let output = &self.analysis.output;
        let name = |helper: &str| format_ident!("{prefix}{helper}");
        let (info, clear, invalidate) =
            (name("cache_info"), name("cache_clear"), name("invalidate"));
        let (set, peek, refresh, call) = (name("set"), name("peek"), name("refresh"), name("call"));
        let cache_config = name("cache_config");
        // The cache is bound first, here as in every helper: a gate's failure is then reported
        // the same way from each, as one error.
        let cache_var = local("__cachemere_cache");
        let clear_call = match (self.options.is_remote(), asyncness.is_some()) {
            (true, true) => quote!(let #cache_var = #accessor; #cache_var.clear_async().await),
            _ => quote!(let #cache_var = #accessor; #cache_var.clear()),
        };
        let invalidate_params = self.key_params(false, false);
        let invalidate_body = self.invalidate_body(accessor);
        let key_params = self.key_params(true, true);
        let value = self.value_param();
        let set_body = self.set_body(accessor, &value);
        let peek_body = self.peek_body(accessor);
        let all_params = self.all_params();
        let refresh_body = self.compute_body(accessor, uncached, Call::Refresh);
        let call_body = self.compute_body(accessor, uncached, Call::Observed);

        let info_doc = format!("Statistics of the cache of `{fn_name}`.");
        let config_doc = format!(
            "What the cache of `{fn_name}` was declared with (name, `maxsize`, TTL, single flight), e.g. for `cachemere::http::HttpCaching::new`."
        );
        let clear_doc = format!(
            "Removes every entry of the cache of `{fn_name}` and resets its statistics (as Python's `cache_clear()`); `Queued` if a remote store could not be reached (retried in the background)."
        );
        let invalidate_doc = format!(
            "Removes the entry of `{fn_name}` for these arguments (the skipped ones left out): `Removed` if there was one, `Absent` if not, `Queued` if a remote store could not be reached (retried in the background; this process does not serve the entry meanwhile)."
        );
        let set_doc = format!(
            "Stores `{value}` as the result of `{fn_name}` for these arguments, as if computed now (write-through), with the function's TTL and tags. A computation of these arguments already running does not store its older result over it. Only what `{fn_name}` would store is stored (`Ok`/`Some` unless `cache_err`/`cache_none`); anything else invalidates the entry instead (`NotStored`)."
        );
        let peek_doc = format!(
            "The fresh stored result of `{fn_name}` for these arguments, if any, without running it. Not counted as a hit or a miss."
        );
        let refresh_doc = format!(
            "Runs `{fn_name}` now, stores what it returns (as a miss would) and returns it, whether or not an entry was fresh. Callers of these arguments arriving meanwhile wait for this result. An `Err`/`None` is returned and leaves the entry as it was. Counted as a miss."
        );
        let call_doc = format!(
            "Calls `{fn_name}` and says how the call was answered: `status` (hit or miss) and the value's `age`, e.g. for `X-Cache` and `Age` headers."
        );
        quote! {
            #[doc = #info_doc]
            #[inline]
            #[allow(dead_code)]
            #vis fn #info() -> ::cachemere::CacheInfo {
                let #cache_var = #accessor;
                #cache_var.info()
            }

            #[doc = #config_doc]
            #[inline]
            #[allow(dead_code)]
            #vis fn #cache_config() -> ::cachemere::CacheConfig {
                let #cache_var = #accessor;
                #cache_var.cache_config()
            }

            #[doc = #clear_doc]
            #[inline]
            #[allow(dead_code)]
            #vis #asyncness fn #clear() -> ::cachemere::Invalidation {
                #clear_call
            }

            #[doc = #invalidate_doc]
            #[inline]
            #[allow(dead_code, unused_variables)]
            #vis #asyncness fn #invalidate(#(#invalidate_params),*) -> ::cachemere::Invalidation {
                #invalidate_body
            }

            #[doc = #set_doc]
            #[inline]
            #[allow(dead_code, unused_variables, clippy::too_many_arguments)]
            #vis #asyncness fn #set #generics(#(#key_params,)* #value: #output) -> ::cachemere::SetOutcome #where_clause {
                #set_body
            }

            #[doc = #peek_doc]
            #[inline]
            #[allow(dead_code, unused_variables, clippy::too_many_arguments)]
            #vis #asyncness fn #peek #generics(#(#key_params),*) -> ::core::option::Option<#output> #where_clause {
                #peek_body
            }

            #[doc = #refresh_doc]
            #[inline]
            #[allow(dead_code, clippy::too_many_arguments)]
            #vis #asyncness fn #refresh #generics(#(#all_params),*) -> #output #where_clause {
                #refresh_body
            }

            #[doc = #call_doc]
            #[inline]
            #[allow(dead_code, clippy::too_many_arguments)]
            #vis #asyncness fn #call #generics(#(#all_params),*) -> ::cachemere::Cached<#output> #where_clause {
                #call_body
            }
        }
    }

    /// The function's body without the cache, under `name`.
    fn uncached_fn(&self, name: &Ident) -> TokenStream {
        let function = self.function;
        let vis = &function.vis;
        let mut sig = function.sig.clone();
        sig.ident = name.clone();
        // An argument the body ignores is still used: it is part of the key.
        for input in &mut sig.inputs {
            if let FnArg::Typed(typed) = input
                && let Pat::Ident(pat) = &*typed.pat
                && (self.options.key.is_some()
                    || self
                        .analysis
                        .args
                        .iter()
                        .any(|arg| arg.ident == pat.ident && !arg.skipped))
            {
                typed
                    .attrs
                    .push(syn::parse_quote!(#[allow(unused_variables)]));
            }
        }
        let block = &function.block;
        let lints = function.attrs.iter().filter(|attr| is_lint(attr));
        let doc = format!(
            "Runs the body of `{}` without the cache: nothing is looked up, stored or counted (calls it makes to cached functions, itself included, are cached as usual).",
            function.sig.ident
        );
        quote! {
            #[doc = #doc]
            #(#lints)*
            #vis #sig #block
        }
    }

    /// The function's signature as the cached function has it: `mut` removed from its
    /// parameters (its body is `uncached`'s).
    fn cached_sig(&self) -> syn::Signature {
        let mut sig = self.function.sig.clone();
        for input in &mut sig.inputs {
            if let FnArg::Typed(typed) = input
                && let Pat::Ident(pat) = &mut *typed.pat
            {
                pat.mutability = None;
            }
        }
        sig
    }

    /// The function's attributes as the cached function has them: `expect(..)` lints become
    /// `allow(..)`, as the body they may be about is `uncached`'s.
    fn cached_attrs(&self) -> Vec<Attribute> {
        self.function
            .attrs
            .iter()
            .map(|attr| {
                let mut attr = attr.clone();
                if attr.path().is_ident("expect")
                    && let Meta::List(list) = &mut attr.meta
                {
                    list.path = syn::parse_quote_spanned!(list.path.span()=> allow);
                }
                attr
            })
            .collect()
    }

    /// A free function `f` gets a companion `enum f {}` whose associated functions are the
    /// helpers. A braced enum lives in the type namespace only, so it does not clash with the
    /// function, and sits in the function's own scope, so every type the function names
    /// (including types local to an enclosing function body) resolves the same way.
    fn free_function(&self) -> TokenStream {
        let function = self.function;
        let attrs = self.cached_attrs();
        let vis = &function.vis;
        let sig = self.cached_sig();
        let name = &sig.ident;
        let accessor_name = Ident::new("__cachemere_cache", Span::call_site());
        let cache_name = match &self.options.name {
            Some(lit) => quote!(#lit),
            None => {
                let text = name.to_string();
                quote!(::core::concat!(::core::module_path!(), "::", #text))
            }
        };
        let config_name = Ident::new("__cachemere_config", Span::call_site());
        let accessor = self.accessor(&accessor_name, &config_name, cache_name);
        let uncached_name = Ident::new("uncached", Span::call_site());
        let body = self.compute_body(
            &self.cache_expr(&quote!(#name::#accessor_name)),
            &quote!(#name::#uncached_name),
            Call::Plain,
        );
        let helpers = self.helpers(
            "",
            &self.cache_expr(&quote!(Self::#accessor_name)),
            &quote!(Self::#uncached_name),
        );
        let uncached = self.uncached_fn(&uncached_name);
        let companion_doc = format!(
            "Cache helpers generated by `#[cached]` for the function `{name}`: \
             `{name}::cache_info()`, `cache_config()`, `cache_clear()`, `invalidate(..)`, `set(.., value)`, \
             `peek(..)`, `refresh(..)`, `call(..)` and `uncached(..)`."
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

                #uncached
            }

            #(#attrs)*
            #vis #sig {
                #body
            }
        }
    }

    fn method(&self) -> TokenStream {
        let attrs = self.cached_attrs();
        let vis = &self.function.vis;
        let sig = self.cached_sig();
        let name = &sig.ident;
        let accessor_name = format_ident!("__cachemere_{}_cache", name);
        let cache_name = match &self.options.name {
            Some(lit) => quote!(#lit),
            None => {
                let text = name.to_string();
                quote!(::cachemere::__private::method_cache_name(::core::any::type_name::<Self>(), #text))
            }
        };
        let config_name = format_ident!("__cachemere_{}_config", name);
        let accessor = self.accessor(&accessor_name, &config_name, cache_name);
        let uncached_name = format_ident!("{name}_uncached");
        let body = self.compute_body(
            &self.cache_expr(&quote!(Self::#accessor_name)),
            &quote!(Self::#uncached_name),
            Call::Plain,
        );
        let helpers = self.helpers(
            &format!("{name}_"),
            &self.cache_expr(&quote!(Self::#accessor_name)),
            &quote!(Self::#uncached_name),
        );
        let uncached = self.uncached_fn(&uncached_name);
        quote! {
            #accessor

            #(#attrs)*
            #vis #sig {
                #body
            }

            #helpers

            #uncached
        }
    }
}

/// Which entry point a body serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// The function itself.
    Plain,
    /// `call`: with the status and age.
    Observed,
    /// `refresh`: computes whatever is stored.
    Refresh,
}

/// Whether an attribute is a lint level (`allow`, `warn`, `deny`, `forbid`, `expect`), which
/// the body in `uncached` needs too.
fn is_lint(attr: &Attribute) -> bool {
    ["allow", "warn", "deny", "forbid", "expect"]
        .iter()
        .any(|lint| attr.path().is_ident(lint))
}

/// A duration option's value as a `Duration` expression; a constant one is checked when the
/// crate is compiled, by `__private::<check>` (which names the option in its error).
fn duration(duration: &Duration, check: &str) -> TokenStream {
    match duration {
        Duration::Millis(ms) => quote!(::cachemere::__private::Duration::from_millis(#ms)),
        Duration::Const(expr) => {
            let check = Ident::new(check, expr.span());
            quote_spanned! {expr.span()=>
                const { ::cachemere::__private::#check(#expr) }
            }
        }
    }
}

/// An optional duration option as an `Option<Duration>` expression (see [`duration`]).
/// How many copies a near cache (`local`) keeps without `maxsize`.
const DEFAULT_LOCAL_MAXSIZE: u64 = 10_000;

fn optional_duration(option: Option<&At<Duration>>, check: &str) -> TokenStream {
    match option {
        Some(at) => {
            let duration = duration(&at.value, check);
            quote!(::core::option::Option::Some(#duration))
        }
        None => quote!(::core::option::Option::None),
    }
}
