//! The helpers, borrowed key shapes, constant TTLs and rewritten signatures under strict lints.
#![deny(missing_docs, warnings, unused, unsafe_code)]

use std::borrow::Cow;
use std::time::Duration;

use cachemere::{Cached, SetOutcome, cached};

/// A TTL from configuration.
pub const CONFIG_TTL: Duration = Duration::from_secs(300);

/// Borrowed shapes as key parts, a constant TTL and a tag.
#[cached(ttl = CONFIG_TTL, tags = ["team:{team}"])]
pub fn members<'a>(team: &'a str, filter: Option<&str>, names: &[&str], note: Cow<'a, str>) -> Vec<String> {
    names
        .iter()
        .filter(|name| filter.is_none_or(|f| name.contains(f)))
        .map(|name| format!("{team}:{name}:{note}"))
        .collect()
}

/// A `mut` parameter and a const-expression TTL.
#[cached(ttl = Duration::from_secs(5 * 60))]
pub async fn countdown(mut from: u32) -> u32 {
    while from > 0 {
        from -= 1;
    }
    from
}

/// A type with a cached method.
#[derive(Clone, Hash, PartialEq, Eq)]
pub struct Shelf(pub u32);

impl Shelf {
    const TTL: Duration = Duration::from_secs(60);

    /// A cached method with every helper.
    #[cached(ttl = Self::TTL)]
    pub fn books(&self, genre: Option<&str>) -> Result<u32, String> {
        Ok(self.0 + genre.map_or(0, |g| g.len() as u32))
    }
}

/// Arguments recorded in the computation's span, one skipped.
#[cached(trace_args = true, skip(verbose), ttl = 60)]
pub fn traced(region: &str, year: u16, verbose: bool) -> String {
    if verbose { format!("{region}/{year}") } else { region.to_owned() }
}

fn main() {
    assert_eq!(traced("eu", 2026, true), "eu/2026");
    assert_eq!(traced::cache_config().ttl, Some(Duration::from_secs(60)));
    assert_eq!(Shelf::books_cache_config().maxsize, cachemere::DEFAULT_MAXSIZE);
    let hit: Cached<Vec<String>> = members::call("a", None, &["x"], Cow::Borrowed("n"));
    assert!(!hit.is_hit());
    assert_eq!(members::set("a", None, &["x"], Cow::Borrowed("n"), Vec::new()), SetOutcome::Stored);
    assert_eq!(members::peek("a", None, &["x"], Cow::Borrowed("n")), Some(Vec::new()));
    let _ = members::refresh("a", Some("x"), &["x"], Cow::Borrowed("n"));
    let _ = members::uncached("a", Some("x"), &["x"], Cow::Borrowed("n"));
    let _ = countdown(3);
    let shelf = Shelf(1);
    assert_eq!(shelf.books(Some("poetry")), Ok(7));
    assert_eq!(shelf.books_set(None, Ok(2)), SetOutcome::Stored);
    assert_eq!(shelf.books_peek(None), Some(Ok(2)));
    assert_eq!(shelf.books_call(None).value, Ok(2));
    assert_eq!(shelf.books_refresh(None), Ok(1));
    assert_eq!(shelf.books_uncached(None), Ok(1));
}
