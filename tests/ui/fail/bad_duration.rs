use cachemere::cached;

#[cached(ttl = "5 minutes")]
fn f(x: u64) -> u64 {
    x
}

#[cached(ttl = 0)]
fn g(x: u64) -> u64 {
    x
}

fn main() {}
