//! A second OS process for `tests/tests/redis_faults.rs`: it defines the same Redis-backed
//! function as the test (`name = "faults-shared"`, prefix `faults-shared`, tag
//! `shared-item:{id}`) and prints machine-readable `key=value` lines.
//!
//! ```text
//! remote_peer <redis-url> get <id>              # one call: value=.. hits=.. misses=.. errors=.. pid=..
//! remote_peer <redis-url> invalidate-tag <tag>  # cachemere::invalidate_tag(tag): invalidated=<tag> outcome=..
//! remote_peer <redis-url> invalidate-tag-and-flush <tag>
//!                                               # the same with a 100 ms timeout, then waits (up to
//!                                               # 30 s) for pending invalidations: ... left=<n>
//! remote_peer - unconfigured                    # nothing installed: the default remote comes from
//!                                               # CACHEMERE_REDIS_URL (set by the test); three calls
//! remote_peer <redis-url> lock-stampede <id> <start-unix-ms> <callers>
//!                                               # `callers` threads call a `lock = true` function
//!                                               # (300 ms to compute) at the given instant:
//!                                               # runs=<computations here> values=<distinct values>
//! remote_peer <redis-url> lock-hold <id>        # calls it with a computation that prints
//!                                               # `computing pid=..` and then sleeps for a minute
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cachemere::cached;
use cachemere::redis::RedisConfig;

/// The same function as the test's: the value names the process that computed it.
#[cached(backend = "redis", name = "faults-shared", tags = ["shared-item:{id}"])]
fn shared_value(id: u64) -> String {
    format!("{id}@{}", std::process::id())
}

/// A Redis-backed function for the `unconfigured` command (uses the default remote).
#[cached(backend = "redis", name = "faults-unconfigured")]
fn unconfigured_value(x: u64) -> u64 {
    x * 3
}

/// How long `locked_value` computes, in milliseconds (set by the command).
static COMPUTE_MS: AtomicU64 = AtomicU64::new(300);
/// How many times `locked_value` ran in this process.
static LOCKED_RUNS: AtomicU64 = AtomicU64::new(0);

/// Single flight across processes: the test's `lock_across_processes` defines the same one.
#[cached(backend = "redis", name = "lock-shared", lock = true)]
fn locked_value(id: u64) -> String {
    LOCKED_RUNS.fetch_add(1, Ordering::SeqCst);
    println!("computing pid={}", std::process::id());
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::thread::sleep(Duration::from_millis(COMPUTE_MS.load(Ordering::SeqCst)));
    format!("{id}@{}", std::process::id())
}

fn install(url: &str) -> Result<(), String> {
    install_with(url, Duration::from_secs(2))
}

fn install_with(url: &str, timeout: Duration) -> Result<(), String> {
    RedisConfig::new(url)
        .prefix("faults-shared")
        .timeout(timeout)
        .install()
        .map(drop)
        .map_err(|error| error.to_string())
}

fn run(args: &[String]) -> Result<(), String> {
    let usage = || "usage: remote_peer <redis-url> (get <id> | invalidate-tag <tag> | invalidate-tag-and-flush <tag> | unconfigured | lock-stampede <id> <start-unix-ms> <callers> | lock-hold <id>)";
    let (Some(url), Some(command)) = (args.get(1), args.get(2)) else {
        return Err(usage().to_owned());
    };
    match (command.as_str(), args.get(3)) {
        ("get", Some(id)) => {
            install(url)?;
            let id: u64 = id.parse().map_err(|_| format!("not an id: {id}"))?;
            let value = shared_value(id);
            let info = shared_value::cache_info();
            println!(
                "value={value} hits={} misses={} errors={} pid={}",
                info.hits,
                info.misses,
                info.errors,
                std::process::id()
            );
            Ok(())
        }
        ("invalidate-tag", Some(tag)) => {
            install(url)?;
            let outcome = cachemere::invalidate_tag(tag);
            println!("invalidated={tag} outcome={outcome}");
            Ok(())
        }
        ("invalidate-tag-and-flush", Some(tag)) => {
            install_with(url, Duration::from_millis(100))?;
            let outcome = cachemere::invalidate_tag(tag);
            let left = cachemere::remote::flush_pending(Duration::from_secs(30));
            println!("invalidated={tag} outcome={outcome} left={left}");
            Ok(())
        }
        ("unconfigured", None) => {
            for x in 1..=3 {
                println!("value={}", unconfigured_value(x));
            }
            let info = unconfigured_value::cache_info();
            println!(
                "hits={} misses={} errors={}",
                info.hits, info.misses, info.errors
            );
            Ok(())
        }
        ("lock-stampede", Some(id)) => {
            install(url)?;
            let id: u64 = id.parse().map_err(|_| format!("not an id: {id}"))?;
            let number = |at: usize| -> Result<u64, String> {
                args.get(at)
                    .and_then(|arg| arg.parse().ok())
                    .ok_or_else(|| usage().to_owned())
            };
            let (start, callers) = (number(4)?, number(5)?);
            let wait = start.saturating_sub(unix_ms());
            std::thread::sleep(Duration::from_millis(wait));
            let values: Vec<String> = std::thread::scope(|scope| {
                let calls: Vec<_> = (0..callers)
                    .map(|_| scope.spawn(move || locked_value(id)))
                    .collect();
                calls
                    .into_iter()
                    .map(|call| call.join().unwrap_or_else(|_| "panicked".into()))
                    .collect()
            });
            let mut distinct = values.clone();
            distinct.sort();
            distinct.dedup();
            println!(
                "runs={} values={} calls={}",
                LOCKED_RUNS.load(Ordering::SeqCst),
                distinct.join(","),
                values.len()
            );
            Ok(())
        }
        ("lock-hold", Some(id)) => {
            install(url)?;
            let id: u64 = id.parse().map_err(|_| format!("not an id: {id}"))?;
            COMPUTE_MS.store(60_000, Ordering::SeqCst);
            println!("value={}", locked_value(id));
            Ok(())
        }
        _ => Err(usage().to_owned()),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}
