//! Redis and Redis Cluster as the remote store of `#[cached(backend = "redis")]` (feature
//! `redis`).
//!
//! Point the backend at a server from code, before the first call:
//!
//! ```no_run
//! use std::time::Duration;
//! use cachemere::redis::RedisConfig;
//!
//! RedisConfig::new("redis://:secret@10.0.0.5:6379/0") // user and password pass through
//!     .prefix("billing")
//!     .timeout(Duration::from_millis(100))
//!     .install()
//!     .expect("a valid Redis URL");
//!
//! // Or a cluster, from any of its nodes:
//! RedisConfig::cluster(["redis://10.0.0.5:7000", "redis://10.0.0.6:7000"]).install().ok();
//! ```
//!
//! or let the first call build it from the environment: `CACHEMERE_REDIS_URL` (a URL, or a
//! comma-separated list of cluster node URLs; `CACHEMERE_REDIS_CLUSTER=1` makes a single URL a
//! cluster seed), falling back to `redis://127.0.0.1:6379`. `rediss://` URLs need the
//! `redis-tls` feature. If the configuration is unusable, the problem is logged once, counted
//! as an error on every call, and the functions run uncached.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use ::redis::AsyncConnectionConfig;
use ::redis::aio::MultiplexedConnection;
use ::redis::cluster::{ClusterClient, ClusterClientBuilder};
use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{Client, Cmd, RedisError, Value};
use tokio::runtime::{Handle, Id as RuntimeId};

use crate::backend::BackendError;
use crate::remote::{Codec, Remote, RemoteBuilder, RemoteStore, StoreFuture, background_runtime};

mod tracking;

/// The environment variable naming the default Redis.
pub const URL_VARIABLE: &str = "CACHEMERE_REDIS_URL";
/// The environment variable that makes a single URL a cluster seed.
pub const CLUSTER_VARIABLE: &str = "CACHEMERE_REDIS_CLUSTER";
/// The URL used when [`URL_VARIABLE`] is unset.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Why a Redis configuration could not be built. Messages never contain a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisConfigError {
    /// No URL was given.
    #[error("no Redis URL given")]
    NoUrl,
    /// A URL was rejected by the `redis` crate.
    #[error("invalid Redis URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// The `redis` crate's reason.
        reason: String,
    },
}

/// How to reach Redis, and the policy of the caches using it.
#[derive(Clone)]
#[must_use]
pub struct RedisConfig {
    urls: Vec<String>,
    cluster: bool,
    prefix: Option<String>,
    timeout: Duration,
    codec: Codec,
    max_ttl: Option<Duration>,
    breaker: Option<(u32, Duration)>,
    pending_limit: Option<usize>,
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact(url)).collect();
        f.debug_struct("RedisConfig")
            .field("urls", &urls)
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("codec", &self.codec)
            .finish_non_exhaustive()
    }
}

