//! Statistics: [`CacheInfo`] and the counters behind it.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// A snapshot of one cache's statistics, as returned by the generated `cache_info()` helpers.
///
/// `hits + misses` is the number of calls. A call is a *hit* when it returns without running the
/// function: found in the store, or handed the value of a concurrent caller's computation (single
/// flight). A call is a *miss* when it runs the function.
///
/// `Display` prints Python's `functools` form first, then the extra fields (and, for a remote
/// cache in trouble, `pending_invalidations=N` and `circuit=open` after the parenthesis):
///
/// ```
/// let mut info = cachemere::CacheInfo::default();
/// (info.hits, info.misses, info.maxsize, info.currsize) = (142, 23, 256, 23);
/// assert_eq!(
///     info.to_string(),
///     "CacheInfo(hits=142, misses=23, maxsize=256, currsize=23, evictions=0, errors=0, compute_time=0ns)"
/// );
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheInfo {
    /// Calls answered without running the function.
    pub hits: u64,
    /// Calls that ran the function.
    pub misses: u64,
    /// The entry bound of the cache.
    pub maxsize: u64,
    /// Entries held now (may include expired entries not yet overwritten or evicted).
    pub currsize: u64,
    /// Entries removed to stay within `maxsize`.
    pub evictions: u64,
    /// Backend operations that failed; each failed lookup was treated as a miss.
    pub errors: u64,
    /// Total time spent running the function on misses.
    pub compute_time: Duration,
    /// (Remote caches) invalidations of this cache's remote waiting to reach it; this process
    /// does not serve what they hide meanwhile. Always 0 in memory.
    pub pending_invalidations: u64,
    /// (Remote caches) whether the remote's circuit breaker is open (its store is skipped).
    pub circuit_open: bool,
    /// Calls answered with a value past its TTL: by `stale_while_revalidate`, or by
    /// `stale_if_error` standing in for a recomputation that failed, timed out or is
    /// throttled. Counted in `hits` too, except when the call's own recomputation failed (it
    /// ran the function: a miss).
    pub stale_served: u64,
    /// Background refreshes started (`stale_while_revalidate`, or a `timeout` finishing in the
    /// background).
    pub refreshes_started: u64,
    /// Background refreshes whose value was kept.
    pub refreshes_succeeded: u64,
    /// Background refreshes that failed (`Err`, `None`, a panic): the stale value stays.
    pub refreshes_failed: u64,
    /// Recomputations that failed (or timed out) and were answered with a stale value
    /// (`stale_if_error`).
    pub fail_safe_activations: u64,
    /// (Near caches, `local = ..`) the hits answered from this process's local copy, without a
    /// round trip to the store; counted in `hits` too (the rest of `hits` came from the store).
    pub local_hits: u64,
}

impl CacheInfo {
    /// `hits / (hits + misses)`, or `None` before the first call: the figure to watch (below
    /// about 0.8, look at the key's arguments and the TTL).
    ///
    /// ```
    /// let mut info = cachemere::CacheInfo::default();
    /// assert_eq!(info.hit_ratio(), None);
    /// (info.hits, info.misses) = (3, 1);
    /// assert_eq!(info.hit_ratio(), Some(0.75));
    /// ```
    pub fn hit_ratio(&self) -> Option<f64> {
        let calls = self.hits.saturating_add(self.misses);
        (calls > 0).then(|| self.hits as f64 / calls as f64)
    }
}

/// With the `serde` feature: the fields, `compute_time` as `compute_time_secs` (a float), and
/// `hit_ratio` (`null` before the first call).
///
/// ```
/// # #[cfg(feature = "serde")] {
/// let mut info = cachemere::CacheInfo::default();
/// (info.hits, info.misses, info.maxsize, info.currsize) = (3, 1, 100, 1);
/// let json = serde_json::to_value(info).unwrap();
/// assert_eq!(json["hits"], 3);
/// assert_eq!(json["hit_ratio"], 0.75);
/// assert_eq!(json["compute_time_secs"], 0.0);
/// # }
/// ```
#[cfg(feature = "serde")]
impl serde::Serialize for CacheInfo {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("CacheInfo", 16)?;
        fields.serialize_field("hits", &self.hits)?;
        fields.serialize_field("misses", &self.misses)?;
        fields.serialize_field("hit_ratio", &self.hit_ratio())?;
        fields.serialize_field("maxsize", &self.maxsize)?;
        fields.serialize_field("currsize", &self.currsize)?;
        fields.serialize_field("evictions", &self.evictions)?;
        fields.serialize_field("errors", &self.errors)?;
        fields.serialize_field("compute_time_secs", &self.compute_time.as_secs_f64())?;
        fields.serialize_field("pending_invalidations", &self.pending_invalidations)?;
        fields.serialize_field("circuit_open", &self.circuit_open)?;
        fields.serialize_field("stale_served", &self.stale_served)?;
        fields.serialize_field("refreshes_started", &self.refreshes_started)?;
        fields.serialize_field("refreshes_succeeded", &self.refreshes_succeeded)?;
        fields.serialize_field("refreshes_failed", &self.refreshes_failed)?;
        fields.serialize_field("fail_safe_activations", &self.fail_safe_activations)?;
        fields.serialize_field("local_hits", &self.local_hits)?;
        fields.end()
    }
}

