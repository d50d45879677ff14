//! Validating the annotated function and extracting what generation needs.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::{FnArg, GenericParam, Ident, ItemFn, Pat, ReturnType, Type};

use crate::attr::{Errors, Options};
use crate::context::Place;
use crate::shape::{Shape, background, borrows_elsewhere, shape};

/// One named argument of the function.
pub(crate) struct Arg {
    pub(crate) ident: Ident,
    pub(crate) ty: Type,
    /// Whether `skip(..)` names it.
    pub(crate) skipped: bool,
}

/// How results are stored.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReturnKind {
    Option,
    Result,
    Other,
}

/// The facts about the function that generation needs.
pub(crate) struct Analysis {
    pub(crate) receiver: Option<Receiver>,
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Type,
    pub(crate) return_kind: ReturnKind,
    /// Inside an `impl` block: it has a receiver or mentions `Self`.
    pub(crate) is_method: bool,
}

/// A `&self` receiver.
pub(crate) struct Receiver {
    pub(crate) span: Span,
    /// Whether `skip(self)` names it.
    pub(crate) skipped: bool,
}

pub(crate) fn analyze(function: &ItemFn, options: &Options, place: Place) -> syn::Result<Analysis> {
    let mut errors = Errors::default();
    let sig = &function.sig;

    if place == Place::TraitImpl {
        let name = &sig.ident;
        return Err(syn::Error::new(
            name.span(),
            format!(
                "`#[cached]` cannot go on a method of a trait or a trait impl: its helpers \
                 (`{name}_cache_info`, `{name}_invalidate`, ...) would not be members of the trait; \
                 put `#[cached]` on an inherent method or a free function, and call it from `{name}`"
            ),
        ));
    }

    if let Some(constness) = &sig.constness {
        errors.at(
            constness.span,
            "`#[cached]` cannot make a `const fn` cached; remove `const`",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(
            variadic.span(),
            "`#[cached]` does not support variadic functions",
        );
    }
    for param in &sig.generics.params {
        match param {
            GenericParam::Lifetime(_) => {}
            other => errors.at(
                other.span(),
                "`#[cached]` does not support generic functions: each cached function has one \
                 cache of one key and value type; write a concrete function for each type \
                 (it may call a generic one)",
            ),
        }
    }

    let skipped: Vec<&Ident> = options.skip.iter().flatten().collect();
    let mut receiver = None;
    let mut args = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(recv) => {
                let is_shared_ref = recv.reference.is_some()
                    && recv.mutability.is_none()
                    && recv.colon_token.is_none();
                if !is_shared_ref {
                    errors.at(
                        recv.span(),
                        "a cached method takes `&self`: a hit skips the body, so the method must \
                         not consume or mutate its receiver",
                    );
                }
                receiver = Some(Receiver {
                    span: recv.self_token.span,
                    skipped: skipped.iter().any(|s| *s == "self"),
                });
            }
            FnArg::Typed(typed) => {
                let ident = match &*typed.pat {
                    Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {
                        pat.ident.clone()
                    }
                    other => {
                        errors.at(
                            other.span(),
                            "a cached function's arguments must be plain names (`id: u64`), not patterns, \
                             so they can be named in keys, tags and `skip(..)`",
                        );
                        continue;
                    }
                };
                check_argument_type(&typed.ty, &mut errors);
                let skipped = skipped.iter().any(|s| **s == ident);
                if !skipped
                    && options.key.is_none()
                    && matches!(shape(&typed.ty), Shape::Owned)
                    && borrows_elsewhere(&typed.ty)
                {
                    errors.at(
                        typed.ty.span(),
                        format!(
                            "`{ident}` is part of the key, and a key owns its parts, but this type borrows: \
                             take an owned type, or one of `&T`, `Cow<T>`, `Option<&T>`, \
                             `Option<Cow<T>>`, `&[&T]` or `Vec<&T>` (looked up borrowed, owned on \
                             a miss), or leave it out of the key with `skip({ident})`"
                        ),
                    );
                }
                args.push(Arg {
                    ident,
                    ty: (*typed.ty).clone(),
                    skipped,
                });
            }
        }
    }

    for name in &skipped {
        let known = if *name == "self" {
            receiver.is_some()
        } else {
            args.iter().any(|arg| arg.ident == **name)
        };
        if !known {
            errors.at(
                name.span(),
                format!(
                    "`skip({name})` names no argument; the arguments are: {}",
                    arg_names(&receiver, &args)
                ),
            );
        }
    }
    if let (Some(key_type), None) = (&options.key_type, &options.key) {
        errors.at(key_type.span(), "`key_type` goes with `key = <expression>`; add the key expression or remove `key_type`");
    }
    if let (Some(flag), Some(_)) = (&options.trace_args, &options.key)
        && flag.value
    {
        errors.at(
            flag.span(),
            "`trace_args` records the key's arguments, and with `key = <expression>` the arguments are not the key (recording them could log what the key leaves out); remove `trace_args`, and record what you need inside the function with `tracing`",
        );
    }

    for tag in options.tags.iter().flatten() {
        for placeholder in placeholders(&tag.value()) {
            match placeholder {
                Ok(name) if args.iter().any(|arg| arg.ident == name) => {}
                Ok(name) => errors.at(
                    tag.span(),
                    format!(
                        "`{{{name}}}` in this tag names no argument; the arguments are: {}",
                        arg_names(&None, &args)
                    ),
                ),
                Err(message) => errors.at(tag.span(), message),
            }
        }
    }

    let output = match &sig.output {
        ReturnType::Default => syn::parse_quote!(()),
        ReturnType::Type(_, ty) => (**ty).clone(),
    };
    match &output {
        Type::Reference(reference) => errors.at(
            reference.span(),
            "a cached function returns an owned value, cloned on every hit: return `T` \
             (or `Arc<T>` to share a large value) instead of a reference",
        ),
        Type::ImplTrait(impl_trait) => errors.at(
            impl_trait.span(),
            "a cached function cannot return `impl Trait`: the cache must name the stored type; return a concrete type",
        ),
        _ => {}
    }
    let return_kind = return_kind(&output);
    if let Some(flag) = &options.cache_none
        && return_kind != ReturnKind::Option
    {
        {
            errors.at(
                flag.span,
                "`cache_none` applies to functions returning `Option<..>`; remove it",
            );
        }
    }
    if let Some(flag) = &options.cache_err
        && return_kind != ReturnKind::Result
    {
        {
            errors.at(
                flag.span,
                "`cache_err` applies to functions returning `Result<..>`; remove it",
            );
        }
    }

    // In an inherent `impl`, an associated function without `self` is one too: its helpers
    // are associated functions beside it (`Type::f_cache_info()`).
    let is_method = place == Place::Inherent || receiver.is_some() || mentions_self(function);
    check_remote_options(options, is_method, &mut errors);
    check_freshness_options(
        options,
        sig.asyncness.is_some(),
        (&receiver, &args),
        return_kind,
        &mut errors,
    );
    errors.finish()?;
    Ok(Analysis {
        receiver,
        args,
        output,
        return_kind,
        is_method,
    })
}

