//! Freshness policies, written once for every engine: how long an entry is fresh (TTL,
//! per-value TTL, jitter), how long after that it may still be served (stale-while-revalidate,
//! stale-if-error), when a failing origin is left alone (throttling), and the machinery both
//! engines use to act on it: one background refresh per key, a bounded pool of refresh threads,
//! panics caught as failures, and soft timeouts.
//!
//! The memory engine (memory, moka and user backends) measures times in monotonic nanoseconds,
//! the remote engine (Redis, the cluster, user remote stores) in the writer's Unix
//! milliseconds; both hand this module durations (how long past its freshness an entry is),
//! so every decision below is made in one place.

use std::any::Any;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::hashing::RandomState;
use crate::outcome::Served;
use crate::stats::{Counters, Event};

/// How long after a failure a key's recomputation is not retried while a stale value can be
/// served instead (`retry_after`), unless the attribute says otherwise.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// A cache's freshness policy beyond its TTL: what `#[cached(...)]` was declared with.
///
/// ```
/// use std::time::Duration;
/// use cachemere::Freshness;
///
/// let policy = Freshness::new()
///     .with_stale_while_revalidate(Some(Duration::from_secs(600)))
///     .with_stale_if_error(Some(Duration::from_secs(86_400)))
///     .with_jitter(Some(Duration::from_secs(30)));
/// // An entry is kept as long as its longest stale window needs.
/// assert_eq!(policy.stale_window(), Duration::from_secs(86_400));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Freshness {
    /// After its TTL, an entry is still served for this long, and the first call that finds
    /// it stale starts one background recomputation whose result replaces it.
    pub stale_while_revalidate: Option<Duration>,
    /// After its TTL, an entry is kept this long and served when a recomputation fails
    /// (`Err`, `None` not stored, a panic, or `timeout`).
    pub stale_if_error: Option<Duration>,
    /// After a failed recomputation of a key with a stale value, how long that value is served
    /// before the key is recomputed again.
    pub retry_after: Duration,
    /// (`async fn`s) a recomputation slower than this, with a stale value to serve, returns
    /// that value and finishes in the background.
    pub timeout: Option<Duration>,
    /// Each entry's TTL is extended by a random amount up to this.
    pub jitter: Option<Duration>,
    /// Sliding expiry: an entry not read for this long expires; each read renews it (at most
    /// once per half of this, per key), up to the TTL if there is one.
    pub idle: Option<Duration>,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness::new()
    }
}

impl Freshness {
    /// No stale windows, no timeout, no jitter.
    pub const fn new() -> Self {
        Freshness {
            stale_while_revalidate: None,
            stale_if_error: None,
            retry_after: DEFAULT_RETRY_AFTER,
            timeout: None,
            jitter: None,
            idle: None,
        }
    }

    /// Sets [`stale_while_revalidate`](Self::stale_while_revalidate).
    pub const fn with_stale_while_revalidate(mut self, window: Option<Duration>) -> Self {
        self.stale_while_revalidate = window;
        self
    }

    /// Sets [`stale_if_error`](Self::stale_if_error).
    pub const fn with_stale_if_error(mut self, window: Option<Duration>) -> Self {
        self.stale_if_error = window;
        self
    }

