//! The cache layer between generated code and a backend: freshness (TTL and tags), single
//! flight, invalidation races, statistics and error handling.

use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use equivalent::Equivalent;

use crate::backend::{Backend, BackendError, CacheConfig};
use crate::clock;
use crate::flight::{Flights, Role, led_by_this_thread};
use crate::key::{CachedValue, KeyPart};
use crate::stats::{CacheInfo, Counters};
use crate::tags::TagStamp;

const NEVER: u64 = u64::MAX;

/// What a backend stores for one key: the value, when it expires, and its tags' epochs.
#[derive(Clone, Debug)]
pub struct Entry<S, const N: usize> {
    value: S,
    /// Monotonic nanoseconds (see `clock`), or `NEVER`.
    expires_at: u64,
    tags: [TagStamp; N],
}

/// One cached function's cache. Generated code reaches it through a `CacheSlot`.
pub struct Cache<K, S, const N: usize, B> {
    backend: B,
    config: CacheConfig,
    ttl_ns: Option<u64>,
    /// How close to its expiry an entry is checked against the precise clock: four
    /// resolutions of the coarse clock, which has been seen lagging by more than one.
    clock_slack_ns: u64,
    flights: Option<Flights<K, Entry<S, N>>>,
    counters: Counters,
    /// Bumped by every `invalidate` and `clear`, before they remove anything. A computation
    /// that sees it move has raced with one and must not leave its value stored.
    invalidations: AtomicU64,
    evictions_at_clear: AtomicU64,
    last_error_log_ns: AtomicU64,
}

/// How long error logs of one cache stay quiet after one is written.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a leader's computation produced and stored.
struct Computed<R, S, const N: usize> {
    result: R,
    stored: Option<Entry<S, N>>,
}

