use cachemere::cached;

#[cached(backend = "memcached")]
fn f(id: u64) -> u64 {
    id
}

#[cached(backend = 42)]
fn g(id: u64) -> u64 {
    id
}

fn main() {}
