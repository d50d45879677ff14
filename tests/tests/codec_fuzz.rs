//! Hostile remote values: `Codec::decode` of random bytes, mutated valid encodings, huge length
//! prefixes and deep nesting, for every codec and several types, never panics, never
//! overflows the stack (the decodes run on a 256 KiB stack, where a missing depth limit
//! aborts this binary) and never allocates much more than its input.
//!
//! Seeded: the seed is printed, and `CACHEMERE_FUZZ_SEED=<seed>` repeats a run. The random
//! part stops after a fixed count of cases or 2.5 s, whichever comes first.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachemere::remote::Codec;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Counts the bytes live on each thread, and the most that were live at once.
struct Counting;

thread_local! {
    // Per thread, so the test harness's other threads do not disturb the count.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let live = LIVE.with(|live| {
        live.set(live.get() + bytes);
        live.get()
    });
    PEAK.with(|peak| peak.set(peak.get().max(live)));
}

fn shrank(bytes: usize) {
    // Saturating: a block freed here may have been allocated on another thread.
    LIVE.with(|live| live.set(live.get().saturating_sub(bytes)));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        shrank(layout.size());
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as the new block allocated before the old one is freed, as a move would be.
        grew(new_size);
        shrank(layout.size());
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The most a decode of `len` bytes may allocate beyond what was live before it.
fn allocation_bound(len: usize) -> usize {
    64 * len + (1 << 20)
}

/// The stack the decodes run on: deep enough for the depth limit (about 100 to 160 KiB in a
/// debug build), far too shallow for a value nested thousands of levels.
const STACK: usize = 256 << 10;
/// Random cases per codec and type, at most.
const RANDOM_CASES: usize = 4_000;
/// When the random part stops, if the count is not reached first.
const RANDOM_TIME: Duration = Duration::from_millis(2_500);

#[derive(Debug, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}

/// A recursive enum with every variant form.
#[derive(Debug, Serialize, Deserialize)]
enum Expr {
    Lit(i64),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    List(Vec<Expr>),
    Named {
        name: String,
        value: Option<Box<Expr>>,
    },
    Nothing,
}

#[derive(Debug, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: Option<String>,
    email: Option<String>,
    tags: Option<Vec<String>>,
    score: Option<f64>,
    active: Option<bool>,
    parent: Option<Box<Profile>>,
}

type Strings = Vec<String>;
type Scores = HashMap<String, Vec<u64>>;

fn codecs() -> [Codec; 3] {
    [Codec::Postcard, Codec::Json, Codec::Bincode]
}

/// SplitMix64: small, seedable, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.word() % n as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.word() as u8).collect()
    }

    fn string(&mut self) -> String {
        const CHARS: &[char] = &['a', 'z', '0', ' ', '"', '\\', '\n', 'é', '🦀', '\u{0}'];
        (0..self.below(6))
            .map(|_| CHARS[self.below(CHARS.len())])
            .collect()
    }

    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.chance(2) { None } else { Some(f(self)) }
    }

    fn tree(&mut self) -> Tree {
        (0..self.below(12)).fold(Tree::Leaf, |tree, _| Tree::Node(Box::new(tree)))
    }

    fn expr(&mut self, depth: usize) -> Expr {
        let pick = if depth == 0 { 0 } else { self.below(6) };
        match pick {
            0 => Expr::Lit(self.word() as i64 >> self.below(64)),
            1 => Expr::Neg(Box::new(self.expr(depth - 1))),
            2 => Expr::Add(
                Box::new(self.expr(depth - 1)),
                Box::new(self.expr(depth - 1)),
            ),
            3 => Expr::List((0..self.below(4)).map(|_| self.expr(depth - 1)).collect()),
            4 => Expr::Named {
                name: self.string(),
                value: self.opt(|rng| Box::new(rng.expr(depth - 1))),
            },
            _ => Expr::Nothing,
        }
    }

    fn profile(&mut self, depth: usize) -> Profile {
        Profile {
            id: self.word() >> self.below(64),
            name: self.opt(Self::string),
            email: self.opt(Self::string),
            tags: self.opt(|rng| (0..rng.below(4)).map(|_| rng.string()).collect()),
            score: self.opt(|rng| rng.below(1000) as f64 / 8.0),
            active: self.opt(|rng| rng.chance(2)),
            parent: if depth == 0 {
                None
            } else {
                self.opt(|rng| Box::new(rng.profile(depth - 1)))
            },
        }
    }

    fn strings(&mut self) -> Strings {
        (0..self.below(6)).map(|_| self.string()).collect()
    }

    fn scores(&mut self) -> Scores {
        (0..self.below(4))
            .map(|_| {
                let key = self.string();
                let count = self.below(5);
                let values = (0..count).map(|_| self.word() >> self.below(64));
                (key, values.collect())
            })
            .collect()
    }
}

