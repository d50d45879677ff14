//! The near cache (`local = ..`) against real `redis-server` processes and a real cluster:
//! local copies answer without a round trip; a change made by this process hides them at
//! once; a change made by another process or outside cachemere (`DEL` from a client) hides
//! them within the change feed's delay; a lost or paused server stops them from being
//! served, and a resubscription drops them all; a two-process soak with kill -9, restarts
//! and `CLIENT PAUSE` finds no read older than the documented bound and no failed call.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use cachemere::redis::RedisConfig;
use cachemere::remote::{Remote, TRUST};
use cachemere::{Status, cached};
use cachemere_tests::redis_harness::{RedisCluster, RedisServer};

const PEER: &str = env!("CARGO_BIN_EXE_remote_peer");

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|error| panic!("could not start redis-server: {error}"))
}

fn remote_on(url: String, prefix: &str, timeout: Duration) -> Remote {
    RedisConfig::new(url)
        .prefix(prefix)
        .timeout(timeout)
        .circuit_breaker(3, Duration::from_millis(200))
        .build()
        .unwrap_or_else(|error| panic!("{error}"))
}

use cachemere_tests::remote_slot;

/// Calls `call` until `done` says so, for at most `limit` (then panics with `what`).
fn eventually(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Calls `call` until one is answered locally (`local_hits` grows): the write of a miss is
/// itself a change the feed reports, which may drop the copy the next read made, once.
fn until_local(what: &str, mut call: impl FnMut(), local_hits: impl Fn() -> u64) {
    eventually(what, Duration::from_secs(5), || {
        let before = local_hits();
        call();
        local_hits() > before
    });
}

fn mget_calls(server: &RedisServer) -> u64 {
    let reply = server
        .command(&["INFO", "commandstats"])
        .unwrap_or_else(|error| panic!("INFO: {error}"));
    let text = format!("{reply:?}");
    text.split("cmdstat_mget:calls=")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Local copies answer without a round trip (sync and async), and are counted as local hits.

remote_slot!(HITS_REMOTE, hits_remote);
static HITS_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(backend = "redis", remote = hits_remote, local = "1h", maxsize = 100, tags = ["near-hits:{x}"])]
fn near_hits(x: u64) -> u64 {
    HITS_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 2
}

#[cached(backend = "redis", remote = hits_remote, local = "1h")]
async fn near_hits_async(x: u64) -> u64 {
    x * 3
}

#[test]
fn local_copies_answer_without_a_round_trip() {
    let server = start_server();
    HITS_REMOTE
        .set(remote_on(server.url(), "near-hits", Duration::from_secs(2)))
        .expect("set once");
    assert_eq!(near_hits(1), 2, "a miss: computed and written");
    until_local(
        "copied",
        || assert_eq!(near_hits(1), 2),
        || near_hits::cache_info().local_hits,
    );
    let first = near_hits::cache_info();
    let before = mget_calls(&server);
    for _ in 0..100 {
        assert_eq!(near_hits(1), 2);
    }
    let info = near_hits::cache_info();
    assert_eq!(
        mget_calls(&server),
        before,
        "100 hits, no read of the store: {info}"
    );
    assert_eq!(HITS_RUNS.load(Ordering::SeqCst), 1);
    assert_eq!(
        (
            info.hits - first.hits,
            info.misses,
            info.local_hits - first.local_hits
        ),
        (100, 1, 100),
        "{info}"
    );
    assert!(info.to_string().contains("local_hits="), "{info}");
    assert_eq!(info.maxsize, 100, "maxsize bounds the local level");
    assert_eq!(near_hits::call(1).status, Status::Hit);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        assert_eq!(near_hits_async(4).await, 12);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let local = near_hits_async::cache_info().local_hits;
            assert_eq!(near_hits_async(4).await, 12);
            if near_hits_async::cache_info().local_hits > local {
                break;
            }
            assert!(Instant::now() < deadline, "never copied");
        }
        let before = mget_calls(&server);
        for _ in 0..50 {
            assert_eq!(near_hits_async(4).await, 12);
        }
        assert_eq!(mget_calls(&server), before, "async hits read no store");
    });
    assert!(near_hits_async::cache_info().local_hits >= 51);
    let health = hits_remote().health();
    assert_eq!(
        health.change_feed.map(|(trusted, _)| trusted),
        Some(true),
        "{health:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A change made by this process hides its copies at once: no waiting for the feed.

// ---------------------------------------------------------------------------------------------
// Copies are keyed by the function's own key, whatever its shape: each copy answers only its
// own arguments, and an invalidation of those arguments hides it.

remote_slot!(SHAPES_REMOTE, shapes_remote);
static SHAPE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(backend = "redis", remote = shapes_remote, local = "1h")]
fn by_option(name: Option<&str>) -> String {
    SHAPE_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("option:{name:?}")
}

