use cachemere::cached;

struct Client;

#[cached]
fn fetch(client: &Client, id: u64) -> u64 {
    let _ = client;
    id
}

fn main() {
    let _ = fetch(&Client, 1);
}
