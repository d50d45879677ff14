//! Helpers shared by the benchmark harnesses (included with `#[path]`; not every harness uses
//! every helper).
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
    let barrier = Arc::new(Barrier::new(threads + 1));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut key = t as u64 * 97;
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
