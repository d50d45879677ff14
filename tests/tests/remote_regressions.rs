//! Regressions found by an adversarial review of "invalidation is exact": each test is one
//! bug, written to fail while it was there (F1 to F7 in the review; all fixed). An in-process store with fault injection stands in for Redis
//! (and for "another process": it writes to the store directly, as another process's
//! invalidation would, without touching this process's invalidation epoch).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Barrier, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use cachemere::remote::{Codec, Remote, RemoteStore, StoreFuture};
use cachemere::{BackendError, Invalidation, cached};
use cachemere_tests::gate::Gate;

// ---------------------------------------------------------------------------------------------
// A store with faults.

type Entries = HashMap<String, (Vec<u8>, Instant)>;

#[derive(Default)]
struct Faults {
    /// `swap` (tombstones) fails while > 0 (decremented per call; u64::MAX: forever).
    failing_swaps: AtomicU64,
    /// `swap` panics while > 0.
    panicking_swaps: AtomicU64,
    /// `get_many` panics while > 0.
    panicking_reads: AtomicU64,
}

fn take(counter: &AtomicU64) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| match n {
            0 => None,
            u64::MAX => Some(u64::MAX),
            n => Some(n - 1),
        })
        .is_ok()
}

#[derive(Clone, Default)]
struct FaultStore {
    entries: Arc<Mutex<Entries>>,
    faults: Arc<Faults>,
}

impl FaultStore {
    fn with<T: Send + 'static>(&self, op: impl FnOnce(&mut Entries) -> T) -> T {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        op(&mut entries)
    }

    fn keys(&self) -> Vec<String> {
        self.with(|entries| entries.keys().cloned().collect())
    }

    /// What another process's write does: straight to the store.
    fn put(&self, key: &str, value: Vec<u8>) {
        self.with(|entries| {
            entries.insert(
                key.to_owned(),
                (value, Instant::now() + Duration::from_secs(3600)),
            );
        });
    }
}

fn ok<T: Send + 'static>(value: T) -> StoreFuture<T> {
    Box::pin(async move { Ok(value) })
}

impl RemoteStore for FaultStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        let panics = take(&self.faults.panicking_reads);
        let values = self.with(move |entries| {
            keys.iter()
                .map(|key| entries.get(key).map(|(value, _)| value.clone()))
                .collect::<Vec<_>>()
        });
        Box::pin(async move {
            if panics {
                panic!("a store bug: get_many panicked");
            }
            Ok(values)
        })
    }

    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()> {
        self.with(move |entries| {
            entries.insert(key, (value, Instant::now() + ttl));
        });
        ok(())
    }

    fn get_or_set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<Option<Vec<u8>>> {
        ok(self.with(move |entries| {
            Some(
                entries
                    .entry(key)
                    .or_insert_with(|| (value, Instant::now() + ttl))
                    .0
                    .clone(),
            )
        }))
    }

    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        ok(self.with(move |entries| {
            let matches = entries
                .get(&key)
                .is_some_and(|(current, _)| current.starts_with(&expected));
            if matches {
                entries.insert(key, (value, Instant::now() + ttl));
            }
            matches
        }))
    }

    fn swap(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<Option<Vec<u8>>> {
        if take(&self.faults.panicking_swaps) {
            return Box::pin(async { panic!("a store bug: swap panicked") });
        }
        if take(&self.faults.failing_swaps) {
            return Box::pin(async { Err(BackendError::Other("injected: swap refused".into())) });
        }
        ok(self.with(move |entries| {
            entries
                .insert(key, (value, Instant::now() + ttl))
                .map(|(before, _)| before)
        }))
    }

    fn delete(&self, key: String) -> StoreFuture<bool> {
        ok(self.with(move |entries| entries.remove(&key).is_some()))
    }

    fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
        ok(self
            .with(move |entries| entries.keys().filter(|k| k.starts_with(&prefix)).count() as u64))
    }

    fn describe(&self) -> String {
        "review fault store".to_owned()
    }
}

/// A remote per test: (store, remote).
fn remote_for(
    cell: &'static OnceLock<(FaultStore, Remote)>,
    prefix: &str,
) -> &'static (FaultStore, Remote) {
    cell.get_or_init(|| {
        let store = FaultStore::default();
        let remote = Remote::builder(store.clone())
            .prefix(prefix)
            .timeout(Duration::from_millis(500))
            .build();
        (store, remote)
    })
}

