//! A hit allocates nothing, for owned, `&str`, `&[T]`, `&T`, `Option<&str>`, `Option<&T>`,
//! `&[&str]`, `Vec<&str>` and `Cow<str>` arguments, sync and async, with TTL and tags; a miss
//! clones the value once. Counted with a counting global allocator (this binary only).

use std::borrow::Cow;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cachemere::cached;
use cachemere_tests::counting::{Counting, allocations_on_this_thread};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(mut f: impl FnMut()) -> usize {
    let before = allocations_on_this_thread();
    for _ in 0..1000 {
        f();
    }
    allocations_on_this_thread() - before
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Point {
    x: i64,
    y: i64,
}

#[cached]
fn by_u64(key: u64) -> u64 {
    key
}

#[cached]
fn by_str(name: &str) -> usize {
    name.len()
}

#[cached]
fn by_string(name: String) -> usize {
    name.len()
}

#[cached]
fn by_slice(values: &[u32]) -> u32 {
    values.iter().sum()
}

#[cached]
fn by_ref(point: &Point) -> i64 {
    point.x + point.y
}

#[cached(ttl = 300, tags = ["user:{id}", "users"])]
fn with_ttl_and_tags(id: u64, name: &str) -> Option<u64> {
    Some(id + name.len() as u64)
}

#[cached]
async fn async_by_str(name: &str) -> usize {
    name.len()
}

#[cached]
fn by_optional_str(name: Option<&str>) -> usize {
    name.map_or(0, str::len)
}

#[cached]
fn by_optional_ref(point: Option<&Point>) -> i64 {
    point.map_or(0, |p| p.x * p.y)
}

#[cached]
fn by_str_slice(names: &[&str]) -> usize {
    names.iter().map(|name| name.len()).sum()
}

#[cached]
fn by_str_vec(names: Vec<&str>) -> usize {
    names.len()
}

#[cached]
fn by_cow(name: Cow<'_, str>) -> usize {
    name.len()
}

#[cached]
fn by_optional_cow(name: Option<Cow<'_, str>>) -> usize {
    name.map_or(0, |name| name.len())
}

/// Counts its clones: a miss should make exactly one (for the store).
#[derive(Debug)]
struct CountedClones(u64);

static CLONES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Clone for CountedClones {
    fn clone(&self) -> Self {
        CLONES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        CountedClones(self.0)
    }
}

#[cached]
fn counted(x: u64) -> CountedClones {
    CountedClones(x)
}

#[cached]
fn counted_ok(x: u64) -> Result<CountedClones, String> {
    Ok(CountedClones(x))
}

fn poll_once<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a hit of a memory-backed async fn completes at once"),
    }
}

