use cachemere::cached;

#[cached(cache_none = true, cache_err = true)]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
