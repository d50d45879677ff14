//! Hits from 1 and 2 threads (threads at different offsets of 1,024 keys; then every thread on
//! the same keys in the same order, and on one hot key, beside a read-only map as the floor and
//! quick_cache, moka, papaya and scc), and a stampede of 100 callers on one cold key, for
//! cachemere and its peers, in one run. Prints markdown tables.
//!
//! `cargo bench -p cachemere-benches --bench contention`

#[path = "common.rs"]
mod common;

use common::{aggregate_ns_per_call, aggregate_ns_per_call_from, cd_u64, cm_u64, median};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// A hit function under test, by name.
type Subject = (&'static str, fn(u64) -> u64);

const OPS_PER_THREAD: u64 = 2_000_000;
const KEYS: u64 = 1024;
const ROUNDS: usize = 5;

static RAW: std::sync::LazyLock<quick_cache::sync::Cache<u64, u64>> =
    std::sync::LazyLock::new(|| quick_cache::sync::Cache::new(10_000));

fn raw_get(key: u64) -> u64 {
    RAW.get(&key).unwrap_or_default()
}

fn throughput() {
    for key in 0..KEYS {
        cm_u64(key);
        cd_u64(key);
        RAW.insert(key, key * 2);
    }
    println!("| hits, aggregate ns per op | 1 thread | 2 threads | 2-thread / 1-thread |");
    println!("|---|---|---|---|");
    let subjects: [Subject; 3] = [
        ("cachemere", cm_u64),
        ("cached", cd_u64),
        ("quick_cache raw get", raw_get),
    ];
    for hot in [true, false] {
        for (name, hit) in subjects {
            let one = median(
                (0..ROUNDS)
                    .map(|_| aggregate_ns_per_call(1, OPS_PER_THREAD, hot, hit))
                    .collect(),
            );
            let two = median(
                (0..ROUNDS)
                    .map(|_| aggregate_ns_per_call(2, OPS_PER_THREAD, hot, hit))
                    .collect(),
            );
            let keys = if hot { "one hot key" } else { "1024 keys" };
            println!(
                "| {name}, {keys} | {one:.1} | {two:.1} | {:.2}× |",
                two / one
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The hot-key scenario: every thread reads the same keys in the same order (or one hot key),
// beside a read-only map (the floor: no write at all on a read) and other concurrent stores.

static FLOOR: std::sync::LazyLock<
    std::collections::HashMap<u64, u64, foldhash::fast::RandomState>,
> = std::sync::LazyLock::new(|| (0..KEYS).map(|key| (key, key * 2)).collect());

fn floor_get(key: u64) -> u64 {
    FLOOR.get(&key).copied().unwrap_or_default()
}

static MOKA_HOT: std::sync::LazyLock<moka::sync::Cache<u64, u64>> =
    std::sync::LazyLock::new(|| moka::sync::Cache::new(10_000));

fn moka_get(key: u64) -> u64 {
    MOKA_HOT.get(&key).unwrap_or_default()
}

static PAPAYA: std::sync::LazyLock<papaya::HashMap<u64, u64>> =
    std::sync::LazyLock::new(papaya::HashMap::new);

fn papaya_get(key: u64) -> u64 {
    PAPAYA.pin().get(&key).copied().unwrap_or_default()
}

static SCC: std::sync::LazyLock<scc::HashIndex<u64, u64>> =
    std::sync::LazyLock::new(scc::HashIndex::default);

fn scc_get(key: u64) -> u64 {
    SCC.peek_with(&key, |_, value| *value).unwrap_or_default()
}

fn same_order() {
    for key in 0..KEYS {
        cm_u64(key);
        cd_u64(key);
        RAW.insert(key, key * 2);
        MOKA_HOT.insert(key, key * 2);
        PAPAYA.pin().insert(key, key * 2);
        let _ = SCC.insert_sync(key, key * 2);
    }
    let subjects: [Subject; 7] = [
        ("read-only foldhash map (floor)", floor_get),
        ("cachemere", cm_u64),
        ("cached", cd_u64),
        ("quick_cache raw get", raw_get),
        ("moka get", moka_get),
        ("papaya get", papaya_get),
        ("scc HashIndex peek", scc_get),
    ];
    println!(
        "| same keys, same order on every thread: aggregate ns per op, median of {ROUNDS} interleaved rounds | 1 thread | 2 threads | 2-thread / 1-thread | target (floor + 0.15) |"
    );
    println!("|---|---|---|---|---|");
    for hot in [false, true] {
        // Each round times every subject with 1 then 2 threads, back to back.
        let mut times = vec![(Vec::new(), Vec::new()); subjects.len()];
        for _ in 0..ROUNDS {
            for ((_, hit), (one, two)) in subjects.iter().zip(&mut times) {
                one.push(aggregate_ns_per_call_from(1, OPS_PER_THREAD, hot, *hit, 0));
                two.push(aggregate_ns_per_call_from(2, OPS_PER_THREAD, hot, *hit, 0));
            }
        }
        let ratios: Vec<(f64, f64)> = times
            .into_iter()
            .map(|(one, two)| (median(one), median(two)))
            .collect();
        let floor = ratios[0].1 / ratios[0].0;
        let keys = if hot { "one hot key" } else { "1024 keys" };
        for ((name, _), (one, two)) in subjects.iter().zip(ratios) {
            let target = if *name == "cachemere" {
                format!("≤ {:.2}×", floor + 0.15)
            } else {
                "-".to_owned()
            };
            println!(
                "| {name}, {keys} | {one:.1} | {two:.1} | {:.2}× | {target} |",
                two / one
            );
        }
    }
}

const CALLERS: usize = 100;
const ORIGIN_TIME: Duration = Duration::from_millis(20);

static CM_ORIGIN: AtomicUsize = AtomicUsize::new(0);
static CD_ORIGIN: AtomicUsize = AtomicUsize::new(0);
static CD_BY_KEY_ORIGIN: AtomicUsize = AtomicUsize::new(0);
static MOKA_ORIGIN: AtomicUsize = AtomicUsize::new(0);

#[cachemere::cached(maxsize = 10_000)]
fn cm_cold(key: u64) -> u64 {
    CM_ORIGIN.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(ORIGIN_TIME);
    key
}

#[cached::proc_macro::cached(max_size = 10_000)]
fn cd_cold(key: u64) -> u64 {
    CD_ORIGIN.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(ORIGIN_TIME);
    key
}

#[cached::proc_macro::cached(max_size = 10_000, sync_writes = "by_key")]
fn cd_by_key_cold(key: u64) -> u64 {
    CD_BY_KEY_ORIGIN.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(ORIGIN_TIME);
    key
}

static MOKA: std::sync::LazyLock<moka::sync::Cache<u64, u64>> =
    std::sync::LazyLock::new(|| moka::sync::Cache::new(10_000));

fn moka_cold(key: u64) -> u64 {
    MOKA.get_with(key, || {
        MOKA_ORIGIN.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(ORIGIN_TIME);
        key
    })
}

/// Origin calls and wall time for `CALLERS` threads calling one cold key at once.
fn stampede_round(call: fn(u64) -> u64, origin: &AtomicUsize, key: u64) -> (usize, Duration) {
    let before = origin.load(Ordering::SeqCst);
    let barrier = Arc::new(Barrier::new(CALLERS + 1));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                assert_eq!(call(key), key);
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for caller in callers {
        caller.join().expect("caller");
    }
    (origin.load(Ordering::SeqCst) - before, started.elapsed())
}

fn stampede() {
    println!(
        "| stampede: {CALLERS} callers, one cold key, origin takes {ORIGIN_TIME:?} | origin calls (per round) | wall time (median of {ROUNDS}) |"
    );
    println!("|---|---|---|");
    let subjects: [(Subject, &AtomicUsize); 4] = [
        (("cachemere (default single flight)", cm_cold), &CM_ORIGIN),
        (("cached, default", cd_cold), &CD_ORIGIN),
        (
            ("cached, sync_writes = \"by_key\"", cd_by_key_cold),
            &CD_BY_KEY_ORIGIN,
        ),
        (("moka get_with", moka_cold), &MOKA_ORIGIN),
    ];
    for ((name, call), origin) in subjects {
        let mut calls = Vec::new();
        let mut walls = Vec::new();
        for round in 0..ROUNDS {
            let (c, wall) = stampede_round(call, origin, 1_000 + round as u64);
            calls.push(c.to_string());
            walls.push(wall.as_secs_f64() * 1000.0);
        }
        println!(
            "| {name} | {} | {:.1} ms |",
            calls.join(", "),
            median(walls)
        );
    }
}

fn main() {
    // `cargo bench` passes `--bench`; this harness takes no options.
    throughput();
    println!();
    same_order();
    println!();
    stampede();
}
