use cachemere::cached;

#[cached]
struct NotAFunction;

fn main() {}
