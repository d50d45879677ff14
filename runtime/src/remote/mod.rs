//! Caches shared between processes: the [`RemoteStore`] seam, the [`Remote`] that wraps a store
//! with a key prefix, a codec, an operation timeout and a circuit breaker, and the process-wide
//! default that `#[cached(backend = "redis")]` and `backend = "remote"` use.
//!
//! # Consistency
//! - A remote entry is `<prefix>:<cache name>:v<version>:<arguments>` (see [`key`]), framed with
//!   a token fresh for every write and the *stamps* of its invalidation keys as they were read
//!   before the value was computed.
//! - A hit reads the entry, its cache's clear stamp, the remote-wide stamp (`<prefix>:#all`) and
//!   its tags' stamps in one `MGET` (one round trip; on Redis Cluster the crate splits it per
//!   node and sends the parts at once), and serves the value only if every stamp matches.
//! - [`invalidate_tag`](crate::invalidate_tag) and `cache_clear()` write a fresh random stamp,
//!   and `invalidate(args)` a fresh tombstone over the entry: every entry written before then
//!   reads as a miss, in every process, from the next read on.
//! - A value is written with [`RemoteStore::compare_and_set`], over exactly the bytes its leader
//!   read (or a lease it left) before computing: a computation that was running when an
//!   invalidation reached the store, in any process, writes nothing.
//! - Invalidation keys live twice the remote's `max_ttl`, and no entry lives longer than that,
//!   and an entry is never written under an absent stamp, so no index grows without bound and
//!   an expired stamp can never revive an old entry.
//! - Single flight is per process: concurrent misses of one key in one process compute once;
//!   separate processes may each compute it once.
//!
//! # Failures
//! Every operation has a timeout (default 250 ms). A failed or timed-out operation is counted in
//! `CacheInfo::errors`, logged through `tracing` at most every 10 s per cache, and the function
//! runs. After `failure_threshold` consecutive failures (default 5) the store is skipped for
//! `cool_down` (default 5 s), then one probe goes through; when it succeeds, caching resumes.
//!
//! An invalidation that cannot be written (an error, a timeout, the circuit open) is queued and
//! retried in the background until it lands ([`crate::Invalidation::Queued`]); meanwhile this
//! process does not read or write what it hides. [`health`] reports the circuit, the queue and
//! the last error; [`flush_pending`] waits for the queue at shutdown.
//!
//! # Threads and runtimes
//! An `async fn` called on a multi-threaded tokio runtime (as under `#[tokio::main]`) awaits
//! its store operations on its own task, over a connection driven by that runtime, so a hit
//! costs one round trip and no hop between threads. Reads of one remote that run at the same
//! time there are merged into one `get_many` (one `MGET`). Everywhere else (other executors,
//! current-thread runtimes, runtimes without the I/O or time driver, sync functions) operations
//! run on one background tokio runtime owned by cachemere (one worker thread, named
//! `cachemere-remote`), created on first use; an `async fn` awaits them without blocking its
//! executor. A sync function blocks its thread until the operation ends or times out, which
//! also works inside a tokio runtime: it never panics there, but it does occupy that worker for
//! up to the timeout, as any blocking I/O would. Call such functions through `spawn_blocking`,
//! or make them `async`, on latency-sensitive runtimes.
//!
//! On a multi-threaded runtime the operation's timeout is the runtime's timer, so code that
//! blocks every worker of that runtime while waiting for a cached `async fn` (a nested
//! `block_on` on each worker) deadlocks it, as it would any tokio I/O.

mod batch;
mod bounded;
mod breaker;
pub(crate) mod cache;
mod caller;
pub mod codec;
mod health;
pub mod key;
pub(crate) mod near;
mod pending;

pub use health::{Circuit, RemoteHealth, flush_pending, flush_pending_async, health};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use crate::backend::BackendError;
use crate::invalidation::Invalidation;
use breaker::Breaker;
pub use cache::{LOCK_LEASE, LOCK_WAIT};
pub use codec::{Codec, CodecError};
pub use near::{ChangeFeed, HEARTBEAT, STRIPES, TRUST};
use pending::Overwrite;

/// What a [`RemoteStore`] operation returns: a boxed, sendable future.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'static>>;

