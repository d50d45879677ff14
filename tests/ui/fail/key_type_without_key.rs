use cachemere::cached;

#[cached(key_type = String)]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
