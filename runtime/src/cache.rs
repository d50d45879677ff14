//! The cache layer between generated code and a backend: freshness (TTL and tags), single
//! flight, statistics and error handling.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use equivalent::Equivalent;

use crate::backend::{Backend, BackendError, CacheConfig};
use crate::clock;
use crate::flight::{Flights, Role};
use crate::key::{CachedValue, KeyPart};
use crate::stats::{CacheInfo, Counters};
use crate::tags::TagStamp;

const NEVER: u64 = u64::MAX;

/// What a backend stores for one key: the value, when it expires, and its tags' epochs.
#[derive(Clone, Debug)]
pub struct Entry<S, const N: usize> {
    value: S,
    expires_at_ms: u64,
    tags: [TagStamp; N],
}

/// One cached function's cache. Generated code reaches it through a `CacheSlot`.
pub struct Cache<K, S, const N: usize, B> {
    backend: B,
    config: CacheConfig,
    ttl_ms: Option<u64>,
    coarse_clock: bool,
    flights: Option<Flights<K, S>>,
    counters: Counters,
    evictions_at_clear: AtomicU64,
    last_error_log_ms: AtomicU64,
}

/// How long error logs of one cache stay quiet after one is written.
const ERROR_LOG_INTERVAL_MS: u64 = 10_000;

