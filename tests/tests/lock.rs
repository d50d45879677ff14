//! Single flight across processes (`lock = true`), against real `redis-server` processes and a
//! real 3-master cluster: concurrent misses of one key in several OS processes compute once; a
//! holder killed mid-computation lets another process compute once its lease runs out; a
//! holder that fails hands the key over at once; a server that dies while a caller waits never
//! fails the call.
//!
//! Two functions of the same `name` in this process are two caches sharing one key space: as
//! far as the lease is concerned, two processes. Each test has its own server or prefix.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachemere::cached;
use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere_tests::redis_harness::{RedisCluster, RedisServer};

const TIMEOUT: Duration = Duration::from_secs(2);
const PEER: &str = env!("CARGO_BIN_EXE_remote_peer");

fn start_server() -> RedisServer {
    RedisServer::start().unwrap_or_else(|error| panic!("could not start redis-server: {error}"))
}

fn remote_on(url: String, prefix: &str) -> Remote {
    RedisConfig::new(url)
        .prefix(prefix)
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_else(|error| panic!("{error}"))
}

use cachemere_tests::remote_slot;

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

// ---------------------------------------------------------------------------------------------
// 4 OS processes × 16 callers of one cold key: one computation.

#[test]
fn four_processes_of_sixteen_callers_compute_once() {
    let server = start_server();
    let start = (unix_ms() + 2_000).to_string();
    let peers: Vec<_> = (0..4)
        .map(|_| {
            Command::new(PEER)
                .args([&server.url(), "lock-stampede", "7", &start, "16"])
                .env_remove("CACHEMERE_REDIS_URL")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|error| panic!("could not run {PEER}: {error}"))
        })
        .collect();
    let mut runs = 0;
    let mut values = Vec::new();
    for peer in peers {
        let output = peer.wait_with_output().expect("the peer runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "peer failed: {stdout} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary = stdout
            .lines()
            .find(|line| line.starts_with("runs="))
            .unwrap_or_else(|| panic!("no summary in {stdout:?}"));
        for pair in summary.split_whitespace() {
            match pair.split_once('=') {
                Some(("runs", n)) => runs += n.parse::<usize>().expect("a count"),
                Some(("values", v)) => values.push(v.to_owned()),
                Some(("calls", n)) => assert_eq!(n, "16"),
                _ => {}
            }
        }
    }
    assert_eq!(runs, 1, "64 callers in 4 processes: {values:?}");
    values.dedup();
    assert_eq!(
        values.len(),
        1,
        "every caller got the one value: {values:?}"
    );
    assert!(!values[0].contains(','), "{values:?}");
}

// ---------------------------------------------------------------------------------------------
// A holder killed with SIGKILL mid-computation: another process computes after its lease.

remote_slot!(HOLD_REMOTE, hold_remote);
static HOLD_RUNS: AtomicUsize = AtomicUsize::new(0);

/// The peer's `locked_value`: same name, prefix and key.
#[cached(backend = "redis", remote = hold_remote, name = "lock-shared", lock = true)]
fn locked_value(id: u64) -> String {
    HOLD_RUNS.fetch_add(1, Ordering::SeqCst);
    format!("{id}@{}", std::process::id())
}

