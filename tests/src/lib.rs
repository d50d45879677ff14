//! Shared test support for cachemere: the backend conformance suite and a user-written backend.
//!
//! The suite is written once, against the public [`Backend`](cachemere::Backend) trait and the
//! `#[cached(backend = ...)]` option, and instantiated for every backend with one line:
//!
//! ```text
//! cachemere_tests::backend_conformance!(memory, cachemere::MemoryBackend::new);
//! cachemere_tests::backend_conformance!(redis, remote = cachemere_tests::remote_fixtures::single_node);
//! ```
//!
//! An in-process store is given as its constructor; a remote store as a function returning
//! its [`Remote`](cachemere::remote::Remote), tested through the `RemoteStore` seam and through
//! `#[cached(backend = "remote", remote = ..)]` functions.

pub mod counting;
pub mod freshness;
pub mod gate;
pub mod peer;
pub mod redis_harness;
pub mod remote_fixtures;
pub mod user_backend;
pub mod user_remote;

/// Generates a module named `$name` of conformance tests for the backend built by `$ctor`, a
/// function `fn(&CacheConfig) -> impl Backend<K, V>` generic over `K` and `V`.
/// `remote_slot!(SLOT, getter)`: a `static SLOT` a test sets to its `Remote` once, and
/// `fn getter() -> Remote` for `#[cached(remote = getter)]` to read it from.
#[macro_export]
macro_rules! remote_slot {
    ($slot:ident, $getter:ident) => {
        static $slot: ::std::sync::OnceLock<::cachemere::remote::Remote> =
            ::std::sync::OnceLock::new();
        fn $getter() -> ::cachemere::remote::Remote {
            $slot
                .get()
                .expect("the test sets its remote before the first call")
                .clone()
        }
    };
}

