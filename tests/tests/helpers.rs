//! The generated helpers beyond the conformance suite: methods' `m_set`/`m_peek`/`m_refresh`/
//! `m_call`/`m_uncached`, `ttl` as a constant expression, values that are `Send` but not
//! `Sync`, no clone of the value on a remote miss, `set` racing an async computation, and
//! signatures the macro rewrites (`mut` parameters, `expect` lints, recursion).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cachemere::remote::Remote;
use cachemere::{SetOutcome, Status, cached};
use cachemere_tests::user_backend::HashMapBackend;
use cachemere_tests::user_remote::SharedMapStore;
use serde::{Deserialize, Serialize};

fn shared_map() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            Remote::builder(SharedMapStore::default())
                .prefix("helpers")
                .build()
        })
        .clone()
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Shop {
    id: u64,
}

static PRICE_RUNS: AtomicUsize = AtomicUsize::new(0);
static CATALOG_RUNS: AtomicUsize = AtomicUsize::new(0);

impl Shop {
    const PRICE_TTL: Duration = Duration::from_secs(60);

    /// The receiver is part of the key.
    #[cached(ttl = Self::PRICE_TTL)]
    fn price(&self, item: &str) -> u64 {
        PRICE_RUNS.fetch_add(1, Ordering::SeqCst);
        self.id * 100 + item.len() as u64
    }

    /// The receiver is not.
    #[cached(skip(self), ttl = Duration::from_secs(5 * 60))]
    fn catalog(&self, page: u32) -> Vec<String> {
        CATALOG_RUNS.fetch_add(1, Ordering::SeqCst);
        vec![format!("shop {} page {page}", self.id)]
    }
}

static TAX_RUNS: AtomicUsize = AtomicUsize::new(0);

impl Shop {
    /// An associated function without `self` or `Self`: its helpers sit beside it.
    #[cached]
    fn tax(rate: u32) -> u32 {
        TAX_RUNS.fetch_add(1, Ordering::SeqCst);
        rate * 2
    }
}

#[test]
fn associated_function_without_self() {
    assert_eq!(Shop::tax(3), 6);
    assert_eq!(Shop::tax(3), 6);
    assert_eq!(TAX_RUNS.load(Ordering::SeqCst), 1);
    let info = Shop::tax_cache_info();
    assert_eq!((info.hits, info.misses), (1, 1));
    assert!(Shop::tax_set(4, 1).is_stored());
    assert_eq!(Shop::tax_peek(4), Some(1));
    assert!(Shop::tax_invalidate(3).removed());
    assert_eq!(Shop::tax_uncached(3), 6);
}

#[test]
fn method_helpers() {
    let shop = Shop { id: 2 };
    let other = Shop { id: 3 };
    assert_eq!(shop.price_peek("tea"), None);
    let miss = shop.price_call("tea");
    assert_eq!((miss.value, miss.status), (203, Status::Miss));
    assert_eq!(shop.price_call("tea").status, Status::Hit);
    assert_eq!(shop.price_set("tea", 5), SetOutcome::Stored);
    assert_eq!(shop.price("tea"), 5);
    assert_eq!(
        other.price_peek("tea"),
        None,
        "the receiver is part of the key"
    );
    assert_eq!(shop.price_refresh("tea"), 203);
    assert_eq!(shop.price_peek("tea"), Some(203));
    assert_eq!(shop.price_uncached("coffee"), 206);
    assert_eq!(shop.price_peek("coffee"), None);
    assert_eq!(PRICE_RUNS.load(Ordering::SeqCst), 3);

    // Without the receiver in the key, the key helpers take no receiver.
    assert!(Shop::catalog_set(1, vec!["set".to_owned()]).is_stored());
    assert_eq!(other.catalog(1), vec!["set".to_owned()]);
    assert_eq!(Shop::catalog_peek(1), Some(vec!["set".to_owned()]));
    assert_eq!(other.catalog_refresh(1), vec!["shop 3 page 1".to_owned()]);
    assert_eq!(shop.catalog(1), vec!["shop 3 page 1".to_owned()]);
    assert_eq!(CATALOG_RUNS.load(Ordering::SeqCst), 1);
}

