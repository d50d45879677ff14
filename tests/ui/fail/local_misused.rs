use cachemere::cached;

// An in-memory cache is local already: `local` puts copies of a remote cache in front of it.
#[cached(local = "30s")]
fn in_memory(item: u64) -> u64 {
    item
}

// `local` is a duration.
#[cached(backend = "redis", local = true)]
fn not_a_duration(item: u64) -> u64 {
    item
}

fn main() {
    let _ = in_memory(1);
    let _ = not_a_duration(1);
}
