use cachemere::cached;

struct Service {
    base: u64,
}

impl Service {
    #[cached]
    fn get(&self, id: u64) -> u64 {
        self.base + id
    }
}

fn main() {
    let _ = Service { base: 1 }.get(2);
}
