//! Remote caches of every kind the attribute can write, in a crate without the `remote` and
//! `redis` features: each must fail with the feature check alone (see `scripts/test.sh`).

use std::time::Duration;

use cachemere::cached;

#[cached(backend = "redis", ttl = 60, local = "10s", tags = ["near:{id}"], stale_while_revalidate = 5)]
fn near(id: u64) -> u64 {
    id
}

#[cached(backend = "redis", ttl = 60, lock = true, ttl_from = lifetime)]
async fn locked(id: u64) -> u64 {
    id
}

fn lifetime(_: &u64) -> Option<Duration> {
    Some(Duration::from_secs(1))
}

#[cached(backend = "remote", key = format!("{name}"), stale_if_error = 30, ttl = 5)]
fn keyed(name: &str) -> Result<usize, String> {
    Ok(name.len())
}

#[cached(backend = "redis", local = "1s", idle = "5s")]
async fn near_async(name: &str, count: Option<&str>) -> usize {
    name.len() + count.map_or(0, str::len)
}

fn main() {
    let _ = near(1);
    let _ = locked(1);
    let _ = keyed("a");
    let _ = near_async("a", None);
    let _ = near::invalidate(1);
    let _ = near::set(1, 2);
    let _ = near::peek(1);
    let _ = near::refresh(1);
    let _ = near::call(1);
    let _ = near::cache_info();
    let _ = near::cache_clear();
}