    /// Sets [`retry_after`](Self::retry_after).
    pub const fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Sets [`timeout`](Self::timeout).
    pub const fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`jitter`](Self::jitter).
    pub const fn with_jitter(mut self, jitter: Option<Duration>) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets [`idle`](Self::idle).
    pub const fn with_idle(mut self, idle: Option<Duration>) -> Self {
        self.idle = idle;
        self
    }

    /// How long past its freshness an entry may still be served, in the longest case: the
    /// time a store must keep it beyond its TTL.
    pub fn stale_window(&self) -> Duration {
        let revalidate = self.stale_while_revalidate.unwrap_or(Duration::ZERO);
        let if_error = self.stale_if_error.unwrap_or(Duration::ZERO);
        revalidate.max(if_error)
    }

    /// Whether any stale value may ever be served.
    pub(crate) fn serves_stale(&self) -> bool {
        self.stale_while_revalidate.is_some() || self.stale_if_error.is_some()
    }

    /// How long an entry written now is fresh: the declared TTL, shortened by the value's own
    /// (`ttl_from`), extended by jitter. `None`: it does not expire. `Some(ZERO)`: the value
    /// says it is already expired, and is not stored.
    pub(crate) fn lifetime(
        &self,
        ttl: Option<Duration>,
        value_ttl: Option<Duration>,
    ) -> Option<Duration> {
        // A value's own TTL is its expiry (a token's, an upstream `max-age`): jitter only
        // spreads the declared one.
        let (base, jittered) = match (ttl, value_ttl) {
            (Some(ttl), Some(own)) if own < ttl => (own, false),
            (Some(ttl), _) => (ttl, true),
            (None, own) => (own?, false),
        };
        if base.is_zero() {
            return Some(Duration::ZERO);
        }
        Some(match self.jitter {
            Some(jitter) if jittered => base.saturating_add(random_up_to(jitter)),
            _ => base,
        })
    }

    /// What an entry that is `overdue` past its freshness (`None`: still fresh) may be used for.
    pub(crate) fn verdict(&self, overdue: Option<Duration>) -> Verdict {
        let Some(overdue) = overdue else {
            return Verdict::Fresh;
        };
        if self
            .stale_while_revalidate
            .is_some_and(|window| overdue < window)
        {
            return Verdict::Stale;
        }
        if self.stale_if_error.is_some_and(|window| overdue < window) {
            return Verdict::Fallback;
        }
        Verdict::Expired
    }
}

/// What an entry may be used for, by how long it is past its freshness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Served as it is.
    Fresh,
    /// Served, and recomputed in the background (stale-while-revalidate).
    Stale,
    /// Served only when a recomputation fails, or while its key's retries are throttled.
    Fallback,
    /// Not served.
    Expired,
}

impl Verdict {
    /// Whether the entry can stand in for a failed recomputation.
    pub(crate) fn is_usable(self) -> bool {
        !matches!(self, Verdict::Expired)
    }
}

