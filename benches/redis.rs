//! Redis hits beside a raw `GET`, measured in interleaved rounds against a `redis-server` this
//! harness starts on a free loopback port (never a shared one) and kills when it ends.
//!
//! Every side talks to Redis through a `redis::aio::ConnectionManager` with the same timeouts;
//! the raw `GET` reads the very entry cachemere wrote (the same bytes). Each round times
//! cachemere and its peer back to back; the tables give the median of the rounds and the median
//! of the per-round ratios. Async callers run in a task spawned on a two-worker tokio runtime,
//! as a request handler under `#[tokio::main]` would.
//!
//! `cargo bench -p cachemere-benches --bench redis`

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere_tests::redis_harness::RedisServer;
use futures_util::future::join_all;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::runtime::Runtime;

const ROUNDS: usize = 31;
/// Calls per side per round (single hits).
const CALLS: u32 = 400;
/// Batches per side per round (concurrent hits).
const BATCHES: u32 = 50;
/// Distinct keys; also the width of a concurrent batch.
const KEYS: u64 = 64;
const TIMEOUT: Duration = Duration::from_secs(2);

static REMOTE: OnceLock<Remote> = OnceLock::new();
static URL: OnceLock<String> = OnceLock::new();

fn remote() -> Remote {
    REMOTE
        .get()
        .expect("the remote is set before the first call")
        .clone()
}

#[cachemere::cached(backend = "redis", remote = remote, ttl = 3600)]
async fn cm_hit(x: u64) -> u64 {
    x
}

#[cachemere::cached(backend = "redis", remote = remote, ttl = 3600, tags = ["a:{x}", "b"])]
async fn cm_tagged(x: u64) -> u64 {
    x
}

#[cachemere::cached(backend = "redis", remote = remote)]
fn cm_sync(x: u64) -> u64 {
    x
}

#[cached::macros::concurrent_cached(
    map_error = r##"|e| format!("{e:?}")"##,
    ty = "cached::AsyncRedisCache<u64, u64>",
    create = r##"{
        cached::AsyncRedisCache::builder("bench-cached")
            .ttl(cached::time::Duration::from_secs(3600))
            .connection_string(URL.get().expect("the URL is set before the first call"))
            .connection_manager(true)
            .build()
            .await
            .expect("an AsyncRedisCache")
    }"##
)]
async fn cd_hit(x: u64) -> Result<u64, String> {
    Ok(x)
}

/// What the measured closures share.
struct Ctx {
    /// The raw side's connection, made on the runtime that polls it.
    conn: ConnectionManager,
    /// A one-worker runtime like cachemere's, and a connection made on it.
    hop: tokio::runtime::Handle,
    hop_conn: ConnectionManager,
    /// cachemere's clear-stamp key of `cm_hit`.
    clear_key: String,
    /// The remote-wide stamp key, read with every entry.
    all_key: String,
    /// cachemere's entry key of `cm_hit(x)`, at index `x`.
    entry_keys: Vec<String>,
}

/// One measured call (or batch), boxed alike on every side.
type Call = Pin<Box<dyn Future<Output = ()> + Send>>;
/// Makes a call on key `x`.
type Op = fn(Arc<Ctx>, u64) -> Call;

fn op_cm_hit(_: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        black_box(cm_hit(black_box(x)).await);
    })
}

fn op_cm_tagged(_: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        black_box(cm_tagged(black_box(x)).await);
    })
}

fn op_cd_hit(_: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        black_box(cd_hit(black_box(x)).await.expect("cached's hit"));
    })
}

async fn raw_get(ctx: &Ctx, x: u64) -> Vec<u8> {
    let mut conn = ctx.conn.clone();
    let value: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&ctx.entry_keys[x as usize])
        .query_async(&mut conn)
        .await
        .expect("a raw GET");
    value.expect("the entry exists")
}

fn op_raw_get(ctx: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        black_box(raw_get(&ctx, black_box(x)).await);
    })
}

