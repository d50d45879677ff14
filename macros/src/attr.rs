//! Parsing `#[cached(...)]` options into one typed struct, collecting every error.

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Expr, ExprLit, Ident, Lit, LitBool, LitStr, Path, Token, Type, bracketed, parenthesized,
};

mod kw {
    syn::custom_keyword!(ttl);
    syn::custom_keyword!(maxsize);
    syn::custom_keyword!(tags);
    syn::custom_keyword!(key);
    syn::custom_keyword!(key_type);
    syn::custom_keyword!(skip);
    syn::custom_keyword!(name);
    syn::custom_keyword!(backend);
    syn::custom_keyword!(cache_none);
    syn::custom_keyword!(cache_err);
    syn::custom_keyword!(single_flight);
    syn::custom_keyword!(lock);
    syn::custom_keyword!(trace_args);
    syn::custom_keyword!(version);
    syn::custom_keyword!(remote);
    syn::custom_keyword!(stale_while_revalidate);
    syn::custom_keyword!(stale_if_error);
    syn::custom_keyword!(retry_after);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(ttl_from);
    syn::custom_keyword!(idle);
    syn::custom_keyword!(local);
}

/// The options written in `#[cached(...)]`, each with the span of the option for errors.
#[derive(Default)]
pub(crate) struct Options {
    pub(crate) ttl: Option<At<Duration>>,
    pub(crate) maxsize: Option<At<u64>>,
    pub(crate) tags: Option<Vec<LitStr>>,
    pub(crate) key: Option<Expr>,
    pub(crate) key_type: Option<Type>,
    pub(crate) skip: Option<Vec<Ident>>,
    pub(crate) name: Option<LitStr>,
    pub(crate) backend: Option<At<BackendChoice>>,
    pub(crate) cache_none: Option<LitBool>,
    pub(crate) cache_err: Option<LitBool>,
    pub(crate) single_flight: Option<LitBool>,
    /// `lock = true`: single flight across processes, through a lease in the remote store.
    pub(crate) lock: Option<LitBool>,
    /// `trace_args = true`: the arguments' `Debug` form is recorded in each computation's span.
    pub(crate) trace_args: Option<LitBool>,
    pub(crate) version: Option<At<u32>>,
    /// `remote = path`: a `fn() -> cachemere::remote::Remote` choosing the store.
    pub(crate) remote: Option<At<Path>>,
    /// After the TTL, serve the entry this long while one background refresh runs.
    pub(crate) stale_while_revalidate: Option<At<Duration>>,
    /// After the TTL, keep the entry this long to serve when a recomputation fails.
    pub(crate) stale_if_error: Option<At<Duration>>,
    /// After a failure, how long the stale value is served before the key is retried.
    pub(crate) retry_after: Option<At<Duration>>,
    /// (`async fn`) how long a recomputation may take while a stale value waits.
    pub(crate) timeout: Option<At<Duration>>,
    /// Each entry's TTL is extended by a random amount up to this.
    pub(crate) jitter: Option<At<Duration>>,
    /// `ttl_from = path`: a `fn(&T) -> Option<Duration>` giving a value's own TTL.
    pub(crate) ttl_from: Option<At<Path>>,
    /// Sliding expiry: an entry not read for this long expires.
    pub(crate) idle: Option<At<Duration>>,
    /// (Remote caches) a near cache: copies of entries kept in the process for at most this
    /// long, coherent through the store's change feed.
    pub(crate) local: Option<At<Duration>>,
}

impl Options {
    /// Whether a call may run in the background (stale-while-revalidate, a soft timeout): the
    /// computation then owns copies of the arguments.
    pub(crate) fn runs_in_background(&self) -> bool {
        self.stale_while_revalidate.is_some() || self.timeout.is_some()
    }

    /// Whether entries live in a remote store (`"redis"` or `"remote"`).
    pub(crate) fn is_remote(&self) -> bool {
        matches!(
            self.backend.as_ref().map(|b| &b.value),
            Some(BackendChoice::Redis(_) | BackendChoice::Remote(_))
        )
    }
}

/// A duration option's value.
pub(crate) enum Duration {
    /// A literal: milliseconds.
    Millis(u64),
    /// A constant expression of type `std::time::Duration` (`CONFIG_TTL`,
    /// `Duration::from_secs(5 * 60)`), evaluated at compile time.
    Const(Box<Expr>),
}

/// A value and where it was written.
pub(crate) struct At<T> {
    pub(crate) value: T,
    pub(crate) span: Span,
}

/// Where entries live.
pub(crate) enum BackendChoice {
    Memory,
    Moka,
    /// A function `fn(&CacheConfig) -> impl Backend<K, V>`.
    Custom(Path),
    /// Redis through the default remote (feature `redis`); the span of the string.
    Redis(Span),
    /// Whatever remote store is installed as the default (feature `remote`).
    Remote(Span),
}

