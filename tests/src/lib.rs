//! Shared test support for cachemere: the backend conformance suite and a user-written backend.
//!
//! The suite is written once, against the public [`Backend`](cachemere::Backend) trait and the
//! `#[cached(backend = ...)]` option, and instantiated for every backend with one line:
//!
//! ```text
//! cachemere_tests::backend_conformance!(memory, cachemere::MemoryBackend::new);
//! ```

pub mod redis_harness;
pub mod user_backend;

/// Generates a module named `$name` of conformance tests for the backend built by `$ctor`, a
/// function `fn(&CacheConfig) -> impl Backend<K, V>` generic over `K` and `V`.
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
                assert!(square::invalidate(3));
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

            static TTL_CALLS: AtomicUsize = AtomicUsize::new(0);

            #[cached(backend = $ctor, ttl = "100ms")]
            fn short_lived(x: u64) -> usize {
                x as usize + TTL_CALLS.fetch_add(1, Ordering::SeqCst)
            }

            #[test]
            fn expired_entries_are_not_served() {
                let first = short_lived(1);
                assert_eq!(short_lived(1), first);
                // Generous: ten times the TTL.
                ::std::thread::sleep(::std::time::Duration::from_millis(1000));
                assert_ne!(short_lived(1), first, "an expired entry was served");
            }

            static FLIGHT_CALLS: AtomicUsize = AtomicUsize::new(0);
            static ARRIVED: AtomicUsize = AtomicUsize::new(0);
            const CALLERS: usize = 32;

            #[cached(backend = $ctor)]
            fn contended(x: u64) -> u64 {
                FLIGHT_CALLS.fetch_add(1, Ordering::SeqCst);
                while ARRIVED.load(Ordering::SeqCst) < CALLERS {
                    ::std::thread::yield_now();
                }
                x + 1
            }

            #[test]
            fn single_flight_computes_once() {
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
        }
    };
}
