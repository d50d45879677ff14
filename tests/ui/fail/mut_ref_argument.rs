use cachemere::cached;

#[cached]
fn f(buffer: &mut Vec<u8>) -> usize {
    buffer.len()
}

fn main() {}
