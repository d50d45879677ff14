//! Stable, injective remote keys: `<prefix>:<cache name>:v<version>:<encoded arguments>`.
//!
//! Arguments are written through serde into a readable text: integers in decimal, short strings
//! percent-escaped, compound values bracketed. Every character that separates or delimits
//! (`:`, `,`, brackets, `%`, `#`, glob characters, braces that would act as Redis Cluster hash
//! tags, spaces, control characters) is escaped inside strings, so two different argument lists
//! never give the same text. A text longer than [`READABLE_LIMIT`] is replaced by `#` and its
//! 128-bit XXH3 digest, a hash fixed by its specification (not `std`'s randomly seeded one), so
//! keys agree across processes, builds and Rust versions.

use std::fmt::{self, Write as _};

use serde::ser::{self, Serialize};

/// The longest readable argument text; longer ones become a digest.
pub const READABLE_LIMIT: usize = 128;

/// Why arguments could not be encoded into a key (a `Serialize` implementation failed).
#[derive(Debug, thiserror::Error)]
#[error("cache key arguments could not be encoded: {0}")]
pub struct KeyError(String);

impl ser::Error for KeyError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        KeyError(message.to_string())
    }
}

/// Characters a string argument keeps as they are (besides non-ASCII text).
fn is_plain_in_argument(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.' | b'@' | b'/')
}

/// Appends `text` percent-escaped, keeping `plain` bytes and non-ASCII UTF-8 as they are.
fn escape_into(out: &mut String, text: &str, plain: fn(u8) -> bool) {
    for ch in text.chars() {
        if !ch.is_ascii() || plain(ch as u8) {
            out.push(ch);
        } else {
            let _ = write!(out, "%{:02X}", ch as u8);
        }
    }
}

/// The key segment naming a cache: the `::`-separated parts of its name, each escaped (dots
/// included), joined with `.`, so `app::users::get_user` reads `app.users.get_user` and no two
/// names share a segment.
pub fn name_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (index, part) in name.split("::").enumerate() {
        if index > 0 {
            out.push('.');
        }
        escape_into(&mut out, part, |b| {
            b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'@' | b'/')
        });
    }
    out
}

/// The key segment of a tag (escaped like a string argument); a tag whose escaped text would
/// be longer than [`READABLE_LIMIT`] becomes `#` and the 128-bit XXH3 digest of the tag (`#`
/// is always escaped in readable text, so the two forms never meet).
pub fn tag_segment(tag: &str) -> String {
    if tag.len() <= READABLE_LIMIT {
        let mut out = String::with_capacity(tag.len());
        escape_into(&mut out, tag, is_plain_in_argument);
        if out.len() <= READABLE_LIMIT {
            return out;
        }
    }
    let digest = xxhash_rust::xxh3::xxh3_128(tag.as_bytes());
    format!("#{digest:032x}")
}

/// The argument segment for `args` (a tuple of the key arguments, or the `key = ..` value).
pub fn argument_segment<T: ?Sized + Serialize>(args: &T) -> Result<String, KeyError> {
    let mut out = String::new();
    args.serialize(&mut KeyWriter {
        out: &mut out,
        top: true,
    })?;
    if out.len() <= READABLE_LIMIT {
        return Ok(out);
    }
    let digest = xxhash_rust::xxh3::xxh3_128(out.as_bytes());
    Ok(format!("#{digest:032x}"))
}

/// A serde serializer writing the readable argument text. At the top level a tuple's elements
/// are separated by `:` (one segment per argument); nested sequences are bracketed.
struct KeyWriter<'o> {
    out: &'o mut String,
    /// Whether the next tuple is the argument list itself.
    top: bool,
}

impl<'o> KeyWriter<'o> {
    fn string(&mut self, text: &str) {
        // A string never starts the way another kind of value does: a digit or `-` (numbers),
        // `true`/`false`, or nothing at all; such strings get a leading `'`, which is otherwise
        // always escaped.
        let ambiguous = text.is_empty()
            || text == "true"
            || text == "false"
            || text
                .as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_digit() || *b == b'-');
        if ambiguous {
            self.out.push('\'');
        }
        escape_into(self.out, text, is_plain_in_argument);
    }

    fn open(&mut self, name: Option<&str>, bracket: char) -> Compound<'_, 'o> {
        self.top = false;
        if let Some(name) = name {
            escape_into(self.out, name, is_plain_in_argument);
        }
        self.out.push(bracket);
        Compound {
            writer: self,
            first: true,
            separator: ',',
            close: Some(match bracket {
                '[' => ']',
                '<' => '>',
                _ => ')',
            }),
            map: None,
        }
    }
}

