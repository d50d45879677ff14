use cachemere::cached;

#[cached]
fn f<T: std::fmt::Display>(value: T) -> String {
    value.to_string()
}

fn main() {}
