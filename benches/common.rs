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
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut key = (t as u64 * stride) % 1024;
                for _ in 0..calls {
                    key = if hot { 7 } else { (key + 1) % 1024 };
                    black_box(hit(black_box(key)));
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for worker in workers {
        worker.join().expect("worker");
    }
    started.elapsed().as_nanos() as f64 / (threads as u64 * calls) as f64
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
