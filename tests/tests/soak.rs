//! A seeded, time-bounded, model-checked soak test of "invalidation is exact", with faults
//! (also with stale-while-revalidate: a stale entry, or a background refresh, must not outlive
//! an invalidation either).
//!
//! The promise under test: once `f::invalidate(k)`, `cachemere::invalidate_tag(t)` (or
//! `invalidate_tag_async`) or `f::cache_clear()` returns, no call of `f` that *starts*
//! afterwards in this process returns a value computed from data older than that invalidation,
//! whatever happens to the store meanwhile; and every call returns (a cache failure never
//! fails a call).
//!
//! # The model
//!
//! - **Origin.** Each backend has its own origin: one version counter per key `k` in
//!   `0..KEYS`. Two cached functions of that backend, `value(k, g)` (sync) and
//!   `value_async(k, g)` (an `async fn`, called from a multi-threaded tokio runtime), return
//!   the origin's version of `k` as read when their computation starts, after sleeping a
//!   random 0-2 ms inside the computation (reading first, then sleeping, widens the race
//!   between a computation and an invalidation). `g = k % GROUPS`; entries are tagged
//!   `soak-<backend>-item:{k}` and `soak-<backend>-group:{g}` (unique per backend:
//!   `invalidate_tag` reaches every cache and every remote in the process).
//! - **Writers** (one thread, one tokio task) repeatedly pick a random action: bump key `k`
//!   then `invalidate(k)` in both caches; bump `k` then invalidate its item tag; bump every key
//!   of a group then invalidate the group tag; bump every key then `cache_clear()` both
//!   caches; bump `k` to `v` then write it through, `set(k, g, v)`, in both caches (about a
//!   fifth of the actions). Only when the invalidation (or both `set`s, whatever their
//!   [`SetOutcome`]) has *returned* do they publish, per key,
//!   `required[k] = max(required[k], version written)`: the least version any later call
//!   must see. They pause 1-15 ms between actions, so entries live long enough to be read;
//!   a third of the time an action on one key is followed, 0.1-2 ms later, by another on the
//!   same key, which lands while that key's readers are recomputing it (a `set` then races
//!   with the computations the previous action started).
//! - **Key locks.** A `set` carrying `v` that landed after the *other* writer bumped `k` to
//!   `v + 1` and published it would be a stale write by the test, not a cache bug. So a `Set`
//!   holds `k`'s lock from its bump to its publish, and every other action takes the locks of
//!   the keys it bumps for the bump alone (see [`write_loop`]); the two writers still invalidate
//!   concurrently.
//! - **Readers** (two threads, two tokio tasks) load `required[k]` *before* starting a call,
//!   call, and count a violation when the result is older. After the run, with the store up
//!   again (and the circuit breaker's cool-down over) and nothing else running, a final sweep
//!   reads every key once more through both functions against the final `required`: an old
//!   entry that survived a fault is caught there even if no reader happened to read it.
//! - **Faults** (Redis backends only), from a fault thread at seeded random times, after a
//!   healthy first third of the run (at most 1 s): `kill -9` and a restart that loses the
//!   data; `kill -9` and a restart that reloads it (the servers persist with `--appendonly
//!   yes --appendfsync always`); `CLIENT PAUSE <150-600 ms> ALL` (longer than the 100 ms
//!   operation timeout, so calls time out and the circuit breaker opens); and `CLIENT KILL
//!   TYPE normal`. A killed server is down 50-250 ms. On the cluster, a kill or a pause hits
//!   one master (restarted well within the node timeout, so it keeps its slots; it then
//!   refuses writes for Redis's 2 s writable delay, and the next fault waits for
//!   `cluster_state:ok`), and `CLIENT KILL` goes to every node. The first four faults are the
//!   four kinds in a seeded order, 100-300 ms apart, so a run of 3 s (10 s on the cluster)
//!   injects each kind at least once, which is then asserted; later faults are 1.5-3 s apart,
//!   leaving healthy spells (caching takes up to about a second to resume after a kill or a
//!   pause) in which what survived a fault can be read.
//!
//! The test fails on any violation, on a thread that panicked or a call that did not return
//! within a grace period after the deadline (the stuck thread is reported, not waited for),
//! and if it did too little to mean anything: fewer than [`MIN_READS_PER_SEC`] reads a
//! second, no sync read served from the cache, a kind of invalidation never run, no `set`
//! that stored its value, or (Redis) no fault injected.
//!
//! # Running it
//!
//! `cargo test -p cachemere-tests --test soak -- --nocapture`. `CACHEMERE_SOAK_SEED` (decimal
//! or `0x` hex) replays a seed (the schedule of actions, faults and sleeps; thread interleaving
//! is the machine's), else one is drawn from the clock; it is printed first.
//! `CACHEMERE_SOAK_SECS` sets the run per backend (default 3 s; the file then takes about
//! 20 s); `CACHEMERE_SOAK_FAULTS=0` runs the Redis backends without faults (to tell a healthy
//! store's races from a failing one's). The four backends run one after another (a lock), so
//! they do not compete for cores or see each other's tags. Each prints one `soak <backend>:`
//! line with its counts, then details: the computations, the share of sync reads served from
//! the cache per 500 ms (where the store was usable), the faults with their times, and the
//! first violations.
//!
//! Servers are killed when dropped, also on failure, and each Redis test's remote is
//! withdrawn when it ends, so later tests' tag invalidations do not try to reach a server that
//! is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachemere::redis::RedisConfig;
use cachemere::remote::Remote;
use cachemere::{SetOutcome, cached};
use cachemere_tests::redis_harness::{HarnessError, RedisCluster, RedisServer, Reply};

/// Keys of the origin.
const KEYS: u64 = 16;
/// Keys `k` with the same `k % GROUPS` share a group tag.
const GROUPS: u64 = 4;
const DEFAULT_SECS: u64 = 3;
/// How long after the deadline a thread may take to notice it (its last call included).
const GRACE: Duration = Duration::from_secs(30);
/// Reads per second of run below which the test fails: it must not pass by doing nothing.
const MIN_READS_PER_SEC: u64 = 100;
/// The Redis remotes' operation budget and circuit breaker.
const TIMEOUT: Duration = Duration::from_millis(100);
const BREAKER: (u32, Duration) = (3, Duration::from_millis(500));
/// Violations described in the report (all are counted).
const EXAMPLES: usize = 8;
/// The report's timeline of sync hits: buckets of this length (the last takes the rest).
const BUCKET: Duration = Duration::from_millis(500);
const BUCKETS: usize = 240;

