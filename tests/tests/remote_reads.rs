//! Concurrent reads of a remote on a multi-threaded tokio runtime are merged into one
//! `get_many`; a cancelled or failing opener of a merged read strands no caller.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;

use cachemere::BackendError;
use cachemere::cached;
use cachemere::remote::{Remote, RemoteStore, StoreFuture};
use cachemere_tests::user_remote::SharedMapStore;

/// A shared map whose reads take one turn of the scheduler (as a network read would), and
/// which records the size of every read and can be told to fail them.
#[derive(Clone, Default)]
struct CountingStore {
    map: SharedMapStore,
    reads: Arc<Mutex<Vec<usize>>>,
    failing: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("told to fail")]
struct ToldToFail;

impl RemoteStore for CountingStore {
    fn get_many(&self, keys: Vec<String>) -> StoreFuture<Vec<Option<Vec<u8>>>> {
        self.reads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(keys.len());
        let failing = self.failing.load(Ordering::SeqCst);
        let read = self.map.get_many(keys);
        Box::pin(async move {
            tokio::task::yield_now().await;
            if failing {
                return Err(BackendError::Unavailable(Box::new(ToldToFail)));
            }
            read.await
        })
    }
    fn set(&self, key: String, value: Vec<u8>, ttl: Duration) -> StoreFuture<()> {
        self.map.set(key, value, ttl)
    }
    fn compare_and_set(
        &self,
        key: String,
        expected: Vec<u8>,
        value: Vec<u8>,
        ttl: Duration,
    ) -> StoreFuture<bool> {
        self.map.compare_and_set(key, expected, value, ttl)
    }
    fn delete(&self, key: String) -> StoreFuture<bool> {
        self.map.delete(key)
    }
    fn count_prefix(&self, prefix: String) -> StoreFuture<u64> {
        self.map.count_prefix(prefix)
    }
    fn describe(&self) -> String {
        "counting shared map".to_owned()
    }
}

fn store() -> &'static CountingStore {
    static STORE: OnceLock<CountingStore> = OnceLock::new();
    STORE.get_or_init(CountingStore::default)
}

fn remote() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| Remote::builder(store().clone()).prefix("reads").build())
        .clone()
}

/// The sizes of the reads since the last call.
fn reads_since() -> Vec<usize> {
    std::mem::take(&mut *store().reads.lock().unwrap_or_else(PoisonError::into_inner))
}

static COMPUTED: AtomicUsize = AtomicUsize::new(0);

#[cached(backend = "remote", remote = remote)]
async fn tenfold(x: u64) -> u64 {
    COMPUTED.fetch_add(1, Ordering::SeqCst);
    x * 10
}

/// Polls `futures` in order, in this one task, until all are done (what `join_all` does).
async fn join_in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    poll_fn(|cx| {
        for (slot, output) in pending.iter_mut().zip(&mut outputs) {
            if let Some(future) = slot
                && let Poll::Ready(value) = future.as_mut().poll(cx)
            {
                *output = Some(value);
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a multi-thread runtime")
}

/// One test, so the reads counted are this test's own.
#[test]
fn concurrent_reads_merge_and_a_cancelled_or_failing_opener_strands_no_one() {
    multi_thread().block_on(async {
        // Populate 64 keys (and let the runtime be probed).
        for x in 0..64 {
            assert_eq!(tenfold(x).await, x * 10);
        }
        assert_eq!(COMPUTED.load(Ordering::SeqCst), 64);
        reads_since();

        // 64 hits polled together: the first goes alone, the other 63 in one read.
        let before = tenfold::cache_info();
        let values = join_in_order((0..64).map(tenfold).collect()).await;
        assert_eq!(values, (0..64).map(|x| x * 10).collect::<Vec<_>>());
        assert_eq!(
            reads_since(),
            vec![3, 63 + 2],
            "63 entries and their shared clear and remote-wide stamps, once"
        );
        let after = tenfold::cache_info();
        assert_eq!((after.hits - before.hits, after.errors), (64, 0));
        assert_eq!(COMPUTED.load(Ordering::SeqCst), 64);

        // Batches are finding joiners: the next burst goes out as one read.
        let values = join_in_order((0..64).map(tenfold).collect()).await;
        assert_eq!(values, (0..64).map(|x| x * 10).collect::<Vec<_>>());
        assert_eq!(reads_since(), vec![64 + 2]);

        // A lone read opens a batch that nobody joins: reads go alone again.
        assert_eq!(tenfold(5).await, 50);
        assert_eq!(tenfold(6).await, 60);
        assert_eq!(reads_since(), vec![3, 3]);

        // The opener (second) is dropped after one poll: the joiner (third) reads alone.
        let mut first = Box::pin(tenfold(0));
        let mut opener = Box::pin(tenfold(1));
        let mut joiner = Box::pin(tenfold(2));
        poll_fn(|cx| {
            assert!(first.as_mut().poll(cx).is_pending());
            assert!(opener.as_mut().poll(cx).is_pending());
            assert!(joiner.as_mut().poll(cx).is_pending());
            Poll::Ready(())
        })
        .await;
        drop(opener);
        assert_eq!((first.await, joiner.await), (0, 20));
        assert_eq!(
            reads_since(),
            vec![3, 3],
            "the first, then the joiner alone"
        );
        assert_eq!(tenfold::cache_info().errors, 0);

        // A failing merged read: every caller counts an error and computes its value.
        store().failing.store(true, Ordering::SeqCst);
        let values = join_in_order((0..3).map(tenfold).collect()).await;
        store().failing.store(false, Ordering::SeqCst);
        assert_eq!(values, vec![0, 10, 20]);
        assert_eq!(reads_since(), vec![3, 4]);
        assert_eq!(tenfold::cache_info().errors, 3);
        assert_eq!(COMPUTED.load(Ordering::SeqCst), 67);
    });
}

fn plain_remote() -> Remote {
    static REMOTE: OnceLock<Remote> = OnceLock::new();
    REMOTE
        .get_or_init(|| {
            Remote::builder(SharedMapStore::default())
                .prefix("plain")
                .build()
        })
        .clone()
}

#[cached(backend = "remote", remote = plain_remote)]
async fn halved(x: u64) -> u64 {
    x / 2
}

/// A multi-threaded runtime built without its I/O and time drivers cannot run the timeout or a
/// store connection: the probe finds that (tokio prints the probe task's panic once) and the
/// operations go to cachemere's background runtime instead.
#[test]
fn a_runtime_without_drivers_is_served_by_the_background_runtime() {
    let bare = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("a runtime without drivers");
    bare.block_on(async {
        assert_eq!(halved(10).await, 5);
        assert_eq!(halved(10).await, 5);
    });
    let info = halved::cache_info();
    assert_eq!((info.hits, info.misses, info.errors), (1, 1, 0));
}
