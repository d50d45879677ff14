//! Statistics: [`CacheInfo`] and the counters behind it.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// A snapshot of one cache's statistics, as returned by the generated `cache_info()` helpers.
///
/// `hits + misses` is the number of calls. A call is a *hit* when it returns without running the
/// function: found in the store, or handed the value of a concurrent caller's computation (single
/// flight). A call is a *miss* when it runs the function.
///
/// `Display` prints Python's `functools` form first, then the extra fields:
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
        )
    }
}

/// A counter split into cache-line-padded stripes, one chosen per thread, so that hits on many
/// cores do not all increment one shared atomic.
pub(crate) struct StripedCounter {
    stripes: Box<[CachePadded<AtomicU64>]>,
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static THREAD_INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn thread_index() -> usize {
    THREAD_INDEX.with(|index| {
        let mut value = index.get();
        if value == usize::MAX {
            value = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            index.set(value);
        }
        value
    })
}

impl StripedCounter {
    pub(crate) fn new() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        let stripes = (parallelism * 2).next_power_of_two().clamp(4, 64);
        StripedCounter {
            stripes: (0..stripes)
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    #[inline]
    pub(crate) fn increment(&self) {
        let stripe = &self.stripes[thread_index() & (self.stripes.len() - 1)];
        stripe.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sum(&self) -> u64 {
        self.stripes.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    pub(crate) fn reset(&self) {
        for stripe in self.stripes.iter() {
            stripe.store(0, Ordering::Relaxed);
        }
    }
}

/// The per-cache counters that the cache layer (not the backend) keeps.
pub(crate) struct Counters {
    pub(crate) hits: StripedCounter,
    pub(crate) misses: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) compute_nanos: AtomicU64,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            hits: StripedCounter::new(),
            misses: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            compute_nanos: AtomicU64::new(0),
        }
    }

    pub(crate) fn add_compute_time(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.compute_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}
