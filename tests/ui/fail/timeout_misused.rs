use cachemere::cached;

// A sync call cannot return before its computation ends.
#[cached(ttl = 60, stale_if_error = "1h", timeout = "200ms")]
fn sync_price(item: u64) -> Result<u64, String> {
    Ok(item)
}

// A timeout answers with the value `stale_if_error` keeps; without it there is none.
#[cached(ttl = 60, timeout = "200ms")]
async fn async_price(item: u64) -> Result<u64, String> {
    Ok(item)
}

// `retry_after` throttles the retries of `stale_if_error`.
#[cached(ttl = 60, retry_after = "5s")]
fn throttled(item: u64) -> Result<u64, String> {
    Ok(item)
}

fn main() {
    let _ = sync_price(1);
    let _ = async_price(1);
    let _ = throttled(1);
}
