//! # cachemere
//!
//! Memoization for Rust functions. Put [`#[cached]`](macro@cached) on a function, `async fn` or
//! method and it is answered from a bounded cache, with TTLs, tags, single flight and
//! statistics:
//!
//! ```
//! use cachemere::cached;
//!
//! #[cached(ttl = "5m", maxsize = 1000, tags = ["user:{id}"])]
//! fn user_name(id: u64) -> Option<String> {
//!     Some(format!("user {id}")) // imagine a database query
//! }
//!
//! assert_eq!(user_name(7).as_deref(), Some("user 7"));
//! assert_eq!(user_name(7).as_deref(), Some("user 7")); // a hit
//! assert!(user_name::invalidate(7).removed());
//! cachemere::invalidate_tag("user:7");
//! println!("{}", user_name::cache_info());
//! ```
//!
//! See the README for the options, the generated helpers and the guarantees.
#![warn(missing_docs)]

mod backend;
mod body;
mod cache;
mod clock;
mod flight;
mod freshness;
mod front;
mod gate;
mod hashing;
#[cfg(feature = "http")]
pub mod http;
mod invalidation;
mod key;
mod memory;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "moka")]
mod moka_backend;
mod observe;
mod outcome;
mod policy;
mod redact;
#[cfg(feature = "redis")]
pub mod redis;
mod registry;
#[cfg(feature = "remote")]
pub mod remote;
#[cfg(not(feature = "remote"))]
mod remote_disabled;
mod stats;
mod tags;

#[doc(hidden)]
pub mod __private;

pub use backend::{Backend, BackendError, CacheConfig, DEFAULT_MAXSIZE};
/// Caches a function's results: put it on a function, an `async fn`, or a `&self` method of an
/// inherent `impl` block.
///
/// Options (all optional): `ttl = 300` or `ttl = "250ms" | "90s" | "5m" | "1h" | "1d"` or a
/// constant `Duration` expression (`ttl = CONFIG_TTL`, `ttl = Duration::from_secs(300)`),
/// `maxsize = 1000` (default [`DEFAULT_MAXSIZE`]), `tags = ["users", "user:{id}"]`, `skip(a, b)`
/// (and `skip(self)`), `key = <expr>` with `key_type = Type` (default `String`),
/// `name = "..."`, `backend = "memory" | "moka" | "redis" | "remote" | path::to::constructor`,
/// `version = 2` and `remote = path::to::fn` (remote backends only; see the `remote` module),
/// `cache_none = true`,
/// `cache_err = true`, `single_flight = false`. Only `Some`/`Ok` are stored unless
/// `cache_none`/`cache_err` say otherwise. Misuse is a compile error on the offending token.
///
/// A free function `f` gets `f::cache_info()`, `f::cache_clear()`, `f::invalidate(..)`,
/// `f::set(.., value)` (write-through), `f::peek(..)` (not counted), `f::refresh(..)`,
/// `f::call(..)` (with the hit status and age: [`Cached`]) and `f::uncached(..)` (async for an
/// `async fn`, except `cache_info`); a method `m` gets the same as `m_cache_info()`,
/// `m_invalidate(..)`, `m_set(..)` and so on. Hits return clones: return `Arc<T>` for large
/// values.
///
/// ```
/// use std::sync::Arc;
/// use cachemere::cached;
///
/// #[derive(Debug)]
/// struct Report { lines: Vec<String> }
///
/// #[cached(ttl = "10m", maxsize = 100, tags = ["reports", "report:{id}"])]
/// fn report(id: u64, locale: &str) -> Result<Arc<Report>, String> {
///     if id == 0 {
///         return Err("no report 0".into()); // not stored: the next call runs again
///     }
///     Ok(Arc::new(Report { lines: vec![format!("{locale}: report {id}")] }))
/// }
///
/// let first = report(7, "en").unwrap();
/// let again = report(7, "en").unwrap(); // a hit: the same Arc, no copy of the report
/// assert!(Arc::ptr_eq(&first, &again));
/// assert!(report(0, "en").is_err());
///
/// let info = report::cache_info();
/// assert_eq!((info.hits, info.misses, info.currsize), (1, 2, 1));
///
/// cachemere::invalidate_tag("report:7");     // hides it, in O(1)
/// assert!(!Arc::ptr_eq(&first, &report(7, "en").unwrap()));
/// assert!(report::invalidate(7, "en").removed()); // removes exactly that entry
///
/// #[derive(Clone, Hash, PartialEq, Eq)]
/// struct Repo { shard: u32 }
///
/// impl Repo {
///     /// The receiver is part of the key unless `skip(self)`.
///     #[cached(skip(self))]
///     fn count(&self, table: &str) -> u64 {
///         table.len() as u64
///     }
/// }
///
/// let repo = Repo { shard: 1 };
/// assert_eq!(repo.count("users"), 5);
/// assert!(Repo::count_invalidate("users").removed());
/// ```
pub use cachemere_macros::cached;
pub use clock::clock_resolution;
pub use equivalent::Equivalent;
pub use freshness::{DEFAULT_RETRY_AFTER, Freshness};
pub use invalidation::Invalidation;
pub use memory::MemoryBackend;
#[cfg(feature = "moka")]
pub use moka_backend::MokaBackend;
pub use outcome::{Cached, SetOutcome, Status};
pub use registry::{CacheReport, caches};
pub use stats::CacheInfo;
pub use tags::{invalidate_tag, invalidate_tag_async};

/// The README's Rust examples, compiled and run as doctests so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
