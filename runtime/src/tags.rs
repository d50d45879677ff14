//! Tag invalidation by epochs.
//!
//! Every tag hashes to one of a fixed number of slots, each holding an epoch counter. An entry
//! records, when its computation starts, the slot and epoch of each of its tags;
//! [`invalidate_tag`] bumps the tag's slot. A read compares the recorded epochs with the current
//! ones, so invalidation costs one atomic increment whatever the number of entries, and memory
//! stays fixed whatever the number of tags. Two tags that share a slot invalidate each other's
//! entries (an extra miss, never a stale value); with 65,536 slots that is rare.

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::invalidation::Invalidation;

const SLOTS: usize = 1 << 16;

// 64-bit epochs: a slot would need 2^64 invalidations to come back to an old epoch.
static EPOCHS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

/// The epoch of one tag's slot, recorded in an entry when its computation started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagStamp {
    slot: u32,
    epoch: u64,
}

impl TagStamp {
    /// Records the current epoch of the tag written by `tag` (formatted without allocating).
    pub fn of(tag: fmt::Arguments<'_>) -> Self {
        let slot = slot_of(tag);
        TagStamp {
            slot: slot as u32,
            epoch: EPOCHS[slot].load(Ordering::Acquire),
        }
    }

    /// Whether the tag has not been invalidated since this stamp was taken.
    #[inline]
    pub fn is_current(&self) -> bool {
        EPOCHS[self.slot as usize].load(Ordering::Acquire) == self.epoch
    }
}

/// FNV-1a over the formatted bytes: stable, cheap, and fed piecewise by `fmt::Write`.
struct Fnv1a(u64);

impl fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        Ok(())
    }
}

fn slot_of(tag: fmt::Arguments<'_>) -> usize {
    let mut hasher = Fnv1a(0xcbf2_9ce4_8422_2325);
    // Writing into Fnv1a cannot fail; a user's Display impl that returns Err only ends the tag early.
    let _ = hasher.write_fmt(tag);
    (hasher.0 as usize) & (SLOTS - 1)
}

/// Hides every entry carrying `tag`: in every cache of this process and, with a remote
/// backend, in every remote installed or used in this process, for every process sharing it.
///
/// The remote part blocks for at most each remote's operation timeout; from async code use
/// [`invalidate_tag_async`]. A remote that cannot be reached gets the invalidation later: it is
/// kept and retried in the background, this process does not serve the tagged entries
/// meanwhile, and the call returns [`Invalidation::Queued`] (else
/// [`Invalidation::Applied`]). A process that only invalidates (never calls a remote-cached
/// function) must install its remote first (`RedisConfig::install`).
///
/// Entries are not visited: the tag's epoch moves on and each entry that recorded the old epoch
/// reads as a miss from then on. The call costs the same whether one entry or a million carry
/// the tag. A computation already running when the tag is invalidated stores its value with the
/// old epoch, so that value is not served either.
///
/// ```
/// #[cachemere::cached(tags = ["user:{id}"])]
/// fn user_name(id: u64) -> String {
///     format!("user {id}")
/// }
///
/// user_name(42);
/// user_name(42);
/// assert_eq!(user_name::cache_info().hits, 1);
/// cachemere::invalidate_tag("user:42");
/// user_name(42);
/// assert_eq!(user_name::cache_info().misses, 2);
/// ```
pub fn invalidate_tag(tag: &str) -> Invalidation {
    invalidate_local_tag(tag);
    #[cfg(feature = "remote")]
    let outcome = crate::remote::invalidate_tag_everywhere(tag);
    #[cfg(not(feature = "remote"))]
    let outcome = Invalidation::Applied;
    tag_invalidated(outcome)
}

/// The async form of [`invalidate_tag`]: reaches remote stores without blocking the executor.
///
/// ```
/// # async fn demo() {
/// cachemere::invalidate_tag_async("user:42").await;
/// # }
/// ```
pub async fn invalidate_tag_async(tag: &str) -> Invalidation {
    invalidate_local_tag(tag);
    #[cfg(feature = "remote")]
    let outcome = crate::remote::invalidate_tag_everywhere_async(tag).await;
    #[cfg(not(feature = "remote"))]
    let outcome = Invalidation::Applied;
    tag_invalidated(outcome)
}

/// Reports a tag invalidation (never the tag: it is built from arguments).
fn tag_invalidated(outcome: Invalidation) -> Invalidation {
    crate::observe::invalidated(
        crate::observe::EVERY_CACHE,
        crate::observe::Scope::Tag,
        outcome,
    )
}

fn invalidate_local_tag(tag: &str) {
    let slot = slot_of(format_args!("{tag}"));
    EPOCHS[slot].fetch_add(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_and_plain_tags_share_a_slot() {
        let id = 42;
        assert_eq!(
            slot_of(format_args!("user:{id}")),
            slot_of(format_args!("user:42"))
        );
    }

    #[test]
    fn invalidation_moves_only_the_stamped_slot() {
        let stamp = TagStamp::of(format_args!("tags-test-a"));
        assert!(stamp.is_current());
        invalidate_tag("tags-test-a");
        assert!(!stamp.is_current());
        assert!(TagStamp::of(format_args!("tags-test-a")).is_current());
    }
}
