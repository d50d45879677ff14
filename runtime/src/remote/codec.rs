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
    /// The bytes hold a value nested deeper than the decode depth limit (sequences, maps,
    /// structs, tuples, enum variants, `Some` and newtypes each count one level): refused
    /// before decoding it could overflow the stack.
    #[error("stored value is nested deeper than {limit} levels")]
    TooDeep {
        /// The depth limit.
        limit: usize,
    },
    /// The bytes are longer than the decode size limit: refused without decoding.
    #[error("stored value is {len} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// The length of the bytes.
        len: usize,
        /// The size limit.
        limit: usize,
    },
}

/// The longest value decoded (64 MiB), in every codec: longer bytes are refused unread, and
/// bincode, which takes a limit, cannot be made to read or allocate more than this.
const DECODE_LIMIT: usize = 64 << 20;

/// The deepest nesting decoded, in every codec. Decoding recurses once per level, so an
/// unbounded depth lets a small hostile value (100,000 nested one-byte enum variants)
/// overflow the stack and abort the process. 100 levels is far beyond any cached value's
/// shape, and decoding that deep took 100 to 160 KiB of stack in a debug build (measured for
/// the tested types; a tokio worker has 2 MiB, the fuzz test runs on 256 KiB). It is below
/// serde_json's own limit of 128 containers, so a JSON value too deep is reported by this
/// limit, as in the other codecs.
const DEPTH_LIMIT: usize = 100;

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

    /// Decodes a value encoded by [`encode`](Self::encode). Bytes longer than 64 MiB are
    /// refused ([`CodecError::TooLarge`]), and so is a value nested more than 100 levels deep
    /// ([`CodecError::TooDeep`]), so hostile bytes cannot overflow the stack. Allocation is
    /// bounded by the input: the length prefixes of collections are capped by the bytes left
    /// to hold their elements before anything is preallocated.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        if bytes.len() > DECODE_LIMIT {
            return Err(CodecError::TooLarge {
                len: bytes.len(),
                limit: DECODE_LIMIT,
            });
        }
        let guard = super::bounded::Guard::new(DEPTH_LIMIT, bytes.len());
        // Trailing bytes mean the value is of another type (e.g. a generic method's other
        // instantiation sharing the name): refuse rather than misread.
        let trailing = || self.error("decode", "trailing bytes after the value");
        let decoded = match self {
            Codec::Postcard => {
                let mut deserializer = postcard::Deserializer::from_bytes(bytes);
                match guard.decode::<T, _>(&mut deserializer) {
                    Ok(value) => match deserializer.finalize() {
                        Ok([]) => Ok(value),
                        Ok(_) => Err(trailing()),
                        Err(error) => Err(self.error("decode", error)),
                    },
                    Err(error) => Err(self.error("decode", error)),
                }
            }
            #[cfg(feature = "json")]
            Codec::Json => {
                let mut deserializer = serde_json::Deserializer::from_slice(bytes);
                guard
                    .decode::<T, _>(&mut deserializer)
                    .and_then(|value| deserializer.end().map(|()| value))
                    .map_err(|error| self.error("decode", error))
            }
            #[cfg(feature = "bincode")]
            Codec::Bincode => {
                let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
                match bincode::serde::seed_decode_from_slice(guard.seed::<T>(), bytes, config) {
                    Ok((value, read)) if read == bytes.len() => Ok(value),
                    Ok(_) => Err(trailing()),
                    Err(error) => Err(self.error("decode", error)),
                }
            }
        };
        match decoded {
            Err(_) if guard.too_deep() => Err(CodecError::TooDeep { limit: DEPTH_LIMIT }),
            decoded => decoded,
        }
    }
}

/// The first byte of every framed value.
const MAGIC: u8 = 0xCA;
/// The frame layout version (1 had no kind and no token; 2 no time in its nonce; 3 no
/// freshness deadline: their values read as unreadable and are overwritten).
const FRAME_VERSION: u8 = 4;
/// The codec byte of markers, which carry no payload.
const NO_CODEC: u8 = 0;