/// A random duration in `[0, bound]` (not cryptographic: spreading expiries only).
fn random_up_to(bound: Duration) -> Duration {
    static SEED: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(RandomState::default);
    let draw = seed.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = u64::try_from(bound.as_nanos()).unwrap_or(u64::MAX);
    match nanos.checked_add(1) {
        Some(span) => Duration::from_nanos(draw % span),
        None => Duration::from_nanos(draw),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The most keys a [`Deadlines`] remembers; beyond it, lapsed ones are dropped first, then the
/// one due soonest.
const THROTTLED_KEYS: usize = 4096;

/// Per key (by hash), until when something holds: a failed key's retries are throttled, a
/// renewed key needs no renewal yet.
pub(crate) struct Deadlines {
    until: Mutex<HashMap<u64, Instant>>,
    /// Whether `until` may hold anything: lets [`forget`](Self::forget), called on every
    /// successful recomputation and invalidation, skip the lock when nothing is held.
    any: std::sync::atomic::AtomicBool,
    hasher: RandomState,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Deadlines {
            until: Mutex::new(HashMap::new()),
            any: std::sync::atomic::AtomicBool::new(false),
            hasher: RandomState::default(),
        }
    }

    pub(crate) fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Whether `key`'s deadline is still ahead.
    pub(crate) fn holds(&self, key: u64) -> bool {
        let mut until = lock(&self.until);
        match until.get(&key) {
            Some(at) if Instant::now() < *at => true,
            Some(_) => {
                until.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Sets `key`'s deadline `lasting` from now.
    pub(crate) fn set(&self, key: u64, lasting: Duration) {
        let now = Instant::now();
        let mut until = lock(&self.until);
        if until.len() >= THROTTLED_KEYS {
            until.retain(|_, at| *at > now);
            if until.len() >= THROTTLED_KEYS
                && let Some(oldest) = until.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k)
            {
                until.remove(&oldest);
            }
        }
        until.insert(key, now + lasting);
        self.any.store(true, Ordering::SeqCst);
    }

    /// Forgets `key`'s deadline.
    pub(crate) fn forget(&self, key: u64) {
        if !self.any.load(Ordering::SeqCst) {
            return;
        }
        let mut until = lock(&self.until);
        until.remove(&key);
        if until.is_empty() {
            self.any.store(false, Ordering::SeqCst);
        }
    }

    /// Forgets every deadline (`cache_clear`).
    pub(crate) fn clear(&self) {
        lock(&self.until).clear();
    }
}

/// The keys (by hash) with a background refresh under way: one per key at a time.
pub(crate) struct Refreshing {
    keys: Mutex<HashSet<u64>>,
}

/// Held by the caller that starts a key's background refresh; dropping it (the refresh ended,
/// panicked, or could not be queued) lets the next stale hit start another.
pub(crate) struct RefreshTicket {
    refreshing: &'static Refreshing,
    key: u64,
}

impl Refreshing {
    pub(crate) fn new() -> Self {
        Refreshing {
            keys: Mutex::new(HashSet::new()),
        }
    }

    /// A ticket to refresh `key`, unless a refresh of it is under way.
    pub(crate) fn start(&'static self, key: u64) -> Option<RefreshTicket> {
        // The lock is released before a ticket exists (its drop takes the lock).
        let started = lock(&self.keys).insert(key);
        started.then(|| RefreshTicket {
            refreshing: self,
            key,
        })
    }
}

impl Drop for RefreshTicket {
    fn drop(&mut self) {
        lock(&self.refreshing.keys).remove(&self.key);
    }
}

/// What a cache keeps to act on its freshness policy, whatever its engine: the keys (by
/// hash) being refreshed in the background and the keys whose recomputation failed recently.
pub(crate) struct Revalidation {
    throttle: Deadlines,
    refreshing: Refreshing,
}

impl Revalidation {
    pub(crate) fn new() -> Self {
        Revalidation {
            throttle: Deadlines::new(),
            refreshing: Refreshing::new(),
        }
    }

    /// The hash the other methods take for `key`.
    pub(crate) fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.throttle.hash(key)
    }

    /// Whether `key`'s recomputation failed less than `retry_after` ago.
    pub(crate) fn is_throttled(&self, key: u64) -> bool {
        self.throttle.holds(key)
    }

    /// A ticket to refresh `key` in the background (counted as started), unless one is
    /// under way or its retries are throttled after a failure.
    pub(crate) fn ticket(&'static self, key: u64, counters: &Counters) -> Option<RefreshTicket> {
        if self.throttle.holds(key) {
            return None;
        }
        let ticket = self.refreshing.start(key)?;
        counters.note(Event::RefreshStarted);
        Some(ticket)
    }

    /// Notes how a recomputation of `key` ended: a failure throttles its retries for
    /// `retry_after`, a success lifts that.
    pub(crate) fn attempted(&self, key: u64, succeeded: bool, retry_after: Duration) {
        if succeeded {
            self.throttle.forget(key);
        } else {
            self.throttle.set(key, retry_after);
        }
    }

    /// [`attempted`](Self::attempted), for a background refresh (counted).
    pub(crate) fn refreshed(
        &self,
        key: u64,
        kept: bool,
        retry_after: Duration,
        counters: &Counters,
    ) {
        self.attempted(key, kept, retry_after);
        counters.note(if kept {
            Event::RefreshSucceeded
        } else {
            Event::RefreshFailed
        });
    }

    /// What a recomputation that a stale value may stand in for came to: its result, or, when
    /// it failed and `stale` still gives the stale value, `Err` with it (a fail-safe
    /// activation); a failure with nothing to stand in is returned or resumed as it is.
    pub(crate) fn settle<R, V>(
        &self,
        key: u64,
        attempt: Attempt<R>,
        retry_after: Duration,
        counters: &Counters,
        stale: impl FnOnce() -> Option<V>,
    ) -> Result<R, V> {
        self.attempted(key, attempt.is_ok(), retry_after);
        match attempt {
            Ok(result) => Ok(result),
            Err(failure) => match stale() {
                Some(stale) => {
                    counters.note(Event::FailSafe);
                    Err(stale)
                }
                None => Ok(failure.resume()),
            },
        }
    }

    /// Forgets `key`'s failure: it was invalidated, written, or recomputed with success.
    pub(crate) fn forget(&self, key: u64) {
        self.throttle.forget(key);
    }

    /// Forgets every failure (`cache_clear`).
    pub(crate) fn clear(&self) {
        self.throttle.clear();
    }
}

/// A soft timeout: waits at most `limit` for `work` (a whole lookup, owned); if it is not
/// done by then and `stale` still gives the stale value, the work goes on as a background task
/// (counted as a refresh, ending in `refreshes_succeeded` if it stored its value) and `Err`
/// carries the stale value. Without one, the caller waits for the work.
pub(crate) async fn answer_within<R, V>(
    work: Pin<Box<dyn Future<Output = (R, Served)> + Send + 'static>>,
    limit: Duration,
    counters: &'static Counters,
    stale: impl FnOnce() -> Option<V>,
) -> Result<(R, Served), V>
where
    R: Send + 'static,
{
    let work = match within(work, limit).await {
        Ok(answered) => return Ok(answered),
        Err(work) => work,
    };
    let Some(stale) = stale() else {
        // Hidden since it was read: wait for the value.
        return Ok(work.await);
    };
    counters.note(Event::FailSafe);
    counters.note(Event::RefreshStarted);
    let finishing = async move {
        let (_, served) = work.await;
        counters.note(match served {
            Served::Computed { stored: true } => Event::RefreshSucceeded,
            _ => Event::RefreshFailed,
        });
    };
    if !spawn_future(finishing) {
        counters.note(Event::RefreshFailed);
    }
    Err(stale)
}

/// A job for a refresh thread.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// Threads that run background refreshes of sync functions (and of `async fn`s called outside
/// any tokio runtime).
const REFRESH_THREADS: usize = 2;

/// Refreshes queued beyond the running ones; when full, a stale hit starts none (the next one
/// tries again) rather than queue without bound.
const REFRESH_QUEUE: usize = 1024;

fn refresh_pool() -> Option<&'static SyncSender<Job>> {
    static POOL: OnceLock<Option<SyncSender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = sync_channel::<Job>(REFRESH_QUEUE);
        let receiver = Arc::new(Mutex::new(receiver));
        let mut started = false;
        for index in 0..REFRESH_THREADS {
            let receiver = Arc::clone(&receiver);
            let spawned = std::thread::Builder::new()
                .name(format!("cachemere-refresh-{index}"))
                .spawn(move || {
                    loop {
                        let job = match lock(&receiver).recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        };
                        // A job catches its own panics; this only keeps the thread alive.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                });
            started |= spawned.is_ok();
        }
        started.then_some(sender)
    })
    .as_ref()
}

/// Runs `job` on a refresh thread; `false` if the queue is full (or no thread could start).
pub(crate) fn spawn_blocking(job: impl FnOnce() + Send + 'static) -> bool {
    let Some(pool) = refresh_pool() else {
        return false;
    };
    match pool.try_send(Box::new(job)) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
    }
}

