use cachemere::cached;

// Every result of a function returning `u64` is stored: no result is a failure to stand in for.
#[cached(ttl = 60, stale_if_error = "1h")]
fn total(item: u64) -> u64 {
    item
}

// `cache_err` stores the errors too.
#[cached(ttl = 60, stale_if_error = "1h", cache_err = true)]
fn lookup(item: u64) -> Result<u64, String> {
    Ok(item)
}

fn main() {
    let _ = total(1);
    let _ = lookup(1);
}
