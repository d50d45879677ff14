use cachemere::cached;

#[cached(skip(conn, self))]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
