//! The near cache (`local = "30s"`): a bounded in-process copy of remote entries, kept
//! coherent with the store by a [`ChangeFeed`].
//!
//! # How a copy stays exact
//! - Every key of the store that a copy depends on (its entry, its cache's clear stamp, the
//!   remote-wide stamp, its tags' stamps) maps to one of [`STRIPES`] process-wide counters. A
//!   change of a key bumps its stripe: a change this process made, as soon as its write
//!   returned (or was queued), and a change any process (or `redis-cli`) made, when the
//!   store's feed reports it.
//! - A copy records the sum of its keys' stripes, taken *before* the remote read it comes from,
//!   and is served only while that sum is unchanged (stripes only grow, so an equal sum means
//!   no key changed), while its tracker's epoch is unchanged (it moves on every loss and
//!   re-establishment of the feed: a resync drops every copy), and while the feed has confirmed
//!   recently that it is delivering (see [`TRUST`]).
//! - A copy is also bounded by the entry's own freshness in the store and by `local`.
//!
//! A hit reads the copy (one quick_cache lookup and a clone of the value), the coarse clock and
//! a few atomics; it writes nothing shared.

use std::any::{Any, TypeId};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use equivalent::Equivalent;
use quick_cache::sync::Cache;

use crate::clock;
use crate::key::KeyPart;
use crate::stats::StripedCounter;

/// The number of change counters that store keys hash into (process-wide). A collision only
/// drops a copy that did not need dropping.
pub const STRIPES: usize = 4096;

/// How long after a heartbeat was sent on the feed, answered, local copies are still trusted.
/// It bounds how long a copy can outlive a change when the feed stalls silently (a half-open
/// connection): after a detected disconnection, copies stop being served at once.
pub const TRUST: Duration = Duration::from_millis(500);

/// How often the Redis store's feed sends its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// The most store keys a copy may depend on (its entry, clear stamp, remote-wide stamp and up to
/// five tags); an entry with more tags is served from the store only.
pub(crate) const MAX_KEYS: usize = 8;

static CHANGES: [AtomicU64; STRIPES] = [const { AtomicU64::new(0) }; STRIPES];

/// Bumped whenever a remote is installed as the default: copies read through another default
/// are not served.
static INSTALLS: AtomicU64 = AtomicU64::new(0);

/// One hasher for the whole process (seeded at random once), so that a key's stripe is the
/// same for the feed's reports and for every copy.
fn hasher() -> &'static crate::hashing::RandomState {
    static HASHER: OnceLock<crate::hashing::RandomState> = OnceLock::new();
    HASHER.get_or_init(crate::hashing::RandomState::default)
}

fn stripe_of(key: &[u8]) -> u16 {
    (hasher().hash_one(key) as usize % STRIPES) as u16
}

/// Notes that `key` of the store changed (or may have): copies that depend on it are dropped.
pub(crate) fn changed(key: &[u8]) {
    CHANGES[stripe_of(key) as usize].fetch_add(1, Ordering::SeqCst);
}

/// Notes that the default remote was replaced.
pub(crate) fn installed() {
    INSTALLS.fetch_add(1, Ordering::SeqCst);
}

/// The trust state of one remote's feed. Leaked: one per remote with a near cache, alive as
/// long as copies may point at it.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// Moves on every loss and re-establishment of the feed.
    epoch: AtomicU64,
    /// Copies are trusted until this coarse-clock time (nanoseconds; 0: not trusted).
    trusted_until: AtomicU64,
    /// Feeds that reported a loss or a resync (for `health`).
    resyncs: AtomicU64,
    /// When the last confirmed heartbeat was sent (precise-clock nanoseconds).
    confirmed_sent: AtomicU64,
}

