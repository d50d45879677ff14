//! The cache layer between generated code and a backend: freshness (TTL and tags), single
//! flight, invalidation races, statistics and error handling.

use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use equivalent::Equivalent;

use crate::backend::{Backend, BackendError, CacheConfig};
use crate::body::{self, Body};
use crate::clock;
use crate::flight::{Flights, Role, led_by_this_thread};
use crate::freshness::{self, Freshness, Revalidation, Verdict};
use crate::front::{Front, FrontKey, Judge};
use crate::hashing::RandomState;
use crate::invalidation::Invalidation;
use crate::key::{CachedValue, KeyPart};
use crate::observe::{self, Scope};
use crate::outcome::{Cached, Mode, Served, SetOutcome, WrittenAt};
use crate::stats::{CacheInfo, Counters, Event, Since};
use crate::tags::TagStamp;

const NEVER: u64 = u64::MAX;

/// The longest TTL a memory entry gets (about 146 years), so that an expiry (start + TTL)
/// never saturates.
const MAX_TTL_NS: u64 = u64::MAX / 4;

/// Slots of per-key write counts (`idle` only): a renewal skips its write when another write
/// of its slot came meanwhile, so more slots mean fewer renewals skipped for other keys.
const WRITE_SLOTS: usize = 1024;

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

/// What a backend stores for one key: the value, until when it is fresh, when its computation
/// started, and its tags' epochs.
#[derive(Clone, Copy, Debug)]
pub struct Entry<S, const N: usize> {
    value: S,
    /// Monotonic nanoseconds (see `clock`) at which the entry stops being fresh; [`NEVER`] if
    /// it does not expire. Per entry: jitter and `ttl_from` give entries their own.
    fresh_until: NonZeroU64,
    /// Monotonic nanoseconds at which its computation (or `set`) started: `Age`, and where
    /// stale windows are measured from the freshness.
    written_at: u64,
    tags: [TagStamp; N],
}

/// What a computation reads before it runs: the invalidation generation, and when it started
/// (precise monotonic nanoseconds if entries expire, else coarse ones, for `Age`).
#[derive(Clone, Copy)]
struct Started {
    generation: Generation,
    written_at: u64,
}

/// A stored entry past its freshness that may still be served (see [`Verdict`]), and the
/// generation it was read under: an invalidation since makes it unusable.
struct Prior<S, const N: usize> {
    entry: Entry<S, N>,
    generation: Generation,
    verdict: Verdict,
}

/// What the store held for a key when a call missed on the fast path.
enum Found<S, const N: usize> {
    /// A fresh entry (stored since the fast path looked).
    Fresh(Entry<S, N>),
    /// A stale entry that may be served.
    Stale(Prior<S, N>),
    /// Nothing usable.
    Nothing,
}

/// One cached function's cache. Generated code reaches it through a `CacheSlot`.
pub struct Cache<K, S, const N: usize, B> {
    backend: B,
    config: CacheConfig,
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
    freshness: Freshness,
    /// `ttl_from = path`: a value's own TTL, bounded by `ttl`.
    ttl_from: Option<fn(&S) -> Option<Duration>>,
    /// Whether entries can expire (a TTL, `ttl_from` or `idle`): only then is the precise
    /// clock read on a miss.
    expires: bool,
    /// `idle`, in nanoseconds: an entry not read for this long expires.
    idle_ns: Option<u64>,
    /// With `idle`, a hit leaves the fast path to renew its entry once less than this (half
    /// of `idle`) is left; 0 without.
    renew_margin_ns: u64,
    /// `clock_slack_ns + renew_margin_ns`: what a hit adds to the coarse clock.
    young_slack_ns: u64,
    /// With `idle`: per slot of keys, a count of the writes of those keys, moved before each
    /// insert (a miss's value, a `set`, a renewal). A renewal stores its entry again only if
    /// no write of its slot came since it read the entry, so it never replaces a newer value.
    writes: Option<Box<[AtomicU64]>>,
    /// Keys with a background refresh under way, and keys whose recomputation failed
    /// recently (`retry_after`).
    revalidation: Revalidation,
    /// Each thread's copies of the entries it hits most (see `front`).
    front: Front<K, S, N>,
}

