use cachemere::cached;

#[cached(maxsize = 0)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