/// A key-value store shared between processes: the seam a remote backend implements.
///
/// Keys are text, values bytes; everything else (framing, codecs, tags, timeouts, the
/// circuit breaker, statistics) is done above it, so a store only moves bytes. Operations are
/// polled inside a tokio runtime with I/O and time enabled (the caller's multi-threaded
/// runtime, or cachemere's background one), so an implementation may use tokio I/O; one that
/// keeps connections should keep one per runtime (`tokio::runtime::Handle::id`), as the Redis
/// store does, since a connection's driver task dies with the runtime that spawned it.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
/// use cachemere::remote::{Remote, RemoteStore, StoreFuture};
///
/// /// A stand-in for a client of another shared store (memcached, a database table...).
/// #[derive(Default)]
/// struct Shared(Arc<Mutex<HashMap<String, Vec<u8>>>>);
///
/// impl RemoteStore for Shared {
///     fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
///         let map = Arc::clone(&self.0);
///         Box::pin(async move {
///             let map = map.lock().unwrap_or_else(|e| e.into_inner());
///             Ok(keys.iter().map(|k| map.get(k).cloned()).collect())
///         })
///     }
///     fn set(&self, key: String, value: Vec<u8>, _ttl: Duration) -> StoreFuture<()> {
///         let map = Arc::clone(&self.0);
///         Box::pin(async move {
///             map.lock().unwrap_or_else(|e| e.into_inner()).insert(key, value);
///             Ok(())
///         })
///     }
///     // Optional: an atomic set-if-absent, so racing writers agree on invalidation stamps.
///     fn get_or_set(&self, key: String, value: Vec<u8>, _ttl: Duration) -> StoreFuture<Option<Vec<u8>>> {
///         let map = Arc::clone(&self.0);
///         Box::pin(async move {
///             let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
///             Ok(Some(map.entry(key).or_insert(value).clone()))
///         })
///     }
///     // Required: an atomic compare-and-set on the value's leading bytes.
///     fn compare_and_set(&self, key: String, expected: Vec<u8>, value: Vec<u8>, _ttl: Duration) -> StoreFuture<bool> {
///         let map = Arc::clone(&self.0);
///         Box::pin(async move {
///             let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
///             let matches = map.get(&key).is_some_and(|current| current.starts_with(&expected));
///             if matches {
///                 map.insert(key, value);
///             }
///             Ok(matches)
///         })
///     }
///     fn delete(&self, key: String) -> StoreFuture<bool> {
///         let map = Arc::clone(&self.0);
///         Box::pin(async move { Ok(map.lock().unwrap_or_else(|e| e.into_inner()).remove(&key).is_some()) })
///     }
///     fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
///         let map = Arc::clone(&self.0);
///         Box::pin(async move {
///             let map = map.lock().unwrap_or_else(|e| e.into_inner());
///             Ok(map.keys().filter(|k| k.starts_with(&prefix)).count() as u64)
///         })
///     }
///     fn describe(&self) -> String { "in-process stand-in".into() }
/// }
///
/// Remote::builder(Shared::default()).prefix("doc").install();
///
/// #[cachemere::cached(backend = "remote")]
/// fn double(x: u64) -> u64 { x * 2 }
///
/// assert_eq!(double(21), 42);
/// assert_eq!(double(21), 42);
/// assert_eq!(double::cache_info().hits, 1);
/// ```
pub trait RemoteStore: Send + Sync + 'static {
    /// The values at `keys`, in order (`None` where absent), read together (one round trip
    /// where the store allows it).
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>>;

    /// Stores `value` at `key`, expiring after `ttl`, set atomically with the value.
    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()>;

    /// Stores `value` at `key` (expiring after `ttl`) unless `key` holds a value, and returns
    /// the value `key` holds afterwards (`None` if it vanished in between). Invalidation
    /// stamps are created with it, so that processes racing to create one agree on it.
    ///
    /// The default stores unconditionally and returns `value`: the last of racing writers
    /// wins, and the entries the others wrote read as misses once. Override it with the store's
    /// atomic set-if-absent where there is one.
    fn get_or_set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<Option<Vec<u8>>> {
        let set = self.set(key, value.clone(), ttl);
        Box::pin(async move { set.await.map(|()| Some(value)) })
    }

    /// Replaces the value at `key` with `value` (expiring after `ttl`) if, and only if, the
    /// value there now starts with the bytes `expected`; returns whether it did. It must be
    /// atomic (one script, transaction or conditional write of the store): this is how a value
    /// computed from data that an invalidation has since hidden is kept out of the store.
    ///
    /// cachemere never expects an absent key: before computing, it leaves a placeholder (a
    /// *lease*) where the key was absent, and every write it makes starts with a prefix of
    /// its own, fresh for that write. An invalidation overwrites that prefix, so the populate
    /// of a computation that started before it finds other bytes and writes nothing.
    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool>;

    /// Stores `value` at `key` (expiring after `ttl`) if the key holds anything (of whatever
    /// type), and returns what it replaced: the whole value, or at least its first 32 bytes
    /// (`None` if nothing, or nothing readable, was there). `invalidate(args)` writes its
    /// tombstone with it (an absent key needs none: no computation can be waiting to write
    /// over it); the answer only tells whether there was an entry.
    ///
    /// The default reads, then stores if something was read (not atomic: the answer may be
    /// stale; a key filled in between holds a lease of a computation that started after the
    /// read, so skipping it is safe).
    fn swap(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<Option<Vec<u8>>> {
        let read = self.get_many(vec![key.clone()]);
        let write = self.set(key, value, ttl);
        Box::pin(async move {
            let before = read.await?.pop().flatten();
            if before.is_some() {
                write.await?;
            }
            Ok(before)
        })
    }

    /// Deletes `key`; returns whether it existed.
    fn delete(&self, key: String) -> StoreFuture<bool>;

    /// How many keys start with `prefix` (may be approximate; used for `currsize`).
    fn count_prefix(&self, prefix: String) -> StoreFuture<u64>;

    /// Called when a [`Remote`] is built on this store. A store that can tell when its server
    /// restarted with data restored from disk (which may lack writes the server acknowledged
    /// before it died, invalidations among them) writes a fresh random value at
    /// [`RestartWatch::reset_key`] before serving anything from such a server, which hides
    /// every entry written before. The Redis store does (for single nodes), comparing the
    /// server's `run_id` with the one recorded at [`RestartWatch::run_key`]. The default does
    /// nothing: a store that never loses acknowledged writes needs nothing.
    fn watch_restarts(&self, watch: RestartWatch) {
        let _ = watch;
    }

    /// Starts reporting every change of a key that starts with `prefix` (by any client of the
    /// store) to `feed`, for as long as the store lives, and returns whether it will: caches
    /// with `local = ..` keep local copies of this store's entries only if it does (see
    /// [`ChangeFeed`] for what it must report). The Redis store does, with server-assisted
    /// client-side caching (`CLIENT TRACKING ON BCAST PREFIX`) on a RESP3 connection of its own
    /// (one per cluster primary). The default reports nothing and returns `false`.
    fn track_changes(&self, prefix: String, feed: ChangeFeed) -> bool {
        let _ = (prefix, feed);
        false
    }

    /// What the store is, for logs: never a password.
    fn describe(&self) -> String;
}

