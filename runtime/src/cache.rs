//! The cache layer between generated code and a backend: freshness (TTL and tags), single
//! flight, invalidation races, statistics and error handling.

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use equivalent::Equivalent;

use crate::backend::{Backend, BackendError, CacheConfig};
use crate::clock;
use crate::flight::{Flights, Role, led_by_this_thread};
use crate::hashing::RandomState;
use crate::invalidation::Invalidation;
use crate::key::{CachedValue, KeyPart};
use crate::observe::{self, Scope};
use crate::outcome::{Cached, Mode, Served, SetOutcome, WrittenAt};
use crate::stats::{CacheInfo, Counters, Since};
use crate::tags::TagStamp;

const NEVER: u64 = u64::MAX;

/// The longest TTL a memory entry gets (about 146 years).
const MAX_TTL_NS: u64 = u64::MAX / 4;

/// Stripes of per-key invalidation generations: invalidating one key discards the concurrent
/// computations of about 1/64 of the other keys, not all of them.
const KEY_STRIPES: usize = 64;

/// The invalidation generations a computation started under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Generation {
    cleared: u64,
    invalidated: u64,
}

/// What a leader hands its followers: the entry it computed (stored or not) and the
/// generation it started under. Each follower judges it against its own call.
#[derive(Clone, Debug)]
pub(crate) struct Handoff<S, const N: usize> {
    entry: Entry<S, N>,
    generation: Generation,
    /// Whether the leader's value landed in the store (see `Cached::stored`).
    stored: bool,
}

/// What a follower does once its leader has finished.
enum AfterWait<S> {
    /// Return this value (a hit).
    Hit(S, Served),
    /// The value was computed from data invalidated or expired before our call: compute.
    Compute,
    /// The leader stored nothing (panic, cancellation, `Err`/`None`): take over.
    TakeOver,
}

/// A caller's view when it missed: what a value handed to it must be at least as fresh as.
struct Snapshot<const N: usize> {
    generation: Generation,
    tags: [TagStamp; N],
    /// Precise monotonic nanoseconds at the call (only read when the cache has a TTL).
    called_at: u64,
}

/// What a backend stores for one key: the value, when it expires, when its computation
/// started, and its tags' epochs.
#[derive(Clone, Debug)]
pub struct Entry<S, const N: usize> {
    value: S,
    /// Monotonic nanoseconds (see `clock`): with a TTL, when the entry expires; without, when
    /// its computation (or `set`) started, for `Age`. One field, so an entry is no larger than
    /// before ages were reported (a hit copies it).
    time: u64,
    tags: [TagStamp; N],
}

/// What a computation reads before it runs: the invalidation generation, and its entry's
/// `time` (when it will expire, or without a TTL when it started).
#[derive(Clone, Copy)]
struct Started {
    generation: Generation,
    time: u64,
}

/// One cached function's cache. Generated code reaches it through a `CacheSlot`.
pub struct Cache<K, S, const N: usize, B> {
    backend: B,
    config: CacheConfig,
    ttl_ns: Option<u64>,
    /// How close to its expiry an entry is checked against the precise clock: four
    /// resolutions of the coarse clock, which has been seen lagging by more than one.
    clock_slack_ns: u64,
    flights: Option<Flights<K, Handoff<S, N>>>,
    counters: Counters,
    /// Invalidation generations, bumped before anything is removed: one for `clear`, and one
    /// per stripe of keys for `invalidate(key)`. A computation that sees its key's generation
    /// move has raced with an invalidation and must not leave its value stored.
    cleared: AtomicU64,
    invalidated: [AtomicU64; KEY_STRIPES],
    /// Per stripe, leaders between their last generation check and the check after their
    /// insert: an invalidation waits for them, so that when it returns no value it hides can
    /// still be in the store.
    inserting: [AtomicU64; KEY_STRIPES],
    key_hasher: RandomState,
    evictions_at_clear: AtomicU64,
}

/// A leader's stay between its last generation check and its check after inserting.
struct Inserting<'a>(&'a AtomicU64);

impl<'a> Inserting<'a> {
    fn enter(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Inserting(count)
    }

