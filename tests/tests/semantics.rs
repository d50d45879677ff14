//! What a cached function stores, returns and reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachemere::{CacheInfo, cached};

macro_rules! counter {
    ($name:ident) => {
        static $name: AtomicUsize = AtomicUsize::new(0);
    };
}

fn count(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

counter!(TTL_CALLS);

#[cached(ttl = "150ms")]
fn stamped(key: u64) -> (u64, usize) {
    (key, TTL_CALLS.fetch_add(1, Ordering::SeqCst))
}

#[test]
fn ttl_expiry() {
    let first = stamped(1);
    assert_eq!(stamped(1), first, "fresh entry served");
    std::thread::sleep(Duration::from_millis(1500)); // ten times the TTL
    let second = stamped(1);
    assert_ne!(second, first, "an expired entry was served");
    assert_eq!(stamped(1), second, "the recomputed value is cached again");
}

counter!(BOUND_CALLS);

#[cached(maxsize = 50)]
fn bounded(key: u64) -> u64 {
    BOUND_CALLS.fetch_add(1, Ordering::SeqCst);
    key
}

#[test]
fn maxsize_holds_under_tenfold_overfill() {
    for key in 0..500 {
        assert_eq!(bounded(key), key);
    }
    let info = bounded::cache_info();
    assert_eq!(info.maxsize, 50);
    assert!(info.currsize <= 50, "{info}");
    assert_eq!(info.evictions + info.currsize, 500, "{info}");
    assert_eq!(info.misses, 500);
}

#[test]
fn default_bound_is_documented_value() {
    #[cached]
    fn unbounded_looking(key: u64) -> u64 {
        key
    }
    assert_eq!(
        unbounded_looking::cache_info().maxsize,
        cachemere::DEFAULT_MAXSIZE
    );
    assert_eq!(cachemere::DEFAULT_MAXSIZE, 10_000);
}

counter!(PROFILE_CALLS);
counter!(POSTS_CALLS);

#[cached(tags = ["users", "user:{id}"])]
fn profile(id: u64) -> String {
    PROFILE_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("profile {id}")
}

#[cached(tags = ["user:{user}", "posts"])]
fn posts(user: u64, page: u32) -> Vec<u32> {
    POSTS_CALLS.fetch_add(1, Ordering::SeqCst);
    vec![page; user as usize]
}

#[test]
fn tags_with_interpolation() {
    profile(1);
    profile(2);
    posts(1, 0);
    posts(2, 0);
    assert_eq!((count(&PROFILE_CALLS), count(&POSTS_CALLS)), (2, 2));

    // One user's tag hides that user's entries in both functions, and nothing else.
    cachemere::invalidate_tag("user:1");
    profile(1);
    profile(2);
    posts(1, 0);
    posts(2, 0);
    assert_eq!((count(&PROFILE_CALLS), count(&POSTS_CALLS)), (3, 3));

    // A shared tag hides every entry that carries it.
    cachemere::invalidate_tag("users");
    profile(1);
    profile(2);
    posts(1, 0);
    assert_eq!((count(&PROFILE_CALLS), count(&POSTS_CALLS)), (5, 3));

    // A tag nobody carries changes nothing.
    cachemere::invalidate_tag("user:3");
    profile(1);
    assert_eq!(count(&PROFILE_CALLS), 5);
}

counter!(INVALIDATE_CALLS);

#[cached]
fn lookup(id: u64, region: &str) -> String {
    INVALIDATE_CALLS.fetch_add(1, Ordering::SeqCst);
    format!("{region}/{id}")
}

#[test]
fn invalidate_removes_exactly_one_entry() {
    lookup(1, "eu");
    lookup(2, "eu");
    lookup(1, "us");
    assert_eq!(lookup::cache_info().currsize, 3);
    assert!(lookup::invalidate(1, "eu").removed());
    assert!(
        !lookup::invalidate(1, "eu").removed(),
        "nothing left to remove"
    );
    assert_eq!(lookup::cache_info().currsize, 2);
    lookup(2, "eu");
    lookup(1, "us");
    assert_eq!(
        count(&INVALIDATE_CALLS),
        3,
        "the other entries are still hits"
    );
    lookup(1, "eu");
    assert_eq!(count(&INVALIDATE_CALLS), 4);
}

/// Not Hash, not Clone: only usable because it is skipped.
struct Connection {
    calls: AtomicUsize,
}

#[cached(skip(conn))]
fn with_connection(conn: &Connection, id: u64) -> u64 {
    conn.calls.fetch_add(1, Ordering::SeqCst);
    id * 2
}

#[test]
fn skipped_arguments_are_not_part_of_the_key() {
    let a = Connection {
        calls: AtomicUsize::new(0),
    };
    let b = Connection {
        calls: AtomicUsize::new(0),
    };
    assert_eq!(with_connection(&a, 4), 8);
    assert_eq!(
        with_connection(&b, 4),
        8,
        "same key through another connection"
    );
    assert_eq!(
        a.calls.load(Ordering::SeqCst) + b.calls.load(Ordering::SeqCst),
        1
    );
    assert!(with_connection::invalidate(4).removed());
}

counter!(CUSTOM_KEY_CALLS);

#[cached(key = email.to_ascii_lowercase(), key_type = String)]
fn account(email: &str) -> String {
    CUSTOM_KEY_CALLS.fetch_add(1, Ordering::SeqCst);
    email.to_ascii_lowercase()
}

counter!(DEFAULT_KEY_TYPE_CALLS);

#[cached(key = format!("{}-{}", a.min(b), a.max(b)))]
fn unordered_pair(a: u32, b: u32) -> u32 {
    DEFAULT_KEY_TYPE_CALLS.fetch_add(1, Ordering::SeqCst);
    a + b
}

#[test]
fn custom_keys() {
    assert_eq!(account("Ada@Example.com"), "ada@example.com");
    assert_eq!(account("ADA@example.COM"), "ada@example.com");
    assert_eq!(count(&CUSTOM_KEY_CALLS), 1);
    assert!(account::invalidate("ada@EXAMPLE.com").removed());

    assert_eq!(unordered_pair(1, 2), 3);
    assert_eq!(unordered_pair(2, 1), 3);
    assert_eq!(
        count(&DEFAULT_KEY_TYPE_CALLS),
        1,
        "key_type defaults to String"
    );
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Repo {
    shard: u32,
}

counter!(METHOD_CALLS);
counter!(SHARED_CALLS);

impl Repo {
    /// The receiver is part of the key.
    #[cached]
    fn find(&self, id: u64) -> Option<String> {
        METHOD_CALLS.fetch_add(1, Ordering::SeqCst);
        Some(format!("{}:{id}", self.shard))
    }

    /// `skip(self)`: every instance shares entries.
    #[cached(skip(self))]
    pub fn shared(&self, id: u64) -> u64 {
        SHARED_CALLS.fetch_add(1, Ordering::SeqCst);
        id + u64::from(self.shard)
    }

    #[cached]
    async fn find_async(&self, id: u64) -> String {
        format!("{}:{id}", self.shard)
    }
}

#[test]
fn methods() {
    let a = Repo { shard: 1 };
    let b = Repo { shard: 2 };
    assert_eq!(a.find(7).as_deref(), Some("1:7"));
    assert_eq!(a.find(7).as_deref(), Some("1:7"));
    assert_eq!(
        b.find(7).as_deref(),
        Some("2:7"),
        "another receiver is another key"
    );
    assert_eq!(count(&METHOD_CALLS), 2);
    assert!(a.find_invalidate(7).removed());
    assert!(!a.find_invalidate(7).removed());
    let info = Repo::find_cache_info();
    assert_eq!((info.hits, info.misses, info.currsize), (1, 2, 1));
    Repo::find_cache_clear();
    assert_eq!(Repo::find_cache_info().currsize, 0);

    assert_eq!(a.shared(1), 2);
    assert_eq!(
        b.shared(1),
        2,
        "skip(self): the first receiver's value is shared"
    );
    assert_eq!(count(&SHARED_CALLS), 1);
    assert!(Repo::shared_invalidate(1).removed());

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(a.find_async(3).await, "1:3");
        assert_eq!(a.find_async(3).await, "1:3");
        assert!(a.find_async_invalidate(3).await.removed());
        Repo::find_async_cache_clear().await;
    });
    assert_eq!(
        Repo::find_async_cache_info().misses,
        0,
        "clear reset the statistics"
    );
    assert!(
        cachemere::caches()
            .iter()
            .any(|r| r.name.ends_with("semantics::Repo::find")),
        "a method's cache is named after its type"
    );
}

