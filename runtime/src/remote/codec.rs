//! How values are turned into bytes for a remote store, and framed with what a reader needs
//! to judge them: the format, the codec, and the invalidation stamps they were computed under.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The serde format of remote values. Chosen per [`Remote`](super::Remote); a value written by
/// another codec reads as a miss (and is then overwritten).
///
/// ```
/// use cachemere::remote::Codec;
///
/// let bytes = Codec::Postcard.encode(&("ada", 36_u8)).unwrap();
/// let back: (String, u8) = Codec::Postcard.decode(&bytes).unwrap();
/// assert_eq!(back, ("ada".to_string(), 36));
/// assert!(Codec::Postcard.decode::<u8>(&bytes).is_err(), "another type is refused");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// `postcard`: compact, with a stable, documented wire format. The default.
    #[default]
    Postcard,
    /// JSON (`serde_json`, feature `json`): readable in `redis-cli`.
    #[cfg(feature = "json")]
    Json,
    /// bincode 2 (feature `bincode`), with a 64 MiB decode limit.
    #[cfg(feature = "bincode")]
    Bincode,
}

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The bytes are not a value of this cache: too short, another format or codec, or
    /// written under another schema.
    #[error("stored bytes are not a cachemere value of this codec: {0}")]
    Frame(&'static str),
    /// The codec refused the value or the bytes.
    #[error("{codec:?} could not {action} the value: {message}")]
    Serde {
        /// The codec.
        codec: Codec,
        /// `"encode"` or `"decode"`.
        action: &'static str,
        /// The codec's message.
        message: String,
    },
}

/// The decode limit of codecs that take one: a hostile length cannot allocate more.
#[cfg(feature = "bincode")]
const DECODE_LIMIT: usize = 64 << 20;

impl Codec {
    fn id(self) -> u8 {
        match self {
            Codec::Postcard => 1,
            #[cfg(feature = "json")]
            Codec::Json => 2,
            #[cfg(feature = "bincode")]
            Codec::Bincode => 3,
        }
    }

    fn error(self, action: &'static str, message: impl ToString) -> CodecError {
        CodecError::Serde {
            codec: self,
            action,
            message: message.to_string(),
        }
    }

    /// Encodes `value` alone (no frame).
    pub fn encode<T: ?Sized + Serialize>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        match self {
            Codec::Postcard => postcard::to_allocvec(value).map_err(|e| self.error("encode", e)),
            #[cfg(feature = "json")]
            Codec::Json => serde_json::to_vec(value).map_err(|e| self.error("encode", e)),
            #[cfg(feature = "bincode")]
            Codec::Bincode => bincode::serde::encode_to_vec(value, bincode::config::standard())
                .map_err(|e| self.error("encode", e)),
        }
    }

    /// Decodes a value encoded by [`encode`](Self::encode). Allocation is bounded by the input:
    /// postcard and serde cap preallocation from length prefixes, bincode has a limit.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            // Trailing bytes mean the value is of another type (e.g. a generic method's other
            // instantiation sharing the name): refuse rather than misread.
            Codec::Postcard => match postcard::take_from_bytes(bytes) {
                Ok((value, [])) => Ok(value),
                Ok(_) => Err(self.error("decode", "trailing bytes after the value")),
                Err(error) => Err(self.error("decode", error)),
            },
            #[cfg(feature = "json")]
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| self.error("decode", e)),
            #[cfg(feature = "bincode")]
            Codec::Bincode => {
                let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
                match bincode::serde::decode_from_slice(bytes, config) {
                    Ok((value, read)) if read == bytes.len() => Ok(value),
                    Ok(_) => Err(self.error("decode", "trailing bytes after the value")),
                    Err(error) => Err(self.error("decode", error)),
                }
            }
        }
    }
}

/// The first byte of every framed value.
const MAGIC: u8 = 0xCA;
/// The frame layout version (1 had no kind and no token; its values read as unreadable).
const FRAME_VERSION: u8 = 2;
/// The codec byte of markers, which carry no payload.
const NO_CODEC: u8 = 0;

