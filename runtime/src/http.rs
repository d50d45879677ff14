//! HTTP caching from the cache's own policy (feature `http`, on the [`http`](https://docs.rs/http)
//! crate's types, so any framework can use it): `Cache-Control`, `Age`, `ETag`, `X-Cache`, and
//! `304 Not Modified` for a matching `If-None-Match`.
//!
//! [`HttpCaching::new`] takes a cached function's [`CacheConfig`] (`f::cache_config()`), so the
//! lifetime a browser or CDN is told comes from the function's TTL and never outlasts what the
//! server would still serve: `max-age` minus `Age` (what a cache downstream keeps it fresh for,
//! RFC 9111) is at most the TTL the entry has left (a miss is as old as its computation, which
//! started the TTL; `Age` is rounded up). For proxies that ignore `Age`,
//! [`without_age`](HttpCaching::without_age) sends the TTL left as `max-age` and no `Age`.
//!
//! ```
//! use cachemere::cached;
//! use cachemere::http::HttpCaching;
//! use ::http::header::{AGE, CACHE_CONTROL, ETAG, IF_NONE_MATCH};
//! use http::{HeaderMap, StatusCode};
//!
//! #[cached(ttl = "5m")]
//! fn profile(id: u64) -> String { format!("profile {id}") }
//!
//! let caching = HttpCaching::new(profile::cache_config()).public();
//!
//! // First request: computed.
//! let response = caching.respond(&HeaderMap::new(), profile::call(7));
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()[CACHE_CONTROL], "public, max-age=300");
//! assert_eq!(response.headers()["x-cache"], "MISS");
//! assert_ne!(response.headers()[AGE], "0"); // the computation's time, rounded up
//! assert_eq!(response.body().as_deref(), Some("profile 7"));
//!
//! // The client revalidates with the ETag it got: 304, no body.
//! let mut request = HeaderMap::new();
//! request.insert(IF_NONE_MATCH, response.headers()[ETAG].clone());
//! let revalidated = caching.respond(&request, profile::call(7));
//! assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
//! assert_eq!(revalidated.headers()["x-cache"], "HIT");
//! assert!(revalidated.body().is_none());
//! ```
//!
//! What HTTP cannot be told: an invalidation. A browser or CDN that was told `max-age=300`
//! may show the old response for up to that long after `invalidate` returns on the server.
//! Where that matters, cap what clients keep with [`max_age`](HttpCaching::max_age) (e.g.
//! zero: they revalidate every time, which the `ETag` makes a cheap `304`), and let shared
//! caches you can purge keep longer with [`shared_max_age`](HttpCaching::shared_max_age).

use std::io;
use std::time::Duration;

use ::http::header::{AGE, CACHE_CONTROL, ETAG, HeaderName, HeaderValue, IF_NONE_MATCH};
use ::http::{HeaderMap, Response, StatusCode};
use serde::Serialize;

use crate::CacheConfig;
use crate::outcome::Cached;

/// The `X-Cache` header: `HIT` or `MISS`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// How responses of one cached function may be cached downstream: built from its policy,
/// narrowed by the handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpCaching {
    /// The server-side TTL; `None`: entries never expire (then clients must revalidate).
    ttl: Option<Duration>,
    /// The most a private cache (a browser) may keep a response fresh.
    client_max: Option<Duration>,
    /// What a shared cache (a CDN) may keep it fresh (`s-maxage`), at most the TTL.
    shared_max: Option<Duration>,
    public: bool,
    /// Whether `Age` is sent (and `max-age` counts from the computation) or not (and
    /// `max-age` is the TTL left).
    age_header: bool,
    /// The cache's own stale windows, passed on as RFC 5861's `stale-while-revalidate` and
    /// `stale-if-error` (whole seconds).
    stale_while_revalidate: Option<u64>,
    stale_if_error: Option<u64>,
}