/// What a store resets when its server comes back with data that may lack recent writes (see
/// [`RemoteStore::watch_restarts`]).
#[derive(Clone, Debug)]
pub struct RestartWatch {
    run_key: String,
    reset_key: String,
    ttl: Duration,
}

impl RestartWatch {
    /// Where the identity of the server run that wrote the data is recorded.
    pub fn run_key(&self) -> &str {
        &self.run_key
    }

    /// What to overwrite with a fresh random value (the remote-wide stamp).
    pub fn reset_key(&self) -> &str {
        &self.reset_key
    }

    /// How long both keys live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// The default operation timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);
/// The default bound on an entry's life, and the life of invalidation stamps.
pub const DEFAULT_MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest operation timeout or breaker cool-down a builder accepts.
const LONGEST_SETTING: Duration = Duration::from_secs(3600);
/// The longest `max_ttl` (a year).
const LONGEST_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "cachemere";

/// A remote store with the policy around it. Cheap to clone; clones share the store.
///
/// ```
/// use std::time::Duration;
/// use cachemere::remote::{Codec, Remote};
/// # use cachemere::remote::{RemoteStore, StoreFuture};
/// # struct MyStore;
/// # impl RemoteStore for MyStore {
/// #     fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
/// #         Box::pin(async move { Ok(vec![None; keys.len()]) })
/// #     }
/// #     fn set(&self, _: String, _: Vec<u8>, _: Duration) -> StoreFuture<()> { Box::pin(async { Ok(()) }) }
/// #     fn compare_and_set(&self, _: String, _: Vec<u8>, _: Vec<u8>, _: Duration) -> StoreFuture<bool> {
/// #         Box::pin(async { Ok(false) })
/// #     }
/// #     fn delete(&self, _: String) -> StoreFuture<bool> { Box::pin(async { Ok(false) }) }
/// #     fn count_prefix(&self, _: String) -> StoreFuture<u64> { Box::pin(async { Ok(0) }) }
/// #     fn describe(&self) -> String { "my store".into() }
/// # }
///
/// let remote = Remote::builder(MyStore)
///     .prefix("orders")
///     .codec(Codec::Postcard)
///     .timeout(Duration::from_millis(100))
///     .max_ttl(Duration::from_secs(3600))
///     .circuit_breaker(3, Duration::from_secs(2))
///     .build();
/// assert_eq!(remote.prefix(), "orders");
/// assert_eq!(remote.timeout(), Duration::from_millis(100));
/// // `remote.install()` would make it the default of `backend = "redis"` / `"remote"`.
/// ```
#[derive(Clone)]
pub struct Remote {
    inner: Arc<RemoteInner>,
}

struct RemoteInner {
    store: Arc<dyn RemoteStore>,
    prefix: String,
    codec: Codec,
    timeout: Duration,
    max_ttl: Duration,
    breaker: Breaker,
    description: String,
    reads: batch::Reads,
    /// Invalidations waiting to reach the store.
    pending: pending::Pending,
    /// `<prefix>:#all`: the remote-wide stamp, read with every entry.
    all_key: String,
    /// The last failure, for [`Remote::health`].
    last_error: Mutex<Option<(String, std::time::Instant)>>,
    /// When a warning about this remote was last logged (precise clock nanoseconds).
    warned_at: std::sync::atomic::AtomicU64,
    /// The near caches' view of the store's change feed, started by the first cache with
    /// `local` (`None` inside: the store reports no changes).
    tracker: OnceLock<Option<&'static near::Tracker>>,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("store", &self.inner.description)
            .field("prefix", &self.inner.prefix)
            .field("codec", &self.inner.codec)
            .field("timeout", &self.inner.timeout)
            .field("max_ttl", &self.inner.max_ttl)
            .finish()
    }
}

/// Builds a [`Remote`]: [`Remote::builder`].
#[must_use]
pub struct RemoteBuilder {
    store: Arc<dyn RemoteStore>,
    prefix: String,
    codec: Codec,
    timeout: Duration,
    max_ttl: Duration,
    failure_threshold: u32,
    cool_down: Duration,
    pending_limit: usize,
}

/// The default bound on invalidations kept for retry, per remote.
pub const DEFAULT_PENDING_LIMIT: usize = 10_000;

