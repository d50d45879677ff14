//! Concurrent reads of one remote merged into one `get_many` (one `MGET` on Redis).
//!
//! A read that finds no other read of its remote in flight is sent at once, so a lone hit pays
//! nothing. A read that arrives while one is in flight opens a batch and yields once: the reads
//! polled in the meantime (the rest of a `join_all`, other tasks on the runtime) join it, and
//! the opener then sends all their keys together and hands each its slice of the answer. While
//! batches find joiners, a read opens one even with nothing in flight, so a burst goes out as
//! one read rather than a first read and then the rest; the first batch that finds none ends
//! that, so sequential callers go back to paying nothing.
//!
//! No caller is stranded: an opener dropped before it sent the batch closes it, and one dropped
//! after drops the joiners' answer channels; either way each joiner reads on its own instead.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::backend::BackendError;

/// What a read returns: the values at its keys, in order.
pub(crate) type Values = Vec<Option<Vec<u8>>>;

/// The most keys one merged read carries; a read that would overflow it goes alone.
const MOST_KEYS: usize = 1024;

/// The reads of one remote.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    /// Whether the last batch found joiners.
    merging: bool,
    batches: u64,
    open: Option<Batch>,
}

/// The keys gathered by an opener: each distinct key once (reads of one cache share their
/// invalidation keys), and where each read's keys are among them.
#[derive(Debug)]
pub(crate) struct Batch {
    number: u64,
    keys: Vec<String>,
    /// Indices in `keys` of keys that were not the first of their read (the invalidation
    /// keys): the only ones looked for when a read joins, as entry keys are rarely shared.
    shared: Vec<usize>,
    /// For each read in turn, the index in `keys` of each of its keys.
    places: Vec<usize>,
    opener: Range<usize>,
    joiners: Vec<Joiner>,
}

#[derive(Debug)]
struct Joiner {
    places: Range<usize>,
    answer: oneshot::Sender<Result<Values, BackendError>>,
}

impl Batch {
    fn new(number: u64, keys: &[String]) -> Self {
        let mut batch = Batch {
            number,
            keys: Vec::with_capacity(64),
            shared: Vec::new(),
            places: Vec::with_capacity(128),
            opener: 0..0,
            joiners: Vec::new(),
        };
        batch.opener = batch.add(keys);
        batch
    }

    /// Adds a read's keys; returns where its places are.
    fn add(&mut self, keys: &[String]) -> Range<usize> {
        let start = self.places.len();
        for (n, key) in keys.iter().enumerate() {
            let known = (n > 0)
                .then(|| self.shared.iter().copied().find(|&i| self.keys[i] == *key))
                .flatten();
            let place = known.unwrap_or_else(|| {
                self.keys.push(key.clone());
                let place = self.keys.len() - 1;
                if n > 0 {
                    self.shared.push(place);
                }
                place
            });
            self.places.push(place);
        }
        start..self.places.len()
    }
}

/// How a read goes.
pub(crate) enum Arrival<'a> {
    /// Nothing else in flight: send it now.
    Alone(InFlight<'a>),
    /// Opened a batch: yield, then [`Opener::close`] it and send it.
    Open(Opener<'a>),
    /// Joined an open batch: await the answer (closed: read alone).
    Joined(oneshot::Receiver<Result<Values, BackendError>>),
}

/// A read in flight, counted until dropped.
pub(crate) struct InFlight<'a> {
    reads: &'a Reads,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.reads.state().in_flight -= 1;
    }
}

/// The reader that opened a batch.
pub(crate) struct Opener<'a> {
    in_flight: InFlight<'a>,
    number: u64,
}

impl Opener<'_> {
    /// Takes the batch out of reach of later readers: its keys (the opener's first) and the
    /// joiners to answer.
    pub(crate) fn close(&self) -> Option<Batch> {
        let mut state = self.in_flight.reads.state();
        let batch = take_if(&mut state, self.number)?;
        state.merging = !batch.joiners.is_empty();
        Some(batch)
    }
}