impl Tracker {
    pub(crate) fn leak() -> &'static Tracker {
        Box::leak(Box::default())
    }

    fn distrust(&self) {
        self.trusted_until.store(0, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times the feed was lost or re-established.
    pub(crate) fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Waits (blocking, at most `timeout`) until the feed has confirmed every change made
    /// before this call; returns whether it did.
    pub(crate) fn catch_up(&self, timeout: Duration) -> bool {
        let now = clock::precise_ns();
        let deadline = Instant::now() + timeout;
        while self.confirmed_sent.load(Ordering::Acquire) < now {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Whether copies are trusted now (coarse clock).
    pub(crate) fn trusted(&self) -> bool {
        self.trusted_at(clock::coarse_ns())
    }

    /// Whether copies are trusted at `now` (coarse-clock nanoseconds).
    #[inline]
    fn trusted_at(&self, now: u64) -> bool {
        now < self.trusted_until.load(Ordering::Acquire)
    }
}

/// Where a store reports changes of its keys, so that processes can keep local copies of its
/// entries (`#[cached(local = ..)]`). Handed to [`RemoteStore::track_changes`](super::RemoteStore::track_changes).
///
/// The contract: after [`subscribed`](Self::subscribed), every change of a key under the
/// prefix, by anyone, is reported with [`changed`](Self::changed) (or
/// [`everything_changed`](Self::everything_changed)); [`confirmed`](Self::confirmed)`(sent)`
/// says that every change made before `sent` has been reported; [`lost`](Self::lost) says that
/// reports may have been missed (a disconnection). Local copies are served only between a
/// confirmation and [`TRUST`] after it was sent, and a loss or a resubscription drops them all.
///
/// ```
/// # use cachemere::remote::{ChangeFeed, RemoteStore};
/// fn on_message(feed: &ChangeFeed, key: &[u8]) {
///     feed.changed(key);
/// }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ChangeFeed {
    tracker: &'static Tracker,
}

impl ChangeFeed {
    pub(crate) fn new(tracker: &'static Tracker) -> Self {
        ChangeFeed { tracker }
    }

    /// `key` (a full store key) was written, deleted or expired.
    pub fn changed(&self, key: &[u8]) {
        changed(key);
    }

    /// Every key may have changed (a flush of the store): every copy is dropped.
    pub fn everything_changed(&self) {
        self.tracker.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The feed is (again) established: copies read before are dropped, and copies are trusted
    /// again after the next [`confirmed`](Self::confirmed).
    pub fn subscribed(&self) {
        self.tracker.resyncs.fetch_add(1, Ordering::Relaxed);
        self.tracker.distrust();
    }

    /// Reports may have been missed (the connection was lost): copies are not served until the
    /// feed is [`subscribed`](Self::subscribed) again and confirmed.
    pub fn lost(&self) {
        self.tracker.distrust();
    }

    /// Every change made before `sent` has been reported: copies are trusted until [`TRUST`]
    /// after `sent`.
    pub fn confirmed(&self, sent: Instant) {
        let age = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let trust = u64::try_from(TRUST.as_nanos()).unwrap_or(u64::MAX);
        let until = clock::coarse_ns().saturating_sub(age).saturating_add(trust);
        self.tracker.trusted_until.store(until, Ordering::Release);
        self.tracker
            .confirmed_sent
            .store(clock::precise_ns().saturating_sub(age), Ordering::Release);
    }
}

/// What a copy depends on, taken before the read it comes from.
#[derive(Clone, Copy)]
pub(crate) struct Snapshot {
    tracker: &'static Tracker,
    epoch: u64,
    installs: u64,
    stripes: [u16; MAX_KEYS],
    count: u8,
    sum: u64,
}

impl Snapshot {
    /// The state of `keys` now; `None` if there are too many to copy.
    pub(crate) fn take(tracker: &'static Tracker, keys: &[String]) -> Option<Snapshot> {
        if keys.len() > MAX_KEYS {
            return None;
        }
        let epoch = tracker.epoch.load(Ordering::SeqCst);
        let installs = INSTALLS.load(Ordering::SeqCst);
        let mut stripes = [0; MAX_KEYS];
        for (slot, key) in stripes.iter_mut().zip(keys) {
            *slot = stripe_of(key.as_bytes());
        }
        let snapshot = Snapshot {
            tracker,
            epoch,
            installs,
            stripes,
            count: keys.len() as u8,
            sum: 0,
        };
        Some(Snapshot {
            sum: snapshot.current_sum(),
            ..snapshot
        })
    }

    fn current_sum(&self) -> u64 {
        self.stripes[..usize::from(self.count)]
            .iter()
            .map(|&stripe| CHANGES[usize::from(stripe)].load(Ordering::SeqCst))
            .fold(0_u64, u64::wrapping_add)
    }

    /// Whether nothing the copy depends on changed since, and the feed is trusted at `now`
    /// (coarse-clock nanoseconds).
    #[inline]
    fn holds_at(&self, now: u64) -> bool {
        self.tracker.trusted_at(now)
            && self.tracker.epoch.load(Ordering::SeqCst) == self.epoch
            && INSTALLS.load(Ordering::SeqCst) == self.installs
            && self.current_sum() == self.sum
    }
}

#[derive(Clone)]
struct Copy<S> {
    value: S,
    written_at: u64,
    /// Coarse-clock nanoseconds: the earlier of the entry's freshness and `local`.
    until: u64,
    snapshot: Snapshot,
}

/// The owned key of a call, handed to the engine so that the value its read finds can be
/// copied under it (see [`Local::key`]).
#[doc(hidden)]
#[derive(Clone, Copy)]
pub struct LocalKey<'k>(&'k (dyn Any + Send + Sync));

/// One cache's local level for one key type, seen by the engine without the key type (which
/// generated code knows and the engine does not).
pub(crate) trait LocalLevel<S>: Send + Sync {
    /// Keeps a copy, under `key` (an owned key of this level's type), of a fresh value read
    /// after `snapshot`, valid until the entry's freshness (`fresh_until`, Unix milliseconds)
    /// and at most `local`.
    fn keep(
        &self,
        key: LocalKey<'_>,
        snapshot: Snapshot,
        value: &S,
        written_at: u64,
        fresh_until: u64,
    );
    /// Drops every copy (`cache_clear` in this process; the stripes already hide them).
    fn clear(&self);
    /// Hits served from the copies, since the cache's creation or its last clear.
    fn hits(&self, since_clear: bool) -> u64;
}

/// One cache's local level: copies keyed by the function's own key type, looked up by
/// borrowed arguments as the memory backend is, so a local hit builds no key text.
#[doc(hidden)]
pub struct Local<K, S> {
    ttl: Duration,
    copies: Cache<K, Copy<S>>,
    hits: StripedCounter,
    hits_at_clear: AtomicU64,
}

impl<K: KeyPart, S: Clone> Local<K, S> {
    fn new(ttl: Duration, maxsize: usize) -> Self {
        Local {
            ttl,
            copies: Cache::new(maxsize),
            hits: StripedCounter::new(),
            hits_at_clear: AtomicU64::new(0),
        }
    }

    /// The value of the copy of `key`'s entry, if it may be served now (counted as a hit).
    #[inline]
    pub fn get<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Option<S> {
        self.get_written(key).map(|(value, _)| value)
    }

    /// [`get`](Self::get), with when the value was computed (Unix milliseconds).
    #[inline]
    pub fn get_written<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Option<(S, u64)> {
        let copy = self.copies.get(key)?;
        // One clock read serves both deadlines.
        let now = clock::coarse_ns();
        if !clock::before_at(now, copy.until) || !copy.snapshot.holds_at(now) {
            return None;
        }
        self.hits.increment();
        Some((copy.value, copy.written_at))
    }

    /// `key` as the engine takes it, to copy what the call reads under it.
    #[inline]
    pub fn key<'k>(&self, key: &'k K) -> LocalKey<'k> {
        LocalKey(key)
    }
}

