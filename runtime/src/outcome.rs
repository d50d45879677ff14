//! What a call or a write came to: [`Cached`] with its [`Status`], and [`SetOutcome`].

use std::fmt;
use std::time::Duration;

use crate::invalidation::Invalidation;

/// How a call was answered.
///
/// `#[non_exhaustive]`: more statuses (which level of a layered cache answered) come with the
/// features that produce them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// A stored value, or the value a concurrent caller of the same key had just computed
    /// (single flight): the function did not run for this call.
    Hit,
    /// The function ran for this call (also when the cache could not be used, e.g. a remote
    /// store that is down).
    Miss,
    /// A value past its TTL: served while a background refresh runs (`stale_while_revalidate`),
    /// or standing in for a recomputation that failed, timed out or is throttled
    /// (`stale_if_error`).
    Stale,
}

impl Status {
    /// `"HIT"`, `"MISS"` or `"STALE"`: the value of an `X-Cache` response header.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Hit => "HIT",
            Status::Miss => "MISS",
            Status::Stale => "STALE",
        }
    }

    /// Whether a fresh stored value answered the call (not [`Stale`](Status::Stale)).
    pub fn is_hit(self) -> bool {
        matches!(self, Status::Hit)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A cached function's result with how it was answered: what `f::call(..)` returns, for a web
/// handler that sets `X-Cache` and `Age` headers or a caller that logs hits.
///
/// ```
/// use cachemere::{cached, Status};
///
/// #[cached(ttl = "5m")]
/// fn price(item: u64) -> u64 { item * 100 }
///
/// let first = price::call(7);
/// assert_eq!((first.value, first.status), (700, Status::Miss));
/// assert!(first.age < std::time::Duration::from_secs(1)); // a miss: as old as the call
/// assert!(first.stored); // the policy keeps it (an `Err`/`None` would say `false`)
///
/// let again = price::call(7);
/// assert_eq!(again.status.as_str(), "HIT"); // for `X-Cache`
/// let age_header = again.age.as_secs().to_string(); // for `Age`
/// assert_eq!(again.into_value(), 700);
/// # let _ = age_header;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cached<R> {
    /// What the function returned (for this call or when the stored value was computed).
    pub value: R,
    /// Whether the value came from the cache.
    pub status: Status,
    /// How long ago the value's computation started (TTLs count from there too). On a miss
    /// from `f::call`, the time the call took (a little more than the computation: never
    /// less than the entry's real age). For a remote hit it is read from the writer's wall
    /// clock, so clocks out of step between hosts shift it (a value from the future is given
    /// age zero).
    pub age: Duration,
    /// Whether the value is in the cache: `true` for a value read from the store; for a
    /// computed value (this call's, or a concurrent caller's handed over), whether it landed.
    /// `false` for an `Err` or `None` that the policy does not store (`cache_err` /
    /// `cache_none`), for a value an invalidation (of its key, a tag or a clear) made in this
    /// process raced with (it may be older than what the invalidation hid), for one computed
    /// past its TTL, and when the store failed or was not used. A tag invalidated by another
    /// process while a remote value was computed is not seen here. Nothing downstream should keep such a
    /// value either (`HttpCaching` answers `no-store` for it).
    pub stored: bool,
}

impl<R> Cached<R> {
    /// A value the function computed for this call, just now, and stored.
    pub fn miss(value: R) -> Self {
        Cached {
            value,
            status: Status::Miss,
            age: Duration::ZERO,
            stored: true,
        }
    }

    /// A value from the cache, computed `age` ago.
    pub fn hit(value: R, age: Duration) -> Self {
        Cached {
            value,
            status: Status::Hit,
            age,
            stored: true,
        }
    }

    /// The value, without the status.
    pub fn into_value(self) -> R {
        self.value
    }

    /// Whether the value came from the cache.
    pub fn is_hit(&self) -> bool {
        self.status.is_hit()
    }

    /// The value, and the rest (status, age, whether stored) around `()`.
    fn split(self) -> (R, Cached<()>) {
        let Cached {
            value,
            status,
            age,
            stored,
        } = self;
        let outcome = Cached {
            value: (),
            status,
            age,
            stored,
        };
        (value, outcome)
    }

    /// The same status and age with the value mapped (e.g. to the body of a response).
    pub fn map<U>(self, f: impl FnOnce(R) -> U) -> Cached<U> {
        Cached {
            value: f(self.value),
            status: self.status,
            age: self.age,
            stored: self.stored,
        }
    }
}

impl<T, E> Cached<Result<T, E>> {
    /// `Ok` with the status and age, or the error: `get_user::call(id).transpose()?`.
    ///
    /// ```
    /// #[cachemere::cached]
    /// fn parse(text: &'static str) -> Result<u64, std::num::ParseIntError> { text.parse() }
    ///
    /// let cached = parse::call("42").transpose().unwrap();
    /// assert_eq!(cached.value, 42);
    /// assert!(parse::call("x").transpose().is_err());
    /// ```
    pub fn transpose(self) -> Result<Cached<T>, E> {
        let (value, outcome) = self.split();
        value.map(|value| outcome.map(|()| value))
    }
}

