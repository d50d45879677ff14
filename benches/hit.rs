//! Hit-path latency of cachemere beside the `cached` crate and a raw `quick_cache` get, in one
//! run (the machine is shared: compare the ratios, not the absolute figures).
//!
//! `cargo bench -p cachemere-benches --bench hit`

#[path = "common.rs"]
mod common;

use common::{cd_async, cd_string, cd_u64, cm_async, cm_str, cm_string, cm_ttl_tag, cm_u64, ready};

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

fn hits(c: &mut Criterion) {
    let mut group = c.benchmark_group("hit");

    cm_u64(7);
    cd_u64(7);
    group.bench_function("u64/cachemere", |b| b.iter(|| cm_u64(black_box(7))));
    group.bench_function("u64/cached", |b| b.iter(|| cd_u64(black_box(7))));
    let raw: quick_cache::sync::Cache<u64, u64> = quick_cache::sync::Cache::new(1000);
    raw.insert(7, 14);
    group.bench_function("u64/quick_cache_raw_get", |b| {
        b.iter(|| raw.get(black_box(&7)))
    });
    let moka: moka::sync::Cache<u64, u64> = moka::sync::Cache::new(1000);
    moka.insert(7, 14);
    group.bench_function("u64/moka_raw_get", |b| b.iter(|| moka.get(black_box(&7))));
    // The floor: an unsynchronised map with a fast hasher; no bound, no statistics.
    let mut floor: HashMap<u64, u64, foldhash::fast::RandomState> = HashMap::default();
    floor.insert(7, 14);
    group.bench_function("u64/hashmap_foldhash_floor", |b| {
        b.iter(|| floor.get(black_box(&7)).copied())
    });

    cm_ttl_tag(7);
    group.bench_function("u64_ttl_tag/cachemere", |b| {
        b.iter(|| cm_ttl_tag(black_box(7)))
    });

    let name = "ada lovelace";
    cm_str(name);
    cm_string(name.to_owned());
    cd_string(name.to_owned());
    group.bench_function("str/cachemere_&str", |b| b.iter(|| cm_str(black_box(name))));
    group.bench_function("str/cachemere_String", |b| {
        b.iter(|| cm_string(black_box(name).to_owned()))
    });
    group.bench_function("str/cached_String", |b| {
        b.iter(|| cd_string(black_box(name).to_owned()))
    });

    ready(cm_async(7));
    ready(cd_async(7));
    group.bench_function("async/cachemere", |b| {
        b.iter(|| ready(cm_async(black_box(7))))
    });
    group.bench_function("async/cached", |b| b.iter(|| ready(cd_async(black_box(7)))));
    group.finish();
}

#[cachemere::cached(maxsize = 1000)]
fn cachemere_populate(key: u64) -> u64 {
    key * 2
}

#[cached::proc_macro::cached(max_size = 1000)]
fn cached_populate(key: u64) -> u64 {
    key * 2
}

/// A miss: look up, run the (trivial) function, store, and evict once the bound is reached.
fn misses(c: &mut Criterion) {
    let mut group = c.benchmark_group("miss_populate");
    let mut key = 0_u64;
    group.bench_function("u64/cachemere", |b| {
        b.iter(|| {
            key += 1;
            cachemere_populate(black_box(key))
        })
    });
    let mut key = 0_u64;
    group.bench_function("u64/cached", |b| {
        b.iter(|| {
            key += 1;
            cached_populate(black_box(key))
        })
    });
    group.finish();
}

criterion_group!(benches, hits, misses);
criterion_main!(benches);