#[test]
fn hits_do_not_allocate() {
    let point = Point { x: 1, y: 2 };
    let values = [1_u32, 2, 3];
    let name = String::from("ada lovelace");
    // Warm every cache (this allocates: keys, entries, the clock thread).
    by_u64(1);
    // Its first hit takes this thread's copy (the hit front): one allocation per thread and
    // cache, at the first copy; hits on the copy allocate nothing.
    by_u64(1);
    by_str(&name);
    by_string(name.clone());
    by_slice(&values);
    by_ref(&point);
    with_ttl_and_tags(7, &name);
    poll_once(async_by_str(&name));

    assert_eq!(allocations_during(|| assert_eq!(by_u64(1), 1)), 0, "u64");
    assert_eq!(
        allocations_during(|| assert_eq!(by_str(&name), 12)),
        0,
        "&str"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_slice(&values), 6)),
        0,
        "&[u32]"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_ref(&point), 3)),
        0,
        "&Point"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(with_ttl_and_tags(7, &name), Some(19))),
        0,
        "TTL and tags"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(poll_once(async_by_str(&name)), 12)),
        0,
        "async &str"
    );
    let ada = Point { x: 3, y: 4 };
    let names = ["ada", "grace"];
    let name_vec = vec!["ada", "grace"];
    by_optional_str(Some("ada"));
    by_optional_str(None);
    by_optional_ref(Some(&ada));
    by_str_slice(&names);
    by_str_vec(name_vec.clone());
    by_cow(Cow::Borrowed("ada"));
    by_optional_cow(Some(Cow::Borrowed("ada")));
    assert_eq!(
        allocations_during(|| assert_eq!(by_optional_str(Some("ada")), 3)),
        0,
        "Option<&str>"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_optional_str(None), 0)),
        0,
        "Option<&str> (None)"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_optional_ref(Some(&ada)), 12)),
        0,
        "Option<&Point>"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_str_slice(&names), 8)),
        0,
        "&[&str]"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_cow(Cow::Borrowed("ada")), 3)),
        0,
        "Cow<str>"
    );
    assert_eq!(
        allocations_during(|| assert_eq!(by_optional_cow(Some(Cow::Borrowed("ada"))), 3)),
        0,
        "Option<Cow<str>>"
    );
    // The caller builds the Vec; looking it up adds nothing.
    assert_eq!(
        allocations_during(|| assert_eq!(by_str_vec(name_vec.clone()), 2)),
        1000,
        "Vec<&str>: only the caller's own Vec"
    );
    let owned = name.clone();
    // An owned String argument is moved in and dropped by the caller; the hit itself adds nothing.
    assert_eq!(
        allocations_during(|| assert_eq!(by_string(owned.clone()), 12)),
        1000,
        "only the caller's own clone"
    );
    // The warming hit and the 1000 counted ones, from the copy or the store alike.
    assert_eq!(by_u64::cache_info().hits, 1001);
}

#[test]
fn borrowed_shapes_find_what_owned_forms_stored() {
    // Looked up borrowed, stored owned: each shape finds its own entry and only its own.
    assert_eq!(by_optional_str(Some("grace")), 5);
    assert_eq!(by_optional_str(Some("grace")), 5);
    assert_eq!(by_optional_str(Some("gracf")), 5);
    let misses = by_optional_str::cache_info().misses;
    assert!(by_optional_str::invalidate(Some("grace")).removed());
    assert!(!by_optional_str::invalidate(Some("grace")).removed());
    assert_eq!(by_optional_str(Some("grace")), 5);
    assert_eq!(by_optional_str::cache_info().misses, misses + 1);
    assert_eq!(by_str_slice(&["a", "bc"]), 3);
    assert_eq!(by_str_slice(&["ab", "c"]), 3);
    assert!(by_str_slice::invalidate(&["a", "bc"]).removed());
    assert!(
        by_str_slice::peek(&["ab", "c"]).is_some(),
        "a different split is another key"
    );
    let owned = String::from("ada");
    assert_eq!(by_cow(Cow::Owned(owned.clone())), 3);
    assert_eq!(
        by_cow::peek(Cow::Borrowed("ada")),
        Some(3),
        "owned and borrowed Cow are one key"
    );
}

#[test]
fn a_miss_clones_the_value_once() {
    use std::sync::atomic::Ordering;
    let before = CLONES.load(Ordering::SeqCst);
    assert_eq!(counted(1).0, 1);
    assert_eq!(CLONES.load(Ordering::SeqCst) - before, 1, "plain miss");
    let before = CLONES.load(Ordering::SeqCst);
    assert_eq!(counted_ok(1).unwrap().0, 1);
    assert_eq!(CLONES.load(Ordering::SeqCst) - before, 1, "Result miss");
    let before = CLONES.load(Ordering::SeqCst);
    assert_eq!(counted(1).0, 1);
    assert_eq!(
        CLONES.load(Ordering::SeqCst) - before,
        1,
        "a hit clones once too"
    );
    let before = CLONES.load(Ordering::SeqCst);
    assert!(counted::set(2, CountedClones(2)).is_stored());
    assert_eq!(
        CLONES.load(Ordering::SeqCst) - before,
        0,
        "set stores the value it is given"
    );
}