/// What a hit sends: `MGET entry clear-stamp all-stamp`, from the caller's runtime.
fn op_raw_mget(ctx: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        let mut conn = ctx.conn.clone();
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&ctx.entry_keys[black_box(x) as usize])
            .arg(&ctx.clear_key)
            .arg(&ctx.all_key)
            .query_async(&mut conn)
            .await
            .expect("a raw MGET");
        black_box(values);
    })
}

/// A raw `GET` run as `Remote::call` runs an operation off a multi-threaded tokio runtime:
/// spawned on a one-worker runtime that owns the connection, awaited through the `JoinHandle`.
fn op_hop_get(ctx: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        let hop = ctx.hop.clone();
        let task = hop.spawn(async move {
            let mut conn = ctx.hop_conn.clone();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(&ctx.entry_keys[black_box(x) as usize])
                .query_async(&mut conn)
                .await
                .expect("a raw GET");
            value
        });
        black_box(task.await.expect("the task"));
    })
}

/// A raw `GET` awaited by the caller itself on the connection whose driver runs on the
/// one-worker runtime (no spawn, but the command and its reply still cross threads).
fn op_cross_get(ctx: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        let mut conn = ctx.hop_conn.clone();
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&ctx.entry_keys[black_box(x) as usize])
            .query_async(&mut conn)
            .await
            .expect("a raw GET");
        black_box(value);
    })
}

/// Only the hop: an empty task spawned on the one-worker runtime, awaited.
fn op_hop_empty(ctx: Arc<Ctx>, x: u64) -> Call {
    Box::pin(async move {
        black_box(
            ctx.hop
                .spawn(async move { black_box(x) })
                .await
                .expect("the task"),
        );
    })
}

/// 64 raw GETs in flight at once on the caller's connection (no pipeline).
fn op_raw_concurrent(ctx: Arc<Ctx>, _: u64) -> Call {
    Box::pin(async move {
        let values = join_all((0..KEYS).map(|x| raw_get(&ctx, black_box(x)))).await;
        black_box(values);
    })
}

/// 64 raw `MGET entry clear-stamp all-stamp` in flight at once, each spawned on the one-worker runtime and
/// awaited through its `JoinHandle`, as cachemere's hits are (without cachemere's own work).
fn op_hop_concurrent(ctx: Arc<Ctx>, _: u64) -> Call {
    Box::pin(async move {
        let tasks = (0..KEYS).map(|x| {
            let ctx = Arc::clone(&ctx);
            ctx.hop.clone().spawn(async move {
                let mut conn = ctx.hop_conn.clone();
                let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                    .arg(&ctx.entry_keys[black_box(x) as usize])
                    .arg(&ctx.clear_key)
                    .arg(&ctx.all_key)
                    .query_async(&mut conn)
                    .await
                    .expect("a raw MGET");
                values
            })
        });
        black_box(join_all(tasks).await);
    })
}

/// The 64 `MGET entry clear-stamp all-stamp` of a batch in one pipeline, sent by one task spawned on the
/// one-worker runtime: what merged reads would cost if they still hopped to another runtime.
fn op_hop_pipeline(ctx: Arc<Ctx>, _: u64) -> Call {
    Box::pin(async move {
        let task = ctx.hop.clone().spawn(async move {
            let mut pipe = redis::pipe();
            for key in &ctx.entry_keys {
                pipe.cmd("MGET")
                    .arg(key)
                    .arg(&ctx.clear_key)
                    .arg(&ctx.all_key);
            }
            let mut conn = ctx.hop_conn.clone();
            let values: Vec<Vec<Option<Vec<u8>>>> =
                pipe.query_async(&mut conn).await.expect("a pipeline");
            values
        });
        black_box(task.await.expect("the task"));
    })
}

/// The reads of a batch gathered into one `MGET` of the 64 entries and their (shared)
/// clear-stamp key, on the caller's connection: the floor of merged reads.
fn op_raw_merged(ctx: Arc<Ctx>, _: u64) -> Call {
    Box::pin(async move {
        let mut mget = redis::cmd("MGET");
        for key in &ctx.entry_keys {
            mget.arg(key);
        }
        mget.arg(&ctx.clear_key).arg(&ctx.all_key);
        let mut conn = ctx.conn.clone();
        let values: Vec<Option<Vec<u8>>> = mget.query_async(&mut conn).await.expect("an MGET");
        black_box(values);
    })
}

