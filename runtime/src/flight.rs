//! Single flight: concurrent misses of one key wait for one computation.
//!
//! The first caller of a cold key becomes its *leader* and computes; later callers *follow* and
//! wait. When the leader finishes it hands followers the entry it stored. When it stores nothing
//! (an `Err`/`None` result, or an invalidation raced with it), panics, or (async) is dropped, its
//! guard wakes the followers with no entry and one of them leads the next attempt, so nobody is
//! stranded. The table of running flights is sharded and its locks are held only to look up,
//! insert or remove a flight, never while a function runs, so different keys do not wait on each
//! other.
//!
//! A leader that calls its own function with the same key (directly or through other functions,
//! on its thread or inside its future's poll) would wait on itself. Each thread records the
//! flights it is leading while their computation runs; a call that would follow one of them
//! computes instead.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::hash::{BuildHasher, Hash};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use event_listener::{Event, Listener};

use crate::hashing::RandomState;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks; recover rather than propagate a poisoned flag.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One running computation that followers wait on.
pub(crate) struct Flight<S> {
    /// Set once by the leader: `Some` is the entry it stored, `None` that followers must retry.
    /// Behind a lock, not a `OnceLock`, so that a value that is `Send` but not `Sync` can be
    /// handed over: followers clone it one at a time.
    outcome: Mutex<Option<Option<S>>>,
    finished: Event,
    /// Whether anyone joined as a follower; read and written under the shard lock, so the
    /// leader can skip waking nobody (most misses have no followers).
    followed: AtomicBool,
}

impl<S> Flight<S> {
    fn new() -> Self {
        Flight {
            outcome: Mutex::new(None),
            finished: Event::new(),
            followed: AtomicBool::new(false),
        }
    }
}

impl<S: Clone> Flight<S> {
    /// Blocks the thread until the leader finishes; `Some` is the entry it stored.
    pub(crate) fn wait(&self) -> Option<S> {
        loop {
            let listener = self.finished.listen();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            listener.wait();
        }
    }

    /// The leader's outcome, once set.
    fn outcome(&self) -> Option<Option<S>> {
        lock(&self.outcome).clone()
    }

    /// Waits without blocking the executor until the leader finishes.
    pub(crate) async fn wait_async(&self) -> Option<S> {
        loop {
            let listener = self.finished.listen();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            listener.await;
        }
    }
}

/// An identity of a flight, for the per-thread record of flights being led.
fn flight_id<S>(flight: &Arc<Flight<S>>) -> usize {
    Arc::as_ptr(flight) as *const () as usize
}

thread_local! {
    /// The flights whose computation is running on this thread (their leader's closure, or
    /// their leader's future being polled).
    static LEADING: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Whether this thread is inside the computation of `flight`.
pub(crate) fn led_by_this_thread<S>(flight: &Arc<Flight<S>>) -> bool {
    let id = flight_id(flight);
    LEADING
        .try_with(|leading| leading.borrow().contains(&id))
        .unwrap_or(false)
}

/// Records a flight as being led on this thread until dropped.
struct LeadingMark(usize);

impl LeadingMark {
    fn enter(id: usize) -> Self {
        let _ = LEADING.try_with(|leading| leading.borrow_mut().push(id));
        LeadingMark(id)
    }
}

impl Drop for LeadingMark {
    fn drop(&mut self) {
        let _ = LEADING.try_with(|leading| {
            let mut leading = leading.borrow_mut();
            if let Some(position) = leading.iter().rposition(|id| *id == self.0) {
                leading.remove(position);
            }
        });
    }
}

/// One shard of the table of running flights.
type Shard<K, S> = Mutex<ShardState<K, S>>;

/// The running flights of one shard, and a finished flight nobody followed, kept for the next
/// leader of the shard: most misses have no follower, and reusing its allocation saves each
/// of them an allocation and a free.
struct ShardState<K, S> {
    running: HashMap<K, Arc<Flight<S>>, RandomState>,
    spare: Option<Arc<Flight<S>>>,
}

/// The running flights of one cache.
pub(crate) struct Flights<K, S> {
    shards: Box<[Shard<K, S>]>,
    hasher: RandomState,
}

/// What a caller of a cold key does: compute, or wait.
pub(crate) enum Role<'a, K: Hash + Eq, S> {
    Leader(LeaderGuard<'a, K, S>),
    Follower(Arc<Flight<S>>),
}

impl<K: Hash + Eq, S> Flights<K, S> {
    fn shard(&self, key: &K) -> &Shard<K, S> {
        let index = (self.hasher.hash_one(key) as usize) & (self.shards.len() - 1);
        &self.shards[index]
    }
}

impl<K: Hash + Eq + Clone, S> Flights<K, S> {
    pub(crate) fn new() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        let shards = (parallelism * 2).next_power_of_two().clamp(4, 64);
        Flights {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(ShardState {
                        running: HashMap::with_hasher(RandomState::default()),
                        spare: None,
                    })
                })
                .collect(),
            hasher: RandomState::default(),
        }
    }

    /// Joins the flight for `key`, starting it if none is running.
    pub(crate) fn join(&self, key: &K) -> Role<'_, K, S> {
        let mut shard = lock(self.shard(key));
        let ShardState { running, spare } = &mut *shard;
        // One probe of the table for both outcomes (the key is cloned to be kept either way:
        // a follower's clone is the rare case).
        let flight = match running.entry(key.clone()) {
            Entry::Occupied(running) => {
                let flight = running.get();
                flight.followed.store(true, Ordering::Relaxed);
                return Role::Follower(Arc::clone(flight));
            }
            Entry::Vacant(vacant) => {
                let flight = spare.take().unwrap_or_else(|| Arc::new(Flight::new()));
                Arc::clone(vacant.insert(flight))
            }
        };
        drop(shard);
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.clone(),
            flight,
            finished: false,
        })
    }
}