fn arg_names(receiver: &Option<Receiver>, args: &[Arg]) -> String {
    let mut names: Vec<String> = receiver.iter().map(|_| "self".to_owned()).collect();
    names.extend(args.iter().map(|arg| arg.ident.to_string()));
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

fn check_argument_type(ty: &Type, errors: &mut Errors) {
    struct Finder<'e> {
        errors: &'e mut Errors,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type_impl_trait(&mut self, node: &'ast syn::TypeImplTrait) {
            self.errors.at(
                node.span(),
                "a cached function cannot take `impl Trait` arguments: the key needs a concrete type; \
                 take a concrete type instead (e.g. `&str` rather than `impl AsRef<str>`)",
            );
        }
        fn visit_type_reference(&mut self, node: &'ast syn::TypeReference) {
            if node.mutability.is_some() {
                self.errors.at(
                    node.span(),
                    "a cached function cannot take `&mut` arguments: a hit would skip the mutation; \
                     take `&T` or an owned value",
                );
            }
            syn::visit::visit_type_reference(self, node);
        }
    }
    Finder { errors }.visit_type(ty);
}

/// The `{name}` placeholders of a tag template, or why one cannot be read.
pub(crate) fn placeholders(template: &str) -> Vec<Result<String, String>> {
    let mut found = Vec::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
            }
            '{' => {
                let mut name = String::new();
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '}' {
                        closed = true;
                        break;
                    }
                    name.push(c);
                }
                let valid = closed
                    && !name.is_empty()
                    && name != "self"
                    && name.chars().all(|c| c.is_alphanumeric() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                found.push(if valid {
                    Ok(name)
                } else {
                    Err(format!(
                        "cannot read `{{{name}` in this tag: write `{{argument}}` to insert an argument \
                         (by Display), or `{{{{` and `}}}}` for literal braces"
                    ))
                });
            }
            '}' => found.push(Err(
                "unmatched `}` in this tag: write `}}` for a literal brace".to_owned(),
            )),
            _ => {}
        }
    }
    found
}

