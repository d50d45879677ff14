use cachemere::cached;

#[cached(tll = 5, maxsize = 10, sizemax = 3)]
fn f(x: u64) -> u64 {
    x
}

fn main() {}
