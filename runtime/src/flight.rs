//! Single flight: concurrent misses of one key wait for one computation.
//!
//! The first caller of a cold key becomes its *leader* and computes; later callers *follow* and
//! wait. When the leader finishes it hands followers the value it stored. When it stores nothing
//! (an `Err`/`None` result), panics, or (async) is dropped, its guard wakes the followers with no
//! value and one of them leads the next attempt, so nobody is stranded. The table of running
//! flights is sharded and its locks are held only to look up, insert or remove a flight, never
//! while a function runs, so different keys do not wait on each other.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use event_listener::{Event, Listener};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No user code runs under these locks; recover rather than propagate a poisoned flag.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One running computation that followers wait on.
pub(crate) struct Flight<S> {
    outcome: Mutex<Option<Option<S>>>,
    finished: Event,
}

impl<S: Clone> Flight<S> {
    fn outcome(&self) -> Option<Option<S>> {
        lock(&self.outcome).clone()
    }

    /// Blocks the thread until the leader finishes; `Some` is the value it stored.
    pub(crate) fn wait(&self) -> Option<S> {
        loop {
            let listener = self.finished.listen();
            if let Some(outcome) = self.outcome() {
                return outcome;
            }
            listener.wait();
        }
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

/// One shard of the table of running flights.
type Shard<K, S> = Mutex<HashMap<K, Arc<Flight<S>>>>;

/// The running flights of one cache.
pub(crate) struct Flights<K, S> {
    shards: Box<[Shard<K, S>]>,
    hasher: RandomState,
}

/// What a caller of a cold key does: compute, or wait.
pub(crate) enum Role<'a, K: Hash + Eq, S: Clone> {
    Leader(LeaderGuard<'a, K, S>),
    Follower(Arc<Flight<S>>),
}

impl<K: Hash + Eq, S> Flights<K, S> {
    fn shard(&self, key: &K) -> &Shard<K, S> {
        let index = (self.hasher.hash_one(key) as usize) & (self.shards.len() - 1);
        &self.shards[index]
    }
}

impl<K: Hash + Eq + Clone, S: Clone> Flights<K, S> {
    pub(crate) fn new() -> Self {
        let parallelism = std::thread::available_parallelism().map_or(4, |n| n.get());
        let shards = (parallelism * 4).next_power_of_two();
        Flights {
            shards: (0..shards).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Joins the flight for `key`, starting it if none is running.
    pub(crate) fn join(&self, key: &K) -> Role<'_, K, S> {
        let mut running = lock(self.shard(key));
        if let Some(flight) = running.get(key) {
            return Role::Follower(Arc::clone(flight));
        }
        let flight = Arc::new(Flight {
            outcome: Mutex::new(None),
            finished: Event::new(),
        });
        running.insert(key.clone(), Arc::clone(&flight));
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.clone(),
            flight,
            finished: false,
        })
    }
}

/// Held by the computing caller; finishing or dropping it releases the followers.
pub(crate) struct LeaderGuard<'a, K: Hash + Eq, S: Clone> {
    flights: &'a Flights<K, S>,
    key: K,
    flight: Arc<Flight<S>>,
    finished: bool,
}

impl<K: Hash + Eq + Clone, S: Clone> LeaderGuard<'_, K, S> {
    /// Ends the flight, handing `stored` (the value now in the store, if any) to the followers.
    pub(crate) fn finish(mut self, stored: Option<S>) {
        self.release(stored);
    }
}

impl<K: Hash + Eq, S: Clone> LeaderGuard<'_, K, S> {
    fn release(&mut self, stored: Option<S>) {
        if self.finished {
            return;
        }
        self.finished = true;
        *lock(&self.flight.outcome) = Some(stored);
        {
            let mut running = lock(self.flights.shard(&self.key));
            if running
                .get(&self.key)
                .is_some_and(|flight| Arc::ptr_eq(flight, &self.flight))
            {
                running.remove(&self.key);
            }
        }
        self.flight.finished.notify(usize::MAX);
    }
}

impl<K: Hash + Eq, S: Clone> Drop for LeaderGuard<'_, K, S> {
    fn drop(&mut self) {
        // Panicked or cancelled before finishing: wake the followers so one of them takes over.
        self.release(None);
    }
}
