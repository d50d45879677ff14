//! HTTP caching headers from real calls: what a client is told never outlasts what the server
//! keeps, including on a slow miss (the TTL started with the computation), and a result the
//! cache does not keep is `no-store`.

use std::time::Duration;

use cachemere::cached;
use cachemere::http::HttpCaching;
use http::HeaderMap;
use http::header::{AGE, CACHE_CONTROL};

#[cached(ttl = "3s")]
fn slow_profile(id: u64) -> Result<String, String> {
    std::thread::sleep(Duration::from_millis(1_200));
    if id == 0 {
        return Err("no profile 0".into());
    }
    Ok(format!("profile {id}"))
}

/// How long a cache honouring `Age` keeps the response fresh: `max-age` minus `Age`.
fn fresh(headers: &HeaderMap) -> u64 {
    let max_age: u64 = headers[CACHE_CONTROL]
        .to_str()
        .expect("text")
        .rsplit_once("max-age=")
        .and_then(|(_, n)| n.parse().ok())
        .expect("max-age");
    let age: u64 = headers[AGE].to_str().expect("text").parse().expect("Age");
    max_age.saturating_sub(age)
}

#[test]
fn a_slow_miss_is_told_only_the_ttl_left() {
    let caching = HttpCaching::new(slow_profile::cache_config());
    let miss = slow_profile::call(1);
    assert!(miss.age >= Duration::from_millis(1_200), "{:?}", miss.age);
    let headers = caching.headers(&miss);
    // 3 s of TTL from the computation's start, 1.2 s of it spent computing.
    assert!(fresh(&headers) <= 1, "{headers:?}");
    assert!(
        headers[AGE]
            .to_str()
            .expect("text")
            .parse::<u64>()
            .expect("Age")
            >= 2
    );
    let hit = slow_profile::call(1);
    assert!(hit.is_hit());
    assert!(fresh(&caching.headers(&hit)) <= 1);
    // A proxy that ignores `Age` is told the TTL left instead.
    let ignoring_age = caching.without_age().headers(&hit);
    assert!(!ignoring_age.contains_key(AGE));
    let max_age = ignoring_age[CACHE_CONTROL]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(
        max_age == "private, max-age=1" || max_age == "private, max-age=0",
        "{max_age}"
    );
}

#[test]
fn an_error_is_no_store() {
    let caching = HttpCaching::new(slow_profile::cache_config());
    let failed = slow_profile::call(0);
    assert!(!failed.stored);
    assert_eq!(caching.headers(&failed)[CACHE_CONTROL], "no-store");
    assert_eq!(
        caching.respond(&HeaderMap::new(), failed).headers()[CACHE_CONTROL],
        "no-store"
    );
}

#[cached(ttl = "1000000d")]
fn practically_forever(id: u64) -> u64 {
    id
}

#[test]
fn a_huge_ttl_still_gives_true_ages() {
    practically_forever(1);
    std::thread::sleep(Duration::from_millis(50));
    let hit = practically_forever::call(1);
    assert!(hit.is_hit());
    assert!(
        hit.age >= Duration::from_millis(50) && hit.age < Duration::from_secs(60),
        "{:?}",
        hit.age
    );
}
