use cachemere::cached;

#[cached(maxsize = "big", cache_none = 1, name = 7, tags = [user])]
fn f(x: u64) -> Option<u64> {
    Some(x)
}

fn main() {}