#[test]
fn a_killed_holder_lets_another_process_compute_after_its_lease() {
    let server = start_server();
    HOLD_REMOTE
        .set(remote_on(server.url(), "faults-shared"))
        .expect("set once");
    let mut holder = Command::new(PEER)
        .args([&server.url(), "lock-hold", "9"])
        .env_remove("CACHEMERE_REDIS_URL")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the peer starts");
    let mut lines = BufReader::new(holder.stdout.take().expect("piped")).lines();
    let computing = lines
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("the holder printed nothing"));
    assert!(computing.starts_with("computing"), "{computing}");

    let waiter = std::thread::spawn(|| {
        let value = locked_value(9);
        (value, Instant::now())
    });
    // The holder renews its lease: a second past it, the waiter is still waiting.
    std::thread::sleep(cachemere::remote::LOCK_LEASE + Duration::from_secs(1));
    assert!(
        !waiter.is_finished(),
        "the waiter computed beside a live holder"
    );
    assert_eq!(HOLD_RUNS.load(Ordering::SeqCst), 0);

    holder.kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = holder.wait();
    let (value, done) = waiter.join().expect("the waiter returns");
    assert_eq!(value, format!("9@{}", std::process::id()));
    assert_eq!(HOLD_RUNS.load(Ordering::SeqCst), 1);
    // Within the lease (plus the waiter's polling), well before the wait's own bound.
    let after = done.duration_since(killed);
    eprintln!("the waiter computed {after:?} after the holder was killed");
    assert!(
        after < cachemere::remote::LOCK_WAIT - Duration::from_secs(2),
        "took {after:?} after the kill"
    );
    assert_eq!(locked_value::cache_info().misses, 1);
}

// ---------------------------------------------------------------------------------------------
// Two caches of one name in this process: the lease between them, on a single node and on the
// cluster.

static SHARED_RUNS: AtomicUsize = AtomicUsize::new(0);

macro_rules! lock_pair {
    ($slot:ident, $getter:ident, $first:ident, $second:ident, $name:tt, $lock:tt) => {
        remote_slot!($slot, $getter);

        #[cached(backend = "redis", remote = $getter, name = $name, lock = $lock)]
        fn $first(id: u64) -> String {
            SHARED_RUNS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            format!("{id}:first")
        }

        #[cached(backend = "redis", remote = $getter, name = $name, lock = $lock)]
        fn $second(id: u64) -> String {
            SHARED_RUNS.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(300));
            format!("{id}:second")
        }
    };
}

lock_pair!(
    PAIR_REMOTE,
    pair_remote,
    pair_first,
    pair_second,
    "lock-pair",
    true
);
lock_pair!(
    CLUSTER_REMOTE,
    cluster_remote,
    cluster_first,
    cluster_second,
    "lock-pair",
    true
);
lock_pair!(
    UNLOCKED_REMOTE,
    unlocked_remote,
    unlocked_first,
    unlocked_second,
    "lock-pair",
    false
);

/// 8 callers of each cache behind a barrier; returns the computations and the values.
fn stampede(first: fn(u64) -> String, second: fn(u64) -> String, id: u64) -> (usize, Vec<String>) {
    let before = SHARED_RUNS.load(Ordering::SeqCst);
    let barrier = Barrier::new(16);
    let mut values: Vec<String> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..16)
            .map(|n| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    if n % 2 == 0 { first(id) } else { second(id) }
                })
            })
            .collect();
        calls
            .into_iter()
            .map(|call| call.join().expect("no panic"))
            .collect()
    });
    values.sort();
    values.dedup();
    (SHARED_RUNS.load(Ordering::SeqCst) - before, values)
}

// The three stampedes share `SHARED_RUNS`: one test runs them in turn.
#[test]
fn two_caches_of_one_name_compute_once_on_a_node_and_a_cluster_and_twice_without_lock() {
    let server = start_server();
    PAIR_REMOTE
        .set(remote_on(server.url(), "lock-pair"))
        .expect("set once");
    UNLOCKED_REMOTE
        .set(remote_on(server.url(), "lock-unlocked"))
        .expect("set once");
    let cluster = RedisCluster::start().unwrap_or_else(|error| panic!("no cluster: {error}"));
    CLUSTER_REMOTE
        .set(
            RedisConfig::cluster(cluster.urls())
                .prefix("lock-cluster")
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_else(|error| panic!("{error}")),
        )
        .expect("set once");

    for id in 1..=3 {
        let (runs, values) = stampede(pair_first, pair_second, id);
        assert_eq!(runs, 1, "single node, key {id}: {values:?}");
        assert_eq!(values.len(), 1, "{values:?}");
        let (runs, values) = stampede(cluster_first, cluster_second, id);
        assert_eq!(runs, 1, "cluster, key {id}: {values:?}");
        assert_eq!(values.len(), 1, "{values:?}");
    }
    // The control: without `lock`, each cache computes once (single flight in each).
    let (runs, values) = stampede(unlocked_first, unlocked_second, 1);
    assert_eq!(runs, 2, "{values:?}");
    assert_eq!(values.len(), 2, "{values:?}");
}

