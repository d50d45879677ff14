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

/// The URL of the conformance suite's `redis-server`, started on first use.
fn single_node_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        started("redis-server", RedisServer::start())
            .shared_until_exit()
            .url()
    })
    .clone()
}

/// The node URLs of the conformance suite's 3-master Redis Cluster, started on first use.
fn cluster_urls() -> Vec<String> {
    static URLS: OnceLock<Vec<String>> = OnceLock::new();
    URLS.get_or_init(|| {
        started("a Redis Cluster", RedisCluster::start())
            .shared_until_exit()
            .urls()
    })
    .clone()
}

fn single_node_with(prefix: &str) -> Remote {
    RedisConfig::new(single_node_url())
        .prefix(prefix)
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_else(|error| panic!("{error}"))
}

fn cluster_with(prefix: &str) -> Remote {
    RedisConfig::cluster(cluster_urls())
        .prefix(prefix)
        .timeout(TIMEOUT)
        .build()
        .unwrap_or_else(|error| panic!("{error}"))
}

/// A remote on a `redis-server` of its own (prefix `conformance`).
pub fn single_node() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| single_node_with("conformance"))
        .clone()
}

/// The same server under prefix `conformance-near`, for the near-cache arm (`local`).
pub fn single_node_near() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| single_node_with("conformance-near"))
        .clone()
}

/// A remote on a 3-master Redis Cluster of its own.
pub fn cluster() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE.get_or_init(|| cluster_with("conformance")).clone()
}

/// The same cluster under prefix `conformance-near`, for the near-cache arm (`local`).
pub fn cluster_near() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| cluster_with("conformance-near"))
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
