//! The calls `scripts/instructions.sh` counts instructions of (callgrind): `u64`, `async` (a
//! hit of an `async fn`, polled once), `str`,
//! `tagged` (TTL and one tag) hits, `miss` (each call a new key, populated), and `stale` (a hit
//! on a stale entry while its refresh is throttled: what every stale hit costs but the one
//! that starts the refresh).

use std::hint::black_box;

use cachemere::cached;

#[cached]
fn by_u64(k: u64) -> u64 {
    k
}

#[cached]
fn by_str(s: &str) -> usize {
    s.len()
}

#[cached]
async fn by_u64_async(k: u64) -> u64 {
    k
}

/// Polls a future once (a hit is ready at once).
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("a hit is ready at once"),
    }
}

#[cached(ttl = 300, tags = ["user:{id}"])]
fn tagged(id: u64) -> u64 {
    id
}

#[cached(maxsize = 100_000_000)]
fn fresh(k: u64) -> u64 {
    k
}

static REFRESHES_FAIL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

#[cached(ttl = "1ms", stale_while_revalidate = "1h", stale_if_error = "1h", retry_after = "1h", tags = ["user:{id}"], maxsize = 100_000_000)]
fn stale(id: u64) -> Result<u64, ()> {
    if REFRESHES_FAIL.load(std::sync::atomic::Ordering::Relaxed) {
        Err(())
    } else {
        Ok(id)
    }
}

/// Waits until `stale`'s refreshes have all ended (they run on refresh threads).
fn refreshes_settled() {
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let info = stale::cache_info();
        let ended = info.refreshes_succeeded + info.refreshes_failed;
        if ended == info.refreshes_started && ended == last {
            return;
        }
        last = ended;
    }
}

fn main() {
    let mode = std::env::args().nth(1).unwrap();
    let n: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
    match mode.as_str() {
        "u64" => {
            by_u64(1);
            for _ in 0..n {
                black_box(by_u64(black_box(1)));
            }
        }
        "async" => {
            ready(by_u64_async(1));
            for _ in 0..n {
                black_box(ready(by_u64_async(black_box(1))));
            }
        }
        "str" => {
            by_str("ada lovelace");
            for _ in 0..n {
                black_box(by_str(black_box("ada lovelace")));
            }
        }
        "tagged" => {
            tagged(1);
            for _ in 0..n {
                black_box(tagged(black_box(1)));
            }
        }
        "miss" => {
            fresh(u64::MAX);
            for i in 0..n {
                black_box(fresh(black_box(i)));
            }
        }
        "stale" => {
            let _ = stale(1);
            std::thread::sleep(std::time::Duration::from_millis(20));
            REFRESHES_FAIL.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = stale(1); // starts the refresh, which fails: throttled from now on
            refreshes_settled();
            for _ in 0..n {
                let _ = black_box(stale(black_box(1)));
            }
        }
        _ => panic!("mode"),
    }
}
