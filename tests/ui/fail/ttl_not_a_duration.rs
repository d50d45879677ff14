use std::time::Duration;

use cachemere::cached;

const TTL_SECONDS: u64 = 300;

#[cached(ttl = TTL_SECONDS)]
fn seconds(x: u64) -> u64 {
    x
}

#[cached(ttl = Duration::ZERO)]
fn zero(x: u64) -> u64 {
    x
}

fn main() {}