impl RedisConfig {
    /// One Redis server (`redis://[user][:password@]host[:port][/db]`, `rediss://`, or
    /// `redis+unix:///path`).
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            urls: vec![url.into()],
            cluster: false,
            prefix: None,
            timeout: crate::remote::DEFAULT_TIMEOUT,
            codec: Codec::default(),
            max_ttl: None,
            breaker: None,
            pending_limit: None,
        }
    }

    /// A Redis Cluster, from one or more of its nodes.
    pub fn cluster<I, U>(nodes: I) -> Self
    where
        I: IntoIterator<Item = U>,
        U: Into<String>,
    {
        let mut config = RedisConfig::new(String::new());
        config.urls = nodes.into_iter().map(Into::into).collect();
        config.cluster = true;
        config
    }

    /// The configuration from `CACHEMERE_REDIS_URL` and `CACHEMERE_REDIS_CLUSTER`, or
    /// [`DEFAULT_URL`].
    pub fn from_env() -> Self {
        let urls = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let nodes: Vec<String> = urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        let cluster_flag = std::env::var(CLUSTER_VARIABLE)
            .is_ok_and(|value| matches!(value.as_str(), "1" | "true" | "yes"));
        if nodes.len() > 1 || cluster_flag {
            RedisConfig::cluster(nodes)
        } else {
            RedisConfig::new(nodes.into_iter().next().unwrap_or_default())
        }
    }

    /// The first segment of every key (default `"cachemere"`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// The time budget of one Redis operation, connecting included (default 250 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The value codec (default postcard).
    pub fn codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// The longest an entry or an invalidation stamp lives (default 24 h).
    pub fn max_ttl(mut self, max_ttl: Duration) -> Self {
        self.max_ttl = Some(max_ttl);
        self
    }

    /// Consecutive failures that open the circuit, and the cool-down before a probe.
    pub fn circuit_breaker(mut self, failure_threshold: u32, cool_down: Duration) -> Self {
        self.breaker = Some((failure_threshold, cool_down));
        self
    }

    /// How many invalidations that could not reach Redis are kept for retry (see
    /// [`RemoteBuilder::pending_limit`]).
    pub fn pending_limit(mut self, limit: usize) -> Self {
        self.pending_limit = Some(limit);
        self
    }

    /// Builds the store and its [`Remote`]; connects on first use, not here.
    pub fn build(self) -> Result<Remote, RedisConfigError> {
        let store = RedisStore::new(&self.urls, self.cluster, self.timeout)?;
        let mut builder: RemoteBuilder = Remote::builder(store)
            .timeout(self.timeout)
            .codec(self.codec);
        if let Some(prefix) = self.prefix {
            builder = builder.prefix(prefix);
        }
        if let Some(max_ttl) = self.max_ttl {
            builder = builder.max_ttl(max_ttl);
        }
        if let Some((threshold, cool_down)) = self.breaker {
            builder = builder.circuit_breaker(threshold, cool_down);
        }
        if let Some(limit) = self.pending_limit {
            builder = builder.pending_limit(limit);
        }
        Ok(builder.build())
    }

    /// Builds it and makes it the process default (see [`Remote::install`]).
    pub fn install(self) -> Result<Remote, RedisConfigError> {
        let remote = self.build()?;
        remote.install();
        Ok(remote)
    }
}

/// `url` with any password replaced by `***`: the one in the user-info part (everything up to
/// the last `@`, so a password containing `/`, `?` or `#` is covered too) and `pass=` or
/// `password=` query parameters.
///
/// ```
/// use cachemere::redis::redact;
/// assert_eq!(redact("redis://app:s3cret@10.0.0.5:6379/0"), "redis://app:***@10.0.0.5:6379/0");
/// ```
pub fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_query(url);
    };
    let masked = match url[scheme_end..].rfind('@').map(|i| scheme_end + i) {
        Some(at) => match url[scheme_end..at].find(':') {
            Some(colon) => format!("{}:***{}", &url[..scheme_end + colon], &url[at..]),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    };
    redact_query(&masked)
}

fn redact_query(url: &str) -> String {
    let Some(question) = url.find('?') else {
        return url.to_owned();
    };
    let params: Vec<String> = url[question + 1..]
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if matches!(name, "pass" | "password") => format!("{name}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{}?{}", &url[..question], params.join("&"))
}

// One per store: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Target {
    Single(Client),
    Cluster(ClusterClient),
}

#[derive(Clone)]
enum Connection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// One runtime's connection, numbered so that an error evicts only the connection it came from.
type Numbered = (u64, Connection);

/// The Redis [`RemoteStore`]: a multiplexed connection (or cluster connection), one per tokio
/// runtime that runs its operations, created lazily on that runtime.
///
/// A connection's driver is a task of the runtime that created it, so a hit awaited on the
/// caller's runtime never waits for another thread; the connection is forgotten when its runtime
/// shuts down. A single-node connection that fails (dropped, reset, refused) is replaced on the
/// next operation (the failed one is retried once on the new connection), and every new
/// connection first checks whether the server restarted with data restored from disk (see
/// [`RemoteStore::watch_restarts`]).
pub struct RedisStore {
    inner: Arc<StoreInner>,
}

struct StoreInner {
    target: Target,
    /// The first URL's connection settings (for the change feed's own connections).
    template: ::redis::ConnectionInfo,
    timeout: Duration,
    description: String,
    /// Per runtime: its connection, if one is up.
    connections: RwLock<Vec<(RuntimeId, Option<Numbered>)>>,
    connecting: tokio::sync::Mutex<()>,
    next_connection: std::sync::atomic::AtomicU64,
    /// When the last connection attempt failed.
    connect_failed_at: std::sync::Mutex<Option<std::time::Instant>>,
    /// The resets to write when a server's data may have lost recent writes.
    restarts: RwLock<Vec<crate::remote::RestartWatch>>,
}