const SHORT: Duration = Duration::from_millis(100);
static SHORT_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached(ttl = SHORT)]
fn short(x: u64) -> usize {
    x as usize + SHORT_RUNS.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn a_constant_ttl_expires() {
    let first = short(1);
    assert_eq!(short(1), first);
    // Generous: ten times the TTL.
    std::thread::sleep(Duration::from_millis(1000));
    assert_ne!(short(1), first, "an expired entry was served");
}

/// `Cell` is `Send` but not `Sync`: stores that do not share one value between threads at
/// once take it (a user's locked store, a remote one).
#[cached(backend = HashMapBackend::new)]
fn counter_cell(x: u32) -> Cell<u32> {
    Cell::new(x)
}

#[cached(backend = "remote", remote = shared_map)]
fn remote_cell(x: u32) -> Cell<u32> {
    Cell::new(x + 1)
}

#[test]
fn values_that_are_send_but_not_sync() {
    let threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(|| (counter_cell(7).get(), remote_cell(7).get())))
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), (7, 8));
    }
    assert!(counter_cell::peek(7).is_some());
    assert_eq!(remote_cell::peek(7).map(|cell| cell.get()), Some(8));
}

/// Counts its clones: a remote cache serializes the value it stores and clones nothing.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Document(String);

static DOCUMENT_CLONES: AtomicUsize = AtomicUsize::new(0);

impl Clone for Document {
    fn clone(&self) -> Self {
        DOCUMENT_CLONES.fetch_add(1, Ordering::SeqCst);
        Document(self.0.clone())
    }
}

#[cached(backend = "remote", remote = shared_map)]
fn document(id: u64) -> Result<Document, String> {
    Ok(Document(format!("document {id}")))
}

#[test]
fn a_remote_miss_clones_nothing() {
    let before = DOCUMENT_CLONES.load(Ordering::SeqCst);
    assert_eq!(document(1), Ok(Document("document 1".to_owned())));
    assert_eq!(document(1), Ok(Document("document 1".to_owned())));
    assert!(document::set(2, Ok(Document("set".to_owned()))).is_stored());
    assert_eq!(document::peek(2), Some(Ok(Document("set".to_owned()))));
    assert_eq!(
        DOCUMENT_CLONES.load(Ordering::SeqCst) - before,
        0,
        "a miss, a hit, a set and a peek"
    );
    assert_eq!(document::cache_info().misses, 1);
}

/// An async computation that waits until told to go, after reading the origin.
struct AsyncGate {
    started: tokio::sync::Notify,
    go: tokio::sync::Notify,
}

static ASYNC_ORIGIN: AtomicU64 = AtomicU64::new(1);
static ASYNC_GATE: OnceLock<Arc<AsyncGate>> = OnceLock::new();

fn async_gate() -> Arc<AsyncGate> {
    Arc::clone(ASYNC_GATE.get_or_init(|| {
        Arc::new(AsyncGate {
            started: tokio::sync::Notify::new(),
            go: tokio::sync::Notify::new(),
        })
    }))
}

async fn read_origin_and_wait() -> u64 {
    let read = ASYNC_ORIGIN.load(Ordering::SeqCst);
    let gate = async_gate();
    gate.started.notify_one();
    gate.go.notified().await;
    read
}

#[cached]
async fn memory_in_flight(id: u64) -> u64 {
    read_origin_and_wait().await + id
}

#[cached(backend = "remote", remote = shared_map)]
async fn remote_in_flight(id: u64) -> u64 {
    read_origin_and_wait().await + id
}

#[test]
fn set_wins_over_an_async_computation_in_flight() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let gate = async_gate();
        // Memory, then remote: one computation at a time through the gate.
        ASYNC_ORIGIN.store(1, Ordering::SeqCst);
        let computing = tokio::spawn(memory_in_flight(0));
        gate.started.notified().await;
        ASYNC_ORIGIN.store(2, Ordering::SeqCst);
        assert_eq!(memory_in_flight::set(0, 2).await, SetOutcome::Stored);
        gate.go.notify_one();
        assert_eq!(computing.await.unwrap(), 1);
        assert_eq!(
            memory_in_flight::peek(0).await,
            Some(2),
            "memory: the older value won"
        );

        ASYNC_ORIGIN.store(1, Ordering::SeqCst);
        let computing = tokio::spawn(remote_in_flight(0));
        gate.started.notified().await;
        ASYNC_ORIGIN.store(2, Ordering::SeqCst);
        assert_eq!(remote_in_flight::set(0, 2).await, SetOutcome::Stored);
        gate.go.notify_one();
        assert_eq!(computing.await.unwrap(), 1);
        assert_eq!(
            remote_in_flight::peek(0).await,
            Some(2),
            "remote: the older value won"
        );
    });
}

