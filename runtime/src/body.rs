//! A cached function's body, handed to the miss path without an allocation.
//!
//! The miss path is compiled once per key, value and result type, not once per cached
//! function, so it takes the body type-erased. A `Box<dyn FnOnce>` would cost an allocation
//! (and a free) on every miss whose body captures anything, which is every body with an
//! argument; a `&mut dyn FnMut` to a closure on the caller's stack costs none.

/// Wraps `compute` so that it can be called through `&mut dyn FnMut`: the first call runs it,
/// any later one returns `None` (there is none: [`Body::run`] takes the body by value).
pub(crate) fn once<R>(compute: impl FnOnce() -> R) -> impl FnMut() -> Option<R> {
    let mut compute = Some(compute);
    move || compute.take().map(|compute| compute())
}

/// A body made by [`once`], borrowed: run at most once.
pub(crate) struct Body<'a, R>(&'a mut dyn FnMut() -> Option<R>);

impl<'a, R> Body<'a, R> {
    /// Borrows a body made by [`once`] that has not run.
    pub(crate) fn new(compute: &'a mut dyn FnMut() -> Option<R>) -> Self {
        Body(compute)
    }

    /// Runs the body.
    pub(crate) fn run(self) -> R {
        match (self.0)() {
            Some(result) => result,
            // `new` is given a body made by `once` that has not run, and `run` consumes the
            // only handle to it: a second run cannot be written.
            None => unreachable!("a cached function's body ran twice"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_runs_once_and_returns_its_result() {
        let mut runs = 0;
        let mut compute = once(|| {
            runs += 1;
            7
        });
        assert_eq!(Body::new(&mut compute).run(), 7);
        assert_eq!(compute(), None, "a second call does not run it again");
        drop(compute);
        assert_eq!(runs, 1);
    }
}