/// What another process's `invalidate(args)` leaves: a fresh tombstone frame (magic, frame
/// version 4, kind 3 = tombstone, no codec, 16 fresh bytes).
fn foreign_tombstone() -> Vec<u8> {
    let mut bytes = vec![0xCA, 4, 3, 0];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    bytes.extend_from_slice(&nanos.to_le_bytes());
    bytes
}

const JOIN_TIME: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// F1. Single flight hands a leader's value, read before another process's invalidation, to a
// follower that joined after that invalidation returned (tombstone and tag forms).

static F1: OnceLock<(FaultStore, Remote)> = OnceLock::new();
fn f1() -> Remote {
    remote_for(&F1, "rf1").1.clone()
}
static F1_DATA: AtomicU64 = AtomicU64::new(1);
static F1_GATE: Gate = Gate::new();

#[cached(backend = "remote", remote = f1, name = "rf1-follow", tags = ["rf1-item:{id}"])]
fn f1_read(id: u64) -> u64 {
    let value = F1_DATA.load(Ordering::SeqCst);
    F1_GATE.pass();
    let _ = id;
    value
}

/// The F1 tests share the gate: they take turns.
static F1_SERIAL: Mutex<()> = Mutex::new(());

/// Runs the race: a leader reads the data and waits; another process updates the data and
/// invalidates (with `invalidate_elsewhere`); a caller that starts afterwards must see the new
/// value.
fn follower_after_foreign_invalidation(
    id: u64,
    invalidate_elsewhere: impl FnOnce(&FaultStore),
) -> u64 {
    let store = &remote_for(&F1, "rf1").0;
    F1_DATA.store(1, Ordering::SeqCst);
    let (started, go) = F1_GATE.arm();
    let leader = std::thread::spawn(move || f1_read(id));
    started.recv().unwrap();

    // Another process: the data changes, then it invalidates; its call returns.
    F1_DATA.store(2, Ordering::SeqCst);
    invalidate_elsewhere(store);

    // This process is told (a message, an HTTP call...) and calls afterwards.
    let follower = std::thread::spawn(move || f1_read(id));
    std::thread::sleep(JOIN_TIME);
    go.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        1,
        "the leader ran before: its own answer is old"
    );
    follower.join().unwrap()
}

#[test]
fn f1_a_follower_after_another_processs_invalidate_is_not_handed_the_old_value() {
    let _turn = F1_SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let id = 5;
    let got = follower_after_foreign_invalidation(id, |store| {
        let entry = store
            .keys()
            .into_iter()
            .find(|key| key.starts_with("rf1:rf1-follow:v1:") && key.ends_with(":5"))
            .expect("the leader's lease is at the entry key");
        store.put(&entry, foreign_tombstone());
    });
    // The populate lost its race (CAS failed), so nothing is stored; but the value was handed.
    assert_eq!(
        got, 2,
        "a call made after another process's invalidate(5) returned was handed the value \
         computed from the data before it"
    );
}

#[test]
fn f1_a_follower_after_another_processs_tag_invalidation_is_not_handed_the_old_value() {
    let _turn = F1_SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let id = 6;
    // Warm the stamps (the tag key must exist to be overwritten as invalidate_tag does).
    let store = &remote_for(&F1, "rf1").0;
    let _ = f1_read(100);
    let got = follower_after_foreign_invalidation(id, |store| {
        let tag = store
            .keys()
            .into_iter()
            .find(|key| {
                key.starts_with("rf1:#tag:") && key.contains("rf1-item") && key.ends_with('6')
            })
            .expect("the tag's stamp key exists");
        // invalidate_tag in another process: SET of a fresh random stamp.
        store.put(&tag, b"0123456789abcdef0123456789abcdef".to_vec());
    });
    let _ = store;
    assert_eq!(
        f1_read(id),
        2,
        "the foreign tag write did hide the stored entry (test sanity)"
    );
    assert_eq!(
        got, 2,
        "a call made after another process's invalidate_tag returned was handed the value \
         computed from the data before it"
    );
}

// ---------------------------------------------------------------------------------------------
// F2. While an invalidation of a key is queued, concurrent misses of that key all compute
// (single flight is bypassed): a stampede exactly while the store is unhealthy.

static F2: OnceLock<(FaultStore, Remote)> = OnceLock::new();
fn f2() -> Remote {
    remote_for(&F2, "rf2").1.clone()
}
static F2_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "remote", remote = f2, name = "rf2-herd")]
fn f2_slow(id: u64) -> u64 {
    F2_RUNS.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    id
}

