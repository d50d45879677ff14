//! Single flight: one computation per cold key, no deadlock on recursion, no stranded waiters
//! when the computing caller panics or is cancelled, and no serialisation of different keys.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use cachemere::cached;

const CALLERS: usize = 100;

static SYNC_CALLS: AtomicUsize = AtomicUsize::new(0);
static SYNC_ARRIVED: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn cold_sync(key: u64) -> u64 {
    SYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    // Hold the computation until every caller has made its call.
    while SYNC_ARRIVED.load(Ordering::SeqCst) < CALLERS {
        std::thread::yield_now();
    }
    key * 10
}

#[test]
fn hundred_threads_one_cold_key_compute_once() {
    let barrier = Arc::new(Barrier::new(CALLERS));
    let threads: Vec<_> = (0..CALLERS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                SYNC_ARRIVED.fetch_add(1, Ordering::SeqCst);
                cold_sync(7)
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 70);
    }
    assert_eq!(SYNC_CALLS.load(Ordering::SeqCst), 1);
    let info = cold_sync::cache_info();
    assert_eq!((info.hits, info.misses), (CALLERS as u64 - 1, 1));
}

static ASYNC_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(skip(gate))]
async fn cold_async_skip(key: u64, gate: Arc<tokio::sync::Semaphore>) -> u64 {
    ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
    let _permit = gate.acquire().await.unwrap();
    key * 10
}

#[test]
fn hundred_tasks_one_cold_key_compute_once() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .build()
        .unwrap();
    runtime.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let barrier = Arc::new(tokio::sync::Barrier::new(CALLERS + 1));
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let gate = Arc::clone(&gate);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    cold_async_skip(9, gate).await
                })
            })
            .collect();
        barrier.wait().await;
        // Let the tasks reach the cache before the leader may finish.
        for _ in 0..1000 {
            tokio::task::yield_now().await;
        }
        gate.add_permits(CALLERS);
        for task in tasks {
            assert_eq!(task.await.unwrap(), 90);
        }
    });
    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst), 1);
    let info = cold_async_skip::cache_info();
    assert_eq!((info.hits, info.misses), (CALLERS as u64 - 1, 1));
}

static FIB_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fib(n: u64) -> u64 {
    FIB_CALLS.fetch_add(1, Ordering::SeqCst);
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

#[test]
fn recursion_does_not_deadlock() {
    assert_eq!(fib(90), 2_880_067_194_370_816_120);
    assert_eq!(FIB_CALLS.load(Ordering::SeqCst), 91);
}

static PANIC_CALLS: AtomicUsize = AtomicUsize::new(0);
static PANIC_ARRIVED: AtomicUsize = AtomicUsize::new(0);
const PANIC_FOLLOWERS: usize = 8;

#[cached]
fn panics_first_time(key: u64) -> u64 {
    if PANIC_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        while PANIC_ARRIVED.load(Ordering::SeqCst) < PANIC_FOLLOWERS {
            std::thread::yield_now();
        }
        panic!("the leader fails");
    }
    key + 1
}

#[test]
fn a_panicking_leader_hands_over_to_a_waiter() {
    let leader = std::thread::spawn(|| panics_first_time(1));
    // Wait until the leader is computing, so the followers queue behind it.
    while PANIC_CALLS.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let followers: Vec<_> = (0..PANIC_FOLLOWERS)
        .map(|_| {
            std::thread::spawn(|| {
                PANIC_ARRIVED.fetch_add(1, Ordering::SeqCst);
                panics_first_time(1)
            })
        })
        .collect();
    assert!(
        leader.join().is_err(),
        "the leader's panic reaches its caller"
    );
    for follower in followers {
        assert_eq!(follower.join().unwrap(), 2);
    }
    assert_eq!(
        PANIC_CALLS.load(Ordering::SeqCst),
        2,
        "one waiter took over"
    );
}

static CANCEL_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(skip(started))]
async fn cancelled_first_time(key: u64, started: Arc<tokio::sync::Notify>) -> u64 {
    if CANCEL_CALLS.fetch_add(1, Ordering::SeqCst) == 0 {
        started.notify_one();
        std::future::pending::<()>().await;
    }
    key + 1
}

#[test]
fn a_cancelled_leader_hands_over_to_a_waiter() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    runtime.block_on(async {
        let started = Arc::new(tokio::sync::Notify::new());
        let leader = tokio::spawn(cancelled_first_time(5, Arc::clone(&started)));
        started.notified().await;
        let followers: Vec<_> = (0..8)
            .map(|_| {
                tokio::spawn(cancelled_first_time(
                    5,
                    Arc::new(tokio::sync::Notify::new()),
                ))
            })
            .collect();
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        for follower in followers {
            assert_eq!(follower.await.unwrap(), 6);
        }
    });
    assert_eq!(
        CANCEL_CALLS.load(Ordering::SeqCst),
        2,
        "one waiter took over"
    );
}

#[cached(skip(other_key_done))]
fn blocks_until_other_key(key: u64, other_key_done: Arc<Mutex<mpsc::Receiver<()>>>) -> u64 {
    if key == 1 {
        // Key 2 must be computed while key 1 is still computing.
        let receiver = other_key_done.lock().unwrap();
        receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("key 2 was not computed while key 1 was computing: keys are serialised");
    }
    key
}

#[test]
fn different_keys_are_not_serialised() {
    let (sender, receiver) = mpsc::channel();
    let receiver = Arc::new(Mutex::new(receiver));
    let first = {
        let receiver = Arc::clone(&receiver);
        std::thread::spawn(move || blocks_until_other_key(1, receiver))
    };
    assert_eq!(blocks_until_other_key(2, Arc::clone(&receiver)), 2);
    sender.send(()).unwrap();
    assert_eq!(first.join().unwrap(), 1);
}

static UNSHARED_CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached(single_flight = false, skip(both_inside))]
fn without_single_flight(key: u64, both_inside: Arc<Barrier>) -> u64 {
    UNSHARED_CALLS.fetch_add(1, Ordering::SeqCst);
    // Two callers of one key must compute at the same time, or this waits forever.
    both_inside.wait();
    key
}

#[test]
fn single_flight_can_be_turned_off() {
    let both_inside = Arc::new(Barrier::new(2));
    let other = {
        let both_inside = Arc::clone(&both_inside);
        std::thread::spawn(move || without_single_flight(3, both_inside))
    };
    assert_eq!(without_single_flight(3, both_inside), 3);
    assert_eq!(other.join().unwrap(), 3);
    assert_eq!(UNSHARED_CALLS.load(Ordering::SeqCst), 2);
}

static ERR_CALLS: AtomicUsize = AtomicUsize::new(0);
static ERR_FAIL: AtomicBool = AtomicBool::new(true);

#[cached]
fn fails_until_fixed(key: u64) -> Result<u64, String> {
    ERR_CALLS.fetch_add(1, Ordering::SeqCst);
    if ERR_FAIL.load(Ordering::SeqCst) {
        Err("down".to_owned())
    } else {
        Ok(key)
    }
}

#[test]
fn an_error_is_not_shared_as_a_value() {
    assert!(fails_until_fixed(1).is_err());
    ERR_FAIL.store(false, Ordering::SeqCst);
    assert_eq!(fails_until_fixed(1), Ok(1));
    assert_eq!(fails_until_fixed(1), Ok(1));
    assert_eq!(ERR_CALLS.load(Ordering::SeqCst), 2);
}
