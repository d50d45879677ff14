//! Fault tests of the Redis backend against real `redis-server` processes: SIGKILL mid-loop and
//! restart, `CLIENT PAUSE`, garbage and wrong-typed values, error replies, a Redis that is never
//! reachable (refused, or accepting and never answering), sync and async functions inside tokio
//! runtimes of both flavors, two OS processes sharing entries and tag invalidations, a process
//! whose default remote cannot be configured, and a 3-master cluster.
//!
//! Every test starts its own server on a free loopback port and gives its functions their own
//! `Remote` (`remote = ..`) with a prefix of its own: the process default is never used here, as
//! tests run in parallel threads of one process. Note that `cachemere::invalidate_tag` reaches
//! every remote used in this process, so each test's tags are its own.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachemere::cached;
use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere_tests::redis_harness::{RedisCluster, RedisServer, Reply};

/// The budget of tests that assert exact hit counts: generous, so a loaded machine does not
/// turn a hit into a timed-out miss.
const RELAXED: Duration = Duration::from_secs(2);

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|error| panic!("could not start redis-server: {error}"))
}

fn remote_of(slot: &OnceLock<Remote>) -> Remote {
    slot.get()
        .expect("the test sets its remote before the first call")
        .clone()
}

/// A `static OnceLock<Remote>` set by one test, and the `fn() -> Remote` its functions name in
/// `remote = ..`.
macro_rules! remote_slot {
    ($slot:ident, $getter:ident) => {
        static $slot: OnceLock<Remote> = OnceLock::new();
        fn $getter() -> Remote {
            remote_of(&$slot)
        }
    };
}

