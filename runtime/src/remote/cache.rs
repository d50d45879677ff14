//! The cache of one function whose entries live in a remote store: key building, the read of
//! an entry with its invalidation stamps, decoding, single flight within the process, writing,
//! statistics, and running the function whenever the store cannot help.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec::{
    Codec, Kind, Stamp, Stored, Token, frame, is_lease, marker, stamp_of, token_of, unframe,
    unix_ms, written_at,
};
use super::near::{Levels, Local, LocalKey, Snapshot};
use super::pending::Overwrite;
use super::{Remote, default_remote, key};
use crate::backend::BackendError;
use crate::backend::CacheConfig;
use crate::flight::{Flights, LeaderGuard, Role, led_by_this_thread};
use crate::freshness::{self, Deadlines, Freshness, Revalidation, Verdict};
use crate::invalidation::Invalidation;
use crate::observe::{self, Scope};
use crate::outcome::{Cached, Mode, Served, SetOutcome, WrittenAt};
use crate::stats::{CacheInfo, Counters, Event, Since};

/// What a value stored in a remote cache must be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a remote cache",
    label = "this result is stored in Redis",
    note = "a remote value is serialized: derive `serde::Serialize` and `serde::Deserialize`, and `Clone`"
)]
pub trait RemoteValue: Serialize + DeserializeOwned + Clone + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Clone + Send + 'static> RemoteValue for T {}

/// What an argument of a remote cache's key must be.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a remote cache key",
    label = "this argument is part of the Redis key",
    note = "derive `serde::Serialize` for it, or leave it out of the key with `skip(..)`"
)]
pub trait RemoteKeyPart: Serialize {}

impl<T: ?Sized + Serialize> RemoteKeyPart for T {}

/// One function's remote cache. Generated code reaches it through a `CacheSlot`.
pub struct RemoteCache<S> {
    name: &'static str,
    /// `<cache name segment>:v<version>`.
    space: String,
    ttl: Option<Duration>,
    /// A leader hands over its value and when its computation started (Unix milliseconds).
    flights: Option<Flights<String, (S, u64)>>,
    counters: Counters,
    /// `remote = path`: where this cache's store comes from (else the default).
    chosen: Option<fn() -> Remote>,
    /// The remote last registered for tag invalidation by this cache.
    registered: AtomicUsize,
    /// Invalidations of this cache made in this process (see `epoch`).
    invalidations: std::sync::atomic::AtomicU64,
    /// The last count of this cache's keys in the store, and when it was made.
    counted: std::sync::Mutex<Option<(Instant, u64)>>,
    freshness: Freshness,
    /// `ttl_from = path`: a value's own TTL, bounded by `ttl`.
    ttl_from: Option<fn(&S) -> Option<Duration>>,
    /// Keys (by entry key) with a background refresh under way in this process, and keys
    /// whose recomputation failed recently in it (`retry_after`).
    revalidation: Revalidation,
    /// (`idle`) keys whose expiry this process renewed less than half of `idle` ago.
    renewed: Deadlines,
    /// `lock = true`: a miss with no value to fall back on waits for another process's lease
    /// on the key (see [`LOCK_LEASE`]) rather than computing beside it.
    lock: bool,
    /// `local = ..`: copies of fresh entries kept in this process (see [`near`](super::near)).
    local: Option<Levels<S>>,
    _stored: PhantomData<fn() -> S>,
}

/// A stored value past its freshness that may still be served (see [`Verdict`]), and this
/// process's invalidation epoch when it was read: an invalidation since makes it unusable.
struct Prior<S> {
    value: S,
    written_at: u64,
    verdict: Verdict,
    epoch: u64,
}

/// The keys one read covers and where the entry goes.
struct Plan {
    remote: Remote,
    /// The entry key, then the cache's clear stamp key, the remote-wide stamp key, and one
    /// stamp key per tag.
    read_keys: Vec<String>,
}

impl Plan {
    fn entry_key(&self) -> &String {
        &self.read_keys[0]
    }
}

/// What one read found.
enum Found<S> {
    /// A fresh value, when its computation started (Unix milliseconds), and how to replace it
    /// (a refresh does).
    Hit {
        value: S,
        written_at: u64,
        /// Until when it is fresh (Unix milliseconds).
        fresh_until: u64,
        write: Write,
    },
    /// A value past its freshness that may still be served, and how to replace it.
    Stale {
        value: S,
        written_at: u64,
        verdict: Verdict,
        write: Write,
    },
    /// No usable value; compute, and write as planned (`None`: the store is failing, do not
    /// write).
    Miss(Option<Write>),
}

/// What a read means for a call (see `RemoteCache::next_step`).
enum Step<S> {
    /// A fresh value, and when its computation started.
    Hit(S, u64),
    /// Compute, write as planned, with the stale value that may stand in if any.
    Miss(Option<Write>, Option<Prior<S>>),
}

/// Where a call starts (see `RemoteCache::begin`).
enum Begin {
    /// No store to use (arguments that do not encode, no remote): compute, store nothing.
    Uncached,
    /// An invalidation of the entry waits to reach the store.
    Hidden(Plan),
    /// Read the plan's keys.
    Read(Plan),
}

/// What a populate may replace: the bytes read before computing, or a lease to take first.
#[derive(Clone, Copy)]
enum Expect {
    /// The token of what the entry key held (a stale value, a lease, a tombstone).
    Token(Token),
    /// Nothing of ours was there (`absent`: nothing at all); leave a lease before computing.
    Lease { absent: bool },
}

/// How a miss's value is written: under these stamps, once the absent stamp keys are created,
/// over exactly what was read.
struct Write {
    stamps: Vec<Stamp>,
    /// Stamp keys that were absent (their place in `stamps`, the key, a fresh value to create
    /// them with). An entry is never written under an absent stamp, so a stamp that expires
    /// or is evicted later can only turn its entries into misses, never bring an old one back.
    create: Vec<(usize, String, Vec<u8>)>,
    expect: Expect,
    /// The entry was there but did not decode (already counted as an error).
    unreadable: bool,
    /// The entry holds a lease: a computation of it is under way (in some process).
    leased: bool,
}

impl Write {
    /// Whether a new leader should read again before computing: not after a failed read or
    /// an unreadable entry, which a second read would only count twice.
    fn worth_rereading(write: &Option<Write>) -> bool {
        write.as_ref().is_some_and(|write| !write.unreadable)
    }
}

/// What a leader holds once the store is ready for its value: the stamps to write it under,
/// and the token its write must find.
struct Prepared {
    stamps: Vec<Stamp>,
    token: Token,
    /// Whether the token is a lease this leader left (released if nothing is stored).
    own_lease: bool,
    /// A lease was asked for (`lock = true`) and another caller's is there instead.
    contended: bool,
}

/// Readies the store for a leader's value, in one operation: creates the absent stamps (or
/// adopts what a racing writer created; a stamp key of another type is overwritten, which
/// only hides what was written under it), and leaves a lease where the entry was absent or
/// unreadable, so that an invalidation made while the value is computed replaces it and the
/// value's write finds other bytes.
///
/// With `take_lease` (`lock = true`), a lease replaces whatever the entry held (a tombstone,
/// an expired value, a lease left by a caller waited out), and `contended` tells that another
/// caller's lease was found instead.
async fn prepare(
    store: Arc<dyn super::RemoteStore>,
    entry_key: String,
    write: Write,
    (lease_ttl, take_lease): (Duration, bool),
    stamp_ttl: Duration,
) -> Result<Prepared, BackendError> {
    let stamps = create_stamps(&*store, write.stamps, write.create, stamp_ttl).await?;
    let mut own_lease = false;
    let token = match write.expect {
        Expect::Token(token) if take_lease => {
            let lease = marker(Kind::Lease);
            if store
                .compare_and_set(entry_key, token.to_vec(), lease.clone(), lease_ttl)
                .await?
            {
                own_lease = true;
                token_of(&lease)
                    .ok_or_else(|| BackendError::Other("a fresh lease has no token".into()))?
            } else {
                return Ok(Prepared {
                    stamps,
                    token,
                    own_lease: false,
                    contended: true,
                });
            }
        }
        Expect::Token(token) => token,
        Expect::Lease { absent } => {
            let lease = marker(Kind::Lease);
            own_lease = true;
            let adopted = if absent {
                match store
                    .get_or_set(entry_key.clone(), lease.clone(), lease_ttl)
                    .await
                {
                    // Ours, or a racing writer's lease or value: expect exactly that.
                    Ok(Some(current)) => token_of(&current),
                    Ok(None) | Err(BackendError::Other(_)) => None,
                    Err(error) => return Err(error),
                }
            } else {
                None
            };
            match adopted {
                Some(token) => {
                    own_lease = lease.starts_with(&token);
                    token
                }
                None => {
                    // Garbage or another type at the key: replace it with a lease of ours.
                    store.set(entry_key, lease.clone(), lease_ttl).await?;
                    token_of(&lease)
                        .ok_or_else(|| BackendError::Other("a fresh lease has no token".into()))?
                }
            }
        }
    };
    Ok(Prepared {
        stamps,
        token,
        own_lease,
        contended: take_lease && !own_lease,
    })
}

/// Creates the absent stamp keys of a write (or adopts what a racing writer created; a stamp
/// key of another type is overwritten, which only hides what was written under it) and
/// returns the stamps to write under.
async fn create_stamps(
    store: &dyn super::RemoteStore,
    mut stamps: Vec<Stamp>,
    create: Vec<(usize, String, Vec<u8>)>,
    stamp_ttl: Duration,
) -> Result<Vec<Stamp>, BackendError> {
    for (place, key, fresh) in create {
        stamps[place] = match store
            .get_or_set(key.clone(), fresh.clone(), stamp_ttl)
            .await
        {
            Ok(Some(current)) => stamp_of(Some(&current)),
            // Vanished in between, or held by a value of another type: overwrite it.
            Ok(None) | Err(BackendError::Other(_)) => {
                store.set(key, fresh.clone(), stamp_ttl).await?;
                stamp_of(Some(&fresh))
            }
            Err(error) => return Err(error),
        };
    }
    Ok(stamps)
}

/// The stamps of a read of stamp keys (`values`, in the order of `keys`), and the stamp keys
/// that were absent, each with a fresh value to create it with.
#[allow(clippy::type_complexity)]
fn read_stamps(
    keys: &[String],
    values: &[Option<Vec<u8>>],
) -> (Vec<Stamp>, Vec<(usize, String, Vec<u8>)>) {
    let mut stamps = Vec::with_capacity(values.len());
    let mut create = Vec::new();
    for (key, value) in keys.iter().zip(values) {
        match value {
            Some(value) => stamps.push(stamp_of(Some(value))),
            None => {
                create.push((stamps.len(), key.clone(), super::fresh_stamp()));
                stamps.push(0);
            }
        }
    }
    (stamps, create)
}