impl RemoteBuilder {
    /// The first segment of every key (default `"cachemere"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The value codec (default [`Codec::Postcard`]).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The time budget of one store operation (default 250 ms; at most an hour).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(LONGEST_SETTING);
        self
    }

    /// The longest an entry lives (also the TTL of an entry without `ttl`), and how long
    /// invalidation stamps live (default 24 h).
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = max_ttl.clamp(Duration::from_millis(1), LONGEST_TTL);
        self
    }

    /// Consecutive failures that open the circuit, and how long it stays open before a probe
    /// (defaults 5 and 5 s; the cool-down is at most an hour).
    pub fn circuit_breaker(mut self, failure_threshold: u32, cool_down: Duration) -> Self {
        self.failure_threshold = failure_threshold;
        self.cool_down = cool_down.min(LONGEST_SETTING);
        self
    }

    /// How many invalidations that could not reach the store are kept for retry (default
    /// [`DEFAULT_PENDING_LIMIT`]; distinct keys and tags, repeats count once). When more are
    /// waiting, they are all replaced by one remote-wide invalidation, which hides every entry
    /// of this remote (for every process) once it lands.
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.pending_limit = limit.max(1);
        self
    }

    /// The remote.
    pub fn build(self) -> Remote {
        let description = self.store.describe();
        let all_key = [self.prefix.as_str(), "#all"].join(":");
        // As `Remote::stamp_ttl`: the remote-wide stamp and the run record are stamps.
        let stamp_ttl = self.max_ttl.saturating_mul(2);
        self.store.watch_restarts(RestartWatch {
            run_key: [self.prefix.as_str(), "#run"].join(":"),
            reset_key: all_key.clone(),
            ttl: stamp_ttl,
        });
        Remote {
            inner: Arc::new(RemoteInner {
                store: self.store,
                prefix: self.prefix,
                codec: self.codec,
                timeout: self.timeout,
                max_ttl: self.max_ttl,
                breaker: Breaker::new(self.failure_threshold, self.cool_down),
                description,
                reads: batch::Reads::default(),
                pending: pending::Pending::new(self.pending_limit, all_key.clone(), stamp_ttl),
                all_key,
                last_error: Mutex::new(None),
                warned_at: std::sync::atomic::AtomicU64::new(0),
                tracker: OnceLock::new(),
            }),
        }
    }

    /// Builds the remote and makes it the process default; returns it.
    pub fn install(self) -> Remote {
        let remote = self.build();
        remote.install();
        remote
    }
}

/// Why an operation was not sent: the circuit is open after repeated failures.
#[derive(Debug, thiserror::Error)]
#[error("the circuit breaker of {0} is open after repeated failures; skipping it")]
pub struct CircuitOpen(String);

/// Why no remote was available.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteUnavailable {
    /// No remote was installed and none could be built from the environment.
    #[error("no remote cache store is configured: {0}")]
    NotConfigured(String),
    /// cachemere's background runtime could not be started.
    #[error("the cachemere-remote runtime could not start: {0}")]
    Runtime(String),
    /// The operation's task ended without an answer.
    #[error("the remote operation was lost: {0}")]
    Lost(String),
}

fn unavailable(error: RemoteUnavailable) -> BackendError {
    BackendError::Unavailable(Box::new(error))
}

/// Grace beyond the operation timeout for a blocked caller (the task itself enforces it).
const BLOCKING_GRACE: Duration = Duration::from_millis(50);

fn runtime() -> Result<&'static tokio::runtime::Runtime, BackendError> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("cachemere-remote")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| unavailable(RemoteUnavailable::Runtime(e.clone())))
}

/// A handle to cachemere's background runtime (stores connect there for operations polled
/// outside any tokio runtime, and lease renewals run).
pub(crate) fn background_runtime() -> Result<tokio::runtime::Handle, BackendError> {
    Ok(runtime()?.handle().clone())
}

impl Remote {
    /// Starts building a remote around `store`.
    pub fn builder(store: impl RemoteStore) -> RemoteBuilder {
        RemoteBuilder {
            store: Arc::new(store),
            prefix: DEFAULT_PREFIX.to_owned(),
            codec: Codec::default(),
            timeout: DEFAULT_TIMEOUT,
            max_ttl: DEFAULT_MAX_TTL,
            failure_threshold: 5,
            cool_down: Duration::from_secs(5),
            pending_limit: DEFAULT_PENDING_LIMIT,
        }
    }

    /// Makes this remote the process default (replacing any): caches with
    /// `backend = "redis"` or `"remote"` use it from their next call, and
    /// [`invalidate_tag`](crate::invalidate_tag) reaches it.
    pub fn install(&self) {
        *DEFAULT.write().unwrap_or_else(PoisonError::into_inner) = Some(self.clone());
        near::installed();
        self.mark_in_use();
    }

