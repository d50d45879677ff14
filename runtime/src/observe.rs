//! What the caches tell the outside world, written once for every backend: a `tracing` span
//! for each computation, an event for each invalidation, and (feature `metrics`) the metrics
//! recorded as they happen. Hits are not observed here: they are counted in per-thread
//! stripes and published from there (see [`metrics::publish`](crate::metrics::publish)).
//!
//! Nothing here runs on a hit. A computation with no subscriber interested costs the span's
//! disabled check (one load) and the two clock reads `compute_time` already needed.

use std::future::Future;
use std::time::Duration;

use tracing::Instrument;
use tracing::field::Empty;

use crate::clock;
use crate::invalidation::Invalidation;
use crate::outcome::Mode;
use crate::stats::Counters;

impl Mode {
    /// The `mode` field of the `compute` span.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Lookup => "lookup",
            Mode::Refresh => "refresh",
            Mode::Revalidate => "revalidate",
        }
    }
}

/// One run of a cached function's body: its span, and what is recorded when it ends.
struct Computation<'a> {
    counters: &'a Counters,
    cache: &'static str,
    mode: Mode,
    /// Precise monotonic nanoseconds (`clock`; `u64::MAX` if it could not be read): a plain
    /// subtraction at the end, not `Instant`'s `timespec` arithmetic.
    started: u64,
    span: tracing::Span,
    ended: bool,
}

impl<'a> Computation<'a> {
    fn start(counters: &'a Counters, cache: &'static str, mode: Mode) -> Self {
        // Fields are recorded when it ends; `args` only if the function opted in
        // (`trace_args = true`): arguments may be personal data.
        let span = tracing::debug_span!(
            target: "cachemere::compute",
            "compute",
            cache,
            mode = mode.as_str(),
            outcome = Empty,
            duration_ms = Empty,
            args = Empty,
        );
        Computation {
            counters,
            cache,
            mode,
            started: clock::precise_ns(),
            span,
            ended: false,
        }
    }

    /// Records how it ended: `value` (a result the policy stores), `rejected` (an `Err` or
    /// `None` it does not), `panicked` or `cancelled` (an `async` caller dropped).
    fn end(&mut self, outcome: &'static str) {
        self.ended = true;
        let elapsed = match (self.started, clock::precise_ns()) {
            (u64::MAX, _) | (_, u64::MAX) => Duration::ZERO,
            (started, now) => Duration::from_nanos(now.saturating_sub(started)),
        };
        self.counters.add_compute_time(elapsed);
        if !self.span.is_disabled() {
            self.span.record("outcome", outcome);
            self.span
                .record("duration_ms", elapsed.as_secs_f64() * 1_000.0);
        }
        record_computation(self.cache, self.mode, outcome, elapsed);
    }
}

impl Drop for Computation<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let outcome = if std::thread::panicking() {
                "panicked"
            } else {
                "cancelled"
            };
            self.end(outcome);
        }
    }
}

fn outcome_of(kept: bool) -> &'static str {
    if kept { "value" } else { "rejected" }
}

impl Counters {
    /// Runs a cached function's body inside its `compute` span, timing it.
    pub(crate) fn timed<R, S>(
        &self,
        cache: &'static str,
        mode: Mode,
        keep: fn(&R) -> Option<&S>,
        compute: impl FnOnce() -> R,
    ) -> R {
        let mut computation = Computation::start(self, cache, mode);
        // Entering a span no subscriber wants is skipped: it is most of this path's cost.
        let result = if computation.span.is_disabled() {
            compute()
        } else {
            computation.span.in_scope(compute)
        };
        computation.end(outcome_of(keep(&result).is_some()));
        result
    }