impl<K, S, const N: usize, B> Judge<S, N> for Cache<K, S, N, B>
where
    K: KeyPart,
    S: CachedValue,
    B: Backend<K, Entry<S, N>>,
{
    #[inline(always)]
    fn may_serve(&self, entry: &Entry<S, N>) -> bool {
        self.is_fresh_and_young(entry)
    }
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

impl<S, const N: usize> Entry<S, N> {
    /// The stored value.
    pub(crate) fn value(&self) -> &S {
        &self.value
    }
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
        let clock_slack_ns = u64::try_from(clock::clock_resolution().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(4);
        let flights = config.single_flight.then(Flights::new);
        let freshness = config.freshness;
        let idle_ns = freshness
            .idle
            .map(|idle| u64::try_from(idle.as_nanos()).map_or(MAX_TTL_NS, |ns| ns.min(MAX_TTL_NS)));
        let expires = config.ttl.is_some() || idle_ns.is_some();
        let renew_margin_ns = idle_ns.map_or(0, |idle| (idle / 2).max(1));
        Cache {
            backend,
            config,
            clock_slack_ns,
            flights,
            counters: Counters::new(),
            cleared: AtomicU64::new(0),
            invalidated: [const { AtomicU64::new(0) }; KEY_STRIPES],
            inserting: [const { AtomicU64::new(0) }; KEY_STRIPES],
            key_hasher: RandomState::default(),
            evictions_at_clear: AtomicU64::new(0),
            freshness,
            ttl_from: None,
            expires,
            idle_ns,
            renew_margin_ns,
            young_slack_ns: clock_slack_ns.saturating_add(renew_margin_ns),
            writes: idle_ns.map(|_| (0..WRITE_SLOTS).map(|_| AtomicU64::new(0)).collect()),
            revalidation: Revalidation::new(),
            // Slots only where the front can be used (see `get_front`).
            front: Front::new(
                B::ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE && Front::<K, S, N>::holds(),
            ),
        }
    }

    /// Gives each value its own TTL (`ttl_from = path`), bounded by the declared `ttl`:
    /// `None` keeps the declared one, zero stores nothing.
    pub fn with_ttl_from(mut self, ttl_from: fn(&S) -> Option<Duration>) -> Self {
        self.ttl_from = Some(ttl_from);
        self.expires = true;
        self
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
        // Entries of a cache whose entries cannot expire are all fresh until `NEVER`: no clock.
        (!self.expires || self.is_unexpired(entry.fresh_until.get())) && tags_current(&entry.tags)
    }

    /// [`is_fresh`](Self::is_fresh), for a hit on the fast path: with `idle`, an entry with
    /// less than half of it left is not (the slow path renews it).
    #[inline(always)]
    fn is_fresh_and_young(&self, entry: &Entry<S, N>) -> bool {
        // As `is_unexpired`, with the renewal margin folded into the coarse clock's slack, so
        // that a hit far from its expiry costs what it does without `idle`.
        let fresh_until = entry.fresh_until.get();
        (!self.expires
            || clock::coarse_ns().saturating_add(self.young_slack_ns) < fresh_until
            || clock::precise_ns().saturating_add(self.renew_margin_ns) < fresh_until)
            && tags_current(&entry.tags)
    }

    /// The coarse clock decides while the expiry is far; near it, the precise clock does.
    #[inline(always)]
    fn is_unexpired(&self, expires_at: u64) -> bool {
        clock::coarse_ns().saturating_add(self.clock_slack_ns) < expires_at
            || clock::precise_ns() < expires_at
    }

    /// When an entry's computation started (monotonic nanoseconds).
    fn written_at(&self, entry: &Entry<S, N>) -> u64 {
        entry.written_at
    }

    /// How long past its freshness an entry is, by the precise clock (`None`: fresh).
    fn overdue(&self, entry: &Entry<S, N>) -> Option<Duration> {
        let fresh_until = entry.fresh_until.get();
        if fresh_until == NEVER {
            return None;
        }
        match clock::precise_ns() {
            // A clock that cannot be read: expired, never stale-but-usable.
            u64::MAX => Some(Duration::MAX),
            now if now < fresh_until => None,
            now => Some(Duration::from_nanos(now - fresh_until)),
        }
    }

    /// When an entry for `value`, computed from `written_at` and last read at `read_at`, stops
    /// being fresh (see `Freshness::lifetime`; with `idle`, at most `idle` after `read_at`);
    /// `None` when the value says it is already expired.
    fn fresh_until(&self, written_at: u64, value: &S, read_at: u64) -> Option<u64> {
        if !self.expires {
            return Some(NEVER);
        }
        let own = self.ttl_from.and_then(|ttl_from| ttl_from(value));
        // A clock that could not be read gives an entry that is never fresh.
        let unreadable = written_at == u64::MAX || read_at == u64::MAX;
        let lifetime = match self.freshness.lifetime(self.config.ttl, own) {
            None => NEVER,
            Some(lifetime) if lifetime.is_zero() => return None,
            Some(_) if unreadable => return Some(0),
            Some(lifetime) => {
                let ns =
                    u64::try_from(lifetime.as_nanos()).map_or(MAX_TTL_NS, |ns| ns.min(MAX_TTL_NS));
                written_at.saturating_add(ns).min(NEVER - 1)
            }
        };
        Some(match self.idle_ns {
            None => lifetime,
            Some(_) if unreadable => 0,
            Some(idle) => lifetime.min(read_at.saturating_add(idle)),
        })
    }

    /// The write count of `key`'s slot (`idle` only).
    fn write_slot<Q: ?Sized + Hash>(&self, key: &Q) -> Option<&AtomicU64> {
        let writes = self.writes.as_ref()?;
        let slot = (self.key_hasher.hash_one(key) as usize) % writes.len();
        writes.get(slot)
    }

    /// Counts a write of `key` (before it is inserted).
    fn note_write<Q: ?Sized + Hash>(&self, key: &Q) {
        if let Some(slot) = self.write_slot(key) {
            slot.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// With `idle`: stores `entry` again, fresh for `idle` from now (at most its TTL), unless an
    /// invalidation (see `store_entry`) or another write of its slot came since the entry was
    /// read (`generation`, `writes_seen`): it never brings back what an invalidation removed
    /// nor replaces a newer value. Done as the key's flight leader, so that no computation of
    /// the key stores a value meanwhile; if one is under way, the entry is left as it is. A
    /// write of the slot that comes while the renewal is inserted may have landed first: the
    /// renewed entry is then removed again (a miss, never an older value).
    fn renew(
        &self,
        key: &K,
        stripe: usize,
        (generation, writes_seen): (Generation, u64),
        entry: Entry<S, N>,
    ) -> Entry<S, N> {
        let Some(slot) = self.write_slot(key) else {
            return entry;
        };
        let now = clock::precise_ns();
        let Some(renewed) = self.fresh_until(entry.written_at, &entry.value, now) else {
            return entry;
        };
        if renewed <= entry.fresh_until.get() {
            // At its TTL already.
            return entry;
        }
        let guard = match self.flights.as_ref().map(|flights| flights.join(key)) {
            Some(Role::Leader(guard)) => Some(guard),
            Some(Role::Follower(_)) => return entry,
            None => None,
        };
        let renewed = Entry {
            fresh_until: never_zero(renewed),
            ..entry.clone()
        };
        if slot.load(Ordering::SeqCst) == writes_seen {
            // `store_entry` counts this write: one more than was seen, unless another came.
            let landed = self.store_entry(key.clone(), stripe, generation, renewed);
            if matches!(landed, Ok(true)) && slot.load(Ordering::SeqCst) != writes_seen + 1 {
                if let Err(error) = self.backend.remove(key) {
                    self.record_error("remove", &error);
                }
                self.front.hid();
            }
        }
        if let Some(guard) = guard {
            guard.finish(None);
        }
        entry
    }

    /// The fresh entry for `key`, if any (not counted).
    #[inline(always)]
    fn fresh_entry<Q>(&self, key: &Q) -> Option<Entry<S, N>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.entry_if(key, Self::is_fresh)
    }

    /// The entry for `key` if `judge` says it may be served (not counted).
    #[inline(always)]
    fn entry_if<Q>(&self, key: &Q, judge: fn(&Self, &Entry<S, N>) -> bool) -> Option<Entry<S, N>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        match self.backend.get(key) {
            Ok(Some(entry)) if judge(self, &entry) => Some(entry),
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
        let entry = self.entry_if(key, Self::is_fresh_and_young)?;
        self.counters.hits.increment();
        Some(entry.value)
    }

    /// The hit lookup of `key`, for generated code to dispatch on (see `__private::Lookup`).
    /// A method of the cache, so that a cache whose type failed a gate reports nothing more.
    #[doc(hidden)]
    #[inline(always)]
    pub fn probe<'q, Q: ?Sized>(&self, key: &'q Q) -> crate::__private::Lookup<'_, 'q, Self, Q> {
        crate::__private::Lookup(self, key)
    }

    /// [`get`](Self::get) for a key and value the hit front can hold (`Copy`; generated code
    /// picks this at compile time): a hit on this thread's copy takes no lock and writes no
    /// shared memory (see `front`).
    #[inline(always)]
    pub fn get_front<Q>(&self, key: &Q) -> Option<S>
    where
        S: Copy,
        Q: ?Sized + Hash + Equivalent<K> + FrontKey<K>,
    {
        if !(B::ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE && Front::<K, S, N>::holds()) {
            return self.get(key);
        }
        let ticket = match self.front.lookup(key, self.backend.evictions(), self) {
            Ok(value) => {
                self.counters.hits.increment();
                return Some(value);
            }
            Err(ticket) => ticket,
        };
        let entry = self.entry_if(key, Self::is_fresh_and_young)?;
        self.counters.hits.increment();
        self.front.admit(ticket, key.front_key(), &entry);
        Some(entry.value)
    }

    /// [`get`](Self::get), saying how old the value is (`f::call`).
    #[inline]
    pub fn get_observed<Q, R>(&self, key: &Q, load: fn(S) -> R) -> Option<Cached<R>>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let entry = self.entry_if(key, Self::is_fresh_and_young)?;
        self.counters.hits.increment();
        let served = Served::hit_at(self.written_at(&entry));
        Some(served.into_hit(load(entry.value)))
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
            called_at: if self.expires { clock::precise_ns() } else { 0 },
        }
    }

    /// Whether a value computed by another caller is as fresh as this caller's own call needs:
    /// no invalidation of its key and no tag invalidation since the computation started, and
    /// not expired at the time of this call.
    fn accepts(&self, snapshot: &Snapshot<N>, handoff: &Handoff<S, N>) -> bool {
        handoff.generation == snapshot.generation
            && handoff.entry.tags == snapshot.tags
            && (handoff.entry.fresh_until.get() == NEVER
                || handoff.entry.fresh_until.get() > snapshot.called_at)
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
    /// invalidation generation and the start (from which the entry's TTL counts).
    fn start(&self, stripe: usize) -> Started {
        let generation = self.generation(stripe);
        // Without expiry the time only gives `Age`: the coarse clock is enough.
        let written_at = if self.expires {
            clock::precise_ns()
        } else {
            clock::coarse_ns()
        };
        Started {
            generation,
            written_at,
        }
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
        let kept = keep(&result);
        if kept.is_some() {
            // A failing origin recovered: its key is no longer throttled.
            self.forget_failure(&key);
        }
        let Some((value, fresh_until)) = kept.and_then(|value| {
            // `idle` counts from now, when the value is stored (a computation longer than
            // `idle` must not store an entry already expired).
            let stored_at = if self.idle_ns.is_some() {
                clock::precise_ns()
            } else {
                started.written_at
            };
            let fresh_until = self.fresh_until(started.written_at, value, stored_at)?;
            Some((value.clone(), fresh_until))
        }) else {
            return Computed {
                result,
                handoff: None,
                stored: false,
            };
        };
        let entry = Entry {
            value,
            fresh_until: never_zero(fresh_until),
            written_at: started.written_at,
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
            && tags_current(&tags)
            && (fresh_until == NEVER || clock::precise_ns() < fresh_until);
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
    #[inline]
    fn store_entry(
        &self,
        key: K,
        stripe: usize,
        generation: Generation,
        entry: Entry<S, N>,
    ) -> Result<bool, BackendError> {
        // Cloned before: no user `Clone` runs while invalidations wait.
        let stored_key = key.clone();
        self.note_write(&key);
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
            self.front.hid();
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
        self.forget_failure(&key);
        self.supersede(stripe);
        let started = self.start(stripe);
        let Some(fresh_until) = self.fresh_until(started.written_at, &value, started.written_at)
        else {
            // The value says it is already expired.
            return SetOutcome::NotStored(self.invalidate(&key));
        };
        let entry = Entry {
            value,
            fresh_until: never_zero(fresh_until),
            written_at: started.written_at,
            tags,
        };
        self.note_write(&key);
        // Inserted whatever came meanwhile: the value is the caller's, not read from data an
        // invalidation running at the same time may hide, so it may land after that one (as
        // if called after it). Checking the stripe's generation here would drop it whenever
        // another key of the stripe was invalidated, set or refreshed meanwhile, though it
        // says `Stored`.
        match self.backend.insert(key.clone(), entry) {
            Ok(()) => {
                // Copies of the value it replaced are not served once `set` returns.
                self.front.hid();
                SetOutcome::Stored
            }
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
        // Type-erased (on the miss path, without an allocation) so that the machinery below is
        // compiled once per key, value and result type, not once per cached function.
        let mut compute = body::once(compute);
        self.compute_boxed(key, tags, keep, load, Body::new(&mut compute), Mode::Lookup)
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
        let mut compute = body::once(compute);
        let (result, served) =
            self.compute_boxed(key, tags, keep, load, Body::new(&mut compute), Mode::Lookup);
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
        // However it ends (stored, panicked, cancelled), copies of the value it replaced are
        // not served once it returns.
        let _hides = self.front.hides_on_drop();
        let mut compute = body::once(compute);
        self.compute_boxed(
            key,
            tags,
            keep,
            load,
            Body::new(&mut compute),
            Mode::Refresh,
        )
        .0
    }

    fn compute_boxed<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: Body<'_, R>,
        mode: Mode,
    ) -> (R, Served) {
        let stripe = self.key_stripe(&key);
        let prior = match self.found(&key, stripe, mode) {
            Found::Fresh(entry) => return self.fresh_hit(entry, load),
            Found::Stale(prior) => Some(prior),
            Found::Nothing => None,
        };
        self.compute_with(key, stripe, tags, keep, load, compute, mode, prior)
    }

    /// [`compute_boxed`](Self::compute_boxed) once the store was read: `prior` is the stale
    /// entry that may stand in for a failed or throttled recomputation.
    #[allow(clippy::too_many_arguments)]
    fn compute_with<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: Body<'_, R>,
        mode: Mode,
        prior: Option<Prior<S, N>>,
    ) -> (R, Served) {
        if let Some((value, served)) = self.throttled(&key, stripe, prior.as_ref()) {
            return (load(value), served);
        }
        let Some(flights) = &self.flights else {
            return self.compute_alone(key, stripe, tags, keep, load, compute, mode, prior);
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
                    if let Some((value, served)) = self.throttled(&key, stripe, prior.as_ref()) {
                        guard.finish(None);
                        return (load(value), served);
                    }
                    let run = || guard.lead(|| self.timed(keep, mode, compute));
                    let result = match self.guarded(&key, stripe, prior.as_ref(), keep, run) {
                        Ok(result) => result,
                        Err((value, served)) => {
                            // Followers take over, and find the key throttled.
                            guard.finish(None);
                            return (load(value), served);
                        }
                    };
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
                            return self.compute_alone(
                                key, stripe, tags, keep, load, compute, mode, prior,
                            );
                        }
                        AfterWait::TakeOver => {}
                    }
                }
            }
        }
    }

    /// What the store holds for `key` on a lookup's slow path, when stale values may be served
    /// (else nothing is read here: the fast path looked).
    fn found(&self, key: &K, stripe: usize, mode: Mode) -> Found<S, N> {
        let looks = self.freshness.serves_stale() || self.idle_ns.is_some();
        if mode != Mode::Lookup || !looks {
            return Found::Nothing;
        }
        // Read before the entry: an invalidation that removes it (or a write that replaces it)
        // after this moved it first.
        let generation = self.generation(stripe);
        let writes_seen = self
            .write_slot(key)
            .map_or(0, |slot| slot.load(Ordering::SeqCst));
        let entry = match self.backend.get(key) {
            Ok(Some(entry)) if tags_current(&entry.tags) => entry,
            Ok(_) => return Found::Nothing,
            Err(error) => {
                self.record_error("get", &error);
                return Found::Nothing;
            }
        };
        match self.freshness.verdict(self.overdue(&entry)) {
            Verdict::Fresh => {
                Found::Fresh(self.renew(key, stripe, (generation, writes_seen), entry))
            }
            verdict if verdict.is_usable() => Found::Stale(Prior {
                entry,
                generation,
                verdict,
            }),
            _ => Found::Nothing,
        }
    }

    /// Forgets that `key`'s recomputation failed (with stale windows only: the others never
    /// throttle).
    fn forget_failure<Q: ?Sized + Hash>(&self, key: &Q) {
        if self.freshness.serves_stale() {
            self.revalidation.forget(self.revalidation.hash(key));
        }
    }

    /// A counted hit on an entry found fresh.
    fn fresh_hit<R>(&self, entry: Entry<S, N>, load: fn(S) -> R) -> (R, Served) {
        self.counters.hits.increment();
        let served = Served::hit_at(entry.written_at);
        (load(entry.value), served)
    }

    /// `prior`'s value, if nothing has hidden it since it was read (an invalidation of its
    /// stripe, a clear, a tag), counted as served stale.
    fn stale(&self, stripe: usize, prior: &Prior<S, N>) -> Option<(S, Served)> {
        let usable = self.generation(stripe) == prior.generation && tags_current(&prior.entry.tags);
        if !usable {
            return None;
        }
        self.counters.note(Event::StaleServed);
        Some((
            prior.entry.value.clone(),
            Served::Stale(WrittenAt::Monotonic(prior.entry.written_at)),
        ))
    }

    /// While a key's recomputation is throttled after a failure, its stale value (a hit).
    fn throttled(
        &self,
        key: &K,
        stripe: usize,
        prior: Option<&Prior<S, N>>,
    ) -> Option<(S, Served)> {
        let prior = prior?;
        if !self.revalidation.is_throttled(self.revalidation.hash(key)) {
            return None;
        }
        let stale = self.stale(stripe, prior)?;
        self.counters.hits.increment();
        Some(stale)
    }

    /// Runs a recomputation that a stale entry may stand in for (fail-safe): when it fails
    /// (`Err`/`None` not stored, a panic), `Err` with the stale value, and the key's retries
    /// are throttled. Without a stale entry it just runs.
    fn guarded<R>(
        &self,
        key: &K,
        stripe: usize,
        prior: Option<&Prior<S, N>>,
        keep: fn(&R) -> Option<&S>,
        run: impl FnOnce() -> R,
    ) -> Result<R, (S, Served)> {
        let Some(prior) = prior else {
            return Ok(run());
        };
        let attempt = freshness::attempt(keep, run);
        self.judge_attempt(key, stripe, prior, attempt)
    }

    /// The `async` form of [`guarded`](Self::guarded) (`prior` owned: a reference held across
    /// the await would need `S: Sync`).
    async fn guarded_async<R>(
        &self,
        key: &K,
        stripe: usize,
        prior: Option<Prior<S, N>>,
        keep: fn(&R) -> Option<&S>,
        run: impl Future<Output = R>,
    ) -> Result<R, (S, Served)> {
        let Some(prior) = prior else {
            return Ok(run.await);
        };
        let attempt = freshness::attempt_async(keep, run).await;
        self.judge_attempt(key, stripe, &prior, attempt)
    }

    /// What a recomputation that `prior` may stand in for came to (see
    /// `Revalidation::settle`).
    fn judge_attempt<R>(
        &self,
        key: &K,
        stripe: usize,
        prior: &Prior<S, N>,
        attempt: freshness::Attempt<R>,
    ) -> Result<R, (S, Served)> {
        let hash = self.revalidation.hash(key);
        let retry_after = self.freshness.retry_after;
        self.revalidation
            .settle(hash, attempt, retry_after, &self.counters, || {
                self.stale(stripe, prior)
            })
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
            Mode::Refresh | Mode::Revalidate => Ok(started),
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
            Mode::Lookup | Mode::Revalidate => Some(self.after_wait(key, snapshot, outcome)),
            Mode::Refresh => None,
        }
    }

    /// Computes outside any flight and stores what the policy keeps (a refresh first makes
    /// the computations running meanwhile store nothing).
    #[allow(clippy::too_many_arguments)]
    fn compute_alone<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: Body<'_, R>,
        mode: Mode,
        prior: Option<Prior<S, N>>,
    ) -> (R, Served) {
        if let Some((value, served)) = self.throttled(&key, stripe, prior.as_ref()) {
            return (load(value), served);
        }
        let started = self.begin(stripe, mode);
        let run = || self.timed(keep, mode, compute);
        match self.guarded(&key, stripe, prior.as_ref(), keep, run) {
            Ok(result) => self
                .finish(key, stripe, tags, keep, started, result, false)
                .served(),
            Err((value, served)) => (load(value), served),
        }
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
        let _hides = self.front.hides_on_drop();
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
        let prior = match self.found(&key, stripe, mode) {
            Found::Fresh(entry) => return self.fresh_hit(entry, load),
            Found::Stale(prior) => Some(prior),
            Found::Nothing => None,
        };
        self.compute_async_with(key, stripe, tags, keep, load, compute, mode, prior)
            .await
    }

    /// The `async` form of `compute_with`.
    #[allow(clippy::too_many_arguments)]
    async fn compute_async_with<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
        mode: Mode,
        mut prior: Option<Prior<S, N>>,
    ) -> (R, Served) {
        if let Some((value, served)) = self.throttled(&key, stripe, prior.as_ref()) {
            return (load(value), served);
        }
        let Some(flights) = &self.flights else {
            return self
                .compute_alone_async(key, stripe, tags, keep, load, compute, mode, prior)
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
                    if let Some((value, served)) = self.throttled(&key, stripe, prior.as_ref()) {
                        guard.finish(None);
                        return (load(value), served);
                    }
                    let run = guard.lead_async(self.timed_async(keep, mode, compute));
                    // Owned across the await: a reference would need `S: Sync`.
                    let result = match self
                        .guarded_async(&key, stripe, prior.take(), keep, run)
                        .await
                    {
                        Ok(result) => result,
                        Err((value, served)) => {
                            guard.finish(None);
                            return (load(value), served);
                        }
                    };
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
                                .compute_alone_async(
                                    key, stripe, tags, keep, load, compute, mode, prior,
                                )
                                .await;
                        }
                        AfterWait::TakeOver => {}
                    }
                }
            }
        }
    }

    /// The `async` form of `compute_alone`.
    #[allow(clippy::too_many_arguments)]
    async fn compute_alone_async<R>(
        &self,
        key: K,
        stripe: usize,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
        mode: Mode,
        prior: Option<Prior<S, N>>,
    ) -> (R, Served) {
        if let Some((value, served)) = self.throttled(&key, stripe, prior.as_ref()) {
            return (load(value), served);
        }
        let started = self.begin(stripe, mode);
        let run = self.timed_async(keep, mode, compute);
        match self.guarded_async(&key, stripe, prior, keep, run).await {
            Ok(result) => self
                .finish(key, stripe, tags, keep, started, result, false)
                .served(),
            Err((value, served)) => (load(value), served),
        }
    }

    /// Runs the function on a miss (see `observe`).
    fn timed<R>(&self, keep: fn(&R) -> Option<&S>, mode: Mode, compute: Body<'_, R>) -> R {
        self.count_miss(mode);
        self.counters
            .timed(self.config.name, mode, keep, move || compute.run())
    }

    /// A miss is a call that ran the function: not a background refresh.
    fn count_miss(&self, mode: Mode) {
        if mode != Mode::Revalidate {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn timed_async<R>(
        &self,
        keep: fn(&R) -> Option<&S>,
        mode: Mode,
        compute: impl Future<Output = R>,
    ) -> R {
        self.count_miss(mode);
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
        self.forget_failure(key);
        self.invalidated[stripe].fetch_add(1, Ordering::SeqCst);
        let removed = self.backend.remove(key).unwrap_or_else(|error| {
            self.record_error("remove", &error);
            false
        });
        // A leader that checked the generation before it moved may be inserting its value: it
        // removes it again after its insert; wait for that, so nothing stale is left.
        Inserting::wait_out(&self.inserting[stripe]);
        // Last: a copy taken from the store before the removal (or a racing leader's) is
        // older than this bump.
        self.front.hid();
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
        self.front.hid();
        self.counters.reset();
        self.revalidation.clear();
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
        let mut info = CacheInfo {
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
            ..CacheInfo::default()
        };
        tally.events_into(&mut info);
        info
    }
}

/// Stale-while-revalidate and soft timeouts: the computation is owned (`'static`), so it can
/// run in the background while the caller gets the stale value.
impl<K, S, const N: usize, B> Cache<K, S, N, B>
where
    K: KeyPart,
    S: CachedValue,
    B: Backend<K, Entry<S, N>>,
{
    /// [`compute`](Self::compute) for a cache with `stale_while_revalidate` or `timeout`: a
    /// stale entry within its window is returned at once, and the first such call starts
    /// one background recomputation of the key (none while its retries are throttled).
    pub fn compute_fresh<R, F>(
        &'static self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.compute_fresh_in(key, tags, keep, load, compute).0
    }

    /// [`compute_fresh`](Self::compute_fresh), saying how the call was answered (`f::call`).
    pub fn compute_fresh_observed<R, F>(
        &'static self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> Cached<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let called = std::time::Instant::now();
        let (result, served) = self.compute_fresh_in(key, tags, keep, load, compute);
        served.into_cached(result, called)
    }

    fn compute_fresh_in<R, F>(
        &'static self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> (R, Served)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let stripe = self.key_stripe(&key);
        let prior = match self.found(&key, stripe, Mode::Lookup) {
            Found::Fresh(entry) => return self.fresh_hit(entry, load),
            Found::Stale(prior) => prior,
            Found::Nothing => {
                let mut compute = body::once(compute);
                return self.compute_with(
                    key,
                    stripe,
                    tags,
                    keep,
                    load,
                    Body::new(&mut compute),
                    Mode::Lookup,
                    None,
                );
            }
        };
        if prior.verdict == Verdict::Stale
            && let Some((value, served)) = self.stale(stripe, &prior)
        {
            self.counters.hits.increment();
            if let Some(ticket) = self.refresh_ticket(&key) {
                let job = move || {
                    let _ticket = ticket;
                    self.revalidate(key, tags, keep, compute);
                };
                if !freshness::spawn_blocking(job) {
                    self.counters.note(Event::RefreshFailed);
                }
            }
            return (load(value), served);
        }
        let mut compute = body::once(compute);
        self.compute_with(
            key,
            stripe,
            tags,
            keep,
            load,
            Body::new(&mut compute),
            Mode::Lookup,
            Some(prior),
        )
    }

    /// A ticket to refresh `key` in the background (see `Revalidation::ticket`).
    fn refresh_ticket(&'static self, key: &K) -> Option<freshness::RefreshTicket> {
        let hash = self.revalidation.hash(key);
        self.revalidation.ticket(hash, &self.counters)
    }

    /// Notes how a background refresh ended: kept (`Ok`/`Some`), or failed, which throttles
    /// the key's retries (the stale entry stays).
    fn refreshed(&self, key: &K, kept: bool) {
        let hash = self.revalidation.hash(key);
        let retry_after = self.freshness.retry_after;
        self.revalidation
            .refreshed(hash, kept, retry_after, &self.counters);
    }

    /// A background refresh: leads the key's flight (callers arriving once the entry is past
    /// its window wait for it; if a computation of the key is under way, it stores a newer
    /// value and this one does nothing), computes and stores as a miss would.
    fn revalidate<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        compute: impl FnOnce() -> R,
    ) {
        let stripe = self.key_stripe(&key);
        let guard = match self.flights.as_ref().map(|flights| flights.join(&key)) {
            Some(Role::Leader(guard)) => Some(guard),
            // A computation of the key is under way (it started after the entry went stale):
            // its outcome is this refresh's.
            Some(Role::Follower(flight)) => {
                let stored = flight.wait().is_some();
                self.refreshed(&key, stored);
                return;
            }
            None => None,
        };
        let started = self.start(stripe);
        let mut compute = body::once(compute);
        let run = || self.timed(keep, Mode::Revalidate, Body::new(&mut compute));
        let attempt = match &guard {
            Some(guard) => freshness::attempt(keep, || guard.lead(run)),
            None => freshness::attempt(keep, run),
        };
        let Ok(result) = attempt else {
            // Dropping the guard lets waiters take over.
            self.refreshed(&key, false);
            return;
        };
        self.refreshed(&key, true);
        let followed = guard.as_ref().is_some_and(|guard| guard.is_followed());
        let computed = self.finish(key, stripe, tags, keep, started, result, followed);
        if let Some(guard) = guard {
            guard.finish(computed.handoff);
        }
    }

    /// The `async` form of [`compute_fresh`](Self::compute_fresh): the refresh runs on the
    /// caller's tokio runtime if there is one, else on a refresh thread of ours. With
    /// `timeout`, a call that has a stale value to fall back on waits at most that long for
    /// the recomputation, then returns the stale value while the recomputation finishes (and
    /// stores its value) in the background.
    pub async fn compute_fresh_async<R, F>(
        &'static self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        self.compute_fresh_async_in(key, tags, keep, load, compute)
            .await
            .0
    }

    /// [`compute_fresh_async`](Self::compute_fresh_async), saying how the call was answered.
    pub async fn compute_fresh_observed_async<R, F>(
        &'static self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> Cached<R>
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let called = std::time::Instant::now();
        let (result, served) = self
            .compute_fresh_async_in(key, tags, keep, load, compute)
            .await;
        served.into_cached(result, called)
    }

    async fn compute_fresh_async_in<R, F>(
        &'static self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> (R, Served)
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let stripe = self.key_stripe(&key);
        let prior = match self.found(&key, stripe, Mode::Lookup) {
            Found::Fresh(entry) => return self.fresh_hit(entry, load),
            Found::Stale(prior) => prior,
            Found::Nothing => {
                return self
                    .compute_async_with(key, stripe, tags, keep, load, compute, Mode::Lookup, None)
                    .await;
            }
        };
        // (`Verdict::Stale` only comes with `stale_while_revalidate`.)
        if prior.verdict == Verdict::Stale
            && let Some((value, served)) = self.stale(stripe, &prior)
        {
            self.counters.hits.increment();
            if let Some(ticket) = self.refresh_ticket(&key) {
                let refresh = async move {
                    let _ticket = ticket;
                    self.revalidate_async(key, tags, keep, compute).await;
                };
                if !freshness::spawn_future(refresh) {
                    self.counters.note(Event::RefreshFailed);
                }
            }
            return (load(value), served);
        }
        let Some(limit) = self.freshness.timeout else {
            return self
                .compute_async_with(
                    key,
                    stripe,
                    tags,
                    keep,
                    load,
                    compute,
                    Mode::Lookup,
                    Some(prior),
                )
                .await;
        };
        let fallback = Prior {
            entry: prior.entry.clone(),
            generation: prior.generation,
            verdict: prior.verdict,
        };
        let work = Box::pin(self.compute_async_with(
            key,
            stripe,
            tags,
            keep,
            load,
            compute,
            Mode::Lookup,
            Some(prior),
        ));
        match freshness::answer_within(work, limit, &self.counters, || {
            self.stale(stripe, &fallback)
        })
        .await
        {
            Ok(answered) => answered,
            Err((value, served)) => (load(value), served),
        }
    }

    /// The `async` form of [`revalidate`](Self::revalidate).
    async fn revalidate_async<R>(
        &self,
        key: K,
        tags: [TagStamp; N],
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
    ) {
        let stripe = self.key_stripe(&key);
        let guard = match self.flights.as_ref().map(|flights| flights.join(&key)) {
            Some(Role::Leader(guard)) => Some(guard),
            Some(Role::Follower(flight)) => {
                let stored = flight.wait_async().await.is_some();
                self.refreshed(&key, stored);
                return;
            }
            None => None,
        };
        let started = self.start(stripe);
        let run = self.timed_async(keep, Mode::Revalidate, compute);
        let attempt = match &guard {
            Some(guard) => freshness::attempt_async(keep, guard.lead_async(run)).await,
            None => freshness::attempt_async(keep, run).await,
        };
        let Ok(result) = attempt else {
            self.refreshed(&key, false);
            return;
        };
        self.refreshed(&key, true);
        let followed = guard.as_ref().is_some_and(|guard| guard.is_followed());
        let computed = self.finish(key, stripe, tags, keep, started, result, followed);
        if let Some(guard) = guard {
            guard.finish(computed.handoff);
        }
    }
}

/// Whether no tag of an entry was invalidated since it was stamped. A plain loop over the
/// array: `iter().all` was seen left as an out-of-line call on the hit path, even for no tags.
#[inline(always)]
fn tags_current<const N: usize>(tags: &[TagStamp; N]) -> bool {
    let mut index = 0;
    while index < N {
        if !tags[index].is_current() {
            return false;
        }
        index += 1;
    }
    true
}

/// A freshness deadline as stored: 0 (never fresh) is kept as 1, which is as much in the past,
/// so that `Option<Entry>` needs no tag of its own (a hit copies less).
fn never_zero(fresh_until: u64) -> NonZeroU64 {
    NonZeroU64::new(fresh_until).unwrap_or(NonZeroU64::MIN)
}