/// The most tags one function may carry: each is read with every lookup (a remote read
/// carries one key per tag; remote frames hold up to 65,533).
const MOST_TAGS: usize = 1024;

const OPTIONS: &str = "ttl, maxsize, tags, key, key_type, skip, name, backend, version, remote, cache_none, cache_err, single_flight, lock, trace_args, stale_while_revalidate, stale_if_error, retry_after, timeout, jitter, ttl_from, idle, local";

/// The errors met so far, combined into one.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub(crate) fn at(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

impl Parse for Options {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut options = Options::default();
        let mut errors = Errors::default();
        while !input.is_empty() {
            options.parse_one(input, &mut errors)?;
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        errors.finish()?;
        Ok(options)
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, span: Span, option: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.at(span, format!("duplicate `{option}` option: give it once"));
    } else {
        *slot = Some(value);
    }
}

impl Options {
    fn parse_one(&mut self, input: ParseStream<'_>, errors: &mut Errors) -> syn::Result<()> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::ttl_from) {
            let span = input.parse::<kw::ttl_from>()?.span;
            let value = match parse_value(input)? {
                Expr::Group(group) => *group.expr,
                other => other,
            };
            match value {
                Expr::Path(path) if path.qself.is_none() => set_once(
                    &mut self.ttl_from,
                    At {
                        value: path.path,
                        span,
                    },
                    span,
                    "ttl_from",
                    errors,
                ),
                other => errors.at(
                    other.span(),
                    "`ttl_from` names a function `fn(&T) -> Option<std::time::Duration>` giving a stored value's own TTL, e.g. ttl_from = token_lifetime",
                ),
            }
        } else if lookahead.peek(kw::ttl) {
            let span = input.parse::<kw::ttl>()?.span;
            let value = parse_value(input)?;
            if let Some(ttl) = duration(value, "ttl", errors) {
                set_once(&mut self.ttl, At { value: ttl, span }, span, "ttl", errors);
            }
        } else if let Some((slot, name, span)) = self.duration_option(input, &lookahead)? {
            let value = parse_value(input)?;
            if let Some(value) = duration(value, name, errors) {
                set_once(slot, At { value, span }, span, name, errors);
            }
        } else if lookahead.peek(kw::maxsize) {
            let span = input.parse::<kw::maxsize>()?.span;
            let value = parse_value(input)?;
            if let Some(maxsize) = positive_int(&value, "maxsize", "maxsize = 1000", errors) {
                set_once(
                    &mut self.maxsize,
                    At {
                        value: maxsize,
                        span,
                    },
                    span,
                    "maxsize",
                    errors,
                );
            }
        } else if lookahead.peek(kw::tags) {
            let span = input.parse::<kw::tags>()?.span;
            input.parse::<Token![=]>()?;
            let content;
            bracketed!(content in input);
            let tags = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
            let mut literals = Vec::new();
            for tag in tags {
                match tag {
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(lit), ..
                    }) => literals.push(lit),
                    other => errors.at(
                        other.span(),
                        "a tag is a string literal, e.g. tags = [\"users\", \"user:{id}\"]",
                    ),
                }
            }
            if let Some(extra) = literals.get(MOST_TAGS) {
                errors.at(
                    extra.span(),
                    format!(
                        "at most {MOST_TAGS} tags per function: every tag is read with every \
                         entry; tag a group of entries with one tag instead"
                    ),
                );
            }
            set_once(&mut self.tags, literals, span, "tags", errors);
        } else if lookahead.peek(kw::key_type) {
            let span = input.parse::<kw::key_type>()?.span;
            input.parse::<Token![=]>()?;
            let ty: Type = input.parse()?;
            set_once(&mut self.key_type, ty, span, "key_type", errors);
        } else if lookahead.peek(kw::key) {
            let span = input.parse::<kw::key>()?.span;
            input.parse::<Token![=]>()?;
            let expr: Expr = input.parse()?;
            set_once(&mut self.key, expr, span, "key", errors);
        } else if lookahead.peek(kw::skip) {
            let span = input.parse::<kw::skip>()?.span;
            let content;
            parenthesized!(content in input);
            let names =
                Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
            set_once(
                &mut self.skip,
                names.into_iter().collect(),
                span,
                "skip",
                errors,
            );
        } else if lookahead.peek(kw::name) {
            let span = input.parse::<kw::name>()?.span;
            let value = parse_value(input)?;
            match value {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                }) if !lit.value().is_empty() => {
                    set_once(&mut self.name, lit, span, "name", errors)
                }
                other => errors.at(
                    other.span(),
                    "`name` is a non-empty string, e.g. name = \"users\"",
                ),
            }
        } else if lookahead.peek(kw::backend) {
            let span = input.parse::<kw::backend>()?.span;
            let value = parse_value(input)?;
            if let Some(choice) = backend_choice(value, errors) {
                set_once(
                    &mut self.backend,
                    At {
                        value: choice,
                        span,
                    },
                    span,
                    "backend",
                    errors,
                );
            }
        } else if lookahead.peek(kw::remote) {
            let span = input.parse::<kw::remote>()?.span;
            let value = match parse_value(input)? {
                Expr::Group(group) => *group.expr,
                other => other,
            };
            match value {
                Expr::Path(path) if path.qself.is_none() => set_once(
                    &mut self.remote,
                    At {
                        value: path.path,
                        span,
                    },
                    span,
                    "remote",
                    errors,
                ),
                other => errors.at(
                    other.span(),
                    "`remote` names a function `fn() -> cachemere::remote::Remote`, e.g. remote = sessions_redis",
                ),
            }
        } else if lookahead.peek(kw::version) {
            let span = input.parse::<kw::version>()?.span;
            let value = parse_value(input)?;
            match &value {
                Expr::Lit(ExprLit {
                    lit: Lit::Int(int), ..
                }) => match int.base10_parse::<u32>() {
                    Ok(version) => set_once(
                        &mut self.version,
                        At {
                            value: version,
                            span,
                        },
                        span,
                        "version",
                        errors,
                    ),
                    Err(error) => errors.push(error),
                },
                other => errors.at(
                    other.span(),
                    "`version` takes an integer literal, e.g. version = 2",
                ),
            }
        } else if lookahead.peek(kw::cache_none) {
            let span = input.parse::<kw::cache_none>()?.span;
            let value = parse_value(input)?;
            if let Some(flag) = bool_value(value, "cache_none", errors) {
                set_once(&mut self.cache_none, flag, span, "cache_none", errors);
            }
        } else if lookahead.peek(kw::cache_err) {
            let span = input.parse::<kw::cache_err>()?.span;
            let value = parse_value(input)?;
            if let Some(flag) = bool_value(value, "cache_err", errors) {
                set_once(&mut self.cache_err, flag, span, "cache_err", errors);
            }
        } else if lookahead.peek(kw::single_flight) {
            let span = input.parse::<kw::single_flight>()?.span;
            let value = parse_value(input)?;
            if let Some(flag) = bool_value(value, "single_flight", errors) {
                set_once(&mut self.single_flight, flag, span, "single_flight", errors);
            }
        } else if lookahead.peek(kw::lock) {
            let span = input.parse::<kw::lock>()?.span;
            let value = parse_value(input)?;
            if let Some(flag) = bool_value(value, "lock", errors) {
                set_once(&mut self.lock, flag, span, "lock", errors);
            }
        } else if lookahead.peek(kw::trace_args) {
            let span = input.parse::<kw::trace_args>()?.span;
            let value = parse_value(input)?;
            if let Some(flag) = bool_value(value, "trace_args", errors) {
                set_once(&mut self.trace_args, flag, span, "trace_args", errors);
            }
        } else if input.peek(Ident::peek_any) {
            let unknown = input.call(Ident::parse_any)?;
            errors.at(
                unknown.span(),
                format!("unknown option `{unknown}`; the options are: {OPTIONS}"),
            );
            // Skip its value so that later options are still checked.
            if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                input.parse::<Expr>()?;
            } else if input.peek(syn::token::Paren) {
                let _content;
                parenthesized!(_content in input);
            }
        } else {
            return Err(lookahead.error());
        }
        Ok(())
    }
}

