use cachemere::cached;

#[derive(Clone, PartialEq, Eq, Hash)]
struct Region(u32);

// `trace_args` records the key arguments' `Debug` forms: `Region` has none.
#[cached(trace_args = true)]
fn population(region: Region, year: u16) -> u64 {
    u64::from(region.0) + u64::from(year)
}

fn main() {
    population(Region(1), 2026);
}
