//! The Redis store's change feed for near caches: server-assisted client-side caching in
//! broadcasting mode (`CLIENT TRACKING ON BCAST PREFIX <prefix>:`) on a RESP3 connection of
//! its own per server (per primary of a cluster).
//!
//! Redis then pushes an `invalidate` message naming every key under the prefix that any
//! client writes, deletes, or that expires or is evicted, including writes made outside
//! cachemere (`redis-cli`), and a flush as a null. Messages carry key names only, and Redis
//! batches them per event-loop iteration, so a burst of invalidations is a few messages.
//!
//! A `PING` every [`HEARTBEAT`] on the same connections confirms delivery: Redis answers it
//! after the messages of every change it made before reading it. A connection that fails or
//! stops answering is replaced and the feed resubscribed, which drops every local copy.

use std::sync::Weak;
use std::time::{Duration, Instant};

use ::redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, ProtocolVersion, PushInfo,
    PushKind, RedisError, Value, aio::MultiplexedConnection,
};

use super::{Connection, StoreInner, primaries};
use crate::remote::{ChangeFeed, HEARTBEAT};

/// The first wait before resubscribing after a failure; doubled up to [`RESUBSCRIBE_LAST`].
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(50);
const RESUBSCRIBE_LAST: Duration = Duration::from_secs(1);

/// Keeps `feed` informed of every change under `prefix` until the store is dropped.
pub(super) async fn watch(store: Weak<StoreInner>, prefix: String, feed: ChangeFeed) {
    let mut wait = RESUBSCRIBE_FIRST;
    let mut failures = 0_u32;
    loop {
        let Some(inner) = store.upgrade() else {
            feed.lost();
            return;
        };
        let timeout = inner.timeout;
        let subscribed = subscribe_all(&inner, &prefix, feed).await;
        drop(inner);
        match subscribed {
            Ok(connections) => {
                feed.subscribed();
                if failures > 0 {
                    tracing::info!("near-cache change feed re-established; local copies resynced");
                }
                failures = 0;
                wait = RESUBSCRIBE_FIRST;
                heartbeat(&store, connections, timeout, feed).await;
                feed.lost();
                if store.strong_count() == 0 {
                    return;
                }
                tracing::warn!(
                    "near-cache change feed lost: local copies are not served until it is back"
                );
            }
            Err(error) => {
                feed.lost();
                failures = failures.saturating_add(1);
                if failures == 1 {
                    tracing::warn!(
                        error = crate::redact::error(&error),
                        "near-cache change feed unavailable: calls read the store until it is up"
                    );
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = wait.saturating_mul(2).min(RESUBSCRIBE_LAST);
    }
}

/// Pings every connection each [`HEARTBEAT`]; returns when one fails, times out, or the store
/// is gone.
async fn heartbeat(
    store: &Weak<StoreInner>,
    connections: Vec<MultiplexedConnection>,
    timeout: Duration,
    feed: ChangeFeed,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if store.strong_count() == 0 {
            return;
        }
        let sent = Instant::now();
        for connection in &connections {
            let mut connection = connection.clone();
            let ping = ::redis::cmd("PING");
            match tokio::time::timeout(timeout, ping.query_async::<()>(&mut connection)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
        }
        feed.confirmed(sent);
    }
}

/// A tracking connection to every server the store's keys live on.
async fn subscribe_all(
    inner: &std::sync::Arc<StoreInner>,
    prefix: &str,
    feed: ChangeFeed,
) -> Result<Vec<MultiplexedConnection>, crate::backend::BackendError> {
    let nodes = nodes(inner).await?;
    let mut connections = Vec::with_capacity(nodes.len());
    for node in nodes {
        let connection = subscribe(node, prefix, inner.timeout, feed)
            .await
            .map_err(|error| super::backend_error(error, inner.timeout))?;
        connections.push(connection);
    }
    Ok(connections)
}

/// The connection settings of the server (or each cluster primary) to track.
async fn nodes(
    inner: &std::sync::Arc<StoreInner>,
) -> Result<Vec<ConnectionInfo>, crate::backend::BackendError> {
    match std::sync::Arc::clone(inner).connection().await?.1 {
        Connection::Single(_) => Ok(vec![inner.template.clone()]),
        Connection::Cluster(mut cluster) => {
            let primaries = primaries(&mut cluster)
                .await
                .map_err(|error| super::backend_error(error, inner.timeout))?;
            Ok(primaries
                .into_iter()
                .map(|(host, port)| {
                    let addr = match inner.template.addr().clone() {
                        ConnectionAddr::TcpTls {
                            insecure,
                            tls_params,
                            ..
                        } => ConnectionAddr::TcpTls {
                            host,
                            port,
                            insecure,
                            tls_params,
                        },
                        _ => ConnectionAddr::Tcp(host, port),
                    };
                    inner.template.clone().set_addr(addr)
                })
                .collect())
        }
    }
}

/// A RESP3 connection to `node` subscribed to changes under `prefix`, reporting to `feed`.
async fn subscribe(
    node: ConnectionInfo,
    prefix: &str,
    timeout: Duration,
    feed: ChangeFeed,
) -> Result<MultiplexedConnection, RedisError> {
    let settings = node
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    let client = Client::open(node.set_redis_settings(settings))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout))
        .set_push_sender(move |push: PushInfo| {
            report(feed, push);
            Ok::<(), ::redis::aio::SendError>(())
        });
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    ::redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .arg("BCAST")
        .arg("PREFIX")
        .arg(prefix)
        .query_async::<()>(&mut connection)
        .await?;
    Ok(connection)
}

/// Passes one push message on to the feed.
fn report(feed: ChangeFeed, push: PushInfo) {
    match push.kind {
        PushKind::Invalidate => {
            for item in &push.data {
                match item {
                    Value::Array(keys) | Value::Set(keys) => {
                        for key in keys {
                            match key {
                                Value::BulkString(key) => feed.changed(key),
                                Value::SimpleString(key) => feed.changed(key.as_bytes()),
                                _ => feed.everything_changed(),
                            }
                        }
                    }
                    Value::BulkString(key) => feed.changed(key),
                    // A flush (null), or a shape this version does not know: drop everything.
                    _ => feed.everything_changed(),
                }
            }
            if push.data.is_empty() {
                feed.everything_changed();
            }
        }
        PushKind::Disconnection => feed.lost(),
        _ => {}
    }
}
