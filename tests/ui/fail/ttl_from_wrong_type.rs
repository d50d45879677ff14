use std::time::Duration;

use cachemere::cached;

fn lifetime(token: &String) -> Option<Duration> {
    Some(Duration::from_secs(token.len() as u64))
}

// `ttl_from` takes the stored value: `&u64` here, not `&String`.
#[cached(ttl = 60, ttl_from = lifetime)]
fn count(item: u64) -> Result<u64, String> {
    Ok(item)
}

fn main() {
    let _ = count(1);
}
