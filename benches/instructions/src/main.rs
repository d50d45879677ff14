//! The calls `scripts/instructions.sh` counts instructions of (callgrind): `u64`, `str`,
//! `tagged` (TTL and one tag) hits, and `miss` (each call a new key, populated).

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

#[cached(ttl = 300, tags = ["user:{id}"])]
fn tagged(id: u64) -> u64 {
    id
}

#[cached(maxsize = 100_000_000)]
fn fresh(k: u64) -> u64 {
    k
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
        _ => panic!("mode"),
    }
}