// ---------------------------------------------------------------------------------------------
// A holder whose computation fails hands the key over at once (its lease is taken back); a
// server that dies while a caller waits never fails the call.

remote_slot!(FAIL_REMOTE, fail_remote);
static FAIL_RUNS: AtomicUsize = AtomicUsize::new(0);

static FAIL_EVENTS: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());

fn fail_event(event: &'static str) {
    FAIL_EVENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(event);
}

#[cached(backend = "redis", remote = fail_remote, name = "lock-fail", lock = true)]
fn failing_holder(id: u64) -> Result<String, String> {
    FAIL_RUNS.fetch_add(1, Ordering::SeqCst);
    fail_event("holder started");
    std::thread::sleep(Duration::from_millis(400));
    fail_event("holder failed");
    Err(format!("{id}: the origin is down"))
}

#[cached(backend = "redis", remote = fail_remote, name = "lock-fail", lock = true)]
fn waiting_caller(id: u64) -> Result<String, String> {
    FAIL_RUNS.fetch_add(1, Ordering::SeqCst);
    fail_event("waiter computed");
    Ok(format!("{id}: computed by the waiter"))
}

#[test]
fn a_failed_holder_hands_over_at_once() {
    let server = start_server();
    FAIL_REMOTE
        .set(remote_on(server.url(), "lock-fail"))
        .expect("set once");
    let holder = std::thread::spawn(|| failing_holder(5));
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    assert_eq!(
        waiting_caller(5),
        Ok("5: computed by the waiter".to_owned())
    );
    let waited = asked.elapsed();
    eprintln!("the waiter computed {waited:?} after it asked");
    assert!(holder.join().expect("no panic").is_err());
    assert_eq!(FAIL_RUNS.load(Ordering::SeqCst), 2);
    // It waited for the holder (rather than computing beside it)...
    assert_eq!(
        *FAIL_EVENTS.lock().unwrap_or_else(|e| e.into_inner()),
        ["holder started", "holder failed", "waiter computed"]
    );
    // The holder's release, not its lease's expiry, ended the wait.
    assert!(
        waited < cachemere::remote::LOCK_LEASE / 2,
        "waited {waited:?}"
    );
    assert_eq!(waiting_caller::cache_info().misses, 1);
}

remote_slot!(OUTLIVED_REMOTE, outlived_remote);
static OUTLIVED_EVENTS: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());

fn outlived_event(event: &'static str) {
    OUTLIVED_EVENTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(event);
}

/// Computes for longer than its TTL: its value cannot be stored.
#[cached(backend = "redis", remote = outlived_remote, name = "lock-outlived", ttl = 1, lock = true)]
fn outliving_holder(id: u64) -> u64 {
    outlived_event("holder started");
    std::thread::sleep(Duration::from_millis(1300));
    outlived_event("holder returned");
    id
}

#[cached(backend = "redis", remote = outlived_remote, name = "lock-outlived", ttl = 1, lock = true)]
fn outlived_waiter(id: u64) -> u64 {
    outlived_event("waiter computed");
    id + 1
}

