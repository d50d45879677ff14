//! Invalidations racing with computations, re-entrant calls, the TTL bound, and generated names
//! that must not collide with the user's.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cachemere::cached;

/// A gate a computation waits at until the test opens it.
struct Gate {
    open: Mutex<bool>,
    changed: std::sync::Condvar,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Gate {
            open: Mutex::new(false),
            changed: std::sync::Condvar::new(),
        })
    }
    fn wait(&self) {
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
    }
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.changed.notify_all();
    }
    fn opened() -> Arc<Self> {
        let gate = Gate::new();
        gate.open();
        gate
    }
}

/// Starts `call` on a thread, held at a new gate, and returns once the computation has started
/// (it sets `started`): the leader of a single flight, mid-computation.
fn start_held_leader(
    call: fn(Arc<Gate>) -> u64,
    started: &AtomicBool,
) -> (Arc<Gate>, std::thread::JoinHandle<u64>) {
    let gate = Gate::new();
    let leader = {
        let gate = Arc::clone(&gate);
        std::thread::spawn(move || call(gate))
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    (gate, leader)
}

static TAGGED_DB: AtomicU64 = AtomicU64::new(1);
static TAGGED_STARTED: AtomicBool = AtomicBool::new(false);

#[cached(tags = ["race-user:{id}"], skip(gate))]
fn tagged(id: u64, gate: Arc<Gate>) -> u64 {
    let read = TAGGED_DB.load(Ordering::SeqCst);
    TAGGED_STARTED.store(true, Ordering::SeqCst);
    gate.wait();
    read
}

#[test]
fn a_waiter_does_not_get_a_value_its_tag_invalidation_hid() {
    let (gate, leader) = start_held_leader(|gate| tagged(42, gate), &TAGGED_STARTED);
    // The leader has read 1. The data changes and the tag is invalidated; then a new caller
    // arrives and (very likely) waits on the running computation.
    TAGGED_DB.store(2, Ordering::SeqCst);
    cachemere::invalidate_tag("race-user:42");
    let follower = {
        let gate = Arc::clone(&gate);
        std::thread::spawn(move || tagged(42, gate))
    };
    // Give the follower time to join the flight; the assertions hold either way.
    std::thread::sleep(Duration::from_millis(100));
    gate.open();
    assert_eq!(
        leader.join().unwrap(),
        1,
        "the leader returns what it computed"
    );
    assert_eq!(
        follower.join().unwrap(),
        2,
        "a call made after the invalidation sees new data"
    );
    assert_eq!(tagged(42, Gate::new()), 2);
}

static KEYED_DB: AtomicU64 = AtomicU64::new(1);
static KEYED_STARTED: AtomicBool = AtomicBool::new(false);

#[cached(skip(gate))]
fn keyed(id: u64, gate: Arc<Gate>) -> u64 {
    let read = KEYED_DB.load(Ordering::SeqCst);
    KEYED_STARTED.store(true, Ordering::SeqCst);
    gate.wait();
    read
}

#[test]
fn invalidate_during_a_computation_is_not_lost() {
    let (gate, leader) = start_held_leader(|gate| keyed(7, gate), &KEYED_STARTED);
    KEYED_DB.store(2, Ordering::SeqCst);
    assert!(!keyed::invalidate(7).removed(), "nothing is stored yet");
    gate.open();
    assert_eq!(leader.join().unwrap(), 1);
    let open = Gate::opened();
    assert_eq!(
        keyed(7, Arc::clone(&open)),
        2,
        "the value read before the invalidation was not stored"
    );
    assert_eq!(keyed(7, open), 2);
    assert_eq!(keyed::cache_info().misses, 2);
}

static CLEARED_DB: AtomicU64 = AtomicU64::new(1);
static CLEARED_STARTED: AtomicBool = AtomicBool::new(false);

#[cached(skip(gate))]
fn cleared(id: u64, gate: Arc<Gate>) -> u64 {
    let read = CLEARED_DB.load(Ordering::SeqCst);
    CLEARED_STARTED.store(true, Ordering::SeqCst);
    gate.wait();
    read
}

#[test]
fn cache_clear_during_a_computation_is_not_lost() {
    let (gate, leader) = start_held_leader(|gate| cleared(3, gate), &CLEARED_STARTED);
    CLEARED_DB.store(2, Ordering::SeqCst);
    cleared::cache_clear();
    gate.open();
    assert_eq!(leader.join().unwrap(), 1);
    assert_eq!(cleared(3, Gate::opened()), 2);
}

#[cached(skip(depth))]
fn reentrant(key: u64, depth: u32) -> u64 {
    if depth == 0 {
        key
    } else {
        reentrant(key, depth - 1) + 1
    }
}

#[cached(skip(depth))]
async fn reentrant_async(key: u64, depth: u32) -> u64 {
    if depth == 0 {
        key
    } else {
        Box::pin(reentrant_async(key, depth - 1)).await + 1
    }
}

#[test]
fn a_computation_calling_its_own_key_does_not_deadlock() {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let sync = reentrant(1, 3);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let asynchronous = runtime.block_on(reentrant_async(1, 3));
        done.send((sync, asynchronous)).unwrap();
    });
    let (sync, asynchronous) = finished
        .recv_timeout(Duration::from_secs(60))
        .expect("a re-entrant call of the same key deadlocked");
    // The innermost call computes first and stores 1; the outer ones compute too (the key is
    // the same, so the last to finish, the outermost, leaves its value stored).
    assert_eq!(sync, 4);
    assert_eq!(asynchronous, 4);
    assert_eq!(
        reentrant(1, 0),
        4,
        "skip(depth): one key, holding the outermost value"
    );
}

