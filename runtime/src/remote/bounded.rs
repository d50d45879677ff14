//! A depth limit for any serde [`Deserializer`]: decoding recurses once per nesting level of the
//! value, so without a limit a small hostile value (100,000 nested one-byte enum variants, about
//! 100 KB) overflows the thread's stack and aborts the process. Every codec's deserializer is
//! wrapped in [`Deser`], which passes wrapped visitors, accesses and seeds down the recursion;
//! each level (a sequence, tuple, struct, map, enum variant, `Some` or newtype) takes one from
//! the depth left, and a value nested deeper fails with an error instead.
//!
//! The wrappers also keep preallocation bounded by the input: the length hints of sequences and
//! maps are capped by a budget of the input's length, spent as hints are given, so nested
//! collections with hostile length prefixes together cannot ask for more elements than the
//! bytes could hold (each element takes at least one byte in every codec here).
//!
//! Elements of zero-sized types (`()`, unit structs) take no byte, so a length prefix of 2^64
//! of them would loop that many times on ten bytes: the elements a decode visits are capped at
//! the input's length plus [`ELEMENT_ALLOWANCE`].

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, Deserialize, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Elements a decode may visit beyond one per input byte (zero-sized ones take no byte).
pub(crate) const ELEMENT_ALLOWANCE: usize = 1 << 16;

/// The state of one decode, shared by every wrapper in it.
pub(crate) struct Guard {
    max_depth: usize,
    too_deep: Cell<bool>,
    hint_budget: Cell<usize>,
    elements_left: Cell<usize>,
}

impl Guard {
    /// A guard allowing `max_depth` nesting levels in a value decoded from `input_len` bytes.
    pub(crate) fn new(max_depth: usize, input_len: usize) -> Self {
        Guard {
            max_depth,
            too_deep: Cell::new(false),
            hint_budget: Cell::new(input_len),
            elements_left: Cell::new(input_len.saturating_add(ELEMENT_ALLOWANCE)),
        }
    }

    /// Whether the decode went past the depth limit (its error is then the limit's).
    pub(crate) fn too_deep(&self) -> bool {
        self.too_deep.get()
    }

    /// Decodes a `T` from the codec's `deserializer`, through the limit.
    pub(crate) fn decode<'de, T, D>(&self, deserializer: D) -> Result<T, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        self.seed::<T>().deserialize(deserializer)
    }

    /// The seed that decodes a `T` through the limit, for codecs that take a seed.
    pub(crate) fn seed<T>(&self) -> Seed<'_, PhantomData<T>> {
        Seed {
            inner: PhantomData,
            depth: Depth {
                guard: self,
                left: self.max_depth,
            },
        }
    }
}

/// How many nesting levels are left at one point of the recursion.
#[derive(Clone, Copy)]
struct Depth<'g> {
    guard: &'g Guard,
    left: usize,
}

impl<'g> Depth<'g> {
    /// Enters one nesting level, or fails when none is left.
    fn descend<E: de::Error>(self) -> Result<Depth<'g>, E> {
        match self.left.checked_sub(1) {
            Some(left) => Ok(Depth { left, ..self }),
            None => {
                self.guard.too_deep.set(true);
                Err(E::custom(format_args!(
                    "value nested deeper than {} levels",
                    self.guard.max_depth
                )))
            }
        }
    }

    /// Counts one element (or map key) visited, or fails when the decode has visited more
    /// than its input could hold.
    fn count_element<E: de::Error>(self) -> Result<(), E> {
        match self.guard.elements_left.get().checked_sub(1) {
            Some(left) => {
                self.guard.elements_left.set(left);
                Ok(())
            }
            None => Err(E::custom(
                "more elements than the input could hold (zero-sized elements?)",
            )),
        }
    }

    /// Caps a collection's length hint by what is left of the budget, and spends it.
    /// `per_item` is the least number of input bytes one item takes.
    fn cap_hint(self, hint: Option<usize>, per_item: usize) -> Option<usize> {
        let hint = hint?;
        let budget = self.guard.hint_budget.get();
        let allowed = hint.min(budget / per_item);
        self.guard.hint_budget.set(budget - allowed * per_item);
        Some(allowed)
    }
}

