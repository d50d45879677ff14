//! What generated code calls. Not part of the documented API; may change in any release.

pub use crate::backend::CacheConfig;
pub use crate::cache::{Cache, Entry};
pub use crate::key::{CachedValue, KeyPart, KeyRef, ReceiverKeyPart};
pub use crate::memory::MemoryBackend;
pub use crate::policy::{Everything, OkOnly, Policy, SomeOnly};
pub use crate::registry::CacheSlot;
pub use crate::tags::TagStamp;
pub use std::time::Duration;

use std::future::Future;

/// Pins a `Future`'s output type, so `?` in an `async` body infers its error type.
#[inline(always)]
pub fn typed_future<R, F: Future<Output = R>>(future: F) -> F {
    future
}

/// Pins a closure's return type, so `?` in the body infers its error type.
#[inline(always)]
pub fn typed_closure<R, F: FnOnce() -> R>(closure: F) -> F {
    closure
}

/// Checks at compile time that a key part meets the key bounds (the error points at it).
#[inline(always)]
pub const fn assert_key_part<T: KeyPart>() {}

/// Checks at compile time that the receiver meets the key bounds.
#[inline(always)]
pub const fn assert_receiver_key_part<T: ReceiverKeyPart>() {}

/// Checks at compile time that the return type can be stored under policy `P`.
#[inline(always)]
pub const fn assert_cacheable<P: Policy<R>, R>() {}

/// The name of a method's cache: the type's path and the method's name, built once.
pub fn method_cache_name(type_name: &'static str, method: &'static str) -> &'static str {
    Box::leak(format!("{type_name}::{method}").into_boxed_str())
}

/// The default in-memory store.
pub fn memory_backend<K, V>(config: &CacheConfig) -> MemoryBackend<K, V>
where
    K: Eq + std::hash::Hash,
    V: Clone,
{
    MemoryBackend::new(config)
}

/// Marks that the `moka` feature of cachemere is enabled.
#[diagnostic::on_unimplemented(
    message = "`backend = \"moka\"` needs the `moka` feature of cachemere",
    label = "enable it: cachemere = {{ version = \"...\", features = [\"moka\"] }}"
)]
pub trait MokaFeature {}

/// The witness type for [`MokaFeature`] (generic, so the bound is checked where it is used).
pub struct MokaEnabled<K>(std::marker::PhantomData<K>);

#[cfg(feature = "moka")]
impl<K> MokaFeature for MokaEnabled<K> {}

/// The store `backend = "moka"` builds: moka's, or without the feature the memory store (the
/// constructor below then fails to compile with a message saying to enable the feature).
#[cfg(feature = "moka")]
pub type MokaStore<K, V> = crate::MokaBackend<K, V>;

/// See the `moka` form.
#[cfg(not(feature = "moka"))]
pub type MokaStore<K, V> = MemoryBackend<K, V>;

/// The moka store (feature `moka`).
#[cfg(feature = "moka")]
pub fn moka_backend<K, V>(config: &CacheConfig) -> crate::MokaBackend<K, V>
where
    K: Eq + std::hash::Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    crate::MokaBackend::new(config)
}

/// Without the `moka` feature, `backend = "moka"` fails to compile with a message saying so.
#[cfg(not(feature = "moka"))]
pub fn moka_backend<K, V>(config: &CacheConfig) -> MemoryBackend<K, V>
where
    K: Eq + std::hash::Hash,
    V: Clone,
    MokaEnabled<K>: MokaFeature,
{
    MemoryBackend::new(config)
}
