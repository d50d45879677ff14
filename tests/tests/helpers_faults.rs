//! `set` and `refresh` on a real Redis shared with another OS process (`remote_peer`): a value
//! written through is what the other process reads; a `set` that cannot reach Redis (killed and
//! restarted from its persisted data, or paused) never leaves the value it replaced visible to
//! the other process once its queued invalidation lands.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere::{Invalidation, SetOutcome, cached};
use cachemere_tests::redis_harness::RedisServer;

static MINE: OnceLock<Remote> = OnceLock::new();

fn mine() -> Remote {
    MINE.get().expect("set by the test").clone()
}

static VERSION: AtomicU64 = AtomicU64::new(1);

/// `remote_peer`'s function (same name, prefix and tag); the value says who computed it and
/// from which version of the origin.
#[cached(backend = "redis", remote = mine, name = "faults-shared", tags = ["shared-item:{id}"])]
fn shared_value(id: u64) -> String {
    format!(
        "{id}@{}/v{}",
        std::process::id(),
        VERSION.load(Ordering::SeqCst)
    )
}

fn peer(url: &str, args: &[&str]) -> HashMap<String, String> {
    let mut all = vec![url];
    all.extend_from_slice(args);
    cachemere_tests::peer::run_merged(env!("CARGO_BIN_EXE_remote_peer"), &all)
}

/// One test: the three phases share the function's static remote.
#[test]
fn set_and_refresh_across_processes_and_faults() {
    let mut server = RedisServer::start_persistent().unwrap();
    let url = server.url();
    MINE.set(
        RedisConfig::new(url.clone())
            .prefix("faults-shared")
            .timeout(Duration::from_millis(100))
            .circuit_breaker(3, Duration::from_millis(300))
            .build()
            .unwrap(),
    )
    .unwrap();
    let me = std::process::id();

    // Write-through reaches the other process; so does a refresh.
    assert_eq!(shared_value(1), format!("1@{me}/v1"));
    assert_eq!(peer(&url, &["get", "1"])["value"], format!("1@{me}/v1"));
    assert_eq!(shared_value::set(1, "1@set".to_owned()), SetOutcome::Stored);
    assert_eq!(peer(&url, &["get", "1"])["value"], "1@set");
    VERSION.store(2, Ordering::SeqCst);
    assert_eq!(shared_value::refresh(1), format!("1@{me}/v2"));
    assert_eq!(peer(&url, &["get", "1"])["value"], format!("1@{me}/v2"));

    // kill -9 during a set; the server comes back with the replaced value on disk.
    assert_eq!(shared_value(2), format!("2@{me}/v2"));
    server.kill().unwrap();
    VERSION.store(3, Ordering::SeqCst);
    let outcome = shared_value::set(2, "2@set".to_owned());
    assert_eq!(outcome, SetOutcome::NotStored(Invalidation::Queued));
    // Meanwhile this process does not serve the replaced value.
    assert_eq!(shared_value(2), format!("2@{me}/v3"));
    server.restart().unwrap();
    assert_eq!(mine().flush_pending(Duration::from_secs(20)), 0);
    let seen = peer(&url, &["get", "2"]);
    assert_ne!(
        seen["value"],
        format!("2@{me}/v2"),
        "the other process read the value the failed set replaced"
    );
    assert_eq!(seen["misses"], "1", "{seen:?}");

    // The same during CLIENT PAUSE.
    assert_eq!(shared_value(3), format!("3@{me}/v3"));
    server.pause(Duration::from_millis(1500)).unwrap();
    VERSION.store(4, Ordering::SeqCst);
    let outcome = shared_value::set(3, "3@set".to_owned());
    assert_eq!(outcome, SetOutcome::NotStored(Invalidation::Queued));
    assert_eq!(shared_value(3), format!("3@{me}/v4"));
    assert_eq!(mine().flush_pending(Duration::from_secs(20)), 0);
    let seen = peer(&url, &["get", "3"]);
    assert_ne!(
        seen["value"],
        format!("3@{me}/v3"),
        "the other process read the value the failed set replaced"
    );
    // Once Redis answers again, set writes through.
    assert_eq!(shared_value::set(3, "3@set".to_owned()), SetOutcome::Stored);
    assert_eq!(peer(&url, &["get", "3"])["value"], "3@set");
}

static HIDDEN_MINE: OnceLock<Remote> = OnceLock::new();

fn hidden_mine() -> Remote {
    HIDDEN_MINE.get().expect("set by the test").clone()
}

static HIDDEN_ORIGIN: AtomicU64 = AtomicU64::new(1);
static HIDDEN_GATE: cachemere_tests::gate::Gate = cachemere_tests::gate::Gate::new();

#[cached(backend = "redis", remote = hidden_mine, name = "helpers-hidden")]
fn hidden(id: u64) -> u64 {
    let read = HIDDEN_ORIGIN.load(Ordering::SeqCst);
    HIDDEN_GATE.pass();
    read + id
}

/// While an invalidation of a key waits to reach Redis, its calls skip the store and share one
/// computation. A `set` then cannot be written (it is queued too); a caller that arrives after
/// it returned must not be handed the result of a computation that read the origin before it.
#[test]
fn a_set_while_an_invalidation_is_queued_is_not_undone_by_a_running_computation() {
    let server = RedisServer::start().unwrap();
    HIDDEN_MINE
        .set(
            RedisConfig::new(server.url())
                .prefix("helpers-hidden")
                .timeout(Duration::from_millis(100))
                .build()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(hidden(0), 1);
    server.pause(Duration::from_millis(3000)).unwrap();
    assert_eq!(hidden::invalidate(0), Invalidation::Queued);

    // A computation that skips the store reads version 1 and waits.
    let (started, go) = HIDDEN_GATE.arm();
    let older = std::thread::spawn(|| hidden(0));
    started.recv().unwrap();
    HIDDEN_ORIGIN.store(2, Ordering::SeqCst);
    assert_eq!(
        hidden::set(0, 2),
        SetOutcome::NotStored(Invalidation::Queued)
    );
    // A call after the set: it joins the running computation (the flight is not observable:
    // give it time to), which must not hand it version 1.
    let after = std::thread::spawn(|| hidden(0));
    std::thread::sleep(Duration::from_millis(300));
    go.send(()).unwrap();
    assert_eq!(older.join().unwrap(), 1);
    assert_eq!(
        after.join().unwrap(),
        2,
        "handed a value read before the set"
    );
}
