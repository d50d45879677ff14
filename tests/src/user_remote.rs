//! A remote store written outside cachemere, as a user would, against the public
//! [`RemoteStore`] trait: a map shared by clones, with expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cachemere::remote::{RemoteStore, StoreFuture};

type Entries = HashMap<String, (Vec<u8>, Instant)>;

/// An in-process stand-in for a shared store (what a memcached or database client would be).
#[derive(Clone, Default)]
pub struct SharedMapStore {
    entries: Arc<Mutex<Entries>>,
}

impl SharedMapStore {
    fn with<T: Send + 'static>(&self, op: impl FnOnce(&mut Entries) -> T) -> StoreFuture<T> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        entries.retain(|_, (_, expires)| *expires > now);
        let result = op(&mut entries);
        Box::pin(async move { Ok(result) })
    }
}

impl RemoteStore for SharedMapStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        self.with(move |entries| {
            keys.iter()
                .map(|key| entries.get(key).map(|(value, _)| value.clone()))
                .collect()
        })
    }

    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()> {
        self.with(move |entries| {
            entries.insert(key, (value, Instant::now() + ttl));
        })
    }

    fn get_or_set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<Option<Vec<u8>>> {
        self.with(move |entries| {
            let (current, _) = entries
                .entry(key)
                .or_insert_with(|| (value, Instant::now() + ttl));
            Some(current.clone())
        })
    }

    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        self.with(move |entries| {
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
        self.with(move |entries| entries.remove(&key).is_some())
    }

    fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
        self.with(move |entries| entries.keys().filter(|k| k.starts_with(&prefix)).count() as u64)
    }

    fn describe(&self) -> String {
        "in-process shared map".to_owned()
    }
}
