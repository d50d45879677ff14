//! Options handed to `#[cached]` through `macro_rules!` fragments (`literal`, `expr`), which
//! arrive wrapped in invisible groups, mean what they say.
#![deny(missing_docs, warnings)]

macro_rules! cached_pair {
    ($name:literal, $ttl:literal, $maxsize:expr, $flag:literal, $lock:literal, $version:literal) => {
        /// A memory cache whose options came through the macro.
        #[cachemere::cached(name = $name, ttl = $ttl, maxsize = $maxsize, single_flight = $flag)]
        pub fn in_memory(x: u64) -> u64 {
            x + 1
        }

        /// A remote cache whose options came through the macro.
        #[cachemere::cached(backend = "redis", name = $name, ttl = $ttl, lock = $lock, version = $version)]
        pub fn remote(x: u64) -> u64 {
            x + 2
        }
    };
}

cached_pair!("through-macro", "5m", 100, true, true, 2);

fn main() {
    assert_eq!(in_memory(1), 2);
    assert_eq!(in_memory(1), 2);
    assert_eq!(in_memory::cache_info().hits, 1);
    let _ = remote;
}