    /// Waits (blocking, at most `timeout`) until this process's near caches (`local`) have
    /// seen every change made to the store before this call, by any process or client (the
    /// change feed confirmed it); returns whether they have. Without a near cache on this
    /// remote there is nothing to wait for: `true` at once. After writing to the store outside
    /// cachemere (`redis-cli`, another service), this makes the next call here see the write.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # let remote = cachemere::remote::Remote::builder(cachemere_doc_store()).build();
    /// # fn cachemere_doc_store() -> impl cachemere::remote::RemoteStore { DocStore }
    /// # struct DocStore;
    /// # impl cachemere::remote::RemoteStore for DocStore {
    /// #     fn get_many(&self, keys: Vec<String>) -> cachemere::remote::StoreFuture<Vec<Option<Vec<u8>>>> { Box::pin(async move { Ok(vec![None; keys.len()]) }) }
    /// #     fn set(&self, _: String, _: Vec<u8>, _: Duration) -> cachemere::remote::StoreFuture<()> { Box::pin(async { Ok(()) }) }
    /// #     fn compare_and_set(&self, _: String, _: Vec<u8>, _: Vec<u8>, _: Duration) -> cachemere::remote::StoreFuture<bool> { Box::pin(async { Ok(false) }) }
    /// #     fn delete(&self, _: String) -> cachemere::remote::StoreFuture<bool> { Box::pin(async { Ok(false) }) }
    /// #     fn count_prefix(&self, _: String) -> cachemere::remote::StoreFuture<u64> { Box::pin(async { Ok(0) }) }
    /// #     fn describe(&self) -> String { "doc store".into() }
    /// # }
    /// assert!(remote.catch_up(Duration::from_secs(1)), "no near cache: nothing to wait for");
    /// ```
    pub fn catch_up(&self, timeout: Duration) -> bool {
        match self.inner.tracker.get().copied().flatten() {
            Some(tracker) => tracker.catch_up(timeout),
            None => true,
        }
    }

    /// The tracker of this remote's change feed, started on first use; `None` if its store
    /// reports no changes (see [`RemoteStore::track_changes`]).
    pub(crate) fn tracker(&self) -> Option<&'static near::Tracker> {
        *self.inner.tracker.get_or_init(|| {
            let tracker = near::Tracker::leak();
            let prefix = [self.inner.prefix.as_str(), ""].join(":");
            let tracked = self
                .inner
                .store
                .track_changes(prefix, ChangeFeed::new(tracker));
            if !tracked {
                tracing::info!(
                    store = %self.inner.description,
                    "the remote cache store reports no changes: `local` copies are not kept"
                );
            }
            tracked.then_some(tracker)
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The value codec.
    pub fn codec(&self) -> Codec {
        self.inner.codec
    }

    /// The operation timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// The longest life of an entry and of an invalidation stamp.
    pub fn max_ttl(&self) -> Duration {
        self.inner.max_ttl
    }

    /// The store itself, for direct use (its operations run on the caller's executor, without
    /// this remote's timeout or breaker).
    pub fn store(&self) -> Arc<dyn RemoteStore> {
        Arc::clone(&self.inner.store)
    }

    /// What the store is (no secrets).
    pub fn describe(&self) -> &str {
        &self.inner.description
    }

    /// An identity of the shared store (equal for clones).
    pub(crate) fn identity(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    fn mark_in_use(&self) {
        let mut in_use = IN_USE.lock().unwrap_or_else(PoisonError::into_inner);
        // Weak: a remote dropped by everyone leaves the list (and is not kept alive by it).
        in_use.retain(|remote| remote.strong_count() > 0);
        if !in_use
            .iter()
            .any(|remote| std::ptr::eq(remote.as_ptr(), Arc::as_ptr(&self.inner)))
        {
            in_use.push(Arc::downgrade(&self.inner));
        }
    }

    pub(crate) fn tag_key(&self, tag: &str) -> String {
        // `join`, not `format!`: this runs on every hit of a tagged cache.
        [self.inner.prefix.as_str(), "#tag", &key::tag_segment(tag)].join(":")
    }

    /// Runs `op` against the store under the timeout and, with `breaker`, the circuit breaker.
    async fn guarded<T>(
        inner: Arc<RemoteInner>,
        op: StoreFuture<T>,
        breaker: bool,
    ) -> Result<T, BackendError> {
        let ticket = if breaker {
            match inner.breaker.ticket() {
                Some(ticket) => Some(ticket),
                None => return Err(unavailable_circuit(&inner)),
            }
        } else {
            None
        };
        let outcome = match tokio::time::timeout(inner.timeout, Unwinding(op)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(BackendError::Timeout(inner.timeout)),
        };
        if let Err(error) = &outcome {
            inner.note_error(error);
        }
        if let Some(ticket) = ticket
            && ticket.record(outcome.is_ok())
        {
            tracing::warn!(
                store = %inner.description,
                cool_down = ?inner.breaker.cool_down(),
                "remote cache store failing; skipping it for the cool-down, then probing"
            );
        }
        outcome
    }

    /// Runs an operation and blocks this thread for its answer (at most the timeout).
    pub(crate) fn blocking<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        self.blocking_with(true, op)
    }

    /// As [`blocking`](Self::blocking), outside the circuit breaker: for reads of statistics,
    /// whose slowness must not switch caching off.
    pub(crate) fn blocking_unguarded<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        self.blocking_with(false, op)
    }

    fn blocking_with<T, F>(&self, breaker: bool, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        let runtime = runtime()?;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let inner = Arc::clone(&self.inner);
        runtime.spawn(async move {
            let future = start(op, &*inner.store);
            let _ = sender.send(Self::guarded(inner, future, breaker).await);
        });
        receiver
            .recv_timeout(self.inner.timeout.saturating_add(BLOCKING_GRACE))
            .unwrap_or(Err(BackendError::Timeout(self.inner.timeout)))
    }

    /// Runs an operation and awaits its answer without blocking the caller's executor: on the
    /// caller's own runtime where it can (see [`caller`]), else on cachemere's.
    pub(crate) async fn call<T, F>(&self, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        self.call_with(true, op).await
    }

    /// Runs `op` on cachemere's runtime without waiting for it (its failure is noted in the
    /// remote's health like any other).
    pub(crate) fn detach<T, F>(&self, op: F)
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        let remote = self.clone();
        if let Ok(runtime) = runtime() {
            drop(runtime.spawn(async move {
                let _ = remote.call(op).await;
            }));
        }
    }