/// 64 cachemere hits on distinct keys, all in flight at once.
fn op_cm_batch(_: Arc<Ctx>, _: u64) -> Call {
    Box::pin(async move {
        let values = join_all((0..KEYS).map(|x| cm_hit(black_box(x)))).await;
        black_box(values);
    })
}

/// The peer of a batch: 64 `GET`s of the same entries in one pipeline (one round trip).
fn op_raw_pipeline(ctx: Arc<Ctx>, _: u64) -> Call {
    Box::pin(async move {
        let mut pipe = redis::pipe();
        for key in &ctx.entry_keys {
            pipe.get(key);
        }
        let mut conn = ctx.conn.clone();
        let values: Vec<Option<Vec<u8>>> = pipe.query_async(&mut conn).await.expect("a pipeline");
        black_box(values);
    })
}

/// Microseconds per `op` call, `calls` calls cycling through the keys.
async fn micros_per_call(ctx: &Arc<Ctx>, op: Op, calls: u32) -> f64 {
    let started = Instant::now();
    for i in 0..calls {
        op(Arc::clone(ctx), u64::from(i) % KEYS).await;
    }
    started.elapsed().as_nanos() as f64 / 1e3 / f64::from(calls)
}

/// (ours, theirs, ours / theirs), one entry per round.
type Samples = (Vec<f64>, Vec<f64>, Vec<f64>);

/// Interleaved rounds of two async ops, inside one task on `runtime`.
fn paired_async(runtime: &Runtime, ctx: &Arc<Ctx>, ours: Op, theirs: Op, calls: u32) -> Samples {
    let ctx = Arc::clone(ctx);
    let rounds = async move {
        micros_per_call(&ctx, ours, calls / 10).await;
        micros_per_call(&ctx, theirs, calls / 10).await;
        let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let x = micros_per_call(&ctx, ours, calls).await;
            let y = micros_per_call(&ctx, theirs, calls).await;
            a.push(x);
            b.push(y);
            r.push(x / y);
        }
        (a, b, r)
    };
    runtime
        .block_on(runtime.spawn(rounds))
        .expect("the measuring task")
}

/// Interleaved rounds of the blocking `cm_sync` on this plain thread and a raw `GET` that this
/// thread blocks on.
fn paired_sync(runtime: &Runtime, ctx: &Arc<Ctx>) -> Samples {
    let sync_micros = || {
        let started = Instant::now();
        for i in 0..CALLS {
            black_box(cm_sync(black_box(u64::from(i) % KEYS)));
        }
        started.elapsed().as_nanos() as f64 / 1e3 / f64::from(CALLS)
    };
    let raw_micros = || {
        let started = Instant::now();
        for i in 0..CALLS {
            black_box(runtime.block_on(raw_get(ctx, black_box(u64::from(i) % KEYS))));
        }
        started.elapsed().as_nanos() as f64 / 1e3 / f64::from(CALLS)
    };
    sync_micros();
    raw_micros();
    let (mut a, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let x = sync_micros();
        let y = raw_micros();
        a.push(x);
        b.push(y);
        r.push(x / y);
    }
    (a, b, r)
}

/// The middle value.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Prints one table row: `columns` first, then the medians and the ratios.
fn row(columns: &[&str], (a, b, r): Samples) {
    let mut sorted = r.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "| {} | {:.1} | {:.1} | {:.2}× | {:.2}–{:.2}× |",
        columns.join(" | "),
        median(a),
        median(b),
        median(r),
        // The middle half of the per-round ratios.
        sorted[sorted.len() / 4],
        sorted[sorted.len() * 3 / 4]
    );
}

fn connection_config() -> ConnectionManagerConfig {
    // As cachemere's own store configures its connection.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(TIMEOUT)
}