/// A [`Deserializer`] whose visitors count nesting levels.
struct Deser<'g, D> {
    inner: D,
    depth: Depth<'g>,
}

/// A [`Visitor`] that takes one level for each nested value it is handed.
struct Visit<'g, V> {
    inner: V,
    depth: Depth<'g>,
}

/// A [`DeserializeSeed`] that hands its seed a counting deserializer.
pub(crate) struct Seed<'g, S> {
    inner: S,
    depth: Depth<'g>,
}

/// A [`SeqAccess`] whose elements are decoded through the limit.
struct Seq<'g, A> {
    inner: A,
    depth: Depth<'g>,
}

/// A [`MapAccess`] whose keys and values are decoded through the limit.
struct Map<'g, A> {
    inner: A,
    depth: Depth<'g>,
}

/// An [`EnumAccess`] whose variant is decoded through the limit.
struct Enum<'g, A> {
    inner: A,
    depth: Depth<'g>,
}

/// A [`VariantAccess`] whose content is decoded through the limit.
struct Variant<'g, A> {
    inner: A,
    depth: Depth<'g>,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Deser {
            inner: deserializer,
            depth: self.depth,
        })
    }
}

/// Forwards `deserialize_*` methods to the inner deserializer with a counting visitor.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V)
                -> Result<V::Value, D::Error>
            {
                self.inner.$method($($arg,)* Visit { inner: visitor, depth: self.depth })
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Deser<'_, D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_bytes();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    /// Asks for a borrowed string: bincode's owned form allocates the length the prefix claims
    /// (up to its limit) before reading, the borrowed form first checks it against the input.
    /// Every string visitor takes a borrowed string too.
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_str(visitor)
    }

    /// Asks for borrowed bytes, as [`deserialize_string`](Self::deserialize_string) does.
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.deserialize_bytes(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards `visit_*` methods of values that nest nothing.
macro_rules! forward_visit {
    ($($method:ident($ty:ty);)*) => {
        $(
            fn $method<E: de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(formatter)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        let depth = self.depth.descend()?;
        self.inner.visit_some(Deser {
            inner: deserializer,
            depth,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        let depth = self.depth.descend()?;
        self.inner.visit_newtype_struct(Deser {
            inner: deserializer,
            depth,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let depth = self.depth.descend()?;
        self.inner.visit_seq(Seq { inner: seq, depth })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let depth = self.depth.descend()?;
        self.inner.visit_map(Map { inner: map, depth })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let depth = self.depth.descend()?;
        self.inner.visit_enum(Enum { inner: data, depth })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.depth.count_element()?;
        self.inner.next_element_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.depth.cap_hint(self.inner.size_hint(), 1)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.depth.count_element()?;
        self.inner.next_key_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn next_entry_seed<K: DeserializeSeed<'de>, V: DeserializeSeed<'de>>(
        &mut self,
        key: K,
        value: V,
    ) -> Result<Option<(K::Value, V::Value)>, A::Error> {
        self.inner.next_entry_seed(
            Seed {
                inner: key,
                depth: self.depth,
            },
            Seed {
                inner: value,
                depth: self.depth,
            },
        )
    }

    /// An entry is a key and a value, each at least one byte.
    fn size_hint(&self) -> Option<usize> {
        self.depth.cap_hint(self.inner.size_hint(), 2)
    }
}

impl<'de, 'g, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'g, A> {
    type Error = A::Error;
    type Variant = Variant<'g, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let depth = self.depth;
        let (value, variant) = self.inner.variant_seed(Seed { inner: seed, depth })?;
        Ok((
            value,
            Variant {
                inner: variant,
                depth,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Variant<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Seed {
            inner: seed,
            depth: self.depth,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner.tuple_variant(
            len,
            Visit {
                inner: visitor,
                depth: self.depth,
            },
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner.struct_variant(
            fields,
            Visit {
                inner: visitor,
                depth: self.depth,
            },
        )
    }
}
