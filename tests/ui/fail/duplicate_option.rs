use cachemere::cached;

#[cached(ttl = 5, ttl = 6)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
