//! "Invalidation is exact" on remote caches, problem by problem, against real `redis-server`
//! processes (and a real 3-master cluster) that the harness starts on free loopback ports:
//!
//! 1. a computation that read the data before `invalidate(args)` returned never gets its value
//!    served afterwards (sync and async; single node and cluster; in this process and through
//!    another connection, as another process would);
//! 2. invalidations that cannot reach Redis (`CLIENT PAUSE`, a killed connection, a stopped
//!    server) are queued, hidden locally meanwhile, and delivered, also to another OS process;
//! 3. after a kill -9 and a restart, the breaker's first probe succeeds (one cool-down);
//! 4. a hostile, deeply nested value is a miss, not a crash;
//! 5. the TTL counts from the computation's start;
//! 6. 300 tags hit, huge tags and arguments make short keys, a wrong-typed stamp heals, and
//!    timeouts print their duration.
//!
//! Each test has its own server (or cluster), remote and prefix; tags are the test's own, since
//! `invalidate_tag` reaches every remote used in the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use cachemere::redis::RedisConfig;
use cachemere::remote::{Circuit, Remote};
use cachemere::{Invalidation, cached};
use cachemere_tests::gate::Gate;
use cachemere_tests::redis_harness::{RedisCluster, RedisServer, Reply};

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|error| panic!("could not start redis-server: {error}"))
}

/// A remote on `urls` (one URL: single node; more: cluster) with `prefix`.
fn remote_on(urls: &[String], prefix: &str, timeout: Duration) -> Remote {
    let config = if urls.len() == 1 {
        RedisConfig::new(urls[0].clone())
    } else {
        RedisConfig::cluster(urls.to_vec())
    };
    config
        .prefix(prefix)
        .timeout(timeout)
        .circuit_breaker(3, Duration::from_millis(300))
        .build()
        .unwrap()
}

/// Long enough for a thread to reach the flight it joins (the flight is not observable).
const JOIN_TIME: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------------------------
// 1. The same-process race of the issue, and its cross-connection form.

