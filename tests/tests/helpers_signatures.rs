//! Signatures the helpers must accept: `key = expr` (with `skip`), lifetimes, `mut`, an argument
//! named `value`, methods with `skip(self)` and `key = self..`, async memory and remote.
#![allow(dead_code)]

use std::borrow::Cow;

use cachemere::{SetOutcome, cached};

#[cached(key = format!("{a}"))]
fn keyed(a: u64, b: u64) -> u64 {
    a + b
}

#[cached(skip(conn), tags = ["conn:{conn}"])]
fn tagged_skip(id: u64, conn: &str) -> u64 {
    id + conn.len() as u64
}

#[cached]
fn lifetimes<'a>(x: &'a str, y: Option<&'a str>, z: Vec<&'a str>) -> usize {
    x.len() + y.map_or(0, str::len) + z.len()
}

#[cached]
fn muts(mut x: u64, mut y: String) -> u64 {
    x += 1;
    y.push('!');
    x + y.len() as u64
}

#[cached]
fn named_value(value: u64, new_value: u64) -> u64 {
    value + new_value
}

#[cached]
async fn asynchronous(id: u64, name: Cow<'_, str>) -> Option<String> {
    Some(format!("{id}{name}"))
}

#[derive(Clone, Hash, PartialEq, Eq)]
struct Repo {
    id: u64,
}

impl Repo {
    #[cached(key = self.id, key_type = u64)]
    fn keyed_method(&self, page: u32) -> u64 {
        self.id + u64::from(page)
    }

    #[cached(skip(self), tags = ["page:{page}"])]
    fn skipped(&self, page: u32, mut extra: u32) -> u64 {
        extra += 1;
        u64::from(page + extra)
    }

    #[cached]
    async fn async_method(&self, page: u32) -> Result<u64, String> {
        Ok(self.id + u64::from(page))
    }
}

#[test]
fn helpers_of_unusual_signatures() {
    assert_eq!(keyed(1, 2), 3);
    assert_eq!(keyed::set(1, 9, 10), SetOutcome::Stored);
    assert_eq!(keyed(1, 5), 10);
    assert_eq!(keyed::peek(1, 0), Some(10));

    assert_eq!(tagged_skip::set(1, "c", 5), SetOutcome::Stored);
    assert_eq!(tagged_skip(1, "c"), 5);
    cachemere::invalidate_tag("conn:c");
    assert_eq!(tagged_skip::peek(1, "c"), None);

    let s = String::from("ab");
    assert_eq!(lifetimes(&s, Some(&s), vec![&s]), 5);
    assert_eq!(lifetimes::peek(&s, Some(&s), vec![&s]), Some(5));
    assert_eq!(lifetimes::set(&s, None, vec![], 1), SetOutcome::Stored);
    assert_eq!(lifetimes(&s, None, vec![]), 1);

    assert_eq!(muts(1, "a".into()), 4);
    assert_eq!(muts::set(1, "a".into(), 7), SetOutcome::Stored);
    assert_eq!(muts(1, "a".into()), 7);
    assert_eq!(muts::refresh(1, "a".into()), 4);

    assert_eq!(named_value::set(1, 2, 30), SetOutcome::Stored);
    assert_eq!(named_value(1, 2), 30);

    let repo = Repo { id: 1 };
    assert_eq!(repo.keyed_method_set(0, 50), SetOutcome::Stored);
    assert_eq!(repo.keyed_method(3), 50);
    assert_eq!(Repo::skipped_set(2, 0, 40), SetOutcome::Stored);
    assert_eq!(repo.skipped(2, 0), 40);
    cachemere::invalidate_tag("page:2");
    assert_eq!(repo.skipped(2, 0), 3);
}
