//! The hit front (each thread's copies of entries it hits, for `Copy` keys and values): a copy
//! is never served once what hid its entry returned, from another thread. For each operation
//! that hides (`invalidate`, `set`, `refresh`, `cache_clear`, `invalidate_tag`, an eviction,
//! the TTL), a reader thread first shows that it holds a copy (its hit leaves the store
//! untouched), the operation runs on another thread, and the reader's next call must not return
//! the hidden value. Then the race in which a value is copied while an invalidation waits for
//! a leader to undo its insert, and a seeded soak of readers against a writer. Then what
//! uses the front at all: a store that keeps the trait's default, `&str` keys and non-`Copy`
//! values see every hit; a `key = ..` of `Copy` parts is held.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachemere::{Backend, BackendError, CacheConfig, Equivalent, MemoryBackend, cached};

/// Per cache name: how many store lookups it made.
static GETS: Mutex<Option<HashMap<&'static str, &'static AtomicU64>>> = Mutex::new(None);

fn gets(name: &str) -> u64 {
    GETS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(|gets| gets.get(name).map(|count| count.load(Ordering::SeqCst)))
        .unwrap_or(0)
}

/// The next insert of the cache named `front.race` (see the race test): it reports its
/// arrival, waits for `insert`, inserts, reports `inserted`, and waits for `leave`.
struct InsertGate {
    arrived: Sender<()>,
    insert: Receiver<()>,
    inserted: Sender<()>,
    leave: Receiver<()>,
}

static INSERT_GATE: Mutex<Option<InsertGate>> = Mutex::new(None);
/// Where every removal of `front.race` reports, once done.
static REMOVED: Mutex<Option<Sender<()>>> = Mutex::new(None);

/// The memory store, counting its lookups, with the gates above for `front.race`. `OWN`: it
/// says its entries change only through its cache (as the memory store does), which lets the
/// cache use the hit front.
struct Watched<K, V, const OWN: bool = true> {
    store: MemoryBackend<K, V>,
    name: &'static str,
    gets: &'static AtomicU64,
}

fn watched<K: Eq + Hash + Clone, V: Clone>(config: &CacheConfig) -> Watched<K, V> {
    watched_by(config)
}

/// A [`Watched`] store that keeps the trait's default: entries may change behind the cache.
fn shared<K: Eq + Hash + Clone, V: Clone>(config: &CacheConfig) -> Watched<K, V, false> {
    watched_by(config)
}

fn watched_by<K: Eq + Hash + Clone, V: Clone, const OWN: bool>(
    config: &CacheConfig,
) -> Watched<K, V, OWN> {
    let gets: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
    GETS.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(config.name, gets);
    Watched {
        store: MemoryBackend::new(config),
        name: config.name,
        gets,
    }
}

impl<K, V, const OWN: bool> Watched<K, V, OWN> {
    fn gated(&self) -> bool {
        self.name == "front.race"
    }
}

impl<K, V, const OWN: bool> Backend<K, V> for Watched<K, V, OWN>
where
    K: Eq + Hash + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    const ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE: bool = OWN;

    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.store.get(key)
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        let gate = if self.gated() {
            INSERT_GATE
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        } else {
            None
        };
        let Some(gates) = gate else {
            return self.store.insert(key, value);
        };
        gates.arrived.send(()).unwrap();
        gates.insert.recv().unwrap();
        let inserted = self.store.insert(key, value);
        gates.inserted.send(()).unwrap();
        gates.leave.recv().unwrap();
        inserted
    }

    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let removed = self.store.remove(key);
        if self.gated()
            && let Some(removed) = REMOVED
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
        {
            removed.send(()).unwrap();
        }
        removed
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.store.clear()
    }

    fn len(&self) -> u64 {
        self.store.len()
    }

    fn capacity(&self) -> u64 {
        self.store.capacity()
    }

    fn evictions(&self) -> u64 {
        self.store.evictions()
    }
}

