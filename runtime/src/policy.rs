//! Which results are stored: `Ok`/`Some` only unless the attribute asks otherwise.

/// How a function's result maps to what is stored, and back.
pub trait Policy<R> {
    /// What the store holds (its bounds are checked by the gates, see `gate`, so that a
    /// return type that cannot be stored is reported once).
    type Stored;
    /// The part of `result` to store, or `None` to store nothing (borrowed: a remote store
    /// serializes it without a clone).
    fn stored(result: &R) -> Option<&Self::Stored>;
    /// [`stored`](Self::stored), taking the result (`set` stores it without a clone).
    fn into_stored(result: R) -> Option<Self::Stored>;
    /// The result a hit returns.
    fn load(stored: Self::Stored) -> R;
}

/// `Result<T, E>`: store `T` of an `Ok`; an `Err` is returned and not stored (`E` need not be Clone).
pub struct OkOnly;

/// `Option<T>`: store `T` of a `Some`; a `None` is returned and not stored.
pub struct SomeOnly;

/// Any other return type, or `cache_err` / `cache_none`: store every result.
pub struct Everything;

impl<T, E> Policy<Result<T, E>> for OkOnly {
    type Stored = T;

    #[inline]
    fn stored(result: &Result<T, E>) -> Option<&T> {
        result.as_ref().ok()
    }

    #[inline]
    fn into_stored(result: Result<T, E>) -> Option<T> {
        result.ok()
    }

    #[inline]
    fn load(stored: T) -> Result<T, E> {
        Ok(stored)
    }
}

impl<T> Policy<Option<T>> for SomeOnly {
    type Stored = T;

    #[inline]
    fn stored(result: &Option<T>) -> Option<&T> {
        result.as_ref()
    }

    #[inline]
    fn into_stored(result: Option<T>) -> Option<T> {
        result
    }

    #[inline]
    fn load(stored: T) -> Option<T> {
        Some(stored)
    }
}

impl<R> Policy<R> for Everything {
    type Stored = R;

    #[inline]
    fn stored(result: &R) -> Option<&R> {
        Some(result)
    }

    #[inline]
    fn into_stored(result: R) -> Option<R> {
        Some(result)
    }

    #[inline]
    fn load(stored: R) -> R {
        stored
    }
}