    /// As [`call`](Self::call), with or without the circuit breaker.
    async fn call_with<T, F>(&self, breaker: bool, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        if caller::runs_here().await {
            self.here_with(breaker, op).await
        } else {
            self.elsewhere(breaker, op).await
        }
    }

    /// Runs an operation on the caller's task.
    async fn here<T: 'static, F>(&self, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T>,
    {
        self.here_with(true, op).await
    }

    async fn here_with<T: 'static, F>(&self, breaker: bool, op: F) -> Result<T, BackendError>
    where
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T>,
    {
        let future = start(op, &*self.inner.store);
        Self::guarded(Arc::clone(&self.inner), future, breaker).await
    }

    /// Runs an operation on cachemere's background runtime and awaits it from any executor.
    async fn elsewhere<T, F>(&self, breaker: bool, op: F) -> Result<T, BackendError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn RemoteStore) -> StoreFuture<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let task = runtime()?.spawn(async move {
            let future = start(op, &*inner.store);
            Self::guarded(inner, future, breaker).await
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(join_error) => Err(unavailable(RemoteUnavailable::Lost(join_error.to_string()))),
        }
    }

    /// Reads `keys`, merged with the reads of this remote that run at the same time (see
    /// [`batch`]) where the operation runs on the caller's runtime.
    pub(crate) async fn read(&self, keys: &[String]) -> Result<batch::Values, BackendError> {
        let alone = |keys: &[String]| {
            let keys = keys.to_vec();
            move |store: &dyn RemoteStore| store.get_many(keys)
        };
        if !caller::runs_here().await {
            return self.elsewhere(true, alone(keys)).await;
        }
        match self.inner.reads.arrive(keys) {
            batch::Arrival::Alone(_in_flight) => self.here(alone(keys)).await,
            batch::Arrival::Open(opener) => {
                // Let the reads polled meanwhile join before the batch leaves.
                tokio::task::yield_now().await;
                let Some(batch) = opener.close() else {
                    return self.here(alone(keys)).await;
                };
                let (all_keys, answer) = batch.into_keys();
                let outcome = self.here(move |store| store.get_many(all_keys)).await;
                answer.answer(outcome)
            }
            // No timer of its own (one per joiner cost more than the rest of a hit): the
            // opener's read is under the timeout, and a dropped opener closes the channel.
            batch::Arrival::Joined(answer) => match answer.await {
                Ok(outcome) => outcome,
                Err(_closed) => self.here(alone(keys)).await,
            },
        }
    }

    /// How long a stamp key lives: beyond every entry written under it (memory bound only;
    /// correctness does not depend on it, as entries are never written under an absent stamp).
    pub(crate) fn stamp_ttl(&self) -> Duration {
        self.inner.max_ttl.saturating_mul(2)
    }

    /// `<prefix>:#all`: the remote-wide stamp, read with every entry.
    pub(crate) fn all_key(&self) -> &str {
        &self.inner.all_key
    }

    /// Whether an invalidation of one of `keys` is still waiting to reach the store: what they
    /// would read must not be served, nor written.
    ///
    /// Every remote of this process on the same store and prefix is asked, so an invalidation
    /// queued by a remote that has since been replaced (`install`) still hides what it hides.
    #[inline]
    pub(crate) fn hides(&self, keys: &[String]) -> bool {
        if !pending::any() {
            return false;
        }
        self.inner.pending.hides(keys)
            || remotes_in_use().iter().any(|other| {
                !Arc::ptr_eq(&other.inner, &self.inner)
                    && other.inner.prefix == self.inner.prefix
                    && other.inner.description == self.inner.description
                    && other.inner.pending.hides(keys)
            })
    }

    /// Hides every entry tagged `tag` in this remote, for every process (blocking, for at most
    /// the timeout). If the store cannot be reached, the invalidation is kept and retried:
    /// [`Invalidation::Queued`].
    pub fn invalidate_tag(&self, tag: &str) -> Invalidation {
        note_invalidation();
        let ttl = self.stamp_ttl();
        let outcome = self.overwrite(self.tag_key(tag), Overwrite::Stamp, ttl);
        note_invalidation();
        outcome
    }

    /// The async form of [`invalidate_tag`](Self::invalidate_tag).
    pub async fn invalidate_tag_async(&self, tag: &str) -> Invalidation {
        note_invalidation();
        let ttl = self.stamp_ttl();
        let outcome = self
            .overwrite_async(self.tag_key(tag), Overwrite::Stamp, ttl)
            .await;
        note_invalidation();
        outcome
    }

    /// Hides every entry of every cache of this remote (its prefix), for every process, as a
    /// `cache_clear()` of each would; blocking, for at most the timeout.
    pub fn invalidate_all(&self) -> Invalidation {
        note_invalidation();
        let outcome = self.overwrite(
            self.inner.all_key.clone(),
            Overwrite::Stamp,
            self.stamp_ttl(),
        );
        note_invalidation();
        outcome
    }

    /// The async form of [`invalidate_all`](Self::invalidate_all).
    pub async fn invalidate_all_async(&self) -> Invalidation {
        note_invalidation();
        let outcome = self
            .overwrite_async(
                self.inner.all_key.clone(),
                Overwrite::Stamp,
                self.stamp_ttl(),
            )
            .await;
        note_invalidation();
        outcome
    }

    /// Writes one invalidation (a fresh stamp or tombstone at `key`) now, or keeps it for retry
    /// when the store cannot take it. Outside the breaker: an invalidation is tried whenever
    /// the circuit is not open, and is queued at once while it is.
    pub(crate) fn overwrite(
        &self,
        key: String,
        overwrite: Overwrite,
        ttl: Duration,
    ) -> Invalidation {
        if self.inner.breaker.is_open() {
            return self.keep(key, overwrite, ttl);
        }
        let mark = self.inner.pending.mark();
        let op = overwrite_op(key.clone(), overwrite, ttl);
        let written = self.blocking_with(false, op);
        self.overwritten(key, overwrite, ttl, mark, written)
    }

    /// The async form of [`overwrite`](Self::overwrite).
    pub(crate) async fn overwrite_async(
        &self,
        key: String,
        overwrite: Overwrite,
        ttl: Duration,
    ) -> Invalidation {
        if self.inner.breaker.is_open() {
            return self.keep(key, overwrite, ttl);
        }
        let mark = self.inner.pending.mark();
        let op = overwrite_op(key.clone(), overwrite, ttl);
        let written = self.call_with(false, op).await;
        self.overwritten(key, overwrite, ttl, mark, written)
    }

    fn overwritten(
        &self,
        key: String,
        overwrite: Overwrite,
        ttl: Duration,
        mark: u64,
        written: Result<Option<Vec<u8>>, BackendError>,
    ) -> Invalidation {
        match written {
            Ok(replaced) => {
                self.inner.pending.landed(&key, mark);
                // After the write: a copy read before it records the older count.
                near::changed(key.as_bytes());
                match overwrite {
                    Overwrite::Stamp => Invalidation::Applied,
                    Overwrite::Tombstone if replaced.as_deref().is_some_and(codec::is_value) => {
                        Invalidation::Removed
                    }
                    Overwrite::Tombstone => Invalidation::Absent,
                }
            }
            Err(error) => {
                if self.inner.may_warn() {
                    tracing::warn!(
                        store = %self.inner.description,
                        error = crate::redact::error(&error),
                        "an invalidation did not reach the remote cache store: kept and retried; \
                         this process does not serve what it hides meanwhile"
                    );
                }
                self.keep(key, overwrite, ttl)
            }
        }
    }

    /// Keeps an invalidation for the background retry.
    fn keep(&self, key: String, overwrite: Overwrite, ttl: Duration) -> Invalidation {
        // Hidden from now on, including copies read before (see `hides`).
        near::changed(key.as_bytes());
        match self.inner.pending.push(key, overwrite, ttl) {
            pending::Pushed::Kept => {}
            pending::Pushed::StartDraining => start_draining(&self.inner),
            pending::Pushed::Collapsed => tracing::warn!(
                store = %self.inner.description,
                "too many invalidations waiting for the remote cache store: replaced by one \
                 that hides every entry of this remote once it lands"
            ),
        }
        Invalidation::Queued
    }

    /// Invalidations of this remote waiting to land.
    pub fn pending_invalidations(&self) -> usize {
        self.inner.pending.len()
    }
}

