//! Bringing your own shared store: implement `cachemere::remote::RemoteStore` (bytes in, bytes
//! out) and install it. cachemere does the rest above it: keys, codecs, tags, timeouts, the
//! circuit breaker, single flight and statistics.
//!
//! This store is an in-process map that also counts its round trips; a real one would wrap a
//! client of memcached, DynamoDB, a database table...
//!
//! Run it with `cargo run -p cachemere-examples --example remote_backend`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachemere::cached;
use cachemere::remote::{Codec, Remote, RemoteStore, StoreFuture};

/// Each key's bytes and when they expire.
type Entries = HashMap<String, (Vec<u8>, Instant)>;

#[derive(Clone, Default)]
struct MapStore {
    entries: Arc<Mutex<Entries>>,
    round_trips: Arc<AtomicU64>,
}

impl MapStore {
    fn run<T: Send + 'static>(&self, op: impl FnOnce(&mut Entries) -> T) -> StoreFuture<T> {
        self.round_trips.fetch_add(1, Ordering::Relaxed);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        let result = op(&mut entries);
        Box::pin(async move { Ok(result) })
    }
}

impl RemoteStore for MapStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        self.run(move |entries| {
            keys.iter()
                .map(|key| entries.get(key).map(|(value, _)| value.clone()))
                .collect()
        })
    }

    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()> {
        self.run(move |entries| {
            entries.insert(key, (value, Instant::now() + ttl));
        })
    }

    // What keeps a value computed before an invalidation out of the store: replace only if
    // the value there still starts with what was read (atomic, here under the map's lock).
    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        self.run(move |entries| {
            let matches = entries
                .get(&key)
                .is_some_and(|(current, _)| current.starts_with(&expected));
            if matches {
                entries.insert(key, (value, Instant::now() + ttl));
            }
            matches
        })
    }

    fn delete(&self, key: String) -> StoreFuture<bool> {
        self.run(move |entries| entries.remove(&key).is_some())
    }

    fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
        self.run(move |entries| entries.keys().filter(|k| k.starts_with(&prefix)).count() as u64)
    }

    fn describe(&self) -> String {
        "example map store".to_owned()
    }
}

#[cached(backend = "remote", ttl = 60, tags = ["city:{city}"])]
fn forecast(city: &str, day: u32) -> String {
    format!("{city}, day {day}: sunny")
}

fn main() {
    let store = MapStore::default();
    Remote::builder(store.clone())
        .prefix("weather")
        .codec(Codec::Json) // readable values
        .install();

    println!("{}", forecast("Lisbon", 1));
    println!("{}", forecast("Lisbon", 1));
    cachemere::invalidate_tag("city:Lisbon");
    println!("{}", forecast("Lisbon", 1));
    println!("forecast: {}", forecast::cache_info());

    let entries = store.entries.lock().unwrap_or_else(PoisonError::into_inner);
    let mut keys: Vec<&String> = entries.keys().collect();
    keys.sort();
    for key in keys {
        println!("stored key: {key}");
    }
    println!("round trips: {}", store.round_trips.load(Ordering::Relaxed));
}
