//! `cachemere::metrics::publish` against a Prometheus recorder used locally (not installed
//! globally): caches that share a name are summed, counters count across `cache_clear`, and a
//! near cache's hits are split by the level that served them (against a `redis-server` the
//! harness starts on a free loopback port).

use std::time::{Duration, Instant};

use cachemere::cached;
use cachemere::redis::RedisConfig;
use cachemere_tests::redis_harness::RedisServer;
use cachemere_tests::remote_slot;
use metrics_exporter_prometheus::PrometheusBuilder;

#[cached(name = "metrics-shared-name")]
fn first(x: u64) -> u64 {
    x
}

#[cached(name = "metrics-shared-name")]
fn second(x: u64) -> u64 {
    x + 1
}

/// The same name on a remote cache (a user's store in this process).
#[cached(
    name = "metrics-shared-name",
    backend = "remote",
    remote = cachemere_tests::remote_fixtures::user_store
)]
fn third(x: u64) -> u64 {
    x + 2
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn caches_of_one_name_are_summed_and_counters_survive_a_clear() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    for x in [1, 1, 1, 2] {
        first(x);
    }
    for x in [1, 1] {
        second(x);
    }
    for x in [7, 7] {
        third(x);
    }
    metrics::with_local_recorder(&recorder, cachemere::metrics::publish);
    let text = handle.render();
    let hits = r#"cachemere_hits_total{cache="metrics-shared-name",level="local"}"#;
    let misses = r#"cachemere_misses_total{cache="metrics-shared-name"}"#;
    let entries = r#"cachemere_entries{cache="metrics-shared-name"}"#;
    let remote_hits = r#"cachemere_hits_total{cache="metrics-shared-name",level="remote"}"#;
    assert_eq!(sample(&text, hits), Some(3.0), "{text}");
    assert_eq!(sample(&text, remote_hits), Some(1.0), "{text}");
    assert_eq!(sample(&text, misses), Some(4.0), "local and remote: {text}");
    assert!(
        sample(&text, entries).is_some_and(|entries| entries >= 3.0),
        "{text}"
    );

    first::cache_clear();
    first(1);
    metrics::with_local_recorder(&recorder, cachemere::metrics::publish);
    let text = handle.render();
    assert_eq!(sample(&text, misses), Some(5.0), "{text}");
    let local_entries = first::cache_info().currsize + second::cache_info().currsize;
    assert_eq!(local_entries, 2);
    assert_eq!(
        sample(&text, entries),
        Some((local_entries + third::cache_info().currsize) as f64),
        "a gauge follows the caches: {text}"
    );
}

remote_slot!(NEAR_REMOTE, near_remote);

#[cached(name = "metrics-near", backend = "redis", remote = near_remote, local = "1h")]
fn near(x: u64) -> u64 {
    x + 3
}

#[test]
fn a_near_caches_hits_are_split_by_level() {
    let server = RedisServer::start()
        .unwrap_or_else(|error| panic!("could not start redis-server: {error}"));
    let remote = RedisConfig::new(server.url())
        .prefix("metrics-near")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(NEAR_REMOTE.set(remote).is_ok(), "set once");
    // Until a call is answered locally (the miss's own write may drop the first copy once).
    let deadline = Instant::now() + Duration::from_secs(10);
    while near::cache_info().local_hits == 0 {
        assert!(Instant::now() < deadline, "never answered locally");
        assert_eq!(near(1), 4);
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..10 {
        assert_eq!(near(1), 4);
    }
    let info = near::cache_info();
    assert!(
        info.local_hits >= 1 && info.hits > info.local_hits,
        "{info}"
    );

    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, cachemere::metrics::publish);
    let text = handle.render();
    let local = r#"cachemere_hits_total{cache="metrics-near",level="local"}"#;
    let remote = r#"cachemere_hits_total{cache="metrics-near",level="remote"}"#;
    let info = near::cache_info();
    assert_eq!(sample(&text, local), Some(info.local_hits as f64), "{text}");
    assert_eq!(
        sample(&text, remote),
        Some((info.hits - info.local_hits) as f64),
        "{text}"
    );
}