#[test]
fn a_holder_whose_value_outlived_its_ttl_hands_over_at_once() {
    let server = start_server();
    OUTLIVED_REMOTE
        .set(remote_on(server.url(), "lock-outlived"))
        .expect("set once");
    let holder = std::thread::spawn(|| outliving_holder(9));
    std::thread::sleep(Duration::from_millis(150));
    let asked = Instant::now();
    assert_eq!(outlived_waiter(9), 10);
    let waited = asked.elapsed();
    eprintln!("the waiter computed {waited:?} after it asked");
    assert_eq!(holder.join().expect("no panic"), 9);
    assert_eq!(
        *OUTLIVED_EVENTS.lock().unwrap_or_else(|e| e.into_inner()),
        ["holder started", "holder returned", "waiter computed"],
        "the waiter waited for the holder"
    );
    // The holder took its lease back (its value could not be stored): the waiter computed
    // when the holder returned (about 1.15 s after it asked), not when the lease, renewed
    // while the holder ran, expired (about 3.9 s).
    assert!(
        waited < Duration::from_millis(1150) + cachemere::remote::LOCK_LEASE / 3,
        "waited {waited:?}"
    );
}

remote_slot!(DOWN_REMOTE, down_remote);
static DOWN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "redis", remote = down_remote, name = "lock-down", lock = true)]
fn slow_holder(id: u64) -> u64 {
    DOWN_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(2));
    id
}

#[cached(backend = "redis", remote = down_remote, name = "lock-down", lock = true)]
async fn async_waiter(id: u64) -> u64 {
    DOWN_RUNS.fetch_add(1, Ordering::SeqCst);
    id * 10
}

#[test]
fn a_server_dying_while_a_caller_waits_does_not_fail_the_call() {
    let mut server = start_server();
    DOWN_REMOTE
        .set(
            RedisConfig::new(server.url())
                .prefix("lock-down")
                .timeout(Duration::from_millis(200))
                .build()
                .unwrap_or_else(|error| panic!("{error}")),
        )
        .expect("set once");
    let holder = std::thread::spawn(|| slow_holder(3));
    std::thread::sleep(Duration::from_millis(200));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let waiter = std::thread::spawn(move || runtime.block_on(async_waiter(3)));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiter.is_finished(),
        "the async caller waits for the holder"
    );
    server.kill().expect("SIGKILL");
    assert_eq!(waiter.join().expect("no panic"), 30);
    assert_eq!(holder.join().expect("no panic"), 3);
    assert_eq!(DOWN_RUNS.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// A holder that panics, or whose future is dropped, takes its lease back: the waiter computes
// at once, not after the lease.

remote_slot!(GONE_REMOTE, gone_remote);
static GONE_RUNS: AtomicUsize = AtomicUsize::new(0);

static PANICKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(backend = "redis", remote = gone_remote, name = "lock-gone", lock = true)]
fn panicking_holder(id: u64) -> u64 {
    GONE_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(400));
    PANICKED.store(true, Ordering::SeqCst);
    panic!("holder {id} panics");
}

#[cached(backend = "redis", remote = gone_remote, name = "lock-gone", lock = true)]
async fn cancelled_holder(id: u64) -> u64 {
    GONE_RUNS.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    id
}

#[cached(backend = "redis", remote = gone_remote, name = "lock-gone", lock = true)]
fn gone_waiter(id: u64) -> u64 {
    GONE_RUNS.fetch_add(1, Ordering::SeqCst);
    // Key 1's waiter waited for the panicking holder rather than computing beside it.
    assert!(
        id != 1 || PANICKED.load(Ordering::SeqCst),
        "computed while the holder ran"
    );
    id + 100
}

#[test]
fn a_holder_that_panics_or_is_cancelled_hands_over_at_once() {
    let server = start_server();
    GONE_REMOTE
        .set(remote_on(server.url(), "lock-gone"))
        .expect("set once");

    let holder = std::thread::spawn(|| panicking_holder(1));
    std::thread::sleep(Duration::from_millis(100));
    let asked = Instant::now();
    assert_eq!(gone_waiter(1), 101);
    let waited = asked.elapsed();
    assert!(holder.join().is_err(), "the holder panicked");
    eprintln!("after a panic, the waiter computed {waited:?} after it asked");
    assert!(
        waited < cachemere::remote::LOCK_LEASE / 2,
        "waited {waited:?}"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // The holder takes its lease and computes forever; it is dropped after 300 ms.
    let dropped = runtime.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), cancelled_holder(2)).await
    });
    assert!(dropped.is_err(), "the holder never finishes");
    let asked = Instant::now();
    assert_eq!(gone_waiter(2), 102);
    let waited = asked.elapsed();
    eprintln!("after a cancellation, the waiter computed {waited:?} after it asked");
    assert!(
        waited < cachemere::remote::LOCK_LEASE / 2,
        "waited {waited:?}"
    );
    assert_eq!(GONE_RUNS.load(Ordering::SeqCst), 4);
}

