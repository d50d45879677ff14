//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`): install
//! any exporter (Prometheus, OpenTelemetry, StatsD) and the caches report to it.
//!
//! Two kinds of metric, so that a hit costs nothing more than it did:
//!
//! - **Recorded as they happen** (rare events): computations (a histogram of their duration),
//!   explicit refreshes, invalidations and backend errors.
//! - **Published from the statistics** by [`publish`] (call it before each scrape, or let
//!   [`publish_every`] do it): hits, misses and evictions as absolute counters, and the sizes
//!   and remote states as gauges. Hits are summed from the per-thread counters behind
//!   `cache_info()`, so a hit writes no shared metric. Counters count from the cache's creation
//!   (a `cache_clear` resets `cache_info()`, never a metric).
//!
//! | name (Prometheus) | kind | labels | what |
//! |---|---|---|---|
//! | `cachemere_hits_total` | counter | `cache`, `level` (`local`: from this process's memory, a memory cache's or a near cache's copies; `remote`: from the store) | calls answered without running the function |
//! | `cachemere_misses_total` | counter | `cache` | calls that ran the function |
//! | `cachemere_evictions_total` | counter | `cache` | entries removed to stay within `maxsize` |
//! | `cachemere_errors_total` | counter | `cache`, `operation` (`get`, `insert`, `set`, `remove`, `clear`, `key`, `encode`, ...) | failed backend operations (each call still returned) |
//! | `cachemere_invalidations_total` | counter | `cache` (`*` for a tag), `scope` (`key`, `clear`, `tag`), `outcome` (`applied`, `queued`) | invalidations made in this process |
//! | `cachemere_refreshes_total` | counter | `cache`, `outcome` | `f::refresh(..)` calls |
//! | `cachemere_compute_duration_seconds` | histogram | `cache`, `mode` (`lookup`, `refresh`, `revalidate` for a background refresh), `outcome` (`value`, `rejected`, `panicked`, `cancelled`) | time the function ran on a miss |
//! | `cachemere_entries` | gauge | `cache` | entries held (`currsize`) |
//! | `cachemere_max_entries` | gauge | `cache` | the entry bound (`maxsize`; 0 for a remote cache) |
//! | `cachemere_remote_pending_invalidations` | gauge | `store` | invalidations waiting to reach the store |
//! | `cachemere_remote_circuit_open` | gauge | `store` | 1 while the store's circuit breaker is open |
//! | `cachemere_remote_errors_total` | counter | `store` | failed operations of the store (lookups, writes, invalidations and their retries) |
//!
//! OpenTelemetry has no semantic convention for application caches, so the names follow
//! Prometheus's (a unit suffix, `_total` on counters), which OpenTelemetry's Prometheus
//! compatibility rules produce from the same instruments. Labels never carry a key, a tag or
//! an argument (personal data, and unbounded cardinality): `outcome = "rejected"` is an `Err`
//! or a `None` the policy does not store.
//!
//! ```
//! #[cachemere::cached(name = "doc-metrics")]
//! fn square(x: u64) -> u64 { x * x }
//!
//! // With an exporter installed (e.g. `metrics_exporter_prometheus`), before each scrape:
//! square(3);
//! cachemere::metrics::publish();
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use ::metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};

/// `cachemere_hits_total`.
pub const HITS: &str = "cachemere_hits_total";
/// `cachemere_misses_total`.
pub const MISSES: &str = "cachemere_misses_total";
/// `cachemere_evictions_total`.
pub const EVICTIONS: &str = "cachemere_evictions_total";
/// `cachemere_errors_total`.
pub const ERRORS: &str = "cachemere_errors_total";
/// `cachemere_invalidations_total`.
pub const INVALIDATIONS: &str = "cachemere_invalidations_total";
/// `cachemere_refreshes_total`.
pub const REFRESHES: &str = "cachemere_refreshes_total";
/// `cachemere_compute_duration_seconds`.
pub const COMPUTE_DURATION: &str = "cachemere_compute_duration_seconds";
/// `cachemere_entries`.
pub const ENTRIES: &str = "cachemere_entries";
/// `cachemere_max_entries`.
pub const MAX_ENTRIES: &str = "cachemere_max_entries";
/// `cachemere_remote_pending_invalidations`.
pub const REMOTE_PENDING_INVALIDATIONS: &str = "cachemere_remote_pending_invalidations";
/// `cachemere_remote_circuit_open`.
pub const REMOTE_CIRCUIT_OPEN: &str = "cachemere_remote_circuit_open";
/// `cachemere_remote_errors_total`.
pub const REMOTE_ERRORS: &str = "cachemere_remote_errors_total";

