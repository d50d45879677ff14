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
//! remote_peer <redis-url> near-invalidate       # per stdin line `tag <k>`: invalidates tag
//!                                               # `near-delay:<k>` (prefix `near-shared`), then
//!                                               # prints `done <unix-ns>`
//! remote_peer <redis-url> near-writer <origin-dir> <seed> <millis>
//!                                               # the writer of tests/tests/near.rs's soak: bumps
//!                                               # versions in <origin-dir>, invalidates or writes
//!                                               # through `near_value`, reads it back, and prints
//!                                               # `required <k> <v> <unix-ns>` once each
//!                                               # invalidation has reached the store, then
//!                                               # `done calls=<n> violations=<n>`
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

/// The near-cache delay function: the test's `near_delay` is the same one.
#[cached(backend = "redis", name = "near-delay", tags = ["near-delay:{k}"], local = "1h")]
fn near_delay(k: u64) -> u64 {
    k
}

/// Keys and tag groups of the near-cache soak (the test's `near_value` is the same function).
const NEAR_KEYS: u64 = 16;
const NEAR_GROUPS: u64 = 4;

/// A version of key `k` from the soak's origin (a directory of one file per key).
fn origin_version(dir: &str, k: u64) -> u64 {
    std::fs::read_to_string(format!("{dir}/{k}"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

fn bump_origin(dir: &str, k: u64) -> u64 {
    let version = origin_version(dir, k) + 1;
    let temporary = format!("{dir}/{k}.{}.tmp", std::process::id());
    if std::fs::write(&temporary, version.to_string()).is_ok() {
        let _ = std::fs::rename(&temporary, format!("{dir}/{k}"));
    }
    version
}

static ORIGIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The near-cache soak's function: the origin's version of `k` when its computation starts.
#[cached(backend = "redis", name = "near-soak", tags = ["near-item:{k}", "near-group:{g}"], local = "1h", ttl = "1h")]
fn near_value(k: u64, g: u64) -> u64 {
    let version = ORIGIN.get().map_or(0, |dir| origin_version(dir, k));
    let _ = g;
    version
}

fn unix_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

/// The soak's writer (see the module docs).
fn near_writer(dir: &str, seed: u64, millis: u64) {
    let mut state = seed | 1;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    let mut required = [0_u64; NEAR_KEYS as usize];
    // Versions whose invalidation was queued: published once the queue is empty.
    let mut queued: Vec<(u64, u64)> = Vec::new();
    let (mut calls, mut violations) = (0_u64, 0_u64);
    let deadline = std::time::Instant::now() + Duration::from_millis(millis);
    let publish = |k: u64, v: u64| {
        println!("required {k} {v} {}", unix_ns());
        let _ = std::io::Write::flush(&mut std::io::stdout());
    };
    while std::time::Instant::now() < deadline {
        let k = next(NEAR_KEYS);
        let g = k % NEAR_GROUPS;
        let (bumped, outcome): (Vec<(u64, u64)>, cachemere::Invalidation) = match next(5) {
            0 => {
                let v = bump_origin(dir, k);
                (vec![(k, v)], near_value::invalidate(k, g))
            }
            1 => {
                let v = bump_origin(dir, k);
                (
                    vec![(k, v)],
                    cachemere::invalidate_tag(&format!("near-item:{k}")),
                )
            }
            2 => {
                let bumped = (0..NEAR_KEYS)
                    .filter(|key| key % NEAR_GROUPS == g)
                    .map(|key| (key, bump_origin(dir, key)))
                    .collect();
                (
                    bumped,
                    cachemere::invalidate_tag(&format!("near-group:{g}")),
                )
            }
            3 => {
                let bumped = (0..NEAR_KEYS)
                    .map(|key| (key, bump_origin(dir, key)))
                    .collect();
                (bumped, near_value::cache_clear())
            }
            _ => {
                let v = bump_origin(dir, k);
                let outcome = match near_value::set(k, g, v) {
                    cachemere::SetOutcome::Stored => cachemere::Invalidation::Applied,
                    cachemere::SetOutcome::NotStored(outcome) => outcome,
                    _ => cachemere::Invalidation::Queued,
                };
                (vec![(k, v)], outcome)
            }
        };
        for &(key, version) in &bumped {
            required[key as usize] = required[key as usize].max(version);
        }
        if outcome == cachemere::Invalidation::Queued {
            queued.extend(bumped);
        } else {
            for (key, version) in bumped {
                publish(key, version);
            }
        }
        if !queued.is_empty() && cachemere::remote::flush_pending(Duration::ZERO) == 0 {
            for (key, version) in queued.drain(..) {
                publish(key, version);
            }
        }
        // Reads in this process too (its own near cache): exact here, with no delay.
        for _ in 0..4 {
            let key = next(NEAR_KEYS);
            let least = required[key as usize];
            calls += 1;
            if near_value(key, key % NEAR_GROUPS) < least {
                violations += 1;
            }
        }
        std::thread::sleep(Duration::from_micros(500 + next(3_000)));
    }
    let left = cachemere::remote::flush_pending(Duration::from_secs(30));
    for (key, version) in queued.drain(..) {
        if left == 0 {
            publish(key, version);
        }
    }
    println!("done calls={calls} violations={violations} left={left}");
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
        ("near-invalidate", None) => {
            RedisConfig::new(url)
                .prefix("near-shared")
                .timeout(Duration::from_secs(2))
                .install()
                .map_err(|error| error.to_string())?;
            // The function is used once so that its cache knows the remote (as in the test).
            let _ = near_delay(u64::MAX);
            for line in std::io::stdin().lines() {
                let line = line.map_err(|error| error.to_string())?;
                if let Some(k) = line.strip_prefix("tag ") {
                    let outcome = cachemere::invalidate_tag(&format!("near-delay:{k}"));
                    println!("done {} {outcome}", unix_ns());
                    let _ = std::io::Write::flush(&mut std::io::stdout());
                }
            }
            Ok(())
        }
        ("near-writer", Some(dir)) => {
            RedisConfig::new(url)
                .prefix("near-shared")
                .timeout(Duration::from_millis(200))
                .circuit_breaker(3, Duration::from_millis(200))
                .install()
                .map_err(|error| error.to_string())?;
            let number = |at: usize| -> Result<u64, String> {
                args.get(at)
                    .and_then(|arg| arg.parse().ok())
                    .ok_or_else(|| usage().to_owned())
            };
            let (seed, millis) = (number(4)?, number(5)?);
            let _ = ORIGIN.set(dir.clone());
            near_writer(dir, seed, millis);
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
