//! The near cache (`local = ..`) beside the memory backend and a plain Redis hit, in
//! interleaved rounds, against a `redis-server` this harness starts on a free loopback port.
//!
//! Each round times the sides back to back (the same keys, the same order); the table gives
//! the median of 31 rounds and the ratio of the medians. Async sides are polled without a
//! runtime where the hit is ready at once (a local hit is), as in `ratios.rs`.
//!
//! `cargo bench -p cachemere-benches --bench near`

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere_tests::redis_harness::RedisServer;

#[path = "common.rs"]
mod common;

use common::{median, ready};

const ROUNDS: usize = 31;
/// Calls per side per round for in-process hits.
const CALLS: u64 = 200_000;
/// Calls per side per round for Redis round trips.
const REMOTE_CALLS: u64 = 2_000;
const KEYS: u64 = 1024;

static REMOTE: OnceLock<Remote> = OnceLock::new();

fn remote() -> Remote {
    REMOTE.get().expect("set before the first call").clone()
}

#[cachemere::cached(backend = "redis", remote = remote, ttl = 3600, local = "1h", maxsize = 10_000)]
fn near_u64(x: u64) -> u64 {
    x * 2
}

#[cachemere::cached(backend = "redis", remote = remote, ttl = 3600, local = "1h", maxsize = 10_000, tags = ["near:{x}"])]
fn near_tagged(x: u64) -> u64 {
    x * 2
}

#[cachemere::cached(backend = "redis", remote = remote, ttl = 3600, local = "1h", maxsize = 10_000)]
async fn near_async(x: u64) -> u64 {
    x * 2
}

#[cachemere::cached(backend = "redis", remote = remote, ttl = 3600)]
fn redis_u64(x: u64) -> u64 {
    x * 2
}

#[cachemere::cached(maxsize = 10_000, ttl = 3600)]
fn memory_u64(x: u64) -> u64 {
    x * 2
}

#[cachemere::cached(maxsize = 10_000, ttl = 3600, tags = ["memory:{x}"])]
fn memory_tagged(x: u64) -> u64 {
    x * 2
}

#[cachemere::cached(maxsize = 10_000, ttl = 3600)]
async fn memory_async(x: u64) -> u64 {
    x * 2
}

/// Nanoseconds per call of `calls` calls cycling through the keys.
fn per_call(calls: u64, hit: &dyn Fn(u64) -> u64) -> f64 {
    let started = Instant::now();
    let mut key = 0;
    for _ in 0..calls {
        key = (key + 1) % KEYS;
        black_box(hit(black_box(key)));
    }
    started.elapsed().as_nanos() as f64 / calls as f64
}

fn row(
    label: &str,
    target: &str,
    calls: u64,
    ours: &dyn Fn(u64) -> u64,
    theirs: &dyn Fn(u64) -> u64,
) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        a.push(per_call(calls, ours));
        b.push(per_call(calls, theirs));
    }
    let (a, b) = (median(a), median(b));
    println!("| {label} | {a:.1} | {b:.1} | {:.2}× | {target} |", a / b);
}

fn main() {
    let server = RedisServer::start().unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(server.port(), 6379, "never the shared system Redis");
    REMOTE
        .set(
            RedisConfig::new(server.url())
                .prefix("bench-near")
                .timeout(Duration::from_secs(2))
                .build()
                .expect("a Redis config"),
        )
        .expect("set once");
    // Warm: a miss per key, then reads until every key is copied.
    for _ in 0..4 {
        for x in 0..KEYS {
            black_box(
                near_u64(x) + near_tagged(x) + redis_u64(x) + memory_u64(x) + memory_tagged(x),
            );
            black_box(ready_or_block(x));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(near_u64::cache_info().local_hits > 0, "copies are served");
    let before = near_u64::cache_info();

    println!(
        "| near cache, interleaved, median of {ROUNDS} rounds | cachemere (ns) | peer (ns) | ratio | target |"
    );
    println!("|---|---|---|---|---|");
    row(
        "near hit, u64 (vs memory-backend hit)",
        "≤ 3×",
        CALLS,
        &near_u64,
        &memory_u64,
    );
    row(
        "near hit, u64, one tag (vs memory-backend hit, one tag)",
        "-",
        CALLS,
        &near_tagged,
        &memory_tagged,
    );
    row(
        "async near hit, u64 (vs async memory-backend hit)",
        "-",
        CALLS,
        &|x| ready(near_async(x)),
        &|x| ready(memory_async(x)),
    );
    row(
        "Redis hit without `local`, u64 (vs memory-backend hit)",
        "info",
        REMOTE_CALLS,
        &redis_u64,
        &memory_u64,
    );
    let after = near_u64::cache_info();
    println!();
    println!(
        "near_u64 during the rows: {} hits, {} of them local",
        after.hits - before.hits,
        after.local_hits - before.local_hits
    );
}

/// Warms the async near cache (its first reads go to Redis, so they need a runtime).
fn ready_or_block(x: u64) -> u64 {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    });
    runtime.block_on(async { near_async(x).await + memory_async(x).await })
}