fn backend_error(error: RedisError, timeout: Duration) -> BackendError {
    if error.is_timeout() {
        BackendError::Timeout(timeout)
    } else if is_connection_error(&error) {
        BackendError::Unavailable(Box::new(error))
    } else {
        BackendError::Other(Box::new(error))
    }
}

/// Whether the error is the connection's, not the command's: worth one retry on a fresh
/// connection (the first command after a reconnect can fail on the stale one).
fn is_connection_error(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
}

/// Replaces the value at `KEYS[1]` with `ARGV[2]` (`PX ARGV[3]`) if it starts with `ARGV[1]`.
/// `pcall`: a key of another type is "not matching", not an error.
const COMPARE_AND_SET: &str = r"
local current = redis.pcall('GET', KEYS[1])
if type(current) == 'string' and string.sub(current, 1, string.len(ARGV[1])) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
";

/// Stores `ARGV[1]` at `KEYS[1]` (`PX ARGV[2]`) if anything (of any type) is there, and returns
/// the first 32 bytes of what it replaced (nil if nothing, or not a string).
const SWAP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local before = redis.pcall('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if type(before) == 'string' then
  return string.sub(before, 1, 32)
end
return false
";

/// If `KEYS[1]` does not hold this server run's id `ARGV[1]`: a fresh value `ARGV[2]` at the
/// reset key `KEYS[2]`, then the run id at `KEYS[1]` (both `PX ARGV[3]`); returns 1 then.
const RESET_AFTER_RESTART: &str = r"
local recorded = redis.pcall('GET', KEYS[1])
if recorded == ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
";

type Scripts = (::redis::Script, ::redis::Script, ::redis::Script);

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        (
            ::redis::Script::new(COMPARE_AND_SET),
            ::redis::Script::new(SWAP),
            ::redis::Script::new(RESET_AFTER_RESTART),
        )
    })
}

impl RedisStore {
    /// A store for `urls` (one server, or cluster nodes); validates the URLs, connects later.
    pub fn new(
        urls: &[String],
        cluster: bool,
        timeout: Duration,
    ) -> Result<Self, RedisConfigError> {
        let invalid = |url: &str, error: RedisError| RedisConfigError::InvalidUrl {
            url: redact(url),
            reason: error.kind_description(),
        };
        let first = urls
            .first()
            .filter(|url| !url.is_empty())
            .ok_or(RedisConfigError::NoUrl)?;
        let redacted: Vec<String> = urls.iter().map(|url| redact(url)).collect();
        let (target, description) = if cluster {
            for url in urls {
                Client::open(url.as_str()).map_err(|e| invalid(url, e))?;
            }
            let client = ClusterClientBuilder::new(urls.iter().map(String::as_str))
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(1)
                .build()
                .map_err(|e| invalid(first, e))?;
            (
                Target::Cluster(client),
                format!("Redis Cluster {}", redacted.join(",")),
            )
        } else {
            let client = Client::open(first.as_str()).map_err(|e| invalid(first, e))?;
            (Target::Single(client), format!("Redis {}", redacted[0]))
        };
        let template = ::redis::IntoConnectionInfo::into_connection_info(first.as_str())
            .map_err(|e| invalid(first, e))?;
        Ok(RedisStore {
            inner: Arc::new(StoreInner {
                target,
                template,
                timeout,
                description,
                connections: RwLock::new(Vec::new()),
                connecting: tokio::sync::Mutex::new(()),
                next_connection: std::sync::atomic::AtomicU64::new(0),
                connect_failed_at: std::sync::Mutex::new(None),
                restarts: RwLock::new(Vec::new()),
            }),
        })
    }
}

trait RedisErrorExt {
    fn kind_description(&self) -> String;
}

impl RedisErrorExt for RedisError {
    /// The error's kind and detail without the URL it may quote.
    fn kind_description(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// Forgets a runtime's connection when that runtime shuts down (and drops its tasks).
struct ForgetOnShutdown {
    store: Weak<StoreInner>,
    runtime: RuntimeId,
}

impl Drop for ForgetOnShutdown {
    fn drop(&mut self) {
        if let Some(store) = self.store.upgrade() {
            store
                .connections
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(runtime, _)| *runtime != self.runtime);
        }
    }
}

impl StoreInner {
    fn current(&self, runtime: RuntimeId) -> Option<Numbered> {
        self.connections
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(owner, _)| *owner == runtime)
            .and_then(|(_, connection)| connection.clone())
    }