/// Held by the computing caller; finishing or dropping it releases the followers.
pub(crate) struct LeaderGuard<'a, K: Hash + Eq, S> {
    flights: &'a Flights<K, S>,
    key: K,
    flight: Arc<Flight<S>>,
    finished: bool,
}

impl<K: Hash + Eq, S> LeaderGuard<'_, K, S> {
    /// Ends the flight, handing `stored` (the entry now in the store, if any) to the followers.
    pub(crate) fn finish(mut self, stored: Option<S>) {
        self.release(stored);
    }

    /// Whether another caller is waiting for this flight so far: if not, a leader need not
    /// prepare a value to hand over (a caller joining later finds no value and reads the store).
    pub(crate) fn is_followed(&self) -> bool {
        self.flight.followed.load(Ordering::Relaxed)
    }

    /// Runs the leader's computation with this flight recorded as led by this thread.
    pub(crate) fn lead<R>(&self, compute: impl FnOnce() -> R) -> R {
        let _mark = LeadingMark::enter(flight_id(&self.flight));
        compute()
    }

    /// Wraps the leader's future so that each poll records this flight as led by the thread.
    pub(crate) fn lead_async<F: Future>(&self, compute: F) -> LeadingFuture<F> {
        LeadingFuture {
            id: flight_id(&self.flight),
            inner: Box::pin(compute),
        }
    }

    fn release(&mut self, stored: Option<S>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let followed = {
            // Unpublish and set the outcome together, so that a caller either finds this flight
            // with its outcome or does not find it (the outcome is set only if someone
            // followed: nobody else can read it).
            let mut shard = lock(self.flights.shard(&self.key));
            let ShardState { running, spare } = &mut *shard;
            // Ours is the only flight of the key while it runs; put back any other (none).
            if let Some((key, flight)) = running.remove_entry(&self.key)
                && !Arc::ptr_eq(&flight, &self.flight)
            {
                running.insert(key, flight);
            }
            // No follower can join once the flight is unpublished, so this is final.
            let followed = self.flight.followed.load(Ordering::Relaxed);
            if followed {
                *lock(&self.flight.outcome) = Some(stored);
            } else if spare.is_none() {
                // Nobody followed: no one else holds it (followers clone it only after setting
                // `followed`, under this lock), no one listened and its outcome was never set,
                // so it is as new. This guard's clone is dropped once it returns (a finished
                // guard no longer reads it).
                *spare = Some(Arc::clone(&self.flight));
            }
            followed
        };
        if followed {
            self.flight.finished.notify(usize::MAX);
        }
    }
}

impl<K: Hash + Eq, S> Drop for LeaderGuard<'_, K, S> {
    fn drop(&mut self) {
        // Panicked or cancelled before finishing: wake the followers so one of them takes over.
        self.release(None);
    }
}

/// A leader's future, recording its flight as led by the polling thread during each poll.
pub(crate) struct LeadingFuture<F> {
    id: usize,
    inner: Pin<Box<F>>,
}

impl<F: Future> Future for LeadingFuture<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _mark = LeadingMark::enter(self.id);
        self.inner.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leader<'a>(flights: &'a Flights<u64, u64>, key: u64) -> LeaderGuard<'a, u64, u64> {
        match flights.join(&key) {
            Role::Leader(guard) => guard,
            Role::Follower(_) => panic!("no flight of {key} was running"),
        }
    }

    #[test]
    fn a_flight_nobody_followed_is_reused_and_a_followed_one_is_not() {
        let flights = Flights::<u64, u64>::new();
        let first = leader(&flights, 1);
        let reused = Arc::as_ptr(&first.flight);
        first.finish(Some(10));
        let spare = lock(flights.shard(&1)).spare.as_ref().map(Arc::as_ptr);
        assert_eq!(spare, Some(reused), "kept as the shard's spare");
        let second = leader(&flights, 1);
        assert_eq!(Arc::as_ptr(&second.flight), reused, "the spare was taken");
        let Role::Follower(follower) = flights.join(&1) else {
            panic!("the second flight is running");
        };
        second.finish(Some(20));
        assert_eq!(follower.wait(), Some(20), "its follower got its outcome");
        let third = leader(&flights, 1);
        assert!(
            !Arc::ptr_eq(&third.flight, &follower),
            "a flight a follower still holds is not handed to a new leader"
        );
        assert_eq!(*lock(&third.flight.outcome), None);
        drop(third);
    }
}