#[test]
fn f2_a_queued_invalidation_keeps_single_flight() {
    let (store, _) = remote_for(&F2, "rf2");
    assert_eq!(f2_slow(1), 1);
    store.faults.failing_swaps.store(u64::MAX, Ordering::SeqCst);
    assert_eq!(f2_slow::invalidate(1), Invalidation::Queued);
    F2_RUNS.store(0, Ordering::SeqCst);
    let callers = 8;
    let barrier = Arc::new(Barrier::new(callers));
    let threads: Vec<_> = (0..callers)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                f2_slow(1)
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 1);
    }
    store.faults.failing_swaps.store(0, Ordering::SeqCst);
    assert_eq!(
        F2_RUNS.load(Ordering::SeqCst),
        1,
        "concurrent misses of one key computed more than once in one process"
    );
}

// ---------------------------------------------------------------------------------------------
// F3. A store future that panics inside the background drain kills the drain task for good:
// `draining` stays true, no drain is ever started again, the invalidation is never delivered
// and the key is never cached again in this process.

static F3: OnceLock<(FaultStore, Remote)> = OnceLock::new();
fn f3() -> Remote {
    remote_for(&F3, "rf3").1.clone()
}
static F3_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "remote", remote = f3, name = "rf3-drain")]
fn f3_value(id: u64) -> u64 {
    F3_RUNS.fetch_add(1, Ordering::SeqCst);
    id
}

#[test]
fn f3_a_store_panicking_in_the_retry_strands_no_invalidation() {
    let (store, remote) = remote_for(&F3, "rf3");
    assert_eq!(f3_value(1), 1);
    // Two panics: the direct try (contained by the blocking path) and the drain's first retry.
    store.faults.panicking_swaps.store(2, Ordering::SeqCst);
    assert_eq!(f3_value::invalidate(1), Invalidation::Queued);
    // The store is fine from now on; a second invalidation queues behind the first.
    std::thread::sleep(Duration::from_millis(200));
    let _ = f3_value::invalidate(2);
    let left = remote.flush_pending(Duration::from_secs(3));
    assert_eq!(
        left,
        0,
        "pending invalidations never delivered although the store answers: {:?}",
        remote.health()
    );
}

// ---------------------------------------------------------------------------------------------
// F4. A store future that panics on the caller's multi-threaded runtime fails the call
// (on the blocking path the same panic is contained and the function runs).

static F4: OnceLock<(FaultStore, Remote)> = OnceLock::new();
fn f4() -> Remote {
    remote_for(&F4, "rf4").1.clone()
}

#[cached(backend = "remote", remote = f4, name = "rf4-async")]
async fn f4_value(id: u64) -> u64 {
    id
}

#[cached(backend = "remote", remote = f4, name = "rf4-sync")]
fn f4_sync(id: u64) -> u64 {
    id
}