/// Generates, in module `$module`, a sync and an async function over remote `$urls()` (two
/// views: `mine` through one remote, `theirs` through another connection, same name) and the
/// tests of the race.
macro_rules! resurrection_race {
    ($module:ident, $name:tt, $name_async:tt, $urls:expr) => {
        mod $module {
            use super::*;

            static MINE: OnceLock<Remote> = OnceLock::new();
            static THEIRS: OnceLock<Remote> = OnceLock::new();
            static SERVERS: OnceLock<Vec<String>> = OnceLock::new();

            fn urls() -> Vec<String> {
                SERVERS.get_or_init($urls).clone()
            }

            fn mine() -> Remote {
                MINE.get_or_init(|| remote_on(&urls(), "exact-race", RELAXED))
                    .clone()
            }

            fn theirs() -> Remote {
                THEIRS
                    .get_or_init(|| remote_on(&urls(), "exact-race", RELAXED))
                    .clone()
            }

            static DATA: [AtomicU64; 8] = [const { AtomicU64::new(1) }; 8];
            static GATE: Gate = Gate::new();
            static ASYNC_GATE: Gate = Gate::new();

            #[cached(backend = "redis", remote = mine, name = $name)]
            fn read(id: usize) -> u64 {
                let value = DATA[id].load(Ordering::SeqCst);
                GATE.pass();
                value
            }

            /// The same cache through another connection and another single flight.
            #[cached(backend = "redis", remote = theirs, name = $name)]
            fn read_elsewhere(id: usize) -> u64 {
                let value = DATA[id].load(Ordering::SeqCst);
                GATE.pass();
                value
            }

            #[cached(backend = "redis", remote = mine, name = $name_async)]
            async fn read_async(id: usize) -> u64 {
                let value = DATA[id].load(Ordering::SeqCst);
                tokio::task::block_in_place(|| ASYNC_GATE.pass());
                value
            }

            static SERIAL: Mutex<()> = Mutex::new(());

            #[test]
            fn a_value_computed_before_invalidate_is_never_served_after_it() {
                let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
                let id = 1;
                assert_eq!(read(id), 1);
                assert_eq!(read(id), 1, "a hit");
                DATA[id].store(2, Ordering::SeqCst);
                assert_eq!(read::invalidate(id), Invalidation::Removed);

                // A misses and reads the data (2), then waits.
                let (started, go) = GATE.arm();
                let leader = std::thread::spawn(move || read(id));
                started.recv().unwrap();
                // The data changes and is invalidated while A computes.
                DATA[id].store(3, Ordering::SeqCst);
                assert!(read::invalidate(id).reached_every_store());
                // B calls after the invalidation returned, and joins A's flight.
                let follower = std::thread::spawn(move || read(id));
                std::thread::sleep(JOIN_TIME);
                go.send(()).unwrap();
                assert_eq!(
                    leader.join().unwrap(),
                    2,
                    "its call began before the change"
                );
                assert_eq!(
                    follower.join().unwrap(),
                    3,
                    "B called after the invalidation"
                );
                assert_eq!(read(id), 3, "no value of A's in the store");
                assert_eq!(read_elsewhere(id), 3, "nor for another connection");
                assert_eq!(read::cache_info().errors, 0);
            }

            #[test]
            fn another_connections_computation_does_not_land_after_invalidate() {
                let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
                let id = 2;
                // The other view misses and reads the data (1), then waits.
                let (started, go) = GATE.arm();
                let elsewhere = std::thread::spawn(move || read_elsewhere(id));
                started.recv().unwrap();
                DATA[id].store(2, Ordering::SeqCst);
                assert!(read::invalidate(id).reached_every_store());
                go.send(()).unwrap();
                assert_eq!(elsewhere.join().unwrap(), 1);
                assert_eq!(
                    read(id),
                    2,
                    "its populate found the tombstone and wrote nothing"
                );
                assert_eq!(read_elsewhere(id), 2);
                assert_eq!(read(id), 2);
            }

            #[test]
            fn the_async_race_too() {
                let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let id = 3;
                    assert_eq!(read_async(id).await, 1);
                    DATA[id].store(2, Ordering::SeqCst);
                    assert_eq!(read_async::invalidate(id).await, Invalidation::Removed);
                    // A misses (a tombstone), reads 2, then waits.
                    let (started, go) = ASYNC_GATE.arm();
                    let leader = tokio::spawn(read_async(id));
                    tokio::task::spawn_blocking(move || started.recv().unwrap())
                        .await
                        .unwrap();
                    DATA[id].store(3, Ordering::SeqCst);
                    assert!(read_async::invalidate(id).await.reached_every_store());
                    let follower = tokio::spawn(read_async(id));
                    tokio::time::sleep(JOIN_TIME).await;
                    go.send(()).unwrap();
                    assert_eq!(leader.await.unwrap(), 2);
                    assert_eq!(follower.await.unwrap(), 3);
                    assert_eq!(read_async(id).await, 3, "no old value in the store");
                });
            }

            #[test]
            fn the_async_race_on_a_miss() {
                let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let id = 4;
                    // A misses (nothing stored) and reads 1, then waits.
                    let (started, go) = ASYNC_GATE.arm();
                    let leader = tokio::spawn(read_async(id));
                    tokio::task::spawn_blocking(move || started.recv().unwrap())
                        .await
                        .unwrap();
                    DATA[id].store(2, Ordering::SeqCst);
                    assert!(read_async::invalidate(id).await.reached_every_store());
                    let follower = tokio::spawn(read_async(id));
                    tokio::time::sleep(JOIN_TIME).await;
                    go.send(()).unwrap();
                    assert_eq!(leader.await.unwrap(), 1);
                    assert_eq!(follower.await.unwrap(), 2);
                    assert_eq!(read_async(id).await, 2);
                    assert_eq!(read_async::cache_info().errors, 0);
                });
            }
        }
    };
}

/// Generous: these tests assert exact outcomes, not timings.
const RELAXED: Duration = Duration::from_secs(2);

resurrection_race!(
    single_node,
    "exact-race-single",
    "exact-race-async-single",
    || vec![start_server().shared_until_exit().url()]
);
resurrection_race!(
    cluster,
    "exact-race-cluster",
    "exact-race-async-cluster",
    || {
        RedisCluster::start()
            .unwrap_or_else(|error| panic!("could not start a cluster: {error}"))
            .shared_until_exit()
            .urls()
    }
);

// ---------------------------------------------------------------------------------------------
// 2. Invalidations that cannot reach Redis are queued, hidden locally, and delivered.

static PAUSE_SERVER: OnceLock<String> = OnceLock::new();
static PAUSE_MINE: OnceLock<Remote> = OnceLock::new();
static PAUSE_THEIRS: OnceLock<Remote> = OnceLock::new();

fn pause_mine() -> Remote {
    PAUSE_MINE.get().expect("set by the test").clone()
}

fn pause_theirs() -> Remote {
    PAUSE_THEIRS.get().expect("set by the test").clone()
}

static PAUSE_DATA: [AtomicU64; 4] = [const { AtomicU64::new(1) }; 4];

#[cached(backend = "redis", remote = pause_mine, name = "exact-pause", tags = ["exact-pause-item:{id}"])]
fn paused(id: usize) -> u64 {
    PAUSE_DATA[id].load(Ordering::SeqCst)
}

