//! Keys: borrowed lookups that compare equal to owned keys, and the bounds key parts must meet.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

use equivalent::Equivalent;

/// A tuple of borrowed key arguments, looked up against an owned key tuple without building it.
///
/// `KeyRef((&id, name))` with `name: &str` finds the entry stored under `(id, name.to_owned())`:
/// it hashes like the owned tuple (each part hashes like its owned form, as `Borrow` requires)
/// and compares part by part.
#[derive(Debug, Hash)]
pub struct KeyRef<T>(pub T);

macro_rules! key_ref_tuple {
    ($($borrowed:ident $owned:ident $index:tt),*) => {
        impl<'a, $($borrowed, $owned),*> Equivalent<($($owned,)*)> for KeyRef<($(&'a $borrowed,)*)>
        where
            $($borrowed: ?Sized + KeyView<$owned>,)*
        {
            #[inline]
            #[allow(unused_variables)]
            fn equivalent(&self, key: &($($owned,)*)) -> bool {
                true $(&& self.0.$index.matches(&key.$index))*
            }
        }

        // Arguments that are their own `Copy` key parts: the hit front holds the key copied.
        impl<'a, $($borrowed: Copy),*> crate::front::FrontKey<($($borrowed,)*)> for KeyRef<($(&'a $borrowed,)*)> {
            #[inline]
            #[allow(clippy::unused_unit)]
            fn front_key(&self) -> ($($borrowed,)*) {
                ($(*self.0.$index,)*)
            }
        }
    };
}

/// A borrowed argument as it is looked up against the owned key part `O` it is stored as:
/// it hashes like `O` and compares with it, and makes one on a miss.
///
/// Every `T: PartialEq + ToOwned` is a view of `T::Owned` (`&str` of `String`, `u64` of
/// itself); [`OptionRef`] and [`SliceRef`] cover `Option<&T>` and `&[&T]`. A view must hash
/// exactly as its owned form does with any hasher, not only with a byte-stream one.
pub trait KeyView<O> {
    /// Whether `owned` is the key part this argument stands for.
    fn matches(&self, owned: &O) -> bool;
    /// The owned key part, made on a miss.
    fn to_owned_key(&self) -> O;
}

impl<T: ?Sized + PartialEq + ToOwned> KeyView<T::Owned> for T {
    #[inline]
    fn matches(&self, owned: &T::Owned) -> bool {
        *self == *owned.borrow()
    }

    #[inline]
    fn to_owned_key(&self) -> T::Owned {
        self.to_owned()
    }
}

/// An `Option<&T>` argument (or `Option<Cow<T>>`, as `as_deref()`), stored as
/// `Option<T::Owned>` and looked up without allocating.
pub struct OptionRef<'a, T: ?Sized>(pub Option<&'a T>);

impl<T: ?Sized + Hash> Hash for OptionRef<'_, T> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // `Option<&T>` hashes like `Option<T::Owned>`: the discriminant, then `T` as its owned
        // form hashes (the `Borrow` contract).
        self.0.hash(state);
    }
}

impl<T: ?Sized + PartialEq + ToOwned> KeyView<Option<T::Owned>> for OptionRef<'_, T> {
    #[inline]
    fn matches(&self, owned: &Option<T::Owned>) -> bool {
        match (self.0, owned) {
            (Some(borrowed), Some(owned)) => *borrowed == *owned.borrow(),
            (None, None) => true,
            _ => false,
        }
    }

    fn to_owned_key(&self) -> Option<T::Owned> {
        self.0.map(ToOwned::to_owned)
    }
}

/// A `&[&T]` argument (or `Vec<&T>`, as a slice), stored as [`SliceKey<T::Owned>`] and
/// looked up without allocating.
pub struct SliceRef<'a, 'b, T: ?Sized>(pub &'a [&'b T]);

impl<T: ?Sized + Hash> Hash for SliceRef<'_, '_, T> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // As `SliceKey` hashes: the length, then each element on its own. (Not as a slice:
        // `[u64]` hashes its elements as one byte string, `[&u64]` one by one, and a hasher
        // that is not a byte stream, like the memory store's, tells the two apart.)
        self.0.len().hash(state);
        for element in self.0 {
            (**element).hash(state);
        }
    }
}

/// The owned key part of a `&[&T]` or `Vec<&T>` argument: the elements' owned forms, hashed
/// one by one as [`SliceRef`] hashes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceKey<O>(pub Vec<O>);

impl<O: Hash> Hash for SliceKey<O> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.len().hash(state);
        for element in &self.0 {
            element.hash(state);
        }
    }
}

impl<T: ?Sized + PartialEq + ToOwned> KeyView<SliceKey<T::Owned>> for SliceRef<'_, '_, T> {
    #[inline]
    fn matches(&self, owned: &SliceKey<T::Owned>) -> bool {
        self.0.len() == owned.0.len()
            && self
                .0
                .iter()
                .zip(&owned.0)
                .all(|(borrowed, owned)| **borrowed == *owned.borrow())
    }

    fn to_owned_key(&self) -> SliceKey<T::Owned> {
        SliceKey(
            self.0
                .iter()
                .map(|borrowed| (*borrowed).to_owned())
                .collect(),
        )
    }
}

