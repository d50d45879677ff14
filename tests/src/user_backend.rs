//! A backend written outside cachemere, as a user would: a bounded `HashMap` behind a mutex that
//! evicts an arbitrary entry when full. It shows the trait is implementable from another crate
//! and runs the conformance suite like the built-in stores.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use cachemere::{Backend, BackendError, CacheConfig, Equivalent};

/// A bounded map that evicts an arbitrary entry when a new key arrives and it is full.
pub struct HashMapBackend<K, V> {
    map: Mutex<HashMap<K, V>>,
    maxsize: u64,
    evictions: AtomicU64,
}

impl<K, V> HashMapBackend<K, V> {
    /// The constructor `#[cached(backend = HashMapBackend::new)]` calls.
    pub fn new(config: &CacheConfig) -> Self {
        HashMapBackend {
            map: Mutex::new(HashMap::new()),
            maxsize: config.maxsize,
            evictions: AtomicU64::new(0),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<K, V>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K, V> Backend<K, V> for HashMapBackend<K, V>
where
    K: Hash + Eq + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    fn get<Q>(&self, key: &Q) -> Result<Option<V>, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        // A std HashMap cannot look up by `Equivalent`; a linear scan keeps this example short.
        Ok(self
            .map()
            .iter()
            .find(|(k, _)| key.equivalent(k))
            .map(|(_, v)| v.clone()))
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        let mut map = self.map();
        if !map.contains_key(&key)
            && map.len() as u64 >= self.maxsize
            && let Some(victim) = map.keys().next().cloned()
        {
            map.remove(&victim);
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
        map.insert(key, value);
        Ok(())
    }

    fn remove<Q>(&self, key: &Q) -> Result<bool, BackendError>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        let mut map = self.map();
        let before = map.len();
        map.retain(|k, _| !key.equivalent(k));
        Ok(map.len() != before)
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.map().clear();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.map().len() as u64
    }

    fn capacity(&self) -> u64 {
        self.maxsize
    }

    fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}
