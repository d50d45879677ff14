//! Invalidations that could not reach a remote store yet: kept, deduplicated per key, retried
//! oldest first in the background until they land, and consulted by every read meanwhile so
//! that this process never serves what they hide.
//!
//! Each pending invalidation is one key to overwrite with something fresh: a new random stamp
//! (a tag, a clear, or the remote-wide stamp) or a tombstone (`invalidate(args)`). Any fresh
//! write supersedes an older one of the same key, so one item per key is enough, and an
//! invalidation repeated while its key is pending only marks the item as newer (a write of it
//! already in flight then does not count as landing it).
//!
//! The queue is bounded. When it is full, everything in it is replaced by one write of the
//! remote-wide stamp, read with every entry, which hides every entry of the remote for every
//! process: coarser than what was asked, never less.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// What a pending invalidation writes at its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Overwrite {
    /// A fresh random stamp (tags, clears, the remote-wide stamp).
    Stamp,
    /// A fresh tombstone (the entry of `invalidate(args)`).
    Tombstone,
}

/// One invalidation to write again.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    pub(crate) key: String,
    pub(crate) overwrite: Overwrite,
    pub(crate) ttl: Duration,
    /// Bumped whenever the same key is invalidated again.
    pub(crate) seq: u64,
}

#[derive(Default)]
struct State {
    items: HashMap<String, Item>,
    /// Keys, oldest first (a key appears once).
    order: VecDeque<String>,
    next_seq: u64,
    /// Whether a background task is draining the queue.
    draining: bool,
}

/// The pending invalidations of one remote.
pub(crate) struct Pending {
    state: Mutex<State>,
    /// `items.len()`, readable without the lock: reads check it first, so a remote with nothing
    /// pending costs a read one atomic load.
    count: AtomicUsize,
    limit: usize,
    /// The remote-wide stamp key, what a full queue collapses into, and its TTL.
    all_key: String,
    all_ttl: Duration,
}

/// Pending invalidations of every remote: reads check it first, so a process with nothing
/// pending anywhere pays one atomic load.
static ANYWHERE: AtomicUsize = AtomicUsize::new(0);

/// Whether any remote of this process has an invalidation waiting.
#[inline]
pub(crate) fn any() -> bool {
    ANYWHERE.load(Ordering::SeqCst) != 0
}

/// What [`Pending::push`] asks of the caller.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Kept; a drain is already running.
    Kept,
    /// Kept; start the drain.
    StartDraining,
    /// The queue was full: it now holds only the remote-wide stamp (a drain runs already).
    Collapsed,
}

impl Pending {
    pub(crate) fn new(limit: usize, all_key: String, all_ttl: Duration) -> Self {
        Pending {
            state: Mutex::new(State::default()),
            count: AtomicUsize::new(0),
            limit: limit.max(1),
            all_key,
            all_ttl,
        }
    }