/// Valid encodings of random values of every type, in `codec`.
fn samples(rng: &mut Rng, codec: Codec) -> Vec<Vec<u8>> {
    let tree = rng.tree();
    let expr = rng.expr(5);
    let profile = rng.profile(3);
    let strings = rng.strings();
    let scores = rng.scores();
    vec![
        codec.encode(&tree).expect("encode"),
        codec.encode(&expr).expect("encode"),
        codec.encode(&profile).expect("encode"),
        codec.encode(&strings).expect("encode"),
        codec.encode(&scores).expect("encode"),
    ]
}

/// A valid encoding changed a little: bit flips, truncation, splices, repeats.
fn mutate(rng: &mut Rng, mut bytes: Vec<u8>, others: &[Vec<u8>]) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(8) {
            0 | 1 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
            }
            2 if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes[at] = [0x00, 0x7F, 0x80, 0xFF, 0xFB, 0xFC, 0xFD, b'['][rng.below(8)];
            }
            3 => bytes.truncate(rng.below(bytes.len() + 1)),
            4 => {
                let at = rng.below(bytes.len() + 1);
                let len = rng.below(8) + 1;
                let noise = rng.bytes(len);
                bytes.splice(at..at, noise);
            }
            5 => {
                // Splice a piece of another encoding in.
                let other = &others[rng.below(others.len())];
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                let at = rng.below(bytes.len() + 1);
                bytes.splice(at..at, other[from..to].iter().copied());
            }
            6 if !bytes.is_empty() => {
                // Repeat a piece many times (a cheap way to deep or long values).
                let from = rng.below(bytes.len());
                let to = from + rng.below((bytes.len() - from).min(8)) + 1;
                let piece = bytes[from..to].to_vec();
                let times = rng.below(2_000) + 1;
                bytes.splice(from..from, piece.repeat(times));
            }
            _ if !bytes.is_empty() => {
                let at = rng.below(bytes.len());
                bytes.remove(at);
            }
            _ => bytes.push(rng.word() as u8),
        }
    }
    bytes
}