fn raw_context(runtime: &Runtime, hop: &Runtime, url: &str, entry_keys: Vec<String>) -> Arc<Ctx> {
    let client = redis::Client::open(url).expect("a client");
    let connect = |runtime: &Runtime| {
        runtime
            .block_on(client.get_connection_manager_with_config(connection_config()))
            .expect("a connection manager")
    };
    let clear_key = entry_keys[0]
        .rsplit_once(":v1:")
        .map(|(space, _)| space.replacen("bench:", "bench:#gen:", 1) + ":v1")
        .expect("an entry key");
    Arc::new(Ctx {
        conn: connect(runtime),
        hop: hop.handle().clone(),
        hop_conn: connect(hop),
        clear_key,
        all_key: "bench:#all".to_owned(),
        entry_keys,
    })
}

/// cachemere's entry keys of `cm_hit`, by argument (read back from the server, which holds
/// nothing else under the prefix `bench:` and the cache name `...cm_hit:v1:`).
fn entry_keys(server: &RedisServer) -> Vec<String> {
    use cachemere_tests::redis_harness::Reply;
    let Ok(Reply::Array(Some(replies))) = server.command(&["KEYS", "bench:*cm_hit:v1:*"]) else {
        panic!("KEYS failed");
    };
    let mut keys = vec![String::new(); KEYS as usize];
    for reply in replies {
        let Reply::Bulk(Some(key)) = reply else {
            panic!("KEYS answered {reply:?}");
        };
        let key = String::from_utf8(key).expect("a UTF-8 key");
        let x: usize = key
            .rsplit(':')
            .next()
            .and_then(|a| a.parse().ok())
            .expect("u64 argument");
        keys[x] = key;
    }
    assert!(keys.iter().all(|k| !k.is_empty()), "an entry per key");
    keys
}

/// Which comparison a row makes.
enum Run {
    /// Two async ops on the two-worker runtime, `n` calls (or batches) per side per round.
    Multi(Op, Op, u32),
    /// Two async ops on the current-thread runtime.
    Single(Op, Op),
    /// The blocking `cm_sync` against a raw `GET` this thread blocks on.
    Sync,
}