counter!(OPTION_CALLS);

#[cached]
fn maybe(key: u64) -> Option<u64> {
    OPTION_CALLS.fetch_add(1, Ordering::SeqCst);
    key.is_multiple_of(2).then_some(key)
}

counter!(OPTION_NONE_CALLS);

#[cached(cache_none = true)]
fn maybe_cached_none(key: u64) -> Option<u64> {
    OPTION_NONE_CALLS.fetch_add(1, Ordering::SeqCst);
    key.is_multiple_of(2).then_some(key)
}

#[derive(Debug, PartialEq)]
struct NotClone;

counter!(RESULT_CALLS);

#[cached]
fn fallible(key: u64) -> Result<u64, NotClone> {
    RESULT_CALLS.fetch_add(1, Ordering::SeqCst);
    if key == 0 { Err(NotClone) } else { Ok(key) }
}

#[test]
fn option_and_result_rules() {
    assert_eq!(maybe(1), None);
    assert_eq!(maybe(1), None);
    assert_eq!(maybe(2), Some(2));
    assert_eq!(maybe(2), Some(2));
    assert_eq!(count(&OPTION_CALLS), 3, "None is not stored, Some is");

    assert_eq!(maybe_cached_none(1), None);
    assert_eq!(maybe_cached_none(1), None);
    assert_eq!(count(&OPTION_NONE_CALLS), 1, "cache_none stores None");

    assert_eq!(fallible(0), Err(NotClone));
    assert_eq!(fallible(0), Err(NotClone));
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(fallible(1), Ok(1));
    assert_eq!(
        count(&RESULT_CALLS),
        3,
        "Err is not stored (and E need not be Clone), Ok is"
    );
}

