//! Gates: one check per misuse, reported once, on the user's token, with no follow-on errors.
//!
//! Generated code passes each key part, the stored value and the cache itself through a gate
//! trait `G<M>` that has two impls: `G<Yes>` for every type meeting the bounds, and `G<No>` for
//! none (its bound, [`Never`], has no impl). The marker `M` is left to inference (`G<_>`), so
//! when the bounds fail neither impl applies and the projection `<T as G<_>>::Is` (or the
//! result of `pass`) is left an unknown type: rustc reports the one unmet `T: G<_>` with the
//! gate's message and checks nothing more through it, instead of reporting every method of the
//! cache as uncallable. When the bounds hold, `G<Yes>` is chosen and `Is`/`pass` are the
//! identity: the checked code is the ungated code, and `pass` compiles to nothing.

use crate::key::{CachedValue, KeyPart, ReceiverKeyPart, SharedValue};

/// The marker of a gate whose bounds hold.
pub struct Yes;
/// The marker of the impossible gate impl.
pub struct No;

/// Implemented by no type: the bound of each gate's `No` impl.
pub trait Never {}

macro_rules! gate {
    ($(#[$attr:meta])* $name:ident, $(($($unsized:tt)*))? [$($bounds:tt)*], $is:ty) => {
        $(#[$attr])*
        pub trait $name<M> {
            /// The type checked (or, for a borrowed key part, its owned form).
            type Is;
            /// `C`, once the gate is passed.
            type Then<C>;
            /// `c` itself, once the gate is passed.
            fn pass<C>(c: C) -> Self::Then<C>;
        }

        impl<T $(: $($unsized)*)?> $name<Yes> for T
        where
            $($bounds)*
        {
            type Is = $is;
            type Then<C> = C;
            #[inline(always)]
            fn pass<C>(c: C) -> C {
                c
            }
        }

        impl<T $(: $($unsized)*)?> $name<No> for T
        where
            T: Never,
        {
            type Is = ();
            type Then<C> = C;
            #[inline(always)]
            fn pass<C>(c: C) -> C {
                c
            }
        }
    };
}

/// A gate on the stored value, which is the trait's parameter `T` and not its `Self` (always
/// [`Check`]): were the value `Self`, rustc would suggest borrowing the return type (`&T` meets
/// the bounds) on some of the reports, which then differ and are not merged into one.
macro_rules! value_gate {
    ($(#[$attr:meta])* $name:ident, [$($bounds:tt)*]) => {
        $(#[$attr])*
        pub trait $name<T, M> {
            /// `T`, once the gate is passed.
            type Is;
            /// `C`, once the gate is passed.
            type Then<C>;
            /// `c` itself, once the gate is passed.
            fn pass<C>(c: C) -> Self::Then<C>;
        }

        #[diagnostic::do_not_recommend]
        impl<T> $name<T, Yes> for Check
        where
            $($bounds)*
        {
            type Is = T;
            type Then<C> = C;
            #[inline(always)]
            fn pass<C>(c: C) -> C {
                c
            }
        }

        #[diagnostic::do_not_recommend]
        impl<T> $name<T, No> for Check
        where
            T: Never,
        {
            type Is = ();
            type Then<C> = C;
            #[inline(always)]
            fn pass<C>(c: C) -> C {
                c
            }
        }
    };
}

/// The `Self` of the value gates.
pub struct Check;

gate!(
    /// An argument taken by value, as a key part.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be part of a cache key",
        label = "this argument is part of the key, so it must be Hash + Eq + Clone + Send + Sync + 'static",
        note = "leave the argument out of the key with `skip(name)`, or build the key yourself with `key = ...`"
    )]
    KeyGate, [T: KeyPart], T
);

gate!(
    /// The referent of a borrowed argument (`&T`, `Cow<T>`, `Option<&T>`, `&[&T]`), as a key
    /// part stored as `T::Owned`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be part of a cache key",
        label = "this argument is part of the key, so it must be Hash + PartialEq + ToOwned, and its owned form Hash + Eq + Clone + Send + Sync + 'static",
        note = "leave the argument out of the key with `skip(name)`, or build the key yourself with `key = ...`"
    )]
    BorrowedKeyGate, (?Sized) [T: std::hash::Hash + PartialEq + ToOwned, T::Owned: KeyPart], T::Owned
);

gate!(
    /// A method's receiver, as a key part.
    #[diagnostic::on_unimplemented(
        message = "the receiver `{Self}` is part of the cache key but is not Hash + Eq + Clone + Send + Sync + 'static",
        label = "`self` is part of the key unless skipped",
        note = "write `skip(self)` in `#[cached(...)]` to leave the receiver out of the key, or derive the missing traits"
    )]
    ReceiverGate, [T: ReceiverKeyPart], T
);

value_gate!(
    /// What a cached function stores.
    #[diagnostic::on_unimplemented(
        message = "the cached value `{T}` must be Clone + Send + 'static",
        label = "hits return clones of the stored value",
        note = "derive Clone, or return `Arc<{T}>` to share one value cheaply"
    )]
    ValueGate, [T: CachedValue]
);

value_gate!(
    /// What an in-process store shared by every thread stores.
    #[diagnostic::on_unimplemented(
        message = "the cached value `{T}` is not `Sync`, and this store shares each value between threads",
        label = "hits clone this value from many threads at once",
        note = "return `Arc<Mutex<..>>` (or another `Sync` form), or choose a store that allows it: a remote cache, or `backend = path` to a store that locks each value"
    )]
    SharedGate, [T: SharedValue]
);

#[cfg(feature = "remote")]
value_gate!(
    /// What a remote cache stores.
    #[diagnostic::on_unimplemented(
        message = "`{T}` cannot be stored in a remote cache",
        label = "this result is stored in Redis",
        note = "a remote value is serialized: derive `serde::Serialize` and `serde::Deserialize`, and `Clone`"
    )]
    RemoteValueGate, [T: crate::remote::cache::RemoteValue]
);

#[cfg(feature = "remote")]
gate!(
    /// A key part of a remote cache (behind any reference).
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be part of a remote cache key",
        label = "this argument is part of the Redis key",
        note = "derive `serde::Serialize` for it, or leave it out of the key with `skip(..)`"
    )]
    RemoteKeyGate, (?Sized) [T: crate::remote::cache::RemoteKeyPart], ()
);

// Without the `remote` feature the feature check reports instead: these gates pass anything.
#[cfg(not(feature = "remote"))]
value_gate!(
    /// See the `remote` form.
    RemoteValueGate, []
);

#[cfg(not(feature = "remote"))]
gate!(
    /// See the `remote` form.
    RemoteKeyGate, (?Sized) [], ()
);
