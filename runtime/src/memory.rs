//! The default in-memory store, built on `quick_cache`.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use equivalent::Equivalent;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, UnitWeighter};

use crate::backend::{Backend, BackendError, CacheConfig};
use crate::hashing::RandomState;

/// The default store (`backend = "memory"`): a sharded, bounded, S3-FIFO cache from
/// `quick_cache`. Lookups take a shard's read lock for a few nanoseconds; nothing is held while a
/// cached function runs. `len()` is exact.
///
/// ```
/// use cachemere::{Backend, CacheConfig, MemoryBackend};
/// let store: MemoryBackend<String, u64> = MemoryBackend::new(&CacheConfig::new("doc").with_maxsize(64));
/// store.insert("a".to_string(), 1).unwrap();
/// assert_eq!(store.get("a").unwrap(), Some(1));
/// assert_eq!(store.capacity(), 64);
/// ```
pub struct MemoryBackend<K, V> {
    cache: Cache<K, V, UnitWeighter, DefaultHashBuilder, EvictionCounter>,
    lifecycle: EvictionCounter,
    maxsize: u64,
}

/// Counts evictions as quick_cache reports them, less the value an insert replaces (which
/// quick_cache 0.7 reports through the same hook).
#[derive(Clone)]
struct EvictionCounter {
    evictions: Arc<AtomicU64>,
    hasher: RandomState,
}

/// Per-insert state: the hash of the key being inserted, whose old value is not an eviction,
/// and the evicted entries, dropped after quick_cache has released its shard lock (their `Drop`
/// is user code).
struct InsertRequest<K, V> {
    replacing: Option<u64>,
    /// An insert usually evicts at most one entry: kept inline, the rest in `more`.
    evicted: Option<(K, V)>,
    more: Vec<(K, V)>,
}

impl<K, V> Default for InsertRequest<K, V> {
    fn default() -> Self {
        InsertRequest {
            replacing: None,
            evicted: None,
            more: Vec::new(),
        }
    }
}

impl<K: Hash, V> Lifecycle<K, V> for EvictionCounter {
    type RequestState = InsertRequest<K, V>;

    fn on_evict(&self, state: &mut InsertRequest<K, V>, key: K, value: V) {
        let replaced =
            state.replacing.is_some() && state.replacing == Some(self.hasher.hash_one(&key));
        if replaced {
            state.replacing = None;
        } else {
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        match state.evicted {
            None => state.evicted = Some((key, value)),
            Some(_) => state.more.push((key, value)),
        }
    }
}

impl<K: Eq + Hash, V: Clone> MemoryBackend<K, V> {
    /// A store bounded by `config.maxsize` entries (at least one).
    pub fn new(config: &CacheConfig) -> Self {
        let maxsize = config.maxsize.max(1);
        // quick_cache rounds each shard's capacity up; choose the shard count ourselves (at least
        // 32 entries a shard, as quick_cache would) and hand it a capacity that divides evenly, so
        // the bound is never exceeded.
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get()) as u64;
        let mut shards = (parallelism * 4).next_power_of_two();
        while shards > 1 && maxsize / shards < 32 {
            shards /= 2;
        }
        let capacity = maxsize / shards * shards;
        let lifecycle = EvictionCounter {
            evictions: Arc::new(AtomicU64::new(0)),
            hasher: RandomState::default(),
        };
        let options = OptionsBuilder::new()
            .shards(shards as usize)
            .estimated_items_capacity(usize::try_from(capacity).unwrap_or(usize::MAX))
            .weight_capacity(capacity)
            .build();
        let cache = match options {
            Ok(options) => Cache::with_options(
                options,
                UnitWeighter,
                DefaultHashBuilder::default(),
                lifecycle.clone(),
            ),
            // Only reachable if the options above were incomplete, which they are not.
            Err(_) => Cache::with(
                usize::try_from(capacity).unwrap_or(usize::MAX),
                capacity,
                UnitWeighter,
                DefaultHashBuilder::default(),
                lifecycle.clone(),
            ),
        };
        MemoryBackend {
            cache,
            lifecycle,
            maxsize,
        }
    }
}

impl<K, V> Backend<K, V> for MemoryBackend<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    #[inline]
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        Ok(self.cache.get(key))
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        let mut request = InsertRequest {
            replacing: Some(self.lifecycle.hasher.hash_one(&key)),
            ..InsertRequest::default()
        };
        self.cache.insert_with_lifecycle(key, value, &mut request);
        drop(request);
        Ok(())
    }

    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        Ok(self.cache.remove(key).is_some())
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.cache.clear();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.cache.len() as u64
    }

    fn capacity(&self) -> u64 {
        self.maxsize
    }

    // Evictions are counted in quick_cache's lifecycle hook, as they happen (see `evictions`).
    const ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE: bool = true;

    fn evictions(&self) -> u64 {
        self.lifecycle.evictions.load(Ordering::Relaxed)
    }
}
