//! Remotes for the conformance suite: a real `redis-server`, a real 3-master Redis Cluster,
//! and a user-written in-process [`RemoteStore`](cachemere::remote::RemoteStore), each started
//! once per test process and stopped when it exits.

use std::sync::OnceLock;
use std::time::Duration;

use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;

use crate::redis_harness::{RedisCluster, RedisServer};
use crate::user_remote::SharedMapStore;

/// Generous for a loaded CI machine; the fault tests use short budgets of their own.
const TIMEOUT: Duration = Duration::from_secs(2);

fn started<T>(what: &str, result: Result<T, crate::redis_harness::HarnessError>) -> T {
    result.unwrap_or_else(|error| panic!("could not start {what}: {error}"))
}

/// A remote on a `redis-server` of its own (prefix `conformance`).
pub fn single_node() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            let server = started("redis-server", RedisServer::start()).shared_until_exit();
            RedisConfig::new(server.url())
                .prefix("conformance")
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_else(|error| panic!("{error}"))
        })
        .clone()
}

/// A remote on a 3-master Redis Cluster of its own.
pub fn cluster() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            let cluster = started("a Redis Cluster", RedisCluster::start()).shared_until_exit();
            RedisConfig::cluster(cluster.urls())
                .prefix("conformance")
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_else(|error| panic!("{error}"))
        })
        .clone()
}

/// A remote on a user-written store (no server).
pub fn user_store() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            Remote::builder(SharedMapStore::default())
                .prefix("conformance")
                .build()
        })
        .clone()
}
