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
//! assert!(user_name::invalidate(7));
//! cachemere::invalidate_tag("user:7");
//! println!("{}", user_name::cache_info());
//! ```
//!
//! See the README for the options, the generated helpers and the guarantees.
#![warn(missing_docs)]

mod backend;
mod cache;
mod clock;
mod flight;
mod key;
mod memory;
#[cfg(feature = "moka")]
mod moka_backend;
mod policy;
mod registry;
mod stats;
mod tags;

#[doc(hidden)]
pub mod __private;

pub use backend::{Backend, BackendError, CacheConfig, DEFAULT_MAXSIZE};
pub use cachemere_macros::cached;
pub use clock::clock_resolution;
pub use equivalent::Equivalent;
pub use memory::MemoryBackend;
#[cfg(feature = "moka")]
pub use moka_backend::MokaBackend;
pub use registry::{CacheReport, caches};
pub use stats::CacheInfo;
pub use tags::invalidate_tag;