fn runs(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------------
// 1. SIGKILL in the middle of a loop, then a restart on the same port.

remote_slot!(KILL_REMOTE, kill_remote);
static KILL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = kill_remote, name = "faults-kill")]
fn kill_times_ten(x: u64) -> u64 {
    KILL_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[test]
fn kill_9_mid_loop_every_call_answers_and_caching_resumes_after_restart() {
    let mut server = start_server();
    let remote = RedisConfig::new(server.url())
        .prefix("faults-kill")
        .timeout(Duration::from_millis(200))
        .circuit_breaker(3, Duration::from_millis(200))
        .build()
        .unwrap();
    KILL_REMOTE.set(remote).unwrap();

    // hits and errors at the start of each phase: up, killed, restarted
    let mut hits_at = Vec::new();
    let mut errors_at = Vec::new();
    let mut phase_started = Instant::now();
    let mut phase_times = Vec::new();
    for i in 0..300u64 {
        if i == 100 || i == 200 {
            phase_times.push(phase_started.elapsed());
            let info = kill_times_ten::cache_info();
            hits_at.push(info.hits);
            errors_at.push(info.errors);
            if i == 100 {
                server.kill().unwrap();
            } else {
                server.restart().unwrap();
            }
            phase_started = Instant::now();
        }
        let x = i % 10;
        assert_eq!(kill_times_ten(x), x * 10, "iteration {i}");
    }
    phase_times.push(phase_started.elapsed());
    let after_loop = kill_times_ten::cache_info();
    eprintln!(
        "kill: phase times {phase_times:?}; hits at 100/200/300: {:?}/{}; errors at 100/200/300: {:?}/{}; runs {}",
        hits_at,
        after_loop.hits,
        errors_at,
        after_loop.errors,
        runs(&KILL_RUNS)
    );
    assert!(hits_at[0] > 0, "the first 100 calls, server up, hit");
    assert_eq!(
        hits_at[1], hits_at[0],
        "nothing can hit while the server is dead"
    );
    assert!(after_loop.errors > 0, "the outage was counted");

    // Caching resumes in this process: poll until a call hits without running the function.
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(30);
    let mut attempts = 0;
    loop {
        let hits = kill_times_ten::cache_info().hits;
        let before = runs(&KILL_RUNS);
        assert_eq!(kill_times_ten(3), 30);
        attempts += 1;
        if kill_times_ten::cache_info().hits > hits && runs(&KILL_RUNS) == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no hit within 30 s of the restart ({attempts} attempts): {}",
            kill_times_ten::cache_info()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "kill: a hit {:?} after the loop ended ({attempts} poll attempts)",
        restarted.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. CLIENT PAUSE: calls do not wait for the pause.

remote_slot!(PAUSE_REMOTE, pause_remote);
static PAUSE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = pause_remote, name = "faults-pause")]
fn paused_times_ten(x: u64) -> u64 {
    PAUSE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[test]
fn client_pause_does_not_hold_calls() {
    let server = start_server();
    let remote = RedisConfig::new(server.url())
        .prefix("faults-pause")
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    PAUSE_REMOTE.set(remote).unwrap();

    assert_eq!(paused_times_ten(1), 10);
    assert_eq!(paused_times_ten(1), 10);
    assert_eq!(runs(&PAUSE_RUNS), 1, "key 1 is warm");
    let warm = paused_times_ten::cache_info();
    assert_eq!(warm.hits, 1);

    let pause = Duration::from_secs(5);
    server.pause(pause).unwrap();
    let paused_at = Instant::now();
    let mut elapsed = Vec::new();
    for x in [2, 3, 4, 5, 6, 1] {
        let started = Instant::now();
        assert_eq!(paused_times_ten(x), x * 10);
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "call {x} took {took:?} during a {pause:?} pause"
        );
        elapsed.push(took);
    }
    let window = paused_at.elapsed();
    let info = paused_times_ten::cache_info();
    eprintln!(
        "pause: per-call {elapsed:?}, all six in {window:?}; runs {}; {info}",
        runs(&PAUSE_RUNS)
    );
    if window < pause - Duration::from_millis(500) {
        // Every call fell inside the pause: none could read Redis, so each ran the function.
        assert_eq!(runs(&PAUSE_RUNS), 7, "the warm key too was recomputed");
        assert_eq!(info.hits, warm.hits, "no hit during the pause");
    }
    assert!(info.errors >= 1, "the timeouts were counted: {info}");
}

// ---------------------------------------------------------------------------------------------
// 3. Garbage bytes, a wrong type at the key, and error replies.

remote_slot!(GARBAGE_REMOTE, garbage_remote);
static GARBAGE_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = garbage_remote, name = "faults-garbage")]
fn garbage_times_ten(x: u64) -> u64 {
    GARBAGE_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

#[test]
fn garbage_wrong_types_and_error_replies_are_misses_not_failures() {
    let server = start_server();
    let remote = RedisConfig::new(server.url())
        .prefix("faults")
        .timeout(RELAXED)
        // The refused writes below must not open the circuit (other tests' `invalidate_tag`
        // calls reach this server too and could add to the count).
        .circuit_breaker(100, Duration::from_secs(1))
        .build()
        .unwrap();
    GARBAGE_REMOTE.set(remote).unwrap();
    let key = "faults:faults-garbage:v1:5";

    assert_eq!(garbage_times_ten(5), 50);
    assert_eq!(runs(&GARBAGE_RUNS), 1);
    assert!(
        matches!(server.command(&["GET", key]).unwrap(), Reply::Bulk(Some(_))),
        "the entry is at {key}"
    );

    // Garbage bytes: a miss and one error, then overwritten.
    let errors = garbage_times_ten::cache_info().errors;
    assert_eq!(
        server
            .command_bytes(&[b"SET", key.as_bytes(), b"\xff\x00garbage"])
            .unwrap(),
        Reply::Status("OK".into())
    );
    assert_eq!(garbage_times_ten(5), 50);
    assert_eq!(
        runs(&GARBAGE_RUNS),
        2,
        "a value that does not decode is a miss"
    );
    assert_eq!(
        garbage_times_ten::cache_info().errors,
        errors + 1,
        "and one error"
    );
    assert_ne!(
        server.command(&["GET", key]).unwrap(),
        Reply::Bulk(Some(b"\xff\x00garbage".to_vec())),
        "the garbage was overwritten"
    );
    let hits = garbage_times_ten::cache_info().hits;
    assert_eq!(garbage_times_ten(5), 50);
    assert_eq!(runs(&GARBAGE_RUNS), 2, "rewritten: a hit");
    assert_eq!(garbage_times_ten::cache_info().hits, hits + 1);

    // A list where the value should be.
    assert_eq!(server.command(&["DEL", key]).unwrap(), Reply::Integer(1));
    assert_eq!(
        server.command(&["LPUSH", key, "x"]).unwrap(),
        Reply::Integer(1)
    );
    assert_eq!(garbage_times_ten(5), 50, "a wrong type is not a panic");
    assert_eq!(runs(&GARBAGE_RUNS), 3, "nor a hit");
    assert_eq!(garbage_times_ten(5), 50);
    assert_eq!(runs(&GARBAGE_RUNS), 3, "SET replaced the list: a hit");
    let errors = garbage_times_ten::cache_info().errors;

    // Error replies: with maxmemory 1 byte and noeviction, every SET answers -OOM.
    let set_config = |value: &str| {
        assert_eq!(
            server
                .command(&["CONFIG", "SET", "maxmemory", value])
                .unwrap(),
            Reply::Status("OK".into())
        );
    };
    assert_eq!(
        server
            .command(&["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            .unwrap(),
        Reply::Status("OK".into())
    );
    set_config("1");
    assert!(
        matches!(server.command(&["SET", "probe", "x"]).unwrap(), Reply::Error(e) if e.starts_with("OOM")),
        "the server refuses writes"
    );
    assert_eq!(garbage_times_ten(6), 60);
    assert_eq!(garbage_times_ten(6), 60);
    assert_eq!(runs(&GARBAGE_RUNS), 5, "nothing could be stored: both ran");
    let oom_errors = garbage_times_ten::cache_info().errors;
    assert_eq!(oom_errors, errors + 2, "each refused SET is one error");
    set_config("0");
    assert_eq!(garbage_times_ten(6), 60);
    assert_eq!(garbage_times_ten(6), 60);
    assert_eq!(
        runs(&GARBAGE_RUNS),
        6,
        "stored again once writes are accepted"
    );
    eprintln!("garbage: {}", garbage_times_ten::cache_info());
}

// ---------------------------------------------------------------------------------------------
// 4. A Redis that is never reachable: refused, or accepting connections and never answering.

remote_slot!(REFUSED_REMOTE, refused_remote);
static REFUSED_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = refused_remote, name = "faults-refused")]
fn refused_times_ten(x: u64) -> u64 {
    REFUSED_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

remote_slot!(SILENT_REMOTE, silent_remote);
static SILENT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = silent_remote, name = "faults-silent")]
fn silent_times_ten(x: u64) -> u64 {
    SILENT_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 10
}