/// Runs `future` in the background: on the caller's tokio runtime if there is one, else on a
/// refresh thread (polled there to completion). `false` if it could not be started.
pub(crate) fn spawn_future(future: impl Future<Output = ()> + Send + 'static) -> bool {
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        drop(handle.spawn(future));
        return true;
    }
    spawn_blocking(move || block_on(future))
}

/// Polls `future` to completion on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Why a recomputation gave no value to store.
pub(crate) enum Failure<R> {
    /// It returned what the policy does not store (`Err`, `None`).
    Rejected(R),
    /// It panicked (the payload, to resume when there is nothing to serve instead).
    Panicked(Box<dyn Any + Send>),
}

impl<R> Failure<R> {
    /// What the call does when no stale value can stand in: return the result, or panic on.
    pub(crate) fn resume(self) -> R {
        match self {
            Failure::Rejected(result) => result,
            Failure::Panicked(payload) => std::panic::resume_unwind(payload),
        }
    }
}

/// The outcome of a recomputation that may fall back to a stale value.
pub(crate) type Attempt<R> = Result<R, Failure<R>>;

/// Runs `compute`, catching a panic, and judging its result with `keep`.
pub(crate) fn attempt<R, S>(keep: fn(&R) -> Option<&S>, compute: impl FnOnce() -> R) -> Attempt<R> {
    match catch_unwind(AssertUnwindSafe(compute)) {
        Ok(result) if keep(&result).is_some() => Ok(result),
        Ok(result) => Err(Failure::Rejected(result)),
        Err(payload) => Err(Failure::Panicked(payload)),
    }
}

