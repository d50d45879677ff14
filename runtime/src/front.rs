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
//! data), chosen at compile time. Copying them allocates nothing and runs no user code, and
//! the copy a hit returns writes nothing shared. (A value whose `Clone` allocates, or bumps a
//! shared count as `Arc` does, writes shared memory on every hit wherever it is copied from;
//! such functions, and `&str` or slice keys, go to the store on every hit, as before.) A key
//! is copied at its first hit on a thread into an empty slot, or at its second hit in a row
//! for a slot a live copy holds, so a thread that walks many keys does not keep replacing
//! copies. Each thread holds at most [`SLOTS`] copies per cache, allocated at its first copy:
//! the one allocation on a hit, once per thread and cache.

use std::cell::{RefCell, RefMut};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};

use equivalent::Equivalent;
use thread_local::ThreadLocal;

use crate::cache::Entry;

/// Copies per thread and cache: enough for the hot keys, little memory (a slot holds a key,
/// an entry and two counts).
pub(crate) const SLOTS: usize = 32;
const _: () = assert!(SLOTS.is_power_of_two());

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
}

/// One thread's copies of one cache.
struct Slots<K, S, const N: usize> {
    copies: [Option<Copied<K, S, N>>; SLOTS],
    /// Per slot, the hash of the key its last store hit was for: a key displaces a live copy
    /// of another only at its second store hit in a row for the slot.
    candidates: [u64; SLOTS],
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
pub(crate) struct Front<K: Send, S: Send, const N: usize> {
    /// Bumped after anything that may have hidden an entry a thread holds a copy of.
    epoch: AtomicU64,
    hasher: foldhash::fast::RandomState,
    threads: ThreadLocal<RefCell<Slots<K, S, N>>>,
}

impl<K, S, const N: usize> Front<K, S, N>
where
    K: Send,
    S: Clone + Send,
{
    pub(crate) fn new() -> Self {
        Front {
            epoch: AtomicU64::new(0),
            hasher: foldhash::fast::RandomState::default(),
            threads: ThreadLocal::new(),
        }
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

    /// This thread's copy for `key`, to be judged by the caller ([`Found::serve`] if fresh as
    /// the stored entry would be judged); else the ticket to take a copy of what the store
    /// returns. `evictions` is the backend's eviction count, read now (before the store
    /// lookup).
    #[inline(always)]
    pub(crate) fn lookup<Q>(&self, key: &Q, evictions: u64) -> Result<Found<'_, K, S, N>, Ticket>
    where
        Q: ?Sized + Hash + Equivalent<K>,
    {
        // Read before the store lookup a copy would come from (see the module docs).
        let epoch = self.epoch.load(Ordering::Acquire);
        let hash = self.hasher.hash_one(key);
        let ticket = Ticket {
            hash,
            epoch,
            evictions,
        };
        let Some(slots) = self.threads.get() else {
            return Err(ticket);
        };
        // Busy only if a value's `Clone` called back into this cache: use the store.
        let Ok(slots) = slots.try_borrow_mut() else {
            return Err(ticket);
        };
        let index = slot_of(hash);
        match &slots.copies[index] {
            Some(copy) if key.equivalent(&copy.key) => {
                if copy.epoch == epoch && copy.evictions == evictions {
                    return Ok(Found {
                        slots,
                        index,
                        ticket,
                    });
                }
                // Hidden or evicted: let go of the value now, not at the next copy.
                let mut slots = slots;
                slots.copies[index] = None;
                Err(ticket)
            }
            _ => Err(ticket),
        }
    }

    /// After a store hit that followed `ticket`: keeps a copy of `entry` for `key` if the key
    /// earned its slot.
    #[inline]
    pub(crate) fn admit(&self, ticket: Ticket, key: K, entry: &Entry<S, N>) {
        let slots = self.threads.get_or(|| {
            RefCell::new(Slots {
                copies: [const { None }; SLOTS],
                candidates: [0; SLOTS],
            })
        });
        let Ok(mut slots) = slots.try_borrow_mut() else {
            return;
        };
        let index = slot_of(ticket.hash);
        let taken = slots.copies[index]
            .as_ref()
            .is_some_and(|copy| copy.epoch == ticket.epoch && copy.evictions == ticket.evictions);
        if taken && slots.candidates[index] != ticket.hash {
            // A live copy of another key: this one displaces it at its next store hit.
            slots.candidates[index] = ticket.hash;
            return;
        }
        slots.candidates[index] = ticket.hash;
        slots.copies[index] = Some(Copied {
            key,
            entry: entry.clone(),
            epoch: ticket.epoch,
            evictions: ticket.evictions,
        });
    }
}

/// A copy that nothing hid since it was taken: served if its entry is fresh.
pub(crate) struct Found<'a, K, S, const N: usize> {
    slots: RefMut<'a, Slots<K, S, N>>,
    index: usize,
    ticket: Ticket,
}

impl<K, S: Clone, const N: usize> Found<'_, K, S, N> {
    /// The copied entry, to judge.
    #[inline(always)]
    pub(crate) fn entry(&self) -> Option<&Entry<S, N>> {
        self.slots.copies[self.index]
            .as_ref()
            .map(|copy| &copy.entry)
    }

    /// Its value, cloned.
    #[inline(always)]
    pub(crate) fn serve(&self) -> Option<S> {
        self.entry().map(|entry| entry.value().clone())
    }

    /// Drops the copy (it is stale); the ticket for the store lookup.
    #[inline]
    pub(crate) fn discard(mut self) -> Ticket {
        self.slots.copies[self.index] = None;
        self.ticket
    }
}

/// See [`Front::hides_on_drop`].
pub(crate) struct HidesOnDrop<'a, K: Send, S: Send, const N: usize>(&'a Front<K, S, N>);

impl<K: Send, S: Send, const N: usize> Drop for HidesOnDrop<'_, K, S, N> {
    fn drop(&mut self) {
        self.0.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

#[inline(always)]
fn slot_of(hash: u64) -> usize {
    // The high bits: foldhash mixes them best.
    (hash >> (64 - SLOTS.trailing_zeros())) as usize
}