#[cached(backend = "redis", remote = pause_theirs, name = "exact-pause", tags = ["exact-pause-item:{id}"])]
fn paused_elsewhere(id: usize) -> u64 {
    PAUSE_DATA[id].load(Ordering::SeqCst)
}

#[test]
fn invalidations_during_client_pause_are_queued_hidden_and_delivered() {
    let server = start_server();
    PAUSE_SERVER.set(server.url()).unwrap();
    // Short timeouts for this process; the other view waits out the pause.
    PAUSE_MINE
        .set(remote_on(
            &[server.url()],
            "exact-pause",
            Duration::from_millis(100),
        ))
        .unwrap();
    PAUSE_THEIRS
        .set(remote_on(
            &[server.url()],
            "exact-pause",
            Duration::from_millis(100),
        ))
        .unwrap();
    for id in 0..3 {
        assert_eq!(paused(id), 1);
        assert_eq!(paused_elsewhere(id), 1, "shared");
    }

    server.pause(Duration::from_millis(1500)).unwrap();
    for data in &PAUSE_DATA {
        data.store(2, Ordering::SeqCst);
    }
    let by_tag = cachemere::invalidate_tag("exact-pause-item:0");
    let by_key = paused::invalidate(1);
    assert_eq!(by_tag, Invalidation::Queued);
    assert_eq!(by_key, Invalidation::Queued);
    let health = pause_mine().health();
    assert_eq!(health.pending_invalidations, 2, "{health:?}");
    assert!(!health.is_ready());
    assert_eq!(paused::cache_info().pending_invalidations, 2);
    // This process does not serve what they hide, even before Redis answers again: they are
    // not even read (no timed-out read is counted).
    let errors = paused::cache_info().errors;
    assert_eq!(paused(0), 2);
    assert_eq!(paused(1), 2);
    assert_eq!(paused::cache_info().errors, errors);

    // Delivered once Redis answers: the other view (another connection, its own queue) sees it.
    assert_eq!(pause_mine().flush_pending(Duration::from_secs(20)), 0);
    assert_eq!(pause_theirs().flush_pending(Duration::from_secs(20)), 0);
    // (The other view queued the tag too; the tombstone was queued by this view only.)
    assert_eq!(paused_elsewhere(0), 2, "the queued tag invalidation landed");
    assert_eq!(paused_elsewhere(1), 2, "the queued tombstone landed");
    assert_eq!(paused_elsewhere(2), 1, "nothing else was hidden");
    assert_eq!(paused(0), 2);
    assert_eq!(paused(1), 2);
}

static KILLED_MINE: OnceLock<Remote> = OnceLock::new();

fn killed_mine() -> Remote {
    KILLED_MINE.get().expect("set by the test").clone()
}

static KILLED_DATA: [AtomicU64; 4] = [const { AtomicU64::new(1) }; 4];

#[cached(backend = "redis", remote = killed_mine, name = "exact-killed", tags = ["exact-killed-item:{id}"])]
async fn killed(id: usize) -> u64 {
    KILLED_DATA[id].load(Ordering::SeqCst)
}

/// Another client's `CLIENT KILL TYPE normal` drops this process's connections while the server
/// keeps its data: the next invalidations retry on a fresh connection instead of failing.
#[test]
fn invalidations_after_client_kill_land() {
    let server = start_server();
    KILLED_MINE
        .set(remote_on(&[server.url()], "exact-killed", RELAXED))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for round in 0..3 {
            for id in 0..3 {
                killed(id).await;
            }
            for data in &KILLED_DATA {
                data.fetch_add(1, Ordering::SeqCst);
            }
            let expected = round + 2;
            let kill = server
                .command(&["CLIENT", "KILL", "TYPE", "normal"])
                .unwrap();
            assert!(matches!(kill, Reply::Integer(n) if n >= 1), "{kill:?}");
            let outcome = match round % 3 {
                // (The remote's own call: `cachemere::invalidate_tag_async` also reaches the
                // remotes of this file's other tests, some of them down on purpose.)
                0 => {
                    killed_mine()
                        .invalidate_tag_async("exact-killed-item:0")
                        .await
                }
                1 => killed::invalidate(0).await,
                _ => killed::cache_clear().await,
            };
            assert!(outcome.reached_every_store(), "round {round}: {outcome:?}");
            assert_eq!(killed(0).await, expected, "round {round}");
        }
    });
}

// Two OS processes: an invalidation made by the peer during an outage reaches this process.

static SHARED_MINE: OnceLock<Remote> = OnceLock::new();

fn shared_mine() -> Remote {
    SHARED_MINE.get().expect("set by the test").clone()
}

static SHARED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The same function as `remote_peer`'s.
#[cached(backend = "redis", remote = shared_mine, name = "faults-shared", tags = ["shared-item:{id}"])]
fn shared_value(id: u64) -> String {
    SHARED_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{id}@{}", std::process::id())
}