/// The `async` form of [`attempt`].
pub(crate) async fn attempt_async<R, S>(
    keep: fn(&R) -> Option<&S>,
    compute: impl Future<Output = R>,
) -> Attempt<R> {
    match (CatchUnwind {
        inner: Box::pin(compute),
    })
    .await
    {
        Ok(result) if keep(&result).is_some() => Ok(result),
        Ok(result) => Err(Failure::Rejected(result)),
        Err(payload) => Err(Failure::Panicked(payload)),
    }
}

/// A future that returns its inner future's panic as an error.
struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.inner.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// Waits for `future`, at most `limit`: `Err(future)` when it is not done by then, so the
/// caller can finish it elsewhere. Timed by a thread of ours, so it needs no timer from the
/// caller's executor.
pub(crate) async fn within<F: Future + Unpin>(future: F, limit: Duration) -> Result<F::Output, F> {
    Within {
        future: Some(future),
        deadline: Instant::now() + limit,
        registered: false,
    }
    .await
}

struct Within<F> {
    future: Option<F>,
    deadline: Instant,
    registered: bool,
}

impl<F: Future + Unpin> Future for Within<F> {
    type Output = Result<F::Output, F>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(future) = this.future.as_mut() else {
            // Polled after completion: never ready again.
            return Poll::Pending;
        };
        if let Poll::Ready(output) = Pin::new(future).poll(cx) {
            this.future = None;
            return Poll::Ready(Ok(output));
        }
        if Instant::now() >= this.deadline {
            return match this.future.take() {
                Some(future) => Poll::Ready(Err(future)),
                None => Poll::Pending,
            };
        }
        if !this.registered {
            this.registered = true;
            timer().wake_at(this.deadline, cx.waker().clone());
        }
        Poll::Pending
    }
}

/// One thread that wakes wakers at their deadlines.
struct Timer {
    due: Mutex<BinaryHeap<Due>>,
    changed: Condvar,
}

struct Due {
    at: Instant,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // The earliest first in a max-heap.
        other.at.cmp(&self.at)
    }
}

impl Timer {
    fn wake_at(&'static self, at: Instant, waker: Waker) {
        lock(&self.due).push(Due { at, waker });
        self.changed.notify_one();
    }