impl fmt::Display for CacheInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CacheInfo(hits={}, misses={}, maxsize={}, currsize={}, evictions={}, errors={}, compute_time={:?})",
            self.hits,
            self.misses,
            self.maxsize,
            self.currsize,
            self.evictions,
            self.errors,
            self.compute_time
        )?;
        // Only when a freshness policy acted, or something is wrong, so the usual line stays
        // Python's.
        if self.stale_served > 0 || self.refreshes_started > 0 || self.fail_safe_activations > 0 {
            write!(
                f,
                " stale_served={} refreshes=started:{},succeeded:{},failed:{} fail_safe={}",
                self.stale_served,
                self.refreshes_started,
                self.refreshes_succeeded,
                self.refreshes_failed,
                self.fail_safe_activations
            )?;
        }
        if self.local_hits > 0 {
            write!(f, " local_hits={}", self.local_hits)?;
        }
        if self.pending_invalidations > 0 {
            write!(f, " pending_invalidations={}", self.pending_invalidations)?;
        }
        if self.circuit_open {
            f.write_str(" circuit=open")?;
        }
        Ok(())
    }
}

/// A hit counter with one cache-line-padded stripe per thread, so hits on many cores neither
/// share a cache line nor need a locked read-modify-write.
///
/// A thread owns a stripe index while it lives (indices are recycled when threads exit) and is
/// the only writer of that stripe, so it increments with a plain load and store. Threads beyond
/// the number of stripes use `fetch_add` on a few shared overflow stripes. Sums are exact.
pub(crate) struct StripedCounter {
    stripes: Box<[CachePadded<AtomicU64>]>,
    overflow: [CachePadded<AtomicU64>; OVERFLOW_STRIPES],
}

/// Stripes shared, with `fetch_add`, by threads that have no stripe of their own.
const OVERFLOW_STRIPES: usize = 4;

/// How many threads get a stripe of their own in every counter (and a hit front, see `front`).
pub(crate) fn stripe_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        (parallelism * 2).clamp(4, 64)
    })
}

/// The stripe index a thread owns, given back when the thread exits.
struct ThreadStripe(usize);

static FREE_STRIPES: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

impl ThreadStripe {
    fn acquire() -> Self {
        let recycled = FREE_STRIPES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        ThreadStripe(recycled.unwrap_or_else(|| NEXT_STRIPE.fetch_add(1, Ordering::Relaxed)))
    }
}

impl Drop for ThreadStripe {
    fn drop(&mut self) {
        // The mutex orders this thread's last stripe writes before the next owner's first.
        FREE_STRIPES
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.0);
    }
}

thread_local! {
    static THREAD_STRIPE: ThreadStripe = ThreadStripe::acquire();
}

/// The stripe index this thread owns: no other live thread has it, and the next owner comes
/// after this thread let it go (through `FREE_STRIPES`'s mutex). `None` once this thread's
/// thread-locals are being destroyed.
#[inline]
pub(crate) fn thread_stripe() -> Option<usize> {
    THREAD_STRIPE.try_with(|stripe| stripe.0).ok()
}

impl StripedCounter {
    pub(crate) fn new() -> Self {
        StripedCounter {
            stripes: (0..stripe_count())
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
            overflow: std::array::from_fn(|_| CachePadded::new(AtomicU64::new(0))),
        }
    }