#[derive(Clone, Debug, PartialEq)]
enum Lookup {
    Missing,
}

counter!(CACHE_ERR_CALLS);

#[cached(cache_err = true)]
fn strict(key: u64) -> Result<u64, Lookup> {
    CACHE_ERR_CALLS.fetch_add(1, Ordering::SeqCst);
    if key == 0 {
        Err(Lookup::Missing)
    } else {
        Ok(key)
    }
}

#[test]
fn cache_err_stores_errors() {
    assert_eq!(strict(0), Err(Lookup::Missing));
    assert_eq!(strict(0), Err(Lookup::Missing));
    assert_eq!(count(&CACHE_ERR_CALLS), 1);
}

#[cached(maxsize = 2)]
fn exact(key: u64) -> u64 {
    key
}

#[test]
fn exact_cache_info_after_a_known_sequence() {
    let mut expected = CacheInfo::default();
    expected.maxsize = 2;
    assert_eq!(exact::cache_info(), expected);
    exact(1); // miss
    exact(1); // hit
    exact(2); // miss
    exact(1); // hit
    exact(2); // hit
    let info = exact::cache_info();
    assert_eq!(
        (
            info.hits,
            info.misses,
            info.maxsize,
            info.currsize,
            info.evictions
        ),
        (3, 2, 2, 2, 0)
    );
    assert!(info.compute_time > Duration::ZERO);
    assert!(
        info.to_string()
            .starts_with("CacheInfo(hits=3, misses=2, maxsize=2, currsize=2, evictions=0")
    );
    exact(3); // miss, evicts one of the two
    let info = exact::cache_info();
    assert_eq!((info.misses, info.currsize, info.evictions), (3, 2, 1));
    exact::cache_clear();
    let info = exact::cache_info();
    assert_eq!(
        (info.hits, info.misses, info.currsize, info.evictions),
        (0, 0, 0, 0)
    );
}