/// The state of a sequence, tuple, struct or map being written.
struct Compound<'a, 'o> {
    writer: &'a mut KeyWriter<'o>,
    first: bool,
    separator: char,
    close: Option<char>,
    /// A map's entries (boxed: a tuple of arguments, the common case, carries none).
    map: Option<Box<MapEntries>>,
}

/// A map's `key=value` texts, sorted before they are written: a `HashMap`'s iteration order
/// is random per process, its key must not be.
#[derive(Default)]
struct MapEntries {
    entries: Vec<String>,
    key: Option<String>,
}

impl Compound<'_, '_> {
    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), KeyError> {
        if !self.first {
            self.writer.out.push(self.separator);
        }
        self.first = false;
        value.serialize(&mut *self.writer)
    }

    fn end(mut self) -> Result<(), KeyError> {
        if let Some(mut map) = self.map.take() {
            map.entries.sort_unstable();
            self.writer.out.push_str(&map.entries.join(","));
        }
        if let Some(close) = self.close {
            self.writer.out.push(close);
        }
        Ok(())
    }
}

/// Renders one value on its own (a map's key or value).
fn render<T: ?Sized + Serialize>(value: &T) -> Result<String, KeyError> {
    let mut out = String::new();
    value.serialize(&mut KeyWriter {
        out: &mut out,
        top: false,
    })?;
    Ok(out)
}

macro_rules! decimal_integers {
    ($($method:ident: $ty:ty),*) => {
        $(fn $method(self, value: $ty) -> Result<(), KeyError> {
            self.top = false;
            self.out.push_str(itoa::Buffer::new().format(value));
            Ok(())
        })*
    };
}

impl<'a, 'o> ser::Serializer for &'a mut KeyWriter<'o> {
    type Ok = ();
    type Error = KeyError;
    type SerializeSeq = Compound<'a, 'o>;
    type SerializeTuple = Compound<'a, 'o>;
    type SerializeTupleStruct = Compound<'a, 'o>;
    type SerializeTupleVariant = Compound<'a, 'o>;
    type SerializeMap = Compound<'a, 'o>;
    type SerializeStruct = Compound<'a, 'o>;
    type SerializeStructVariant = Compound<'a, 'o>;

    decimal_integers!(
        serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64,
        serialize_i128: i128, serialize_u8: u8, serialize_u16: u16, serialize_u32: u32,
        serialize_u64: u64, serialize_u128: u128
    );

    fn serialize_bool(self, value: bool) -> Result<(), KeyError> {
        self.top = false;
        self.out.push_str(if value { "true" } else { "false" });
        Ok(())
    }

    fn serialize_f32(self, value: f32) -> Result<(), KeyError> {
        self.serialize_f64(f64::from(value))
    }

    fn serialize_f64(self, value: f64) -> Result<(), KeyError> {
        // `!` marks a float (never the start of a string); the bits make it exact.
        self.top = false;
        let _ = write!(self.out, "!{:016x}", value.to_bits());
        Ok(())
    }

    fn serialize_char(self, value: char) -> Result<(), KeyError> {
        self.top = false;
        self.string(value.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, value: &str) -> Result<(), KeyError> {
        self.top = false;
        self.string(value);
        Ok(())
    }

    fn serialize_bytes(self, value: &[u8]) -> Result<(), KeyError> {
        self.top = false;
        self.out.push('^');
        for byte in value {
            let _ = write!(self.out, "{byte:02x}");
        }
        Ok(())
    }

    fn serialize_none(self) -> Result<(), KeyError> {
        self.top = false;
        self.out.push('~');
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), KeyError> {
        self.top = false;
        self.out.push('+');
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), KeyError> {
        self.top = false;
        self.out.push_str("()");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), KeyError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), KeyError> {
        self.open(Some(variant), '(').end()
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        // Transparent: `UserId(42)` reads `42`.
        self.top = false;
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), KeyError> {
        let mut compound = self.open(Some(variant), '(');
        compound.element(value)?;
        compound.end()
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'a, 'o>, KeyError> {
        Ok(self.open(None, '['))
    }

    fn serialize_tuple(self, _len: usize) -> Result<Compound<'a, 'o>, KeyError> {
        if self.top {
            // The argument list: one `:`-separated segment per argument.
            self.top = false;
            return Ok(Compound {
                writer: self,
                first: true,
                separator: ':',
                close: None,
                map: None,
            });
        }
        Ok(self.open(None, '('))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o>, KeyError> {
        Ok(self.open(None, '('))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o>, KeyError> {
        Ok(self.open(Some(variant), '('))
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'a, 'o>, KeyError> {
        Ok(self.open(None, '<'))
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o>, KeyError> {
        Ok(self.open(None, '('))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'a, 'o>, KeyError> {
        Ok(self.open(Some(variant), '('))
    }
}

/// The compound traits whose elements are written in order, as `self.element`.
macro_rules! in_order {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = KeyError;
            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), KeyError> {
                self.element(value)
            }
            fn end(self) -> Result<(), KeyError> {
                Compound::end(self)
            }
        }
    )*};
}

in_order!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = KeyError;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), KeyError> {
        self.map.get_or_insert_default().key = Some(render(key)?);
        Ok(())
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), KeyError> {
        let map = self.map.get_or_insert_default();
        let key = map.key.take().unwrap_or_default();
        map.entries.push(format!("{key}={}", render(value)?));
        Ok(())
    }
    fn end(self) -> Result<(), KeyError> {
        Compound::end(self)
    }
}