impl Options {
    /// The freshness option at the cursor, parsed up to its `=`: its slot, name and span.
    #[allow(clippy::type_complexity)]
    fn duration_option(
        &mut self,
        input: ParseStream<'_>,
        lookahead: &syn::parse::Lookahead1<'_>,
    ) -> syn::Result<Option<(&mut Option<At<Duration>>, &'static str, Span)>> {
        Ok(Some(if lookahead.peek(kw::stale_while_revalidate) {
            let span = input.parse::<kw::stale_while_revalidate>()?.span;
            (
                &mut self.stale_while_revalidate,
                "stale_while_revalidate",
                span,
            )
        } else if lookahead.peek(kw::stale_if_error) {
            let span = input.parse::<kw::stale_if_error>()?.span;
            (&mut self.stale_if_error, "stale_if_error", span)
        } else if lookahead.peek(kw::retry_after) {
            let span = input.parse::<kw::retry_after>()?.span;
            (&mut self.retry_after, "retry_after", span)
        } else if lookahead.peek(kw::timeout) {
            let span = input.parse::<kw::timeout>()?.span;
            (&mut self.timeout, "timeout", span)
        } else if lookahead.peek(kw::jitter) {
            let span = input.parse::<kw::jitter>()?.span;
            (&mut self.jitter, "jitter", span)
        } else if lookahead.peek(kw::idle) {
            let span = input.parse::<kw::idle>()?.span;
            (&mut self.idle, "idle", span)
        } else if lookahead.peek(kw::local) {
            let span = input.parse::<kw::local>()?.span;
            (&mut self.local, "local", span)
        } else {
            return Ok(None);
        }))
    }
}

