use cachemere::cached;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Region(u32);

#[cached(backend = "redis")]
fn price(region: &Region, id: u64) -> u64 {
    region.0 as u64 + id
}

fn main() {
    let _ = price(&Region(1), 2);
}