impl Drop for Opener<'_> {
    fn drop(&mut self) {
        // Still open when the opener is dropped (cancelled while yielding): close it, so its
        // joiners' channels close and they read alone.
        drop(take_if(&mut self.in_flight.reads.state(), self.number));
    }
}

fn take_if(state: &mut State, number: u64) -> Option<Batch> {
    match &state.open {
        Some(batch) if batch.number == number => state.open.take(),
        _ => None,
    }
}

impl Reads {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a read of `keys`.
    pub(crate) fn arrive(&self, keys: &[String]) -> Arrival<'_> {
        let mut state = self.state();
        if let Some(batch) = &mut state.open
            && batch.keys.len() + keys.len() <= MOST_KEYS
        {
            let (answer, receiver) = oneshot::channel();
            let places = batch.add(keys);
            batch.joiners.push(Joiner { places, answer });
            return Arrival::Joined(receiver);
        }
        let opens = state.open.is_none() && (state.in_flight > 0 || state.merging);
        state.in_flight += 1;
        let in_flight = InFlight { reads: self };
        if !opens {
            return Arrival::Alone(in_flight);
        }
        state.batches += 1;
        let number = state.batches;
        state.open = Some(Batch::new(number, keys));
        Arrival::Open(Opener { in_flight, number })
    }
}

/// The answer to a merged read it could not split.
#[derive(Debug, thiserror::Error)]
#[error("the store answered {got} values for {asked} keys")]
pub(crate) struct WrongCount {
    pub(crate) asked: usize,
    pub(crate) got: usize,
}

/// The failure of a merged read, as each joiner sees it.
#[derive(Debug, thiserror::Error)]
#[error("a read merged with this one failed: {0}")]
pub(crate) struct SharedFailure(String);

impl Batch {
    /// The keys to send, and the batch to [`answer`](Answer::answer) with their values.
    pub(crate) fn into_keys(self) -> (Vec<String>, Answer) {
        let answer = Answer {
            asked: self.keys.len(),
            places: self.places,
            opener: self.opener,
            joiners: self.joiners,
        };
        (self.keys, answer)
    }
}

/// The reads of a sent batch, waiting for their parts.
pub(crate) struct Answer {
    asked: usize,
    places: Vec<usize>,
    opener: Range<usize>,
    joiners: Vec<Joiner>,
}

impl Answer {
    /// Hands each joiner its part of `outcome` and returns the opener's.
    pub(crate) fn answer(
        self,
        outcome: Result<Values, BackendError>,
    ) -> Result<Values, BackendError> {
        let outcome = match outcome {
            Ok(values) if values.len() != self.asked => {
                Err(BackendError::Other(Box::new(WrongCount {
                    asked: self.asked,
                    got: values.len(),
                })))
            }
            outcome => outcome,
        };
        let mut values = match outcome {
            Ok(values) => values,
            Err(error) => {
                for joiner in self.joiners {
                    let _ = joiner.answer.send(Err(shared(&error)));
                }
                return Err(error);
            }
        };
        // A value goes to its last reader, and is cloned for the others.
        let mut readers = vec![0_u32; values.len()];
        for &place in &self.places {
            readers[place] += 1;
        }
        let mut part = |places: Range<usize>| -> Values {
            self.places[places]
                .iter()
                .map(|&place| {
                    readers[place] -= 1;
                    if readers[place] == 0 {
                        values[place].take()
                    } else {
                        values[place].clone()
                    }
                })
                .collect()
        };
        for joiner in self.joiners {
            let _ = joiner.answer.send(Ok(part(joiner.places)));
        }
        Ok(part(self.opener))
    }
}

