//! A hit allocates nothing, for owned, `&str`, `&[T]` and `&T` arguments, sync and async,
//! with TTL and tags. Counted with a counting global allocator (this binary only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use cachemere::cached;

struct Counting;

thread_local! {
    // Counted per thread, so the test harness's other threads do not disturb the count.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(mut f: impl FnMut()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..1000 {
        f();
    }
    ALLOCATIONS.with(Cell::get) - before
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
    let owned = name.clone();
    // An owned String argument is moved in and dropped by the caller; the hit itself adds nothing.
    assert_eq!(
        allocations_during(|| assert_eq!(by_string(owned.clone()), 12)),
        1000,
        "only the caller's own clone"
    );
    assert_eq!(by_u64::cache_info().hits, 1000);
}