    #[inline]
    pub(crate) fn increment(&self) {
        // During thread teardown the stripe may be gone: count through the shared counter.
        let index = thread_stripe().unwrap_or(usize::MAX);
        match self.stripes.get(index) {
            Some(stripe) => {
                // Only this thread writes this stripe: no read-modify-write needed.
                stripe.store(stripe.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            None => {
                self.overflow[index % OVERFLOW_STRIPES].fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Everything counted so far. Resetting is done by the reader keeping a baseline, so that
    /// each stripe keeps a single writer.
    pub(crate) fn sum(&self) -> u64 {
        let striped: u64 = self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum();
        let overflow: u64 = self
            .overflow
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .sum();
        striped + overflow
    }
}

/// The per-cache counters that the cache layer (not the backend) keeps.
///
/// Every counter only grows, so that metrics exported from them are monotonic; `cache_clear`
/// keeps a baseline of each instead of zeroing it, and `cache_info()` shows what came since.
pub(crate) struct Counters {
    pub(crate) hits: StripedCounter,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) compute_nanos: AtomicU64,
    /// What the freshness policies did (see [`Event`]).
    events: [AtomicU64; EVENTS],
    /// The counts at the last `cache_clear`.
    at_clear: Baseline,
    /// When an error of this cache was last logged (precise clock nanoseconds; 0 never).
    last_error_log_ns: AtomicU64,
}

#[derive(Default)]
struct Baseline {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    compute_nanos: AtomicU64,
    events: [AtomicU64; EVENTS],
}

/// What a freshness policy did, counted per cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    StaleServed,
    RefreshStarted,
    RefreshSucceeded,
    RefreshFailed,
    FailSafe,
}

const EVENTS: usize = 5;

/// Where a snapshot of the statistics counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Since {
    /// The last `cache_clear` (`cache_info()`).
    Clear,
    /// The cache's creation (metrics, which must never go down).
    Start,
}

/// What the counters hold, as of a [`Since`].
pub(crate) struct Tally {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) errors: u64,
    pub(crate) compute_time: Duration,
    pub(crate) events: [u64; EVENTS],
}

impl Tally {
    /// Copies the freshness counts into `info`.
    pub(crate) fn events_into(&self, info: &mut CacheInfo) {
        let [stale, started, succeeded, failed, fail_safe] = self.events;
        info.stale_served = stale;
        info.refreshes_started = started;
        info.refreshes_succeeded = succeeded;
        info.refreshes_failed = failed;
        info.fail_safe_activations = fail_safe;
    }
}

/// How long error logs of one cache stay quiet after one is written.
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            hits: StripedCounter::new(),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            compute_nanos: AtomicU64::new(0),
            events: Default::default(),
            at_clear: Baseline::default(),
            last_error_log_ns: AtomicU64::new(0),
        }
    }

    /// The counts since the cache was created or last cleared.
    pub(crate) fn tally(&self, since: Since) -> Tally {
        let count = |counter: &AtomicU64, baseline: &AtomicU64| {
            let total = counter.load(Ordering::Relaxed);
            match since {
                Since::Start => total,
                Since::Clear => total.saturating_sub(baseline.load(Ordering::Relaxed)),
            }
        };
        let hits = match since {
            Since::Start => self.hits.sum(),
            Since::Clear => self
                .hits
                .sum()
                .saturating_sub(self.at_clear.hits.load(Ordering::Relaxed)),
        };
        Tally {
            hits,
            misses: count(&self.misses, &self.at_clear.misses),
            errors: count(&self.errors, &self.at_clear.errors),
            compute_time: Duration::from_nanos(count(
                &self.compute_nanos,
                &self.at_clear.compute_nanos,
            )),
            events: std::array::from_fn(|i| count(&self.events[i], &self.at_clear.events[i])),
        }
    }

    /// Counts what a freshness policy did.
    pub(crate) fn note(&self, event: Event) {
        self.events[event as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Starts the statistics over (`cache_clear`).
    pub(crate) fn reset(&self) {
        let keep = |baseline: &AtomicU64, counter: &AtomicU64| {
            baseline.store(counter.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        self.at_clear.hits.store(self.hits.sum(), Ordering::Relaxed);
        keep(&self.at_clear.misses, &self.misses);
        keep(&self.at_clear.errors, &self.errors);
        keep(&self.at_clear.compute_nanos, &self.compute_nanos);
        for (baseline, counter) in self.at_clear.events.iter().zip(&self.events) {
            keep(baseline, counter);
        }
    }

    /// Counts a backend error and logs it, at most once per [`ERROR_LOG_INTERVAL`] per cache.
    pub(crate) fn record_error(
        &self,
        cache: &'static str,
        operation: &'static str,
        error: &dyn std::error::Error,
    ) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        crate::observe::record_error(cache, operation);
        let now = crate::clock::precise_ns().max(1);
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
                cache,
                operation,
                error = crate::redact::error(error),
                errors = self.errors.load(Ordering::Relaxed),
                "cache backend failed; the function runs uncached (further errors of this cache are counted, and logged at most every 10 s)"
            );
        }
    }

    pub(crate) fn add_compute_time(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.compute_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}