// ---------------------------------------------------------------------------------------------
// Randomness: splitmix64, no dependency.

const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A splitmix64 generator.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.below(high - low + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// An independent generator for one thread or task.
    fn fork(&mut self) -> Rng {
        Rng::new(self.next())
    }
}

/// The run's seed: `CACHEMERE_SOAK_SEED`, else the clock. Printed once.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let seed = match std::env::var("CACHEMERE_SOAK_SEED") {
            Ok(text) => {
                let text = text.trim();
                let parsed = match text.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => text.parse(),
                };
                parsed.unwrap_or_else(|_| panic!("CACHEMERE_SOAK_SEED={text:?} is not a u64"))
            }
            Err(_) => mix(SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id())),
        };
        println!("soak: seed={seed:#x} (replay with CACHEMERE_SOAK_SEED={seed:#x})");
        seed
    })
}

/// The run per backend: `CACHEMERE_SOAK_SECS`, else [`DEFAULT_SECS`].
fn secs() -> u64 {
    std::env::var("CACHEMERE_SOAK_SECS").map_or(DEFAULT_SECS, |text| {
        text.trim()
            .parse()
            .ok()
            .filter(|secs| *secs > 0)
            .unwrap_or_else(|| panic!("CACHEMERE_SOAK_SECS={text:?} is not a positive integer"))
    })
}

/// Whether the Redis tests inject faults: yes unless `CACHEMERE_SOAK_FAULTS=0` (to tell the
/// races of a healthy store from those of a failing one).
fn faults_wanted() -> bool {
    std::env::var("CACHEMERE_SOAK_FAULTS").map_or(true, |value| value.trim() != "0")
}

/// A stream of its own per backend, so each backend's schedule depends only on the seed.
fn backend_seed(label: &str) -> u64 {
    let fnv = label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(seed() ^ fnv)
}

// ---------------------------------------------------------------------------------------------
// The origin and the cached functions.

fn group_of(k: u64) -> u64 {
    k % GROUPS
}

/// The data the cached functions read: a version per key, and the randomness of the sleeps
/// inside computations (shared by every computing thread, lock-free).
struct Origin {
    versions: [AtomicU64; KEYS as usize],
    jitter: AtomicU64,
    computations: AtomicU64,
}

impl Origin {
    const fn new() -> Self {
        Origin {
            versions: [const { AtomicU64::new(0) }; KEYS as usize],
            jitter: AtomicU64::new(0),
            computations: AtomicU64::new(0),
        }
    }

    fn version(&self, k: u64) -> u64 {
        self.versions[k as usize].load(SeqCst)
    }

    /// A new version of `k`, returned.
    fn bump(&self, k: u64) -> u64 {
        self.versions[k as usize].fetch_add(1, SeqCst) + 1
    }

    /// 0-2 ms (a quarter of computations do not sleep). Counts the computation.
    fn pause(&self) -> Duration {
        self.computations.fetch_add(1, SeqCst);
        let mut rng = Rng::new(self.jitter.fetch_add(GAMMA, SeqCst));
        if rng.chance(25) {
            Duration::ZERO
        } else {
            Duration::from_micros(rng.between(50, 2000))
        }
    }

    /// A computation: reads the version first, then takes its time.
    fn compute(&self, k: u64) -> u64 {
        COMPUTED_HERE.set(COMPUTED_HERE.get() + 1);
        let version = self.version(k);
        let pause = self.pause();
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        version
    }

    async fn compute_async(&self, k: u64) -> u64 {
        let version = self.version(k);
        let pause = self.pause();
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        version
    }
}