/// How many leading bytes of a stored value identify what was written: magic, frame version,
/// kind, codec and a 128-bit nonce fresh for every write. A populate replaces the value only
/// if these bytes are still the ones it read before computing (see
/// [`RemoteStore::compare_and_set`](super::RemoteStore::compare_and_set)).
pub(crate) const TOKEN_LEN: usize = 20;
/// Token, then a `u16` stamp count.
const VALUE_HEADER: usize = TOKEN_LEN + 2;

/// What a framed value holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A value, with the invalidation stamps it was computed under.
    Value = 1,
    /// A placeholder written by a caller about to compute the value: its write succeeds only
    /// if nothing replaced the placeholder meanwhile.
    Lease = 2,
    /// What `invalidate(args)` leaves: no value, and every populate that read what was there
    /// before fails.
    Tombstone = 3,
}

/// A stamp: the 64-bit digest of one invalidation key's value (0 when absent).
pub(crate) type Stamp = u64;

/// The identifying prefix of a stored value: [`TOKEN_LEN`] bytes.
pub(crate) type Token = [u8; TOKEN_LEN];

/// A stored value, split.
#[derive(Debug)]
pub(crate) enum Stored<'a> {
    /// A value: its token, the stamps it was written under, and the codec's bytes.
    Value {
        token: Token,
        stamps: Vec<Stamp>,
        payload: &'a [u8],
    },
    /// A lease or a tombstone: no value.
    Marker { token: Token },
}

/// 128 bits no earlier write used (from std's per-process random hasher keys, the time, the
/// process id and a counter).
pub(crate) fn fresh_nonce() -> [u8; 16] {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
    let (a, b) = KEYS.get_or_init(|| (RandomState::new(), RandomState::new()));
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = (
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed),
        std::process::id(),
    );
    let mut nonce = [0; 16];
    nonce[..8].copy_from_slice(&a.hash_one(seed).to_le_bytes());
    nonce[8..].copy_from_slice(&b.hash_one(seed).to_le_bytes());
    nonce
}

fn token(kind: Kind, codec: u8) -> Token {
    let mut token = [0; TOKEN_LEN];
    token[..4].copy_from_slice(&[MAGIC, FRAME_VERSION, kind as u8, codec]);
    token[4..].copy_from_slice(&fresh_nonce());
    token
}

