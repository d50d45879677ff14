//! The quickstart: a slow lookup, cached in memory. No server needed.
//!
//! Run it with `cargo run -p cachemere-examples --example quickstart`.

use std::time::{Duration, Instant};

use cachemere::cached;

/// A stand-in for a slow database query.
#[cached(ttl = "5m", maxsize = 1000, tags = ["users", "user:{id}"])]
fn user_name(id: u64) -> Option<String> {
    std::thread::sleep(Duration::from_millis(200));
    (id != 0).then(|| format!("user-{id}"))
}

/// The same in async code: concurrent callers of one cold key share one computation.
#[cached(ttl = 60)]
async fn exchange_rate(currency: &str) -> Result<f64, String> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    match currency {
        "EUR" => Ok(1.08),
        "GBP" => Ok(1.27),
        other => Err(format!("unknown currency {other}")),
    }
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    println!("{label:<34} {:>12.3?}", started.elapsed());
    value
}

#[tokio::main]
async fn main() {
    println!("-- a slow function, cold then warm");
    timed("user_name(42)  cold", || user_name(42));
    let name = timed("user_name(42)  warm", || user_name(42));
    println!("{:<34} {name:?}", "value");
    timed("user_name(7)   cold", || user_name(7));
    timed("user_name(0)   None is not cached", || user_name(0));
    timed("user_name(0)   so this runs again", || user_name(0));
    println!("{}", user_name::cache_info());

    println!("\n-- tag invalidation");
    cachemere::invalidate_tag("user:42");
    timed("user_name(42)  after invalidate_tag", || user_name(42));
    timed("user_name(7)   other tags untouched", || user_name(7));
    cachemere::invalidate_tag("users");
    timed("user_name(7)   after invalidate_tag(users)", || {
        user_name(7)
    });
    println!("{}", user_name::cache_info());

    println!("\n-- per-key invalidation");
    println!("user_name::invalidate(42) = {}", user_name::invalidate(42));
    println!("user_name::invalidate(42) = {}", user_name::invalidate(42));

    println!("\n-- async, 10 concurrent callers of one cold key");
    let started = Instant::now();
    let callers: Vec<_> = (0..10)
        .map(|_| tokio::spawn(exchange_rate("EUR")))
        .collect();
    for caller in callers {
        assert_eq!(caller.await.expect("task"), Ok(1.08));
    }
    println!(
        "{:<34} {:>12.3?}",
        "10 callers, one computation",
        started.elapsed()
    );
    let _ = exchange_rate("XYZ").await;
    println!("{}", exchange_rate::cache_info());

    println!("\n-- every cache of the process");
    for report in cachemere::caches() {
        println!("{:<40} {}", report.name, report.info);
    }
}