/// What `set` writes: the value framed under the current stamps (absent ones created first),
/// over whatever the entry key holds, so a computation of it already running (which noted
/// the bytes it read) finds other bytes and does not write its older value.
#[allow(clippy::too_many_arguments)]
async fn write_through(
    store: Arc<dyn super::RemoteStore>,
    entry_key: String,
    stamp_keys: Vec<String>,
    codec: Codec,
    payload: Vec<u8>,
    times: (u64, u64),
    ttl: Duration,
    stamp_ttl: Duration,
) -> Result<(), BackendError> {
    let values = store.get_many(stamp_keys.clone()).await?;
    if values.len() != stamp_keys.len() {
        return Err(BackendError::Other(
            format!(
                "asked for {} keys, got {} values",
                stamp_keys.len(),
                values.len()
            )
            .into(),
        ));
    }
    let (stamps, create) = read_stamps(&stamp_keys, &values);
    let stamps = create_stamps(&*store, stamps, create, stamp_ttl).await?;
    store
        .set(entry_key, frame(codec, &stamps, times, &payload), ttl)
        .await
}

impl<S> RemoteCache<S> {
    /// The cache of `name` in key space `version`; entries live `ttl` (at most the remote's
    /// `max_ttl`, which is also the default).
    pub fn new(
        name: &'static str,
        version: u32,
        ttl: Option<Duration>,
        single_flight: bool,
    ) -> Self {
        RemoteCache {
            name,
            space: format!("{}:v{version}", key::name_segment(name)),
            ttl,
            flights: single_flight.then(Flights::new),
            counters: Counters::new(),
            chosen: None,
            registered: AtomicUsize::new(0),
            counted: std::sync::Mutex::new(None),
            invalidations: std::sync::atomic::AtomicU64::new(0),
            freshness: Freshness::new(),
            ttl_from: None,
            revalidation: Revalidation::new(),
            renewed: Deadlines::new(),
            lock: false,
            local: None,
            _stored: PhantomData,
        }
    }

    /// Sets the freshness policy beyond the TTL (stale windows, retry throttling, timeout,
    /// jitter).
    pub fn with_freshness(mut self, freshness: Freshness) -> Self {
        self.freshness = freshness;
        self
    }

    /// Gives each value its own TTL (`ttl_from = path`), bounded by the cache's: `None` keeps
    /// the cache's, zero stores nothing.
    pub fn with_ttl_from(mut self, ttl_from: fn(&S) -> Option<Duration>) -> Self {
        self.ttl_from = Some(ttl_from);
        self
    }

    /// Single flight across processes (`lock = true`): a miss that finds another process's
    /// lease on its key waits (at most [`LOCK_WAIT`]) for that computation's value instead of
    /// computing too, and a leader's lease lives [`LOCK_LEASE`], renewed while it computes.
    /// Only with single flight in the process (which keeps a recursive call from waiting for
    /// its own lease); ignored without it.
    pub fn with_lock(mut self, lock: bool) -> Self {
        self.lock = lock && self.flights.is_some();
        self
    }

    /// A near cache (`local = ..`): fresh entries this process reads are copied into a bounded
    /// in-process level (at most `maxsize` copies) and served from it, without a round trip,
    /// for at most `ttl` and while the store's change feed confirms that nothing they depend
    /// on changed (see [`ChangeFeed`](super::ChangeFeed)). A store without a feed gets no
    /// local level.
    pub fn with_local(mut self, ttl: Duration, maxsize: usize) -> Self
    where
        S: Clone + Send + Sync + 'static,
    {
        self.local = Some(Levels::new(ttl, maxsize));
        self
    }

    /// The local level for key type `K` (`None` without `local`), which generated code reads
    /// before building the key's text: a local hit is one lookup by the borrowed arguments.
    #[inline]
    pub fn local<K: crate::key::KeyPart>(&self) -> Option<&'static Local<K, S>>
    where
        S: Clone + Send + Sync + 'static,
    {
        Some(self.local.as_ref()?.get::<K>())
    }

    /// A call of `f::call` answered from the local level.
    pub fn local_observed<R>(&self, (value, written_at): (S, u64), load: fn(S) -> R) -> Cached<R> {
        Served::Hit(WrittenAt::UnixMs(written_at)).into_cached(load(value), Instant::now())
    }

    /// Takes its store from `remote` (called on every use; return a clone of a shared
    /// [`Remote`]) instead of the default.
    pub fn with_remote(mut self, remote: fn() -> Remote) -> Self {
        self.chosen = Some(remote);
        self
    }

    /// The cache's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The argument segment of the key for `args`; `None` (an error counted) if they cannot be
    /// encoded, in which case the call runs uncached.
    pub fn arguments<T: ?Sized + RemoteKeyPart>(&self, args: &T) -> Option<String> {
        match key::argument_segment(args) {
            Ok(segment) => Some(segment),
            Err(error) => {
                self.counters.record_error(self.name, "key", &error);
                None
            }
        }
    }

    fn record(&self, operation: &'static str, error: &BackendError) {
        self.counters.record_error(self.name, operation, error);
    }

    fn remote(&self) -> Option<Remote> {
        if let Some(choose) = self.chosen {
            let remote = choose();
            // Known to `invalidate_tag` from its first use (once per remote and cache).
            let identity = remote.identity();
            if self.registered.swap(identity, Ordering::Relaxed) != identity {
                super::register_in_use(&remote);
            }
            return Some(remote);
        }
        match default_remote() {
            Ok(remote) => Some(remote),
            Err(error) => {
                self.record("connect", &error);
                None
            }
        }
    }

    fn entry_key(&self, remote: &Remote, arguments: &str) -> String {
        [remote.prefix(), &self.space, arguments].join(":")
    }

    fn clear_key(&self, remote: &Remote) -> String {
        [remote.prefix(), "#gen", &self.space].join(":")
    }

    fn plan(&self, arguments: &str, tags: &[String]) -> Option<Plan> {
        let remote = self.remote()?;
        let mut read_keys = Vec::with_capacity(3 + tags.len());
        read_keys.push(self.entry_key(&remote, arguments));
        read_keys.push(self.clear_key(&remote));
        read_keys.push(remote.all_key().to_owned());
        read_keys.extend(tags.iter().map(|tag| remote.tag_key(tag)));
        Some(Plan { remote, read_keys })
    }

    /// How long an entry written now lives: `ttl`, at most the remote's `max_ttl` (also the
    /// default). Leases and tombstones live as long.
    /// What this cache was declared with (`f::cache_config()`): `maxsize` 0 (a remote cache
    /// is bounded by its TTLs), and the TTL entries get from the store in use (at most its
    /// `max_ttl`, which is also the TTL of a cache declared without one).
    pub fn cache_config(&self) -> CacheConfig {
        let ttl = match self.remote() {
            Some(remote) => Some(self.entry_ttl(&remote)),
            None => self.ttl,
        };
        CacheConfig::new(self.name)
            .with_maxsize(
                self.local
                    .as_ref()
                    .map_or(0, |local| local.maxsize() as u64),
            )
            .with_ttl(ttl)
            .with_single_flight(self.flights.is_some())
            .with_freshness(self.freshness)
    }

    /// How long `value`, computed now, is fresh: the entry TTL, shortened by the value's own
    /// (`ttl_from`), extended by jitter (zero: not stored).
    fn lifetime(&self, remote: &Remote, value: &S) -> Duration {
        let ttl = self.entry_ttl(remote);
        let own = self.ttl_from.and_then(|ttl_from| ttl_from(value));
        self.freshness.lifetime(Some(ttl), own).unwrap_or(ttl)
    }

    /// Forgets that the recomputation of the entry at `entry_key` failed (with stale windows
    /// only: the others never throttle).
    fn forget_failure(&self, entry_key: &str) {
        if self.freshness.serves_stale() {
            self.revalidation.forget(self.revalidation.hash(entry_key));
        }
    }

    /// How long past its freshness (`fresh_until`, Unix milliseconds by its writer's clock) a
    /// value read now is; `None` when fresh, or when the cache serves nothing stale (the
    /// store's expiry then decides alone, whatever the clocks of the hosts say).
    fn overdue(&self, fresh_until: u64) -> Option<Duration> {
        // With `idle` too: reads renew the store's expiry, and the deadline is the `ttl` cap.
        if !self.freshness.serves_stale() && self.freshness.idle.is_none() {
            return None;
        }
        let now = unix_ms();
        (now >= fresh_until).then(|| Duration::from_millis(now - fresh_until))
    }

    /// The store's time to live for an entry fresh for `fresh_for` more: that, at most `idle`
    /// (renewed by reads), plus the longest stale window (served stale, never as fresh).
    fn store_ttl(&self, remote: &Remote, fresh_for: Duration) -> Duration {
        let fresh_for = self
            .freshness
            .idle
            .map_or(fresh_for, |idle| idle.min(fresh_for));
        // At most `max_ttl`, stale windows included: the longest an entry of the remote lives
        // (its stamp keys, which it is checked against, live twice as long from their creation).
        fresh_for
            .saturating_add(self.freshness.stale_window())
            .min(remote.max_ttl())
            .max(Duration::from_millis(1))
    }

    fn entry_ttl(&self, remote: &Remote) -> Duration {
        let max_ttl = remote.max_ttl();
        self.ttl
            .map_or(max_ttl, |ttl| ttl.min(max_ttl))
            .max(Duration::from_millis(1))
    }

    /// How long leases and tombstones live: the entry's TTL, at most [`MARKER_TTL`]. They only
    /// need to outlive the computations that read them; an absent key never matches a write's
    /// token, so one that expires can only cost a populate.
    fn marker_ttl(&self, remote: &Remote) -> Duration {
        self.entry_ttl(remote).min(MARKER_TTL)
    }

    /// What `invalidate(args)` writes: a fresh tombstone over the entry (never a `DEL`: a
    /// populate that read what was there before finds other bytes and writes nothing).
    fn tombstone_write(&self, arguments: Option<String>) -> Option<(Remote, String, Duration)> {
        let arguments = arguments?;
        let remote = self.remote()?;
        let key = self.entry_key(&remote, &arguments);
        self.forget_failure(&key);
        let ttl = self.marker_ttl(&remote);
        Some((remote, key, ttl))
    }

