//! A user crate with strict lints and Redis-backed functions: the generated code passes them.
#![deny(missing_docs, warnings, unused, unsafe_code)]

use cachemere::cached;
use serde::{Deserialize, Serialize};

/// A value stored in Redis.
#[derive(Clone, Serialize, Deserialize)]
pub struct Profile {
    /// Its name.
    pub name: String,
}

/// A public Redis-cached function with tags and a version.
#[cached(backend = "redis", ttl = 300, tags = ["user:{id}"], version = 2)]
pub fn profile(id: u64, locale: &str) -> Result<Profile, String> {
    Ok(Profile { name: format!("{id}:{locale}") })
}

/// A public async Redis-cached function that skips an argument.
#[cached(backend = "redis", skip(trace))]
pub async fn score(id: u64, trace: bool) -> Option<u64> {
    let _ = trace;
    Some(id)
}

#[cached(backend = "remote", key = format!("{a}-{b}"))]
fn private_pair(a: u64, b: u64) -> u64 {
    a + b
}

/// A type with a Redis-cached method.
#[derive(Clone, Serialize)]
pub struct Shard {
    /// Its number.
    pub number: u32,
}

impl Shard {
    /// A cached method, named as the remote backend requires.
    #[cached(backend = "redis", name = "shard-lookup")]
    pub fn lookup(&self, id: u64) -> u64 {
        id + u64::from(self.number)
    }
}

/// Unused generated helpers of a private async function do not warn.
#[cached(backend = "redis", tags = ["private:{id}"])]
async fn private_async(id: u64) -> u64 {
    id
}

/// A public near cache (`local`) with tags, sync and async, by borrowed and owned arguments.
#[cached(backend = "redis", ttl = 300, local = "30s", maxsize = 100, tags = ["near:{id}"])]
pub fn near_profile(id: u64, locale: &str) -> Result<Profile, String> {
    Ok(Profile { name: format!("{id}:{locale}") })
}

/// An async near cache keyed by an expression.
#[cached(backend = "redis", local = "5s", key = format!("{id}"))]
pub async fn near_score(id: u64) -> u64 {
    id
}

/// A type with a near-cached method keyed by its receiver.
#[derive(Clone, Hash, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Its code.
    pub code: String,
}

impl Region {
    /// A near-cached method, named as the remote backend requires.
    #[cached(backend = "redis", name = "region-lookup", local = "1s")]
    pub fn lookup(&self, id: u64) -> u64 {
        id + self.code.len() as u64
    }
}

#[cached(backend = "redis", local = "1s")]
async fn private_near(id: u64) -> u64 {
    id
}

fn main() {
    let _ = private_near;
    let _ = private_pair;
    let _ = private_async;
}