// ---------------------------------------------------------------------------------------------
// An invalidation queued (the store refused it) while a caller waits for another process's
// holder: neither the waiter nor a call made after `invalidate` returned gets the holder's
// value, computed before the invalidation.

/// A store that refuses tombstones on demand, over a map shared with a well-behaved remote.
struct RefusingStore {
    shared: cachemere_tests::user_remote::SharedMapStore,
    refuse: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl cachemere::remote::RemoteStore for RefusingStore {
    fn get_many(&self, keys: Vec<String>) -> cachemere::remote::StoreFuture<Vec<Option<Vec<u8>>>> {
        self.shared.get_many(keys)
    }
    fn set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> cachemere::remote::StoreFuture<()> {
        self.shared.set(key, value, ttl)
    }
    fn get_or_set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> cachemere::remote::StoreFuture<Option<Vec<u8>>> {
        self.shared.get_or_set(key, value, ttl)
    }
    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> cachemere::remote::StoreFuture<bool> {
        self.shared.compare_and_set(key, expected, value, ttl)
    }
    fn swap(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> cachemere::remote::StoreFuture<Option<Vec<u8>>> {
        if self.refuse.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(cachemere::BackendError::Unavailable(
                    "refused by the test".into(),
                ))
            });
        }
        self.shared.swap(key, value, ttl)
    }
    fn delete(&self, key: String) -> cachemere::remote::StoreFuture<bool> {
        self.shared.delete(key)
    }
    fn count_prefix(&self, prefix: String) -> cachemere::remote::StoreFuture<u64> {
        self.shared.count_prefix(prefix)
    }
    fn describe(&self) -> String {
        "a store refusing tombstones on demand".to_owned()
    }
}

remote_slot!(QUEUED_A, queued_a);
remote_slot!(QUEUED_B, queued_b);

#[cached(backend = "remote", remote = queued_a, name = "lock-queued", lock = true)]
fn queued_holder(id: u64) -> String {
    std::thread::sleep(Duration::from_millis(600));
    format!("{id}: old (computed before the invalidation)")
}

#[cached(backend = "remote", remote = queued_b, name = "lock-queued", lock = true)]
fn queued_caller(id: u64) -> String {
    format!("{id}: new")
}

#[test]
fn an_invalidation_queued_during_a_wait_hides_the_holders_value() {
    let shared = cachemere_tests::user_remote::SharedMapStore::default();
    let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    QUEUED_A
        .set(
            Remote::builder(shared.clone())
                .prefix("lock-queued")
                .build(),
        )
        .expect("set once");
    QUEUED_B
        .set(
            Remote::builder(RefusingStore {
                shared,
                refuse: std::sync::Arc::clone(&refuse),
            })
            .prefix("lock-queued")
            .build(),
        )
        .expect("set once");
    let holder = std::thread::spawn(|| queued_holder(1));
    std::thread::sleep(Duration::from_millis(100));
    let waiter = std::thread::spawn(|| queued_caller(1));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiter.is_finished(), "the caller waits for the holder");
    refuse.store(true, Ordering::SeqCst);
    assert_eq!(
        queued_caller::invalidate(1),
        cachemere::Invalidation::Queued
    );
    let late = queued_caller(1);
    assert_eq!(
        late, "1: new",
        "a call made after the invalidation returned"
    );
    let waited = waiter.join().expect("no panic");
    assert_eq!(
        waited, "1: new",
        "the waiter, which read again after the invalidation"
    );
    assert!(holder.join().expect("no panic").contains("old"));
    refuse.store(false, Ordering::SeqCst);
}