/// `error` as one of several callers sees it (the error itself goes to the opener).
fn shared(error: &BackendError) -> BackendError {
    let failure = || Box::new(SharedFailure(error.to_string()));
    match error {
        BackendError::Timeout(after) => BackendError::Timeout(*after),
        BackendError::Unavailable(_) => BackendError::Unavailable(failure()),
        BackendError::Decode(_) => BackendError::Decode(failure()),
        BackendError::Other(_) => BackendError::Other(failure()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| (*name).to_owned()).collect()
    }

    fn value(name: &str) -> Option<Vec<u8>> {
        Some(name.as_bytes().to_vec())
    }

    #[test]
    fn a_lone_read_goes_alone_and_later_ones_merge() {
        let reads = Reads::default();
        let Arrival::Alone(first) = reads.arrive(&keys(&["a"])) else {
            panic!("nothing in flight: the first read goes alone");
        };
        let Arrival::Open(opener) = reads.arrive(&keys(&["b", "stamp"])) else {
            panic!("one in flight: the second opens a batch");
        };
        let Arrival::Joined(mut joined) = reads.arrive(&keys(&["d", "stamp", "tag"])) else {
            panic!("a batch is open: the third joins it");
        };
        let batch = opener.close().expect("the opener's batch");
        assert!(opener.close().is_none(), "closed once");
        let (sent, answer) = batch.into_keys();
        assert_eq!(
            sent,
            keys(&["b", "stamp", "d", "tag"]),
            "a shared key is sent once"
        );
        let own = answer.answer(Ok(vec![value("b"), value("s"), None, value("t")]));
        assert_eq!(own.unwrap(), vec![value("b"), value("s")]);
        assert_eq!(
            joined.try_recv().unwrap().unwrap(),
            vec![None, value("s"), value("t")]
        );
        drop((first, opener));
        assert_eq!(reads.state().in_flight, 0);
        // That batch found a joiner: a burst is on, so even a read alone opens one.
        let Arrival::Open(opener) = reads.arrive(&keys(&["e"])) else {
            panic!("merging: opens a batch");
        };
        assert!(opener.close().is_some());
        drop(opener);
        // Nobody joined it: the burst is over, reads go alone again.
        assert!(matches!(reads.arrive(&keys(&["f"])), Arrival::Alone(_)));
    }

    #[test]
    fn a_dropped_opener_closes_its_batch_and_frees_its_joiners() {
        let reads = Reads::default();
        let first = reads.arrive(&keys(&["a"]));
        let opener = reads.arrive(&keys(&["b"]));
        let Arrival::Joined(mut joined) = reads.arrive(&keys(&["c"])) else {
            panic!("joins");
        };
        drop(opener);
        assert!(
            joined.try_recv().is_err(),
            "the channel is closed, not answered"
        );
        assert!(reads.state().open.is_none());
        assert!(
            matches!(reads.arrive(&keys(&["d"])), Arrival::Open(_)),
            "a later read opens a fresh batch"
        );
        drop(first);
    }

    #[test]
    fn failures_and_wrong_counts_reach_every_joiner() {
        let reads = Reads::default();
        let _first = reads.arrive(&keys(&["a"]));
        let Arrival::Open(opener) = reads.arrive(&keys(&["b"])) else {
            panic!("opens");
        };
        let Arrival::Joined(mut joined) = reads.arrive(&keys(&["c"])) else {
            panic!("joins");
        };
        let (sent, answer) = opener.close().unwrap().into_keys();
        assert_eq!(sent.len(), 2);
        let own = answer.answer(Ok(vec![value("b")]));
        assert!(matches!(own, Err(BackendError::Other(_))));
        assert!(matches!(
            joined.try_recv().unwrap(),
            Err(BackendError::Other(_))
        ));
    }

    #[test]
    fn batches_are_bounded() {
        let reads = Reads::default();
        let _first = reads.arrive(&keys(&["a"]));
        let big: Vec<String> = (0..MOST_KEYS).map(|i| i.to_string()).collect();
        let _opener = reads.arrive(&big);
        assert!(matches!(reads.arrive(&keys(&["x"])), Arrival::Alone(_)));
    }
}