#[cached(backend = "redis", remote = shapes_remote, local = "1h")]
fn by_cow(name: std::borrow::Cow<'_, str>) -> String {
    SHAPE_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("cow:{name}")
}

#[cached(backend = "redis", remote = shapes_remote, local = "1h")]
fn by_words(words: Vec<&str>) -> String {
    SHAPE_RUNS.fetch_add(1, Ordering::SeqCst);
    words.join("+")
}

#[cached(backend = "redis", remote = shapes_remote, local = "1h", key = (a.min(b), a.max(b)), key_type = (u64, u64))]
fn by_pair(a: u64, b: u64) -> u64 {
    SHAPE_RUNS.fetch_add(1, Ordering::SeqCst);
    a * 10 + b
}

#[derive(Clone, Hash, PartialEq, Eq, serde::Serialize)]
struct Shelf<T> {
    row: T,
}

impl<T: Clone + std::hash::Hash + Eq + serde::Serialize + Send + Sync + std::fmt::Display + 'static>
    Shelf<T>
{
    /// One cache for every `T`; the receiver (so `T`) is part of the key.
    #[cached(backend = "redis", remote = shapes_remote, name = "near-shelf", local = "1h")]
    fn label(&self, slot: u32) -> String {
        SHAPE_RUNS.fetch_add(1, Ordering::SeqCst);
        format!("{}/{slot}", self.row)
    }
}

/// Calls `call` until a call is answered locally, then checks that one more is, without
/// running the function.
fn answered_locally<T: PartialEq + std::fmt::Debug>(
    what: &str,
    expected: T,
    call: impl Fn() -> T,
    local_hits: impl Fn() -> u64,
) {
    until_local(what, || assert_eq!(call(), expected, "{what}"), &local_hits);
    let (runs, hits) = (SHAPE_RUNS.load(Ordering::SeqCst), local_hits());
    assert_eq!(call(), expected, "{what}");
    assert_eq!(local_hits(), hits + 1, "{what}: a local hit");
    assert_eq!(SHAPE_RUNS.load(Ordering::SeqCst), runs, "{what}: not run");
}

