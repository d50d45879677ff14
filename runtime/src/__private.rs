//! What generated code calls. Not part of the documented API; may change in any release.

pub use crate::backend::CacheConfig;
pub use crate::cache::{Cache, Entry};
pub use crate::front::FrontKey;
pub use crate::gate::{
    BorrowedKeyGate, Check, KeyGate, No, ReceiverGate, RemoteKeyGate, RemoteValueGate, SharedGate,
    ValueGate, Yes,
};
pub use crate::key::{
    CachedValue, KeyPart, KeyRef, KeyView, OptionRef, ReceiverKeyPart, SharedValue, SliceKey,
    SliceRef,
};
pub use crate::memory::MemoryBackend;
pub use crate::observe::trace_args;
pub use crate::policy::{Everything, OkOnly, Policy, SomeOnly};
pub use crate::registry::CacheSlot;
pub use crate::tags::TagStamp;
pub use std::time::Duration;

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

#[cfg(feature = "remote")]
pub use crate::remote::cache::{RemoteCache, RemoteKeyPart, RemoteValue};

/// Marks that the `redis` feature of cachemere is enabled.
#[diagnostic::on_unimplemented(
    message = "`backend = \"redis\"` needs the `redis` feature of cachemere",
    label = "enable it: cachemere = {{ version = \"...\", features = [\"redis\"] }}"
)]
pub trait RedisFeature {}

/// Marks that the `remote` feature of cachemere is enabled.
#[diagnostic::on_unimplemented(
    message = "`backend = \"remote\"` needs the `remote` feature of cachemere",
    label = "enable it: cachemere = {{ version = \"...\", features = [\"remote\"] }}"
)]
pub trait RemoteFeature {}

/// The witness of the feature checks (generic, so they are checked where they are used).
pub struct FeatureWitness<T>(std::marker::PhantomData<T>);

#[cfg(feature = "redis")]
impl<T> RedisFeature for FeatureWitness<T> {}

#[cfg(feature = "remote")]
impl<T> RemoteFeature for FeatureWitness<T> {}

/// Fails to compile, saying which feature to enable, unless `redis` is on.
#[inline(always)]
pub const fn assert_redis_feature<T>()
where
    FeatureWitness<T>: RedisFeature,
{
}

/// Fails to compile, saying which feature to enable, unless `remote` is on.
#[inline(always)]
pub const fn assert_remote_feature<T>()
where
    FeatureWitness<T>: RemoteFeature,
{
}

#[cfg(not(feature = "remote"))]
pub use crate::remote_disabled::*;

/// A `ttl = <constant expression>`, checked when the constant is evaluated (at compile time).
pub const fn checked_ttl(ttl: Duration) -> Duration {
    if ttl.is_zero() {
        panic!("`ttl` must be more than zero");
    }
    ttl
}

/// A freshness option (`stale_while_revalidate`, `stale_if_error`, `retry_after`, `timeout`,
/// `jitter`, `idle`) given as a constant expression, checked when the constant is evaluated.
pub const fn checked_duration(duration: Duration) -> Duration {
    if duration.is_zero() {
        panic!(
            "a freshness option (`stale_while_revalidate`, `stale_if_error`, `retry_after`, `timeout`, `jitter`, `idle`) must be more than zero"
        );
    }
    duration
}

/// A hit lookup of a memory-engine cache, dispatched at compile time (autoref specialization):
/// `(&cache.probe(key)).__cachemere_hit()` takes the hit front ([`HitViaFront`]) when every key part and
/// the stored value are `Copy`, and the store alone ([`HitViaStore`]) otherwise, or when rustc
/// cannot tell (inside a generic function).
pub struct Lookup<'c, 'q, C, Q: ?Sized>(pub &'c C, pub &'q Q);

/// The lookup through the hit front (see [`Lookup`]).
pub trait HitViaFront {
    /// The stored value.
    type Value;
    /// The fresh stored value, a counted hit.
    fn __cachemere_hit(&self) -> Option<Self::Value>;
}

impl<K, S, const N: usize, B, Q> HitViaFront for Lookup<'_, '_, crate::cache::Cache<K, S, N, B>, Q>
where
    K: KeyPart,
    S: CachedValue,
    B: crate::Backend<K, Entry<S, N>>,
    S: Copy,
    Q: ?Sized + std::hash::Hash + crate::Equivalent<K> + FrontKey<K>,
{
    type Value = S;
    #[inline(always)]
    fn __cachemere_hit(&self) -> Option<S> {
        self.0.get_front(self.1)
    }
}

/// The lookup in the store alone (see [`Lookup`]).
pub trait HitViaStore {
    /// The stored value.
    type Value;
    /// The fresh stored value, a counted hit.
    fn __cachemere_hit(&self) -> Option<Self::Value>;
}

impl<K, S, const N: usize, B, Q> HitViaStore for &Lookup<'_, '_, crate::cache::Cache<K, S, N, B>, Q>
where
    K: KeyPart,
    S: CachedValue,
    B: crate::Backend<K, Entry<S, N>>,
    Q: ?Sized + std::hash::Hash + crate::Equivalent<K>,
{
    type Value = S;
    #[inline(always)]
    fn __cachemere_hit(&self) -> Option<S> {
        self.0.get(self.1)
    }
}