impl HttpCaching {
    /// From a cached function's configuration (`f::cache_config()`): `private`, fresh
    /// downstream for the TTL left to the value; without a TTL, `no-cache` (store, but
    /// revalidate each time: the server may drop or invalidate the entry at any moment), or
    /// as long as a cap given with [`max_age`](Self::max_age) /
    /// [`shared_max_age`](Self::shared_max_age) allows.
    pub fn new(config: CacheConfig) -> Self {
        HttpCaching {
            ttl: config.ttl,
            client_max: None,
            shared_max: None,
            public: false,
            age_header: true,
            stale_while_revalidate: config
                .freshness
                .stale_while_revalidate
                .map(|window| window.as_secs()),
            stale_if_error: config
                .freshness
                .stale_if_error
                .map(|window| window.as_secs()),
        }
    }

    /// Shared caches (CDNs, proxies) may store the response too: for data that is the same
    /// for every user.
    #[must_use]
    pub fn public(mut self) -> Self {
        self.public = true;
        self
    }

    /// Only the user's own cache (a browser) may store it: the default.
    #[must_use]
    pub fn private(mut self) -> Self {
        self.public = false;
        self
    }

    /// Clients keep a response fresh for at most `at_most` (and never longer than the TTL
    /// left). `Duration::ZERO` makes them revalidate each time.
    #[must_use]
    pub fn max_age(mut self, at_most: Duration) -> Self {
        self.client_max = Some(at_most);
        self
    }

    /// Shared caches keep it fresh for up to `at_most` (`s-maxage`, never longer than the TTL
    /// left), whatever [`max_age`](Self::max_age) tells browsers. Makes the response `public`.
    #[must_use]
    pub fn shared_max_age(mut self, at_most: Duration) -> Self {
        self.shared_max = Some(at_most);
        self.public = true;
        self
    }

    /// Leaves `Age` out and gives `max-age` as the TTL left, for caches downstream that ignore
    /// `Age` (RFC 9111 says to honour it; some proxies do not): they then stop in time too.
    #[must_use]
    pub fn without_age(mut self) -> Self {
        self.age_header = false;
        self
    }