    /// Forgets connection `number` after it failed: the next operation connects anew. (Cluster
    /// connections reconnect their nodes by themselves and are kept.)
    fn evict(&self, number: u64) {
        for (_, slot) in self
            .connections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
        {
            if slot.as_ref().is_some_and(|(n, connection)| {
                *n == number && matches!(connection, Connection::Single(_))
            }) {
                *slot = None;
            }
        }
    }

    /// The connection of the runtime polling this operation (cachemere's when there is none).
    async fn connection(self: Arc<Self>) -> Result<Numbered, BackendError> {
        let runtime = match Handle::try_current() {
            Ok(handle) => handle,
            Err(_) => background_runtime()?,
        };
        let id = runtime.id();
        if let Some(connection) = self.current(id) {
            return Ok(connection);
        }
        // Connect in a task of that runtime, so the connection's driver is spawned there, and a
        // caller that gives up (timeout) does not waste a slow handshake.
        let this = Arc::clone(&self);
        runtime
            .spawn(async move {
                let asked = std::time::Instant::now();
                let _connecting = this.connecting.lock().await;
                if let Some(connection) = this.current(id) {
                    return Ok(connection);
                }
                // Callers that queued behind an attempt that just failed share its failure,
                // rather than each waiting out a connect of its own to a silent server.
                let failed_at = *this
                    .connect_failed_at
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if failed_at.is_some_and(|at| at > asked) {
                    return Err(BackendError::Unavailable(
                        "the connection attempt made meanwhile failed".into(),
                    ));
                }
                let connected = match this.connect().await {
                    Ok(connected) => connected,
                    Err(error) => {
                        *this
                            .connect_failed_at
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) =
                            Some(std::time::Instant::now());
                        return Err(error);
                    }
                };
                let connected = (
                    this.next_connection
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    connected,
                );
                let mut connections = this
                    .connections
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                if let Some((_, slot)) = connections.iter_mut().find(|(owner, _)| *owner == id) {
                    *slot = Some(connected.clone());
                    return Ok(connected);
                }
                connections.push((id, Some(connected.clone())));
                drop(connections);
                let forget = ForgetOnShutdown {
                    store: Arc::downgrade(&this),
                    runtime: id,
                };
                // Never finishes: the runtime drops it when it shuts down.
                tokio::spawn(async move {
                    let _forget = forget;
                    std::future::pending::<()>().await;
                });
                Ok(connected)
            })
            .await
            .map_err(|e| BackendError::Other(Box::new(e)))?
    }

    async fn connect(&self) -> Result<Connection, BackendError> {
        let timeout = |error| backend_error(error, self.timeout);
        match &self.target {
            Target::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let mut connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(timeout)?;
                self.check_restart(&mut connection).await.map_err(timeout)?;
                Ok(Connection::Single(connection))
            }
            Target::Cluster(client) => client
                .get_async_connection()
                .await
                .map(Connection::Cluster)
                .map_err(timeout),
        }
    }

    /// Before a new connection serves anything: if the server's data was not written by this
    /// run of the server (its `run_id` differs from the one recorded in the data), it may have
    /// been restored from disk without the latest invalidations, so every watched reset key
    /// gets a fresh value (hiding every entry written before), and the run is recorded. One
    /// script, so processes reconnecting together reset once.
    async fn check_restart(
        &self,
        connection: &mut MultiplexedConnection,
    ) -> Result<(), RedisError> {
        let watches = self
            .restarts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if watches.is_empty() {
            return Ok(());
        }
        let info: String = ::redis::cmd("INFO")
            .arg("server")
            .query_async(connection)
            .await?;
        let Some(run_id) = info
            .lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(str::trim)
        else {
            return Ok(());
        };
        for watch in watches {
            let reset: i64 = scripts()
                .2
                .key(watch.run_key())
                .key(watch.reset_key())
                .arg(run_id)
                .arg(crate::remote::fresh_stamp())
                .arg(millis(watch.ttl()))
                .invoke_async(connection)
                .await?;
            if reset == 1 {
                tracing::info!(
                    store = %self.description,
                    "the Redis server's data was written by another run of it: every entry \
                     written before is hidden (invalidations since its last save may be lost)"
                );
            }
        }
        Ok(())
    }

    /// Sends what `send` sends on this runtime's connection; on a connection error, once
    /// more on a fresh one (the failed connection is replaced: the first command after a
    /// server restart or a `CLIENT KILL` fails on the stale one).
    async fn retrying<T, F, Fut>(self: Arc<Self>, send: F) -> Result<T, BackendError>
    where
        F: Fn(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let mut retried = false;
        loop {
            let (number, connection) = Arc::clone(&self).connection().await?;
            match send(connection).await {
                Err(error) if is_connection_error(&error) => {
                    self.evict(number);
                    if retried {
                        return Err(backend_error(error, self.timeout));
                    }
                    retried = true;
                }
                result => return result.map_err(|error| backend_error(error, self.timeout)),
            }
        }
    }

    async fn query<T: ::redis::FromRedisValue>(
        self: Arc<Self>,
        cmd: Cmd,
    ) -> Result<T, BackendError> {
        self.retrying(|connection| {
            let cmd = &cmd;
            async move {
                match connection {
                    Connection::Single(mut single) => cmd.query_async(&mut single).await,
                    Connection::Cluster(mut cluster) => cmd.query_async(&mut cluster).await,
                }
            }
        })
        .await
    }

    async fn query_pipeline<T: ::redis::FromRedisValue>(
        self: Arc<Self>,
        pipeline: ::redis::Pipeline,
    ) -> Result<T, BackendError> {
        self.retrying(|connection| {
            let pipeline = &pipeline;
            async move {
                match connection {
                    Connection::Single(mut single) => pipeline.query_async(&mut single).await,
                    Connection::Cluster(mut cluster) => pipeline.query_async(&mut cluster).await,
                }
            }
        })
        .await
    }

    /// Runs one of [`scripts`] on one key (`EVALSHA`, loading it when the server lacks it).
    async fn script<T: ::redis::FromRedisValue>(
        self: Arc<Self>,
        script: &'static ::redis::Script,
        key: String,
        args: Vec<Vec<u8>>,
    ) -> Result<T, BackendError> {
        let mut invocation = script.key(key);
        for arg in args {
            invocation.arg(arg);
        }
        self.retrying(|connection| {
            let invocation = &invocation;
            async move {
                match connection {
                    Connection::Single(mut single) => invocation.invoke_async(&mut single).await,
                    Connection::Cluster(mut cluster) => invocation.invoke_async(&mut cluster).await,
                }
            }
        })
        .await
    }

    async fn count(self: Arc<Self>, pattern: String) -> Result<u64, BackendError> {
        match self.clone().connection().await?.1 {
            Connection::Single(manager) => scan_count(&pattern, |cmd| {
                let mut manager = manager.clone();
                async move { cmd.query_async::<Value>(&mut manager).await }
            })
            .await
            .map_err(|error| backend_error(error, self.timeout)),
            Connection::Cluster(mut cluster) => {
                let mut total = 0;
                let timeout = self.timeout;
                for (host, port) in primaries(&mut cluster)
                    .await
                    .map_err(|error| backend_error(error, timeout))?
                {
                    let cluster = cluster.clone();
                    total += scan_count(&pattern, move |cmd| {
                        let mut cluster = cluster.clone();
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port,
                        });
                        async move { cluster.route_command(cmd, routing).await }
                    })
                    .await
                    .map_err(|error| backend_error(error, timeout))?;
                }
                Ok(total)
            }
        }
    }
}