    /// The `async` form of [`timed`](Self::timed): the span is entered at each poll.
    pub(crate) async fn timed_async<R, S>(
        &self,
        cache: &'static str,
        mode: Mode,
        keep: fn(&R) -> Option<&S>,
        compute: impl Future<Output = R>,
    ) -> R {
        let mut computation = Computation::start(self, cache, mode);
        let result = compute.instrument(computation.span.clone()).await;
        computation.end(outcome_of(keep(&result).is_some()));
        result
    }
}

/// What an invalidation covered, for its event and metric.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scope {
    /// `f::invalidate(..)` (and a `set` that stores nothing).
    Key,
    /// `f::cache_clear()`.
    Clear,
    /// `invalidate_tag(..)`: every cache with that tag.
    Tag,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::Clear => "clear",
            Scope::Tag => "tag",
        }
    }
}

/// The cache label of what concerns every cache (a tag invalidation).
pub(crate) const EVERY_CACHE: &str = "*";

/// Reports an invalidation that returned `outcome`. The tag or key itself is never recorded:
/// it is built from arguments, which may be personal data.
pub(crate) fn invalidated(
    cache: &'static str,
    scope: Scope,
    outcome: Invalidation,
) -> Invalidation {
    tracing::debug!(
        target: "cachemere::invalidate",
        cache,
        scope = scope.as_str(),
        outcome = outcome.as_str(),
        "invalidated"
    );
    record_invalidation(cache, scope, outcome);
    outcome
}

#[cfg(feature = "metrics")]
fn record_computation(cache: &'static str, mode: Mode, outcome: &'static str, elapsed: Duration) {
    ::metrics::histogram!(
        crate::metrics::COMPUTE_DURATION,
        "cache" => cache,
        "mode" => mode.as_str(),
        "outcome" => outcome
    )
    .record(elapsed.as_secs_f64());
    if mode == Mode::Refresh {
        ::metrics::counter!(crate::metrics::REFRESHES, "cache" => cache, "outcome" => outcome)
            .increment(1);
    }
}

#[cfg(not(feature = "metrics"))]
fn record_computation(_: &'static str, _: Mode, _: &'static str, _: Duration) {}

#[cfg(feature = "metrics")]
fn record_invalidation(cache: &'static str, scope: Scope, outcome: Invalidation) {
    let delivery = if outcome.is_queued() {
        "queued"
    } else {
        "applied"
    };
    ::metrics::counter!(
        crate::metrics::INVALIDATIONS,
        "cache" => cache,
        "scope" => scope.as_str(),
        "outcome" => delivery
    )
    .increment(1);
}

#[cfg(not(feature = "metrics"))]
fn record_invalidation(_: &'static str, _: Scope, _: Invalidation) {}

/// Counts a failed backend operation in the `errors` metric.
#[cfg(feature = "metrics")]
pub(crate) fn record_error(cache: &'static str, operation: &'static str) {
    ::metrics::counter!(crate::metrics::ERRORS, "cache" => cache, "operation" => operation)
        .increment(1);
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn record_error(_: &'static str, _: &'static str) {}

/// Counts a failed operation of a remote store (`store` is its redacted description).
#[cfg(all(feature = "metrics", feature = "remote"))]
pub(crate) fn record_remote_error(store: &str) {
    ::metrics::counter!(crate::metrics::REMOTE_ERRORS, "store" => store.to_owned()).increment(1);
}

#[cfg(all(not(feature = "metrics"), feature = "remote"))]
pub(crate) fn record_remote_error(_: &str) {}

/// Records the arguments in the current span if it is a `compute` span of ours
/// (`trace_args = true`). When a filter left ours out, the current span is the application's
/// own, which must not be given the arguments.
#[doc(hidden)]
pub fn trace_args(args: &dyn std::fmt::Debug) {
    let span = tracing::Span::current();
    if span
        .metadata()
        .is_some_and(|meta| meta.target() == COMPUTE_TARGET && meta.name() == "compute")
    {
        span.record("args", tracing::field::debug(args));
    }
}

/// The target of the `compute` span.
const COMPUTE_TARGET: &str = "cachemere::compute";
