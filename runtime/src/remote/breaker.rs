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
            state.open_until = Some(Instant::now() + self.cool_down);
        }
        trips
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
    fn stays_open_during_cool_down() {
        let breaker = Breaker::new(1, Duration::from_secs(3600));
        let only = breaker.admit();
        assert!(breaker.record(&only, false));
        assert_eq!(breaker.admit(), Admission::Open);
    }
}