    /// Hides the entry for these arguments from every process, and makes every computation of
    /// it that started before (in any process) leave nothing behind.
    pub fn invalidate(&self, arguments: Option<String>) -> Invalidation {
        self.note_invalidation();
        let outcome = match self.tombstone_write(arguments) {
            Some((remote, key, ttl)) => remote.overwrite(key, Overwrite::Tombstone, ttl),
            None => Invalidation::Absent,
        };
        self.note_invalidation();
        observe::invalidated(self.name, Scope::Key, outcome)
    }

    /// The async form of [`invalidate`](Self::invalidate).
    pub async fn invalidate_async(&self, arguments: Option<String>) -> Invalidation {
        self.note_invalidation();
        let outcome = match self.tombstone_write(arguments) {
            Some((remote, key, ttl)) => {
                remote.overwrite_async(key, Overwrite::Tombstone, ttl).await
            }
            None => Invalidation::Absent,
        };
        self.note_invalidation();
        observe::invalidated(self.name, Scope::Key, outcome)
    }

    fn clear_write(&self) -> Option<(Remote, String, Duration)> {
        self.note_invalidation();
        let remote = self.remote()?;
        let key = self.clear_key(&remote);
        let ttl = remote.stamp_ttl();
        Some((remote, key, ttl))
    }

    /// Hides every entry of this cache for every process (they expire later) and resets this
    /// process's statistics.
    pub fn clear(&self) -> Invalidation {
        let outcome = match self.clear_write() {
            Some((remote, key, ttl)) => remote.overwrite(key, Overwrite::Stamp, ttl),
            None => Invalidation::Applied,
        };
        self.cleared(outcome)
    }

    /// The async form of [`clear`](Self::clear).
    pub async fn clear_async(&self) -> Invalidation {
        let outcome = match self.clear_write() {
            Some((remote, key, ttl)) => remote.overwrite_async(key, Overwrite::Stamp, ttl).await,
            None => Invalidation::Applied,
        };
        self.cleared(outcome)
    }

    /// Ends a clear: starts the statistics over.
    fn cleared(&self, outcome: Invalidation) -> Invalidation {
        self.note_invalidation();
        if let Some(local) = &self.local {
            // Already hidden (the clear stamp's stripe moved); this frees their memory.
            local.clear();
        }
        self.counters.reset();
        self.revalidation.clear();
        self.renewed.clear();
        observe::invalidated(self.name, Scope::Clear, outcome)
    }

    /// This process's hits, misses and errors; `currsize` counts the keys of this cache in
    /// the store (entries, and the leases and tombstones of recent misses and invalidations,
    /// including entries hidden by a tag or a clear until they expire), at most once a
    /// second: a call within a second of the last count reuses it. `maxsize` is the bound on the
    /// local copies (`local`), or 0: a remote cache is bounded by its TTLs and the store's
    /// memory policy. `hits` includes `local_hits`.
    pub fn info(&self) -> CacheInfo {
        self.info_since(Since::Clear)
    }

    /// A snapshot of the statistics since the cache was created or last cleared.
    pub(crate) fn info_since(&self, since: Since) -> CacheInfo {
        let tally = self.counters.tally(since);
        let remote = self.remote();
        let currsize = self.currsize(remote.as_ref());
        let health = remote.map(|remote| remote.health());
        let mut info = CacheInfo {
            pending_invalidations: health
                .as_ref()
                .map_or(0, |health| health.pending_invalidations as u64),
            circuit_open: health
                .as_ref()
                .is_some_and(|health| matches!(health.circuit, super::Circuit::Open { .. })),
            hits: tally.hits,
            misses: tally.misses,
            maxsize: self
                .local
                .as_ref()
                .map_or(0, |local| local.maxsize() as u64),
            currsize,
            evictions: 0,
            errors: tally.errors,
            compute_time: tally.compute_time,
            ..CacheInfo::default()
        };
        tally.events_into(&mut info);
        info.local_hits = self
            .local
            .as_ref()
            .map_or(0, |local| local.hits(since == Since::Clear));
        info.hits += info.local_hits;
        info
    }
}

impl<S> RemoteCache<S> {
    /// Counts an invalidation of this cache made in this process (before and after it).
    fn note_invalidation(&self) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
    }

    /// Moves whenever an invalidation in this process could hide a value of this cache: one of
    /// its own (`invalidate`, `cache_clear`), or a tag or remote-wide one.
    fn epoch(&self) -> u64 {
        self.invalidations
            .load(Ordering::SeqCst)
            .wrapping_add(super::invalidation_epoch())
    }

    /// Ends a flight, handing its followers the value (a clone: the leader returns its own)
    /// unless an invalidation in this process that could hide it happened since the leader
    /// read the store: followers that joined after it must not get a value read before it, so
    /// they read again.
    fn finish(
        &self,
        guard: Option<LeaderGuard<'_, String, (S, u64)>>,
        value: Option<(&S, u64)>,
        epoch: u64,
    ) where
        S: Clone,
    {
        if let Some(guard) = guard {
            // A follower that joins later finds no value and reads the store.
            let handed = guard.is_followed() && epoch == self.epoch();
            guard.finish(
                value
                    .filter(|_| handed)
                    .map(|(value, written_at)| (value.clone(), written_at)),
            );
        }
    }

    /// The number of keys of this cache in the store, counted at most once per
    /// [`COUNT_INTERVAL`] (a count is a scan of the store's keys).
    fn currsize(&self, remote: Option<&Remote>) -> u64 {
        let mut counted = self
            .counted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, count)) = *counted
            && at.elapsed() < COUNT_INTERVAL
        {
            return count;
        }
        let count = remote.map_or(0, |remote| {
            let prefix = format!("{}:{}:", remote.prefix(), self.space);
            // Reading the statistics does not change them: a failed count is 0, not an error.
            remote
                .blocking_unguarded(move |store| store.count_prefix(prefix))
                .unwrap_or_else(|error| {
                    tracing::debug!(
                        cache = self.name,
                        error = crate::redact::error(&error),
                        "could not count entries"
                    );
                    0
                })
        });
        *counted = Some((Instant::now(), count));
        count
    }
}

/// Whole milliseconds of `duration` (saturating).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The longest a lease or a tombstone lives. A computation that runs longer than this (or than
/// its TTL) finds its lease gone and does not store its value.
const MARKER_TTL: Duration = Duration::from_secs(600);

/// How long a lease lives with `lock = true`, renewed every third of it while its holder
/// computes: a holder that dies or stalls lets another process compute this long after its
/// last renewal.
pub const LOCK_LEASE: Duration = Duration::from_secs(3);

/// The longest a miss waits for another process's computation (`lock = true`) before it
/// computes anyway.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// See `RemoteCache::lock_step`.
enum LockStep {
    Wait(Duration),
    Prepare(Write, bool),
    Compute,
}

/// What a leader keeps of the store's readiness for its value: `None` to read again and wait,
/// when another caller's lease got there first and the wait has time left.
fn lock_settled(
    prepared: Option<Prepared>,
    waiting: &mut Option<LockWait>,
) -> Option<Option<Prepared>> {
    match prepared {
        Some(prepared)
            if prepared.contended && !waiting.get_or_insert_with(LockWait::new).is_over() =>
        {
            None
        }
        prepared => Some(prepared),
    }
}

/// Stops a lease's renewals when dropped, and takes the lease back unless the computation
/// got as far as settling it: a holder that panics or whose future is dropped (cancelled) lets
/// the processes waiting for it compute at once, rather than after [`LOCK_LEASE`].
struct LeaseKeeper {
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// The remote and the write taking the lease back (`RemoteCache::release_op`), until
    /// settled.
    release: Option<(Remote, ReleaseOp)>,
}

/// A store write that takes a leader's lease back.
type ReleaseOp = Box<dyn FnOnce(&dyn super::RemoteStore) -> super::StoreFuture<bool> + Send>;

impl LeaseKeeper {
    /// The computation ended and its own write takes care of the lease.
    fn settled(&mut self) {
        self.release = None;
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Release);
        if let Some((remote, release)) = self.release.take() {
            remote.detach(release);
        }
    }
}

/// The pauses of a miss waiting for another process's lease: short at first (the value
/// usually lands within a few round trips), then every 50 ms, until [`LOCK_WAIT`].
struct LockWait {
    deadline: Instant,
    pause: Duration,
}

impl LockWait {
    fn new() -> Self {
        LockWait {
            deadline: Instant::now() + LOCK_WAIT,
            pause: Duration::from_millis(2),
        }
    }

    fn is_over(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The next pause, or `None` once the wait is over.
    fn next(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(Duration::from_millis(50));
        (!pause.is_zero()).then_some(pause)
    }
}

/// How long a count of a remote cache's keys is reused by `cache_info()`.
const COUNT_INTERVAL: Duration = Duration::from_secs(1);

impl<S: RemoteValue> RemoteCache<S> {
    /// Judges what a call's read returned; with `idle`, a fresh value's expiry is renewed (at
    /// most once per half of `idle` per key in this process, without waiting for it).
    fn judge(&self, plan: &Plan, read: Result<Vec<Option<Vec<u8>>>, BackendError>) -> Found<S> {
        self.judge_read(plan, read, true)
    }

    /// Renews the expiry of the planned entry (`idle`): `idle` from now, at most to its
    /// freshness deadline (its TTL).
    /// The renewal writes back the bytes that were read (`read`, behind `token`), with a new
    /// time to live, only if they are still what the key holds (a compare-and-set): a newer
    /// value, a tombstone or a lease is never extended.
    fn renew(&self, plan: &Plan, (token, read): (Token, &[u8]), fresh_until: u64) {
        let Some(idle) = self.freshness.idle else {
            return;
        };
        let hash = self.renewed.hash(plan.entry_key());
        if self.renewed.holds(hash) {
            return;
        }
        self.renewed.set(hash, idle / 2);
        let left = Duration::from_millis(fresh_until.saturating_sub(unix_ms()));
        let ttl = idle.min(left);
        if ttl < Duration::from_millis(1) {
            return;
        }
        let key = plan.entry_key().clone();
        let (expected, value) = (token.to_vec(), read.to_vec());
        plan.remote.detach(move |store: &dyn super::RemoteStore| {
            store.compare_and_set(key, expected, value, ttl)
        });
    }