/// Counts the keys matching `pattern` on one node with `SCAN`.
async fn scan_count<F, Fut>(pattern: &str, send: F) -> Result<u64, RedisError>
where
    F: Fn(Cmd) -> Fut,
    Fut: std::future::Future<Output = Result<Value, RedisError>>,
{
    let mut cursor: u64 = 0;
    let mut count = 0;
    loop {
        let mut cmd = ::redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let (next, keys): (u64, Vec<Value>) = ::redis::from_redis_value(send(cmd).await?)?;
        count += keys.len() as u64;
        cursor = next;
        if cursor == 0 {
            return Ok(count);
        }
    }
}

/// The primaries of a cluster, from `CLUSTER SLOTS`.
async fn primaries(cluster: &mut ClusterConnection) -> Result<Vec<(String, u16)>, RedisError> {
    let slots: Vec<Value> = ::redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(cluster)
        .await?;
    let mut nodes: Vec<(String, u16)> = Vec::new();
    for range in slots {
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(primary)) = parts.get(2) else {
            continue;
        };
        let host: Option<String> = primary
            .first()
            .and_then(|v| ::redis::from_redis_value(v.clone()).ok());
        let port: Option<u16> = primary
            .get(1)
            .and_then(|v| ::redis::from_redis_value(v.clone()).ok());
        if let (Some(host), Some(port)) = (host, port)
            && !nodes.contains(&(host.clone(), port))
        {
            nodes.push((host, port));
        }
    }
    Ok(nodes)
}