fn peer(args: &[&str]) -> HashMap<String, String> {
    cachemere_tests::peer::run_merged(env!("CARGO_BIN_EXE_remote_peer"), args)
}

#[test]
fn another_process_invalidating_during_an_outage_is_seen_after_recovery() {
    let server = start_server();
    SHARED_MINE
        .set(
            RedisConfig::new(server.url())
                .prefix("faults-shared")
                .timeout(RELAXED)
                .build()
                .unwrap(),
        )
        .unwrap();
    let here = format!("9@{}", std::process::id());
    assert_eq!(shared_value(9), here);
    assert_eq!(shared_value(9), here);
    assert_eq!(SHARED_RUNS.load(Ordering::SeqCst), 1);

    server.pause(Duration::from_millis(1500)).unwrap();
    // The peer's invalidation times out (100 ms), is queued, and the peer waits for delivery.
    let done = peer(&[&server.url(), "invalidate-tag-and-flush", "shared-item:9"]);
    assert_eq!(done["outcome"], "queued", "{done:?}");
    assert_eq!(
        done["left"], "0",
        "delivered before the peer exited: {done:?}"
    );

    assert_eq!(shared_value(9), here);
    assert_eq!(
        SHARED_RUNS.load(Ordering::SeqCst),
        2,
        "the peer's invalidation reached this process"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Recovery within one cool-down after kill -9 and a restart.

static RECOVER_MINE: OnceLock<Remote> = OnceLock::new();

fn recover_mine() -> Remote {
    RECOVER_MINE.get().expect("set by the test").clone()
}

#[cached(backend = "redis", remote = recover_mine, name = "exact-recover")]
fn recovering(x: u64) -> u64 {
    x + 1
}

/// The breaker's cool-down in the recovery tests.
const COOL_DOWN: Duration = Duration::from_millis(500);

/// Kills the store (`kill`), checks that calls answer and the circuit opens, restarts it
/// (`restart`), waits out the cool-down, and checks that the first call (the probe) succeeds
/// and closes the circuit, and that caching resumes. On a stale connection the probe used to
/// fail once more and reopen the circuit for a second cool-down.
fn first_probe_after_restart_closes_the_breaker(
    remote: fn() -> Remote,
    call: fn(u64) -> u64,
    info: fn() -> cachemere::CacheInfo,
    kill: impl FnOnce(),
    restart: impl FnOnce(),
) {
    assert_eq!(call(1), 2);
    assert_eq!(call(1), 2);
    kill();
    for _ in 0..5 {
        assert_eq!(call(1), 2, "every call answers");
    }
    assert!(
        matches!(remote().health().circuit, Circuit::Open { .. }),
        "{:?}",
        remote().health()
    );
    restart();
    std::thread::sleep(COOL_DOWN + Duration::from_millis(100));
    let errors = info().errors;
    assert_eq!(call(1), 2);
    let health = remote().health();
    assert_eq!(health.circuit, Circuit::Closed, "{health:?}");
    assert_eq!(info().errors, errors, "the probe succeeded");
    let hits = info().hits;
    assert_eq!(call(1), 2);
    assert_eq!(info().hits, hits + 1, "caching resumed");
}

#[test]
fn after_a_restart_the_first_probe_closes_the_breaker() {
    let server = std::cell::RefCell::new(start_server());
    RECOVER_MINE
        .set(
            RedisConfig::new(server.borrow().url())
                .prefix("exact-recover")
                .timeout(Duration::from_millis(200))
                .circuit_breaker(2, COOL_DOWN)
                .build()
                .unwrap(),
        )
        .unwrap();
    first_probe_after_restart_closes_the_breaker(
        recover_mine,
        recovering,
        recovering::cache_info,
        || server.borrow_mut().kill().unwrap(),
        || server.borrow_mut().restart().unwrap(),
    );
}

static CLUSTER_RECOVER: OnceLock<Remote> = OnceLock::new();

fn cluster_recover() -> Remote {
    CLUSTER_RECOVER.get().expect("set by the test").clone()
}

#[cached(backend = "redis", remote = cluster_recover, name = "exact-cluster-recover")]
fn cluster_recovering(x: u64) -> u64 {
    x + 1
}

#[test]
fn after_a_cluster_node_restarts_the_first_probe_closes_the_breaker() {
    let cluster = std::cell::RefCell::new(
        RedisCluster::start().unwrap_or_else(|error| panic!("could not start a cluster: {error}")),
    );
    CLUSTER_RECOVER
        .set(
            RedisConfig::cluster(cluster.borrow().urls())
                .prefix("exact-cluster-recover")
                .timeout(Duration::from_millis(300))
                .circuit_breaker(2, COOL_DOWN)
                .build()
                .unwrap(),
        )
        .unwrap();
    // Every node: whichever holds the entry's and the stamps' slots.
    first_probe_after_restart_closes_the_breaker(
        cluster_recover,
        cluster_recovering,
        cluster_recovering::cache_info,
        || {
            for node in cluster.borrow_mut().nodes_mut() {
                node.kill().unwrap();
            }
        },
        || {
            let mut cluster = cluster.borrow_mut();
            for node in cluster.nodes_mut() {
                node.restart().unwrap();
            }
            cluster.wait_ok().unwrap();
        },
    );
}

// A restart that restores older data: the invalidations acknowledged after the last snapshot
// are gone from the server, so every entry written before the restart is hidden.

static SNAPSHOT_MINE: OnceLock<Remote> = OnceLock::new();

fn snapshot_mine() -> Remote {
    SNAPSHOT_MINE.get().expect("set by the test").clone()
}

static SNAPSHOT_DATA: AtomicU64 = AtomicU64::new(1);

#[cached(backend = "redis", remote = snapshot_mine, name = "exact-snapshot", tags = ["exact-snapshot-tag"])]
fn snapshotted(x: u64) -> u64 {
    x * 100 + SNAPSHOT_DATA.load(Ordering::SeqCst)
}

#[test]
fn a_restart_from_an_older_snapshot_hides_what_it_brings_back() {
    let mut server = RedisServer::start_snapshotting()
        .unwrap_or_else(|error| panic!("could not start redis-server: {error}"));
    SNAPSHOT_MINE
        .set(remote_on(&[server.url()], "exact-snapshot", RELAXED))
        .unwrap();
    assert_eq!(snapshotted(1), 101);
    assert_eq!(snapshotted(1), 101, "a hit");
    assert_eq!(
        server.command(&["SAVE"]).unwrap(),
        Reply::Status("OK".into())
    );
    // Acknowledged, but after the snapshot: lost in the crash.
    SNAPSHOT_DATA.store(2, Ordering::SeqCst);
    assert_eq!(
        snapshot_mine().invalidate_tag("exact-snapshot-tag"),
        Invalidation::Applied
    );
    assert_eq!(snapshotted(1), 102);
    server.kill().unwrap();
    server.restart().unwrap();
    let restored = server
        .command(&["EXISTS", "exact-snapshot:exact-snapshot:v1:1"])
        .unwrap();
    assert_eq!(
        restored,
        Reply::Integer(1),
        "the snapshot brought the old entry back"
    );
    assert_eq!(
        snapshotted(1),
        102,
        "the entry of the snapshot is not served"
    );
    assert_eq!(snapshotted(1), 102);
    assert_eq!(snapshotted::cache_info().hits, 2, "caching goes on");
}

// ---------------------------------------------------------------------------------------------
// 4. A hostile value: validly framed, nested 100,000 levels deep.

/// A recursive type, as a user's tree or JSON-like value would be.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

static HOSTILE_MINE: OnceLock<Remote> = OnceLock::new();

fn hostile_mine() -> Remote {
    HOSTILE_MINE.get().expect("set by the test").clone()
}

#[cached(backend = "redis", remote = hostile_mine, name = "exact-hostile")]
fn tree(depth: u32) -> Tree {
    (0..depth).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
}

#[cached(backend = "redis", remote = hostile_mine, name = "exact-hostile-async")]
async fn tree_async(depth: u32) -> Tree {
    (0..depth).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
}

/// The stored frame at `key` with its payload replaced by `payload`: the header and stamps
/// (current, so the payload is decoded) are kept.
fn with_payload(server: &RedisServer, key: &str, payload: &[u8]) -> Vec<u8> {
    let Reply::Bulk(Some(stored)) = server.command(&["GET", key]).unwrap() else {
        panic!("no entry at {key}");
    };
    // Token (20 bytes), the freshness deadline (8), a u16 stamp count, 8 bytes per stamp.
    let stamps = usize::from(u16::from_le_bytes([stored[28], stored[29]]));
    let mut frame = stored[..30 + 8 * stamps].to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn a_deeply_nested_value_is_a_miss_not_a_crash() {
    let server = start_server();
    HOSTILE_MINE
        .set(remote_on(&[server.url()], "exact-hostile", RELAXED))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let three = Tree::Node(Box::new(Tree::Node(Box::new(Tree::Node(Box::new(
        Tree::Leaf,
    ))))));
    assert_eq!(tree(3), three);
    assert_eq!(runtime.block_on(tree_async(3)), three);
    // postcard: variant 1 (Node) 100,000 times, then variant 0 (Leaf), behind current stamps.
    let mut deep = vec![1_u8; 100_000];
    deep.push(0);
    for key in [
        "exact-hostile:exact-hostile:v1:3",
        "exact-hostile:exact-hostile-async:v1:3",
    ] {
        let hostile = with_payload(&server, key, &deep);
        server
            .command_bytes(&[b"SET", key.as_bytes(), &hostile])
            .unwrap();
    }
    let errors = tree::cache_info().errors;
    assert_eq!(tree(3), three, "computed, on the test thread");
    assert_eq!(
        tree::cache_info().errors,
        errors + 1,
        "{}",
        tree::cache_info()
    );
    assert_eq!(tree(3), three, "the hostile value was overwritten: a hit");
    let errors = tree_async::cache_info().errors;
    let value = runtime.block_on(async { tokio::spawn(tree_async(3)).await.unwrap() });
    assert_eq!(value, three, "computed, on a tokio worker");
    assert_eq!(tree_async::cache_info().errors, errors + 1);
}

// ---------------------------------------------------------------------------------------------
// 5. The TTL counts from the computation's start.

static TTL_MINE: OnceLock<Remote> = OnceLock::new();

fn ttl_mine() -> Remote {
    TTL_MINE.get().expect("set by the test").clone()
}

static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = ttl_mine, name = "exact-ttl", ttl = "3s")]
fn slow(x: u64) -> u64 {
    SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(if x == 0 { 4000 } else { 1500 }));
    x
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    match server.command(&["PTTL", key]).unwrap() {
        Reply::Integer(ms) => ms,
        other => panic!("PTTL answered {other:?}"),
    }
}

