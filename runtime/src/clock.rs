//! A coarse monotonic clock for TTL checks on the hit path.
//!
//! `Instant::now()` costs tens of nanoseconds on virtual machines, more than a whole cache hit
//! should. A background thread (`cachemere-clock`, started by the first cache that has a TTL)
//! advances a shared millisecond counter every [`TICK`]; a hit reads one atomic.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often the coarse clock advances: its resolution.
///
/// An entry can be served for at most about one tick after its TTL has run out (longer only if
/// the operating system does not schedule the clock thread for a while).
pub const TICK: Duration = Duration::from_millis(1);

static ORIGIN: OnceLock<Instant> = OnceLock::new();
static COARSE_MS: AtomicU64 = AtomicU64::new(0);
static TICKING: OnceLock<bool> = OnceLock::new();

fn origin() -> Instant {
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the clock's origin, read precisely (used on the miss path).
pub(crate) fn precise_ms() -> u64 {
    u64::try_from(origin().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Starts the ticking thread once; returns whether the coarse clock is running.
///
/// If the thread cannot be spawned, callers fall back to the precise clock.
pub(crate) fn start() -> bool {
    *TICKING.get_or_init(|| {
        COARSE_MS.store(precise_ms(), Ordering::Release);
        std::thread::Builder::new()
            .name("cachemere-clock".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(TICK);
                    COARSE_MS.store(precise_ms(), Ordering::Release);
                }
            })
            .is_ok()
    })
}

/// Milliseconds since the clock's origin, at most about one [`TICK`] behind.
#[inline]
pub(crate) fn coarse_ms() -> u64 {
    COARSE_MS.load(Ordering::Acquire)
}
