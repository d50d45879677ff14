//! What a readiness endpoint needs to know about each remote: [`health`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Remote, RemoteInner, remotes_in_use};

/// The state of a remote's circuit breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Circuit {
    /// Operations go to the store.
    Closed,
    /// The store is skipped after repeated failures; the next probe comes in `retry_in`.
    Open {
        /// Time left of the cool-down.
        retry_in: Duration,
    },
    /// The cool-down is over: the next operation probes the store.
    HalfOpen,
}

/// One remote's health: whether it is reachable, what is waiting for it, and its last error.
///
/// ```
/// # use cachemere::remote::{Remote, RemoteStore, StoreFuture, Circuit};
/// # use std::time::Duration;
/// # struct Store;
/// # impl RemoteStore for Store {
/// #     fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> { Box::pin(async move { Ok(vec![None; keys.len()]) }) }
/// #     fn set(&self, _: String, _: Vec<u8>, _: Duration) -> StoreFuture<()> { Box::pin(async { Ok(()) }) }
/// #     fn compare_and_set(&self, _: String, _: Vec<u8>, _: Vec<u8>, _: Duration) -> StoreFuture<bool> { Box::pin(async { Ok(false) }) }
/// #     fn delete(&self, _: String) -> StoreFuture<bool> { Box::pin(async { Ok(false) }) }
/// #     fn count_prefix(&self, _: String) -> StoreFuture<u64> { Box::pin(async { Ok(0) }) }
/// #     fn describe(&self) -> String { "doc store".into() }
/// # }
/// let remote = Remote::builder(Store).build();
/// let health = remote.health();
/// assert_eq!(health.circuit, Circuit::Closed);
/// assert_eq!(health.pending_invalidations, 0);
/// assert!(health.is_ready());
/// // For a readiness endpoint: every remote used in this process.
/// let all_ready = cachemere::remote::health().iter().all(|h| h.is_ready());
/// # let _ = all_ready;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteHealth {
    /// What the store is (passwords redacted).
    pub store: String,
    /// The circuit breaker's state.
    pub circuit: Circuit,
    /// Invalidations that could not reach the store yet and are being retried.
    pub pending_invalidations: usize,
    /// The last failed operation's error (URLs' passwords redacted), and how long ago.
    pub last_error: Option<(String, Duration)>,
    /// (Near caches) whether local copies are trusted now (the store's change feed is up and
    /// confirmed), and how many times the feed was established (each re-establishment drops
    /// every local copy). `None` when no cache with `local` uses this remote.
    pub change_feed: Option<(bool, u64)>,
}

/// With the `serde` feature: `{"state": "closed"}`, `{"state": "open", "retry_in_secs": 1.5}`
/// or `{"state": "half_open"}`.
#[cfg(feature = "serde")]
impl serde::Serialize for Circuit {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        match self {
            Circuit::Closed => map.serialize_entry("state", "closed")?,
            Circuit::Open { retry_in } => {
                map.serialize_entry("state", "open")?;
                map.serialize_entry("retry_in_secs", &retry_in.as_secs_f64())?;
            }
            Circuit::HalfOpen => map.serialize_entry("state", "half_open")?,
        }
        map.end()
    }
}

/// With the `serde` feature: `store`, `ready` ([`is_ready`](RemoteHealth::is_ready)),
/// `circuit`, `pending_invalidations`, and `last_error` as `{"message": ..., "secs_ago": ...}`
/// or `null`. Passwords in URLs are redacted in `store` and the message.
#[cfg(feature = "serde")]
impl serde::Serialize for RemoteHealth {
    fn serialize<Se: serde::Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        use serde::ser::SerializeStruct;
        #[derive(serde::Serialize)]
        struct LastError<'a> {
            message: &'a str,
            secs_ago: f64,
        }
        #[derive(serde::Serialize)]
        struct Feed {
            trusted: bool,
            subscriptions: u64,
        }
        let last_error = self.last_error.as_ref().map(|(message, ago)| LastError {
            message,
            secs_ago: ago.as_secs_f64(),
        });
        let mut fields = serializer.serialize_struct("RemoteHealth", 6)?;
        fields.serialize_field("store", &self.store)?;
        fields.serialize_field("ready", &self.is_ready())?;
        fields.serialize_field("circuit", &self.circuit)?;
        fields.serialize_field("pending_invalidations", &self.pending_invalidations)?;
        fields.serialize_field("last_error", &last_error)?;
        fields.serialize_field(
            "change_feed",
            &self.change_feed.map(|(trusted, subscriptions)| Feed {
                trusted,
                subscriptions,
            }),
        )?;
        fields.end()
    }
}

impl RemoteHealth {
    /// Whether the store takes operations and nothing waits for it.
    pub fn is_ready(&self) -> bool {
        self.circuit == Circuit::Closed && self.pending_invalidations == 0
    }
}

impl Remote {
    /// This remote's health now (no store operation is made).
    pub fn health(&self) -> RemoteHealth {
        health_of(&self.inner)
    }
}

fn health_of(inner: &RemoteInner) -> RemoteHealth {
    let last_error = inner
        .last_error
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .map(|(text, at)| (text.clone(), at.elapsed()));
    RemoteHealth {
        store: inner.description.clone(),
        circuit: inner.breaker.circuit(),
        pending_invalidations: inner.pending.len(),
        last_error,
        change_feed: inner
            .tracker
            .get()
            .copied()
            .flatten()
            .map(|tracker| (tracker.trusted(), tracker.resyncs())),
    }
}

impl Remote {
    /// Waits (blocking) until this remote has delivered its pending invalidations, or
    /// `timeout` passes; returns how many are still pending.
    pub fn flush_pending(&self, timeout: Duration) -> usize {
        wait_for(timeout, || self.pending_invalidations())
    }
}

fn wait_for(timeout: Duration, left: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let left = left();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The health of every remote installed or used in this process.
pub fn health() -> Vec<RemoteHealth> {
    remotes_in_use().iter().map(Remote::health).collect()
}

/// Waits (blocking) until every remote used in this process has delivered its pending
/// invalidations, or `timeout` passes; returns how many are still pending. Call it at shutdown:
/// invalidations still pending when the process exits are lost (other processes then serve
/// what they hid until it expires).
pub fn flush_pending(timeout: Duration) -> usize {
    wait_for(timeout, pending_everywhere)
}

/// The async form of [`flush_pending`].
pub async fn flush_pending_async(timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let left = pending_everywhere();
        if left == 0 || Instant::now() >= deadline {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn pending_everywhere() -> usize {
    remotes_in_use()
        .iter()
        .map(Remote::pending_invalidations)
        .sum()
}

/// How long warnings about one remote stay quiet after one is written.
const WARN_INTERVAL_NS: u64 = 10_000_000_000;

/// Whether a rate-limited log line may be written now; `last` holds when one last was.
pub(crate) fn may_log(last: &AtomicU64) -> bool {
    let now = crate::clock::precise_ns().max(1);
    let previous = last.load(Ordering::Relaxed);
    (previous == 0 || now.saturating_sub(previous) >= WARN_INTERVAL_NS)
        && last
            .compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_rate_limited() {
        let last = AtomicU64::new(0);
        assert!(may_log(&last));
        assert!(
            !may_log(&last),
            "a second line within the interval is dropped"
        );
    }
}