#[test]
fn the_remote_ttl_counts_from_the_computations_start() {
    let server = start_server();
    TTL_MINE
        .set(remote_on(&[server.url()], "exact-ttl", RELAXED))
        .unwrap();
    assert_eq!(slow(1), 1);
    let left = pttl(&server, "exact-ttl:exact-ttl:v1:1");
    // 3 s from the start of a 1.5 s computation: at most 1.5 s left (3 s if counted from SET).
    assert!((1..=1600).contains(&left), "PTTL {left} ms");

    // A computation longer than the TTL leaves nothing to serve.
    assert_eq!(slow(0), 0);
    assert_eq!(slow(0), 0);
    assert_eq!(
        SLOW_RUNS.load(Ordering::SeqCst),
        3,
        "expired before it was written"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Smaller ones.

static SMALL_MINE: OnceLock<Remote> = OnceLock::new();
static SMALL_SERVER: OnceLock<&'static RedisServer> = OnceLock::new();

fn small_server() -> &'static RedisServer {
    SMALL_SERVER.get_or_init(|| start_server().shared_until_exit())
}

fn small_mine() -> Remote {
    SMALL_MINE
        .get_or_init(|| remote_on(&[small_server().url()], "exact-small", RELAXED))
        .clone()
}

/// 300 tags: more than a frame's stamp count held before (255).
#[cached(backend = "redis", remote = small_mine, name = "exact-many", tags = ["exact-many-0", "exact-many-1", "exact-many-2", "exact-many-3", "exact-many-4", "exact-many-5", "exact-many-6", "exact-many-7", "exact-many-8", "exact-many-9", "exact-many-10", "exact-many-11", "exact-many-12", "exact-many-13", "exact-many-14", "exact-many-15", "exact-many-16", "exact-many-17", "exact-many-18", "exact-many-19", "exact-many-20", "exact-many-21", "exact-many-22", "exact-many-23", "exact-many-24", "exact-many-25", "exact-many-26", "exact-many-27", "exact-many-28", "exact-many-29", "exact-many-30", "exact-many-31", "exact-many-32", "exact-many-33", "exact-many-34", "exact-many-35", "exact-many-36", "exact-many-37", "exact-many-38", "exact-many-39", "exact-many-40", "exact-many-41", "exact-many-42", "exact-many-43", "exact-many-44", "exact-many-45", "exact-many-46", "exact-many-47", "exact-many-48", "exact-many-49", "exact-many-50", "exact-many-51", "exact-many-52", "exact-many-53", "exact-many-54", "exact-many-55", "exact-many-56", "exact-many-57", "exact-many-58", "exact-many-59", "exact-many-60", "exact-many-61", "exact-many-62", "exact-many-63", "exact-many-64", "exact-many-65", "exact-many-66", "exact-many-67", "exact-many-68", "exact-many-69", "exact-many-70", "exact-many-71", "exact-many-72", "exact-many-73", "exact-many-74", "exact-many-75", "exact-many-76", "exact-many-77", "exact-many-78", "exact-many-79", "exact-many-80", "exact-many-81", "exact-many-82", "exact-many-83", "exact-many-84", "exact-many-85", "exact-many-86", "exact-many-87", "exact-many-88", "exact-many-89", "exact-many-90", "exact-many-91", "exact-many-92", "exact-many-93", "exact-many-94", "exact-many-95", "exact-many-96", "exact-many-97", "exact-many-98", "exact-many-99", "exact-many-100", "exact-many-101", "exact-many-102", "exact-many-103", "exact-many-104", "exact-many-105", "exact-many-106", "exact-many-107", "exact-many-108", "exact-many-109", "exact-many-110", "exact-many-111", "exact-many-112", "exact-many-113", "exact-many-114", "exact-many-115", "exact-many-116", "exact-many-117", "exact-many-118", "exact-many-119", "exact-many-120", "exact-many-121", "exact-many-122", "exact-many-123", "exact-many-124", "exact-many-125", "exact-many-126", "exact-many-127", "exact-many-128", "exact-many-129", "exact-many-130", "exact-many-131", "exact-many-132", "exact-many-133", "exact-many-134", "exact-many-135", "exact-many-136", "exact-many-137", "exact-many-138", "exact-many-139", "exact-many-140", "exact-many-141", "exact-many-142", "exact-many-143", "exact-many-144", "exact-many-145", "exact-many-146", "exact-many-147", "exact-many-148", "exact-many-149", "exact-many-150", "exact-many-151", "exact-many-152", "exact-many-153", "exact-many-154", "exact-many-155", "exact-many-156", "exact-many-157", "exact-many-158", "exact-many-159", "exact-many-160", "exact-many-161", "exact-many-162", "exact-many-163", "exact-many-164", "exact-many-165", "exact-many-166", "exact-many-167", "exact-many-168", "exact-many-169", "exact-many-170", "exact-many-171", "exact-many-172", "exact-many-173", "exact-many-174", "exact-many-175", "exact-many-176", "exact-many-177", "exact-many-178", "exact-many-179", "exact-many-180", "exact-many-181", "exact-many-182", "exact-many-183", "exact-many-184", "exact-many-185", "exact-many-186", "exact-many-187", "exact-many-188", "exact-many-189", "exact-many-190", "exact-many-191", "exact-many-192", "exact-many-193", "exact-many-194", "exact-many-195", "exact-many-196", "exact-many-197", "exact-many-198", "exact-many-199", "exact-many-200", "exact-many-201", "exact-many-202", "exact-many-203", "exact-many-204", "exact-many-205", "exact-many-206", "exact-many-207", "exact-many-208", "exact-many-209", "exact-many-210", "exact-many-211", "exact-many-212", "exact-many-213", "exact-many-214", "exact-many-215", "exact-many-216", "exact-many-217", "exact-many-218", "exact-many-219", "exact-many-220", "exact-many-221", "exact-many-222", "exact-many-223", "exact-many-224", "exact-many-225", "exact-many-226", "exact-many-227", "exact-many-228", "exact-many-229", "exact-many-230", "exact-many-231", "exact-many-232", "exact-many-233", "exact-many-234", "exact-many-235", "exact-many-236", "exact-many-237", "exact-many-238", "exact-many-239", "exact-many-240", "exact-many-241", "exact-many-242", "exact-many-243", "exact-many-244", "exact-many-245", "exact-many-246", "exact-many-247", "exact-many-248", "exact-many-249", "exact-many-250", "exact-many-251", "exact-many-252", "exact-many-253", "exact-many-254", "exact-many-255", "exact-many-256", "exact-many-257", "exact-many-258", "exact-many-259", "exact-many-260", "exact-many-261", "exact-many-262", "exact-many-263", "exact-many-264", "exact-many-265", "exact-many-266", "exact-many-267", "exact-many-268", "exact-many-269", "exact-many-270", "exact-many-271", "exact-many-272", "exact-many-273", "exact-many-274", "exact-many-275", "exact-many-276", "exact-many-277", "exact-many-278", "exact-many-279", "exact-many-280", "exact-many-281", "exact-many-282", "exact-many-283", "exact-many-284", "exact-many-285", "exact-many-286", "exact-many-287", "exact-many-288", "exact-many-289", "exact-many-290", "exact-many-291", "exact-many-292", "exact-many-293", "exact-many-294", "exact-many-295", "exact-many-296", "exact-many-297", "exact-many-298", "exact-many-299"])]
fn many_tags(x: u64) -> u64 {
    x
}

#[test]
fn three_hundred_tags_hit() {
    assert_eq!(many_tags(5), 5);
    assert_eq!(many_tags(5), 5);
    let info = many_tags::cache_info();
    assert_eq!((info.hits, info.misses, info.errors), (1, 1, 0), "{info}");
    cachemere::invalidate_tag("exact-many-299");
    assert_eq!(many_tags(5), 5);
    assert_eq!(many_tags::cache_info().misses, 2, "the last tag hides it");
}

#[cached(backend = "redis", remote = small_mine, name = "exact-long", tags = ["exact-long:{text}"])]
fn long_argument(text: &str) -> usize {
    text.len()
}

#[test]
fn huge_tags_and_arguments_make_short_keys() {
    let huge = "x".repeat(10 << 20);
    assert_eq!(long_argument(&huge), 10 << 20);
    assert_eq!(long_argument(&huge), 10 << 20);
    assert_eq!(long_argument::cache_info().hits, 1);
    let Reply::Array(Some(keys)) = small_server().command(&["KEYS", "exact-small:*"]).unwrap()
    else {
        panic!("KEYS answered no array");
    };
    assert!(!keys.is_empty());
    for key in keys {
        let Reply::Bulk(Some(key)) = key else {
            panic!("not a key: {key:?}");
        };
        assert!(key.len() < 200, "a key of {} bytes", key.len());
    }
}

static HEAL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = small_mine, name = "exact-heal", tags = ["exact-heal-tag"])]
fn healing(x: u64) -> u64 {
    HEAL_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn a_wrong_typed_stamp_or_entry_heals() {
    assert_eq!(healing(1), 1);
    assert_eq!(healing(1), 1);
    assert_eq!(HEAL_RUNS.load(Ordering::SeqCst), 1);
    // Someone puts a hash at the tag's stamp key and at the entry key.
    for key in [
        "exact-small:#tag:exact-heal-tag",
        "exact-small:exact-heal:v1:1",
    ] {
        small_server().command(&["DEL", key]).unwrap();
        small_server().command(&["HSET", key, "f", "v"]).unwrap();
    }
    assert_eq!(healing(1), 1);
    assert_eq!(
        HEAL_RUNS.load(Ordering::SeqCst),
        2,
        "a miss, which overwrites them"
    );
    assert_eq!(healing(1), 1);
    assert_eq!(healing(1), 1);
    assert_eq!(HEAL_RUNS.load(Ordering::SeqCst), 2, "hits again");
}

static SILENT_MINE: OnceLock<Remote> = OnceLock::new();

fn silent_mine() -> Remote {
    SILENT_MINE.get().expect("set by the test").clone()
}

#[cached(backend = "redis", remote = silent_mine, name = "exact-silent")]
fn silent(x: u64) -> u64 {
    x
}

#[test]
fn timeouts_report_their_duration() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    SILENT_MINE
        .set(remote_on(
            &[url],
            "exact-silent",
            Duration::from_millis(120),
        ))
        .unwrap();
    assert_eq!(silent(1), 1);
    let health = silent_mine().health();
    let (error, _) = health.last_error.expect("the timeout is reported");
    assert!(error.contains("120ms"), "{error}");
    assert!(!error.contains("0ns"), "{error}");
    drop(listener);
}

