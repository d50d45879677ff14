use cachemere::cached;

// An in-memory cache has single flight already; a lease needs a store shared by processes.
#[cached(lock = true)]
fn in_memory(item: u64) -> u64 {
    item
}

// Waiting for another process's lease needs single flight within the process, so that a
// recursive call never waits for its own lease.
#[cached(backend = "redis", lock = true, single_flight = false)]
fn without_single_flight(item: u64) -> u64 {
    item
}

// `lock` is a flag.
#[cached(backend = "redis", lock = "10s")]
fn not_a_flag(item: u64) -> u64 {
    item
}

fn main() {
    let _ = in_memory(1);
    let _ = without_single_flight(1);
    let _ = not_a_flag(1);
}