/// The body moves into `uncached`: a `mut` parameter, and an `expect` lint about the body
/// (here a skipped argument the body ignores), compile without warnings.
#[cached(skip(unused))]
#[expect(unused_variables)]
fn with_mut(mut x: u64, unused: u64) -> u64 {
    x += 1;
    x
}

static FIB_RUNS: AtomicUsize = AtomicUsize::new(0);

#[cached]
fn fib(n: u64) -> u64 {
    FIB_RUNS.fetch_add(1, Ordering::SeqCst);
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

#[test]
fn rewritten_signatures_and_recursion() {
    assert_eq!(with_mut(1, 0), 2);
    assert_eq!(with_mut::uncached(1, 0), 2);
    assert_eq!(fib(30), 832_040);
    assert_eq!(FIB_RUNS.load(Ordering::SeqCst), 31, "each n computed once");
    // The body alone, calling the cached function for the smaller values.
    assert_eq!(fib::uncached(30), 832_040);
    assert_eq!(FIB_RUNS.load(Ordering::SeqCst), 32);
}

static ALONE_ORIGIN: AtomicU64 = AtomicU64::new(1);
static ALONE_GATE: cachemere_tests::gate::Gate = cachemere_tests::gate::Gate::new();

#[cached(single_flight = false)]
fn alone(id: u64) -> u64 {
    let read = ALONE_ORIGIN.load(Ordering::SeqCst);
    ALONE_GATE.pass();
    read + id
}

/// Without single flight nothing waits for the older computation: it must still not store its
/// older value over the refreshed one (memory).
#[test]
fn refresh_wins_over_an_older_computation_without_single_flight() {
    let (started, go) = ALONE_GATE.arm();
    let older = std::thread::spawn(|| alone(0));
    started.recv().unwrap();
    ALONE_ORIGIN.store(2, Ordering::SeqCst);
    assert_eq!(alone::refresh(0), 2);
    go.send(()).unwrap();
    assert_eq!(older.join().unwrap(), 1);
    assert_eq!(
        alone::peek(0),
        Some(2),
        "the older computation stored its value last"
    );
}

#[cached(ttl = 60)]
fn aged_with_ttl(x: u64) -> u64 {
    x
}

/// With a TTL the age is read back from the expiry (the entry keeps one time).
#[test]
fn age_with_a_ttl() {
    assert_eq!(aged_with_ttl::call(1).status, Status::Miss);
    std::thread::sleep(Duration::from_millis(150));
    let hit = aged_with_ttl::call(1);
    assert_eq!(hit.status, Status::Hit);
    assert!(hit.age >= Duration::from_millis(100), "age {:?}", hit.age);
    assert!(hit.age < Duration::from_secs(60), "age {:?}", hit.age);
}

/// The futures of async cached functions and their helpers are `Send` when the body's is, so
/// they can be spawned on a multi-threaded runtime.
#[test]
fn async_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let plain = memory_in_flight(7);
    assert_send(&plain);
    assert_send(&memory_in_flight::call(7));
    assert_send(&memory_in_flight::refresh(7));
    assert_send(&memory_in_flight::set(7, 1));
    assert_send(&remote_in_flight(7));
    assert_send(&remote_in_flight::call(7));
    assert_send(&remote_in_flight::peek(7));
    assert_send(&remote_in_flight::set(7, 1));
}

/// Bounded far above what the test writes, so that nothing is evicted.
#[cached(maxsize = 1_000_000)]
fn striped(id: u64) -> u64 {
    id
}

/// Writes of other keys (1,000 keys over 64 stripes of invalidation generations share its
/// stripe) do not make a set drop its own value: each set that says `Stored` is there, also
/// when threads warm a cache at once.
#[test]
fn a_set_is_stored_whatever_other_keys_do() {
    std::thread::scope(|scope| {
        for thread in 0..4_u64 {
            scope.spawn(move || {
                for id in (thread * 1000)..((thread + 1) * 1000) {
                    assert_eq!(striped::set(id, id + 1), SetOutcome::Stored);
                    if id % 3 == 0 {
                        // Invalidations and refreshes of other keys of the stripes.
                        let _ = striped::invalidate(id + 100_000);
                        let _ = striped::refresh(id + 200_000);
                    }
                }
            });
        }
    });
    for id in 0..4000 {
        assert_eq!(striped::peek(id), Some(id + 1), "set {id} said Stored");
    }
}