    /// Waits until no leader is inside (each stays for one insert and one generation read).
    fn wait_out(count: &AtomicU64) {
        let mut spins = 0_u32;
        while count.load(Ordering::SeqCst) != 0 {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }
}

impl Drop for Inserting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a computation produced, and what it hands followers (its entry, stored or not).
struct Computed<R, S, const N: usize> {
    result: R,
    handoff: Option<Handoff<S, N>>,
    /// Whether the value landed in the store (see `Cached::stored`).
    stored: bool,
}

impl<R, S, const N: usize> Computed<R, S, N> {
    /// The result, and how it was served.
    fn served(self) -> (R, Served) {
        (
            self.result,
            Served::Computed {
                stored: self.stored,
            },
        )
    }
}

impl<K, S, const N: usize, B> Cache<K, S, N, B>
where
    K: KeyPart,
    S: CachedValue,
    B: Backend<K, Entry<S, N>>,
{
    /// A cache over `backend`, declared with `config`.
    pub fn new(config: CacheConfig, backend: B) -> Self {
        // At most about 146 years, so that an expiry (now + TTL) never saturates and the
        // computation's start (expiry - TTL, for `Age`) stays exact.
        let ttl_ns = config
            .ttl
            .map(|ttl| u64::try_from(ttl.as_nanos()).map_or(MAX_TTL_NS, |ns| ns.min(MAX_TTL_NS)));
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
            cleared: AtomicU64::new(0),
            invalidated: [const { AtomicU64::new(0) }; KEY_STRIPES],
            inserting: [const { AtomicU64::new(0) }; KEY_STRIPES],
            key_hasher: RandomState::default(),
            evictions_at_clear: AtomicU64::new(0),
        }
    }

    /// The configuration this cache was declared with.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// A copy of the configuration (`f::cache_config()`).
    pub fn cache_config(&self) -> CacheConfig {
        self.config.clone()
    }

    #[inline(always)]
    fn is_fresh(&self, entry: &Entry<S, N>) -> bool {
        (self.ttl_ns.is_none() || self.is_unexpired(entry.time))
            && entry.tags.iter().all(TagStamp::is_current)
    }

    /// The coarse clock decides while the expiry is far; near it, the precise clock does.
    #[inline(always)]
    fn is_unexpired(&self, expires_at: u64) -> bool {
        clock::coarse_ns().saturating_add(self.clock_slack_ns) < expires_at
            || clock::precise_ns() < expires_at
    }

    /// When an entry's computation started (monotonic nanoseconds).
    fn written_at(&self, entry: &Entry<S, N>) -> u64 {
        match self.ttl_ns {
            Some(ttl) => entry.time.saturating_sub(ttl),
            None => entry.time,
        }
    }