/// The store operation that writes an invalidation; answers what it replaced (tombstones).
fn overwrite_op(
    key: String,
    overwrite: Overwrite,
    ttl: Duration,
) -> impl FnOnce(&dyn RemoteStore) -> StoreFuture<Option<Vec<u8>>> + Send + 'static {
    move |store: &dyn RemoteStore| match overwrite {
        Overwrite::Stamp => {
            let set = store.set(key, fresh_stamp(), ttl);
            Box::pin(async move { set.await.map(|()| None) })
        }
        Overwrite::Tombstone => store.swap(key, codec::marker(codec::Kind::Tombstone), ttl),
    }
}

/// The first retry of a pending invalidation comes this soon; each failed round doubles the
/// wait, up to [`RETRY_LAST`].
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_LAST: Duration = Duration::from_millis(500);
/// Pending invalidations written per round.
const DRAIN_BATCH: usize = 64;

/// Starts the background task that writes `inner`'s pending invalidations until none is left.
fn start_draining(inner: &Arc<RemoteInner>) {
    let inner = Arc::clone(inner);
    match runtime() {
        Ok(runtime) => {
            runtime.spawn(drain(inner));
        }
        // Nothing can retry them: they stay pending, so this process keeps not serving what
        // they hide.
        Err(error) => tracing::error!(error = %error, "invalidations cannot be retried"),
    }
}

/// Marks the drain as stopped if its task ends without finishing (its runtime shut down), so
/// that the next invalidation queued starts another.
struct Draining(Arc<RemoteInner>);

impl Drop for Draining {
    fn drop(&mut self) {
        self.0.pending.abandon_draining();
    }
}