    /// Judges what a read returned (`renew`: see [`judge`](Self::judge)).
    fn judge_read(
        &self,
        plan: &Plan,
        read: Result<Vec<Option<Vec<u8>>>, BackendError>,
        renew: bool,
    ) -> Found<S> {
        let values = match read {
            Ok(values) if values.len() == plan.read_keys.len() => values,
            Ok(values) => {
                let error = BackendError::Other(
                    format!(
                        "asked for {} keys, got {} values",
                        plan.read_keys.len(),
                        values.len()
                    )
                    .into(),
                );
                self.record("get", &error);
                return Found::Miss(None);
            }
            Err(error) => {
                self.record("get", &error);
                return Found::Miss(None);
            }
        };
        let (stamps, create) = read_stamps(&plan.read_keys[1..], &values[1..]);
        let mut unreadable = false;
        let mut leased = false;
        let expect = match &values[0] {
            None => Expect::Lease { absent: true },
            Some(bytes) => {
                let codec = plan.remote.codec();
                match unframe(codec, bytes) {
                    // Decoded only when its stamps are current and it may be served (fresh, or
                    // within a stale window): a hidden or dead entry costs no decode.
                    Ok(Stored::Value {
                        token,
                        fresh_until,
                        stamps: written_under,
                        payload,
                    }) if create.is_empty() && written_under == stamps => {
                        // Judged once: one clock read decides both whether to decode and how
                        // the value may be used.
                        let verdict = self.freshness.verdict(self.overdue(fresh_until));
                        if !verdict.is_usable() {
                            Expect::Token(token)
                        } else {
                            match codec.decode::<S>(payload) {
                                Ok(value) => {
                                    let write = Write {
                                        stamps,
                                        create,
                                        expect: Expect::Token(token),
                                        unreadable: false,
                                        leased: false,
                                    };
                                    let written_at = written_at(&token);
                                    if verdict == Verdict::Fresh {
                                        if renew {
                                            self.renew(plan, (token, bytes), fresh_until);
                                        }
                                        return Found::Hit {
                                            value,
                                            written_at,
                                            fresh_until,
                                            write,
                                        };
                                    }
                                    return Found::Stale {
                                        value,
                                        written_at,
                                        verdict,
                                        write,
                                    };
                                }
                                Err(error) => {
                                    unreadable = true;
                                    self.record("decode", &BackendError::Decode(Box::new(error)));
                                    Expect::Token(token)
                                }
                            }
                        }
                    }
                    // Invalidated by a tag or a clear since it was written, or past every window:
                    // a plain miss.
                    Ok(Stored::Value { token, .. }) => Expect::Token(token),
                    // A lease (a computation under way) or a tombstone (invalidated).
                    Ok(Stored::Marker { token }) => {
                        leased = is_lease(&token);
                        Expect::Token(token)
                    }
                    Err(error) => {
                        unreadable = true;
                        self.record("decode", &BackendError::Decode(Box::new(error)));
                        Expect::Lease { absent: false }
                    }
                }
            }
        };
        Found::Miss(Some(Write {
            stamps,
            create,
            expect,
            unreadable,
            leased,
        }))
    }

    /// The store operation readying it for a leader's value (see [`prepare`]).
    fn prepare_op(
        &self,
        plan: &Plan,
        write: Write,
        take_lease: bool,
    ) -> impl FnOnce(&dyn super::RemoteStore) -> super::StoreFuture<Prepared> + Send + 'static {
        let store = plan.remote.store();
        let key = plan.entry_key().clone();
        let lease_ttl = if self.lock {
            LOCK_LEASE
        } else {
            self.marker_ttl(&plan.remote)
        };
        let stamp_ttl = plan.remote.stamp_ttl();
        move |_: &dyn super::RemoteStore| {
            Box::pin(prepare(
                store,
                key,
                write,
                (lease_ttl, take_lease),
                stamp_ttl,
            )) as super::StoreFuture<Prepared>
        }
    }

    /// Whether this miss takes part in single flight across processes (`lock = true`): a
    /// lookup or a refresh led in this process, with no stale value that could stand in
    /// (replacing it with a lease would take it from the other processes' fail-safe).
    fn locks(&self, mode: Mode, led: bool, prior: Option<&Prior<S>>) -> bool {
        self.lock && led && mode == Mode::Lookup && prior.is_none()
    }

    /// What a leader does next before computing: wait for another caller's lease
    /// (`lock = true`, while [`LOCK_WAIT`] lasts), ready the store for its value (taking a
    /// lease when it locks), or compute without the store (nothing to write: it failed).
    fn lock_step(
        &self,
        mode: Mode,
        led: bool,
        prior: Option<&Prior<S>>,
        write: &mut Option<Write>,
        waiting: &mut Option<LockWait>,
    ) -> LockStep {
        let mut take_lease = self.locks(mode, led, prior);
        if take_lease && write.as_ref().is_some_and(|write| write.leased) {
            match waiting.get_or_insert_with(LockWait::new).next() {
                Some(pause) => return LockStep::Wait(pause),
                // Waited out a holder that is still renewing its lease (a dead one's lease
                // expires well within the wait): compute beside it without taking its lease,
                // writing over it, so whichever finishes first stores its value (taking it
                // would make the holder's write fail, and the next waiter take ours).
                None => take_lease = false,
            }
        }
        match write.take() {
            Some(write) => LockStep::Prepare(write, take_lease),
            None => LockStep::Compute,
        }
    }

    /// Renews the lease this leader left while it computes (`lock = true`), so that a long
    /// computation keeps other processes waiting and a dead or stalled one lets them compute
    /// within [`LOCK_LEASE`]. Renewals stop when the returned guard drops (after the value's
    /// write, or on a panic) or when the lease is no longer there.
    fn keep_lease(&self, plan: &Plan, prepared: &Prepared) -> Option<LeaseKeeper> {
        if !(self.lock && prepared.own_lease) {
            return None;
        }
        let runtime = super::background_runtime().ok()?;
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let remote = plan.remote.clone();
        let key = plan.entry_key().clone();
        // A lease is its token: renewing writes the same bytes with a new time to live.
        let lease = prepared.token.to_vec();
        let keeper = LeaseKeeper {
            stopped: Arc::clone(&stopped),
            release: self
                .release_op(plan, prepared)
                .map(|release| (remote.clone(), Box::new(release) as ReleaseOp)),
        };
        drop(runtime.spawn(async move {
            loop {
                tokio::time::sleep(LOCK_LEASE / 3).await;
                if stopped.load(Ordering::Acquire) {
                    return;
                }
                let (key, lease) = (key.clone(), lease.clone());
                let renewed = remote
                    .call(move |store: &dyn super::RemoteStore| {
                        store.compare_and_set(key, lease.clone(), lease, LOCK_LEASE)
                    })
                    .await;
                // Gone (replaced, expired): stop. A failed renewal (a timeout, the circuit
                // open) is retried at the next tick, while the lease may still be there.
                if matches!(renewed, Ok(false)) {
                    return;
                }
            }
        }));
        Some(keeper)
    }

    fn prepared(&self, prepared: Result<Prepared, BackendError>) -> Option<Prepared> {
        prepared.map_err(|error| self.record("set", &error)).ok()
    }

    /// The store write that ends a leader's computation, over exactly the token it noted
    /// before computing:
    /// - a value to keep is written under the stamps read then, for what is left of the TTL
    ///   counted from the computation's start (nothing when nothing is left);
    /// - with nothing to keep (or a value that outlived its TTL or does not encode), the lease
    ///   this leader left is taken back (replaced by a marker that expires at once), so misses
    ///   that store nothing leave no key behind.
    ///
    /// Nothing is written while an invalidation of these keys waits to reach the store.
    #[allow(clippy::type_complexity)]
    fn settle_op(
        &self,
        plan: &Plan,
        prepared: &Prepared,
        stored: Option<&S>,
        (started, written_at): (Instant, u64),
    ) -> Option<impl FnOnce(&dyn super::RemoteStore) -> super::StoreFuture<bool> + Send + 'static>
    {
        if plan.remote.hides(&plan.read_keys) {
            return None;
        }
        let lifetime = stored.map(|value| self.lifetime(&plan.remote, value));
        let value = stored
            .zip(lifetime)
            .filter(|(_, life)| !life.is_zero())
            .and_then(|(value, lifetime)| {
                // Kept for the stale windows too; served as fresh only until `fresh_until`.
                let remaining = lifetime
                    .checked_sub(started.elapsed())
                    .filter(|left| *left >= Duration::from_millis(1))?;
                let codec = plan.remote.codec();
                let payload = match codec.encode(value) {
                    Ok(payload) => payload,
                    Err(error) => {
                        self.record("encode", &BackendError::Other(Box::new(error)));
                        return None;
                    }
                };
                let fresh_until = written_at.saturating_add(millis(lifetime));
                Some((
                    frame(codec, &prepared.stamps, (written_at, fresh_until), &payload),
                    self.store_ttl(&plan.remote, remaining),
                ))
            });
        let (bytes, ttl) = match value {
            Some(value) => value,
            // Nothing to store (not kept, outlived its TTL, or would not encode): the lease goes,
            // so that other processes' waiters compute now rather than at its expiry.
            None if prepared.own_lease => (marker(Kind::Tombstone), Duration::from_millis(1)),
            None => return None,
        };
        let key = plan.entry_key().clone();
        let token = prepared.token.to_vec();
        Some(move |store: &dyn super::RemoteStore| store.compare_and_set(key, token, bytes, ttl))
    }

    /// Whether the populate landed (an error is counted).
    fn populated(&self, written: Result<bool, BackendError>) -> bool {
        match written {
            Ok(true) => true,
            // An invalidation (or another writer) replaced what was read: this value may be
            // older than what the invalidation hid, so it is not written.
            Ok(false) => {
                tracing::trace!(cache = self.name, "populate lost its race; not written");
                false
            }
            Err(error) => {
                self.record("set", &error);
                false
            }
        }
    }

    /// Runs the function on a miss, leading this process's flight of the key if there is one
    /// (see `observe` for what is recorded).
    fn run<R>(
        &self,
        guard: Option<&LeaderGuard<'_, String, (S, u64)>>,
        mode: Mode,
        keep: fn(&R) -> Option<&S>,
        compute: impl FnOnce() -> R,
    ) -> R {
        let timed = || self.counters.timed(self.name, mode, keep, compute);
        match guard {
            Some(guard) => guard.lead(timed),
            None => timed(),
        }
    }

    /// The `async` form of [`run`](Self::run).
    async fn run_async<R>(
        &self,
        guard: Option<&LeaderGuard<'_, String, (S, u64)>>,
        mode: Mode,
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
    ) -> R {
        match guard {
            Some(guard) => {
                let leading = guard.lead_async(compute);
                self.counters
                    .timed_async(self.name, mode, keep, leading)
                    .await
            }
            None => {
                self.counters
                    .timed_async(self.name, mode, keep, compute)
                    .await
            }
        }
    }