impl<K, S, const N: usize, B> Cache<K, S, N, B>
where
    K: KeyPart,
    S: CachedValue,
    B: Backend<K, Entry<S, N>>,
{
    /// A cache over `backend`, declared with `config`.
    pub fn new(config: CacheConfig, backend: B) -> Self {
        let ttl_ns = config
            .ttl
            .map(|ttl| u64::try_from(ttl.as_nanos()).unwrap_or(u64::MAX));
        let clock_slack_ns = u64::try_from(clock::clock_resolution().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(4);
        let flights = config.single_flight.then(Flights::new);
        Cache {
            backend,
            config,
            ttl_ns,
            clock_slack_ns,
            flights,
            counters: Counters::new(),
            invalidations: AtomicU64::new(0),
            evictions_at_clear: AtomicU64::new(0),
            last_error_log_ns: AtomicU64::new(0),
        }
    }

    /// The configuration this cache was declared with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    #[inline]
    fn is_fresh(&self, entry: &Entry<S, N>) -> bool {
        self.is_unexpired(entry.expires_at) && entry.tags.iter().all(TagStamp::is_current)
    }

    /// The coarse clock decides while the expiry is far; near it, the precise clock does.
    #[inline]
    fn is_unexpired(&self, expires_at: u64) -> bool {
        expires_at == NEVER
            || clock::coarse_ns().saturating_add(self.clock_slack_ns) < expires_at
            || clock::precise_ns() < expires_at
    }

    /// The fresh entry for `key`, if any (not counted).
    #[inline]
    fn fresh_entry<Q>(&self, key: &Q) -> Option<Entry<S, N>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match self.backend.get(key) {
            Ok(Some(entry)) if self.is_fresh(&entry) => Some(entry),
            Ok(_) => None,
            Err(error) => {
                self.record_error("get", &error);
                None
            }
        }
    }

    /// Looks `key` up; a fresh entry is a hit (counted) and its value is returned.
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<S>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let entry = self.fresh_entry(key)?;
        self.counters.hits.increment();
        Some(entry.value)
    }

    fn record_error(&self, operation: &'static str, error: &BackendError) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let now = clock::precise_ns().max(1);
        let last = self.last_error_log_ns.load(Ordering::Relaxed);
        let interval = u64::try_from(ERROR_LOG_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        let quiet = last != 0 && now.saturating_sub(last) < interval;
        if !quiet
            && self
                .last_error_log_ns
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
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

    /// What to do before computing: the invalidation generation and the expiry, both read
    /// before the function runs so that what it read is what they describe.
    fn start(&self) -> (u64, u64) {
        let generation = self.invalidations.load(Ordering::SeqCst);
        let expires_at = match self.ttl_ns {
            Some(ttl) => clock::precise_ns().saturating_add(ttl),
            None => NEVER,
        };
        (generation, expires_at)
    }

    /// Stores what the policy keeps of `result`, unless an invalidation raced with the
    /// computation; returns the entry that stays stored.
    fn finish<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        store: fn(&R) -> Option<S>,
        (generation, expires_at): (u64, u64),
        result: R,
    ) -> Computed<R, S, N> {
        let Some(value) = store(&result) else {
            return Computed {
                result,
                stored: None,
            };
        };
        if self.invalidations.load(Ordering::SeqCst) != generation {
            return Computed {
                result,
                stored: None,
            };
        }
        let entry = Entry {
            value,
            expires_at,
            tags,
        };
        let stored = match self.backend.insert(key.clone(), entry.clone()) {
            Ok(()) => Some(entry),
            Err(error) => {
                self.record_error("insert", &error);
                None
            }
        };
        // An invalidation between the check above and the insert would have removed nothing:
        // remove what was just stored. (Invalidations bump the generation before removing.)
        if stored.is_some() && self.invalidations.load(Ordering::SeqCst) != generation {
            let _ = self.backend.remove(&key);
            return Computed {
                result,
                stored: None,
            };
        }
        Computed { result, stored }
    }

    /// Runs `compute` on a miss, single flight unless disabled, and stores what the policy keeps.
    ///
    /// `tags` must be stamped before the computation starts, so that an invalidation racing with
    /// it leaves the stored value stale.
    #[inline]
    pub fn compute<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        store: fn(&R) -> Option<S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        // Boxed (on the miss path) so that the machinery below is compiled once per key, value
        // and result type, not once per cached function.
        self.compute_boxed(key, tags, store, load, Box::new(compute))
    }

    fn compute_boxed<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        store: fn(&R) -> Option<S>,
        load: fn(S) -> R,
        compute: Box<dyn FnOnce() -> R + '_>,
    ) -> R {
        let Some(flights) = &self.flights else {
            let started = self.start();
            let result = self.timed(compute);
            return self.finish(key, tags, store, started, result).result;
        };
        loop {
            match flights.join(&key) {
                Role::Leader(guard) => {
                    // A flight that finished between our miss and joining may have stored it.
                    if let Some(entry) = self.fresh_entry(&key) {
                        self.counters.hits.increment();
                        let value = entry.value.clone();
                        guard.finish(Some(entry));
                        return load(value);
                    }
                    let started = self.start();
                    let result = guard.lead(|| self.timed(compute));
                    let computed = self.finish(key, tags, store, started, result);
                    guard.finish(computed.stored);
                    return computed.result;
                }
                Role::Follower(flight) => {
                    if led_by_this_thread(&flight) {
                        // Our own computation calls us again with the same key: compute.
                        let started = self.start();
                        let result = self.timed(compute);
                        return self.finish(key, tags, store, started, result).result;
                    }
                    match flight.wait() {
                        Some(entry) if self.is_fresh(&entry) => {
                            self.counters.hits.increment();
                            return load(entry.value);
                        }
                        _ => {
                            if let Some(value) = self.get(&key) {
                                return load(value);
                            }
                        }
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
            let started = self.start();
            let result = self.timed_async(compute).await;
            return self.finish(key, tags, store, started, result).result;
        };
        loop {
            match flights.join(&key) {
                Role::Leader(guard) => {
                    if let Some(entry) = self.fresh_entry(&key) {
                        self.counters.hits.increment();
                        let value = entry.value.clone();
                        guard.finish(Some(entry));
                        return load(value);
                    }
                    let started = self.start();
                    let result = guard.lead_async(self.timed_async(compute)).await;
                    let computed = self.finish(key, tags, store, started, result);
                    guard.finish(computed.stored);
                    return computed.result;
                }
                Role::Follower(flight) => {
                    if led_by_this_thread(&flight) {
                        let started = self.start();
                        let result = self.timed_async(compute).await;
                        return self.finish(key, tags, store, started, result).result;
                    }
                    match flight.wait_async().await {
                        Some(entry) if self.is_fresh(&entry) => {
                            self.counters.hits.increment();
                            return load(entry.value);
                        }
                        _ => {
                            if let Some(value) = self.get(&key) {
                                return load(value);
                            }
                        }
                    }
                }
            }
        }
    }

    fn timed<R>(&self, compute: Box<dyn FnOnce() -> R + '_>) -> R {
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

    /// Removes the entry for `key`; returns whether there was one. A computation of any key
    /// running meanwhile does not store its value (it may have read what was invalidated).
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.backend.remove(key).unwrap_or_else(|error| {
            self.record_error("remove", &error);
            false
        })
    }

    /// Removes every entry and resets the statistics, like Python's `cache_clear()`.
    pub fn clear(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
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
            compute_time: Duration::from_nanos(self.counters.compute_nanos.load(Ordering::Relaxed)),
        }
    }
}