    /// Publishes the number of items (here and in [`ANYWHERE`]).
    fn set_count(&self, count: usize) {
        let before = self.count.swap(count, Ordering::SeqCst);
        if count > before {
            ANYWHERE.fetch_add(count - before, Ordering::SeqCst);
        } else {
            ANYWHERE.fetch_sub(before - count, Ordering::SeqCst);
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many invalidations are waiting.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The sequence number the next push will get: a write started now that lands supersedes
    /// every item of its key numbered below it.
    pub(crate) fn mark(&self) -> u64 {
        self.state().next_seq
    }

    /// Keeps an invalidation of `key` to retry.
    pub(crate) fn push(&self, key: String, overwrite: Overwrite, ttl: Duration) -> Pushed {
        let mut state = self.state();
        let seq = state.next_seq;
        state.next_seq += 1;
        let mut collapsed = false;
        if let Some(item) = state.items.get_mut(&key) {
            item.seq = seq;
            item.ttl = item.ttl.max(ttl);
        } else {
            if state.items.len() >= self.limit {
                // Full: one remote-wide stamp hides everything the queue held, and this too.
                state.items.clear();
                state.order.clear();
                collapsed = true;
            }
            let (key, overwrite, ttl) = if collapsed {
                (self.all_key.clone(), Overwrite::Stamp, self.all_ttl)
            } else {
                (key, overwrite, ttl)
            };
            state.order.push_back(key.clone());
            state.items.insert(
                key.clone(),
                Item {
                    key,
                    overwrite,
                    ttl,
                    seq,
                },
            );
        }
        self.set_count(state.items.len());
        let start = !state.draining;
        state.draining = true;
        match (collapsed, start) {
            (true, _) => Pushed::Collapsed,
            (false, true) => Pushed::StartDraining,
            (false, false) => Pushed::Kept,
        }
    }

    /// Whether an invalidation of one of `keys` is waiting: a read of them must not be served.
    #[inline]
    pub(crate) fn hides(&self, keys: &[String]) -> bool {
        if self.count.load(Ordering::SeqCst) == 0 {
            return false;
        }
        let state = self.state();
        keys.iter().any(|key| state.items.contains_key(key))
    }

    /// The oldest `most` items, to write.
    pub(crate) fn oldest(&self, most: usize) -> Vec<Item> {
        let state = self.state();
        state
            .order
            .iter()
            .take(most)
            .filter_map(|key| state.items.get(key).cloned())
            .collect()
    }

    /// A write of `key` started at `mark` (see [`mark`](Self::mark)) landed: the item of that
    /// key is done unless it was invalidated again since. The remote-wide stamp lands every
    /// item older than it.
    pub(crate) fn landed(&self, key: &str, mark: u64) {
        let mut state = self.state();
        if state.items.is_empty() {
            return;
        }
        if key == self.all_key {
            state.items.retain(|_, item| item.seq >= mark);
        } else if state.items.get(key).is_some_and(|item| item.seq < mark) {
            state.items.remove(key);
        }
        let State { items, order, .. } = &mut *state;
        order.retain(|key| items.contains_key(key));
        self.set_count(state.items.len());
    }

    /// Forgets that a drain runs (it ended, finished or not): the next push starts one.
    pub(crate) fn abandon_draining(&self) {
        self.state().draining = false;
    }

    /// Ends a drain if nothing is left; `false` if items arrived (keep draining).
    pub(crate) fn finish_draining(&self) -> bool {
        let mut state = self.state();
        if state.items.is_empty() {
            state.draining = false;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(1);

    fn pending(limit: usize) -> Pending {
        Pending::new(limit, "p:#all".to_owned(), TTL)
    }

    #[test]
    fn one_item_per_key_oldest_first() {
        let pending = pending(10);
        assert_eq!(
            pending.push("a".into(), Overwrite::Stamp, TTL),
            Pushed::StartDraining
        );
        assert_eq!(
            pending.push("b".into(), Overwrite::Tombstone, TTL),
            Pushed::Kept
        );
        assert_eq!(
            pending.push("a".into(), Overwrite::Stamp, TTL),
            Pushed::Kept
        );
        assert_eq!(pending.len(), 2);
        let keys: Vec<String> = pending.oldest(10).into_iter().map(|i| i.key).collect();
        assert_eq!(keys, ["a", "b"]);
        assert!(pending.hides(&["x".into(), "b".into()]));
        assert!(!pending.hides(&["x".into()]));
    }

    #[test]
    fn a_write_started_before_a_repeat_does_not_land_it() {
        let pending = pending(10);
        pending.push("a".into(), Overwrite::Stamp, TTL);
        let before_repeat = pending.mark();
        pending.push("a".into(), Overwrite::Stamp, TTL);
        pending.landed("a", before_repeat);
        assert_eq!(
            pending.len(),
            1,
            "invalidated again after that write started"
        );
        pending.landed("a", pending.mark());
        assert_eq!(pending.len(), 0);
        assert!(pending.finish_draining());
    }

    #[test]
    fn a_full_queue_collapses_into_the_remote_wide_stamp() {
        let pending = pending(2);
        pending.push("a".into(), Overwrite::Tombstone, TTL);
        pending.push("b".into(), Overwrite::Stamp, TTL);
        assert_eq!(
            pending.push("c".into(), Overwrite::Stamp, TTL),
            Pushed::Collapsed
        );
        let items = pending.oldest(10);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key, "p:#all");
        assert!(pending.hides(&["anything".into(), "p:#all".into()]));
        pending.push("d".into(), Overwrite::Stamp, TTL);
        let mark = pending.mark();
        pending.landed("p:#all", mark);
        assert_eq!(
            pending.len(),
            0,
            "the remote-wide stamp supersedes older items"
        );
    }
}