    /// What a copy of what `plan` reads next would depend on, taken before the read (`None`:
    /// nothing is copied: no `local`, not a lookup, no change feed, too many tags).
    fn snapshot(&self, plan: &Plan, mode: Mode) -> Option<Snapshot> {
        if self.local.is_none() || mode != Mode::Lookup {
            return None;
        }
        let tracker = plan.remote.tracker()?;
        Snapshot::take(tracker, &plan.read_keys)
    }

    /// Copies a fresh value a lookup read (after `snapshot`) into the local level.
    fn copied(
        &self,
        local_key: Option<LocalKey<'_>>,
        snapshot: Option<Snapshot>,
        found: Found<S>,
    ) -> Found<S> {
        if let (
            Some(local),
            Some(local_key),
            Some(snapshot),
            Found::Hit {
                value,
                written_at,
                fresh_until,
                ..
            },
        ) = (&self.local, local_key, snapshot, &found)
        {
            // With `idle`, a copy lives at most half of it: the store's entry, renewed by the
            // read that made the copy, then outlives it, so reading copies keeps it alive.
            let fresh_until = match self.freshness.idle {
                Some(idle) => (*fresh_until).min(unix_ms().saturating_add(millis(idle / 2))),
                None => *fresh_until,
            };
            local.keep(local_key, snapshot, value, *written_at, fresh_until);
        }
        found
    }

    fn hit<R>(&self, value: S, written_at: u64, load: fn(S) -> R) -> (R, Served) {
        self.counters.hits.increment();
        (load(value), Served::Hit(WrittenAt::UnixMs(written_at)))
    }

    /// A hit on a value handed over that may not be in the store (`Cached::stored` false).
    fn handed<R>(&self, value: S, written_at: u64, load: fn(S) -> R) -> (R, Served) {
        self.counters.hits.increment();
        (load(value), Served::Handed(WrittenAt::UnixMs(written_at)))
    }

    /// A miss is a call that ran the function: not a background refresh.
    fn miss(&self, mode: Mode) {
        if mode != Mode::Revalidate {
            self.counters.misses.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Joins the flight of `key`: `Ok(guard)` to go on (leading it, or alone), `Err(value)` when
    /// a concurrent caller's value was handed over. A refresh never takes a value handed over:
    /// it waits out the flight it finds (which started before it) and leads the next one.
    #[allow(clippy::type_complexity)]
    fn join(
        &self,
        key: &String,
        mode: Mode,
    ) -> Result<Option<LeaderGuard<'_, String, (S, u64)>>, (S, u64)> {
        let Some(flights) = &self.flights else {
            return Ok(None);
        };
        loop {
            match flights.join(key) {
                Role::Leader(guard) => return Ok(Some(guard)),
                // A computation of this key calling itself: go on alone, without waiting.
                Role::Follower(flight) if led_by_this_thread(&flight) => return Ok(None),
                Role::Follower(flight) => match flight.wait() {
                    Some(value) if mode == Mode::Lookup => return Err(value),
                    // It stored nothing (an error, a panic, cancellation): take over. Or a
                    // refresh, which leads its own.
                    _ => continue,
                },
            }
        }
    }

    #[allow(clippy::type_complexity)]
    async fn join_async(
        &self,
        key: &String,
        mode: Mode,
    ) -> Result<Option<LeaderGuard<'_, String, (S, u64)>>, (S, u64)> {
        let Some(flights) = &self.flights else {
            return Ok(None);
        };
        loop {
            match flights.join(key) {
                Role::Leader(guard) => return Ok(Some(guard)),
                Role::Follower(flight) if led_by_this_thread(&flight) => return Ok(None),
                Role::Follower(flight) => match flight.wait_async().await {
                    Some(value) if mode == Mode::Lookup => return Err(value),
                    _ => continue,
                },
            }
        }
    }

    /// What a read means for this call: a hit to return, or how to write after computing (and
    /// the stale value that may stand in for a failed recomputation). A refresh computes
    /// whatever the read found, over the token of the value it found.
    fn next_step(&self, found: Found<S>, mode: Mode, epoch: u64) -> Step<S> {
        match (found, mode) {
            (
                Found::Hit {
                    value, written_at, ..
                },
                Mode::Lookup,
            ) => Step::Hit(value, written_at),
            // A background refresh that finds a fresh value (another process refreshed it)
            // has nothing to do.
            (
                Found::Hit {
                    value, written_at, ..
                },
                Mode::Revalidate,
            ) => Step::Hit(value, written_at),
            (Found::Hit { write, .. }, Mode::Refresh)
            | (Found::Stale { write, .. }, Mode::Refresh | Mode::Revalidate) => {
                Step::Miss(Some(write), None)
            }
            (
                Found::Stale {
                    value,
                    written_at,
                    verdict,
                    write,
                },
                Mode::Lookup,
            ) => Step::Miss(
                Some(write),
                Some(Prior {
                    value,
                    written_at,
                    verdict,
                    epoch,
                }),
            ),
            (Found::Miss(write), _) => Step::Miss(write, None),
        }
    }

    /// Where a call starts: without a usable store, with its entry hidden by a queued
    /// invalidation, or with a plan to read.
    fn begin(&self, arguments: Option<&str>, tags: &[String]) -> Begin {
        match arguments.and_then(|arguments| self.plan(arguments, tags)) {
            None => Begin::Uncached,
            Some(plan) if plan.remote.hides(&plan.read_keys) => Begin::Hidden(plan),
            Some(plan) => Begin::Read(plan),
        }
    }

    /// `prior`'s value, if no invalidation in this process could have hidden it since it was
    /// read, counted as served stale.
    fn stale(&self, prior: &Prior<S>) -> Option<(S, Served)> {
        if self.epoch() != prior.epoch {
            return None;
        }
        self.counters.note(Event::StaleServed);
        Some((
            prior.value.clone(),
            Served::Stale(WrittenAt::UnixMs(prior.written_at)),
        ))
    }

    /// While a key's recomputation is throttled after a failure, its stale value (a hit).
    fn throttled<R>(
        &self,
        plan: &Plan,
        prior: Option<&Prior<S>>,
        load: fn(S) -> R,
    ) -> Option<(R, Served)> {
        let prior = prior?;
        if !self
            .revalidation
            .is_throttled(self.revalidation.hash(plan.entry_key()))
        {
            return None;
        }
        let (value, served) = self.stale(prior)?;
        self.counters.hits.increment();
        Some((load(value), served))
    }

    /// Runs a recomputation that a stale value may stand in for (fail-safe): when it fails,
    /// `Err` with the stale value (see [`judge_attempt`](Self::judge_attempt)). Without a
    /// stale value it just runs.
    fn guarded<R>(
        &self,
        plan: &Plan,
        prior: Option<&Prior<S>>,
        keep: fn(&R) -> Option<&S>,
        run: impl FnOnce() -> R,
    ) -> Result<R, (S, Served)> {
        let Some(prior) = prior else {
            return Ok(run());
        };
        let attempt = freshness::attempt(keep, run);
        self.judge_attempt(plan, prior, attempt)
    }

    /// The `async` form of [`guarded`](Self::guarded) (`prior` owned: a reference held across
    /// the await would need `S: Sync`).
    async fn guarded_async<R>(
        &self,
        plan: &Plan,
        prior: Option<Prior<S>>,
        keep: fn(&R) -> Option<&S>,
        run: impl Future<Output = R>,
    ) -> Result<R, (S, Served)> {
        let Some(prior) = prior else {
            return Ok(run.await);
        };
        let attempt = freshness::attempt_async(keep, run).await;
        self.judge_attempt(plan, &prior, attempt)
    }

    /// What a recomputation that `prior` may stand in for came to (see
    /// `Revalidation::settle`).
    fn judge_attempt<R>(
        &self,
        plan: &Plan,
        prior: &Prior<S>,
        attempt: freshness::Attempt<R>,
    ) -> Result<R, (S, Served)> {
        let hash = self.revalidation.hash(plan.entry_key());
        let retry_after = self.freshness.retry_after;
        self.revalidation
            .settle(hash, attempt, retry_after, &self.counters, || {
                self.stale(prior)
            })
    }