static TTL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = "50ms")]
fn computed_at(key: u64) -> (u64, Instant) {
    TTL_CALLS.fetch_add(1, Ordering::SeqCst);
    (key, Instant::now())
}

#[test]
fn an_entry_is_never_served_past_its_ttl() {
    let ttl = Duration::from_millis(50);
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut calls = 0_u64;
    while Instant::now() < deadline {
        let asked_at = Instant::now();
        let (_, when) = computed_at(1);
        // `asked_at` is no later than the freshness check, so this bounds what was served.
        assert!(
            asked_at.saturating_duration_since(when) < ttl,
            "served an entry {:?} old",
            asked_at - when
        );
        calls += 1;
    }
    assert!(calls > 100);
    assert!(
        TTL_CALLS.load(Ordering::SeqCst) >= 2,
        "the entry expired at least once"
    );
}

#[cached]
fn shadowing(__cachemere_cache: u64, __cachemere_key: &str) -> String {
    format!("{__cachemere_cache}{__cachemere_key}")
}

#[test]
fn arguments_named_like_generated_locals_work() {
    assert_eq!(shadowing(1, "a"), "1a");
    assert_eq!(shadowing(1, "a"), "1a");
    assert_eq!(shadowing::cache_info().hits, 1);
    assert!(shadowing::invalidate(1, "a").removed());
}

static SHORT_TTL_CALLS: AtomicUsize = AtomicUsize::new(0);
static SHORT_TTL_ARRIVED: AtomicUsize = AtomicUsize::new(0);
static SHORT_TTL_STARTED: AtomicBool = AtomicBool::new(false);
const SHORT_TTL_FOLLOWERS: usize = 8;

#[cached(ttl = "1s", skip(gate))]
fn outlives_its_ttl(key: u64, gate: Arc<Gate>) -> u64 {
    SHORT_TTL_CALLS.fetch_add(1, Ordering::SeqCst);
    SHORT_TTL_STARTED.store(true, Ordering::SeqCst);
    gate.wait();
    key
}

#[test]
fn waiters_accept_a_value_whose_ttl_ran_out_during_the_computation() {
    let (gate, leader) = start_held_leader(|gate| outlives_its_ttl(5, gate), &SHORT_TTL_STARTED);
    let followers: Vec<_> = (0..SHORT_TTL_FOLLOWERS)
        .map(|_| {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                SHORT_TTL_ARRIVED.fetch_add(1, Ordering::SeqCst);
                outlives_its_ttl(5, gate)
            })
        })
        .collect();
    while SHORT_TTL_ARRIVED.load(Ordering::SeqCst) < SHORT_TTL_FOLLOWERS {
        std::thread::yield_now();
    }
    // The scenario: the computation takes longer than the TTL. (The followers called within
    // the TTL's first second, so the leader's value was fresh when they asked.)
    std::thread::sleep(Duration::from_millis(1500));
    gate.open();
    assert_eq!(leader.join().unwrap(), 5);
    for follower in followers {
        assert_eq!(follower.join().unwrap(), 5);
    }
    assert_eq!(
        SHORT_TTL_CALLS.load(Ordering::SeqCst),
        1,
        "waiters were handed the value instead of computing one after another"
    );
}