/// The struct traits: field values in declaration order, names left out.
macro_rules! fields_in_order {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = KeyError;
            fn serialize_field<T: ?Sized + Serialize>(
                &mut self,
                _key: &'static str,
                value: &T,
            ) -> Result<(), KeyError> {
                self.element(value)
            }
            fn end(self) -> Result<(), KeyError> {
                Compound::end(self)
            }
        }
    )*};
}

fields_in_order!(SerializeStruct, SerializeStructVariant);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_tags_become_bounded_digests() {
        let long = "t".repeat(10 << 20);
        let segment = tag_segment(&long);
        assert_eq!(segment.len(), 33, "{}", &segment[..40.min(segment.len())]);
        assert_ne!(segment, tag_segment(&"t".repeat((10 << 20) + 1)));
        assert_eq!(tag_segment("user:42"), "user%3A42");
        // 100 colons escape to 300 bytes: digested too.
        assert!(tag_segment(&":".repeat(100)).starts_with('#'));
    }

    #[test]
    fn simple_arguments_stay_readable() {
        assert_eq!(argument_segment(&(42_u64, "ada")).unwrap(), "42:ada");
        assert_eq!(argument_segment(&(-7_i32,)).unwrap(), "-7");
        assert_eq!(argument_segment(&()).unwrap(), "()", "no arguments");
        assert_eq!(argument_segment(&("a@b.com",)).unwrap(), "a@b.com");
        assert_eq!(name_segment("app::users::get_user"), "app.users.get_user");
    }

    #[test]
    fn separators_and_globs_are_escaped() {
        let colon = argument_segment(&("a:b", "c")).unwrap();
        let split = argument_segment(&("a", "b:c")).unwrap();
        assert_eq!(colon, "a%3Ab:c");
        assert_eq!(split, "a:b%3Ac");
        assert_ne!(colon, split);
        assert_eq!(argument_segment(&("*",)).unwrap(), "%2A");
        assert_eq!(argument_segment(&("{x}",)).unwrap(), "%7Bx%7D");
        assert_ne!(name_segment("a.b"), name_segment("a::b"));
    }

    #[test]
    fn kinds_never_collide() {
        let texts = [
            argument_segment(&(42_u64,)).unwrap(),
            argument_segment(&("42",)).unwrap(),
            argument_segment(&(true,)).unwrap(),
            argument_segment(&("true",)).unwrap(),
            argument_segment(&("",)).unwrap(),
            argument_segment(&(None::<u8>,)).unwrap(),
            argument_segment(&(Some(""),)).unwrap(),
            argument_segment(&(vec![1_u8, 2],)).unwrap(),
            argument_segment(&(vec![12_u8],)).unwrap(),
            argument_segment(&(vec!["1,2"],)).unwrap(),
            argument_segment(&(1.5_f64,)).unwrap(),
        ];
        for (i, a) in texts.iter().enumerate() {
            for b in &texts[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn maps_are_written_in_a_fixed_order() {
        use std::collections::HashMap;
        let forward: HashMap<u32, &str> = (0..50).map(|i| (i, "v")).collect();
        let backward: HashMap<u32, &str> = (0..50).rev().map(|i| (i, "v")).collect();
        assert_eq!(
            argument_segment(&(&forward,)).unwrap(),
            argument_segment(&(&backward,)).unwrap()
        );
        let small: HashMap<&str, u8> = [("b", 2), ("a", 1)].into_iter().collect();
        assert_eq!(argument_segment(&(small,)).unwrap(), "<a=1,b=2>");
    }

    #[test]
    fn long_arguments_become_a_stable_digest() {
        let long = "x".repeat(500);
        let key = argument_segment(&(long.as_str(),)).unwrap();
        assert_eq!(key.len(), 33);
        assert!(key.starts_with('#'));
        // Fixed by XXH3's specification: the same in every process and build.
        assert_eq!(key, argument_segment(&(long.as_str(),)).unwrap());
        assert_ne!(key, argument_segment(&(&long[1..],)).unwrap());
    }
}