    /// Looks the call up, and on a miss runs `compute` and stores what `keep` keeps.
    pub fn compute<R>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        self.compute_in(
            arguments,
            local_key,
            tags,
            keep,
            load,
            compute,
            Mode::Lookup,
        )
        .0
    }

    /// [`compute`](Self::compute), saying how the call was answered (`f::call`).
    pub fn compute_observed<R>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> Cached<R> {
        let called = Instant::now();
        let (result, served) = self.compute_in(
            arguments,
            local_key,
            tags,
            keep,
            load,
            compute,
            Mode::Lookup,
        );
        served.into_cached(result, called)
    }

    /// Recomputes now and stores what `keep` keeps (`f::refresh`), over whatever the store
    /// holds for the key. A computation of the key already running in this process is waited
    /// out first (it started earlier); callers arriving meanwhile get the refreshed value. An
    /// `Err`/`None` is returned and leaves the entry as it was.
    pub fn refresh<R>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
    ) -> R {
        self.compute_in(
            arguments,
            local_key,
            tags,
            keep,
            load,
            compute,
            Mode::Refresh,
        )
        .0
    }

    /// A blocking read of a plan's keys.
    fn read(&self, plan: &Plan) -> Result<Vec<Option<Vec<u8>>>, BackendError> {
        let keys = plan.read_keys.clone();
        plan.remote.blocking(move |remote| remote.get_many(keys))
    }

    #[allow(clippy::too_many_arguments)]
    fn compute_in<R>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
        mode: Mode,
    ) -> (R, Served) {
        let plan = match self.begin(arguments.as_deref(), tags) {
            Begin::Uncached => return self.uncached(mode, keep, compute),
            Begin::Hidden(plan) => return self.compute_hidden(&plan, keep, load, compute, mode),
            Begin::Read(plan) => plan,
        };
        // Read before joining the flight, so that a hit, the common case, touches no flight.
        let epoch = self.epoch();
        let snapshot = self.snapshot(&plan, mode);
        let found = self.judge(&plan, self.read(&plan));
        match self.next_step(self.copied(local_key, snapshot, found), mode, epoch) {
            Step::Hit(value, written_at) => self.hit(value, written_at, load),
            Step::Miss(write, prior) => {
                self.compute_missed(plan, epoch, write, prior, keep, load, compute, mode)
            }
        }
    }

    /// A call without a usable store: the function runs, nothing is stored.
    fn uncached<R>(
        &self,
        mode: Mode,
        keep: fn(&R) -> Option<&S>,
        compute: impl FnOnce() -> R,
    ) -> (R, Served) {
        self.miss(mode);
        (
            self.counters.timed(self.name, mode, keep, compute),
            Served::Computed { stored: false },
        )
    }

    /// A call whose read found no fresh value: joins the flight, computes (or is handed the
    /// value), and writes.
    #[allow(clippy::too_many_arguments)]
    fn compute_missed<R>(
        &self,
        plan: Plan,
        mut epoch: u64,
        mut write: Option<Write>,
        mut prior: Option<Prior<S>>,
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
        mode: Mode,
    ) -> (R, Served) {
        if let Some(stale) = self.throttled(&plan, prior.as_ref(), load) {
            return stale;
        }
        let guard = match self.join(plan.entry_key(), mode) {
            Ok(guard) => guard,
            // Handed over by this process's leader: the store says whether it is still what
            // a call made now may get (another process may have invalidated it meanwhile).
            Err(handed) => match self.verify(&plan, handed, self.read(&plan), load, epoch) {
                Ok(hit) => return hit,
                Err((miss, stale)) => {
                    write = miss;
                    prior = stale;
                    None
                }
            },
        };
        // A new leader reads again: a flight that ended between the read and the join stored
        // the value (or, for a refresh, changed what it must write over).
        if guard.is_some() && Write::worth_rereading(&write) {
            // An invalidation queued since the first read: what the store holds is hidden.
            if plan.remote.hides(&plan.read_keys) {
                return self.lead_hidden(guard, keep, compute, mode);
            }
            epoch = self.epoch();
            match self.next_step(self.judge(&plan, self.read(&plan)), mode, epoch) {
                Step::Hit(value, written_at) => {
                    self.finish(guard, Some((&value, written_at)), epoch);
                    return self.hit(value, written_at, load);
                }
                // What the store holds now is what may stand in (another process may have
                // invalidated the value read first).
                Step::Miss(miss, stale) => {
                    write = miss;
                    prior = stale;
                }
            }
        }
        if let Some(stale) = self.throttled(&plan, prior.as_ref(), load) {
            self.finish(guard, None, epoch);
            return stale;
        }
        let led = guard.is_some();
        // Started on the first wait: a miss without `lock` reads no clock for it.
        let mut waiting: Option<LockWait> = None;
        let mut reread = false;
        let prepared = loop {
            if reread {
                // As above: a waiter must not take, nor hand over, a value an invalidation
                // queued during its wait hides.
                if plan.remote.hides(&plan.read_keys) {
                    return self.lead_hidden(guard, keep, compute, mode);
                }
                epoch = self.epoch();
                match self.next_step(self.judge(&plan, self.read(&plan)), mode, epoch) {
                    Step::Hit(value, written_at) => {
                        self.finish(guard, Some((&value, written_at)), epoch);
                        return self.hit(value, written_at, load);
                    }
                    Step::Miss(miss, stale) => {
                        write = miss;
                        prior = stale;
                    }
                }
            }
            reread = true;
            match self.lock_step(mode, led, prior.as_ref(), &mut write, &mut waiting) {
                LockStep::Wait(pause) => std::thread::sleep(pause),
                LockStep::Compute => break None,
                LockStep::Prepare(planned, take_lease) => {
                    let prepare = self.prepare_op(&plan, planned, take_lease);
                    let prepared = self.prepared(plan.remote.blocking(prepare));
                    if let Some(prepared) = lock_settled(prepared, &mut waiting) {
                        break prepared;
                    }
                }
            }
        };
        let mut keeper = prepared
            .as_ref()
            .and_then(|prepared| self.keep_lease(&plan, prepared));
        self.miss(mode);
        let started = (Instant::now(), unix_ms());
        let run = || self.run(guard.as_ref(), mode, keep, compute);
        let guarded = self.guarded(&plan, prior.as_ref(), keep, run);
        if let Some(keeper) = keeper.as_mut() {
            keeper.settled();
        }
        let result = match guarded {
            Ok(result) => result,
            Err((value, served)) => {
                self.settle_failed(&plan, prepared.as_ref());
                self.finish(guard, None, epoch);
                return (load(value), served);
            }
        };
        let stored = keep(&result);
        if stored.is_some() {
            // A failing origin recovered: its key is no longer throttled.
            self.forget_failure(plan.entry_key());
        }
        let mut landed = false;
        if let Some(prepared) = &prepared
            && let Some(settle) = self.settle_op(&plan, prepared, stored, started)
        {
            landed = self.populated(plan.remote.blocking(settle));
            // This process's copies of the entry (a refresh replaced one) are older now.
            super::near::changed(plan.entry_key().as_bytes());
        }
        // A tombstone written for a result not kept is no stored value.
        // Not stored either if an invalidation in this process came meanwhile (the value may
        // be hidden by its stamp, or older than what it hid).
        let served = Served::Computed {
            stored: landed && stored.is_some() && epoch == self.epoch(),
        };
        self.finish(guard, stored.map(|value| (value, started.1)), epoch);
        (result, served)
    }

    /// After a failed recomputation answered with a stale value: takes back a lease this
    /// leader left (none when the stale value was there: its write would have replaced it).
    fn settle_failed(&self, plan: &Plan, prepared: Option<&Prepared>) {
        if let Some(prepared) = prepared
            && let Some(settle) = self.release_op(plan, prepared)
        {
            self.populated(plan.remote.blocking(settle));
        }
    }

    /// The `async` form of [`settle_failed`](Self::settle_failed).
    async fn settle_failed_async(&self, plan: &Plan, prepared: Option<&Prepared>) {
        if let Some(prepared) = prepared
            && let Some(settle) = self.release_op(plan, prepared)
        {
            self.populated(plan.remote.call(settle).await);
        }
    }

    /// The write taking back a lease this leader left, if it left one.
    #[allow(clippy::type_complexity)]
    fn release_op(
        &self,
        plan: &Plan,
        prepared: &Prepared,
    ) -> Option<impl FnOnce(&dyn super::RemoteStore) -> super::StoreFuture<bool> + Send + 'static>
    {
        self.settle_op(plan, prepared, None, (Instant::now(), unix_ms()))
    }

    /// A call whose entry an invalidation still waiting to reach the store hides: computed
    /// without reading or writing the store, single flight still on (followers get the value
    /// unless another invalidation in this process came since it started).
    fn compute_hidden<R>(
        &self,
        plan: &Plan,
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl FnOnce() -> R,
        mode: Mode,
    ) -> (R, Served) {
        let epoch = self.epoch();
        let guard = match self.join(plan.entry_key(), mode) {
            Ok(guard) => guard,
            // Handed over: computed without the store, so not in it.
            Err((handed, written_at)) => return self.handed(handed, written_at, load),
        };
        self.computed_hidden(guard, epoch, keep, compute, mode)
    }

    /// A leader that found its key hidden by a queued invalidation after reading: computes
    /// without the store, as [`compute_hidden`](Self::compute_hidden) does.
    fn lead_hidden<R>(
        &self,
        guard: Option<LeaderGuard<'_, String, (S, u64)>>,
        keep: fn(&R) -> Option<&S>,
        compute: impl FnOnce() -> R,
        mode: Mode,
    ) -> (R, Served) {
        let epoch = self.epoch();
        self.computed_hidden(guard, epoch, keep, compute, mode)
    }

    fn computed_hidden<R>(
        &self,
        guard: Option<LeaderGuard<'_, String, (S, u64)>>,
        epoch: u64,
        keep: fn(&R) -> Option<&S>,
        compute: impl FnOnce() -> R,
        mode: Mode,
    ) -> (R, Served) {
        self.miss(mode);
        let written_at = unix_ms();
        let result = self.run(guard.as_ref(), mode, keep, compute);
        let stored = keep(&result).map(|value| (value, written_at));
        self.finish(guard, stored, epoch);
        // Not written: the store is not used while an invalidation of the key is queued.
        (result, Served::Computed { stored: false })
    }

    /// What a follower makes of a value its leader handed over, given a read made after it
    /// was handed: the store's value if it has a fresh one; the handed value if the store
    /// cannot be read (nothing newer can be known); else (the leader's value was not written,
    /// or was hidden since) a miss to compute, with what the store holds that may stand in.
    #[allow(clippy::type_complexity)]
    fn verify<R>(
        &self,
        plan: &Plan,
        handed: (S, u64),
        read: Result<Vec<Option<Vec<u8>>>, BackendError>,
        load: fn(S) -> R,
        epoch: u64,
    ) -> Result<(R, Served), (Option<Write>, Option<Prior<S>>)> {
        match self.judge(plan, read) {
            Found::Hit {
                value, written_at, ..
            } => Ok(self.hit(value, written_at, load)),
            // Whether it is in the store is not known.
            Found::Miss(None) => Ok(self.handed(handed.0, handed.1, load)),
            found => match self.next_step(found, Mode::Lookup, epoch) {
                Step::Hit(value, written_at) => Ok(self.hit(value, written_at, load)),
                Step::Miss(write, prior) => Err((write, prior)),
            },
        }
    }

    /// The `async fn` form of [`compute`](Self::compute).
    pub async fn compute_async<R, F>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R
    where
        F: Future<Output = R>,
    {
        self.compute_async_in(
            arguments,
            local_key,
            tags,
            keep,
            load,
            compute,
            Mode::Lookup,
        )
        .await
        .0
    }

    /// The `async fn` form of [`compute_observed`](Self::compute_observed).
    pub async fn compute_observed_async<R, F>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> Cached<R>
    where
        F: Future<Output = R>,
    {
        let called = Instant::now();
        let (result, served) = self
            .compute_async_in(
                arguments,
                local_key,
                tags,
                keep,
                load,
                compute,
                Mode::Lookup,
            )
            .await;
        served.into_cached(result, called)
    }

    /// The `async fn` form of [`refresh`](Self::refresh).
    pub async fn refresh_async<R, F>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R
    where
        F: Future<Output = R>,
    {
        self.compute_async_in(
            arguments,
            local_key,
            tags,
            keep,
            load,
            compute,
            Mode::Refresh,
        )
        .await
        .0
    }

    #[allow(clippy::too_many_arguments)]
    async fn compute_async_in<R, F>(
        &self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
        mode: Mode,
    ) -> (R, Served)
    where
        F: Future<Output = R>,
    {
        let plan = match self.begin(arguments.as_deref(), tags) {
            Begin::Uncached => return self.uncached_async(mode, keep, compute).await,
            Begin::Hidden(plan) => {
                return self
                    .compute_hidden_async(&plan, keep, load, compute, mode)
                    .await;
            }
            Begin::Read(plan) => plan,
        };
        let epoch = self.epoch();
        let snapshot = self.snapshot(&plan, mode);
        let read = plan.remote.read(&plan.read_keys).await;
        let found = self.judge(&plan, read);
        match self.next_step(self.copied(local_key, snapshot, found), mode, epoch) {
            Step::Hit(value, written_at) => self.hit(value, written_at, load),
            Step::Miss(write, prior) => {
                self.compute_missed_async(plan, epoch, write, prior, keep, load, compute, mode)
                    .await
            }
        }
    }

    /// The `async fn` form of [`uncached`](Self::uncached).
    async fn uncached_async<R>(
        &self,
        mode: Mode,
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
    ) -> (R, Served) {
        self.miss(mode);
        (
            self.counters
                .timed_async(self.name, mode, keep, compute)
                .await,
            Served::Computed { stored: false },
        )
    }

    /// The `async fn` form of [`compute_missed`](Self::compute_missed).
    #[allow(clippy::too_many_arguments)]
    async fn compute_missed_async<R>(
        &self,
        plan: Plan,
        mut epoch: u64,
        mut write: Option<Write>,
        mut prior: Option<Prior<S>>,
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: impl Future<Output = R>,
        mode: Mode,
    ) -> (R, Served) {
        if let Some(stale) = self.throttled(&plan, prior.as_ref(), load) {
            return stale;
        }
        let guard = match self.join_async(plan.entry_key(), mode).await {
            Ok(guard) => guard,
            Err(handed) => {
                let read = plan.remote.read(&plan.read_keys).await;
                match self.verify(&plan, handed, read, load, epoch) {
                    Ok(hit) => return hit,
                    Err((miss, stale)) => {
                        write = miss;
                        prior = stale;
                        None
                    }
                }
            }
        };
        if guard.is_some() && Write::worth_rereading(&write) {
            if plan.remote.hides(&plan.read_keys) {
                return self.lead_hidden_async(guard, keep, compute, mode).await;
            }
            epoch = self.epoch();
            let read = plan.remote.read(&plan.read_keys).await;
            match self.next_step(self.judge(&plan, read), mode, epoch) {
                Step::Hit(value, written_at) => {
                    self.finish(guard, Some((&value, written_at)), epoch);
                    return self.hit(value, written_at, load);
                }
                Step::Miss(miss, stale) => {
                    write = miss;
                    prior = stale;
                }
            }
        }
        if let Some(stale) = self.throttled(&plan, prior.as_ref(), load) {
            self.finish(guard, None, epoch);
            return stale;
        }
        let led = guard.is_some();
        // Started on the first wait: a miss without `lock` reads no clock for it.
        let mut waiting: Option<LockWait> = None;
        let mut reread = false;
        let prepared = loop {
            if reread {
                if plan.remote.hides(&plan.read_keys) {
                    return self.lead_hidden_async(guard, keep, compute, mode).await;
                }
                epoch = self.epoch();
                let read = plan.remote.read(&plan.read_keys).await;
                match self.next_step(self.judge(&plan, read), mode, epoch) {
                    Step::Hit(value, written_at) => {
                        self.finish(guard, Some((&value, written_at)), epoch);
                        return self.hit(value, written_at, load);
                    }
                    Step::Miss(miss, stale) => {
                        write = miss;
                        prior = stale;
                    }
                }
            }
            reread = true;
            match self.lock_step(mode, led, prior.as_ref(), &mut write, &mut waiting) {
                // Timed by a thread of ours: the caller's executor may have no timer.
                LockStep::Wait(pause) => {
                    let _ = freshness::within(std::future::pending::<()>(), pause).await;
                }
                LockStep::Compute => break None,
                LockStep::Prepare(planned, take_lease) => {
                    let prepare = self.prepare_op(&plan, planned, take_lease);
                    let prepared = self.prepared(plan.remote.call(prepare).await);
                    if let Some(prepared) = lock_settled(prepared, &mut waiting) {
                        break prepared;
                    }
                }
            }
        };
        let mut keeper = prepared
            .as_ref()
            .and_then(|prepared| self.keep_lease(&plan, prepared));
        self.miss(mode);
        let started = (Instant::now(), unix_ms());
        let run = self.run_async(guard.as_ref(), mode, keep, compute);
        // Owned across the await: a reference would need `S: Sync`.
        let guarded = self.guarded_async(&plan, prior, keep, run).await;
        if let Some(keeper) = keeper.as_mut() {
            keeper.settled();
        }
        let result = match guarded {
            Ok(result) => result,
            Err((value, served)) => {
                self.settle_failed_async(&plan, prepared.as_ref()).await;
                self.finish(guard, None, epoch);
                return (load(value), served);
            }
        };
        // The write is built before the await, the kept value borrowed again after it (a
        // reference held across the await would need `S: Sync`).
        let settle = prepared
            .as_ref()
            .and_then(|prepared| self.settle_op(&plan, prepared, keep(&result), started));
        let mut landed = false;
        if let Some(settle) = settle {
            landed = self.populated(plan.remote.call(settle).await);
            super::near::changed(plan.entry_key().as_bytes());
        }
        let stored = keep(&result);
        if stored.is_some() {
            self.forget_failure(plan.entry_key());
        }
        // Not stored either if an invalidation in this process came meanwhile (the value may
        // be hidden by its stamp, or older than what it hid).
        let served = Served::Computed {
            stored: landed && stored.is_some() && epoch == self.epoch(),
        };
        self.finish(guard, stored.map(|value| (value, started.1)), epoch);
        (result, served)
    }

    /// The `async fn` form of [`compute_hidden`](Self::compute_hidden).
    async fn compute_hidden_async<R, F>(
        &self,
        plan: &Plan,
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
        mode: Mode,
    ) -> (R, Served)
    where
        F: Future<Output = R>,
    {
        let epoch = self.epoch();
        let guard = match self.join_async(plan.entry_key(), mode).await {
            Ok(guard) => guard,
            // Handed over: computed without the store, so not in it.
            Err((handed, written_at)) => return self.handed(handed, written_at, load),
        };
        self.computed_hidden_async(guard, epoch, keep, compute, mode)
            .await
    }

    /// The `async fn` form of [`lead_hidden`](Self::lead_hidden).
    async fn lead_hidden_async<R>(
        &self,
        guard: Option<LeaderGuard<'_, String, (S, u64)>>,
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
        mode: Mode,
    ) -> (R, Served) {
        let epoch = self.epoch();
        self.computed_hidden_async(guard, epoch, keep, compute, mode)
            .await
    }

    async fn computed_hidden_async<R>(
        &self,
        guard: Option<LeaderGuard<'_, String, (S, u64)>>,
        epoch: u64,
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
        mode: Mode,
    ) -> (R, Served) {
        self.miss(mode);
        let written_at = unix_ms();
        let result = self.run_async(guard.as_ref(), mode, keep, compute).await;
        let stored = keep(&result).map(|value| (value, written_at));
        self.finish(guard, stored, epoch);
        // Not written: the store is not used while an invalidation of the key is queued.
        (result, Served::Computed { stored: false })
    }

    /// The fresh value stored for these arguments, if any, without computing and without
    /// counting a hit or a miss (`f::peek`). `None` too while an invalidation of it waits to
    /// reach the store, and when the store cannot be read (an error is counted).
    pub fn peek(&self, arguments: Option<String>, tags: &[String]) -> Option<S> {
        let plan = arguments.and_then(|arguments| self.plan(&arguments, tags))?;
        if plan.remote.hides(&plan.read_keys) {
            return None;
        }
        let keys = plan.read_keys.clone();
        let read = plan.remote.blocking(move |remote| remote.get_many(keys));
        self.peeked(&plan, read)
    }

    /// The `async fn` form of [`peek`](Self::peek).
    pub async fn peek_async(&self, arguments: Option<String>, tags: &[String]) -> Option<S> {
        let plan = arguments.and_then(|arguments| self.plan(&arguments, tags))?;
        if plan.remote.hides(&plan.read_keys) {
            return None;
        }
        let read = plan.remote.read(&plan.read_keys).await;
        self.peeked(&plan, read)
    }

    fn peeked(&self, plan: &Plan, read: Result<Vec<Option<Vec<u8>>>, BackendError>) -> Option<S> {
        // A peek reads without renewing.
        match self.judge_read(plan, read, false) {
            Found::Hit { value, .. } => Some(value),
            Found::Stale { .. } | Found::Miss(_) => None,
        }
    }

    /// What `set` does before touching the store: `Err(Some(..))` is the outcome without a
    /// write, `Err(None)` that the key is to be invalidated instead.
    fn set_plan(
        &self,
        arguments: Option<&str>,
        tags: &[String],
        value: Option<S>,
    ) -> Result<(Plan, S), Option<SetOutcome>> {
        let Some(plan) = arguments.and_then(|arguments| self.plan(arguments, tags)) else {
            // Arguments that cannot be encoded are never cached; without a store, nothing is.
            return Err(Some(SetOutcome::NotStored(Invalidation::Absent)));
        };
        if plan.remote.hides(&plan.read_keys) {
            // The invalidation waiting to land would remove the value again.
            return Err(Some(SetOutcome::NotStored(Invalidation::Queued)));
        }
        // A value that says it is already expired invalidates instead (jitter only lengthens).
        value
            .filter(|value| !self.lifetime(&plan.remote, value).is_zero())
            .map(|value| (plan, value))
            .ok_or(None)
    }

    /// The store operation of `set` (see [`write_through`]), or `None` if the value does not
    /// encode (an error counted).
    fn set_op(
        &self,
        plan: &Plan,
        value: &S,
    ) -> Option<impl FnOnce(&dyn super::RemoteStore) -> super::StoreFuture<()> + Send + 'static>
    {
        let codec = plan.remote.codec();
        let payload = match codec.encode(value) {
            Ok(payload) => payload,
            Err(error) => {
                self.record("encode", &BackendError::Other(Box::new(error)));
                return None;
            }
        };
        let store = plan.remote.store();
        let entry_key = plan.entry_key().clone();
        let stamp_keys = plan.read_keys[1..].to_vec();
        let lifetime = self.lifetime(&plan.remote, value);
        let ttl = self.store_ttl(&plan.remote, lifetime);
        let stamp_ttl = plan.remote.stamp_ttl();
        let written_at = unix_ms();
        let times = (written_at, written_at.saturating_add(millis(lifetime)));
        Some(move |_: &dyn super::RemoteStore| {
            Box::pin(write_through(
                store, entry_key, stamp_keys, codec, payload, times, ttl, stamp_ttl,
            )) as super::StoreFuture<()>
        })
    }

    /// Stores `value` for these arguments as if computed now (`f::set`, write-through), for
    /// every process. A computation of the key already running, in any process, finds other
    /// bytes than it read and does not write its older value. `None` (the policy keeps no such
    /// result) invalidates the key instead; so does a write that fails (a store that is down:
    /// the invalidation is queued, see [`Invalidation::Queued`]).
    pub fn set(&self, arguments: Option<String>, tags: &[String], value: Option<S>) -> SetOutcome {
        // Before anything else, as an invalidation: a computation of this cache running in
        // this process (e.g. one that skips the store while an invalidation is queued) must not
        // hand its older value to callers that arrive after this returns.
        self.note_invalidation();
        let (plan, value) = match self.set_plan(arguments.as_deref(), tags, value) {
            Ok(planned) => planned,
            Err(Some(outcome)) => return outcome,
            Err(None) => return SetOutcome::NotStored(self.invalidate(arguments)),
        };
        self.forget_failure(plan.entry_key());
        let written = self
            .set_op(&plan, &value)
            .map(|op| plan.remote.blocking(op));
        // After the write: this process's copies of the older value are not served.
        super::near::changed(plan.entry_key().as_bytes());
        self.note_invalidation();
        match written {
            Some(Ok(())) => SetOutcome::Stored,
            Some(Err(error)) => {
                self.record("set", &error);
                SetOutcome::NotStored(self.invalidate(arguments))
            }
            None => SetOutcome::NotStored(self.invalidate(arguments)),
        }
    }

    /// The `async fn` form of [`set`](Self::set).
    pub async fn set_async(
        &self,
        arguments: Option<String>,
        tags: &[String],
        value: Option<S>,
    ) -> SetOutcome {
        // As in `set`.
        self.note_invalidation();
        let (plan, value) = match self.set_plan(arguments.as_deref(), tags, value) {
            Ok(planned) => planned,
            Err(Some(outcome)) => return outcome,
            Err(None) => return SetOutcome::NotStored(self.invalidate_async(arguments).await),
        };
        self.forget_failure(plan.entry_key());
        let written = match self.set_op(&plan, &value) {
            Some(op) => Some(plan.remote.call(op).await),
            None => None,
        };
        super::near::changed(plan.entry_key().as_bytes());
        self.note_invalidation();
        match written {
            Some(Ok(())) => SetOutcome::Stored,
            Some(Err(error)) => {
                self.record("set", &error);
                SetOutcome::NotStored(self.invalidate_async(arguments).await)
            }
            None => SetOutcome::NotStored(self.invalidate_async(arguments).await),
        }
    }
}

