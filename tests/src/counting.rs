//! A counting global allocator for the allocation tests: each test binary declares
//! `#[global_allocator] static GLOBAL: Counting = Counting;` and reads
//! [`allocations_on_this_thread`] around what it measures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The system allocator, counting allocations and reallocations per thread.
pub struct Counting;

thread_local! {
    // Counted per thread, so the harness's and the runtime's other threads do not disturb it.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// The allocations and reallocations made on this thread so far.
pub fn allocations_on_this_thread() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: every method forwards to `System` with the same arguments; counting touches only a
// thread-local `Cell`, which allocates nothing.
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
