//! Sliding expiry (`idle`) against its races: a renewal never replaces a newer value (memory,
//! with and without single flight), idle counts from the store, and a remote renewal never
//! extends a newer value nor outlives `ttl` (a store whose renewals land late). From the
//! second review of the freshness change; each failed before its fix.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::thread;
use std::time::Duration;

use cachemere::remote::{Remote, RemoteStore, StoreFuture};
use cachemere::{Status, cached};
use cachemere_tests::user_remote::SharedMapStore;

// ---------------------------------------------------------------------------------------------
// 1. Memory: a renewal stores the entry it read over a newer value computed meanwhile.
// ---------------------------------------------------------------------------------------------

/// Holds a thread named "renewer" inside `renew` (its `fresh_until` calls `ttl_from`), after it
/// read the old entry as fresh and before it joins the key's flight: a preemption, made
/// deterministic.
struct Gate {
    armed: AtomicBool,
    entered: AtomicBool,
    released: AtomicBool,
}

impl Gate {
    const fn new() -> Self {
        Gate {
            armed: AtomicBool::new(false),
            entered: AtomicBool::new(false),
            released: AtomicBool::new(false),
        }
    }

    fn hold(&self, value: u64) {
        if value == 1 && thread::current().name() == Some("renewer") && self.armed.load(SeqCst) {
            self.entered.store(true, SeqCst);
            while !self.released.load(SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

static GATE_SF: Gate = Gate::new();
static GATE_NO_SF: Gate = Gate::new();

fn own_ttl_sf(value: &u64) -> Option<Duration> {
    GATE_SF.hold(*value);
    None
}

fn own_ttl_no_sf(value: &u64) -> Option<Duration> {
    GATE_NO_SF.hold(*value);
    None
}

static RUNS_SF: AtomicU64 = AtomicU64::new(0);
static RUNS_NO_SF: AtomicU64 = AtomicU64::new(0);

/// Each computation returns the next version: 1, 2, ...
#[cached(ttl = "1h", idle = "1s", ttl_from = own_ttl_sf)]
fn versioned_sf(key: u64) -> u64 {
    let _ = key;
    RUNS_SF.fetch_add(1, SeqCst) + 1
}

#[cached(ttl = "1h", idle = "1s", ttl_from = own_ttl_no_sf, single_flight = false)]
fn versioned_no_sf(key: u64) -> u64 {
    let _ = key;
    RUNS_NO_SF.fetch_add(1, SeqCst) + 1
}

fn renewal_race(call: fn(u64) -> u64, gate: &'static Gate) {
    let idle = Duration::from_secs(1);
    assert_eq!(call(0), 1, "version 1 computed and stored");
    // Past half of idle: the next hit leaves the fast path to renew.
    thread::sleep(idle * 6 / 10);
    gate.armed.store(true, SeqCst);
    let renewer = thread::Builder::new()
        .name("renewer".into())
        .spawn(move || call(0))
        .unwrap();
    while !gate.entered.load(SeqCst) {
        thread::sleep(Duration::from_millis(1));
    }
    // The renewer read version 1 as fresh and is about to renew it. Version 1 now expires
    // (nobody else read it for `idle`), and a call computes version 2.
    thread::sleep(idle * 6 / 10);
    assert_eq!(call(0), 2, "version 1 expired: version 2 computed");
    assert_eq!(call(0), 2, "version 2 is stored");
    gate.released.store(true, SeqCst);
    assert_eq!(
        renewer.join().unwrap(),
        1,
        "the renewer read version 1 while fresh"
    );
    assert_eq!(
        call(0),
        2,
        "the renewal of version 1 replaced the newer version 2 (an older value is served again)"
    );
}

#[test]
fn memory_renewal_does_not_replace_a_newer_value() {
    renewal_race(versioned_sf, &GATE_SF);
}

#[test]
fn memory_renewal_does_not_replace_a_newer_value_without_single_flight() {
    renewal_race(versioned_no_sf, &GATE_NO_SF);
}

// ---------------------------------------------------------------------------------------------
// 2. Memory: `idle` counts from the computation's start, so a computation slower than `idle`
//    is never cached (the remote engine counts it from the write).
// ---------------------------------------------------------------------------------------------

static SLOW_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(idle = "300ms")]
fn slow_memory(key: u64) -> u64 {
    thread::sleep(Duration::from_millis(400));
    SLOW_RUNS.fetch_add(1, SeqCst);
    key
}

#[cached(backend = "remote", remote = plain_remote, name = "review_idle_slow", idle = "300ms")]
fn slow_remote(key: u64) -> u64 {
    thread::sleep(Duration::from_millis(400));
    key
}

fn plain_remote() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            Remote::builder(SharedMapStore::default())
                .prefix("review_idle_plain")
                .build()
        })
        .clone()
}

