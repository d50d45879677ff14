//! The hit front: each thread's own copies of a few entries it hits again and again, in front
//! of the store. A hit on a copy reads only memory of this thread and a few shared lines
//! nobody writes on a hit (no lock, no reader count, no frequency bit), so one hot key read
//! from every core does not bounce a cache line between them, and a hit costs no atomic
//! read-modify-write.
//!
//! # When a copy may be served
//!
//! A copy is a snapshot of a stored entry. It is served only while three things hold:
//!
//! - **Nothing hid it.** The cache bumps [`Front::hid`] *after* every operation that removes or
//!   replaces entries on purpose (`invalidate`, `cache_clear`, `set`, `refresh`, and the
//!   removals that clean up after a race), once that operation has finished with the store.
//!   A copy records the epoch read *before* the store lookup it was taken from. If the lookup
//!   saw the entry, it came before the removal, so the epoch it recorded is older than the
//!   bump, and every call that starts after the operation returned sees the copy as gone.
//! - **The store did not evict anything since** (the backend's eviction count, read the same
//!   way): what `maxsize` pushes out is not served from a copy either.
//! - **It is fresh**, judged exactly as the stored entry would be: TTL (with the same clocks)
//!   and its tags' epochs.
//!
//! What this does not need: a plain miss's insert does not bump the epoch. It only ever
//! replaces an entry that is missing, expired or of an invalidated tag (a copy of which is
//! not served either), or races with another computation of the same key, whose value
//! would have been as good.
//!
//! # Which calls use it
//!
//! Functions whose key parts and stored value are all `Copy` (integers, `char`, `bool`, plain
//! data), chosen at compile time, whose copy is at most [`MAX_COPY_BYTES`], over a store whose
//! entries change only through its cache (`Backend::ENTRIES_CHANGE_ONLY_THROUGH_THE_CACHE`:
//! the memory store). Copying them allocates nothing and runs no user code, and
//! the copy a hit returns writes nothing shared. (A value whose `Clone` allocates, or bumps a
//! shared count as `Arc` does, writes shared memory on every hit wherever it is copied from;
//! such functions, and `&str` or slice keys, go to the store on every hit, as before.) A key
//! is copied at its first hit on a thread into an empty slot, or at its second hit in a row
//! for a slot a live copy holds, so a thread that walks many keys does not keep replacing
//! copies. Each thread holds at most [`SLOTS`] copies per cache, allocated at its first copy:
//! the one allocation on a hit, once per thread and cache. A copy serves [`HITS_PER_COPY`]
//! hits, then one hit goes to the store and renews it. Threads are told apart by the stripe
//! index they own (`stats::thread_stripe`), so a thread beyond the stripes, or one whose
//! thread-locals are being destroyed, uses the store.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use equivalent::Equivalent;

use crate::cache::Entry;
use crate::stats::{stripe_count, thread_stripe};

/// Copies per thread and cache: enough for the hot keys, little memory (a slot holds a key,
/// an entry and three counts).
pub(crate) const SLOTS: usize = 32;
const _: () = assert!(SLOTS.is_power_of_two());

/// The largest copy (key, entry and counts) the front holds: bigger values go to the store, so
/// that a thread's slots stay within 32 × 160 bytes per cache.
pub(crate) const MAX_COPY_BYTES: usize = 160;

/// A copy serves this many hits in a row, then one hit goes to the store and renews it: the
/// store's eviction policy keeps seeing the key as hot (a hit on a copy is invisible to it).
const HITS_PER_COPY: u32 = 64;

/// A key as the front can hold it: without allocating (every part `Copy`).
pub trait FrontKey<K> {
    /// The owned key, copied.
    fn front_key(&self) -> K;
}

impl<K: Copy> FrontKey<K> for K {
    #[inline]
    fn front_key(&self) -> K {
        *self
    }
}

