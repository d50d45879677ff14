//! Which results are stored: `Ok`/`Some` only unless the attribute asks otherwise.

use crate::key::CachedValue;

/// How a function's result maps to what is stored, and back.
pub trait Policy<R> {
    /// What the store holds.
    type Stored: CachedValue;
    /// The value to store for `result`, or `None` to store nothing.
    fn store(result: &R) -> Option<Self::Stored>;
    /// The result a hit returns.
    fn load(stored: Self::Stored) -> R;
}

/// `Result<T, E>`: store `T` of an `Ok`; an `Err` is returned and not stored (`E` need not be Clone).
pub struct OkOnly;

/// `Option<T>`: store `T` of a `Some`; a `None` is returned and not stored.
pub struct SomeOnly;

/// Any other return type, or `cache_err` / `cache_none`: store every result.
pub struct Everything;

impl<T: CachedValue, E> Policy<Result<T, E>> for OkOnly {
    type Stored = T;

    #[inline]
    fn store(result: &Result<T, E>) -> Option<T> {
        result.as_ref().ok().cloned()
    }

    #[inline]
    fn load(stored: T) -> Result<T, E> {
        Ok(stored)
    }
}

impl<T: CachedValue> Policy<Option<T>> for SomeOnly {
    type Stored = T;

    #[inline]
    fn store(result: &Option<T>) -> Option<T> {
        result.clone()
    }

    #[inline]
    fn load(stored: T) -> Option<T> {
        Some(stored)
    }
}

impl<R: CachedValue> Policy<R> for Everything {
    type Stored = R;

    #[inline]
    fn store(result: &R) -> Option<R> {
        Some(result.clone())
    }

    #[inline]
    fn load(stored: R) -> R {
        stored
    }
}
