//! A small web service with a cached endpoint, HTTP caching headers from the cache's policy,
//! an update endpoint that invalidates, and the endpoints operations wants: `/caches` (JSON
//! statistics), `/health` (readiness) and `/metrics` (Prometheus).
//!
//! ```text
//! cargo run -p cachemere-examples --example axum_service
//! curl -i http://127.0.0.1:3000/users/1          # X-Cache: MISS, then HIT
//! curl -i -H 'If-None-Match: "<etag>"' http://127.0.0.1:3000/users/1   # 304
//! curl -i -X PUT -H 'content-type: application/json' -d '{"name":"Ada"}' http://127.0.0.1:3000/users/1
//! curl http://127.0.0.1:3000/caches ; curl http://127.0.0.1:3000/metrics ; curl -i http://127.0.0.1:3000/health
//! ```
//!
//! Users are cached in memory; with `CACHEMERE_REDIS_URL` set (e.g. `redis://127.0.0.1:6390`),
//! in Redis, shared by every instance. `CACHEMERE_ADDR` sets the address (default
//! `127.0.0.1:3000`; port 0 picks a free one). The service prints the address it listens on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cachemere::http::HttpCaching;
use cachemere::{CacheConfig, Cached, cached};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

/// A row of the "database".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Bumped by every update.
    pub version: u64,
}

/// A stand-in for a database: rows, and a count of reads (each one a cache miss).
pub struct Database {
    rows: Mutex<BTreeMap<u64, User>>,
    reads: AtomicU64,
}

impl Database {
    fn read(&self, id: u64) -> Option<User> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        // Users 1..=1000 exist until updated; `name` defaults from the id.
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        if !(1..=1000).contains(&id) && !rows.contains_key(&id) {
            return None;
        }
        Some(
            rows.entry(id)
                .or_insert_with(|| User {
                    id,
                    name: format!("user-{id}"),
                    version: 1,
                })
                .clone(),
        )
    }

    fn update(&self, id: u64, name: String) -> User {
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let version = rows.get(&id).map_or(1, |row| row.version + 1);
        let user = User { id, name, version };
        rows.insert(id, user.clone());
        user
    }

    /// How many reads reached the database.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }
}

/// The database of this process.
pub static DATABASE: LazyLock<Database> = LazyLock::new(|| Database {
    rows: Mutex::new(BTreeMap::new()),
    reads: AtomicU64::new(0),
});

/// Users, cached in this process. A `None` (no such user) is not cached.
#[cached(name = "users", ttl = "5m", tags = ["user:{id}"], maxsize = 10_000)]
pub async fn user_in_memory(id: u64) -> Option<User> {
    tokio::time::sleep(Duration::from_millis(5)).await; // the database's latency
    DATABASE.read(id)
}

/// The same, cached in Redis (shared by every instance of the service).
#[cached(name = "users-shared", backend = "redis", ttl = "5m", tags = ["user:{id}"])]
pub async fn user_in_redis(id: u64) -> Option<User> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    DATABASE.read(id)
}

/// Where the service keeps users.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    /// `backend` in memory (the default).
    Memory,
    /// Redis (needs a remote installed, e.g. `RedisConfig::from_env().install()`).
    Redis,
}

impl Storage {
    async fn user(self, id: u64) -> Cached<Option<User>> {
        match self {
            Storage::Memory => user_in_memory::call(id).await,
            Storage::Redis => user_in_redis::call(id).await,
        }
    }

    fn config(self) -> CacheConfig {
        match self {
            Storage::Memory => user_in_memory::cache_config(),
            Storage::Redis => user_in_redis::cache_config(),
        }
    }
}

/// The service's routes.
pub fn app(storage: Storage) -> Router {
    Router::new()
        .route("/users/{id}", get(get_user).put(update_user))
        .route("/caches", get(caches))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(storage)
}

/// `GET /users/{id}`: the cached user, with `Cache-Control` (from the function's TTL), `Age`,
/// `ETag`, `X-Cache`, and `304` when the client's `If-None-Match` still matches.
async fn get_user(
    State(storage): State<Storage>,
    Path(id): Path<u64>,
    request: HeaderMap,
) -> Response {
    let Some(user) = storage.user(id).await.transpose() else {
        return (StatusCode::NOT_FOUND, "no such user").into_response();
    };
    // Per-user data: `private` (the default) keeps it out of shared caches.
    let caching = HttpCaching::new(storage.config());
    let (parts, body) = caching.respond(&request, user).into_parts();
    match body {
        Some(user) => (parts, Json(user)).into_response(),
        None => (parts, ()).into_response(),
    }
}

#[derive(Deserialize)]
struct Update {
    name: String,
}

/// `PUT /users/{id}` with `{"name": ...}`: writes the row, then invalidates the user's tag in
/// every cache; says whether the invalidation reached every store or is queued.
async fn update_user(Path(id): Path<u64>, Json(update): Json<Update>) -> Response {
    let user = DATABASE.update(id, update.name);
    let invalidation = cachemere::invalidate_tag_async(&format!("user:{id}")).await;
    let status = if invalidation.is_queued() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({ "user": user, "invalidation": invalidation.as_str() });
    (status, Json(body)).into_response()
}

/// `GET /caches`: every cache's statistics as JSON (the `serde` feature). Read on a blocking
/// thread: a remote cache's size is a count made in the store.
async fn caches() -> Response {
    match tokio::task::spawn_blocking(cachemere::caches).await {
        Ok(report) => Json(report).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /health`: `200` when every remote is reachable with nothing pending, else `503`; the
/// body has each remote's state (no store operation is made).
async fn health() -> Response {
    let remotes = cachemere::remote::health();
    let ready = remotes.iter().all(|remote| remote.is_ready());
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": ready, "remotes": remotes });
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text. The statistics are published first (hits and sizes are
/// read from the caches, not recorded per hit).
async fn metrics() -> Response {
    let Some(handle) = METRICS.get() else {
        return (StatusCode::NOT_FOUND, "no metrics recorder").into_response();
    };
    match tokio::task::spawn_blocking(cachemere::metrics::publish).await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) that `/metrics` renders.
pub fn install_metrics() -> Result<(), String> {
    if METRICS.get().is_some() {
        return Ok(());
    }
    let buckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(cachemere::metrics::COMPUTE_DURATION.into()),
            &buckets,
        )
        .map_err(|error| error.to_string())?
        .install_recorder()
        .map_err(|error| error.to_string())?;
    let _ = METRICS.set(handle);
    Ok(())
}

#[allow(dead_code)] // the integration test includes this file for `app` and uses its own main
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    install_metrics()?;
    let storage = match std::env::var("CACHEMERE_REDIS_URL") {
        Ok(_) => {
            let remote = cachemere::redis::RedisConfig::from_env()
                .prefix("axum-example")
                .install()?;
            println!("caching users in {}", remote.describe());
            Storage::Redis
        }
        Err(_) => Storage::Memory,
    };
    let address = std::env::var("CACHEMERE_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(storage)).await?;
    Ok(())
}