/// A thread's copy of one entry, with what it was taken under.
struct Copied<K, S, const N: usize> {
    key: K,
    entry: Entry<S, N>,
    /// [`Front::epoch`] read before the store lookup the entry came from.
    epoch: u64,
    /// The backend's eviction count read at the same time.
    evictions: u64,
    /// Hits it may still serve before one goes to the store (see [`HITS_PER_COPY`]).
    hits_left: u32,
}

/// One thread's copies of one cache.
struct Slots<K, S, const N: usize> {
    /// Allocated on the heap directly (an entry is never moved through the stack).
    copies: Box<[Option<Copied<K, S, N>>; SLOTS]>,
    /// Per slot, the hash of the key its last store hit was for: a key displaces a live copy
    /// of another only at its second store hit in a row for the slot.
    candidates: [u64; SLOTS],
}

/// The slots of the thread that owns one stripe index (see `stats::thread_stripe`).
/// Padded: each thread writes its own `RefCell`'s borrow flag on every hit, which must not
/// share a cache line with another thread's.
struct ThreadSlots<K, S, const N: usize>(CachePadded<OnceLock<RefCell<Slots<K, S, N>>>>);

// SAFETY: the `RefCell` of a stripe index is only touched by the thread that owns that index
// (`stats::thread_stripe`): one live thread at a time, and a thread that owned it let it go
// under `FREE_STRIPES`'s mutex before the next owner took it, so accesses never overlap and
// each owner sees its predecessors' writes. Values only move between threads in that way:
// `K` and `S` must be `Send`.
unsafe impl<K: Send, S: Send, const N: usize> Sync for ThreadSlots<K, S, N> {}

/// How a copy's entry is judged: exactly as the stored entry is (the cache implements it).
/// A trait rather than a closure: the judgement is inlined into the hit.
pub(crate) trait Judge<S, const N: usize> {
    /// Whether `entry` may be served now (fresh, and not due for renewal).
    fn may_serve(&self, entry: &Entry<S, N>) -> bool;
}

/// What a call that missed the front read before it goes to the store: the copy it may take
/// of what the store returns must be judged against these.
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    hash: u64,
    epoch: u64,
    evictions: u64,
}

/// The hit front of one cache (see the module docs).
pub(crate) struct Front<K, S, const N: usize> {
    /// Bumped after anything that may have hidden an entry a thread holds a copy of.
    epoch: AtomicU64,
    hasher: foldhash::fast::RandomState,
    /// Per stripe index; threads beyond them (more than twice the cores, at most 64) have no
    /// front and use the store.
    threads: Box<[ThreadSlots<K, S, N>]>,
}

impl<K, S, const N: usize> Front<K, S, N> {
    /// A front with no copies yet; with `used` false (a store that does not opt in, copies too
    /// large), one that never holds any and allocates nothing per thread.
    pub(crate) fn new(used: bool) -> Self {
        let threads = if used { stripe_count() } else { 0 };
        Front {
            epoch: AtomicU64::new(0),
            hasher: foldhash::fast::RandomState::default(),
            threads: (0..threads)
                .map(|_| ThreadSlots(CachePadded::new(OnceLock::new())))
                .collect(),
        }
    }

    /// Whether the front holds copies of `K` and entries of `S` (small enough; see
    /// [`MAX_COPY_BYTES`]). Known at compile time.
    pub(crate) const fn holds() -> bool {
        std::mem::size_of::<Copied<K, S, N>>() <= MAX_COPY_BYTES
    }

    /// This thread's slots, if it owns a stripe index and has taken a copy.
    #[inline(always)]
    fn slots(&self) -> Option<&RefCell<Slots<K, S, N>>> {
        self.threads.get(thread_stripe()?)?.0.get()
    }

    /// Says that entries may have been removed or replaced: every copy taken before is
    /// dropped. Call it after the store operation, before returning to the caller.
    #[inline]
    pub(crate) fn hid(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// A guard that calls [`hid`](Self::hid) when dropped, however its scope ends.
    pub(crate) fn hides_on_drop(&self) -> HidesOnDrop<'_, K, S, N> {
        HidesOnDrop(self)
    }
}