fn main() {
    // `cargo bench --bench redis -- <text>` runs only the rows whose label contains `<text>`.
    let filter: Option<String> = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let started = Instant::now();
    let server = RedisServer::start().unwrap_or_else(|error| panic!("{error}"));
    assert_ne!(server.port(), 6379, "never the shared system Redis");
    URL.set(server.url()).expect("set once");
    REMOTE
        .set(
            RedisConfig::new(server.url())
                .prefix("bench")
                .timeout(TIMEOUT)
                .build()
                .expect("a Redis config"),
        )
        .expect("set once");

    // Two workers, as `#[tokio::main]` gives on this two-core machine.
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Built as cachemere builds its own runtime.
    let hop = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");

    // Populate: one miss per key and function, then every measured call is a hit.
    multi.block_on(async {
        for x in 0..KEYS {
            assert_eq!(cm_hit(x).await, x);
            assert_eq!(cm_tagged(x).await, x);
            assert_eq!(cd_hit(x).await, Ok(x));
        }
    });
    for x in 0..KEYS {
        assert_eq!(cm_sync(x), x);
    }

    let keys = entry_keys(&server);
    let ctx = raw_context(&multi, &hop, &server.url(), keys.clone());
    let ctx_single = raw_context(&single, &hop, &server.url(), keys);
    let value_len = multi.block_on(raw_get(&ctx, 7)).len();
    let measure = |run: Run| match run {
        Run::Multi(ours, theirs, n) => paired_async(&multi, &ctx, ours, theirs, n),
        Run::Single(ours, theirs) => paired_async(&single, &ctx_single, ours, theirs, CALLS),
        Run::Sync => paired_sync(&multi, &ctx),
    };
    let wanted = |label: &str| filter.as_ref().is_none_or(|f| label.contains(f.as_str()));

    println!(
        "| Redis, interleaved, median of {ROUNDS} rounds | target | cachemere (µs) | peer (µs) | ratio | middle half of ratios |"
    );
    println!("|---|---|---|---|---|---|");
    let rows: [(&str, &str, Run); 7] = [
        (
            "async hit, u64 (vs raw GET, same connection kind)",
            "≤ 1.05×",
            Run::Multi(op_cm_hit, op_raw_get, CALLS),
        ),
        (
            "async hit, u64, tags `a:{x}` and `b` (vs raw GET)",
            "-",
            Run::Multi(op_cm_tagged, op_raw_get, CALLS),
        ),
        (
            "64 concurrent async hits (vs 64 GETs in one pipeline), per batch",
            "≤ 1.2×",
            Run::Multi(op_cm_batch, op_raw_pipeline, BATCHES),
        ),
        (
            "sync hit, u64, blocking a plain thread (vs raw GET it blocks on)",
            "info",
            Run::Sync,
        ),
        (
            "async hit, u64, current-thread caller runtime (vs raw GET)",
            "info",
            Run::Single(op_cm_hit, op_raw_get),
        ),
        (
            "cached `AsyncRedisCache` hit, u64 (vs raw GET)",
            "info",
            Run::Multi(op_cd_hit, op_raw_get, CALLS),
        ),
        (
            "async hit, u64 (vs cached `AsyncRedisCache` hit)",
            "-",
            Run::Multi(op_cm_hit, op_cd_hit, CALLS),
        ),
    ];
    for (label, target, run) in rows {
        if wanted(label) {
            row(&[label, target], measure(run));
        }
    }

    println!();
    println!(
        "| where the time goes, interleaved, median of {ROUNDS} rounds | baseline | subject (µs) | baseline (µs) | ratio | middle half of ratios |"
    );
    println!("|---|---|---|---|---|---|");
    let parts: [(&str, &str, Run); 10] = [
        (
            "cachemere async hit (as above)",
            "raw GET",
            Run::Multi(op_cm_hit, op_raw_get, CALLS),
        ),
        (
            "raw `MGET entry clear-stamp all-stamp` (what a hit sends)",
            "raw GET",
            Run::Multi(op_raw_mget, op_raw_get, CALLS),
        ),
        (
            "raw GET spawned on a one-worker runtime owning its connection, JoinHandle awaited",
            "raw GET",
            Run::Multi(op_hop_get, op_raw_get, CALLS),
        ),
        (
            "raw GET awaited by the caller on that runtime's connection (no spawn)",
            "raw GET",
            Run::Multi(op_cross_get, op_raw_get, CALLS),
        ),
        (
            "empty task spawned on that runtime, JoinHandle awaited (no I/O)",
            "raw GET",
            Run::Multi(op_hop_empty, op_raw_get, CALLS),
        ),
        (
            "64 concurrent cachemere hits (as above)",
            "64 concurrent raw GETs",
            Run::Multi(op_cm_batch, op_raw_concurrent, BATCHES),
        ),
        (
            "64 concurrent raw GETs on the caller's connection (no pipeline)",
            "pipeline of 64 GETs",
            Run::Multi(op_raw_concurrent, op_raw_pipeline, BATCHES),
        ),
        (
            "64 concurrent raw MGETs, each spawned on the one-worker runtime",
            "64 concurrent raw GETs",
            Run::Multi(op_hop_concurrent, op_raw_concurrent, BATCHES),
        ),
        (
            "64 MGETs in one pipeline, one task spawned on the one-worker runtime",
            "pipeline of 64 GETs",
            Run::Multi(op_hop_pipeline, op_raw_pipeline, BATCHES),
        ),
        (
            "one MGET of the 64 entries and their stamp keys, caller's connection",
            "pipeline of 64 GETs",
            Run::Multi(op_raw_merged, op_raw_pipeline, BATCHES),
        ),
    ];
    for (label, baseline, run) in parts {
        if wanted(label) {
            row(&[label, baseline], measure(run));
        }
    }

    if filter.is_none() {
        let infos = [
            ("cm_hit", cm_hit::cache_info()),
            ("cm_tagged", cm_tagged::cache_info()),
            ("cm_sync", cm_sync::cache_info()),
        ];
        for (name, info) in infos {
            assert_eq!(
                (info.misses, info.errors),
                (KEYS, 0),
                "{name}: every measured call was a hit"
            );
        }
    }
    println!();
    println!(
        "redis-server on 127.0.0.1:{}; entry value {value_len} bytes; {:.1} s",
        server.port(),
        started.elapsed().as_secs_f64()
    );
    drop(server);
}