thread_local! {
    /// Sync computations run on this thread: a sync call that did not add to it was served
    /// from the cache (or by another caller's computation).
    static COMPUTED_HERE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One backend's pair of cached functions and their helpers, as plain function pointers.
#[derive(Clone, Copy)]
struct Subject {
    label: &'static str,
    origin: &'static Origin,
    call: fn(u64) -> u64,
    call_async: fn(u64) -> BoxFuture<u64>,
    /// `invalidate(k)` of the sync function's cache.
    invalidate: fn(u64),
    /// `invalidate(k)` of the async function's cache.
    invalidate_async: fn(u64) -> BoxFuture<()>,
    clear: fn(),
    clear_async: fn() -> BoxFuture<()>,
    /// `set(k, g, v)` (write-through) in the sync function's cache.
    set: fn(u64, u64) -> SetOutcome,
    /// `set(k, g, v)` in the async function's cache.
    set_async: fn(u64, u64) -> BoxFuture<SetOutcome>,
    item_tag: fn(u64) -> String,
    group_tag: fn(u64) -> String,
}

/// A module `$module` with the origin and cached functions of one backend; `$item` and
/// `$group` are the tags (`{k}` and `{g}`), also used to build the tags invalidated. The
/// argument names come from the caller, as the tags' placeholders do (macro hygiene).
macro_rules! subject {
    ($module:ident, $label:literal, [$($backend:tt)*], ($k:ident, $g:ident), $item:tt, $group:tt) => {
        mod $module {
            use super::*;

            static ORIGIN: Origin = Origin::new();

            #[cached($($backend)*, tags = [$item, $group])]
            fn value($k: u64, $g: u64) -> u64 {
                debug_assert_eq!($g, group_of($k));
                ORIGIN.compute($k)
            }

            #[cached($($backend)*, tags = [$item, $group])]
            async fn value_async($k: u64, $g: u64) -> u64 {
                debug_assert_eq!($g, group_of($k));
                ORIGIN.compute_async($k).await
            }

            // The helpers' results are ignored with `let _`, which compiles whether they
            // return `bool` and `()` or an outcome type.
            #[allow(clippy::let_unit_value)]
            pub(super) fn subject() -> Subject {
                Subject {
                    label: $label,
                    origin: &ORIGIN,
                    call: |k| value(k, group_of(k)),
                    call_async: |k| Box::pin(value_async(k, group_of(k))),
                    invalidate: |k| {
                        let _ = value::invalidate(k, group_of(k));
                    },
                    invalidate_async: |k| {
                        Box::pin(async move {
                            let _ = value_async::invalidate(k, group_of(k)).await;
                        })
                    },
                    clear: || {
                        let _ = value::cache_clear();
                    },
                    clear_async: || {
                        Box::pin(async {
                            let _ = value_async::cache_clear().await;
                        })
                    },
                    set: |k, v| value::set(k, group_of(k), v),
                    set_async: |k, v| Box::pin(value_async::set(k, group_of(k), v)),
                    item_tag: |$k| format!($item, $k = $k),
                    group_tag: |$g| format!($group, $g = $g),
                }
            }
        }
    };
}

/// A remote slot: where a Redis test puts its remote, and the `fn() -> Remote` its functions
/// name in `remote = ..`. Not a `OnceLock`: the test takes its remote out when it ends (see
/// [`Withdraw`]).
macro_rules! remote_slot {
    ($slot:ident, $getter:ident) => {
        static $slot: RwLock<Option<Remote>> = RwLock::new(None);
        fn $getter() -> Remote {
            $slot
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .expect("the soak sets its remote before the first call")
        }
    };
}

remote_slot!(SINGLE_REMOTE, single_remote);
remote_slot!(CLUSTER_REMOTE, cluster_remote);

subject!(
    memory_subject,
    "memory",
    [backend = "memory"],
    (k, g),
    "soak-memory-item:{k}",
    "soak-memory-group:{g}"
);
subject!(
    moka_subject,
    "moka",
    [backend = "moka"],
    (k, g),
    "soak-moka-item:{k}",
    "soak-moka-group:{g}"
);
subject!(
    redis_subject,
    "redis",
    [backend = "redis", remote = single_remote],
    (k, g),
    "soak-redis-item:{k}",
    "soak-redis-group:{g}"
);
// Stale-while-revalidate: with a 5 ms TTL most reads find their entry stale, are answered
// with it and start a background refresh, so refreshes race with every kind of invalidation
// (a stale entry, or a refresh's value, served after an invalidation returned is a violation).
subject!(
    memory_fresh_subject,
    "memory-stale-while-revalidate",
    [
        backend = "memory",
        ttl = "5ms",
        stale_while_revalidate = "1h"
    ],
    (k, g),
    "soak-memory-swr-item:{k}",
    "soak-memory-swr-group:{g}"
);
remote_slot!(FRESH_REMOTE, fresh_remote);
subject!(
    redis_fresh_subject,
    "redis-stale-while-revalidate",
    [
        backend = "redis",
        remote = fresh_remote,
        ttl = "5ms",
        stale_while_revalidate = "1h"
    ],
    (k, g),
    "soak-redis-swr-item:{k}",
    "soak-redis-swr-group:{g}"
);
subject!(
    cluster_subject,
    "redis-cluster",
    [backend = "redis", remote = cluster_remote],
    (k, g),
    "soak-redis-cluster-item:{k}",
    "soak-redis-cluster-group:{g}"
);

/// Puts a remote in its slot, and takes it out when dropped: cachemere holds the remotes it
/// invalidates tags in weakly, so once this (normally last) strong reference goes, later
/// tests' `invalidate_tag` calls no longer try its server, dead by then.
struct Withdraw(&'static RwLock<Option<Remote>>);

impl Withdraw {
    fn install(slot: &'static RwLock<Option<Remote>>, remote: Remote) -> Self {
        *slot.write().unwrap_or_else(PoisonError::into_inner) = Some(remote);
        Withdraw(slot)
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

// ---------------------------------------------------------------------------------------------
// The model: what every call must see, and the counts.

const FAULT_NAMES: [&str; 5] = ["kill", "kill-persist", "pause", "client-kill", "kill-lossy"];

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// SIGKILL, then a restart that has lost every key.
    Kill = 0,
    /// SIGKILL, then a restart that reloads what was written (AOF, fsync always).
    KillPersist = 1,
    /// `CLIENT PAUSE <ms> ALL`.
    Pause = 2,
    /// `CLIENT KILL TYPE normal`.
    ClientKill = 3,
    /// The AOF stops (`CONFIG SET appendonly no`) while writes go on for a while, then SIGKILL
    /// and a restart that reloads the AOF: the server comes back without writes it
    /// acknowledged (invalidations among them), as under `save` snapshots. Single node only:
    /// the restart check that handles it runs on single-node connections (the README says so).
    KillLossy = 4,
}

const FAULTS: [Fault; 5] = [
    Fault::Kill,
    Fault::KillPersist,
    Fault::Pause,
    Fault::ClientKill,
    Fault::KillLossy,
];

#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    reads_async: AtomicU64,
    invalidations_key: AtomicU64,
    invalidations_tag: AtomicU64,
    clears: AtomicU64,
    /// `Set` actions (two `set` calls each), and the calls that returned `NotStored`.
    sets: AtomicU64,
    sets_not_stored: AtomicU64,
    faults: [AtomicU64; 5],
    violations: AtomicU64,
    final_violations: AtomicU64,
}

struct Model {
    /// Per key: the least version a call that starts now must return.
    required: [AtomicU64; KEYS as usize],
    /// Per key: held by a `Set` from its bump to its publish, and by any other action for its
    /// bump (see [`write_loop`]). Tokio's, so the async writer can hold one across an
    /// `.await`; the sync writer takes them with `blocking_lock`.
    key_locks: [tokio::sync::Mutex<()>; KEYS as usize],
    /// Per key: `version << 8 | cause` of the publish that last raised `required` (an index
    /// in [`CAUSES`]), for the report.
    required_by: [AtomicU64; KEYS as usize],
    started: Instant,
    deadline: Instant,
    stop: AtomicBool,
    counts: Counts,
    examples: Mutex<Vec<String>>,
    /// The violation with the largest lag (versions behind), described.
    worst: Mutex<(u64, String)>,
    /// What the fault thread did, when, and how long it took.
    fault_log: Mutex<Vec<String>>,
    /// Per [`BUCKET`] of the run: sync reads, and how many of them were served from the cache.
    timeline: [(AtomicU64, AtomicU64); BUCKETS],
}

impl Model {
    fn new(run: Duration) -> Self {
        let started = Instant::now();
        Model {
            required: [const { AtomicU64::new(0) }; KEYS as usize],
            key_locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
            required_by: [const { AtomicU64::new(0) }; KEYS as usize],
            started,
            deadline: started + run,
            stop: AtomicBool::new(false),
            counts: Counts::default(),
            examples: Mutex::new(Vec::new()),
            worst: Mutex::new((0, String::new())),
            fault_log: Mutex::new(Vec::new()),
            timeline: [const { (AtomicU64::new(0), AtomicU64::new(0)) }; BUCKETS],
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(SeqCst) || Instant::now() >= self.deadline
    }

    fn required(&self, k: u64) -> u64 {
        self.required[k as usize].load(SeqCst)
    }

    /// The locks of `keys` (ascending, so two writers cannot deadlock), from the sync writer.
    fn lock_keys_blocking(&self, keys: &[u64]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        keys.iter()
            .map(|&k| self.key_locks[k as usize].blocking_lock())
            .collect()
    }

    /// The locks of `keys` (ascending), from the async writer.
    async fn lock_keys(&self, keys: &[u64]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut guards = Vec::with_capacity(keys.len());
        for &k in keys {
            guards.push(self.key_locks[k as usize].lock().await);
        }
        guards
    }

    /// Counts one `set` call's outcome; returns it.
    fn count_set(&self, outcome: SetOutcome) -> SetOutcome {
        if !outcome.is_stored() {
            self.counts.sets_not_stored.fetch_add(1, SeqCst);
        }
        outcome
    }

    /// After an invalidation (or a write-through) of these `(key, version written)` returned;
    /// `cause` indexes [`CAUSES`].
    fn publish(&self, written: &[(u64, u64)], cause: usize) {
        for &(k, version) in written {
            if self.required[k as usize].fetch_max(version, SeqCst) < version {
                self.required_by[k as usize].fetch_max(version << 8 | cause as u64, SeqCst);
            }
        }
    }

    /// What published `required` for `k`, if it is still the last publish.
    fn cause(&self, k: u64, required: u64) -> &'static str {
        let by = self.required_by[k as usize].load(SeqCst);
        if by >> 8 == required {
            CAUSES[(by & 0xff) as usize]
        } else {
            "?"
        }
    }

    /// Judges one call of `k` that started when `required` was current.
    fn check(&self, who: &str, k: u64, required: u64, got: u64) -> bool {
        if got >= required {
            return true;
        }
        let violations = self.counts.violations.fetch_add(1, SeqCst) + 1;
        let describe = || {
            format!(
                "#{violations} at {:.3}s: {who} read key {k} = version {got}, but an invalidation \
                 that returned before the call required >= {required} (published by: {})",
                self.started.elapsed().as_secs_f64(),
                self.cause(k, required)
            )
        };
        let mut examples = self.examples.lock().unwrap_or_else(PoisonError::into_inner);
        if examples.len() < EXAMPLES {
            examples.push(describe());
        }
        drop(examples);
        let mut worst = self.worst.lock().unwrap_or_else(PoisonError::into_inner);
        if required - got > worst.0 {
            *worst = (required - got, describe());
        }
        false
    }

    /// Sleeps up to `duration`, in slices, until the run stops.
    fn sleep(&self, duration: Duration) {
        let until = Instant::now() + duration;
        while !self.stopped() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            std::thread::sleep(left.min(Duration::from_millis(20)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Readers and writers.

fn read_loop(subject: Subject, model: &Model, mut rng: Rng, who: &str) {
    while !model.stopped() {
        let k = rng.below(KEYS);
        let required = model.required(k);
        let computed = COMPUTED_HERE.get();
        let got = (subject.call)(k);
        model.counts.reads.fetch_add(1, SeqCst);
        let bucket = (model.started.elapsed().as_nanos() / BUCKET.as_nanos()) as usize;
        let (reads, hits) = &model.timeline[bucket.min(BUCKETS - 1)];
        reads.fetch_add(1, SeqCst);
        if COMPUTED_HERE.get() == computed {
            hits.fetch_add(1, SeqCst);
        }
        model.check(who, k, required, got);
        if rng.chance(10) {
            std::thread::sleep(Duration::from_micros(rng.between(20, 300)));
        }
    }
}

async fn read_loop_async(subject: Subject, model: Arc<Model>, mut rng: Rng, who: String) {
    while !model.stopped() {
        let k = rng.below(KEYS);
        let required = model.required(k);
        let got = (subject.call_async)(k).await;
        model.counts.reads_async.fetch_add(1, SeqCst);
        model.check(&who, k, required, got);
        if rng.chance(10) {
            tokio::time::sleep(Duration::from_micros(rng.between(20, 300))).await;
        } else {
            tokio::task::yield_now().await;
        }
    }
}

/// What published a key's `required` (for the report): the action, and for a `Set` the outcomes
/// of its two calls, sync first.
const CAUSES: [&str; 7] = [
    "invalidate",
    "item tag",
    "group tag",
    "clear",
    "set, both stored",
    "set, one not stored (queued)",
    "set, one not stored (not queued)",
];

/// The [`CAUSES`] index of an action, with its `set` outcomes.
fn cause(action: Action, outcomes: [SetOutcome; 2]) -> usize {
    match action {
        Action::Key(_) => 0,
        Action::ItemTag(_) => 1,
        Action::GroupTag(_) => 2,
        Action::Clear => 3,
        Action::Set(_) => match outcomes {
            [SetOutcome::Stored, SetOutcome::Stored] => 4,
            _ if outcomes.contains(&SetOutcome::NotStored(cachemere::Invalidation::Queued)) => 5,
            _ => 6,
        },
    }
}

/// One writer action: what it bumps and how it invalidates (or writes through).
#[derive(Clone, Copy, Debug)]
enum Action {
    Key(u64),
    ItemTag(u64),
    GroupTag(u64),
    Clear,
    /// Bump `k` to `v`, then `set(k, g, v)` in both caches.
    Set(u64),
}

impl Action {
    /// A random action; a third of the time, right after an action on one key, that key again
    /// (a hot key updated twice in a row: its readers are recomputing it when the second
    /// invalidation or write-through comes).
    fn pick(rng: &mut Rng, last: Option<Action>) -> Self {
        if let Some(Action::Key(k) | Action::ItemTag(k) | Action::Set(k)) = last
            && rng.chance(33)
        {
            return match rng.below(3) {
                0 => Action::Key(k),
                1 => Action::ItemTag(k),
                _ => Action::Set(k),
            };
        }
        // With the repeats, about: key 28%, set 19%, item tag 31%, group tag 21%, clear 1.5%.
        match rng.below(100) {
            0..26 => Action::Key(rng.below(KEYS)),
            26..40 => Action::Set(rng.below(KEYS)),
            40..70 => Action::ItemTag(rng.below(KEYS)),
            70..98 => Action::GroupTag(rng.below(GROUPS)),
            _ => Action::Clear,
        }
    }

    /// The keys the action bumps, ascending (the order their locks are taken in).
    fn keys(self) -> Vec<u64> {
        match self {
            Action::Key(k) | Action::ItemTag(k) | Action::Set(k) => vec![k],
            Action::GroupTag(g) => (0..KEYS).filter(|k| group_of(*k) == g).collect(),
            Action::Clear => (0..KEYS).collect(),
        }
    }

    /// Bumps the origin of every key the action covers; returns `(key, new version)`.
    fn bump(self, origin: &Origin) -> Vec<(u64, u64)> {
        self.keys()
            .into_iter()
            .map(|k| (k, origin.bump(k)))
            .collect()
    }

    /// Whether the action keeps its keys locked until it has published (see [`write_loop`]).
    fn locks_to_publish(self) -> bool {
        matches!(self, Action::Set(_))
    }

    fn count(self, counts: &Counts) {
        let counter = match self {
            Action::Key(_) => &counts.invalidations_key,
            Action::ItemTag(_) | Action::GroupTag(_) => &counts.invalidations_tag,
            Action::Clear => &counts.clears,
            Action::Set(_) => &counts.sets,
        };
        counter.fetch_add(1, SeqCst);
    }
}

/// Between two writer actions: mostly 1-15 ms, so that an entry lives long enough (tens of
/// ms) to be read several times before the next invalidation of its key replaces it; before
/// a repeat on the same key, 0.1-2 ms, about as long as the computations it races with.
fn writer_pause(rng: &mut Rng, next: Action, last: Action) -> Duration {
    let repeat = matches!(
        (next, last),
        (
            Action::Key(a) | Action::ItemTag(a) | Action::Set(a),
            Action::Key(b) | Action::ItemTag(b) | Action::Set(b),
        ) if a == b
    );
    if repeat {
        Duration::from_micros(rng.between(100, 2000))
    } else {
        Duration::from_micros(rng.between(1000, 15_000))
    }
}

/// The sync writer: blocking helpers, and the async cache's helpers run to completion on the
/// runtime from this thread.
///
/// # Why the check stays sound with `Set` and two writers
///
/// A `Set(k)` that bumps `k` to `v` publishes `v` once both its `set`s have returned, whatever
/// their outcome. From then on a call must return `>= v`: the entry holds `v` (or a later
/// version); a computation of `k` that was running when a `set` landed (it may have read the
/// origin before the bump) stores nothing over it, the crate's promise; a computation that
/// starts later reads the origin after the bump; and a `set` that could not write invalidated
/// the key instead (`NotStored`), which is the invalidation promise the soak already checks.
///
/// What the crate cannot promise is that `v` survives an *older* write by the test: the other
/// writer's `set` of `v - 1`, or a bump of `k` to `v + 1` by the other writer, published
/// before our `set` of `v` lands (its invalidation, done, cannot remove a value written after
/// it). The key lock rules both out: a `Set` holds `k`'s lock from its bump through both
/// `set`s to its publish, and every action takes the locks of the keys it bumps for the bump.
/// So the versions of `k` are bumped, and written through, in the order the lock is taken:
/// a version above `v` is bumped only after `v` was written, and the action that bumped it
/// then invalidates (or writes through) after that, as a single writer would.
///
/// The other actions hold the locks for their bump only, and a `Set`'s publish waits for
/// nothing but its own two `set`s: not for the other writer's invalidations in flight. One of
/// those whose bump came before ours wrote `v' < v`; it may land before our `set` (then `v` is
/// stored) or after it (then `v` is removed or hidden, and the next call recomputes from the
/// origin, `>= v`): either way no call returns less than `v`, and its publish of `v'` changes
/// nothing (`fetch_max`). Holding the locks across invalidations would only serialise the
/// writers, whose concurrent invalidations are part of what the soak races.
#[allow(clippy::let_unit_value)]
fn write_loop(subject: Subject, model: &Model, mut rng: Rng, runtime: &tokio::runtime::Handle) {
    let mut last = None;
    while !model.stopped() {
        let action = Action::pick(&mut rng, last);
        if let Some(last) = last {
            std::thread::sleep(writer_pause(&mut rng, action, last));
        }
        last = Some(action);
        let mut locked = model.lock_keys_blocking(&action.keys());
        let written = action.bump(subject.origin);
        if !action.locks_to_publish() {
            locked.clear();
        }
        let mut outcomes = [SetOutcome::Stored; 2];
        match action {
            Action::Key(k) => {
                (subject.invalidate)(k);
                runtime.block_on((subject.invalidate_async)(k));
            }
            Action::ItemTag(k) => {
                let _ = cachemere::invalidate_tag(&(subject.item_tag)(k));
            }
            Action::GroupTag(g) => {
                let _ = cachemere::invalidate_tag(&(subject.group_tag)(g));
            }
            Action::Clear => {
                (subject.clear)();
                runtime.block_on((subject.clear_async)());
            }
            Action::Set(k) => {
                let v = written[0].1;
                outcomes = [
                    model.count_set((subject.set)(k, v)),
                    model.count_set(runtime.block_on((subject.set_async)(k, v))),
                ];
            }
        }
        model.publish(&written, cause(action, outcomes));
        drop(locked);
        action.count(&model.counts);
    }
}

/// The async writer: a task; the sync cache's helpers run in `block_in_place`. It takes the
/// key locks as [`write_loop`] does (tokio's locks: held across `.await`s and
/// `block_in_place`, never a std lock).
#[allow(clippy::let_unit_value)]
async fn write_loop_async(subject: Subject, model: Arc<Model>, mut rng: Rng) {
    let mut last = None;
    while !model.stopped() {
        let action = Action::pick(&mut rng, last);
        if let Some(last) = last {
            tokio::time::sleep(writer_pause(&mut rng, action, last)).await;
        }
        last = Some(action);
        let mut locked = model.lock_keys(&action.keys()).await;
        let written = action.bump(subject.origin);
        if !action.locks_to_publish() {
            locked.clear();
        }
        let mut outcomes = [SetOutcome::Stored; 2];
        match action {
            Action::Key(k) => {
                (subject.invalidate_async)(k).await;
                tokio::task::block_in_place(|| (subject.invalidate)(k));
            }
            Action::ItemTag(k) => {
                let _ = cachemere::invalidate_tag_async(&(subject.item_tag)(k)).await;
            }
            Action::GroupTag(g) => {
                let _ = cachemere::invalidate_tag_async(&(subject.group_tag)(g)).await;
            }
            Action::Clear => {
                (subject.clear_async)().await;
                tokio::task::block_in_place(subject.clear);
            }
            Action::Set(k) => {
                let v = written[0].1;
                let set_async = model.count_set((subject.set_async)(k, v).await);
                let set = model.count_set(tokio::task::block_in_place(|| (subject.set)(k, v)));
                outcomes = [set, set_async];
            }
        }
        model.publish(&written, cause(action, outcomes));
        drop(locked);
        action.count(&model.counts);
    }
}

// ---------------------------------------------------------------------------------------------
// Faults.

/// The Redis a test injects faults into.
enum Target {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Target {
    /// The kinds of fault this target takes.
    fn kinds(&self) -> &'static [Fault] {
        match self {
            Target::Single(_) => &FAULTS,
            Target::Cluster(_) => &FAULTS[..4],
        }
    }

    fn nodes(&self) -> &[RedisServer] {
        match self {
            Target::Single(server) => std::slice::from_ref(server),
            Target::Cluster(cluster) => cluster.nodes(),
        }
    }

    fn node_mut(&mut self, i: usize) -> &mut RedisServer {
        match self {
            Target::Single(server) => server,
            Target::Cluster(cluster) => &mut cluster.nodes_mut()[i],
        }
    }

    /// After a node restarted: the cluster agrees it is whole again.
    fn settle(&self) -> Result<(), HarnessError> {
        match self {
            Target::Single(_) => Ok(()),
            Target::Cluster(cluster) => cluster.wait_ok(),
        }
    }

    /// Injects `fault`; returns what was done (for the report).
    fn inject(&mut self, fault: Fault, rng: &mut Rng) -> Result<String, HarnessError> {
        let node = rng.below(self.nodes().len() as u64) as usize;
        let name = FAULT_NAMES[fault as usize];
        match fault {
            Fault::Kill | Fault::KillPersist => {
                let down = Duration::from_millis(rng.between(50, 250));
                let server = self.node_mut(node);
                server.kill()?;
                std::thread::sleep(down);
                if matches!(fault, Fault::Kill) {
                    server.restart_empty()?;
                } else {
                    server.restart()?;
                }
                self.settle()?;
                Ok(format!("{name} node {node}, down {down:?}"))
            }
            Fault::KillLossy => {
                let lost = Duration::from_millis(rng.between(30, 200));
                let server = self.node_mut(node);
                match server.command(&["CONFIG", "SET", "appendonly", "no"])? {
                    Reply::Status(ok) if ok == "OK" => {}
                    other => {
                        return Err(HarnessError::Unexpected(format!(
                            "CONFIG SET appendonly answered {other:?}"
                        )));
                    }
                }
                std::thread::sleep(lost);
                server.kill()?;
                server.restart()?;
                self.settle()?;
                Ok(format!(
                    "{name} node {node}, the last {lost:?} of writes lost"
                ))
            }
            Fault::Pause => {
                // Longer than the operation timeout: calls time out and the breaker opens.
                let pause = Duration::from_millis(rng.between(150, 600));
                self.nodes()[node].pause(pause)?;
                Ok(format!("{name} node {node} {pause:?}"))
            }
            Fault::ClientKill => {
                for server in self.nodes() {
                    match server.command(&["CLIENT", "KILL", "TYPE", "normal"])? {
                        Reply::Integer(_) => {}
                        other => {
                            return Err(HarnessError::Unexpected(format!(
                                "CLIENT KILL answered {other:?}"
                            )));
                        }
                    }
                }
                Ok(format!("{name} (every node)"))
            }
        }
    }

    /// Leaves every node answering: no pause in effect.
    fn unpause(&self) -> Result<(), HarnessError> {
        for server in self.nodes() {
            server.command(&["CLIENT", "UNPAUSE"])?;
        }
        Ok(())
    }
}

/// Injects faults until the run stops; hands the target back (up and answering).
fn fault_loop(mut target: Target, model: &Model, mut rng: Rng) -> Result<Target, String> {
    // Every kind first, in a seeded order (Fisher-Yates), then at random.
    let kinds = target.kinds();
    let mut order = kinds.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // A healthy spell first (a third of the run, at most 1 s): the races of a working store.
    model.sleep(
        (model.deadline - model.started)
            .div_f64(3.0)
            .min(Duration::from_secs(1)),
    );
    let mut injected = 0;
    loop {
        // Short gaps until each kind has run once; then longer healthy spells, in which
        // entries that survived a fault can be read.
        let gap = if injected < order.len() {
            rng.between(100, 300)
        } else {
            rng.between(1500, 3000)
        };
        model.sleep(Duration::from_millis(gap));
        if model.stopped() {
            break;
        }
        let fault = order
            .get(injected)
            .copied()
            .unwrap_or_else(|| kinds[rng.below(kinds.len() as u64) as usize]);
        let at = model.started.elapsed();
        let what = target
            .inject(fault, &mut rng)
            .map_err(|error| format!("injecting {fault:?}: {error}"))?;
        model.counts.faults[fault as usize].fetch_add(1, SeqCst);
        model
            .fault_log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!(
                "{:.2}s {what} ({:.0?})",
                at.as_secs_f64(),
                model.started.elapsed() - at
            ));
        injected += 1;
    }
    target
        .unpause()
        .map_err(|error| format!("unpausing: {error}"))?;
    Ok(target)
}

// ---------------------------------------------------------------------------------------------
// Running one backend.

/// The threads and tasks of one run. Dropping it (on failure too) stops the run and joins
/// whatever finishes within the grace period.
struct Crew {
    model: Arc<Model>,
    runtime: Option<tokio::runtime::Runtime>,
    threads: Vec<(String, JoinHandle<()>)>,
    tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
    faults: Option<JoinHandle<Result<Target, String>>>,
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

impl Crew {
    fn all_finished(&self) -> bool {
        self.threads.iter().all(|(_, thread)| thread.is_finished())
            && self.tasks.iter().all(|(_, task)| task.is_finished())
            && self.faults.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the run to end (at most [`GRACE`] past the deadline), joins everything that
    /// finished and returns what went wrong, and the fault target back.
    fn finish(&mut self) -> (Vec<String>, Option<Target>) {
        let hard_deadline = self.model.deadline.max(Instant::now()) + GRACE;
        while !self.all_finished() && Instant::now() < hard_deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.model.stop.store(true, SeqCst);
        let mut problems = Vec::new();
        for (name, thread) in std::mem::take(&mut self.threads) {
            if !thread.is_finished() {
                problems.push(format!("{name}: a call did not return within {GRACE:?}"));
            } else if let Err(payload) = thread.join() {
                problems.push(format!("{name} panicked: {}", panic_message(&*payload)));
            }
        }
        let runtime = self.runtime.as_ref().expect("the runtime lives as long");
        for (name, task) in std::mem::take(&mut self.tasks) {
            if !task.is_finished() {
                problems.push(format!("{name}: a call did not return within {GRACE:?}"));
                task.abort();
            } else if let Err(error) = runtime.block_on(task) {
                let why = if error.is_panic() {
                    panic_message(&*error.into_panic())
                } else {
                    error.to_string()
                };
                problems.push(format!("{name} failed: {why}"));
            }
        }
        let mut target = None;
        if let Some(faults) = self.faults.take() {
            if !faults.is_finished() {
                problems.push(format!("faults: not done within {GRACE:?}"));
            } else {
                match faults.join() {
                    Ok(Ok(returned)) => target = Some(returned),
                    Ok(Err(error)) => problems.push(format!("faults: {error}")),
                    Err(payload) => {
                        problems.push(format!("faults panicked: {}", panic_message(&*payload)));
                    }
                }
            }
        }
        (problems, target)
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.model.stop.store(true, SeqCst);
        if !self.all_finished() || !self.threads.is_empty() || !self.tasks.is_empty() {
            let _ = self.finish();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// One test at a time (taken before any server starts): the backends do not compete for the
/// cores, nor meet each other's tags.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Soaks one backend; `faults` for the Redis ones.
fn soak(subject: Subject, faults: Option<Target>) {
    let label = subject.label;
    let secs = secs();
    let mut rng = Rng::new(backend_seed(label));
    subject.origin.jitter.store(rng.next(), SeqCst);
    println!("soak {label}: starting, seed={:#x} secs={secs}", seed());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a multi-thread runtime");
    let handle = runtime.handle().clone();

    // Every key once through both functions (connects, registers the remote).
    for k in 0..KEYS {
        (subject.call)(k);
        handle.block_on((subject.call_async)(k));
    }

    let computations_before = subject.origin.computations.load(SeqCst);

    let model = Arc::new(Model::new(Duration::from_secs(secs)));
    let mut crew = Crew {
        model: Arc::clone(&model),
        runtime: Some(runtime),
        threads: Vec::new(),
        tasks: Vec::new(),
        faults: None,
    };
    // Without faults the target is only kept up (dropping it would kill the servers).
    let (faults, mut idle_target) = if faults_wanted() {
        (faults, None)
    } else {
        (None, faults)
    };
    let has_faults = faults.is_some();
    let fault_kinds = faults.as_ref().map_or(0, |target| target.kinds().len());
    // A run this long injects every kind at least once: a restarted cluster node refuses
    // writes for 2 s (Redis's writable delay), so each kill costs the cluster about 2.3 s.
    let every_kind_from = match &faults {
        Some(Target::Cluster(_)) => 10,
        _ => DEFAULT_SECS,
    };
    let spawn = |name: String, work: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.clone())
            .spawn(work)
            .map(|thread| (name, thread))
            .expect("a thread")
    };
    for i in 0..2 {
        let (m, r) = (Arc::clone(&model), rng.fork());
        let who = format!("sync reader {i}");
        let name = who.clone();
        crew.threads.push(spawn(
            name,
            Box::new(move || read_loop(subject, &m, r, &who)),
        ));
    }
    {
        let (m, r, h) = (Arc::clone(&model), rng.fork(), handle.clone());
        crew.threads.push(spawn(
            "sync writer".into(),
            Box::new(move || write_loop(subject, &m, r, &h)),
        ));
    }
    for i in 0..2 {
        let name = format!("async reader {i}");
        let task = handle.spawn(read_loop_async(
            subject,
            Arc::clone(&model),
            rng.fork(),
            name.clone(),
        ));
        crew.tasks.push((name, task));
    }
    let task = handle.spawn(write_loop_async(subject, Arc::clone(&model), rng.fork()));
    crew.tasks.push(("async writer".into(), task));
    if let Some(target) = faults {
        let (m, r) = (Arc::clone(&model), rng.fork());
        let thread = std::thread::Builder::new()
            .name("faults".into())
            .spawn(move || fault_loop(target, &m, r))
            .expect("a thread");
        crew.faults = Some(thread);
    }

    let (problems, mut target) = crew.finish();
    target = target.or_else(|| idle_target.take());
    let ran = model.started.elapsed();
    let computations = subject.origin.computations.load(SeqCst) - computations_before;

    // The final sweep: nothing runs, the store is up; give the breaker its cool-down.
    if problems.is_empty() {
        if has_faults {
            std::thread::sleep(BREAKER.1 + Duration::from_millis(100));
        }
        for k in 0..KEYS {
            let required = model.required(k);
            let got = (subject.call)(k);
            let got_async = handle.block_on((subject.call_async)(k));
            for (who, got) in [
                ("final sweep (sync)", got),
                ("final sweep (async)", got_async),
            ] {
                if !model.check(who, k, required, got) {
                    model.counts.final_violations.fetch_add(1, SeqCst);
                }
            }
        }
    }
    drop(target);
    drop(crew);

    let c = &model.counts;
    let load = |counter: &AtomicU64| counter.load(SeqCst);
    let reads = load(&c.reads) + load(&c.reads_async);
    let faults: Vec<u64> = c.faults.iter().map(load).collect();
    let violations = load(&c.violations);
    println!(
        "soak {label}: seed={:#x} secs={secs} reads={reads} invalidations(key/tag/clear)={}/{}/{} \
         sets={} (calls not stored {} of {}) faults(kill/kill-persist/pause/client-kill/kill-lossy)={}/{}/{}/{}/{} violations={violations}",
        seed(),
        load(&c.invalidations_key),
        load(&c.invalidations_tag),
        load(&c.clears),
        load(&c.sets),
        load(&c.sets_not_stored),
        2 * load(&c.sets),
        faults[0],
        faults[1],
        faults[2],
        faults[3],
        faults[4],
    );
    println!(
        "soak {label} detail: ran {ran:.2?}; reads sync/async {}/{}, computations {computations} \
         (so at least {} served from the cache); violations in the run {}, in the final sweep {}",
        load(&c.reads),
        load(&c.reads_async),
        reads.saturating_sub(computations),
        violations - load(&c.final_violations),
        load(&c.final_violations),
    );
    let buckets = (u128::from(secs) * 1_000_000_000)
        .div_ceil(BUCKET.as_nanos())
        .min(BUCKETS as u128) as usize;
    let (sync_hits, timeline): (u64, Vec<String>) = model.timeline[..buckets].iter().fold(
        (0, Vec::new()),
        |(total, mut timeline), (reads, hits)| {
            let (reads, hits) = (load(reads), load(hits));
            timeline.push(format!("{}", hits * 100 / reads.max(1)));
            (total + hits, timeline)
        },
    );
    println!(
        "soak {label} sync hits: {sync_hits} of {}; % per {BUCKET:?}: {}",
        load(&c.reads),
        timeline.join(" ")
    );
    let fault_log = model
        .fault_log
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join("; ");
    if !fault_log.is_empty() {
        println!("soak {label} faults: {fault_log}");
    }
    let examples = model
        .examples
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for example in &examples {
        println!("soak {label} violation {example}");
    }
    let worst = model
        .worst
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if worst.0 > 0 {
        println!(
            "soak {label} largest lag ({} versions behind): {}",
            worst.0, worst.1
        );
    }

    assert!(
        problems.is_empty(),
        "soak {label}: the run did not end cleanly (seed {:#x}): {problems:#?}",
        seed()
    );
    assert_eq!(
        violations,
        0,
        "soak {label}: {violations} calls returned data older than an invalidation that had \
         returned before they started (seed {:#x}); first: {examples:#?}",
        seed()
    );
    let min_reads = MIN_READS_PER_SEC * secs;
    assert!(
        reads >= min_reads && load(&c.reads) > 0 && load(&c.reads_async) > 0,
        "soak {label}: only {reads} reads (sync {}, async {}) in {secs} s; at least {min_reads} expected",
        load(&c.reads),
        load(&c.reads_async),
    );
    assert!(
        sync_hits > 0,
        "soak {label}: no sync call was served from the cache, so none could be stale"
    );
    assert!(
        load(&c.invalidations_key) > 0 && load(&c.invalidations_tag) > 0 && load(&c.clears) > 0,
        "soak {label}: every kind of invalidation must have run"
    );
    assert!(
        load(&c.sets_not_stored) < 2 * load(&c.sets),
        "soak {label}: no write-through stored its value ({} sets)",
        load(&c.sets)
    );
    if has_faults {
        let total: u64 = faults.iter().sum();
        assert!(total > 0, "soak {label}: no fault was injected");
        if secs >= every_kind_from {
            for (name, count) in FAULT_NAMES.iter().zip(&faults).take(fault_kinds) {
                assert!(*count > 0, "soak {label}: no {name} fault was injected");
            }
        }
    }
}

fn redis_config(config: RedisConfig, prefix: &str) -> Remote {
    config
        .prefix(prefix)
        .timeout(TIMEOUT)
        .circuit_breaker(BREAKER.0, BREAKER.1)
        .build()
        .unwrap_or_else(|error| panic!("{error}"))
}

#[test]
fn memory() {
    let _serial = serial();
    soak(memory_subject::subject(), None);
}

#[test]
fn moka() {
    let _serial = serial();
    soak(moka_subject::subject(), None);
}

#[test]
fn redis_single_node() {
    let _serial = serial();
    let server = RedisServer::start_persistent()
        .unwrap_or_else(|error| panic!("could not start redis-server: {error}"));
    let remote = redis_config(RedisConfig::new(server.url()), "soak-redis");
    let _withdraw = Withdraw::install(&SINGLE_REMOTE, remote);
    soak(redis_subject::subject(), Some(Target::Single(server)));
}

#[test]
fn memory_stale_while_revalidate() {
    let _serial = serial();
    soak(memory_fresh_subject::subject(), None);
}

#[test]
fn redis_stale_while_revalidate() {
    let _serial = serial();
    let server = RedisServer::start_persistent()
        .unwrap_or_else(|error| panic!("could not start redis-server: {error}"));
    let remote = redis_config(RedisConfig::new(server.url()), "soak-redis-swr");
    let _withdraw = Withdraw::install(&FRESH_REMOTE, remote);
    soak(redis_fresh_subject::subject(), Some(Target::Single(server)));
}

#[test]
fn redis_cluster() {
    let _serial = serial();
    let cluster = RedisCluster::start_persistent()
        .unwrap_or_else(|error| panic!("could not start a Redis Cluster: {error}"));
    let remote = redis_config(RedisConfig::cluster(cluster.urls()), "soak-redis-cluster");
    let _withdraw = Withdraw::install(&CLUSTER_REMOTE, remote);
    soak(cluster_subject::subject(), Some(Target::Cluster(cluster)));
}