/// How many leading bytes of a stored value identify what was written: magic, frame version,
/// kind, codec and a 128-bit nonce fresh for every write: the time the value's computation
/// started (Unix milliseconds, little-endian; what `Age` is read from), then 64 random bits. A populate replaces the value only
/// if these bytes are still the ones it read before computing (see
/// [`RemoteStore::compare_and_set`](super::RemoteStore::compare_and_set)).
pub(crate) const TOKEN_LEN: usize = 20;
/// Where a value's freshness deadline (Unix milliseconds, little-endian) ends: right after
/// the token.
const FRESH_END: usize = TOKEN_LEN + 8;
/// Token, freshness deadline, then a `u16` stamp count.
const VALUE_HEADER: usize = FRESH_END + 2;

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
    /// A value: its token, until when it is fresh (Unix milliseconds, by its writer's clock),
    /// the stamps it was written under, and the codec's bytes.
    Value {
        token: Token,
        fresh_until: u64,
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

fn token(kind: Kind, codec: u8, written_at: u64) -> Token {
    let mut token = [0; TOKEN_LEN];
    token[..4].copy_from_slice(&[MAGIC, FRAME_VERSION, kind as u8, codec]);
    token[4..12].copy_from_slice(&written_at.to_le_bytes());
    token[12..].copy_from_slice(&fresh_nonce()[..8]);
    token
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

/// When the value behind `token` was computed (Unix milliseconds, as its writer's clock said).
pub(crate) fn written_at(token: &Token) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&token[4..12]);
    u64::from_le_bytes(word)
}