/// Stale-while-revalidate and soft timeouts: the computation is owned (`'static`), so it can
/// run in the background while the caller gets the stale value.
impl<S: RemoteValue> RemoteCache<S> {
    /// [`compute`](Self::compute) for a cache with `stale_while_revalidate` or `timeout`: a
    /// stale value within its window is returned at once, and the first such call in this
    /// process starts one background recomputation of the key (none while its retries are
    /// throttled).
    pub fn compute_fresh<R, F>(
        &'static self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        self.compute_fresh_in(arguments, local_key, tags, keep, load, compute)
            .0
    }

    /// [`compute_fresh`](Self::compute_fresh), saying how the call was answered (`f::call`).
    pub fn compute_fresh_observed<R, F>(
        &'static self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> Cached<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let called = Instant::now();
        let (result, served) =
            self.compute_fresh_in(arguments, local_key, tags, keep, load, compute);
        served.into_cached(result, called)
    }

    fn compute_fresh_in<R, F>(
        &'static self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> (R, Served)
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let plan = match self.begin(arguments.as_deref(), tags) {
            Begin::Uncached => return self.uncached(Mode::Lookup, keep, compute),
            Begin::Hidden(plan) => {
                return self.compute_hidden(&plan, keep, load, compute, Mode::Lookup);
            }
            Begin::Read(plan) => plan,
        };
        let epoch = self.epoch();
        let snapshot = self.snapshot(&plan, Mode::Lookup);
        let found = self.judge(&plan, self.read(&plan));
        let found = self.copied(local_key, snapshot, found);
        let (write, prior) = match self.next_step(found, Mode::Lookup, epoch) {
            Step::Hit(value, written_at) => return self.hit(value, written_at, load),
            Step::Miss(write, prior) => (write, prior),
        };
        if let Some(stale) = self.serve_and_revalidate(prior.as_ref()) {
            let (value, served) = stale;
            if let (Some(arguments), Some((ticket, hash))) = (arguments, self.refresh_ticket(&plan))
            {
                let tags = tags.to_vec();
                let job = move || {
                    let _ticket = ticket;
                    // As the async refresh does: a panic or an unkept result is a failure.
                    let attempt = freshness::attempt(keep, || {
                        self.compute_in(
                            Some(arguments),
                            None,
                            &tags,
                            keep,
                            load,
                            compute,
                            Mode::Revalidate,
                        )
                        .0
                    });
                    self.refreshed(hash, attempt.is_ok());
                };
                if !freshness::spawn_blocking(job) {
                    self.counters.note(Event::RefreshFailed);
                }
            }
            return (load(value), served);
        }
        self.compute_missed(plan, epoch, write, prior, keep, load, compute, Mode::Lookup)
    }