fn parse_value(input: ParseStream<'_>) -> syn::Result<Expr> {
    input.parse::<Token![=]>()?;
    let mut value: Expr = input.parse()?;
    // A value passed through `macro_rules!` (`$name:literal`, `$ttl:expr`, `$flag:literal`)
    // arrives wrapped in an invisible group: every option sees what the user wrote.
    while let Expr::Group(group) = value {
        value = *group.expr;
    }
    Ok(value)
}

fn positive_int(value: &Expr, option: &str, example: &str, errors: &mut Errors) -> Option<u64> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(int), ..
        }) => match int.base10_parse::<u64>() {
            Ok(0) => {
                errors.at(
                    int.span(),
                    format!("`{option}` must be at least 1, e.g. {example}"),
                );
                None
            }
            Ok(n) => Some(n),
            Err(error) => {
                errors.push(error);
                None
            }
        },
        other => {
            errors.at(
                other.span(),
                format!("`{option}` takes an integer literal, e.g. {example}"),
            );
            None
        }
    }
}

const DURATION_HELP: &str = "write whole seconds (300), a string with a unit (\"250ms\", \"90s\", \"5m\", \"1h\" or \"1d\"), or a constant expression of type `std::time::Duration` (CONFIG_TTL, Duration::from_secs(300))";

/// A duration option (`ttl`, the freshness windows): an integer literal is seconds; a string
/// literal is a number and a unit; any other expression is a constant `Duration`, checked by
/// the compiler.
fn duration(value: Expr, option: &str, errors: &mut Errors) -> Option<Duration> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(_) | Lit::Str(_),
            ..
        }) => duration_ms(&value, option, errors).map(Duration::Millis),
        Expr::Lit(other) => {
            errors.at(
                other.span(),
                format!("cannot read this as a duration: {DURATION_HELP}"),
            );
            None
        }
        // A path passed through `macro_rules!` arrives wrapped in an invisible group.
        Expr::Group(group) => duration(*group.expr, option, errors),
        other => Some(Duration::Const(Box::new(other))),
    }
}

/// A duration literal in milliseconds: an integer is seconds; a string is a number and a unit.
fn duration_ms(value: &Expr, option: &str, errors: &mut Errors) -> Option<u64> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Int(_), ..
        }) => positive_int(value, option, &format!("{option} = 300"), errors)
            .map(|secs| secs.saturating_mul(1000)),
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => {
            let text = lit.value();
            let ms = parse_duration_ms(text.trim());
            if ms.is_none() {
                errors.at(
                    lit.span(),
                    format!("cannot read \"{text}\" as a duration: {DURATION_HELP}"),
                );
            }
            ms
        }
        other => {
            errors.at(
                other.span(),
                format!("`{option}` takes a literal: {DURATION_HELP}"),
            );
            None
        }
    }
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(factor).filter(|ms| *ms > 0)
}

fn bool_value(value: Expr, option: &str, errors: &mut Errors) -> Option<LitBool> {
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Bool(flag),
            ..
        }) => Some(flag),
        other => {
            errors.at(
                other.span(),
                format!("`{option}` takes `true` or `false`, e.g. {option} = true"),
            );
            None
        }
    }
}

fn backend_choice(value: Expr, errors: &mut Errors) -> Option<BackendChoice> {
    // A path passed through `macro_rules!` arrives wrapped in an invisible group.
    let value = match value {
        Expr::Group(group) => *group.expr,
        other => other,
    };
    const HELP: &str = "write backend = \"memory\", \"moka\", \"redis\", \"remote\", or a path to a \
                        function `fn(&cachemere::CacheConfig) -> impl cachemere::Backend<K, V>`";
    match value {
        Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) => match lit.value().as_str() {
            "memory" => Some(BackendChoice::Memory),
            "moka" => Some(BackendChoice::Moka),
            "redis" => Some(BackendChoice::Redis(lit.span())),
            "remote" => Some(BackendChoice::Remote(lit.span())),
            other => {
                errors.at(lit.span(), format!("unknown backend \"{other}\": {HELP}"));
                None
            }
        },
        Expr::Path(path) if path.qself.is_none() => Some(BackendChoice::Custom(path.path)),
        other => {
            errors.at(other.span(), HELP);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("5m"), Some(300_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("1d"), Some(86_400_000));
        assert_eq!(parse_duration_ms("0s"), None);
        assert_eq!(parse_duration_ms("5 minutes"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("1.5h"), None);
    }
}