#[cached(name = "semantics-named")]
fn named(key: u64) -> u64 {
    key
}

#[test]
fn registry_lists_caches_by_name() {
    named(1);
    named(1);
    let reports = cachemere::caches();
    let report = reports
        .iter()
        .find(|r| r.name == "semantics-named")
        .expect("listed");
    assert_eq!((report.info.hits, report.info.misses), (1, 1));
    let default_named = {
        exact(9);
        reports.len()
    };
    assert!(default_named >= 1);
    assert!(
        cachemere::caches()
            .iter()
            .any(|r| r.name == "semantics::exact")
    );
}

counter!(STRIPED_CALLS);

#[cached]
fn hot(key: u64) -> u64 {
    STRIPED_CALLS.fetch_add(1, Ordering::SeqCst);
    key
}

#[test]
fn hits_from_many_threads_are_all_counted() {
    hot(1);
    let barrier = Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..10_000 {
                    assert_eq!(hot(1), 1);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let info = hot::cache_info();
    assert_eq!((info.hits, info.misses), (80_000, 1));
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Point {
    x: i32,
    y: i32,
}

#[test]
fn borrowed_argument_kinds() {
    #[cached]
    fn total(values: &[u32], label: &str, point: &Point, owned: String) -> String {
        format!(
            "{label}{}{}{}{owned}",
            values.iter().sum::<u32>(),
            point.x,
            point.y
        )
    }
    let point = Point { x: 1, y: 2 };
    assert_eq!(total(&[1, 2], "s", &point, "o".into()), "s312o");
    assert_eq!(total(&[1, 2], "s", &point, "o".into()), "s312o");
    assert_eq!(total::cache_info().hits, 1);
    assert!(total::invalidate(&[1, 2], "s", &point, "o".into()).removed());
}

#[test]
fn sync_function_inside_a_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let value = runtime.block_on(async { tokio::spawn(async { exact(40) }).await.unwrap() });
    assert_eq!(value, 40);
}

#[test]
fn cached_functions_inside_a_function_body_see_local_items() {
    #[derive(Clone, Hash, PartialEq, Eq)]
    struct LocalId(u32);

    fn local_backend<K: Eq + std::hash::Hash, V: Clone>(
        config: &cachemere::CacheConfig,
    ) -> cachemere::MemoryBackend<K, V> {
        cachemere::MemoryBackend::new(config)
    }

    #[cached(backend = local_backend)]
    fn local(id: LocalId) -> u32 {
        id.0 + 1
    }

    assert_eq!(local(LocalId(1)), 2);
    assert_eq!(local(LocalId(1)), 2);
    assert_eq!(local::cache_info().hits, 1);
    assert!(local::invalidate(LocalId(1)).removed());
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Wrapper<T>(T);

impl<T: Clone + std::hash::Hash + Eq + Send + Sync + std::fmt::Debug + 'static> Wrapper<T> {
    #[cached]
    fn describe(&self, suffix: &str) -> String {
        format!("{:?}{suffix}", self.0)
    }
}

#[test]
fn a_generic_impl_has_one_cache_per_instantiation() {
    assert_eq!(Wrapper(1_u8).describe("!"), "1!");
    assert_eq!(Wrapper(1_u8).describe("!"), "1!");
    assert_eq!(Wrapper("one").describe("!"), "\"one\"!");
    assert_eq!(Wrapper("one").describe("!"), "\"one\"!");
    let u8_info = Wrapper::<u8>::describe_cache_info();
    let str_info = Wrapper::<&'static str>::describe_cache_info();
    assert_eq!((u8_info.hits, u8_info.misses, u8_info.currsize), (1, 1, 1));
    assert_eq!(
        (str_info.hits, str_info.misses, str_info.currsize),
        (1, 1, 1)
    );
}