#[test]
fn copies_answer_only_their_own_arguments_for_every_key_shape() {
    let server = start_server();
    SHAPES_REMOTE
        .set(remote_on(
            server.url(),
            "near-shapes",
            Duration::from_secs(2),
        ))
        .expect("set once");
    let hits = || by_option::cache_info().local_hits;
    answered_locally(
        "Some",
        "option:Some(\"a\")".to_owned(),
        || by_option(Some("a")),
        hits,
    );
    answered_locally("None", "option:None".to_owned(), || by_option(None), hits);
    answered_locally(
        "Some(\"\")",
        "option:Some(\"\")".to_owned(),
        || by_option(Some("")),
        hits,
    );

    let hits = || by_cow::cache_info().local_hits;
    answered_locally("borrowed", "cow:x".to_owned(), || by_cow("x".into()), hits);
    answered_locally(
        "owned",
        "cow:x".to_owned(),
        || by_cow(String::from("x").into()),
        hits,
    );
    answered_locally("other", "cow:y".to_owned(), || by_cow("y".into()), hits);

    let hits = || by_words::cache_info().local_hits;
    answered_locally("a,b", "a+b".to_owned(), || by_words(vec!["a", "b"]), hits);
    answered_locally("ab", "ab".to_owned(), || by_words(vec!["ab"]), hits);
    answered_locally("empty", String::new(), || by_words(vec![]), hits);

    let hits = || by_pair::cache_info().local_hits;
    answered_locally("(1, 2)", 12, || by_pair(1, 2), hits);
    // The key is the ordered pair: (2, 1) is the same entry, and its copy answers it.
    assert_eq!(
        by_pair(2, 1),
        12,
        "the key, not the arguments, names the entry"
    );

    // One cache for both instantiations (its values are `String`s), with a local level per key
    // type: the second is found by type.
    let hits = || Shelf::<u32>::label_cache_info().local_hits;
    answered_locally(
        "u32 shelf",
        "7/1".to_owned(),
        || Shelf { row: 7_u32 }.label(1),
        hits,
    );
    answered_locally(
        "String shelf",
        "x/1".to_owned(),
        || {
            Shelf {
                row: "x".to_owned(),
            }
            .label(1)
        },
        hits,
    );
    answered_locally(
        "u32 shelf, slot 2",
        "7/2".to_owned(),
        || Shelf { row: 7_u32 }.label(2),
        hits,
    );

    // An invalidation hides exactly its own copy, whatever the shape.
    let runs = SHAPE_RUNS.load(Ordering::SeqCst);
    assert!(by_option::invalidate(None).removed());
    assert!(by_words::invalidate(vec!["a", "b"]).removed());
    assert!(by_pair::invalidate(1, 2).removed());
    assert!(
        Shelf {
            row: "x".to_owned()
        }
        .label_invalidate(1)
        .removed()
    );
    assert_eq!(by_option(None), "option:None");
    assert_eq!(by_words(vec!["a", "b"]), "a+b");
    assert_eq!(by_pair(1, 2), 12);
    assert_eq!(
        Shelf {
            row: "x".to_owned()
        }
        .label(1),
        "x/1"
    );
    assert_eq!(
        SHAPE_RUNS.load(Ordering::SeqCst),
        runs + 4,
        "each invalidated copy recomputed"
    );
    let (runs, local) = (
        SHAPE_RUNS.load(Ordering::SeqCst),
        by_option::cache_info().local_hits,
    );
    assert_eq!(by_option(Some("a")), "option:Some(\"a\")");
    assert_eq!(by_words(vec!["ab"]), "ab");
    assert_eq!(Shelf { row: 7_u32 }.label(1), "7/1");
    assert_eq!(
        SHAPE_RUNS.load(Ordering::SeqCst),
        runs,
        "the other copies still answer"
    );
    assert_eq!(by_option::cache_info().local_hits, local + 1);
}

remote_slot!(OWN_REMOTE, own_remote);
static OWN_VERSION: AtomicU64 = AtomicU64::new(0);

#[cached(backend = "redis", remote = own_remote, local = "1h", tags = ["near-own:{x}"])]
fn near_own(x: u64) -> u64 {
    x * 1000 + OWN_VERSION.load(Ordering::SeqCst)
}

/// Makes sure the next call of `near_own(x)` would be a local hit.
fn copied(x: u64) {
    until_local(
        "copied",
        || {
            let _ = near_own(x);
        },
        || near_own::cache_info().local_hits,
    );
}

