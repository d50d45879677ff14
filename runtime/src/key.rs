//! Keys: borrowed lookups that compare equal to owned keys, and the bounds key parts must meet.

use std::borrow::Borrow;
use std::hash::Hash;

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
            $($borrowed: ?Sized + PartialEq, $owned: Borrow<$borrowed>,)*
        {
            #[inline]
            #[allow(unused_variables)]
            fn equivalent(&self, key: &($($owned,)*)) -> bool {
                true $(&& *self.0.$index == *key.$index.borrow())*
            }
        }
    };
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
    message = "the cached value `{Self}` must be Clone + Send + Sync + 'static",
    label = "hits return clones of the stored value",
    note = "derive Clone, or return `Arc<{Self}>` to share one value cheaply"
)]
pub trait CachedValue: Clone + Send + Sync + 'static {}

impl<T: Clone + Send + Sync + 'static> CachedValue for T {}

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
}