async fn drain(inner: Arc<RemoteInner>) {
    let _draining = Draining(Arc::clone(&inner));
    let mut wait = RETRY_FIRST;
    loop {
        let round = inner.pending.oldest(DRAIN_BATCH);
        if round.is_empty() {
            if inner.pending.finish_draining() {
                tracing::info!(
                    store = %inner.description,
                    "pending invalidations delivered to the remote cache store"
                );
                return;
            }
            continue;
        }
        let mut failed = false;
        for item in round {
            let mark = inner.pending.mark();
            let op = start(
                overwrite_op(item.key.clone(), item.overwrite, item.ttl),
                &*inner.store,
            );
            if Remote::guarded(Arc::clone(&inner), op, false).await.is_ok() {
                inner.pending.landed(&item.key, mark);
                near::changed(item.key.as_bytes());
            } else {
                failed = true;
                break;
            }
        }
        if failed {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(RETRY_LAST);
        } else {
            wait = RETRY_FIRST;
            // The store answers: no need to wait out the breaker's cool-down for caching.
            inner.breaker.close();
        }
    }
}

impl RemoteInner {
    fn note_error(&self, error: &BackendError) {
        crate::observe::record_remote_error(&self.description);
        let text = crate::redact::error(error);
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((text, std::time::Instant::now()));
    }

    /// Whether a warning about this remote may be logged now (at most one per 10 s).
    fn may_warn(&self) -> bool {
        health::may_log(&self.warned_at)
    }
}

/// Starts a store operation; a store that panics doing so gives an operation that fails.
fn start<T, F>(op: F, store: &dyn RemoteStore) -> StoreFuture<T>
where
    T: 'static,
    F: FnOnce(&dyn RemoteStore) -> StoreFuture<T>,
{
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| op(store)))
        .unwrap_or_else(|_| Box::pin(async { Err(store_panicked()) }))
}

fn store_panicked() -> BackendError {
    BackendError::Other("the remote store panicked".into())
}

/// A store operation whose panic is an error: a store's bug never fails a call.
struct Unwinding<T>(StoreFuture<T>);

impl<T> Future for Unwinding<T> {
    type Output = Result<T, BackendError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let future = &mut self.0;
        // Not polled again after a panic: the error is its output.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(cx)))
            .unwrap_or_else(|_| std::task::Poll::Ready(Err(store_panicked())))
    }
}

fn unavailable_circuit(inner: &RemoteInner) -> BackendError {
    BackendError::Unavailable(Box::new(CircuitOpen(inner.description.clone())))
}

/// A value for an invalidation key that no earlier invalidation wrote: 128 random bits, in hex.
pub(crate) fn fresh_stamp() -> Vec<u8> {
    let nonce = codec::fresh_nonce();
    let mut out = String::with_capacity(32);
    for byte in nonce {
        use std::fmt::Write as _;
        let _ = write!(out, "{byte:02x}");
    }
    out.into_bytes()
}

static DEFAULT: RwLock<Option<Remote>> = RwLock::new(None);
static IN_USE: Mutex<Vec<std::sync::Weak<RemoteInner>>> = Mutex::new(Vec::new());

/// The default remote: the installed one, or (with the `redis` feature) one built from
/// `CACHEMERE_REDIS_URL` on first use. A failure to build it is logged once.
pub fn default_remote() -> Result<Remote, BackendError> {
    if let Some(remote) = DEFAULT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
    {
        return Ok(remote.clone());
    }
    static FROM_ENV: OnceLock<Result<Remote, String>> = OnceLock::new();
    let built = FROM_ENV.get_or_init(|| {
        let built = from_environment();
        match &built {
            Ok(remote) => {
                tracing::info!(
                    store = remote.describe(),
                    "remote cache store configured from the environment"
                );
                remote.mark_in_use();
            }
            Err(message) => tracing::error!(
                problem = %message,
                "no remote cache store: functions with a remote backend run uncached"
            ),
        }
        built
    });
    match built {
        Ok(remote) => Ok(remote.clone()),
        Err(message) => Err(unavailable(RemoteUnavailable::NotConfigured(
            message.clone(),
        ))),
    }
}

#[cfg(feature = "redis")]
fn from_environment() -> Result<Remote, String> {
    crate::redis::RedisConfig::from_env()
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "redis"))]
fn from_environment() -> Result<Remote, String> {
    Err("install one with `Remote::builder(store).install()`".to_owned())
}

/// Tag and remote-wide invalidations made in this process (a cache counts its own): a
/// single-flight leader that read the store before one does not hand its value to callers that
/// joined after it.
static INVALIDATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub(crate) fn invalidation_epoch() -> u64 {
    INVALIDATIONS.load(std::sync::atomic::Ordering::SeqCst)
}

pub(crate) fn note_invalidation() {
    INVALIDATIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Invalidates `tag` in every remote installed or used in this process (blocking; each for at
/// most its timeout); queued where a remote cannot be reached.
pub(crate) fn invalidate_tag_everywhere(tag: &str) -> Invalidation {
    note_invalidation();
    let mut outcome = Invalidation::Applied;
    for remote in remotes_in_use() {
        outcome = outcome.and(remote.invalidate_tag(tag));
    }
    // Again once written: a leader that read the store in between does not hand its value on.
    note_invalidation();
    outcome
}

/// The async form of [`invalidate_tag_everywhere`].
pub(crate) async fn invalidate_tag_everywhere_async(tag: &str) -> Invalidation {
    note_invalidation();
    let mut outcome = Invalidation::Applied;
    for remote in remotes_in_use() {
        outcome = outcome.and(remote.invalidate_tag_async(tag).await);
    }
    note_invalidation();
    outcome
}

pub(crate) fn register_in_use(remote: &Remote) {
    remote.mark_in_use();
}

pub(crate) fn remotes_in_use() -> Vec<Remote> {
    IN_USE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .map(|inner| Remote { inner })
        .collect()
}