    /// A stale value within its stale-while-revalidate window, served (a hit).
    fn serve_and_revalidate(&self, prior: Option<&Prior<S>>) -> Option<(S, Served)> {
        // (`Verdict::Stale` only comes with `stale_while_revalidate`.)
        let prior = prior.filter(|prior| prior.verdict == Verdict::Stale)?;
        let stale = self.stale(prior)?;
        self.counters.hits.increment();
        Some(stale)
    }

    /// A ticket to refresh the planned key in the background (see `Revalidation::ticket`),
    /// with the key's hash.
    fn refresh_ticket(&'static self, plan: &Plan) -> Option<(freshness::RefreshTicket, u64)> {
        let hash = self.revalidation.hash(plan.entry_key());
        let ticket = self.revalidation.ticket(hash, &self.counters)?;
        Some((ticket, hash))
    }

    /// Notes how a background refresh ended: kept, or failed (`Err`, `None`, a panic), which
    /// throttles the key's retries (the stale value stays).
    fn refreshed(&self, hash: u64, kept: bool) {
        let retry_after = self.freshness.retry_after;
        self.revalidation
            .refreshed(hash, kept, retry_after, &self.counters);
    }

    /// The `async fn` form of [`compute_fresh`](Self::compute_fresh): the refresh runs on the
    /// caller's tokio runtime if there is one, else on a refresh thread of ours. With
    /// `timeout`, a call that has a stale value to fall back on waits at most that long for
    /// the recomputation, then returns the stale value while the recomputation finishes (and
    /// writes its value) in the background.
    pub async fn compute_fresh_async<R, F>(
        &'static self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> R
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        self.compute_fresh_async_in(arguments, local_key, tags, keep, load, compute)
            .await
            .0
    }

    /// [`compute_fresh_async`](Self::compute_fresh_async), saying how the call was answered.
    pub async fn compute_fresh_observed_async<R, F>(
        &'static self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> Cached<R>
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let called = Instant::now();
        let (result, served) = self
            .compute_fresh_async_in(arguments, local_key, tags, keep, load, compute)
            .await;
        served.into_cached(result, called)
    }

    async fn compute_fresh_async_in<R, F>(
        &'static self,
        arguments: Option<String>,
        local_key: Option<LocalKey<'_>>,
        tags: &[String],
        keep: fn(&R) -> Option<&S>,
        load: fn(S) -> R,
        compute: F,
    ) -> (R, Served)
    where
        F: Future<Output = R> + Send + 'static,
        R: Send + 'static,
    {
        let plan = match self.begin(arguments.as_deref(), tags) {
            Begin::Uncached => return self.uncached_async(Mode::Lookup, keep, compute).await,
            Begin::Hidden(plan) => {
                return self
                    .compute_hidden_async(&plan, keep, load, compute, Mode::Lookup)
                    .await;
            }
            Begin::Read(plan) => plan,
        };
        let epoch = self.epoch();
        let snapshot = self.snapshot(&plan, Mode::Lookup);
        let read = plan.remote.read(&plan.read_keys).await;
        let found = self.judge(&plan, read);
        let found = self.copied(local_key, snapshot, found);
        let (write, prior) = match self.next_step(found, Mode::Lookup, epoch) {
            Step::Hit(value, written_at) => return self.hit(value, written_at, load),
            Step::Miss(write, prior) => (write, prior),
        };
        if let Some((value, served)) = self.serve_and_revalidate(prior.as_ref()) {
            if let (Some(arguments), Some((ticket, hash))) = (arguments, self.refresh_ticket(&plan))
            {
                let tags = tags.to_vec();
                let refresh = async move {
                    let _ticket = ticket;
                    let run = self.compute_async_in(
                        Some(arguments),
                        None,
                        &tags,
                        keep,
                        load,
                        compute,
                        Mode::Revalidate,
                    );
                    let attempt = freshness::attempt_async(keep, async move { run.await.0 }).await;
                    self.refreshed(hash, attempt.is_ok());
                };
                if !freshness::spawn_future(refresh) {
                    self.counters.note(Event::RefreshFailed);
                }
            }
            return (load(value), served);
        }
        let (Some(limit), Some(fallback)) = (
            self.freshness.timeout,
            prior.as_ref().map(|prior| Prior {
                value: prior.value.clone(),
                written_at: prior.written_at,
                verdict: prior.verdict,
                epoch: prior.epoch,
            }),
        ) else {
            return self
                .compute_missed_async(plan, epoch, write, prior, keep, load, compute, Mode::Lookup)
                .await;
        };
        let work = Box::pin(self.compute_missed_async(
            plan,
            epoch,
            write,
            prior,
            keep,
            load,
            compute,
            Mode::Lookup,
        ));
        match freshness::answer_within(work, limit, &self.counters, || self.stale(&fallback)).await
        {
            Ok(answered) => answered,
            Err((value, served)) => (load(value), served),
        }
    }
}

impl<S: Send + 'static> crate::registry::Registered for RemoteCache<S> {
    fn name(&self) -> &str {
        self.name
    }

    fn info(&self) -> CacheInfo {
        RemoteCache::info(self)
    }

    fn lifetime_info(&self) -> CacheInfo {
        self.info_since(Since::Start)
    }

    fn level(&self) -> &'static str {
        "remote"
    }
}
