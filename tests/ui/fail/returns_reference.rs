use cachemere::cached;

#[cached]
fn f(id: u64) -> &'static str {
    if id == 0 { "zero" } else { "other" }
}

fn main() {}