#[test]
fn remote_slow_computation_read_at_once_is_a_hit() {
    let first = slow_remote::call(1);
    assert_eq!(first.status, Status::Miss);
    assert!(first.stored);
    assert_eq!(
        slow_remote::call(1).status,
        Status::Hit,
        "remote: idle counts from the write"
    );
}

#[test]
fn memory_slow_computation_read_at_once_is_a_hit() {
    let first = slow_memory::call(1);
    assert_eq!(first.status, Status::Miss);
    assert!(
        first.stored,
        "an entry never read is dead on arrival: `idle` counted from the computation's start"
    );
    assert_eq!(slow_memory::call(1).status, Status::Hit);
}

// ---------------------------------------------------------------------------------------------
// 3./4. Remote: the renewal's TTL is computed when the value is read and applied whenever the
//       store runs the command, to whatever the key holds then. A store whose commands take a
//       while (here 500 ms, a loaded link or a queue) shows it deterministically.
// ---------------------------------------------------------------------------------------------

/// A user store whose `expire` lands `delay` after it is issued.
#[derive(Clone, Default)]
struct LateRenewal {
    inner: SharedMapStore,
}

const EXPIRE_DELAY: Duration = Duration::from_millis(500);

impl RemoteStore for LateRenewal {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        self.inner.get_many(keys)
    }
    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()> {
        self.inner.set(key, value, ttl)
    }
    fn get_or_set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<Option<Vec<u8>>> {
        self.inner.get_or_set(key, value, ttl)
    }
    /// A renewal (the bytes written are the ones expected: the same value, a new TTL) lands
    /// late; every other compare-and-set at once.
    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        if !value.starts_with(&expected) {
            return self.inner.compare_and_set(key, expected, value, ttl);
        }
        let inner = self.inner.clone();
        thread::spawn(move || {
            thread::sleep(EXPIRE_DELAY);
            // SharedMapStore applies an operation when it is called.
            drop(inner.compare_and_set(key, expected, value, ttl));
        });
        Box::pin(async { Ok(true) })
    }
    fn delete(&self, key: String) -> StoreFuture<bool> {
        self.inner.delete(key)
    }
    fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
        self.inner.count_prefix(prefix)
    }
    fn describe(&self) -> String {
        "late renewals".to_owned()
    }
}

fn late_remote() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            Remote::builder(LateRenewal::default())
                .prefix("review_idle_late")
                .build()
        })
        .clone()
}

/// The value's own TTL in milliseconds (0: none of its own).
fn own_ms(value: &(u64, u64)) -> Option<Duration> {
    (value.1 != 0).then(|| Duration::from_millis(value.1))
}

#[cached(backend = "remote", remote = late_remote, name = "review_idle_token", ttl = "1h", idle = "10s", ttl_from = own_ms)]
fn token(key: u64) -> (u64, u64) {
    (key, 0)
}

/// A renewal of the old value lands on the newer value `set` wrote, and gives it 10 s though
/// its own TTL is 800 ms.
#[test]
fn remote_renewal_does_not_extend_a_newer_value_past_its_ttl() {
    assert_eq!(token::call(1).status, Status::Miss);
    assert_eq!(
        token::call(1).status,
        Status::Hit,
        "read: a renewal is issued"
    );
    assert!(
        token::set(1, (2, 800)).is_stored(),
        "a newer value, fresh for 800 ms"
    );
    thread::sleep(Duration::from_millis(1500));
    let late = token::call(1);
    assert!(
        !(late.status == Status::Hit && late.value == (2, 800)),
        "a value {:?} past its own 800 ms TTL was served as fresh (age {:?})",
        late.value,
        late.age
    );
}

#[cached(backend = "remote", remote = late_remote, name = "review_idle_capped", ttl = "1s", idle = "1h")]
fn capped(key: u64) -> u64 {
    key
}