/// Frames `payload` with the stamps it was computed under, behind a fresh token. At most
/// 65,535 stamps are written (the macro allows 1,024 tags, plus the clear and remote-wide
/// stamps).
pub(crate) fn frame(codec: Codec, stamps: &[Stamp], payload: &[u8]) -> Vec<u8> {
    let count = u16::try_from(stamps.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(VALUE_HEADER + 8 * stamps.len() + payload.len());
    out.extend_from_slice(&token(Kind::Value, codec.id()));
    out.extend_from_slice(&count.to_le_bytes());
    for stamp in stamps.iter().take(usize::from(count)) {
        out.extend_from_slice(&stamp.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// A fresh lease or tombstone.
pub(crate) fn marker(kind: Kind) -> Vec<u8> {
    token(kind, NO_CODEC).to_vec()
}

/// The token of a stored value, if it is a frame of this format (of any codec).
pub(crate) fn token_of(bytes: &[u8]) -> Option<Token> {
    let token: Token = bytes.get(..TOKEN_LEN)?.try_into().ok()?;
    let known_kind = matches!(token[2], 1..=3);
    (token[0] == MAGIC && token[1] == FRAME_VERSION && known_kind).then_some(token)
}

/// Whether a stored prefix (as [`RemoteStore::swap`](super::RemoteStore::swap) returns) was a
/// value, rather than a lease, a tombstone or nothing of ours.
pub(crate) fn is_value(prefix: &[u8]) -> bool {
    token_of(prefix).is_some_and(|token| token[2] == Kind::Value as u8)
}

/// Splits a stored value, checking every length.
pub(crate) fn unframe(codec: Codec, bytes: &[u8]) -> Result<Stored<'_>, CodecError> {
    let token = token_of(bytes).ok_or(CodecError::Frame("unknown magic, frame version or kind"))?;
    if token[2] != Kind::Value as u8 {
        return Ok(Stored::Marker { token });
    }
    if token[3] != codec.id() {
        return Err(CodecError::Frame("written by another codec"));
    }
    let count = bytes
        .get(TOKEN_LEN..VALUE_HEADER)
        .map(|count| usize::from(u16::from_le_bytes([count[0], count[1]])))
        .ok_or(CodecError::Frame("truncated header"))?;
    let stamps_end = VALUE_HEADER + 8 * count;
    let stamp_bytes = bytes
        .get(VALUE_HEADER..stamps_end)
        .ok_or(CodecError::Frame("truncated stamps"))?;
    let stamps = stamp_bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    Ok(Stored::Value {
        token,
        stamps,
        payload: &bytes[stamps_end..],
    })
}

/// The stamp of an invalidation key's value as read (absent is 0).
pub(crate) fn stamp_of(value: Option<&[u8]>) -> Stamp {
    match value {
        None => 0,
        Some(bytes) => xxhash_rust::xxh3::xxh3_64(bytes) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_reject_garbage() {
        let payload = Codec::Postcard.encode(&("ada", 7_u32)).unwrap();
        let framed = frame(Codec::Postcard, &[3, 9], &payload);
        let Stored::Value {
            token,
            stamps,
            payload: rest,
        } = unframe(Codec::Postcard, &framed).unwrap()
        else {
            panic!("a value frame reads as a value");
        };
        assert_eq!(stamps, vec![3, 9]);
        assert_eq!(token_of(&framed), Some(token));
        assert!(is_value(&framed[..TOKEN_LEN]));
        let value: (String, u32) = Codec::Postcard.decode(rest).unwrap();
        assert_eq!(value, ("ada".to_string(), 7));
        assert!(unframe(Codec::Postcard, b"garbage").is_err());
        assert!(unframe(Codec::Postcard, &framed[..21]).is_err());
        assert!(unframe(Codec::Postcard, &framed[..25]).is_err());
        assert!(unframe(Codec::Postcard, &[]).is_err());
    }

    #[test]
    fn every_write_has_its_own_token_and_markers_are_not_values() {
        let payload = Codec::Postcard.encode(&1_u8).unwrap();
        let a = frame(Codec::Postcard, &[], &payload);
        let b = frame(Codec::Postcard, &[], &payload);
        assert_ne!(token_of(&a), token_of(&b), "same value, new token");
        for kind in [Kind::Lease, Kind::Tombstone] {
            let marker = marker(kind);
            assert!(matches!(
                unframe(Codec::Postcard, &marker),
                Ok(Stored::Marker { .. })
            ));
            assert!(!is_value(&marker));
        }
        assert!(!is_value(b"\xCA\x02"));
    }

    #[test]
    fn more_than_255_stamps_fit() {
        let stamps: Vec<Stamp> = (1..=300).collect();
        let framed = frame(Codec::Postcard, &stamps, &[0]);
        let Ok(Stored::Value { stamps: read, .. }) = unframe(Codec::Postcard, &framed) else {
            panic!("a value frame reads as a value");
        };
        assert_eq!(read, stamps);
    }

    #[test]
    fn a_value_of_another_type_is_refused() {
        let wide = Codec::Postcard.encode(&300_u64).unwrap();
        assert!(Codec::Postcard.decode::<u8>(&wide).is_err());
        assert_eq!(Codec::Postcard.decode::<u64>(&wide).unwrap(), 300);
    }

    #[test]
    fn a_hostile_length_prefix_does_not_allocate_it() {
        // A postcard varint claiming 2^62 elements, followed by nothing.
        let hostile = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40];
        let decoded: Result<Vec<u64>, _> = Codec::Postcard.decode(&hostile);
        assert!(decoded.is_err());
        let decoded: Result<String, _> = Codec::Postcard.decode(&hostile);
        assert!(decoded.is_err());
    }
}
