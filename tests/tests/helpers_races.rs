//! Races and key shapes of the helpers found by review: integer slices of references hit and
//! invalidate; a memory `set` or `refresh` wins over a computation inserting an older value or
//! running outside the flight (memory and remote).

use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, MutexGuard, PoisonError};

use cachemere::{Backend, BackendError, CacheConfig, Equivalent, SetOutcome, cached};
use cachemere_tests::user_backend::HashMapBackend;

// ---------------------------------------------------------------------------------------------
// Finding: `&[&T]` / `Vec<&T>` with an integer `T` never hits in the memory store.
//
// `SliceRef` hashes element by element (`write_u64` per element), while the owned
// `Vec<u64>` hashes its elements as one byte string (`hash_slice` of integers): with the memory
// store's hasher (foldhash) the two differ, so the borrowed lookup never finds the owned entry.
// ---------------------------------------------------------------------------------------------

static SUM_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn sum_of_refs(xs: &[&u64]) -> u64 {
    SUM_RUNS.fetch_add(1, Ordering::SeqCst);
    xs.iter().copied().sum()
}

static LEN_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn len_of_vec_refs(xs: Vec<&u32>) -> usize {
    LEN_RUNS.fetch_add(1, Ordering::SeqCst);
    xs.len()
}

#[test]
fn a_slice_of_integer_refs_hits() {
    let (a, b) = (1_u64, 2_u64);
    assert_eq!(sum_of_refs(&[&a, &b]), 3);
    assert_eq!(sum_of_refs(&[&a, &b]), 3);
    assert_eq!(
        SUM_RUNS.load(Ordering::SeqCst),
        1,
        "the second call is a hit"
    );
    assert_eq!(sum_of_refs::peek(&[&a, &b]), Some(3));

    let (c, d) = (7_u32, 8_u32);
    assert_eq!(len_of_vec_refs(vec![&c, &d]), 2);
    assert_eq!(len_of_vec_refs(vec![&c, &d]), 2);
    assert_eq!(
        LEN_RUNS.load(Ordering::SeqCst),
        1,
        "the second call is a hit"
    );
}

static VERSION_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Returns how many times it ran: a stale value is visible as an old count.
#[cached]
fn version_of(ids: &[&u64]) -> usize {
    let _ = ids;
    VERSION_RUNS.fetch_add(1, Ordering::SeqCst) + 1
}

#[test]
fn invalidating_a_slice_of_integer_refs_hides_the_entry() {
    let id = 5_u64;
    let first = version_of(&[&id]);
    version_of::invalidate(&[&id]);
    let second = version_of(&[&id]);
    assert_ne!(first, second, "served the entry invalidate() had to remove");
}

// ---------------------------------------------------------------------------------------------
// Finding: a memory `set` does not wait out a computation that is inserting its older value.
//
// A leader that passed its generation check just before `set` bumped the generation inserts
// its value after `set` has stored and returned: the older value is served after `set`
// returned, and the leader's check after its insert then removes the key, `set`'s value with
// it (`set` said `Stored`).
// ---------------------------------------------------------------------------------------------

/// The stages of the next gated insert: reached (before inserting), go, inserted, go.
type InsertGate = (Sender<()>, Receiver<()>, Sender<()>, Receiver<()>);

static INSERT_GATE: Mutex<Option<InsertGate>> = Mutex::new(None);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A map whose next insert, once armed, stops before and after inserting; everything else is
/// the test suite's `HashMapBackend`.
pub struct GatedBackend<K, V> {
    map: HashMapBackend<K, V>,
}

impl<K, V> GatedBackend<K, V> {
    pub fn new(config: &CacheConfig) -> Self {
        GatedBackend {
            map: HashMapBackend::new(config),
        }
    }
}

impl<K, V> Backend<K, V> for GatedBackend<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map.get(key)
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        let gate = lock(&INSERT_GATE).take();
        if let Some((reached, go, _, _)) = &gate {
            let _ = reached.send(());
            let _ = go.recv();
        }
        let outcome = self.map.insert(key, value);
        if let Some((_, _, inserted, go_on)) = &gate {
            let _ = inserted.send(());
            let _ = go_on.recv();
        }
        outcome
    }

    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.map.remove(key)
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.map.clear()
    }

    fn len(&self) -> u64 {
        self.map.len()
    }

    fn capacity(&self) -> u64 {
        self.map.capacity()
    }

    fn evictions(&self) -> u64 {
        self.map.evictions()
    }
}

/// What the data source says now.
static ORIGIN: AtomicUsize = AtomicUsize::new(1);

#[cached(backend = GatedBackend::new)]
fn read_origin(key: u64) -> usize {
    let _ = key;
    ORIGIN.load(Ordering::SeqCst)
}

