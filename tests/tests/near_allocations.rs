//! A near-cache hit (`local = ..`) allocates nothing: copies are keyed by the function's own
//! key and looked up by the borrowed arguments, with no key text built and no tag formatted;
//! for owned, `&str`, long `&str`, `&[T]` and `&T` arguments, with tags, sync and async.
//! Counted with a counting global allocator (this binary only, per thread), against a
//! `redis-server` the harness starts on a free loopback port.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use cachemere::cached;
use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere_tests::counting::{Counting, allocations_on_this_thread};
use cachemere_tests::redis_harness::RedisServer;
use cachemere_tests::remote_slot;
use serde::Serialize;

#[global_allocator]
static GLOBAL: Counting = Counting;

remote_slot!(REMOTE, remote);

#[derive(Serialize, Clone, Hash, PartialEq, Eq)]
struct Point {
    x: i64,
    y: i64,
}

#[cached(backend = "redis", remote = remote, local = "1h", tags = ["alloc-u64:{key}"])]
fn by_u64(key: u64) -> u64 {
    key
}

#[cached(backend = "redis", remote = remote, local = "1h", tags = ["alloc-str:{name}"])]
fn by_str(name: &str) -> usize {
    name.len()
}

#[cached(backend = "redis", remote = remote, local = "1h")]
fn by_slice(values: &[u32]) -> u32 {
    values.iter().sum()
}

#[cached(backend = "redis", remote = remote, local = "1h")]
fn by_ref(point: &Point) -> i64 {
    point.x + point.y
}

#[cached(backend = "redis", remote = remote, local = "1h")]
async fn by_u64_async(key: u64) -> u64 {
    key
}

/// Polls a future that must be ready at once (a local hit is).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a local hit was not ready at once"),
    }
}

/// Calls `call` until it is answered locally (`local_hits` grows), for at most 10 s: the
/// write of a miss is itself a change the feed reports, which may drop the first copy.
fn until_local(what: &str, mut call: impl FnMut(), local_hits: impl Fn() -> u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = local_hits();
        call();
        if local_hits() > before {
            return;
        }
        assert!(Instant::now() < deadline, "never answered locally: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The allocations of a batch of 1,000 calls on this thread that were all local hits. A copy
/// may be dropped legitimately (a feed message for another key in its change counter's stripe,
/// a heartbeat late under load): a batch with a call that was not a local hit is measured again,
/// at most 10 times.
fn allocations_of_local_hits(mut call: impl FnMut(), local_hits: impl Fn() -> u64) -> usize {
    for _ in 0..10 {
        let hits_before = local_hits();
        let before = allocations_on_this_thread();
        for _ in 0..1000 {
            call();
        }
        let allocations = allocations_on_this_thread() - before;
        if local_hits() - hits_before == 1000 {
            return allocations;
        }
    }
    panic!("no batch of 1,000 calls was all local hits in 10 tries");
}

#[test]
fn a_local_hit_allocates_nothing() {
    let server = RedisServer::start()
        .unwrap_or_else(|error| panic!("could not start redis-server: {error}"));
    let remote: Remote = RedisConfig::new(server.url())
        .prefix("near-allocations")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(REMOTE.set(remote.clone()).is_ok(), "set once");

    let name = String::from("a:name with {braces} and %");
    let values = vec![1, 2, 3];
    let point = Point { x: 1, y: 2 };
    let long = "x".repeat(300); // longer than the readable limit: a digest key

    until_local(
        "u64",
        || assert_eq!(by_u64(7), 7),
        || by_u64::cache_info().local_hits,
    );
    until_local(
        "&str",
        || assert_eq!(by_str(&name), name.len()),
        || by_str::cache_info().local_hits,
    );
    until_local(
        "long &str",
        || assert_eq!(by_str(&long), 300),
        || by_str::cache_info().local_hits,
    );
    until_local(
        "&[u32]",
        || assert_eq!(by_slice(&values), 6),
        || by_slice::cache_info().local_hits,
    );
    until_local(
        "&T",
        || assert_eq!(by_ref(&point), 3),
        || by_ref::cache_info().local_hits,
    );
    // Its first reads go to Redis: they need a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("a runtime: {error}"));
    until_local(
        "async u64",
        || assert_eq!(runtime.block_on(by_u64_async(7)), 7),
        || by_u64_async::cache_info().local_hits,
    );

    // The warm-up's writes are reported by the feed too: let their messages arrive first.
    assert!(
        remote.catch_up(Duration::from_secs(5)),
        "the feed caught up"
    );
    let counts = [
        (
            "u64",
            allocations_of_local_hits(
                || assert_eq!(by_u64(7), 7),
                || by_u64::cache_info().local_hits,
            ),
        ),
        (
            "&str",
            allocations_of_local_hits(
                || assert_eq!(by_str(&name), name.len()),
                || by_str::cache_info().local_hits,
            ),
        ),
        (
            "long &str",
            allocations_of_local_hits(
                || assert_eq!(by_str(&long), 300),
                || by_str::cache_info().local_hits,
            ),
        ),
        (
            "&[u32]",
            allocations_of_local_hits(
                || assert_eq!(by_slice(&values), 6),
                || by_slice::cache_info().local_hits,
            ),
        ),
        (
            "&T",
            allocations_of_local_hits(
                || assert_eq!(by_ref(&point), 3),
                || by_ref::cache_info().local_hits,
            ),
        ),
        (
            "async u64",
            allocations_of_local_hits(
                || assert_eq!(ready(by_u64_async(7)), 7),
                || by_u64_async::cache_info().local_hits,
            ),
        ),
    ];
    for (what, allocations) in counts {
        assert_eq!(allocations, 0, "allocations in 1,000 local hits, {what}");
    }
}
