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

fn max_age(headers: &HeaderMap) -> u64 {
    headers[CACHE_CONTROL]
        .to_str()
        .expect("text")
        .rsplit_once("max-age=")
        .and_then(|(_, n)| n.parse().ok())
        .expect("max-age")
}

#[test]
fn a_slow_miss_is_told_only_the_ttl_left() {
    let caching = HttpCaching::new(slow_profile::cache_config());
    let miss = slow_profile::call(1);
    assert!(miss.age >= Duration::from_millis(1_200), "{:?}", miss.age);
    let headers = caching.headers(&miss);
    // 3 s of TTL from the computation's start, 1.2 s of it spent computing.
    assert!(max_age(&headers) <= 1, "{:?}", headers[CACHE_CONTROL]);
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
    assert!(max_age(&caching.headers(&hit)) <= 1);
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
