//! The freshness cases of the conformance suite (stale-while-revalidate, stale-if-error,
//! throttling, timeouts, jitter, per-value TTLs), run for every backend by
//! [`backend_conformance!`](crate::backend_conformance).
//!
//! TTLs are short and every wait is several times longer than what it waits for: the
//! assertions are about what is served, never about how fast.

/// Generated inside each backend's module (not for direct use).
#[doc(hidden)]
#[macro_export]
macro_rules! __freshness_cases {
    ($($backend:tt)*) => {
        use ::cachemere::Status;
        use ::std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
        use ::std::sync::{Arc, Barrier};
        use ::std::time::{Duration, Instant};
        use $crate::gate::Gate;

        /// Tags and arguments carry the arm, so that arms running at once do not meet.
        const ARM: &str = module_path!();

        /// Well past the 300 ms TTLs below.
        const PAST_TTL: Duration = Duration::from_millis(700);

        /// Polls `done` until it holds, at most 20 s.
        fn eventually(what: &str, mut done: impl FnMut() -> bool) {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !done() {
                assert!(Instant::now() < deadline, "never happened: {what}");
                ::std::thread::sleep(Duration::from_millis(20));
            }
        }

        fn runtime() -> ::tokio::runtime::Runtime {
            ::tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime")
        }

        static SWR_VERSION: AtomicU64 = AtomicU64::new(1);
        static SWR_RUNS: AtomicUsize = AtomicUsize::new(0);
        static SWR_GATE: Gate = Gate::new();

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_while_revalidate = "1h")]
        fn revalidated(arm: &str, id: u64) -> u64 {
            SWR_RUNS.fetch_add(1, SeqCst);
            let version = SWR_VERSION.load(SeqCst);
            SWR_GATE.pass();
            id * 100 + version
        }

        /// 100 callers of a stale key all get the stale value at once, one background refresh
        /// runs (the stale value is still served while it does), and its value replaces it.
        #[test]
        fn stale_while_revalidate_serves_stale_and_refreshes_once() {
            assert_eq!(revalidated(ARM, 1), 101);
            ::std::thread::sleep(PAST_TTL);
            SWR_VERSION.store(2, SeqCst);
            let (started, go) = SWR_GATE.arm();
            let barrier = Arc::new(Barrier::new(100));
            let callers: Vec<_> = (0..100)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
                    ::std::thread::spawn(move || {
                        barrier.wait();
                        revalidated::call(ARM, 1)
                    })
                })
                .collect();
            for caller in callers {
                let answer = caller.join().expect("no panic");
                assert_eq!((answer.value, answer.status), (101, Status::Stale));
                assert!(answer.age >= Duration::from_millis(300), "a stale value is old: {:?}", answer.age);
            }
            started
                .recv_timeout(Duration::from_secs(20))
                .expect("a background refresh started");
            let during = revalidated::call(ARM, 1);
            assert_eq!((during.value, during.status), (101, Status::Stale), "served while the refresh runs");
            go.send(()).expect("the refresh waits");
            eventually("the refresh's value replaces the stale one", || revalidated::peek(ARM, 1) == Some(102));
            // The refresh counts its success after its write returns, so a reader can see the new
            // value a moment before the counter moves.
            eventually("the refresh is counted", || revalidated::cache_info().refreshes_succeeded == 1);
            let after = revalidated::call(ARM, 1);
            assert_eq!((after.value, after.status), (102, Status::Hit));
            assert_eq!(SWR_RUNS.load(SeqCst), 2, "one computation, then exactly one refresh");
            let info = revalidated::cache_info();
            assert_eq!(info.stale_served, 101, "{info}");
            assert_eq!((info.refreshes_started, info.refreshes_succeeded, info.refreshes_failed), (1, 1, 0), "{info}");
            assert_eq!(info.misses, 1, "a background refresh is not a call: {info}");
            assert!(info.to_string().contains("stale_served=101"), "{info}");
        }

        static HIDDEN_RUNS: AtomicUsize = AtomicUsize::new(0);

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_while_revalidate = "1h", stale_if_error = "1h", skip(fail), tags = ["conformance-fresh:{arm}:{id}"])]
        fn hidden(arm: &str, id: u64, fail: bool) -> Result<u64, String> {
            HIDDEN_RUNS.fetch_add(1, SeqCst);
            if fail {
                Err("the origin is down".to_owned())
            } else {
                Ok(id + HIDDEN_RUNS.load(SeqCst) as u64 * 1000)
            }
        }

        /// A stale entry is still an invalidated entry: after `invalidate`, a tag invalidation
        /// or `cache_clear`, neither stale-while-revalidate nor a failing origin serves it.
        #[test]
        fn no_stale_value_after_an_invalidation() {
            for (id, how) in [(1_u64, "key"), (2, "tag"), (3, "clear")] {
                let first = hidden(ARM, id, false).expect("computed");
                ::std::thread::sleep(PAST_TTL);
                match how {
                    "key" => {
                        let _ = hidden::invalidate(ARM, id);
                    }
                    "tag" => {
                        let _ = ::cachemere::invalidate_tag(&format!("conformance-fresh:{ARM}:{id}"));
                    }
                    _ => {
                        let _ = hidden::cache_clear();
                    }
                }
                let failed = hidden::call(ARM, id, true);
                assert_eq!(failed.status, Status::Miss, "{how}: nothing stale stands in");
                assert!(failed.value.is_err(), "{how}: the error, not the invalidated {first}");
                let again = hidden::call(ARM, id, false);
                assert_eq!(again.status, Status::Miss, "{how}: recomputed, not revalidated");
                assert_ne!(again.value, Ok(first), "{how}");
            }
        }

        static SAFE_ORIGIN: AtomicU64 = AtomicU64::new(1);
        static SAFE_RUNS: AtomicUsize = AtomicUsize::new(0);
        /// The origin's outage modes.
        const DOWN: u64 = 0;
        const PANICS: u64 = u64::MAX;

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_if_error = "1h", retry_after = "2s")]
        fn fail_safe(arm: &str, id: u64) -> Result<u64, String> {
            SAFE_RUNS.fetch_add(1, SeqCst);
            match SAFE_ORIGIN.load(SeqCst) {
                DOWN => Err("the origin is down".to_owned()),
                PANICS => panic!("the origin panicked"),
                version => Ok(id * 100 + version),
            }
        }

        /// A failed recomputation (an `Err`, a panic) is answered with the stale value, and the
        /// key is not recomputed again until `retry_after` has passed.
        #[test]
        fn stale_if_error_stands_in_for_errors_and_panics_and_throttles() {
            let runs = || SAFE_RUNS.load(SeqCst);
            assert_eq!(fail_safe(ARM, 1), Ok(101));
            ::std::thread::sleep(PAST_TTL);
            SAFE_ORIGIN.store(DOWN, SeqCst);
            let failed = fail_safe::call(ARM, 1);
            assert_eq!((failed.value, failed.status), (Ok(101), Status::Stale));
            assert_eq!(runs(), 2);
            let throttled = fail_safe::call(ARM, 1);
            assert_eq!((throttled.value, throttled.status), (Ok(101), Status::Stale));
            assert_eq!(runs(), 2, "throttled: the failing origin is not called again at once");
            ::std::thread::sleep(Duration::from_secs(3));
            SAFE_ORIGIN.store(PANICS, SeqCst);
            let panicked = fail_safe::call(ARM, 1);
            assert_eq!((panicked.value, panicked.status), (Ok(101), Status::Stale));
            assert_eq!(runs(), 3, "retried once `retry_after` passed");
            ::std::thread::sleep(Duration::from_secs(3));
            SAFE_ORIGIN.store(2, SeqCst);
            let recovered = fail_safe::call(ARM, 1);
            assert_eq!((recovered.value, recovered.status), (Ok(102), Status::Miss));
            let info = fail_safe::cache_info();
            assert_eq!((info.fail_safe_activations, info.stale_served), (2, 3), "{info}");
            // Without a stale value, the error is the answer.
            SAFE_ORIGIN.store(DOWN, SeqCst);
            assert!(fail_safe(ARM, 2).is_err());
        }

        static RECOVERING_ORIGIN: AtomicU64 = AtomicU64::new(1);
        static RECOVERING_RUNS: AtomicUsize = AtomicUsize::new(0);

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_if_error = "1h", retry_after = "1h")]
        fn recovering(arm: &str, id: u64) -> Result<u64, String> {
            RECOVERING_RUNS.fetch_add(1, SeqCst);
            match RECOVERING_ORIGIN.load(SeqCst) {
                DOWN => Err("the origin is down".to_owned()),
                version => Ok(id * 100 + version),
            }
        }

        /// A key throttled after a failure is retried as soon as it is invalidated, written or
        /// recomputed with success: the throttle does not outlive the failure it was for.
        #[test]
        fn throttling_ends_with_the_failure() {
            let runs = || RECOVERING_RUNS.load(SeqCst);
            assert_eq!(recovering(ARM, 1), Ok(101));
            ::std::thread::sleep(PAST_TTL);
            RECOVERING_ORIGIN.store(DOWN, SeqCst);
            assert_eq!(recovering::call(ARM, 1).status, Status::Stale, "fail-safe, now throttled");
            RECOVERING_ORIGIN.store(2, SeqCst);
            let _ = recovering::invalidate(ARM, 1);
            let recomputed = recovering::call(ARM, 1);
            assert_eq!((recomputed.value, recomputed.status), (Ok(102), Status::Miss), "invalidated: recomputed");
            ::std::thread::sleep(PAST_TTL);
            RECOVERING_ORIGIN.store(3, SeqCst);
            let before = runs();
            let next = recovering::call(ARM, 1);
            assert_eq!((next.value, next.status, runs() - before), (Ok(103), Status::Miss, 1), "expired, the origin healthy: recomputed");
            // A failure, then a `set`: the value set is served, and when it expires the key is
            // recomputed.
            ::std::thread::sleep(PAST_TTL);
            RECOVERING_ORIGIN.store(DOWN, SeqCst);
            assert_eq!(recovering::call(ARM, 1).status, Status::Stale);
            assert!(recovering::set(ARM, 1, Ok(150)).is_stored());
            ::std::thread::sleep(PAST_TTL);
            RECOVERING_ORIGIN.store(4, SeqCst);
            let after_set = recovering::call(ARM, 1);
            assert_eq!((after_set.value, after_set.status), (Ok(104), Status::Miss), "the throttle ended with the set");
        }

        static ASYNC_VERSION: AtomicU64 = AtomicU64::new(1);
        static ASYNC_RUNS: AtomicUsize = AtomicUsize::new(0);
        static HOLD: AtomicBool = AtomicBool::new(false);

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_while_revalidate = "1h")]
        async fn revalidated_async(arm: &str, id: u64) -> u64 {
            ASYNC_RUNS.fetch_add(1, SeqCst);
            id * 100 + ASYNC_VERSION.load(SeqCst)
        }

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_if_error = "1h", timeout = "100ms")]
        async fn slow_origin(arm: &str, id: u64) -> Option<u64> {
            let version = ASYNC_VERSION.load(SeqCst);
            while HOLD.load(SeqCst) {
                ::tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (version != 0).then_some(id * 100 + version)
        }

        /// `async fn`s: a stale value while the refresh runs on the caller's runtime; a
        /// recomputation slower than `timeout` answered with the stale value and finished in the
        /// background; a `None` answered with the stale value.
        #[test]
        fn async_stale_while_revalidate_timeout_and_fail_safe() {
            runtime().block_on(async {
                assert_eq!(revalidated_async(ARM, 1).await, 101);
                assert_eq!(slow_origin(ARM, 1).await, Some(101));
                ::tokio::time::sleep(PAST_TTL).await;
                ASYNC_VERSION.store(2, SeqCst);
                let stale = revalidated_async::call(ARM, 1).await;
                assert_eq!((stale.value, stale.status), (101, Status::Stale));
                HOLD.store(true, SeqCst);
                let answered = ::tokio::time::timeout(Duration::from_secs(20), slow_origin::call(ARM, 1))
                    .await
                    .expect("answered before the slow recomputation ended");
                assert_eq!((answered.value, answered.status), (Some(101), Status::Stale));
                HOLD.store(false, SeqCst);
                let deadline = Instant::now() + Duration::from_secs(20);
                while revalidated_async::peek(ARM, 1).await != Some(102)
                    || slow_origin::peek(ARM, 1).await != Some(Some(102))
                {
                    assert!(Instant::now() < deadline, "the background computations never landed");
                    ::tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(ASYNC_RUNS.load(SeqCst), 2);
                // `None` is a failure: the stale value stands in.
                ::tokio::time::sleep(PAST_TTL).await;
                ASYNC_VERSION.store(0, SeqCst);
                let none = slow_origin::call(ARM, 1).await;
                assert_eq!((none.value, none.status), (Some(102), Status::Stale));
            });
            let info = slow_origin::cache_info();
            assert_eq!(info.fail_safe_activations, 2, "{info}");
        }

        static ASYNC_ORIGIN: AtomicU64 = AtomicU64::new(1);
        static ASYNC_SAFE_RUNS: AtomicUsize = AtomicUsize::new(0);

        #[::cachemere::cached($($backend)*, ttl = "300ms", stale_if_error = "1h", retry_after = "1h")]
        async fn fail_safe_async(arm: &str, id: u64) -> Result<u64, String> {
            ASYNC_SAFE_RUNS.fetch_add(1, SeqCst);
            ::tokio::task::yield_now().await;
            match ASYNC_ORIGIN.load(SeqCst) {
                DOWN => Err("the origin is down".to_owned()),
                PANICS => panic!("the origin panicked"),
                version => Ok(id * 100 + version),
            }
        }

        #[::cachemere::cached($($backend)*, ttl = "300ms", jitter = "3s")]
        async fn jittered_async(arm: &str, id: u64) -> u64 {
            ::tokio::task::yield_now().await;
            id
        }

        #[::cachemere::cached($($backend)*, idle = "3s")]
        async fn sliding_async(arm: &str, id: u64) -> u64 {
            ::tokio::task::yield_now().await;
            id
        }

        #[::cachemere::cached($($backend)*, ttl = "1h", ttl_from = own_ttl)]
        async fn token_async(arm: &str, id: u64, lifetime_ms: u64) -> (u64, u64) {
            ::tokio::task::yield_now().await;
            (id, lifetime_ms)
        }

        /// The async forms of fail-safe on `Err` (with throttling) and on a panic, jitter,
        /// sliding expiry and per-value expiry.
        #[test]
        fn async_fail_safe_sliding_and_per_value_expiry() {
            runtime().block_on(async {
                let runs = || ASYNC_SAFE_RUNS.load(SeqCst);
                assert_eq!(fail_safe_async(ARM, 1).await, Ok(101));
                ::tokio::time::sleep(PAST_TTL).await;
                ASYNC_ORIGIN.store(DOWN, SeqCst);
                let failed = fail_safe_async::call(ARM, 1).await;
                assert_eq!((failed.value, failed.status), (Ok(101), Status::Stale));
                let throttled = fail_safe_async::call(ARM, 1).await;
                assert_eq!((throttled.value, throttled.status, runs()), (Ok(101), Status::Stale, 2));
                assert!(fail_safe_async(ARM, 2).await.is_err(), "nothing to fall back on");
                ASYNC_ORIGIN.store(5, SeqCst);
                assert_eq!(fail_safe_async(ARM, 3).await, Ok(305));
                ::tokio::time::sleep(PAST_TTL).await;
                ASYNC_ORIGIN.store(PANICS, SeqCst);
                let panicked = fail_safe_async::call(ARM, 3).await;
                assert_eq!((panicked.value, panicked.status), (Ok(305), Status::Stale), "a panic is answered stale");

                for id in 0..40 {
                    jittered_async(ARM, id).await;
                }
                ::tokio::time::sleep(Duration::from_secs(1)).await;
                let mut fresh = 0;
                for id in 0..40 {
                    fresh += usize::from(jittered_async::peek(ARM, id).await.is_some());
                }
                assert!(fresh > 0 && fresh < 40, "{fresh} of 40 jittered entries fresh");

                assert_eq!(sliding_async::call(ARM, 1).await.status, Status::Miss);
                let until = Instant::now() + Duration::from_secs(7);
                while Instant::now() < until {
                    ::tokio::time::sleep(Duration::from_millis(300)).await;
                    assert_eq!(sliding_async::call(ARM, 1).await.status, Status::Hit, "renewed by reads");
                }
                ::tokio::time::sleep(Duration::from_secs(7)).await;
                assert_eq!(sliding_async::call(ARM, 1).await.status, Status::Miss, "expired unread");

                assert_eq!(token_async::call(ARM, 1, 200).await.status, Status::Miss);
                assert_eq!(token_async::call(ARM, 2, u64::MAX).await.status, Status::Miss);
                assert_eq!(token_async::call(ARM, 3, 0).await.status, Status::Miss);
                assert_eq!(token_async::call(ARM, 3, 0).await.status, Status::Miss, "not stored");
                ::tokio::time::sleep(Duration::from_secs(1)).await;
                assert_eq!(token_async::call(ARM, 2, u64::MAX).await.status, Status::Hit);
                assert_eq!(token_async::call(ARM, 1, 200).await.status, Status::Miss, "its own TTL ended");
            });
            assert_eq!(fail_safe_async::cache_info().fail_safe_activations, 2);
        }

        static JITTERED: AtomicUsize = AtomicUsize::new(0);

        #[::cachemere::cached($($backend)*, ttl = "300ms", jitter = "3s")]
        fn jittered(arm: &str, id: u64) -> u64 {
            JITTERED.fetch_add(1, SeqCst);
            id
        }

        /// Entries written together expire at different times: 40 entries with a 300 ms TTL
        /// and 3 s of jitter are neither all expired nor all fresh a second later (each way
        /// about one chance in 30,000 by luck).
        #[test]
        fn jitter_spreads_expiries() {
            for id in 0..40 {
                jittered(ARM, id);
            }
            ::std::thread::sleep(Duration::from_secs(1));
            let fresh = (0..40).filter(|id| jittered::peek(ARM, *id).is_some()).count();
            assert!(fresh > 0, "no entry outlived the TTL: no jitter");
            assert!(fresh < 40, "no entry expired");
        }

        static SLIDING_RUNS: AtomicUsize = AtomicUsize::new(0);

        #[::cachemere::cached($($backend)*, idle = "3s")]
        fn sliding(arm: &str, id: u64) -> u64 {
            SLIDING_RUNS.fetch_add(1, SeqCst);
            id
        }

        #[::cachemere::cached($($backend)*, ttl = "1500ms", idle = "1h")]
        fn capped_sliding(arm: &str, id: u64) -> u64 {
            SLIDING_RUNS.fetch_add(1, SeqCst);
            id
        }

        /// Sliding expiry: an entry read every 300 ms outlives its 3 s idle window twice over;
        /// left unread, it expires; `ttl` caps how long reads keep it.
        #[test]
        fn sliding_expiry() {
            assert_eq!(sliding::call(ARM, 1).status, Status::Miss);
            let until = Instant::now() + Duration::from_secs(7);
            while Instant::now() < until {
                ::std::thread::sleep(Duration::from_millis(300));
                assert_eq!(sliding::call(ARM, 1).status, Status::Hit, "renewed by reads");
            }
            ::std::thread::sleep(Duration::from_secs(7));
            assert_eq!(sliding::call(ARM, 1).status, Status::Miss, "expired unread");

            assert_eq!(capped_sliding::call(ARM, 1).status, Status::Miss);
            for _ in 0..4 {
                ::std::thread::sleep(Duration::from_millis(200));
                let _ = capped_sliding(ARM, 1);
            }
            ::std::thread::sleep(Duration::from_millis(1500));
            assert_eq!(capped_sliding::call(ARM, 1).status, Status::Miss, "the TTL caps the renewals");
        }

        static OWN_TTL_RUNS: AtomicUsize = AtomicUsize::new(0);

        /// The value's own TTL: its second field in milliseconds (`u64::MAX`: none of its own).
        fn own_ttl(value: &(u64, u64)) -> Option<Duration> {
            (value.1 != u64::MAX).then(|| Duration::from_millis(value.1))
        }

        #[::cachemere::cached($($backend)*, ttl = "1h", ttl_from = own_ttl)]
        fn token(arm: &str, id: u64, lifetime_ms: u64) -> (u64, u64) {
            OWN_TTL_RUNS.fetch_add(1, SeqCst);
            (id, lifetime_ms)
        }

        /// A value says when it expires (bounded by `ttl`); one that says zero is not stored.
        #[test]
        fn per_value_expiry() {
            let runs = || OWN_TTL_RUNS.load(SeqCst);
            token(ARM, 1, 200);
            token(ARM, 2, u64::MAX);
            token(ARM, 3, 0);
            assert_eq!(runs(), 3);
            token(ARM, 3, 0);
            assert_eq!(runs(), 4, "an already expired value is not stored");
            assert_eq!(token::call(ARM, 1, 200).status, Status::Hit);
            ::std::thread::sleep(Duration::from_secs(1));
            assert_eq!(token::call(ARM, 2, u64::MAX).status, Status::Hit, "the declared TTL");
            assert_eq!(token::call(ARM, 1, 200).status, Status::Miss, "its own TTL ended");
            assert!(!token::set(ARM, 3, 0, (3, 0)).is_stored(), "an already expired value is not set");
            assert_eq!(token::peek(ARM, 3, 0), None);
        }
    };
}