/// 50 calls over 10 keys; returns how long each took.
fn fifty_calls(f: fn(u64) -> u64) -> Vec<Duration> {
    (0..50u64)
        .map(|i| {
            let started = Instant::now();
            assert_eq!(f(i % 10), (i % 10) * 10, "call {i}");
            started.elapsed()
        })
        .collect()
}

#[test]
fn a_redis_never_reachable_costs_little_once_the_breaker_opens() {
    // Operation budget 500 ms; the breaker opens after 3 failures for far longer than the test.
    let timeout = Duration::from_millis(500);
    let breaker = (3, Duration::from_secs(60));

    // Refused: a port whose listener is closed.
    let closed_port = {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.local_addr().unwrap().port()
    };
    let remote = RedisConfig::new(format!("redis://127.0.0.1:{closed_port}"))
        .prefix("faults-refused")
        .timeout(timeout)
        .circuit_breaker(breaker.0, breaker.1)
        .build()
        .unwrap();
    REFUSED_REMOTE.set(remote).unwrap();
    let refused = fifty_calls(refused_times_ten);
    let refused_total: Duration = refused.iter().sum();
    let refused_info = refused_times_ten::cache_info();
    eprintln!(
        "refused: 50 calls in {refused_total:?} (slowest {:?}); runs {}; {refused_info}",
        refused.iter().max().unwrap(),
        runs(&REFUSED_RUNS)
    );
    assert_eq!(runs(&REFUSED_RUNS), 50, "nothing is cached: every call ran");
    assert!(refused_info.errors >= 1);
    assert!(refused_total < Duration::from_secs(10), "{refused_total:?}");

    // Silent: a listener that never accepts; the kernel completes the handshake, nobody ever
    // answers, so every operation that is sent costs the whole 500 ms budget. Without the
    // breaker 50 calls would take at least 25 s; with it, only the first 3 wait.
    let silent = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let remote = RedisConfig::new(format!("redis://127.0.0.1:{silent_port}"))
        .prefix("faults-silent")
        .timeout(timeout)
        .circuit_breaker(breaker.0, breaker.1)
        .build()
        .unwrap();
    SILENT_REMOTE.set(remote).unwrap();
    let silent_calls = fifty_calls(silent_times_ten);
    let silent_total: Duration = silent_calls.iter().sum();
    let silent_info = silent_times_ten::cache_info();
    eprintln!(
        "silent: 50 calls in {silent_total:?}; first five {:?}; slowest of the last 40 {:?}; runs {}; {silent_info}",
        &silent_calls[..5],
        silent_calls[10..].iter().max().unwrap(),
        runs(&SILENT_RUNS)
    );
    assert_eq!(runs(&SILENT_RUNS), 50);
    assert!(silent_info.errors >= 3, "{silent_info}");
    // Other tests' `invalidate_tag` calls reach this remote too and may count towards the
    // threshold, so only bounds are asserted: the first call waited, at most 3 did.
    let waited = silent_calls
        .iter()
        .filter(|took| **took >= timeout / 2)
        .count();
    assert!(
        silent_calls[0] >= timeout / 2 && waited <= 3,
        "{waited} calls waited for the silent server: {silent_calls:?}"
    );
    assert!(
        silent_total < Duration::from_secs(10),
        "the breaker did not cut the waits: {silent_total:?}"
    );
    drop(silent);
}

