//! Helpers and cached functions shared by the benchmark harnesses (included with `#[path]`;
//! not every harness uses every item). `cm_*` are cachemere's, `cd_*` the `cached` crate's:
//! the same trivial bodies, so a hit measures only the cache.
#![allow(dead_code)]

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The middle value.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Polls a future that is ready at once (a hit): no runtime in the measurement.
pub fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => value,
        Poll::Pending => unreachable!("a hit is ready at once"),
    }
}

/// Wall-clock nanoseconds per call, all threads together: `threads` threads each make `calls`
/// calls of `hit`, on key 7 (`hot`) or cycling through 1024 keys.
pub fn aggregate_ns_per_call(threads: usize, calls: u64, hot: bool, hit: fn(u64) -> u64) -> f64 {
    aggregate_ns_per_call_from(threads, calls, hot, hit, 97)
}

/// [`aggregate_ns_per_call`] with thread `t` starting at key `t * stride` (0: every thread reads
/// the same keys in the same order).
pub fn aggregate_ns_per_call_from(
    threads: usize,
    calls: u64,
    hot: bool,
    hit: fn(u64) -> u64,
    stride: u64,
) -> f64 {
    // A measurement counts only if the threads ran side by side for most of it: on a shared
    // machine one worker can run alone for a while, which measures no contention at all.
    let mut last = 0.0;
    for _ in 0..ATTEMPTS {
        let (ns_per_call, overlap) = timed_round(threads, calls, hot, hit, stride);
        if overlap >= MIN_OVERLAP {
            return ns_per_call;
        }
        last = ns_per_call;
    }
    last
}

/// Tries per measurement before one whose threads did not overlap enough is taken anyway.
const ATTEMPTS: usize = 20;
/// The share of a measurement during which every thread must have been running.
const MIN_OVERLAP: f64 = 0.9;

/// One timed round: aggregate nanoseconds per call, and the share of the round during which
/// every thread was running (1 with one thread).
fn timed_round(
    threads: usize,
    calls: u64,
    hot: bool,
    hit: fn(u64) -> u64,
    stride: u64,
) -> (f64, f64) {
    let barrier = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                // Timed by the workers themselves: a main thread timing them could be
                // descheduled (2 workers on 2 cores) until they had finished.
                let started = Instant::now();
                let mut key = (t as u64 * stride) % 1024;
                for _ in 0..calls {
                    key = if hot { 7 } else { (key + 1) % 1024 };
                    black_box(hit(black_box(key)));
                }
                (started, Instant::now())
            })
        })
        .collect();
    let spans: Vec<(Instant, Instant)> = workers
        .into_iter()
        .map(|worker| worker.join().expect("worker"))
        .collect();
    let first_start = spans.iter().map(|span| span.0).min().expect("a worker");
    let last_start = spans.iter().map(|span| span.0).max().expect("a worker");
    let first_end = spans.iter().map(|span| span.1).min().expect("a worker");
    let last_end = spans.iter().map(|span| span.1).max().expect("a worker");
    let whole = (last_end - first_start).as_secs_f64();
    let together = first_end
        .saturating_duration_since(last_start)
        .as_secs_f64();
    let overlap = if whole > 0.0 { together / whole } else { 1.0 };
    (
        (last_end - first_start).as_nanos() as f64 / (threads as u64 * calls) as f64,
        overlap,
    )
}

#[cachemere::cached(maxsize = 10_000)]
pub fn cm_u64(key: u64) -> u64 {
    key * 2
}

#[cached::proc_macro::cached(max_size = 10_000)]
pub fn cd_u64(key: u64) -> u64 {
    key * 2
}

#[cachemere::cached(maxsize = 10_000)]
pub fn cm_str(key: &str) -> usize {
    key.len()
}

#[cachemere::cached(maxsize = 10_000)]
pub fn cm_string(key: String) -> usize {
    key.len()
}

#[cached::proc_macro::cached(max_size = 10_000)]
pub fn cd_string(key: String) -> usize {
    key.len()
}

#[cachemere::cached(maxsize = 10_000)]
pub fn cm_slice(key: &[u32]) -> u32 {
    key.iter().sum()
}

#[cached::proc_macro::cached(max_size = 10_000)]
pub fn cd_vec(key: Vec<u32>) -> u32 {
    key.iter().sum()
}

#[cachemere::cached(maxsize = 10_000, ttl = 300, tags = ["user:{key}"])]
pub fn cm_ttl_tag(key: u64) -> u64 {
    key * 2
}

#[cachemere::cached(maxsize = 10_000)]
pub async fn cm_async(key: u64) -> u64 {
    key * 2
}

#[cached::proc_macro::cached(max_size = 10_000)]
pub async fn cd_async(key: u64) -> u64 {
    key * 2
}