type Job = Box<dyn FnOnce() -> u64 + Send>;

/// A thread that keeps its hit front between calls: runs what it is sent, answers each.
struct Reader {
    jobs: Sender<Job>,
    answers: Receiver<u64>,
}

impl Reader {
    fn spawn() -> Self {
        let (jobs, inbox) = channel::<Job>();
        let (outbox, answers) = channel();
        std::thread::spawn(move || {
            for job in inbox {
                if outbox.send(job()).is_err() {
                    return;
                }
            }
        });
        Reader { jobs, answers }
    }

    fn call(&self, job: impl FnOnce() -> u64 + Send + 'static) -> u64 {
        self.jobs.send(Box::new(job)).unwrap();
        self.answers.recv().unwrap()
    }

    /// Calls `f` until a call leaves the store of `name` untouched (a hit on this thread's
    /// copy), and returns what that call returned.
    fn holds_copy(&self, name: &'static str, f: fn() -> u64) -> u64 {
        for _ in 0..10 {
            let before = gets(name);
            let value = self.call(f);
            if gets(name) == before {
                return value;
            }
        }
        panic!("{name}: the reader never hit a copy; the test would prove nothing");
    }
}

macro_rules! versioned {
    ($origin:ident, $name:ident, $label:literal $(, $option:ident = $value:expr)*) => {
        static $origin: AtomicU64 = AtomicU64::new(1);

        #[cached(backend = watched, name = $label $(, $option = $value)*)]
        fn $name(key: u64) -> u64 {
            $origin.load(Ordering::SeqCst) * 1000 + key
        }
    };
}

versioned!(INVALIDATED, invalidated, "front.invalidate");
versioned!(SET, set, "front.set");
versioned!(REFRESHED, refreshed, "front.refresh");
versioned!(CLEARED, cleared, "front.clear");

static TAGGED: AtomicU64 = AtomicU64::new(1);

#[cached(backend = watched, name = "front.tag", tags = ["front-tag:{key}"])]
fn tagged(key: u64) -> u64 {
    TAGGED.load(Ordering::SeqCst) * 1000 + key
}

versioned!(EXPIRING, expiring, "front.ttl", ttl = "200ms");
versioned!(EVICTED, evicted, "front.evict", maxsize = 8);

#[test]
fn invalidate_from_another_thread_hides_the_copy() {
    let reader = Reader::spawn();
    assert_eq!(
        reader.holds_copy("front.invalidate", || invalidated(1)),
        1001
    );
    INVALIDATED.store(2, Ordering::SeqCst);
    invalidated::invalidate(1);
    assert_eq!(
        reader.call(|| invalidated(1)),
        2001,
        "served the invalidated copy"
    );
}

#[test]
fn set_from_another_thread_replaces_the_copy() {
    let reader = Reader::spawn();
    assert_eq!(reader.holds_copy("front.set", || set(1)), 1001);
    assert!(set::set(1, 77).is_stored());
    assert_eq!(reader.call(|| set(1)), 77, "served the copy `set` replaced");
}

#[test]
fn refresh_from_another_thread_replaces_the_copy() {
    let reader = Reader::spawn();
    assert_eq!(reader.holds_copy("front.refresh", || refreshed(1)), 1001);
    REFRESHED.store(2, Ordering::SeqCst);
    assert_eq!(refreshed::refresh(1), 2001);
    assert_eq!(
        reader.call(|| refreshed(1)),
        2001,
        "served the copy `refresh` replaced"
    );
}

#[test]
fn cache_clear_from_another_thread_hides_the_copy() {
    let reader = Reader::spawn();
    assert_eq!(reader.holds_copy("front.clear", || cleared(1)), 1001);
    CLEARED.store(2, Ordering::SeqCst);
    cleared::cache_clear();
    assert_eq!(reader.call(|| cleared(1)), 2001, "served a cleared copy");
}

