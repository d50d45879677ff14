//! In-process caches: an `invalidate` racing with a computation's insert does not return while
//! the value it hides can still be read. A store whose insert is held at a gate shows the
//! sequence: the leader has passed its last check and is inserting when `invalidate` runs.

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use cachemere::{Backend, BackendError, CacheConfig, Equivalent, MemoryBackend, cached};

/// When armed: the next insert waits for `before`, inserts, reports `inserted`, then waits for
/// `after` before returning.
struct Gates {
    before: Receiver<()>,
    inserted: Sender<()>,
    after: Receiver<()>,
}

static GATES: Mutex<Option<Gates>> = Mutex::new(None);

/// The memory store, with its inserts held at [`GATES`] when armed.
struct GatedStore<K, V>(MemoryBackend<K, V>);

fn gated<K: Eq + Hash + Clone, V: Clone>(config: &CacheConfig) -> GatedStore<K, V> {
    GatedStore(MemoryBackend::new(config))
}

impl<K, V> Backend<K, V> for GatedStore<K, V>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.0.get(key)
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        let gates = GATES.lock().unwrap_or_else(PoisonError::into_inner).take();
        let Some(gates) = gates else {
            return self.0.insert(key, value);
        };
        gates.before.recv().unwrap();
        let inserted = self.0.insert(key, value);
        gates.inserted.send(()).unwrap();
        gates.after.recv().unwrap();
        inserted
    }

    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.0.remove(key)
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.0.clear()
    }

    fn len(&self) -> u64 {
        self.0.len()
    }

    fn capacity(&self) -> u64 {
        self.0.capacity()
    }

    fn evictions(&self) -> u64 {
        self.0.evictions()
    }
}

static DATA: AtomicU64 = AtomicU64::new(1);

#[cached(backend = gated)]
fn version(_id: u64) -> u64 {
    DATA.load(Ordering::SeqCst)
}

#[test]
fn invalidate_returns_only_once_a_racing_insert_is_undone() {
    let (before_tx, before) = channel();
    let (inserted, inserted_rx) = channel();
    let (after_tx, after) = channel();
    *GATES.lock().unwrap_or_else(PoisonError::into_inner) = Some(Gates {
        before,
        inserted,
        after,
    });
    // The leader computes 1, passes its last check and waits at the store's insert.
    let leader = std::thread::spawn(|| version(7));
    std::thread::sleep(Duration::from_millis(100));
    DATA.store(2, Ordering::SeqCst);
    let returned = std::sync::Arc::new(AtomicBool::new(false));
    let invalidation = {
        let returned = std::sync::Arc::clone(&returned);
        std::thread::spawn(move || {
            let outcome = version::invalidate(7);
            returned.store(true, Ordering::SeqCst);
            outcome
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    // The stale value goes in now, after the invalidation began.
    before_tx.send(()).unwrap();
    inserted_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    if returned.load(Ordering::SeqCst) {
        // A call made after `invalidate` returned: it must not read the value it hid.
        assert_eq!(
            version(7),
            2,
            "served the value computed before the invalidation"
        );
    }
    assert!(
        !returned.load(Ordering::SeqCst),
        "invalidate returned while the value it hides was in the store"
    );
    after_tx.send(()).unwrap();
    assert_eq!(
        leader.join().unwrap(),
        1,
        "its call began before the change"
    );
    invalidation.join().unwrap();
    assert_eq!(version(7), 2);
}
