//! A circuit breaker: after repeated failures a store is skipped for a cool-down, then one
//! probe is let through; its success closes the circuit, its failure opens it again.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
}

/// What the breaker says about an operation about to start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Closed,
    Probe,
    Open,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold: threshold.max(1),
            cool_down,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn cool_down(&self) -> Duration {
        self.cool_down
    }

    /// Whether the circuit is open and its cool-down not over (operations are skipped).
    pub(crate) fn is_open(&self) -> bool {
        let state = self.state();
        state.open_until.is_some_and(|until| Instant::now() < until)
    }

    /// Closes the circuit: the store was seen answering (a retried invalidation landed).
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.consecutive_failures = 0;
        state.open_until = None;
    }

    /// The circuit's state, for health reports.
    pub(crate) fn circuit(&self) -> super::Circuit {
        let state = self.state();
        match state.open_until {
            None => super::Circuit::Closed,
            Some(until) if Instant::now() < until => super::Circuit::Open {
                retry_in: until.saturating_duration_since(Instant::now()),
            },
            Some(_) => super::Circuit::HalfOpen,
        }
    }

    /// Whether an operation may go to the store now.
    pub(crate) fn admit(&self) -> Admission {
        let mut state = self.state();
        match state.open_until {
            None => Admission::Closed,
            Some(until) if Instant::now() < until => Admission::Open,
            Some(_) if state.probe_in_flight => Admission::Open,
            Some(_) => {
                state.probe_in_flight = true;
                Admission::Probe
            }
        }
    }

    /// Records an operation's outcome; returns `true` when this failure opened the circuit.
    pub(crate) fn record(&self, admission: &Admission, succeeded: bool) -> bool {
        let mut state = self.state();
        if *admission == Admission::Probe {
            state.probe_in_flight = false;
        }
        if succeeded {
            *state = State::default();
            return false;
        }
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let trips = *admission == Admission::Probe
            || (state.open_until.is_none() && state.consecutive_failures >= self.threshold);
        if trips {
            let now = Instant::now();
            state.open_until = Some(now.checked_add(self.cool_down).unwrap_or(now));
        }
        trips
    }
}

/// An admitted operation; dropped without [`Ticket::record`] (a panic, a cancellation) it
/// counts as a failure, so a probe can never leave the circuit half-open for good.
pub(crate) struct Ticket<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    recorded: bool,
}

impl Breaker {
    /// Admits an operation, or `None` while the circuit is open.
    pub(crate) fn ticket(&self) -> Option<Ticket<'_>> {
        match self.admit() {
            Admission::Open => None,
            admission => Some(Ticket {
                breaker: self,
                admission,
                recorded: false,
            }),
        }
    }
}

impl Ticket<'_> {
    /// Records the outcome; returns `true` when this failure opened the circuit.
    pub(crate) fn record(mut self, succeeded: bool) -> bool {
        self.recorded = true;
        self.breaker.record(&self.admission, succeeded)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(&self.admission, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once() {
        let breaker = Breaker::new(2, Duration::ZERO);
        let first = breaker.admit();
        assert!(!breaker.record(&first, false));
        let second = breaker.admit();
        assert!(
            breaker.record(&second, false),
            "the second failure trips it"
        );
        // Cool-down of zero: the next caller probes, the one after waits for the probe.
        let probe = breaker.admit();
        assert_eq!(probe, Admission::Probe);
        assert_eq!(breaker.admit(), Admission::Open);
        breaker.record(&probe, true);
        assert_eq!(breaker.admit(), Admission::Closed);
    }

    #[test]
    fn a_probe_dropped_unrecorded_reopens_the_circuit() {
        let breaker = Breaker::new(1, Duration::ZERO);
        let first = breaker.ticket().unwrap();
        assert!(first.record(false));
        let probe = breaker.ticket().unwrap();
        drop(probe); // as a panicking store future would
        let next = breaker.ticket().expect("a new probe after the cool-down");
        next.record(true);
        assert_eq!(breaker.admit(), Admission::Closed);
    }

    #[test]
    fn stays_open_during_cool_down() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        let only = breaker.admit();
        assert!(breaker.record(&only, false));
        assert_eq!(breaker.admit(), Admission::Open);
    }
}