impl<K: KeyPart, S: Clone + Send + Sync> LocalLevel<S> for &'static Local<K, S> {
    fn keep(
        &self,
        key: LocalKey<'_>,
        snapshot: Snapshot,
        value: &S,
        written_at: u64,
        fresh_until: u64,
    ) {
        // Always a `K`: `Levels::keep` hands each level keys of its own type.
        let Some(key) = key.0.downcast_ref::<K>() else {
            return;
        };
        let left = Duration::from_millis(fresh_until.saturating_sub(super::codec::unix_ms()));
        let life = left.min(self.ttl);
        if life.is_zero() {
            return;
        }
        let until =
            clock::precise_ns().saturating_add(u64::try_from(life.as_nanos()).unwrap_or(u64::MAX));
        self.copies.insert(
            key.clone(),
            Copy {
                value: value.clone(),
                written_at,
                until,
                snapshot,
            },
        );
    }

    fn clear(&self) {
        self.copies.clear();
        self.hits_at_clear.store(self.hits.sum(), Ordering::Relaxed);
    }

    fn hits(&self, since_clear: bool) -> u64 {
        let all = self.hits.sum();
        if since_clear {
            all.saturating_sub(self.hits_at_clear.load(Ordering::Relaxed))
        } else {
            all
        }
    }
}