impl<T> Cached<Option<T>> {
    /// `Some` with the status and age, or `None`.
    pub fn transpose(self) -> Option<Cached<T>> {
        let (value, outcome) = self.split();
        value.map(|value| outcome.map(|()| value))
    }
}

/// What `f::set(.., value)` came to.
///
/// ```
/// use cachemere::{cached, Invalidation, SetOutcome};
///
/// #[cached]
/// fn load(id: u64) -> Result<String, String> {
///     Ok(format!("row {id} from the database"))
/// }
///
/// // Write-through: after writing row 7 to the database, put the new row in the cache.
/// assert_eq!(load::set(7, Ok("row 7, updated".to_owned())), SetOutcome::Stored);
/// assert_eq!(load(7).unwrap(), "row 7, updated");
///
/// // Only `Ok` is stored: an `Err` removes the entry instead, so the next call computes.
/// let outcome = load::set(7, Err("gone".to_owned()));
/// assert_eq!(outcome, SetOutcome::NotStored(Invalidation::Removed));
/// assert_eq!(load(7).unwrap(), "row 7 from the database");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SetOutcome {
    /// The value is stored: calls return it until it expires or is invalidated.
    Stored,
    /// Nothing was stored: the policy keeps no such result (an `Err`, a `None`), the store
    /// refused the value, or an invalidation of the key waits to reach a remote store. The
    /// entry the key had is invalidated instead, with this outcome (`Queued`: a remote store
    /// could not be reached; see [`Invalidation`]), so no call serves the value `set` replaced.
    NotStored(Invalidation),
}

impl SetOutcome {
    /// Whether the value is stored.
    pub fn is_stored(self) -> bool {
        matches!(self, SetOutcome::Stored)
    }
}

impl fmt::Display for SetOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetOutcome::Stored => f.write_str("stored"),
            SetOutcome::NotStored(invalidation) => {
                write!(f, "not stored; the previous entry: {invalidation}")
            }
        }
    }
}

/// Whether a call looks its key up first or recomputes it (`f::refresh`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Lookup,
    Refresh,
    /// A background refresh of a stale entry (`stale_while_revalidate`, a soft timeout).
    Revalidate,
}

/// When a stored value's computation started, in the clock of the store that holds it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WrittenAt {
    /// Monotonic nanoseconds of this process (see `clock`).
    Monotonic(u64),
    /// Milliseconds since the Unix epoch on the writer's host (a remote store).
    #[cfg(feature = "remote")]
    UnixMs(u64),
}

/// How an engine answered a call; turned into [`Cached`] only by `f::call`, so that a plain
/// call reads no clock for it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Served {
    /// Computed for this call; `stored`: the value landed in the store (not when the policy
    /// keeps no such result, an invalidation raced with the computation, or the store failed).
    Computed { stored: bool },
    /// From the store, or handed over by a concurrent computation whose value landed in it.
    Hit(WrittenAt),
    /// Handed over by a concurrent computation whose value may not be in the store (an
    /// invalidation raced with it, its write failed, or the store was not used): counted as a
    /// hit, but `stored` is false.
    Handed(WrittenAt),
    /// A stored value past its TTL (see [`Status::Stale`]).
    Stale(WrittenAt),
}

impl Served {
    pub(crate) fn hit_at(monotonic_ns: u64) -> Self {
        Served::Hit(WrittenAt::Monotonic(monotonic_ns))
    }

    /// What `f::call` returns for a call made at `called`: on a miss, the value's age is the
    /// time since then (the entry's TTL counts from its computation's start, a little later),
    /// and `stored` says whether it landed in the store.
    pub(crate) fn into_cached<R>(self, value: R, called: std::time::Instant) -> Cached<R> {
        self.observed(value, || called.elapsed())
    }

    /// A hit's [`Cached`] (the stored value, as old as its computation), read with no clock
    /// for a miss's age.
    pub(crate) fn into_hit<R>(self, value: R) -> Cached<R> {
        self.observed(value, || Duration::ZERO)
    }

    fn observed<R>(self, value: R, miss_age: impl FnOnce() -> Duration) -> Cached<R> {
        match self {
            Served::Computed { stored } => Cached {
                stored,
                value,
                status: Status::Miss,
                age: miss_age(),
            },
            Served::Hit(written_at) => Cached::hit(value, written_at.age()),
            Served::Handed(written_at) => Cached {
                stored: false,
                ..Cached::hit(value, written_at.age())
            },
            Served::Stale(written_at) => Cached {
                status: Status::Stale,
                ..Cached::hit(value, written_at.age())
            },
        }
    }
}

impl WrittenAt {
    /// How long ago this was (zero if it lies in the future: another host's clock ahead).
    pub(crate) fn age(self) -> Duration {
        match self {
            WrittenAt::Monotonic(at) => match crate::clock::precise_ns() {
                // The clock could not be read.
                u64::MAX => Duration::ZERO,
                now => Duration::from_nanos(now.saturating_sub(at)),
            },
            #[cfg(feature = "remote")]
            WrittenAt::UnixMs(at) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_millis());
                let at = u128::from(at);
                Duration::from_millis(u64::try_from(now.saturating_sub(at)).unwrap_or(u64::MAX))
            }
        }
    }
}
