//! Every freshness option under strict lints, sync and async, memory and a method.
#![deny(missing_docs, warnings, unused, unsafe_code)]

use std::time::Duration;

use cachemere::cached;

/// A value that says how long it is valid.
#[derive(Clone, Debug)]
pub struct Token {
    /// Seconds it is valid.
    pub valid_for: u64,
}

fn token_lifetime(token: &Token) -> Option<Duration> {
    Some(Duration::from_secs(token.valid_for))
}

/// Everything at once on a sync function with borrowed arguments.
#[cached(ttl = 60, stale_while_revalidate = "10m", stale_if_error = "1d", retry_after = "5s", jitter = "5s", ttl_from = token_lifetime, tags = ["user:{user}"])]
pub fn token(user: &str, scope: &[u8], verbose: bool) -> Result<Token, String> {
    let _ = verbose;
    Ok(Token { valid_for: (user.len() + scope.len()) as u64 })
}

/// A soft timeout on an async function.
#[cached(ttl = 60, stale_if_error = "1h", timeout = "200ms", skip(verbose))]
pub async fn price(item: &str, verbose: bool) -> Option<u64> {
    let _ = verbose;
    Some(item.len() as u64)
}

/// A `&'static str` argument is moved into the background refresh as it is.
#[cached(ttl = 60, stale_while_revalidate = "10m")]
pub fn region_name(code: &'static str) -> usize {
    code.len()
}

/// Sliding expiry, capped by a TTL.
#[cached(ttl = "1h", idle = "10m")]
pub fn session(id: u64) -> Option<u64> {
    Some(id)
}

/// A type with a refreshed method.
#[derive(Clone, Hash, PartialEq, Eq)]
pub struct Catalog {
    /// Its region.
    pub region: u32,
}

impl Catalog {
    /// Revalidated in the background on a clone of `self`.
    #[cached(ttl = 60, stale_while_revalidate = "10m")]
    pub fn count(&self, item: u64) -> u64 {
        item + u64::from(self.region)
    }
}

fn main() {
    let _ = token("ada", b"read", false);
    let _ = Catalog { region: 1 }.count(2);
    let _ = price;
    let _ = session(1);
    let _ = region_name("eu");
}