key_ref_tuple!();
key_ref_tuple!(A0 O0 0);
key_ref_tuple!(A0 O0 0, A1 O1 1);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5, A6 O6 6);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5, A6 O6 6, A7 O7 7);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5, A6 O6 6, A7 O7 7, A8 O8 8);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5, A6 O6 6, A7 O7 7, A8 O8 8, A9 O9 9);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5, A6 O6 6, A7 O7 7, A8 O8 8, A9 O9 9, A10 O10 10);
key_ref_tuple!(A0 O0 0, A1 O1 1, A2 O2 2, A3 O3 3, A4 O4 4, A5 O5 5, A6 O6 6, A7 O7 7, A8 O8 8, A9 O9 9, A10 O10 10, A11 O11 11);

/// What an argument must be to take part in a cache key.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    label = "this argument is part of the key, so its owned form must be Hash + Eq + Clone + Send + Sync + 'static",
    note = "leave the argument out of the key with `skip(name)`, or build the key yourself with `key = ...`"
)]
pub trait KeyPart: Hash + Eq + Clone + Send + Sync + 'static {}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> KeyPart for T {}

/// What a method's receiver must be to take part in a cache key.
#[diagnostic::on_unimplemented(
    message = "the receiver `{Self}` is part of the cache key but is not Hash + Eq + Clone + Send + Sync + 'static",
    label = "`self` is part of the key unless skipped",
    note = "write `skip(self)` in `#[cached(...)]` to leave the receiver out of the key, or derive the missing traits"
)]
pub trait ReceiverKeyPart: Hash + Eq + Clone + Send + Sync + 'static {}

impl<T: Hash + Eq + Clone + Send + Sync + 'static> ReceiverKeyPart for T {}

/// What a cached function's stored value must be.
#[diagnostic::on_unimplemented(
    message = "the cached value `{Self}` must be Clone + Send + 'static",
    label = "hits return clones of the stored value",
    note = "derive Clone, or return `Arc<{Self}>` to share one value cheaply"
)]
pub trait CachedValue: Clone + Send + 'static {}

impl<T: Clone + Send + 'static> CachedValue for T {}

/// What a value kept in an in-process store shared by every thread must be (the default
/// memory store and moka hand one stored value to many threads at once).
#[diagnostic::on_unimplemented(
    message = "the cached value `{Self}` is not `Sync`, and this store shares each value between threads",
    label = "hits clone this value from many threads at once",
    note = "return `Arc<Mutex<..>>` (or another `Sync` form), or choose a store that allows it: a remote cache, or `backend = path` to a store that locks each value"
)]
pub trait SharedValue: Sync {}

impl<T: Sync> SharedValue for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn borrowed_tuple_matches_owned_tuple() {
        let owned = (7_u64, String::from("ada"), vec![1_u8, 2]);
        let slice: &[u8] = &[1, 2];
        let borrowed = KeyRef((&7_u64, "ada", slice));
        assert!(borrowed.equivalent(&owned));
        let state = std::hash::RandomState::new();
        assert_eq!(state.hash_one(&borrowed), state.hash_one(&owned));
        assert!(!KeyRef((&8_u64, "ada", slice)).equivalent(&owned));
    }

    #[test]
    fn borrowed_shapes_hash_and_compare_like_their_owned_forms() {
        let state = std::hash::RandomState::new();
        let owned = (
            Some("ada".to_owned()),
            SliceKey(vec!["a".to_owned(), "b".to_owned()]),
        );
        let names = ["a", "b"];
        let option = OptionRef(Some("ada"));
        let slice = SliceRef(&names);
        let borrowed = KeyRef((&option, &slice));
        assert!(borrowed.equivalent(&owned));
        assert_eq!(state.hash_one(&borrowed), state.hash_one(&owned));
        assert_eq!(option.to_owned_key(), owned.0);
        assert_eq!(slice.to_owned_key(), owned.1);

        let none: (Option<String>,) = (None,);
        let absent = OptionRef::<str>(None);
        assert!(KeyRef((&absent,)).equivalent(&none));
        assert_eq!(state.hash_one(KeyRef((&absent,))), state.hash_one(&none));
        assert!(!KeyRef((&option,)).equivalent(&none));
        let fewer = SliceRef(&names[..1]);
        assert!(!KeyRef((&option, &fewer)).equivalent(&owned));
    }

    #[test]
    fn slices_of_integer_refs_hash_like_their_owned_form_with_the_memory_hasher() {
        // The memory store's hasher is not a byte stream: `[u64]` (one write of all bytes)
        // and `[&u64]` (one write per element) hash differently there.
        let state = quick_cache::DefaultHashBuilder::default();
        let (a, b) = (1_u64, 2_u64);
        let refs = [&a, &b];
        let view = SliceRef(&refs);
        let owned = SliceKey(vec![1_u64, 2]);
        assert_eq!(state.hash_one(&view), state.hash_one(&owned));
        assert!(KeyRef((&view,)).equivalent(&(owned.clone(),)));
        assert_eq!(state.hash_one(KeyRef((&view,))), state.hash_one((owned,)));
    }
}