// ---------------------------------------------------------------------------------------------
// 5. Sync and async functions called from inside tokio runtimes of both flavors.

macro_rules! inside_tokio {
    ($module:ident, $flavor:literal) => {
        mod $module {
            use super::*;

            const LABEL: &str = stringify!($module);

            remote_slot!(SYNC_REMOTE, sync_remote);
            static SYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

            #[cached(backend = "redis", remote = sync_remote, tags = ["tokio:{label}:{x}"])]
            fn sync_times_ten(label: &str, x: u64) -> u64 {
                let _ = label;
                SYNC_RUNS.fetch_add(1, Ordering::SeqCst);
                x * 10
            }

            #[tokio::test(flavor = $flavor)]
            async fn a_sync_function_and_invalidate_tag_work_inside_the_runtime() {
                let server = start_server();
                let remote = RedisConfig::new(server.url())
                    .prefix(format!("faults-{LABEL}-sync"))
                    .timeout(RELAXED)
                    .build()
                    .unwrap();
                SYNC_REMOTE.set(remote).unwrap();

                assert_eq!(sync_times_ten(LABEL, 4), 40);
                assert_eq!(sync_times_ten(LABEL, 4), 40);
                assert_eq!(runs(&SYNC_RUNS), 1, "the second call is a hit");
                assert_eq!(sync_times_ten::cache_info().hits, 1);

                cachemere::invalidate_tag(&format!("tokio:{LABEL}:4"));
                assert_eq!(sync_times_ten(LABEL, 4), 40);
                assert_eq!(runs(&SYNC_RUNS), 2, "invalidated by its tag");
                assert_eq!(sync_times_ten(LABEL, 4), 40);
                assert_eq!(runs(&SYNC_RUNS), 2);
                assert!(sync_times_ten::invalidate(LABEL, 4).removed());
                assert_eq!(sync_times_ten::cache_info().errors, 0);
            }

            remote_slot!(ASYNC_REMOTE, async_remote);
            static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

            #[cached(backend = "redis", remote = async_remote, tags = ["tokio-async:{label}:{x}"])]
            async fn async_times_ten(label: &str, x: u64) -> u64 {
                let _ = label;
                ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
                ::tokio::task::yield_now().await;
                x * 10
            }

            #[tokio::test(flavor = $flavor)]
            async fn an_async_function_works_inside_the_runtime() {
                let server = start_server();
                let remote = RedisConfig::new(server.url())
                    .prefix(format!("faults-{LABEL}-async"))
                    .timeout(RELAXED)
                    .build()
                    .unwrap();
                ASYNC_REMOTE.set(remote).unwrap();

                assert_eq!(async_times_ten(LABEL, 4).await, 40);
                assert_eq!(async_times_ten(LABEL, 4).await, 40);
                assert_eq!(runs(&ASYNC_RUNS), 1, "the second call is a hit");
                assert_eq!(async_times_ten::cache_info().hits, 1);

                cachemere::invalidate_tag_async(&format!("tokio-async:{LABEL}:4")).await;
                assert_eq!(async_times_ten(LABEL, 4).await, 40);
                assert_eq!(runs(&ASYNC_RUNS), 2, "invalidated by its tag");
                assert_eq!(async_times_ten(LABEL, 4).await, 40);
                assert_eq!(runs(&ASYNC_RUNS), 2);
                assert_eq!(async_times_ten::cache_info().errors, 0);

                async_times_ten::cache_clear().await;
                let info = async_times_ten::cache_info();
                assert_eq!((info.hits, info.misses, info.errors), (0, 0, 0));
                assert_eq!(async_times_ten(LABEL, 4).await, 40);
                assert_eq!(runs(&ASYNC_RUNS), 3, "a clear hides the entry");
                assert!(async_times_ten::invalidate(LABEL, 4).await.removed());
                assert!(
                    !async_times_ten::invalidate(LABEL, 4).await.removed(),
                    "already gone"
                );
            }
        }
    };
}

