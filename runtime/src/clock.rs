//! The clocks of TTL checks.
//!
//! `Instant::now()` costs tens of nanoseconds on virtual machines, more than a whole cache hit
//! should. On Linux a hit reads `CLOCK_MONOTONIC_COARSE` instead: a vDSO read of the time the
//! kernel recorded at its last tick (a few nanoseconds, no system call, no thread of ours that
//! could be starved or lost in a `fork`). Its resolution is the kernel's tick, typically 1 to
//! 4 ms, and it has been seen lagging by a little more than one tick on a busy virtual
//! machine. So a hit trusts it only while the entry's expiry is more than four resolutions
//! away; closer to the expiry the precise monotonic clock decides. An entry is thus not served
//! after its TTL unless the coarse clock lags by more than four ticks. Expiry times are taken from
//! the precise clock, on the miss path, before the function runs. Elsewhere both are `Instant`.

use std::time::Duration;

#[cfg(target_os = "linux")]
mod imp {
    use std::sync::OnceLock;
    use std::time::Duration;

    /// Nanoseconds of `clock`, or `u64::MAX` if it cannot be read (callers then treat entries
    /// as expired, never as fresh).
    fn read(clock: libc::clockid_t) -> u64 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `now` is a valid, writable timespec; both clocks exist on every Linux since 2.6.32.
        let status = unsafe { libc::clock_gettime(clock, &mut now) };
        if status != 0 {
            return u64::MAX;
        }
        (now.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(now.tv_nsec as u64)
    }

    #[inline]
    pub(super) fn coarse_ns() -> u64 {
        read(libc::CLOCK_MONOTONIC_COARSE)
    }

    pub(super) fn precise_ns() -> u64 {
        read(libc::CLOCK_MONOTONIC)
    }

    pub(super) fn resolution() -> Duration {
        static RESOLUTION: OnceLock<Duration> = OnceLock::new();
        *RESOLUTION.get_or_init(|| {
            let mut resolution = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `resolution` is a valid, writable timespec.
            let status =
                unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut resolution) };
            if status != 0 {
                // Unknown: assume a slow 100 Hz tick, which only makes expiry earlier.
                return Duration::from_millis(10);
            }
            Duration::new(resolution.tv_sec as u64, resolution.tv_nsec as u32)
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    fn since_origin() -> u64 {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    #[inline]
    pub(super) fn coarse_ns() -> u64 {
        since_origin()
    }

    pub(super) fn precise_ns() -> u64 {
        since_origin()
    }

    pub(super) fn resolution() -> Duration {
        Duration::ZERO
    }
}

/// The resolution of the coarse clock that TTL checks read on a hit (the kernel's tick on
/// Linux; zero elsewhere, where the precise clock is used). Entries closer than four resolutions
/// to their expiry are checked against the precise clock.
///
/// ```
/// assert!(cachemere::clock_resolution() < std::time::Duration::from_secs(1));
/// ```
pub fn clock_resolution() -> Duration {
    imp::resolution()
}

/// Monotonic nanoseconds, cheap and up to [`clock_resolution`] behind.
#[inline]
pub(crate) fn coarse_ns() -> u64 {
    imp::coarse_ns()
}

/// Monotonic nanoseconds, precise (used on the miss path and for logs).
pub(crate) fn precise_ns() -> u64 {
    imp::precise_ns()
}

/// Whether the precise-clock deadline `until` (nanoseconds) is still ahead, read on a hit: the
/// coarse clock when the deadline is more than four of its resolutions away, the precise one
/// closer to it.
/// `coarse_now` is the coarse clock, already read by the caller.
#[cfg(feature = "remote")]
#[inline]
pub(crate) fn before_at(coarse_now: u64, until: u64) -> bool {
    static SLACK_NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let slack = *SLACK_NS.get_or_init(|| {
        u64::try_from(clock_resolution().as_nanos())
            .unwrap_or(u64::MAX)
            .saturating_mul(4)
    });
    coarse_now.saturating_add(slack) < until || precise_ns() < until
}