/// Frames `payload` with the stamps it was computed under, behind a fresh token that records
/// `written_at` (Unix milliseconds at the computation's start), and with `fresh_until` (Unix
/// milliseconds; a store may keep the value longer, for stale windows). At most 65,535
/// stamps are written (the macro allows 1,024 tags, plus the clear and remote-wide stamps).
pub(crate) fn frame(
    codec: Codec,
    stamps: &[Stamp],
    (written_at, fresh_until): (u64, u64),
    payload: &[u8],
) -> Vec<u8> {
    let count = u16::try_from(stamps.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(VALUE_HEADER + 8 * stamps.len() + payload.len());
    out.extend_from_slice(&token(Kind::Value, codec.id(), written_at));
    out.extend_from_slice(&fresh_until.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    for stamp in stamps.iter().take(usize::from(count)) {
        out.extend_from_slice(&stamp.to_le_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// A fresh lease or tombstone.
pub(crate) fn marker(kind: Kind) -> Vec<u8> {
    token(kind, NO_CODEC, unix_ms()).to_vec()
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

/// Whether a marker's token is a lease's: a computation of the entry under way.
pub(crate) fn is_lease(token: &Token) -> bool {
    token[2] == Kind::Lease as u8
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
    let fresh_until = bytes
        .get(TOKEN_LEN..FRESH_END)
        .and_then(|word| <[u8; 8]>::try_from(word).ok())
        .map(u64::from_le_bytes)
        .ok_or(CodecError::Frame("truncated header"))?;
    let count = bytes
        .get(FRESH_END..VALUE_HEADER)
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
        fresh_until,
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
        let framed = frame(Codec::Postcard, &[3, 9], (42, 99), &payload);
        let Stored::Value {
            token,
            fresh_until,
            stamps,
            payload: rest,
        } = unframe(Codec::Postcard, &framed).unwrap()
        else {
            panic!("a value frame reads as a value");
        };
        assert_eq!(stamps, vec![3, 9]);
        assert_eq!(fresh_until, 99);
        assert_eq!(token_of(&framed), Some(token));
        assert_eq!(
            written_at(&token),
            42,
            "the computation's start is in the token"
        );
        assert!(is_value(&framed[..TOKEN_LEN]));
        let value: (String, u32) = Codec::Postcard.decode(rest).unwrap();
        assert_eq!(value, ("ada".to_string(), 7));
        assert!(unframe(Codec::Postcard, b"garbage").is_err());
        assert!(unframe(Codec::Postcard, &framed[..21]).is_err());
        assert!(unframe(Codec::Postcard, &framed[..29]).is_err());
        assert!(unframe(Codec::Postcard, &framed[..33]).is_err());
        assert!(unframe(Codec::Postcard, &[]).is_err());
    }

    #[test]
    fn every_write_has_its_own_token_and_markers_are_not_values() {
        let payload = Codec::Postcard.encode(&1_u8).unwrap();
        let a = frame(Codec::Postcard, &[], (42, 99), &payload);
        let b = frame(Codec::Postcard, &[], (42, 99), &payload);
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
        let framed = frame(Codec::Postcard, &stamps, (42, 99), &[0]);
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

    /// The depth and size limits, for every codec.
    mod limits {
        use super::*;
        use serde::Deserialize;
        use std::collections::{BTreeMap, HashMap};

        /// One nesting level per variant (enum).
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Tree {
            Leaf,
            Node(Box<Tree>),
        }

        /// Two levels per `Nest` (newtype, sequence): `Vec<Vec<Vec<..>>>`.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Nest(Vec<Nest>);

        /// Two levels per `Some` (struct, option), one for the last struct.
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Opt {
            next: Option<Box<Opt>>,
        }

        /// Two levels per `Maps` (newtype, map).
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Maps(BTreeMap<u8, Maps>);

        fn codecs() -> Vec<Codec> {
            vec![
                Codec::Postcard,
                #[cfg(feature = "json")]
                Codec::Json,
                #[cfg(feature = "bincode")]
                Codec::Bincode,
            ]
        }

        fn tree(nodes: usize) -> Tree {
            (0..nodes).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
        }

        fn nest(count: usize) -> Nest {
            (1..count).fold(Nest(Vec::new()), |nest, _| Nest(vec![nest]))
        }

        fn opt(somes: usize) -> Opt {
            (0..somes).fold(Opt { next: None }, |opt, _| Opt {
                next: Some(Box::new(opt)),
            })
        }

        fn maps(count: usize) -> Maps {
            (1..count).fold(Maps(BTreeMap::new()), |maps, _| {
                Maps(BTreeMap::from([(0, maps)]))
            })
        }

        /// Hand-written encodings nested `levels` deep, of each shape above: building the value
        /// and encoding it would itself overflow the stack. postcard and bincode's standard
        /// configuration write a variant index, a length and an option tag below 128 in one byte.
        fn hostile(codec: Codec, shape: &str, levels: usize) -> Vec<u8> {
            let (open, leaf, close): (&[u8], &[u8], &[u8]) = match (codec, shape) {
                (Codec::Postcard, "tree" | "nest" | "opt") => (&[1], &[0], &[]),
                (Codec::Postcard, "maps") => (&[1, 0], &[0], &[]),
                #[cfg(feature = "bincode")]
                (Codec::Bincode, "tree" | "nest" | "opt") => (&[1], &[0], &[]),
                #[cfg(feature = "bincode")]
                (Codec::Bincode, "maps") => (&[1, 0], &[0], &[]),
                #[cfg(feature = "json")]
                (Codec::Json, "tree") => (br#"{"Node":"#, br#""Leaf""#, b"}"),
                #[cfg(feature = "json")]
                (Codec::Json, "nest") => (b"[", b"[]", b"]"),
                #[cfg(feature = "json")]
                (Codec::Json, "opt") => (br#"{"next":"#, br#"{"next":null}"#, b"}"),
                #[cfg(feature = "json")]
                (Codec::Json, "maps") => (br#"{"0":"#, b"{}", b"}"),
                _ => unreachable!("no such shape"),
            };
            let mut bytes = open.repeat(levels);
            bytes.extend_from_slice(leaf);
            bytes.extend_from_slice(&close.repeat(levels));
            bytes
        }

        fn is_too_deep<T: std::fmt::Debug>(decoded: Result<T, CodecError>) -> bool {
            matches!(decoded, Err(CodecError::TooDeep { limit: DEPTH_LIMIT }))
        }

        /// Runs `f` on a thread with a small stack, as a missing limit would overflow it.
        fn on_small_stack(f: impl FnOnce() + Send + 'static) {
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(f)
                .unwrap()
                .join()
                .unwrap();
        }

        #[test]
        fn a_deeply_nested_value_is_refused_not_a_stack_overflow() {
            on_small_stack(|| {
                for codec in codecs() {
                    for levels in [DEPTH_LIMIT + 1, 10_000, 100_000] {
                        let tree = hostile(codec, "tree", levels);
                        assert!(
                            is_too_deep(codec.decode::<Tree>(&tree)),
                            "{codec:?} {levels}"
                        );
                        let nest = hostile(codec, "nest", levels);
                        assert!(
                            is_too_deep(codec.decode::<Nest>(&nest)),
                            "{codec:?} {levels}"
                        );
                        let opt = hostile(codec, "opt", levels);
                        assert!(is_too_deep(codec.decode::<Opt>(&opt)), "{codec:?} {levels}");
                        let maps = hostile(codec, "maps", levels);
                        assert!(
                            is_too_deep(codec.decode::<Maps>(&maps)),
                            "{codec:?} {levels}"
                        );
                    }
                }
            });
        }

        #[test]
        fn the_hand_written_encodings_are_the_codecs_own() {
            for codec in codecs() {
                assert_eq!(codec.encode(&tree(3)).unwrap(), hostile(codec, "tree", 3));
                assert_eq!(codec.encode(&nest(4)).unwrap(), hostile(codec, "nest", 3));
                assert_eq!(codec.encode(&opt(3)).unwrap(), hostile(codec, "opt", 3));
                assert_eq!(codec.encode(&maps(4)).unwrap(), hostile(codec, "maps", 3));
            }
        }

        #[test]
        fn a_value_at_the_depth_limit_decodes_and_one_level_more_is_refused() {
            on_small_stack(|| {
                for codec in codecs() {
                    // `nodes` Node variants and a Leaf: one level each.
                    let at_limit = codec.encode(&tree(DEPTH_LIMIT - 1)).unwrap();
                    assert_eq!(
                        codec.decode::<Tree>(&at_limit).unwrap(),
                        tree(DEPTH_LIMIT - 1)
                    );
                    let over = codec.encode(&tree(DEPTH_LIMIT)).unwrap();
                    assert!(is_too_deep(codec.decode::<Tree>(&over)), "{codec:?}");
                    // Two levels per Nest or Maps, and per Some; one for the last Opt.
                    let at_limit = codec.encode(&nest(DEPTH_LIMIT / 2)).unwrap();
                    assert_eq!(
                        codec.decode::<Nest>(&at_limit).unwrap(),
                        nest(DEPTH_LIMIT / 2)
                    );
                    let over = codec.encode(&nest(DEPTH_LIMIT / 2 + 1)).unwrap();
                    assert!(is_too_deep(codec.decode::<Nest>(&over)), "{codec:?}");
                    let at_limit = codec.encode(&maps(DEPTH_LIMIT / 2)).unwrap();
                    assert_eq!(
                        codec.decode::<Maps>(&at_limit).unwrap(),
                        maps(DEPTH_LIMIT / 2)
                    );
                    let over = codec.encode(&maps(DEPTH_LIMIT / 2 + 1)).unwrap();
                    assert!(is_too_deep(codec.decode::<Maps>(&over)), "{codec:?}");
                    let somes = (DEPTH_LIMIT - 1) / 2;
                    let at_limit = codec.encode(&opt(somes)).unwrap();
                    assert_eq!(codec.decode::<Opt>(&at_limit).unwrap(), opt(somes));
                    let over = codec.encode(&opt(somes + 1)).unwrap();
                    assert!(is_too_deep(codec.decode::<Opt>(&over)), "{codec:?}");
                }
            });
        }

        /// serde_json's own limit (128 containers) holds without ours, and ours is below it.
        #[cfg(feature = "json")]
        #[test]
        fn serde_json_alone_refuses_deep_nesting_too() {
            on_small_stack(|| {
                for levels in [128, 100_000] {
                    let nest = hostile(Codec::Json, "nest", levels);
                    assert!(serde_json::from_slice::<Nest>(&nest).is_err());
                    let tree = hostile(Codec::Json, "tree", levels);
                    assert!(serde_json::from_slice::<Tree>(&tree).is_err());
                    let value = serde_json::from_slice::<serde_json::Value>(&nest);
                    assert!(value.unwrap_err().to_string().contains("recursion limit"));
                }
                // 127 arrays: under serde_json's limit, over ours.
                let nest = hostile(Codec::Json, "nest", 126);
                assert!(serde_json::from_slice::<serde_json::Value>(&nest).is_ok());
                assert!(is_too_deep(Codec::Json.decode::<serde_json::Value>(&nest)));
            });
        }

        #[test]
        fn bytes_over_the_size_limit_are_refused_unread() {
            let long = vec![0_u8; DECODE_LIMIT + 1];
            for codec in codecs() {
                match codec.decode::<Vec<u8>>(&long) {
                    Err(CodecError::TooLarge { len, limit }) => {
                        assert_eq!((len, limit), (DECODE_LIMIT + 1, DECODE_LIMIT));
                    }
                    other => panic!("{codec:?}: {other:?}"),
                }
            }
        }

        #[cfg(feature = "bincode")]
        #[test]
        fn a_hostile_bincode_string_length_is_refused() {
            // A varint claiming a 60 MiB string (under the limit), followed by nothing.
            let mut hostile = vec![253];
            hostile.extend_from_slice(&(60_u64 << 20).to_le_bytes());
            assert!(Codec::Bincode.decode::<String>(&hostile).is_err());
            assert!(Codec::Bincode.decode::<Vec<u8>>(&hostile).is_err());
            assert!(Codec::Bincode.decode::<Vec<Vec<u64>>>(&hostile).is_err());
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum Shape {
            Unit,
            Newtype(u32),
            Tuple(i8, String),
            Struct { name: String, tags: Vec<String> },
        }

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Record {
            id: u64,
            name: Option<String>,
            nickname: Option<String>,
            scores: HashMap<String, Vec<u64>>,
            shapes: Vec<Shape>,
            bytes: Vec<u8>,
            pair: (char, f64),
            wide: (i128, u128),
            tree: Tree,
        }

        #[test]
        fn values_round_trip_through_every_codec() {
            let record = Record {
                id: 7,
                name: Some("ada \"lovelace\" \u{e9}\n".to_string()),
                nickname: None,
                scores: HashMap::from([
                    ("a".to_string(), vec![1, 2, 3]),
                    ("b".to_string(), vec![]),
                ]),
                shapes: vec![
                    Shape::Unit,
                    Shape::Newtype(9),
                    Shape::Tuple(-3, "t".to_string()),
                    Shape::Struct {
                        name: "s".to_string(),
                        tags: vec!["x".to_string(); 3],
                    },
                ],
                bytes: (0..=255).collect(),
                pair: ('\u{1F980}', 1.5),
                wide: (i128::MIN, u128::MAX),
                tree: tree(10),
            };
            for codec in codecs() {
                let bytes = codec.encode(&record).unwrap();
                assert_eq!(codec.decode::<Record>(&bytes).unwrap(), record, "{codec:?}");
                let mut trailing = bytes.clone();
                trailing.extend_from_slice(b" 1");
                assert!(codec.decode::<Record>(&trailing).is_err(), "{codec:?}");
                let strings = vec!["x".repeat(1000); 100];
                let bytes = codec.encode(&strings).unwrap();
                assert_eq!(codec.decode::<Vec<String>>(&bytes).unwrap(), strings);
            }
        }
    }
}