    /// The fresh entry for `key`, if any (not counted).
    #[inline(always)]
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
    #[inline(always)]
    pub fn get<Q>(&self, key: &Q) -> Option<S>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let entry = self.fresh_entry(key)?;
        self.counters.hits.increment();
        Some(entry.value)
    }

    /// [`get`](Self::get), saying how old the value is (`f::call`).
    #[inline]
    pub fn get_observed<Q, R>(&self, key: &Q, load: fn(S) -> R) -> Option<Cached<R>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let (value, served) = self.hit(key)?;
        Some(served.into_hit(load(value)))
    }

    /// A counted hit, with when the value's computation started.
    fn hit<Q>(&self, key: &Q) -> Option<(S, Served)>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let entry = self.fresh_entry(key)?;
        self.counters.hits.increment();
        let served = Served::hit_at(self.written_at(&entry));
        Some((entry.value, served))
    }

    /// The fresh value stored for `key`, if any, without computing and without counting a
    /// hit or a miss (`f::peek`).
    pub fn peek<Q>(&self, key: &Q) -> Option<S>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.fresh_entry(key).map(|entry| entry.value)
    }

    fn record_error(&self, operation: &'static str, error: &BackendError) {
        self.counters
            .record_error(self.config.name, operation, error);
    }

    fn key_stripe<Q: ?Sized + Hash>(&self, key: &Q) -> usize {
        (self.key_hasher.hash_one(key) as usize) % KEY_STRIPES
    }

    fn generation(&self, stripe: usize) -> Generation {
        Generation {
            cleared: self.cleared.load(Ordering::SeqCst),
            invalidated: self.invalidated[stripe].load(Ordering::SeqCst),
        }
    }

    /// A caller's snapshot at its miss.
    fn snapshot(&self, stripe: usize, tags: [TagStamp; N]) -> Snapshot<N> {
        Snapshot {
            generation: self.generation(stripe),
            tags,
            called_at: if self.ttl_ns.is_some() {
                clock::precise_ns()
            } else {
                0
            },
        }
    }

    /// Whether a value computed by another caller is as fresh as this caller's own call needs:
    /// no invalidation of its key and no tag invalidation since the computation started, and
    /// not expired at the time of this call.
    fn accepts(&self, snapshot: &Snapshot<N>, handoff: &Handoff<S, N>) -> bool {
        handoff.generation == snapshot.generation
            && handoff.entry.tags == snapshot.tags
            && (self.ttl_ns.is_none() || handoff.entry.time > snapshot.called_at)
    }

    /// A new leader first looks again: a flight that finished between our miss and joining may
    /// have stored the value. Returns it, with the hand-off for our own followers if any wait.
    fn recheck(
        &self,
        key: &K,
        generation: Generation,
        followed: bool,
    ) -> Option<(S, Served, Option<Handoff<S, N>>)> {
        let entry = self.fresh_entry(key)?;
        self.counters.hits.increment();
        let served = Served::hit_at(self.written_at(&entry));
        Some(if followed {
            (
                entry.value.clone(),
                served,
                Some(Handoff {
                    entry,
                    generation,
                    stored: true,
                }),
            )
        } else {
            (entry.value, served, None)
        })
    }

    fn after_wait(
        &self,
        key: &K,
        snapshot: &Snapshot<N>,
        outcome: Option<Handoff<S, N>>,
    ) -> AfterWait<S> {
        match outcome {
            Some(handoff) if self.accepts(snapshot, &handoff) => {
                self.counters.hits.increment();
                let written_at = self.written_at(&handoff.entry);
                let served = if handoff.stored {
                    Served::hit_at(written_at)
                } else {
                    Served::Handed(WrittenAt::Monotonic(written_at))
                };
                AfterWait::Hit(handoff.entry.value, served)
            }
            // Rather than queue behind another attempt.
            Some(_) => AfterWait::Compute,
            // Unless someone stored it meanwhile (a leader with no follower when it finished
            // hands nothing over).
            None => self
                .hit(key)
                .map_or(AfterWait::TakeOver, |(value, served)| {
                    AfterWait::Hit(value, served)
                }),
        }
    }

    /// Read before the function runs, so that what it reads is what they describe: the
    /// invalidation generation and the expiry.
    fn start(&self, stripe: usize) -> Started {
        let generation = self.generation(stripe);
        let time = match self.ttl_ns.map(|ttl| (ttl, clock::precise_ns())) {
            // A clock that cannot be read gives an entry that is never fresh.
            Some((_, u64::MAX)) => 0,
            Some((ttl, now)) => now.saturating_add(ttl).min(NEVER - 1),
            // Without a TTL the time only gives `Age`: the coarse clock is enough.
            None => clock::coarse_ns(),
        };
        Started { generation, time }
    }

    /// Stores what the policy keeps of `result` (one clone), unless an invalidation raced with
    /// the computation; returns the result and, if callers wait for it (`followed`), what they
    /// are handed.
    #[allow(clippy::too_many_arguments)]
    fn finish<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        started: Started,
        result: R,
        followed: bool,
    ) -> Computed<R, S, N> {
        let Some(value) = keep(&result).cloned() else {
            return Computed {
                result,
                handoff: None,
                stored: false,
            };
        };
        let entry = Entry {
            value,
            time: started.time,
            tags,
        };
        let mut handoff = followed.then(|| Handoff {
            entry: entry.clone(),
            generation: started.generation,
            stored: false,
        });
        // An error is counted; the result is returned all the same.
        let landed = matches!(
            self.store_entry(key, stripe, started.generation, entry),
            Ok(true)
        );
        // Served later it would not be: a tag invalidated meanwhile, or already expired.
        let stored = landed
            && tags.iter().all(TagStamp::is_current)
            && (self.ttl_ns.is_none() || clock::precise_ns() < started.time);
        if let Some(handoff) = handoff.as_mut() {
            handoff.stored = stored;
        }
        Computed {
            result,
            handoff,
            stored,
        }
    }

    /// Inserts `entry` unless the key's generation moved since `generation` was read (an
    /// invalidation, a clear or a `set` came since: this entry may be older than what it
    /// hid). `Ok(false)` when it did not land for that reason.
    fn store_entry(
        &self,
        key: K,
        stripe: usize,
        generation: Generation,
        entry: Entry<S, N>,
    ) -> Result<bool, BackendError> {
        // Cloned before: no user `Clone` runs while invalidations wait.
        let stored_key = key.clone();
        // Until dropped, invalidations of this stripe wait (see `inserting`).
        let _inserting = Inserting::enter(&self.inserting[stripe]);
        if self.generation(stripe) != generation {
            return Ok(false);
        }
        if let Err(error) = self.backend.insert(stored_key, entry) {
            self.record_error("insert", &error);
            return Err(error);
        }
        // An invalidation between the check above and the insert would have removed nothing:
        // remove what was just stored. (Invalidations bump the generation before removing,
        // and return only once this is done.)
        if self.generation(stripe) != generation {
            if let Err(error) = self.backend.remove(&key) {
                self.record_error("remove", &error);
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Makes every computation of this stripe running now leave nothing stored, as an
    /// invalidation does, before a newer value is written (`set`, `refresh`): they started
    /// before it and may have read older data. A leader that passed its check just before
    /// may be inserting: it removes its value again after its insert; wait for that, or its
    /// value would land after the newer one (served after `set` returned) and then take the
    /// newer one out with its own.
    fn supersede(&self, stripe: usize) {
        self.invalidated[stripe].fetch_add(1, Ordering::SeqCst);
        Inserting::wait_out(&self.inserting[stripe]);
    }

    /// Stores `value` for `key` as if computed now (`f::set`, write-through). A computation of
    /// this key already running does not store its older value over it. `None` (the policy
    /// keeps no such result) invalidates the key instead, as does a store that refuses it.
    pub fn set(&self, key: K, tags: [TagStamp; N], value: Option<S>) -> SetOutcome {
        let Some(value) = value else {
            return SetOutcome::NotStored(self.invalidate(&key));
        };
        let stripe = self.key_stripe(&key);
        self.supersede(stripe);
        let started = self.start(stripe);
        let entry = Entry {
            value,
            time: started.time,
            tags,
        };
        // Inserted whatever came meanwhile: the value is the caller's, not read from data an
        // invalidation running at the same time may hide, so it may land after that one (as
        // if called after it). Checking the stripe's generation here would drop it whenever
        // another key of the stripe was invalidated, set or refreshed meanwhile, though it
        // says `Stored`.
        match self.backend.insert(key.clone(), entry) {
            Ok(()) => SetOutcome::Stored,
            Err(error) => {
                self.record_error("insert", &error);
                SetOutcome::NotStored(self.invalidate(&key))
            }
        }
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
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        // Boxed (on the miss path) so that the machinery below is compiled once per key, value
        // and result type, not once per cached function.
        self.compute_boxed(key, tags, keep, load, Box::new(compute), Mode::Lookup)
            .0
    }

    /// [`compute`](Self::compute), saying how the call was answered (`f::call`).
    pub fn compute_observed<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> Cached<R> {
        let called = std::time::Instant::now();
        let (result, served) =
            self.compute_boxed(key, tags, keep, load, Box::new(compute), Mode::Lookup);
        served.into_cached(result, called)
    }

    /// Recomputes now and stores what the policy keeps (`f::refresh`). A computation of this
    /// key already running started earlier and may return older data: it stores nothing over
    /// the refreshed value (as after a `set`), whether it runs in a flight or alone (no single
    /// flight, a follower computing on its own). The refresh waits for a flight of the key to
    /// finish and then leads its own, never taking a value handed over; callers arriving
    /// meanwhile wait for and get the refreshed value. An `Err`/`None` is returned and leaves
    /// the entry as it was.
    pub fn refresh<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        self.compute_boxed(key, tags, keep, load, Box::new(compute), Mode::Refresh)
            .0
    }

    fn compute_boxed<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: Box<dyn FnOnce() -> R + '_>,
        mode: Mode,
    ) -> (R, Served) {
        let stripe = self.key_stripe(&key);
        let Some(flights) = &self.flights else {
            return self.compute_alone(key, stripe, tags, keep, compute, mode);
        };
        let snapshot = self.snapshot(stripe, tags);
        // A refresh waits out every flight it finds (they started before it, or may hand it a
        // value stored before it) and leads the next one.
        loop {
            match flights.join(&key) {
                Role::Leader(guard) => {
                    let started = match self.lead_or_hit(&key, stripe, mode, guard.is_followed()) {
                        Ok(started) => started,
                        Err((value, served, handoff)) => {
                            guard.finish(handoff);
                            return (load(value), served);
                        }
                    };
                    let result = guard.lead(|| self.timed(keep, mode, compute));
                    let followed = guard.is_followed();
                    let computed = self.finish(key, stripe, tags, keep, started, result, followed);
                    guard.finish(computed.handoff);
                    let served = Served::Computed {
                        stored: computed.stored,
                    };
                    return (computed.result, served);
                }
                Role::Follower(flight) => {
                    // Our own computation calling us again with the same key computes too.
                    let next = if led_by_this_thread(&flight) {
                        AfterWait::Compute
                    } else {
                        match self.after_flight(&key, &snapshot, flight.wait(), mode) {
                            Some(next) => next,
                            None => continue,
                        }
                    };
                    match next {
                        AfterWait::Hit(value, served) => return (load(value), served),
                        AfterWait::Compute => {
                            return self.compute_alone(key, stripe, tags, keep, compute, mode);
                        }
                        AfterWait::TakeOver => {}
                    }
                }
            }
        }
    }

    /// What a computation reads before it runs (see `start`); a refresh first makes the
    /// computations of its stripe running meanwhile store nothing (see `supersede`).
    fn begin(&self, stripe: usize, mode: Mode) -> Started {
        if mode == Mode::Refresh {
            self.supersede(stripe);
        }
        self.start(stripe)
    }

    /// A new leader's start (`begin`), or, when a lookup finds that a flight which ended
    /// between its miss and its joining stored the value, that hit (see `recheck`).
    #[allow(clippy::type_complexity)]
    fn lead_or_hit(
        &self,
        key: &K,
        stripe: usize,
        mode: Mode,
        followed: bool,
    ) -> Result<Started, (S, Served, Option<Handoff<S, N>>)> {
        let started = self.begin(stripe, mode);
        match mode {
            Mode::Lookup => match self.recheck(key, started.generation, followed) {
                Some(hit) => Err(hit),
                None => Ok(started),
            },
            Mode::Refresh => Ok(started),
        }
    }

    /// What a follower does once the flight it waited for ended; `None` to join again (a
    /// refresh never takes what a flight hands over).
    fn after_flight(
        &self,
        key: &K,
        snapshot: &Snapshot<N>,
        outcome: Option<Handoff<S, N>>,
        mode: Mode,
    ) -> Option<AfterWait<S>> {
        match mode {
            Mode::Lookup => Some(self.after_wait(key, snapshot, outcome)),
            Mode::Refresh => None,
        }
    }

    /// Computes outside any flight and stores what the policy keeps (a refresh first makes
    /// the computations running meanwhile store nothing).
    fn compute_alone<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        compute: Box<dyn FnOnce() -> R + '_>,
        mode: Mode,
    ) -> (R, Served) {
        let started = self.begin(stripe, mode);
        let result = self.timed(keep, mode, compute);
        self.finish(key, stripe, tags, keep, started, result, false)
            .served()
    }

    /// The `async` form of [`compute`](Self::compute); waiting never blocks the executor, and a
    /// leader whose future is dropped hands the computation to a follower.
    pub async fn compute_async<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
    ) -> R {
        self.compute_async_in(key, tags, keep, load, compute, Mode::Lookup)
            .await
            .0
    }

    /// The `async` form of [`compute_observed`](Self::compute_observed).
    pub async fn compute_observed_async<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
    ) -> Cached<R> {
        let called = std::time::Instant::now();
        let (result, served) = self
            .compute_async_in(key, tags, keep, load, compute, Mode::Lookup)
            .await;
        served.into_cached(result, called)
    }

    /// The `async` form of [`refresh`](Self::refresh).
    pub async fn refresh_async<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
    ) -> R {
        self.compute_async_in(key, tags, keep, load, compute, Mode::Refresh)
            .await
            .0
    }

    /// The `async` form of `compute_boxed`.
    async fn compute_async_in<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
        mode: Mode,
    ) -> (R, Served) {
        let stripe = self.key_stripe(&key);
        let Some(flights) = &self.flights else {
            return self
                .compute_alone_async(key, stripe, tags, keep, compute, mode)
                .await;
        };
        let snapshot = self.snapshot(stripe, tags);
        loop {
            match flights.join(&key) {
                Role::Leader(guard) => {
                    let started = match self.lead_or_hit(&key, stripe, mode, guard.is_followed()) {
                        Ok(started) => started,
                        Err((value, served, handoff)) => {
                            guard.finish(handoff);
                            return (load(value), served);
                        }
                    };
                    let result = guard
                        .lead_async(self.timed_async(keep, mode, compute))
                        .await;
                    let followed = guard.is_followed();
                    let computed = self.finish(key, stripe, tags, keep, started, result, followed);
                    guard.finish(computed.handoff);
                    let served = Served::Computed {
                        stored: computed.stored,
                    };
                    return (computed.result, served);
                }
                Role::Follower(flight) => {
                    let next = if led_by_this_thread(&flight) {
                        AfterWait::Compute
                    } else {
                        let outcome = flight.wait_async().await;
                        match self.after_flight(&key, &snapshot, outcome, mode) {
                            Some(next) => next,
                            None => continue,
                        }
                    };
                    match next {
                        AfterWait::Hit(value, served) => return (load(value), served),
                        AfterWait::Compute => {
                            return self
                                .compute_alone_async(key, stripe, tags, keep, compute, mode)
                                .await;
                        }
                        AfterWait::TakeOver => {}
                    }
                }
            }
        }
    }

    /// The `async` form of `compute_alone`.
    async fn compute_alone_async<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
        mode: Mode,
    ) -> (R, Served) {
        let started = self.begin(stripe, mode);
        let result = self.timed_async(keep, mode, compute).await;
        self.finish(key, stripe, tags, keep, started, result, false)
            .served()
    }

    /// Runs the function on a miss (see `observe`).
    fn timed<R>(
        &self,
        keep: fn(&R) -> Option<&S>,
        mode: Mode,
        compute: Box<dyn FnOnce() -> R + '_>,
    ) -> R {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.counters.timed(self.config.name, mode, keep, compute)
    }

    async fn timed_async<R>(
        &self,
        keep: fn(&R) -> Option<&S>,
        mode: Mode,
        compute: impl Future<Output = R>,
    ) -> R {
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.counters
            .timed_async(self.config.name, mode, keep, compute)
            .await
    }

    /// Removes the entry for `key`: [`Invalidation::Removed`] if there was one, else
    /// [`Invalidation::Absent`]. A computation of that key running meanwhile (or of a key
    /// sharing its stripe) does not store its value: it may have read what was invalidated.
    pub fn invalidate<Q>(&self, key: &Q) -> Invalidation
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        // `Q` hashes like `K` (the lookup contract), so both find the same stripe.
        let stripe = self.key_stripe(key);
        self.invalidated[stripe].fetch_add(1, Ordering::SeqCst);
        let removed = self.backend.remove(key).unwrap_or_else(|error| {
            self.record_error("remove", &error);
            false
        });
        // A leader that checked the generation before it moved may be inserting its value: it
        // removes it again after its insert; wait for that, so nothing stale is left.
        Inserting::wait_out(&self.inserting[stripe]);
        let outcome = if removed {
            Invalidation::Removed
        } else {
            Invalidation::Absent
        };
        observe::invalidated(self.config.name, Scope::Key, outcome)
    }

    /// Removes every entry and resets the statistics, like Python's `cache_clear()`.
    pub fn clear(&self) -> Invalidation {
        self.cleared.fetch_add(1, Ordering::SeqCst);
        if let Err(error) = self.backend.clear() {
            self.record_error("clear", &error);
        }
        for inserting in &self.inserting {
            Inserting::wait_out(inserting);
        }
        self.counters.reset();
        self.evictions_at_clear
            .store(self.backend.evictions(), Ordering::Relaxed);
        observe::invalidated(self.config.name, Scope::Clear, Invalidation::Applied)
    }

    /// A snapshot of the statistics since the last `cache_clear`.
    pub fn info(&self) -> CacheInfo {
        self.info_since(Since::Clear)
    }

    /// A snapshot of the statistics since the cache was created or last cleared.
    pub(crate) fn info_since(&self, since: Since) -> CacheInfo {
        let tally = self.counters.tally(since);
        let evictions = self.backend.evictions();
        CacheInfo {
            hits: tally.hits,
            misses: tally.misses,
            maxsize: self.backend.capacity(),
            currsize: self.backend.len(),
            evictions: match since {
                Since::Start => evictions,
                Since::Clear => {
                    evictions.saturating_sub(self.evictions_at_clear.load(Ordering::Relaxed))
                }
            },
            errors: tally.errors,
            compute_time: tally.compute_time,
            pending_invalidations: 0,
            circuit_open: false,
        }
    }
}
