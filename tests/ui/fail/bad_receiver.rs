use cachemere::cached;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Counter(u64);

impl Counter {
    #[cached]
    fn bump(&mut self, by: u64) -> u64 {
        self.0 += by;
        self.0
    }

    #[cached]
    fn consume(self, by: u64) -> u64 {
        self.0 + by
    }
}

fn main() {}