fn return_kind(output: &Type) -> ReturnKind {
    let Type::Path(path) = output else {
        return ReturnKind::Other;
    };
    if path.qself.is_some() {
        return ReturnKind::Other;
    }
    match path
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .as_deref()
    {
        Some("Option") => ReturnKind::Option,
        Some("Result") => ReturnKind::Result,
        _ => ReturnKind::Other,
    }
}

fn mentions_self(function: &ItemFn) -> bool {
    struct SelfFinder(bool);
    impl<'ast> Visit<'ast> for SelfFinder {
        fn visit_ident(&mut self, ident: &'ast Ident) {
            if ident == "Self" {
                self.0 = true;
            }
        }
    }
    let mut finder = SelfFinder(false);
    finder.visit_signature(&function.sig);
    finder.0
}

/// Options that only make sense for one kind of backend.
fn check_remote_options(options: &Options, is_method: bool, errors: &mut Errors) {
    if options.is_remote() {
        if let (Some(maxsize), None) = (&options.maxsize, &options.local) {
            errors.at(
                maxsize.span,
                "a remote cache is bounded by its `ttl` and the store's memory policy, not by \
                 `maxsize`; remove `maxsize` (and give a `ttl`), or add `local = \"30s\"` to \
                 keep up to `maxsize` copies in this process",
            );
        }
        if let (Some(lock), Some(single_flight)) = (&options.lock, &options.single_flight)
            && lock.value
            && !single_flight.value
        {
            errors.at(
                lock.span,
                "`lock = true` extends single flight across processes and needs it within the \
                 process (so that a recursive call never waits for its own lease): remove \
                 `single_flight = false`, or `lock`",
            );
        }
        if is_method && options.name.is_none() {
            let span = options
                .backend
                .as_ref()
                .map_or_else(Span::call_site, |b| b.span);
            errors.at(
                span,
                "a method with a remote backend needs a stable cache name, shared by every \
                 process: add `name = \"...\"` (type names are not stable across builds)",
            );
        }
    } else {
        if let Some(version) = &options.version {
            errors.at(
                version.span,
                "`version` names a key space in a remote store; it goes with backend = \"redis\" \
                 or \"remote\": remove it, or choose a remote backend",
            );
        }
        if let Some(remote) = &options.remote {
            errors.at(
                remote.span,
                "`remote` chooses the store of a remote cache; it goes with backend = \"redis\" \
                 or \"remote\": remove it, or choose a remote backend",
            );
        }
        if let Some(local) = &options.local {
            errors.at(
                local.span,
                "`local` keeps in-process copies of a remote cache's entries (a near cache); an \
                 in-memory cache is local already: remove it, or choose backend = \"redis\" or \
                 \"remote\"",
            );
        }
        if let Some(lock) = &options.lock {
            errors.at(
                lock.span,
                "`lock` makes processes that share a remote store compute a key once, through a \
                 lease in that store; it goes with backend = \"redis\" or \"remote\" (an \
                 in-memory cache has single flight already): remove it, or choose a remote backend",
            );
        }
    }
}

