use cachemere::cached;

#[cached]
fn pair_len(pair: (&str, u64)) -> usize {
    pair.0.len()
}

fn main() {}