inside_tokio!(current_thread, "current_thread");
inside_tokio!(multi_thread, "multi_thread");

// ---------------------------------------------------------------------------------------------
// 6. Two OS processes: shared entries, tag invalidations both ways, an unusable default.

remote_slot!(SHARED_REMOTE, shared_remote);
static SHARED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The same function as `remote_peer`'s: the value names the process that computed it.
#[cached(backend = "redis", remote = shared_remote, name = "faults-shared", tags = ["shared-item:{id}"])]
fn shared_value(id: u64) -> String {
    SHARED_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{id}@{}", std::process::id())
}

/// Runs the peer binary; returns its stdout lines as `key=value` maps.
fn peer(args: &[&str], env: &[(&str, &str)]) -> Vec<HashMap<String, String>> {
    cachemere_tests::peer::run(env!("CARGO_BIN_EXE_remote_peer"), args, env)
}

fn field<'a>(line: &'a HashMap<String, String>, name: &str) -> &'a str {
    line.get(name)
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

fn peer_get(url: &str, id: u64) -> HashMap<String, String> {
    let mut lines = peer(&[url, "get", &id.to_string()], &[]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.remove(0)
}

#[test]
fn two_processes_share_entries_and_tag_invalidations() {
    let server = start_server();
    let url = server.url();
    let remote = RedisConfig::new(&url)
        .prefix("faults-shared")
        .timeout(RELAXED)
        .build()
        .unwrap();
    SHARED_REMOTE.set(remote).unwrap();
    let here = format!("7@{}", std::process::id());

    assert_eq!(shared_value(7), here);
    assert_eq!(runs(&SHARED_RUNS), 1);

    let read = peer_get(&url, 7);
    assert_eq!(
        field(&read, "value"),
        here,
        "the peer read this process's entry"
    );
    assert_eq!(
        (field(&read, "hits"), field(&read, "misses")),
        ("1", "0"),
        "{read:?}"
    );
    assert_ne!(field(&read, "pid"), std::process::id().to_string());

    // The peer invalidates the tag: this process misses.
    let done = peer(&[&url, "invalidate-tag", "shared-item:7"], &[]);
    assert_eq!(field(&done[0], "invalidated"), "shared-item:7");
    assert_eq!(shared_value(7), here);
    assert_eq!(
        runs(&SHARED_RUNS),
        2,
        "the peer's invalidation reached this process"
    );
    assert_eq!(shared_value(7), here);
    assert_eq!(runs(&SHARED_RUNS), 2, "stored again: a hit");

    // This process invalidates the tag: the peer misses and computes its own value.
    cachemere::invalidate_tag("shared-item:7");
    let read = peer_get(&url, 7);
    let peer_value = format!("7@{}", field(&read, "pid"));
    assert_eq!(
        (field(&read, "hits"), field(&read, "misses")),
        ("0", "1"),
        "{read:?}"
    );
    assert_eq!(field(&read, "value"), peer_value, "the peer computed it");

    // And this process now reads the peer's value.
    assert_eq!(shared_value(7), peer_value);
    assert_eq!(runs(&SHARED_RUNS), 2, "a hit on the peer's entry");
    assert_eq!(shared_value::cache_info().errors, 0);
}

#[test]
fn an_unusable_default_configuration_is_an_error_on_every_call() {
    let lines = peer(
        &["-", "unconfigured"],
        &[("CACHEMERE_REDIS_URL", "not a url")],
    );
    eprintln!("unconfigured peer: {lines:?}");
    assert_eq!(lines.len(), 4, "{lines:?}");
    let values: Vec<&str> = lines[..3].iter().map(|line| field(line, "value")).collect();
    assert_eq!(values, ["3", "6", "9"]);
    let errors: u64 = field(&lines[3], "errors").parse().unwrap();
    assert!(
        errors >= 3,
        "the configuration failure is counted on every call: {lines:?}"
    );
    assert_eq!(field(&lines[3], "hits"), "0");
}

// ---------------------------------------------------------------------------------------------
// 7. A 3-master cluster: entries spread over slots, tags that hide one entry or all.

remote_slot!(CLUSTER_REMOTE, cluster_remote);
static CLUSTER_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = cluster_remote, name = "faults-cluster", tags = ["cluster-all", "cluster-item:{id}"])]
fn clustered(id: u64) -> u64 {
    CLUSTER_RUNS.fetch_add(1, Ordering::SeqCst);
    id * 10
}

