//! Heap allocations per hit, by argument kind, for cachemere and the `cached` crate, counted by
//! a counting global allocator (this binary only).
//!
//! `cargo bench -p cachemere-benches --bench allocations`

#[path = "common.rs"]
mod common;

use common::{
    cd_async, cd_string, cd_u64, cd_vec, cm_async, cm_slice, cm_str, cm_string, cm_ttl_tag, cm_u64,
    ready,
};

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const HITS: u64 = 10_000;

/// Allocations per call of `hit`, after a first call that may be the miss.
fn per_hit<T>(hit: impl Fn() -> T) -> f64 {
    black_box(hit());
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..HITS {
        black_box(hit());
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / HITS as f64
}

fn main() {
    let name = "ada lovelace";
    let values = [1_u32, 2, 3];
    // (argument kind, cachemere, cached). Where cached cannot take the borrowed form, the
    // caller builds the owned argument, and that allocation is counted: it is what a user pays.
    let rows = [
        (
            "u64",
            per_hit(|| cm_u64(black_box(7))),
            per_hit(|| cd_u64(black_box(7))),
        ),
        (
            "&str (cached: String built by the caller)",
            per_hit(|| cm_str(black_box(name))),
            per_hit(|| cd_string(black_box(name).to_owned())),
        ),
        (
            "String built by the caller",
            per_hit(|| cm_string(black_box(name).to_owned())),
            per_hit(|| cd_string(black_box(name).to_owned())),
        ),
        (
            "&[u32] (cached: Vec built by the caller)",
            per_hit(|| cm_slice(black_box(&values))),
            per_hit(|| cd_vec(black_box(&values).to_vec())),
        ),
        (
            "u64 with ttl and a tag",
            per_hit(|| cm_ttl_tag(black_box(7))),
            f64::NAN,
        ),
        (
            "async u64",
            per_hit(|| ready(cm_async(black_box(7)))),
            per_hit(|| ready(cd_async(black_box(7)))),
        ),
    ];
    println!("| allocations per hit | cachemere | cached |");
    println!("|---|---|---|");
    for (kind, ours, theirs) in rows {
        let theirs = if theirs.is_nan() {
            "-".to_owned()
        } else {
            format!("{theirs:.2}")
        };
        println!("| {kind} | {ours:.2} | {theirs} |");
    }
}
