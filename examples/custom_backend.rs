//! Bringing your own store: implement `cachemere::Backend` and name its constructor in
//! `#[cached(backend = ...)]`. This one logs every operation around cachemere's memory store.
//!
//! Run it with `cargo run -p cachemere-examples --example custom_backend`.

use std::hash::Hash;

use cachemere::{Backend, BackendError, CacheConfig, Equivalent, MemoryBackend, cached};

/// Wraps the default store and prints each operation.
struct Logged<K, V> {
    name: &'static str,
    inner: MemoryBackend<K, V>,
}

/// The constructor `#[cached]` calls once, when the cache is created.
fn logged<K: Eq + Hash, V: Clone>(config: &CacheConfig) -> Logged<K, V> {
    println!(
        "[{}] created, maxsize={}, ttl={:?}",
        config.name, config.maxsize, config.ttl
    );
    Logged {
        name: config.name,
        inner: MemoryBackend::new(config),
    }
}

impl<K, V> Backend<K, V> for Logged<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn get<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Result<Option<V>, BackendError> {
        let found = self.inner.get(key)?;
        println!(
            "[{}] get -> {}",
            self.name,
            if found.is_some() { "found" } else { "absent" }
        );
        Ok(found)
    }

    fn insert(&self, key: K, value: V) -> Result<(), BackendError> {
        println!("[{}] insert", self.name);
        self.inner.insert(key, value)
    }

    fn remove<Q: ?Sized + Hash + Equivalent<K>>(&self, key: &Q) -> Result<bool, BackendError> {
        println!("[{}] remove", self.name);
        self.inner.remove(key)
    }

    fn clear(&self) -> Result<(), BackendError> {
        self.inner.clear()
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    fn evictions(&self) -> u64 {
        self.inner.evictions()
    }
}

#[cached(backend = logged, maxsize = 100)]
fn double(x: u64) -> u64 {
    x * 2
}

fn main() {
    println!("double(21) = {}", double(21));
    println!("double(21) = {}", double(21));
    println!("invalidated: {}", double::invalidate(21));
    println!("{}", double::cache_info());
}