/// A TTL in whole milliseconds, at least 1.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A `MATCH` pattern matching exactly the keys that start with `prefix`.
fn prefix_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for ch in prefix.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(ch);
    }
    pattern.push('*');
    pattern
}

impl RemoteStore for RedisStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut cmd = ::redis::cmd("MGET");
            cmd.arg(&keys);
            inner.query(cmd).await
        })
    }

    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(key).arg(value).arg("PX").arg(millis(ttl));
            inner.query::<()>(cmd).await
        })
    }

    /// `SET key value NX PX ttl` and `GET key` in one pipeline.
    fn get_or_set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<Option<Vec<u8>>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut pipeline = ::redis::pipe();
            pipeline
                .cmd("SET")
                .arg(&key)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .ignore()
                .cmd("GET")
                .arg(&key);
            let (current,): (Option<Vec<u8>>,) = inner.query_pipeline(pipeline).await?;
            Ok(current)
        })
    }

    /// One Lua script (`EVALSHA`), on the key's node in a cluster.
    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let ttl = millis(ttl).to_string().into_bytes();
            let set: i64 = inner
                .script(&scripts().0, key, vec![expected, value, ttl])
                .await?;
            Ok(set == 1)
        })
    }

    /// One Lua script: the `SET` (only over an existing key) and the first bytes of what it
    /// replaced.
    fn swap(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<Option<Vec<u8>>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let ttl = millis(ttl).to_string().into_bytes();
            inner.script(&scripts().1, key, vec![value, ttl]).await
        })
    }

    fn delete(&self, key: String) -> StoreFuture<bool> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut cmd = ::redis::cmd("DEL");
            cmd.arg(key);
            Ok(inner.query::<u64>(cmd).await? > 0)
        })
    }

    fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move { inner.count(prefix_pattern(&prefix)).await })
    }

    fn describe(&self) -> String {
        self.inner.description.clone()
    }

    /// Kept, and checked by every new single-node connection (see [`RedisStore`]). A cluster's
    /// nodes reconnect inside the `redis` crate, out of sight: there, run the nodes with
    /// `appendfsync always` (or without persistence) so that a restarted node never comes back
    /// without writes it acknowledged.
    /// Server-assisted client-side caching in broadcasting mode on connections of its own (see
    /// the `tracking` module): every change under `prefix`, by any client, is reported.
    fn track_changes(&self, prefix: String, feed: crate::remote::ChangeFeed) -> bool {
        let Ok(runtime) = background_runtime() else {
            return false;
        };
        runtime.spawn(tracking::watch(Arc::downgrade(&self.inner), prefix, feed));
        true
    }

    fn watch_restarts(&self, watch: crate::remote::RestartWatch) {
        self.inner
            .restarts
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(watch);
        // Connections made before the watch are checked when they are next replaced; make
        // that now.
        self.inner
            .connections
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .iter_mut()
            .for_each(|(_, slot)| *slot = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("redis://:hunter2@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact("rediss://ada:hunter2@host"), "rediss://ada:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("redis://ada@host"), "redis://ada@host");
        assert_eq!(
            redact("redis://:hun/ter#2@host:1/0"),
            "redis://:***@host:1/0"
        );
        assert_eq!(
            redact("redis+unix:///tmp/r.sock?db=1&pass=hunter2"),
            "redis+unix:///tmp/r.sock?db=1&pass=***"
        );
        let error = RedisConfig::new("redis://:hun/ter2@host").build();
        if let Err(error) = error {
            assert!(!error.to_string().contains("ter2"), "{error}");
        }
        let config = RedisConfig::new("redis://:hunter2@127.0.0.1:1");
        assert!(!format!("{config:?}").contains("hunter2"));
        let remote = config.build().unwrap();
        assert!(!remote.describe().contains("hunter2"));
        assert!(!format!("{remote:?}").contains("hunter2"));
    }

    #[test]
    fn bad_urls_are_reported_without_secrets() {
        let error = RedisConfig::new("nonsense://:hunter2@host")
            .build()
            .unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(matches!(
            RedisConfig::new("").build(),
            Err(RedisConfigError::NoUrl)
        ));
    }

    #[test]
    fn patterns_escape_globs() {
        assert_eq!(prefix_pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:*");
    }
}