/// `ttl` caps the renewals: the renewal issued at 200 ms says "800 ms more", and counts them
/// from when it lands.
#[test]
fn remote_renewal_is_capped_by_the_ttl() {
    assert_eq!(capped::call(1).status, Status::Miss);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(
        capped::call(1).status,
        Status::Hit,
        "read: a renewal is issued"
    );
    thread::sleep(Duration::from_millis(1100)); // 1.3 s after the write
    let late = capped::call(1);
    assert_ne!(
        late.status,
        Status::Hit,
        "served as fresh {:?} after its computation; ttl = 1s",
        late.age
    );
}

// ---------------------------------------------------------------------------------------------
// What held: a renewal held at the same point racing with invalidate, invalidate_tag,
// cache_clear, set and refresh never brings version 1 back (these pass).
// ---------------------------------------------------------------------------------------------

macro_rules! held_renewal_vs {
    ($test:ident, $f:ident, $gate:ident, $hook:ident, $runs:ident, |$k:ident| $hide:expr, $after:expr) => {
        static $gate: Gate = Gate::new();
        static $runs: AtomicU64 = AtomicU64::new(0);
        fn $hook(value: &u64) -> Option<Duration> {
            $gate.hold(*value);
            None
        }
        #[cached(ttl = "1h", idle = "1s", ttl_from = $hook, tags = ["review:{key}"])]
        fn $f(key: u64) -> u64 {
            let _ = key;
            $runs.fetch_add(1, SeqCst) + 1
        }
        #[test]
        fn $test() {
            assert_eq!($f(7), 1);
            thread::sleep(Duration::from_millis(600));
            $gate.armed.store(true, SeqCst);
            let renewer = thread::Builder::new()
                .name("renewer".into())
                .spawn(|| $f(7))
                .unwrap();
            while !$gate.entered.load(SeqCst) {
                thread::sleep(Duration::from_millis(1));
            }
            let $k = 7_u64;
            let _ = $hide;
            $gate.released.store(true, SeqCst);
            assert_eq!(renewer.join().unwrap(), 1);
            assert_eq!($f(7), $after, "what the renewal read came back");
        }
    };
}

held_renewal_vs!(
    held_vs_invalidate,
    inv_f,
    INV_GATE,
    inv_hook,
    INV_RUNS,
    |k| inv_f::invalidate(k),
    2
);
held_renewal_vs!(
    held_vs_tag,
    tag_f,
    TAG_GATE,
    tag_hook,
    TAG_RUNS,
    |k| cachemere::invalidate_tag(&format!("review:{k}")),
    2
);
held_renewal_vs!(
    held_vs_clear,
    clr_f,
    CLR_GATE,
    clr_hook,
    CLR_RUNS,
    |k| {
        let _ = k;
        clr_f::cache_clear()
    },
    2
);
held_renewal_vs!(
    held_vs_set,
    set_f,
    SET_GATE,
    set_hook,
    SET_RUNS,
    |k| set_f::set(k, 40),
    40
);
held_renewal_vs!(
    held_vs_refresh,
    ref_f,
    REF_GATE,
    ref_hook,
    REF_RUNS,
    |k| ref_f::refresh(k),
    2
);

// What held: a refresh whose computation reads its own key while that entry needs renewing.
static REC_RUNS: AtomicU64 = AtomicU64::new(0);

#[cached(ttl = "1h", idle = "1s", skip(depth))]
fn recursive(key: u64, depth: u32) -> u64 {
    REC_RUNS.fetch_add(1, SeqCst);
    if depth > 0 {
        recursive(key, depth - 1) + 1
    } else {
        key
    }
}

#[cached(ttl = "1h", idle = "1s", skip(depth))]
async fn recursive_async(key: u64, depth: u32) -> u64 {
    if depth > 0 {
        Box::pin(recursive_async(key, depth - 1)).await + 1
    } else {
        key
    }
}

#[test]
fn held_refresh_reading_its_own_old_entry() {
    assert_eq!(recursive(5, 0), 5);
    thread::sleep(Duration::from_millis(600));
    let done = thread::spawn(|| recursive::refresh(5, 1));
    thread::sleep(Duration::from_secs(3));
    assert!(done.is_finished(), "deadlock");
    assert_eq!(done.join().unwrap(), 6);
}

#[test]
fn held_async_refresh_reading_its_own_old_entry() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(recursive_async(5, 0).await, 5);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = tokio::time::timeout(Duration::from_secs(3), recursive_async::refresh(5, 1)).await;
        assert_eq!(r.expect("deadlock"), 6);
    });
}
