//! A second in-memory store built on `moka` (feature `moka`).

use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use equivalent::Equivalent;
use moka::notification::RemovalCause;

use crate::backend::{Backend, BackendError, CacheConfig};

/// `backend = "moka"`: a `moka::sync::Cache`. With a TTL, moka also removes expired entries
/// proactively (the cache layer never serves them either way). `len()` is moka's
/// `entry_count()`, which is approximate until moka's pending maintenance has run.
///
/// ```
/// use cachemere::{Backend, CacheConfig, MokaBackend};
/// let store: MokaBackend<String, u64> = MokaBackend::new(&CacheConfig::new("doc").with_maxsize(64));
/// store.insert("a".to_string(), 1).unwrap();
/// assert_eq!(store.get("a").unwrap(), Some(1));
/// ```
pub struct MokaBackend<K, V> {
    cache: moka::sync::Cache<K, V>,
    evictions: Arc<AtomicU64>,
    maxsize: u64,
}

impl<K, V> MokaBackend<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A store bounded by `config.maxsize` entries, expiring entries after
    /// [`config.retention()`](CacheConfig::retention) (the TTL and any stale window).
    pub fn new(config: &CacheConfig) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&evictions);
        let mut builder = moka::sync::Cache::builder()
            .max_capacity(config.maxsize)
            .eviction_listener(move |_key, _value, cause| {
                if cause == RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
        // As long as the cache layer may still serve an entry (stale windows included).
        if let Some(retention) = config.retention() {
            builder = builder.time_to_live(retention);
        }
        // Sliding expiry: what nobody reads for `idle` can go (every read is an access to moka,
        // so it never drops what the cache layer could still serve).
        if let Some(idle) = config.freshness.idle {
            builder = builder.time_to_idle(idle);
        }
        MokaBackend {
            cache: builder.build(),
            evictions,
            maxsize: config.maxsize,
        }
    }
}

impl<K, V> Backend<K, V> for MokaBackend<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        Ok(self.cache.get(key))
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        self.cache.insert(key, value);
        Ok(())
    }

    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        Ok(self.cache.remove(key).is_some())
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    fn capacity(&self) -> u64 {
        self.maxsize
    }

    fn evictions(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.evictions.load(Ordering::Relaxed)
    }
}