/// Publishes the statistics of every cache created so far (and of every remote in use) to
/// the installed recorder: hits, misses, evictions, sizes, pending invalidations and circuit
/// states. Cheap enough to call at each scrape; a remote cache's size is a count of its keys
/// in the store, made at most once a second (as `cache_info()` does).
pub fn publish() {
    describe();
    // Caches that share a name (`name = ".."` given twice, or a local and a remote one) are
    // one series: their sums (hits also by level).
    let mut caches: BTreeMap<String, Totals> = BTreeMap::new();
    for cache in crate::registry::registered() {
        let info = cache.lifetime_info();
        let totals = caches.entry(cache.name().to_owned()).or_default();
        // A near cache's copies are a local level in front of its store.
        let local_hits = info.local_hits.min(info.hits);
        *totals.hits.entry(cache.level()).or_default() += info.hits - local_hits;
        if local_hits > 0 {
            *totals.hits.entry("local").or_default() += local_hits;
        }
        totals.misses += info.misses;
        totals.evictions += info.evictions;
        totals.entries += info.currsize;
        totals.max_entries += info.maxsize;
    }
    for (name, totals) in caches {
        for (level, hits) in totals.hits {
            counter!(HITS, "cache" => name.clone(), "level" => level).absolute(hits);
        }
        counter!(MISSES, "cache" => name.clone()).absolute(totals.misses);
        counter!(EVICTIONS, "cache" => name.clone()).absolute(totals.evictions);
        gauge!(ENTRIES, "cache" => name.clone()).set(totals.entries as f64);
        gauge!(MAX_ENTRIES, "cache" => name).set(totals.max_entries as f64);
    }
    #[cfg(feature = "remote")]
    publish_remotes();
}

/// Sums of the caches of one name.
#[derive(Default)]
struct Totals {
    hits: BTreeMap<&'static str, u64>,
    misses: u64,
    evictions: u64,
    entries: u64,
    max_entries: u64,
}

/// The remote gauges, one series per store description (remotes on one store with other
/// prefixes are summed: pending counts added, the circuit open if any is).
#[cfg(feature = "remote")]
fn publish_remotes() {
    let mut stores: BTreeMap<String, (usize, bool)> = BTreeMap::new();
    for health in crate::remote::health() {
        let open = matches!(health.circuit, crate::remote::Circuit::Open { .. });
        let store = stores.entry(health.store).or_default();
        store.0 += health.pending_invalidations;
        store.1 |= open;
    }
    for (store, (pending, open)) in stores {
        gauge!(REMOTE_PENDING_INVALIDATIONS, "store" => store.clone()).set(pending as f64);
        gauge!(REMOTE_CIRCUIT_OPEN, "store" => store).set(if open { 1.0 } else { 0.0 });
    }
}

/// Calls [`publish`] every `interval` on a background thread of its own, for exporters that
/// push (StatsD, OTLP) rather than being scraped. The thread runs until the process exits.
pub fn publish_every(interval: Duration) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("cachemere-metrics".into())
        .spawn(move || {
            loop {
                publish();
                std::thread::sleep(interval);
            }
        })
        .map(drop)
}

/// Gives each metric its description and unit (the exporter keeps the latest).
fn describe() {
    describe_counter!(
        HITS,
        Unit::Count,
        "Calls answered without running the function"
    );
    describe_counter!(MISSES, Unit::Count, "Calls that ran the function");
    describe_counter!(
        EVICTIONS,
        Unit::Count,
        "Entries removed to stay within maxsize"
    );
    describe_counter!(
        ERRORS,
        Unit::Count,
        "Failed cache backend operations (the call still returned)"
    );
    describe_counter!(
        INVALIDATIONS,
        Unit::Count,
        "Invalidations made in this process"
    );
    describe_counter!(REFRESHES, Unit::Count, "Explicit refreshes");
    describe_histogram!(
        COMPUTE_DURATION,
        Unit::Seconds,
        "Time the cached function ran on a miss"
    );
    describe_gauge!(ENTRIES, Unit::Count, "Entries held");
    describe_gauge!(MAX_ENTRIES, Unit::Count, "The entry bound");
    describe_gauge!(
        REMOTE_PENDING_INVALIDATIONS,
        Unit::Count,
        "Invalidations waiting to reach the remote store"
    );
    describe_counter!(
        REMOTE_ERRORS,
        Unit::Count,
        "Failed operations of the remote store"
    );
    describe_gauge!(
        REMOTE_CIRCUIT_OPEN,
        "1 while the remote store's circuit breaker is open"
    );
}
