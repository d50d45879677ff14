use std::cell::Cell;

use cachemere::cached;

#[cached]
fn counter(x: u32) -> Cell<u32> {
    Cell::new(x)
}

fn main() {}
