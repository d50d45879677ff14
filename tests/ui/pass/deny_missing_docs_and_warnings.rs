//! A user crate with strict lints: what `#[cached]` generates must not trip them.
#![deny(missing_docs, warnings, unused, unsafe_code)]

use cachemere::cached;

/// A public cached function.
#[cached(ttl = 60, maxsize = 10, tags = ["user:{id}"])]
pub fn user(id: u64, name: &str) -> Option<String> {
    Some(format!("{id}:{name}"))
}

/// A public async cached function.
#[cached(skip(verbose))]
pub async fn user_async(id: u64, verbose: bool) -> Result<u64, String> {
    if verbose { Ok(id) } else { Ok(id + 1) }
}

#[cached(key = id.to_string())]
fn private_one(id: u64) -> u64 {
    id
}

/// A public type with cached methods.
#[derive(Clone, Hash, PartialEq, Eq)]
pub struct Repo {
    /// Its shard.
    pub shard: u32,
}

impl Repo {
    /// A cached method.
    #[cached]
    pub fn find(&self, id: u64) -> Option<u64> {
        Some(id + u64::from(self.shard))
    }

    /// A cached method that ignores the receiver.
    #[cached(skip(self), backend = "memory")]
    pub fn shared(&self, id: u64) -> u64 {
        id
    }
}

/// Nested module: paths through `self::` and `super::` still resolve in the helpers.
pub mod nested {
    /// A type in this module.
    #[derive(Clone, Hash, PartialEq, Eq)]
    pub struct Id(pub u64);

    /// Cached with a `self::` path in its signature.
    #[cachemere::cached]
    pub fn lookup(id: self::Id) -> super::Repo {
        super::Repo { shard: id.0 as u32 }
    }
}

fn main() {
    assert_eq!(user(1, "a").as_deref(), Some("1:a"));
    assert!(user::invalidate(1, "a").removed());
    assert_eq!(private_one(3), 3);
    let repo = Repo { shard: 1 };
    assert_eq!(repo.find(1), Some(2));
    assert_eq!(repo.shared(1), 1);
    assert_eq!(nested::lookup(nested::Id(4)).shard, 4);
    assert!(nested::lookup::invalidate(nested::Id(4)).removed());
    println!("{}", Repo::find_cache_info());
    let _ = user_async;
}