impl<K, S, const N: usize, B> Cache<K, S, N, B>
where
    K: KeyPart,
    S: CachedValue,
    B: Backend<K, Entry<S, N>>,
{
    /// A cache over `backend`, declared with `config`.
    pub fn new(config: CacheConfig, backend: B) -> Self {
        let ttl_ms = config
            .ttl
            .map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let coarse_clock = ttl_ms.is_some() && clock::start();
        let flights = config.single_flight.then(Flights::new);
        Cache {
            backend,
            config,
            ttl_ms,
            coarse_clock,
            flights,
            counters: Counters::new(),
            evictions_at_clear: AtomicU64::new(0),
            last_error_log_ms: AtomicU64::new(0),
        }
    }

    /// The configuration this cache was declared with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    #[inline]
    fn now_ms(&self) -> u64 {
        if self.coarse_clock {
            clock::coarse_ms()
        } else {
            clock::precise_ms()
        }
    }

    #[inline]
    fn is_fresh(&self, entry: &Entry<S, N>) -> bool {
        (entry.expires_at_ms == NEVER || self.now_ms() < entry.expires_at_ms)
            && entry.tags.iter().all(TagStamp::is_current)
    }

    /// Looks `key` up; a fresh entry is a hit (counted) and its value is returned.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<S>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match self.backend.get(key) {
            Ok(Some(entry)) if self.is_fresh(&entry) => {
                self.counters.hits.increment();
                Some(entry.value)
            }
            Ok(_) => None,
            Err(error) => {
                self.record_error("get", &error);
                None
            }
        }
    }

    fn put(&self, key: K, value: S, tags: [TagStamp; N]) {
        let expires_at_ms = match self.ttl_ms {
            Some(ttl) => clock::precise_ms().saturating_add(ttl),
            None => NEVER,
        };
        let entry = Entry {
            value,
            expires_at_ms,
            tags,
        };
        if let Err(error) = self.backend.insert(key, entry) {
            self.record_error("insert", &error);
        }
    }

    fn record_error(&self, operation: &'static str, error: &BackendError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let now = clock::precise_ms();
        let last = self.last_error_log_ms.load(Ordering::Relaxed);
        let quiet = last != 0 && now.saturating_sub(last) < ERROR_LOG_INTERVAL_MS;
        if !quiet
            && self
                .last_error_log_ms
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                cache = self.config.name,
                operation,
                error = %error,
                errors = self.counters.errors.load(Ordering::Relaxed),
                "cache backend failed; the function runs uncached (further errors of this cache are counted, and logged at most every 10 s)"
            );
        }
    }

    fn stored_outcome<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        store: fn(&R) -> Option<S>,
        result: &R,
    ) -> Option<S> {
        let stored = store(result);
        if let Some(value) = &stored {
            self.put(key, value.clone(), tags);
        }
        stored
    }

    /// Runs `compute` on a miss, single flight unless disabled, and stores what the policy keeps.
    ///
    /// `tags` must be stamped before the computation starts, so that an invalidation racing with
    /// it leaves the stored value stale.
    pub fn compute<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        store: fn(&R) -> Option<S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        let Some(flights) = &self.flights else {
            let result = self.timed(compute);
            self.stored_outcome(key, tags, store, &result);
            return result;
        };
        loop {
            match flights.join(&key) {
                Role::Leader(guard) => {
                    // A flight that finished between our miss and joining may have stored it.
                    if let Some(value) = self.get(&key) {
                        guard.finish(Some(value.clone()));
                        return load(value);
                    }
                    let result = self.timed(compute);
                    let stored = self.stored_outcome(key, tags, store, &result);
                    guard.finish(stored);
                    return result;
                }
                Role::Follower(flight) => {
                    if let Some(value) = flight.wait() {
                        self.counters.hits.increment();
                        return load(value);
                    }
                    if let Some(value) = self.get(&key) {
                        return load(value);
                    }
                }
            }
        }
    }

    /// The `async` form of [`compute`](Self::compute); waiting never blocks the executor, and a
    /// leader whose future is dropped hands the computation to a follower.
    pub async fn compute_async<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        store: fn(&R) -> Option<S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
    ) -> R {
        let Some(flights) = &self.flights else {
            let result = self.timed_async(compute).await;
            self.stored_outcome(key, tags, store, &result);
            return result;
        };
        loop {
            match flights.join(&key) {
                Role::Leader(guard) => {
                    if let Some(value) = self.get(&key) {
                        guard.finish(Some(value.clone()));
                        return load(value);
                    }
                    let result = self.timed_async(compute).await;
                    let stored = self.stored_outcome(key, tags, store, &result);
                    guard.finish(stored);
                    return result;
                }
                Role::Follower(flight) => {
                    if let Some(value) = flight.wait_async().await {
                        self.counters.hits.increment();
                        return load(value);
                    }
                    if let Some(value) = self.get(&key) {
                        return load(value);
                    }
                }
            }
        }
    }

    fn timed<R>(&self, compute: impl FnOnce() -> R) -> R {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = compute();
        self.counters.add_compute_time(started.elapsed());
        result
    }

    async fn timed_async<R>(&self, compute: impl Future<Output = R>) -> R {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = compute.await;
        self.counters.add_compute_time(started.elapsed());
        result
    }

    /// Removes the entry for `key`; returns whether there was one.
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.backend.remove(key).unwrap_or_else(|error| {
            self.record_error("remove", &error);
            false
        })
    }

    /// Removes every entry and resets the statistics, like Python's `cache_clear()`.
    pub fn clear(&self) {
        if let Err(error) = self.backend.clear() {
            self.record_error("clear", &error);
        }
        self.counters
            .hits_at_clear
            .store(self.counters.hits.sum(), Ordering::Relaxed);
        self.counters.misses.store(0, Ordering::Relaxed);
        self.counters.errors.store(0, Ordering::Relaxed);
        self.counters.compute_nanos.store(0, Ordering::Relaxed);
        self.evictions_at_clear
            .store(self.backend.evictions(), Ordering::Relaxed);
    }

    /// A snapshot of the statistics.
    pub fn info(&self) -> CacheInfo {
        CacheInfo {
            hits: self
                .counters
                .hits
                .sum()
                .saturating_sub(self.counters.hits_at_clear.load(Ordering::Relaxed)),
            misses: self.counters.misses.load(Ordering::Relaxed),
            maxsize: self.backend.capacity(),
            currsize: self.backend.len(),
            evictions: self
                .backend
                .evictions()
                .saturating_sub(self.evictions_at_clear.load(Ordering::Relaxed)),
            errors: self.counters.errors.load(Ordering::Relaxed),
            compute_time: std::time::Duration::from_nanos(
                self.counters.compute_nanos.load(Ordering::Relaxed),
            ),
        }
    }
}