#[macro_export]
macro_rules! backend_conformance {
    ($name:ident, $ctor:path) => {
        mod $name {
            use ::cachemere::{Backend, CacheConfig, cached};
            use ::std::sync::atomic::{AtomicUsize, Ordering};
            use ::std::sync::{Arc, Barrier};

            fn config(maxsize: u64) -> CacheConfig {
                CacheConfig::new(concat!("conformance::", stringify!($name))).with_maxsize(maxsize)
            }

            #[test]
            fn get_insert_remove_clear() {
                let store = $ctor(&config(16));
                assert_eq!(
                    Backend::<(u64, String), u32>::get(&store, &(1, "a".to_string())).unwrap(),
                    None
                );
                store.insert((1, "a".to_string()), 10).unwrap();
                store.insert((2, "b".to_string()), 20).unwrap();
                assert_eq!(store.get(&(1, "a".to_string())).unwrap(), Some(10));
                store.insert((1, "a".to_string()), 11).unwrap();
                assert_eq!(
                    store.get(&(1, "a".to_string())).unwrap(),
                    Some(11),
                    "insert replaces"
                );
                assert_eq!(store.len(), 2);
                assert!(store.remove(&(1, "a".to_string())).unwrap());
                assert!(
                    !store.remove(&(1, "a".to_string())).unwrap(),
                    "second remove finds nothing"
                );
                assert_eq!(
                    store.get(&(2, "b".to_string())).unwrap(),
                    Some(20),
                    "remove takes one entry"
                );
                store.clear().unwrap();
                assert_eq!(store.len(), 0);
                assert!(store.is_empty());
                assert_eq!(store.capacity(), 16);
            }

            #[test]
            fn borrowed_lookup_finds_owned_key() {
                let store = $ctor(&config(16));
                store
                    .insert((7_u64, "ada".to_string(), vec![1_u8, 2]), 1_u8)
                    .unwrap();
                let slice: &[u8] = &[1, 2];
                let hit = Backend::<(u64, String, Vec<u8>), u8>::get(
                    &store,
                    &::cachemere::__private::KeyRef((&7_u64, "ada", slice)),
                )
                .unwrap();
                assert_eq!(hit, Some(1));
                let miss = store
                    .get(&::cachemere::__private::KeyRef((&7_u64, "bob", slice)))
                    .unwrap();
                assert_eq!(miss, None);
            }

            #[test]
            fn replacing_a_value_is_not_an_eviction() {
                let store = $ctor(&config(16));
                for round in 0..5_u64 {
                    Backend::<u64, u64>::insert(&store, 1, round).unwrap();
                }
                assert_eq!(store.get(&1).unwrap(), Some(4));
                assert_eq!(store.len(), 1);
                assert_eq!(store.evictions(), 0);
            }

            #[test]
            fn bound_holds_under_tenfold_overfill() {
                let store = $ctor(&config(100));
                for i in 0..1000_u64 {
                    Backend::<u64, u64>::insert(&store, i, i).unwrap();
                }
                let len = store.len();
                assert!(len <= 100, "{len} entries in a store bounded at 100");
                assert!(len > 0);
                // Every entry is either held or was counted as evicted (or refused on admission).
                assert_eq!(
                    store.evictions() + len,
                    1000,
                    "evictions counted: {}",
                    store.evictions()
                );
            }

            static SQUARES: AtomicUsize = AtomicUsize::new(0);

            #[cached(backend = $ctor, maxsize = 64, tags = ["conformance-square:{x}"])]
            fn square(x: u64) -> u64 {
                SQUARES.fetch_add(1, Ordering::SeqCst);
                x * x
            }

            #[test]
            fn cached_function_hits_invalidates_and_clears() {
                assert_eq!(square(3), 9);
                assert_eq!(square(3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 1);
                assert!(square::invalidate(3).removed());
                assert_eq!(square(3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 2);
                ::cachemere::invalidate_tag("conformance-square:3");
                assert_eq!(square(3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 3);
                square::cache_clear();
                let info = square::cache_info();
                assert_eq!((info.hits, info.misses, info.currsize), (0, 0, 0));
                assert_eq!(info.maxsize, 64);
            }

            $crate::__shared_conformance_cases!(backend = $ctor);
        }
    };

    ($name:ident, remote = $remote:path) => {
        $crate::backend_conformance!(@remote $name, $remote, 0, [backend = "remote", remote = $remote]);
    };

    // A near cache (`local`) in front of the remote: the same contract.
    ($name:ident, remote = $remote:path, local = $local:literal, maxsize = $maxsize:literal) => {
        $crate::backend_conformance!(
            @remote $name, $remote, $maxsize,
            [backend = "remote", remote = $remote, local = $local, maxsize = $maxsize]
        );
    };

    (@remote $name:ident, $remote:path, $maxsize:literal, [$($options:tt)*]) => {
        mod $name {
            use ::cachemere::cached;
            use ::std::sync::atomic::{AtomicUsize, Ordering};
            use ::std::sync::{Arc, Barrier};
            use ::std::time::Duration;

            const ARM: &str = stringify!($name);

            fn block_on<F: ::std::future::Future>(future: F) -> F::Output {
                ::tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime")
                    .block_on(future)
            }

            #[test]
            fn store_reads_writes_deletes_and_counts() {
                let store = $remote().store();
                let prefix = format!("conformance:{ARM}:store:");
                let key = |k: &str| format!("{prefix}{k}");
                let hour = Duration::from_secs(3600);
                block_on(async {
                    store.set(key("a"), b"1".to_vec(), hour).await.unwrap();
                    store.set(key("b"), vec![0xff, 0, b'\r', b'\n'], hour).await.unwrap();
                    let read = store
                        .get_many(vec![key("a"), key("missing"), key("b")])
                        .await
                        .unwrap();
                    assert_eq!(read, vec![Some(b"1".to_vec()), None, Some(vec![0xff, 0, b'\r', b'\n'])]);
                    store.set(key("a"), b"2".to_vec(), hour).await.unwrap();
                    assert_eq!(store.get_many(vec![key("a")]).await.unwrap(), vec![Some(b"2".to_vec())], "set replaces");
                    assert_eq!(store.count_prefix(prefix.clone()).await.unwrap(), 2);
                    assert!(store.delete(key("a")).await.unwrap());
                    assert!(!store.delete(key("a")).await.unwrap(), "a second delete finds nothing");
                    assert_eq!(store.count_prefix(prefix.clone()).await.unwrap(), 1);
                    assert_eq!(store.get_or_set(key("c"), b"first".to_vec(), hour).await.unwrap(), Some(b"first".to_vec()));
                    assert_eq!(
                        store.get_or_set(key("c"), b"second".to_vec(), hour).await.unwrap(),
                        Some(b"first".to_vec()),
                        "get_or_set keeps the value there"
                    );
                });
            }

            #[test]
            fn values_expire_with_their_ttl() {
                let store = $remote().store();
                let key = format!("conformance:{ARM}:expiring");
                block_on(async {
                    store.set(key.clone(), b"x".to_vec(), Duration::from_millis(100)).await.unwrap();
                    // Generous: ten times the TTL.
                    ::tokio::time::sleep(Duration::from_millis(1000)).await;
                    assert_eq!(store.get_many(vec![key]).await.unwrap(), vec![None]);
                });
            }

            static SQUARES: AtomicUsize = AtomicUsize::new(0);

            #[cached($($options)*, tags = ["conformance-square:{arm}:{x}"])]
            fn square(arm: &str, x: u64) -> u64 {
                SQUARES.fetch_add(1, Ordering::SeqCst);
                x * x
            }

            #[test]
            fn cached_function_hits_invalidates_and_clears() {
                assert_eq!(square(ARM, 3), 9);
                assert_eq!(square(ARM, 3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 1);
                assert!(square::cache_info().currsize >= 1, "the entry is in the store");
                assert!(square::invalidate(ARM, 3).removed());
                assert!(!square::invalidate(ARM, 3).removed(), "already gone");
                assert_eq!(square(ARM, 3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 2);
                ::cachemere::invalidate_tag(&format!("conformance-square:{ARM}:3"));
                assert_eq!(square(ARM, 3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 3, "a tag hides the entry");
                assert_eq!(square(ARM, 3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 3);
                square::cache_clear();
                let info = square::cache_info();
                assert_eq!((info.hits, info.misses, info.errors), (0, 0, 0));
                assert_eq!(info.maxsize, $maxsize, "a remote cache is bounded by TTLs (a near cache's copies by `maxsize`)");
                assert_eq!(square(ARM, 3), 9);
                assert_eq!(SQUARES.load(Ordering::SeqCst), 4, "a clear hides every entry");
            }

            $crate::__shared_conformance_cases!($($options)*);

            static ASYNC_CALLS: AtomicUsize = AtomicUsize::new(0);

            #[cached($($options)*)]
            async fn fetch_name(id: u64) -> Option<String> {
                ASYNC_CALLS.fetch_add(1, Ordering::SeqCst);
                ::tokio::task::yield_now().await;
                (id != 0).then(|| format!("user {id}"))
            }

            #[test]
            fn async_functions_hit_and_do_not_store_none() {
                block_on(async {
                    assert_eq!(fetch_name(7).await.as_deref(), Some("user 7"));
                    assert_eq!(fetch_name(7).await.as_deref(), Some("user 7"));
                    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst), 1);
                    assert_eq!(fetch_name(0).await, None);
                    assert_eq!(fetch_name(0).await, None);
                    assert_eq!(ASYNC_CALLS.load(Ordering::SeqCst), 3, "None is not stored");
                    assert!(fetch_name::invalidate(7).await.removed());
                    fetch_name::cache_clear().await;
                });
            }

            static TRIPLED: AtomicUsize = AtomicUsize::new(0);

            #[cached($($options)*, tags = ["conformance-triple:{arm}"])]
            async fn triple(arm: &str, x: u64) -> u64 {
                assert_eq!(arm, ARM);
                TRIPLED.fetch_add(1, Ordering::SeqCst);
                ::tokio::task::yield_now().await;
                x * 3
            }

            /// Many tasks at once on a multi-threaded runtime: the operations run on the
            /// caller's runtime there, and concurrent reads are merged.
            #[test]
            fn concurrent_async_hits_on_a_multi_thread_runtime() {
                async fn all_of(xs: ::std::ops::Range<u64>) -> Vec<(u64, u64)> {
                    let mut tasks = ::tokio::task::JoinSet::new();
                    for x in xs {
                        tasks.spawn(async move { (x, triple(ARM, x).await) });
                    }
                    let mut answers = tasks.join_all().await;
                    answers.sort_unstable();
                    answers
                }
                let expected: Vec<(u64, u64)> = (0..64).map(|x| (x, x * 3)).collect();
                let runtime = ::tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a multi-thread runtime");
                runtime.block_on(async {
                    ::cachemere::invalidate_tag_async(&format!("conformance-triple:{ARM}")).await;
                    assert_eq!(all_of(0..64).await, expected);
                    assert_eq!(TRIPLED.load(Ordering::SeqCst), 64, "each key computed once");
                    let before = triple::cache_info();
                    assert_eq!(all_of(0..64).await, expected);
                    let after = triple::cache_info();
                    assert_eq!(TRIPLED.load(Ordering::SeqCst), 64, "then all hits");
                    assert_eq!(after.hits - before.hits, 64);
                    assert_eq!(after.errors, 0);
                    ::cachemere::invalidate_tag_async(&format!("conformance-triple:{ARM}")).await;
                    assert_eq!(all_of(0..64).await, expected);
                    assert_eq!(TRIPLED.load(Ordering::SeqCst), 128, "the tag hid every entry");
                });
            }

            static GARBLED_CALLS: AtomicUsize = AtomicUsize::new(0);

            #[cached($($options)*, name = "conformance-garbled")]
            fn garbled(x: u64) -> Vec<String> {
                GARBLED_CALLS.fetch_add(1, Ordering::SeqCst);
                vec![x.to_string(); 3]
            }

            #[test]
            fn a_value_that_does_not_decode_is_a_miss_then_rewritten() {
                let expected = vec!["5".to_string(); 3];
                assert_eq!(garbled(5), expected);
                let key = format!("{}:conformance-garbled:v1:5", $remote().prefix());
                let store = $remote().store();
                // Garbage, and a frame whose postcard length prefix claims 2^62 strings.
                let hostile = vec![0xCA, 1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
                for (round, bytes) in [b"\xff\x00garbage".to_vec(), hostile].into_iter().enumerate() {
                    let errors = garbled::cache_info().errors;
                    block_on(store.set(key.clone(), bytes, Duration::from_secs(60))).unwrap();
                    // A write from outside this process's caches: a near cache sees it once
                    // the change feed reports it.
                    assert!($remote().catch_up(Duration::from_secs(10)), "the change feed caught up");
                    assert_eq!(garbled(5), expected);
                    assert_eq!(GARBLED_CALLS.load(Ordering::SeqCst), 2 + round, "a bad value is a miss");
                    assert_eq!(garbled::cache_info().errors, errors + 1, "and an error");
                    assert_eq!(garbled(5), expected);
                    assert_eq!(GARBLED_CALLS.load(Ordering::SeqCst), 2 + round, "rewritten: a hit");
                }
            }

            static JOINS: AtomicUsize = AtomicUsize::new(0);

            #[cached($($options)*)]
            fn join(a: &str, b: &str) -> String {
                JOINS.fetch_add(1, Ordering::SeqCst);
                format!("{a}|{b}")
            }

            #[test]
            fn separators_and_globs_in_arguments_never_collide() {
                let pairs = [("a:b", "c"), ("a", "b:c"), ("*", "x"), ("a*", "x"), ("", ":"), (":", "")];
                for (a, b) in pairs {
                    assert_eq!(join(a, b), format!("{a}|{b}"));
                }
                assert_eq!(JOINS.load(Ordering::SeqCst), pairs.len());
                for (a, b) in pairs {
                    assert_eq!(join(a, b), format!("{a}|{b}"), "each pair hits its own entry");
                }
                assert_eq!(JOINS.load(Ordering::SeqCst), pairs.len());
                assert_eq!(join::cache_info().currsize, pairs.len() as u64);
            }

            #[cached($($options)*, name = "conformance-versioned")]
            fn version_one(x: u64) -> u64 {
                x
            }

            #[cached($($options)*, name = "conformance-versioned", version = 2)]
            fn version_two(x: u64) -> u64 {
                x * 100
            }

            #[test]
            fn a_version_is_a_fresh_key_space() {
                assert_eq!(version_one(3), 3);
                assert_eq!(version_two(3), 300, "version 2 does not read version 1's entry");
                assert_eq!(version_one(3), 3);
                assert_eq!(version_one::cache_info().hits, 1);
            }
        }
    };
}

/// The cases every backend shares, generated with the backend options `$backend` (used by
/// [`backend_conformance!`]; not for direct use).
#[doc(hidden)]
#[macro_export]
macro_rules! __shared_conformance_cases {
    ($($backend:tt)*) => {
        static TTL_CALLS: ::std::sync::atomic::AtomicUsize = ::std::sync::atomic::AtomicUsize::new(0);

        #[::cachemere::cached($($backend)*, ttl = "100ms")]
        fn short_lived(x: u64) -> usize {
            x as usize + TTL_CALLS.fetch_add(1, ::std::sync::atomic::Ordering::SeqCst)
        }

        #[test]
        fn expired_entries_are_not_served() {
            let first = short_lived(1);
            assert_eq!(short_lived(1), first);
            // Generous: ten times the TTL.
            ::std::thread::sleep(::std::time::Duration::from_millis(1000));
            assert_ne!(short_lived(1), first, "an expired entry was served");
        }

        static FLIGHT_CALLS: ::std::sync::atomic::AtomicUsize = ::std::sync::atomic::AtomicUsize::new(0);
        static ARRIVED: ::std::sync::atomic::AtomicUsize = ::std::sync::atomic::AtomicUsize::new(0);
        const CALLERS: usize = 32;

        #[::cachemere::cached($($backend)*)]
        fn contended(x: u64) -> u64 {
            use ::std::sync::atomic::Ordering;
            FLIGHT_CALLS.fetch_add(1, Ordering::SeqCst);
            while ARRIVED.load(Ordering::SeqCst) < CALLERS {
                ::std::thread::yield_now();
            }
            x + 1
        }

        /// For a remote backend: once per process (single flight does not span processes).
        #[test]
        fn single_flight_computes_once() {
            use ::std::sync::atomic::Ordering;
            use ::std::sync::{Arc, Barrier};
            let barrier = Arc::new(Barrier::new(CALLERS));
            let threads: Vec<_> = (0..CALLERS)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
                    ::std::thread::spawn(move || {
                        barrier.wait();
                        ARRIVED.fetch_add(1, Ordering::SeqCst);
                        contended(41)
                    })
                })
                .collect();
            for thread in threads {
                assert_eq!(thread.join().unwrap(), 42);
            }
            assert_eq!(FLIGHT_CALLS.load(Ordering::SeqCst), 1);
            let info = contended::cache_info();
            assert_eq!((info.hits, info.misses), (CALLERS as u64 - 1, 1));
        }

        /// Stale-while-revalidate, stale-if-error, timeouts, jitter and per-value TTLs.
        mod freshness {
            $crate::__freshness_cases!($($backend)*);
        }

        /// `set`, `peek`, `refresh`, `call` and `uncached`, sync and async.
        mod helpers {
            use ::cachemere::{Invalidation, SetOutcome, Status};
            use ::std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
            use ::std::time::Duration;
            use $crate::gate::Gate;

            /// Tags carry the arm, so that arms running at once do not hide each other's entries.
            const ARM: &str = module_path!();

            /// The origin's current version: 0 is an outage (`Err`).
            static ORIGIN: AtomicU64 = AtomicU64::new(1);
            static RUNS: AtomicUsize = AtomicUsize::new(0);

            #[::cachemere::cached($($backend)*, tags = ["conformance-helpers:{arm}:{id}"])]
            fn versioned(arm: &str, id: u64) -> Result<u64, String> {
                RUNS.fetch_add(1, Ordering::SeqCst);
                match ORIGIN.load(Ordering::SeqCst) {
                    0 => Err("the origin is down".to_owned()),
                    version => Ok(id * 1000 + version),
                }
            }

            fn runs() -> usize {
                RUNS.load(Ordering::SeqCst)
            }

            #[test]
            fn set_peek_refresh_call_and_uncached() {
                assert_eq!(versioned::peek(ARM, 1), None, "nothing stored yet");
                assert_eq!(runs(), 0, "peek does not compute");

                let first = versioned::call(ARM, 1);
                assert_eq!((first.value.clone(), first.status, first.stored), (Ok(1001), Status::Miss, true));
                assert!(first.age < Duration::from_secs(3600), "a miss is as old as the call: {:?}", first.age);
                let again = versioned::call(ARM, 1);
                assert_eq!((again.value, again.status), (Ok(1001), Status::Hit));
                assert!(again.age < Duration::from_secs(3600), "age {:?}", again.age);
                assert_eq!(runs(), 1);

                let before = versioned::cache_info();
                assert_eq!(versioned::peek(ARM, 1), Some(Ok(1001)));
                let after = versioned::cache_info();
                assert_eq!((after.hits, after.misses), (before.hits, before.misses), "peek is not counted");

                // Write-through: stored as if computed, served without running the function.
                assert_eq!(versioned::set(ARM, 1, Ok(5)), SetOutcome::Stored);
                assert_eq!(versioned(ARM, 1), Ok(5));
                assert_eq!(runs(), 1);

                // A forced recomputation replaces a fresh entry.
                ORIGIN.store(2, Ordering::SeqCst);
                assert_eq!(versioned::refresh(ARM, 1), Ok(1002));
                assert_eq!(runs(), 2);
                assert_eq!(versioned(ARM, 1), Ok(1002));
                assert_eq!(runs(), 2, "the refreshed value is stored");

                // The body alone: computed, nothing stored or counted.
                let before = versioned::cache_info();
                ORIGIN.store(3, Ordering::SeqCst);
                assert_eq!(versioned::uncached(ARM, 1), Ok(1003));
                assert_eq!(runs(), 3);
                assert_eq!(versioned(ARM, 1), Ok(1002), "uncached stores nothing");
                let after = versioned::cache_info();
                assert_eq!(after.misses, before.misses, "uncached is not counted");

                // A refresh that fails leaves the entry as it was.
                ORIGIN.store(0, Ordering::SeqCst);
                assert!(versioned::refresh(ARM, 1).is_err());
                assert_eq!(versioned::peek(ARM, 1), Some(Ok(1002)));

                // What the policy does not store is not set: the entry is invalidated instead.
                assert_eq!(
                    versioned::set(ARM, 1, Err("gone".to_owned())),
                    SetOutcome::NotStored(Invalidation::Removed)
                );
                assert_eq!(versioned::peek(ARM, 1), None);
                ORIGIN.store(4, Ordering::SeqCst);
                assert_eq!(versioned(ARM, 1), Ok(1004));

                // A value that was set carries the function's tags.
                assert!(versioned::set(ARM, 2, Ok(7)).is_stored());
                assert_eq!(versioned::peek(ARM, 2), Some(Ok(7)));
                ::cachemere::invalidate_tag(&format!("conformance-helpers:{ARM}:2"));
                assert_eq!(versioned::peek(ARM, 2), None, "a tag hides a value that was set");
                assert_eq!(versioned(ARM, 2), Ok(2004));
            }

            static AGED_RUNS: AtomicUsize = AtomicUsize::new(0);

            #[::cachemere::cached($($backend)*)]
            fn aged(arm: &str) -> u64 {
                AGED_RUNS.fetch_add(1, Ordering::SeqCst);
                7
            }

            #[test]
            fn age_counts_from_the_computation() {
                assert_eq!(aged::set(ARM, 8), SetOutcome::Stored);
                ::std::thread::sleep(Duration::from_millis(150));
                let hit = aged::call(ARM);
                assert_eq!((hit.value, hit.status), (8, Status::Hit));
                // Generous: clocks of a millisecond, a coarse clock a few ticks behind.
                assert!(hit.age >= Duration::from_millis(100), "age {:?}", hit.age);
                assert!(hit.age < Duration::from_secs(600), "age {:?}", hit.age);
                assert_eq!(AGED_RUNS.load(Ordering::SeqCst), 0);
            }

            #[::cachemere::cached($($backend)*)]
            fn slow_aged(arm: &str, fail: bool) -> Result<u64, String> {
                ::std::thread::sleep(Duration::from_millis(150));
                if fail { Err("origin down".into()) } else { Ok(9) }
            }

            /// A miss is as old as its computation (its TTL started with it), and says whether
            /// the policy stored it.
            #[test]
            fn a_miss_is_as_old_as_its_computation() {
                let miss = slow_aged::call(ARM, false);
                assert_eq!((miss.status, miss.stored), (Status::Miss, true));
                assert!(miss.age >= Duration::from_millis(150), "age {:?}", miss.age);
                let failed = slow_aged::call(ARM, true);
                assert_eq!((failed.status, failed.stored), (Status::Miss, false), "an Err is not stored");
                let hit = slow_aged::call(ARM, false);
                assert_eq!((hit.status, hit.stored), (Status::Hit, true));
            }

            #[::cachemere::cached($($backend)*)]
            fn invalidated_meanwhile(arm: &str, id: u64) -> u64 {
                // An invalidation of the key while it computes: the value may be older than
                // what it hid, so it is not stored.
                let _ = invalidated_meanwhile::invalidate(arm, id);
                id
            }

            /// `stored` says whether the value landed, not only whether the policy keeps it.
            #[test]
            fn a_value_an_invalidation_raced_with_is_not_stored() {
                let raced = invalidated_meanwhile::call(ARM, 3);
                assert_eq!((raced.value, raced.status, raced.stored), (3, Status::Miss, false));
                assert_eq!(invalidated_meanwhile::peek(ARM, 3), None, "nothing was stored");
            }

            #[::cachemere::cached($($backend)*, tags = ["conformance-stored:{arm}:{id}"])]
            fn tag_invalidated_meanwhile(arm: &str, id: u64) -> u64 {
                let _ = ::cachemere::invalidate_tag(&format!("conformance-stored:{arm}:{id}"));
                id
            }

            #[::cachemere::cached($($backend)*, ttl = "100ms")]
            fn outlives_its_ttl(arm: &str, id: u64) -> u64 {
                ::std::thread::sleep(Duration::from_millis(250));
                id
            }

            /// A value a tag invalidation raced with, or computed past its TTL, is not served
            /// later: not `stored` either.
            #[test]
            fn a_value_hidden_by_a_tag_or_expired_is_not_stored() {
                let tagged = tag_invalidated_meanwhile::call(ARM, 4);
                assert_eq!((tagged.status, tagged.stored), (Status::Miss, false));
                assert_eq!(tag_invalidated_meanwhile::peek(ARM, 4), None);
                let late = outlives_its_ttl::call(ARM, 5);
                assert_eq!((late.status, late.stored), (Status::Miss, false));
                assert_eq!(outlives_its_ttl::peek(ARM, 5), None);
            }

            static HANDED_GATE: Gate = Gate::new();

            #[::cachemere::cached($($backend)*)]
            fn handed_over(arm: &str, id: u64) -> u64 {
                HANDED_GATE.pass();
                id
            }

            /// Callers waiting on a computation that an invalidation raced with are never told
            /// `stored` for a value the store does not hold.
            #[test]
            fn waiters_are_not_told_stored_for_a_discarded_value() {
                let (started, go) = HANDED_GATE.arm();
                let leader = ::std::thread::spawn(|| handed_over::call(ARM, 6));
                started.recv().expect("the computation starts");
                let waiters: Vec<_> = (0..3).map(|_| ::std::thread::spawn(|| handed_over::call(ARM, 6))).collect();
                ::std::thread::sleep(Duration::from_millis(100));
                let _ = handed_over::invalidate(ARM, 6);
                go.send(()).expect("the computation waits");
                let mut results = vec![leader.join().expect("no panic")];
                results.extend(waiters.into_iter().map(|w| w.join().expect("no panic")));
                assert!(!results[0].stored, "the leader's value was discarded");
                let held = handed_over::peek(ARM, 6);
                for result in &results {
                    assert_eq!(result.value, 6);
                    if result.stored {
                        assert_eq!(held, Some(6), "stored, so in the store: {:?}", results);
                    }
                }
            }

            static IN_FLIGHT_ORIGIN: AtomicU64 = AtomicU64::new(1);
            static IN_FLIGHT_GATE: Gate = Gate::new();

            #[::cachemere::cached($($backend)*)]
            fn in_flight(arm: &str, id: u64) -> u64 {
                let read = IN_FLIGHT_ORIGIN.load(Ordering::SeqCst);
                IN_FLIGHT_GATE.pass();
                read
            }

            /// A computation that read the origin before a `set` does not store its older
            /// value over the one that was set.
            #[test]
            fn set_wins_over_a_computation_in_flight() {
                let (started, go) = IN_FLIGHT_GATE.arm();
                let computing = ::std::thread::spawn(|| in_flight(ARM, 1));
                started.recv().expect("the computation starts");
                // The origin changes and is written through while the old read is in flight.
                IN_FLIGHT_ORIGIN.store(2, Ordering::SeqCst);
                assert_eq!(in_flight::set(ARM, 1, 2), SetOutcome::Stored);
                go.send(()).expect("the computation waits");
                assert_eq!(computing.join().expect("no panic"), 1, "it returns its own read");
                assert_eq!(in_flight::peek(ARM, 1), Some(2), "the older value was stored over the set one");
                assert_eq!(in_flight(ARM, 1), 2);
            }

            static REFRESH_ORIGIN: AtomicU64 = AtomicU64::new(1);
            static REFRESH_RUNS: AtomicUsize = AtomicUsize::new(0);
            static REFRESH_GATE: Gate = Gate::new();

            #[::cachemere::cached($($backend)*)]
            fn refreshed(arm: &str, id: u64) -> u64 {
                REFRESH_RUNS.fetch_add(1, Ordering::SeqCst);
                let read = REFRESH_ORIGIN.load(Ordering::SeqCst);
                REFRESH_GATE.pass();
                read
            }

            /// Callers that miss while a refresh runs wait for it and get its value; a refresh
            /// started while an older computation runs stores its own value after it.
            #[test]
            fn refresh_with_waiters_and_an_older_computation() {
                // Callers arriving during a refresh of a cold key wait for its value.
                let (started, go) = REFRESH_GATE.arm();
                let refreshing = ::std::thread::spawn(|| refreshed::refresh(ARM, 1));
                started.recv().expect("the refresh starts");
                let waiters: Vec<_> = (0..4).map(|_| ::std::thread::spawn(|| refreshed(ARM, 1))).collect();
                ::std::thread::sleep(Duration::from_millis(100));
                go.send(()).expect("the refresh waits");
                assert_eq!(refreshing.join().expect("no panic"), 1);
                for waiter in waiters {
                    assert_eq!(waiter.join().expect("no panic"), 1);
                }
                assert_eq!(REFRESH_RUNS.load(Ordering::SeqCst), 1, "the waiters computed");

                // A computation of another key reads version 1 and waits; the origin moves to
                // 2; a refresh of that key must end with version 2 stored.
                let (started, go) = REFRESH_GATE.arm();
                let older = ::std::thread::spawn(|| refreshed(ARM, 2));
                started.recv().expect("the older computation starts");
                REFRESH_ORIGIN.store(2, Ordering::SeqCst);
                let refreshing = ::std::thread::spawn(|| refreshed::refresh(ARM, 2));
                ::std::thread::sleep(Duration::from_millis(100));
                go.send(()).expect("the older computation waits");
                assert_eq!(older.join().expect("no panic"), 1);
                assert_eq!(refreshing.join().expect("no panic"), 2);
                assert_eq!(refreshed::peek(ARM, 2), Some(2), "the older value won over the refresh");
            }

            static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);

            #[::cachemere::cached($($backend)*, tags = ["conformance-helpers-async:{arm}:{id}"])]
            async fn versioned_async(arm: &str, id: u64) -> Option<u64> {
                ASYNC_RUNS.fetch_add(1, Ordering::SeqCst);
                ::tokio::task::yield_now().await;
                (id != 0).then_some(id * 10)
            }

            #[test]
            fn async_helpers() {
                let runtime = ::tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(async {
                    assert_eq!(versioned_async::peek(ARM, 1).await, None);
                    let first = versioned_async::call(ARM, 1).await;
                    assert_eq!((first.value, first.status), (Some(10), Status::Miss));
                    let again = versioned_async::call(ARM, 1).await;
                    assert_eq!((again.value, again.status), (Some(10), Status::Hit));
                    assert_eq!(versioned_async::set(ARM, 1, Some(11)).await, SetOutcome::Stored);
                    assert_eq!(versioned_async(ARM, 1).await, Some(11));
                    assert_eq!(versioned_async::peek(ARM, 1).await, Some(Some(11)));
                    assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 1);
                    assert_eq!(versioned_async::refresh(ARM, 1).await, Some(10));
                    assert_eq!(versioned_async(ARM, 1).await, Some(10));
                    assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 2);
                    assert_eq!(versioned_async::uncached(ARM, 1).await, Some(10));
                    assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 3);
                    assert_eq!(
                        versioned_async::set(ARM, 1, None).await,
                        SetOutcome::NotStored(Invalidation::Removed)
                    );
                    assert_eq!(versioned_async::peek(ARM, 1).await, None);
                    assert_eq!(versioned_async(ARM, 1).await, Some(10));
                    assert_eq!(ASYNC_RUNS.load(Ordering::SeqCst), 4);
                });
            }
        }
    };
}