/// A level created here: the key type's id, the level as its own type (for generated code)
/// and as the engine sees it.
type Level<S> = (
    TypeId,
    &'static (dyn Any + Send + Sync),
    Arc<dyn LocalLevel<S>>,
);

/// A remote cache's local levels: one per key type, created on first use. A function has one
/// key type; a method of a generic `impl` whose key names the `impl`'s parameters has one per
/// instantiation (the first is found without a lock).
pub(crate) struct Levels<S> {
    ttl: Duration,
    maxsize: usize,
    first: OnceLock<Level<S>>,
    others: Mutex<Vec<Level<S>>>,
}

impl<S> Levels<S> {
    pub(crate) fn new(ttl: Duration, maxsize: usize) -> Self {
        Levels {
            ttl,
            maxsize: maxsize.max(1),
            first: OnceLock::new(),
            others: Mutex::new(Vec::new()),
        }
    }

    /// The bound on the number of copies (per key type).
    pub(crate) fn maxsize(&self) -> usize {
        self.maxsize
    }

    /// The level of key type `K`, created on first use.
    #[inline]
    pub(crate) fn get<K: KeyPart>(&self) -> &'static Local<K, S>
    where
        S: Clone + Send + Sync + 'static,
    {
        if let Some((id, level, _)) = self.first.get()
            && *id == TypeId::of::<K>()
        {
            let level: *const (dyn Any + Send + Sync) = *level;
            // SAFETY: `first` is only set (in `get_slow`) to a `&'static Local<K, S>` beside the
            // `TypeId` of its `K`, and `S` is this `Levels`' own, so equal ids mean the pointee
            // is a `Local<K, S>`. (A cast rather than `downcast_ref`: no virtual call on a hit.)
            return unsafe { &*level.cast::<Local<K, S>>() };
        }
        self.get_slow()
    }

    #[cold]
    fn get_slow<K: KeyPart>(&self) -> &'static Local<K, S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut others = self.others.lock().unwrap_or_else(PoisonError::into_inner);
        let found = self
            .first
            .get()
            .into_iter()
            .chain(others.iter())
            .find(|(id, ..)| *id == TypeId::of::<K>())
            .and_then(|(_, level, _)| level.downcast_ref::<Local<K, S>>());
        if let Some(level) = found {
            return level;
        }
        let level: &'static Local<K, S> = Box::leak(Box::new(Local::new(self.ttl, self.maxsize)));
        let entry: Level<S> = (TypeId::of::<K>(), level, Arc::new(level));
        if let Err(entry) = self.first.set(entry) {
            others.push(entry);
        }
        level
    }

    /// See [`LocalLevel::keep`]: by the level of `key`'s type.
    pub(crate) fn keep(
        &self,
        key: LocalKey<'_>,
        snapshot: Snapshot,
        value: &S,
        written_at: u64,
        fresh_until: u64,
    ) {
        let id = (*key.0).type_id();
        if let Some((first, _, level)) = self.first.get()
            && *first == id
        {
            return level.keep(key, snapshot, value, written_at, fresh_until);
        }
        // Used outside the lock: keeping a copy may evict one, and dropping it is user code.
        let level = self
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(other, ..)| *other == id)
            .map(|(.., level)| Arc::clone(level));
        if let Some(level) = level {
            level.keep(key, snapshot, value, written_at, fresh_until);
        }
    }

    /// Visits every level (outside the lock: clearing drops values, which is user code).
    fn each(&self, mut visit: impl FnMut(&dyn LocalLevel<S>)) {
        if let Some((.., level)) = self.first.get() {
            visit(&**level);
        }
        let others: Vec<Arc<dyn LocalLevel<S>>> = self
            .others
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(.., level)| Arc::clone(level))
            .collect();
        others.iter().for_each(|level| visit(&**level));
    }

    /// See [`LocalLevel::clear`].
    pub(crate) fn clear(&self) {
        self.each(|level| level.clear());
    }

    /// See [`LocalLevel::hits`] (all key types).
    pub(crate) fn hits(&self, since_clear: bool) -> u64 {
        let mut hits = 0;
        self.each(|level| hits += level.hits(since_clear));
        hits
    }
}
