//! Invalidation racing with a remote cache's computation: a stamp that disappears (expiry,
//! eviction) never brings an old entry back, and a caller that arrives after an invalidation is
//! never handed a value read before it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use cachemere::cached;
use cachemere::remote::Remote;
use cachemere_tests::user_remote::SharedMapStore;

fn remote() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            Remote::builder(SharedMapStore::default())
                .prefix("races")
                .build()
        })
        .clone()
}

/// The data behind the cached function, per id.
static DATA: [AtomicU64; 16] = [const { AtomicU64::new(1) }; 16];

/// When set, the next computation reports that it started and waits for a go.
static GATE: Mutex<Option<(Sender<()>, Receiver<()>)>> = Mutex::new(None);

#[cached(backend = "remote", remote = remote, tags = ["race-item:{id}"])]
fn read(id: usize) -> u64 {
    let gate = GATE.lock().unwrap_or_else(PoisonError::into_inner).take();
    let value = DATA[id].load(Ordering::SeqCst);
    if let Some((started, go)) = gate {
        started.send(()).unwrap();
        go.recv().unwrap();
    }
    value
}

/// The gate is shared: these tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `read(id)` on a thread whose computation reads the data, then waits; returns the
/// thread, and the channels to see it start and to let it finish.
fn held_computation(id: usize) -> (std::thread::JoinHandle<u64>, Receiver<()>, Sender<()>) {
    let (started_tx, started_rx) = channel();
    let (go_tx, go_rx) = channel();
    *GATE.lock().unwrap_or_else(PoisonError::into_inner) = Some((started_tx, go_rx));
    let thread = std::thread::spawn(move || read(id));
    (thread, started_rx, go_tx)
}

#[test]
fn a_vanished_stamp_never_revives_an_entry_computed_before_an_invalidation() {
    let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let id = 7;
    let (leader, started, go) = held_computation(id);
    started.recv().unwrap();
    DATA[id].store(2, Ordering::SeqCst);
    cachemere::invalidate_tag("race-item:7");
    go.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        1,
        "its call began before the change"
    );

    // Before anyone reads again, the tag's stamp expires or is evicted: the entry written by
    // that computation must still read as a miss.
    let store = remote().store();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(store.delete("races:#tag:race-item%3A7".to_owned()))
        .unwrap();
    assert_eq!(read(id), 2, "no old entry comes back");
    assert_eq!(read(id), 2);
}

#[test]
fn a_caller_after_an_invalidation_is_not_handed_the_value_read_before_it() {
    let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let id = 8;
    let (leader, started, go) = held_computation(id);
    started.recv().unwrap();
    DATA[id].store(2, Ordering::SeqCst);
    cachemere::invalidate_tag("race-item:8");
    // Joins the running computation (given time to); its call began after the invalidation.
    let follower = std::thread::spawn(move || read(id));
    std::thread::sleep(Duration::from_millis(200));
    go.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 1);
    assert_eq!(
        follower.join().unwrap(),
        2,
        "handed a value read before its call"
    );
}
