//! What an invalidation came to: [`Invalidation`].

use std::fmt;

/// The outcome of `f::invalidate(..)`, `f::cache_clear()` and
/// [`invalidate_tag`](crate::invalidate_tag).
///
/// Every outcome means the same for this process: from the moment the call returns, no call
/// here serves what the invalidation hides. The outcomes differ in what other processes see:
///
/// - [`Removed`](Self::Removed), [`Absent`](Self::Absent), [`Applied`](Self::Applied): the
///   invalidation reached every store it concerns, so every process sharing them stops serving
///   what it hides from its next read on.
/// - [`Queued`](Self::Queued): a remote store could not be reached (down, paused, circuit
///   open). The invalidation is kept in this process, retried in the background until it lands
///   (oldest first, one per key or tag), and until then this process does not serve what it
///   hides; other processes may, until it lands. Invalidations still pending when the process
///   exits are lost: call [`remote::flush_pending`](crate::remote::flush_pending) at shutdown
///   to wait for them.
///
/// A plain `f::invalidate(7);` ignores it; a service that must know acts on
/// [`is_queued`](Self::is_queued):
///
/// ```
/// use cachemere::{cached, Invalidation};
///
/// #[cached]
/// fn square(x: u64) -> u64 { x * x }
///
/// assert_eq!(square::invalidate(3), Invalidation::Absent);
/// square(3);
/// let outcome = square::invalidate(3);
/// assert_eq!(outcome, Invalidation::Removed);
/// assert!(outcome.removed() && outcome.reached_every_store());
/// assert_eq!(cachemere::invalidate_tag("nothing-tagged"), Invalidation::Applied);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Invalidation {
    /// `invalidate(..)`: an entry for these arguments was there and is gone, everywhere.
    Removed,
    /// `invalidate(..)`: there was no entry for these arguments (nothing to hide).
    Absent,
    /// A tag invalidation or a clear reached every store it concerns.
    Applied,
    /// A remote store could not be reached: kept and retried in the background; this process
    /// does not serve what it hides meanwhile.
    Queued,
}

impl Invalidation {
    /// Whether an entry was removed (`invalidate(..)` found one and the store was reached).
    pub fn removed(self) -> bool {
        self == Invalidation::Removed
    }

    /// Whether the invalidation is still waiting to reach a remote store.
    pub fn is_queued(self) -> bool {
        self == Invalidation::Queued
    }

    /// Whether every store concerned has it (the opposite of [`is_queued`](Self::is_queued)).
    pub fn reached_every_store(self) -> bool {
        !self.is_queued()
    }

    /// The outcome of two invalidations made as one (a tag over several stores): queued if
    /// either is, else applied.
    #[must_use]
    pub fn and(self, other: Invalidation) -> Invalidation {
        if self.is_queued() || other.is_queued() {
            Invalidation::Queued
        } else {
            Invalidation::Applied
        }
    }
}

impl Invalidation {
    /// `"removed"`, `"absent"`, `"applied"` or `"queued"` (also its `Display`).
    pub fn as_str(self) -> &'static str {
        match self {
            Invalidation::Removed => "removed",
            Invalidation::Absent => "absent",
            Invalidation::Applied => "applied",
            Invalidation::Queued => "queued",
        }
    }
}

impl fmt::Display for Invalidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
