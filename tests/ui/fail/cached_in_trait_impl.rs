use cachemere::cached;

trait Lookup {
    fn find(&self, id: u64) -> u64;
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Table;

impl Lookup for Table {
    #[cached]
    fn find(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
