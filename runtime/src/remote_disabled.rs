//! Without the `remote` feature: the names generated code uses for `backend = "redis"` and
//! `"remote"`, so the only error such code gets is the feature check naming the feature.

use std::future::Future;
use std::marker::PhantomData;

use crate::stats::CacheInfo;

/// Stands in for the remote cache when the `remote` feature is off; never constructed.
pub struct RemoteCache<S>(PhantomData<fn() -> S>);

#[allow(missing_docs, clippy::missing_const_for_fn, unused_variables)]
impl<S: 'static> RemoteCache<S> {
    pub fn new(
        name: &'static str,
        version: u32,
        ttl: Option<std::time::Duration>,
        single_flight: bool,
    ) -> Self {
        RemoteCache(PhantomData)
    }
    pub fn with_remote<T>(self, remote: fn() -> T) -> Self {
        self
    }
    pub fn with_freshness(self, freshness: crate::freshness::Freshness) -> Self {
        self
    }
    pub fn with_ttl_from(self, ttl_from: fn(&S) -> Option<std::time::Duration>) -> Self {
        self
    }
    pub fn with_lock(self, lock: bool) -> Self {
        self
    }
    pub fn with_local(self, ttl: std::time::Duration, maxsize: usize) -> Self {
        self
    }
    pub fn local<K>(&self) -> Option<&'static Local<K, S>> {
        None
    }
    pub fn local_observed<R>(&self, value: (S, u64), load: fn(S) -> R) -> crate::Cached<R> {
        crate::Cached::miss(load(value.0))
    }
    pub fn arguments<T: ?Sized>(&self, args: &T) -> Option<String> {
        None
    }
}

/// The compute family: `(arguments, local_key, tags, keep, load, compute)`, as the real one.
macro_rules! stand_in_computes {
    ($($sync:ident, $async_:ident, $out:ty, $wrap:path;)*) => {
        #[allow(missing_docs, unused_variables, clippy::too_many_arguments)]
        impl<S: 'static> RemoteCache<S> {
            $(
                pub fn $sync<R>(
                    &self,
                    arguments: Option<String>,
                    local_key: Option<LocalKey<'_>>,
                    tags: &[String],
                    keep: fn(&R) -> Option<&S>,
                    load: fn(S) -> R,
                    compute: impl FnOnce() -> R,
                ) -> $out {
                    $wrap(compute())
                }
                pub async fn $async_<R, F: Future<Output = R>>(
                    &self,
                    arguments: Option<String>,
                    local_key: Option<LocalKey<'_>>,
                    tags: &[String],
                    keep: fn(&R) -> Option<&S>,
                    load: fn(S) -> R,
                    compute: F,
                ) -> $out {
                    $wrap(compute.await)
                }
            )*
        }
    };
}

fn same<R>(result: R) -> R {
    result
}

stand_in_computes! {
    compute, compute_async, R, same;
    compute_observed, compute_observed_async, crate::Cached<R>, crate::Cached::miss;
    refresh, refresh_async, R, same;
    compute_fresh, compute_fresh_async, R, same;
    compute_fresh_observed, compute_fresh_observed_async, crate::Cached<R>, crate::Cached::miss;
}

/// Stands in for a near cache's local level; never constructed.
pub struct Local<K, S>(PhantomData<fn() -> (K, S)>);

/// Stands in for the owned key handed to the engine.
#[derive(Clone, Copy)]
pub struct LocalKey<'k>(PhantomData<&'k ()>);

#[allow(missing_docs, unused_variables)]
impl<K, S> Local<K, S> {
    pub fn get<Q: ?Sized>(&self, key: &Q) -> Option<S> {
        None
    }
    pub fn get_written<Q: ?Sized>(&self, key: &Q) -> Option<(S, u64)> {
        None
    }
    pub fn key<'k>(&self, key: &'k K) -> LocalKey<'k> {
        LocalKey(PhantomData)
    }
}

#[allow(missing_docs, clippy::missing_const_for_fn, unused_variables)]
impl<S: 'static> RemoteCache<S> {
    pub fn set(
        &self,
        arguments: Option<String>,
        tags: &[String],
        value: Option<S>,
    ) -> crate::SetOutcome {
        crate::SetOutcome::NotStored(crate::Invalidation::Absent)
    }
    pub async fn set_async(
        &self,
        arguments: Option<String>,
        tags: &[String],
        value: Option<S>,
    ) -> crate::SetOutcome {
        crate::SetOutcome::NotStored(crate::Invalidation::Absent)
    }
    pub fn peek(&self, arguments: Option<String>, tags: &[String]) -> Option<S> {
        None
    }
    pub async fn peek_async(&self, arguments: Option<String>, tags: &[String]) -> Option<S> {
        None
    }
    pub fn invalidate(&self, arguments: Option<String>) -> crate::Invalidation {
        crate::Invalidation::Absent
    }
    pub async fn invalidate_async(&self, arguments: Option<String>) -> crate::Invalidation {
        crate::Invalidation::Absent
    }
    pub fn clear(&self) -> crate::Invalidation {
        crate::Invalidation::Applied
    }
    pub async fn clear_async(&self) -> crate::Invalidation {
        crate::Invalidation::Applied
    }
    pub fn info(&self) -> CacheInfo {
        CacheInfo::default()
    }
    pub fn cache_config(&self) -> crate::CacheConfig {
        crate::CacheConfig::new("")
    }
}

impl<S: 'static> crate::registry::Registered for RemoteCache<S> {
    fn name(&self) -> &str {
        ""
    }
    fn info(&self) -> CacheInfo {
        CacheInfo::default()
    }
}