#[test]
fn invalidate_tag_from_another_thread_hides_the_copy() {
    let reader = Reader::spawn();
    assert_eq!(reader.holds_copy("front.tag", || tagged(1)), 1001);
    TAGGED.store(2, Ordering::SeqCst);
    cachemere::invalidate_tag("front-tag:1");
    assert_eq!(
        reader.call(|| tagged(1)),
        2001,
        "served a copy of a dead tag"
    );
}

#[test]
fn an_expired_copy_is_not_served() {
    let reader = Reader::spawn();
    assert_eq!(reader.holds_copy("front.ttl", || expiring(1)), 1001);
    EXPIRING.store(2, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1200)); // six times the TTL
    assert_eq!(reader.call(|| expiring(1)), 2001, "served an expired copy");
}

#[test]
fn an_evicted_entry_is_not_served_from_a_copy() {
    let reader = Reader::spawn();
    assert_eq!(reader.holds_copy("front.evict", || evicted(1)), 1001);
    let evictions = evicted::cache_info().evictions;
    for key in 100..200 {
        evicted(key);
    }
    assert!(evicted::cache_info().evictions > evictions);
    let before = gets("front.evict");
    reader.call(|| evicted(1));
    assert!(
        gets("front.evict") > before,
        "the copy was served after the store evicted entries"
    );
}

static RACED: AtomicU64 = AtomicU64::new(1);

#[cached(backend = watched, name = "front.race")]
fn raced(key: u64) -> u64 {
    RACED.load(Ordering::SeqCst) * 1000 + key
}

/// A leader's value lands in the store after an invalidation removed the key and while it
/// waits for the leader to take it out again; a reader copies it in that window. Once the
/// invalidation returns, the copy must not be served.
#[test]
fn a_value_copied_while_an_invalidation_waits_is_not_served_after_it() {
    let (arrived, arrived_rx) = channel();
    let (insert_tx, insert) = channel();
    let (inserted, inserted_rx) = channel();
    let (leave_tx, leave) = channel();
    let (removed, removed_rx) = channel();
    *INSERT_GATE.lock().unwrap_or_else(PoisonError::into_inner) = Some(InsertGate {
        arrived,
        insert,
        inserted,
        leave,
    });
    *REMOVED.lock().unwrap_or_else(PoisonError::into_inner) = Some(removed);
    // The leader computes version 1 and waits at the store's insert.
    let leader = std::thread::spawn(|| raced(1));
    arrived_rx.recv().unwrap();
    RACED.store(2, Ordering::SeqCst);
    let returned = Arc::new(AtomicBool::new(false));
    let invalidation = {
        let returned = Arc::clone(&returned);
        std::thread::spawn(move || {
            let outcome = raced::invalidate(1);
            returned.store(true, Ordering::SeqCst);
            outcome
        })
    };
    // The invalidation has removed (nothing yet) and now waits for the leader.
    removed_rx.recv().unwrap();
    insert_tx.send(()).unwrap();
    inserted_rx.recv().unwrap();
    // The hidden value is in the store: a reader copies it (the invalidation has not returned).
    let reader = Reader::spawn();
    assert_eq!(reader.call(|| raced(1)), 1001);
    assert_eq!(reader.holds_copy("front.race", || raced(1)), 1001);
    assert!(!returned.load(Ordering::SeqCst));
    // The leader sees the invalidation, takes its value out, and the invalidation returns.
    leave_tx.send(()).unwrap();
    removed_rx.recv().unwrap();
    assert_eq!(
        leader.join().unwrap(),
        1001,
        "its call began before the change"
    );
    invalidation.join().unwrap();
    *REMOVED.lock().unwrap_or_else(PoisonError::into_inner) = None;
    assert_eq!(
        reader.call(|| raced(1)),
        2001,
        "served a copy of what the invalidation hid"
    );
}

/// Per key of the soak: the origin's version, and the version every call that starts now must
/// see at least (published once the writer's operation returned).
static SOAK_VERSION: [AtomicU64; 4] = [const { AtomicU64::new(1) }; 4];
static SOAK_PUBLISHED: [AtomicU64; 4] = [const { AtomicU64::new(1) }; 4];