#[test]
fn f4_a_panicking_store_does_not_fail_an_async_call() {
    let (store, _) = remote_for(&F4, "rf4");
    store.faults.panicking_reads.store(1, Ordering::SeqCst);
    assert_eq!(
        f4_sync(3),
        3,
        "the blocking path contains the store's panic"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    store.faults.panicking_reads.store(1, Ordering::SeqCst);
    let outcome = runtime.block_on(async { tokio::spawn(f4_value(3)).await });
    assert!(
        matches!(outcome, Ok(3)),
        "a cache failure failed the call: {outcome:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// F5. Decoding is not bounded in time: a length prefix of zero-sized elements is not capped by
// the input, so 10 hostile bytes make a `Vec<()>` decode loop ~2^64 times (a hung call).

#[test]
fn f5_a_hostile_length_of_zero_sized_elements_is_refused_quickly() {
    // postcard varint of u64::MAX, then nothing: u64::MAX elements of `()`, 0 bytes each.
    let hostile = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    let (done, finished) = channel();
    std::thread::spawn(move || {
        let decoded = Codec::Postcard.decode::<Vec<()>>(&hostile);
        let _ = done.send(decoded.is_ok());
    });
    assert!(
        finished.recv_timeout(Duration::from_secs(3)).is_ok(),
        "Codec::Postcard.decode::<Vec<()>>(10 bytes) still running after 3 s"
    );
}

// ---------------------------------------------------------------------------------------------
// F6. Replacing the default remote (install) forgets the queued invalidations for reads: a call
// after `invalidate` returned `Queued` serves the entry it hides.

fn f6_store() -> &'static FaultStore {
    static STORE: OnceLock<FaultStore> = OnceLock::new();
    STORE.get_or_init(FaultStore::default)
}

fn f6_remote() -> Remote {
    Remote::builder(f6_store().clone())
        .prefix("rf6")
        .timeout(Duration::from_millis(500))
        .build()
}

static F6_DATA: AtomicU64 = AtomicU64::new(1);

#[cached(backend = "remote", name = "rf6-default")]
fn f6_value(id: u64) -> u64 {
    let _ = id;
    F6_DATA.load(Ordering::SeqCst)
}

#[test]
fn f6_reinstalling_the_default_remote_keeps_queued_invalidations_hidden() {
    f6_remote().install();
    assert_eq!(f6_value(1), 1);
    f6_store()
        .faults
        .failing_swaps
        .store(u64::MAX, Ordering::SeqCst);
    F6_DATA.store(2, Ordering::SeqCst);
    assert_eq!(f6_value::invalidate(1), Invalidation::Queued);
    assert_eq!(f6_value(1), 2, "hidden while queued");
    // A configuration reload installs an equivalent remote (same store and prefix).
    f6_remote().install();
    let got = f6_value(1);
    f6_store().faults.failing_swaps.store(0, Ordering::SeqCst);
    assert_eq!(got, 2, "served what a queued invalidation hides");
}

// ---------------------------------------------------------------------------------------------
// F7. Every miss whose result is not stored (None / Err) leaves a lease that lives the full
// entry TTL (max_ttl, 24 h, by default): one stray key per distinct failing argument.

static F7: OnceLock<(FaultStore, Remote)> = OnceLock::new();
fn f7() -> Remote {
    remote_for(&F7, "rf7").1.clone()
}

#[cached(backend = "remote", remote = f7, name = "rf7-none")]
fn f7_lookup(id: u64) -> Option<u64> {
    (id == u64::MAX).then_some(id)
}

#[test]
fn f7_results_that_are_not_stored_leave_no_lease() {
    let (store, _) = remote_for(&F7, "rf7");
    for id in 0..100 {
        assert_eq!(f7_lookup(id), None);
    }
    // Released leases are replaced by a marker that expires after 1 ms.
    std::thread::sleep(Duration::from_millis(20));
    let strays = store
        .keys()
        .into_iter()
        .filter(|key| key.starts_with("rf7:rf7-none:"))
        .count();
    assert_eq!(
        strays, 0,
        "{strays} leases left for 100 lookups that stored nothing"
    );
}

// F1 against a real redis-server and a real second OS process (`remote_peer invalidate-tag`).

static F1R: OnceLock<Remote> = OnceLock::new();
fn f1r() -> Remote {
    F1R.get().expect("set by the test").clone()
}
static F1R_DATA: AtomicU64 = AtomicU64::new(1);
static F1R_GATE: Gate = Gate::new();

/// The same cache as `remote_peer`'s (`faults-shared`, tag `shared-item:{id}`).
#[cached(backend = "redis", remote = f1r, name = "faults-shared", tags = ["shared-item:{id}"])]
fn f1r_value(id: u64) -> String {
    let value = F1R_DATA.load(Ordering::SeqCst);
    F1R_GATE.pass();
    format!("{id}:{value}")
}

#[test]
fn f1_redis_a_follower_after_a_peer_processs_tag_invalidation_gets_the_new_value() {
    use cachemere_tests::redis_harness::RedisServer;
    let server = RedisServer::start().expect("redis-server");
    F1R.set(
        cachemere::redis::RedisConfig::new(server.url())
            .prefix("faults-shared")
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap(),
    )
    .unwrap();
    let id = 7;
    let (started, go) = F1R_GATE.arm();
    let leader = std::thread::spawn(move || f1r_value(id));
    started.recv().unwrap();
    F1R_DATA.store(2, Ordering::SeqCst);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_remote_peer"))
        .args([server.url().as_str(), "invalidate-tag", "shared-item:7"])
        .env_remove("CACHEMERE_REDIS_URL")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(stdout.contains("outcome=applied"), "{stdout}");
    // The peer's call returned `applied`; this process calls afterwards.
    let follower = std::thread::spawn(move || f1r_value(id));
    std::thread::sleep(JOIN_TIME);
    go.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), "7:1");
    let got = follower.join().unwrap();
    assert_eq!(
        f1r_value(id),
        "7:2",
        "the entry the leader wrote is hidden (test sanity)"
    );
    assert_eq!(
        got, "7:2",
        "called after the peer's invalidate_tag returned `applied`"
    );
}