    /// The `Cache-Control` value for a value computed `age` ago.
    ///
    /// With `Age` (the default), `max-age` counts from the value's computation, as the server's
    /// TTL does: a cache downstream subtracts `Age` and keeps the response fresh for the TTL
    /// left (at most the caps), never longer. [`without_age`](Self::without_age) gives the TTL
    /// left itself instead.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use cachemere::{CacheConfig, http::HttpCaching};
    /// let config = CacheConfig::new("users").with_ttl(Some(Duration::from_secs(60)));
    /// let caching = HttpCaching::new(config.clone());
    /// // 60 s of TTL, 20 s used (`Age: 20`): 40 s left downstream.
    /// assert_eq!(caching.cache_control(Duration::from_secs(20)), "private, max-age=60");
    /// let capped = caching.clone().max_age(Duration::from_secs(10));
    /// assert_eq!(capped.cache_control(Duration::from_secs(20)), "private, max-age=30");
    /// let cdn = caching.clone().max_age(Duration::ZERO).shared_max_age(Duration::from_secs(3600));
    /// assert_eq!(cdn.cache_control(Duration::from_secs(20)), "public, max-age=0, s-maxage=60");
    /// let no_age = caching.without_age();
    /// assert_eq!(no_age.cache_control(Duration::from_secs(20)), "private, max-age=40");
    /// assert_eq!(HttpCaching::new(CacheConfig::new("forever")).cache_control(Duration::ZERO), "private, no-cache");
    /// // The cache's stale windows are passed on (RFC 5861).
    /// let windows = cachemere::Freshness::new()
    ///     .with_stale_while_revalidate(Some(Duration::from_secs(600)))
    ///     .with_stale_if_error(Some(Duration::from_secs(86_400)));
    /// let stale = HttpCaching::new(config.with_freshness(windows));
    /// assert_eq!(
    ///     stale.cache_control(Duration::from_secs(20)),
    ///     "private, max-age=60, stale-while-revalidate=600, stale-if-error=86400"
    /// );
    /// ```
    pub fn cache_control(&self, age: Duration) -> HeaderValue {
        let visibility = if self.public { "public" } else { "private" };
        let mut value = String::from(visibility);
        // With `Age`, freshness counts from the age as told (rounded up); without, from the
        // age itself.
        let (told, used) = if self.age_header {
            let told = age_secs(age);
            (told, Duration::from_secs(told))
        } else {
            (0, age)
        };
        let shared = self.shared_max.map(|cap| self.fresh_for(used, Some(cap)));
        match (self.fresh_for(used, self.client_max), shared) {
            (Some(fresh), _) => {
                value.push_str(&format!(", max-age={}", lifetime(told, fresh)));
            }
            // Only shared caches may keep it: browsers revalidate.
            (None, Some(_)) => value.push_str(", max-age=0"),
            (None, None) => value.push_str(", no-cache"),
        }
        if let Some(Some(fresh)) = shared {
            value.push_str(&format!(", s-maxage={}", lifetime(told, fresh)));
        }
        // A downstream cache may do what this one does past the TTL, for as long.
        if self.ttl.is_some() {
            if let Some(window) = self.stale_while_revalidate {
                value.push_str(&format!(", stale-while-revalidate={window}"));
            }
            if let Some(window) = self.stale_if_error {
                value.push_str(&format!(", stale-if-error={window}"));
            }
        }
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("no-store"))
    }

    /// How many whole seconds a downstream cache may keep a value `age` old fresh: the TTL
    /// left (rounded down), at most `cap`; `None` to revalidate every time (no TTL, no cap).
    fn fresh_for(&self, age: Duration, cap: Option<Duration>) -> Option<u64> {
        let left = self.ttl.map(|ttl| ttl.saturating_sub(age).as_secs());
        let cap = cap.map(|cap| cap.as_secs());
        match (left, cap) {
            (Some(left), Some(cap)) => Some(left.min(cap)),
            (Some(left), None) => Some(left),
            (None, cap) => cap,
        }
    }

    /// The response headers for `cached`: `Cache-Control`, `Age`, `X-Cache`, and an `ETag`
    /// digest of the value (left out if the value cannot be serialized). A value that is not
    /// in the cache ([`Cached::stored`] is false: an `Err` or `None` its policy does not
    /// store, a value an invalidation raced with, one computed past its TTL, a failed write)
    /// is `no-store`: nothing downstream keeps what the server would not serve again.
    pub fn headers<T: Serialize>(&self, cached: &Cached<T>) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(4);
        let cache_control = if cached.stored {
            self.cache_control(cached.age)
        } else {
            HeaderValue::from_static("no-store")
        };
        headers.insert(CACHE_CONTROL, cache_control);
        if self.age_header {
            headers.insert(AGE, HeaderValue::from(age_secs(cached.age)));
        }
        headers.insert(X_CACHE, HeaderValue::from_static(cached.status.as_str()));
        if let Some(tag) = etag(&cached.value) {
            headers.insert(ETAG, tag);
        }
        headers
    }

    /// The response to a `GET` or `HEAD` that `cached` answers: `304 Not Modified` with no
    /// body if the request's `If-None-Match` holds the value's `ETag`, else `200 OK` with the
    /// value; both with the [`headers`](Self::headers). Map the body to your framework's
    /// (`Json(..)` in axum).
    pub fn respond<T: Serialize>(
        &self,
        request: &HeaderMap,
        cached: Cached<T>,
    ) -> Response<Option<T>> {
        let headers = self.headers(&cached);
        let not_modified = headers
            .get(ETAG)
            .is_some_and(|tag| if_none_match(request, tag));
        let (status, body) = if not_modified {
            (StatusCode::NOT_MODIFIED, None)
        } else {
            (StatusCode::OK, Some(cached.value))
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// `max-age` (or `s-maxage`) for `fresh` seconds more at a told age of `told` seconds (a cache
/// subtracts `Age`). Zero stays zero, so a cache that ignores `Age` revalidates too.
fn lifetime(told: u64, fresh: u64) -> u64 {
    if fresh == 0 {
        0
    } else {
        told.saturating_add(fresh)
    }
}

/// Whole seconds of an age, rounded up (so what downstream caches add never outlasts the TTL).
fn age_secs(age: Duration) -> u64 {
    age.as_secs()
        .saturating_add(u64::from(age.subsec_nanos() > 0))
}

/// A strong `ETag` for `value`: a 128-bit xxh3 digest of its JSON serialization, the same in
/// every process and release for the same value (a `HashMap` field serializes in its own
/// order, which differs between processes: use a `BTreeMap`). `None` if serialization fails.
///
/// ```
/// let a = cachemere::http::etag(&("ada", 36)).unwrap();
/// assert_eq!(a, cachemere::http::etag(&("ada", 36)).unwrap());
/// assert_ne!(a, cachemere::http::etag(&("ada", 37)).unwrap());
/// assert_eq!(a.len(), 34); // "<32 hex digits>"
/// ```
pub fn etag<T: Serialize + ?Sized>(value: &T) -> Option<HeaderValue> {
    let mut digest = Digest(xxhash_rust::xxh3::Xxh3::new());
    serde_json::to_writer(&mut digest, value).ok()?;
    HeaderValue::from_str(&format!("\"{:032x}\"", digest.0.digest128())).ok()
}

/// Feeds serialized bytes to the hasher without collecting them.
struct Digest(xxhash_rust::xxh3::Xxh3);

impl io::Write for Digest {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether the request's `If-None-Match` matches `etag` (RFC 9110's weak comparison: a `W/`
/// prefix is ignored; `*` matches any). Every `If-None-Match` header counts; a value that is
/// not text matches nothing.
///
/// ```
/// use http::{HeaderMap, HeaderValue, header::IF_NONE_MATCH};
/// let tag = HeaderValue::from_static("\"abc\"");
/// let mut request = HeaderMap::new();
/// request.insert(IF_NONE_MATCH, HeaderValue::from_static("\"x\", W/\"abc\""));
/// assert!(cachemere::http::if_none_match(&request, &tag));
/// assert!(!cachemere::http::if_none_match(&HeaderMap::new(), &tag));
/// ```
pub fn if_none_match(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let Ok(etag) = etag.to_str() else {
        return false;
    };
    let etag = opaque(etag);
    request
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || opaque(candidate) == etag)
}

/// An entity tag without its weakness prefix.
fn opaque(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max-age` and `s-maxage` of a `Cache-Control` value, and whether it says `no-cache`.
    fn parse(value: &HeaderValue) -> (Option<u64>, Option<u64>, bool) {
        let text = value.to_str().expect("text");
        let number = |name: &str| {
            text.split(", ")
                .find_map(|part| part.strip_prefix(name))
                .map(|n| n.parse().expect("a number"))
        };
        (
            number("max-age="),
            number("s-maxage="),
            text.contains("no-cache"),
        )
    }

    #[test]
    fn downstream_freshness_never_outlasts_the_ttl_left() {
        let millis = [
            0, 1, 999, 1_000, 1_001, 59_999, 60_000, 150_500, 299_999, 300_000, 400_000,
        ];
        for ttl_ms in [1_000u64, 60_000, 300_000, 86_400_000] {
            for cap in [None, Some(0), Some(10), Some(100_000)] {
                for shared in [None, Some(0), Some(30), Some(1_000_000)] {
                    for with_age in [true, false] {
                        let mut caching = HttpCaching::new(
                            CacheConfig::new("t").with_ttl(Some(Duration::from_millis(ttl_ms))),
                        );
                        if let Some(cap) = cap {
                            caching = caching.max_age(Duration::from_secs(cap));
                        }
                        if let Some(shared) = shared {
                            caching = caching.shared_max_age(Duration::from_secs(shared));
                        }
                        if !with_age {
                            caching = caching.without_age();
                        }
                        for age_ms in millis.iter().copied().filter(|age| *age <= ttl_ms) {
                            let age = Duration::from_millis(age_ms);
                            let headers = caching.headers(&Cached::hit((), age));
                            let (max_age, s_maxage, no_cache) = parse(&headers[CACHE_CONTROL]);
                            let told_age: u64 = headers
                                .get(AGE)
                                .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
                            assert_eq!(headers.contains_key(AGE), with_age);
                            assert!(!no_cache);
                            let left_ms = ttl_ms - age_ms;
                            let context = format!(
                                "ttl {ttl_ms} ms, age {age_ms} ms, cap {cap:?}, Age {with_age}: {:?}",
                                headers[CACHE_CONTROL]
                            );
                            for (lifetime, limit) in [(max_age, cap), (s_maxage, shared)] {
                                let Some(lifetime) = lifetime else { continue };
                                // What a cache honouring `Age` keeps it fresh for.
                                let fresh = lifetime.saturating_sub(told_age);
                                assert!(fresh * 1_000 <= left_ms, "{context}");
                                assert!(fresh <= limit.unwrap_or(u64::MAX), "{context}");
                                // And not much less: the TTL left is used (a second lost to
                                // rounding each way at most).
                                let usable = (left_ms / 1_000).min(limit.unwrap_or(u64::MAX));
                                assert!(fresh + 2 >= usable, "{context}");
                                if fresh == 0 {
                                    assert_eq!(lifetime, 0, "ignoring Age, still stale: {context}");
                                }
                                if !with_age {
                                    assert!(lifetime * 1_000 <= left_ms, "{context}");
                                }
                            }
                            assert!(max_age.is_some());
                            assert_eq!(s_maxage.is_some(), shared.is_some());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn max_age_counts_from_the_computation_and_age_says_how_much_is_used() {
        let caching =
            HttpCaching::new(CacheConfig::new("t").with_ttl(Some(Duration::from_secs(300))));
        assert_eq!(
            caching.cache_control(Duration::ZERO),
            "private, max-age=300"
        );
        assert_eq!(
            caching.cache_control(Duration::from_millis(1_500)),
            "private, max-age=300"
        );
        assert_eq!(
            caching.cache_control(Duration::from_secs(300)),
            "private, max-age=0"
        );
        assert_eq!(
            caching.cache_control(Duration::from_secs(400)),
            "private, max-age=0"
        );
        let no_age = caching.without_age();
        assert_eq!(
            no_age.cache_control(Duration::from_millis(1_500)),
            "private, max-age=298"
        );
        assert!(
            !no_age
                .headers(&Cached::hit(1, Duration::from_secs(9)))
                .contains_key(AGE)
        );
        assert_eq!(
            HttpCaching::new(CacheConfig::new("t")).headers(&Cached::hit(1, Duration::MAX))[AGE],
            u64::MAX.to_string().as_str(),
            "no overflow"
        );
    }

    #[test]
    fn without_a_ttl_browsers_revalidate_and_a_cdn_keeps_what_it_is_allowed() {
        let caching = HttpCaching::new(CacheConfig::new("t"));
        assert_eq!(
            caching.cache_control(Duration::from_secs(5)),
            "private, no-cache"
        );
        let cdn = caching.clone().shared_max_age(Duration::from_secs(60));
        assert_eq!(
            cdn.cache_control(Duration::from_secs(5)),
            "public, max-age=0, s-maxage=65"
        );
        let browsers = caching.max_age(Duration::from_secs(30));
        assert_eq!(
            browsers.cache_control(Duration::from_secs(5)),
            "private, max-age=35"
        );
    }

    #[test]
    fn a_value_the_cache_does_not_keep_is_no_store() {
        let caching =
            HttpCaching::new(CacheConfig::new("t").with_ttl(Some(Duration::from_secs(300))));
        let mut failed = Cached::miss("origin down");
        failed.stored = false;
        let headers = caching.headers(&failed);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_eq!(headers[X_CACHE], "MISS");
    }

    #[test]
    fn if_none_match_needs_the_same_opaque_tag() {
        let tag = HeaderValue::from_static("\"abc\"");
        let request = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.append(IF_NONE_MATCH, HeaderValue::from_static(value));
            headers
        };
        assert!(if_none_match(&request("\"abc\""), &tag));
        assert!(if_none_match(&request("W/\"abc\""), &tag));
        assert!(if_none_match(&request("*"), &tag));
        assert!(if_none_match(&request("\"a\" , \"abc\""), &tag));
        assert!(!if_none_match(&request("\"abcd\""), &tag));
        assert!(
            !if_none_match(&request("abc"), &tag),
            "unquoted is another tag"
        );
        let mut two = request("\"x\"");
        two.append(IF_NONE_MATCH, HeaderValue::from_static("\"abc\""));
        assert!(if_none_match(&two, &tag), "every header counts");
    }

    #[test]
    fn a_value_that_cannot_be_serialized_gets_no_etag_and_no_304() {
        struct Refuses;
        impl Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        assert!(etag(&Refuses).is_none());
        let caching = HttpCaching::new(CacheConfig::new("t"));
        let mut request = HeaderMap::new();
        request.insert(IF_NONE_MATCH, HeaderValue::from_static("*"));
        let response = caching.respond(&request, Cached::miss(Refuses));
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key(ETAG));
    }
}