impl<K, S: Copy, const N: usize> Front<K, S, N> {
    /// The value of this thread's copy for `key`, if nothing hid it and `judge` (the cache,
    /// judging it as it judges the stored entry) says its entry may be served; else the
    /// ticket to take a copy of what the store returns. `evictions` is the backend's eviction
    /// count, read now (before the store lookup).
    #[inline(always)]
    pub(crate) fn lookup<Q, J>(&self, key: &Q, evictions: u64, judge: &J) -> Result<S, Ticket>
    where
        Q: ?Sized + Hash + Equivalent<K>,
        J: Judge<S, N>,
    {
        // Read before the store lookup a copy would come from (see the module docs).
        let epoch = self.epoch.load(Ordering::Acquire);
        let hash = self.hasher.hash_one(key);
        let ticket = Ticket {
            hash,
            epoch,
            evictions,
        };
        let Some(slots) = self.slots() else {
            return Err(ticket);
        };
        // Never busy (nothing under the borrow calls user code), but cheap to check.
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return Err(ticket);
        };
        let slot = &mut slots.copies[slot_of(hash)];
        if let Some(copy) = slot
            && key.equivalent(&copy.key)
        {
            if copy.hits_left == 0 {
                // Its hits are spent: this hit goes to the store and renews it.
                return Err(ticket);
            }
            if copy.epoch == epoch && copy.evictions == evictions && judge.may_serve(&copy.entry) {
                copy.hits_left -= 1;
                return Ok(*copy.entry.value());
            }
            // Hidden, evicted or stale: let go of it now, not at the next copy.
            *slot = None;
        }
        Err(ticket)
    }

    /// After a store hit that followed `ticket`: keeps a copy of `entry` for `key` if the key
    /// earned its slot.
    #[inline]
    pub(crate) fn admit(&self, ticket: Ticket, key: K, entry: &Entry<S, N>) {
        let Some(thread) = thread_stripe().and_then(|stripe| self.threads.get(stripe)) else {
            return;
        };
        let slots = thread.0.get_or_init(|| {
            RefCell::new(Slots {
                copies: empty_copies(),
                candidates: [0; SLOTS],
            })
        });
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        let index = slot_of(ticket.hash);
        // A copy of this key whose hits are spent is renewed, not kept.
        let taken = slots.copies[index].as_ref().is_some_and(|copy| {
            copy.epoch == ticket.epoch && copy.evictions == ticket.evictions && copy.hits_left > 0
        });
        if taken && slots.candidates[index] != ticket.hash {
            // A live copy of another key: this one displaces it at its next store hit.
            slots.candidates[index] = ticket.hash;
            return;
        }
        slots.candidates[index] = ticket.hash;
        slots.copies[index] = Some(Copied {
            key,
            entry: *entry,
            epoch: ticket.epoch,
            evictions: ticket.evictions,
            hits_left: HITS_PER_COPY,
        });
    }
}

/// See [`Front::hides_on_drop`].
pub(crate) struct HidesOnDrop<'a, K, S, const N: usize>(&'a Front<K, S, N>);

impl<K, S, const N: usize> Drop for HidesOnDrop<'_, K, S, N> {
    fn drop(&mut self) {
        self.0.hid();
    }
}

/// [`SLOTS`] empty copies, built on the heap.
fn empty_copies<K, S, const N: usize>() -> Box<[Option<Copied<K, S, N>>; SLOTS]> {
    let copies: Box<[Option<Copied<K, S, N>>]> = (0..SLOTS).map(|_| None).collect();
    match copies.try_into() {
        Ok(copies) => copies,
        Err(_) => unreachable!("SLOTS copies were collected"),
    }
}

#[inline(always)]
fn slot_of(hash: u64) -> usize {
    // The high bits: foldhash mixes them best.
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_copies_are_held() {
        assert!(Front::<u64, u64, 0>::holds());
        assert!(Front::<(u64, u32), (u64, u64), 2>::holds());
        assert!(!Front::<u64, [u8; 4096], 0>::holds());
    }
}