/// The freshness options: what each needs, and the signature a background computation needs.
fn check_freshness_options(
    options: &Options,
    is_async: bool,
    (receiver, args): (&Option<Receiver>, &[Arg]),
    return_kind: ReturnKind,
    errors: &mut Errors,
) {
    if options.ttl.is_none() {
        let windows = [
            (&options.stale_while_revalidate, "stale_while_revalidate"),
            (&options.stale_if_error, "stale_if_error"),
            (&options.jitter, "jitter"),
        ];
        for (option, name) in windows {
            if let Some(option) = option {
                errors.at(
                    option.span,
                    format!("`{name}` counts from the end of an entry's TTL: add `ttl = ...`"),
                );
            }
        }
    }
    if let Some(idle) = &options.idle {
        let fixed = [
            (&options.stale_while_revalidate, "stale_while_revalidate"),
            (&options.stale_if_error, "stale_if_error"),
            (&options.jitter, "jitter"),
        ];
        for (option, name) in fixed {
            if option.is_some() {
                errors.at(
                    idle.span,
                    format!(
                        "`idle` renews an entry on every read, and `{name}` counts from a fixed \
                         expiry: use one of them (give `ttl` to cap how long a read-often entry \
                         lives)"
                    ),
                );
            }
        }
    }
    if let (Some(retry_after), None) = (&options.retry_after, &options.stale_if_error) {
        errors.at(
            retry_after.span,
            "`retry_after` says how long `stale_if_error` serves the stale value before a failed \
             key is retried: add `stale_if_error = ...`, or remove `retry_after`",
        );
    }
    if let Some(timeout) = &options.timeout {
        if !is_async {
            errors.at(
                timeout.span,
                "`timeout` applies to `async fn`s: a sync call cannot return before its \
                 computation ends; make the function `async`, or remove `timeout`",
            );
        } else if options.stale_if_error.is_none() {
            errors.at(
                timeout.span,
                "`timeout` answers a slow recomputation with the stale value that \
                 `stale_if_error` keeps: add `stale_if_error = ...`",
            );
        }
    }
    if let Some(stale_if_error) = &options.stale_if_error {
        let keeps_failures = |flag: &Option<syn::LitBool>| flag.as_ref().is_some_and(|f| f.value);
        let can_fail = match return_kind {
            ReturnKind::Result => !keeps_failures(&options.cache_err),
            ReturnKind::Option => !keeps_failures(&options.cache_none),
            ReturnKind::Other => false,
        };
        if !can_fail {
            errors.at(
                stale_if_error.span,
                "`stale_if_error` answers with the last value when a recomputation returns \
                 `Err` or `None`, and every result of this function is stored (it returns \
                 neither `Result` nor `Option`, or `cache_err`/`cache_none` stores its failures); \
                 return `Result<T, E>` or `Option<T>`, or remove `stale_if_error`",
            );
        }
    }
    // The option that makes the function run in the background, named in the errors.
    let in_background = match (&options.stale_while_revalidate, &options.timeout) {
        (Some(_), _) => Some("stale_while_revalidate"),
        (None, Some(_)) if is_async => Some("timeout"),
        _ => None,
    };
    if let Some(option) = in_background {
        if let Some(receiver) = receiver
            && receiver.skipped
        {
            errors.at(
                receiver.span,
                format!(
                    "with `{option}` the function may run in the background, on its own clone \
                     of `self`; with `skip(self)` the entry does not say which receiver computed \
                     it: keep `self` in the key, or make this an associated function taking what \
                     it needs"
                ),
            );
        }
        for arg in args {
            if background(&arg.ty).is_none() {
                errors.at(
                    arg.ty.span(),
                    format!(
                        "with `{option}` the function may run in the background, after this \
                         call returns, on owned copies of its arguments; `{}` borrows in a way \
                         that cannot be copied: take an owned type or a plain `&T`",
                        arg.ident
                    ),
                );
            }
        }
    }
}