#[cached(backend = watched, name = "front.soak", tags = ["front-soak:{key}"])]
fn soaked(key: u64) -> u64 {
    SOAK_VERSION[key as usize].load(Ordering::SeqCst)
}

/// xorshift64*: seeded, so a failing sequence can be replayed (`FRONT_SOAK_SEED`).
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn readers_never_see_a_version_older_than_the_writer_published() {
    let seed = std::env::var("FRONT_SOAK_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    eprintln!("FRONT_SOAK_SEED={seed}");
    let deadline = Instant::now() + Duration::from_secs(2);
    let readers: Vec<_> = (0..2_u64)
        .map(|reader| {
            std::thread::spawn(move || {
                let mut state = seed ^ (reader + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut calls = 0_u64;
                while Instant::now() < deadline {
                    let key = next(&mut state) % 4;
                    let published = SOAK_PUBLISHED[key as usize].load(Ordering::SeqCst);
                    let seen = soaked(key);
                    assert!(
                        seen >= published,
                        "key {key}: served version {seen} after version {published} was published (seed {seed})"
                    );
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let mut state = seed;
    let mut operations = 0_u64;
    while Instant::now() < deadline {
        let key = next(&mut state) % 4;
        let index = key as usize;
        match next(&mut state) % 5 {
            0 => {
                let version = SOAK_VERSION[index].fetch_add(1, Ordering::SeqCst) + 1;
                soaked::invalidate(key);
                SOAK_PUBLISHED[index].store(version, Ordering::SeqCst);
            }
            1 => {
                let version = SOAK_VERSION[index].fetch_add(1, Ordering::SeqCst) + 1;
                assert!(soaked::set(key, version).is_stored());
                SOAK_PUBLISHED[index].store(version, Ordering::SeqCst);
            }
            2 => {
                let version = SOAK_VERSION[index].fetch_add(1, Ordering::SeqCst) + 1;
                soaked::refresh(key);
                SOAK_PUBLISHED[index].store(version, Ordering::SeqCst);
            }
            3 => {
                let version = SOAK_VERSION[index].fetch_add(1, Ordering::SeqCst) + 1;
                cachemere::invalidate_tag(&format!("front-soak:{key}"));
                SOAK_PUBLISHED[index].store(version, Ordering::SeqCst);
            }
            _ => {
                let versions: Vec<u64> = SOAK_VERSION
                    .iter()
                    .map(|version| version.fetch_add(1, Ordering::SeqCst) + 1)
                    .collect();
                soaked::cache_clear();
                for (published, version) in SOAK_PUBLISHED.iter().zip(versions) {
                    published.store(version, Ordering::SeqCst);
                }
            }
        }
        operations += 1;
        // Let readers take copies between operations.
        std::thread::sleep(Duration::from_micros(200));
    }
    let calls: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    let lookups = gets("front.soak");
    eprintln!("{operations} operations, {calls} calls, {lookups} store lookups");
    assert!(operations > 100, "the writer hardly ran: {operations}");
    // Every call that did not hit a copy looked in the store at least once: fewer lookups
    // than calls means copies were served, so the soak exercised the front.
    assert!(
        lookups < calls,
        "no copies served: {lookups} lookups, {calls} calls"
    );
}

#[cached(backend = shared, name = "front.shared")]
fn behind_a_shared_store(key: u64) -> u64 {
    key
}

#[test]
fn a_store_that_may_change_behind_the_cache_sees_every_hit() {
    behind_a_shared_store(1);
    for _ in 0..100 {
        let before = gets("front.shared");
        assert_eq!(behind_a_shared_store(1), 1);
        assert_eq!(
            gets("front.shared"),
            before + 1,
            "a hit did not reach the store"
        );
    }
}

#[cached(name = "front.teardown")]
fn during_teardown(key: u64) -> u64 {
    key * 3
}

static FROM_TEARDOWN: AtomicU64 = AtomicU64::new(0);

/// Calls `during_teardown` from a thread-local's destructor.
struct CallsOnDrop;

impl Drop for CallsOnDrop {
    fn drop(&mut self) {
        let first = during_teardown(5);
        let second = during_teardown(5);
        FROM_TEARDOWN.store(first + second, Ordering::SeqCst);
    }
}

thread_local! {
    static CALLS_ON_DROP: CallsOnDrop = const { CallsOnDrop };
}

/// A thread-local registered before the thread's first cached call calls the function again
/// while the thread's thread-locals are destroyed (the cache's own among them): the calls
/// are answered (from the store or by computing), never a panic or an abort.
#[test]
fn a_call_from_a_thread_local_destructor_is_answered() {
    std::thread::spawn(|| {
        CALLS_ON_DROP.with(|_| {});
        assert_eq!(during_teardown(5), 15);
        assert_eq!(during_teardown(5), 15);
        assert_eq!(during_teardown(5), 15);
    })
    .join()
    .unwrap();
    assert_eq!(FROM_TEARDOWN.load(Ordering::SeqCst), 30);
}

#[cached(backend = watched, name = "front.str")]
fn by_str(name: &str) -> usize {
    name.len()
}

#[cached(backend = watched, name = "front.string_value")]
fn string_value(key: u64) -> String {
    key.to_string()
}

#[cached(backend = watched, name = "front.custom_key", key = (a, b), key_type = (u32, char))]
fn custom_key(a: u32, b: char, label: &str) -> u64 {
    u64::from(a) + u64::from(b) + label.len() as u64
}

/// Which calls the front serves is decided at compile time: a `&str` key or a value that is
/// not `Copy` goes to the store on every hit; a `key = ..` expression of `Copy` parts is held.
#[test]
fn only_copy_keys_and_values_are_served_from_copies() {
    by_str("ada");
    string_value(7);
    for _ in 0..100 {
        let before = gets("front.str");
        assert_eq!(by_str("ada"), 3);
        assert_eq!(
            gets("front.str"),
            before + 1,
            "a &str key was served from a copy"
        );
        let before = gets("front.string_value");
        assert_eq!(string_value(7), "7");
        assert_eq!(
            gets("front.string_value"),
            before + 1,
            "a String value was served from a copy"
        );
    }
    let reader = Reader::spawn();
    assert_eq!(
        reader.holds_copy("front.custom_key", || custom_key(1, 'a', "x")),
        99
    );
}

static REFRESHED_ASYNC: AtomicU64 = AtomicU64::new(1);

#[cached(backend = watched, name = "front.refresh_async")]
async fn refreshed_async(key: u64) -> u64 {
    REFRESHED_ASYNC.load(Ordering::SeqCst) * 1000 + key
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

/// The `async` forms hide copies too: `refresh` of an `async fn` (its own code path), and an
/// `invalidate` once a copy was taken by an async hit.
#[test]
fn async_refresh_and_invalidate_hide_the_copy() {
    let reader = Reader::spawn();
    assert_eq!(
        reader.holds_copy("front.refresh_async", || block_on(refreshed_async(1))),
        1001
    );
    REFRESHED_ASYNC.store(2, Ordering::SeqCst);
    assert_eq!(block_on(refreshed_async::refresh(1)), 2001);
    assert_eq!(
        reader.call(|| block_on(refreshed_async(1))),
        2001,
        "served the copy an async refresh replaced"
    );
    assert_eq!(
        reader.holds_copy("front.refresh_async", || block_on(refreshed_async(1))),
        2001
    );
    REFRESHED_ASYNC.store(3, Ordering::SeqCst);
    block_on(refreshed_async::invalidate(1));
    assert_eq!(
        reader.call(|| block_on(refreshed_async(1))),
        3001,
        "served the copy an invalidation hid"
    );
}
