//! The backend seam: the trait every store implements, and the configuration it is built from.

use std::hash::Hash;
use std::time::Duration;

use equivalent::Equivalent;

use crate::freshness::Freshness;

/// The entry bound used when `#[cached]` has no `maxsize`: no cache is unbounded by accident.
pub const DEFAULT_MAXSIZE: u64 = 10_000;

/// What a cache was declared with; handed to a backend's constructor.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheConfig {
    /// The cache's name: `module_path!()::function` unless `name = "..."` was given.
    pub name: &'static str,
    /// The entry bound.
    pub maxsize: u64,
    /// How long an entry lives, if it expires.
    pub ttl: Option<Duration>,
    /// Whether concurrent misses of one key wait for one computation.
    pub single_flight: bool,
    /// Stale windows, retry throttling, timeout and jitter (see [`Freshness`]).
    pub freshness: Freshness,
}

impl CacheConfig {
    /// A configuration with the default bound, no TTL and single flight on.
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = cachemere::CacheConfig::new("users")
    ///     .with_maxsize(500)
    ///     .with_ttl(Some(Duration::from_secs(30)));
    /// assert_eq!(config.maxsize, 500);
    /// ```
    pub const fn new(name: &'static str) -> Self {
        CacheConfig {
            name,
            maxsize: DEFAULT_MAXSIZE,
            ttl: None,
            single_flight: true,
            freshness: Freshness::new(),
        }
    }

    /// Sets the entry bound.
    pub const fn with_maxsize(mut self, maxsize: u64) -> Self {
        self.maxsize = maxsize;
        self
    }

    /// Turns single flight on or off.
    pub const fn with_single_flight(mut self, single_flight: bool) -> Self {
        self.single_flight = single_flight;
        self
    }

    /// Sets the time to live.
    pub const fn with_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the freshness policy beyond the TTL.
    pub const fn with_freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }

    /// How long a store must keep an entry after it is written, if it expires entries itself
    /// (as moka does): the TTL, plus the jitter and the longest stale window. `None`: entries
    /// do not expire. The cache layer never serves an entry past its own freshness, so a store
    /// may keep entries longer, but not shorter.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cachemere::{CacheConfig, Freshness};
    /// let config = CacheConfig::new("prices")
    ///     .with_ttl(Some(Duration::from_secs(60)))
    ///     .with_freshness(Freshness::new().with_stale_if_error(Some(Duration::from_secs(3600))));
    /// assert_eq!(config.retention(), Some(Duration::from_secs(3660)));
    /// ```
    pub fn retention(&self) -> Option<Duration> {
        let ttl = self.ttl?;
        let jitter = self.freshness.jitter.unwrap_or(Duration::ZERO);
        Some(
            ttl.saturating_add(jitter)
                .saturating_add(self.freshness.stale_window()),
        )
    }
}

/// Why a backend operation failed. The cache treats every failure as a miss: the function runs
/// and its result is returned; the error is counted in [`CacheInfo::errors`](crate::CacheInfo).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend could not be reached.
    #[error("cache backend unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The operation did not finish within the backend's time budget.
    #[error("cache backend operation timed out after {0:?}")]
    Timeout(Duration),
    /// A stored value could not be decoded.
    #[error("cached value could not be decoded")]
    Decode(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else the backend reports.
    #[error("cache backend error")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A store of cache entries: the one seam between generated code and where values live.
///
/// `K` is the owned key (a tuple of the key arguments' owned forms), `V` the stored entry.
/// Lookups take any `Q` that hashes like `K` and compares [`Equivalent`] to it, so a hit can be
/// made with borrowed arguments (`&str` for `String`) and no allocation. Expiry and tags are
/// handled above the backend (in the entry), so a backend only stores, bounds and evicts.
///
/// Implement it to bring your own store, and name a function returning it in
/// `#[cached(backend = path::to::constructor)]`; the constructor receives the [`CacheConfig`].
/// It runs when the cache is first used; if two threads make that first use at once it may run
/// twice, and one of the two stores is dropped unused.
///
/// ```
/// use std::collections::HashMap;
/// use std::hash::Hash;
/// use std::sync::Mutex;
/// use cachemere::{Backend, BackendError, CacheConfig, Equivalent};
///
/// /// A store that never evicts beyond its bound: it refuses new keys when full.
/// struct Capped<K, V> { max: u64, map: Mutex<HashMap<K, V>> }
///
/// impl<K: Hash + Eq + Send + 'static, V: Clone + Send + 'static> Backend<K, V> for Capped<K, V> {
///     fn get<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Result<Option<V>, BackendError> {
///         let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
///         Ok(map.iter().find(|(k, _)| key.equivalent(k)).map(|(_, v)| v.clone()))
///     }
///     fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
///         let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
///         if (map.len() as u64) < self.max || map.contains_key(&key) {
///             map.insert(key, value);
///         }
///         Ok(())
///     }
///     fn remove<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Result<bool, BackendError> {
///         let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
///         let before = map.len();
///         map.retain(|k, _| !key.equivalent(k));
///         Ok(map.len() != before)
///     }
///     fn clear(&self) -> Result<(), BackendError> {
///         self.map.lock().unwrap_or_else(|e| e.into_inner()).clear();
///         Ok(())
///     }
///     fn len(&self) -> u64 {
///         self.map.lock().unwrap_or_else(|e| e.into_inner()).len() as u64
///     }
///     fn capacity(&self) -> u64 { self.max }
///     fn evictions(&self) -> u64 { 0 }
///     // Only its cache changes it, and it never evicts: hits of `Copy` keys and values may
///     // be answered from each thread's copies.
///     const ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE: bool = true;
/// }
///
/// fn capped<K, V>(config: &CacheConfig) -> Capped<K, V> {
///     Capped { max: config.maxsize, map: Mutex::new(HashMap::new()) }
/// }
///
/// #[cachemere::cached(backend = capped, maxsize = 2)]
/// fn square(x: u64) -> u64 { x * x }
///
/// assert_eq!(square(3), 9);
/// assert_eq!(square(3), 9);
/// assert_eq!(square::cache_info().hits, 1);
/// ```
pub trait Backend<K, V>: Send + Sync + 'static {
    /// The entry for `key`, if present.
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>;

    /// Stores `value` under `key`, replacing any entry, evicting another if the bound is reached.
    fn insert(&self, key: K, value: V) -> Result<(), BackendError>;

    /// Removes the entry for `key`; returns whether there was one.
    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>;

    /// Removes every entry.
    fn clear(&self) -> Result<(), BackendError>;

    /// The number of entries held now (may be approximate; say so in the backend's docs).
    fn len(&self) -> u64;

    /// Whether no entry is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry bound.
    fn capacity(&self) -> u64;

    /// How many entries were evicted to respect the bound.
    ///
    /// With [`ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE`](Self::ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE),
    /// read on every hit of a function whose key and value are `Copy`, so it must then be one
    /// atomic load, counted as each eviction happens.
    fn evictions(&self) -> u64;

    /// Whether this store's entries change only through the cache that owns it: its inserts
    /// and removals, and evictions counted by [`evictions`](Self::evictions) as they happen
    /// (not shared with another function or process, not expired or evicted behind the
    /// count). Then the cache may answer hits of `Copy` keys and values from each thread's
    /// own copies (the hit front), which this store does not see. `false` by default; the
    /// memory store says `true`.
    const ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE: bool = false;
}