    fn run(&self) {
        let mut due = lock(&self.due);
        loop {
            let now = Instant::now();
            while due.peek().is_some_and(|next| next.at <= now) {
                if let Some(next) = due.pop() {
                    next.waker.wake();
                }
            }
            due = match due.peek().map(|next| next.at) {
                Some(at) => {
                    self.changed
                        .wait_timeout(due, at.saturating_duration_since(now))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(due)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            due: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        // If the thread cannot start, deadlines pass unnoticed until the future is polled for
        // another reason: the call then only waits for its computation, as without a timeout.
        let _ = std::thread::Builder::new()
            .name("cachemere-timer".into())
            .spawn(move || timer.run());
        timer
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_windows() {
        let policy = Freshness::new()
            .with_stale_while_revalidate(Some(Duration::from_secs(10)))
            .with_stale_if_error(Some(Duration::from_secs(60)));
        assert_eq!(policy.verdict(None), Verdict::Fresh);
        assert_eq!(policy.verdict(Some(Duration::from_secs(9))), Verdict::Stale);
        assert_eq!(
            policy.verdict(Some(Duration::from_secs(10))),
            Verdict::Fallback
        );
        assert_eq!(
            policy.verdict(Some(Duration::from_secs(60))),
            Verdict::Expired
        );
        assert_eq!(
            Freshness::new().verdict(Some(Duration::ZERO)),
            Verdict::Expired
        );
    }

    #[test]
    fn lifetimes_are_bounded_by_the_ttl_and_jittered_within_bounds() {
        let plain = Freshness::new();
        let ttl = Some(Duration::from_secs(60));
        assert_eq!(plain.lifetime(ttl, None), ttl);
        assert_eq!(
            plain.lifetime(ttl, Some(Duration::from_secs(5))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(plain.lifetime(ttl, Some(Duration::from_secs(500))), ttl);
        assert_eq!(plain.lifetime(None, None), None);
        assert_eq!(
            plain.lifetime(ttl, Some(Duration::ZERO)),
            Some(Duration::ZERO)
        );
        let jittered = Freshness::new().with_jitter(Some(Duration::from_secs(30)));
        for _ in 0..100 {
            assert_eq!(
                jittered.lifetime(ttl, Some(Duration::from_secs(5))),
                Some(Duration::from_secs(5)),
                "a value's own TTL is not jittered"
            );
        }
        let lifetimes: Vec<Duration> = (0..1000)
            .filter_map(|_| jittered.lifetime(ttl, None))
            .collect();
        assert!(lifetimes.iter().all(|l| *l >= Duration::from_secs(60)));
        assert!(lifetimes.iter().all(|l| *l <= Duration::from_secs(90)));
        let late = lifetimes
            .iter()
            .filter(|l| **l > Duration::from_secs(75))
            .count();
        assert!(
            (300..700).contains(&late),
            "{late} of 1000 in the upper half"
        );
    }

    #[test]
    fn throttling_lapses_and_is_bounded() {
        let throttle = Deadlines::new();
        throttle.set(1, Duration::from_secs(60));
        throttle.set(2, Duration::ZERO);
        assert!(throttle.holds(1));
        assert!(!throttle.holds(2));
        throttle.forget(1);
        assert!(!throttle.holds(1));
        for key in 0..(THROTTLED_KEYS as u64 * 2) {
            throttle.set(key, Duration::from_secs(60));
        }
        assert!(lock(&throttle.until).len() <= THROTTLED_KEYS);
    }

    #[test]
    fn within_returns_the_unfinished_future() {
        let slow = Box::pin(std::future::pending::<u8>());
        let started = Instant::now();
        assert!(block_on(within(slow, Duration::from_millis(20))).is_err());
        assert!(started.elapsed() >= Duration::from_millis(20));
        let quick = Box::pin(std::future::ready(7_u8));
        assert_eq!(
            block_on(within(quick, Duration::from_secs(60))).ok(),
            Some(7)
        );
    }

    #[test]
    fn caught_panics_and_rejections_are_failures() {
        fn keep(result: &Result<u8, ()>) -> Option<&u8> {
            result.as_ref().ok()
        }
        assert!(matches!(attempt(keep, || Ok(1)), Ok(Ok(1))));
        assert!(matches!(
            attempt(keep, || Err(())),
            Err(Failure::Rejected(Err(())))
        ));
        assert!(matches!(
            attempt(keep, || -> Result<u8, ()> { panic!("boom") }),
            Err(Failure::Panicked(_))
        ));
    }
}
