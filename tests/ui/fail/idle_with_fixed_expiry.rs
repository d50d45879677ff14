use cachemere::cached;

// A sliding expiry has no fixed end for a stale window to count from.
#[cached(ttl = 60, idle = "10m", stale_while_revalidate = "1m")]
fn session(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {
    let _ = session(1);
}
