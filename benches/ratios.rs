//! Ratios measured in interleaved rounds: each round times cachemere and its peer back to back,
//! so that the machine's noise falls on both sides of each ratio; the median ratio is reported.
//! This is the table BENCHMARKS.md leads with.
//!
//! `cargo bench -p cachemere-benches --bench ratios`

#[path = "common.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use common::{
    aggregate_ns_per_call, cd_async, cd_string, cd_u64, cm_async, cm_str, cm_ttl_tag, cm_u64,
    median, ready,
};

/// A labelled pair of calls to compare, and the target for their ratio.
type Pair<'a> = (&'a str, &'a dyn Fn(), &'a dyn Fn(), &'a str);
/// A hit function under test, by name.
type Subject = (&'static str, fn(u64) -> u64);

const ROUNDS: usize = 31;
const CALLS: u32 = 200_000;

fn nanos_per_call(f: &dyn Fn()) -> f64 {
    let started = Instant::now();
    for _ in 0..CALLS {
        f();
    }
    started.elapsed().as_nanos() as f64 / f64::from(CALLS)
}

/// Median over interleaved rounds of (ours, theirs, ours / theirs).
fn paired(ours: &dyn Fn(), theirs: &dyn Fn()) -> (f64, f64, f64) {
    ours();
    theirs();
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let x = nanos_per_call(ours);
        let y = nanos_per_call(theirs);
        a.push(x);
        b.push(y);
        r.push(x / y);
    }
    (median(a), median(b), median(r))
}

fn main() {
    let name = "ada lovelace";
    println!(
        "| interleaved, median of {ROUNDS} rounds | cachemere (ns) | peer (ns) | ratio | target |"
    );
    println!("|---|---|---|---|---|");
    // Targets of the issue "performance".
    let rows: [Pair<'_>; 5] = [
        (
            "sync hit, u64 (vs cached)",
            &|| {
                black_box(cm_u64(black_box(7)));
            },
            &|| {
                black_box(cd_u64(black_box(7)));
            },
            "≤ 0.6×",
        ),
        (
            "sync hit, &str (vs cached's String argument)",
            &|| {
                black_box(cm_str(black_box(name)));
            },
            &|| {
                black_box(cd_string(black_box(name).to_owned()));
            },
            "≤ 0.3×",
        ),
        (
            "async hit, u64 (vs cached async)",
            &|| {
                black_box(ready(cm_async(black_box(7))));
            },
            &|| {
                black_box(ready(cd_async(black_box(7))));
            },
            "≤ 0.15×",
        ),
        (
            "sync hit, u64 with ttl and a tag (vs cachemere's plain u64 hit)",
            &|| {
                black_box(cm_ttl_tag(black_box(7)));
            },
            &|| {
                black_box(cm_u64(black_box(7)));
            },
            "≤ 1.2×",
        ),
        (
            "sync hit, u64 with ttl and a tag (vs cached without)",
            &|| {
                black_box(cm_ttl_tag(black_box(7)));
            },
            &|| {
                black_box(cd_u64(black_box(7)));
            },
            "-",
        ),
    ];
    for (label, ours, theirs, target) in rows {
        let (a, b, ratio) = paired(ours, theirs);
        println!("| {label} | {a:.1} | {b:.1} | {ratio:.2}× | {target} |");
    }

    println!();
    println!(
        "| 2 threads vs 1, aggregate per call, interleaved, median of {ROUNDS} | 1 thread (ns) | 2 threads (ns) | ratio | target |"
    );
    println!("|---|---|---|---|---|");
    for key in 0..1024 {
        cm_u64(key);
        cd_u64(key);
    }
    let subjects: [Subject; 2] = [("cachemere", cm_u64), ("cached", cd_u64)];
    for hot in [false, true] {
        for (label, hit) in subjects {
            let (mut one, mut two, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let x = aggregate_ns_per_call(1, u64::from(CALLS), hot, hit);
                let y = aggregate_ns_per_call(2, u64::from(CALLS), hot, hit);
                one.push(x);
                two.push(y);
                ratio.push(y / x);
            }
            let keys = if hot { "one hot key" } else { "1024 keys" };
            println!(
                "| {label}, {keys} | {:.1} | {:.1} | {:.2}× | see `--bench contention` (floor + 0.15) |",
                median(one),
                median(two),
                median(ratio)
            );
        }
    }
}
