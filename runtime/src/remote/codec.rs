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
/// The frame layout version.
const FRAME_VERSION: u8 = 1;
/// Header: magic, frame version, codec id, stamp count.
const HEADER: usize = 4;

/// A stamp: the 64-bit digest of one invalidation key's value (0 when absent).
pub(crate) type Stamp = u64;

/// Frames `payload` with the stamps it was computed under.
pub(crate) fn frame(codec: Codec, stamps: &[Stamp], payload: &[u8]) -> Vec<u8> {
    let count = u8::try_from(stamps.len()).unwrap_or(u8::MAX);
    let mut out = Vec::with_capacity(HEADER + 8 * stamps.len() + payload.len());
    out.extend_from_slice(&[MAGIC, FRAME_VERSION, codec.id(), count]);
    for stamp in stamps.iter().take(usize::from(count)) {
        out.extend_from_slice(&stamp.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Splits a framed value into its stamps and payload, checking every length.
pub(crate) fn unframe(codec: Codec, bytes: &[u8]) -> Result<(Vec<Stamp>, &[u8]), CodecError> {
    let header = bytes
        .get(..HEADER)
        .ok_or(CodecError::Frame("shorter than the header"))?;
    if header[0] != MAGIC || header[1] != FRAME_VERSION {
        return Err(CodecError::Frame("unknown magic or frame version"));
    }
    if header[2] != codec.id() {
        return Err(CodecError::Frame("written by another codec"));
    }
    let count = usize::from(header[3]);
    let stamps_end = HEADER + 8 * count;
    let stamp_bytes = bytes
        .get(HEADER..stamps_end)
        .ok_or(CodecError::Frame("truncated stamps"))?;
    let stamps = stamp_bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            u64::from_le_bytes(word)
        })
        .collect();
    Ok((stamps, &bytes[stamps_end..]))
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
        let (stamps, rest) = unframe(Codec::Postcard, &framed).unwrap();
        assert_eq!(stamps, vec![3, 9]);
        let value: (String, u32) = Codec::Postcard.decode(rest).unwrap();
        assert_eq!(value, ("ada".to_string(), 7));
        assert!(unframe(Codec::Postcard, b"garbage").is_err());
        assert!(unframe(Codec::Postcard, &framed[..7]).is_err());
        assert!(unframe(Codec::Postcard, &[]).is_err());
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