#[test]
fn memory_set_wins_over_a_computation_inserting_its_older_value() {
    let (reached_tx, reached) = channel();
    let (go_tx, go_rx) = channel();
    let (inserted_tx, inserted) = channel();
    let (go_on_tx, go_on_rx) = channel();
    *lock(&INSERT_GATE) = Some((reached_tx, go_rx, inserted_tx, go_on_rx));

    // A computation that read the origin (1) and is about to insert.
    let leader = std::thread::spawn(|| read_origin(7));
    reached.recv().unwrap();

    // The origin changes and is written through.
    ORIGIN.store(2, Ordering::SeqCst);
    let set_returned = std::sync::Arc::new(AtomicBool::new(false));
    let (set_done_tx, set_done) = channel();
    let setter = {
        let set_returned = std::sync::Arc::clone(&set_returned);
        std::thread::spawn(move || {
            let outcome = read_origin::set(7, 2);
            set_returned.store(true, Ordering::SeqCst);
            let _ = set_done_tx.send(());
            outcome
        })
    };
    // A `set` that does not wait returns now; one that waits for the insert does not.
    let _ = set_done.recv_timeout(std::time::Duration::from_millis(300));
    let returned_before_the_insert = set_returned.load(Ordering::SeqCst);

    go_tx.send(()).unwrap();
    inserted.recv().unwrap();
    let between = read_origin::peek(7);
    go_on_tx.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), 1);
    assert_eq!(setter.join().unwrap(), SetOutcome::Stored);

    if returned_before_the_insert {
        assert_eq!(
            between,
            Some(2),
            "the older computation's value is served after set() returned"
        );
    }
    assert_eq!(
        read_origin::peek(7),
        Some(2),
        "set() said Stored; its value is gone"
    );
    assert_eq!(read_origin(7), 2);
}

// ---------------------------------------------------------------------------------------------
// Finding: in memory, a computation that started before a refresh and runs outside the
// key's flight (`single_flight = false`, or a follower computing on its own) stores its older
// value over the refreshed one after `refresh` returned. (Remotely its compare-and-set over
// the bytes it read fails instead.)
// ---------------------------------------------------------------------------------------------

static SOLO_ORIGIN: AtomicUsize = AtomicUsize::new(1);
static SOLO_GATE: cachemere_tests::gate::Gate = cachemere_tests::gate::Gate::new();

#[cached(single_flight = false)]
fn solo(key: u64) -> usize {
    let _ = key;
    let read = SOLO_ORIGIN.load(Ordering::SeqCst);
    SOLO_GATE.pass();
    read
}

#[test]
fn memory_refresh_wins_over_an_older_computation_outside_the_flight() {
    let (started, go) = SOLO_GATE.arm();
    let older = std::thread::spawn(|| solo(3));
    started.recv().unwrap();
    SOLO_ORIGIN.store(2, Ordering::SeqCst);
    assert_eq!(solo::refresh(3), 2);
    go.send(()).unwrap();
    assert_eq!(older.join().unwrap(), 1);
    assert_eq!(
        solo::peek(3),
        Some(2),
        "the older computation overwrote the refresh"
    );
    assert_eq!(solo(3), 2);
}

// The remote engine's counterpart (checked: its compare-and-set over the token it read fails).

fn review_remote() -> cachemere::remote::Remote {
    static REMOTE: std::sync::OnceLock<cachemere::remote::Remote> = std::sync::OnceLock::new();
    REMOTE
        .get_or_init(|| {
            cachemere::remote::Remote::builder(
                cachemere_tests::user_remote::SharedMapStore::default(),
            )
            .prefix("review")
            .build()
        })
        .clone()
}

static REMOTE_SOLO_ORIGIN: AtomicUsize = AtomicUsize::new(1);
static REMOTE_SOLO_GATE: cachemere_tests::gate::Gate = cachemere_tests::gate::Gate::new();

#[cached(backend = "remote", remote = review_remote, single_flight = false)]
fn remote_solo(key: u64) -> usize {
    let _ = key;
    let read = REMOTE_SOLO_ORIGIN.load(Ordering::SeqCst);
    REMOTE_SOLO_GATE.pass();
    read
}

#[test]
fn remote_refresh_wins_over_an_older_computation_outside_the_flight() {
    let (started, go) = REMOTE_SOLO_GATE.arm();
    let older = std::thread::spawn(|| remote_solo(3));
    started.recv().unwrap();
    REMOTE_SOLO_ORIGIN.store(2, Ordering::SeqCst);
    assert_eq!(remote_solo::refresh(3), 2);
    go.send(()).unwrap();
    assert_eq!(older.join().unwrap(), 1);
    assert_eq!(remote_solo::peek(3), Some(2));
    assert_eq!(remote_solo(3), 2);
}