#[test]
fn a_cluster_serves_hits_across_slots_and_tags_hide_what_they_name() {
    let cluster = RedisCluster::start()
        .unwrap_or_else(|error| panic!("could not start a Redis Cluster: {error}"));
    let remote = RedisConfig::cluster(cluster.urls())
        .prefix("faults-cluster")
        .timeout(RELAXED)
        .build()
        .unwrap();
    CLUSTER_REMOTE.set(remote).unwrap();
    let all = |expected_runs: usize, why: &str| {
        for id in 0..50 {
            assert_eq!(clustered(id), id * 10);
        }
        assert_eq!(runs(&CLUSTER_RUNS), expected_runs, "{why}");
    };

    all(50, "50 misses");
    all(50, "50 hits");
    let info = clustered::cache_info();
    assert_eq!((info.hits, info.misses, info.errors), (50, 50, 0), "{info}");
    assert_eq!(info.currsize, 50, "every node's keys are counted");
    let per_node: Vec<i64> = cluster
        .nodes()
        .iter()
        .map(|node| match node.command(&["DBSIZE"]).unwrap() {
            Reply::Integer(n) => n,
            other => panic!("DBSIZE answered {other:?}"),
        })
        .collect();
    eprintln!("cluster: keys per node {per_node:?}");
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "the entries spread over several nodes: {per_node:?}"
    );

    cachemere::invalidate_tag("cluster-item:7");
    all(51, "only the entry tagged cluster-item:7 missed");
    all(51, "and it was stored again");

    cachemere::invalidate_tag("cluster-all");
    all(101, "every entry is tagged cluster-all");
    all(101, "all stored again");
    assert_eq!(clustered::cache_info().errors, 0);
}
