use std::time::Duration;

use cachemere::cached;

const NO_WINDOW: Duration = Duration::ZERO;

// A constant window of zero is refused when the constant is evaluated, naming the option kind.
#[cached(ttl = 60, stale_if_error = NO_WINDOW)]
fn price(item: u64) -> Result<u64, String> {
    Ok(item)
}

fn main() {
    let _ = price(1);
}