#[test]
fn a_change_made_here_hides_local_copies_at_once() {
    let server = start_server();
    OWN_REMOTE
        .set(remote_on(server.url(), "near-own", Duration::from_secs(2)))
        .expect("set once");
    for (round, how) in ["invalidate", "tag", "clear", "set", "refresh"]
        .iter()
        .enumerate()
    {
        let x = round as u64;
        copied(x);
        let version = OWN_VERSION.fetch_add(1, Ordering::SeqCst) + 1;
        match *how {
            "invalidate" => drop(near_own::invalidate(x)),
            "tag" => drop(cachemere::invalidate_tag(&format!("near-own:{x}"))),
            "clear" => drop(near_own::cache_clear()),
            "set" => drop(near_own::set(x, x * 1000 + version)),
            _ => drop(near_own::refresh(x)),
        }
        // No wait: the very next call.
        assert_eq!(
            near_own(x),
            x * 1000 + version,
            "{how}: the copy is not served"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Writes made outside cachemere (a client's `DEL`, `SET`, `FLUSHALL`) hide copies too, once
// the feed reports them; on a cluster as well.

remote_slot!(OUTSIDE_REMOTE, outside_remote);
remote_slot!(OUTSIDE_CLUSTER, outside_cluster);
static OUTSIDE_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(backend = "redis", remote = outside_remote, local = "1h", name = "near-outside")]
fn near_outside(x: u64) -> u64 {
    OUTSIDE_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[cached(backend = "redis", remote = outside_cluster, local = "1h", name = "near-outside")]
fn near_outside_cluster(x: u64) -> u64 {
    OUTSIDE_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

#[test]
fn writes_made_outside_cachemere_hide_local_copies() {
    let server = start_server();
    OUTSIDE_REMOTE
        .set(remote_on(
            server.url(),
            "near-outside",
            Duration::from_secs(2),
        ))
        .expect("set once");
    let key = |x: u64| format!("near-outside:near-outside:v1:{}", cachemere_key(x));
    for (x, command) in [(1_u64, "DEL"), (2, "SET"), (3, "FLUSHALL")] {
        until_local(
            "copied",
            || {
                let _ = near_outside(x);
            },
            || near_outside::cache_info().local_hits,
        );
        let runs = OUTSIDE_RUNS.load(Ordering::SeqCst);
        let entry = key(x);
        let args: Vec<&str> = match command {
            "DEL" => vec!["DEL", &entry],
            "SET" => vec!["SET", &entry, "garbage"],
            _ => vec!["FLUSHALL"],
        };
        server
            .command(&args)
            .unwrap_or_else(|error| panic!("{command}: {error}"));
        // Within the feed's delay (generous bound: a loaded CI machine).
        eventually(command, Duration::from_secs(5), || {
            let _ = near_outside(x);
            OUTSIDE_RUNS.load(Ordering::SeqCst) > runs
        });
    }

    let cluster = RedisCluster::start().unwrap_or_else(|error| panic!("a cluster: {error}"));
    OUTSIDE_CLUSTER
        .set(
            RedisConfig::cluster(cluster.urls())
                .prefix("near-outside")
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_else(|error| panic!("{error}")),
        )
        .expect("set once");
    for x in 10..16_u64 {
        until_local(
            "copied on the cluster",
            || {
                let _ = near_outside_cluster(x);
            },
            || near_outside_cluster::cache_info().local_hits,
        );
        let runs = OUTSIDE_RUNS.load(Ordering::SeqCst);
        let entry = key(x);
        // The node that holds the key deletes it; the others answer MOVED.
        for node in cluster.nodes() {
            let _ = node.command(&["DEL", &entry]);
        }
        eventually("a DEL on a cluster node", Duration::from_secs(5), || {
            let _ = near_outside_cluster(x);
            OUTSIDE_RUNS.load(Ordering::SeqCst) > runs
        });
    }
}

/// The argument segment of a `u64` key, as cachemere writes it.
fn cachemere_key(x: u64) -> String {
    cachemere::remote::key::argument_segment(&(x,)).expect("a u64 encodes")
}

// ---------------------------------------------------------------------------------------------
// Process A invalidates, process B (this one) stops serving its copy: the delay, over 1,000
// invalidations (printed; a scenario measurement, bounded generously, not a timing assertion).

remote_slot!(DELAY_REMOTE, delay_remote);

#[cached(backend = "redis", remote = delay_remote, name = "near-delay", tags = ["near-delay:{k}"], local = "1h")]
fn near_delay(k: u64) -> u64 {
    k
}

#[test]
fn an_invalidation_in_another_process_reaches_local_copies() {
    let server = start_server();
    DELAY_REMOTE
        .set(remote_on(
            server.url(),
            "near-shared",
            Duration::from_secs(2),
        ))
        .expect("set once");
    let mut peer = Command::new(PEER)
        .args([&server.url(), "near-invalidate"])
        .env_remove("CACHEMERE_REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("could not run {PEER}: {error}"));
    let mut to_peer = peer.stdin.take().expect("stdin");
    let mut from_peer = BufReader::new(peer.stdout.take().expect("stdout"));
    let mut delays = Vec::with_capacity(1000);
    for k in 0..1000_u64 {
        let _ = near_delay(k);
        until_local(
            "copied",
            || {
                let _ = near_delay(k);
            },
            || near_delay::cache_info().local_hits,
        );
        let local = near_delay::cache_info().local_hits;
        writeln!(to_peer, "tag {k}").expect("the peer reads");
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = loop {
            // When a call started that did not get the copy: it was no longer served then.
            let asked = unix_ns();
            if near_delay::call(k).status == Status::Miss {
                break asked;
            }
            // Leave the cores to the feed's connection and the server (2 on CI).
            std::thread::sleep(Duration::from_micros(20));
            assert!(
                Instant::now() < deadline,
                "invalidation {k} never reached this process"
            );
        };
        let mut line = String::new();
        from_peer.read_line(&mut line).expect("the peer answers");
        let done: u128 = line
            .split_whitespace()
            .nth(1)
            .and_then(|ns| ns.parse().ok())
            .unwrap_or_else(|| panic!("unexpected answer {line:?}"));
        assert!(
            line.contains("applied"),
            "the invalidation reached the store: {line}"
        );
        assert!(near_delay::cache_info().local_hits >= local);
        delays.push(seen.saturating_sub(done));
    }
    drop(to_peer);
    let _ = peer.wait();
    delays.sort_unstable();
    let at = |q: f64| Duration::from_nanos(delays[((delays.len() - 1) as f64 * q) as usize] as u64);
    eprintln!(
        "delay from A's invalidate_tag returning to B no longer serving its copy, over {} \
         invalidations: p50 {:?}, p99 {:?}, max {:?}",
        delays.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

// ---------------------------------------------------------------------------------------------
// A server that dies stops local copies from being served (the calls still answer); after
// it restarts, the resubscription drops every copy made before.

remote_slot!(DOWN_REMOTE, down_remote);
static DOWN_VERSION: AtomicU64 = AtomicU64::new(0);
static DOWN_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(backend = "redis", remote = down_remote, local = "1h")]
fn near_down(x: u64) -> u64 {
    DOWN_RUNS.fetch_add(1, Ordering::SeqCst);
    x * 1000 + DOWN_VERSION.load(Ordering::SeqCst)
}

#[test]
fn a_lost_server_stops_local_copies_and_a_resubscription_drops_them() {
    let mut server = start_server();
    DOWN_REMOTE
        .set(remote_on(
            server.url(),
            "near-down",
            Duration::from_millis(200),
        ))
        .expect("set once");
    until_local(
        "copied",
        || assert_eq!(near_down(1), 1000),
        || near_down::cache_info().local_hits,
    );

    server.kill().expect("SIGKILL");
    // Another process could change the value now, unseen: copies stop being served.
    DOWN_VERSION.store(1, Ordering::SeqCst);
    eventually("the copy is no longer served", TRUST * 4, || {
        near_down(1) == 1001
    });
    let health = down_remote().health();
    assert_eq!(
        health.change_feed.map(|(trusted, _)| trusted),
        Some(false),
        "{health:?}"
    );
    let subscriptions = health.change_feed.map_or(0, |(_, count)| count);

    server.restart().expect("restart");
    eventually("the feed is back", Duration::from_secs(10), || {
        down_remote()
            .health()
            .change_feed
            .is_some_and(|(trusted, count)| trusted && count > subscriptions)
    });
    // Copied again from the store, which was emptied by the restart.
    DOWN_VERSION.store(2, Ordering::SeqCst);
    eventually("copies resume", Duration::from_secs(10), || {
        let local = near_down::cache_info().local_hits;
        let value = near_down(1);
        assert!(
            value >= 1001,
            "never the copy read before the loss: {value}"
        );
        near_down::cache_info().local_hits > local
    });
}

// ---------------------------------------------------------------------------------------------
// `CLIENT PAUSE`: the heartbeat goes unanswered, copies stop being served within the trust
// window; no call fails; serving resumes after the pause.

remote_slot!(PAUSE_REMOTE, pause_remote);

#[cached(backend = "redis", remote = pause_remote, local = "1h")]
fn near_paused(x: u64) -> u64 {
    x + 7
}

#[test]
fn a_paused_server_stops_local_copies_without_failing_calls() {
    let server = start_server();
    PAUSE_REMOTE
        .set(remote_on(
            server.url(),
            "near-pause",
            Duration::from_millis(200),
        ))
        .expect("set once");
    until_local(
        "copied",
        || {
            let _ = near_paused(1);
        },
        || near_paused::cache_info().local_hits,
    );
    server.pause(Duration::from_secs(3)).expect("CLIENT PAUSE");
    let paused = Instant::now();
    // Trust ends within TRUST of the last answered heartbeat.
    std::thread::sleep(TRUST + Duration::from_millis(200));
    let local = near_paused::cache_info().local_hits;
    assert_eq!(near_paused(1), 8, "the call answers");
    if paused.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            near_paused::cache_info().local_hits,
            local,
            "no copy served while the heartbeat goes unanswered"
        );
    }
    eventually("copies are served again", Duration::from_secs(15), || {
        let local = near_paused::cache_info().local_hits;
        assert_eq!(near_paused(1), 8);
        near_paused::cache_info().local_hits > local
    });
}

// ---------------------------------------------------------------------------------------------
// A store without a change feed (a user's store) gets no local level: correct, never local.

remote_slot!(PLAIN_REMOTE, plain_remote);

#[cached(backend = "remote", remote = plain_remote, local = "1h")]
fn near_plain(x: u64) -> u64 {
    x
}

#[test]
fn a_store_without_a_change_feed_keeps_no_copies() {
    PLAIN_REMOTE
        .set(Remote::builder(cachemere_tests::user_remote::SharedMapStore::default()).build())
        .expect("set once");
    for _ in 0..5 {
        assert_eq!(near_plain(3), 3);
    }
    let info = near_plain::cache_info();
    assert_eq!(
        (info.hits, info.misses, info.local_hits),
        (4, 1, 0),
        "{info}"
    );
    assert_eq!(plain_remote().health().change_feed, None);
}

// ---------------------------------------------------------------------------------------------
// Two OS processes under a read/write mix with random invalidations, kill -9 and restarts of
// Redis, and CLIENT PAUSE: no read older than the bound, no failed call.

remote_slot!(SOAK_REMOTE, soak_remote);
static SOAK_ORIGIN: OnceLock<String> = OnceLock::new();
const NEAR_KEYS: u64 = 16;
const NEAR_GROUPS: u64 = 4;
/// The documented bound on how long a copy outlives a change made elsewhere: the trust
/// window, plus slack for a loaded machine (the coarse clock, scheduling).
const BOUND: Duration = Duration::from_millis(500 + 250);

#[cached(backend = "redis", remote = soak_remote, name = "near-soak", tags = ["near-item:{k}", "near-group:{g}"], local = "1h", ttl = "1h")]
fn near_value(k: u64, g: u64) -> u64 {
    let _ = g;
    SOAK_ORIGIN.get().map_or(0, |dir| {
        std::fs::read_to_string(format!("{dir}/{k}"))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    })
}

#[test]
fn two_processes_under_faults_read_nothing_older_than_the_bound() {
    let seed = std::env::var("NEAR_SOAK_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_u64);
    let millis: u64 = std::env::var("NEAR_SOAK_MILLIS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(20_000);
    eprintln!("near soak: seed {seed}, {millis} ms (NEAR_SOAK_SEED, NEAR_SOAK_MILLIS)");
    let mut server = RedisServer::start_persistent()
        .unwrap_or_else(|error| panic!("could not start redis-server: {error}"));
    let origin = std::env::temp_dir().join(format!("cachemere-near-soak-{}", std::process::id()));
    std::fs::create_dir_all(&origin).expect("an origin directory");
    let origin_text = origin.to_string_lossy().into_owned();
    SOAK_ORIGIN.set(origin_text.clone()).expect("set once");
    SOAK_REMOTE
        .set(remote_on(
            server.url(),
            "near-shared",
            Duration::from_millis(200),
        ))
        .expect("set once");
    let mut writer = Command::new(PEER)
        .args([
            &server.url(),
            "near-writer",
            &origin_text,
            &seed.to_string(),
            &millis.to_string(),
        ])
        .env_remove("CACHEMERE_REDIS_URL")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("could not run {PEER}: {error}"));
    let published: Mutex<Vec<(u64, u64, u128)>> = Mutex::new(Vec::new());
    let reads: Mutex<Vec<(u64, u128, u64)>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let summary = std::thread::scope(|scope| {
        let stdout = writer.stdout.take().expect("stdout");
        let reader_of_writer = scope.spawn(|| {
            let mut summary = String::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("a line");
                let parts: Vec<&str> = line.split_whitespace().collect();
                match parts.as_slice() {
                    ["required", k, v, at] => {
                        published.lock().unwrap_or_else(|e| e.into_inner()).push((
                            k.parse().expect("k"),
                            v.parse().expect("v"),
                            at.parse().expect("at"),
                        ))
                    }
                    ["done", ..] => summary = line.clone(),
                    _ => {}
                }
            }
            stop.store(true, Ordering::SeqCst);
            summary
        });
        for reader in 0..2_u64 {
            let (reads, stop) = (&reads, &stop);
            scope.spawn(move || {
                let mut state = seed ^ (reader + 1).wrapping_mul(0x9e37_79b9);
                while !stop.load(Ordering::SeqCst) {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let k = state % NEAR_KEYS;
                    let started = unix_ns();
                    let version = near_value(k, k % NEAR_GROUPS);
                    reads
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((k, started, version));
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
        }
        // Faults, while the writer runs.
        let mut faults = seed;
        let begun = Instant::now();
        while !stop.load(Ordering::SeqCst) && begun.elapsed() < Duration::from_millis(millis) {
            std::thread::sleep(Duration::from_millis(1500));
            faults = faults.rotate_left(7) ^ 0x2545_f491;
            match faults % 3 {
                0 => {
                    let _ = server.kill();
                    std::thread::sleep(Duration::from_millis(300));
                    server.restart().expect("restart (with its data)");
                }
                1 => {
                    let _ = server.pause(Duration::from_millis(700));
                }
                _ => {
                    let _ = server.restart_empty();
                }
            }
        }
        reader_of_writer.join().expect("no panic")
    });
    let status = writer.wait().expect("the writer ends");
    assert!(status.success(), "the writer failed: {summary}");
    let published = published.into_inner().unwrap_or_else(|e| e.into_inner());
    let reads = reads.into_inner().unwrap_or_else(|e| e.into_inner());
    assert!(
        summary.contains("violations=0"),
        "the writer's own reads: {summary}"
    );
    assert!(
        published.len() > 100 && reads.len() > 1000,
        "{} published, {} reads",
        published.len(),
        reads.len()
    );
    let bound = BOUND.as_nanos();
    // Per key: publications in time order, with the running maximum of what was required.
    let mut by_key: Vec<Vec<(u128, u64)>> = vec![Vec::new(); NEAR_KEYS as usize];
    let mut sorted = published.clone();
    sorted.sort_by_key(|&(_, _, at)| at);
    for (k, required, at) in sorted {
        let list = &mut by_key[k as usize];
        let most = list.last().map_or(0, |&(_, most)| most).max(required);
        list.push((at, most));
    }
    let mut stale = Vec::new();
    let mut worst = 0_u128;
    for &(k, started, version) in &reads {
        let list = &by_key[k as usize];
        // The first publication requiring more than this read returned.
        let first = list.partition_point(|&(_, most)| most <= version);
        if let Some(&(at, required)) = list.get(first)
            && at < started
        {
            worst = worst.max(started - at);
            if at + bound < started {
                stale.push((k, started, version, required, at));
            }
        }
    }
    eprintln!(
        "near soak: {} reads here, {} versions published, writer {summary}; the oldest read \
         was {:?} after a change it missed (bound {BOUND:?})",
        reads.len(),
        published.len(),
        Duration::from_nanos(worst as u64)
    );
    assert!(
        stale.is_empty(),
        "{} reads older than the bound, first: {:?}",
        stale.len(),
        stale.first()
    );
    let _ = std::fs::remove_dir_all(&origin);
}

// ---------------------------------------------------------------------------------------------
// The feed's connection is lost while the store still answers: copies made meanwhile (their
// changes may be missed) are dropped by the resubscription.

remote_slot!(RESYNC_REMOTE, resync_remote);
static RESYNC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(backend = "redis", remote = resync_remote, local = "1h", name = "near-resync")]
fn near_resync(x: u64) -> u64 {
    RESYNC_RUNS.fetch_add(1, Ordering::SeqCst);
    x
}

/// The ids of the server's clients in tracking mode (the change feed's connections).
fn tracking_clients(server: &RedisServer) -> Vec<String> {
    let reply = server
        .command(&["CLIENT", "LIST"])
        .unwrap_or_else(|error| panic!("CLIENT LIST: {error}"));
    let cachemere_tests::redis_harness::Reply::Bulk(Some(text)) = reply else {
        panic!("CLIENT LIST answered {reply:?}");
    };
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|line| {
            line.split_whitespace().any(|field| {
                field
                    .strip_prefix("flags=")
                    .is_some_and(|flags| flags.contains('t'))
            })
        })
        .filter_map(|line| {
            line.split_whitespace()
                .next()?
                .strip_prefix("id=")
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn copies_made_while_the_feed_was_down_are_dropped_when_it_is_back() {
    let server = start_server();
    RESYNC_REMOTE
        .set(remote_on(
            server.url(),
            "near-resync",
            Duration::from_secs(2),
        ))
        .expect("set once");
    until_local(
        "copied",
        || {
            let _ = near_resync(1);
        },
        || near_resync::cache_info().local_hits,
    );
    // Written now (a miss writes, it copies nothing); read again below, while the feed is down.
    let _ = near_resync(2);
    let subscriptions = |remote: Remote| remote.health().change_feed.map_or(0, |(_, count)| count);
    let before = subscriptions(resync_remote());
    let clients = tracking_clients(&server);
    assert_eq!(clients.len(), 1, "one feed connection");
    server
        .command(&["CLIENT", "KILL", "ID", &clients[0]])
        .expect("CLIENT KILL");
    eventually("the loss is noticed", Duration::from_secs(5), || {
        resync_remote()
            .health()
            .change_feed
            .is_some_and(|(trusted, _)| !trusted)
    });
    // Before the feed resubscribes (it waits 50 ms first): a copy read now, then a change it
    // cannot hear of.
    let _ = near_resync(2);
    let entry = format!(
        "near-resync:near-resync:v1:{}",
        cachemere::remote::key::argument_segment(&(2_u64,)).expect("encodes")
    );
    server.command(&["DEL", &entry]).expect("DEL");
    eventually("the feed is back", Duration::from_secs(10), || {
        resync_remote()
            .health()
            .change_feed
            .is_some_and(|(trusted, count)| trusted && count > before)
    });
    let runs = RESYNC_RUNS.load(Ordering::SeqCst);
    let _ = near_resync(2);
    assert_eq!(
        RESYNC_RUNS.load(Ordering::SeqCst),
        runs + 1,
        "the copy read while the feed was down was dropped"
    );
}
