use cachemere::cached;

#[cached(tags = ["user:{uid}", "bad:{id"])]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
