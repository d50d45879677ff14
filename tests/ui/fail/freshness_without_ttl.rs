use cachemere::cached;

// Stale windows and jitter count from the end of a TTL: each needs `ttl`.
#[cached(stale_while_revalidate = "10m", stale_if_error = "1d", jitter = "30s")]
fn price(item: u64) -> Result<u64, String> {
    Ok(item)
}

fn main() {
    let _ = price(1);
}