/// A postcard varint of `n`.
fn varint(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7F) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// bincode's standard varint of `n`: one byte below 251, else a marker and a fixed width.
fn bincode_varint(n: u64) -> Vec<u8> {
    match n {
        0..=250 => vec![n as u8],
        251..=0xFFFF => [&[251][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xFFFF_FFFF => [&[252][..], &(n as u32).to_le_bytes()].concat(),
        _ => [&[253][..], &n.to_le_bytes()].concat(),
    }
}

/// Inputs written to be hostile: huge length prefixes and deep nesting, for `codec`.
fn hostile(codec: Codec) -> Vec<Vec<u8>> {
    let mut cases = Vec::new();
    let deep = [1_000, 100_000];
    match codec {
        Codec::Json => {
            for levels in deep {
                cases.push([b"[".repeat(levels), b"]".repeat(levels)].concat());
                cases.push(b"[".repeat(levels));
                cases.push(br#"{"a":"#.repeat(levels));
                cases.push(br#"{"Node":"#.repeat(levels));
                cases.push(br#"{"Neg":"#.repeat(levels));
                cases.push(br#"{"List":["#.repeat(levels));
                cases.push(br#"{"Named":{"name":"","value":"#.repeat(levels));
                cases.push(br#"{"id":1,"parent":"#.repeat(levels));
                cases.push(br#"{"a":["#.repeat(levels));
                cases.push(br#"[""#.repeat(levels));
            }
            cases.push(br#"{"a":[1,1,1,1"#.to_vec());
            cases.push(br#"""#.repeat(3));
            cases.push([&b"\""[..], &b"a".repeat(100_000)].concat());
            cases.push([&b"["[..], &b"1,".repeat(50_000)].concat());
            cases.push([&b"{"[..], &br#""a":[],"#.repeat(10_000)].concat());
        }
        Codec::Postcard | Codec::Bincode => {
            let len = |n: u64| {
                if codec == Codec::Postcard {
                    varint(n)
                } else {
                    bincode_varint(n)
                }
            };
            for n in [
                u64::MAX,
                1 << 62,
                1 << 40,
                u64::from(u32::MAX),
                60 << 20,
                1 << 20,
            ] {
                // A collection, a string and a map claiming `n` items, with little or nothing.
                cases.push(len(n));
                cases.push([len(n), vec![1, b'a']].concat());
                cases.push([len(n), vec![1, b'a'], len(n), vec![1]].concat());
                // A struct whose options hold collections claiming `n` items each.
                cases.push([vec![1, 1], len(n), vec![1], len(n), vec![1, 1], len(n)].concat());
                // Nested collections each claiming `n` items (an Expr::List chain, a Vec<Vec<..>>).
                cases.push([vec![3], len(n)].concat().repeat(200));
                cases.push(len(n).repeat(200));
            }
            for levels in deep {
                // Tree::Node (or Expr::Neg, or a Some, or a one-item list), ended or cut off.
                cases.push([vec![1; levels], vec![0]].concat());
                cases.push(vec![1; levels]);
                // Expr::List of one, Expr::Named with a value.
                cases.push([3, 1].repeat(levels));
                cases.push([4, 0, 1].repeat(levels));
                // Profile: id, no name, no email, no tags, no score, no active, a parent.
                cases.push([1, 0, 0, 0, 0, 0, 1].repeat(levels));
            }
        }
        _ => unreachable!("a codec this test does not know"),
    }
    cases
}

/// What went wrong in the decodes.
#[derive(Default)]
struct Findings {
    decodes: usize,
    failures: Vec<String>,
}

impl Findings {
    /// Decodes `bytes` as a `T`, recording a panic or an allocation over the bound.
    fn decode<T: DeserializeOwned>(&mut self, codec: Codec, bytes: &[u8], case: &str) {
        self.decodes += 1;
        let before = LIVE.with(Cell::get);
        PEAK.with(|peak| peak.set(before));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            // The value (or error) is dropped inside, so its drop is checked too.
            codec.decode::<T>(bytes).is_ok()
        }));
        let extra = PEAK.with(Cell::get) - before;
        let what = || {
            let mut hex = String::new();
            for byte in bytes.iter().take(48) {
                let _ = write!(hex, "{byte:02x}");
            }
            format!(
                "{codec:?} as {} from {case} ({} bytes: {hex}{})",
                std::any::type_name::<T>(),
                bytes.len(),
                if bytes.len() > 48 { "..." } else { "" }
            )
        };
        if outcome.is_err() {
            self.failures.push(format!("panic: {}", what()));
        }
        if extra > allocation_bound(bytes.len()) {
            self.failures.push(format!(
                "allocated {extra} bytes (bound {}): {}",
                allocation_bound(bytes.len()),
                what()
            ));
        }
    }

    fn decode_all(&mut self, codec: Codec, bytes: &[u8], case: &str) {
        self.decode::<Tree>(codec, bytes, case);
        self.decode::<Expr>(codec, bytes, case);
        self.decode::<Profile>(codec, bytes, case);
        self.decode::<Strings>(codec, bytes, case);
        self.decode::<Scores>(codec, bytes, case);
    }
}

fn seed() -> u64 {
    match std::env::var("CACHEMERE_FUZZ_SEED") {
        Ok(seed) => seed.trim().parse().expect("CACHEMERE_FUZZ_SEED is a u64"),
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
    }
}

fn fuzz(seed: u64) -> Findings {
    let mut findings = Findings::default();
    let mut rng = Rng(seed);
    for codec in codecs() {
        for (i, bytes) in hostile(codec).iter().enumerate() {
            findings.decode_all(codec, bytes, &format!("hostile case {i}"));
        }
    }
    let deadline = Instant::now() + RANDOM_TIME;
    'random: for case in 0..RANDOM_CASES {
        for codec in codecs() {
            if Instant::now() > deadline {
                break 'random;
            }
            let samples = samples(&mut rng, codec);
            let bytes = match rng.below(4) {
                0 => {
                    let len = rng.below(64);
                    rng.bytes(len)
                }
                _ => {
                    let valid = samples[rng.below(samples.len())].clone();
                    mutate(&mut rng, valid, &samples)
                }
            };
            findings.decode_all(codec, &bytes, &format!("random case {case}"));
        }
    }
    findings
}

#[test]
fn hostile_bytes_never_panic_overflow_or_allocate_beyond_their_length() {
    let seed = seed();
    // Straight to stderr, past the test harness's capture, so an abort still shows it.
    let _ = writeln!(
        std::io::stderr(),
        "codec_fuzz seed {seed} (CACHEMERE_FUZZ_SEED={seed} repeats this run)"
    );
    let started = Instant::now();
    let findings = std::thread::Builder::new()
        .name("codec-fuzz".to_string())
        .stack_size(STACK)
        .spawn(move || fuzz(seed))
        .expect("spawn the fuzz thread")
        .join()
        .expect("the fuzz thread itself does not panic");
    let _ = writeln!(
        std::io::stderr(),
        "codec_fuzz: {} decodes in {:?}",
        findings.decodes,
        started.elapsed()
    );
    assert!(findings.decodes > 1_000, "too few decodes ran");
    assert!(
        findings.failures.is_empty(),
        "seed {seed}: {} failures, the first ones:\n{}",
        findings.failures.len(),
        findings.failures[..findings.failures.len().min(20)].join("\n")
    );
}

/// The valid values the fuzz mutates do decode, so mutations start from real encodings.
#[test]
fn the_samples_decode() {
    let mut rng = Rng(seed());
    for codec in codecs() {
        for _ in 0..50 {
            let samples = samples(&mut rng, codec);
            assert!(codec.decode::<Tree>(&samples[0]).is_ok());
            assert!(codec.decode::<Expr>(&samples[1]).is_ok());
            assert!(codec.decode::<Profile>(&samples[2]).is_ok());
            assert!(codec.decode::<Strings>(&samples[3]).is_ok());
            assert!(codec.decode::<Scores>(&samples[4]).is_ok());
        }
    }
}
