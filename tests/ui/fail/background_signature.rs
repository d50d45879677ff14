use std::borrow::Cow;

use cachemere::cached;

#[derive(Clone, Hash, PartialEq, Eq)]
struct Catalog;

impl Catalog {
    // A background refresh needs its own receiver, and the key does not say which one.
    #[cached(ttl = 60, stale_while_revalidate = "10m", skip(self))]
    fn price(&self, item: u64) -> u64 {
        item
    }
}

// A `Cow` borrowing the caller's data cannot be copied into a background refresh.
#[cached(ttl = 60, stale_while_revalidate = "10m")]
fn describe(text: Cow<'_, str>) -> String {
    text.into_owned()
}

fn main() {
    let _ = Catalog.price(1);
    let _ = describe(Cow::Borrowed("a"));
}
