//! Caching in Redis, shared by every process that uses the same server.
//!
//! Start a Redis of your own and point the example at it:
//!
//! ```text
//! redis-server --port 6390 --save '' --appendonly no &
//! CACHEMERE_REDIS_URL=redis://127.0.0.1:6390 cargo run -p cachemere-examples --example redis
//! ```
//!
//! Without `CACHEMERE_REDIS_URL` it uses `redis://127.0.0.1:6379`. Run it twice: the second run
//! finds the first run's entries. Stop the server and run it again: every call still returns
//! its value, and `errors` counts what Redis could not do.

use std::time::Duration;

use cachemere::cached;
use cachemere::redis::RedisConfig;
use serde::{Deserialize, Serialize};

/// A value stored in Redis: serde, encoded with postcard by default.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
}

/// A sync function: entries live 5 minutes, tagged by user.
#[cached(backend = "redis", ttl = 300, tags = ["user:{id}"])]
fn load_user(id: u64) -> Result<User, String> {
    std::thread::sleep(Duration::from_millis(50)); // the slow database
    if id == 0 {
        return Err("no user 0".into()); // an `Err` is returned, never stored
    }
    Ok(User {
        id,
        name: format!("user-{id}"),
    })
}

/// An async function in the same cache space rules; `version = 2` after a schema change
/// moves it to fresh keys instead of reading values of the old shape.
#[cached(backend = "redis", ttl = "10m", tags = ["user:{id}", "greetings"], version = 2)]
async fn greeting(id: u64, locale: &str) -> String {
    tokio::time::sleep(Duration::from_millis(50)).await;
    format!("[{locale}] hello, user-{id}")
}

#[tokio::main]
async fn main() {
    // From code: the URL (password and all; logs never show it), a prefix, a timeout.
    // `RedisConfig::from_env()` reads CACHEMERE_REDIS_URL, as an unconfigured first call would.
    let remote = RedisConfig::from_env()
        .prefix("example")
        .timeout(Duration::from_millis(200))
        .install();
    match &remote {
        Ok(remote) => println!("caching in {}", remote.describe()),
        Err(error) => println!("no Redis ({error}); the functions run uncached"),
    }

    // Sync functions block their thread for at most the timeout; call them off the runtime.
    let users = tokio::task::spawn_blocking(|| {
        let first = load_user(42);
        let again = load_user(42);
        let missing = load_user(0);
        (first, again, missing)
    })
    .await
    .expect("the blocking task");
    println!("load_user(42) = {:?}, again {:?}", users.0, users.1);
    println!("load_user(0) = {:?}", users.2);
    println!("load_user: {}", load_user::cache_info());

    println!("{}", greeting(42, "en").await);
    println!("{}", greeting(42, "en").await);
    println!("greeting:  {}", greeting::cache_info());

    // Hides every entry tagged user:42, in every process sharing this Redis.
    cachemere::invalidate_tag_async("user:42").await;
    println!("after invalidate_tag: {}", greeting(42, "en").await);
    println!("greeting:  {}", greeting::cache_info());
}
