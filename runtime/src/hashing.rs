//! The hasher of the tables on the miss path (key stripes, the single-flight table, the
//! memory store's replacement check): foldhash, seeded per table at random, as quick_cache and
//! hashbrown use by default. SipHash (std's `RandomState`) cost about a third of a miss.
//!
//! Its seeds are random per process and per table, so colliding keys cannot be chosen ahead
//! of time; it is not a keyed cryptographic hash, which these in-process tables do not need
//! (a collision costs a probe, or a shared stripe's cautious extra miss, never a wrong value).

pub(crate) type RandomState = foldhash::quality::RandomState;
