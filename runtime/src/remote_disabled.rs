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
    pub fn arguments<T: ?Sized>(&self, args: &T) -> Option<String> {
        None
    }
    pub fn compute<R>(
        &self,
        arguments: Option<String>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        compute()
    }
    pub async fn compute_async<R, F: Future<Output = R>>(
        &self,
        arguments: Option<String>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R {
        compute.await
    }
    pub fn compute_observed<R>(
        &self,
        arguments: Option<String>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> crate::Cached<R> {
        crate::Cached::miss(compute())
    }
    pub async fn compute_observed_async<R, F: Future<Output = R>>(
        &self,
        arguments: Option<String>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> crate::Cached<R> {
        crate::Cached::miss(compute.await)
    }
    pub fn refresh<R>(
        &self,
        arguments: Option<String>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        compute()
    }
    pub async fn refresh_async<R, F: Future<Output = R>>(
        &self,
        arguments: Option<String>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R {
        compute.await
    }
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
