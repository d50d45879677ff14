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
//! ```

use std::process::ExitCode;
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
    let usage = || "usage: remote_peer <redis-url> (get <id> | invalidate-tag <tag> | invalidate-tag-and-flush <tag> | unconfigured)";
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
        _ => Err(usage().to_owned()),
    }
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
