//! Warnings about a remote that cannot be reached are rate-limited: a process invalidating in a
//! loop against a dead Redis writes one line per 10 s, not one per call. Its own test binary: it
//! installs a global `tracing` subscriber that counts warnings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachemere::Invalidation;
use cachemere::redis::RedisConfig;
use tracing::subscriber::Subscriber;
use tracing::{Event, Level, Metadata, span};

static WARNINGS: AtomicUsize = AtomicUsize::new(0);

/// Counts events at WARN and above; records nothing else.
struct CountWarnings;

impl Subscriber for CountWarnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= Level::WARN
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, _: &Event<'_>) {
        WARNINGS.fetch_add(1, Ordering::SeqCst);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

#[test]
fn failing_invalidations_warn_once_per_interval() {
    tracing::subscriber::set_global_default(CountWarnings).unwrap();
    // A loopback port nobody listens on: every connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let remote = RedisConfig::new(format!("redis://127.0.0.1:{port}"))
        .prefix("log-rate")
        .timeout(Duration::from_millis(100))
        .circuit_breaker(1_000_000, Duration::from_millis(1))
        .build()
        .unwrap();
    for i in 0..50 {
        assert_eq!(
            remote.invalidate_tag(&format!("log-rate-{i}")),
            Invalidation::Queued
        );
    }
    let warnings = WARNINGS.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} warnings for 50 failed invalidations"
    );
    assert_eq!(remote.pending_invalidations(), 50, "none is dropped");
}