// A full queue: everything it held becomes one remote-wide invalidation.

static FULL_MINE: OnceLock<Remote> = OnceLock::new();
static FULL_THEIRS: OnceLock<Remote> = OnceLock::new();

fn full_mine() -> Remote {
    FULL_MINE.get().expect("set by the test").clone()
}

fn full_theirs() -> Remote {
    FULL_THEIRS.get().expect("set by the test").clone()
}

static FULL_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = full_theirs, name = "exact-full")]
fn untagged_elsewhere(x: u64) -> u64 {
    FULL_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn a_full_queue_becomes_one_remote_wide_invalidation() {
    let server = start_server();
    let build = |timeout| {
        RedisConfig::new(server.url())
            .prefix("exact-full")
            .timeout(timeout)
            .build()
            .unwrap()
    };
    // This view queues at most 2; the other view reads the store afterwards.
    let mine = RedisConfig::new(server.url())
        .prefix("exact-full")
        .timeout(Duration::from_millis(100))
        .pending_limit(2)
        .build()
        .unwrap();
    FULL_MINE.set(mine).unwrap();
    FULL_THEIRS.set(build(RELAXED)).unwrap();
    assert_eq!(untagged_elsewhere(1), 1);
    assert_eq!(untagged_elsewhere(1), 1);
    assert_eq!(FULL_RUNS.load(Ordering::SeqCst), 1);

    server.pause(Duration::from_millis(1000)).unwrap();
    for tag in ["exact-full-a", "exact-full-b", "exact-full-c"] {
        assert_eq!(full_mine().invalidate_tag(tag), Invalidation::Queued);
    }
    assert_eq!(
        full_mine().pending_invalidations(),
        1,
        "collapsed into the remote-wide stamp"
    );
    assert_eq!(full_mine().flush_pending(Duration::from_secs(20)), 0);
    assert_eq!(untagged_elsewhere(1), 1);
    assert_eq!(
        FULL_RUNS.load(Ordering::SeqCst),
        2,
        "even an untagged entry of another cache is hidden"
    );
}
